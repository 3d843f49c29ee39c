/**
 * The end-to-end encryption side of the fake homeserver (matrix-homeserver.ts), written from the
 * Matrix Client-Server API v1.11, "End-to-End Encryption" and "Send-to-Device messaging":
 *
 * - POST /keys/upload: device keys (must name the token's user and device; signed content is kept
 *   as given), one-time keys (`<algorithm>:<key id>`; the same id with other content is 400
 *   M_INVALID_PARAM, as Synapse answers) and fallback keys (one per algorithm, replaced, unused
 *   until claimed); answers one_time_key_counts.
 * - POST /keys/query: device_keys per user (all devices, or the ones asked for), `failures` for
 *   servers it cannot reach (every server name but its own), empty master/self-signing/
 *   user-signing keys (cross-signing is not stored here).
 * - POST /keys/claim: one one-time key per device and algorithm, removed once claimed; the fallback
 *   key (marked used) when none is left; `failures` as above.
 * - PUT /sendToDevice/{eventType}/{txnId}: per user and device, or `*` for all of a user's devices;
 *   idempotent per sending device and txnId. Delivered in /sync `to_device.events` and removed
 *   once the device syncs with a `since` past them (spec: "acknowledged").
 * - /sync: `device_one_time_keys_count`, `device_unused_fallback_key_types`, `device_lists.changed`
 *   (users sharing a room whose keys changed, or who joined a shared room, and all members of a
 *   room the user joined) and `device_lists.left` (users no longer sharing any room).
 * - GET /devices, GET|PUT|DELETE /devices/{deviceId}, POST /delete_devices: deleting needs
 *   user-interactive authentication with the password (401 with the flows first); the device's
 *   tokens stop working and its keys are gone (its user's device list changes).
 * Cross-signing and key backup: matrix-trust.ts (`trust`), whose keys /keys/query includes.
 * Rate limits apply as on every authenticated endpoint (429 with Retry-After).
 */
import { randomBytes } from 'node:crypto';

type Json = Record<string, unknown>;

export class KeysHttpError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string,
    message: string,
    readonly extra: Json = {},
  ) {
    super(message);
  }
}

/** What the keys side needs from the homeserver. */
export interface KeysHost {
  readonly serverName: string;
  /** Takes the next stream position (the /sync token `s<pos>` includes it) and wakes long polls. */
  nextPos(): number;
  userExists(userId: string): boolean;
  /** The user and everyone who shares a room with them (joined or invited). */
  sharedUsers(userId: string): Set<string>;
  /** Membership changes in the user's rooms after `since`: others who joined a shared room, rooms the user joined (all their members), users who left. */
  membershipChangesSince(userId: string, since: number): { joined: Set<string>; left: Set<string> };
  checkPassword(userId: string, password: string): boolean;
  /** The device's access tokens stop working. */
  revokeDevice(userId: string, deviceId: string): void;
}

interface KeysCtx {
  userId: string;
  deviceId: string;
  body: Json;
}

type KeysRoute = (method: string, pattern: string, handler: (ctx: KeysCtx, params: string[]) => unknown) => void;

interface FakeDevice {
  deviceId: string;
  displayName: string | null;
  lastSeen: number;
  keys: Json | null;
  oneTimeKeys: Map<string, unknown>;
  fallbackKeys: Map<string, { id: string; key: unknown; used: boolean }>;
  /** Signatures uploaded through /keys/signatures/upload (matrix-trust.ts): kept apart, as Synapse does, so a new upload of the device keys keeps them. */
  crossSignatures?: Json;
}

interface ToDevice {
  pos: number;
  type: string;
  sender: string;
  content: Json;
}

export class FakeKeys {
  private readonly devices = new Map<string, Map<string, FakeDevice>>();
  /** To-device messages waiting per `user\0device`. */
  private readonly inbox = new Map<string, ToDevice[]>();
  private readonly toDeviceTxns = new Set<string>();
  /** Positions at which each user's device list changed. */
  private readonly changes: { userId: string; pos: number }[] = [];
  private readonly uiaSessions = new Set<string>();
  /** Users whose to-device messages are held back (hold()/release()). */
  private readonly held = new Map<string, { key: string; message: ToDevice }[]>();
  /** Every to-device message sent (type, sender, receiver), for tests. */
  readonly toDeviceLog: { type: string; sender: string; userId: string; deviceId: string }[] = [];
  /** Claims answered (user, device, algorithm, whether a fallback key was given). */
  readonly claims: { userId: string; deviceId: string; algorithm: string; fallback: boolean }[] = [];

