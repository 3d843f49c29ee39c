/**
 * SCRAM primitives (RFC 5802, RFC 7677) and SASLprep (RFC 4013).
 *
 * Passwords are never stored, only SCRAM verifiers per hash (P2). Nothing in this module logs, and
 * no error it throws contains a password or anything derived from one.
 *
 * SASLprep, practical subset. Implemented, in RFC 4013 order:
 *  - mapping: non-ASCII space characters (RFC 3454 C.1.2) map to U+0020; characters "commonly
 *    mapped to nothing" (B.1) are removed;
 *  - normalisation: Unicode NFKC (with the Unicode version of the running Node, not 3.2);
 *  - prohibited output: C.1.2 non-ASCII spaces, C.2.1/C.2.2 control characters, C.3 private use,
 *    C.4 non-characters, C.5 surrogates, C.6 inappropriate for plain text, C.7 inappropriate for
 *    canonical representation, C.8 change display properties / deprecated, C.9 tagging characters;
 *  - unassigned code points: allowed for queries (the default), rejected for stored strings
 *    (`allowUnassigned: false`, used by makeVerifier). "Unassigned" means unassigned in the running
 *    Node's Unicode version, which is a superset of Unicode 3.2's assignments.
 * Not implemented: the bidirectional-text checks of RFC 3454 section 6 (RandALCat/LCat rules).
 */
import { createHash, createHmac, pbkdf2, pbkdf2Sync, randomBytes, timingSafeEqual } from 'node:crypto';
import { promisify } from 'node:util';
import type { ScramVerifier } from '../../storage/types.js';

export type ScramHash = ScramVerifier['hash'];

/** Lowest iteration count makeVerifier accepts (RFC 7677 section 4: at least 4096). */
export const MIN_ITERATIONS = 4096;
/**
 * Highest iteration count a stored verifier may have to be used at login. PBKDF2 with more would
 * hold a worker thread (and the login) for seconds or far longer: such a verifier, from an import
 * for instance, is refused, not computed.
 */
export const MAX_ITERATIONS = 10_000_000;

/** True if a stored verifier's iteration count is within MIN_ITERATIONS..MAX_ITERATIONS. */
export function iterationsUsable(iterations: number): boolean {
  return Number.isSafeInteger(iterations) && iterations >= MIN_ITERATIONS && iterations <= MAX_ITERATIONS;
}

/** Salt length, in bytes, of verifiers made without an explicit salt. */
export const DEFAULT_SALT_BYTES = 16;

const NODE_HASH: Record<ScramHash, string> = { 'SHA-1': 'sha1', 'SHA-256': 'sha256' };
const HASH_BYTES: Record<ScramHash, number> = { 'SHA-1': 20, 'SHA-256': 32 };

const pbkdf2Async = promisify(pbkdf2);

function nodeHash(hash: ScramHash): string {
  const name = Object.hasOwn(NODE_HASH, hash) ? NODE_HASH[hash] : undefined;
  if (!name) throw new TypeError('unsupported SCRAM hash');
  return name;
}

/** Output length in bytes of the hash. */
export function hashLength(hash: ScramHash): number {
  nodeHash(hash);
  return HASH_BYTES[hash];
}

/** H(data). */
export function h(hash: ScramHash, data: Buffer | string): Buffer {
  return createHash(nodeHash(hash)).update(data).digest();
}

/** HMAC(key, data). */
export function hmac(hash: ScramHash, key: Buffer, data: Buffer | string): Buffer {
  return createHmac(nodeHash(hash), key).update(data).digest();
}

/** Hi(str, salt, i): PBKDF2 with HMAC-H as PRF and dkLen = output length of H (RFC 5802 section 2.2). */
export function hi(hash: ScramHash, str: Buffer | string, salt: Buffer, iterations: number): Buffer {
  return pbkdf2Sync(str, salt, iterations, hashLength(hash), nodeHash(hash));
}

/** Hi() without blocking the event loop. */
export function hiAsync(hash: ScramHash, str: Buffer | string, salt: Buffer, iterations: number): Promise<Buffer> {
  return pbkdf2Async(str, salt, iterations, hashLength(hash), nodeHash(hash));
}

/** Byte-wise exclusive or of two buffers of equal length. */
export function xor(a: Buffer, b: Buffer): Buffer {
  if (a.length !== b.length) throw new RangeError('xor operands differ in length');
  const out = Buffer.allocUnsafe(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i]! ^ b[i]!;
  return out;
}

/** Escapes a name for SCRAM's saslname syntax: ',' -> '=2C', '=' -> '=3D'. */
export function escapeSaslName(name: string): string {
  return name.replace(/[=,]/g, (c) => (c === '=' ? '=3D' : '=2C'));
}

/** Reverses escapeSaslName; null if the input is not a valid (possibly empty) saslname. */
export function unescapeSaslName(value: string): string | null {
  if (/,|=(?!2C|3D)/.test(value)) return null;
  return value.replace(/=2C|=3D/g, (m) => (m === '=2C' ? ',' : '='));
}

export class SaslPrepError extends Error {
  /** Never includes the offending string: it may be a password. */
  constructor(readonly reason: 'prohibited' | 'unassigned' | 'empty') {
    super(`SASLprep: ${reason === 'empty' ? 'empty string' : `${reason} character`}`);
    this.name = 'SaslPrepError';
  }
}

