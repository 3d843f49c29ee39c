/**
 * One user's Matrix account, on matrix-js-sdk (sync loop, room state, members, m.direct), turned
 * into LegacySession events and commands.
 *
 * The session is built in layers: contacts.ts (the client, ids, direct chats as contacts),
 * rooms.ts (MUC rooms and their occupants; roles.ts maps power levels), messages.ts (messages,
 * reactions, typing, receipts), and this file (login, the sync loop, resuming, failures).
 *
 * Contacts and rooms: a room is a direct chat (its messages are contact messages) when the
 * user's m.direct account data lists it, when the user joined it from an is_direct invitation, or
 * when it has exactly two members and neither a name nor an alias; every other room is a MUC room
 * for the kit, reported under the id the kit joined it with (alias or room ID). Messages in rooms
 * the kit has not joined (yet) are kept (the last `backlogLimit` per room, in memory only) and
 * delivered with their timestamps right after the kit joins; they are never stored.
 *
 * Resuming: after each processed /sync the session reports a `syncState` event once the events
 * before it went to the kit: the sync token with the few room facts needed to resume (resume.ts).
 * A session started with it (LoginRequest.state) hands the facts to the SDK, which continues with
 * /sync?since= instead of a full initial sync, first fetches what happened since (`catchUpLimit`
 * events per room) and delivers it, then continues live, never delivering an event twice. A
 * position the homeserver no longer accepts (M_UNKNOWN_POS or another 4xx) means a full initial
 * sync. A session without a state starts at "now": the initial sync's history is not replayed.
 *
 * Start-up: the sync filter (lazy-loaded members, `syncTimelineLimit` events per room) is uploaded
 * once and reused by id (also across restarts, through the stored state); a full initial sync asks
 * for one event per room. All of it must be done within the kit's login timeout.
 *
 * Failures: while /sync fails the SDK retries by itself (probed every `retryIntervalMs`); if it
 * has not recovered after `syncFailureTimeoutMs` the session emits disconnected(reason, false) and
 * is dead, and the kit logs in again with the last sync token. A token the homeserver no longer
 * accepts (401 M_UNKNOWN_TOKEN, also soft logout) ends the session with disconnected(reason, true),
 * except in OAuth sessions (tokens.ts), which renew the token and retry; only a refused renewal
 * ends them. Renewed tokens are reported as a `credentials` event (the kit updates the vault).
 * logout() stops syncing but does not invalidate the token (the kit logs in with it again).
 *
 * End-to-end encryption: before the first sync the Rust crypto is set up on the store the previous
 * session left (crypto.ts: same device, same keys); its changes are reported as 'secretState'
 * events (the kit keeps them sealed with the vault's key) and secretState() gives the final one.
 * Decrypting and encrypting messages: messages.ts. Should the crypto not start (a broken store),
 * the session runs without it: encrypted events become the undecryptable notice and sending into
 * encrypted rooms is refused, never sent in clear text.
 *
 * Trust (with end-to-end encryption only): the recovery key command (runCommand, trust.ts; a
 * stored key is used again when this device lacks the keys) and SAS verification through a chat
 * with the gateway (gatewayMessage, verification.ts).
 *
 * Nothing here logs message content or tokens; the SDK's own logging is switched off (it would
 * print request URLs and event details to the console).
 */
import * as sdk from 'matrix-js-sdk';
import { LegacyAuthError, LegacyNetworkError, type AdapterLogger, type LegacySession } from '../kit/adapter.js';
import type { MatrixLogin } from './contacts.js';
import { commandError, describe, httpStatusOf, isTokenError } from './errors.js';
import { MatrixMessages } from './messages.js';
import { stopClient } from './sdk.js';
import { encodeResumeState, parseResumeState } from './resume.js';
import type { MatrixSessionOptions } from './settings.js';
import { MatrixCrypto } from './crypto.js';
import { MatrixTrust, RECOVERY_COMMAND } from './trust.js';
import { MatrixVerification } from './verification.js';
import { CommandFailure } from '../kit/adapter.js';

export type { MatrixLogin } from './contacts.js';

type Json = Record<string, unknown>;

