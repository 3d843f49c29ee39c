/** The one clock. Tests inject a ManualClock and move it instead of sleeping. */
export interface Clock {
  now(): Date;
  /**
   * Runs fn once the clock has moved ms on. A timer never keeps the process alive. Clocks
   * without it (plain { now } objects) get the system timer: use `after(clock, ...)`.
   */
  after?(ms: number, fn: () => void): Timer;
}

export interface Timer {
  cancel(): void;
}

/** setTimeout fires at once for more than this (about 24.8 days): longer waits are chained. */
const MAX_TIMEOUT_MS = 2 ** 31 - 1;

function systemTimer(ms: number, fn: () => void): Timer {
  let t: NodeJS.Timeout;
  const arm = (left: number): void => {
    t = setTimeout(() => (left > MAX_TIMEOUT_MS ? arm(left - MAX_TIMEOUT_MS) : fn()), Math.min(Math.max(0, left), MAX_TIMEOUT_MS));
    t.unref();
  };
  arm(ms);
  return { cancel: () => clearTimeout(t) };
}

export const systemClock: Clock = { now: () => new Date(), after: systemTimer };

/** A timer on the clock's time: a ManualClock's fires when the clock is moved past it. */
export function after(clock: Clock, ms: number, fn: () => void): Timer {
  return clock.after ? clock.after(ms, fn) : systemTimer(ms, fn);
}

interface PendingTimer {
  at: number;
  seq: number;
  fn: () => void;
}

export class ManualClock implements Clock {
  private ms: number;
  private readonly timers = new Set<PendingTimer>();
  private seq = 0;
  constructor(start: Date | number = Date.UTC(2026, 0, 1)) {
    this.ms = typeof start === 'number' ? start : start.getTime();
  }
  now(): Date {
    return new Date(this.ms);
  }
  after(ms: number, fn: () => void): Timer {
    const timer: PendingTimer = { at: this.ms + Math.max(0, ms), seq: this.seq++, fn };
    this.timers.add(timer);
    return { cancel: () => void this.timers.delete(timer) };
  }
  /** Milliseconds until each pending timer fires, soonest first (tests wait for a timer to be set). */
  pending(): number[] {
    return [...this.timers].map((t) => t.at - this.ms).sort((a, b) => a - b);
  }
  /** Moves the clock on, firing the timers due on the way in order, each at its own time. */
  advance(ms: number): void {
    this.moveTo(this.ms + ms);
  }
  set(at: Date): void {
    this.moveTo(at.getTime());
  }
  private moveTo(target: number): void {
    for (;;) {
      let next: PendingTimer | undefined;
      for (const t of this.timers) if (t.at <= target && (!next || t.at < next.at || (t.at === next.at && t.seq < next.seq))) next = t;
      if (!next) break;
      this.timers.delete(next);
      this.ms = Math.max(this.ms, next.at);
      next.fn();
    }
    this.ms = target;
  }
}
