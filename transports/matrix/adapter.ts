/**
 * The Matrix network adapter (matrix-js-sdk): one LegacySession per user and Matrix account.
 *
 * Addresses are the kit's business: contacts are Matrix user IDs (`@alice:example.org`), rooms
 * room IDs (`!abc:example.org`) or aliases (`#room:example.org`), escaped into JID localparts
 * with XEP-0106 by the kit; `isRoomId` tells them apart (rooms start with ! or #).
 *
 * Registration (settings.ts): Matrix user ID, homeserver (a server name resolved through its
 * .well-known file, discovery.ts, or the API URL; empty: the user ID's server), and a password,
 * an access token, or neither. The login is chosen from what the homeserver offers: a password
 * goes to POST /login when GET /login lists m.login.password (a new device named "Gatehouse XMPP
 * gateway"; the password is never stored); without a password (or where only OAuth 2.0 is
 * offered: GET /_matrix/client/v1/auth_metadata answers) the OAuth 2.0 device authorization
 * grant runs (oauth.ts): the user gets a link and code through LoginRequest.prompt and approves
 * in a browser, and the session's tokens are renewed by tokens.ts. credentialsToStore keeps the
 * user ID, the resolved base URL, the access token and device ID, and for OAuth the refresh
 * token, client ID and expiry. Every later login uses the stored token (GET /account/whoami
 * checks it and that it belongs to the user ID given; an expired OAuth token is renewed first).
 * A wrong password (403 M_FORBIDDEN), an invalid token (401 M_UNKNOWN_TOKEN), a denied or
 * expired browser login, or a token of another user reject the login with LegacyAuthError; an
 * unreachable server or one that is not a Matrix homeserver with LegacyNetworkError.
 *
 * Security: plain http:// homeservers are refused except on loopback addresses (unless the
 * operator sets `allowInsecureHttp`), since the password and token would cross the network in
 * clear; `allowedHomeservers` restricts which homeservers users may name at all (a gateway that
 * connects anywhere makes requests on users' behalf, possibly to internal addresses).
 *
 * Media are re-hosted on the XMPP server's upload service (messages.ts); without one they arrive
 * as links to the homeserver. End-to-end encryption: crypto.ts (the session's Rust crypto and its
 * sealed store), messages.ts (decrypting and encrypting), attachments.ts (encrypted files).
 */
import type { Credentials, LegacySession, LoginRequest, NetworkAdapter } from '../kit/adapter.js';
import { LegacyAuthError, LegacyNetworkError } from '../kit/adapter.js';
import * as sdk from 'matrix-js-sdk';
import { describe, errcodeOf, httpStatusOf, isTokenError } from './errors.js';
import { RECOVERY_COMMAND } from './trust.js';
import { MatrixSession } from './session.js';
import { timedFetch, withoutSdkTimers } from './sdk.js';
import { DEFAULT_MATRIX_OPTIONS, MATRIX_REGISTRATION_FIELDS, MATRIX_SETTINGS_FIELDS, isLoopback, settingOn, parseCredentials, type MatrixCredentials, type MatrixSessionOptions } from './settings.js';
import { checkVersions, discoverHomeserver, isServerName } from './discovery.js';
import { fetchAuthMetadata, newDeviceId, pollDeviceToken, registerClient, startDeviceAuthorization, type AuthMetadata } from './oauth.js';
import { TokenKeeper } from './tokens.js';

export interface MatrixAdapterOptions extends Partial<MatrixSessionOptions> {
  /** Shown in disco (default "Matrix gateway"). */
  name?: string;
  /** Allow http:// homeservers that are not on a loopback address (default false). */
  allowInsecureHttp?: boolean;
  /** Homeserver URLs or host names users may register with (default: any). */
  allowedHomeservers?: string[];
  /** A further check of the homeserver URL (e.g. refusing private networks). */
  allowHomeserver?: (url: URL) => boolean;
  /** The client_uri the gateway registers with OAuth 2.0 homeservers (the operator's web site). */
  oauthClientUri?: string;
}

/** client_uri when the operator names none (RFC 7591 wants a web page about the client). */
const DEFAULT_CLIENT_URI = 'https://gatehouse.invalid/';

const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, getChild: () => quietLogger };

