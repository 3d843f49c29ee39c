/**
 * Matrix registration fields, credential parsing and the adapter's settings.
 *
 * Registration: `username` (the Matrix user ID, @name:server, required), `homeserver` (optional:
 * a server name such as matrix.org, resolved through its .well-known file (discovery.ts), or the
 * client-server API base URL; empty: the server name of the user ID), and `password` (exchanged
 * for an access token at registration; never stored), `token` (an access token from another
 * client), or neither: OAuth 2.0 login in the browser (oauth.ts). What the vault keeps is
 * username, homeserver (the base URL), token and deviceId, and for OAuth the refresh token, the
 * client ID and the access token's expiry (see MatrixAdapter.credentialsToStore).
 */
import type { RegistrationField } from '../kit/adapter.js';
import { LegacyAuthError } from '../kit/adapter.js';

export const MATRIX_REGISTRATION_FIELDS: RegistrationField[] = [
  {
    name: 'username',
    label: 'Matrix user ID',
    type: 'text-single',
    required: true,
    secret: false,
    description: 'Your full Matrix ID, e.g. @alice:matrix.org',
  },
  {
    name: 'homeserver',
    label: 'Homeserver',
    type: 'text-single',
    required: false,
    secret: false,
    description: 'Your server (e.g. matrix.org) or its client API URL; empty: the server of your Matrix ID',
  },
  {
    name: 'password',
    label: 'Password',
    type: 'text-private',
    required: false,
    secret: true,
    description: 'Exchanged for an access token when you register; the password itself is not stored. Leave empty to log in through your browser (servers such as matrix.org) or when you give an access token.',
  },
  {
    name: 'token',
    label: 'Access token (instead of a password)',
    type: 'text-private',
    required: false,
    secret: true,
    description: 'An access token from another Matrix client, if you do not want to give your password.',
  },
];

export interface MatrixCredentials {
  userId: string;
  /** The client API base URL when one was given (or stored); else `serverName` is discovered. */
  homeserver: string | null;
  serverName: string | null;
  password: string | null;
  token: string | null;
  deviceId: string | null;
  /** OAuth 2.0 sessions (oauth.ts): the refresh token, the registered client, the access token's expiry (ms since the epoch). */
  refreshToken: string | null;
  clientId: string | null;
  expiresAt: number | null;
}

const USER_ID = /^@[^\s:]+:[A-Za-z0-9.\-[\]:]+$/;

export function isMatrixUserId(id: string): boolean {
  return USER_ID.test(id) && id.length <= 255;
}

