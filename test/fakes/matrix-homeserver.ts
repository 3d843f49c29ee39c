/**
 * A fake Matrix homeserver for tests: a real node:http server speaking enough of the Matrix
 * Client-Server API (spec v1.11, written from the published API description) for a client on
 * matrix-js-sdk to log in, sync, send and manage rooms, plus a test-side API to create users and
 * rooms, inject events as other users, and inspect what clients sent.
 *
 * What it implements (paths under /_matrix/client/{v3,r0,v1}):
 * - GET /_matrix/client/versions, GET /.well-known/matrix/client, GET /capabilities
 * - GET|POST /login (m.login.password; identifier m.id.user or legacy `user`), POST /logout,
 *   GET /account/whoami. Wrong password: 403 M_FORBIDDEN. Bad/revoked token: 401 M_UNKNOWN_TOKEN.
 * - GET /sync with since / timeout (long poll, woken by new data) / filter (id or inline JSON,
 *   timeline limit honoured) / full_state; joined rooms (state before the timeline, timeline with
 *   limited + prev_batch, ephemeral m.typing and m.receipt, room account data, summary), invited
 *   rooms (stripped invite_state), left rooms, presence, global account data.
 * - POST/GET /user/{userId}/filter[/{id}], GET /pushrules/, GET|PUT account data (global and per
 *   room), GET|PUT /presence/{userId}/status, GET /profile/{userId}[/displayname], PUT displayname.
 * - POST /createRoom, POST /join/{roomIdOrAlias}, POST /rooms/{id}/join|leave|forget|invite|kick|ban,
 *   GET /directory/room/{alias}, GET /joined_rooms.
 * - The published room directory: GET|PUT /directory/list/room/{roomId} (visibility; createRoom
 *   `visibility: public` publishes too), GET /publicRooms (limit, since; largest rooms first,
 *   next_batch/prev_batch tokens, total_room_count_estimate) and POST /publicRooms (the same with
 *   filter.generic_search_term).
 * - PUT /rooms/{id}/send/{type}/{txnId} (idempotent per device and txnId), PUT
 *   /rooms/{id}/redact/{eventId}/{txnId}, GET|PUT /rooms/{id}/state[/{type}[/{stateKey}]],
 *   PUT /rooms/{id}/typing/{userId}, POST /rooms/{id}/receipt/{type}/{eventId}, POST
 *   /rooms/{id}/read_markers, GET /rooms/{id}/members, /joined_members, /event/{id}, /messages,
 *   GET /_matrix/client/v1/rooms/{id}/relations/{eventId}[/{relType}[/{eventType}]].
 * - Media: GET /_matrix/media/v3/config and /_matrix/client/v1/media/config, POST
 *   /_matrix/media/v3/upload (the body is the file, `?filename=`; over `maxUploadSize` 413
 *   M_TOO_LARGE before the body is read, as Synapse does), GET
 *   /_matrix/client/v1/media/download/... (authenticated, spec v1.11); the unauthenticated
 *   /_matrix/media/v3/download/... answers 404 M_NOT_FOUND as matrix.org's does since media were
 *   frozen, unless `legacyMedia`.
 * Power levels are checked for sending, state, invites and kicks; join rules for joins. Errors
 * are `{errcode, error}` with the HTTP status the spec gives. Requests to paths it does not know
 * get 404 M_UNRECOGNIZED and are listed in `unknown` (so a test sees what a client needed).
 *
 * - With `oauth`: the OAuth 2.0 API of a homeserver behind the Matrix Authentication Service
 *   (GET /_matrix/client/v1/auth_metadata, client registration, device authorization grant,
 *   token endpoint with refresh token rotation, short-lived access tokens): see matrix-oauth.ts.
 * - End-to-end encryption (matrix-keys.ts, `keys`): POST /keys/upload, /keys/query, /keys/claim,
 *   PUT /sendToDevice, devices (GET/PUT/DELETE), and in /sync to_device, device_lists,
 *   device_one_time_keys_count and device_unused_fallback_key_types.
 * - Cross-signing and server-side key backup (matrix-trust.ts, `trust`): device_signing and
 *   signatures upload, cross-signing keys in /keys/query, /room_keys/version and /room_keys/keys.
 * Not implemented: federation, threads beyond plain relations,
 * registration.
 *
 * Start-up (spec 10.4 "lazy-loading room members"): a filter with `room.state.lazy_load_members`
 * gets, in a room's state, only the member events of the timeline's senders and the user's own
 * (the rest through GET /members); `syncs` lists every /sync (since, filter) so a test sees whether
 * a client did a full initial sync. Rate limits (see rateLimit): 429 M_LIMIT_EXCEEDED with
 * `retry_after_ms` and a `Retry-After` header (seconds) on any authenticated endpoint.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { FakeOAuth, type FakeOAuthOptions } from './matrix-oauth.js';
import { FakeKeys, KeysHttpError } from './matrix-keys.js';
import { FakeTrust } from './matrix-trust.js';

type Json = Record<string, unknown>;

export interface RawEvent {
  type: string;
  sender: string;
  content: Json;
  event_id: string;
  origin_server_ts: number;
  room_id: string;
  state_key?: string;
  redacts?: string;
  unsigned?: Json;
}

interface StoredEvent {
  pos: number;
  event: RawEvent;
  /** The device (access token) and transaction id it was sent with. */
  txn?: { deviceKey: string; txnId: string };
  redactedBy?: RawEvent;
}

interface FakeRoom {
  id: string;
  version: string;
  events: StoredEvent[];
  state: Map<string, StoredEvent>;
  typing: { userIds: string[]; pos: number };
  receipts: { pos: number; eventId: string; userId: string; type: string; ts: number }[];
  accountData: Map<string, Map<string, { content: Json; pos: number }>>;
  /** Listed in the published room directory (/publicRooms). */
  published: boolean;
}

interface FakeUser {
  userId: string;
  localpart: string;
  password: string;
  displayName: string;
  accountData: Map<string, { content: Json; pos: number }>;
  presence: { presence: string; statusMsg: string | null; pos: number; lastActive: number };
  filters: Json[];
}

interface TokenInfo {
  token: string;
  userId: string;
  deviceId: string;
  valid: boolean;
  softLogout: boolean;
  /** OAuth access tokens expire (ms since the epoch); then 401 M_UNKNOWN_TOKEN with soft_logout. */
  expiresAt?: number;
}

/** One request a client made that changed something (what "the transport sent"). */
export interface SentRequest {
  kind:
    | 'login'
    | 'logout'
    | 'event'
    | 'redact'
    | 'state'
    | 'typing'
    | 'receipt'
    | 'read_markers'
    | 'join'
    | 'leave'
    | 'invite'
    | 'kick'
    | 'ban'
    | 'createRoom'
    | 'account_data'
    | 'room_account_data'
    | 'displayname'
    | 'presence'
    | 'upload'
    | 'filter';
  userId: string;
  deviceId?: string;
  method: string;
  path: string;
  roomId?: string;
  eventType?: string;
  stateKey?: string;
  txnId?: string;
  /** The event created, where one was. */
  eventId?: string;
  /** The target of a redaction, receipt or membership change. */
  target?: string;
  body: Json;
  at: number;
}

export interface CreateRoomOptions {
  creator: string;
  /** Joined members besides the creator. */
  members?: string[];
  /** Invited (not joined) users. */
  invite?: string[];
  name?: string;
  topic?: string;
  /** Local part or full alias (#name:server); becomes the canonical alias. */
  alias?: string;
  encrypted?: boolean;
  /** Join rule (default public). */
  joinRule?: 'public' | 'invite';
  /** Mark as a direct chat in each member's m.direct. */
  direct?: boolean;
  /** Power levels of users (creator gets 100). */
  powerLevels?: Record<string, number>;
  roomVersion?: string;
  /** Listed in the published room directory (/publicRooms). */
  published?: boolean;
}

export interface FakeHomeserverOptions {
  serverName?: string;
  /** Serve /_matrix/media/v3/download without a token (default false: 404 M_NOT_FOUND like matrix.org's "frozen" media). */
  legacyMedia?: boolean;
  /** Log every request to stderr (debugging). */
  trace?: boolean;
  /** Serve /.well-known/matrix/client (default true). */
  wellKnown?: boolean;
  /** Act as a homeserver behind the Matrix Authentication Service (OAuth 2.0 API, matrix-oauth.ts). */
  oauth?: FakeOAuthOptions;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    readonly extra: Json = {},
  ) {
    super(message);
  }
}

interface Ctx {
  req: IncomingMessage;
  res: ServerResponse;
  method: string;
  path: string;
  query: URLSearchParams;
  body: Json;
  raw: Buffer;
  token: TokenInfo | null;
}

type Handler = (ctx: Ctx, params: string[]) => Promise<unknown> | unknown;

interface Route {
  method: string;
  pattern: RegExp;
  handler: Handler;
  auth: boolean;
}

interface SyncWaiter {
  wake: () => void;
}

const CLIENT = '/_matrix/client/(?:v3|r0|v1|unstable)';
const SEG = '([^/]+)';

const randomId = (n = 12) => randomBytes(n).toString('base64url');

/** Keys kept by the redaction algorithm (room versions 1-11), by event type. */
const REDACT_KEEP: Record<string, string[]> = {
  'm.room.member': ['membership', 'join_authorised_via_users_server'],
  'm.room.create': ['creator', 'room_version', 'type', 'predecessor', 'm.federate'],
  'm.room.join_rules': ['join_rule', 'allow'],
  'm.room.power_levels': ['ban', 'events', 'events_default', 'invite', 'kick', 'redact', 'state_default', 'users', 'users_default'],
  'm.room.history_visibility': ['history_visibility'],
  'm.room.redaction': ['redacts'],
};

