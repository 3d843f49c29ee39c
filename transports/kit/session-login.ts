/**
 * Logging in to the foreign network, on top of session-resources.ts: the stored credentials
 * (registration.ts), the adapter's login with a timeout, the audit rows (P10: connecting,
 * connected, auth-failed, error), the presence the user is told, and retries with exponential
 * backoff and jitter after network failures (an authentication failure is not retried until a new
 * resource comes online or the registration is edited).
 */
import { x } from '../../shared/xml/element.js';
import { after, type Clock } from '../../shared/clock.js';
import { LegacyAuthError, type LegacySession } from './adapter.js';
import { errorText } from './context.js';
import { backoffDelay } from './backoff.js';
import { scrub } from './audit-log.js';
import { VaultError } from './vault.js';
import { errorElement } from './stanzas.js';
import { SessionUnavailableError, UserSession, sessionKey, type LoginFailure } from './user-session.js';
import { SessionResources } from './session-resources.js';

function withTimeout<T>(clock: Clock, p: Promise<T>, ms: number, onLate: (value: T) => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const timer = after(clock, ms, () => {
      done = true;
      reject(new Error(`no answer within ${Math.round(ms / 1000)}s`));
    });
    p.then(
      (v) => {
        if (done) return onLate(v);
        done = true;
        timer.cancel();
        resolve(v);
      },
      (err) => {
        if (done) return;
        done = true;
        timer.cancel();
        reject(err);
      },
    );
  });
}

export abstract class SessionLogin extends SessionResources {
  /** Passes the foreign session's events on to contacts and rooms (session-events.ts). */
  protected abstract attach(s: UserSession, legacy: LegacySession, gen: number): void;

  // ---- establishing sessions ----

  protected create(user: string, server: string | undefined): UserSession {
    const s = new UserSession(user, server, this.kit.clock.now());
    this.sessions.set(s.key, s);
    this.startLogin(s);
    return s;
  }

  /**
   * The user's session for the server, logged in: waits for a login in progress, starts one if
   * there is none. Throws SessionUnavailableError when it cannot be had now.
   */
  async ensure(user: string, server: string | undefined): Promise<UserSession> {
    let s = this.get(user, server);
    if (!s) {
      if (!(await this.kit.registration.isRegistered(user)) && !this.guestNicks.has(sessionKey(user, server))) {
        throw new SessionUnavailableError({ condition: 'registration-required', text: `register with ${this.kit.domain} first` });
      }
      s = this.get(user, server) ?? this.create(user, server);
      if (!this.demandedServers(user).has(this.serverKey(server))) this.scheduleGrace(s);
    }
    if (s.state === 'connecting' && s.loginDone) await s.loginDone;
    if (s.state === 'online' && s.legacy) return s;
    throw new SessionUnavailableError(s.failure ?? { condition: 'remote-server-timeout', text: `not connected to ${this.kit.networkName}` });
  }

  /** Starts (or restarts) the login of a session. */
  startLogin(s: UserSession): void {
    if (this.stopped) return;
    if (s.retryTimer) {
      s.retryTimer.cancel();
      s.retryTimer = null;
    }
    s.state = 'connecting';
    s.loginDone = this.login(s).catch((err) => {
      this.kit.log.error('login handling failed', { network: this.kit.adapter.network, error: errorText(err) });
    });
  }

  protected auditCtx(s: UserSession) {
    return { userJid: s.user, account: s.account, server: s.server ?? null, secrets: s.secrets };
  }