export function isMatrixRoomId(id: string): boolean {
  return /^[!#]/.test(id);
}

export class MatrixAdapter implements NetworkAdapter {
  readonly network = 'matrix';
  readonly name: string;
  readonly registrationFields = MATRIX_REGISTRATION_FIELDS;
  readonly settingsFields = MATRIX_SETTINGS_FIELDS;
  readonly multiServer = false;
  /** The homeserver echoes room messages, but the adapter drops the echo of what the kit sent: the kit echoes. */
  readonly echoesRoomMessages = false;
  private readonly sessionOptions: MatrixSessionOptions;
  private readonly allowInsecureHttp: boolean;
  private readonly allowed: string[] | null;
  private readonly allowHomeserver: (url: URL) => boolean;
  private readonly clientUri: string;
  readonly storedSecrets = ['refreshToken', 'recoveryKey'];
  /** "Matrix recovery key" (trust.ts); SAS verification is a chat with the gateway (verification.ts). */
  readonly commands = [RECOVERY_COMMAND];

  constructor(options: MatrixAdapterOptions = {}) {
    const { name, allowInsecureHttp, allowedHomeservers, allowHomeserver, oauthClientUri, ...session } = options;
    this.clientUri = oauthClientUri ?? DEFAULT_CLIENT_URI;
    this.name = name ?? 'Matrix gateway';
    this.allowInsecureHttp = allowInsecureHttp ?? false;
    this.allowed = allowedHomeservers?.length ? allowedHomeservers.map((h) => h.toLowerCase().replace(/\/+$/, '')) : null;
    this.allowHomeserver = allowHomeserver ?? (() => true);
    this.sessionOptions = { ...DEFAULT_MATRIX_OPTIONS, ...(Object.fromEntries(Object.entries(session).filter(([, v]) => v !== undefined)) as Partial<MatrixSessionOptions>) };
  }

  isRoomId(id: string): boolean {
    return isMatrixRoomId(id);
  }

  /** Whether the gateway connects to this homeserver URL; `serverName`: the Matrix server name that led to it. */
  private checkHomeserver(homeserver: string, serverName?: string): void {
    const url = new URL(homeserver);
    if (url.protocol === 'http:' && !this.allowInsecureHttp && !isLoopback(url)) {
      throw new LegacyAuthError('the homeserver URL must use https:// (a password or token would travel unencrypted)');
    }
    if (this.allowed) {
      const full = homeserver.toLowerCase();
      const names = [full, url.host.toLowerCase(), url.hostname.toLowerCase(), ...(serverName ? [serverName.toLowerCase()] : [])];
      if (!this.allowed.some((a) => names.includes(a))) {
        throw new LegacyAuthError(`this gateway does not connect to ${url.host}`);
      }
    }
    if (!this.allowHomeserver(url)) throw new LegacyAuthError(`this gateway does not connect to ${url.host}`);
  }

  /** The homeserver's base URL: as given, or discovered from the server name (discovery.ts). */
  private async resolve(creds: MatrixCredentials, fetchFn: typeof fetch): Promise<string> {
    if (creds.homeserver) {
      this.checkHomeserver(creds.homeserver);
      await checkVersions(fetchFn, creds.homeserver);
      return creds.homeserver;
    }
    const name = creds.serverName!;
    if (!isServerName(name)) throw new LegacyAuthError(`not a Matrix server name or homeserver URL: ${name.slice(0, 100)}`);
    const origin = new URL(`https://${name}`);
    if (!this.allowHomeserver(origin)) throw new LegacyAuthError(`this gateway does not connect to ${origin.host}`);
    const found = await discoverHomeserver(name, fetchFn);
    this.checkHomeserver(found.baseUrl, name);
    return found.baseUrl;
  }

  async login(request: LoginRequest): Promise<MatrixSession> {
    const timeout = request.timeoutMs ?? this.sessionOptions.loginTimeoutMs;
    let deadline = Date.now() + timeout;
    const creds = parseCredentials(request.credentials);
    const fetchFn = timedFetch(this.sessionOptions.requestTimeoutMs, this.sessionOptions.requestTimeoutMs);
    const homeserver = await this.resolve(creds, fetchFn);
    const host = new URL(homeserver).host;
    const probe = sdk.createClient({ baseUrl: homeserver, logger: quietLogger, fetchFn });
    withoutSdkTimers(probe);
    let login: { userId: string; accessToken: string; deviceId: string; tokens?: TokenKeeper };
    if (creds.token) {
      try {
        login = await this.tokenLogin(creds, homeserver, fetchFn, request);
      } catch (err) {
        // A stored OAuth login that no longer works, while the user is there to approve a new
        // one (registering again): the browser login starts over, on the same client and device.
        if (!(err instanceof LegacyAuthError) || !request.prompt || !creds.clientId) throw err;
        const meta = await fetchAuthMetadata(fetchFn, homeserver);
        if (!meta) throw err;
        request.log.info('matrix stored login refused; starting a new browser login', { homeserver: host });
        login = await this.deviceLogin({ ...creds, token: null, refreshToken: null }, homeserver, meta, fetchFn, request);
        deadline = Date.now() + timeout;
      }
    } else {
      const offersPassword = creds.password ? await passwordOffered(probe) : false;
      const meta = offersPassword ? null : await fetchAuthMetadata(fetchFn, homeserver);
      if (meta) {
        login = await this.deviceLogin(creds, homeserver, meta, fetchFn, request);
        // The time the user took in the browser does not count against the first sync.
        deadline = Date.now() + timeout;
      } else if (!creds.password) {
        throw new LegacyAuthError(`${host} does not offer OAuth 2.0 login: give a password or an access token`);
      } else {
        if (!offersPassword) throw new LegacyAuthError(`${host} offers no password login: give an access token`);
        try {
          const res = await probe.loginRequest({
            type: 'm.login.password',
            identifier: { type: 'm.id.user', user: creds.userId },
            password: creds.password,
            initial_device_display_name: this.sessionOptions.deviceName,
            ...(creds.deviceId ? { device_id: creds.deviceId } : {}),
          } as never);
          login = { userId: res.user_id, accessToken: res.access_token, deviceId: res.device_id };
        } catch (err) {
          throw loginError(err, host);
        }
        if (login.userId !== creds.userId) {
          request.log.info('matrix login returned another user ID than the one given', { homeserver: host });
        }
      }
    }
    const session = new MatrixSession(
      {
        homeserver,
        ...login,
        media: request.media,
        secretState: request.secretState,
        shareWithUnverified: settingOn(request.settings, 'encryptForUnverifiedDevices', true),
        recoveryKey: request.credentials.recoveryKey || undefined,
      },
      this.sessionOptions,
      request.log,
    );
    await session.start(request.state, deadline);
    // Tokens renewed while logging in reach the vault once the kit listens.
    if (login.tokens && login.tokens.current.accessToken !== creds.token) setImmediate(() => session.reportCredentials());
    return session;
  }

  /** A stored or given access token; OAuth sessions renew it first when it has (nearly) expired. */
  private async tokenLogin(creds: MatrixCredentials, homeserver: string, fetchFn: typeof fetch, request: LoginRequest): Promise<{ userId: string; accessToken: string; deviceId: string; tokens?: TokenKeeper }> {
    const host = new URL(homeserver).host;
    let tokens: TokenKeeper | undefined;
    if (creds.refreshToken && creds.clientId) {
      const meta = await fetchAuthMetadata(fetchFn, homeserver);
      if (!meta) throw new LegacyAuthError(`${host} no longer offers OAuth 2.0 login; register again`);
      tokens = new TokenKeeper(fetchFn, meta.token_endpoint, creds.clientId, { accessToken: creds.token!, refreshToken: creds.refreshToken, expiresAt: creds.expiresAt }, request.log, host);
      if (creds.expiresAt !== null && creds.expiresAt - Date.now() < 30_000) {
        try {
          await tokens.refresh();
        } catch (err) {
          if (err instanceof LegacyAuthError) throw new LegacyAuthError(`the Matrix login could not be renewed: ${err.message}; register again to log in`);
          throw err;
        }
      }
    }
    const accessToken = tokens?.current.accessToken ?? creds.token!;
    const client = sdk.createClient({ baseUrl: homeserver, accessToken, logger: quietLogger, fetchFn, ...(tokens ? { refreshToken: tokens.current.refreshToken!, tokenRefreshFunction: tokens.sdkRefresh } : {}) });
    withoutSdkTimers(client);
    let who: { user_id: string; device_id?: string };
    try {
      who = await client.whoami();
    } catch (err) {
      throw loginError(err, host);
    }
    if (who.user_id !== creds.userId) throw new LegacyAuthError(`the access token belongs to another Matrix user than ${creds.userId}`);
    const deviceId = who.device_id ?? creds.deviceId;
    if (!deviceId) throw new LegacyAuthError('the homeserver does not say which device the access token belongs to');
    return { userId: who.user_id, accessToken: tokens?.current.accessToken ?? accessToken, deviceId, ...(tokens ? { tokens } : {}) };
  }

  /** OAuth 2.0 device authorization grant: the user approves in a browser (oauth.ts). */
  private async deviceLogin(creds: MatrixCredentials, homeserver: string, meta: AuthMetadata, fetchFn: typeof fetch, request: LoginRequest): Promise<{ userId: string; accessToken: string; deviceId: string; tokens: TokenKeeper }> {
    const host = new URL(homeserver).host;
    if (!request.prompt) throw new LegacyAuthError(`${host} needs the login approved in a browser; register again to get a link`);
    const clientId = creds.clientId ?? (await registerClient(fetchFn, meta, { clientName: this.sessionOptions.deviceName, clientUri: this.clientUri }));
    const deviceId = creds.deviceId && /^[A-Za-z0-9-]{10,}$/.test(creds.deviceId) ? creds.deviceId : newDeviceId();
    const auth = await startDeviceAuthorization(fetchFn, meta, clientId, deviceId);
    const link = auth.verificationUriComplete ?? auth.verificationUri;
    const minutes = Math.max(1, Math.round(auth.expiresIn / 60));
    request.prompt(
      `To connect your Matrix account ${creds.userId}, open ${link} in a browser${auth.verificationUriComplete ? '' : ` and enter the code ${auth.userCode}`}` +
        `${auth.verificationUriComplete ? ` (code ${auth.userCode})` : ''}, then approve the login of "${this.sessionOptions.deviceName}". The code is valid for ${minutes} minute${minutes === 1 ? '' : 's'}.` +
        `${creds.password ? ' The password you gave is not used: this homeserver logs in through its own web page.' : ''}`,
      auth.expiresIn * 1000 + (request.timeoutMs ?? this.sessionOptions.loginTimeoutMs),
    );
    request.log.info('matrix login waits for approval in a browser', { homeserver: host, expiresInS: auth.expiresIn });
    const got = await pollDeviceToken(fetchFn, meta, clientId, auth, {});
    const tokens = new TokenKeeper(fetchFn, meta.token_endpoint, clientId, got, request.log, host);
    const client = sdk.createClient({ baseUrl: homeserver, accessToken: got.accessToken, logger: quietLogger, fetchFn });
    withoutSdkTimers(client);
    let who: { user_id: string; device_id?: string };
    try {
      who = await client.whoami();
    } catch (err) {
      throw loginError(err, host);
    }
    if (who.user_id !== creds.userId) throw new LegacyAuthError(`the login was approved as ${who.user_id}, not as ${creds.userId}`);
    return { userId: who.user_id, accessToken: got.accessToken, deviceId: who.device_id ?? deviceId, tokens };
  }

  /** The vault keeps the user ID, homeserver, access token and device ID (OAuth: also the refresh token, client ID, expiry); never the password. */
  credentialsToStore(session: LegacySession, _given: Credentials): Credentials {
    if (!(session instanceof MatrixSession)) throw new Error('not a Matrix session');
    return { username: session.userId, homeserver: session.homeserver, ...session.storedCredentials() };
  }
}

/** Whether GET /login lists m.login.password (unknown: assumed, and the login itself answers). */
async function passwordOffered(probe: sdk.MatrixClient): Promise<boolean> {
  try {
    const flows = await probe.loginFlows();
    return flows.flows.some((f) => f.type === 'm.login.password');
  } catch {
    return true;
  }
}

function loginError(err: unknown, host: string): Error {
  const code = errcodeOf(err);
  const status = httpStatusOf(err);
  if (code === 'M_FORBIDDEN' || status === 403) return new LegacyAuthError(`${host} refused the login: ${describe(err)}`);
  if (isTokenError(err) || status === 401) return new LegacyAuthError(`${host} refused the access token: ${describe(err)}`);
  if (code === 'M_LIMIT_EXCEEDED' || status === 429) return new LegacyNetworkError(`${host} limits logins right now: ${describe(err)}`);
  if (status !== undefined && status >= 400 && status < 500) return new LegacyAuthError(`${host} refused the login: ${describe(err)}`);
  return new LegacyNetworkError(`${host}: ${describe(err)}`);
}

export function createMatrixAdapter(options: MatrixAdapterOptions = {}): MatrixAdapter {
  return new MatrixAdapter(options);
}
