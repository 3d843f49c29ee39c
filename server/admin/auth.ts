/**
 * Admin login for the HTTP console (P21): who may sign in, how the password is checked, and the
 * server-side sessions behind the cookie.
 *
 * Login. The user name is an administrator's bare JID (config.admins; with a single host the
 * local part alone is accepted), the password that account's XMPP password. It is checked against
 * the account's stored SCRAM verifiers (P2: the server has no password to compare with) by
 * deriving the StoredKey with the verifier's salt and iterations, off the event loop. A JID that
 * is not an administrator, an unknown account and a wrong password all get the same answer, and
 * a non-admin's attempt costs the same key derivation, so the answer does not tell which admins
 * exist. The password is never stored, logged or echoed.
 *
 * The failed-login guard (P7) sees these attempts like XMPP logins: 'auth/before' (the address)
 * and 'auth/identified' (the account) may refuse an attempt before the password is checked, and
 * every failure is announced as 'auth/failed' with mechanism 'HTTP' and the client's IP, so it is
 * recorded, counted, delayed and blocked with the rest. A success fires 'auth/succeeded'.
 *
 * Sessions. A successful login gets a random 32-byte token (base64url) in a cookie: HttpOnly,
 * SameSite=Strict, Path=/, and Secure with the `__Host-` name prefix when served over TLS. The
 * server keeps only SHA-256 of the token, with the admin's JID, a CSRF token for its forms, and
 * times: a session ends after `idleMs` without a request (default 30 minutes), after `maxAgeMs`
 * in any case (default 12 hours), at logout, or when the server stops (sessions live in memory).
 * Every POST form carries the session's CSRF token; the login form, before there is a session,
 * carries a token that must match a short-lived cookie (double submit).
 */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { ServerContext } from '../core/context.js';
import type { AuthAttempt } from '../streams/c2s.js';
import type { ScramVerifier } from '../../storage/types.js';
import { iterationsUsable, makeVerifier, verifyPlainAsync } from '../auth/scram.js';
import { addMissingVerifiers } from '../accounts/service.js';
import { isAdmin } from '../modules/policy/admins.js';
import { Jid, normaliseLocal } from '../../shared/jid.js';

export const SESSION_DEFAULTS = { idleMs: 30 * 60_000, maxAgeMs: 12 * 3_600_000, max: 200 } as const;

/** Mechanism name in 'auth/*' events and failed-login records for console logins. */
export const HTTP_MECHANISM = 'HTTP';

/** What a failed login is told, whatever the reason (no admin list, no account oracle). */
export const LOGIN_FAILED = 'Wrong user name or password, or not an administrator.';

export interface AdminSession {
  /** SHA-256 (hex) of the cookie token: the key of the session map. */
  readonly key: string;
  /** The administrator's bare JID. */
  readonly jid: string;
  /** The token every POST form of this session must carry. */
  readonly csrf: string;
  readonly ip: string;
  readonly createdAt: number;
  lastSeen: number;
  /** A one-time message for the next page (after POST/redirect/GET). */
  flash: string | null;
}

function newToken(): string {
  return randomBytes(32).toString('base64url');
}

function digest(token: string): string {
  return createHash('sha256').update(token, 'utf8').digest('hex');
}

/** A 32-byte token in base64url (43 characters). */
const TOKEN = /^[A-Za-z0-9_-]{43}$/;

/** Constant-time comparison of two strings (false when the lengths differ). */
export function sameToken(a: string | null | undefined, b: string | null | undefined): boolean {
  if (typeof a !== 'string' || typeof b !== 'string') return false;
  const x = createHash('sha256').update(a, 'utf8').digest();
  const y = createHash('sha256').update(b, 'utf8').digest();
  return timingSafeEqual(x, y) && a.length === b.length;
}

/** The server-side session map. Times come from `now()` (the server's clock). */
export class AdminSessions {
  private readonly sessions = new Map<string, AdminSession>();