export class FakeHomeserver {
  readonly serverName: string;
  private server!: Server;
  private port = 0;
  private pos = 0;
  private readonly users = new Map<string, FakeUser>();
  /** The stream position of the latest event ('s<position>' is the /sync token that includes it). */
  get position(): number {
    return this.pos;
  }
  private readonly tokens = new Map<string, TokenInfo>();
  private readonly rooms = new Map<string, FakeRoom>();
  private readonly aliases = new Map<string, string>();
  private readonly media = new Map<string, { data: Buffer; contentType: string; filename: string | null }>();
  private readonly txns = new Map<string, string>();
  private readonly waiters = new Set<SyncWaiter>();
  private readonly sockets = new Set<Socket>();
  private readonly routes: Route[] = [];
  private readonly sentLog: SentRequest[] = [];
  private readonly sentWaiters: { pred: (r: SentRequest) => boolean; resolve: (r: SentRequest) => void }[] = [];
  private down = false;
  private readonly opts: Required<FakeHomeserverOptions>;
  /** Requests to endpoints the fake does not implement ("METHOD /path"). */
  readonly unknown: string[] = [];
  /** Every request ("METHOD /path", query strings removed), for tests that check what a client called. */
  readonly requests: string[] = [];
  /** The OAuth 2.0 side (authorization server), when started with `oauth`. */
  readonly oauth: FakeOAuth | null = null;
  /** Device keys, one-time keys, to-device messages and devices (matrix-keys.ts). */
  readonly keys: FakeKeys;
  /** Cross-signing keys and server-side key backups (matrix-trust.ts). */
  readonly trust: FakeTrust;
  /** Requests refused with 401 M_UNKNOWN_TOKEN, "METHOD /path" (a client that renews in time causes none). */
  readonly tokenRefusals: string[] = [];
  /** Number of /login requests answered (password logins create devices). */
  logins = 0;
  /** Every /sync request: its since token (null: an initial sync) and filter (id or inline JSON). */
  readonly syncs: { since: string | null; filter: string | null }[] = [];
  /** Rate limits still to apply (see rateLimit). */
  private readonly limits: { pattern: RegExp; left: number; retryAfterMs: number }[] = [];
  /** Number of answers with 429 (any endpoint). */
  rateLimited = 0;
  /** Initial syncs (without since) wait for releaseInitialSyncs() while this is set. */
  private stalled: (() => void)[] | null = null;
  /** The content repository's upload limit in bytes (m.upload.size): larger uploads get 413 M_TOO_LARGE. */
  maxUploadSize = 50 * 1024 * 1024;
  /** Send requests still to refuse with 429 M_LIMIT_EXCEEDED (see rateLimitSends). */
  private limitedSends = 0;
  private limitRetryMs = 100;

  private constructor(opts: FakeHomeserverOptions) {
    this.opts = { serverName: 'matrix.test', legacyMedia: false, trace: false, wellKnown: true, oauth: undefined as never, ...opts };
    this.serverName = this.opts.serverName;
    this.keys = new FakeKeys({
      serverName: this.serverName,
      nextPos: () => {
        const pos = ++this.pos;
        this.notify();
        return pos;
      },
      userExists: (userId) => this.users.has(userId),
      sharedUsers: (userId) => this.sharedUsers(userId),
      membershipChangesSince: (userId, since) => this.membershipChangesSince(userId, since),
      checkPassword: (userId, password) => this.users.get(userId)?.password === password,
      revokeDevice: (userId, deviceId) => {
        for (const t of this.tokens.values()) if (t.userId === userId && t.deviceId === deviceId) t.valid = false;
        this.notify();
      },
    });
    this.defineRoutes();
    this.keys.defineRoutes((method, pattern, handler) => this.route(method, pattern, (ctx, params) => handler({ userId: ctx.token!.userId, deviceId: ctx.token!.deviceId, body: ctx.body }, params)), CLIENT, SEG);
    this.trust = new FakeTrust({
      error: (status, errcode, message, extra) => new KeysHttpError(status, errcode, message, extra),
      interactiveAuth: (ctx) => this.keys.interactiveAuth(ctx),
      deviceListChanged: (userId) => this.keys.deviceListChanged(userId),
      signDevice: (userId, deviceId, signatures) => this.keys.signDevice(userId, deviceId, signatures),
    });
    this.keys.crossSigningPart = (requester, userIds) => this.trust.crossSigningPart(requester, userIds);
    this.trust.defineRoutes((method, pattern, handler) => this.route(method, pattern, (ctx, params) => handler({ userId: ctx.token!.userId, deviceId: ctx.token!.deviceId, body: ctx.body, query: ctx.query }, params)), CLIENT, SEG);
    if (opts.oauth) this.oauth = new FakeOAuth(this, opts.oauth, (method, pattern, handler) => this.route(method, pattern, handler as Handler, false));
  }

  static async start(opts: FakeHomeserverOptions = {}): Promise<FakeHomeserver> {
    const hs = new FakeHomeserver(opts);
    await hs.listen();
    return hs;
  }

  /** The homeserver base URL, e.g. http://127.0.0.1:43123 */
  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  private listen(port = 0): Promise<void> {
    this.server = createServer((req, res) => void this.onRequest(req, res));
    this.server.keepAliveTimeout = 60_000;
    this.server.on('connection', (socket: Socket) => {
      if (this.down) {
        socket.destroy();
        return;
      }
      this.sockets.add(socket);
      socket.on('close', () => this.sockets.delete(socket));
    });
    return new Promise((resolve, reject) => {
      this.server.once('error', reject);
      this.server.listen(port, '127.0.0.1', () => {
        this.port = (this.server.address() as AddressInfo).port;
        resolve();
      });
    });
  }

