/**
 * Trust on the fake homeserver (matrix-homeserver.ts, next to matrix-keys.ts), written from the
 * Matrix Client-Server API v1.11 (+ v1.12's MSC3967 rule), "Cross-signing" and "Server-side key
 * backups":
 *
 * - POST /keys/device_signing/upload: the user's master, self-signing and user-signing keys
 *   (each must name the token's user; usage checked). User-interactive authentication with the
 *   password, except when the user has no master key yet or the request repeats the stored keys
 *   (spec v1.12, MSC3967). Changed keys change the user's device list.
 * - POST /keys/signatures/upload: signatures of the user's own devices (by the self-signing key),
 *   of their master key (by devices), and of other users' master keys (by the user-signing key);
 *   merged into the stored objects; unknown keys go to `failures` (M_NOT_FOUND).
 * - /keys/query answers master_keys and self_signing_keys of every asked user, user_signing_keys
 *   of the requester only (crossSigningPart).
 * - Key backup: POST/GET /room_keys/version, GET/PUT/DELETE /room_keys/version/{version}, and
 *   PUT/GET/DELETE /room_keys/keys[/{roomId}[/{sessionId}]]?version= : writes only to the current
 *   version (else 403 M_WRONG_ROOM_KEYS_VERSION with current_version), a stored session replaced
 *   only by a better one (verified, then lower first_message_index, then lower forwarded_count),
 *   `count` and `etag` (changes with the keys).
 * Secret storage (m.secret_storage.*, m.cross_signing.*, m.megolm_backup.v1) is plain global
 * account data, which the homeserver already stores and syncs.
 */
import type { KeysHttpError as KeysHttpErrorType } from './matrix-keys.js';

type Json = Record<string, unknown>;

/** What the trust side needs from the homeserver and its keys side. */
export interface TrustHost {
  error(status: number, errcode: string, message: string, extra?: Json): KeysHttpErrorType;
  /** UIA with the password (throws the 401 with flows while not done). */
  interactiveAuth(ctx: TrustCtx): void;
  /** The user's device list changed (cross-signing keys count as part of it). */
  deviceListChanged(userId: string): void;
  /** Merges signatures into a device's stored keys; false when there is no such device. */
  signDevice(userId: string, deviceId: string, signatures: Json): boolean;
}

export interface TrustCtx {
  userId: string;
  deviceId: string;
  body: Json;
  query?: URLSearchParams;
}

type TrustRoute = (method: string, pattern: string, handler: (ctx: TrustCtx, params: string[]) => unknown) => void;

interface CrossSigning {
  master?: Json;
  self_signing?: Json;
  user_signing?: Json;
}

interface BackupVersion {
  version: string;
  algorithm: string;
  authData: Json;
  deleted: boolean;
  /** roomId → sessionId → KeyBackupData */
  rooms: Map<string, Map<string, Json>>;
  etag: number;
}

const USAGE: Record<keyof CrossSigning, string> = { master: 'master', self_signing: 'self_signing', user_signing: 'user_signing' };

export class FakeTrust {
  private readonly cross = new Map<string, CrossSigning>();
  private readonly backups = new Map<string, BackupVersion[]>();
  private versionSeq = 0;
  /** Signature uploads (signer → signed key ids), for tests. */
  readonly signatureLog: { userId: string; signedUser: string; keyId: string }[] = [];

  constructor(private readonly host: TrustHost) {}

  // ---------------------------------------------------------------- test-side API

  /** The public key of a user's cross-signing key of this usage (null: none). */
  crossSigningKey(userId: string, usage: keyof CrossSigning): Json | null {
    return this.cross.get(userId)?.[usage] ?? null;
  }

  /** The sessions stored in the user's current backup version (roomId/sessionId). */
  backedUpSessions(userId: string): string[] {
    const v = this.current(userId);
    return v ? [...v.rooms].flatMap(([room, s]) => [...s.keys()].map((id) => `${room}/${id}`)) : [];
  }

  // ---------------------------------------------------------------- /keys/query

