/**
 * One node of a cluster: its NATS connection, the other nodes (heartbeats, failure detection), the
 * session announcements that keep the registry's stand-ins true; the stanzas that cross to the node
 * holding their recipient go through stanza-crossing.ts. docs/architecture.md ("Cluster") tells what
 * crosses and why.
 */
import { createHash, randomBytes } from 'node:crypto';
import { connect, type NatsConnection, type Msg } from '@nats-io/transport-node';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { x, type Element } from '../../shared/xml/element.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import type { Logger } from '../../shared/logger.js';
import type { ServerContext } from '../core/context.js';
import type { ClusterRouting, ClusterService, ClusterStatus } from '../core/cluster.js';
import type { DomainLink } from '../core/router.js';
import type { BoundSession, ClientSession } from '../core/session.js';
import {
  NOT_SERVED,
  TAKEN,
  decode,
  encode,
  isNoResponders,
  subjects,
  text,
  type CloseSession,
  type ComponentStanza,
  type Heartbeat,
  type SessionAnnouncement,
  type ServiceStanza,
  type SessionEntry,
  type Subjects,
} from './protocol.js';
import { ClusterSessionRegistry, type LocalSessionEvents } from './registry.js';
import { RemoteSession, type RemoteSessionLink } from './remote-session.js';
import { SharedState } from './shared-state.js';
import { mismatch, mismatchError, ownFingerprints, type Fingerprints } from './fingerprints.js';
import { SmJournal, type JournalRecord } from './sm-journal.js';
import { StanzaCrossing } from './stanza-crossing.js';
import { NodeLeases } from './fencing.js';
import { JournalRecovery } from './journal-recovery.js';
import type { ClusterConfig } from './types.js';

interface Peer {
  name: string;
  epoch: string;
  startedAt: string;
  lastSeen: number;
  state: 'up' | 'dead';
  sessions: number;
  components: Set<string>;
  /** The whole list it is telling now, in parts. */
  told: { batch: string; jids: Set<string> } | null;
  /** It takes stanzas as frames (its heartbeat says so). */
  frames: boolean;
  /** Its lease revision at its last heartbeat (fencing.ts); undefined from a node before fencing. */
  leaseRev?: number;
  /** Its lease is being looked at (it was silent for failureTimeout). */
  suspected?: boolean;
}

/** How long after storing an offline message a resource coming online elsewhere is asked to look again. */
const STORED_WINDOW_MS = 10_000;
const MAX_RECENTLY_STORED = 10_000;
/** Size of one part of a node's whole session list (NATS refuses messages over 1 MiB by default). */
const ALL_PART_BYTES = 256 * 1024;

/** A link to a component connected to another node. */
class RemoteComponentLink implements DomainLink {
  constructor(
    readonly node: string,
    private readonly domain: string,
    private readonly cluster: ClusterNode,
  ) {}
  send(stanza: Element): void {
    this.cluster.toComponent(this.node, this.domain, stanza);
  }
}

export class ClusterNode implements ClusterRouting, ClusterService, RemoteSessionLink, LocalSessionEvents {
  readonly node: string;
  /** This run: a new one when the node was declared dead and joins again (fence). */
  epoch = randomBytes(6).toString('hex');
  /** This node's earlier runs in this process: their heartbeats still on their way are not another process. */
  private readonly ownEpochs = new Set<string>();
  readonly registry: ClusterSessionRegistry;
  readonly iqIdPrefix: string;
  private readonly subjects: Subjects;
  private readonly startedAt = new Date().toISOString();
  private readonly peers = new Map<string, Peer>();
  private readonly localComponents = new Set<string>();
  private readonly dirty = new Set<BoundSession>();
  /** Accounts this node stored offline messages for lately, with when (oldest first). */
  private readonly recentlyStored = new Map<string, number>();
  private nc: NatsConnection | null = null;
  private ctx: ServerContext | null = null;
  private shared: SharedState | null = null;
  private journal: SmJournal | null = null;
  private leases: NodeLeases | null = null;
  private recovery: JournalRecovery | null = null;
  private fencing = false;
  private timer: NodeJS.Timeout | null = null;
  private connected = false;
  private reconnects = 0;
  private stopping = false;
  private leaving = false;
  private nameTaken = false;
  /** This node's fingerprints of the files all nodes share, and why it must not join (another node's differ). */
  private keys: Fingerprints = {};
  private refusal: Error | null = null;
  private joined = false;
  private readonly mismatchLogged = new Set<string>();
  /** Runs of nodes that left (`node/epoch`): what they still send is not a node joining. */
  private readonly departed = new Set<string>();
  private readonly services = new Map<string, (stanza: Element, from: Jid, to: Jid) => void>();
  private readonly invalidations = new Map<string, Set<(key: string) => void>>();
  private readonly answerers = new Map<string, (body: unknown) => unknown>();
  private readonly membershipHandlers = new Set<() => void>();
  private readonly leaveHandlers = new Set<() => Promise<void>>();
  private membershipSoon: NodeJS.Timeout | null = null;
  private announceAllSoon: NodeJS.Timeout | null = null;
  private readonly crossing: StanzaCrossing;

  constructor(
    private readonly config: ClusterConfig,
    private readonly log: Logger,
  ) {
    this.node = config.node;
    this.subjects = subjects(config.prefix);
    this.iqIdPrefix = `gh-${config.node}:`;
    this.registry = new ClusterSessionRegistry(this);
    this.crossing = new StanzaCrossing(
      {
        node: this.node,
        epoch: this.epoch,
        registry: this.registry,
        nats: () => (this.nc && !this.nc.isClosed() ? this.nc : null),
        context: () => this.ctx,
        journal: () => this.journal,
        stopping: () => this.stopping,
        takesFrames: (node) => this.peers.get(node)?.frames === true,
        trusted: () => this.leases?.trusted() !== false,
      },
      config,
      this.subjects,
      log,
    );
  }