  async stop(): Promise<void> {
    for (const w of [...this.waiters]) w.wake();
    for (const s of this.sockets) s.destroy();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ================================================================ test-side API

  /** Creates a user (`alice` → `@alice:<serverName>`); returns its user ID. */
  createUser(localpart: string, opts: { password?: string; displayName?: string } = {}): string {
    const userId = `@${localpart}:${this.serverName}`;
    this.users.set(userId, {
      userId,
      localpart,
      password: opts.password ?? `${localpart}-password`,
      displayName: opts.displayName ?? localpart,
      accountData: new Map(),
      presence: { presence: 'offline', statusMsg: null, pos: 0, lastActive: Date.now() },
      filters: [],
    });
    return userId;
  }

  /** An access token for a user, as a login would give (for tests that register with a token). */
  issueToken(userId: string, deviceId = `DEV${randomId(4).toUpperCase()}`, expiresInMs?: number): { accessToken: string; deviceId: string } {
    this.user(userId);
    const token = `syt_${randomId(18)}`;
    this.keys.ensureDevice(userId, deviceId);
    this.tokens.set(token, { token, userId, deviceId, valid: true, softLogout: false, ...(expiresInMs !== undefined ? { expiresAt: Date.now() + expiresInMs } : {}) });
    return { accessToken: token, deviceId };
  }

  /** Invalidates tokens (all of a user's, or one): the next request with them gets 401 M_UNKNOWN_TOKEN. */
  revokeTokens(userIdOrToken: string, softLogout = false): void {
    for (const t of this.tokens.values()) {
      if (t.userId === userIdOrToken || t.token === userIdOrToken) {
        t.valid = false;
        t.softLogout = softLogout;
      }
    }
    for (const w of [...this.waiters]) w.wake();
  }

  /** Tokens ever issued for a user (valid or not). */
  tokensOf(userId: string): { token: string; deviceId: string; valid: boolean }[] {
    return [...this.tokens.values()].filter((t) => t.userId === userId).map((t) => ({ token: t.token, deviceId: t.deviceId, valid: t.valid }));
  }

  createRoom(opts: CreateRoomOptions): string {
    this.user(opts.creator);
    const id = `!${randomId(9)}:${this.serverName}`;
    const room: FakeRoom = {
      id,
      version: opts.roomVersion ?? '10',
      events: [],
      state: new Map(),
      typing: { userIds: [], pos: 0 },
      receipts: [],
      accountData: new Map(),
      published: opts.published ?? false,
    };
    this.rooms.set(id, room);
    const c = opts.creator;
    this.append(room, { type: 'm.room.create', sender: c, state_key: '', content: { creator: c, room_version: room.version } });
    this.append(room, { type: 'm.room.member', sender: c, state_key: c, content: { membership: 'join', displayname: this.user(c).displayName } });
    this.append(room, {
      type: 'm.room.power_levels',
      sender: c,
      state_key: '',
      content: {
        users: { [c]: 100, ...(opts.powerLevels ?? {}) },
        users_default: 0,
        events: { 'm.room.name': 50, 'm.room.power_levels': 100, 'm.room.history_visibility': 100, 'm.room.canonical_alias': 50, 'm.room.avatar': 50, 'm.room.encryption': 100 },
        events_default: 0,
        state_default: 50,
        ban: 50,
        kick: 50,
        redact: 50,
        invite: 0,
      },
    });
    this.append(room, { type: 'm.room.join_rules', sender: c, state_key: '', content: { join_rule: opts.joinRule ?? 'public' } });
    this.append(room, { type: 'm.room.history_visibility', sender: c, state_key: '', content: { history_visibility: 'shared' } });
    if (opts.alias) {
      const alias = opts.alias.startsWith('#') ? opts.alias : `#${opts.alias}:${this.serverName}`;
      this.aliases.set(alias, id);
      this.append(room, { type: 'm.room.canonical_alias', sender: c, state_key: '', content: { alias } });
    }
    if (opts.name) this.append(room, { type: 'm.room.name', sender: c, state_key: '', content: { name: opts.name } });
    if (opts.topic) this.append(room, { type: 'm.room.topic', sender: c, state_key: '', content: { topic: opts.topic } });
    if (opts.encrypted) this.append(room, { type: 'm.room.encryption', sender: c, state_key: '', content: { algorithm: 'm.megolm.v1.aes-sha2' } });
    for (const m of opts.members ?? []) {
      this.user(m);
      this.append(room, { type: 'm.room.member', sender: m, state_key: m, content: { membership: 'join', displayname: this.user(m).displayName } });
    }
    for (const m of opts.invite ?? []) {
      this.user(m);
      this.append(room, { type: 'm.room.member', sender: c, state_key: m, content: { membership: 'invite', displayname: this.user(m).displayName, ...(opts.direct ? { is_direct: true } : {}) } });
    }
    if (opts.direct) {
      const everyone = [c, ...(opts.members ?? [])];
      for (const u of everyone) {
        for (const other of [...everyone, ...(opts.invite ?? [])]) {
          if (other !== u) this.addDirect(u, other, id);
        }
      }
    }
    return id;
  }

  /** Adds a room to a user's m.direct account data. */
  addDirect(userId: string, otherUserId: string, roomId: string): void {
    const u = this.user(userId);
    const current = (u.accountData.get('m.direct')?.content ?? {}) as Record<string, string[]>;
    const list = new Set(current[otherUserId] ?? []);
    list.add(roomId);
    this.setAccountData(userId, 'm.direct', { ...current, [otherUserId]: [...list] });
  }

  setAccountData(userId: string, type: string, content: Json): void {
    this.user(userId).accountData.set(type, { content, pos: ++this.pos });
    this.notify();
  }

  accountData(userId: string, type: string): Json | undefined {
    return this.user(userId).accountData.get(type)?.content;
  }

  roomAccountData(userId: string, roomId: string, type: string): Json | undefined {
    return this.room(roomId).accountData.get(userId)?.get(type)?.content;
  }

  /** Sends an event into a room as `event.sender` (a test user); returns the event ID. */
  inject(roomId: string, event: { type: string; sender: string; content: Json; state_key?: string; redacts?: string; origin_server_ts?: number }): string {
    const room = this.room(roomId);
    this.user(event.sender);
    if (event.type === 'm.room.redaction' && event.redacts) return this.redact(room, event.sender, event.redacts, event.content, undefined).event.event_id;
    return this.append(room, event).event.event_id;
  }

  /** A plain text message from `sender`. */
  message(roomId: string, sender: string, body: string, extra: Json = {}): string {
    return this.inject(roomId, { type: 'm.room.message', sender, content: { msgtype: 'm.text', body, ...extra } });
  }

  join(roomId: string, userId: string): string {
    return this.inject(roomId, { type: 'm.room.member', sender: userId, state_key: userId, content: { membership: 'join', displayname: this.user(userId).displayName } });
  }

  leave(roomId: string, userId: string, opts: { by?: string; reason?: string; ban?: boolean } = {}): string {
    const content: Json = { membership: opts.ban ? 'ban' : 'leave' };
    if (opts.reason) content.reason = opts.reason;
    return this.inject(roomId, { type: 'm.room.member', sender: opts.by ?? userId, state_key: userId, content });
  }

  invite(roomId: string, by: string, userId: string, opts: { direct?: boolean; reason?: string } = {}): string {
    const content: Json = { membership: 'invite', displayname: this.user(userId).displayName };
    if (opts.direct) content.is_direct = true;
    if (opts.reason) content.reason = opts.reason;
    return this.inject(roomId, { type: 'm.room.member', sender: by, state_key: userId, content });
  }

  /** Changes a user's display name in every room it is in (like a profile change). */
  setDisplayName(userId: string, displayName: string): void {
    const u = this.user(userId);
    u.displayName = displayName;
    for (const room of this.rooms.values()) {
      const m = room.state.get(`m.room.member\u0000${userId}`);
      if (m && m.event.content.membership === 'join') {
        this.append(room, { type: 'm.room.member', sender: userId, state_key: userId, content: { ...m.event.content, displayname: displayName } });
      }
    }
  }

  setTyping(roomId: string, userIds: string[]): void {
    const room = this.room(roomId);
    room.typing = { userIds: [...userIds], pos: ++this.pos };
    this.notify();
  }

  /** A read receipt (m.read) of `userId` for `eventId`. */
  receipt(roomId: string, userId: string, eventId: string, type = 'm.read'): void {
    const room = this.room(roomId);
    room.receipts.push({ pos: ++this.pos, eventId, userId, type, ts: Date.now() });
    this.notify();
  }

  setPresence(userId: string, presence: 'online' | 'offline' | 'unavailable', statusMsg: string | null = null): void {
    const u = this.user(userId);
    u.presence = { presence, statusMsg, pos: ++this.pos, lastActive: Date.now() };
    this.notify();
  }

  /** Stores media; returns its mxc:// URI. */
  upload(data: Buffer | string, contentType = 'application/octet-stream', filename: string | null = null): string {
    const id = randomId(12);
    this.media.set(id, { data: Buffer.isBuffer(data) ? data : Buffer.from(data), contentType, filename });
    return `mxc://${this.serverName}/${id}`;
  }

  /** Stored media by content URI (what an upload brought), or undefined. */
  mediaOf(mxc: string): { data: Buffer; contentType: string; filename: string | null } | undefined {
    const m = /^mxc:\/\/([^/]+)\/([^/]+)$/.exec(mxc);
    return m && m[1] === this.serverName ? this.media.get(m[2]!) : undefined;
  }

  /** Current state event content of a room (undefined if unset). */
  stateContent(roomId: string, type: string, stateKey = ''): Json | undefined {
    return this.room(roomId).state.get(`${type}\u0000${stateKey}`)?.event.content;
  }

  membership(roomId: string, userId: string): string {
    return (this.stateContent(roomId, 'm.room.member', userId)?.membership as string | undefined) ?? 'leave';
  }

  /** A room's events in order (the test's view of the timeline). */
  timeline(roomId: string): RawEvent[] {
    return this.room(roomId).events.map((e) => e.event);
  }

  event(roomId: string, eventId: string): RawEvent | undefined {
    return this.room(roomId).events.find((e) => e.event.event_id === eventId)?.event;
  }

  roomIdOf(alias: string): string | undefined {
    return this.aliases.get(alias);
  }

  /** Lists the room in the published room directory, or takes it out. */
  publish(roomId: string, published = true): void {
    this.room(roomId).published = published;
  }

  /**
   * The next `count` authenticated requests whose "METHOD /path" matches `pattern` get 429
   * M_LIMIT_EXCEEDED with `retry_after_ms` in the body and a Retry-After header (whole seconds).
   */
  rateLimit(pattern: RegExp, count: number, retryAfterMs = 100): void {
    this.limits.push({ pattern, left: count, retryAfterMs });
  }

  /** Initial syncs hang until releaseInitialSyncs() (a homeserver slow to build one). */
  stallInitialSyncs(): void {
    this.stalled ??= [];
  }

  releaseInitialSyncs(): void {
    const waiting = this.stalled ?? [];
    this.stalled = null;
    for (const w of waiting) w();
  }

  /** The next `count` event sends (PUT /send) get 429 M_LIMIT_EXCEEDED with retry_after_ms. */
  rateLimitSends(count: number, retryAfterMs = 100): void {
    this.limitedSends = count;
    this.limitRetryMs = retryAfterMs;
  }

  /** What clients sent, optionally filtered. */
  sent(filter: Partial<Pick<SentRequest, 'kind' | 'userId' | 'roomId' | 'eventType'>> = {}): SentRequest[] {
    return this.sentLog.filter((r) => Object.entries(filter).every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v));
  }

