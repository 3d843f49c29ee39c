/**
 * A protocol-level fake of Discord for tests: the REST API (v10, JSON) and the gateway (v10, JSON
 * encoding, no compression) as real HTTP and WebSocket servers on one 127.0.0.1 port, written from
 * the published documentation (discord.com/developers/docs: topics/gateway, topics/gateway-events,
 * topics/opcodes-and-status-codes, topics/rate-limits, topics/permissions, resources/*).
 *
 * A client points its REST base at `apiBase` (discord.js: `new Client({ rest: { api } })`); the
 * gateway URL comes from `GET /gateway/bot`, as with Discord.
 *
 * REST: `Authorization: Bot <token>` (anything else is 401), JSON errors `{ message, code }` with
 * Discord's JSON error codes (10003 Unknown Channel, 10008 Unknown Message, 50001 Missing Access,
 * 50005 another user's message, 50006 empty message, 50007 DMs closed, 50013 Missing Permissions,
 * 50035 Invalid Form Body), permissions computed from roles and channel overwrites, rate-limit
 * headers on every answer (X-RateLimit-Limit/-Remaining/-Reset/-Reset-After/-Bucket) from real
 * per-route buckets, and 429 answers (Retry-After, X-RateLimit-Scope, X-RateLimit-Global, body
 * `{ message, retry_after, global }`) both when a bucket is exceeded and on demand (rateLimit()).
 * File uploads (reference#uploading-files) as multipart/form-data with `payload_json` and
 * `files[n]` parts, on channel messages (Attach Files needed in guilds) and webhook executions;
 * malformed bodies are refused as Discord does (400 / 50035, bad JSON 50109, over
 * `attachmentLimit` 413 / 40005), and the files are served back by the fake's CDN at signed URLs.
 *
 * Gateway: HELLO (op 10) on connect; IDENTIFY (op 2) checks the token (close 4004), a repeated
 * identify (4005), the shard and privileged intents (4014); heartbeats (op 1 → op 11) with a
 * server-side timeout (4009); READY with session_id, resume_gateway_url, the bot user and its
 * guilds as unavailable, then GUILD_CREATE per guild; dispatches carry sequence numbers and go
 * only to sessions whose intents ask for them (MESSAGE_CONTENT strips guild message content);
 * RESUME (op 6) replays what the session missed, then RESUMED, or INVALID_SESSION (op 9) for an
 * unknown session; op 7 RECONNECT and op 9 on demand; payloads before identifying close 4003.
 * Bots' own REST actions come back as gateway events, as on Discord (a sent message arrives as
 * MESSAGE_CREATE with the nonce it was sent with).
 *
 * As on Discord today, DM channels are not announced with CHANNEL_CREATE: a DM's MESSAGE_CREATE
 * carries `channel_type: 1` and clients must cope with channels they have not seen. A guild with
 * more members than IDENTIFY's large_threshold comes without its offline members (op 8 fetches them).
 *
 * Test-side API:
 *   world    createUser, createBot (token; privileged intents), createGuild, createRole, updateRole,
 *            createChannel (topic, overwrites), setOverwrites, setTopic, addMember, updateMember,
 *            removeMember, renameUser, setPresence, dmChannel, dmsClosed, revokeToken
 *   people   say (attachments, replies, forwards, webhooks, stickers), edit, embedUpdate, delete,
 *            react, type; inject(t, d) dispatches any event; attachments with `data` are served
 *            by the fake's CDN at signed URLs (`?ex=&is=&hm=`) that expire (expireAttachments())
 *   faults   dropGateway(code?), refuseGateway(ms), stallGateway(ms) (no HELLO), forgetSessions,
 *            requestReconnect (op 7), invalidateSessions (op 9), requestHeartbeat,
 *            rateLimit(match, retryAfterS, { global, count }) (429s), setBucket(route, limit, ms)
 *   webhooks createWebhook (as an admin would), webhooks (all); the REST API lists, creates and
 *            executes them (`POST /webhooks/{id}/{token}?wait=&thread_id=`, username/avatar_url),
 *            edits and deletes their messages
 *   threads  createThread (THREAD_CREATE), archiveThread; `GET /guilds/{id}/threads/active`,
 *            `POST /channels/{id}/threads`; messages in threads like in channels
 *   history  `GET /channels/{id}/messages` with before/after/limit (newest first, as Discord)
 *   avatars  setAvatar(user, bytes): served at `/avatars/{user}/{hash}.png` (cdnBase)
 *   inspect  requests / sent(filter) / waitForRequest (REST calls received), gatewayReceived /
 *            waitForOp (payloads received, tokens redacted), gatewayConnections (paths),
 *            getMessage, reactionsOf, rateLimited, bucketViolations, connectionsOpen
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import type { Duplex } from 'node:stream';
import { createHmac, randomBytes } from 'node:crypto';
import type {
  APIAttachment,
  APIChannel,
  APIEmoji,
  APIGuildMember,
  APIMessage,
  APIOverwrite,
  APIRole,
  APIUser,
} from 'discord.js';

// ------------------------------------------------------------------ ws (no type declarations shipped)

interface WsSocket {
  readyState: number;
  send(data: string, cb?: (err?: Error) => void): void;
  close(code?: number, reason?: string): void;
  terminate(): void;
  on(ev: 'message', fn: (data: Buffer, isBinary: boolean) => void): this;
  on(ev: 'close', fn: (code: number, reason: Buffer) => void): this;
  on(ev: 'error', fn: (err: Error) => void): this;
}
interface WsServer {
  clients: Set<WsSocket>;
  handleUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer, cb: (ws: WsSocket) => void): void;
  close(cb?: () => void): void;
}
const { WebSocketServer } = createRequire(import.meta.url)('ws') as {
  WebSocketServer: new (opts: { noServer: true; maxPayload?: number }) => WsServer;
};
const WS_OPEN = 1;

// ------------------------------------------------------------------ protocol constants (from the docs)

export const Op = { Dispatch: 0, Heartbeat: 1, Identify: 2, PresenceUpdate: 3, Resume: 6, Reconnect: 7, RequestGuildMembers: 8, InvalidSession: 9, Hello: 10, HeartbeatAck: 11 } as const;

export const Intent = {
  Guilds: 1 << 0,
  GuildMembers: 1 << 1,
  GuildPresences: 1 << 8,
  GuildMessages: 1 << 9,
  GuildMessageReactions: 1 << 10,
  GuildMessageTyping: 1 << 11,
  DirectMessages: 1 << 12,
  DirectMessageReactions: 1 << 13,
  DirectMessageTyping: 1 << 14,
  MessageContent: 1 << 15,
} as const;

export const Perm = {
  KickMembers: 1n << 1n,
  Administrator: 1n << 3n,
  ManageChannels: 1n << 4n,
  AddReactions: 1n << 6n,
  ViewChannel: 1n << 10n,
  SendMessages: 1n << 11n,
  ManageMessages: 1n << 13n,
  AttachFiles: 1n << 15n,
  ReadMessageHistory: 1n << 16n,
  MentionEveryone: 1n << 17n,
  ChangeNickname: 1n << 26n,
  ManageNicknames: 1n << 27n,
  ManageWebhooks: 1n << 29n,
  ModerateMembers: 1n << 40n,
} as const;
const ALL_PERMISSIONS = (1n << 50n) - 1n;
/** What @everyone may do in a new guild of the fake (roughly Discord's defaults). */
export const DEFAULT_EVERYONE = Perm.ViewChannel | Perm.SendMessages | Perm.ReadMessageHistory | Perm.AddReactions | Perm.AttachFiles | Perm.ChangeNickname;

const ChannelType = { GuildText: 0, DM: 1, GuildVoice: 2, GuildCategory: 4, GuildAnnouncement: 5, PublicThread: 11, PrivateThread: 12 } as const;
const isThreadType = (t: number): boolean => t === ChannelType.PublicThread || t === ChannelType.PrivateThread;
const DISCORD_EPOCH = 1420070400000n;

// ------------------------------------------------------------------ world model

export interface FakeMember {
  user: APIUser;
  nick: string | null;
  roles: string[];
  joined_at: string;
}

export interface FakeGuild {
  id: string;
  name: string;
  ownerId: string;
  roles: Map<string, APIRole>;
  channels: Map<string, FakeChannel>;
  members: Map<string, FakeMember>;
}

export interface FakeChannel {
  id: string;
  type: number;
  guildId: string | null;
  name: string;
  topic: string | null;
  position: number;
  overwrites: APIOverwrite[];
  /** DM channels: the two users. */
  recipients: string[];
  messages: Map<string, StoredMessage>;
  lastMessageId: string | null;
  /** Threads: the channel they belong to, who started them, whether archived. */
  parentId?: string;
  ownerId?: string;
  archived?: boolean;
}

/** An incoming webhook of a channel (resources/webhook): executed with its token, no bot authorization. */
export interface FakeWebhook {
  id: string;
  token: string;
  channelId: string;
  guildId: string;
  name: string;
  /** The bot (application) that created it. */
  applicationId: string;
}

interface StoredMessage {
  message: APIMessage;
  /** Users' reactions: emoji key → user ids. */
  reactions: Map<string, { emoji: APIEmoji; users: Set<string> }>;
}

/** One REST call the fake received. */
export interface RecordedRequest {
  method: string;
  /** Path below the API version, e.g. `/channels/123/messages`. */
  path: string;
  query: Record<string, string>;
  body: any;
  status: number;
  at: number;
  /** The bot the request authenticated as, if any. */
  botId: string | null;
  /** The `files[n]` parts of a multipart request (reference#uploading-files). */
  files?: UploadedFile[];
}

/** A file of a multipart request: its part name, file name (or the `attachments` entry's), type and bytes. */
export interface UploadedFile {
  field: string;
  filename: string;
  contentType: string | null;
  description?: string;
  data: Buffer;
}

/** One part of a multipart/form-data body (RFC 7578). */
interface FormPart {
  name: string;
  filename: string | null;
  contentType: string | null;
  data: Buffer;
}

/**
 * Parses a multipart/form-data body (RFC 2046 §5.1.1, RFC 7578) strictly: the boundary from the
 * Content-Type, CRLF line ends, every part with `Content-Disposition: form-data; name="…"`, and the
 * close delimiter. Null when any of it is wrong.
 */
function parseMultipart(body: Buffer, contentType: string): FormPart[] | null {
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^;\s"]{1,70}))/i.exec(contentType);
  if (!m) return null;
  const delimiter = Buffer.from(`--${m[1] ?? m[2]}`);
  const between = Buffer.concat([Buffer.from('\r\n'), delimiter]);
  let at = body.indexOf(delimiter);
  if (at !== 0 && (at < 2 || body.subarray(at - 2, at).toString() !== '\r\n')) return null;
  const parts: FormPart[] = [];
  for (;;) {
    at += delimiter.length;
    const after = body.subarray(at, at + 2).toString('latin1');
    if (after === '--') return parts;
    if (after !== '\r\n') return null;
    at += 2;
    const headerEnd = body.indexOf('\r\n\r\n', at);
    const next = body.indexOf(between, at);
    if (headerEnd < 0 || next < 0 || headerEnd > next) return null;
    let name: string | null = null;
    let filename: string | null = null;
    let type: string | null = null;
    for (const line of body.subarray(at, headerEnd).toString('utf8').split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon < 1) return null;
      const key = line.slice(0, colon).trim().toLowerCase();
      const value = line.slice(colon + 1).trim();
      if (key === 'content-type') type = value;
      if (key !== 'content-disposition') continue;
      if (!/^form-data\s*(;|$)/i.test(value)) return null;
      name = /;\s*name="([^"]*)"/i.exec(value)?.[1] ?? null;
      filename = /;\s*filename="([^"]*)"/i.exec(value)?.[1] ?? null;
    }
    if (!name) return null;
    parts.push({ name, filename, contentType: type, data: body.subarray(headerEnd + 4, next) });
    at = next + 2;
  }
}

