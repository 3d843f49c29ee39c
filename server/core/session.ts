import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { Account } from '../../storage/types.js';

export interface SessionCounters {
  stanzasIn: number;
  stanzasOut: number;
  bytesIn: number;
  bytesOut: number;
}

/** A bound client resource, as the router and modules see it (P6: start time and counters). */
export interface ClientSession {
  readonly id: string;
  /** Full JID once bound. */
  readonly jid: Jid;
  readonly ip: string;
  /** The stream is encrypted (TLS). */
  readonly secure: boolean;
  /** The authenticated account. */
  readonly account: Account | null;
  readonly startedAt: Date;
  readonly counters: SessionCounters;
  /** Set by the presence module: true after initial presence until unavailable. */
  available: boolean;
  /** Priority from the last available presence (RFC 6121 4.7.2.3), 0 by default. */
  priority: number;
  /** The last available presence broadcast by this resource. */
  presence: Element | null;
  /** Requested the roster: an "interested resource" that gets roster pushes (RFC 6121 2.1.6). */
  interested: boolean;
  /** Full or bare JIDs this resource sent directed presence to, outside its subscriptions. */
  readonly directedPresence: Set<string>;
  /**
   * The client's features (XEP-0115, set by the caps module once verified), undefined while unknown.
   * Shared with other cluster nodes like the presence state above.
   */
  capabilities: ReadonlySet<string> | undefined;
  /** Named per-session switches a module sets (carbons: 'carbons'), seen by every cluster node. */
  hasFlag(name: string): boolean;
  setFlag(name: string, on: boolean): void;
  send(stanza: Element): void;
  /** Ends the stream, with a stream error condition if given. */
  close(condition?: string, text?: string): void;
}

/**
 * Which resources are online for which accounts. Behind this interface sessions live in several
 * processes (cluster mode, server/cluster/): `get` and `ofAccount` then also answer with stand-ins
 * for resources bound on other nodes, while `all` and `size` stay this node's own sessions.
 */
export interface SessionRegistry {
  /** Adds the session; returns the session it replaced for the same full JID, if any. */
  add(session: ClientSession): ClientSession | undefined;
  remove(session: ClientSession): boolean;
  get(fullJid: string): ClientSession | undefined;
  /** Every bound resource of a bare JID. */
  ofAccount(bareJid: string): ClientSession[];
  /** The sessions bound on this node. */
  all(): Iterable<ClientSession>;
  /** How many sessions are bound on this node. */
  readonly size: number;
}

export class LocalSessionRegistry implements SessionRegistry {
  private readonly byFull = new Map<string, ClientSession>();
  private readonly byBare = new Map<string, Map<string, ClientSession>>();

  add(session: ClientSession): ClientSession | undefined {
    const previous = this.byFull.get(session.jid.full);
    this.byFull.set(session.jid.full, session);
    let resources = this.byBare.get(session.jid.bare);
    if (!resources) this.byBare.set(session.jid.bare, (resources = new Map()));
    resources.set(session.jid.resource, session);
    return previous !== session ? previous : undefined;
  }

  remove(session: ClientSession): boolean {
    if (this.byFull.get(session.jid.full) !== session) return false;
    this.byFull.delete(session.jid.full);
    const resources = this.byBare.get(session.jid.bare);
    resources?.delete(session.jid.resource);
    if (resources && resources.size === 0) this.byBare.delete(session.jid.bare);
    return true;
  }

  get(fullJid: string): ClientSession | undefined {
    return this.byFull.get(fullJid);
  }

  ofAccount(bareJid: string): ClientSession[] {
    const resources = this.byBare.get(bareJid);
    return resources ? [...resources.values()] : [];
  }

  all(): Iterable<ClientSession> {
    return this.byFull.values();
  }

  get size(): number {
    return this.byFull.size;
  }
}

// ---- sessions that outlive their connection ----

/**
 * The connection that currently carries a session's XML stream (a C2S stream today; a WebSocket or
 * BOSH stream could be another). A session may be carried by several transports one after the other
 * (XEP-0198 resumption) and, between two of them, by none (hibernation).
 */
export interface SessionTransport {
  readonly id: string;
  readonly ip: string;
  readonly secure: boolean;
  /** Writes serialised XML (a stanza or a nonza) to the client. */
  write(data: string): void;
  /** Closes the stream, with a stream error if given. */
  close(condition?: string, text?: string): void;
}

/**
 * How a transport ended, as its session sees it: 'closed' when the stream was closed (by the client
 * with </stream:stream>, or by the server with a stream error that ends the session); 'lost' when the
 * connection broke without a stream close (network failure, a connection timeout), which a layer
 * such as stream management may survive.
 */