  /** Joins the cluster: connects to NATS, listens, announces this node. Throws when NATS cannot be reached. */
  async start(ctx: ServerContext): Promise<void> {
    this.ctx = ctx;
    this.keys = ownFingerprints(ctx.config.dataDir);
    try {
      this.nc = await connect({
        servers: this.config.nats,
        name: `gatehouse-${this.node}`,
        maxReconnectAttempts: -1,
        reconnectTimeWait: 250,
        pingInterval: Math.max(1000, this.config.heartbeatInterval),
        maxPingOut: 3,
        // Every request (each message to another node) would otherwise build two Error objects with
        // stack traces up front (nats.js "async traces"), a measurable share of the sending node's
        // CPU per message (scripts/bench, cluster scenario); the errors are not shown with stacks anyway.
        noAsyncTraces: true,
      });
    } catch (err) {
      throw new Error(`cluster: cannot connect to NATS (${this.config.nats.join(', ')}): ${err instanceof Error ? err.message : String(err)}`);
    }
    this.connected = true;
    const nc = this.nc;
    const s = this.subjects;
    const on = (subject: string, what: string, handle: (msg: Msg) => void | Promise<void>) =>
      nc.subscribe(subject, {
        callback: (err, msg) => {
          if (!err) this.guard(what, () => handle(msg));
        },
      });
    on(s.heartbeat, 'heartbeat', (msg) => this.onHeartbeat(decode<Heartbeat & { leaving?: boolean }>(msg.data)));
    on(s.sessions, 'announcement', (msg) => this.onAnnouncement(decode<SessionAnnouncement>(msg.data)));
    this.crossing.listen(on);
    on(s.close(this.node), 'close', (msg) => this.onClose(decode<CloseSession>(msg.data)));
    on(s.stored(this.node), 'stored', (msg) => this.onStored(decode<{ jid: string }>(msg.data)));
    on(s.component(this.node), 'component', (msg) => this.onComponentStanza(decode<ComponentStanza>(msg.data)));
    on(s.answer(this.node), 'answer', (msg) => this.onAnswer(decode<{ xml: string; from: string; to: string }>(msg.data)));
    on(s.service(this.node), 'service', (msg) => this.onServiceStanza(msg));
    on(s.served(this.node), 'served', (msg) => this.onServed(msg));
    on(s.ask(this.node), 'ask', (msg) => this.onAsk(msg));
    on(s.invalidate, 'invalidate', (msg) => this.onInvalidation(decode<{ node: string; topic: string; key: string }>(msg.data)));
    void this.watchStatus(nc);
    this.shared = new SharedState(nc, this.config, this.node, this.log);
    await this.shared.open();
    this.journal = new SmJournal(nc, this.config.prefix, this.node, this.epoch, ctx.config.c2s.resumptionTimeout, this.log);
    try {
      await this.journal.open();
    } catch (err) {
      throw new Error(`cluster: cannot open the stream management journal: ${err instanceof Error ? err.message : String(err)}`);
    }
    // A running node with the same name would get half of this one's stanzas: listen for its
    // heartbeat (one and a half intervals) before joining.
    await new Promise((r) => setTimeout(r, Math.round(this.config.heartbeatInterval * 1.5)));
    if (this.nameTaken) throw new Error(`cluster: the node name ${JSON.stringify(this.node)} is in use by a running node (cluster.node must be unique)`);
    if (this.refusal) throw this.refusal;
    // Taken only now: a process under a running node's name must not take that node's lease.
    this.leases = new NodeLeases(nc, this.config.prefix, this.node, this.epoch, this.config.failureTimeout, this.log);
    await this.leases.open();
    const leases = this.leases;
    this.recovery = new JournalRecovery(this.journal, leases, (r) => this.routeAgain(r), (holder) => this.runAlive(holder), this.log);
    this.joined = true;
    ctx.router.cluster = this;
    ctx.services.provide('cluster', this);
    // What the other nodes cache about an account (its row, its lists) goes with it, and a new
    // account under a name deleted before must not meet the old cached data either.
    ctx.hooks.on('account/deleted', ({ jid }) => this.invalidate('account', jid.bare), 'observe');
    // A message stored offline here while the user's resource was coming online elsewhere: see remoteUp.
    ctx.hooks.on('message/offline', ({ to }) => void this.storedOffline(to.bare), 'observe');
    ctx.hooks.on('account/created', ({ jid }) => this.invalidate('account', jid.bare), 'observe');
    await nc.flush();
    this.heartbeat();
    this.announceAll();
    this.timer = setInterval(() => this.tick(), this.config.heartbeatInterval);
    this.timer.unref();
    // What this node's previous runs (killed?) had not seen acknowledged.
    const epoch = this.epoch;
    await this.recovery.recoverRuns(this.node, (e) => e !== epoch);
    ctx.services.provide('sm-journal', this.journal);
    this.log.info('joined the cluster', { nats: this.config.nats.join(','), prefix: this.config.prefix });
  }