export class MatrixSession extends MatrixMessages implements LegacySession {
  /** The initial sync is done: events from now on are new. */
  private live = false;
  /** Handed to the kit: events are processed in order, one at a time, once the kit listens. */
  private flowing = false;
  private pumping = false;
  private readonly tasks: (() => unknown)[] = [];
  /** Tasks queued when the current sync has been processed. */
  private readonly afterSync: (() => unknown)[] = [];
  private token: string | null = null;
  /** The state last reported (syncState). */
  private state: string | null = null;
  /** The last event of each room handed to the queue (where a gap fill stops). */
  private readonly lastSeen = new Map<string, string>();
  private failureTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private lastFailure = '';
  private readonly storedCrypto: Uint8Array | undefined;
  private readonly shareWithUnverified: boolean;
  private readonly recoveryKey: string | undefined;
  private trust: MatrixTrust | null = null;
  private verification: MatrixVerification | null = null;

  constructor(login: MatrixLogin, opts: MatrixSessionOptions, log: AdapterLogger) {
    super(login, opts, log);
    this.storedCrypto = login.secretState;
    this.shareWithUnverified = login.shareWithUnverified ?? true;
    this.recoveryKey = login.recoveryKey;
    this.bind();
    this.tokens?.on('refreshed', () => this.reportCredentials());
    this.tokens?.on('failed', (reason) => {
      if (this.phase === 'ready') this.die(reason, true);
    });
    this.tokens?.start();
  }

  syncState(): string | null {
    return this.state;
  }

  /** The end-to-end encryption store as it is now (pending changes included); see crypto.ts. */
  async secretState(): Promise<Uint8Array | null> {
    return this.crypto ? this.crypto.flush() : null;
  }

  /** The session's crypto (crypto.ts), for features built on it (verification, key backup); null without one. */
  get encryption(): MatrixCrypto | null {
    return this.crypto;
  }

  private get filterName(): string {
    // The name the SDK keeps its sync filter's id under.
    return `FILTER_SYNC_${this.userId}`;
  }

  /**
   * Starts syncing; resolves after the first sync (and the catch-up from the stored state), or
   * fails at `deadline` (ms since the epoch).
   */
  async start(stored?: string, deadline = Date.now() + this.opts.loginTimeoutMs): Promise<void> {
    let resume = parseResumeState(stored, this.userId);
    if (stored && !resume) this.log.info('matrix stored sync state not usable; starting with a full sync', { homeserver: this.host });
    if (resume?.saved && !(await this.positionAccepted(resume.since))) resume = null;
    if (resume?.saved) {
      this.store.resumeFrom(resume.saved, this.filterName);
      for (const r of resume.saved.rooms) this.restoredRooms.add(r.id);
    }
    await this.startCrypto();
    this.startTrust();
    await this.sync(resume?.since, deadline);
  }

  /** The recovery key and verification (trust.ts, verification.ts), on the session's crypto. */
  private startTrust(): void {
    if (!this.crypto) return;
    const host = {
      client: this.client,
      api: () => (this.crypto && this.phase !== 'closed' ? this.crypto.api : null),
      callbacks: this.cryptoCallbacks,
      log: this.log,
      host: this.host,
      userId: this.userId,
      deviceId: this.deviceId,
    };
    this.trust = new MatrixTrust({ ...host, storeCredentials: (fields) => this.safeEmit('credentials', fields) });
    this.verification = new MatrixVerification({ ...host, tell: (text) => this.safeEmit('gatewayMessage', text) });
  }

  async runCommand(node: string, values: Record<string, string>): Promise<string> {
    if (node !== RECOVERY_COMMAND.node) throw new CommandFailure('no such command', 'item-not-found');
    if (!this.trust || this.phase !== 'ready') throw new CommandFailure('end-to-end encryption is not available in this Matrix session', 'service-unavailable');
    return this.trust.command(values);
  }

  async gatewayMessage(text: string): Promise<void> {
    if (!this.verification) {
      this.safeEmit('gatewayMessage', 'End-to-end encryption is not available in this Matrix session, so there is nothing to verify.');
      return;
    }
    await this.verification.handle(text);
  }

