/**
 * Accounts: creation, password change, deletion, listing. Used by in-band registration
 * (modules/register.ts) and by the `gatehouse user` CLI, so it knows nothing of streams.
 *
 * P1: usernames are normalised (case-folded, NFKC) before anything is stored or looked up.
 * P2: only SCRAM verifiers are stored, one per configured hash; never the password.
 * P23: deletion tells modules first ('account/deleting'), ends every session of the account,
 * then deletes the account row, which cascades to everything the account owns.
 *
 * No error message, log line or event payload here ever contains a password.
 */
import { randomBytes } from 'node:crypto';
import type { Config } from '../config/index.js';
import type { Account, ScramVerifier, Storage } from '../../storage/types.js';
import type { HookBus } from '../core/hooks.js';
import type { SessionRegistry } from '../core/session.js';
import type { Clock } from '../../shared/clock.js';
import { Jid, normaliseDomain, normaliseLocal } from '../../shared/jid.js';
import { LIMITS } from '../../storage/typeorm-storage.js';
import { DEFAULT_SALT_BYTES, MIN_ITERATIONS, SaslPrepError, h, hiAsync, hmac, saslPrep, type ScramHash } from '../auth/scram.js';

/**
 * Longest username, in characters (code points). RFC 7622 allows 1023 bytes, but the accounts
 * table (and its unique index on every database) holds 255 characters.
 */
export const MAX_USERNAME_CHARS = LIMITS.username;

/** Longest password accepted, in UTF-8 bytes (a limit on work per login, not a policy). */
export const MAX_PASSWORD_BYTES = 1024;