  private async login(s: UserSession): Promise<void> {
    const gen = ++s.generation;
    const { kit } = this;
    let prepared;
    try {
      prepared = await kit.registration.loginRequestFor(s.user, s.server);
    } catch (err) {
      if (gen !== s.generation) return;
      const vault = err instanceof VaultError;
      kit.log.error('cannot read the stored credentials', { network: kit.adapter.network, user: s.user, error: errorText(err) });
      if (vault) await kit.audit.record('error', this.auditCtx(s), errorText(err));
      return this.failed(s, { condition: 'internal-server-error', text: 'the transport cannot read your stored credentials; ask the administrator' }, false);
    }
    if (gen !== s.generation) return;
    const guestNick = this.guestNicks.get(s.key);
    if (!prepared && guestNick !== undefined) prepared = await kit.registration.guestLoginFor(s.user, s.server, guestNick).catch(() => null);
    if (gen !== s.generation) return;
    if (!prepared) {
      const where = s.server !== undefined && kit.addresses.multiServer ? (kit.addresses.serverJid(s.server) ?? kit.domain) : kit.domain;
      return this.failed(s, { condition: 'registration-required', text: `register with ${where} first` }, false);
    }
    s.account = prepared.account;
    s.secrets = prepared.secrets;
    s.keepAlive = kit.adapter.staysConnected?.(prepared.credentials) ?? false;
    await kit.audit.record('connecting', this.auditCtx(s));
    let legacy: LegacySession;
    try {
      legacy = await withTimeout(
        kit.clock,
        kit.adapter.login({
          userJid: s.user,
          pseudonym: kit.vault.pseudonym(s.user, kit.adapter.network),
          credentials: prepared.credentials,
          server: s.server,
          log: kit.log.child(`${kit.adapter.network}-adapter`),
          settings: prepared.settings,
          media: kit.media,
          ownAvatarUrl: () => kit.ownAvatarUrl(s.user),
          timeoutMs: kit.settings.loginTimeout,
          ...((s.syncState ?? prepared.state) !== undefined ? { state: s.syncState ?? prepared.state } : {}),
          ...(prepared.secretState ? { secretState: prepared.secretState } : {}),
        }),
        kit.settings.loginTimeout,
        (late) => void late.logout('login timed out').catch(() => undefined),
      );
    } catch (err) {
      if (gen !== s.generation) return;
      const reason = scrub(errorText(err), s.secrets);
      if (err instanceof LegacyAuthError) {
        await kit.audit.record('auth-failed', this.auditCtx(s), reason);
        return this.failed(s, { condition: 'not-authorized', text: `${kit.networkName} refused the login: ${reason}` }, false);
      }
      await kit.audit.record('error', this.auditCtx(s), reason);
      return this.failed(s, { condition: 'remote-server-timeout', text: `cannot connect to ${kit.networkName}${s.server ? ` (${s.server})` : ''}: ${reason}` }, true);
    }
    if (gen !== s.generation || s.state === 'closed' || this.stopped) {
      await legacy.logout('no longer needed').catch(() => undefined);
      return;
    }
    this.attach(s, legacy, gen);
    s.legacy = legacy;
    s.account = prepared.account ?? legacy.account ?? null;
    s.state = 'online';
    s.attempt = 0;
    s.failure = null;
    s.failureNotified = false;
    s.since = kit.clock.now();
    s.appliedPresence = null;
    await kit.audit.record('connected', this.auditCtx(s));
    kit.log.info('logged in', { network: kit.adapter.network, user: s.user, server: s.server ?? null });
    kit.send(x('presence', { from: this.speakerFor(s), to: s.user }, x('status', {}, `Connected to ${kit.networkName}${s.server ? ` (${s.server})` : ''}`)));
    this.applyOwnPresence(s.user);
    await kit.contacts.sessionOnline(s);
    await kit.rooms.sessionOnline(s);
  }

  /** Ends a failed attempt: tells the user (presence error), fails waiting room joins, and retries network failures. */
  protected failed(s: UserSession, failure: LoginFailure, retry: boolean): void {
    s.failure = failure;
    s.legacy = null;
    if (!s.failureNotified || !retry) this.notifyFailure(s, failure);
    s.failureNotified = true;
    const demanded = this.wanted(s);
    this.kit.rooms.sessionFailed(s, failure, retry && demanded && !this.stopped);
    if (retry && demanded && !this.stopped) {
      s.state = 'retrying';
      this.scheduleRetry(s);
    } else {
      s.state = 'failed';
      if (!demanded) this.forget(s);
    }
  }

  private notifyFailure(s: UserSession, failure: LoginFailure): void {
    const targets = this.resourcesOf(s.user, s.server);
    for (const to of targets.length ? targets : [s.user]) {
      this.kit.send(x('presence', { type: 'error', from: this.speakerFor(s), to }, errorElement(failure.condition, failure.text)));
    }
  }

  protected scheduleRetry(s: UserSession): void {
    if (s.retryTimer || this.stopped) return;
    const delay = backoffDelay(s.attempt++, this.kit.settings.reconnect);
    this.kit.log.debug('reconnecting later', { network: this.kit.adapter.network, user: s.user, server: s.server ?? null, delayMs: delay });
    s.retryTimer = after(this.kit.clock, delay, () => {
      s.retryTimer = null;
      if (s.state !== 'retrying') return;
      if (!this.wanted(s)) return this.forget(s);
      this.startLogin(s);
    });
  }
}