  /** Cross-signing keys for /keys/query answers (matrix-trust.ts), when the homeserver has them. */
  crossSigningPart: ((requester: string, userIds: string[]) => Json) | null = null;

  constructor(private readonly host: KeysHost) {}

  // ---------------------------------------------------------------- test-side API

  /** A device exists once a token is issued for it (login) or keys are uploaded. */
  ensureDevice(userId: string, deviceId: string, displayName?: string | null): void {
    let list = this.devices.get(userId);
    if (!list) this.devices.set(userId, (list = new Map()));
    const d = list.get(deviceId);
    if (d) {
      if (displayName) d.displayName = displayName;
      d.lastSeen = Date.now();
      return;
    }
    list.set(deviceId, { deviceId, displayName: displayName ?? null, lastSeen: Date.now(), keys: null, oneTimeKeys: new Map(), fallbackKeys: new Map() });
  }

  /** The device IDs of a user that uploaded device keys. */
  devicesWithKeys(userId: string): string[] {
    return [...(this.devices.get(userId)?.values() ?? [])].filter((d) => d.keys).map((d) => d.deviceId);
  }

  /** The device IDs of a user (with or without keys). */
  deviceIds(userId: string): string[] {
    return [...(this.devices.get(userId)?.keys() ?? [])];
  }

  /** The uploaded device keys of a device (as the client signed them, with the cross-signing signatures others uploaded). */
  deviceKeys(userId: string, deviceId: string): Json | null {
    const d = this.devices.get(userId)?.get(deviceId);
    if (!d?.keys) return null;
    return d.crossSignatures ? { ...d.keys, signatures: mergedSignatures(d.keys.signatures as Json | undefined, d.crossSignatures) } : d.keys;
  }

  /** Unclaimed one-time keys of a device. */
  oneTimeKeyCount(userId: string, deviceId: string): number {
    return this.devices.get(userId)?.get(deviceId)?.oneTimeKeys.size ?? 0;
  }

  /** Merges signatures (signer → key id → signature) into a device's uploaded keys; false without them. */
  signDevice(userId: string, deviceId: string, signatures: Json): boolean {
    const d = this.devices.get(userId)?.get(deviceId);
    if (!d?.keys) return false;
    const all = d.crossSignatures ?? {};
    for (const [signer, sigs] of Object.entries(signatures)) all[signer] = { ...((all[signer] as Json | undefined) ?? {}), ...(sigs as Json) };
    d.crossSignatures = all;
    return true;
  }

  /** The user's device list changed (also for cross-signing keys, matrix-trust.ts). */
  deviceListChanged(userId: string): void {
    this.changed(userId);
  }

  /**
   * Holds back to-device messages to a user (e.g. room keys, to test events whose key comes late)
   * until release(); they are then delivered in the order they were sent.
   */
  hold(userId: string): void {
    this.held.set(userId, this.held.get(userId) ?? []);
  }

  release(userId: string): void {
    const list = this.held.get(userId) ?? [];
    this.held.delete(userId);
    if (!list.length) return;
    const pos = this.host.nextPos();
    for (const m of list) {
      let box = this.inbox.get(m.key);
      if (!box) this.inbox.set(m.key, (box = []));
      box.push({ ...m.message, pos });
    }
  }

  /** Removes a device as DELETE /devices/{id} does. */
  deleteDevice(userId: string, deviceId: string): boolean {
    const list = this.devices.get(userId);
    const had = list?.delete(deviceId) ?? false;
    this.inbox.delete(`${userId}\u0000${deviceId}`);
    this.host.revokeDevice(userId, deviceId);
    if (had) this.changed(userId);
    return had;
  }

  // ---------------------------------------------------------------- /sync

