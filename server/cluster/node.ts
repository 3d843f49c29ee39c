/**
 * One node of a cluster: its NATS connection and the facade the core and the modules use
 * (ClusterRouting, ClusterService, and the registry's RemoteSessionLink and LocalSessionEvents).
 * The work is done by its parts, each behind a narrow host interface: membership.ts (the other
 * nodes, heartbeats, failure detection, fencing), announcements.ts (the session announcements that
 * keep the registry's stand-ins true), stanza-crossing.ts (stanzas to sessions on other nodes),
 * services.ts (services owned per node, questions, invalidations), components.ts and
 * stored-offline.ts. docs/architecture.md ("Cluster") tells what crosses and why.
 */
import { connect, type NatsConnection, type Msg } from '@nats-io/transport-node';
import type { Jid } from '../../shared/jid.js';
import type { Element } from '../../shared/xml/element.js';
import type { Logger } from '../../shared/logger.js';
import type { ServerContext } from '../core/context.js';
import type { ClusterRouting, ClusterService, ClusterStatus } from '../core/cluster.js';
import type { BoundSession, ClientSession } from '../core/session.js';
import { decode, encode, subjects, type CloseSession, type ComponentStanza, type Heartbeat, type SessionAnnouncement, type Subjects } from './protocol.js';
import { ClusterSessionRegistry, type LocalSessionEvents } from './registry.js';
import type { RemoteSession, RemoteSessionLink } from './remote-session.js';
import { SharedState } from './shared-state.js';
import { ownFingerprints } from './fingerprints.js';
import { SmJournal } from './sm-journal.js';
import { StanzaCrossing } from './stanza-crossing.js';
import { NodeLeases } from './fencing.js';
import { JournalRecovery } from './journal-recovery.js';
import { routeAgain } from './journal-routing.js';
import { Membership } from './membership.js';
import { Announcements } from './announcements.js';
import { NodeServices } from './services.js';
import { Components } from './components.js';
import { StoredOffline } from './stored-offline.js';
import type { ClusterConfig } from './types.js';

export class ClusterNode implements ClusterRouting, ClusterService, RemoteSessionLink, LocalSessionEvents {
  readonly node: string;
  readonly registry: ClusterSessionRegistry;
  readonly iqIdPrefix: string;
  private readonly subjects: Subjects;
  private nc: NatsConnection | null = null;
  private ctx: ServerContext | null = null;
  private shared: SharedState | null = null;
  private journal: SmJournal | null = null;
  private leases: NodeLeases | null = null;
  private recovery: JournalRecovery | null = null;
  private timer: NodeJS.Timeout | null = null;
  private connected = false;
  private reconnects = 0;
  private stopping = false;
  private leaving = false;
  private readonly membership: Membership;
  private readonly announcements: Announcements;
  private readonly services: NodeServices;
  private readonly components: Components;
  private readonly stored: StoredOffline;
  private readonly crossing: StanzaCrossing;

