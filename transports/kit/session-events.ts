/**
 * What a logged-in foreign session reports, on top of session-login.ts: its events passed on to
 * the kit's contacts and rooms (ignored once the connection they came from is gone), its sync
 * state stored once per burst, and a dropped connection, which reconnects with backoff (or, when
 * the adapter says it is final, fails like a refused login).
 */
import type { LegacySession, LegacySessionEvents } from './adapter.js';
import { errorText } from './context.js';
import { scrub } from './audit-log.js';
import { after } from '../../shared/clock.js';
import { x } from '../../shared/xml/element.js';
import type { UserSession } from './user-session.js';
import { SessionLogin } from './session-login.js';

/** How long a new sync state may wait before it is stored (the adapter reports one per sync). */
const SYNC_STATE_DELAY = 5000;

export abstract class SessionEvents extends SessionLogin {
  private gatewayMessages = 0;

  protected attach(s: UserSession, legacy: LegacySession, gen: number): void {
    const { kit } = this;
    const on = <K extends keyof LegacySessionEvents>(event: K, fn: (...args: LegacySessionEvents[K]) => unknown) => {
      legacy.on(event, ((...args: LegacySessionEvents[K]) => {
        if (gen !== s.generation || s.legacy !== legacy) return;
        try {
          const r = fn(...args);
          if (r instanceof Promise) r.catch((err) => kit.log.error('event handling failed', { network: kit.adapter.network, event, error: errorText(err) }));
        } catch (err) {
          kit.log.error('event handling failed', { network: kit.adapter.network, event, error: errorText(err) });
        }
      }) as never);
    };
    on('message', (from, msg) => kit.contacts.legacyMessage(s, from, msg));
    on('contactPresence', (contact, show, status) => kit.contacts.legacyPresence(s, contact, show, status));
    on('typing', (from, state) => ('room' in from ? kit.rooms.typing(s, from.room, from.nick, state) : kit.contacts.legacyTyping(s, from, state)));
    on('serverMessage', (server, msg) => kit.contacts.serverMessage(s, server, msg));
    on('roster', (contacts) => kit.contacts.legacyRoster(s, contacts));
    on('roomJoined', (room, ownNick, occupants, subject, history) => kit.rooms.joined(s, room, ownNick, occupants, subject, history));
    on('roomJoinFailed', (room, reason, condition) => kit.rooms.joinFailed(s, room, reason, condition));
    on('occupantJoined', (room, occupant) => kit.rooms.occupantJoined(s, room, occupant));
    on('occupantLeft', (room, nick, reason, kickedBy) => kit.rooms.occupantLeft(s, room, nick, reason, kickedBy));
    on('occupantChanged', (room, occupant) => kit.rooms.occupantChanged(s, room, occupant));
    on('nickChanged', (room, oldNick, newNick) => kit.rooms.nickChanged(s, room, oldNick, newNick));
    on('subject', (room, subject, by) => kit.rooms.subject(s, room, subject, by));
    on('roomMessage', (room, nick, msg) => kit.rooms.message(s, room, nick, msg));
    // The login's own 'connected' row is written when login() resolves; the first event after it
    // (adapters that announce the initial connection too) is part of that, later ones are an
    // adapter re-establishing the connection on its own.
    let announced = false;
    on('displayed', (from, messageId) => ('room' in from ? kit.rooms.displayed(s, from.room, from.nick, messageId) : kit.contacts.legacyDisplayed(s, from, messageId)));
    on('invited', (room, by, reason) => kit.contacts.legacyInvited(s, room, by, reason));
    on('directoryChanged', () => kit.roomDirectory.forget(s.user, s.server));
    on('syncState', (state) => this.noteSyncState(s, state));
    on('credentials', (fields) => this.storeCredentials(s, fields));
    on('secretState', (data) => this.noteSecretState(s, data));
    on('gatewayMessage', (text) => kit.send(x('message', { from: kit.domain, to: s.user, type: 'chat', id: `gw-${Date.now().toString(36)}-${++this.gatewayMessages}` }, x('body', {}, text))));
    on('connected', (server, account) => {
      if (!announced) {
        announced = true;
        return;
      }
      if (s.state !== 'online') return;
      return kit.audit.record('connected', { ...this.auditCtx(s), server: server || s.server || null, account: account || s.account });
    });
    on('disconnected', (reason, final) => this.disconnected(s, reason, final));
  }

