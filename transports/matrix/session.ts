/**
 * One user's Matrix account, on matrix-js-sdk (sync loop, room state, members, m.direct), turned
 * into LegacySession events and commands.
 *
 * Contacts and rooms: a room is a direct chat (its messages are contact messages) when the
 * user's m.direct account data lists it, when the user joined it from an is_direct invitation, or
 * when it has exactly two members and neither a name nor an alias; every other room is a MUC room
 * for the kit, reported under the id the kit joined it with (alias or room ID). Messages in rooms
 * the kit has not joined (yet) are kept (the last `backlogLimit` per room, in memory only) and
 * delivered with their timestamps right after the kit joins; they are never stored.
 *
 * Resuming: the sync token after each processed /sync is reported as a `syncState` event once the
 * events before it went to the kit; a session started with that token (LoginRequest.state) first
 * fetches what happened since (`catchUpLimit` events per room) and delivers it, then continues
 * live, never delivering an event twice. A session without a token starts at "now": the initial
 * sync's history is not replayed.
 *
 * Failures: while /sync fails the SDK retries by itself (probed every `retryIntervalMs`); if it
 * has not recovered after `syncFailureTimeoutMs` the session emits disconnected(reason, false) and
 * is dead, and the kit logs in again with the last sync token. A token the homeserver no longer
 * accepts (401 M_UNKNOWN_TOKEN, also soft logout) ends the session with disconnected(reason, true).
 * logout() stops syncing but does not invalidate the token (the kit logs in with it again).
 *
 * End-to-end encryption is not supported: m.room.encrypted events become a notice saying so, and
 * sending into an encrypted room is refused (not-acceptable) rather than sent in clear text.
 *
 * Nothing here logs message content or tokens; the SDK's own logging is switched off (it would
 * print request URLs and event details to the console).
 */
import * as sdk from 'matrix-js-sdk';
import { logger as sdkLogger } from 'matrix-js-sdk/lib/logger.js';
import {
  LegacyAuthError,
  LegacyNetworkError,
  type AdapterLogger,
  type LegacyContact,
  type LegacyRoom,
  type LegacySession,
  type Occupant,
  type OccupantAffiliation,
  type OccupantRole,
  type TextMessage,
} from '../kit/adapter.js';
import { LegacySessionEmitter } from '../kit/session-emitter.js';
import type { OccupantTable } from '../kit/occupants.js';
import { contentFromMessage, messageFromContent, pollText, reactionOf, UNDECRYPTABLE_TEXT } from './content.js';
import { MatrixCommandError, commandError, describe, errcodeOf, httpStatusOf, isTokenError } from './errors.js';
import type { MatrixSessionOptions } from './settings.js';
import { replaceNonXmlChars } from '../../shared/xml/element.js';

type Json = Record<string, unknown>;

// The SDK logs every request URL, sync detail and error object to the console; none of that may
// reach the gateway's output (it names rooms and users, and error objects can hold content).
const quiet = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  log: () => undefined,
  getChild: () => quiet,
};
(sdkLogger as unknown as { setLevel(level: string, persist?: boolean): void }).setLevel('silent', false);

/** Retry only rate-limited sends (429), a few times; anything else fails at once and the kit reports it. */
function retryRateLimited(_event: unknown, attempts: number, err: unknown): number {
  if (attempts > 3) return -1;
  if (errcodeOf(err) !== 'M_LIMIT_EXCEEDED' && httpStatusOf(err) !== 429) return -1;
  const after = (err as { data?: { retry_after_ms?: number } }).data?.retry_after_ms;
  return Math.min(typeof after === 'number' && after > 0 ? after : 1000 * 2 ** attempts, 10_000);
}

/**
 * fetch with a timeout that does not keep the process alive (AbortSignal.timeout is unref'd): the
 * SDK's own request timeouts are plain setTimeout calls that are never cleared, so a stopped
 * session would hold the process open for up to 110 seconds.
 */
export function timedFetch(requestTimeoutMs: number, longPollMs: number): typeof fetch {
  return (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const timeout = AbortSignal.timeout(/\/sync(\?|$)/.test(url) ? longPollMs : requestTimeoutMs);
    return fetch(input, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout });
  };
}

/**
 * The SDK gives requests local timeouts (/sync: poll timeout + 80 s, keep-alive probes 15 s) with
 * timers it never clears, which hold a stopped session's process open; timedFetch bounds every
 * request instead.
 */
export function withoutSdkTimers(client: sdk.MatrixClient): void {
  const http = client.http as unknown as { requestOtherUrl?: (method: unknown, url: unknown, body: unknown, opts?: Record<string, unknown>) => unknown };
  const original = http.requestOtherUrl;
  if (typeof original !== 'function') return;
  http.requestOtherUrl = function (this: unknown, method: unknown, url: unknown, body: unknown, opts?: Record<string, unknown>) {
    return original.call(this, method, url, body, opts ? { ...opts, localTimeoutMs: undefined } : opts);
  };
}

/**
 * Stops a client for good. A keep-alive probe still running when the sync loop stops re-arms its
 * retry timer (up to 10 s) once it fails; that timer is cleared as soon as it appears.
 */