  /** The E2EE parts of a /sync answer for this device since `since` (null: initial sync); acknowledges older to-device messages. */
  syncPart(userId: string, deviceId: string, since: number | null, upTo: number): Json {
    const key = `${userId}\u0000${deviceId}`;
    let box = this.inbox.get(key) ?? [];
    if (since !== null) box = box.filter((m) => m.pos > since);
    if (box.length) this.inbox.set(key, box);
    else this.inbox.delete(key);
    const toDevice = box.filter((m) => m.pos <= upTo).map((m) => ({ type: m.type, sender: m.sender, content: m.content }));
    const changed = new Set<string>();
    const left = new Set<string>();
    if (since !== null) {
      const shared = this.host.sharedUsers(userId);
      for (const c of this.changes) if (c.pos > since && c.pos <= upTo && shared.has(c.userId)) changed.add(c.userId);
      const m = this.host.membershipChangesSince(userId, since);
      for (const u of m.joined) if (u !== userId) changed.add(u);
      for (const u of m.left) if (!shared.has(u)) left.add(u);
    }
    const device = this.devices.get(userId)?.get(deviceId);
    const counts: Record<string, number> = {};
    for (const id of device?.oneTimeKeys.keys() ?? []) {
      const algorithm = id.split(':')[0]!;
      counts[algorithm] = (counts[algorithm] ?? 0) + 1;
    }
    const unusedFallback = [...(device?.fallbackKeys.entries() ?? [])].filter(([, f]) => !f.used).map(([a]) => a);
    return {
      to_device: { events: toDevice },
      device_lists: { changed: [...changed], left: [...left] },
      device_one_time_keys_count: counts,
      device_unused_fallback_key_types: unusedFallback,
    };
  }

  // ---------------------------------------------------------------- endpoints

  defineRoutes(route: KeysRoute, C: string, SEG: string): void {
    route('POST', `${C}/keys/upload`, (ctx) => this.upload(ctx));
    route('POST', `${C}/keys/query`, (ctx) => this.query(ctx));
    route('POST', `${C}/keys/claim`, (ctx) => this.claim(ctx));
    route('PUT', `${C}/sendToDevice/${SEG}/${SEG}`, (ctx, [type, txnId]) => this.sendToDevice(ctx, type!, txnId!));
    route('GET', `${C}/devices`, (ctx) => ({ devices: [...(this.devices.get(ctx.userId)?.values() ?? [])].map((d) => this.deviceInfo(d)) }));
    route('GET', `${C}/devices/${SEG}`, (ctx, [id]) => this.deviceInfo(this.device(ctx.userId, id!)));
    route('PUT', `${C}/devices/${SEG}`, (ctx, [id]) => {
      const d = this.device(ctx.userId, id!);
      if (typeof ctx.body.display_name === 'string') d.displayName = ctx.body.display_name;
      return {};
    });
    route('DELETE', `${C}/devices/${SEG}`, (ctx, [id]) => {
      this.device(ctx.userId, id!);
      this.interactiveAuth(ctx);
      this.deleteDevice(ctx.userId, id!);
      return {};
    });
    route('POST', `${C}/delete_devices`, (ctx) => {
      const ids = Array.isArray(ctx.body.devices) ? (ctx.body.devices as unknown[]).filter((d): d is string => typeof d === 'string') : null;
      if (!ids) throw new KeysHttpError(400, 'M_BAD_JSON', 'devices must be a list of device IDs');
      this.interactiveAuth(ctx);
      for (const id of ids) this.deleteDevice(ctx.userId, id);
      return {};
    });
  }

  private device(userId: string, deviceId: string): FakeDevice {
    const d = this.devices.get(userId)?.get(deviceId);
    if (!d) throw new KeysHttpError(404, 'M_NOT_FOUND', 'Device not found');
    return d;
  }

  private deviceInfo(d: FakeDevice): Json {
    return { device_id: d.deviceId, display_name: d.displayName, last_seen_ts: d.lastSeen };
  }

