/**
 * OAuth 2.0 login (Matrix spec v1.15, "OAuth 2.0 API"; the Matrix Authentication Service on
 * matrix.org) for a user who sits at an XMPP client, not at a browser on the gateway's machine:
 *
 * - server metadata from GET /_matrix/client/v1/auth_metadata (its presence is what makes the
 *   adapter choose OAuth over m.login.password);
 * - dynamic client registration (RFC 7591) of the gateway as a public native client
 *   (token_endpoint_auth_method none) with the device code and refresh token grants;
 * - the device authorization grant (RFC 8628): the user is sent the verification URI and user
 *   code, approves in any browser, and the gateway polls the token endpoint (honouring
 *   `interval`, `slow_down`, `authorization_pending`, `expired_token`, `access_denied`);
 * - the scopes `urn:matrix:client:api:*` and `urn:matrix:client:device:<device ID>` (the gateway
 *   picks the device ID, so a later login names the same device);
 * - refresh (grant_type=refresh_token) with rotation: every refresh may return a new refresh token,
 *   which replaces the old one in the vault.
 *
 * PKCE belongs to the authorization code flow and is not used here. Tokens are never logged and
 * never part of an error text; error texts carry the server's `error` code and description only.
 */
import { randomBytes } from 'node:crypto';
import { LegacyAuthError, LegacyNetworkError } from '../kit/adapter.js';

export const DEVICE_CODE_GRANT = 'urn:ietf:params:oauth:grant-type:device_code';
export const API_SCOPE = 'urn:matrix:client:api:*';
export const DEVICE_SCOPE_PREFIX = 'urn:matrix:client:device:';

/** The parts of the authorization server metadata the gateway uses. */
export interface AuthMetadata {
  issuer: string;
  token_endpoint: string;
  registration_endpoint?: string;
  device_authorization_endpoint?: string;
  revocation_endpoint?: string;
  grant_types_supported?: string[];
}

export interface OAuthTokens {
  accessToken: string;
  refreshToken: string | null;
  /** When the access token expires (ms since the epoch), if the server said. */
  expiresAt: number | null;
}

/** What the user must do in the browser. */
export interface DeviceAuthorization {
  deviceCode: string;
  userCode: string;
  verificationUri: string;
  verificationUriComplete: string | null;
  expiresIn: number;
  interval: number;
}

/** An OAuth error response (RFC 6749 §5.2): `error` and an optional description. */
export class OAuthError extends Error {
  constructor(
    readonly error: string,
    readonly status: number,
    description: string | null,
  ) {
    super(`${error}${description ? `: ${description.replace(/\s+/g, ' ').slice(0, 200)}` : ''}`);
  }
}

/** A device ID the gateway chooses (MAS: at least 10 characters of A-Z a-z 0-9 -). */
export function newDeviceId(): string {
  return `GATEHOUSE${randomBytes(6).toString('hex').toUpperCase()}`;
}

export function scopeFor(deviceId: string): string {
  return `${API_SCOPE} ${DEVICE_SCOPE_PREFIX}${deviceId}`;
}

async function readJson(res: Response): Promise<unknown> {
  const text = await res.text();
  try {
    return text ? JSON.parse(text) : undefined;
  } catch {
    return undefined;
  }
}

function unreachable(host: string, err: unknown): LegacyNetworkError {
  const name = (err as { name?: string } | null)?.name;
  return new LegacyNetworkError(name === 'TimeoutError' || name === 'AbortError' ? `${host} did not answer in time` : `cannot reach ${host}`);
}