export function stopClient(client: sdk.MatrixClient): void {
  const api = (client as unknown as { syncApi?: { keepAliveTimer?: NodeJS.Timeout } }).syncApi;
  try {
    client.stopClient();
  } catch {
    // already stopped
  }
  if (!api) return;
  let rounds = 0;
  const sweep = setInterval(() => {
    if (api.keepAliveTimer) clearTimeout(api.keepAliveTimer);
    if (++rounds >= 40) clearInterval(sweep);
  }, 50);
  sweep.unref();
}

/** Events kept per room in the SDK's timeline. */
const TIMELINE_KEEP = 200;

/** A Map that forgets its oldest entries beyond `max`. */
class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }
  override set(key: K, value: V): this {
    if (this.has(key)) this.delete(key);
    super.set(key, value);
    while (this.size > this.max) this.delete(this.keys().next().value as K);
    return this;
  }
}

/** A Matrix room the kit has joined as a MUC room. */
interface KitRoom {
  room: LegacyRoom;
  roomId: string;
  /** Occupants by user ID. */
  occupants: OccupantTable;
}

interface BacklogEntry {
  sender: string;
  msg: TextMessage;
}

export interface MatrixLogin {
  homeserver: string;
  userId: string;
  accessToken: string;
  deviceId: string;
}

export class MatrixSession extends LegacySessionEmitter implements LegacySession {
  protected readonly network = 'matrix';
  readonly userId: string;
  readonly deviceId: string;
  readonly homeserver: string;
  readonly host: string;
  private readonly accessToken: string;
  private readonly client: sdk.MatrixClient;
  private phase: 'starting' | 'ready' | 'closed' = 'starting';
  /** The initial sync is done: events from now on are new. */
  private live = false;
  /** Handed to the kit: events are processed in order, one at a time, once the kit listens. */
  private flowing = false;
  private pumping = false;
  private readonly tasks: (() => unknown)[] = [];
  /** Tasks queued when the current sync has been processed. */
  private readonly afterSync: (() => unknown)[] = [];
  private token: string | null = null;
  private readonly kitRooms = new Map<string, KitRoom>();
  private readonly backlog = new Map<string, BacklogEntry[]>();
  /** The kit's ids of sent messages → Matrix event IDs. */
  private readonly ids = new BoundedMap<string, string>(5000);
  /** ... and back: events that refer to a message the kit sent name it by the kit's id. */
  private readonly kitIds = new BoundedMap<string, string>(5000);
  /** Event ID → room ID of messages seen or sent (for read markers on contacts). */
  private readonly eventRooms = new BoundedMap<string, string>(5000);
  /** Reaction event ID → what it reacted to (to turn the redaction of a reaction into a new reaction set). */
  private readonly reactionIndex = new BoundedMap<string, { roomId: string; to: string; sender: string; key: string }>(5000);
  /** Events delivered by the catch-up after a resume (the live sync may bring them again). */
  private readonly caughtUp = new Set<string>();
  private readonly invitesSeen = new BoundedMap<string, true>(1000);
  private readonly dmCreating = new Map<string, Promise<string>>();
  /** When each user last sent a message in a room (typing stop after a message is 'active'). */
  private readonly lastMessage = new BoundedMap<string, number>(2000);
  private readonly typingSince = new BoundedMap<string, number>(2000);
  private readonly sinceTrim = new Map<string, number>();
  /** The last event of each room handed to the queue (where a gap fill stops). */
  private readonly lastSeen = new Map<string, string>();
  /** The direct-chat contacts, recomputed when m.direct or a membership changes. */
  private contactsCache: LegacyContact[] | null = null;
  private rosterKey = '';
  private failureTimer: NodeJS.Timeout | null = null;
  private retryTimer: NodeJS.Timeout | null = null;
  private lastFailure = '';

  constructor(
    login: MatrixLogin,
    private readonly opts: MatrixSessionOptions,
    protected readonly log: AdapterLogger,
  ) {
    super();
    this.userId = login.userId;
    this.deviceId = login.deviceId;
    this.homeserver = login.homeserver;
    this.host = new URL(login.homeserver).host;
    this.accessToken = login.accessToken;
    this.client = sdk.createClient({
      baseUrl: login.homeserver,
      accessToken: login.accessToken,
      userId: login.userId,
      deviceId: login.deviceId,
      logger: quiet,
      fetchFn: timedFetch(opts.requestTimeoutMs, opts.pollTimeoutMs + 30_000),
      useAuthorizationHeader: true,
      scheduler: new sdk.MatrixScheduler(retryRateLimited as never),
      timelineSupport: false,
    });
    withoutSdkTimers(this.client);
    this.bind();
  }

  /** What the vault keeps for this session (see MatrixAdapter.credentialsToStore). */
  storedCredentials(): { token: string; deviceId: string } {
    return { token: this.accessToken, deviceId: this.deviceId };
  }

  get connected(): boolean {
    return this.phase === 'ready';
  }

  syncState(): string | null {
    return this.token;
  }

  // ================================================================ start

  /** Starts syncing; resolves after the first sync (and the catch-up from `resumeFrom`). */
  start(resumeFrom?: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      let settled = false;
      const cleanup = () => {
        clearTimeout(deadline);
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
        if (state === sdk.SyncState.Prepared) {
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
      const deadline = setTimeout(() => fail(new LegacyNetworkError(`${this.host} did not complete the first sync in time`)), this.opts.loginTimeoutMs);
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
        .catch((err: unknown) => fail(new LegacyNetworkError(`${this.host}: ${describe(err)}`)));
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
    });
  }