  /** User-interactive authentication with m.login.password (spec 4.8). */
  interactiveAuth(ctx: KeysCtx): void {
    const auth = ctx.body.auth as Json | undefined;
    const flows = { flows: [{ stages: ['m.login.password'] }], params: {} };
    if (!auth || typeof auth !== 'object') {
      const session = randomBytes(9).toString('base64url');
      this.uiaSessions.add(session);
      throw new KeysHttpError(401, 'M_UNAUTHORIZED', 'Authentication required', { ...flows, session });
    }
    const ident = auth.identifier as Json | undefined;
    const user = typeof ident?.user === 'string' ? ident.user : typeof auth.user === 'string' ? auth.user : ctx.userId;
    const userId = user.startsWith('@') ? user : `@${user}:${this.host.serverName}`;
    if (auth.type !== 'm.login.password' || userId !== ctx.userId || typeof auth.password !== 'string' || !this.host.checkPassword(ctx.userId, auth.password)) {
      throw new KeysHttpError(401, 'M_FORBIDDEN', 'Invalid password', { ...flows, completed: [], ...(typeof auth.session === 'string' ? { session: auth.session } : {}) });
    }
    if (typeof auth.session === 'string') this.uiaSessions.delete(auth.session);
  }

  private changed(userId: string): void {
    this.changes.push({ userId, pos: this.host.nextPos() });
  }

  private upload(ctx: KeysCtx): Json {
    const { userId, deviceId, body } = ctx;
    this.ensureDevice(userId, deviceId);
    const d = this.device(userId, deviceId);
    if (body.device_keys !== undefined) {
      const keys = body.device_keys as Json;
      if (!keys || typeof keys !== 'object' || keys.user_id !== userId || keys.device_id !== deviceId) {
        throw new KeysHttpError(400, 'M_INVALID_PARAM', 'device_keys must name the user and device of the access token');
      }
      if (!Array.isArray(keys.algorithms) || !keys.keys || typeof keys.keys !== 'object' || !keys.signatures || typeof keys.signatures !== 'object') {
        throw new KeysHttpError(400, 'M_BAD_JSON', 'device_keys needs algorithms, keys and signatures');
      }
      if (JSON.stringify(d.keys) !== JSON.stringify(keys)) {
        d.keys = keys;
        this.changed(userId);
      }
    }
    const otks = (body.one_time_keys ?? {}) as Json;
    if (typeof otks !== 'object') throw new KeysHttpError(400, 'M_BAD_JSON', 'one_time_keys must be an object');
    for (const [id, key] of Object.entries(otks)) {
      if (!/^[^:]+:.+$/.test(id)) throw new KeysHttpError(400, 'M_INVALID_PARAM', `one-time key id ${id} is not <algorithm>:<key id>`);
      const known = d.oneTimeKeys.get(id);
      if (known !== undefined && JSON.stringify(known) !== JSON.stringify(key)) {
        throw new KeysHttpError(400, 'M_INVALID_PARAM', `One time key ${id} already exists. Old key: ${JSON.stringify(known)}; new key: ${JSON.stringify(key)}`);
      }
      d.oneTimeKeys.set(id, key);
    }
    const fallback = (body.fallback_keys ?? body['org.matrix.msc2732.fallback_keys'] ?? {}) as Json;
    for (const [id, key] of Object.entries(fallback)) {
      const algorithm = id.split(':')[0]!;
      const cur = d.fallbackKeys.get(algorithm);
      if (cur && cur.id === id && JSON.stringify(cur.key) === JSON.stringify(key)) continue;
      d.fallbackKeys.set(algorithm, { id, key, used: false });
    }
    const counts: Record<string, number> = {};
    for (const id of d.oneTimeKeys.keys()) counts[id.split(':')[0]!] = (counts[id.split(':')[0]!] ?? 0) + 1;
    return { one_time_key_counts: counts };
  }

  private isLocal(userId: string): boolean {
    return userId.slice(userId.indexOf(':') + 1) === this.host.serverName;
  }

  private failure(userId: string, failures: Json): void {
    failures[userId.slice(userId.indexOf(':') + 1)] = { status: 503, message: 'Not ready for retry' };
  }