/** One gateway payload a client sent (tokens replaced by "<redacted>"). */
export interface RecordedPayload {
  op: number;
  d: any;
  at: number;
  connection: number;
}

interface Bot {
  user: APIUser;
  token: string;
  /** Privileged intents the bot is approved for (Developer Portal switches). */
  privileged: { members: boolean; presences: boolean; messageContent: boolean };
}

interface Dispatched {
  s: number;
  t: string;
  d: unknown;
}

interface GatewaySession {
  id: string;
  bot: Bot;
  intents: number;
  /** IDENTIFY's large_threshold (50 to 250, default 50): bigger guilds come without offline members. */
  largeThreshold: number;
  seq: number;
  /** Everything dispatched to this session (bounded), for replay on RESUME. */
  backlog: Dispatched[];
  conn: Connection | null;
  invalid: boolean;
}

interface Connection {
  n: number;
  ws: WsSocket;
  path: string;
  session: GatewaySession | null;
  heartbeatTimer: NodeJS.Timeout | null;
  lastHeartbeatAt: number;
  resuming: boolean;
  closedByServer: boolean;
}

interface RateLimitRule {
  method: string | null;
  path: RegExp;
  retryAfterS: number;
  global: boolean;
  remaining: number;
}

interface Bucket {
  limit: number;
  windowMs: number;
  hits: number[];
}

export interface FakeDiscordOptions {
  /** Heartbeat interval announced in HELLO (ms); default 41250 as on Discord. */
  heartbeatIntervalMs?: number;
  /** Close connections whose heartbeats stop (4009); default true. */
  enforceHeartbeat?: boolean;
  /** Name of the first bot; default "gatehouse-bot". */
  botName?: string;
  /** Default bucket for every route and major parameter (requests per window). */
  defaultBucket?: { limit: number; windowMs: number };
}

export interface MessageOptions {
  /** With `data`, the file is served by the fake's CDN at a signed URL that expires (see cdnLinkLifetimeMs). */
  attachments?: (Partial<APIAttachment> & { data?: Buffer | string })[];
  replyTo?: string;
  /** message_reference type 1: a forward, with this message as snapshot. */
  forwardOf?: { channelId: string; messageId: string };
  webhookName?: string;
  /** Posted through this webhook (its id as author id and webhook_id), under `username` with `avatarUrl`. */
  webhook?: { id: string; username: string; avatarUrl: string | null };
  stickers?: { id: string; name: string }[];
  embeds?: { title?: string; description?: string; url?: string }[];
  nonce?: string;
  tts?: boolean;
}

class HttpError extends Error {
  constructor(
    readonly status: number,
    readonly code: number,
    message: string,
    readonly extra: Record<string, unknown> = {},
  ) {
    super(message);
  }
}

let snowflakeIncrement = 0n;
/** A Discord snowflake: ms since the Discord epoch << 22 | worker/process | increment. */
export function snowflake(at = Date.now()): string {
  snowflakeIncrement = (snowflakeIncrement + 1n) % 4096n;
  return (((BigInt(at) - DISCORD_EPOCH) << 22n) | (1n << 17n) | snowflakeIncrement).toString();
}

function emojiKey(e: APIEmoji): string {
  return e.id ? `${e.name ?? ''}:${e.id}` : (e.name ?? '');
}

/** The emoji of a (decoded) reaction route segment: a unicode emoji or `name:id`. */
function parseEmoji(s: string): APIEmoji | null {
  const custom = /^a?:?([\w~-]+):(\d+)$/.exec(s);
  if (custom) return { id: custom[2]!, name: custom[1]! };
  if (!s || /[\s:<>]/.test(s)) return null;
  return { id: null, name: s };
}

export class FakeDiscord {
  readonly server: Server;
  private readonly wss: WsServer;
  port = 0;
  readonly heartbeatIntervalMs: number;
  private readonly enforceHeartbeat: boolean;
  private readonly defaultBucket: { limit: number; windowMs: number };

  private readonly bots = new Map<string, Bot>();
  readonly users = new Map<string, APIUser>();
  readonly guilds = new Map<string, FakeGuild>();
  readonly channels = new Map<string, FakeChannel>();
  /** Users whose DMs are closed to bots (sending to them answers 50007). */
  readonly dmsClosed = new Set<string>();
  /** Presences (for GUILD_CREATE and PRESENCE_UPDATE). */
  readonly presences = new Map<string, 'online' | 'idle' | 'dnd' | 'offline'>();

  /** Every REST call received, in order. */
  readonly requests: RecordedRequest[] = [];
  /** Every gateway payload received, in order (tokens redacted). */
  readonly gatewayReceived: RecordedPayload[] = [];
  /** Paths of gateway connections (the resume URL has its own). */
  readonly gatewayConnections: string[] = [];
  /** How many times a bucket was exceeded by a client (a client that honours the headers never does). */
  bucketViolations = 0;
  /** How many 429 answers were sent (on demand or for a bucket). */
  rateLimited = 0;

  private readonly sessions = new Map<string, GatewaySession>();
  private readonly connections = new Set<Connection>();
  private connectionCount = 0;
  private refuseUntil = 0;
  private stallUntil = 0;
  private readonly rules: RateLimitRule[] = [];
  private readonly bucketConfig = new Map<string, { limit: number; windowMs: number }>();
  private readonly buckets = new Map<string, Bucket>();
  private readonly waiters = new Set<{ pred: (r: RecordedRequest) => boolean; resolve: (r: RecordedRequest) => void }>();
  /** The first bot (created at start). */
  bot!: APIUser;
  token!: string;

  private constructor(opts: FakeDiscordOptions) {
    this.heartbeatIntervalMs = opts.heartbeatIntervalMs ?? 41250;
    this.enforceHeartbeat = opts.enforceHeartbeat ?? true;
    this.defaultBucket = opts.defaultBucket ?? { limit: 50, windowMs: 1000 };
    this.wss = new WebSocketServer({ noServer: true, maxPayload: 4096 * 1024 });
    this.server = createServer((req, res) => void this.onHttp(req, res));
    this.server.on('upgrade', (req, socket, head) => this.onUpgrade(req, socket, head));
  }

  static async start(opts: FakeDiscordOptions = {}): Promise<FakeDiscord> {
    const fake = new FakeDiscord(opts);
    await new Promise<void>((resolve) => fake.server.listen(0, '127.0.0.1', () => resolve()));
    const addr = fake.server.address();
    fake.port = typeof addr === 'object' && addr ? addr.port : 0;
    const first = fake.createBot(opts.botName ?? 'gatehouse-bot');
    fake.bot = first.user;
    fake.token = first.token;
    return fake;
  }

  // ---------------------------------------------------------------- CDN

  /** How long a signed attachment URL is valid (Discord's are valid for about a day). */
  cdnLinkLifetimeMs = 24 * 3_600_000;
  /** Added to the time when links are checked: expireAttachments() moves it past every link. */
  private cdnClockOffset = 0;
  private readonly cdnSecret = randomBytes(16);
  private readonly cdnFiles = new Map<string, { data: Buffer; contentType: string }>();
  /** GETs of CDN files with their status (signature and expiry checked). */
  readonly cdnRequests: { path: string; status: number }[] = [];

  private cdnSign(path: string, ex: string, is: string): string {
    return createHmac('sha256', this.cdnSecret).update(`${path}\u0000${ex}\u0000${is}`).digest('hex');
  }

  /** Stores a file; its signed URL (`?ex=&is=&hm=`, hex seconds, as Discord's CDN gives them). */
  private cdnStore(path: string, data: Buffer, contentType: string): string {
    this.cdnFiles.set(path, { data, contentType });
    const now = Date.now() + this.cdnClockOffset;
    const is = Math.floor(now / 1000).toString(16);
    const ex = Math.floor((now + this.cdnLinkLifetimeMs) / 1000).toString(16);
    return `http://127.0.0.1:${this.port}${path}?ex=${ex}&is=${is}&hm=${this.cdnSign(path, ex, is)}`;
  }

  /** Every signed link handed out so far is expired from now on. */
  expireAttachments(): void {
    this.cdnClockOffset += this.cdnLinkLifetimeMs + 1000;
  }

  private serveCdn(url: URL, method: string, res: ServerResponse): void {
    const file = this.cdnFiles.get(url.pathname);
    const ex = url.searchParams.get('ex') ?? '';
    const is = url.searchParams.get('is') ?? '';
    const hm = url.searchParams.get('hm') ?? '';
    const valid = !!file && /^[0-9a-f]{1,12}$/.test(ex) && hm === this.cdnSign(url.pathname, ex, is) && parseInt(ex, 16) * 1000 > Date.now() + this.cdnClockOffset;
    this.cdnRequests.push({ path: url.pathname, status: method !== 'GET' ? 405 : valid ? 200 : 404 });
    if (method !== 'GET') return void res.writeHead(405).end();
    if (!valid) return void res.writeHead(404, { 'Content-Type': 'text/plain' }).end('This content is no longer available.');
    res.writeHead(200, { 'Content-Type': file.contentType, 'Content-Length': String(file.data.length) }).end(file.data);
  }

  /** The REST base for discord.js (`rest.api`); requests go to `${apiBase}/v10/...`. */
  get apiBase(): string {
    return `http://127.0.0.1:${this.port}/api`;
  }

  get gatewayUrl(): string {
    return `ws://127.0.0.1:${this.port}`;
  }

  get resumeUrl(): string {
    return `ws://127.0.0.1:${this.port}/resume`;
  }

