/**
 * The credential vault (PRIVACY.md P9): foreign-network credentials are encrypted at rest with
 * AES-256-GCM, one record per (user JID, network):
 *
 * - a random 96-bit nonce per record (a new one every time a record is written);
 * - additional authenticated data `userJid + "\0" + network`, so a record copied to another user
 *   or network does not decrypt;
 * - a key id per record (the first 8 bytes of SHA-256(key), hex), so a wrong key is recognised
 *   before anything is decrypted and `gatehouse vault rotate` knows what to re-encrypt;
 * - the plaintext is JSON of every registration value (secret or not: the foreign user name is a
 *   credential too) plus per-server overrides; nothing about the foreign account is stored in clear.
 *
 * The key never touches the database. It comes from, in this order:
 *   1. GATEHOUSE_VAULT_KEY (32 bytes, base64: `openssl rand -base64 32`);
 *   2. the systemd credential `vault-key.NAME` or `vault-key` (NAME: the adapter, e.g. irc), in
 *      $CREDENTIALS_DIRECTORY (shared/credentials.ts); it must hold a key, it is never created;
 *   3. the key file named by `vault.keyFile` in the transport configuration, created with mode
 *      0600 (in a directory created 0700 if missing) when it does not exist yet; an existing file
 *      that others can read, or that sits in a directory anyone can write, is refused;
 *   4. the OS keyring through @napi-rs/keyring, only if that optional package is installed (it is
 *      not a dependency: it needs a native build, and a keyring daemon such as gnome-keyring or
 *      KWallet with a desktop session; keytar, the older choice, is archived and needs the same).
 *      Without it this step is skipped with a debug log line.
 * A missing or wrong key is an error that names the problem and changes nothing.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, createHmac } from 'node:crypto';
import { closeSync, mkdirSync, openSync, readFileSync, statSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { VaultRecord } from '../../storage/types.js';
import { credentialFile } from '../../shared/credentials.js';

export const VAULT_KEY_ENV = 'GATEHOUSE_VAULT_KEY';
/** Service name under which the key is kept in the OS keyring. */
export const KEYRING_SERVICE = 'gatehouse-transport-vault';

const NONCE_BYTES = 12;
const KEY_BYTES = 32;
/** GCM tag length; a shorter tag would be accepted by GCM unless pinned (and is easier to forge). */
const TAG_BYTES = 16;

/** A vault problem: one line, never containing a key or a credential. */
export class VaultError extends Error {
  override name = 'VaultError';
}

/** The configured key is not the one the stored records were encrypted with. */
export class VaultKeyMismatchError extends VaultError {
  override name = 'VaultKeyMismatchError';
  constructor(
    readonly expectedKeyId: string,
    readonly actualKeyIds: string[],
  ) {
    super(`the vault key does not match the stored credentials (key id ${expectedKeyId} expected, the configured key has key id ${actualKeyIds.join(', ')}); nothing was changed`);
  }
}

export interface VaultKey {
  id: string;
  key: Buffer;
  /** Where it came from, for messages: 'GATEHOUSE_VAULT_KEY', 'key file /path', 'OS keyring'. */
  source: string;
}

/** What a record holds. */
export interface VaultPayload {
  /** Registration values by field name (secret and non-secret). */
  fields: Record<string, string>;
  /** Multi-server networks: per-server overrides of `fields`, by server. */
  servers?: Record<string, Record<string, string>>;
}

export function keyIdOf(key: Buffer): string {
  return createHash('sha256').update(key).digest().subarray(0, 8).toString('hex');
}

export function vaultKey(key: Buffer, source: string): VaultKey {
  if (key.length !== KEY_BYTES) throw new VaultError(`the vault key from ${source} is not 32 bytes`);
  return { id: keyIdOf(key), key, source };
}

/** 32 bytes as base64 (or 64 hex digits); null if the text is neither. */
export function parseKeyText(text: string): Buffer | null {
  const t = text.trim();
  if (/^[0-9a-fA-F]{64}$/.test(t)) return Buffer.from(t, 'hex');
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(t)) return null;
  const b = Buffer.from(t.replace(/-/g, '+').replace(/_/g, '/'), 'base64');
  return b.length === KEY_BYTES ? b : null;
}

export function newKeyText(): string {
  return randomBytes(KEY_BYTES).toString('base64');
}

function checkPrivate(file: string, mode: number, what: string): void {
  if (process.platform === 'win32') return;
  if ((mode & 0o077) !== 0) {
    throw new VaultError(`${what} ${file} can be read or written by other users (mode ${(mode & 0o777).toString(8)}); run chmod 600 ${file}`);
  }
}

