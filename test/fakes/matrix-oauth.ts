/**
 * The OAuth 2.0 side of the fake homeserver (matrix-homeserver.ts, option `oauth`): what a
 * homeserver behind the Matrix Authentication Service offers (Matrix spec v1.15 "OAuth 2.0 API"),
 * written from the specs (RFC 7591 client registration, RFC 8628 device authorization grant,
 * RFC 6749 token endpoint and refresh tokens):
 *
 * - GET /_matrix/client/v1/auth_metadata: the server metadata (issuer, endpoints, grant types);
 * - POST /oauth2/registration (JSON client metadata; client_uri required, public clients only);
 * - POST /oauth2/device (form: client_id, scope with urn:matrix:client:api:* and exactly one
 *   urn:matrix:client:device:<id>): device_code, user_code, verification URIs, expiry, interval;
 * - POST /oauth2/token (form): the device code grant (authorization_pending until the test
 *   approves, access_denied, expired_token, slow_down when polled faster than the interval) and the
 *   refresh_token grant with rotation (a refresh token is good once; a reused or revoked one is
 *   invalid_grant).
 *
 * Access tokens are real tokens of the fake homeserver that expire after `accessTokenLifetimeMs`
 * (then 401 M_UNKNOWN_TOKEN with soft_logout: true). The test plays the user in the browser with
 * approve()/deny(), and breaks things with expireAccessTokens() and revokeRefreshTokens().
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';

export interface FakeOAuthOptions {
  /** Lifetime of access tokens (default 5 minutes). */
  accessTokenLifetimeMs?: number;
  /** Lifetime of device codes, seconds (default 600). */
  deviceCodeLifetimeS?: number;
  /** The polling interval the device authorization answer asks for, seconds (default 1). */
  intervalS?: number;
  /** Offer m.login.password besides OAuth (default false, like matrix.org). */
  passwordLogin?: boolean;
}

interface OAuthCtx {
  req: IncomingMessage;
  res: ServerResponse;
  raw: Buffer;
  body: Record<string, unknown>;
}

type Route = (method: string, pattern: string, handler: (ctx: OAuthCtx) => unknown) => void;

interface Hs {
  readonly url: string;
  issueToken(userId: string, deviceId: string, expiresInMs?: number): { accessToken: string; deviceId: string };
  revokeTokens(userIdOrToken: string, softLogout?: boolean): void;
}

interface DeviceGrant {
  deviceCode: string;
  userCode: string;
  clientId: string;
  deviceId: string;
  expiresAt: number;
  state: 'pending' | 'approved' | 'denied' | 'used';
  userId: string | null;
  lastPoll: number;
}

interface RefreshGrant {
  userId: string;
  deviceId: string;
  clientId: string;
  valid: boolean;
}

export interface OAuthRequest {
  kind: 'register' | 'device' | 'token-device' | 'token-refresh';
  ok: boolean;
  error?: string;
  at: number;
}

const API_SCOPE = 'urn:matrix:client:api:*';
const DEVICE_SCOPE = 'urn:matrix:client:device:';
const DEVICE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';

export class FakeOAuth {
  readonly clients = new Map<string, Record<string, unknown>>();
  private readonly grants = new Map<string, DeviceGrant>();
  private readonly refreshTokens = new Map<string, RefreshGrant>();
  private readonly accessTokens: { token: string; userId: string }[] = [];
  /** Every OAuth request, in order (what the tests check). */
  readonly log: OAuthRequest[] = [];
  private readonly waiters: { pred: (r: OAuthRequest) => boolean; resolve: (r: OAuthRequest) => void }[] = [];
  private readonly grantWaiters: ((g: { userCode: string; deviceId: string }) => void)[] = [];
  private readonly opts: Required<FakeOAuthOptions>;

  constructor(
    private readonly hs: Hs,
    opts: FakeOAuthOptions,
    route: Route,
  ) {
    this.opts = { accessTokenLifetimeMs: 5 * 60_000, deviceCodeLifetimeS: 600, intervalS: 1, passwordLogin: false, ...opts };
    route('GET', '/_matrix/client/v1/auth_metadata', () => this.metadata());
    route('POST', '/oauth2/registration', (ctx) => this.register(ctx));
    route('POST', '/oauth2/device', (ctx) => this.device(ctx));
    route('POST', '/oauth2/token', (ctx) => this.token(ctx));
  }

  // ---------------------------------------------------------------- test side

  /** Waits until a client started a device login; its user code and device ID. */
  nextDeviceLogin(): Promise<{ userCode: string; deviceId: string }> {
    const pending = [...this.grants.values()].find((g) => g.state === 'pending' && !(g as { seen?: boolean }).seen);
    if (pending) {
      (pending as { seen?: boolean }).seen = true;
      return Promise.resolve({ userCode: pending.userCode, deviceId: pending.deviceId });
    }
    return new Promise((resolve) => this.grantWaiters.push(resolve));
  }