  constructor(
    private readonly config: ClusterConfig,
    private readonly log: Logger,
  ) {
    this.node = config.node;
    this.subjects = subjects(config.prefix);
    this.iqIdPrefix = `gh-${config.node}:`;
    this.registry = new ClusterSessionRegistry(this);
    const base = {
      node: this.node,
      registry: this.registry,
      context: () => this.ctx,
      publish: (subject: string, body: unknown) => this.publish(subject, body),
      connection: () => this.nc,
      leases: () => this.leases,
      guard: (what: string, fn: () => void | Promise<void>) => this.guard(what, fn),
    };
    this.membership = new Membership(
      {
        ...base,
        get localComponents() {
          return components.localComponents;
        },
        journal: () => this.journal,
        recovery: () => this.recovery,
        shared: () => this.shared,
        connected: () => this.connected,
        leaving: () => this.leaving,
        stopping: () => this.stopping,
        syncComponents: (p, now) => this.components.syncComponents(p, now),
        announceAll: () => this.announcements.announceAll(),
        scheduleAnnounceAll: () => this.announcements.scheduleAnnounceAll(),
        ownerOf: (service, key) => this.services.ownerOf(service, key),
      },
      config,
      this.subjects,
      log,
    );
    const membership = this.membership;
    const components = new Components({ ...base, peers: membership.peers, heartbeat: () => membership.heartbeat() }, this.subjects, log);
    this.components = components;
    this.services = new NodeServices({ ...base, peers: membership.peers }, config, this.subjects, log);
    this.stored = new StoredOffline(base, this.subjects);
    this.announcements = new Announcements(
      {
        ...base,
        get epoch() {
          return membership.epoch;
        },
        link: this,
        peer: (node, epoch) => membership.peer(node, epoch),
        revive: (p) => membership.revive(p),
        becameAvailable: (session) => this.stored.becameAvailable(session),
      },
      this.subjects,
    );
    this.crossing = new StanzaCrossing(
      {
        node: this.node,
        // The first run's, on purpose: it names the crossing's delivery ids, which go on after a
        // fence gives the node a new run, so confirmations of what was sent before still match.
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

  /** This run: a new one when the node was declared dead and joins again (membership.ts, fence). */
  get epoch(): string {
    return this.membership.epoch;
  }

  private get peers() {
    return this.membership.peers;
  }

  private get localComponents() {
    return this.components.localComponents;
  }

  /** Joins the cluster: connects to NATS, listens, announces this node. Throws when NATS cannot be reached. */
  async start(ctx: ServerContext): Promise<void> {
    this.ctx = ctx;
    this.membership.keys = ownFingerprints(ctx.config.dataDir);
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
    on(s.heartbeat, 'heartbeat', (msg) => this.membership.onHeartbeat(decode<Heartbeat & { leaving?: boolean }>(msg.data)));
    on(s.sessions, 'announcement', (msg) => this.announcements.onAnnouncement(decode<SessionAnnouncement>(msg.data)));
    this.crossing.listen(on);
    on(s.close(this.node), 'close', (msg) => this.onClose(decode<CloseSession>(msg.data)));
    on(s.stored(this.node), 'stored', (msg) => this.stored.onStored(decode<{ jid: string }>(msg.data)));
    on(s.component(this.node), 'component', (msg) => this.components.onComponentStanza(decode<ComponentStanza>(msg.data)));
    on(s.answer(this.node), 'answer', (msg) => this.services.onAnswer(decode<{ xml: string; from: string; to: string }>(msg.data)));
    on(s.service(this.node), 'service', (msg) => this.services.onServiceStanza(msg));
    on(s.served(this.node), 'served', (msg) => this.services.onServed(msg));
    on(s.ask(this.node), 'ask', (msg) => this.services.onAsk(msg));
    on(s.invalidate, 'invalidate', (msg) => this.services.onInvalidation(decode<{ node: string; topic: string; key: string }>(msg.data)));
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
    if (this.membership.nameTaken) throw new Error(`cluster: the node name ${JSON.stringify(this.node)} is in use by a running node (cluster.node must be unique)`);
    if (this.membership.refusal) throw this.membership.refusal;
    // Taken only now: a process under a running node's name must not take that node's lease.
    this.leases = new NodeLeases(nc, this.config.prefix, this.node, this.epoch, this.config.failureTimeout, this.log);
    await this.leases.open();
    const leases = this.leases;
    this.recovery = new JournalRecovery(this.journal, leases, (r) => routeAgain(this.ctx, r), (holder) => this.membership.runAlive(holder), this.log);
    this.membership.joined = true;
    ctx.router.cluster = this;
    ctx.services.provide('cluster', this);
    // What the other nodes cache about an account (its row, its lists) goes with it, and a new
    // account under a name deleted before must not meet the old cached data either.
    ctx.hooks.on('account/deleted', ({ jid }) => this.invalidate('account', jid.bare), 'observe');
    // A message stored offline here while the user's resource was coming online elsewhere: see remoteUp.
    ctx.hooks.on('message/offline', ({ to }) => void this.stored.storedOffline(to.bare), 'observe');
    ctx.hooks.on('account/created', ({ jid }) => this.invalidate('account', jid.bare), 'observe');
    await nc.flush();
    this.membership.heartbeat();
    this.announcements.announceAll();
    this.timer = setInterval(() => this.membership.tick(), this.config.heartbeatInterval);
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
    this.announcements.stop();
    if (!this.nc || this.nc.isClosed()) return;
    // Modules hand over what they own (group chat rooms) while stanzas still cross.
    const handovers = Promise.all([...this.membership.leaveHandlers].map((h) => h().catch((err) => this.log.warn('cluster: handover failed', { error: String(err).slice(0, 200) }))));
    await Promise.race([handovers, new Promise((r) => setTimeout(r, this.config.deliveryTimeout).unref())]);
    this.crossing.flush();
    this.announcements.flushChanges();
    this.publish(this.subjects.heartbeat, { ...this.membership.heartbeatBody(), leaving: true });
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
        void this.membership.renewLease(true).then((fenced) => {
          if (fenced) return;
          this.membership.heartbeat();
          this.announcements.announceAll();
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

  // ---- this node's sessions, announced (announcements.ts) ----

  up(session: BoundSession): void {
    this.announcements.up(session);
  }

  changed(session: BoundSession): void {
    this.announcements.changed(session);
  }

  down(session: ClientSession): void {
    this.announcements.down(session);
  }

  deliverStoredThere(session: ClientSession): boolean {
    return this.stored.deliverStoredThere(session);
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

  // ---- components (components.ts) ----

  componentLink(domain: string, up: boolean): void {
    this.components.componentLink(domain, up);
  }

  // ---- the service (services.ts, membership.ts) ----

  forwardAnswer(stanza: Element, from: Jid, to: Jid): boolean {
    return this.services.forwardAnswer(stanza, from, to);
  }

  status(): ClusterStatus {
    const now = Date.now();
    const nodes = [
      { name: this.node, self: true, state: 'up' as const, sessions: this.registry.size, components: [...this.localComponents].sort(), lastSeenMs: 0, startedAt: this.membership.startedAt },
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
    return this.services.ownerOf(service, key);
  }

  forward(node: string, service: string, stanza: Element, from: Jid, to: Jid, untaken?: () => void): void {
    this.services.forward(node, service, stanza, from, to, untaken);
  }

  forwardConfirmed(node: string, service: string, stanza: Element, from: Jid, to: Jid): Promise<boolean> {
    return this.services.forwardConfirmed(node, service, stanza, from, to);
  }

  get failureTimeout(): number {
    return this.config.failureTimeout;
  }

  serve(service: string, handler: (stanza: Element, from: Jid, to: Jid) => void): () => void {
    return this.services.serve(service, handler);
  }

  invalidate(topic: string, key: string): void {
    this.services.invalidate(topic, key);
  }

  onInvalidate(topic: string, handler: (key: string) => void): () => void {
    return this.services.onInvalidate(topic, handler);
  }

  ask(topic: string, body: unknown): Promise<{ node: string; answer: unknown }[]> {
    return this.services.ask(topic, body);
  }

  answer(topic: string, handler: (body: unknown) => unknown): () => void {
    return this.services.answer(topic, handler);
  }

  onMembership(handler: () => void): () => void {
    return this.membership.onMembership(handler);
  }

  onLeave(handler: () => Promise<void>): () => void {
    return this.membership.onLeave(handler);
  }
}
