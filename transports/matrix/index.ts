import type { AdapterFactory, KitSettings } from '../kit/adapter.js';
import { MatrixAdapter, type MatrixAdapterOptions } from './adapter.js';

export { MatrixAdapter, createMatrixAdapter, isMatrixRoomId, type MatrixAdapterOptions } from './adapter.js';
export { MatrixSession, type MatrixLogin } from './session.js';
export { MatrixCommandError, type MatrixCommandCondition } from './errors.js';
export { MATRIX_REGISTRATION_FIELDS, DEFAULT_MATRIX_OPTIONS, type MatrixSessionOptions } from './settings.js';
export { UNDECRYPTABLE_TEXT, mediaUrl, messageFromContent, contentFromMessage } from './content.js';

/**
 * `gatehouse transport matrix`: the adapter from the `network:` settings of the transport's
 * configuration file. Keys (all optional): name, allowInsecureHttp, allowedHomeservers (list),
 * leaveRoomsOnPart, acceptDirectInvites, deviceName, oauthClientUri (the client_uri registered with
 * OAuth 2.0 homeservers), and in seconds: pollTimeout, syncFailureTimeout, retryInterval,
 * requestTimeout, joinTimeout, undecryptableTimeout (how long an encrypted event waits for its
 * room key before it becomes a notice); catchUpLimit, syncTimelineLimit, gapFillLimit, backlogLimit (events
 * per room).
 *
 * There is one login timeout, the transport's `loginTimeout` (the kit's): the first sync must be
 * done within it. A `network.loginTimeout` is only accepted when it says the same (older files).
 */
export const createAdapter: AdapterFactory = (settings, _log, kit) => new MatrixAdapter(parseMatrixSettings(settings, kit));

export function parseMatrixSettings(settings: Record<string, unknown>, kit?: KitSettings): MatrixAdapterOptions {
  const out: MatrixAdapterOptions = {};
  const bool = (key: string, v: unknown): boolean => {
    if (typeof v !== 'boolean') throw new Error(`network.${key} must be true or false`);
    return v;
  };
  const seconds = (key: string, v: unknown, min: number, max: number): number => {
    if (typeof v !== 'number' || !Number.isFinite(v) || v < min || v > max) throw new Error(`network.${key} must be a number of seconds from ${min} to ${max}`);
    return Math.round(v * 1000);
  };
  const count = (key: string, v: unknown, max: number): number => {
    if (typeof v !== 'number' || !Number.isInteger(v) || v < 0 || v > max) throw new Error(`network.${key} must be a whole number from 0 to ${max}`);
    return v;
  };
  for (const [key, v] of Object.entries(settings ?? {})) {
    switch (key) {
      case 'name':
      case 'deviceName':
        if (typeof v !== 'string' || !v.trim()) throw new Error(`network.${key} must be a non-empty string`);
        out[key] = v.trim();
        break;
      case 'oauthClientUri': {
        let url: URL | null = null;
        try {
          url = typeof v === 'string' ? new URL(v.trim()) : null;
        } catch {
          url = null;
        }
        if (!url || url.protocol !== 'https:') throw new Error('network.oauthClientUri must be an https:// URL (the web page of this gateway)');
        out.oauthClientUri = url.href;
        break;
      }
      case 'allowInsecureHttp':
      case 'leaveRoomsOnPart':
      case 'acceptDirectInvites':
        out[key] = bool(key, v);
        break;
      case 'allowedHomeservers':
        if (!Array.isArray(v) || !v.every((h) => typeof h === 'string' && h.trim())) throw new Error('network.allowedHomeservers must be a list of homeserver URLs or host names');
        out.allowedHomeservers = (v as string[]).map((h) => h.trim());
        break;
      case 'pollTimeout':
        out.pollTimeoutMs = seconds(key, v, 1, 120);
        break;
      case 'syncFailureTimeout':
        out.syncFailureTimeoutMs = seconds(key, v, 1, 3600);
        break;
      case 'retryInterval':
        out.retryIntervalMs = seconds(key, v, 0.1, 600);
        break;
      case 'requestTimeout':
        out.requestTimeoutMs = seconds(key, v, 1, 600);
        break;
      case 'loginTimeout': {
        const ms = seconds(key, v, 0.1, 600);
        if (kit && ms !== kit.loginTimeoutMs) {
          throw new Error(`network.loginTimeout (${ms / 1000}s) differs from the transport's loginTimeout (${kit.loginTimeoutMs / 1000}s): there is one login timeout; remove network.loginTimeout and set loginTimeout`);
        }
        out.loginTimeoutMs = ms;
        break;
      }
      case 'joinTimeout':
        out.joinTimeoutMs = seconds(key, v, 1, 600);
        break;
      case 'undecryptableTimeout':
        out.undecryptableTimeoutMs = seconds(key, v, 0.1, 86_400);
        break;
      case 'catchUpLimit':
        out.catchUpLimit = count(key, v, 1000);
        break;
      case 'backlogLimit':
        out.backlogLimit = count(key, v, 1000);
        break;
      case 'syncTimelineLimit':
        out.syncTimelineLimit = Math.max(1, count(key, v, 1000));
        break;
      case 'gapFillLimit':
        out.gapFillLimit = count(key, v, 10_000);
        break;
      default:
        throw new Error(`network.${key} is not a Matrix transport setting`);
    }
  }
  return out;
}