/** The homeserver's OAuth 2.0 server metadata, or null when it offers none (404 / M_UNRECOGNIZED). */
export async function fetchAuthMetadata(fetchFn: typeof fetch, baseUrl: string): Promise<AuthMetadata | null> {
  const host = new URL(baseUrl).host;
  let res: Response;
  try {
    res = await fetchFn(`${baseUrl}/_matrix/client/v1/auth_metadata`, { headers: { Accept: 'application/json' } });
  } catch (err) {
    throw unreachable(host, err);
  }
  const body = (await readJson(res)) as Record<string, unknown> | undefined;
  if (res.status === 404 || res.status === 405 || body?.errcode === 'M_UNRECOGNIZED') return null;
  if (res.status !== 200 || !body || typeof body !== 'object') throw new LegacyNetworkError(`${host} answered the OAuth metadata request with HTTP ${res.status}`);
  if (typeof body.issuer !== 'string' || typeof body.token_endpoint !== 'string') throw new LegacyNetworkError(`${host} offers OAuth 2.0 but its metadata lacks the issuer or token endpoint`);
  return body as unknown as AuthMetadata;
}

async function post(fetchFn: typeof fetch, url: string, body: URLSearchParams | Record<string, unknown>): Promise<{ status: number; body: Record<string, unknown> }> {
  const json = !(body instanceof URLSearchParams);
  let res: Response;
  try {
    res = await fetchFn(url, {
      method: 'POST',
      headers: { Accept: 'application/json', 'Content-Type': json ? 'application/json' : 'application/x-www-form-urlencoded' },
      body: json ? JSON.stringify(body) : body.toString(),
    });
  } catch (err) {
    throw unreachable(new URL(url).host, err);
  }
  const parsed = await readJson(res);
  const obj = parsed && typeof parsed === 'object' && !Array.isArray(parsed) ? (parsed as Record<string, unknown>) : {};
  if (res.status >= 400) {
    if (typeof obj.error === 'string') throw new OAuthError(obj.error, res.status, typeof obj.error_description === 'string' ? obj.error_description : null);
    throw new OAuthError('server_error', res.status, `HTTP ${res.status}`);
  }
  return { status: res.status, body: obj };
}

/** Client metadata of the gateway (RFC 7591), as a public native client using the device grant. */
export interface ClientInfo {
  clientName: string;
  clientUri: string;
}

/** Registers the gateway as a client; returns the client ID. */
export async function registerClient(fetchFn: typeof fetch, meta: AuthMetadata, info: ClientInfo): Promise<string> {
  if (!meta.registration_endpoint) throw new LegacyAuthError(`${new URL(meta.issuer).host} does not allow clients to register (no registration_endpoint)`);
  let got;
  try {
    got = await post(fetchFn, meta.registration_endpoint, {
      client_name: info.clientName,
      client_uri: info.clientUri,
      application_type: 'native',
      grant_types: [DEVICE_CODE_GRANT, 'refresh_token'],
      response_types: [],
      token_endpoint_auth_method: 'none',
    });
  } catch (err) {
    if (err instanceof OAuthError) throw new LegacyAuthError(`the homeserver's login service refused to register the gateway: ${err.message}`);
    throw err;
  }
  if (typeof got.body.client_id !== 'string') throw new LegacyNetworkError('the client registration answer has no client_id');
  return got.body.client_id;
}

/** Starts a device authorization (RFC 8628 §3.1–3.2). */
export async function startDeviceAuthorization(fetchFn: typeof fetch, meta: AuthMetadata, clientId: string, deviceId: string): Promise<DeviceAuthorization> {
  if (!meta.device_authorization_endpoint) throw new LegacyAuthError('the homeserver\'s login service does not offer the device authorization grant, which the gateway needs');
  let got;
  try {
    got = await post(fetchFn, meta.device_authorization_endpoint, new URLSearchParams({ client_id: clientId, scope: scopeFor(deviceId) }));
  } catch (err) {
    if (err instanceof OAuthError) throw new LegacyAuthError(`the homeserver's login service refused the device login: ${err.message}`);
    throw err;
  }
  const b = got.body;
  if (typeof b.device_code !== 'string' || typeof b.user_code !== 'string' || typeof b.verification_uri !== 'string') {
    throw new LegacyNetworkError('the device authorization answer lacks device_code, user_code or verification_uri');
  }
  return {
    deviceCode: b.device_code,
    userCode: b.user_code,
    verificationUri: b.verification_uri,
    verificationUriComplete: typeof b.verification_uri_complete === 'string' ? b.verification_uri_complete : null,
    expiresIn: typeof b.expires_in === 'number' && b.expires_in > 0 ? b.expires_in : 600,
    interval: typeof b.interval === 'number' && b.interval > 0 ? b.interval : 5,
  };
}

