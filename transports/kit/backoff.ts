/** Exponential backoff with jitter, for reconnecting foreign sessions and the component link. */

export interface BackoffBounds {
  /** Milliseconds before the first retry (before jitter). */
  min: number;
  /** Milliseconds: the cap. */
  max: number;
}

/**
 * The delay before retry number `attempt` (0 for the first): min·2^attempt capped at max, then
 * "equal jitter" (between half and all of it), so many sessions dropped together do not all
 * reconnect in the same second.
 */
export function backoffDelay(attempt: number, bounds: BackoffBounds, random: () => number = Math.random): number {
  const base = Math.min(bounds.max, bounds.min * 2 ** Math.min(attempt, 30));
  return Math.round(base / 2 + (base / 2) * random());
}