/** Base of every error the service throws on purpose; `code` is stable for callers to branch on. */
export class AccountError extends Error {
  constructor(
    readonly code: 'exists' | 'invalid-username' | 'invalid-password' | 'no-such-account' | 'unknown-host',
    message: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

export class AccountExistsError extends AccountError {
  constructor(jid: string) {
    super('exists', `account ${jid} already exists`);
  }
}

export class InvalidUsernameError extends AccountError {
  constructor(reason = 'not a valid XMPP username (localpart)') {
    super('invalid-username', `invalid username: ${reason}`);
  }
}

/** Never carries the password itself. */
export class InvalidPasswordError extends AccountError {
  constructor(reason: string) {
    super('invalid-password', `invalid password: ${reason}`);
  }
}

export class NoSuchAccountError extends AccountError {
  constructor(jid: string) {
    super('no-such-account', `no account ${jid}`);
  }
}

export class UnknownHostError extends AccountError {
  constructor(host: string) {
    super('unknown-host', `host ${host} is not served by this server`);
  }
}

export interface AccountServiceDeps {
  storage: Storage;
  hooks: HookBus;
  config: Config;
  clock: Clock;
  sessions: SessionRegistry;
}

export class AccountService {
  private readonly storage: Storage;
  private readonly hooks: HookBus;
  private readonly config: Config;
  private readonly clock: Clock;
  private readonly sessions: SessionRegistry;

  constructor(deps: AccountServiceDeps) {
    this.storage = deps.storage;
    this.hooks = deps.hooks;
    this.config = deps.config;
    this.clock = deps.clock;
    this.sessions = deps.sessions;
  }

  /** The normalised (username, host, bare JID); throws InvalidUsernameError / UnknownHostError. */
  normalise(username: string, host: string): { username: string; host: string; jid: Jid } {
    const d = typeof host === 'string' ? normaliseDomain(host) : null;
    if (!d || !this.config.hosts.some((hc) => hc.domain === d)) throw new UnknownHostError(typeof host === 'string' ? host.slice(0, 255) : '?');
    if (typeof username !== 'string' || username === '') throw new InvalidUsernameError('empty');
    const local = normaliseLocal(username);
    if (local === null) {
      if (Buffer.byteLength(username.normalize('NFKC'), 'utf8') > 1023) throw new InvalidUsernameError('longer than 1023 bytes');
      throw new InvalidUsernameError('contains a character not allowed in a username (such as @, /, :, quotes or white space)');
    }
    if ([...local].length > MAX_USERNAME_CHARS) throw new InvalidUsernameError(`longer than ${MAX_USERNAME_CHARS} characters`);
    const jid = Jid.of(local, d);
    if (!jid) throw new InvalidUsernameError();
    return { username: local, host: d, jid };
  }

  /** Creates an account; `ip` is the registering client's address (null from the CLI). */
  async create(username: string, host: string, password: string, ip: string | null): Promise<Account> {
    const n = this.normalise(username, host);
    const verifiers = await this.makeVerifiers(password);
    const account = await this.storage.accounts.create(n.username, n.host, verifiers, this.clock.now());
    if (!account) throw new AccountExistsError(n.jid.bare);
    await this.hooks.emit('account/created', { account, jid: n.jid, ip });
    return account;
  }

  /** Replaces the account's verifiers with ones for `newPassword`. */
  async changePassword(username: string, host: string, newPassword: string): Promise<void> {
    const n = this.normalise(username, host);
    const account = await this.storage.accounts.get(n.username, n.host);
    if (!account) throw new NoSuchAccountError(n.jid.bare);
    const verifiers = await this.makeVerifiers(newPassword);
    await this.storage.accounts.setVerifiers(account.id, verifiers);
    await this.hooks.emit('account/verifiers-changed', { account });
  }

  /**
   * Deletes the account and everything it owns (P23). Modules are told first (the presence
   * module unsubscribes contacts), then every session of the account is closed with a
   * <not-authorized/> stream error (XEP-0077 section 3.2), then the rows go.
   */
  async delete(username: string, host: string): Promise<void> {
    const n = this.normalise(username, host);
    const account = await this.storage.accounts.get(n.username, n.host);
    if (!account) throw new NoSuchAccountError(n.jid.bare);
    await this.hooks.emit('account/deleting', { account, jid: n.jid });
    for (const session of this.sessions.ofAccount(n.jid.bare)) session.close('not-authorized', 'account deleted');
    await this.storage.accounts.delete(account.id);
    await this.hooks.emit('account/deleted', { account, jid: n.jid });
  }

  /** Admin use only (P16/P17). */
  list(host?: string): Promise<Account[]> {
    if (host === undefined) return this.storage.accounts.list();
    const d = normaliseDomain(host);
    if (!d) throw new UnknownHostError(host.slice(0, 255));
    return this.storage.accounts.list(d);
  }

  async get(username: string, host: string): Promise<Account | null> {
    let n;
    try {
      n = this.normalise(username, host);
    } catch (err) {
      if (err instanceof AccountError) return null;
      throw err;
    }
    return this.storage.accounts.get(n.username, n.host);
  }

  async exists(username: string, host: string): Promise<boolean> {
    return (await this.get(username, host)) !== null;
  }

  /** One verifier per configured hash, with the configured iteration count (P2). */
  private async makeVerifiers(password: string): Promise<ScramVerifier[]> {
    checkPassword(password);
    const { hashes, scramIterations } = this.config.auth;
    return Promise.all(hashes.map((hash) => makeVerifierAsync(password, hash, scramIterations)));
  }
}

/**
 * Adds a verifier for each hash of `auth.hashes` that `existing` (the account's verifiers) lacks,
 * from a password just checked against them: how accounts imported with SCRAM-SHA-1 verifiers only
 * get SCRAM-SHA-256 ones. Existing verifiers are kept as they are. Returns the hashes added (none
 * when the password cannot be stored, which SASLprep for stored strings may refuse).
 */
export async function addMissingVerifiers(
  storage: Storage,
  accountId: number,
  password: string,
  existing: readonly ScramVerifier[],
  auth: { hashes: readonly ScramHash[]; scramIterations: number },
): Promise<ScramHash[]> {
  const missing = auth.hashes.filter((hash) => !existing.some((v) => v.hash === hash));
  if (missing.length === 0) return [];
  try {
    checkPassword(password);
  } catch (err) {
    if (err instanceof InvalidPasswordError) return [];
    throw err;
  }
  const made = await Promise.all(missing.map((hash) => makeVerifierAsync(password, hash, auth.scramIterations)));
  return storage.accounts.addVerifiers(accountId, made);
}

/** Throws InvalidPasswordError unless `password` can become a stored SCRAM secret. */
export function checkPassword(password: unknown): asserts password is string {
  if (typeof password !== 'string' || password.length === 0) throw new InvalidPasswordError('empty');
  if (Buffer.byteLength(password, 'utf8') > MAX_PASSWORD_BYTES) throw new InvalidPasswordError(`longer than ${MAX_PASSWORD_BYTES} bytes`);
  let prepared: string;
  try {
    prepared = saslPrep(password, { allowUnassigned: false });
  } catch (err) {
    if (err instanceof SaslPrepError) throw new InvalidPasswordError(err.reason === 'unassigned' ? 'contains an unassigned character' : 'contains a character not allowed in passwords (SASLprep)');
    throw err;
  }
  if (prepared.length === 0) throw new InvalidPasswordError('empty after normalisation');
}

/**
 * makeVerifier() (server/auth/scram.ts) without blocking the event loop during PBKDF2: with a high
 * configured iteration count a synchronous derivation would stall every stream for its duration.
 * Same result as makeVerifier for the same salt (a unit test checks this).
 */
export async function makeVerifierAsync(password: string, hash: ScramHash, iterations: number, salt: Buffer = randomBytes(DEFAULT_SALT_BYTES)): Promise<ScramVerifier> {
  if (!Number.isSafeInteger(iterations) || iterations < MIN_ITERATIONS) throw new RangeError(`SCRAM iteration count must be an integer >= ${MIN_ITERATIONS}`);
  if (salt.length === 0) throw new RangeError('SCRAM salt must not be empty');
  const prepared = saslPrep(password, { allowUnassigned: false });
  if (prepared.length === 0) throw new SaslPrepError('empty');
  const salted = await hiAsync(hash, prepared, salt, iterations);
  const clientKey = hmac(hash, salted, 'Client Key');
  const storedKey = h(hash, clientKey);
  const serverKey = hmac(hash, salted, 'Server Key');
  clientKey.fill(0);
  salted.fill(0);
  return { hash, salt: Buffer.from(salt), iterations, storedKey, serverKey };
}