  constructor(
    private readonly now: () => number,
    readonly options: { idleMs: number; maxAgeMs: number; max: number } = { ...SESSION_DEFAULTS },
  ) {}

  /** A new session (a fresh token: no fixation); the oldest is dropped when the map is full. */
  create(jid: string, ip: string): { token: string; session: AdminSession } {
    this.sweep();
    while (this.sessions.size >= this.options.max) {
      const oldest = this.sessions.keys().next().value;
      if (oldest === undefined) break;
      this.sessions.delete(oldest);
    }
    const token = newToken();
    const t = this.now();
    const session: AdminSession = { key: digest(token), jid, csrf: newToken(), ip, createdAt: t, lastSeen: t, flash: null };
    this.sessions.set(session.key, session);
    return { token, session };
  }

  /** The live session of a cookie token (touching it), or null. */
  get(token: string | null | undefined): AdminSession | null {
    if (!token || !TOKEN.test(token)) return null;
    const key = digest(token);
    const s = this.sessions.get(key);
    if (!s) return null;
    const t = this.now();
    if (this.expired(s, t)) {
      this.sessions.delete(key);
      return null;
    }
    s.lastSeen = t;
    // Most recently used last, so create() drops the least recently used.
    this.sessions.delete(key);
    this.sessions.set(key, s);
    return s;
  }

  destroy(session: AdminSession): void {
    this.sessions.delete(session.key);
  }

  clear(): void {
    this.sessions.clear();
  }

  get size(): number {
    return this.sessions.size;
  }

  sweep(): void {
    const t = this.now();
    for (const [key, s] of this.sessions) if (this.expired(s, t)) this.sessions.delete(key);
  }

  private expired(s: AdminSession, t: number): boolean {
    return t - s.lastSeen >= this.options.idleMs || t - s.createdAt >= this.options.maxAgeMs;
  }
}

// ---- cookies ----

export function cookieNames(secure: boolean): { session: string; login: string } {
  // The __Host- prefix makes the browser insist on Secure, Path=/ and no Domain.
  return secure ? { session: '__Host-gatehouse-admin', login: '__Host-gatehouse-login' } : { session: 'gatehouse-admin', login: 'gatehouse-login' };
}

/** Cookie name → value from a Cookie header (first occurrence wins). */
export function parseCookies(header: string | undefined): Map<string, string> {
  const out = new Map<string, string>();
  if (!header) return out;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq <= 0) continue;
    const name = part.slice(0, eq).trim();
    const value = part.slice(eq + 1).trim().replace(/^"(.*)"$/, '$1');
    if (!out.has(name)) out.set(name, value);
  }
  return out;
}

export function setCookie(name: string, value: string, opts: { secure: boolean; maxAgeSeconds?: number }): string {
  let c = `${name}=${value}; Path=/; HttpOnly; SameSite=Strict`;
  if (opts.secure) c += '; Secure';
  if (opts.maxAgeSeconds !== undefined) c += `; Max-Age=${opts.maxAgeSeconds}`;
  return c;
}

export function clearCookie(name: string, secure: boolean): string {
  return setCookie(name, '', { secure, maxAgeSeconds: 0 });
}

/** A token for the login form's double-submit check. */
export function loginFormToken(): string {
  return newToken();
}

// ---- login ----

export type LoginResult = { ok: true; jid: string } | { ok: false; status: 403 | 429 | 503; message: string };

/** Password longer than this is refused without a key derivation (no honest password is). */
const MAX_PASSWORD = 1024;
/** Key derivations running at once; more attempts are answered "busy" (CPU exhaustion). */
const MAX_CONCURRENT = 4;

/** Checks console logins against the stored SCRAM verifiers, through the failed-login guard. */
export class AdminAuthenticator {
  private running = 0;
  private dummy: ScramVerifier | null = null;

  constructor(private readonly ctx: ServerContext) {}

