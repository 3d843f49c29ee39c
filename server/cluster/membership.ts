/**
 * The other nodes of the cluster as this node knows them: heartbeats, a silent node suspected and
 * declared dead once its lease is taken (fencing.ts), a node heard again, one that left; this node
 * fenced when the others declared it dead; and the handlers told when the living nodes changed.
 */
import { randomBytes } from 'node:crypto';
import type { Logger } from '../../shared/logger.js';
import type { Heartbeat, Subjects } from './protocol.js';
import { mismatch, mismatchError, ownFingerprints, type Fingerprints } from './fingerprints.js';
import type { JournalRecovery } from './journal-recovery.js';
import { journalOf } from './journal-routing.js';
import type { NodeBasics, NodeLinks, Peer } from './node-host.js';
import { PresenceOnBehalf } from './on-behalf.js';
import type { RemoteSession } from './remote-session.js';
import type { SharedState } from './shared-state.js';
import type { SmJournal } from './sm-journal.js';
import type { ClusterConfig } from './types.js';

/** What the membership needs of its node. */
export interface MembershipHost extends Pick<NodeBasics, 'node' | 'registry' | 'context' | 'publish'>, NodeLinks {
  /** The domains of the components linked to this node (components.ts). */
  readonly localComponents: ReadonlySet<string>;
  journal(): SmJournal | null;
  recovery(): JournalRecovery | null;
  shared(): SharedState | null;
  /** Connected to NATS now. */
  connected(): boolean;
  leaving(): boolean;
  stopping(): boolean;
  /** Routes the domains of the components `p` has now to it (components.ts). */
  syncComponents(p: Peer, now: Set<string>): void;
  /** Tells the others all of this node's sessions now, or soon (announcements.ts). */
  announceAll(): void;
  scheduleAnnounceAll(): void;
  ownerOf(service: string, key: string): string;
}

export class Membership {
  /** This run: a new one when the node was declared dead and joins again (fence). */
  epoch = randomBytes(6).toString('hex');
  /** This node's earlier runs in this process: their heartbeats still on their way are not another process. */
  private readonly ownEpochs = new Set<string>();
  readonly startedAt = new Date().toISOString();
  readonly peers = new Map<string, Peer>();
  private fencing = false;
  nameTaken = false;
  /** This node's fingerprints of the files all nodes share, and why it must not join (another node's differ). */
  keys: Fingerprints = {};
  refusal: Error | null = null;
  joined = false;
  private readonly mismatchLogged = new Set<string>();
  /** Runs of nodes that left (`node/epoch`): what they still send is not a node joining. */
  private readonly departed = new Set<string>();
  private readonly membershipHandlers = new Set<() => void>();
  readonly leaveHandlers = new Set<() => Promise<void>>();
  private membershipSoon: NodeJS.Timeout | null = null;
  private readonly onBehalf: PresenceOnBehalf;

  constructor(
    private readonly host: MembershipHost,
    private readonly config: ClusterConfig,
    private readonly subjects: Subjects,
    private readonly log: Logger,
  ) {
    this.onBehalf = new PresenceOnBehalf({ registry: host.registry, context: () => host.context(), isFirstAlive: () => this.isFirstAlive() });
  }

  private get node() {
    return this.host.node;
  }

  private get registry() {
    return this.host.registry;
  }

  private get ctx() {
    return this.host.context();
  }

  private get leases() {
    return this.host.leases();
  }

  private get journal() {
    return this.host.journal();
  }

  private get recovery() {
    return this.host.recovery();
  }

  private get shared() {
    return this.host.shared();
  }

  private get connected() {
    return this.host.connected();
  }

  private get leaving() {
    return this.host.leaving();
  }

  private get stopping() {
    return this.host.stopping();
  }

  private get localComponents() {
    return this.host.localComponents;
  }

  private publish(subject: string, body: unknown): void {
    this.host.publish(subject, body);
  }

  private guard(what: string, fn: () => void | Promise<void>): void {
    this.host.guard(what, fn);
  }

  private syncComponents(p: Peer, now: Set<string>): void {
    this.host.syncComponents(p, now);
  }

  private announceAll(): void {
    this.host.announceAll();
  }

  private scheduleAnnounceAll(): void {
    this.host.scheduleAnnounceAll();
  }

  private ownerOf(service: string, key: string): string {
    return this.host.ownerOf(service, key);
  }

  private unavailableOnBehalf(session: RemoteSession): Promise<void> {
    return this.onBehalf.unavailableOnBehalf(session);
  }

  heartbeatBody(): Heartbeat {
    // The group chat module makes its key after the node joined: told once it is there.
    if (Object.keys(this.keys).length < 2 && this.ctx) this.keys = ownFingerprints(this.ctx.config.dataDir);
    return { node: this.node, epoch: this.epoch, startedAt: this.startedAt, sessions: this.registry.size, components: [...this.localComponents], keys: this.keys, lease: this.leases?.held, frames: true };
  }

  heartbeat(): void {
    this.publish(this.subjects.heartbeat, this.heartbeatBody());
    if (this.connected) this.leases?.beat();
  }

  tick(): void {
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
  async renewLease(fresh = false): Promise<boolean> {
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
  runAlive(holder: string): boolean {
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
  peer(node: string, epoch: string): Peer | null {
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

  onHeartbeat(hb: Heartbeat & { leaving?: boolean }): void {
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
  revive(p: Peer): void {
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
}