  /** Resolves with the first sent request (already made, or coming) that matches. */
  waitForSent(pred: (r: SentRequest) => boolean, timeoutMs = 5000): Promise<SentRequest> {
    const found = this.sentLog.find(pred);
    if (found) return Promise.resolve(found);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (r: SentRequest) => {
          clearTimeout(timer);
          resolve(r);
        },
      };
      const timer = setTimeout(() => {
        this.sentWaiters.splice(this.sentWaiters.indexOf(w), 1);
        reject(new Error(`no matching request within ${timeoutMs} ms; sent: ${this.sentLog.map((r) => `${r.kind} ${r.eventType ?? ''}`).join(', ')}`));
      }, timeoutMs);
      this.sentWaiters.push(w);
    });
  }

  clearSent(): void {
    this.sentLog.length = 0;
  }

  /**
   * An outage: every open connection (long polls included) is cut and new connections are reset
   * until restore(). Clients see network errors, not HTTP errors.
   */
  dropConnections(): void {
    this.down = true;
    for (const w of [...this.waiters]) w.wake();
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
  }

  restore(): void {
    this.down = false;
  }

  get isDown(): boolean {
    return this.down;
  }

  /** Open long-poll /sync requests (a client that is syncing has one). */
  get pendingSyncs(): number {
    return this.waiters.size;
  }

  // ================================================================ model

  private user(userId: string): FakeUser {
    const u = this.users.get(userId);
    if (!u) throw new Error(`fake homeserver: no user ${userId}`);
    return u;
  }

  private room(roomId: string): FakeRoom {
    const r = this.rooms.get(roomId);
    if (!r) throw new Error(`fake homeserver: no room ${roomId}`);
    return r;
  }

  /** The user and everyone in a room with them (joined or invited). */
  private sharedUsers(userId: string): Set<string> {
    const out = new Set<string>([userId]);
    for (const room of this.rooms.values()) {
      const mine = this.membershipIn(room, userId);
      if (mine !== 'join' && mine !== 'invite') continue;
      for (const e of room.state.values()) {
        if (e.event.type === 'm.room.member' && ['join', 'invite'].includes(e.event.content.membership as string)) out.add(e.event.state_key!);
      }
    }
    return out;
  }

  /** For device_lists: who joined or left the user's rooms after `since` (a room the user joined: all its members). */
  private membershipChangesSince(userId: string, since: number): { joined: Set<string>; left: Set<string> } {
    const joined = new Set<string>();
    const left = new Set<string>();
    for (const room of this.rooms.values()) {
      if (!this.memberOf(room, userId)) continue;
      for (const e of room.events) {
        if (e.pos <= since || e.event.type !== 'm.room.member') continue;
        const who = e.event.state_key!;
        const m = e.event.content.membership;
        if (who === userId) {
          const members = [...room.state.values()].filter((s) => s.event.type === 'm.room.member' && ['join', 'invite'].includes(s.event.content.membership as string)).map((s) => s.event.state_key!);
          if (m === 'join') for (const u of members) joined.add(u);
          else if (m === 'leave' || m === 'ban') for (const u of members) left.add(u);
        } else if (m === 'join' || m === 'invite') {
          joined.add(who);
        } else if (m === 'leave' || m === 'ban') {
          left.add(who);
        }
      }
    }
    return { joined, left };
  }

  private notify(): void {
    for (const w of [...this.waiters]) w.wake();
  }

  private append(
    room: FakeRoom,
    ev: { type: string; sender: string; content: Json; state_key?: string; redacts?: string; origin_server_ts?: number },
    txn?: { deviceKey: string; txnId: string },
  ): StoredEvent {
    const event: RawEvent = {
      type: ev.type,
      sender: ev.sender,
      content: ev.content,
      event_id: `$${randomId(24)}`,
      origin_server_ts: ev.origin_server_ts ?? Date.now(),
      room_id: room.id,
    };
    if (ev.redacts !== undefined) event.redacts = ev.redacts;
    const unsigned: Json = {};
    if (ev.state_key !== undefined) {
      event.state_key = ev.state_key;
      const prev = room.state.get(`${ev.type}\u0000${ev.state_key}`);
      if (prev) {
        unsigned.prev_content = prev.event.content;
        unsigned.replaces_state = prev.event.event_id;
        unsigned.prev_sender = prev.event.sender;
      }
    }
    if (Object.keys(unsigned).length) event.unsigned = unsigned;
    const stored: StoredEvent = { pos: ++this.pos, event, ...(txn ? { txn } : {}) };
    room.events.push(stored);
    if (ev.state_key !== undefined) room.state.set(`${ev.type}\u0000${ev.state_key}`, stored);
    // A typing user who sends a message stops typing.
    if (ev.type === 'm.room.message' && room.typing.userIds.includes(ev.sender)) {
      room.typing = { userIds: room.typing.userIds.filter((u) => u !== ev.sender), pos: ++this.pos };
    }
    this.notify();
    return stored;
  }

  private redact(room: FakeRoom, sender: string, target: string, content: Json, txn?: { deviceKey: string; txnId: string }): StoredEvent {
    const stored = this.append(room, { type: 'm.room.redaction', sender, content: { ...content, redacts: target }, redacts: target }, txn);
    const victim = room.events.find((e) => e.event.event_id === target);
    if (victim && !victim.redactedBy) victim.redactedBy = stored.event;
    return stored;
  }

  /** The event as clients see it (redacted if it was; without room_id inside /sync). */
  private clientEvent(stored: StoredEvent, forToken: TokenInfo | null, withRoomId: boolean): Json {
    const e = stored.event;
    const out: Json = { type: e.type, sender: e.sender, event_id: e.event_id, origin_server_ts: e.origin_server_ts };
    if (withRoomId) out.room_id = e.room_id;
    if (e.state_key !== undefined) out.state_key = e.state_key;
    if (e.redacts !== undefined) out.redacts = e.redacts;
    let content = e.content;
    const unsigned: Json = { ...(e.unsigned ?? {}), age: Math.max(0, Date.now() - e.origin_server_ts) };
    if (stored.redactedBy) {
      const keep = REDACT_KEEP[e.type] ?? [];
      content = Object.fromEntries(Object.entries(e.content).filter(([k]) => keep.includes(k)));
      unsigned.redacted_because = stored.redactedBy;
    }
    out.content = content;
    if (stored.txn && forToken && stored.txn.deviceKey === deviceKey(forToken)) unsigned.transaction_id = stored.txn.txnId;
    out.unsigned = unsigned;
    return out;
  }

  private stateAt(room: FakeRoom, pos: number): Map<string, StoredEvent> {
    const out = new Map<string, StoredEvent>();
    for (const e of room.events) {
      if (e.pos > pos) break;
      if (e.event.state_key !== undefined) out.set(`${e.event.type}\u0000${e.event.state_key}`, e);
    }
    return out;
  }

  private memberOf(room: FakeRoom, userId: string): StoredEvent | undefined {
    return room.state.get(`m.room.member\u0000${userId}`);
  }

  private membershipIn(room: FakeRoom, userId: string): string {
    return (this.memberOf(room, userId)?.event.content.membership as string | undefined) ?? 'leave';
  }

  private powerLevels(room: FakeRoom): Json {
    return room.state.get('m.room.power_levels\u0000')?.event.content ?? {};
  }

  private powerOf(room: FakeRoom, userId: string): number {
    const pl = this.powerLevels(room);
    const users = (pl.users ?? {}) as Record<string, number>;
    return users[userId] ?? (pl.users_default as number | undefined) ?? 0;
  }

  private requirePower(room: FakeRoom, userId: string, needed: number, what: string): void {
    if (this.powerOf(room, userId) < needed) throw new HttpError(403, 'M_FORBIDDEN', `You don't have permission to ${what}`);
  }

  private levelFor(room: FakeRoom, eventType: string, state: boolean): number {
    const pl = this.powerLevels(room);
    const events = (pl.events ?? {}) as Record<string, number>;
    if (events[eventType] !== undefined) return events[eventType]!;
    return state ? ((pl.state_default as number | undefined) ?? 50) : ((pl.events_default as number | undefined) ?? 0);
  }

  private requireJoined(room: FakeRoom, userId: string): void {
    if (this.membershipIn(room, userId) !== 'join') throw new HttpError(403, 'M_FORBIDDEN', `User ${userId} not in room ${room.id}`);
  }

  private findRoom(roomId: string): FakeRoom {
    const r = this.rooms.get(roomId);
    if (!r) throw new HttpError(404, 'M_NOT_FOUND', 'Unknown room');
    return r;
  }

  private record(ctx: Ctx, kind: SentRequest['kind'], fields: Partial<SentRequest> = {}): void {
    const r: SentRequest = {
      kind,
      userId: ctx.token?.userId ?? '',
      ...(ctx.token ? { deviceId: ctx.token.deviceId } : {}),
      method: ctx.method,
      path: ctx.path,
      body: ctx.body,
      at: Date.now(),
      ...fields,
    };
    this.sentLog.push(r);
    for (const w of [...this.sentWaiters]) {
      if (w.pred(r)) {
        this.sentWaiters.splice(this.sentWaiters.indexOf(w), 1);
        w.resolve(r);
      }
    }
  }

  // ================================================================ HTTP plumbing

  private async onRequest(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://localhost');
    const method = req.method ?? 'GET';
    const path = url.pathname;
    this.requests.push(`${method} ${path}`);
    if (this.opts.trace) process.stderr.write(`fake-hs ${method} ${path}${url.search}\n`);
    res.setHeader('Access-Control-Allow-Origin', '*');
    if (method === 'OPTIONS') {
      res.writeHead(204).end();
      return;
    }
    let raw: Buffer;
    const upload = method === 'POST' && /^\/_matrix\/media\/[^/]+\/upload/.test(path);
    // As Synapse's content repository: an upload whose Content-Length is over the limit is refused before its body is read.
    if (upload && Number(req.headers['content-length']) > this.maxUploadSize) {
      req.resume();
      this.error(res, new HttpError(413, 'M_TOO_LARGE', 'Upload request body is too large'));
      return;
    }
    try {
      raw = await readBody(req, upload ? this.maxUploadSize : 10 * 1024 * 1024);
    } catch {
      this.error(res, new HttpError(413, 'M_TOO_LARGE', 'Request too large'));
      return;
    }
    if (this.down) {
      req.socket.destroy();
      return;
    }
    let body: Json = {};
    const isJson = (req.headers['content-type'] ?? '').includes('json') || (raw.length > 0 && raw[0] === 0x7b);
    if (raw.length && isJson && !upload) {
      try {
        const parsed: unknown = JSON.parse(raw.toString('utf8'));
        if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) throw new Error('not an object');
        body = parsed as Json;
      } catch {
        this.error(res, new HttpError(400, 'M_NOT_JSON', 'Content not JSON.'));
        return;
      }
    }
    const ctx: Ctx = { req, res, method, path, query: url.searchParams, body, raw, token: null };
    let pathMatched = false;
    for (const route of this.routes) {
      const m = route.pattern.exec(path);
      if (!m) continue;
      pathMatched = true;
      if (route.method !== method) continue;
      try {
        if (route.auth) ctx.token = this.authenticate(req, url.searchParams);
        else ctx.token = this.tryAuthenticate(req, url.searchParams);
        if (route.auth) this.checkLimit(`${method} ${path}`);
        const result = await route.handler(ctx, m.slice(1).map((p) => decodeURIComponent(p)));
        if (result === undefined) return; // the handler answered (media)
        this.json(res, 200, result);
      } catch (err) {
        if (err instanceof HttpError) this.error(res, err);
        else if (err instanceof KeysHttpError) this.error(res, new HttpError(err.status, err.errcode, err.message, err.extra));
        else {
          process.stderr.write(`fake homeserver: ${method} ${path} failed: ${(err as Error).stack}\n`);
          this.error(res, new HttpError(500, 'M_UNKNOWN', 'Internal server error'));
        }
      }
      return;
    }
    if (pathMatched) {
      this.unknown.push(`${method} ${path}`);
      this.error(res, new HttpError(405, 'M_UNRECOGNIZED', 'Unrecognized request'));
      return;
    }
    this.unknown.push(`${method} ${path}`);
    this.error(res, new HttpError(404, 'M_UNRECOGNIZED', 'Unrecognized request'));
  }

  private checkLimit(request: string): void {
    const limit = this.limits.find((l) => l.left > 0 && l.pattern.test(request));
    if (!limit) return;
    limit.left--;
    throw new HttpError(429, 'M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: limit.retryAfterMs });
  }

  private json(res: ServerResponse, status: number, body: unknown, headers: Record<string, string> = {}): void {
    if (res.destroyed || res.writableEnded) return;
    const text = JSON.stringify(body);
    res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': String(Buffer.byteLength(text)), ...headers });
    res.end(text);
  }

  private error(res: ServerResponse, err: HttpError): void {
    const after: Record<string, string> = err.status === 429 && typeof err.extra.retry_after_ms === 'number' ? { 'Retry-After': String(Math.ceil(err.extra.retry_after_ms / 1000)) } : {};
    if (err.status === 429) this.rateLimited++;
    this.json(res, err.status, { errcode: err.errcode, error: err.message, ...err.extra }, after);
  }

  private tokenOf(req: IncomingMessage, query: URLSearchParams): string | null {
    const h = req.headers.authorization;
    if (h && /^Bearer /i.test(h)) return h.slice(7).trim();
    return query.get('access_token');
  }

  private authenticate(req: IncomingMessage, query: URLSearchParams): TokenInfo {
    const token = this.tokenOf(req, query);
    if (!token) throw new HttpError(401, 'M_MISSING_TOKEN', 'Missing access token');
    const info = this.tokens.get(token);
    if (info?.valid && info.expiresAt !== undefined && info.expiresAt <= Date.now()) {
      info.valid = false;
      info.softLogout = true;
    }
    if (!info || !info.valid) {
      this.tokenRefusals.push(`${req.method ?? 'GET'} ${new URL(req.url ?? '/', 'http://localhost').pathname}`);
      throw new HttpError(401, 'M_UNKNOWN_TOKEN', 'Invalid access token passed.', { soft_logout: info?.softLogout ?? false });
    }
    return info;
  }

  private tryAuthenticate(req: IncomingMessage, query: URLSearchParams): TokenInfo | null {
    const token = this.tokenOf(req, query);
    if (!token) return null;
    const info = this.tokens.get(token);
    return info && info.valid ? info : null;
  }

  private route(method: string, pattern: string, handler: Handler, auth = true): void {
    this.routes.push({ method, pattern: new RegExp(`^${pattern}/?$`), handler, auth });
  }

  // ================================================================ endpoints

  private defineRoutes(): void {
    const C = CLIENT;
    this.route('GET', '/_matrix/client/versions', () => ({
      versions: ['r0.6.1', 'v1.1', 'v1.2', 'v1.3', 'v1.4', 'v1.5', 'v1.6', 'v1.7', 'v1.8', 'v1.9', 'v1.10', 'v1.11'],
      unstable_features: {},
    }), false);
    if (this.opts.wellKnown) this.route('GET', '/\\.well-known/matrix/client', () => ({ 'm.homeserver': { base_url: this.url } }), false);
    this.route('GET', `${C}/capabilities`, () => ({
      capabilities: {
        'm.change_password': { enabled: true },
        'm.room_versions': { default: '10', available: Object.fromEntries(['1', '2', '3', '4', '5', '6', '7', '8', '9', '10', '11'].map((v) => [v, 'stable'])) },
        'm.set_displayname': { enabled: true },
        'm.set_avatar_url': { enabled: true },
        'm.3pid_changes': { enabled: false },
      },
    }));

    // ---- login
    // Behind the Matrix Authentication Service (as on matrix.org) there is no password login.
    this.route('GET', `${C}/login`, () => ({ flows: this.opts.oauth && !this.opts.oauth.passwordLogin ? [] : [{ type: 'm.login.password' }] }), false);
    this.route('POST', `${C}/login`, (ctx) => this.login(ctx), false);
    this.route('POST', `${C}/logout`, (ctx) => {
      ctx.token!.valid = false;
      this.record(ctx, 'logout');
      return {};
    });
    this.route('POST', `${C}/logout/all`, (ctx) => {
      this.revokeTokens(ctx.token!.userId);
      this.record(ctx, 'logout');
      return {};
    });
    this.route('GET', `${C}/account/whoami`, (ctx) => ({ user_id: ctx.token!.userId, device_id: ctx.token!.deviceId, is_guest: false }));

    // ---- sync and filters
    this.route('GET', `${C}/sync`, (ctx) => this.sync(ctx));
    this.route('POST', `${C}/user/${SEG}/filter`, (ctx, [userId]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot create filters for other users');
      const u = this.user(userId!);
      u.filters.push(ctx.body);
      this.record(ctx, 'filter');
      return { filter_id: String(u.filters.length - 1) };
    });
    this.route('GET', `${C}/user/${SEG}/filter/${SEG}`, (ctx, [userId, id]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot get filters for other users');
      const f = this.user(userId!).filters[Number(id)];
      if (!f) throw new HttpError(404, 'M_NOT_FOUND', 'No such filter');
      return f;
    });
    this.route('GET', `${C}/pushrules`, () => ({ global: { override: [], content: [], room: [], sender: [], underride: [] } }));

    // ---- account data, presence, profile
    this.route('GET', `${C}/user/${SEG}/account_data/${SEG}`, (ctx, [userId, type]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot get account data for other users.');
      const c = this.user(userId!).accountData.get(type!);
      if (!c) throw new HttpError(404, 'M_NOT_FOUND', 'Account data not found');
      return c.content;
    });
    this.route('PUT', `${C}/user/${SEG}/account_data/${SEG}`, (ctx, [userId, type]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot add account data for other users.');
      this.setAccountData(userId!, type!, ctx.body);
      this.record(ctx, 'account_data', { eventType: type! });
      return {};
    });
    this.route('GET', `${C}/user/${SEG}/rooms/${SEG}/account_data/${SEG}`, (ctx, [userId, roomId, type]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot get account data for other users.');
      const c = this.findRoom(roomId!).accountData.get(userId!)?.get(type!);
      if (!c) throw new HttpError(404, 'M_NOT_FOUND', 'Room account data not found');
      return c.content;
    });
    this.route('PUT', `${C}/user/${SEG}/rooms/${SEG}/account_data/${SEG}`, (ctx, [userId, roomId, type]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot add account data for other users.');
      this.setRoomAccountData(this.findRoom(roomId!), userId!, type!, ctx.body);
      this.record(ctx, 'room_account_data', { roomId: roomId!, eventType: type! });
      return {};
    });
    this.route('GET', `${C}/presence/${SEG}/status`, (_ctx, [userId]) => {
      const u = this.users.get(userId!);
      if (!u) throw new HttpError(404, 'M_NOT_FOUND', 'Unknown user');
      return { presence: u.presence.presence, last_active_ago: Date.now() - u.presence.lastActive, ...(u.presence.statusMsg ? { status_msg: u.presence.statusMsg } : {}) };
    });
    this.route('PUT', `${C}/presence/${SEG}/status`, (ctx, [userId]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot set presence for other users');
      const presence = String(ctx.body.presence ?? '');
      if (!['online', 'offline', 'unavailable'].includes(presence)) throw new HttpError(400, 'M_INVALID_PARAM', 'Invalid presence state');
      this.setPresence(userId!, presence as 'online', typeof ctx.body.status_msg === 'string' ? ctx.body.status_msg : null);
      this.record(ctx, 'presence');
      return {};
    });
    this.route('GET', `${C}/profile/${SEG}`, (_ctx, [userId]) => {
      const u = this.users.get(userId!);
      if (!u) throw new HttpError(404, 'M_NOT_FOUND', 'Profile was not found');
      return { displayname: u.displayName };
    });
    this.route('GET', `${C}/profile/${SEG}/displayname`, (_ctx, [userId]) => {
      const u = this.users.get(userId!);
      if (!u) throw new HttpError(404, 'M_NOT_FOUND', 'Profile was not found');
      return { displayname: u.displayName };
    });
    this.route('PUT', `${C}/profile/${SEG}/displayname`, (ctx, [userId]) => {
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot set another user\'s displayname');
      this.setDisplayName(userId!, String(ctx.body.displayname ?? ''));
      this.record(ctx, 'displayname');
      return {};
    });

    // ---- rooms: membership and directory
    this.route('POST', `${C}/createRoom`, (ctx) => this.createRoomRequest(ctx));
    this.route('GET', `${C}/joined_rooms`, (ctx) => ({
      joined_rooms: [...this.rooms.values()].filter((r) => this.membershipIn(r, ctx.token!.userId) === 'join').map((r) => r.id),
    }));
    this.route('GET', `${C}/directory/room/${SEG}`, (_ctx, [alias]) => {
      const id = this.aliases.get(alias!);
      if (!id) throw new HttpError(404, 'M_NOT_FOUND', `Room alias ${alias} not found`);
      return { room_id: id, servers: [this.serverName] };
    });
    this.route('GET', `${C}/directory/list/room/${SEG}`, (_ctx, [roomId]) => ({ visibility: this.findRoom(roomId!).published ? 'public' : 'private' }), false);
    this.route('PUT', `${C}/directory/list/room/${SEG}`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      const visibility = ctx.body.visibility;
      if (visibility !== 'public' && visibility !== 'private') throw new HttpError(400, 'M_INVALID_PARAM', 'visibility must be public or private');
      this.requireJoined(room, ctx.token!.userId);
      this.requirePower(room, ctx.token!.userId, this.levelFor(room, 'm.room.canonical_alias', true), 'change the room directory');
      room.published = visibility === 'public';
      return {};
    });
    this.route('GET', `${C}/publicRooms`, (ctx) => this.publicRooms(ctx.query.get('limit'), ctx.query.get('since'), ctx.query.get('server'), null), false);
    this.route('POST', `${C}/publicRooms`, (ctx) => {
      const b = ctx.body;
      const filter = (b.filter ?? {}) as Json;
      const term = typeof filter.generic_search_term === 'string' ? filter.generic_search_term : null;
      return this.publicRooms(b.limit === undefined ? null : String(b.limit), typeof b.since === 'string' ? b.since : null, ctx.query.get('server'), term);
    });
    this.route('POST', `${C}/join/${SEG}`, (ctx, [idOrAlias]) => this.joinRequest(ctx, idOrAlias!));
    this.route('POST', `${C}/rooms/${SEG}/join`, (ctx, [roomId]) => this.joinRequest(ctx, roomId!));
    this.route('POST', `${C}/rooms/${SEG}/leave`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      const me = ctx.token!.userId;
      const m = this.membershipIn(room, me);
      if (m !== 'join' && m !== 'invite' && m !== 'knock') throw new HttpError(403, 'M_FORBIDDEN', `User ${me} is not in room ${room.id}`);
      const content: Json = { membership: 'leave' };
      if (typeof ctx.body.reason === 'string') content.reason = ctx.body.reason;
      const ev = this.append(room, { type: 'm.room.member', sender: me, state_key: me, content });
      this.record(ctx, 'leave', { roomId: room.id, eventId: ev.event.event_id, target: me });
      return {};
    });
    this.route('POST', `${C}/rooms/${SEG}/forget`, () => ({}));
    this.route('POST', `${C}/rooms/${SEG}/invite`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      const me = ctx.token!.userId;
      this.requireJoined(room, me);
      const target = String(ctx.body.user_id ?? '');
      if (!this.users.has(target)) throw new HttpError(404, 'M_NOT_FOUND', 'Unknown user');
      this.requirePower(room, me, (this.powerLevels(room).invite as number | undefined) ?? 0, 'invite');
      const cur = this.membershipIn(room, target);
      if (cur === 'join' || cur === 'ban') throw new HttpError(403, 'M_FORBIDDEN', `${target} is already in the room.`);
      const content: Json = { membership: 'invite', displayname: this.user(target).displayName };
      if (typeof ctx.body.reason === 'string') content.reason = ctx.body.reason;
      const ev = this.append(room, { type: 'm.room.member', sender: me, state_key: target, content });
      this.record(ctx, 'invite', { roomId: room.id, eventId: ev.event.event_id, target });
      return {};
    });
    for (const kind of ['kick', 'ban'] as const) {
      this.route('POST', `${C}/rooms/${SEG}/${kind}`, (ctx, [roomId]) => {
        const room = this.findRoom(roomId!);
        const me = ctx.token!.userId;
        this.requireJoined(room, me);
        const target = String(ctx.body.user_id ?? '');
        this.requirePower(room, me, (this.powerLevels(room)[kind] as number | undefined) ?? 50, kind);
        if (kind === 'kick' && !['join', 'invite'].includes(this.membershipIn(room, target))) throw new HttpError(403, 'M_FORBIDDEN', 'The target user is not in the room');
        const content: Json = { membership: kind === 'ban' ? 'ban' : 'leave' };
        if (typeof ctx.body.reason === 'string') content.reason = ctx.body.reason;
        const ev = this.append(room, { type: 'm.room.member', sender: me, state_key: target, content });
        this.record(ctx, kind, { roomId: room.id, eventId: ev.event.event_id, target });
        return {};
      });
    }

    // ---- rooms: events
    this.route('PUT', `${C}/rooms/${SEG}/send/${SEG}/${SEG}`, (ctx, [roomId, type, txnId]) => {
      const room = this.findRoom(roomId!);
      const me = ctx.token!.userId;
      const key = `${deviceKey(ctx.token!)}\u0000${room.id}\u0000${txnId}`;
      const known = this.txns.get(key);
      if (known) return { event_id: known };
      if (this.limitedSends > 0) {
        this.limitedSends--;
        throw new HttpError(429, 'M_LIMIT_EXCEEDED', 'Too many requests', { retry_after_ms: this.limitRetryMs });
      }
      this.requireJoined(room, me);
      this.requirePower(room, me, this.levelFor(room, type!, false), `send ${type}`);
      const ev = this.append(room, { type: type!, sender: me, content: ctx.body }, { deviceKey: deviceKey(ctx.token!), txnId: txnId! });
      this.txns.set(key, ev.event.event_id);
      this.record(ctx, 'event', { roomId: room.id, eventType: type!, txnId: txnId!, eventId: ev.event.event_id });
      return { event_id: ev.event.event_id };
    });
    this.route('PUT', `${C}/rooms/${SEG}/redact/${SEG}/${SEG}`, (ctx, [roomId, eventId, txnId]) => {
      const room = this.findRoom(roomId!);
      const me = ctx.token!.userId;
      const key = `${deviceKey(ctx.token!)}\u0000${room.id}\u0000${txnId}`;
      const known = this.txns.get(key);
      if (known) return { event_id: known };
      this.requireJoined(room, me);
      const target = room.events.find((e) => e.event.event_id === eventId);
      if (!target) throw new HttpError(404, 'M_NOT_FOUND', 'Event not found');
      if (target.event.sender !== me) this.requirePower(room, me, (this.powerLevels(room).redact as number | undefined) ?? 50, 'redact events of others');
      const content: Json = {};
      if (typeof ctx.body.reason === 'string') content.reason = ctx.body.reason;
      const ev = this.redact(room, me, eventId!, content, { deviceKey: deviceKey(ctx.token!), txnId: txnId! });
      this.txns.set(key, ev.event.event_id);
      this.record(ctx, 'redact', { roomId: room.id, eventType: 'm.room.redaction', txnId: txnId!, eventId: ev.event.event_id, target: eventId! });
      return { event_id: ev.event.event_id };
    });
    this.route('GET', `${C}/rooms/${SEG}/state`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      this.requireJoined(room, ctx.token!.userId);
      return [...room.state.values()].map((e) => this.clientEvent(e, ctx.token, true));
    });
    const getState = (ctx: Ctx, roomId: string, type: string, stateKey: string) => {
      const room = this.findRoom(roomId);
      this.requireJoined(room, ctx.token!.userId);
      const e = room.state.get(`${type}\u0000${stateKey}`);
      if (!e) throw new HttpError(404, 'M_NOT_FOUND', 'Event not found.');
      return e.event.content;
    };
    const putState = (ctx: Ctx, roomId: string, type: string, stateKey: string) => {
      const room = this.findRoom(roomId);
      const me = ctx.token!.userId;
      this.requireJoined(room, me);
      if (type === 'm.room.member' && stateKey !== me) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot set the membership of others this way');
      if (type !== 'm.room.member') this.requirePower(room, me, this.levelFor(room, type, true), `send ${type}`);
      const ev = this.append(room, { type, sender: me, state_key: stateKey, content: ctx.body });
      this.record(ctx, 'state', { roomId: room.id, eventType: type, stateKey, eventId: ev.event.event_id });
      return { event_id: ev.event.event_id };
    };
    this.route('GET', `${C}/rooms/${SEG}/state/${SEG}`, (ctx, [roomId, type]) => getState(ctx, roomId!, type!, ''));
    this.route('GET', `${C}/rooms/${SEG}/state/${SEG}/${SEG}`, (ctx, [roomId, type, key]) => getState(ctx, roomId!, type!, key!));
    this.route('PUT', `${C}/rooms/${SEG}/state/${SEG}`, (ctx, [roomId, type]) => putState(ctx, roomId!, type!, ''));
    this.route('PUT', `${C}/rooms/${SEG}/state/${SEG}/${SEG}`, (ctx, [roomId, type, key]) => putState(ctx, roomId!, type!, key!));
    this.route('PUT', `${C}/rooms/${SEG}/typing/${SEG}`, (ctx, [roomId, userId]) => {
      const room = this.findRoom(roomId!);
      if (userId !== ctx.token!.userId) throw new HttpError(403, 'M_FORBIDDEN', 'Cannot set typing for other users');
      this.requireJoined(room, userId!);
      const typing = ctx.body.typing === true;
      const others = room.typing.userIds.filter((u) => u !== userId);
      this.setTyping(room.id, typing ? [...others, userId!] : others);
      this.record(ctx, 'typing', { roomId: room.id });
      return {};
    });
    this.route('POST', `${C}/rooms/${SEG}/receipt/${SEG}/${SEG}`, (ctx, [roomId, type, eventId]) => {
      const room = this.findRoom(roomId!);
      this.requireJoined(room, ctx.token!.userId);
      if (!['m.read', 'm.read.private', 'm.fully_read'].includes(type!)) throw new HttpError(400, 'M_INVALID_PARAM', 'Unknown receipt type');
      if (!room.events.some((e) => e.event.event_id === eventId)) throw new HttpError(404, 'M_NOT_FOUND', 'Event not found');
      if (type === 'm.fully_read') this.setRoomAccountData(room, ctx.token!.userId, 'm.fully_read', { event_id: eventId });
      else this.receipt(room.id, ctx.token!.userId, eventId!, type);
      this.record(ctx, 'receipt', { roomId: room.id, eventType: type!, target: eventId! });
      return {};
    });
    this.route('POST', `${C}/rooms/${SEG}/read_markers`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      const me = ctx.token!.userId;
      this.requireJoined(room, me);
      const fully = ctx.body['m.fully_read'];
      const read = ctx.body['m.read'];
      const priv = ctx.body['m.read.private'];
      for (const id of [fully, read, priv]) {
        if (id !== undefined && (typeof id !== 'string' || !room.events.some((e) => e.event.event_id === id))) throw new HttpError(400, 'M_INVALID_PARAM', 'Unknown event');
      }
      if (typeof fully === 'string') this.setRoomAccountData(room, me, 'm.fully_read', { event_id: fully });
      if (typeof read === 'string') this.receipt(room.id, me, read, 'm.read');
      if (typeof priv === 'string') this.receipt(room.id, me, priv, 'm.read.private');
      this.record(ctx, 'read_markers', { roomId: room.id, ...(typeof read === 'string' ? { target: read } : typeof fully === 'string' ? { target: fully } : {}) });
      return {};
    });
    this.route('GET', `${C}/rooms/${SEG}/members`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      if (this.membershipIn(room, ctx.token!.userId) !== 'join') throw new HttpError(403, 'M_FORBIDDEN', 'not in room');
      const membership = ctx.query.get('membership');
      const not = ctx.query.get('not_membership');
      const chunk = [...room.state.values()]
        .filter((e) => e.event.type === 'm.room.member')
        .filter((e) => (!membership || e.event.content.membership === membership) && (!not || e.event.content.membership !== not))
        .map((e) => this.clientEvent(e, ctx.token, true));
      return { chunk };
    });
    this.route('GET', `${C}/rooms/${SEG}/joined_members`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      this.requireJoined(room, ctx.token!.userId);
      const joined: Record<string, Json> = {};
      for (const e of room.state.values()) {
        if (e.event.type === 'm.room.member' && e.event.content.membership === 'join') {
          joined[e.event.state_key!] = { display_name: e.event.content.displayname ?? null, avatar_url: e.event.content.avatar_url ?? null };
        }
      }
      return { joined };
    });
    this.route('GET', `${C}/rooms/${SEG}/event/${SEG}`, (ctx, [roomId, eventId]) => {
      const room = this.findRoom(roomId!);
      this.requireJoined(room, ctx.token!.userId);
      const e = room.events.find((x) => x.event.event_id === eventId);
      if (!e) throw new HttpError(404, 'M_NOT_FOUND', 'Event not found.');
      return this.clientEvent(e, ctx.token, true);
    });
    this.route('GET', `${C}/rooms/${SEG}/messages`, (ctx, [roomId]) => {
      const room = this.findRoom(roomId!);
      this.requireJoined(room, ctx.token!.userId);
      const dir = ctx.query.get('dir') === 'f' ? 'f' : 'b';
      const limit = Math.min(Number(ctx.query.get('limit') ?? 10) || 10, 100);
      const from = ctx.query.get('from');
      const fromPos = from ? parsePos(from) : dir === 'b' ? this.pos : 0;
      if (fromPos === null) throw new HttpError(400, 'M_INVALID_PARAM', 'Invalid from token');
      let chunk: StoredEvent[];
      if (dir === 'b') chunk = room.events.filter((e) => e.pos <= fromPos).reverse().slice(0, limit);
      else chunk = room.events.filter((e) => e.pos > fromPos).slice(0, limit);
      const last = chunk[chunk.length - 1];
      return {
        start: `t${fromPos}`,
        chunk: chunk.map((e) => this.clientEvent(e, ctx.token, true)),
        ...(chunk.length === limit && last ? { end: `t${dir === 'b' ? last.pos - 1 : last.pos}` } : {}),
      };
    });
    const relations = (ctx: Ctx, roomId: string, eventId: string, relType?: string, eventType?: string) => {
      const room = this.findRoom(roomId);
      this.requireJoined(room, ctx.token!.userId);
      const chunk = room.events
        .filter((e) => !e.redactedBy)
        .filter((e) => {
          const rel = e.event.content['m.relates_to'] as Json | undefined;
          if (!rel || rel.event_id !== eventId) return false;
          if (relType && rel.rel_type !== relType) return false;
          if (eventType && e.event.type !== eventType) return false;
          return true;
        })
        .reverse()
        .map((e) => this.clientEvent(e, ctx.token, true));
      return { chunk };
    };
    this.route('GET', `${C}/rooms/${SEG}/relations/${SEG}`, (ctx, [r, e]) => relations(ctx, r!, e!));
    this.route('GET', `${C}/rooms/${SEG}/relations/${SEG}/${SEG}`, (ctx, [r, e, t]) => relations(ctx, r!, e!, t));
    this.route('GET', `${C}/rooms/${SEG}/relations/${SEG}/${SEG}/${SEG}`, (ctx, [r, e, t, et]) => relations(ctx, r!, e!, t, et));

    // ---- media
    const mediaConfig = () => ({ 'm.upload.size': this.maxUploadSize });
    this.route('GET', '/_matrix/media/(?:v3|r0)/config', mediaConfig);
    this.route('GET', '/_matrix/client/v1/media/config', mediaConfig);
    this.route('POST', '/_matrix/media/(?:v3|r0)/upload', (ctx) => {
      const mxc = this.upload(ctx.raw, String(ctx.req.headers['content-type'] ?? 'application/octet-stream'), ctx.query.get('filename'));
      this.record(ctx, 'upload');
      return { content_uri: mxc };
    });
    const download = (ctx: Ctx, server: string, mediaId: string) => {
      const m = server === this.serverName ? this.media.get(mediaId) : undefined;
      if (!m) throw new HttpError(404, 'M_NOT_FOUND', 'Not found');
      ctx.res.writeHead(200, {
        'Content-Type': m.contentType,
        'Content-Length': m.data.length,
        'Content-Disposition': m.filename ? `inline; filename*=utf-8''${encodeURIComponent(m.filename)}` : 'inline',
      });
      ctx.res.end(m.data);
      return undefined;
    };
    const legacy = (ctx: Ctx, [server, id]: string[]) => {
      if (!this.opts.legacyMedia) throw new HttpError(404, 'M_NOT_FOUND', 'Not found');
      return download(ctx, server!, id!);
    };
    this.route('GET', `/_matrix/media/(?:v3|r0)/download/${SEG}/${SEG}`, legacy, false);
    this.route('GET', `/_matrix/media/(?:v3|r0)/download/${SEG}/${SEG}/${SEG}`, legacy, false);
    this.route('GET', `/_matrix/client/v1/media/download/${SEG}/${SEG}`, (ctx, [s, id]) => download(ctx, s!, id!));
    this.route('GET', `/_matrix/client/v1/media/download/${SEG}/${SEG}/${SEG}`, (ctx, [s, id]) => download(ctx, s!, id!));
  }

  private login(ctx: Ctx): Json {
    const b = ctx.body;
    if (b.type !== 'm.login.password') throw new HttpError(400, 'M_UNKNOWN', 'Unknown login type');
    if (this.opts.oauth && !this.opts.oauth.passwordLogin) throw new HttpError(400, 'M_UNKNOWN', 'Password login is disabled');
    const ident = b.identifier as Json | undefined;
    let user: string | undefined;
    if (ident) {
      if (ident.type !== 'm.id.user') throw new HttpError(400, 'M_UNKNOWN', 'Unknown identifier type');
      user = typeof ident.user === 'string' ? ident.user : undefined;
    } else if (typeof b.user === 'string') {
      user = b.user;
    }
    if (!user) throw new HttpError(400, 'M_MISSING_PARAM', 'Missing user');
    const userId = user.startsWith('@') ? user : `@${user}:${this.serverName}`;
    const u = this.users.get(userId.toLowerCase()) ?? this.users.get(userId);
    this.logins++;
    if (!u || typeof b.password !== 'string' || b.password !== u.password) throw new HttpError(403, 'M_FORBIDDEN', 'Invalid username or password');
    const deviceId = typeof b.device_id === 'string' && b.device_id ? b.device_id : `DEV${randomId(4).toUpperCase()}`;
    const { accessToken } = this.issueToken(u.userId, deviceId);
    if (typeof b.initial_device_display_name === 'string') this.keys.ensureDevice(u.userId, deviceId, b.initial_device_display_name);
    ctx.token = this.tokens.get(accessToken)!;
    this.record(ctx, 'login', { body: { type: b.type, identifier: ident ?? { user }, device_id: deviceId } });
    return { user_id: u.userId, access_token: accessToken, device_id: deviceId, home_server: this.serverName, well_known: { 'm.homeserver': { base_url: this.url } } };
  }

  private setRoomAccountData(room: FakeRoom, userId: string, type: string, content: Json): void {
    let m = room.accountData.get(userId);
    if (!m) room.accountData.set(userId, (m = new Map()));
    m.set(type, { content, pos: ++this.pos });
    this.notify();
  }

  private joinRequest(ctx: Ctx, idOrAlias: string): Json {
    const me = ctx.token!.userId;
    let roomId = idOrAlias;
    if (idOrAlias.startsWith('#')) {
      const id = this.aliases.get(idOrAlias);
      if (!id) throw new HttpError(404, 'M_NOT_FOUND', `Room alias ${idOrAlias} not found`);
      roomId = id;
    } else if (!idOrAlias.startsWith('!')) {
      throw new HttpError(400, 'M_INVALID_PARAM', `${idOrAlias} was not legal room ID or room alias`);
    }
    const room = this.rooms.get(roomId);
    if (!room) throw new HttpError(404, 'M_NOT_FOUND', 'No known servers');
    const cur = this.membershipIn(room, me);
    if (cur === 'ban') throw new HttpError(403, 'M_FORBIDDEN', 'You are banned from this room');
    if (cur !== 'join') {
      const rule = room.state.get('m.room.join_rules\u0000')?.event.content.join_rule;
      if (rule !== 'public' && cur !== 'invite') throw new HttpError(403, 'M_FORBIDDEN', 'You are not invited to this room.');
      const prev = this.memberOf(room, me)?.event.content;
      const content: Json = { membership: 'join', displayname: this.user(me).displayName };
      if (cur === 'invite' && prev?.is_direct) content.is_direct = true;
      const ev = this.append(room, { type: 'm.room.member', sender: me, state_key: me, content });
      this.record(ctx, 'join', { roomId: room.id, eventId: ev.event.event_id, target: idOrAlias });
    } else {
      this.record(ctx, 'join', { roomId: room.id, target: idOrAlias });
    }
    return { room_id: room.id };
  }

  /**
   * GET/POST /publicRooms: the published rooms, most joined members first; `since` is a token of
   * an earlier answer (next_batch forwards, prev_batch backwards).
   */
  private publicRooms(limitParam: string | null, since: string | null, server: string | null, term: string | null): Json {
    if (server !== null && server !== this.serverName) throw new HttpError(404, 'M_NOT_FOUND', `Cannot list the rooms of ${server}`);
    const limit = limitParam === null ? null : Number(limitParam);
    if (limit !== null && (!Number.isInteger(limit) || limit < 0)) throw new HttpError(400, 'M_INVALID_PARAM', 'limit must be a non-negative integer');
    let start = 0;
    if (since !== null) {
      const m = /^p(\d+)$/.exec(since);
      if (!m) throw new HttpError(400, 'M_INVALID_PARAM', 'Unknown pagination token');
      start = Number(m[1]);
    }
    const stateOf = (room: FakeRoom, type: string) => room.state.get(`${type}\u0000`)?.event.content ?? {};
    const joined = (room: FakeRoom) => [...room.state.values()].filter((e) => e.event.type === 'm.room.member' && e.event.content.membership === 'join').length;
    const chunk = [...this.rooms.values()]
      .filter((r) => r.published)
      .map((r) => {
        const out: Json = {
          room_id: r.id,
          num_joined_members: joined(r),
          world_readable: stateOf(r, 'm.room.history_visibility').history_visibility === 'world_readable',
          guest_can_join: stateOf(r, 'm.room.guest_access').guest_access === 'can_join',
        };
        for (const [key, type, field] of [['name', 'm.room.name', 'name'], ['topic', 'm.room.topic', 'topic'], ['canonical_alias', 'm.room.canonical_alias', 'alias'], ['avatar_url', 'm.room.avatar', 'url'], ['join_rule', 'm.room.join_rules', 'join_rule']] as const) {
          const v = stateOf(r, type)[field];
          if (typeof v === 'string' && v) out[key] = v;
        }
        const roomType = stateOf(r, 'm.room.create').type;
        if (typeof roomType === 'string') out.room_type = roomType;
        return out;
      })
      .filter((c) => term === null || [c.name, c.topic, c.canonical_alias].some((v) => typeof v === 'string' && v.toLowerCase().includes(term.toLowerCase())))
      .sort((a, b) => (b.num_joined_members as number) - (a.num_joined_members as number) || String(a.room_id).localeCompare(String(b.room_id)));
    const end = limit === null ? chunk.length : Math.min(chunk.length, start + limit);
    const page: Json = { chunk: chunk.slice(start, end), total_room_count_estimate: chunk.length };
    if (end < chunk.length) page.next_batch = `p${end}`;
    if (start > 0) page.prev_batch = `p${Math.max(0, start - (limit ?? start))}`;
    return page;
  }

  private createRoomRequest(ctx: Ctx): Json {
    const b = ctx.body;
    const me = ctx.token!.userId;
    const invite = Array.isArray(b.invite) ? (b.invite as unknown[]).map(String) : [];
    for (const u of invite) if (!this.users.has(u)) throw new HttpError(404, 'M_NOT_FOUND', `Unknown user ${u}`);
    let alias: string | undefined;
    if (typeof b.room_alias_name === 'string') {
      alias = `#${b.room_alias_name}:${this.serverName}`;
      if (this.aliases.has(alias)) throw new HttpError(400, 'M_ROOM_IN_USE', 'Room alias already taken');
    }
    const preset = String(b.preset ?? (b.visibility === 'public' ? 'public_chat' : 'private_chat'));
    const roomId = this.createRoom({
      creator: me,
      ...(typeof b.name === 'string' ? { name: b.name } : {}),
      ...(typeof b.topic === 'string' ? { topic: b.topic } : {}),
      ...(alias ? { alias } : {}),
      joinRule: preset === 'public_chat' ? 'public' : 'invite',
      ...(typeof b.room_version === 'string' ? { roomVersion: b.room_version } : {}),
      ...(preset === 'trusted_private_chat' ? { powerLevels: Object.fromEntries(invite.map((u) => [u, 100])) } : {}),
      published: b.visibility === 'public',
    });
    const room = this.room(roomId);
    for (const st of Array.isArray(b.initial_state) ? (b.initial_state as Json[]) : []) {
      this.append(room, { type: String(st.type), sender: me, state_key: String(st.state_key ?? ''), content: (st.content ?? {}) as Json });
    }
    for (const u of invite) {
      const content: Json = { membership: 'invite', displayname: this.user(u).displayName };
      if (b.is_direct === true) content.is_direct = true;
      this.append(room, { type: 'm.room.member', sender: me, state_key: u, content });
    }
    this.record(ctx, 'createRoom', { roomId });
    return { room_id: roomId };
  }

  // ================================================================ /sync

  private async sync(ctx: Ctx): Promise<Json> {
    const token = ctx.token!;
    const since = ctx.query.get('since');
    const sincePos = since ? parsePos(since) : null;
    if (since && sincePos === null) throw new HttpError(400, 'M_INVALID_PARAM', 'Invalid since token');
    // A position the server never gave out (e.g. from before a reset of its database).
    if (sincePos !== null && sincePos > this.pos) throw new HttpError(400, 'M_UNKNOWN_POS', 'Unknown position');
    const fullState = ctx.query.get('full_state') === 'true';
    const timeout = Math.min(Math.max(Number(ctx.query.get('timeout') ?? 0) || 0, 0), 60_000);
    const filter = this.filterOf(token.userId, ctx.query.get('filter'));
    this.syncs.push({ since, filter: ctx.query.get('filter') });
    if (!since && this.stalled) {
      const stalled = this.stalled;
      await new Promise<void>((resolve) => {
        stalled.push(resolve);
        ctx.req.socket.once('close', resolve);
      });
      if (ctx.res.destroyed) throw new HttpError(503, 'M_UNKNOWN', 'gone');
    }
    const setPresence = ctx.query.get('set_presence');
    if (setPresence !== 'offline') {
      const u = this.user(token.userId);
      const wanted = setPresence === 'unavailable' ? 'unavailable' : 'online';
      if (u.presence.presence !== wanted) u.presence = { presence: wanted, statusMsg: u.presence.statusMsg, pos: ++this.pos, lastActive: Date.now() };
    }
    let body = this.buildSync(token, sincePos, filter, fullState);
    if (sincePos !== null && !fullState && timeout > 0 && isEmptySync(body)) {
      await new Promise<void>((resolve) => {
        let timer: NodeJS.Timeout | null = null;
        const w: SyncWaiter = {
          wake: () => {
            if (timer) clearTimeout(timer);
            this.waiters.delete(w);
            ctx.req.socket.off('close', w.wake);
            resolve();
          },
        };
        timer = setTimeout(w.wake, timeout);
        this.waiters.add(w);
        ctx.req.socket.once('close', w.wake);
      });
      if (this.down || ctx.res.destroyed) {
        ctx.req.socket.destroy();
        throw new HttpError(503, 'M_UNKNOWN', 'gone');
      }
      if (!token.valid) throw new HttpError(401, 'M_UNKNOWN_TOKEN', 'Invalid access token passed.', { soft_logout: token.softLogout });
      body = this.buildSync(token, sincePos, filter, fullState);
    }
    return body;
  }

  private filterOf(userId: string, filter: string | null): Json {
    if (!filter) return {};
    if (filter.startsWith('{')) {
      try {
        return JSON.parse(filter) as Json;
      } catch {
        throw new HttpError(400, 'M_INVALID_PARAM', 'Invalid filter JSON');
      }
    }
    const f = this.user(userId).filters[Number(filter)];
    if (!f) throw new HttpError(400, 'M_INVALID_PARAM', 'Unknown filter');
    return f;
  }

  private buildSync(token: TokenInfo, since: number | null, filter: Json, fullState: boolean): Json {
    const me = token.userId;
    const now = this.pos;
    const roomFilter = (filter.room ?? {}) as Json;
    const timelineFilter = (roomFilter.timeline ?? {}) as Json;
    const limit = typeof timelineFilter.limit === 'number' ? Math.max(0, timelineFilter.limit) : 10;
    const lazy = ((roomFilter.state ?? {}) as Json).lazy_load_members === true;
    const after = (pos: number) => since === null || pos > since;
    const join: Json = {};
    const invite: Json = {};
    const leave: Json = {};
    for (const room of this.rooms.values()) {
      const mine = this.memberOf(room, me);
      if (!mine) continue;
      const membership = mine.event.content.membership;
      if (membership === 'join') {
        const full = since === null || fullState || mine.pos > since;
        const candidates = room.events.filter((e) => e.pos <= now && (full ? true : e.pos > since!));
        const limited = candidates.length > limit;
        const timeline = limit === 0 ? [] : candidates.slice(-limit);
        const startPos = timeline.length ? timeline[0]!.pos : now + 1;
        const stateMap = this.stateAt(room, startPos - 1);
        let state = [...stateMap.values()].filter((e) => full || (limited && e.pos > since!));
        if (lazy) {
          // Members: only the timeline's senders and the user, and (incrementally) only those not sent before.
          // As Synapse does, a room without a name or alias also gets its heroes' members (they name it).
          const named = stateMap.has('m.room.name\u0000') || stateMap.has('m.room.canonical_alias\u0000');
          const heroIds = named
            ? []
            : [...room.state.values()]
                .filter((e) => e.event.type === 'm.room.member' && ['join', 'invite'].includes(e.event.content.membership as string) && e.event.state_key !== me)
                .map((e) => e.event.state_key!)
                .slice(0, 5);
          const wanted = new Set([me, ...timeline.map((e) => e.event.sender), ...(full ? heroIds : [])]);
          const memberState = (k: string) => stateMap.get(`m.room.member\u0000${k}`);
          state = state.filter((e) => e.event.type !== 'm.room.member' || wanted.has(e.event.state_key!));
          if (!full) {
            for (const u of wanted) {
              const m = memberState(u);
              if (m && !state.includes(m) && !timeline.some((t) => t.event.event_id === m.event.event_id) && (u !== me || limited)) state.push(m);
            }
          }
        }
        state.sort((a, b) => a.pos - b.pos);
        const ephemeral: Json[] = [];
        if ((full && room.typing.userIds.length) || (!full && room.typing.pos > since!)) ephemeral.push({ type: 'm.typing', content: { user_ids: room.typing.userIds } });
        const receipts = room.receipts.filter((r) => (full || r.pos > since!) && (r.type !== 'm.read.private' || r.userId === me));
        if (receipts.length) {
          const content: Record<string, Record<string, Record<string, Json>>> = {};
          for (const r of receipts) ((content[r.eventId] ??= {})[r.type] ??= {})[r.userId] = { ts: r.ts };
          ephemeral.push({ type: 'm.receipt', content });
        }
        const accountData = [...(room.accountData.get(me) ?? new Map<string, { content: Json; pos: number }>()).entries()]
          .filter(([, v]) => full || v.pos > since!)
          .map(([type, v]) => ({ type, content: v.content }));
        if (!full && !timeline.length && !state.length && !ephemeral.length && !accountData.length) continue;
        const members = [...room.state.values()].filter((e) => e.event.type === 'm.room.member');
        const joined = members.filter((e) => e.event.content.membership === 'join');
        const invited = members.filter((e) => e.event.content.membership === 'invite');
        const heroes = [...joined, ...invited].map((e) => e.event.state_key!).filter((u) => u !== me).slice(0, 5);
        join[room.id] = {
          summary: { 'm.heroes': heroes, 'm.joined_member_count': joined.length, 'm.invited_member_count': invited.length },
          state: { events: state.map((e) => this.clientEvent(e, token, false)) },
          timeline: { events: timeline.map((e) => this.clientEvent(e, token, false)), limited, prev_batch: `t${startPos - 1}` },
          ephemeral: { events: ephemeral },
          account_data: { events: accountData },
          unread_notifications: { highlight_count: 0, notification_count: 0 },
        };
      } else if (membership === 'invite') {
        if (!after(mine.pos)) continue;
        const stripped = ['m.room.create', 'm.room.join_rules', 'm.room.name', 'm.room.canonical_alias', 'm.room.avatar', 'm.room.encryption', 'm.room.topic']
          .map((t) => room.state.get(`${t}\u0000`))
          .filter((e): e is StoredEvent => !!e)
          .map((e) => ({ type: e.event.type, state_key: e.event.state_key, content: e.event.content, sender: e.event.sender }));
        const inviter = this.memberOf(room, mine.event.sender);
        if (inviter) stripped.push({ type: 'm.room.member', state_key: inviter.event.state_key, content: inviter.event.content, sender: inviter.event.sender });
        invite[room.id] = { invite_state: { events: [...stripped, this.clientEvent(mine, token, false)] } };
      } else if (membership === 'leave' || membership === 'ban') {
        if (since === null || !after(mine.pos)) continue;
        const events = room.events.filter((e) => e.pos > since && e.pos <= mine.pos);
        leave[room.id] = {
          state: { events: [] },
          timeline: { events: events.slice(-Math.max(limit, 1)).map((e) => this.clientEvent(e, token, false)), limited: events.length > Math.max(limit, 1), prev_batch: `t${since}` },
          account_data: { events: [] },
        };
      }
    }
    const presence = [...this.users.values()]
      .filter((u) => u.presence.pos > 0 && after(u.presence.pos))
      .map((u) => ({
        type: 'm.presence',
        sender: u.userId,
        content: {
          presence: u.presence.presence,
          last_active_ago: Date.now() - u.presence.lastActive,
          currently_active: u.presence.presence === 'online',
          ...(u.presence.statusMsg ? { status_msg: u.presence.statusMsg } : {}),
        },
      }));
    const accountData = [...this.user(me).accountData.entries()].filter(([, v]) => after(v.pos)).map(([type, v]) => ({ type, content: v.content }));
    const out: Json = {
      next_batch: `s${now}`,
      rooms: { join, invite, leave, knock: {} },
      presence: { events: presence },
      account_data: { events: accountData },
      ...this.keys.syncPart(me, token.deviceId, since, now),
    };
    return out;
  }
}

function deviceKey(t: TokenInfo): string {
  return `${t.userId}\u0000${t.deviceId}`;
}

function parsePos(token: string): number | null {
  const m = /^[st](\d+)$/.exec(token);
  return m ? Number(m[1]) : null;
}

function isEmptySync(body: Json): boolean {
  const rooms = body.rooms as Record<string, Json>;
  const any = (o: Json) => Object.keys(o).length > 0;
  const lists = body.device_lists as { changed: unknown[]; left: unknown[] };
  return (
    !any(rooms.join!) &&
    !any(rooms.invite!) &&
    !any(rooms.leave!) &&
    !((body.presence as Json).events as unknown[]).length &&
    !((body.account_data as Json).events as unknown[]).length &&
    !((body.to_device as Json).events as unknown[]).length &&
    !lists.changed.length &&
    !lists.left.length
  );
}

function readBody(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on('data', (c: Buffer) => {
      size += c.length;
      if (size > max) {
        reject(new Error('too large'));
        req.destroy();
        return;
      }
      chunks.push(c);
    });
    req.on('end', () => resolve(Buffer.concat(chunks)));
    req.on('error', reject);
  });
}