  /** The bare JID a typed user name means (the local part alone works with a single host), or null. */
  resolve(username: string): Jid | null {
    let text = username.trim();
    if (!text || text.length > 3071) return null;
    if (!text.includes('@') && this.ctx.config.hosts.length === 1) text = `${text}@${this.ctx.config.hosts[0]!.domain}`;
    const jid = Jid.tryParse(text);
    return jid && jid.local && !jid.resource ? jid : null;
  }

  async login(username: string, password: string, ip: string): Promise<LoginResult> {
    const { hooks, clock, storage, config, log } = this.ctx;
    const jid = this.resolve(username);
    const host = jid?.domain ?? config.hosts[0]!.domain;
    const local = jid?.local ?? normaliseLocal(username.trim().slice(0, 255)) ?? null;
    const failed = (condition: string): void => {
      void hooks.emit('auth/failed', { at: clock.now(), ip, host, username: local ?? (username.trim().slice(0, 255) || null), mechanism: HTTP_MECHANISM, condition });
    };

    // P7: the guard may refuse (or delay) the attempt before anything is checked.
    const attempt: AuthAttempt = { ip, host, mechanism: HTTP_MECHANISM };
    await hooks.emit('auth/before', attempt);
    if (!attempt.deny && local) {
      const identified: AuthAttempt = { ip, host, mechanism: HTTP_MECHANISM, username: local };
      await hooks.emit('auth/identified', identified);
      attempt.deny = identified.deny;
    }
    if (attempt.deny) {
      failed(attempt.deny.condition);
      return { ok: false, status: 429, message: capitalise(attempt.deny.text ?? 'too many failed attempts; try again later') + '.' };
    }

    if (this.running >= MAX_CONCURRENT) return { ok: false, status: 503, message: 'The server is busy checking other logins; try again in a moment.' };
    this.running++;
    try {
      const admin = jid !== null && isAdmin(config, jid);
      const account = admin ? await storage.accounts.get(jid.local, jid.domain) : null;
      const verifiers = account ? await storage.accounts.getVerifiers(account.id) : [];
      const verifier = verifiers.find((v) => v.hash === 'SHA-256') ?? verifiers.find((v) => v.hash === 'SHA-1') ?? null;
      let ok = false;
      if (password.length > 0 && password.length <= MAX_PASSWORD) {
        if (verifier) ok = await verifyPlainAsync(password, verifier);
        // The same work for a non-admin or an unknown account, so timing tells nothing.
        else await verifyPlainAsync(password, this.dummyVerifier());
      }
      if (verifier && jid && !iterationsUsable(verifier.iterations)) {
        log.child('admin-http').warn('admin credentials unusable: stored iteration count out of range; set a new password with gatehouse user passwd', { admin: jid.bare });
      }
      if (!ok || !account || !jid) {
        failed('not-authorized');
        log.child('admin-http').info('admin console login failed', { ip });
        return { ok: false, status: 403, message: LOGIN_FAILED };
      }
      void hooks.emit('auth/succeeded', { at: clock.now(), ip, account, mechanism: HTTP_MECHANISM });
      log.child('admin-http').info('admin console login', { admin: jid.bare, ip });
      // The password was seen in clear: verifiers for the hashes the account lacks (imported accounts).
      try {
        if ((await addMissingVerifiers(storage, account.id, password, verifiers, config.auth)).length) await hooks.emit('account/verifiers-changed', { account });
      } catch (err) {
        log.child('admin-http').warn('could not add SCRAM verifiers at an admin console login', { error: err instanceof Error ? err.message : String(err) });
      }
      return { ok: true, jid: jid.bare };
    } finally {
      this.running--;
    }
  }

  private dummyVerifier(): ScramVerifier {
    this.dummy ??= makeVerifier(randomBytes(18).toString('base64'), 'SHA-256', this.ctx.config.auth.scramIterations);
    return this.dummy;
  }
}

function capitalise(s: string): string {
  return s.charAt(0).toUpperCase() + s.slice(1);
}