  crossSigningPart(requester: string, userIds: string[]): Json {
    const master: Json = {};
    const self: Json = {};
    const user: Json = {};
    for (const id of userIds) {
      const c = this.cross.get(id);
      if (!c) continue;
      if (c.master) master[id] = c.master;
      if (c.self_signing) self[id] = c.self_signing;
      if (c.user_signing && id === requester) user[id] = c.user_signing;
    }
    return { master_keys: master, self_signing_keys: self, user_signing_keys: user };
  }

  // ---------------------------------------------------------------- endpoints

  defineRoutes(route: TrustRoute, C: string, SEG: string): void {
    route('POST', `${C}/keys/device_signing/upload`, (ctx) => this.uploadSigningKeys(ctx));
    route('POST', `${C}/keys/signatures/upload`, (ctx) => this.uploadSignatures(ctx));
    route('POST', `${C}/room_keys/version`, (ctx) => this.createVersion(ctx));
    route('GET', `${C}/room_keys/version`, (ctx) => this.versionInfo(this.existing(ctx.userId, null)));
    route('GET', `${C}/room_keys/version/${SEG}`, (ctx, [v]) => this.versionInfo(this.existing(ctx.userId, v!)));
    route('PUT', `${C}/room_keys/version/${SEG}`, (ctx, [v]) => this.updateVersion(ctx, v!));
    route('DELETE', `${C}/room_keys/version/${SEG}`, (ctx, [v]) => {
      this.existing(ctx.userId, v!).deleted = true;
      return {};
    });
    route('PUT', `${C}/room_keys/keys`, (ctx) => this.putKeys(ctx, ctx.body.rooms));
    route('PUT', `${C}/room_keys/keys/${SEG}`, (ctx, [room]) => this.putKeys(ctx, { [room!]: ctx.body }));
    route('PUT', `${C}/room_keys/keys/${SEG}/${SEG}`, (ctx, [room, session]) => this.putKeys(ctx, { [room!]: { sessions: { [session!]: ctx.body } } }));
    route('GET', `${C}/room_keys/keys`, (ctx) => ({ rooms: Object.fromEntries([...this.keysVersion(ctx).rooms].map(([r, s]) => [r, { sessions: Object.fromEntries(s) }])) }));
    route('GET', `${C}/room_keys/keys/${SEG}`, (ctx, [room]) => ({ sessions: Object.fromEntries(this.keysVersion(ctx).rooms.get(room!) ?? []) }));
    route('GET', `${C}/room_keys/keys/${SEG}/${SEG}`, (ctx, [room, session]) => {
      const data = this.keysVersion(ctx).rooms.get(room!)?.get(session!);
      if (!data) throw this.host.error(404, 'M_NOT_FOUND', 'No room_keys found');
      return data;
    });
    route('DELETE', `${C}/room_keys/keys`, (ctx) => this.deleteKeys(ctx, null, null));
    route('DELETE', `${C}/room_keys/keys/${SEG}`, (ctx, [room]) => this.deleteKeys(ctx, room!, null));
    route('DELETE', `${C}/room_keys/keys/${SEG}/${SEG}`, (ctx, [room, session]) => this.deleteKeys(ctx, room!, session!));
  }

  // ---------------------------------------------------------------- cross-signing