function tokensOf(body: Record<string, unknown>, now: number): OAuthTokens {
  if (typeof body.access_token !== 'string' || !body.access_token) throw new LegacyNetworkError('the token answer has no access_token');
  return {
    accessToken: body.access_token,
    refreshToken: typeof body.refresh_token === 'string' && body.refresh_token ? body.refresh_token : null,
    expiresAt: typeof body.expires_in === 'number' && body.expires_in > 0 ? now + body.expires_in * 1000 : null,
  };
}

export interface PollOptions {
  /** Floor of the polling interval in ms (tests); the server's interval applies above it. */
  minIntervalMs?: number;
  /** Stops polling (the login was abandoned). */
  signal?: AbortSignal;
}

/**
 * Polls the token endpoint until the user approved (tokens), denied, or the code expired (RFC 8628
 * §3.4–3.5). `slow_down` adds 5 seconds to the interval, as the RFC asks.
 */
export async function pollDeviceToken(fetchFn: typeof fetch, meta: AuthMetadata, clientId: string, auth: DeviceAuthorization, opts: PollOptions = {}): Promise<OAuthTokens> {
  const deadline = Date.now() + auth.expiresIn * 1000;
  let interval = Math.max(auth.interval * 1000, opts.minIntervalMs ?? 0);
  for (;;) {
    await wait(interval, opts.signal);
    if (opts.signal?.aborted) throw new LegacyAuthError('the login was abandoned');
    try {
      const got = await post(fetchFn, meta.token_endpoint, new URLSearchParams({ grant_type: DEVICE_CODE_GRANT, device_code: auth.deviceCode, client_id: clientId }));
      return tokensOf(got.body, Date.now());
    } catch (err) {
      if (!(err instanceof OAuthError)) {
        if (Date.now() > deadline) throw err;
        continue;
      }
      if (err.error === 'authorization_pending') {
        if (Date.now() > deadline) throw new LegacyAuthError('the login code expired before it was approved; register again for a new code');
        continue;
      }
      if (err.error === 'slow_down') {
        interval += 5000;
        continue;
      }
      if (err.error === 'expired_token') throw new LegacyAuthError('the login code expired before it was approved; register again for a new code');
      if (err.error === 'access_denied') throw new LegacyAuthError('the login was denied in the browser');
      throw new LegacyAuthError(`the homeserver's login service refused the login: ${err.message}`);
    }
  }
}

function wait(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(done, ms);
    t.unref();
    function done() {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

/**
 * Exchanges a refresh token for new tokens. A refused refresh (invalid_grant: revoked, expired or
 * already used) is a LegacyAuthError; a failure to reach the server a LegacyNetworkError.
 */
export async function refreshTokens(fetchFn: typeof fetch, tokenEndpoint: string, clientId: string, refreshToken: string): Promise<OAuthTokens> {
  let got;
  try {
    got = await post(fetchFn, tokenEndpoint, new URLSearchParams({ grant_type: 'refresh_token', refresh_token: refreshToken, client_id: clientId }));
  } catch (err) {
    if (err instanceof OAuthError && err.status < 500) throw new LegacyAuthError(`the homeserver refused to renew the login (${err.message})`);
    if (err instanceof OAuthError) throw new LegacyNetworkError(`the homeserver's login service failed (${err.message})`);
    throw err;
  }
  const tokens = tokensOf(got.body, Date.now());
  // Without rotation the old refresh token stays valid.
  return { ...tokens, refreshToken: tokens.refreshToken ?? refreshToken };
}
