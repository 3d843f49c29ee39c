/**
 * Encrypted attachments (Matrix spec v1.11, "Sending encrypted attachments"): in encrypted rooms a
 * file is AES-256-CTR encrypted with a fresh key before it is uploaded, and the event carries an
 * EncryptedFile instead of `url`: { v: 'v2', url, key: JWK (kty oct, alg A256CTR, k base64url),
 * iv (16 bytes, the low 64 bits zero), hashes: { sha256 of the ciphertext } }.
 *
 * Both directions are streams: decryptingStream() checks the SHA-256 of what it read and only
 * releases the last piece of plaintext when it matches (a file that does not match never reaches
 * the upload service whole: the upload fails); encryptingStream() hashes the ciphertext on its way
 * to the homeserver, and encryptedFile() gives the EncryptedFile once it has all passed.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, type Hash } from 'node:crypto';
import { Transform, type TransformCallback } from 'node:stream';

type Json = Record<string, unknown>;

/** What an EncryptedFile says, checked. */
export interface EncryptedFileInfo {
  key: Buffer;
  iv: Buffer;
  sha256: Buffer;
}

/** Unpadded (or padded) base64 / base64url text as bytes, or null. */
function bytes(text: unknown): Buffer | null {
  if (typeof text !== 'string' || !/^[A-Za-z0-9+/_-]+={0,2}$/.test(text)) return null;
  return Buffer.from(text.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
}

const unpadded = (b: Buffer) => b.toString('base64').replace(/=+$/, '');

/** The key, IV and hash of an EncryptedFile (`file` of a media event), or null when it is not one this gateway can decrypt. */
export function encryptedFileInfo(file: unknown): { url: string; info: EncryptedFileInfo } | null {
  if (!file || typeof file !== 'object') return null;
  const f = file as Json;
  const jwk = f.key as Json | undefined;
  if (typeof f.url !== 'string' || !jwk || typeof jwk !== 'object') return null;
  if (jwk.kty !== 'oct' || jwk.alg !== 'A256CTR') return null;
  const key = bytes(jwk.k);
  const iv = bytes(f.iv);
  const sha256 = bytes((f.hashes as Json | undefined)?.sha256);
  if (!key || key.length !== 32 || !iv || iv.length !== 16 || !sha256 || sha256.length !== 32) return null;
  return { url: f.url, info: { key, iv, sha256 } };
}

class Decrypting extends Transform {
  private readonly hash = createHash('sha256');
  private readonly decipher;
  /** The latest plaintext, held back until the next chunk (or the end, after the hash check). */
  private held: Buffer | null = null;

  constructor(private readonly file: EncryptedFileInfo) {
    super();
    this.decipher = createDecipheriv('aes-256-ctr', file.key, file.iv);
  }

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.hash.update(chunk);
    if (this.held) this.push(this.held);
    this.held = this.decipher.update(chunk);
    done();
  }

  override _flush(done: TransformCallback): void {
    if (!this.hash.digest().equals(this.file.sha256)) {
      done(new Error('the encrypted file does not match its hash'));
      return;
    }
    const rest = Buffer.concat([this.held ?? Buffer.alloc(0), this.decipher.final()]);
    if (rest.length) this.push(rest);
    done();
  }
}

/** A stream from the encrypted bytes to the plaintext (fails at the end when the hash does not match). */
export function decryptingStream(file: EncryptedFileInfo): Transform {
  return new Decrypting(file);
}

/** A stream from a file to its encryption for an encrypted room; `encryptedFile(url)` once it has ended. */
export class Encrypting extends Transform {
  private readonly key = randomBytes(32);
  // Spec: 64 random bits, then a 64-bit counter starting at zero (some clients overflow it otherwise).
  private readonly iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  private readonly cipher = createCipheriv('aes-256-ctr', this.key, this.iv);
  private readonly hash: Hash = createHash('sha256');
  private digest: Buffer | null = null;

  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    const out = this.cipher.update(chunk);
    this.hash.update(out);
    done(null, out);
  }

  override _flush(done: TransformCallback): void {
    const out = this.cipher.final();
    if (out.length) {
      this.hash.update(out);
      this.push(out);
    }
    this.digest = this.hash.digest();
    done();
  }

  /** The EncryptedFile of the uploaded ciphertext at `url` (mxc://). */
  encryptedFile(url: string): Json {
    if (!this.digest) throw new Error('the file was not encrypted to its end');
    return {
      v: 'v2',
      url,
      key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k: this.key.toString('base64url'), ext: true },
      iv: unpadded(this.iv),
      hashes: { sha256: unpadded(this.digest) },
    };
  }
}