  /**
   * Tells the others this node is leaving, while its sessions are still listed: they end them for
   * their contacts at once (unavailable presence on this node's behalf) and route no more stanzas
   * here; what this node then broadcasts itself while closing its streams may arrive as well.
   */
  async leave(): Promise<void> {
    if (this.leaving) return;
    this.leaving = true;
    if (this.timer) clearInterval(this.timer);
    if (this.announceAllSoon) clearTimeout(this.announceAllSoon);
    if (!this.nc || this.nc.isClosed()) return;
    // Modules hand over what they own (group chat rooms) while stanzas still cross.
    const handovers = Promise.all([...this.leaveHandlers].map((h) => h().catch((err) => this.log.warn('cluster: handover failed', { error: String(err).slice(0, 200) }))));
    await Promise.race([handovers, new Promise((r) => setTimeout(r, this.config.deliveryTimeout).unref())]);
    this.crossing.flush();
    this.flushChanges();
    this.publish(this.subjects.heartbeat, { ...this.heartbeatBody(), leaving: true });
    await this.nc.flush().catch(() => {});
  }

  /** Leaves (if not done yet) and closes the NATS connection once what is on its way went out. */
  async stop(): Promise<void> {
    if (this.stopping) return;
    await this.leave();
    this.stopping = true;
    this.shared?.stop();
    this.recovery?.stop();
    const nc = this.nc;
    if (!nc) return;
    this.crossing.stop();
    try {
      await nc.drain();
    } catch {
      await nc.close().catch(() => {});
    }
  }

  private guard(what: string, fn: () => void | Promise<void>): void {
    try {
      const r = fn();
      if (r) r.catch((err) => this.log.error('cluster: handling failed', { what, error: err instanceof Error ? err.message : String(err) }));
    } catch (err) {
      this.log.error('cluster: handling failed', { what, error: err instanceof Error ? err.message : String(err) });
    }
  }