  private uploadSigningKeys(ctx: TrustCtx): Json {
    const { userId, body } = ctx;
    const given: CrossSigning = {};
    for (const usage of Object.keys(USAGE) as (keyof CrossSigning)[]) {
      const key = body[`${usage}_key`];
      if (key === undefined) continue;
      if (!key || typeof key !== 'object') throw this.host.error(400, 'M_BAD_JSON', `${usage}_key must be an object`);
      const k = key as Json;
      if (k.user_id !== userId) throw this.host.error(400, 'M_INVALID_PARAM', `${usage}_key must name the user of the access token`);
      if (!Array.isArray(k.usage) || !k.usage.includes(USAGE[usage])) throw this.host.error(400, 'M_INVALID_PARAM', `${usage}_key must have usage ${USAGE[usage]}`);
      if (!k.keys || typeof k.keys !== 'object' || Object.keys(k.keys).length !== 1) throw this.host.error(400, 'M_INVALID_PARAM', `${usage}_key must have exactly one key`);
      given[usage] = k;
    }
    const stored = this.cross.get(userId) ?? {};
    if (!given.master && !stored.master && (given.self_signing || given.user_signing)) throw this.host.error(400, 'M_INVALID_PARAM', 'a master key must be uploaded first');
    const sameAsStored = (Object.keys(given) as (keyof CrossSigning)[]).every((u) => stored[u] && publicKeyOf(stored[u]!) === publicKeyOf(given[u]!));
    if (stored.master && !sameAsStored) this.host.interactiveAuth(ctx);
    if (!sameAsStored) {
      // A new master key makes the old self-signing and user-signing keys worthless.
      const next: CrossSigning = given.master && stored.master && publicKeyOf(given.master) !== publicKeyOf(stored.master) ? { ...given } : { ...stored, ...given };
      this.cross.set(userId, next);
      this.host.deviceListChanged(userId);
    }
    return {};
  }

  private uploadSignatures(ctx: TrustCtx): Json {
    const failures: Json = {};
    for (const [userId, byKey] of Object.entries(ctx.body)) {
      if (!byKey || typeof byKey !== 'object') continue;
      for (const [keyId, signed] of Object.entries(byKey as Json)) {
        const signatures = (signed as Json | null)?.signatures as Json | undefined;
        const mine = signatures?.[ctx.userId] as Json | undefined;
        if (!mine || typeof mine !== 'object') {
          fail(failures, userId, keyId, 'M_INVALID_SIGNATURE', 'no signature of the uploading user');
          continue;
        }
        this.signatureLog.push({ userId: ctx.userId, signedUser: userId, keyId });
        const c = this.cross.get(userId);
        if (c?.master && publicKeyOf(c.master) === keyId) {
          mergeSignatures(c.master, ctx.userId, mine);
        } else if (!(userId === ctx.userId && this.host.signDevice(userId, keyId, { [ctx.userId]: mine }))) {
          fail(failures, userId, keyId, 'M_NOT_FOUND', 'Unknown key');
          continue;
        }
        this.host.deviceListChanged(userId);
      }
    }
    return { failures };
  }

  // ---------------------------------------------------------------- key backup

  private current(userId: string): BackupVersion | null {
    return (this.backups.get(userId) ?? []).filter((v) => !v.deleted).at(-1) ?? null;
  }

  private existing(userId: string, version: string | null): BackupVersion {
    const v = version === null ? this.current(userId) : (this.backups.get(userId) ?? []).find((b) => b.version === version && !b.deleted);
    if (!v) throw this.host.error(404, 'M_NOT_FOUND', version === null ? 'No current backup version' : `Unknown backup version ${version}`);
    return v;
  }

  private versionInfo(v: BackupVersion): Json {
    return { algorithm: v.algorithm, auth_data: v.authData, count: countOf(v), etag: String(v.etag), version: v.version };
  }

  private createVersion(ctx: TrustCtx): Json {
    const { algorithm, auth_data: authData } = ctx.body;
    if (typeof algorithm !== 'string' || !authData || typeof authData !== 'object') throw this.host.error(400, 'M_BAD_JSON', 'algorithm and auth_data are required');
    const v: BackupVersion = { version: String(++this.versionSeq), algorithm, authData: authData as Json, deleted: false, rooms: new Map(), etag: 0 };
    let list = this.backups.get(ctx.userId);
    if (!list) this.backups.set(ctx.userId, (list = []));
    list.push(v);
    return { version: v.version };
  }

  private updateVersion(ctx: TrustCtx, version: string): Json {
    const v = this.existing(ctx.userId, version);
    const { algorithm, auth_data: authData } = ctx.body;
    if (ctx.body.version !== undefined && ctx.body.version !== version) throw this.host.error(400, 'M_INVALID_PARAM', 'the version in the body does not match the path');
    if (algorithm !== v.algorithm) throw this.host.error(400, 'M_INVALID_PARAM', 'the algorithm cannot be changed');
    if (!authData || typeof authData !== 'object') throw this.host.error(400, 'M_BAD_JSON', 'auth_data is required');
    v.authData = authData as Json;
    return {};
  }