function checkDirectory(dir: string): void {
  let st;
  try {
    st = statSync(dir);
  } catch {
    try {
      mkdirSync(dir, { recursive: true, mode: 0o700 });
    } catch (err) {
      throw new VaultError(`cannot create the vault key directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    return;
  }
  if (!st.isDirectory()) throw new VaultError(`the vault key directory ${dir} is not a directory`);
  if (process.platform !== 'win32' && (st.mode & 0o002) !== 0 && (st.mode & 0o1000) === 0) {
    throw new VaultError(`the vault key directory ${dir} is writable by everyone; use a private directory for vault.keyFile`);
  }
}

/**
 * Reads a key file; creates it (mode 0600, random key) when `create` and it does not exist. An
 * existing file that is not private, or does not hold a 32-byte key, is an error.
 */
export function readKeyFile(file: string, opts: { create: boolean }): { key: VaultKey; created: boolean } {
  const abs = path.resolve(file);
  const source = `key file ${abs}`;
  let created = false;
  let st;
  try {
    st = statSync(abs);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw new VaultError(`cannot read the vault ${source}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    if (!opts.create) throw new VaultError(`the vault ${source} does not exist`);
    checkDirectory(path.dirname(abs));
    let fd: number;
    try {
      fd = openSync(abs, 'wx', 0o600);
    } catch (e) {
      throw new VaultError(`cannot create the vault ${source}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`);
    }
    try {
      writeSync(fd, newKeyText() + '\n');
    } finally {
      closeSync(fd);
    }
    created = true;
    st = statSync(abs);
  }
  if (!st.isFile()) throw new VaultError(`the vault ${source} is not a regular file`);
  checkDirectory(path.dirname(abs));
  checkPrivate(abs, st.mode, 'the vault key file');
  const key = parseKeyText(readFileSync(abs, 'utf8'));
  if (!key) throw new VaultError(`the vault ${source} does not hold a 32-byte key in base64`);
  return { key: vaultKey(key, source), created };
}

export interface KeyResolution {
  env?: NodeJS.ProcessEnv;
  /** vault.keyFile of the transport configuration, absolute; null when not configured. */
  keyFile: string | null;
  /** The transport's name: the keyring account, and the systemd credential vault-key.NAME. The keyring is only tried without a key file. */
  keyringAccount?: string;
  /** Imports @napi-rs/keyring; replaceable in tests. Resolves null when the package is absent. */
  loadKeyring?: () => Promise<KeyringModule | null>;
  log?: { debug(msg: string, fields?: Record<string, string>): void; info(msg: string, fields?: Record<string, string>): void };
}

export interface KeyringModule {
  Entry: new (service: string, account: string) => { getPassword(): string | null | undefined; setPassword(password: string): void };
}

async function importKeyring(): Promise<KeyringModule | null> {
  const specifier: string = '@napi-rs/keyring';
  try {
    return (await import(specifier)) as KeyringModule;
  } catch {
    return null;
  }
}

/** Finds the vault key: GATEHOUSE_VAULT_KEY, else a systemd credential, else the key file (created if missing), else the OS keyring. */
export async function resolveVaultKey(opts: KeyResolution): Promise<VaultKey> {
  const env = opts.env ?? process.env;
  const fromEnv = env[VAULT_KEY_ENV];
  if (fromEnv !== undefined && fromEnv !== '') {
    const key = parseKeyText(fromEnv);
    if (!key) throw new VaultError(`${VAULT_KEY_ENV} must hold 32 bytes in base64 (create one with: openssl rand -base64 32)`);
    return vaultKey(key, VAULT_KEY_ENV);
  }
  const credential = credentialFile([...(opts.keyringAccount ? [`vault-key.${opts.keyringAccount}`] : []), 'vault-key'], env);
  if (credential) return readKeyFile(credential, { create: false }).key;
  if (opts.keyFile) {
    const { key, created } = readKeyFile(opts.keyFile, { create: true });
    if (created) opts.log?.info('created a new vault key file', { file: opts.keyFile });
    return key;
  }
  const keyring = await (opts.loadKeyring ?? importKeyring)();
  if (!keyring) {
    opts.log?.debug('@napi-rs/keyring is not installed; the OS keyring is not used for the vault key');
    throw new VaultError(
      `no vault key: set ${VAULT_KEY_ENV}, or vault.keyFile in the transport configuration, or the systemd credential vault-key (the OS keyring is used only when @napi-rs/keyring is installed)`,
    );
  }
  const account = opts.keyringAccount ?? 'default';
  try {
    const entry = new keyring.Entry(KEYRING_SERVICE, account);
    let text = entry.getPassword();
    if (!text) {
      text = newKeyText();
      entry.setPassword(text);
      opts.log?.info('created a new vault key in the OS keyring', { service: KEYRING_SERVICE, account });
    }
    const key = parseKeyText(text);
    if (!key) throw new VaultError(`the OS keyring entry ${KEYRING_SERVICE}/${account} does not hold a 32-byte key in base64`);
    return vaultKey(key, 'OS keyring');
  } catch (err) {
    if (err instanceof VaultError) throw err;
    throw new VaultError(`the OS keyring is not usable (${err instanceof Error ? err.message.split('\n')[0] : String(err)}); set ${VAULT_KEY_ENV} or vault.keyFile instead`);
  }
}

function aad(userJid: string, network: string): Buffer {
  return Buffer.from(`${userJid}\0${network}`, 'utf8');
}

/** The server as the secret-state table keys it ('' stays '', else SHA-256 base64url, as storage does), for the additional data. */
export function stateServerKey(server: string): string {
  return server === '' ? '' : createHash('sha256').update(server, 'utf8').digest('base64url');
}

function stateAad(userJid: string, network: string, serverKey: string): Buffer {
  return Buffer.from(`${userJid}\0${network}\0secret-state\0${serverKey}`, 'utf8');
}

export class Vault {
  private readonly keys: Map<string, VaultKey>;

  /** `primary` encrypts; `previous` keys only decrypt (during a rotation). */
  constructor(
    readonly primary: VaultKey,
    previous: VaultKey[] = [],
  ) {
    this.keys = new Map([primary, ...previous].map((k) => [k.id, k]));
  }

  get keyId(): string {
    return this.primary.id;
  }

  knows(keyId: string): boolean {
    return this.keys.has(keyId);
  }

  seal(userJid: string, network: string, payload: VaultPayload, now: Date, key: VaultKey = this.primary): VaultRecord {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(aad(userJid, network));
    const ciphertext = Buffer.concat([cipher.update(JSON.stringify(payload), 'utf8'), cipher.final()]);
    return { network, userJid, keyId: key.id, nonce, ciphertext, tag: cipher.getAuthTag(), updatedAt: now };
  }

  open(record: VaultRecord): VaultPayload {
    const key = this.keys.get(record.keyId);
    if (!key) throw new VaultKeyMismatchError(record.keyId, [...this.keys.keys()]);
    let text: string;
    try {
      if (record.tag.length !== TAG_BYTES) throw new Error('tag length');
      const decipher = createDecipheriv('aes-256-gcm', key.key, record.nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(aad(record.userJid, record.network));
      decipher.setAuthTag(record.tag);
      text = Buffer.concat([decipher.update(record.ciphertext), decipher.final()]).toString('utf8');
    } catch {
      throw new VaultError(`the stored credentials of ${record.userJid} (${record.network}) do not authenticate: the record was altered or belongs to another user`);
    }
    const payload = JSON.parse(text) as VaultPayload;
    if (typeof payload !== 'object' || payload === null || typeof payload.fields !== 'object') throw new VaultError(`the stored credentials of ${record.userJid} (${record.network}) are malformed`);
    return payload;
  }

  /**
   * A stable per-user identifier for the network that is not the JID and cannot be computed
   * without the vault key (HMAC-SHA-256 under a key derived from it): what a network may see to
   * tell the gateway's users apart (IRC ident, WEBIRC address). It changes with a key rotation.
   */
  pseudonym(userJid: string, network: string): string {
    const subkey = createHmac('sha256', this.primary.key).update('gatehouse pseudonym v1').digest();
    return createHmac('sha256', subkey).update(`${network}\u0000${userJid}`).digest('hex');
  }

  /**
   * Seals an adapter's secret state (bytes, not a payload): the additional data names the user,
   * network and `secret-state` plus the server key (stateServerKey), so it cannot pass for a
   * credentials record or another server's state.
   */
  sealBytes(userJid: string, network: string, serverKey: string, data: Uint8Array, now: Date, key: VaultKey = this.primary): VaultRecord {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv('aes-256-gcm', key.key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(stateAad(userJid, network, serverKey));
    const ciphertext = Buffer.concat([cipher.update(data), cipher.final()]);
    return { network, userJid, keyId: key.id, nonce, ciphertext, tag: cipher.getAuthTag(), updatedAt: now };
  }

  openBytes(record: VaultRecord, serverKey: string): Buffer {
    const key = this.keys.get(record.keyId);
    if (!key) throw new VaultKeyMismatchError(record.keyId, [...this.keys.keys()]);
    try {
      if (record.tag.length !== TAG_BYTES) throw new Error('tag length');
      const decipher = createDecipheriv('aes-256-gcm', key.key, record.nonce, { authTagLength: TAG_BYTES });
      decipher.setAAD(stateAad(record.userJid, record.network, serverKey));
      decipher.setAuthTag(record.tag);
      return Buffer.concat([decipher.update(record.ciphertext), decipher.final()]);
    } catch {
      throw new VaultError(`the stored secret state of ${record.userJid} (${record.network}) does not authenticate: the record was altered or belongs to another user`);
    }
  }

  /** Throws VaultKeyMismatchError if a stored record uses a key this vault does not have. */
  checkKeyIds(stored: Iterable<string>): void {
    for (const id of stored) if (!this.keys.has(id)) throw new VaultKeyMismatchError(id, [...this.keys.keys()]);
  }
}