export type TransportEnd = 'closed' | 'lost';

/**
 * A module's part in one session's stanza flow, like a layer in a protocol stack. Outbound, a stanza
 * passes every layer's `outbound` (which may hold it back, as client state indication does), is
 * written to the transport, and then every layer sees it `written` (stream management counts and
 * queues it). All callbacks are synchronous.
 */
export interface SessionLayer {
  /** An outbound stanza before it is written; true when the layer took it (held back or dropped). */
  outbound?(stanza: Element): boolean;
  /**
   * A stanza was written to the client (`data` is its serialisation). While the session hibernates
   * there is no transport, and this is the only place the stanza goes.
   */
  written?(stanza: Element, data: string): void;
  /** The server accepted responsibility for a stanza from the client (XEP-0198 "handled"). */
  handled?(stanza: Element): void;
  /** The transport was lost; true keeps the session bound without one (hibernating) until it ends. */
  lost?(): boolean;
  /** Another transport carries the session now (after the handover was written). */
  attached?(): void;
  /** The session ended; it has left the registry. */
  ended?(condition?: string): void;
}

export interface BoundSessionOptions {
  id: string;
  jid: Jid;
  account: Account;
  startedAt: Date;
  transport: SessionTransport;
  /** Shared with the transport, which counts what it reads (P6). */
  counters: SessionCounters;
  /**
   * Called once when the session ends: leave the registry, announce the end ('session/closed'),
   * unless it `moved` (XEP-0198 resumption on another cluster node: it goes on there).
   */
  onEnd(session: BoundSession, condition?: string, moved?: boolean): void;
}

/** A set that tells of each change (additions and removals that change it). */
class WatchedSet<T> extends Set<T> {
  constructor(private readonly changed: () => void) {
    super();
  }
  override add(value: T): this {
    if (this.has(value)) return this;
    super.add(value);
    this.changed();
    return this;
  }
  override delete(value: T): boolean {
    if (!super.delete(value)) return false;
    this.changed();
    return true;
  }
  override clear(): void {
    if (this.size === 0) return;
    super.clear();
    this.changed();
  }
}

/**
 * A bound resource: the session state (JID, presence, counters) and the outbound path to the client,
 * apart from the connection that carries it. The stream that bound the resource attaches itself as
 * the first transport; when a transport ends, the session ends with it unless a layer keeps it
 * (stream management hibernates a resumable session: it stays in the registry and keeps receiving
 * stanzas, which the layer queues); `attach` moves it onto a new transport (resumption).
 */
export class BoundSession implements ClientSession {
  readonly id: string;
  readonly jid: Jid;
  readonly account: Account;
  readonly startedAt: Date;
  readonly counters: SessionCounters;
  /** Changes are told like the state below (a cluster's survivors send unavailable to these for a dead node). */
  readonly directedPresence: Set<string> = new WatchedSet<string>(() => this.onStateChange?.(this));
  /**
   * Told when the state other nodes see (presence, priority, interest, capabilities, flags)
   * changes: the cluster registry shares it. Unset on a single node.
   */
  onStateChange: ((session: BoundSession) => void) | undefined;
  private state = { available: false, priority: 0, presence: null as Element | null, interested: false, capabilities: undefined as ReadonlySet<string> | undefined };
  private flags: Set<string> | undefined;
  private transport: SessionTransport | null;
  private readonly layers: SessionLayer[] = [];
  private lastIp: string;
  private lastSecure: boolean;
  private done = false;
  private readonly onEnd: BoundSessionOptions['onEnd'];

  constructor(opts: BoundSessionOptions) {
    this.id = opts.id;
    this.jid = opts.jid;
    this.account = opts.account;
    this.startedAt = opts.startedAt;
    this.counters = opts.counters;
    this.transport = opts.transport;
    this.lastIp = opts.transport.ip;
    this.lastSecure = opts.transport.secure;
    this.onEnd = opts.onEnd;
  }

  get available(): boolean {
    return this.state.available;
  }
  set available(v: boolean) {
    this.changeState('available', v);
  }
  get priority(): number {
    return this.state.priority;
  }
  set priority(v: number) {
    this.changeState('priority', v);
  }
  get presence(): Element | null {
    return this.state.presence;
  }
  set presence(v: Element | null) {
    this.changeState('presence', v);
  }
  get interested(): boolean {
    return this.state.interested;
  }
  set interested(v: boolean) {
    this.changeState('interested', v);
  }
  get capabilities(): ReadonlySet<string> | undefined {
    return this.state.capabilities;
  }
  set capabilities(v: ReadonlySet<string> | undefined) {
    this.changeState('capabilities', v);
  }

