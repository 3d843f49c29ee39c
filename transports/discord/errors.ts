/**
 * Errors of Discord actions a user asked for (send, edit, delete, react, topic, nick) that Discord
 * refused, with the XMPP stanza error condition the kit can answer with. Connection problems are
 * LegacyNetworkError; an unusable token is LegacyAuthError.
 */
import { DiscordAPIError, HTTPError, RateLimitError } from 'discord.js';
import { LegacyAuthError, LegacyNetworkError } from '../kit/adapter.js';

export type DiscordCommandCondition =
  | 'bad-request'
  | 'forbidden'
  | 'item-not-found'
  | 'not-acceptable'
  | 'not-allowed'
  | 'not-authorized'
  | 'resource-constraint'
  | 'service-unavailable';

export class DiscordCommandError extends Error {
  readonly kind = 'command';
  constructor(
    message: string,
    readonly condition: DiscordCommandCondition,
  ) {
    super(message);
  }
}

/** Discord JSON error codes (topics/opcodes-and-status-codes#json) the adapter tells apart. */
const CODES: Record<number, [DiscordCommandCondition, string]> = {
  10003: ['item-not-found', 'unknown channel'],
  10004: ['item-not-found', 'unknown server'],
  10007: ['item-not-found', 'unknown member'],
  10008: ['item-not-found', 'unknown message'],
  10013: ['item-not-found', 'unknown user'],
  10014: ['bad-request', 'unknown emoji'],
  20016: ['resource-constraint', 'slow mode is on in this channel'],
  30010: ['resource-constraint', 'too many reactions on this message'],
  40005: ['not-acceptable', 'the message is too large'],
  50001: ['forbidden', 'the bot has no access there'],
  50005: ['not-allowed', 'only the author can edit a message'],
  50006: ['not-acceptable', 'Discord does not take empty messages'],
  50007: ['service-unavailable', 'this user does not accept direct messages from the bot'],
  50013: ['forbidden', 'the bot lacks the permission for this'],
  50035: ['not-acceptable', 'Discord refused the message as malformed'],
  90001: ['forbidden', 'the user blocked the bot'],
};

function isNetworkError(err: unknown): boolean {
  const e = err as { name?: string; code?: string; cause?: { code?: string } } | null;
  if (!e) return false;
  if (e.name === 'AbortError' || e.name === 'TimeoutError') return true;
  const code = e.code ?? e.cause?.code;
  return typeof code === 'string' && /^(E[A-Z]+|UND_ERR_\w+)$/.test(code);
}

/**
 * An error from discord.js (REST) as the adapter reports it. Never includes request bodies or
 * the token (DiscordAPIError messages are Discord's own short texts).
 */
export function mapError(err: unknown, what: string): Error {
  if (err instanceof DiscordCommandError || err instanceof LegacyAuthError || err instanceof LegacyNetworkError) return err;
  if (err instanceof DiscordAPIError) {
    if (err.status === 401) return new LegacyAuthError('Discord no longer accepts the bot token');
    const known = typeof err.code === 'number' ? CODES[err.code] : undefined;
    if (known) return new DiscordCommandError(`${what}: ${known[1]}`, known[0]);
    if (err.status === 403) return new DiscordCommandError(`${what}: Discord refused (${err.code})`, 'forbidden');
    if (err.status === 404) return new DiscordCommandError(`${what}: not found on Discord`, 'item-not-found');
    return new DiscordCommandError(`${what}: Discord refused (${err.code})`, 'bad-request');
  }
  if (err instanceof RateLimitError) {
    return new DiscordCommandError(`${what}: Discord asks to wait ${Math.ceil(err.timeToReset / 1000)} s (rate limit)`, 'resource-constraint');
  }
  if (err instanceof HTTPError) return new LegacyNetworkError(`${what}: Discord answered HTTP ${err.status}`);
  if (isNetworkError(err)) return new LegacyNetworkError(`${what}: cannot reach Discord`);
  return new LegacyNetworkError(`${what}: ${(err as Error)?.message ?? String(err)}`);
}