  /** The user approves the login with this user code in the browser, as `userId`. */
  approve(userCode: string, userId: string): void {
    const g = [...this.grants.values()].find((x) => x.userCode === userCode);
    if (!g) throw new Error(`no device login with code ${userCode}`);
    g.state = 'approved';
    g.userId = userId;
  }

  deny(userCode: string): void {
    const g = [...this.grants.values()].find((x) => x.userCode === userCode);
    if (!g) throw new Error(`no device login with code ${userCode}`);
    g.state = 'denied';
  }

  /** Expires every access token of the user now (the next request: 401 M_UNKNOWN_TOKEN, soft_logout). */
  expireAccessTokens(userId: string): void {
    for (const t of this.accessTokens) if (t.userId === userId) this.hs.revokeTokens(t.token, true);
  }

  /** Revokes the user's refresh tokens (the session was ended at the authorization server). */
  revokeRefreshTokens(userId: string): void {
    for (const g of this.refreshTokens.values()) if (g.userId === userId) g.valid = false;
  }

  /** Access and refresh tokens ever issued (to look for them in logs and databases). */
  issuedTokens(): string[] {
    return [...this.accessTokens.map((t) => t.token), ...this.refreshTokens.keys()];
  }

  waitFor(pred: (r: OAuthRequest) => boolean): Promise<OAuthRequest> {
    const seen = this.log.find(pred);
    if (seen) return Promise.resolve(seen);
    return new Promise((resolve) => this.waiters.push({ pred, resolve }));
  }

  // ---------------------------------------------------------------- endpoints

  private note(kind: OAuthRequest['kind'], ok: boolean, error?: string): void {
    const r: OAuthRequest = { kind, ok, at: Date.now(), ...(error ? { error } : {}) };
    this.log.push(r);
    for (const w of [...this.waiters]) {
      if (w.pred(r)) {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(r);
      }
    }
  }

  private answer(ctx: OAuthCtx, status: number, body: unknown): undefined {
    const text = JSON.stringify(body);
    ctx.res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', 'Content-Length': Buffer.byteLength(text) });
    ctx.res.end(text);
    return undefined;
  }

  private fail(ctx: OAuthCtx, kind: OAuthRequest['kind'], error: string, description: string, status = 400): undefined {
    this.note(kind, false, error);
    return this.answer(ctx, status, { error, error_description: description });
  }

  private form(ctx: OAuthCtx): URLSearchParams | null {
    const type = String(ctx.req.headers['content-type'] ?? '');
    if (!type.startsWith('application/x-www-form-urlencoded')) return null;
    return new URLSearchParams(ctx.raw.toString('utf8'));
  }

  private metadata(): Record<string, unknown> {
    const base = this.hs.url;
    return {
      issuer: `${base}/`,
      authorization_endpoint: `${base}/oauth2/authorize`,
      token_endpoint: `${base}/oauth2/token`,
      registration_endpoint: `${base}/oauth2/registration`,
      device_authorization_endpoint: `${base}/oauth2/device`,
      revocation_endpoint: `${base}/oauth2/revoke`,
      response_types_supported: ['code'],
      response_modes_supported: ['query', 'fragment'],
      grant_types_supported: ['authorization_code', 'refresh_token', DEVICE_GRANT],
      code_challenge_methods_supported: ['S256'],
      prompt_values_supported: ['create'],
    };
  }

