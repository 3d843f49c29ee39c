/**
 * The tokens of one OAuth 2.0 session (oauth.ts): renews the access token before it expires (at
 * the latest a fifth of its lifetime, at most a minute, before), and when the homeserver says it is
 * no longer valid (401 M_UNKNOWN_TOKEN, soft logout: matrix-js-sdk calls `sdkRefresh` and retries
 * the request). One refresh runs at a time: with rotation, a refresh token is good for one use.
 *
 * Events: 'refreshed' after each renewal (the kit then stores the new tokens in the vault);
 * 'failed' with a user-facing reason when the server refused the refresh token (revoked, expired),
 * which ends the session. A refresh that fails because the server cannot be reached is retried.
 */
import { EventEmitter } from 'node:events';
import { TokenRefreshLogoutError, type AccessTokens } from 'matrix-js-sdk';
import { LegacyAuthError, type AdapterLogger } from '../kit/adapter.js';
import { refreshTokens, type OAuthTokens } from './oauth.js';

const MAX_LEAD_MS = 60_000;
const RETRY_MS = 5_000;

export interface TokenKeeperEvents {
  refreshed: [];
  failed: [reason: string];
}

export class TokenKeeper extends EventEmitter<TokenKeeperEvents> {
  private tokens: OAuthTokens;
  private inFlight: Promise<OAuthTokens> | null = null;
  private timer: NodeJS.Timeout | null = null;
  private stopped = false;
  /** Called with each new access token (the session's client starts using it). */
  onToken: (tokens: OAuthTokens) => void = () => undefined;

  constructor(
    private readonly fetchFn: typeof fetch,
    readonly tokenEndpoint: string,
    readonly clientId: string,
    tokens: OAuthTokens,
    private readonly log: AdapterLogger,
    private readonly host: string,
  ) {
    super();
    this.tokens = tokens;
  }

  get current(): OAuthTokens {
    return this.tokens;
  }

  /** Starts the renewal timer. */
  start(): void {
    this.stopped = false;
    this.schedule();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
  }

  private schedule(delay?: number): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.stopped) return;
    const { expiresAt } = this.tokens;
    if (delay === undefined) {
      if (expiresAt === null || !this.tokens.refreshToken) return;
      const left = expiresAt - Date.now();
      delay = Math.max(0, left - Math.min(MAX_LEAD_MS, Math.floor(left / 5)));
    }
    this.timer = setTimeout(() => {
      this.timer = null;
      this.refresh().catch(() => undefined);
    }, delay);
    this.timer.unref();
  }

  /** Renews the tokens (or joins the renewal in progress). */
  refresh(): Promise<OAuthTokens> {
    if (this.inFlight) return this.inFlight;
    const run = async (): Promise<OAuthTokens> => {
      const refreshToken = this.tokens.refreshToken;
      if (!refreshToken) throw new LegacyAuthError('the access token expired and there is no refresh token to renew it');
      try {
        const next = await refreshTokens(this.fetchFn, this.tokenEndpoint, this.clientId, refreshToken);
        if (this.stopped) return next;
        this.tokens = next;
        this.log.info('matrix access token renewed', { homeserver: this.host, expiresInS: next.expiresAt ? Math.round((next.expiresAt - Date.now()) / 1000) : null });
        this.onToken(next);
        this.emit('refreshed');
        this.schedule();
        return next;
      } catch (err) {
        const reason = err instanceof Error ? err.message : 'the refresh failed';
        if (err instanceof LegacyAuthError) {
          this.log.info('matrix access token renewal refused', { homeserver: this.host, reason });
          this.stop();
          this.emit('failed', `the Matrix login could not be renewed: ${reason}; register again to log in`);
        } else {
          this.log.info('matrix access token renewal failed; retrying', { homeserver: this.host, reason });
          this.schedule(RETRY_MS);
        }
        throw err;
      }
    };
    this.inFlight = run().finally(() => {
      this.inFlight = null;
    });
    return this.inFlight;
  }

  /**
   * For matrix-js-sdk's `tokenRefreshFunction`: no expiry is passed back, so the SDK never decides
   * by itself that a soft-logged-out token is final; this keeper owns the schedule.
   */
  readonly sdkRefresh = async (): Promise<AccessTokens> => {
    try {
      const t = await this.refresh();
      return { accessToken: t.accessToken, ...(t.refreshToken ? { refreshToken: t.refreshToken } : {}) };
    } catch (err) {
      if (err instanceof LegacyAuthError) throw new TokenRefreshLogoutError(err);
      throw err;
    }
  };
}
