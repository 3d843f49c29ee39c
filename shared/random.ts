/**
 * Random identifiers (stream ids, SCRAM nonces, connection ids) from a pooled buffer of
 * cryptographically secure bytes: one randomFillSync per 4 KiB instead of one call per id, which
 * shows in the login path. Each byte is handed out once. (Node does the same for randomUUID.)
 */
import { randomFillSync } from 'node:crypto';

const POOL_SIZE = 4096;
const pool = Buffer.alloc(POOL_SIZE);
let offset = POOL_SIZE;

function take(n: number): Buffer {
  if (n > POOL_SIZE) return randomFillSync(Buffer.alloc(n));
  if (offset + n > POOL_SIZE) {
    randomFillSync(pool);
    offset = 0;
  }
  const out = Buffer.from(pool.subarray(offset, offset + n));
  pool.fill(0, offset, offset + n);
  offset += n;
  return out;
}

export function randomHex(bytes: number): string {
  return take(bytes).toString('hex');
}

export function randomBase64(bytes: number): string {
  return take(bytes).toString('base64');
}
