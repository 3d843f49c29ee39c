/**
 * End-to-end encryption of one Matrix session: matrix-js-sdk's Rust crypto (initRustCrypto, the
 * @matrix-org/matrix-sdk-crypto-wasm that ships with the SDK) on an in-memory IndexedDB of the
 * session's own (crypto-store.ts), whose content the kit keeps sealed with the vault's key.
 *
 * Lifecycle (the handle other features build on, e.g. cross-signing, secret storage, key backup
 * and interactive verification, which use `api`, the SDK's CryptoApi of this session's client):
 * - start(): before the first sync. The stored snapshot (LoginRequest.secretState) is written into
 *   a fresh in-memory IndexedDB, then initRustCrypto opens it: the same device keys, Olm sessions
 *   and room keys as before the restart, on the same device ID. Without a snapshot (first login,
 *   or a new device after a password login) the Rust crypto makes a new device identity and
 *   uploads its keys with the first sync.
 * - every completed write of the crypto to its store schedules a snapshot (after SAVE_DELAY_MS,
 *   one at a time); a snapshot that differs from the last one goes to `onChange` (the session
 *   emits it as 'secretState', the kit stores it at once).
 * - flush(): the latest snapshot with any pending write included (the kit calls it through
 *   LegacySession.secretState() after logout and when the connection is lost).
 * - stop(): no more snapshots (the client's stopClient() stops the Rust crypto itself).
 *
 * The Rust crypto logs through `tracing` to the console at debug level (user IDs, device IDs,
 * room IDs), which initRustCrypto turns on: its lines are dropped while it starts, and tracing is
 * turned off right after (withoutRustLogs).
 */
import { createHash } from 'node:crypto';
import * as sdk from 'matrix-js-sdk';
import { isVerificationEvent } from 'matrix-js-sdk/lib/rust-crypto/verification.js';
import type { CryptoApi } from 'matrix-js-sdk/lib/crypto-api/index.js';
import type { AdapterLogger } from '../kit/adapter.js';
import { newFactory, restore, snapshot, watchWrites, withIndexedDB } from './crypto-store.js';
import { describe } from './errors.js';

/** How long after a write of the crypto store a snapshot is taken (writes come in bursts). */
const SAVE_DELAY_MS = 250;

export interface MatrixCryptoOptions {
  /** Share room keys with devices nobody verified (Element's default); false: verified devices only. */
  shareWithUnverified: boolean;
  /** A new snapshot of the store (to keep sealed). */
  onChange(data: Uint8Array): void;
  log: AdapterLogger;
  host: string;
}

export class MatrixCrypto {
  private timer: NodeJS.Timeout | null = null;
  private saving: Promise<void> | null = null;
  private pending = false;
  private latest: Buffer | null = null;
  private digest = '';
  private stopped = false;
  private readonly owner: { userId: string; deviceId: string };

  private constructor(
    private readonly client: sdk.MatrixClient,
    private readonly factory: IDBFactory,
    private readonly opts: MatrixCryptoOptions,
  ) {
    this.owner = { userId: client.getSafeUserId(), deviceId: client.getDeviceId()! };
  }

  /** Sets up the Rust crypto on `client` (not started yet) from the stored snapshot, if any. */
  static async start(client: sdk.MatrixClient, stored: Uint8Array | undefined, opts: MatrixCryptoOptions): Promise<MatrixCrypto> {
    const factory = newFactory();
    const crypto = new MatrixCrypto(client, factory, opts);
    if (stored?.length) {
      const outcome = await restore(factory, stored, crypto.owner);
      if (outcome === 'other-device') opts.log.info('matrix encryption store of another device not used; this device starts a new one', { homeserver: opts.host });
      else if (outcome === 'unreadable') opts.log.warn('matrix encryption store not readable; this device starts a new one', { homeserver: opts.host });
      else crypto.latest = Buffer.from(stored);
    }
    watchWrites(factory, () => crypto.changed());
    await withIndexedDB(factory, () => withoutRustLogs(() => client.initRustCrypto({})));
    unrefLiveEventTimers(client);
    const api = client.getCrypto()!;
    api.globalBlacklistUnverifiedDevices = !opts.shareWithUnverified;
    await crypto.save();
    return crypto;
  }

  /** The SDK's crypto API of this session (device keys, trust, verification, key backup). */
  get api(): CryptoApi {
    return this.client.getCrypto()!;
  }

