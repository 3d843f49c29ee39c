/**
 * Server Dialback keys (XEP-0220, generated as XEP-0185 recommends):
 *
 *   key = hex( HMAC-SHA256( hex(SHA-256(secret)), receiving + ' ' + originating + ' ' + streamId ) )
 *
 * The receiving server is the domain the key is presented to, the originating server the domain
 * that claims its identity, and the stream id the one the receiving server assigned to the stream
 * the key travels on. Prosody, ejabberd and Openfire compute the same value, so a key made here is
 * also checked correctly by them when they act as authoritative server for us (they never do: only
 * the server that made a key checks it, but the shape is the standard one).
 *
 * The secret is random per server start: a key only has to be verifiable while the stream it was
 * sent on is being authenticated.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

export function newDialbackSecret(): string {
  return randomBytes(32).toString('hex');
}

export function dialbackKey(secret: string, receiving: string, originating: string, streamId: string): string {
  const hmacKey = createHash('sha256').update(secret, 'utf8').digest('hex');
  return createHmac('sha256', hmacKey).update(`${receiving} ${originating} ${streamId}`, 'utf8').digest('hex');
}

/** Whether `key` is the one this server made for these inputs; constant time in the key. */
export function isValidDialbackKey(secret: string, receiving: string, originating: string, streamId: string, key: string): boolean {
  const expected = Buffer.from(dialbackKey(secret, receiving, originating, streamId), 'utf8');
  const given = Buffer.from(key.trim(), 'utf8');
  if (given.length !== expected.length) {
    timingSafeEqual(expected, expected);
    return false;
  }
  return timingSafeEqual(expected, given);
}