  // ================================================================ the event queue

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
    this.safeEmit('syncState', token);
  }

  // ================================================================ SDK events

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
    c.on(sdk.ClientEvent.AccountData, (ev) => {
      if (ev.getType() !== 'm.direct') return;
      this.contactsCache = null;
      if (this.live) this.enqueue(() => this.emitRoster(false));
    });
  }

  // ---- connection health

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

  // ---- room events

  private async onRoomEvent(ev: sdk.MatrixEvent, room: sdk.Room, catchUp: boolean): Promise<void> {
    const id = ev.getId();
    if (!catchUp && id && this.caughtUp.has(id)) return;
    const type = ev.getType();
    const sender = ev.getSender();
    if (!sender) return;
    if (type === 'm.room.member' || type === 'm.room.name' || type === 'm.room.canonical_alias') this.contactsCache = null;
    if (type === 'm.room.member') return this.onMember(ev, room);
    if (room.getMyMembership() !== 'join') return;
    if (ev.isState()) {
      const kr = this.kitRooms.get(room.roomId);
      if (!kr) return;
      if (type === 'm.room.topic' && ev.getStateKey() === '') {
        const topic = ev.getContent().topic;
        this.safeEmit('subject', kr.room, typeof topic === 'string' ? topic : '', this.nickIn(kr, room, sender));
      } else if (type === 'm.room.power_levels' && ev.getStateKey() === '') {
        this.refreshRoles(kr, room);
      } else if (type === 'm.room.name') {
        const name = ev.getContent().name;
        if (typeof name === 'string' && name) kr.room.name = name;
      }
      return;
    }
    // Sent through this gateway (only this device gets the transaction id back): the kit has it.
    if (sender === this.userId && ev.getUnsigned().transaction_id !== undefined) return;
    // Already redacted when it arrived (a gap or catch-up holding both): nothing to show.
    if (type !== 'm.room.redaction' && ev.isRedacted()) return;
    let msg: TextMessage | null = null;
    let from = sender;
    switch (type) {
      case 'm.room.message':
      case 'm.sticker':
        msg = messageFromContent(ev.getContent(), type, this.homeserver);
        if (msg) this.lastMessage.set(`${room.roomId}\u0000${sender}`, Date.now());
        break;
      case 'm.room.encrypted':
        msg = { text: UNDECRYPTABLE_TEXT, notice: true };
        break;
      case 'm.poll.start':
      case 'org.matrix.msc3381.poll.start': {
        const text = pollText(ev.getContent());
        msg = text ? { text, notice: true } : null;
        break;
      }
      case 'm.reaction': {
        const r = reactionOf(ev.getContent());
        if (!r) return;
        if (id) this.reactionIndex.set(id, { roomId: room.roomId, to: r.to, sender, key: r.key });
        const keys = await this.reactionKeys(room.roomId, r.to, sender);
        msg = { text: '', reactions: { to: r.to, keys: [...keys.keys()] } };
        break;
      }
      case 'm.room.redaction': {
        const target = (ev.event as { redacts?: string }).redacts ?? (ev.getContent().redacts as string | undefined);
        if (!target) return;
        const reaction = this.reactionIndex.get(target);
        if (reaction) {
          this.reactionIndex.delete(target);
          const keys = await this.reactionKeys(reaction.roomId, reaction.to, reaction.sender);
          keys.delete(reaction.key);
          msg = { text: '', reactions: { to: reaction.to, keys: [...keys.keys()] } };
          from = reaction.sender;
        } else {
          msg = { text: '', redacts: target };
        }
        break;
      }
      default:
        return;
    }
    if (!msg) return;
    if (msg.replyTo) msg.replyTo = this.kitIdOf(msg.replyTo);
    if (msg.editOf) msg.editOf = this.kitIdOf(msg.editOf);
    if (msg.redacts) msg.redacts = this.kitIdOf(msg.redacts);
    if (msg.reactions) msg.reactions.to = this.kitIdOf(msg.reactions.to);
    if (id) {
      msg.id = id;
      this.eventRooms.set(id, room.roomId);
    }
    if (catchUp) msg.timestamp = new Date(ev.getTs());
    this.deliver(room, from, msg, ev.getTs());
    if (!catchUp) this.trim(room);
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

  /**
   * The SDK keeps every event of a room's live timeline for the life of the client; a gateway runs
   * for months. Older events are dropped (the adapter only looks up recent ones).
   */
  private trim(room: sdk.Room): void {
    const n = (this.sinceTrim.get(room.roomId) ?? 0) + 1;
    this.sinceTrim.set(room.roomId, n);
    if (n < 50) return;
    this.sinceTrim.set(room.roomId, 0);
    const events = room.getLiveTimeline().getEvents();
    if (events.length <= TIMELINE_KEEP + 50) return;
    for (const e of events.slice(0, events.length - TIMELINE_KEEP)) {
      const id = e.getId();
      if (id && e.status === null && !e.isRedaction()) room.removeEvent(id);
    }
  }

  private deliver(room: sdk.Room, sender: string, msg: TextMessage, ts: number): void {
    const kr = this.kitRooms.get(room.roomId);
    if (!kr) {
      const contact = this.directContactOf(room);
      if (contact) {
        if (sender === this.userId) return; // sent from another of the user's Matrix clients
        this.safeEmit('message', this.contactOf(sender, room), msg);
        return;
      }
      // Not joined by the kit (yet): kept until it joins.
      let list = this.backlog.get(room.roomId);
      if (!list) this.backlog.set(room.roomId, (list = []));
      list.push({ sender, msg: { ...msg, timestamp: msg.timestamp ?? new Date(ts) } });
      if (list.length > this.opts.backlogLimit) list.splice(0, list.length - this.opts.backlogLimit);
      return;
    }
    this.safeEmit('roomMessage', kr.room, this.nickIn(kr, room, sender), msg);
  }

  private onMember(ev: sdk.MatrixEvent, room: sdk.Room): void {
    const target = ev.getStateKey();
    if (!target) return;
    const content = ev.getContent();
    const membership = content.membership as string | undefined;
    const prev = ev.getPrevContent().membership as string | undefined;
    if (target === this.userId) {
      if (membership === 'invite' && ev.getSender() !== this.userId) return this.onInvite(room, ev);
      if ((membership === 'leave' || membership === 'ban') && prev === 'join') {
        this.backlog.delete(room.roomId);
        const kr = this.kitRooms.get(room.roomId);
        if (kr) {
          this.kitRooms.delete(room.roomId);
          this.contactsCache = null;
          const sender = ev.getSender();
          const by = sender && sender !== this.userId ? this.nickIn(kr, room, sender) : null;
          const own = kr.occupants.nickOf(this.userId) ?? this.userId;
          this.safeEmit('occupantLeft', kr.room, own, typeof content.reason === 'string' ? content.reason : null, by);
        }
        return;
      }
    }
    if (membership === 'join' && prev !== 'join' && !this.kitRooms.has(room.roomId) && this.directContactOf(room) === target) {
      void this.emitRoster(false);
    }
    const kr = this.kitRooms.get(room.roomId);
    if (!kr) return;
    const known = kr.occupants.has(target);
    if (membership === 'join') {
      const occupant = this.occupantOf(room, target);
      if (!known) kr.occupants.join(target, occupant, undefined);
      else kr.occupants.update(target, { nick: occupant.nick });
    } else if (known) {
      const sender = ev.getSender();
      const by = sender && sender !== target ? this.nickIn(kr, room, sender) : null;
      kr.occupants.part(target, typeof content.reason === 'string' ? content.reason : null, by);
    }
    // Display names are disambiguated ("Alice (@alice:example.org)") while two members share one.
    const names = new Set([content.displayname, ev.getPrevContent().displayname].filter((n): n is string => typeof n === 'string'));
    if (names.size) {
      for (const userId of kr.occupants.ids()) {
        if (userId === target) continue;
        const m = room.getMember(userId);
        if (m && names.has(m.rawDisplayName)) kr.occupants.update(userId, { nick: nickOf(m, userId) });
      }
    }
  }

  private onInvite(room: sdk.Room, ev: sdk.MatrixEvent): void {
    const by = ev.getSender();
    if (!by || by === this.userId) return;
    const key = `${room.roomId}\u0000${ev.getId() ?? by}`;
    if (this.invitesSeen.has(key) || room.getMyMembership() !== 'invite') return;
    this.invitesSeen.set(key, true);
    const content = ev.getContent();
    if (content.is_direct === true && this.opts.acceptDirectInvites) {
      void this.acceptDirect(room.roomId, by);
      return;
    }
    const alias = room.getCanonicalAlias();
    const legacy: LegacyRoom = { id: alias ?? room.roomId };
    if (room.name && room.name !== room.roomId) legacy.name = room.name;
    this.safeEmit('invited', legacy, this.contactOf(by, room), typeof content.reason === 'string' ? content.reason : null);
  }

  private async acceptDirect(roomId: string, by: string): Promise<void> {
    try {
      await this.client.joinRoom(roomId);
      await this.addDirect(by, roomId);
      this.log.debug('matrix accepted a direct chat invitation', { homeserver: this.host });
    } catch (err) {
      this.log.info('matrix could not accept a direct chat invitation', { homeserver: this.host, reason: describe(err) });
    }
  }

  private onTyping(roomId: string, userId: string, typing: boolean): void {
    const room = this.client.getRoom(roomId);
    if (!room || room.getMyMembership() !== 'join') return;
    let state: 'composing' | 'paused' | 'active' = 'composing';
    if (!typing) {
      // Typing stops when the message is sent (active), or when the user gave up (paused).
      const key = `${roomId}\u0000${userId}`;
      const last = this.lastMessage.get(key);
      const since = this.typingSince.get(key);
      this.typingSince.delete(key);
      state = last !== undefined && since !== undefined && last >= since ? 'active' : 'paused';
    }
    const kr = this.kitRooms.get(roomId);
    if (kr) {
      this.safeEmit('typing', { room: kr.room, nick: this.nickIn(kr, room, userId) }, state);
      return;
    }
    if (this.directContactOf(room)) this.safeEmit('typing', this.contactOf(userId, room), state);
  }

  private onReceipt(room: sdk.Room, content: Record<string, Record<string, Record<string, unknown>>>): void {
    if (room.getMyMembership() !== 'join') return;
    const kr = this.kitRooms.get(room.roomId);
    const direct = kr ? null : this.directContactOf(room);
    if (!kr && !direct) return;
    for (const [eventId, types] of Object.entries(content)) {
      // The SDK adds a receipt of each sender for its own message; that is not a read marker.
      const author = room.findEventById(eventId)?.getSender();
      for (const userId of Object.keys(types['m.read'] ?? {})) {
        if (userId === this.userId || userId === author) continue;
        if (kr) this.safeEmit('displayed', { room: kr.room, nick: this.nickIn(kr, room, userId) }, this.kitIdOf(eventId));
        else this.safeEmit('displayed', this.contactOf(userId, room), this.kitIdOf(eventId));
      }
    }
  }

  private emitPresence(userId: string, presence: string, status: string | null, onlyContacts = false): void {
    if (userId === this.userId) return;
    if (onlyContacts && !this.directContacts().some((c) => c.id === userId)) return;
    const show = presence === 'online' ? 'available' : presence === 'unavailable' ? 'away' : presence === 'busy' || presence === 'org.matrix.msc3026.busy' ? 'dnd' : presence === 'offline' ? 'unavailable' : null;
    if (!show) return;
    this.safeEmit('contactPresence', { id: userId, ...this.displayNameOf(userId) }, show, status);
  }

  private emitRoster(always: boolean): void {
    const contacts = this.directContacts();
    const key = contacts.map((c) => c.id).sort().join('\u0000');
    if (!always && key === this.rosterKey) return;
    this.rosterKey = key;
    this.safeEmit('roster', contacts);
  }

  // ================================================================ mapping helpers

  private directMap(): Record<string, string[]> {
    const content = this.client.getAccountData('m.direct' as never)?.getContent() as Record<string, unknown> | undefined;
    const out: Record<string, string[]> = {};
    for (const [user, rooms] of Object.entries(content ?? {})) if (Array.isArray(rooms)) out[user] = rooms.filter((r): r is string => typeof r === 'string');
    return out;
  }

  /** The other user of a direct chat, or null if the room is a group room. */
  private directContactOf(room: sdk.Room): string | null {
    if (this.kitRooms.has(room.roomId)) return null;
    for (const [user, rooms] of Object.entries(this.directMap())) if (rooms.includes(room.roomId)) return user;
    const inviter = room.getMember(this.userId)?.getDMInviter();
    if (inviter && inviter !== this.userId) return inviter;
    const name = room.currentState.getStateEvents('m.room.name', '')?.getContent().name;
    if (name || room.getCanonicalAlias()) return null;
    if (room.getInvitedAndJoinedMemberCount() !== 2) return null;
    const other = room.guessDMUserId();
    return other && other !== this.userId ? other : null;
  }

  /** The user's direct-chat contacts (rooms the user is in). */
  private directContacts(): LegacyContact[] {
    this.contactsCache ??= this.computeDirectContacts();
    return this.contactsCache;
  }

  private computeDirectContacts(): LegacyContact[] {
    const seen = new Set<string>();
    const out: LegacyContact[] = [];
    for (const room of this.client.getRooms()) {
      if (room.getMyMembership() !== 'join') continue;
      const other = this.directContactOf(room);
      if (!other || seen.has(other)) continue;
      seen.add(other);
      out.push(this.contactOf(other, room));
    }
    return out;
  }

  private displayNameOf(userId: string, room?: sdk.Room): { displayName?: string } {
    const name = room?.getMember(userId)?.rawDisplayName ?? this.client.getUser(userId)?.displayName;
    return name && name !== userId ? { displayName: name } : {};
  }

  private contactOf(userId: string, room?: sdk.Room): LegacyContact {
    return { id: userId, ...this.displayNameOf(userId, room) };
  }

  private nickIn(kr: KitRoom, room: sdk.Room, userId: string): string {
    return kr.occupants.nickOf(userId) ?? nickOf(room.getMember(userId), userId);
  }

  private occupantOf(room: sdk.Room, userId: string): Occupant {
    const member = room.getMember(userId);
    const pl = (room.currentState.getStateEvents('m.room.power_levels', '')?.getContent() ?? {}) as Json;
    const users = (pl.users ?? {}) as Record<string, number>;
    const level = typeof users[userId] === 'number' ? users[userId]! : typeof pl.users_default === 'number' ? pl.users_default : 0;
    const events = (pl.events ?? {}) as Record<string, number>;
    const speak = typeof events['m.room.message'] === 'number' ? events['m.room.message']! : typeof pl.events_default === 'number' ? pl.events_default : 0;
    const kick = typeof pl.kick === 'number' ? pl.kick : 50;
    const role: OccupantRole = level >= kick && level >= 50 ? 'moderator' : level >= speak ? 'participant' : 'visitor';
    const affiliation: OccupantAffiliation = level >= 100 ? 'owner' : level >= 50 ? 'admin' : 'member';
    return { nick: nickOf(member, userId), role, affiliation, contact: this.contactOf(userId, room) };
  }

  private refreshRoles(kr: KitRoom, room: sdk.Room): void {
    for (const userId of kr.occupants.ids()) {
      const o = this.occupantOf(room, userId);
      kr.occupants.update(userId, { role: o.role, affiliation: o.affiliation, ...(o.contact ? { contact: o.contact } : {}) });
    }
  }

  /** A sender's current reaction keys on an event (key → reaction event ID), from the server's relations. */
  private async reactionKeys(roomId: string, to: string, sender: string): Promise<Map<string, string>> {
    const keys = new Map<string, string>();
    try {
      let from: string | undefined;
      for (let page = 0; page < 10; page++) {
        const res = await this.client.fetchRelations(roomId, to, 'm.annotation', 'm.reaction', { dir: sdk.Direction.Backward, limit: 100, ...(from ? { from } : {}) } as never);
        for (const raw of res.chunk as unknown as Json[]) {
          const r = reactionOf((raw.content ?? {}) as Json);
          const id = raw.event_id as string | undefined;
          if (!r || !id) continue;
          this.reactionIndex.set(id, { roomId, to, sender: String(raw.sender), key: r.key });
          if (raw.sender === sender && !keys.has(r.key)) keys.set(r.key, id);
        }
        from = res.next_batch ?? undefined;
        if (!from) break;
      }
    } catch (err) {
      this.log.debug('matrix relations not available; using the reactions seen', { homeserver: this.host, reason: describe(err) });
      keys.clear();
      for (const [id, r] of this.reactionIndex) if (r.roomId === roomId && r.to === to && r.sender === sender && !keys.has(r.key)) keys.set(r.key, id);
    }
    return keys;
  }

  // ================================================================ commands

  private ensureReady(): void {
    if (this.phase !== 'ready') throw new LegacyNetworkError(`not connected to ${this.host}`);
  }

  private txn(): string {
    return this.client.makeTxnId();
  }

  /** The kit's id of a message it sent through this session, else the event ID. */
  private kitIdOf(eventId: string): string {
    return this.kitIds.get(eventId) ?? eventId;
  }

  /** A message id from the kit (its own id of a message it sent, or a Matrix event ID) as an event ID. */
  private eventId(id: string): string {
    const mapped = this.ids.get(id);
    if (mapped) return mapped;
    if (id.startsWith('$')) return id;
    throw new MatrixCommandError('the message is not known (too old, or not from this session)', 'item-not-found');
  }

  private isRoomRef(x: LegacyContact | LegacyRoom): boolean {
    return /^[!#]/.test(x.id);
  }

  private kitRoomFor(room: LegacyRoom): KitRoom | undefined {
    for (const kr of this.kitRooms.values()) if (kr.room.id === room.id) return kr;
    const lower = room.id.toLowerCase();
    for (const kr of this.kitRooms.values()) if (kr.room.id.toLowerCase() === lower) return kr;
    return undefined;
  }

  private requireKitRoom(room: LegacyRoom): KitRoom {
    const kr = this.kitRoomFor(room);
    if (!kr) throw new MatrixCommandError(`not in the room ${room.id}`, 'not-acceptable');
    return kr;
  }

  /**
   * The room ID or alias to join for a kit id. JIDs are case-folded, Matrix room IDs are not: an
   * id the homeserver would not know exactly is matched against the rooms and aliases the
   * account knows, ignoring case.
   */
  private resolveRoomRef(id: string): string {
    const rooms = this.client.getRooms();
    if (id.startsWith('!')) {
      if (rooms.some((r) => r.roomId === id)) return id;
      const found = rooms.find((r) => r.roomId.toLowerCase() === id.toLowerCase());
      return found?.roomId ?? id;
    }
    const exact = rooms.find((r) => r.getCanonicalAlias() === id || r.getAltAliases().includes(id));
    if (exact) return exact.roomId;
    const lower = id.toLowerCase();
    const found = rooms.find((r) => r.getCanonicalAlias()?.toLowerCase() === lower || r.getAltAliases().some((a) => a.toLowerCase() === lower));
    return found?.roomId ?? id;
  }

  /** Resolves when the SDK has the room with the user joined (the join arrives through /sync). */
  private waitForJoined(roomId: string): Promise<sdk.Room | null> {
    const check = () => {
      const r = this.client.getRoom(roomId);
      return r && r.getMyMembership() === 'join' ? r : null;
    };
    const now = check();
    if (now) return Promise.resolve(now);
    return new Promise((resolve) => {
      const onSync = () => {
        const r = check();
        if (r) done(r);
      };
      const done = (r: sdk.Room | null) => {
        clearTimeout(timer);
        this.client.off(sdk.ClientEvent.Sync, onSync);
        resolve(r);
      };
      const timer = setTimeout(() => done(null), this.opts.joinTimeoutMs);
      this.client.on(sdk.ClientEvent.Sync, onSync);
    });
  }

  async joinRoom(room: LegacyRoom, _nick: string, _password?: string): Promise<void> {
    this.ensureReady();
    const existing = this.kitRoomFor(room);
    if (existing) {
      const mroom = this.client.getRoom(existing.roomId);
      if (mroom && mroom.getMyMembership() === 'join') {
        this.emitJoined(existing, mroom);
        return;
      }
      this.kitRooms.delete(existing.roomId);
      this.contactsCache = null;
    }
    if (!/^[!#][^:]+:.+$/.test(room.id)) {
      this.safeEmit('roomJoinFailed', room, `not a Matrix room ID or alias: ${room.id}`, 'item-not-found');
      return;
    }
    let roomId: string;
    try {
      roomId = (await this.client.joinRoom(this.resolveRoomRef(room.id))).roomId;
    } catch (err) {
      const code = errcodeOf(err);
      const status = httpStatusOf(err);
      if (!code && !status) throw new LegacyNetworkError(`cannot join ${room.id}: ${describe(err)}`);
      const reason = describe(err);
      const condition = code === 'M_NOT_FOUND' || status === 404 ? 'item-not-found' : code === 'M_FORBIDDEN' || status === 403 ? (/invite/i.test(reason) ? 'registration-required' : 'forbidden') : 'service-unavailable';
      this.safeEmit('roomJoinFailed', room, reason, condition);
      return;
    }
    const mroom = await this.waitForJoined(roomId);
    if (this.phase !== 'ready') return;
    if (!mroom) {
      this.safeEmit('roomJoinFailed', room, `${this.host} did not confirm the join in time`, 'service-unavailable');
      return;
    }
    await mroom.loadMembersIfNeeded().catch((err: unknown) => this.log.debug('matrix member list not loaded', { homeserver: this.host, reason: describe(err) }));
    if (this.phase !== 'ready') return;
    const legacy: LegacyRoom = { ...room };
    if (mroom.name && mroom.name !== roomId) legacy.name = mroom.name;
    const kr: KitRoom = { room: legacy, roomId, occupants: this.occupantTable(legacy) };
    this.kitRooms.set(roomId, kr);
    this.contactsCache = null;
    this.emitJoined(kr, mroom);
  }

  private emitJoined(kr: KitRoom, room: sdk.Room): void {
    const members = room.getJoinedMembers().map((m) => m.userId);
    if (!members.includes(this.userId)) members.push(this.userId);
    kr.occupants.replaceAll(members.map((userId) => ({ id: userId, occupant: this.occupantOf(room, userId), data: undefined })));
    kr.occupants.announced = true;
    const topic = room.currentState.getStateEvents('m.room.topic', '')?.getContent().topic;
    this.safeEmit('roomJoined', kr.room, kr.occupants.nickOf(this.userId)!, kr.occupants.list(), typeof topic === 'string' && topic ? topic : null);
    if (room.hasEncryptionStateEvent()) {
      this.log.debug('matrix room is encrypted; its messages cannot be read or sent', { homeserver: this.host });
    }
    const held = this.backlog.get(room.roomId);
    this.backlog.delete(room.roomId);
    for (const { sender, msg } of held ?? []) this.safeEmit('roomMessage', kr.room, this.nickIn(kr, room, sender), msg);
  }

  async leaveRoom(room: LegacyRoom, reason?: string): Promise<void> {
    this.ensureReady();
    const kr = this.kitRoomFor(room);
    if (!kr) return;
    this.kitRooms.delete(kr.roomId);
    this.contactsCache = null;
    if (!this.opts.leaveRoomsOnPart) return;
    try {
      await this.client.http.authedRequest(sdk.Method.Post, `/rooms/${encodeURIComponent(kr.roomId)}/leave`, undefined, reason ? { reason } : {});
    } catch (err) {
      throw commandError(err, `cannot leave ${room.id}`);
    }
  }

  async setSubject(room: LegacyRoom, subject: string): Promise<void> {
    this.ensureReady();
    const kr = this.requireKitRoom(room);
    try {
      await this.client.setRoomTopic(kr.roomId, subject);
    } catch (err) {
      throw commandError(err, 'cannot change the topic');
    }
  }

  async changeNick(room: LegacyRoom | null, nick: string): Promise<void> {
    this.ensureReady();
    const name = nick.trim();
    if (!name) throw new MatrixCommandError('the name is empty', 'bad-request');
    try {
      if (!room) {
        await this.client.setDisplayName(name);
        return;
      }
      const kr = this.requireKitRoom(room);
      const current = this.client.getRoom(kr.roomId)?.currentState.getStateEvents('m.room.member', this.userId)?.getContent() ?? { membership: 'join' };
      await this.client.sendStateEvent(kr.roomId, 'm.room.member' as never, { ...current, membership: 'join', displayname: name } as never, this.userId);
    } catch (err) {
      throw commandError(err, 'cannot change the name');
    }
  }

  async kick(room: LegacyRoom, nick: string, reason?: string): Promise<void> {
    this.ensureReady();
    const kr = this.requireKitRoom(room);
    const userId = kr.occupants.entries().find((o) => o.nick === nick)?.id;
    if (!userId) throw new MatrixCommandError(`${nick} is not in the room`, 'item-not-found');
    try {
      await this.client.kick(kr.roomId, userId, reason);
    } catch (err) {
      throw commandError(err, `cannot kick ${nick}`);
    }
  }

  async invite(room: LegacyRoom, contact: LegacyContact, reason?: string): Promise<void> {
    this.ensureReady();
    const kr = this.requireKitRoom(room);
    try {
      await this.client.invite(kr.roomId, contact.id, reason);
    } catch (err) {
      throw commandError(err, `cannot invite ${contact.id}`);
    }
  }

  async sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<void> {
    this.ensureReady();
    await this.send(this.requireKitRoom(room).roomId, message);
  }

  async sendMessage(to: LegacyContact, message: TextMessage): Promise<void> {
    this.ensureReady();
    if (to.id === this.userId) throw new MatrixCommandError('cannot send a direct message to yourself', 'not-acceptable');
    const roomId = await this.directRoomFor(to.id, true);
    await this.send(roomId!, message);
  }

  async sendTyping(to: LegacyContact | LegacyRoom, state: 'composing' | 'paused' | 'active'): Promise<void> {
    this.ensureReady();
    const roomId = this.isRoomRef(to) ? this.kitRoomFor(to)?.roomId : await this.directRoomFor(to.id, false);
    if (!roomId) return;
    try {
      await this.client.sendTyping(roomId, state === 'composing', 30_000);
    } catch (err) {
      throw commandError(err, 'cannot send the typing notification');
    }
  }

  async markRead(where: LegacyContact | LegacyRoom, messageId: string): Promise<void> {
    this.ensureReady();
    const eventId = this.eventId(messageId);
    const roomId = this.isRoomRef(where) ? this.kitRoomFor(where)?.roomId : (this.eventRooms.get(eventId) ?? (await this.directRoomFor(where.id, false)));
    if (!roomId) return;
    try {
      await this.client.setRoomReadMarkersHttpRequest(roomId, eventId, eventId);
    } catch (err) {
      throw commandError(err, 'cannot send the read marker');
    }
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

  // ---- sending

  /** The direct chat room with a user: an existing one, or (when `create`) a new one. */
  private async directRoomFor(userId: string, create: boolean): Promise<string | null> {
    const joined = (id: string) => this.client.getRoom(id)?.getMyMembership() === 'join';
    const live = (id: string) => {
      const m = this.client.getRoom(id)?.getMember(userId)?.membership;
      return m === 'join' || m === 'invite';
    };
    const listed = (this.directMap()[userId] ?? []).filter(joined);
    const best = listed.find(live) ?? listed[0];
    if (best) return best;
    for (const room of this.client.getRooms()) {
      if (room.getMyMembership() === 'join' && this.directContactOf(room) === userId) return room.roomId;
    }
    if (!create) return null;
    const pending = this.dmCreating.get(userId);
    if (pending) return pending;
    const p = (async () => {
      try {
        const { room_id } = await this.client.createRoom({ is_direct: true, invite: [userId], preset: 'trusted_private_chat' as never, visibility: 'private' as never });
        await this.addDirect(userId, room_id).catch((err: unknown) => this.log.debug('matrix m.direct not updated', { homeserver: this.host, reason: describe(err) }));
        return room_id;
      } catch (err) {
        throw commandError(err, `cannot start a chat with ${userId}`);
      } finally {
        this.dmCreating.delete(userId);
      }
    })();
    this.dmCreating.set(userId, p);
    return p;
  }

  private async addDirect(userId: string, roomId: string): Promise<void> {
    const map = this.directMap();
    const list = map[userId] ?? [];
    if (list.includes(roomId)) return;
    map[userId] = [...list, roomId];
    await this.client.setAccountData('m.direct' as never, map as never);
  }

  private async send(roomId: string, msg: TextMessage): Promise<void> {
    try {
      if (msg.redacts) {
        const target = this.eventId(msg.redacts);
        await this.client.redactEvent(roomId, target, this.txn());
        return;
      }
      if (msg.reactions) {
        await this.setReactions(roomId, this.eventId(msg.reactions.to), msg.reactions.keys);
        return;
      }
      if (this.client.getRoom(roomId)?.hasEncryptionStateEvent()) {
        throw new MatrixCommandError('this Matrix room is end-to-end encrypted, and the gateway cannot encrypt messages', 'not-acceptable');
      }
      const ids: { editOf?: string; replyTo?: string } = {};
      if (msg.editOf) ids.editOf = this.eventId(msg.editOf);
      if (msg.replyTo) {
        try {
          ids.replyTo = this.eventId(msg.replyTo);
        } catch {
          // A reply to a message the gateway does not know is sent as a plain message.
        }
      }
      const res = await this.client.sendEvent(roomId, 'm.room.message' as never, contentFromMessage(msg, ids) as never, this.txn());
      if (msg.id) {
        this.ids.set(msg.id, res.event_id);
        this.kitIds.set(res.event_id, msg.id);
      }
      this.eventRooms.set(res.event_id, roomId);
    } catch (err) {
      const event = (err as { event?: sdk.MatrixEvent }).event;
      if (event) {
        try {
          this.client.cancelPendingEvent(event);
        } catch {
          // not pending any more
        }
      }
      throw commandError(err, 'cannot send the message');
    }
  }

  private async setReactions(roomId: string, to: string, wanted: string[]): Promise<void> {
    const current = await this.reactionKeys(roomId, to, this.userId);
    const keys = [...new Set(wanted.filter((k) => k.length > 0))];
    for (const key of keys) {
      if (current.has(key)) continue;
      const res = await this.client.sendEvent(roomId, 'm.reaction' as never, { 'm.relates_to': { rel_type: 'm.annotation', event_id: to, key } } as never, this.txn());
      this.reactionIndex.set(res.event_id, { roomId, to, sender: this.userId, key });
    }
    for (const [key, eventId] of current) {
      if (keys.includes(key)) continue;
      await this.client.redactEvent(roomId, eventId, this.txn());
      this.reactionIndex.delete(eventId);
    }
  }
}

/**
 * A member's name as a MUC nick, which becomes a JID resourcepart: what XML cannot carry becomes
 * U+FFFD (as the serialiser writes it, so occupants are known by the nick the XMPP user sees), the
 * other controls a resourcepart refuses become spaces (line breaks, tabs) or U+FFFD (DEL).
 */
function nickOf(member: sdk.RoomMember | null | undefined, userId: string): string {
  const name = replaceNonXmlChars(member?.name ?? '').replace(/[\t\n\r]+/g, ' ').replace(/\x7f/g, '\ufffd').trim();
  return name || userId;
}