  async close(): Promise<void> {
    for (const c of this.connections) if (c.heartbeatTimer) clearInterval(c.heartbeatTimer);
    for (const ws of [...this.connections].map((c) => c.ws).concat([...this.wss.clients])) ws.terminate();
    this.connections.clear();
    const wssClosed = new Promise<void>((resolve) => this.wss.close(() => resolve()));
    await Promise.race([wssClosed, new Promise((r) => setTimeout(r, 1000).unref())]);
    this.server.closeAllConnections?.();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // ---------------------------------------------------------------- world (test-side API)

  createUser(username: string, opts: { globalName?: string | null; bot?: boolean; id?: string } = {}): APIUser {
    const user: APIUser = {
      id: opts.id ?? snowflake(),
      username,
      discriminator: '0',
      global_name: opts.globalName ?? null,
      avatar: null,
      ...(opts.bot ? { bot: true } : {}),
    };
    this.users.set(user.id, user);
    return user;
  }

  /** A bot application with its token; `privileged` are the intents switched on in the portal (default all). */
  createBot(username: string, privileged: Partial<Bot['privileged']> = {}): { user: APIUser; token: string } {
    const user = this.createUser(username, { bot: true });
    const token = `${Buffer.from(user.id).toString('base64url')}.${randomBytes(4).toString('base64url')}.${randomBytes(20).toString('base64url')}`;
    this.bots.set(token, { user, token, privileged: { members: true, presences: true, messageContent: true, ...privileged } });
    return { user, token };
  }

  /** Switches a bot's privileged intents (as in the Developer Portal); affects the next IDENTIFY. */
  setPrivilegedIntents(token: string, privileged: Partial<Bot['privileged']>): void {
    const bot = this.bots.get(token);
    if (bot) bot.privileged = { ...bot.privileged, ...privileged };
  }

  /** Resets a bot's token (the old one stops working: REST 401, gateway sessions closed with 4004). */
  revokeToken(token: string): string {
    const bot = this.bots.get(token);
    if (!bot) throw new Error('unknown token');
    this.bots.delete(token);
    const fresh = `${Buffer.from(bot.user.id).toString('base64url')}.${randomBytes(4).toString('base64url')}.${randomBytes(20).toString('base64url')}`;
    bot.token = fresh;
    this.bots.set(fresh, bot);
    if (this.token === token) this.token = fresh;
    for (const s of this.sessions.values()) {
      if (s.bot !== bot) continue;
      s.invalid = true;
      s.conn?.ws.close(4004, 'Authentication failed.');
    }
    return fresh;
  }

  /** A guild (server) with an @everyone role, owned by `ownerId` (default: a new user); the first bot is a member. */
  createGuild(name: string, opts: { ownerId?: string; everyone?: bigint; bots?: string[] } = {}): FakeGuild {
    const id = snowflake();
    const owner = opts.ownerId ?? this.createUser(`${name.toLowerCase().replace(/\W+/g, '')}-owner`).id;
    const guild: FakeGuild = { id, name, ownerId: owner, roles: new Map(), channels: new Map(), members: new Map() };
    guild.roles.set(id, this.role(id, '@everyone', opts.everyone ?? DEFAULT_EVERYONE, 0));
    this.guilds.set(id, guild);
    this.putMember(guild, owner, {}, false);
    for (const botId of opts.bots ?? [this.bot.id]) this.putMember(guild, botId, {}, false);
    // The bots that are members learn about the guild (they "joined" it).
    for (const s of this.sessions.values()) if (!s.invalid && guild.members.has(s.bot.user.id)) this.send(s, 'GUILD_CREATE', this.guildCreatePayload(guild, s));
    return guild;
  }

  private role(id: string, name: string, permissions: bigint, position: number): APIRole {
    return {
      id,
      name,
      color: 0,
      colors: { primary_color: 0, secondary_color: null, tertiary_color: null },
      hoist: false,
      icon: null,
      unicode_emoji: null,
      position,
      permissions: permissions.toString(),
      managed: false,
      mentionable: true,
      flags: 0 as APIRole['flags'],
    };
  }

  createRole(guildId: string, name: string, permissions: bigint): APIRole {
    const guild = this.guild(guildId);
    const role = this.role(snowflake(), name, permissions, guild.roles.size);
    guild.roles.set(role.id, role);
    this.dispatchGuild(guild, 'GUILD_ROLE_CREATE', Intent.Guilds, () => ({ guild_id: guild.id, role }));
    return role;
  }

  updateRole(guildId: string, roleId: string, permissions: bigint): void {
    const guild = this.guild(guildId);
    const role = guild.roles.get(roleId);
    if (!role) throw new Error('unknown role');
    role.permissions = permissions.toString();
    this.dispatchGuild(guild, 'GUILD_ROLE_UPDATE', Intent.Guilds, () => ({ guild_id: guild.id, role }));
  }

  createChannel(guildId: string, name: string, opts: { topic?: string; type?: number; overwrites?: APIOverwrite[] } = {}): FakeChannel {
    const guild = this.guild(guildId);
    const channel: FakeChannel = {
      id: snowflake(),
      type: opts.type ?? ChannelType.GuildText,
      guildId: guild.id,
      name,
      topic: opts.topic ?? null,
      position: guild.channels.size,
      overwrites: opts.overwrites ?? [],
      recipients: [],
      messages: new Map(),
      lastMessageId: null,
    };
    guild.channels.set(channel.id, channel);
    this.channels.set(channel.id, channel);
    this.dispatchGuild(guild, 'CHANNEL_CREATE', Intent.Guilds, () => this.channelPayload(channel));
    return channel;
  }

  /** Sets a channel's permission overwrites (CHANNEL_UPDATE). */
  setOverwrites(channelId: string, overwrites: APIOverwrite[]): void {
    const ch = this.channel(channelId);
    ch.overwrites = overwrites;
    this.dispatchGuild(this.guild(ch.guildId!), 'CHANNEL_UPDATE', Intent.Guilds, () => this.channelPayload(ch));
  }

  setTopic(channelId: string, topic: string | null): void {
    const ch = this.channel(channelId);
    ch.topic = topic;
    this.dispatchGuild(this.guild(ch.guildId!), 'CHANNEL_UPDATE', Intent.Guilds, () => this.channelPayload(ch));
  }

  /** A thread in a guild channel (THREAD_CREATE to the guild's sessions); public unless `private`. */
  createThread(parentId: string, name: string, opts: { ownerId?: string; private?: boolean } = {}): FakeChannel {
    const parent = this.channel(parentId);
    if (!parent.guildId || isThreadType(parent.type)) throw new Error('threads belong to guild channels');
    const guild = this.guild(parent.guildId);
    const thread: FakeChannel = {
      id: snowflake(),
      type: opts.private ? ChannelType.PrivateThread : ChannelType.PublicThread,
      guildId: guild.id,
      name,
      topic: null,
      position: 0,
      overwrites: [],
      recipients: [],
      messages: new Map(),
      lastMessageId: null,
      parentId: parent.id,
      ownerId: opts.ownerId ?? guild.ownerId,
      archived: false,
    };
    guild.channels.set(thread.id, thread);
    this.channels.set(thread.id, thread);
    this.dispatchGuild(guild, 'THREAD_CREATE', Intent.Guilds, () => ({ ...(this.channelPayload(thread) as object), newly_created: true }));
    return thread;
  }

  /** Archives a thread (THREAD_UPDATE); it leaves the active list. */
  archiveThread(threadId: string): void {
    const thread = this.channel(threadId);
    thread.archived = true;
    this.dispatchGuild(this.guild(thread.guildId!), 'THREAD_UPDATE', Intent.Guilds, () => this.channelPayload(thread));
  }

  /** Active threads of a guild the bot can see. */
  private activeThreads(guild: FakeGuild, botId: string): FakeChannel[] {
    return [...guild.channels.values()].filter((c) => isThreadType(c.type) && !c.archived && this.can(c, botId, 0n));
  }

  private readonly webhookStore = new Map<string, FakeWebhook>();

  /** Every webhook, by id. */
  get webhooks(): FakeWebhook[] {
    return [...this.webhookStore.values()];
  }

  /** A webhook made in the channel's settings (Integrations → Webhooks) by someone, or by a bot. */
  createWebhook(channelId: string, name: string, applicationId = this.bot.id): FakeWebhook {
    const ch = this.channel(channelId);
    if (!ch.guildId || isThreadType(ch.type)) throw new Error('webhooks belong to guild channels');
    const hook: FakeWebhook = { id: snowflake(), token: randomBytes(34).toString('base64url'), channelId: ch.id, guildId: ch.guildId, name, applicationId };
    this.webhookStore.set(hook.id, hook);
    return hook;
  }

  private webhookPayload(h: FakeWebhook, withToken: boolean): unknown {
    return {
      id: h.id,
      type: 1,
      guild_id: h.guildId,
      channel_id: h.channelId,
      name: h.name,
      avatar: null,
      application_id: h.applicationId,
      user: this.users.get(h.applicationId) ?? null,
      ...(withToken ? { token: h.token } : {}),
    };
  }

  private readonly avatarFiles = new Map<string, Buffer>();

  /** Gives a user an avatar: `avatar` becomes the image's hash, served at `${cdnBase}/avatars/{id}/{hash}.png`. */
  setAvatar(userId: string, data: Buffer): string {
    const user = this.user(userId);
    const hash = createHmac('sha256', 'avatar').update(data).digest('hex').slice(0, 32);
    user.avatar = hash;
    this.avatarFiles.set(`/avatars/${userId}/${hash}.png`, data);
    for (const guild of this.guilds.values()) {
      const m = guild.members.get(userId);
      if (m) this.dispatchGuild(guild, 'GUILD_MEMBER_UPDATE', Intent.GuildMembers, () => ({ guild_id: guild.id, ...(this.memberPayload(m) as object) }), [userId]);
    }
    return hash;
  }

  /** GETs of avatar images (path and status). */
  readonly avatarRequests: { path: string; status: number }[] = [];

  private serveAvatar(url: URL, method: string, res: ServerResponse): void {
    const path = url.pathname.replace(/\.(webp|jpg|jpeg|gif)$/, '.png');
    const data = this.avatarFiles.get(path);
    this.avatarRequests.push({ path: url.pathname, status: method !== 'GET' ? 405 : data ? 200 : 404 });
    if (method !== 'GET') return void res.writeHead(405).end();
    if (!data) return void res.writeHead(404, { 'Content-Type': 'text/plain' }).end('404: Not Found');
    res.writeHead(200, { 'Content-Type': 'image/png', 'Content-Length': String(data.length) }).end(data);
  }

  /** The CDN base for discord.js (`rest.cdn`): avatars and attachments. */
  get cdnBase(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  addMember(guildId: string, userId: string, opts: { nick?: string | null; roles?: string[] } = {}): FakeMember {
    return this.putMember(this.guild(guildId), userId, opts, true);
  }

  private putMember(guild: FakeGuild, userId: string, opts: { nick?: string | null; roles?: string[] }, announce: boolean): FakeMember {
    const user = this.user(userId);
    const member: FakeMember = { user, nick: opts.nick ?? null, roles: opts.roles ?? [], joined_at: new Date().toISOString() };
    guild.members.set(userId, member);
    if (announce) {
      for (const s of this.sessions.values()) {
        if (s.invalid) continue;
        if (s.bot.user.id === userId) this.send(s, 'GUILD_CREATE', this.guildCreatePayload(guild, s));
        else if (guild.members.has(s.bot.user.id) && s.intents & Intent.GuildMembers) this.send(s, 'GUILD_MEMBER_ADD', { ...this.memberPayload(member), guild_id: guild.id });
      }
    }
    return member;
  }

  updateMember(guildId: string, userId: string, change: { nick?: string | null; roles?: string[] }): void {
    const guild = this.guild(guildId);
    const member = guild.members.get(userId);
    if (!member) throw new Error('not a member');
    if (change.nick !== undefined) member.nick = change.nick;
    if (change.roles) member.roles = change.roles;
    this.dispatchGuild(guild, 'GUILD_MEMBER_UPDATE', Intent.GuildMembers, () => ({ ...this.memberPayload(member), guild_id: guild.id }), [userId]);
  }

  removeMember(guildId: string, userId: string): void {
    const guild = this.guild(guildId);
    const member = guild.members.get(userId);
    if (!member) return;
    this.dispatchGuild(guild, 'GUILD_MEMBER_REMOVE', Intent.GuildMembers, () => ({ guild_id: guild.id, user: member.user }));
    guild.members.delete(userId);
  }

  /** Renames a user globally (USER_UPDATE is for the bot itself; others show up in member updates). */
  renameUser(userId: string, globalName: string | null): void {
    const user = this.user(userId);
    user.global_name = globalName;
    for (const guild of this.guilds.values()) {
      const m = guild.members.get(userId);
      if (m) this.dispatchGuild(guild, 'GUILD_MEMBER_UPDATE', Intent.GuildMembers, () => ({ ...this.memberPayload(m), guild_id: guild.id }), [userId]);
    }
  }

  setPresence(userId: string, status: 'online' | 'idle' | 'dnd' | 'offline'): void {
    this.presences.set(userId, status);
    for (const guild of this.guilds.values()) {
      if (!guild.members.has(userId)) continue;
      this.dispatchGuild(guild, 'PRESENCE_UPDATE', Intent.GuildPresences, () => ({
        user: { id: userId },
        guild_id: guild.id,
        status,
        activities: [],
        client_status: status === 'offline' ? {} : { desktop: status },
      }));
    }
  }

  /** The DM channel between a user and a bot (created on first use, as POST /users/@me/channels does). */
  dmChannel(userId: string, botId = this.bot.id): FakeChannel {
    for (const ch of this.channels.values()) {
      if (ch.type === ChannelType.DM && ch.recipients.includes(userId) && ch.recipients.includes(botId)) return ch;
    }
    const ch: FakeChannel = {
      id: snowflake(),
      type: ChannelType.DM,
      guildId: null,
      name: '',
      topic: null,
      position: 0,
      overwrites: [],
      recipients: [botId, userId],
      messages: new Map(),
      lastMessageId: null,
    };
    this.channels.set(ch.id, ch);
    return ch;
  }

  // ---------------------------------------------------------------- user actions (test-side API)

  /** A user (or bot) posts a message: stored and dispatched as MESSAGE_CREATE. */
  say(channelId: string, authorId: string, content: string, opts: MessageOptions = {}): APIMessage {
    const ch = this.channel(channelId);
    const author = this.user(authorId);
    const id = snowflake();
    const message: APIMessage = {
      id,
      channel_id: ch.id,
      author: opts.webhook
        ? { id: opts.webhook.id, username: opts.webhook.username, discriminator: '0000', global_name: null, avatar: opts.webhook.avatarUrl ? createHmac('sha256', 'a').update(opts.webhook.avatarUrl).digest('hex').slice(0, 32) : null, bot: true }
        : opts.webhookName
          ? { id: snowflake(), username: opts.webhookName, discriminator: '0000', global_name: null, avatar: null, bot: true }
          : author,
      content,
      timestamp: new Date().toISOString(),
      edited_timestamp: null,
      tts: opts.tts ?? false,
      mention_everyone: /@(everyone|here)\b/.test(content),
      mentions: [],
      mention_roles: [],
      attachments: (opts.attachments ?? []).map((a, i) => {
        const filename = a.filename ?? `file${i}.png`;
        const data = a.data === undefined ? null : Buffer.isBuffer(a.data) ? a.data : Buffer.from(a.data);
        const served = data ? this.cdnStore(`/attachments/${ch.id}/${id}/${encodeURIComponent(filename)}`, data, a.content_type ?? 'application/octet-stream') : null;
        return {
          id: snowflake(),
          filename,
          size: data ? data.length : (a.size ?? 1024),
          url: served ?? a.url ?? `https://cdn.discordapp.com/attachments/${ch.id}/${id}/${filename}`,
          proxy_url: served ?? a.proxy_url ?? `https://media.discordapp.net/attachments/${ch.id}/${id}/${filename}`,
          ...(a.content_type ? { content_type: a.content_type } : {}),
        };
      }),
      embeds: (opts.embeds ?? []).map((e) => ({ ...e, type: 'rich' as never })),
      pinned: false,
      type: opts.replyTo ? 19 : 0,
      ...(opts.webhook ? { webhook_id: opts.webhook.id } : opts.webhookName ? { webhook_id: snowflake() } : {}),
      ...(opts.nonce ? { nonce: opts.nonce } : {}),
    };
    if (opts.stickers) message.sticker_items = opts.stickers.map((s) => ({ id: s.id, name: s.name, format_type: 1 }));
    if (opts.replyTo) {
      const target = ch.messages.get(opts.replyTo);
      message.message_reference = { type: 0, message_id: opts.replyTo, channel_id: ch.id, ...(ch.guildId ? { guild_id: ch.guildId } : {}) };
      if (target) message.referenced_message = target.message;
    }
    if (opts.forwardOf) {
      const src = this.channel(opts.forwardOf.channelId).messages.get(opts.forwardOf.messageId);
      message.message_reference = { type: 1, message_id: opts.forwardOf.messageId, channel_id: opts.forwardOf.channelId };
      if (src) {
        const m = src.message;
        message.message_snapshots = [
          { message: { type: m.type, content: m.content, embeds: m.embeds, attachments: m.attachments, timestamp: m.timestamp, edited_timestamp: m.edited_timestamp, flags: m.flags ?? 0, mentions: m.mentions, mention_roles: m.mention_roles } as never },
        ];
      }
    }
    this.fillMentions(ch, message);
    ch.messages.set(id, { message, reactions: new Map() });
    ch.lastMessageId = id;
    this.dispatchMessage(ch, 'MESSAGE_CREATE', message);
    return message;
  }

  /** The author edits a message (MESSAGE_UPDATE with the full message, as in API v10). */
  edit(channelId: string, messageId: string, content: string): APIMessage {
    const stored = this.message(channelId, messageId);
    stored.message.content = content;
    stored.message.edited_timestamp = new Date().toISOString();
    this.fillMentions(this.channel(channelId), stored.message);
    this.dispatchMessage(this.channel(channelId), 'MESSAGE_UPDATE', stored.message);
    return stored.message;
  }

  /** An update without an edit (e.g. Discord adding a link embed): no edited_timestamp change. */
  embedUpdate(channelId: string, messageId: string): void {
    const stored = this.message(channelId, messageId);
    stored.message.embeds = [{ type: 'link' as never, url: 'https://example.org/', title: 'Example' }];
    this.dispatchMessage(this.channel(channelId), 'MESSAGE_UPDATE', stored.message);
  }

  delete(channelId: string, messageId: string): void {
    const ch = this.channel(channelId);
    this.message(channelId, messageId);
    ch.messages.delete(messageId);
    this.dispatchChannel(ch, 'MESSAGE_DELETE', Intent.GuildMessages, Intent.DirectMessages, () => ({ id: messageId, channel_id: ch.id, ...(ch.guildId ? { guild_id: ch.guildId } : {}) }));
  }

  react(channelId: string, messageId: string, userId: string, emoji: string | APIEmoji, remove = false): void {
    const ch = this.channel(channelId);
    const stored = this.message(channelId, messageId);
    const e: APIEmoji = typeof emoji === 'string' ? { id: null, name: emoji } : emoji;
    this.applyReaction(ch, stored, userId, e, remove);
  }

  /** A user starts typing (TYPING_START; Discord shows it for about ten seconds). */
  type(channelId: string, userId: string): void {
    const ch = this.channel(channelId);
    const guild = ch.guildId ? this.guild(ch.guildId) : null;
    const member = guild?.members.get(userId);
    this.dispatchChannel(ch, 'TYPING_START', Intent.GuildMessageTyping, Intent.DirectMessageTyping, () => ({
      channel_id: ch.id,
      user_id: userId,
      timestamp: Math.floor(Date.now() / 1000),
      ...(ch.guildId ? { guild_id: ch.guildId } : {}),
      ...(member ? { member: this.memberPayload(member) } : {}),
    }));
  }

  /** Dispatches any event to every live session of a bot (default: all sessions), with the next sequence number. */
  inject(t: string, d: unknown, botId?: string): void {
    for (const s of this.sessions.values()) if (!s.invalid && (!botId || s.bot.user.id === botId)) this.send(s, t, d);
  }

  // ---------------------------------------------------------------- connection faults (test-side API)

  /** Drops every gateway connection: abruptly (no close frame), or with a close code. Sessions stay resumable. */
  dropGateway(code?: number): void {
    for (const c of [...this.connections]) {
      c.closedByServer = true;
      if (code === undefined) c.ws.terminate();
      else c.ws.close(code, 'dropped by the test');
    }
  }

  /** Refuses new gateway connections (HTTP 503 to the upgrade) for `ms`; with `drop`, drops the current ones too. */
  refuseGateway(ms: number, drop = true): void {
    this.refuseUntil = Date.now() + ms;
    if (drop) this.dropGateway();
  }

  /** Accepts gateway connections for `ms` but never says HELLO (a gateway that hangs). */
  stallGateway(ms: number): void {
    this.stallUntil = Date.now() + ms;
  }

  /** Sends op 7 RECONNECT to every connection (the client should resume elsewhere). */
  requestReconnect(): void {
    for (const c of this.connections) this.sendRaw(c, { op: Op.Reconnect, d: null, s: null, t: null });
  }

  /** Forgets every gateway session (as after a long outage): a RESUME gets op 9, clients must identify anew; events meanwhile reach nobody. */
  forgetSessions(): void {
    for (const session of this.sessions.values()) session.invalid = true;
    this.sessions.clear();
  }

  /** Sends op 9 INVALID_SESSION; unless resumable, the sessions are forgotten (the client must identify again). */
  invalidateSessions(resumable = false): void {
    for (const c of this.connections) {
      if (!resumable && c.session) {
        c.session.invalid = true;
        this.sessions.delete(c.session.id);
        c.session = null;
      }
      this.sendRaw(c, { op: Op.InvalidSession, d: resumable, s: null, t: null });
    }
  }

  /** Asks every connection for an immediate heartbeat (op 1 from the server). */
  requestHeartbeat(): void {
    for (const c of this.connections) this.sendRaw(c, { op: Op.Heartbeat, d: null, s: null, t: null });
  }

  /** The next `count` requests matching answer 429 with `retryAfterS` (header and body), globally or per route. */
  rateLimit(match: { method?: string; path: RegExp }, retryAfterS = 1, opts: { count?: number; global?: boolean } = {}): void {
    this.rules.push({ method: match.method?.toUpperCase() ?? null, path: match.path, retryAfterS, global: opts.global ?? false, remaining: opts.count ?? 1 });
  }

  /** A bucket for a route template, e.g. `POST /channels/{channel}/messages`: `limit` requests per `windowMs` per major parameter. */
  setBucket(route: string, limit: number, windowMs: number): void {
    this.bucketConfig.set(route, { limit, windowMs });
  }

  /** Live gateway connections. */
  get connectionsOpen(): number {
    return [...this.connections].filter((c) => c.ws.readyState === WS_OPEN).length;
  }

  /** REST calls received so far, optionally filtered. */
  sent(filter?: { method?: string; path?: RegExp | string }): RecordedRequest[] {
    return this.requests.filter((r) => matches(r, filter));
  }

  /** Resolves with the first REST call (past or future) that matches. */
  waitForRequest(filter: { method?: string; path?: RegExp | string; pred?: (r: RecordedRequest) => boolean }, timeoutMs = 5000): Promise<RecordedRequest> {
    const pred = (r: RecordedRequest) => matches(r, filter) && (filter.pred?.(r) ?? true);
    const seen = this.requests.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve, reject) => {
      const w = {
        pred,
        resolve: (r: RecordedRequest) => {
          clearTimeout(timer);
          this.waiters.delete(w);
          resolve(r);
        },
      };
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`no ${filter.method ?? ''} ${String(filter.path ?? '')} request within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiters.add(w);
    });
  }

  /** Resolves once `n` gateway payloads with this op have been received (in total). */
  async waitForOp(op: number, n = 1, timeoutMs = 5000): Promise<RecordedPayload> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const got = this.gatewayReceived.filter((p) => p.op === op);
      if (got.length >= n) return got[n - 1]!;
      if (Date.now() > deadline) throw new Error(`fewer than ${n} gateway payloads with op ${op} within ${timeoutMs} ms`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  // ---------------------------------------------------------------- lookups

  guild(id: string): FakeGuild {
    const g = this.guilds.get(id);
    if (!g) throw new HttpError(404, 10004, 'Unknown Guild');
    return g;
  }

  channel(id: string): FakeChannel {
    const c = this.channels.get(id);
    if (!c) throw new HttpError(404, 10003, 'Unknown Channel');
    return c;
  }

  user(id: string): APIUser {
    const u = this.users.get(id);
    if (!u) throw new HttpError(404, 10013, 'Unknown User');
    return u;
  }

  private message(channelId: string, messageId: string): StoredMessage {
    const m = this.channel(channelId).messages.get(messageId);
    if (!m) throw new HttpError(404, 10008, 'Unknown Message');
    return m;
  }

  /** The message as stored (e.g. to check what a bot sent). */
  getMessage(channelId: string, messageId: string): APIMessage | undefined {
    return this.channels.get(channelId)?.messages.get(messageId)?.message;
  }

  /** Users who reacted with an emoji (key: unicode emoji or name:id). */
  reactionsOf(channelId: string, messageId: string): Map<string, string[]> {
    const m = this.channels.get(channelId)?.messages.get(messageId);
    return new Map([...(m?.reactions ?? new Map()).entries()].map(([k, v]) => [k, [...v.users]]));
  }

  // ---------------------------------------------------------------- permissions (topics/permissions: "Permission Overwrites")

  permissions(guild: FakeGuild, channel: FakeChannel | null, userId: string): bigint {
    if (channel?.parentId) channel = this.channels.get(channel.parentId) ?? channel;
    if (guild.ownerId === userId) return ALL_PERMISSIONS;
    const member = guild.members.get(userId);
    if (!member) return 0n;
    let perms = BigInt(guild.roles.get(guild.id)?.permissions ?? '0');
    for (const r of member.roles) perms |= BigInt(guild.roles.get(r)?.permissions ?? '0');
    if (perms & Perm.Administrator) return ALL_PERMISSIONS;
    if (!channel) return perms;
    const ow = (id: string) => channel.overwrites.find((o) => o.id === id);
    const everyone = ow(guild.id);
    if (everyone) perms = (perms & ~BigInt(everyone.deny)) | BigInt(everyone.allow);
    let allow = 0n;
    let deny = 0n;
    for (const r of member.roles) {
      const o = ow(r);
      if (o) ((allow |= BigInt(o.allow)), (deny |= BigInt(o.deny)));
    }
    perms = (perms & ~deny) | allow;
    const own = ow(userId);
    if (own) perms = (perms & ~BigInt(own.deny)) | BigInt(own.allow);
    return perms;
  }

  private can(channel: FakeChannel, userId: string, perm: bigint): boolean {
    if (!channel.guildId) return channel.recipients.includes(userId);
    const guild = this.guild(channel.guildId);
    const p = this.permissions(guild, channel, userId);
    return (p & Perm.ViewChannel) !== 0n && (p & perm) === perm;
  }

  // ---------------------------------------------------------------- payloads

  private memberPayload(m: FakeMember): APIGuildMember {
    return { user: m.user, nick: m.nick, roles: m.roles, joined_at: m.joined_at, deaf: false, mute: false, flags: 0, avatar: null, banner: null } as unknown as APIGuildMember;
  }

  channelPayload(ch: FakeChannel): APIChannel {
    if (ch.type === ChannelType.DM) {
      return { id: ch.id, type: ChannelType.DM, last_message_id: ch.lastMessageId, recipients: ch.recipients.filter((r) => !this.isBot(r)).map((r) => this.user(r)), flags: 0 } as unknown as APIChannel;
    }
    if (isThreadType(ch.type)) {
      return {
        id: ch.id,
        type: ch.type,
        guild_id: ch.guildId,
        name: ch.name,
        parent_id: ch.parentId,
        owner_id: ch.ownerId,
        last_message_id: ch.lastMessageId,
        rate_limit_per_user: 0,
        flags: 0,
        message_count: ch.messages.size,
        member_count: 1,
        thread_metadata: { archived: !!ch.archived, auto_archive_duration: 1440, archive_timestamp: new Date().toISOString(), locked: false },
      } as unknown as APIChannel;
    }
    return {
      id: ch.id,
      type: ch.type,
      guild_id: ch.guildId,
      name: ch.name,
      topic: ch.topic,
      position: ch.position,
      permission_overwrites: ch.overwrites,
      nsfw: false,
      parent_id: null,
      last_message_id: ch.lastMessageId,
      rate_limit_per_user: 0,
      flags: 0,
    } as unknown as APIChannel;
  }

  private isBot(userId: string): boolean {
    for (const b of this.bots.values()) if (b.user.id === userId) return true;
    return false;
  }

  private guildCreatePayload(guild: FakeGuild, s: GatewaySession): unknown {
    const membersVisible = (s.intents & Intent.GuildMembers) !== 0;
    const large = guild.members.size > s.largeThreshold;
    const online = (id: string) => (this.presences.get(id) ?? 'offline') !== 'offline';
    // A large guild comes with its online members only (and the bot); clients ask for the rest (op 8).
    const members = [...guild.members.values()].filter((m) => m.user.id === s.bot.user.id || (membersVisible && (!large || online(m.user.id))));
    return {
      id: guild.id,
      name: guild.name,
      icon: null,
      splash: null,
      discovery_splash: null,
      owner_id: guild.ownerId,
      afk_channel_id: null,
      afk_timeout: 300,
      verification_level: 0,
      default_message_notifications: 0,
      explicit_content_filter: 0,
      roles: [...guild.roles.values()],
      emojis: [],
      stickers: [],
      features: [],
      mfa_level: 0,
      application_id: null,
      system_channel_id: null,
      system_channel_flags: 0,
      rules_channel_id: null,
      vanity_url_code: null,
      description: null,
      banner: null,
      premium_tier: 0,
      premium_subscription_count: 0,
      preferred_locale: 'en-US',
      public_updates_channel_id: null,
      nsfw_level: 0,
      premium_progress_bar_enabled: false,
      safety_alerts_channel_id: null,
      max_members: 500000,
      // GUILD_CREATE extra fields
      joined_at: guild.members.get(s.bot.user.id)?.joined_at ?? new Date().toISOString(),
      large,
      unavailable: false,
      member_count: guild.members.size,
      voice_states: [],
      members: members.map((m) => this.memberPayload(m)),
      channels: [...guild.channels.values()].filter((c) => !isThreadType(c.type)).map((c) => this.channelPayload(c)),
      threads: this.activeThreads(guild, s.bot.user.id).map((c) => this.channelPayload(c)),
      presences:
        s.intents & Intent.GuildPresences
          ? members.filter((m) => (this.presences.get(m.user.id) ?? 'offline') !== 'offline').map((m) => ({ user: { id: m.user.id }, status: this.presences.get(m.user.id), activities: [], client_status: {} }))
          : [],
      stage_instances: [],
      guild_scheduled_events: [],
      soundboard_sounds: [],
    };
  }

  private fillMentions(ch: FakeChannel, message: APIMessage): void {
    const guild = ch.guildId ? this.guilds.get(ch.guildId) : undefined;
    const ids = [...message.content.matchAll(/<@!?(\d+)>/g)].map((m) => m[1]!);
    message.mentions = [...new Set(ids)]
      .filter((id) => this.users.has(id))
      .map((id) => {
        const m = guild?.members.get(id);
        return { ...this.users.get(id)!, ...(m ? { member: this.memberPayload(m) } : {}) } as APIUser;
      });
    message.mention_roles = [...new Set([...message.content.matchAll(/<@&(\d+)>/g)].map((m) => m[1]!))].filter((id) => guild?.roles.has(id));
  }

  private messagePayload(ch: FakeChannel, message: APIMessage, s: GatewaySession): unknown {
    const d: Record<string, unknown> = { ...message, channel_type: ch.type };
    if (ch.guildId) {
      const guild = this.guild(ch.guildId);
      d.guild_id = guild.id;
      const member = guild.members.get(message.author.id);
      if (member && !message.webhook_id) {
        const { user: _user, ...rest } = this.memberPayload(member) as APIGuildMember & { user?: APIUser };
        d.member = rest;
      }
      // Without the MESSAGE_CONTENT intent, guild messages come without content unless they mention the bot or are its own.
      const mentioned = message.mentions.some((u) => u.id === s.bot.user.id);
      if (!(s.intents & Intent.MessageContent) && !mentioned && message.author.id !== s.bot.user.id) {
        d.content = '';
        d.embeds = [];
        d.attachments = [];
      }
    }
    return d;
  }

  // ---------------------------------------------------------------- dispatching

  private sessionsSeeing(ch: FakeChannel): GatewaySession[] {
    return [...this.sessions.values()].filter((s) => {
      if (s.invalid) return false;
      if (!ch.guildId) return ch.recipients.includes(s.bot.user.id);
      const guild = this.guilds.get(ch.guildId);
      return !!guild && guild.members.has(s.bot.user.id) && this.can(ch, s.bot.user.id, Perm.ViewChannel);
    });
  }

  private dispatchMessage(ch: FakeChannel, t: string, message: APIMessage): void {
    for (const s of this.sessionsSeeing(ch)) {
      if (!(s.intents & (ch.guildId ? Intent.GuildMessages : Intent.DirectMessages))) continue;
      this.send(s, t, this.messagePayload(ch, message, s));
    }
  }

  private dispatchChannel(ch: FakeChannel, t: string, guildIntent: number, dmIntent: number, build: (s: GatewaySession) => unknown): void {
    for (const s of this.sessionsSeeing(ch)) {
      if (!(s.intents & (ch.guildId ? guildIntent : dmIntent))) continue;
      this.send(s, t, build(s));
    }
  }

  /** To the sessions of bots in the guild that asked for `intent`; `always` lists users whose own updates ignore the intent (the bot itself). */
  private dispatchGuild(guild: FakeGuild, t: string, intent: number, build: (s: GatewaySession) => unknown, always: string[] = []): void {
    for (const s of this.sessions.values()) {
      if (s.invalid || !guild.members.has(s.bot.user.id)) continue;
      if (!(s.intents & intent) && !always.includes(s.bot.user.id)) continue;
      this.send(s, t, build(s));
    }
  }

  private applyReaction(ch: FakeChannel, stored: StoredMessage, userId: string, e: APIEmoji, remove: boolean): boolean {
    const key = emojiKey(e);
    let entry = stored.reactions.get(key);
    if (remove) {
      if (!entry?.users.delete(userId)) return false;
      if (!entry.users.size) stored.reactions.delete(key);
    } else {
      if (!entry) stored.reactions.set(key, (entry = { emoji: e, users: new Set() }));
      if (entry.users.has(userId)) return false;
      entry.users.add(userId);
    }
    const guild = ch.guildId ? this.guild(ch.guildId) : null;
    const member = guild?.members.get(userId);
    this.dispatchChannel(ch, remove ? 'MESSAGE_REACTION_REMOVE' : 'MESSAGE_REACTION_ADD', Intent.GuildMessageReactions, Intent.DirectMessageReactions, () => ({
      user_id: userId,
      channel_id: ch.id,
      message_id: stored.message.id,
      emoji: e,
      burst: false,
      type: 0,
      ...(ch.guildId ? { guild_id: ch.guildId } : {}),
      ...(!remove && member ? { member: this.memberPayload(member) } : {}),
      ...(!remove ? { message_author_id: stored.message.author.id, burst_colors: [] } : {}),
    }));
    return true;
  }

  private send(s: GatewaySession, t: string, d: unknown): void {
    const ev: Dispatched = { s: ++s.seq, t, d };
    s.backlog.push(ev);
    if (s.backlog.length > 2000) s.backlog.shift();
    const c = s.conn;
    // While a RESUME replays, live events wait their turn in the backlog.
    if (c && !c.resuming && c.ws.readyState === WS_OPEN) this.sendRaw(c, { op: Op.Dispatch, s: ev.s, t: ev.t, d: ev.d });
  }

  private sendRaw(c: Connection, payload: { op: number; d: unknown; s: number | null; t: string | null }): void {
    if (c.ws.readyState !== WS_OPEN) return;
    c.ws.send(JSON.stringify(payload));
  }

  // ---------------------------------------------------------------- gateway

  private onUpgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (Date.now() < this.refuseUntil) {
      socket.end('HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      return;
    }
    const url = new URL(req.url ?? '/', 'http://x');
    this.wss.handleUpgrade(req, socket, head, (ws) => this.onConnection(ws, url));
  }

  private onConnection(ws: WsSocket, url: URL): void {
    const c: Connection = { n: ++this.connectionCount, ws, path: url.pathname, session: null, heartbeatTimer: null, lastHeartbeatAt: Date.now(), resuming: false, closedByServer: false };
    this.connections.add(c);
    this.gatewayConnections.push(url.pathname);
    ws.on('close', (code) => {
      this.connections.delete(c);
      if (c.heartbeatTimer) clearInterval(c.heartbeatTimer);
      if (c.session?.conn === c) c.session.conn = null;
      // A client closing normally (1000/1001) ends its session; other codes keep it resumable.
      if (c.session && (code === 1000 || code === 1001) && !c.closedByServer) {
        c.session.invalid = true;
        this.sessions.delete(c.session.id);
      }
    });
    ws.on('error', () => undefined);
    if (url.searchParams.get('v') !== '10') {
      ws.close(4012, 'Invalid API version');
      return;
    }
    if ((url.searchParams.get('encoding') ?? 'json') !== 'json' || url.searchParams.has('compress')) {
      ws.close(4002, 'Error while decoding payload.');
      return;
    }
    ws.on('message', (data, isBinary) => this.onPayload(c, data, isBinary));
    if (Date.now() < this.stallUntil) return;
    this.sendRaw(c, { op: Op.Hello, d: { heartbeat_interval: this.heartbeatIntervalMs }, s: null, t: null });
    if (this.enforceHeartbeat) {
      const limit = this.heartbeatIntervalMs * 2 + 1000;
      c.heartbeatTimer = setInterval(() => {
        if (Date.now() - c.lastHeartbeatAt > limit) ws.close(4009, 'Session timed out');
      }, Math.min(this.heartbeatIntervalMs, 1000));
      c.heartbeatTimer.unref();
    }
  }

  private onPayload(c: Connection, data: Buffer, isBinary: boolean): void {
    let p: { op?: unknown; d?: any };
    try {
      if (isBinary) throw new Error('binary');
      p = JSON.parse(data.toString('utf8'));
    } catch {
      c.ws.close(4002, 'Error while decoding payload.');
      return;
    }
    const op = typeof p.op === 'number' ? p.op : -1;
    const d = p.d;
    const redacted = d && typeof d === 'object' && 'token' in d ? { ...d, token: '<redacted>' } : d;
    this.gatewayReceived.push({ op, d: redacted, at: Date.now(), connection: c.n });
    switch (op) {
      case Op.Heartbeat:
        c.lastHeartbeatAt = Date.now();
        this.sendRaw(c, { op: Op.HeartbeatAck, d: null, s: null, t: null });
        return;
      case Op.Identify:
        return this.identify(c, d);
      case Op.Resume:
        return this.resume(c, d);
      case Op.PresenceUpdate:
      case Op.RequestGuildMembers:
        if (!c.session) c.ws.close(4003, 'Not authenticated.');
        else if (op === Op.RequestGuildMembers) this.requestGuildMembers(c.session, d);
        return;
      default:
        c.ws.close(4001, 'Unknown opcode.');
    }
  }

  private identify(c: Connection, d: any): void {
    if (c.session) {
      c.ws.close(4005, 'Already authenticated.');
      return;
    }
    const bot = typeof d?.token === 'string' ? this.bots.get(d.token.replace(/^Bot\s+/i, '')) : undefined;
    if (!bot) {
      c.ws.close(4004, 'Authentication failed.');
      return;
    }
    const intents = typeof d.intents === 'number' ? d.intents : NaN;
    if (!Number.isInteger(intents) || intents < 0 || intents >= 1 << 26) {
      c.ws.close(4013, 'Invalid intent(s).');
      return;
    }
    if (
      (intents & Intent.GuildMembers && !bot.privileged.members) ||
      (intents & Intent.GuildPresences && !bot.privileged.presences) ||
      (intents & Intent.MessageContent && !bot.privileged.messageContent)
    ) {
      c.ws.close(4014, 'Disallowed intent(s).');
      return;
    }
    if (d.shard !== undefined && (!Array.isArray(d.shard) || d.shard[0] !== 0 || d.shard[1] !== 1)) {
      c.ws.close(4010, 'Invalid shard.');
      return;
    }
    const largeThreshold = typeof d.large_threshold === 'number' ? Math.min(Math.max(d.large_threshold, 50), 250) : 50;
    const session: GatewaySession = { id: randomBytes(16).toString('hex'), bot, intents, largeThreshold, seq: 0, backlog: [], conn: c, invalid: false };
    this.sessions.set(session.id, session);
    c.session = session;
    const guilds = [...this.guilds.values()].filter((g) => g.members.has(bot.user.id));
    this.send(session, 'READY', {
      v: 10,
      user: { ...bot.user, verified: true, mfa_enabled: false, flags: 0 },
      guilds: guilds.map((g) => ({ id: g.id, unavailable: true })),
      session_id: session.id,
      resume_gateway_url: this.resumeUrl,
      shard: [0, 1],
      application: { id: bot.user.id, flags: 0 },
      private_channels: [],
      relationships: [],
      user_settings: {},
      presences: [],
      guild_join_requests: [],
      geo_ordered_rtc_regions: [],
    });
    if (intents & Intent.Guilds) for (const g of guilds) this.send(session, 'GUILD_CREATE', this.guildCreatePayload(g, session));
  }

  private resume(c: Connection, d: any): void {
    if (c.session) {
      c.ws.close(4005, 'Already authenticated.');
      return;
    }
    const session = typeof d?.session_id === 'string' ? this.sessions.get(d.session_id) : undefined;
    if (!session || session.invalid) {
      this.sendRaw(c, { op: Op.InvalidSession, d: false, s: null, t: null });
      return;
    }
    if (typeof d.token !== 'string' || d.token.replace(/^Bot\s+/i, '') !== session.bot.token) {
      c.ws.close(4004, 'Authentication failed.');
      return;
    }
    const seq = typeof d.seq === 'number' ? d.seq : -1;
    const oldest = session.backlog[0]?.s ?? session.seq + 1;
    if (seq < 0 || seq > session.seq || seq + 1 < oldest) {
      c.ws.close(4007, 'Invalid seq.');
      return;
    }
    if (session.conn && session.conn !== c) session.conn.ws.terminate();
    session.conn = c;
    c.session = session;
    c.resuming = true;
    // Replay everything after `seq`, in order; events that arrive meanwhile are in the backlog too.
    let i = session.backlog.findIndex((e) => e.s > seq);
    if (i < 0) i = session.backlog.length;
    for (; i < session.backlog.length; i++) {
      const ev = session.backlog[i]!;
      this.sendRaw(c, { op: Op.Dispatch, s: ev.s, t: ev.t, d: ev.d });
    }
    c.resuming = false;
    this.send(session, 'RESUMED', null);
  }

  /** op 8: GUILD_MEMBERS_CHUNK answers, 1000 members each (listing everyone needs the GUILD_MEMBERS intent). */
  private requestGuildMembers(s: GatewaySession, d: any): void {
    const guildIds: string[] = Array.isArray(d?.guild_id) ? d.guild_id : [d?.guild_id];
    for (const gid of guildIds) {
      const guild = this.guilds.get(gid);
      if (!guild || !guild.members.has(s.bot.user.id)) continue;
      const ids: string[] | null = Array.isArray(d.user_ids) ? d.user_ids : typeof d.user_ids === 'string' ? [d.user_ids] : null;
      const query: string = typeof d.query === 'string' ? d.query.toLowerCase() : '';
      if (!ids && !query && !(s.intents & Intent.GuildMembers)) continue;
      let members = [...guild.members.values()].filter((m) => (ids ? ids.includes(m.user.id) : m.user.username.toLowerCase().startsWith(query)));
      const limit = typeof d.limit === 'number' && d.limit > 0 ? d.limit : 0;
      if (limit) members = members.slice(0, limit);
      const count = Math.max(1, Math.ceil(members.length / 1000));
      for (let i = 0; i < count; i++) {
        this.send(s, 'GUILD_MEMBERS_CHUNK', {
          guild_id: guild.id,
          members: members.slice(i * 1000, (i + 1) * 1000).map((m) => this.memberPayload(m)),
          chunk_index: i,
          chunk_count: count,
          ...(d.nonce ? { nonce: d.nonce } : {}),
        });
      }
    }
  }

  // ---------------------------------------------------------------- REST

  private async onHttp(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://x');
    const method = (req.method ?? 'GET').toUpperCase();
    if (url.pathname.startsWith('/attachments/')) return this.serveCdn(url, method, res);
    if (url.pathname.startsWith('/avatars/')) return this.serveAvatar(url, method, res);
    const chunks: Buffer[] = [];
    for await (const chunk of req) chunks.push(chunk as Buffer);
    const rawBytes = Buffer.concat(chunks);
    const raw = rawBytes.toString('utf8');
    const m = /^\/api\/v(\d+)(\/.*)$/.exec(url.pathname);
    const path = m ? m[2]! : url.pathname;
    const record: RecordedRequest = { method, path, query: Object.fromEntries(url.searchParams), body: null, status: 0, at: Date.now(), botId: null };
    const headers: Record<string, string> = {};
    let status = 200;
    let payload: unknown = null;
    try {
      if (!m) throw new HttpError(404, 0, '404: Not Found');
      if (m[1] !== '10') throw new HttpError(400, 50041, 'Invalid API version provided.');
      const contentType = req.headers['content-type'] ?? '';
      if (rawBytes.length && /^multipart\/form-data\b/i.test(contentType)) {
        const form = this.readForm(rawBytes, contentType);
        record.body = form.body;
        record.files = form.files;
        if (form.files.reduce((n, f) => n + f.data.length, 0) > this.attachmentLimit) throw new HttpError(413, 40005, 'Request entity too large');
      } else if (raw) {
        if (!contentType.includes('application/json')) throw new HttpError(400, 50035, 'Invalid Form Body');
        try {
          record.body = JSON.parse(raw);
        } catch {
          throw new HttpError(400, 50109, 'The request body contains invalid JSON.');
        }
      }
      const hook = /^\/webhooks\/(\d+)\/([^/]+)(?:\/messages\/(\d+))?$/.exec(path);
      let result: { status: number; body: unknown };
      if (hook) {
        // Executing a webhook needs its token only (no Authorization header).
        this.applyRateLimits(method, path, routeOf(method, path), headers);
        result = this.handleWebhook(method, hook[1]!, decodeURIComponent(hook[2]!), hook[3] ?? null, url.searchParams, record.body, record.files ?? []);
      } else {
        const auth = req.headers.authorization ?? '';
        const bot = /^Bot (.+)$/.exec(auth) ? this.bots.get(auth.slice(4)) : undefined;
        if (!bot) throw new HttpError(401, 0, '401: Unauthorized');
        record.botId = bot.user.id;
        const route = routeOf(method, path);
        this.applyRateLimits(method, path, route, headers);
        result = this.handle(bot, method, path, url.searchParams, record.body, record.files ?? []);
      }
      status = result.status;
      payload = result.body;
    } catch (err) {
      if (err instanceof HttpError) {
        status = err.status;
        payload = { message: err.message, code: err.code, ...err.extra };
        if (status === 429) Object.assign(headers, (err.extra as { headers?: Record<string, string> }).headers ?? {});
        delete (payload as Record<string, unknown>).headers;
      } else {
        status = 500;
        payload = { message: '500: Internal Server Error', code: 0 };
      }
    }
    record.status = status;
    this.requests.push(record);
    for (const w of [...this.waiters]) if (w.pred(record)) w.resolve(record);
    if (status === 204) {
      res.writeHead(204, headers);
      res.end();
      return;
    }
    res.writeHead(status, { 'Content-Type': 'application/json', ...headers });
    res.end(JSON.stringify(payload));
  }

  private applyRateLimits(method: string, path: string, route: { template: string; major: string }, headers: Record<string, string>): void {
    const rule = this.rules.find((r) => r.remaining > 0 && (!r.method || r.method === method) && r.path.test(path));
    const bucketKey = `${route.template}:${route.major}`;
    const cfg = this.bucketConfig.get(route.template) ?? this.defaultBucket;
    let b = this.buckets.get(bucketKey);
    if (!b || b.limit !== cfg.limit || b.windowMs !== cfg.windowMs) this.buckets.set(bucketKey, (b = { ...cfg, hits: [] }));
    const now = Date.now();
    b.hits = b.hits.filter((t) => now - t < b!.windowMs);
    const hash = Buffer.from(route.template).toString('base64url').slice(0, 16);
    const resetAfter = (ms: number) => (Math.max(ms, 0) / 1000).toFixed(3);
    const limited = (retryAfterS: number, global: boolean, scope: string) => {
      this.rateLimited++;
      const h: Record<string, string> = {
        'Retry-After': String(Math.ceil(retryAfterS)),
        'X-RateLimit-Scope': scope,
        'X-RateLimit-Limit': String(b!.limit),
        'X-RateLimit-Remaining': '0',
        'X-RateLimit-Reset': ((now + retryAfterS * 1000) / 1000).toFixed(3),
        'X-RateLimit-Reset-After': retryAfterS.toFixed(3),
        'X-RateLimit-Bucket': hash,
      };
      if (global) h['X-RateLimit-Global'] = 'true';
      return new HttpError(429, 0, 'You are being rate limited.', { retry_after: retryAfterS, global, headers: h });
    };
    if (rule) {
      rule.remaining--;
      throw limited(rule.retryAfterS, rule.global, rule.global ? 'global' : 'user');
    }
    if (b.hits.length >= b.limit) {
      this.bucketViolations++;
      const wait = (b.hits[0]! + b.windowMs - now) / 1000;
      throw limited(Math.max(wait, 0.001), false, 'user');
    }
    b.hits.push(now);
    const remaining = b.limit - b.hits.length;
    const resetIn = b.hits[0]! + b.windowMs - now;
    headers['X-RateLimit-Limit'] = String(b.limit);
    headers['X-RateLimit-Remaining'] = String(remaining);
    headers['X-RateLimit-Reset'] = ((now + resetIn) / 1000).toFixed(3);
    headers['X-RateLimit-Reset-After'] = resetAfter(resetIn);
    headers['X-RateLimit-Bucket'] = hash;
  }

  private handle(bot: Bot, method: string, path: string, query: URLSearchParams, body: any, files: UploadedFile[]): { status: number; body: unknown } {
    const me = bot.user.id;
    const ok = (b: unknown) => ({ status: 200, body: b });
    const none = { status: 204, body: null };
    let seg: string[];
    try {
      seg = path.split('/').filter(Boolean).map((x) => decodeURIComponent(x));
    } catch {
      throw new HttpError(404, 0, '404: Not Found');
    }
    const r = `${method} /${seg.map((s, i) => (/^\d+$/.test(s) ? ':id' : i > 0 && seg[i - 1] === 'reactions' && s !== '@me' ? ':emoji' : s)).join('/')}`;

    switch (r) {
      case 'GET /gateway':
        return ok({ url: this.gatewayUrl });
      case 'GET /gateway/bot':
        return ok({ url: this.gatewayUrl, shards: 1, session_start_limit: { total: 1000, remaining: 999, reset_after: 14_400_000, max_concurrency: 1 } });
      case 'GET /users/@me':
        return ok({ ...bot.user, verified: true, mfa_enabled: false, flags: 0 });
      case 'GET /users/:id':
        return ok(this.user(seg[1]!));
      case 'POST /users/@me/channels': {
        const rid = String(body?.recipient_id ?? '');
        if (!/^\d+$/.test(rid)) throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { recipient_id: { _errors: [{ code: 'NUMBER_TYPE_COERCE', message: 'Value is not snowflake.' }] } } });
        this.user(rid);
        return ok(this.channelPayload(this.dmChannel(rid, me)));
      }
      case 'GET /channels/:id': {
        const ch = this.visibleChannel(seg[1]!, me);
        return ok(this.channelPayload(ch));
      }
      case 'PATCH /channels/:id': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!ch.guildId || !this.can(ch, me, Perm.ManageChannels)) throw new HttpError(403, 50013, 'Missing Permissions');
        if (typeof body?.topic === 'string' || body?.topic === null) {
          if (body.topic && body.topic.length > 1024) throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { topic: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 1024 or fewer in length.' }] } } });
          ch.topic = body.topic || null;
        }
        if (typeof body?.name === 'string') ch.name = body.name;
        this.dispatchGuild(this.guild(ch.guildId), 'CHANNEL_UPDATE', Intent.Guilds, () => this.channelPayload(ch));
        return ok(this.channelPayload(ch));
      }
      case 'GET /channels/:id/messages': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!this.can(ch, me, Perm.ReadMessageHistory)) throw new HttpError(403, 50001, 'Missing Access');
        const limit = Number(query.get('limit') ?? 50);
        if (!Number.isInteger(limit) || limit < 1 || limit > 100) {
          throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { limit: { _errors: [{ code: 'NUMBER_TYPE_MAX', message: 'int value should be less than or equal to 100.' }] } } });
        }
        const ids = [...ch.messages.keys()].sort((a, b) => (BigInt(a) < BigInt(b) ? -1 : 1));
        const after = query.get('after');
        const before = query.get('before');
        let picked: string[];
        // Newest first, as Discord answers; with `after`, the messages right after it.
        if (after !== null) picked = ids.filter((id) => BigInt(id) > BigInt(after)).slice(0, limit);
        else if (before !== null) picked = ids.filter((id) => BigInt(id) < BigInt(before)).slice(-limit);
        else picked = ids.slice(-limit);
        return ok(picked.reverse().map((id) => ch.messages.get(id)!.message));
      }
      case 'GET /channels/:id/messages/:id': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!this.can(ch, me, Perm.ReadMessageHistory)) throw new HttpError(403, 50001, 'Missing Access');
        return ok(this.message(ch.id, seg[3]!).message);
      }
      case 'POST /channels/:id/messages':
        return ok(this.createMessage(bot, this.visibleChannel(seg[1]!, me), body, files));
      case 'PATCH /channels/:id/messages/:id': {
        const ch = this.visibleChannel(seg[1]!, me);
        const stored = this.message(ch.id, seg[3]!);
        if (stored.message.author.id !== me) throw new HttpError(403, 50005, 'Cannot edit a message authored by another user');
        if (typeof body?.content === 'string') {
          this.checkContent(body.content, stored.message.attachments.length > 0);
          stored.message.content = body.content;
        }
        stored.message.edited_timestamp = new Date().toISOString();
        this.fillMentions(ch, stored.message);
        this.dispatchMessage(ch, 'MESSAGE_UPDATE', stored.message);
        return ok(stored.message);
      }
      case 'DELETE /channels/:id/messages/:id': {
        const ch = this.visibleChannel(seg[1]!, me);
        const stored = this.message(ch.id, seg[3]!);
        if (stored.message.author.id !== me && !this.can(ch, me, Perm.ManageMessages)) throw new HttpError(403, 50013, 'Missing Permissions');
        this.delete(ch.id, stored.message.id);
        return none;
      }
      case 'PUT /channels/:id/messages/:id/reactions/:emoji/@me':
      case 'DELETE /channels/:id/messages/:id/reactions/:emoji/@me': {
        const ch = this.visibleChannel(seg[1]!, me);
        const stored = this.message(ch.id, seg[3]!);
        const emoji = parseEmoji(seg[5]!);
        if (!emoji) throw new HttpError(400, 10014, 'Unknown Emoji');
        const adding = method === 'PUT';
        if (adding && !this.can(ch, me, Perm.ReadMessageHistory)) throw new HttpError(403, 50013, 'Missing Permissions');
        if (adding && !stored.reactions.has(emojiKey(emoji)) && !this.can(ch, me, Perm.AddReactions)) throw new HttpError(403, 50013, 'Missing Permissions');
        this.applyReaction(ch, stored, me, emoji, !adding);
        return none;
      }
      case 'POST /channels/:id/typing': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!this.can(ch, me, Perm.SendMessages)) throw new HttpError(403, 50013, 'Missing Permissions');
        this.type(ch.id, me);
        return none;
      }
      case 'GET /guilds/:id': {
        const guild = this.memberGuild(seg[1]!, me);
        return ok({ id: guild.id, name: guild.name, owner_id: guild.ownerId, roles: [...guild.roles.values()], emojis: [], features: [], icon: null, approximate_member_count: guild.members.size });
      }
      case 'GET /guilds/:id/channels':
        return ok([...this.memberGuild(seg[1]!, me).channels.values()].filter((c) => !isThreadType(c.type)).map((c) => this.channelPayload(c)));
      case 'GET /guilds/:id/threads/active': {
        const guild = this.memberGuild(seg[1]!, me);
        const threads = this.activeThreads(guild, me).sort((a, b) => (BigInt(a.id) < BigInt(b.id) ? 1 : -1));
        return ok({ threads: threads.map((c) => this.channelPayload(c)), members: [] });
      }
      case 'GET /channels/:id/webhooks': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!ch.guildId || isThreadType(ch.type)) throw new HttpError(400, 50024, 'Cannot execute action on this channel type');
        if (!this.can(ch, me, Perm.ManageWebhooks)) throw new HttpError(403, 50013, 'Missing Permissions');
        return ok(this.webhooks.filter((h) => h.channelId === ch.id).map((h) => this.webhookPayload(h, true)));
      }
      case 'POST /channels/:id/webhooks': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!ch.guildId || isThreadType(ch.type)) throw new HttpError(400, 50024, 'Cannot execute action on this channel type');
        if (!this.can(ch, me, Perm.ManageWebhooks)) throw new HttpError(403, 50013, 'Missing Permissions');
        const name = body?.name;
        if (typeof name !== 'string' || name.length < 1 || name.length > 80 || /clyde|discord/i.test(name)) {
          throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { name: { _errors: [{ code: 'USERNAME_INVALID', message: 'Username cannot contain "clyde" or "discord"' }] } } });
        }
        return ok(this.webhookPayload(this.createWebhook(ch.id, name, me), true));
      }
      case 'POST /channels/:id/threads': {
        const ch = this.visibleChannel(seg[1]!, me);
        if (!this.can(ch, me, Perm.SendMessages)) throw new HttpError(403, 50013, 'Missing Permissions');
        const name = body?.name;
        if (typeof name !== 'string' || name.length < 1 || name.length > 100) throw new HttpError(400, 50035, 'Invalid Form Body');
        return { status: 201, body: this.channelPayload(this.createThread(ch.id, name, { ownerId: me, private: body?.type === ChannelType.PrivateThread })) };
      }
      case 'GET /guilds/:id/roles':
        return ok([...this.memberGuild(seg[1]!, me).roles.values()]);
      case 'GET /guilds/:id/members': {
        const guild = this.memberGuild(seg[1]!, me);
        if (!bot.privileged.members) throw new HttpError(403, 50001, 'Missing Access');
        const limit = Math.min(Math.max(Number(query.get('limit') ?? 1), 1), 1000);
        const after = BigInt(query.get('after') ?? '0');
        const list = [...guild.members.values()].filter((m) => BigInt(m.user.id) > after).sort((a, b) => (BigInt(a.user.id) < BigInt(b.user.id) ? -1 : 1));
        return ok(list.slice(0, limit).map((m) => this.memberPayload(m)));
      }
      case 'GET /guilds/:id/members/:id': {
        const guild = this.memberGuild(seg[1]!, me);
        const m = guild.members.get(seg[3]!);
        if (!m) throw new HttpError(404, 10007, 'Unknown Member');
        return ok(this.memberPayload(m));
      }
      case 'PATCH /guilds/:id/members/@me': {
        const guild = this.memberGuild(seg[1]!, me);
        const p = this.permissions(guild, null, me);
        if (!(p & Perm.ChangeNickname) && !(p & Perm.ManageNicknames)) throw new HttpError(403, 50013, 'Missing Permissions');
        const nick = body?.nick;
        if (nick !== null && nick !== undefined && (typeof nick !== 'string' || nick.length > 32)) {
          throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { nick: { _errors: [{ code: 'BASE_TYPE_BAD_LENGTH', message: 'Must be between 1 and 32 in length.' }] } } });
        }
        this.updateMember(guild.id, me, { nick: nick || null });
        return ok(this.memberPayload(guild.members.get(me)!));
      }
    }
    throw new HttpError(404, 0, '404: Not Found');
  }

  /** `/webhooks/{id}/{token}` (execute) and `/webhooks/{id}/{token}/messages/{id}` (edit, delete). */
  private handleWebhook(method: string, id: string, token: string, messageId: string | null, query: URLSearchParams, body: any, files: UploadedFile[]): { status: number; body: unknown } {
    const hook = this.webhookStore.get(id);
    if (!hook) throw new HttpError(404, 10015, 'Unknown Webhook');
    if (hook.token !== token) throw new HttpError(401, 50027, 'Invalid Webhook Token');
    let ch = this.channel(hook.channelId);
    const threadId = query.get('thread_id');
    if (threadId !== null) {
      const thread = this.channels.get(threadId);
      if (!thread || thread.parentId !== hook.channelId) throw new HttpError(400, 10003, 'Unknown Channel');
      if (thread.archived) {
        thread.archived = false;
        this.dispatchGuild(this.guild(thread.guildId!), 'THREAD_UPDATE', Intent.Guilds, () => this.channelPayload(thread));
      }
      ch = thread;
    }
    if (messageId === null) {
      if (method !== 'POST') throw new HttpError(405, 0, '405: Method Not Allowed');
      this.checkContent(body?.content, (Array.isArray(body?.embeds) && body.embeds.length > 0) || files.length > 0);
      const username = body?.username ?? hook.name;
      if (typeof username !== 'string' || username.length < 1 || username.length > 80 || /clyde|discord/i.test(username)) {
        throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { username: { _errors: [{ code: 'USERNAME_INVALID', message: 'Username cannot contain "clyde" or "discord"' }] } } });
      }
      const avatarUrl = typeof body?.avatar_url === 'string' ? body.avatar_url : null;
      const msg = this.say(ch.id, hook.applicationId, body?.content ?? '', {
        webhook: { id: hook.id, username, avatarUrl },
        embeds: Array.isArray(body?.embeds) ? body.embeds : [],
        attachments: attachmentsOf(files),
      });
      return query.get('wait') === 'true' ? { status: 200, body: msg } : { status: 204, body: null };
    }
    const stored = ch.messages.get(messageId);
    if (!stored || stored.message.webhook_id !== hook.id) throw new HttpError(404, 10008, 'Unknown Message');
    if (method === 'DELETE') {
      this.delete(ch.id, messageId);
      return { status: 204, body: null };
    }
    if (method !== 'PATCH') throw new HttpError(405, 0, '405: Method Not Allowed');
    if (typeof body?.content === 'string') {
      this.checkContent(body.content, stored.message.attachments.length > 0);
      stored.message.content = body.content;
    }
    stored.message.edited_timestamp = new Date().toISOString();
    this.fillMentions(ch, stored.message);
    this.dispatchMessage(ch, 'MESSAGE_UPDATE', stored.message);
    return { status: 200, body: stored.message };
  }

  private visibleChannel(id: string, me: string): FakeChannel {
    const ch = this.channel(id);
    if (ch.guildId) {
      const guild = this.guilds.get(ch.guildId);
      if (!guild || !guild.members.has(me)) throw new HttpError(403, 50001, 'Missing Access');
      if (!this.can(ch, me, 0n)) throw new HttpError(403, 50001, 'Missing Access');
    } else if (!ch.recipients.includes(me)) {
      throw new HttpError(403, 50001, 'Missing Access');
    }
    return ch;
  }

  private memberGuild(id: string, me: string): FakeGuild {
    const guild = this.guild(id);
    if (!guild.members.has(me)) throw new HttpError(403, 50001, 'Missing Access');
    return guild;
  }

  private checkContent(content: unknown, hasOther: boolean): void {
    if (typeof content !== 'string' && content !== undefined) throw new HttpError(400, 50035, 'Invalid Form Body');
    const text = (content as string | undefined) ?? '';
    if (!text.trim() && !hasOther) throw new HttpError(400, 50006, 'Cannot send an empty message');
    if (text.length > 2000) {
      throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { content: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 2000 or fewer in length.' }] } } });
    }
  }

  private createMessage(bot: Bot, ch: FakeChannel, body: any, files: UploadedFile[]): APIMessage {
    const me = bot.user.id;
    if (ch.guildId && !this.can(ch, me, Perm.SendMessages)) throw new HttpError(403, 50013, 'Missing Permissions');
    if (ch.guildId && files.length && !this.can(ch, me, Perm.AttachFiles)) throw new HttpError(403, 50013, 'Missing Permissions');
    if (!ch.guildId) {
      const other = ch.recipients.find((r) => r !== me);
      if (other && this.dmsClosed.has(other)) throw new HttpError(403, 50007, 'Cannot send messages to this user');
    }
    this.checkContent(body?.content, (Array.isArray(body?.embeds) && body.embeds.length > 0) || files.length > 0);
    const nonce = body?.nonce;
    if (nonce !== undefined && !((typeof nonce === 'string' && nonce.length <= 25) || Number.isInteger(nonce))) {
      throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { nonce: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 25 or fewer in length.' }] } } });
    }
    if (body?.enforce_nonce && nonce !== undefined) {
      for (const m of ch.messages.values()) if (m.message.author.id === me && m.message.nonce === nonce) return m.message;
    }
    let replyTo: string | undefined;
    const ref = body?.message_reference;
    if (ref?.message_id) {
      if (ch.messages.has(ref.message_id)) replyTo = ref.message_id;
      else if (ref.fail_if_not_exists !== false) {
        throw new HttpError(400, 50035, 'Invalid Form Body', { errors: { message_reference: { _errors: [{ code: 'REPLIES_UNKNOWN_MESSAGE', message: 'Unknown message' }] } } });
      }
    }
    const msg = this.say(ch.id, me, body?.content ?? '', {
      ...(replyTo ? { replyTo } : {}),
      ...(nonce !== undefined ? { nonce: String(nonce) } : {}),
      embeds: Array.isArray(body?.embeds) ? body.embeds : [],
      tts: body?.tts === true,
      attachments: attachmentsOf(files),
    });
    return msg;
  }

  /** Largest total of the files of one request (reference#uploading-files: 10 MiB by default); more is 413 / 40005. */
  attachmentLimit = 10 * 1024 * 1024;

  /**
   * A multipart/form-data request (reference#uploading-files): the JSON body from `payload_json`
   * (or from plain fields without it) and the `files[n]` parts, each with a file name; `attachments`
   * entries name their file by its placeholder `n`. Malformed bodies, parts without a name or a
   * file's part without a filename, repeated names: 400 / 50035; bad JSON: 400 / 50109; more than
   * ten files: 400 / 50035; more than `attachmentLimit` bytes of files: 413 / 40005.
   */
  private readForm(raw: Buffer, contentType: string): { body: any; files: UploadedFile[] } {
    const invalid = (errors?: Record<string, unknown>) => new HttpError(400, 50035, 'Invalid Form Body', errors ? { errors } : {});
    const parts = parseMultipart(raw, contentType);
    if (!parts) throw invalid();
    const names = new Set<string>();
    const fields: Record<string, string> = {};
    const files: (UploadedFile & { placeholder: string })[] = [];
    let payload: any = undefined;
    for (const part of parts) {
      if (names.has(part.name)) throw invalid({ [part.name]: { _errors: [{ code: 'DUPLICATE', message: 'Duplicate form field' }] } });
      names.add(part.name);
      const file = /^files\[(\d{1,20})\]$/.exec(part.name);
      if (file) {
        if (!part.filename) throw invalid({ [part.name]: { _errors: [{ code: 'BASE_TYPE_REQUIRED', message: 'A filename is required' }] } });
        files.push({ field: part.name, placeholder: file[1]!, filename: part.filename, contentType: part.contentType, data: Buffer.from(part.data) });
      } else if (part.name === 'payload_json') {
        try {
          payload = JSON.parse(part.data.toString('utf8'));
        } catch {
          throw new HttpError(400, 50109, 'The request body contains invalid JSON.');
        }
      } else if (part.filename === null) fields[part.name] = part.data.toString('utf8');
    }
    if (files.length > 10) throw invalid({ files: { _errors: [{ code: 'BASE_TYPE_MAX_LENGTH', message: 'Must be 10 or fewer in length.' }] } });
    const body = payload ?? fields;
    const listed: unknown = body?.attachments;
    if (listed !== undefined) {
      if (!Array.isArray(listed)) throw invalid({ attachments: { _errors: [{ code: 'BASE_TYPE_ARRAY', message: 'Must be an array.' }] } });
      for (const [i, a] of listed.entries()) {
        const f = files.find((x) => x.placeholder === String(a?.id));
        if (!f) throw invalid({ attachments: { [i]: { _errors: [{ code: 'ATTACHMENT_NOT_FOUND', message: 'Unknown attachment' }] } } });
        if (typeof a.filename === 'string' && a.filename) f.filename = a.filename;
        if (typeof a.description === 'string') f.description = a.description;
      }
    }
    return { body, files: files.map(({ placeholder: _p, ...f }) => f) };
  }
}

/** Uploaded files as attachments of a new message (served by the fake's CDN at signed URLs). */
function attachmentsOf(files: UploadedFile[]): MessageOptions['attachments'] {
  return files.map((f) => ({ filename: f.filename, data: f.data, ...(f.contentType ? { content_type: f.contentType } : {}), ...(f.description ? { description: f.description } : {}) }));
}

/** The route template and major parameter (topics/rate-limits: per-route buckets, channel/guild/webhook as major parameters). */
function routeOf(method: string, path: string): { template: string; major: string } {
  const seg = path.split('/').filter(Boolean).map((x) => x.replace(/^%40me$/i, '@me'));
  let major = 'global';
  if ((seg[0] === 'channels' || seg[0] === 'guilds') && seg[1]) major = seg[1];
  const template = seg
    .map((s, i) => {
      if (i === 1 && seg[0] === 'channels') return '{channel}';
      if (i === 1 && seg[0] === 'guilds') return '{guild}';
      if (/^\d+$/.test(s)) return '{id}';
      if (i > 0 && seg[i - 1] === 'reactions' && s !== '@me') return '{emoji}';
      return s;
    })
    .join('/');
  return { template: `${method} /${template}`, major };
}

function matches(r: RecordedRequest, filter?: { method?: string; path?: RegExp | string }): boolean {
  if (!filter) return true;
  if (filter.method && r.method !== filter.method.toUpperCase()) return false;
  if (filter.path instanceof RegExp && !filter.path.test(r.path)) return false;
  if (typeof filter.path === 'string' && r.path !== filter.path) return false;
  return true;
}