  private async watchStatus(nc: NatsConnection): Promise<void> {
    for await (const s of nc.status()) {
      if (s.type === 'disconnect') {
        if (this.connected) this.log.warn('cluster: NATS connection lost, reconnecting', { server: s.server });
        this.connected = false;
      } else if (s.type === 'reconnect') {
        this.connected = true;
        this.reconnects++;
        this.log.info('cluster: NATS connection back', { server: s.server });
        // Nobody heard anybody meanwhile: everyone gets a fresh chance, and our sessions are told again.
        const now = Date.now();
        for (const p of this.peers.values()) p.lastSeen = now;
        // Unless the others declared this node dead meanwhile: its lease says so.
        void this.renewLease(true).then((fenced) => {
          if (fenced) return;
          this.heartbeat();
          this.announceAll();
          // Announcements were missed meanwhile: everyone tells its sessions again.
          this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'sync' });
        });
      }
    }
  }

  private publish(subject: string, body: unknown): void {
    if (!this.nc || this.nc.isClosed()) return;
    try {
      this.nc.publish(subject, encode(body));
    } catch (err) {
      this.log.warn('cluster: publish failed', { subject, error: err instanceof Error ? err.message : String(err) });
    }
  }

  // ---- membership ----

  private heartbeatBody(): Heartbeat {
    // The group chat module makes its key after the node joined: told once it is there.
    if (Object.keys(this.keys).length < 2 && this.ctx) this.keys = ownFingerprints(this.ctx.config.dataDir);
    return { node: this.node, epoch: this.epoch, startedAt: this.startedAt, sessions: this.registry.size, components: [...this.localComponents], keys: this.keys, lease: this.leases?.held, frames: true };
  }

  private heartbeat(): void {
    this.publish(this.subjects.heartbeat, this.heartbeatBody());
    if (this.connected) this.leases?.beat();
  }

  private tick(): void {
    if (this.leaving || this.fencing) return;
    // The heartbeat follows the lease's renewal, so that it tells the revision the others compare
    // (fencing.ts); while a renewal is slow, it goes without waiting.
    if (this.leases?.busy) this.heartbeat();
    else {
      void this.renewLease().then((fenced) => {
        if (!fenced && !this.leaving && !this.fencing) this.heartbeat();
      });
    }
    const now = Date.now();
    // While this node cannot reach NATS it hears nobody, which says nothing about the others.
    if (!this.connected) return;
    for (const p of this.peers.values()) {
      if (p.state === 'up' && now - p.lastSeen > this.config.failureTimeout) void this.suspect(p);
    }
    this.shared?.tick();
  }

  /** Renews this node's lease; true when it found it taken (and the node is being fenced). */
  private async renewLease(fresh = false): Promise<boolean> {
    if (!this.leases) return false;
    const r = await this.leases.renew(fresh);
    if (r !== 'fenced') return false;
    void this.fence();
    return true;
  }

  /** A peer silent for failureTimeout: dead once its lease is taken (fencing.ts); alive if it renewed it. */
  private async suspect(p: Peer): Promise<void> {
    if (p.suspected || !this.leases) {
      if (!this.leases) await this.declareDead(p, 'no heartbeat', null);
      return;
    }
    p.suspected = true;
    try {
      const verdict = await this.leases.claim(p.name, p.epoch, p.leaseRev);
      if (this.peers.get(p.name) !== p || p.state !== 'up') return;
      if (!verdict.dead) {
        // Renewed since its last heartbeat heard: alive, its heartbeats are late (or lost). Unreadable: asked again next tick.
        if (verdict.revision !== null) {
          p.leaseRev = verdict.revision;
          p.lastSeen = Date.now();
          this.log.info('cluster: a node not heard lately renewed its lease: not declared dead', { peer: p.name });
        }
        return;
      }
      // That run is over: what it still sends (it was paused, or cut off) is not a node coming back;
      // it comes back as a new run once it learnt it was fenced.
      if (verdict.recover !== null) this.departed.add(`${p.name}/${p.epoch}`);
      await this.declareDead(p, 'no heartbeat', verdict.recover);
    } finally {
      p.suspected = false;
    }
  }

  /** Whether the run `NODE/EPOCH` is this one or a living peer's (a journal claim of a dead run passes on). */
  private runAlive(holder: string): boolean {
    if (holder === `${this.node}/${this.epoch}`) return true;
    for (const p of this.peers.values()) if (p.state === 'up' && `${p.name}/${p.epoch}` === holder) return true;
    return false;
  }

  /**
   * The others declared this node dead (it was cut off from NATS, or paused, for longer than
   * failureTimeout): they ended its sessions for their contacts and route its journal. It closes its
   * client streams (the clients connect again and meet a consistent state), ends its group chat
   * rooms (they moved), and joins again as a new run; what its sessions had written since the
   * others read its journal is routed again from the journal, not twice from memory.
   */
  private async fence(): Promise<void> {
    const journal = this.journal;
    const leases = this.leases;
    if (this.fencing || this.leaving || !journal || !leases || !this.recovery) return;
    this.fencing = true;
    try {
      this.log.warn('cluster: this node was declared dead by the others (cut off or paused longer than failureTimeout): closing its client streams and joining again', { sessions: this.registry.size });
      const handovers = Promise.all([...this.leaveHandlers].map((h) => h().catch((err) => this.log.warn('cluster: handover failed', { error: String(err).slice(0, 200) }))));
      await Promise.race([handovers, new Promise((r) => setTimeout(r, this.config.deliveryTimeout).unref())]);
      const sessions = [...this.registry.all()];
      const old = this.epoch;
      this.ownEpochs.add(old);
      this.epoch = randomBytes(6).toString('hex');
      journal.setEpoch(this.epoch);
      journal.fenced = true;
      try {
        for (const s of sessions) s.close('system-shutdown', 'this server node was cut off from its cluster; connect again');
      } finally {
        journal.fenced = false;
      }
      for (;;) {
        try {
          await leases.rejoin(this.epoch);
          break;
        } catch (err) {
          if (this.leaving || this.stopping) return;
          this.log.warn('cluster: cannot take a new lease, trying again', { error: err instanceof Error ? err.message : String(err) });
          await new Promise((r) => setTimeout(r, 500).unref());
        }
      }
      this.heartbeat();
      this.announceAll();
      this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'sync' });
      this.membershipChanged();
      void this.recovery.recover(journal.unit(this.node, old));
    } finally {
      this.fencing = false;
    }
  }

  /** The peer as a message from `node`/`epoch` shows it; a new epoch is a restart, which ends the old run's sessions. */
  private peer(node: string, epoch: string): Peer | null {
    if (node === this.node || this.departed.has(`${node}/${epoch}`)) return null;
    let p = this.peers.get(node);
    if (p && p.epoch !== epoch) {
      if (p.state === 'up') void this.declareDead(p, 'restarted', null);
      this.peers.delete(node);
      p = undefined;
    }
    if (!p) {
      p = { name: node, epoch, startedAt: '', lastSeen: Date.now(), state: 'up', sessions: 0, components: new Set(), told: null, frames: false };
      this.peers.set(node, p);
      this.log.info('cluster: node joined', { peer: node });
      // It knows nothing of ours yet.
      this.scheduleAnnounceAll();
      this.membershipChanged();
    }
    return p;
  }

  private onHeartbeat(hb: Heartbeat & { leaving?: boolean }): void {
    if (hb.node === this.node) {
      if (hb.epoch !== this.epoch && !hb.leaving && !this.ownEpochs.has(hb.epoch)) {
        this.nameTaken = true;
        this.log.error('cluster: another process uses this node name', { node: this.node });
      }
      return;
    }
    if (hb.leaving) {
      const p = this.peers.get(hb.node);
      if (p && p.epoch === hb.epoch) this.forgetPeer(p, 'left');
      return;
    }
    const file = mismatch(this.keys, hb.keys);
    if (file) {
      // The node that differs from a running one refuses to join (start); a running node ignores it.
      if (!this.joined) this.refusal ??= mismatchError(this.ctx?.config.dataDir ?? '.', file, hb.node, this.node);
      else if (!this.mismatchLogged.has(`${hb.node}/${hb.epoch}`)) {
        this.mismatchLogged.add(`${hb.node}/${hb.epoch}`);
        this.log.error('cluster: a node with another secret file tried to join (it refuses to)', { peer: hb.node, file });
      }
      return;
    }
    const p = this.peer(hb.node, hb.epoch);
    if (!p) return;
    if (p.state === 'dead') this.revive(p);
    p.lastSeen = Date.now();
    p.startedAt = hb.startedAt;
    if (hb.lease !== undefined) p.leaseRev = hb.lease;
    p.sessions = hb.sessions;
    p.frames = hb.frames === true;
    this.syncComponents(p, new Set(hb.components));
  }

  /** Declared dead but alive after all (NATS or the network was away for it): both sides tell their sessions again. */
  private revive(p: Peer): void {
    p.state = 'up';
    this.log.info('cluster: node heard again', { peer: p.name });
    this.membershipChanged();
    this.scheduleAnnounceAll();
    this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'sync' });
  }

  /**
   * `recover`: whether this node routes the dead run's journal (it took its lease); null for a node
   * without a lease (before fencing) or a restart, decided by ownerOf as before.
   */
  private async declareDead(p: Peer, why: string, recover: boolean | null): Promise<void> {
    if (p.state === 'dead') return;
    p.state = 'dead';
    this.membershipChanged();
    const gone = [...this.registry.remoteSessions()].filter((s) => s.node === p.name);
    this.log.warn('cluster: node declared dead', { peer: p.name, why, sessions: gone.length });
    this.syncComponents(p, new Set());
    for (const s of gone) this.registry.removeRemote(s);
    // A restarted node routes its previous run's journal itself (at its start); a dead run's is routed
    // by the node that took its lease, which also goes on with the journals that run was routing.
    const owner = this.ownerOf('sm-journal', p.name) === this.node;
    const recovery = this.recovery;
    if (recovery && journalOf(why, recover, owner)) {
      if (recover === null && p.leaseRev === undefined) void recovery.recoverRuns(p.name, () => true);
      else void recovery.recover(this.journal!.unit(p.name, p.epoch));
    }
    if (recovery && (recover === true || (recover === null && owner))) void recovery.adopt(`${p.name}/${p.epoch}`);
    for (const s of gone) {
      if (s.available || s.directedPresence.size > 0) await this.unavailableOnBehalf(s).catch((err) => this.log.warn('cluster: unavailable presence on behalf failed', { error: String(err) }));
    }
  }

  /**
   * One record of a stream management journal (a dead node's, or this node's previous run's): the
   * message its client had not acknowledged is routed again as for a session that ended (XEP-0198
   * section 4): another resource of the account, or offline storage, with the delay of its first
   * sending. Throws when it could not be routed or stored (journal-recovery.ts tries again).
   */
  private async routeAgain(r: JournalRecord): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) throw new Error('the node is not running');
    const el = parseXmlText(r.data, NS.client);
    const to = Jid.tryParse(el?.attrs.to);
    if (!el || !to) return;
    const from = Jid.tryParse(el.attrs.from) ?? Jid.parse(to.domain);
    if (!el.getChildren('delay', NS.delay).some((d) => d.attrs.from === to.domain)) el.append(x('delay', { xmlns: NS.delay, from: to.domain, stamp: r.at }));
    await ctx.router.route(el, from, { kind: 'server' });
  }

  /** A node that stopped cleanly: its sessions told their contacts; any still listed end here on its behalf. */
  private forgetPeer(p: Peer, why: string): void {
    this.peers.delete(p.name);
    this.departed.add(`${p.name}/${p.epoch}`);
    this.membershipChanged();
    const left = [...this.registry.remoteSessions()].filter((s) => s.node === p.name);
    this.log.info('cluster: node left', { peer: p.name, why, sessions: left.length });
    this.syncComponents(p, new Set());
    for (const s of left) this.registry.removeRemote(s);
    for (const s of left) if (s.available || s.directedPresence.size > 0) void this.unavailableOnBehalf(s).catch((err) => this.log.warn('cluster: unavailable presence on behalf failed', { error: String(err) }));
  }

  /** The living node with the first name: does what one node must do for all (presence to other domains). */
  private isFirstAlive(): boolean {
    for (const p of this.peers.values()) if (p.state === 'up' && p.name < this.node) return false;
    return true;
  }

  /**
   * A session of a dead node ends for its contacts (RFC 6121 4.5.2 on its behalf): each node tells
   * its own sessions of contacts and of the account's other resources; the first living node also
   * tells contacts on other domains.
   */
  private async unavailableOnBehalf(session: RemoteSession): Promise<void> {
    const ctx = this.ctx;
    if (!ctx) return;
    const presence = x('presence', { type: 'unavailable', from: session.jid.full });
    const to = (target: string) => {
      const copy = presence.clone();
      copy.attrs.to = target;
      return copy;
    };
    const first = this.isFirstAlive();
    const reached = new Set<string>();
    if (session.available) {
      const account = await ctx.storage.accounts.get(session.jid.local, session.jid.domain);
      const items = account ? await ctx.storage.roster.list(account.id) : [];
      for (const item of items) {
        if (item.subscription !== 'from' && item.subscription !== 'both') continue;
        const contact = Jid.tryParse(item.jid);
        if (!contact) continue;
        reached.add(contact.bare);
        if (ctx.router.isLocalHost(contact.domain)) {
          for (const s of this.registry.localOfAccount(contact.bare)) if (s.available) s.send(to(s.jid.full));
        } else if (first) {
          await ctx.router.send(to(item.jid));
        }
      }
    }
    // Directed presence outside the roster (RFC 6121 4.6.3): as the presence module does for a
    // session that ends, each target once (a bare JID covers its resources).
    for (const target of session.directedPresence) {
      const jid = Jid.tryParse(target);
      if (!jid || reached.has(jid.bare) || (jid.resource && session.directedPresence.has(jid.bare))) continue;
      if (ctx.router.isLocalHost(jid.domain)) {
        const here = jid.resource ? [this.registry.localSession(jid.full)] : this.registry.localOfAccount(jid.bare);
        for (const s of here) if (s) s.send(to(s.jid.full));
      } else if (first) {
        await ctx.router.send(to(target));
      }
    }
    if (!session.available) return;
    for (const s of this.registry.localOfAccount(session.jid.bare)) if (s.available) s.send(to(s.jid.full));
  }

  // ---- this node's sessions, announced ----

  private entry(s: BoundSession): SessionEntry {
    return {
      jid: s.jid.full,
      id: s.id,
      startedAt: s.startedAt.getTime(),
      available: s.available,
      priority: s.priority,
      presence: s.presence ? s.presence.toString() : null,
      interested: s.interested,
      capabilities: s.capabilities ? [...s.capabilities] : null,
      flags: s.flagNames(),
      directed: s.directedPresence.size > 0 ? [...s.directedPresence] : undefined,
    };
  }

  up(session: BoundSession): void {
    this.dirty.delete(session);
    this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'up', session: this.entry(session) });
  }

  /** Several changes in one turn of the event loop (presence, then priority) go out as one announcement. */
  changed(session: BoundSession): void {
    if (this.dirty.size === 0) queueMicrotask(() => this.flushChanges());
    this.dirty.add(session);
  }

  private flushChanges(): void {
    for (const s of this.dirty) if (!s.ended) this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'up', session: this.entry(s) });
    this.dirty.clear();
  }

  down(session: ClientSession): void {
    this.dirty.delete(session as BoundSession);
    this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'down', jid: session.jid.full, id: session.id });
  }

  private announceAll(): void {
    const batch = randomBytes(4).toString('hex');
    let part: SessionEntry[] = [];
    let bytes = 0;
    const send = (last: boolean) => {
      this.publish(this.subjects.sessions, { node: this.node, epoch: this.epoch, op: 'all', sessions: part, batch, last });
      part = [];
      bytes = 0;
    };
    for (const s of this.registry.all()) {
      const e = this.entry(s as BoundSession);
      bytes += JSON.stringify(e).length;
      part.push(e);
      if (bytes > ALL_PART_BYTES) send(false);
    }
    send(true);
  }

  private scheduleAnnounceAll(): void {
    if (this.announceAllSoon) return;
    this.announceAllSoon = setTimeout(() => {
      this.announceAllSoon = null;
      this.announceAll();
    }, 20);
    this.announceAllSoon.unref();
  }

  private onAnnouncement(a: SessionAnnouncement): void {
    if (a.node === this.node) return;
    const p = this.peer(a.node, a.epoch);
    if (!p) return;
    p.lastSeen = Date.now();
    if (p.state === 'dead') this.revive(p);
    if (a.op === 'sync') this.scheduleAnnounceAll();
    else if (a.op === 'up') this.remoteUp(p, a.session);
    else if (a.op === 'down') {
      const s = this.registry.remoteSession(a.jid);
      if (s && s.node === p.name && s.id === a.id) this.registry.removeRemote(s);
    } else if (a.op === 'all') {
      if (p.told?.batch !== a.batch) p.told = { batch: a.batch, jids: new Set() };
      for (const e of a.sessions) {
        p.told.jids.add(e.jid);
        this.remoteUp(p, e);
      }
      if (!a.last) return;
      const listed = p.told.jids;
      p.told = null;
      for (const s of [...this.registry.remoteSessions()]) if (s.node === p.name && !listed.has(s.jid.full)) this.registry.removeRemote(s);
    }
  }

  private storedOffline(bare: string): void {
    const now = Date.now();
    this.recentlyStored.delete(bare);
    this.recentlyStored.set(bare, now);
    // Oldest first: drop what is older than the window, and keep the map bounded.
    for (const [k, t] of this.recentlyStored) {
      if (now - t <= STORED_WINDOW_MS && this.recentlyStored.size <= MAX_RECENTLY_STORED) break;
      this.recentlyStored.delete(k);
    }
  }

  /**
   * A resource on another node became available: if this node stored offline messages for its
   * account a moment ago, that node's delivery at initial presence may have run before they were
   * written, so it is asked to deliver what is stored once more.
   */
  private becameAvailable(session: RemoteSession): void {
    const at = this.recentlyStored.get(session.jid.bare);
    if (at === undefined || Date.now() - at > STORED_WINDOW_MS) return;
    this.publish(this.subjects.stored(session.node), { jid: session.jid.full });
  }

  deliverStoredThere(session: ClientSession): boolean {
    if (!(session instanceof RemoteSession)) return false;
    this.publish(this.subjects.stored(session.node), { jid: session.jid.full });
    return true;
  }

  private onStored(m: { jid: string }): void {
    // Possibly declared dead already (fencing.ts): its clients are about to be told to reconnect, and
    // what is stored waits for them there instead of reaching a session the others gave up on.
    if (this.leases?.trusted() === false) return;
    const session = this.registry.localSession(m.jid);
    if (session) void this.ctx?.hooks.emit('session/stored-messages', { session });
  }

  private remoteUp(p: Peer, e: SessionEntry): void {
    const existing = this.registry.remoteSession(e.jid);
    if (existing && existing.node === p.name && existing.id === e.id) {
      const was = existing.available;
      existing.update(e);
      if (!was && existing.available) this.becameAvailable(existing);
      return;
    }
    const mine = this.registry.localSession(e.jid);
    if (mine) {
      // Bound on both nodes at once: the newer session keeps the resource (RFC 6120 7.7.2.2), the
      // older is closed with a conflict by the node that holds it. Both nodes decide alike.
      const mineNewer = mine.startedAt.getTime() > e.startedAt || (mine.startedAt.getTime() === e.startedAt && this.node > p.name);
      if (mineNewer) return;
      mine.close('conflict', 'replaced by a new session for the same resource');
    }
    const session = new RemoteSession(p.name, e, this);
    this.registry.addRemote(session);
    if (session.available) this.becameAvailable(session);
  }

  // ---- stanzas to sessions on other nodes (stanza-crossing.ts) ----

  send(session: RemoteSession, stanza: Element): void {
    this.crossing.send(session, stanza);
  }

  close(session: RemoteSession, condition?: string, text?: string): void {
    this.registry.removeRemote(session);
    // What was sent to the session before goes first.
    this.crossing.flushTo(session.node);
    this.publish(this.subjects.close(session.node), { jid: session.jid.full, sid: session.id, condition, text } satisfies CloseSession);
  }

  private onClose(m: CloseSession): void {
    const s = this.registry.localSession(m.jid);
    if (s && s.id === m.sid) s.close(m.condition, m.text);
  }

  // ---- components ----

  componentLink(domain: string, up: boolean): void {
    if (up) this.localComponents.add(domain);
    else this.localComponents.delete(domain);
    this.heartbeat();
    if (!up) {
      // Linked on another node meanwhile? Route there.
      for (const p of this.peers.values()) if (p.state === 'up' && p.components.has(domain)) this.ctx?.router.setComponentLink(domain, new RemoteComponentLink(p.name, domain, this), true);
    }
  }

  private syncComponents(p: Peer, now: Set<string>): void {
    const router = this.ctx?.router;
    if (!router) return;
    const configured = new Set(router.componentDomains());
    for (const d of p.components) {
      if (now.has(d)) continue;
      const link = router.componentLink(d);
      if (link instanceof RemoteComponentLink && link.node === p.name) router.setComponentLink(d, null, true);
    }
    for (const d of now) {
      if (!configured.has(d) || this.localComponents.has(d)) continue;
      const link = router.componentLink(d);
      if (!(link instanceof RemoteComponentLink && link.node === p.name)) router.setComponentLink(d, new RemoteComponentLink(p.name, d, this), true);
    }
    p.components = now;
  }

  toComponent(node: string, domain: string, stanza: Element): void {
    this.publish(this.subjects.component(node), { domain, xml: stanza.toString() } satisfies ComponentStanza);
  }

  private onComponentStanza(m: ComponentStanza): void {
    const link = this.ctx?.router.componentLink(m.domain);
    const el = parseXmlText(m.xml, NS.client);
    if (!link || link instanceof RemoteComponentLink || !el) {
      this.log.debug('cluster: stanza for a component not linked here', { domain: m.domain });
      return;
    }
    link.send(el);
  }

  // ---- IQ answers to another node's requests ----

  forwardAnswer(stanza: Element, from: Jid, to: Jid): boolean {
    const id = stanza.attrs.id;
    if (!id || !id.startsWith('gh-')) return false;
    const colon = id.indexOf(':');
    if (colon < 0) return false;
    const node = id.slice(3, colon);
    if (node === this.node) return false;
    this.publish(this.subjects.answer(node), { xml: stanza.toString(), from: from.full, to: to.full });
    return true;
  }

  private onAnswer(m: { xml: string; from: string; to: string }): void {
    const el = parseXmlText(m.xml, NS.client);
    const from = Jid.tryParse(m.from);
    const to = Jid.tryParse(m.to);
    if (el && from && to) this.ctx?.router.resolvePending(el, from, to);
  }

  // ---- the service ----

  status(): ClusterStatus {
    const now = Date.now();
    const nodes = [
      { name: this.node, self: true, state: 'up' as const, sessions: this.registry.size, components: [...this.localComponents].sort(), lastSeenMs: 0, startedAt: this.startedAt },
      ...[...this.peers.values()].map((p) => ({
        name: p.name,
        self: false,
        state: p.state,
        sessions: p.sessions,
        components: [...p.components].sort(),
        lastSeenMs: now - p.lastSeen,
        startedAt: p.startedAt,
      })),
    ].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    const server = this.nc && !this.nc.isClosed() ? this.nc.getServer() : null;
    return { node: this.node, nats: { connected: this.connected, server, reconnects: this.reconnects }, nodes, tasks: this.shared?.tasks() ?? [] };
  }

  sessionsOnline(): number {
    let n = this.registry.size;
    for (const p of this.peers.values()) if (p.state === 'up') n += p.sessions;
    return n;
  }

  count(kind: string, key: string, windowMs: number): Promise<number> {
    return this.shared ? this.shared.count(kind, key, windowMs, true) : Promise.resolve(1);
  }

  peek(kind: string, key: string, windowMs: number): Promise<number> {
    return this.shared ? this.shared.count(kind, key, windowMs, false) : Promise.resolve(0);
  }

  holds(task: string): boolean {
    return this.shared?.holds(task) ?? false;
  }

  ownerOf(service: string, key: string): string {
    const score = (node: string) => createHash('sha1').update(`${service}\u0000${key}\u0000${node}`).digest().readUInt32BE(0);
    let best = this.node;
    let bestScore = score(this.node);
    for (const p of this.peers.values()) {
      if (p.state !== 'up') continue;
      const sc = score(p.name);
      if (sc > bestScore || (sc === bestScore && p.name < best)) {
        best = p.name;
        bestScore = sc;
      }
    }
    return best;
  }

  forward(node: string, service: string, stanza: Element, from: Jid, to: Jid, untaken?: () => void): void {
    if (!untaken) return this.publish(this.subjects.service(node), { service, xml: stanza.toString(), from: from.full, to: to.full } satisfies ServiceStanza);
    void this.forwardConfirmed(node, service, stanza, from, to).then((taken) => {
      if (taken) return;
      this.log.info('cluster: a stanza for a service not taken by its node', { peer: node, service });
      this.guard('service fallback', untaken);
    });
  }

  /**
   * A request on `P.node.NAME.served`, answered once the service there took the stanza. Not taken:
   * not served there (not loaded yet, held back, stopping, its lease in doubt), no answer within
   * deliveryTimeout, or nobody listening (a node that died). A node of the version before
   * confirmations (a rolling restart) does not listen there: it gets the stanza on the old subject
   * and takes it without answering (its silence counts as taken).
   */
  forwardConfirmed(node: string, service: string, stanza: Element, from: Jid, to: Jid): Promise<boolean> {
    const nc = this.nc;
    if (!nc || nc.isClosed()) return Promise.resolve(false);
    const data = encode({ service, xml: stanza.toString(), from: from.full, to: to.full } satisfies ServiceStanza);
    const timeout = this.config.deliveryTimeout;
    try {
      return nc.request(this.subjects.served(node), data, { timeout }).then(
        (reply) => text(reply.data) === TAKEN,
        (err: unknown) => {
          if (!isNoResponders(err)) return false;
          return nc.request(this.subjects.service(node), data, { timeout }).then(
            (reply) => text(reply.data) !== NOT_SERVED,
            (again: unknown) => !isNoResponders(again),
          );
        },
      );
    } catch {
      return Promise.resolve(false);
    }
  }

  get failureTimeout(): number {
    return this.config.failureTimeout;
  }

  serve(service: string, handler: (stanza: Element, from: Jid, to: Jid) => void): () => void {
    this.services.set(service, handler);
    return () => {
      if (this.services.get(service) === handler) this.services.delete(service);
    };
  }

  invalidate(topic: string, key: string): void {
    this.publish(this.subjects.invalidate, { node: this.node, topic, key });
  }

  onInvalidate(topic: string, handler: (key: string) => void): () => void {
    let set = this.invalidations.get(topic);
    if (!set) this.invalidations.set(topic, (set = new Set()));
    set.add(handler);
    return () => set.delete(handler);
  }

  private onInvalidation(m: { node: string; topic: string; key: string }): void {
    if (m.node === this.node) return;
    for (const handler of this.invalidations.get(m.topic) ?? []) handler(m.key);
  }

  ask(topic: string, body: unknown): Promise<{ node: string; answer: unknown }[]> {
    const own = this.answerers.get(topic);
    const mine = own ? Promise.resolve(own(body)).then((answer) => [{ node: this.node, answer }]) : Promise.resolve([]);
    const nc = this.nc;
    const others = [...this.peers.values()]
      .filter((p) => p.state === 'up')
      .map((p) =>
        !nc || nc.isClosed()
          ? Promise.resolve([])
          : nc.request(this.subjects.ask(p.name), encode({ topic, body }), { timeout: this.config.deliveryTimeout }).then(
              (reply) => {
                const r = decode<{ answer?: unknown }>(reply.data);
                return 'answer' in r ? [{ node: p.name, answer: r.answer }] : [];
              },
              () => [],
            ),
      );
    return Promise.all([mine, ...others]).then((parts) => parts.flat());
  }

  answer(topic: string, handler: (body: unknown) => unknown): () => void {
    this.answerers.set(topic, handler);
    return () => {
      if (this.answerers.get(topic) === handler) this.answerers.delete(topic);
    };
  }

  private async onAsk(msg: Msg): Promise<void> {
    const m = decode<{ topic: string; body: unknown }>(msg.data);
    const handler = this.answerers.get(m.topic);
    if (!msg.reply) return;
    if (!handler) {
      msg.respond(encode({}));
      return;
    }
    try {
      msg.respond(encode({ answer: await handler(m.body) }));
    } catch (err) {
      this.log.warn('cluster: answering a question failed', { topic: m.topic, error: String(err).slice(0, 200) });
      msg.respond(encode({}));
    }
  }

  onMembership(handler: () => void): () => void {
    this.membershipHandlers.add(handler);
    return () => this.membershipHandlers.delete(handler);
  }

  onLeave(handler: () => Promise<void>): () => void {
    this.leaveHandlers.add(handler);
    return () => this.leaveHandlers.delete(handler);
  }

  /** Several changes close together (a restart: dead, then joined) reach the handlers once. */
  private membershipChanged(): void {
    if (this.membershipSoon || this.leaving) return;
    this.membershipSoon = setTimeout(() => {
      this.membershipSoon = null;
      if (this.leaving) return;
      for (const h of this.membershipHandlers) this.guard('membership', () => h());
    }, 10);
    this.membershipSoon.unref();
  }

  /** Whether the service took the stanza. */
  private takeServiceStanza(m: ServiceStanza): boolean {
    const handler = this.services.get(m.service);
    const el = parseXmlText(m.xml, NS.client);
    const from = Jid.tryParse(m.from);
    const to = Jid.tryParse(m.to);
    if (!handler || !el || !from || !to) {
      this.log.warn('cluster: a stanza for a service not served here', { service: m.service });
      return false;
    }
    handler(el, from, to);
    return true;
  }

  /** A stanza forwarded without confirmation (forward without `untaken`), or the request of a node's fallback for older nodes. */
  private onServiceStanza(msg: Msg): void {
    const taken = this.takeServiceStanza(decode<ServiceStanza>(msg.data));
    if (msg.reply) msg.respond(taken ? TAKEN : NOT_SERVED);
  }

  /** A service stanza whose sender waits to know whether it was taken (forwardConfirmed). */
  private onServed(msg: Msg): void {
    // Possibly declared dead already (fencing.ts): what it owned may have moved; the sender decides
    // again (a room's new owner) or handles the stanza itself (its own s2s link).
    const taken = this.leases?.trusted() !== false && this.takeServiceStanza(decode<ServiceStanza>(msg.data));
    if (msg.reply) msg.respond(taken ? TAKEN : NOT_SERVED);
  }
}

/** Whether this node routes the journal of a run declared dead (see declareDead). */
function journalOf(why: string, recover: boolean | null, owner: boolean): boolean {
  if (why === 'restarted') return false;
  return recover ?? owner;
}