/** C.1.2 non-ASCII space characters. */
const NON_ASCII_SPACE = /[\u00A0\u1680\u2000-\u200B\u202F\u205F\u3000]/gu;
/** B.1 commonly mapped to nothing. */
const MAPPED_TO_NOTHING = /[\u00AD\u034F\u1806\u180B-\u180D\u200B-\u200D\u2060\uFE00-\uFE0F\uFEFF]/gu;
/** C.1.2, C.2.1, C.2.2, C.3, C.4, C.5, C.6, C.7, C.8, C.9 (see the module comment). */
const PROHIBITED = new RegExp(
  '[' +
    '\\u0000-\\u001F\\u007F-\\u00A0' + // C.2.1, C.2.2 (0080-009F), C.1.2 (00A0)
    '\\u0340\\u0341\\u06DD\\u070F\\u1680\\u180E' + // C.8, C.2.2, C.1.2, C.2.2
    '\\u2000-\\u200F\\u2028-\\u202F\\u205F-\\u2063\\u206A-\\u206F' + // C.1.2, C.2.2, C.8
    '\\u2FF0-\\u2FFB\\u3000' + // C.7, C.1.2
    '\\uD800-\\uDFFF\\uE000-\\uF8FF\\uFEFF\\uFFF9-\\uFFFD' + // C.5, C.3, C.2.2, C.2.2/C.6
    '\\u{1D173}-\\u{1D17A}\\u{E0001}\\u{E0020}-\\u{E007F}\\u{F0000}-\\u{10FFFF}' + // C.2.2, C.9, C.3
    ']|\\p{Noncharacter_Code_Point}', // C.4
  'u',
);
const UNASSIGNED = /\p{Cn}/u;

/**
 * SASLprep (RFC 4013), the subset described in the module comment. Throws SaslPrepError.
 * `allowUnassigned` is true for queries (default) and must be false for stored strings.
 */
export function saslPrep(input: string, opts: { allowUnassigned?: boolean } = {}): string {
  const mapped = input.replace(NON_ASCII_SPACE, ' ').replace(MAPPED_TO_NOTHING, '');
  const normalised = mapped.normalize('NFKC');
  if (PROHIBITED.test(normalised)) throw new SaslPrepError('prohibited');
  if (opts.allowUnassigned === false && UNASSIGNED.test(normalised)) throw new SaslPrepError('unassigned');
  return normalised;
}

/** ClientKey, StoredKey and ServerKey from a SaltedPassword. */
function keysFromSalted(hash: ScramHash, salted: Buffer): { storedKey: Buffer; serverKey: Buffer } {
  const clientKey = hmac(hash, salted, 'Client Key');
  const storedKey = h(hash, clientKey);
  const serverKey = hmac(hash, salted, 'Server Key');
  clientKey.fill(0);
  return { storedKey, serverKey };
}

function checkParams(hash: ScramHash, iterations: number, salt: Buffer): void {
  nodeHash(hash);
  if (!Number.isSafeInteger(iterations) || iterations < MIN_ITERATIONS) {
    throw new RangeError(`SCRAM iteration count must be an integer >= ${MIN_ITERATIONS}`);
  }
  if (!Buffer.isBuffer(salt) || salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
}

/**
 * Makes the SCRAM verifier for `password` (SASLprep'd as a stored string). The password itself is
 * not kept. Throws SaslPrepError for an unusable password and RangeError for bad parameters.
 */
export function makeVerifier(
  password: string,
  hash: ScramHash,
  iterations: number,
  salt: Buffer = randomBytes(DEFAULT_SALT_BYTES),
): ScramVerifier {
  checkParams(hash, iterations, salt);
  const prepared = saslPrep(password, { allowUnassigned: false });
  if (prepared.length === 0) throw new SaslPrepError('empty');
  const salted = hi(hash, prepared, salt, iterations);
  const keys = keysFromSalted(hash, salted);
  salted.fill(0);
  return { hash, salt: Buffer.from(salt), iterations, ...keys };
}

function storedKeyMatches(candidate: Buffer, verifier: ScramVerifier): boolean {
  const stored = verifier.storedKey;
  return candidate.length === stored.length && timingSafeEqual(candidate, stored);
}

function prepareQuery(password: string): string | null {
  try {
    const prepared = saslPrep(password);
    return prepared.length > 0 ? prepared : null;
  } catch {
    return null;
  }
}

/**
 * True if `password` (SASLprep'd as a query) matches the verifier; compares StoredKey in constant
 * time. False without any key derivation for a verifier whose iteration count is not usable.
 */
export function verifyPlain(password: string, verifier: ScramVerifier): boolean {
  const prepared = prepareQuery(password);
  if (prepared === null || !iterationsUsable(verifier.iterations) || verifier.salt.length === 0) return false;
  const salted = hi(verifier.hash, prepared, verifier.salt, verifier.iterations);
  const { storedKey } = keysFromSalted(verifier.hash, salted);
  salted.fill(0);
  return storedKeyMatches(storedKey, verifier);
}

/** verifyPlain() without blocking the event loop during the key derivation. */
export async function verifyPlainAsync(password: string, verifier: ScramVerifier): Promise<boolean> {
  const prepared = prepareQuery(password);
  if (prepared === null || !iterationsUsable(verifier.iterations) || verifier.salt.length === 0) return false;
  const salted = await hiAsync(verifier.hash, prepared, verifier.salt, verifier.iterations);
  const { storedKey } = keysFromSalted(verifier.hash, salted);
  salted.fill(0);
  return storedKeyMatches(storedKey, verifier);
}
