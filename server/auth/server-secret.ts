/**
 * A random secret per installation, kept in `<dataDir>/server-secret` (mode 0600, made once), from
 * which keys for one purpose each are derived. Unlike a per-process secret it survives restarts:
 * the fake SCRAM salts of unknown accounts (P17) stay the same, as real salts do, so comparing
 * challenges before and after a restart does not tell which accounts exist.
 */
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import { hmac } from './scram.js';

export const SERVER_SECRET_FILE = 'server-secret';

const SECRET_TEXT = /^[0-9a-f]{64}\n?$/;

/** Reads the installation's secret, creating it if missing. Throws with the file name only. */
export function readOrCreateServerSecret(dataDir: string): Buffer {
  const file = path.join(dataDir, SERVER_SECRET_FILE);
  try {
    return parseSecret(file, readFileSync(file, 'utf8'));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  // Written aside, then linked into place: a concurrent start never reads a half-written file,
  // and the first link wins.
  const tmp = `${file}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  const fd = openSync(tmp, 'wx', 0o600);
  try {
    writeSync(fd, `${randomBytes(32).toString('hex')}\n`);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(tmp);
  }
  return parseSecret(file, readFileSync(file, 'utf8'));
}

function parseSecret(file: string, text: string): Buffer {
  if (!SECRET_TEXT.test(text)) throw new Error(`${file} is not a server secret (64 hex digits expected); remove it to have a new one made`);
  return Buffer.from(text.slice(0, 64), 'hex');
}

const keys = new WeakMap<object, Map<string, Buffer>>();

/**
 * The key for `purpose`, derived from the secret under `owner.dataDir` (read once per owner, e.g.
 * per loaded configuration).
 */
export function serverKey(owner: { dataDir: string }, purpose: string): Buffer {
  let byPurpose = keys.get(owner);
  if (!byPurpose) {
    byPurpose = new Map();
    keys.set(owner, byPurpose);
  }
  let key = byPurpose.get(purpose);
  if (!key) {
    const secret = readOrCreateServerSecret(owner.dataDir);
    key = hmac('SHA-256', secret, `gatehouse ${purpose}`);
    secret.fill(0);
    byPurpose.set(purpose, key);
  }
  return key;
}

/** The key of the fake SCRAM salts for unknown accounts. */
export function fakeSaltKey(owner: { dataDir: string }): Buffer {
  return serverKey(owner, 'fake SCRAM salt');
}
