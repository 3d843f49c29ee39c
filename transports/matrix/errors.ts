/** Errors of Matrix requests, mapped to what the kit understands. */
import { LegacyAuthError, LegacyNetworkError } from '../kit/adapter.js';

/** XMPP stanza error conditions the kit can put on its answer. */
export type MatrixCommandCondition =
  | 'bad-request'
  | 'forbidden'
  | 'item-not-found'
  | 'not-acceptable'
  | 'not-allowed'
  | 'resource-constraint'
  | 'service-unavailable';

/** A request the homeserver refused (or one the gateway cannot make, e.g. into an encrypted room). */
export class MatrixCommandError extends Error {
  readonly kind = 'command';
  constructor(
    message: string,
    readonly condition: MatrixCommandCondition,
  ) {
    super(message);
  }
}

interface MatrixErrorLike {
  errcode?: string;
  httpStatus?: number;
  data?: { error?: string; errcode?: string; soft_logout?: boolean };
  name?: string;
  message?: string;
}

/** The homeserver's errcode of an error, if it is a Matrix error response. */
export function errcodeOf(err: unknown): string | undefined {
  const e = err as MatrixErrorLike | null;
  return e?.errcode ?? e?.data?.errcode;
}

export function httpStatusOf(err: unknown): number | undefined {
  return (err as MatrixErrorLike | null)?.httpStatus;
}

/** Whether the error means the access token is no longer valid. */
export function isTokenError(err: unknown): boolean {
  const code = errcodeOf(err);
  return code === 'M_UNKNOWN_TOKEN' || code === 'M_MISSING_TOKEN' || code === 'M_USER_DEACTIVATED' || code === 'M_USER_LOCKED';
}

/**
 * A short, secret-free description: the homeserver's own error text (never the request URL, which
 * the SDK puts into its messages), or the kind of network failure.
 */
export function describe(err: unknown): string {
  const e = err as MatrixErrorLike | null;
  const code = errcodeOf(err);
  if (code || e?.httpStatus) {
    const text = (e?.data?.error ?? '').replace(/\s+/g, ' ').slice(0, 200);
    return `${text || 'request refused'}${code ? ` (${code})` : e?.httpStatus ? ` (HTTP ${e.httpStatus})` : ''}`;
  }
  if (e?.name === 'ConnectionError') return 'cannot reach the homeserver';
  if (e?.name === 'AbortError' || e?.name === 'TimeoutError') return 'the homeserver did not answer in time';
  if (err instanceof LegacyAuthError || err instanceof LegacyNetworkError || err instanceof MatrixCommandError) return err.message;
  return 'the request failed';
}

/** Maps an SDK error of a command (send, join, topic, ...) to a kit error. */
export function commandError(err: unknown, what: string): Error {
  if (err instanceof MatrixCommandError || err instanceof LegacyNetworkError || err instanceof LegacyAuthError) return err;
  const code = errcodeOf(err);
  const status = httpStatusOf(err);
  const text = `${what}: ${describe(err)}`;
  if (!code && !status) return new LegacyNetworkError(text);
  if (isTokenError(err)) return new LegacyNetworkError(text);
  if (code === 'M_FORBIDDEN' || status === 403) return new MatrixCommandError(text, 'forbidden');
  if (code === 'M_NOT_FOUND' || status === 404) return new MatrixCommandError(text, 'item-not-found');
  if (code === 'M_LIMIT_EXCEEDED' || status === 429) return new MatrixCommandError(text, 'resource-constraint');
  if (code === 'M_TOO_LARGE' || status === 413) return new MatrixCommandError(text, 'not-acceptable');
  if (status !== undefined && status >= 400 && status < 500) return new MatrixCommandError(text, 'bad-request');
  return new MatrixCommandError(text, 'service-unavailable');
}