  /** The version named by ?version= for reading (any existing version). */
  private keysVersion(ctx: TrustCtx): BackupVersion {
    const version = ctx.query?.get('version');
    if (!version) throw this.host.error(400, 'M_MISSING_PARAM', 'version is required');
    return this.existing(ctx.userId, version);
  }

  /** The version named by ?version= for writing: only the current one. */
  private writableVersion(ctx: TrustCtx): BackupVersion {
    const version = ctx.query?.get('version');
    if (!version) throw this.host.error(400, 'M_MISSING_PARAM', 'version is required');
    const current = this.current(ctx.userId);
    if (!current) throw this.host.error(404, 'M_NOT_FOUND', 'No current backup version');
    if (current.version !== version) throw this.host.error(403, 'M_WRONG_ROOM_KEYS_VERSION', 'Wrong backup version', { current_version: current.version });
    return current;
  }

  private putKeys(ctx: TrustCtx, rooms: unknown): Json {
    const v = this.writableVersion(ctx);
    if (!rooms || typeof rooms !== 'object') throw this.host.error(400, 'M_BAD_JSON', 'rooms is required');
    let changed = false;
    for (const [roomId, room] of Object.entries(rooms as Json)) {
      const sessions = (room as Json | null)?.sessions;
      if (!sessions || typeof sessions !== 'object') throw this.host.error(400, 'M_BAD_JSON', 'sessions is required');
      for (const [sessionId, data] of Object.entries(sessions as Json)) {
        const d = data as Json | null;
        if (!d || typeof d !== 'object' || typeof d.first_message_index !== 'number' || typeof d.forwarded_count !== 'number' || typeof d.is_verified !== 'boolean' || !d.session_data || typeof d.session_data !== 'object') {
          throw this.host.error(400, 'M_BAD_JSON', 'KeyBackupData needs first_message_index, forwarded_count, is_verified and session_data');
        }
        let byRoom = v.rooms.get(roomId);
        if (!byRoom) v.rooms.set(roomId, (byRoom = new Map()));
        const old = byRoom.get(sessionId);
        if (old && !better(d, old)) continue;
        byRoom.set(sessionId, d);
        changed = true;
      }
    }
    if (changed) v.etag++;
    return { count: countOf(v), etag: String(v.etag) };
  }

  private deleteKeys(ctx: TrustCtx, room: string | null, session: string | null): Json {
    const v = this.writableVersion(ctx);
    if (room === null) v.rooms.clear();
    else if (session === null) v.rooms.delete(room);
    else v.rooms.get(room)?.delete(session);
    v.etag++;
    return { count: countOf(v), etag: String(v.etag) };
  }
}

/** The key ID of a cross-signing key: its public key (unpadded base64). */
function publicKeyOf(key: Json): string {
  return String(Object.values((key.keys as Json) ?? {})[0] ?? '');
}

export function mergeSignatures(target: Json, signer: string, sigs: Json): void {
  const all = ((target.signatures as Json | undefined) ?? {}) as Json;
  all[signer] = { ...((all[signer] as Json | undefined) ?? {}), ...sigs };
  target.signatures = all;
}

function fail(failures: Json, userId: string, keyId: string, errcode: string, error: string): void {
  const forUser = ((failures[userId] as Json | undefined) ?? {}) as Json;
  forUser[keyId] = { errcode, error };
  failures[userId] = forUser;
}

function countOf(v: BackupVersion): number {
  let n = 0;
  for (const s of v.rooms.values()) n += s.size;
  return n;
}

/** Spec: a new session key replaces the stored one if verified where it was not, else with a lower first index, else fewer forwards. */
function better(next: Json, old: Json): boolean {
  if (next.is_verified !== old.is_verified) return next.is_verified === true;
  if (next.first_message_index !== old.first_message_index) return (next.first_message_index as number) < (old.first_message_index as number);
  return (next.forwarded_count as number) < (old.forwarded_count as number);
}