  hasFlag(name: string): boolean {
    return this.flags?.has(name) ?? false;
  }

  setFlag(name: string, on: boolean): void {
    if (this.hasFlag(name) === on) return;
    if (on) (this.flags ??= new Set()).add(name);
    else this.flags?.delete(name);
    this.onStateChange?.(this);
  }

  /** The flags set now. */
  flagNames(): string[] {
    return this.flags ? [...this.flags] : [];
  }

  private changeState<K extends keyof BoundSession['state']>(key: K, value: BoundSession['state'][K]): void {
    if (this.state[key] === value) return;
    this.state[key] = value;
    this.onStateChange?.(this);
  }

  /** The address of the current (or, while hibernating, the last) connection. */
  get ip(): string {
    return this.transport?.ip ?? this.lastIp;
  }

  get secure(): boolean {
    return this.transport?.secure ?? this.lastSecure;
  }

  /** Bound without a connection, waiting for a resumption. */
  get hibernating(): boolean {
    return !this.done && this.transport === null;
  }

  get ended(): boolean {
    return this.done;
  }

  /** The transport carrying the session now, if any. */
  get currentTransport(): SessionTransport | null {
    return this.transport;
  }

  addLayer(layer: SessionLayer): void {
    if (!this.layers.includes(layer)) this.layers.push(layer);
  }

  removeLayer(layer: SessionLayer): void {
    const i = this.layers.indexOf(layer);
    if (i >= 0) this.layers.splice(i, 1);
  }

  send(stanza: Element): void {
    this.pass(0, stanza);
  }

  /** Sends a stanza a layer held back on through the layers after it (e.g. a flushed queue). */
  forward(from: SessionLayer, stanza: Element): void {
    this.pass(this.layers.indexOf(from) + 1, stanza);
  }

  private pass(first: number, stanza: Element): void {
    if (this.done) return;
    for (let i = first; i < this.layers.length; i++) if (this.layers[i]!.outbound?.(stanza)) return;
    const data = stanza.toString();
    this.counters.stanzasOut++;
    this.counters.bytesOut += Buffer.byteLength(data);
    this.transport?.write(data);
    for (const layer of this.layers.slice()) layer.written?.(stanza, data);
  }

  /** Writes serialised XML outside the stanza flow (nonzas, retransmissions): no layer sees it. */
  writeRaw(data: string): void {
    if (!this.transport) return;
    this.counters.bytesOut += Buffer.byteLength(data);
    this.transport.write(data);
  }

  /** Called by the transport for each stanza from the client it accepted responsibility for. */
  handled(stanza: Element): void {
    for (const layer of this.layers) layer.handled?.(stanza);
  }

  /**
   * Moves the session onto `transport`. A transport still carrying it is closed with a conflict
   * stream error (XEP-0198 section 5); `handover` then writes first (the resumption answer and the
   * retransmitted stanzas), before the layers hear of the new transport.
   */
  attach(transport: SessionTransport, handover?: () => void): void {
    if (this.done) throw new Error('cannot attach a transport to an ended session');
    const old = this.transport;
    this.transport = transport;
    this.lastIp = transport.ip;
    this.lastSecure = transport.secure;
    if (old && old !== transport) old.close('conflict', 'the session was resumed on another connection');
    handover?.();
    for (const layer of this.layers.slice()) layer.attached?.();
  }

  /** Called by a transport when it ended; ignored from a transport that no longer carries the session. */
  transportEnded(transport: SessionTransport, how: TransportEnd, condition?: string): void {
    if (this.done || transport !== this.transport) return;
    this.transport = null;
    if (how === 'lost' && this.layers.some((layer) => layer.lost?.() === true)) return;
    this.end(condition);
  }

  /** Ends the session: closes its stream (with a stream error if given), also when hibernating. */
  close(condition?: string, text?: string): void {
    if (this.done) return;
    const transport = this.transport;
    this.transport = null;
    transport?.close(condition, text);
    this.end(condition);
  }

  /**
   * The session goes on on another cluster node (XEP-0198 resumption there): its stream here is
   * closed with a conflict and it leaves the registry, without ending for contacts or modules.
   * Layers hear `ended('moved')`.
   */
  moveAway(): void {
    if (this.done) return;
    const transport = this.transport;
    this.transport = null;
    transport?.close('conflict', 'the session was resumed on another connection');
    this.end('moved', true);
  }

  private end(condition?: string, moved = false): void {
    if (this.done) return;
    this.done = true;
    this.transport = null;
    this.onEnd(this, condition, moved);
    for (const layer of this.layers.slice()) layer.ended?.(condition);
  }
}
