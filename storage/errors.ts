/** A storage failure whose message is one line, names the database and never contains a password. */
export class StorageError extends Error {
  override name = 'StorageError';
  /** The driver's error code (ECONNREFUSED, ER_ACCESS_DENIED_ERROR, 28P01, SQLITE_BUSY...), if any. */
  readonly code: string | undefined;
  constructor(message: string, code?: string) {
    super(message);
    this.code = code;
  }
}

/** One line of text for an error (an AggregateError from a dual-stack connect has an empty message). */
export function errorText(err: unknown): string {
  if (err instanceof AggregateError && err.errors.length > 0) {
    return [...new Set(err.errors.map((e) => errorText(e)))].join('; ');
  }
  if (err instanceof Error) {
    const e = err as Error & { code?: unknown; driverError?: { message?: string } };
    const msg = err.message || e.driverError?.message || (typeof e.code === 'string' ? e.code : '') || err.name;
    return msg.replace(/\s+/g, ' ').trim();
  }
  return String(err).replace(/\s+/g, ' ').trim();
}

/** The driver's error code, looking through TypeORM's QueryFailedError and AggregateError. */
export function errorCode(err: unknown): string | undefined {
  const e = err as { code?: unknown; driverError?: { code?: unknown }; errors?: unknown[] } | null;
  if (!e || typeof e !== 'object') return undefined;
  if (typeof e.code === 'string') return e.code;
  if (typeof e.driverError?.code === 'string') return e.driverError.code;
  if (Array.isArray(e.errors) && e.errors.length) return errorCode(e.errors[0]);
  return undefined;
}