  /** The latest snapshot with every write so far included; null before there is one. */
  async flush(): Promise<Buffer | null> {
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.pending = true;
    }
    while (this.saving || this.pending) {
      if (!this.saving) this.saving = this.run();
      await this.saving;
    }
    return this.latest;
  }

  /** No more snapshots on its own (flush() still takes the last one, pending writes included). */
  stop(): void {
    this.stopped = true;
    if (this.timer) {
      clearTimeout(this.timer);
      this.timer = null;
      this.pending = true;
    }
  }

  private changed(): void {
    if (this.timer || this.stopped) return;
    this.timer = setTimeout(() => {
      this.timer = null;
      void this.save();
    }, SAVE_DELAY_MS);
    this.timer.unref();
  }

  private save(): Promise<void> {
    this.pending = true;
    this.saving ??= this.run();
    return this.saving;
  }

  private async run(): Promise<void> {
    try {
      while (this.pending) {
        this.pending = false;
        let data: Buffer;
        try {
          data = await snapshot(this.factory, this.owner);
        } catch (err) {
          this.opts.log.warn('matrix encryption store could not be read for saving', { homeserver: this.opts.host, reason: describe(err) });
          return;
        }
        const digest = createHash('sha256').update(data.subarray(8)).digest('hex');
        if (digest === this.digest) continue;
        this.digest = digest;
        this.latest = data;
        if (!this.stopped) this.opts.onChange(data);
      }
    } finally {
      this.saving = null;
    }
  }
}

/**
 * The SDK's crypto waits for the decryption of every live encrypted event (in-room verification
 * requests may be inside) with a 5-minute timer that it does not clear when the event was
 * decrypted before it started waiting, which holds a stopping process. The same waiting, with a
 * timer that does not hold the process.
 */
export function unrefLiveEventTimers(client: sdk.MatrixClient): void {
  const backend = client.getCrypto() as unknown as { onLiveEventFromSync?: unknown; onKeyVerificationEvent?: (ev: sdk.MatrixEvent) => Promise<void> } | undefined;
  if (!backend || typeof backend.onLiveEventFromSync !== 'function' || typeof backend.onKeyVerificationEvent !== 'function') return;
  const verification = backend.onKeyVerificationEvent.bind(backend);
  const handle = (ev: sdk.MatrixEvent) => (isVerificationEvent(ev) ? verification(ev) : undefined);
  backend.onLiveEventFromSync = async (event: sdk.MatrixEvent): Promise<void> => {
    if (event.isState() || event.getUnsigned().transaction_id) return;
    if (!event.isEncrypted() && !event.isDecryptionFailure()) return handle(event);
    const onDecrypted = (decrypted: sdk.MatrixEvent, err?: Error) => {
      if (err) return;
      clearTimeout(timer);
      event.off(sdk.MatrixEventEvent.Decrypted, onDecrypted);
      void handle(decrypted);
    };
    const timer = setTimeout(() => event.off(sdk.MatrixEventEvent.Decrypted, onDecrypted), 5 * 60_000);
    timer.unref();
    event.on(sdk.MatrixEventEvent.Decrypted, onDecrypted);
  };
}

interface RustTracing {
  Tracing: new (level: number) => { turnOff(): void };
  LoggerLevel: { Error: number };
}

/** The wasm module the SDK uses (a dependency of matrix-js-sdk, loaded by the SDK anyway). */
async function rustModule(): Promise<RustTracing | null> {
  const specifier: string = '@matrix-org/matrix-sdk-crypto-wasm';
  try {
    return (await import(specifier)) as RustTracing;
  } catch {
    return null;
  }
}

/** Rust tracing lines look like "DEBUG matrix_sdk_crypto::machine: ..." */
const RUST_LINE = /^(TRACE|DEBUG|INFO|WARN|ERROR) [a-z0-9_]+(::[a-z0-9_]+)*: /;
const LEVELS = ['trace', 'debug', 'info', 'log', 'warn', 'error'] as const;

/**
 * Runs `fn` (which sets up a Rust crypto: initRustCrypto turns the crypto's tracing on at debug
 * level, printing user, device and room IDs to the console) with the crypto's console lines
 * dropped, then turns tracing off again. Other console output passes; the console's methods are
 * the same as before afterwards.
 */
export async function withoutRustLogs<T>(fn: () => Promise<T>): Promise<T> {
  const c = console as unknown as Record<string, (...args: unknown[]) => void>;
  const before = LEVELS.map((level) => [level, c[level]!] as const);
  for (const [level, original] of before) {
    c[level] = (...args: unknown[]) => {
      if (typeof args[0] === 'string' && RUST_LINE.test(args[0])) return;
      original.apply(console, args);
    };
  }
  try {
    return await fn();
  } finally {
    await turnRustTracingOff();
    for (const [level, original] of before) c[level] = original;
  }
}

async function turnRustTracingOff(): Promise<void> {
  const rust = await rustModule();
  try {
    if (rust) new rust.Tracing(rust.LoggerLevel.Error).turnOff();
  } catch {
    // an older wasm without tracing: nothing to turn off
  }
}
