/**
 * The base of a Matrix session: the account and its client, message ids both ways, and the
 * user's direct chats (a room is a direct chat when m.direct lists it, when the user joined it
 * from an is_direct invitation, or when it has exactly two members and neither a name nor an
 * alias), which are the user's contacts.
 */
import * as sdk from 'matrix-js-sdk';
import { LegacyNetworkError, type AdapterLogger, type LegacyContact, type LegacyRoom, type MediaHost } from '../kit/adapter.js';
import type { OccupantTable } from '../kit/occupants.js';
import { LegacySessionEmitter } from '../kit/session-emitter.js';
import { MatrixCommandError, commandError, describe } from './errors.js';
import { BoundedMap, quiet, retryRateLimited, timedFetch, withoutSdkTimers } from './sdk.js';
import type { MatrixSessionOptions } from './settings.js';
import type { TokenKeeper } from './tokens.js';
import { ResumeStore } from './resume.js';
import type { MatrixCrypto } from './crypto.js';
import type { CryptoCallbacks } from 'matrix-js-sdk/lib/crypto-api/index.js';

/** A Matrix room the kit has joined as a MUC room. */
export interface KitRoom {
  room: LegacyRoom;
  roomId: string;
  /** Occupants by user ID. */
  occupants: OccupantTable;
}

export interface MatrixLogin {
  homeserver: string;
  userId: string;
  accessToken: string;
  deviceId: string;
  /** The XMPP server's upload service (kit), for attachments both ways. */
  media?: MediaHost | undefined;
  /** OAuth 2.0 sessions: renews the access token (tokens.ts). */
  tokens?: TokenKeeper | undefined;
  /** The end-to-end encryption store of the previous session (LoginRequest.secretState; crypto.ts). */
  secretState?: Uint8Array | undefined;
  /** Share room keys with unverified devices (the user's setting; default true, as Element). */
  shareWithUnverified?: boolean | undefined;
  /** The recovery key the user gave before (vault; trust.ts), used when this device lacks its keys. */
  recoveryKey?: string | undefined;
}

export abstract class MatrixContacts extends LegacySessionEmitter {
  protected readonly network = 'matrix';
  readonly userId: string;
  readonly deviceId: string;
  readonly homeserver: string;
  readonly host: string;
  private readonly initialToken: string;
  protected readonly tokens: TokenKeeper | undefined;
  protected readonly media: MediaHost | undefined;
  protected readonly client: sdk.MatrixClient;
  /** The SDK's store: resumes from the stored room facts, keeps the sync filter's id (resume.ts). */
  protected readonly store: ResumeStore;
  protected phase: 'starting' | 'ready' | 'closed' = 'starting';
  /** End-to-end encryption (crypto.ts); null until start() set it up, or when it could not be. */
  protected crypto: MatrixCrypto | null = null;
  /** Secret storage asks these for its key (trust.ts sets it from the recovery key). */
  protected readonly cryptoCallbacks: CryptoCallbacks = {};
  protected readonly kitRooms = new Map<string, KitRoom>();
  /** The kit's ids of sent messages → Matrix event IDs. */
  protected readonly ids = new BoundedMap<string, string>(5000);
  /** ... and back: events that refer to a message the kit sent name it by the kit's id. */
  protected readonly kitIds = new BoundedMap<string, string>(5000);
  /** Event ID → room ID of messages seen or sent (for read markers on contacts). */
  protected readonly eventRooms = new BoundedMap<string, string>(5000);
  private readonly dmCreating = new Map<string, Promise<string>>();
  /** The direct-chat contacts, recomputed when m.direct or a membership changes. */
  protected contactsCache: LegacyContact[] | null = null;
  private rosterKey = '';

