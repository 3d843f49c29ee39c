import { formatBytes } from '../../../shared/format.js';

/**
 * A one-line progress bar on standard error, only when it is a terminal: a log file or a pipe
 * gets no escape codes and no carriage returns.
 */
export class Progress {
  private label = '';
  private total: number | null = null;
  private done = 0;
  private lastDraw = 0;
  private active = false;

  constructor(
    private readonly stream: NodeJS.WriteStream = process.stderr,
    readonly enabled: boolean = Boolean(process.stderr.isTTY),
  ) {}

  static disabled(): Progress {
    return new Progress(process.stderr, false);
  }

  start(label: string, total: number | null): void {
    this.label = label;
    this.total = total && total > 0 ? total : null;
    this.done = 0;
    this.lastDraw = 0;
    this.active = true;
    this.draw(true);
  }

  add(n: number): void {
    this.set(this.done + n);
  }

  set(done: number): void {
    this.done = done;
    this.draw(false);
  }

  setTotal(total: number | null): void {
    this.total = total && total > 0 ? total : null;
  }

  finish(): void {
    if (!this.active) return;
    if (this.total !== null) this.done = Math.max(this.done, this.total);
    this.draw(true);
    if (this.enabled) this.stream.write('\n');
    this.active = false;
  }

  private draw(force: boolean): void {
    if (!this.enabled || !this.active) return;
    const now = Date.now();
    if (!force && now - this.lastDraw < 100) return;
    this.lastDraw = now;
    const width = Math.max(10, Math.min(40, (this.stream.columns ?? 80) - this.label.length - 30));
    let line = `${this.label} `;
    if (this.total !== null) {
      const f = Math.min(1, this.done / this.total);
      const filled = Math.round(f * width);
      line += `[${'#'.repeat(filled)}${'-'.repeat(width - filled)}] ${String(Math.floor(f * 100)).padStart(3)}% `;
    }
    line += formatBytes(this.done);
    this.stream.write(`\r\x1b[K${line}`);
  }
}
