/**
 * How the gateway runs matrix-js-sdk: silenced, with bounded request timeouts, retrying only
 * rate-limited sends, and stopped for good when a session ends.
 */
import * as sdk from 'matrix-js-sdk';
import { logger as sdkLogger } from 'matrix-js-sdk/lib/logger.js';
import { errcodeOf, httpStatusOf } from './errors.js';

// The SDK logs every request URL, sync detail and error object to the console; none of that may
// reach the gateway's output (it names rooms and users, and error objects can hold content).
export const quiet = {
  trace: () => undefined,
  debug: () => undefined,
  info: () => undefined,
  warn: () => undefined,
  error: () => undefined,
  log: () => undefined,
  getChild: () => quiet,
};
(sdkLogger as unknown as { setLevel(level: string, persist?: boolean): void }).setLevel('silent', false);
// Child loggers (the crypto's per-room "[!room encryption]" ones) are set to debug level when they
// are made, but take their parent's method factory: one that writes nothing.
{
  const root = sdkLogger as unknown as { methodFactory: unknown; rebuild?: () => void };
  root.methodFactory = () => () => undefined;
  root.rebuild?.();
}

/** Retry only rate-limited sends (429), a few times; anything else fails at once and the kit reports it. */
export function retryRateLimited(_event: unknown, attempts: number, err: unknown): number {
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
  return async (input, init) => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const method = (init?.method ?? 'GET').toUpperCase();
    // Event sends are retried by the SDK's scheduler (retryRateLimited); every other request here.
    const scheduled = method === 'PUT' && /\/rooms\/[^/]+\/(send|redact)\//.test(url);
    for (let attempt = 0; ; attempt++) {
      const timeout = AbortSignal.timeout(/\/sync(\?|$)/.test(url) ? longPollMs : requestTimeoutMs);
      const signal = init?.signal ? AbortSignal.any([init.signal, timeout]) : timeout;
      const res = await fetch(input, { ...init, signal });
      if (res.status !== 429 || scheduled || attempt >= RATE_LIMIT_RETRIES) return res;
      const wait = await retryAfterMs(res);
      if (wait === null || wait > MAX_RATE_LIMIT_WAIT_MS) return res;
      await res.body?.cancel().catch(() => undefined);
      await new Promise<void>((resolve) => setTimeout(resolve, wait).unref());
      init?.signal?.throwIfAborted();
    }
  };
}

/** How often a rate-limited request (429) is repeated, and the longest wait the gateway accepts. */
const RATE_LIMIT_RETRIES = 3;
const MAX_RATE_LIMIT_WAIT_MS = 30_000;

/**
 * How long a 429 answer asks the client to wait: the body's `retry_after_ms` (spec), else the
 * Retry-After header (seconds or an HTTP date), else one second.
 */
export async function retryAfterMs(res: Response): Promise<number | null> {
  let body: unknown = null;
  try {
    body = await res.clone().json();
  } catch {
    // not JSON: the header decides
  }
  const ms = (body as { retry_after_ms?: unknown } | null)?.retry_after_ms;
  if (typeof ms === 'number' && Number.isFinite(ms) && ms >= 0) return ms;
  const header = res.headers.get('retry-after');
  if (header) {
    if (/^\d+$/.test(header.trim())) return Number(header.trim()) * 1000;
    const at = Date.parse(header);
    if (!Number.isNaN(at)) return Math.max(0, at - Date.now());
    return null;
  }
  return 1000;
}

/**
 * The SDK gives requests local timeouts (/sync: poll timeout + 80 s, keep-alive probes 15 s) with
 * timers it never clears, which hold a stopped session's process open; timedFetch bounds every
 * request instead.
 */
export function withoutSdkTimers(client: sdk.MatrixClient): void {
  // The capabilities poll (every 6 hours) re-arms itself when a request ends, also after the
  // client stopped: its timers must not hold the process.
  const caps = (client as unknown as { serverCapabilitiesService?: { poll?: () => Promise<void>; refreshTimeout?: NodeJS.Timeout; retryTimeout?: NodeJS.Timeout } }).serverCapabilitiesService;
  const poll = caps?.poll;
  if (caps && typeof poll === 'function') {
    caps.poll = async () => {
      await poll();
      caps.refreshTimeout?.unref?.();
      caps.retryTimeout?.unref?.();
    };
  }
  const http = client.http as unknown as { requestOtherUrl?: (method: unknown, url: unknown, body: unknown, opts?: Record<string, unknown>) => unknown };
  const original = http.requestOtherUrl;
  if (typeof original !== 'function') return;
  http.requestOtherUrl = function (this: unknown, method: unknown, url: unknown, body: unknown, opts?: Record<string, unknown>) {
    return original.call(this, method, url, body, opts ? { ...opts, localTimeoutMs: undefined } : opts);
  };
}

/**
 * Stops a client for good, around three races in the SDK:
 * - a sync request started around the stop (the first one of a session is started before the
 *   stored sync is read, and the loop goes on to start it even when the client stopped meanwhile)
 *   is never awaited: its abort would be an unhandled rejection;
 * - a keep-alive probe still running when the sync loop stops re-arms its retry timer (up to 10 s)
 *   once it fails;
 * - startClient() stopped while it waits for /versions goes on afterwards: it starts a new sync
 *   loop and the capabilities poll, whose next round is a 6-hour timer that keeps the process alive.
 * The sweep stops whatever appears in the two seconds after the stop.
 */
export function stopClient(client: sdk.MatrixClient): void {
  const internals = client as unknown as SdkInternals;
  const api = internals.syncApi;
  if (api) quietSyncRequests(api);
  // A failed probe re-arms itself (every 5 to 10 s, also after the stop, its request aborted): no more probes.
  if (api) api.pokeKeepAlive = () => undefined;
  try {
    client.stopClient();
  } catch {
    // already stopped
  }
  let rounds = 0;
  const sweep = setInterval(() => {
    if (api?.keepAliveTimer) clearTimeout(api.keepAliveTimer);
    const late = internals.syncApi;
    if (late) {
      quietSyncRequests(late);
      late.stop?.();
      internals.syncApi = undefined;
    }
    internals.serverCapabilitiesService?.stop();
    internals.toDeviceMessageQueue?.stop();
    if (++rounds >= 40) clearInterval(sweep);
  }, 50);
  sweep.unref();
}

/** Sync requests of a stopping loop: their failure still reaches the SDK where it waits for them, and is no unhandled rejection where it does not. */
function quietSyncRequests(api: SyncInternals): void {
  api.currentSyncRequest?.catch(() => undefined);
  const original = api.doSyncRequest;
  if (typeof original !== 'function') return;
  api.doSyncRequest = function (this: SyncInternals, ...args: unknown[]) {
    const request = original.apply(this, args);
    request.catch(() => undefined);
    return request;
  };
}

interface SyncInternals {
  keepAliveTimer?: NodeJS.Timeout;
  pokeKeepAlive?: unknown;
  currentSyncRequest?: Promise<unknown>;
  doSyncRequest?(...args: unknown[]): Promise<unknown>;
  stop?(): void;
}

/** The parts of a MatrixClient that stopClient reaches into (not the SDK's public API). */
interface SdkInternals {
  syncApi?: SyncInternals;
  serverCapabilitiesService?: { stop(): void };
  toDeviceMessageQueue?: { stop(): void };
}

/** Events kept per room in the SDK's timeline. */
export const TIMELINE_KEEP = 200;

/** A Map that forgets its oldest entries beyond `max`. */
export class BoundedMap<K, V> extends Map<K, V> {
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
