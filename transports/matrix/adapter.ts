/**
 * The Matrix network adapter (matrix-js-sdk): one LegacySession per user and Matrix account.
 *
 * Addresses are the kit's business: contacts are Matrix user IDs (`@alice:example.org`), rooms
 * room IDs (`!abc:example.org`) or aliases (`#room:example.org`), escaped into JID localparts
 * with XEP-0106 by the kit; `isRoomId` tells them apart (rooms start with ! or #).
 *
 * Registration (settings.ts): Matrix user ID, homeserver URL, and a password or an access token.
 * A password is exchanged for an access token at once (POST /login, a new device named
 * "Gatehouse XMPP gateway"); credentialsToStore then keeps only the user ID, homeserver, token
 * and device ID: the password is never stored. Every later login uses the token (GET
 * /account/whoami checks it and that it belongs to the user ID given). A wrong password (403
 * M_FORBIDDEN), an invalid token (401 M_UNKNOWN_TOKEN) or a token of another user reject the login
 * with LegacyAuthError; an unreachable server or one that is not a Matrix homeserver with
 * LegacyNetworkError.
 *
 * Security: plain http:// homeservers are refused except on loopback addresses (unless the
 * operator sets `allowInsecureHttp`), since the password and token would cross the network in
 * clear; `allowedHomeservers` restricts which homeservers users may name at all (a gateway that
 * connects anywhere makes requests on users' behalf, possibly to internal addresses).
 *
 * Media arrive as links to the homeserver's download URL: the XMPP client fetches them from the
 * homeserver directly (which sees its address), and homeservers that only serve authenticated
 * media (Matrix 1.11 /client/v1/media) will not serve these links; a media proxy would be needed.
 */
import type { Credentials, LegacySession, LoginRequest, NetworkAdapter } from '../kit/adapter.js';
import { LegacyAuthError, LegacyNetworkError } from '../kit/adapter.js';
import * as sdk from 'matrix-js-sdk';
import { describe, errcodeOf, httpStatusOf, isTokenError } from './errors.js';
import { MatrixSession } from './session.js';
import { timedFetch, withoutSdkTimers } from './sdk.js';
import { DEFAULT_MATRIX_OPTIONS, MATRIX_REGISTRATION_FIELDS, isLoopback, parseCredentials, type MatrixSessionOptions } from './settings.js';

export interface MatrixAdapterOptions extends Partial<MatrixSessionOptions> {
  /** Shown in disco (default "Matrix gateway"). */
  name?: string;
  /** Allow http:// homeservers that are not on a loopback address (default false). */
  allowInsecureHttp?: boolean;
  /** Homeserver URLs or host names users may register with (default: any). */
  allowedHomeservers?: string[];
  /** A further check of the homeserver URL (e.g. refusing private networks). */
  allowHomeserver?: (url: URL) => boolean;
}

const quietLogger = { trace() {}, debug() {}, info() {}, warn() {}, error() {}, getChild: () => quietLogger };

export function isMatrixRoomId(id: string): boolean {
  return /^[!#]/.test(id);
}

export class MatrixAdapter implements NetworkAdapter {
  readonly network = 'matrix';
  readonly name: string;
  readonly registrationFields = MATRIX_REGISTRATION_FIELDS;
  readonly multiServer = false;
  /** The homeserver echoes room messages, but the adapter drops the echo of what the kit sent: the kit echoes. */
  readonly echoesRoomMessages = false;
  private readonly sessionOptions: MatrixSessionOptions;
  private readonly allowInsecureHttp: boolean;
  private readonly allowed: string[] | null;
  private readonly allowHomeserver: (url: URL) => boolean;

  constructor(options: MatrixAdapterOptions = {}) {
    const { name, allowInsecureHttp, allowedHomeservers, allowHomeserver, ...session } = options;
    this.name = name ?? 'Matrix gateway';
    this.allowInsecureHttp = allowInsecureHttp ?? false;
    this.allowed = allowedHomeservers?.length ? allowedHomeservers.map((h) => h.toLowerCase().replace(/\/+$/, '')) : null;
    this.allowHomeserver = allowHomeserver ?? (() => true);
    this.sessionOptions = { ...DEFAULT_MATRIX_OPTIONS, ...(Object.fromEntries(Object.entries(session).filter(([, v]) => v !== undefined)) as Partial<MatrixSessionOptions>) };
  }

  isRoomId(id: string): boolean {
    return isMatrixRoomId(id);
  }

  private checkHomeserver(homeserver: string): void {
    const url = new URL(homeserver);
    if (url.protocol === 'http:' && !this.allowInsecureHttp && !isLoopback(url)) {
      throw new LegacyAuthError('the homeserver URL must use https:// (a password or token would travel unencrypted)');
    }
    if (this.allowed) {
      const full = homeserver.toLowerCase();
      if (!this.allowed.some((a) => a === full || a === url.host.toLowerCase() || a === url.hostname.toLowerCase())) {
        throw new LegacyAuthError(`this gateway does not connect to ${url.host}`);
      }
    }
    if (!this.allowHomeserver(url)) throw new LegacyAuthError(`this gateway does not connect to ${url.host}`);
  }

  async login(request: LoginRequest): Promise<MatrixSession> {
    const deadline = Date.now() + (request.timeoutMs ?? this.sessionOptions.loginTimeoutMs);
    const creds = parseCredentials(request.credentials);
    this.checkHomeserver(creds.homeserver);
    const host = new URL(creds.homeserver).host;
    const fetchFn = timedFetch(this.sessionOptions.requestTimeoutMs, this.sessionOptions.requestTimeoutMs);
    const probe = sdk.createClient({ baseUrl: creds.homeserver, logger: quietLogger, fetchFn });
    withoutSdkTimers(probe);
    try {
      await probe.getVersions();
    } catch (err) {
      const status = httpStatusOf(err);
      throw new LegacyNetworkError(status !== undefined ? `${host} is not a Matrix homeserver (HTTP ${status})` : `cannot reach ${host}: ${describe(err)}`);
    }
    let login: { userId: string; accessToken: string; deviceId: string };
    if (creds.password) {
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
    } else {
      const client = sdk.createClient({ baseUrl: creds.homeserver, accessToken: creds.token!, logger: quietLogger, fetchFn });
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
      login = { userId: who.user_id, accessToken: creds.token!, deviceId };
    }
    const session = new MatrixSession({ homeserver: creds.homeserver, ...login, media: request.media }, this.sessionOptions, request.log);
    await session.start(request.state, deadline);
    return session;
  }

  /** The vault keeps the user ID, homeserver, access token and device ID; never the password. */
  credentialsToStore(session: LegacySession, _given: Credentials): Credentials {
    if (!(session instanceof MatrixSession)) throw new Error('not a Matrix session');
    const { token, deviceId } = session.storedCredentials();
    return { username: session.userId, homeserver: session.homeserver, token, deviceId };
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
