/**
 * Outgoing flood control: a token bucket in front of the socket. `burst` lines go out at once,
 * then one line per `intervalMs`; lines keep their order. IRC servers disconnect clients that
 * send faster ("Excess Flood"), so every line the adapter writes on a user's behalf passes here.
 * (PONG and the registration handshake, written by irc-framework itself, do not.)
 */

export interface FloodOptions {
  /** Lines that may be sent back to back after a quiet period. */
  burst: number;
  /** One more line may be sent per interval. */
  intervalMs: number;
}

/**
 * Ten lines at once, then one a second: what InspIRCd's default connect class lets through
 * without fake lag (threshold 10, commandrate 1000), and Biboumi's default throttle. Faster
 * sustained rates fill InspIRCd's receive queue during a long paste ("RecvQ exceeded"); ngIRCd
 * and Solanum (Libera.Chat) take at least this much.
 */
export const DEFAULT_FLOOD: FloodOptions = { burst: 10, intervalMs: 1000 };

/** Flood settings from configuration: `burst` lines, then `linesPerSecond`; a clear error for bad values. */
export function parseFlood(value: unknown, where: string): FloodOptions {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${where}: expected { burst, linesPerSecond }`);
  const { burst, linesPerSecond, ...rest } = value as Record<string, unknown>;
  for (const k of Object.keys(rest)) throw new Error(`${where}.${k}: unknown setting (known: burst, linesPerSecond)`);
  const b = burst === undefined ? DEFAULT_FLOOD.burst : burst;
  const r = linesPerSecond === undefined ? 1000 / DEFAULT_FLOOD.intervalMs : linesPerSecond;
  if (typeof b !== 'number' || !Number.isInteger(b) || b < 1 || b > 1000) throw new Error(`${where}.burst: a whole number from 1 to 1000`);
  if (typeof r !== 'number' || !(r > 0) || r > 1000) throw new Error(`${where}.linesPerSecond: a number above 0, at most 1000`);
  return { burst: b, intervalMs: 1000 / r };
}

interface Pending {
  line: string;
  resolve: () => void;
  reject: (err: Error) => void;
}

export class SendQueue {
  private readonly queue: Pending[] = [];
  private tokens: number;
  private last: number;
  private timer: NodeJS.Timeout | null = null;
  private closedWith: Error | null = null;

  constructor(
    private readonly write: (line: string, done: (err?: Error) => void) => void,
    private readonly opts: FloodOptions = DEFAULT_FLOOD,
    private readonly now: () => number = Date.now,
  ) {
    if (!(opts.burst >= 1) || !(opts.intervalMs >= 0)) throw new RangeError('invalid flood control settings');
    this.tokens = opts.burst;
    this.last = now();
  }

  /** Lines waiting for a token. */
  get length(): number {
    return this.queue.length;
  }

  /** Queues a line; resolves once it was handed to the socket. */
  send(line: string): Promise<void> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      this.queue.push({ line, resolve, reject });
      this.pump();
    });
  }

  /** Queues several lines in order; resolves when the last one was written. */
  async sendAll(lines: string[]): Promise<void> {
    await Promise.all(lines.map((l) => this.send(l)));
  }

  /** Resolves when everything queued so far has been written (or the queue closed). */
  drained(): Promise<void> {
    if (!this.queue.length) return Promise.resolve();
    const last = this.queue[this.queue.length - 1]!;
    return new Promise((resolve) => {
      const { resolve: r, reject: j } = last;
      last.resolve = () => (r(), resolve());
      last.reject = (e) => (j(e), resolve());
    });
  }

  /** Fails every queued line and every later send with err. */
  close(err: Error): void {
    this.closedWith = err;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    for (const p of this.queue.splice(0)) p.reject(err);
  }

  private refill(): void {
    const now = this.now();
    if (this.opts.intervalMs === 0) this.tokens = this.opts.burst;
    else this.tokens = Math.min(this.opts.burst, this.tokens + (now - this.last) / this.opts.intervalMs);
    this.last = now;
  }

  private pump(): void {
    if (this.timer || this.closedWith) return;
    this.refill();
    while (this.queue.length && this.tokens >= 1) {
      this.tokens -= 1;
      const p = this.queue.shift()!;
      this.write(p.line, (err) => (err ? p.reject(err) : p.resolve()));
    }
    if (this.queue.length) {
      const wait = Math.max(1, Math.ceil((1 - this.tokens) * this.opts.intervalMs));
      this.timer = setTimeout(() => {
        this.timer = null;
        this.pump();
      }, wait);
    }
  }
}