  private query(ctx: KeysCtx): Json {
    const wanted = ctx.body.device_keys as Record<string, unknown> | undefined;
    if (!wanted || typeof wanted !== 'object') throw new KeysHttpError(400, 'M_BAD_JSON', 'device_keys is required');
    const deviceKeys: Json = {};
    const failures: Json = {};
    for (const [userId, ids] of Object.entries(wanted)) {
      if (!this.isLocal(userId)) {
        this.failure(userId, failures);
        continue;
      }
      const out: Json = {};
      const only = Array.isArray(ids) && ids.length ? new Set(ids.map(String)) : null;
      for (const d of this.devices.get(userId)?.values() ?? []) {
        if (!d.keys || (only && !only.has(d.deviceId))) continue;
        const keys = structuredClone(d.keys);
        if (d.crossSignatures) keys.signatures = mergedSignatures(keys.signatures as Json | undefined, d.crossSignatures);
        if (d.displayName) keys.unsigned = { ...((keys.unsigned as Json | undefined) ?? {}), device_display_name: d.displayName };
        out[d.deviceId] = keys;
      }
      deviceKeys[userId] = out;
    }
    const cross = this.crossSigningPart?.(ctx.userId, Object.keys(deviceKeys)) ?? { master_keys: {}, self_signing_keys: {}, user_signing_keys: {} };
    return { device_keys: deviceKeys, failures, ...cross };
  }

  private claim(ctx: KeysCtx): Json {
    const wanted = ctx.body.one_time_keys as Record<string, Record<string, string>> | undefined;
    if (!wanted || typeof wanted !== 'object') throw new KeysHttpError(400, 'M_BAD_JSON', 'one_time_keys is required');
    const result: Json = {};
    const failures: Json = {};
    for (const [userId, devices] of Object.entries(wanted)) {
      if (!this.isLocal(userId)) {
        this.failure(userId, failures);
        continue;
      }
      const out: Json = {};
      for (const [deviceId, algorithm] of Object.entries(devices ?? {})) {
        const d = this.devices.get(userId)?.get(deviceId);
        if (!d) continue;
        const id = [...d.oneTimeKeys.keys()].find((k) => k.startsWith(`${algorithm}:`));
        if (id) {
          out[deviceId] = { [id]: d.oneTimeKeys.get(id) };
          d.oneTimeKeys.delete(id);
          this.claims.push({ userId, deviceId, algorithm, fallback: false });
          continue;
        }
        const fb = d.fallbackKeys.get(algorithm);
        if (fb) {
          fb.used = true;
          out[deviceId] = { [fb.id]: fb.key };
          this.claims.push({ userId, deviceId, algorithm, fallback: true });
        }
      }
      result[userId] = out;
    }
    return { one_time_keys: result, failures };
  }

  private sendToDevice(ctx: KeysCtx, type: string, txnId: string): Json {
    const txn = `${ctx.userId}\u0000${ctx.deviceId}\u0000${txnId}`;
    if (this.toDeviceTxns.has(txn)) return {};
    const messages = ctx.body.messages as Record<string, Record<string, Json>> | undefined;
    if (!messages || typeof messages !== 'object') throw new KeysHttpError(400, 'M_BAD_JSON', 'messages is required');
    this.toDeviceTxns.add(txn);
    let pos: number | null = null;
    for (const [userId, byDevice] of Object.entries(messages)) {
      if (!this.host.userExists(userId)) continue;
      for (const [deviceId, content] of Object.entries(byDevice ?? {})) {
        const targets = deviceId === '*' ? this.deviceIds(userId) : this.devices.get(userId)?.has(deviceId) ? [deviceId] : [];
        for (const target of targets) {
          const key = `${userId}\u0000${target}`;
          const heldFor = this.held.get(userId);
          if (heldFor) {
            heldFor.push({ key, message: { pos: 0, type, sender: ctx.userId, content: (content ?? {}) as Json } });
            this.toDeviceLog.push({ type, sender: ctx.userId, userId, deviceId: target });
            continue;
          }
          pos ??= this.host.nextPos();
          let box = this.inbox.get(key);
          if (!box) this.inbox.set(key, (box = []));
          box.push({ pos, type, sender: ctx.userId, content: (content ?? {}) as Json });
          this.toDeviceLog.push({ type, sender: ctx.userId, userId, deviceId: target });
        }
      }
    }
    return {};
  }
}

/** Signatures (signer → key id → signature) of a device's own upload with those uploaded later. */
function mergedSignatures(own: Json | undefined, extra: Json): Json {
  const out: Json = { ...(own ?? {}) };
  for (const [signer, sigs] of Object.entries(extra)) out[signer] = { ...((out[signer] as Json | undefined) ?? {}), ...(sigs as Json) };
  return out;
}
