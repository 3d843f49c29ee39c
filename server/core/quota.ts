/**
 * Per-account storage quotas, in items and in bytes, for every module that stores data on a
 * user's behalf (offline messages, private XML, later PEP). A module asks its repository for the
 * account's usage, adds what it is about to store and asks `checkQuota`; a refusal carries a
 * text for the stanza error that says which limit was reached (never what was stored).
 *
 * Bytes are UTF-8 bytes of the stored text: what `xmlBytes` counts here is what the repositories
 * sum with OCTET_LENGTH on SQLite, MariaDB and PostgreSQL alike.
 *
 * A check and the write it allows must not interleave with another write for the same account,
 * or two writes could each fit alone and overrun the quota together: run both inside one
 * `KeyedSerial.run(account, ...)`.
 */
import { formatSizeLimit } from '../../shared/format.js';

export interface QuotaUsage {
  items: number;
  bytes: number;
}

export interface QuotaLimits {
  /** Most items; undefined = no item limit. */
  maxItems?: number;
  /** Most bytes; undefined = no byte limit. */
  maxBytes?: number;
}

export type QuotaVerdict = { ok: true } | { ok: false; exceeded: 'items' | 'bytes'; text: string };

/** UTF-8 bytes of a stored text. */
export function xmlBytes(text: string): number {
  return Buffer.byteLength(text, 'utf8');
}

/** Whether `usage` plus `adding` stays within `limits`; `what` names the store in the refusal text. */
export function checkQuota(usage: QuotaUsage, adding: QuotaUsage, limits: QuotaLimits, what: string): QuotaVerdict {
  if (limits.maxItems !== undefined && adding.items > 0 && usage.items + adding.items > limits.maxItems) {
    return { ok: false, exceeded: 'items', text: `${what} is full (at most ${limits.maxItems} items)` };
  }
  if (limits.maxBytes !== undefined && adding.bytes > 0 && usage.bytes + adding.bytes > limits.maxBytes) {
    return { ok: false, exceeded: 'bytes', text: `${what} is full (at most ${formatSizeLimit(limits.maxBytes)})` };
  }
  return { ok: true };
}

/** Runs async tasks one at a time per key (an account), in order; other keys run concurrently. */
export class KeyedSerial<K> {
  private readonly tails = new Map<K, Promise<unknown>>();

  run<T>(key: K, fn: () => Promise<T>): Promise<T> {
    const run = (this.tails.get(key) ?? Promise.resolve()).then(fn, fn);
    const tail = run.then(
      () => {},
      () => {},
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return run;
  }
}