  private async startCrypto(): Promise<void> {
    try {
      this.crypto = await MatrixCrypto.start(this.client, this.storedCrypto, {
        shareWithUnverified: this.shareWithUnverified,
        onChange: (data) => this.safeEmit('secretState', data),
        log: this.log,
        host: this.host,
      });
    } catch (err) {
      this.crypto = null;
      this.log.warn('matrix end-to-end encryption not available in this session', { homeserver: this.host, reason: describe(err) });
    }
  }

  /** Whether the homeserver still knows the stored position (a small /sync from it). */
  private async positionAccepted(since: string): Promise<boolean> {
    const filter = JSON.stringify({ room: { rooms: [], timeline: { limit: 0 } }, presence: { types: [] }, account_data: { types: [] } });
    try {
      await this.client.http.authedRequest(sdk.Method.Get, '/sync', { since, timeout: '0', filter, set_presence: 'offline' });
      return true;
    } catch (err) {
      if (isTokenError(err)) throw new LegacyAuthError(`${this.host} refused the access token: ${describe(err)}`);
      const status = httpStatusOf(err);
      if (status !== undefined && status < 500 && status !== 429) {
        this.log.warn('matrix sync position not accepted; starting with a full sync, events since the last session are not delivered', { homeserver: this.host, reason: describe(err) });
        return false;
      }
      throw new LegacyNetworkError(`${this.host}: ${describe(err)}`);
    }
  }