/** Normalises a homeserver URL (scheme added when missing, no trailing slash, no query). */
export function normaliseHomeserver(raw: string): URL {
  const text = raw.trim();
  let url: URL;
  try {
    url = new URL(/^[a-z][a-z0-9+.-]*:\/\//i.test(text) ? text : `https://${text}`);
  } catch {
    throw new LegacyAuthError(`not a valid homeserver URL: ${text.slice(0, 100)}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new LegacyAuthError('the homeserver URL must start with https://');
  if (url.username || url.password) throw new LegacyAuthError('the homeserver URL must not contain a user name or password');
  url.search = '';
  url.hash = '';
  url.pathname = url.pathname.replace(/\/+$/, '');
  return url;
}

export function homeserverString(url: URL): string {
  return `${url.protocol}//${url.host}${url.pathname.replace(/\/+$/, '')}`;
}

/** Loopback hosts, where plain HTTP does not leave the machine. */
export function isLoopback(url: URL): boolean {
  const h = url.hostname.replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127\./.test(h);
}

export function parseCredentials(c: Record<string, string>): MatrixCredentials {
  const userId = (c.username ?? '').trim();
  if (!userId) throw new LegacyAuthError('the Matrix user ID is missing');
  if (!isMatrixUserId(userId)) throw new LegacyAuthError(`not a Matrix user ID (expected @name:server): ${userId.slice(0, 100)}`);
  const given = (c.homeserver ?? '').trim();
  let homeserver: string | null = null;
  let serverName: string | null = null;
  if (!given) serverName = userId.slice(userId.indexOf(':') + 1);
  else if (/^[a-z][a-z0-9+.-]*:\/\//i.test(given)) homeserver = homeserverString(normaliseHomeserver(given));
  else if (/^[^/?#\s]+$/.test(given)) serverName = given.toLowerCase();
  else homeserver = homeserverString(normaliseHomeserver(given));
  const password = c.password ? c.password : null;
  const token = c.token ? c.token.trim() : null;
  const expires = Number(c.expiresAt);
  return {
    userId,
    homeserver,
    serverName,
    password,
    token,
    deviceId: c.deviceId?.trim() || null,
    refreshToken: c.refreshToken || null,
    clientId: c.clientId || null,
    expiresAt: c.expiresAt && Number.isFinite(expires) ? expires : null,
  };
}

/** Per-session behaviour, from the transport's `network:` settings. */
export interface MatrixSessionOptions {
  /** Server-side timeout of the /sync long poll. */
  pollTimeoutMs: number;
  /** How long /sync may fail before the session reports disconnected (the kit then logs in again). */
  syncFailureTimeoutMs: number;
  /** While /sync fails, how often the connection is probed. */
  retryIntervalMs: number;
  /** Timeout of other requests. */
  requestTimeoutMs: number;
  /** How long login waits for the first sync when the kit gives no LoginRequest.timeoutMs (the kit always does). */
  loginTimeoutMs: number;
  /** How long joinRoom waits for the joined room to arrive in the sync. */
  joinTimeoutMs: number;
  /** Events per room fetched when a session resumes from a stored sync token. */
  catchUpLimit: number;
  /** Events per room in each /sync response (more arrive as a gap, see gapFillLimit). */
  syncTimelineLimit: number;
  /** When a sync skipped events (a "limited" timeline), up to this many are fetched back with /messages. */
  gapFillLimit: number;
  /** Messages kept per room for rooms the user has not joined over XMPP yet (delivered at the join). */
  backlogLimit: number;
  /** Leaving the XMPP room also leaves the Matrix room (default false: XMPP clients leave rooms whenever they go offline). */
  leaveRoomsOnPart: boolean;
  /** Accept invitations to direct chats by themselves, so messages from new contacts arrive (default true). */
  acceptDirectInvites: boolean;
  /** Device display name given at password login. */
  deviceName: string;
  /** How long an encrypted event waits for its room key before it becomes the undecryptable notice. */
  undecryptableTimeoutMs: number;
}

export const DEFAULT_MATRIX_OPTIONS: MatrixSessionOptions = {
  pollTimeoutMs: 30_000,
  syncFailureTimeoutMs: 60_000,
  retryIntervalMs: 5_000,
  requestTimeoutMs: 30_000,
  loginTimeoutMs: 60_000,
  joinTimeoutMs: 30_000,
  catchUpLimit: 50,
  syncTimelineLimit: 50,
  gapFillLimit: 500,
  backlogLimit: 50,
  leaveRoomsOnPart: false,
  acceptDirectInvites: true,
  deviceName: 'Gatehouse XMPP gateway',
  undecryptableTimeoutMs: 60_000,
};

/** Per-user settings (ad-hoc command "Settings"; LoginRequest.settings). */
export const MATRIX_SETTINGS_FIELDS: RegistrationField[] = [
  {
    name: 'encryptForUnverifiedDevices',
    label: 'Encrypt for unverified devices',
    type: 'boolean',
    required: false,
    secret: false,
    default: 'true',
    description: 'In encrypted rooms, share message keys also with devices nobody has verified (as Element does). Off: only verified devices can read what you send.',
  },
];

/** Whether a boolean setting is on ('true'/'1'), off ('false'/'0'), else the default. */
export function settingOn(settings: Record<string, string> | undefined, name: string, fallback: boolean): boolean {
  const v = settings?.[name]?.trim().toLowerCase();
  if (v === 'true' || v === '1') return true;
  if (v === 'false' || v === '0') return false;
  return fallback;
}