  constructor(
    login: MatrixLogin,
    protected readonly opts: MatrixSessionOptions,
    protected readonly log: AdapterLogger,
  ) {
    super();
    this.userId = login.userId;
    this.deviceId = login.deviceId;
    this.homeserver = login.homeserver;
    this.host = new URL(login.homeserver).host;
    this.initialToken = login.accessToken;
    this.tokens = login.tokens;
    this.media = login.media;
    this.store = new ResumeStore();
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
      ...(login.tokens?.current.refreshToken ? { refreshToken: login.tokens.current.refreshToken, tokenRefreshFunction: login.tokens.sdkRefresh } : {}),
      store: this.store,
      cryptoCallbacks: this.cryptoCallbacks,
      // Emoji (SAS) only: the gateway can neither show nor scan a QR code (verification.ts).
      verificationMethods: ['m.sas.v1'],
    });
    withoutSdkTimers(this.client);
    if (login.tokens) {
      const http = this.client.http as unknown as { opts: { refreshToken?: string } };
      login.tokens.onToken = (t) => {
        // Renewed ahead of expiry: the client's requests carry the new token from now on.
        this.client.setAccessToken(t.accessToken);
        if (t.refreshToken) http.opts.refreshToken = t.refreshToken;
      };
    }
  }

  /** What the vault keeps for this session (see MatrixAdapter.credentialsToStore). */
  storedCredentials(): Record<string, string> {
    const out: Record<string, string> = { token: this.accessToken, deviceId: this.deviceId };
    if (this.tokens) {
      const t = this.tokens.current;
      if (t.refreshToken) out.refreshToken = t.refreshToken;
      if (t.expiresAt !== null) out.expiresAt = String(t.expiresAt);
      out.clientId = this.tokens.clientId;
    }
    return out;
  }

  /** Reports the current credentials to the kit (after a renewal), which stores them in the vault. */
  reportCredentials(): void {
    if (this.phase !== 'closed') this.safeEmit('credentials', this.storedCredentials());
  }

  /** The access token in use (renewed by the token keeper in OAuth sessions). */
  protected get accessToken(): string {
    return this.tokens?.current.accessToken ?? this.initialToken;
  }

  get connected(): boolean {
    return this.phase === 'ready';
  }

  protected ensureReady(): void {
    if (this.phase !== 'ready') throw new LegacyNetworkError(`not connected to ${this.host}`);
  }

  protected txn(): string {
    return this.client.makeTxnId();
  }

  /** The kit's id of a message it sent through this session, else the event ID. */
  protected kitIdOf(eventId: string): string {
    return this.kitIds.get(eventId) ?? eventId;
  }

  /** A message id from the kit (its own id of a message it sent, or a Matrix event ID) as an event ID. */
  protected eventId(id: string): string {
    const mapped = this.ids.get(id);
    if (mapped) return mapped;
    if (id.startsWith('$')) return id;
    throw new MatrixCommandError('the message is not known (too old, or not from this session)', 'item-not-found');
  }

  protected isRoomRef(x: LegacyContact | LegacyRoom): boolean {
    return /^[!#]/.test(x.id);
  }

  private directMap(): Record<string, string[]> {
    const content = this.client.getAccountData('m.direct' as never)?.getContent() as Record<string, unknown> | undefined;
    const out: Record<string, string[]> = {};
    for (const [user, rooms] of Object.entries(content ?? {})) if (Array.isArray(rooms)) out[user] = rooms.filter((r): r is string => typeof r === 'string');
    return out;
  }

  /** The other user of a direct chat, or null if the room is a group room. */
  protected directContactOf(room: sdk.Room): string | null {
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
  protected directContacts(): LegacyContact[] {
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

  protected contactOf(userId: string, room?: sdk.Room): LegacyContact {
    return { id: userId, ...this.displayNameOf(userId, room) };
  }

  protected emitPresence(userId: string, presence: string, status: string | null, onlyContacts = false): void {
    if (userId === this.userId) return;
    if (onlyContacts && !this.directContacts().some((c) => c.id === userId)) return;
    const show = presence === 'online' ? 'available' : presence === 'unavailable' ? 'away' : presence === 'busy' || presence === 'org.matrix.msc3026.busy' ? 'dnd' : presence === 'offline' ? 'unavailable' : null;
    if (!show) return;
    this.safeEmit('contactPresence', { id: userId, ...this.displayNameOf(userId) }, show, status);
  }

  protected emitRoster(always: boolean): void {
    const contacts = this.directContacts();
    const key = contacts.map((c) => c.id).sort().join('\u0000');
    if (!always && key === this.rosterKey) return;
    this.rosterKey = key;
    this.safeEmit('roster', contacts);
  }

  /** The direct chat room with a user: an existing one, or (when `create`) a new one. */
  protected async directRoomFor(userId: string, create: boolean): Promise<string | null> {
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

  protected async addDirect(userId: string, roomId: string): Promise<void> {
    const map = this.directMap();
    const list = map[userId] ?? [];
    if (list.includes(roomId)) return;
    map[userId] = [...list, roomId];
    await this.client.setAccountData('m.direct' as never, map as never);
  }
}