  private sync(resumeFrom: string | undefined, deadline: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const cleanup = () => {
        clearTimeout(timer);
        this.client.off(sdk.ClientEvent.Sync, onSync);
        this.client.off(sdk.HttpApiEvent.SessionLoggedOut, onLoggedOut);
      };
      const fail = (err: Error) => {
        if (settled) return;
        settled = true;
        cleanup();
        this.shutdown();
        this.log.info('matrix login failed', { homeserver: this.host, kind: err instanceof LegacyAuthError ? 'auth' : 'network', reason: err.message });
        reject(err);
      };
      const onSync = (state: sdk.SyncState, _prev: sdk.SyncState | null, data?: sdk.SyncStateData) => {
        if (settled) return;
        // The stored facts are Prepared first; the session is up after the first real /sync.
        if (state === sdk.SyncState.Prepared && !data?.fromCache) {
          cleanup();
          this.live = true;
          this.afterFirstSync(resumeFrom, data?.nextSyncToken ?? this.client.store.getSyncToken()).then(
            () => {
              if (settled) return;
              settled = true;
              this.ready();
              resolve();
            },
            (err: Error) => fail(err),
          );
        } else if (state === sdk.SyncState.Error || state === sdk.SyncState.Reconnecting) {
          const err = data?.error;
          fail(isTokenError(err) ? new LegacyAuthError(`${this.host} refused the access token: ${describe(err)}`) : new LegacyNetworkError(`${this.host}: ${describe(err)}`));
        }
      };
      const onLoggedOut = (err: unknown) => fail(new LegacyAuthError(`${this.host} refused the access token: ${describe(err)}`));
      const timer = setTimeout(() => fail(new LegacyNetworkError(`${this.host} did not complete the first sync in time`)), Math.max(0, deadline - Date.now()));
      this.client.on(sdk.ClientEvent.Sync, onSync);
      this.client.on(sdk.HttpApiEvent.SessionLoggedOut, onLoggedOut);
      this.log.info('matrix connecting', { homeserver: this.host, resume: resumeFrom !== undefined });
      const filter = new sdk.Filter(this.userId);
      filter.setDefinition({ room: { timeline: { limit: this.opts.syncTimelineLimit } } });
      this.client
        .startClient({
          filter,
          initialSyncLimit: 1,
          lazyLoadMembers: true,
          pollTimeout: this.opts.pollTimeoutMs,
          threadSupport: false,
          resolveInvitesToProfiles: false,
        })
        .then(
          // Stopped while starting (the deadline passed): the sync loop it started after the stop ends too.
          () => {
            if (this.phase === 'closed') stopClient(this.client);
          },
          (err: unknown) => fail(new LegacyNetworkError(`${this.host}: ${describe(err)}`)),
        );
    });
  }

  /** After the initial sync: the catch-up (when resuming), initial roster, presence and invitations. */
  private async afterFirstSync(resumeFrom: string | undefined, firstToken: string | null): Promise<void> {
    const pre: (() => unknown)[] = [];
    for (const room of this.client.getRooms()) {
      const last = room.getLiveTimeline().getEvents().at(-1)?.getId();
      if (last) this.lastSeen.set(room.roomId, last);
    }
    pre.push(() => this.emitRoster(true));
    for (const c of this.directContacts()) {
      const user = this.client.getUser(c.id);
      if (user?.presence) pre.push(() => this.emitPresence(c.id, user.presence, user.presenceStatusMsg ?? null));
    }
    if (resumeFrom) {
      pre.push(...(await this.catchUp(resumeFrom)));
    } else {
      for (const room of this.client.getRooms()) {
        if (room.getMyMembership() !== 'invite') continue;
        const me = room.currentState.getMember(this.userId)?.events.member;
        if (me) pre.push(() => this.onInvite(room, me));
      }
    }
    if (firstToken) pre.push(() => this.advance(firstToken));
    this.tasks.unshift(...pre);
  }

  /** Events since `since`, as tasks to run before the live ones. */
  private async catchUp(since: string): Promise<(() => unknown)[]> {
    const filter = JSON.stringify({
      room: {
        timeline: { limit: this.opts.catchUpLimit },
        state: { lazy_load_members: true },
        ephemeral: { types: [] },
        account_data: { types: [] },
      },
      presence: { types: [] },
      account_data: { types: [] },
    });
    let res: { rooms?: { join?: Record<string, { timeline?: { events?: Json[]; limited?: boolean } }>; invite?: Record<string, { invite_state?: { events?: Json[] } }> } };
    try {
      res = await this.client.http.authedRequest(sdk.Method.Get, '/sync', { since, timeout: '0', filter, set_presence: 'offline' });
    } catch (err) {
      if (isTokenError(err)) throw new LegacyAuthError(`${this.host} refused the access token: ${describe(err)}`);
      if (httpStatusOf(err) !== undefined && httpStatusOf(err)! < 500) {
        // The stored position is unknown to the server (e.g. after a server reset): start at "now".
        this.log.warn('matrix sync position not accepted; events since the last session are not delivered', { homeserver: this.host, reason: describe(err) });
        return [];
      }
      throw new LegacyNetworkError(`${this.host}: ${describe(err)}`);
    }
    const tasks: (() => unknown)[] = [];
    let limited = 0;
    let count = 0;
    for (const [roomId, joined] of Object.entries(res.rooms?.join ?? {})) {
      const room = this.client.getRoom(roomId);
      if (!room) continue;
      if (joined.timeline?.limited) limited++;
      for (const raw of joined.timeline?.events ?? []) {
        const ev = new sdk.MatrixEvent({ ...(raw as object), room_id: roomId } as never);
        const id = ev.getId();
        if (id) this.caughtUp.add(id);
        count++;
        tasks.push(() => this.onRoomEvent(ev, room, true));
      }
    }
    for (const [roomId, invited] of Object.entries(res.rooms?.invite ?? {})) {
      const room = this.client.getRoom(roomId);
      const mine = (invited.invite_state?.events ?? []).find((e) => e.type === 'm.room.member' && e.state_key === this.userId);
      if (!room || !mine) continue;
      const ev = new sdk.MatrixEvent({ ...(mine as object), room_id: roomId } as never);
      tasks.push(() => this.onInvite(room, ev));
    }
    this.log.info('matrix resumed', { homeserver: this.host, events: count, roomsWithGaps: limited });
    return tasks;
  }

  private ready(): void {
    this.phase = 'ready';
    this.log.info('matrix connected', { homeserver: this.host });
    // After the kit has attached its listeners to the resolved session:
    setImmediate(() => {
      if (this.phase !== 'ready') return;
      this.safeEmit('connected', this.host, this.userId);
      this.flowing = true;
      void this.pump();
      if (this.recoveryKey && this.trust) {
        void this.trust.atLogin(this.recoveryKey).then((problem) => {
          if (problem && this.phase === 'ready') this.safeEmit('gatewayMessage', problem);
        });
      }
    });
  }

  protected later(task: () => unknown): void {
    this.enqueue(task);
  }

  private enqueue(task: () => unknown): void {
    if (this.phase === 'closed') return;
    this.tasks.push(task);
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.pumping || !this.flowing) return;
    this.pumping = true;
    try {
      while (this.tasks.length && this.flowing) {
        const task = this.tasks.shift()!;
        try {
          await task();
        } catch (err) {
          this.log.warn('matrix event handling failed', { homeserver: this.host, reason: describe(err) });
        }
      }
    } finally {
      this.pumping = false;
    }
  }

  /** The kit has everything up to this sync position. */
  private advance(token: string): void {
    if (token === this.token) return;
    this.token = token;
    this.state = encodeResumeState(this.client, this.userId, token, this.store.filterId(this.filterName));
    this.safeEmit('syncState', this.state);
  }

  private bind(): void {
    const c = this.client;
    c.on(sdk.ClientEvent.Sync, (state, _prev, data) => {
      if (!this.live || this.phase === 'closed') return;
      if (state === sdk.SyncState.Syncing || state === sdk.SyncState.Prepared || state === sdk.SyncState.Catchup) {
        this.recovered();
        for (const task of this.afterSync.splice(0)) this.enqueue(task);
        const token = data?.nextSyncToken;
        if (token) this.enqueue(() => this.advance(token));
      } else if (state === sdk.SyncState.Reconnecting || state === sdk.SyncState.Error) {
        if (isTokenError(data?.error)) this.die(`${this.host} ended the session: ${describe(data?.error)}`, true);
        else this.failing(describe(data?.error));
      }
    });
    c.on(sdk.HttpApiEvent.SessionLoggedOut, (err) => {
      if (this.phase === 'ready') this.die(`${this.host} ended the session (the access token is no longer valid): ${describe(err)}`, true);
    });
    c.on(sdk.ClientEvent.Event, (ev) => {
      if (!this.live || this.phase === 'closed') return;
      if (ev.getType() === 'm.presence') {
        const content = ev.getContent();
        const sender = ev.getSender();
        if (sender) this.enqueue(() => this.emitPresence(sender, String(content.presence ?? ''), typeof content.status_msg === 'string' ? content.status_msg : null, true));
        return;
      }
      const roomId = ev.getRoomId();
      if (!roomId) return;
      const room = c.getRoom(roomId);
      if (!room) return;
      const id = ev.getId();
      if (id && !ev.isState()) this.lastSeen.set(roomId, id);
      this.enqueue(() => this.onRoomEvent(ev, room, false));
    });
    c.on(sdk.RoomEvent.TimelineReset, (room) => {
      // A "limited" sync skipped events: fetch them before this sync's own events are handled.
      if (!this.live || !room || room.getMyMembership() !== 'join') return;
      const token = room.getLiveTimeline().getPaginationToken(sdk.EventTimeline.BACKWARDS);
      const last = this.lastSeen.get(room.roomId);
      if (token && last) this.enqueue(() => this.fillGap(room, token, last));
    });
    c.on(sdk.RoomMemberEvent.Typing, (_ev, member) => {
      if (!this.live || member.userId === this.userId) return;
      const typing = member.typing;
      if (typing) this.typingSince.set(`${member.roomId}\u0000${member.userId}`, Date.now());
      // Ephemeral events are processed before the timeline of the same sync: hold them until
      // the sync's messages are queued (typing stops with the message; receipts follow it).
      this.afterSync.push(() => this.onTyping(member.roomId, member.userId, typing));
    });
    c.on(sdk.RoomEvent.Receipt, (ev, room) => {
      if (!this.live) return;
      const content = ev.getContent() as Record<string, Record<string, Record<string, unknown>>>;
      this.afterSync.push(() => this.onReceipt(room, content));
    });
    // The room directory lists the rooms the user is in: a join, leave or new name changes it.
    c.on(sdk.RoomEvent.MyMembership, () => {
      if (this.live) this.safeEmit('directoryChanged');
    });
    c.on(sdk.RoomEvent.Name, () => {
      if (this.live) this.safeEmit('directoryChanged');
    });
    c.on(sdk.ClientEvent.AccountData, (ev) => {
      if (ev.getType() !== 'm.direct') return;
      this.contactsCache = null;
      if (this.live) this.safeEmit('directoryChanged');
      if (this.live) this.enqueue(() => this.emitRoster(false));
    });
  }

  private failing(reason: string): void {
    this.lastFailure = reason;
    if (this.phase !== 'ready' || this.failureTimer) return;
    this.log.info('matrix sync failing', { homeserver: this.host, reason });
    this.failureTimer = setTimeout(() => this.die(`lost the connection to ${this.host}: ${this.lastFailure}`, false), this.opts.syncFailureTimeoutMs);
    this.retryTimer = setInterval(() => this.client.retryImmediately(), this.opts.retryIntervalMs);
  }

  private recovered(): void {
    if (!this.failureTimer) return;
    this.log.info('matrix sync recovered', { homeserver: this.host });
    this.clearFailure();
  }

  private clearFailure(): void {
    if (this.failureTimer) clearTimeout(this.failureTimer);
    if (this.retryTimer) clearInterval(this.retryTimer);
    this.failureTimer = null;
    this.retryTimer = null;
  }

  private shutdown(): void {
    this.phase = 'closed';
    this.flowing = false;
    this.tasks.length = 0;
    this.clearFailure();
    this.tokens?.stop();
    this.verification?.stop();
    this.crypto?.stop();
    this.stopAwaitingKeys();
    stopClient(this.client);
    this.client.removeAllListeners();
  }

  /** The session is dead: stop, and tell the kit (once). */
  private die(reason: string, final: boolean): void {
    if (this.phase === 'closed') return;
    this.shutdown();
    this.log.info('matrix disconnected', { homeserver: this.host, final, reason });
    this.safeEmit('disconnected', reason, final);
  }

  /** Fetches the events a limited sync skipped (back to `lastId`, at most gapFillLimit) and handles them. */
  private async fillGap(room: sdk.Room, token: string, lastId: string): Promise<void> {
    const missed: sdk.MatrixEvent[] = [];
    let from: string | undefined = token;
    let reached = false;
    try {
      while (from && missed.length < this.opts.gapFillLimit) {
        const res = await this.client.createMessagesRequest(room.roomId, from, Math.min(100, this.opts.gapFillLimit - missed.length), sdk.Direction.Backward);
        for (const raw of res.chunk) {
          if (raw.event_id === lastId) {
            reached = true;
            break;
          }
          if (!this.caughtUp.has(raw.event_id)) missed.push(new sdk.MatrixEvent({ ...raw, room_id: room.roomId }));
        }
        if (reached || !res.chunk.length) break;
        from = res.end;
      }
    } catch (err) {
      this.log.info('matrix could not fetch skipped events', { homeserver: this.host, reason: describe(err) });
    }
    if (!reached) this.log.info('matrix events skipped by the homeserver were not all fetched', { homeserver: this.host, fetched: missed.length });
    for (const ev of missed.reverse()) await this.onRoomEvent(ev, room, true);
  }

  async setPresence(show: 'available' | 'away' | 'dnd' | 'xa', status: string | null): Promise<void> {
    this.ensureReady();
    const presence = show === 'available' ? sdk.SetPresence.Online : sdk.SetPresence.Unavailable;
    this.client.setSyncPresence(presence);
    try {
      await this.client.setPresence({ presence, ...(status ? { status_msg: status } : {}) });
    } catch (err) {
      throw commandError(err, 'cannot set the presence');
    }
  }

  async logout(reason?: string): Promise<void> {
    if (this.phase === 'closed') return;
    this.log.info('matrix logging out', { homeserver: this.host, reason: reason ?? null });
    // The access token stays valid: the kit logs in with it again.
    this.shutdown();
  }
}