  private register(ctx: OAuthCtx): unknown {
    const b = ctx.body;
    if (typeof b.client_uri !== 'string' || !/^https:\/\//.test(b.client_uri)) return this.fail(ctx, 'register', 'invalid_client_metadata', 'client_uri must be an https URL');
    const grants = Array.isArray(b.grant_types) ? b.grant_types : ['authorization_code'];
    if (grants.includes('authorization_code') && !Array.isArray(b.redirect_uris)) return this.fail(ctx, 'register', 'invalid_redirect_uri', 'redirect_uris are required for authorization_code');
    if (b.token_endpoint_auth_method !== 'none') return this.fail(ctx, 'register', 'invalid_client_metadata', 'only public clients');
    const clientId = `01CLIENT${randomBytes(6).toString('hex').toUpperCase()}`;
    const client = { ...b, client_id: clientId, client_id_issued_at: Math.floor(Date.now() / 1000) };
    this.clients.set(clientId, client);
    this.note('register', true);
    return this.answer(ctx, 201, client);
  }

  private device(ctx: OAuthCtx): unknown {
    const f = this.form(ctx);
    if (!f) return this.fail(ctx, 'device', 'invalid_request', 'form-encoded body expected');
    const clientId = f.get('client_id') ?? '';
    const client = this.clients.get(clientId);
    if (!client) return this.fail(ctx, 'device', 'invalid_client', 'unknown client', 401);
    if (!(client.grant_types as string[] | undefined)?.includes(DEVICE_GRANT)) return this.fail(ctx, 'device', 'unauthorized_client', 'the client did not register for the device grant');
    const scopes = (f.get('scope') ?? '').split(' ').filter(Boolean);
    const devices = scopes.filter((s) => s.startsWith(DEVICE_SCOPE));
    if (!scopes.includes(API_SCOPE) || devices.length !== 1) return this.fail(ctx, 'device', 'invalid_scope', 'the scope must hold the client API scope and one device scope');
    const deviceId = devices[0]!.slice(DEVICE_SCOPE.length);
    if (!/^[A-Za-z0-9-]{10,}$/.test(deviceId)) return this.fail(ctx, 'device', 'invalid_scope', 'invalid device ID');
    const letters = randomBytes(8).toString('hex').toUpperCase().replace(/[^A-Z]/g, 'K');
    const grant: DeviceGrant = {
      deviceCode: randomBytes(24).toString('base64url'),
      userCode: `${letters.slice(0, 4)}-${letters.slice(4, 8)}`,
      clientId,
      deviceId,
      expiresAt: Date.now() + this.opts.deviceCodeLifetimeS * 1000,
      state: 'pending',
      userId: null,
      lastPoll: 0,
    };
    this.grants.set(grant.deviceCode, grant);
    this.note('device', true);
    const w = this.grantWaiters.shift();
    if (w) {
      (grant as { seen?: boolean }).seen = true;
      w({ userCode: grant.userCode, deviceId });
    }
    return this.answer(ctx, 200, {
      device_code: grant.deviceCode,
      user_code: grant.userCode,
      verification_uri: `${this.hs.url}/link`,
      verification_uri_complete: `${this.hs.url}/link?code=${grant.userCode}`,
      expires_in: this.opts.deviceCodeLifetimeS,
      interval: this.opts.intervalS,
    });
  }

  private issue(userId: string, deviceId: string, clientId: string): Record<string, unknown> {
    const { accessToken } = this.hs.issueToken(userId, deviceId, this.opts.accessTokenLifetimeMs);
    this.accessTokens.push({ token: accessToken, userId });
    const refresh = `mar_${randomBytes(18).toString('base64url')}`;
    this.refreshTokens.set(refresh, { userId, deviceId, clientId, valid: true });
    return { access_token: accessToken, token_type: 'Bearer', expires_in: Math.round(this.opts.accessTokenLifetimeMs / 1000), refresh_token: refresh, scope: `${API_SCOPE} ${DEVICE_SCOPE}${deviceId}` };
  }

  private token(ctx: OAuthCtx): unknown {
    const f = this.form(ctx);
    const grantType = f?.get('grant_type');
    const kind = grantType === 'refresh_token' ? 'token-refresh' : 'token-device';
    if (!f) return this.fail(ctx, kind, 'invalid_request', 'form-encoded body expected');
    const clientId = f.get('client_id') ?? '';
    if (!this.clients.has(clientId)) return this.fail(ctx, kind, 'invalid_client', 'unknown client', 401);
    if (grantType === DEVICE_GRANT) {
      const g = this.grants.get(f.get('device_code') ?? '');
      if (!g || g.clientId !== clientId || g.state === 'used') return this.fail(ctx, kind, 'invalid_grant', 'unknown device code');
      if (Date.now() > g.expiresAt) return this.fail(ctx, kind, 'expired_token', 'the device code expired');
      if (g.state === 'denied') return this.fail(ctx, kind, 'access_denied', 'the user denied the login');
      const now = Date.now();
      const tooSoon = g.lastPoll > 0 && now - g.lastPoll < this.opts.intervalS * 1000 - 50;
      g.lastPoll = now;
      if (tooSoon) return this.fail(ctx, kind, 'slow_down', 'polling too fast');
      if (g.state === 'pending') return this.fail(ctx, kind, 'authorization_pending', 'waiting for the user');
      g.state = 'used';
      this.note(kind, true);
      return this.answer(ctx, 200, this.issue(g.userId!, g.deviceId, clientId));
    }
    if (grantType === 'refresh_token') {
      const token = f.get('refresh_token') ?? '';
      const r = this.refreshTokens.get(token);
      if (!r || !r.valid || r.clientId !== clientId) return this.fail(ctx, kind, 'invalid_grant', 'the refresh token is not valid');
      // Rotation: the old refresh token is spent.
      r.valid = false;
      this.note(kind, true);
      return this.answer(ctx, 200, this.issue(r.userId, r.deviceId, clientId));
    }
    return this.fail(ctx, 'token-device', 'unsupported_grant_type', 'unsupported grant type');
  }
}