  /** The adapter's position in its event stream: kept, and stored a few seconds later (once per burst). */
  private noteSyncState(s: UserSession, state: string): void {
    if (typeof state !== 'string') return;
    s.syncState = state;
    if (s.syncTimer) return;
    s.syncTimer = after(this.kit.clock, SYNC_STATE_DELAY, () => void this.flushSyncState(s));
  }

  protected async flushSyncState(s: UserSession): Promise<void> {
    s.syncTimer?.cancel();
    s.syncTimer = null;
    if (s.syncState === undefined) return;
    try {
      await this.kit.registration.saveSyncState(s.user, s.server, s.syncState);
    } catch (err) {
      this.kit.log.warn('cannot store the sync state', { network: this.kit.adapter.network, error: errorText(err) });
    }
  }

  /** The adapter's secret state: stored at once (the latest one, one write at a time). */
  private noteSecretState(s: UserSession, data: Uint8Array): void {
    if (!(data instanceof Uint8Array) || s.erasing) return;
    s.secretState = data;
    void this.writeSecretState(s);
  }

  private async writeSecretState(s: UserSession): Promise<void> {
    if (s.secretWriting) return;
    s.secretWriting = true;
    try {
      while (s.secretState && !s.erasing) {
        const data = s.secretState;
        s.secretState = null;
        try {
          if (!(await this.kit.registration.saveSecretState(s.user, s.server, data))) s.secretState ??= data;
          if (s.secretState === data) break; // no registration yet: kept until the session is adopted
        } catch (err) {
          this.kit.log.warn('cannot store the secret state', { network: this.kit.adapter.network, user: s.user, error: errorText(err) });
          break;
        }
      }
    } finally {
      s.secretWriting = false;
    }
  }

  /**
   * Stores the session's final secret state (after logout or a lost connection), unless a newer
   * session of the same registration has taken over or the registration is being removed.
   */
  protected async flushSecretState(s: UserSession, legacy: LegacySession): Promise<void> {
    if (!legacy.secretState || s.erasing) return;
    try {
      const data = await legacy.secretState();
      if (!data || s.erasing || this.isReplaced(s)) return;
      s.secretState = data;
      await this.writeSecretState(s);
      // A write under way when this one came: wait for it to take the latest state too.
      while (s.secretWriting) await new Promise((resolve) => setTimeout(resolve, 20));
    } catch (err) {
      this.kit.log.warn('cannot store the secret state', { network: this.kit.adapter.network, user: s.user, error: errorText(err) });
    }
  }

  /** Whether another session of the same user and server is the current one. */
  private isReplaced(s: UserSession): boolean {
    const current = this.sessions.get(s.key);
    return current !== undefined && current !== s;
  }

  private async storeCredentials(s: UserSession, fields: Record<string, string>): Promise<void> {
    const { kit } = this;
    s.secrets = [...new Set([...s.secrets, ...kit.registration.secretsOf(fields)])];
    let stored = false;
    try {
      stored = await kit.registration.updateStoredCredentials(s.user, s.server, fields);
    } catch (err) {
      kit.log.warn('cannot store renewed credentials', { network: kit.adapter.network, user: s.user, error: errorText(err) });
      return;
    }
    if (!stored) kit.log.warn('renewed credentials not stored: no registration', { network: kit.adapter.network, user: s.user });
  }

  private async disconnected(s: UserSession, reason: string, final: boolean): Promise<void> {
    const { kit } = this;
    const text = scrub(reason, s.secrets);
    const legacy = s.legacy;
    s.legacy = null;
    s.generation++;
    await this.flushSyncState(s);
    if (legacy) await this.flushSecretState(s, legacy);
    await kit.audit.record('disconnected', this.auditCtx(s), text);
    kit.log.info('foreign connection lost', { network: kit.adapter.network, user: s.user, server: s.server ?? null, final });
    kit.rooms.connectionLost(s);
    kit.contacts.connectionLost(s);
    if (final) {
      await kit.audit.record('auth-failed', this.auditCtx(s), text);
      return this.failed(s, { condition: 'not-authorized', text: `${kit.networkName} ended the session: ${text}` }, false);
    }
    if (!this.wanted(s)) return this.forget(s);
    s.state = 'retrying';
    s.failureNotified = false;
    this.scheduleRetry(s);
  }
}
