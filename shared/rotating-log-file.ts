/**
 * Log files (PRIVACY.md P13): log lines name JIDs and IP addresses, so the log file is rotated and
 * old files are deleted after a retention: the server's `retention.detailedLogs`, a transport's
 * `retention.auditLog`. Shared by the server, its CLI and the transports.
 *
 * `RotatingLogFile` is a sink for shared/logger.ts (`new Logger({ ..., sink: (l) => f.write(l) })`):
 * - lines go to `log.file` (created with mode 0600: the log is audit data, for the server's user);
 * - at the first line (or timer) after a period ends, the file is renamed to
 *   `<file>.YYYY-MM-DD` (UTC day of its lines) and a new one is started. The period is a day; with
 *   retention.detailedLogs shorter than a day it is an hour (`<file>.YYYY-MM-DDTHH`), and shorter
 *   than an hour a minute (`<file>.YYYY-MM-DDTHH-MM`), so that no file outlives the retention;
 * - a rotated file is deleted as soon as its oldest possible line (the start of its period) is older
 *   than retention.detailedLogs. With the default 48 h, yesterday's and today's files exist, and no
 *   line is older than 48 h.
 * Deletion runs at each rotation, on a timer at the exact moment a file expires, and as the
 * retention class `log-files` (so `gatehouse retention run` deletes them too, even with the server
 * stopped). Files not named like a rotated log are never touched.
 */
import { closeSync, fstatSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, statSync, unlinkSync, writeSync, appendFileSync, existsSync } from 'node:fs';
import path from 'node:path';
import { systemClock, type Clock } from './clock.js';

export type LogPeriod = 'day' | 'hour' | 'minute';

const PERIOD_MS: Record<LogPeriod, number> = { day: 86_400_000, hour: 3_600_000, minute: 60_000 };

/** The rotation period for a retention: the longest of day, hour, minute that is not longer. */
export function rotationPeriod(retentionMs: number): LogPeriod {
  if (retentionMs >= PERIOD_MS.day) return 'day';
  if (retentionMs >= PERIOD_MS.hour) return 'hour';
  return 'minute';
}

export function periodStart(ms: number, period: LogPeriod): number {
  return Math.floor(ms / PERIOD_MS[period]) * PERIOD_MS[period];
}

/** `<file>.2026-01-01`, `<file>.2026-01-01T13` or `<file>.2026-01-01T13-05`. */
export function rotatedName(file: string, start: number, period: LogPeriod): string {
  const iso = new Date(start).toISOString();
  const suffix = period === 'day' ? iso.slice(0, 10) : period === 'hour' ? iso.slice(0, 13) : `${iso.slice(0, 13)}-${iso.slice(14, 16)}`;
  return `${file}.${suffix}`;
}

export interface RotatedFile {
  path: string;
  /** Start of the period its lines belong to. */
  start: Date;
  period: LogPeriod;
}

const ROTATED = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2})(?:-(\d{2}))?)?$/;

/** Every rotated file of `file` in its directory, oldest first. */
export function listRotatedLogFiles(file: string): RotatedFile[] {
  const dir = path.dirname(file);
  const base = path.basename(file) + '.';
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch {
    return [];
  }
  const out: RotatedFile[] = [];
  for (const name of names) {
    if (!name.startsWith(base)) continue;
    const m = ROTATED.exec(name.slice(base.length));
    if (!m) continue;
    const [, y, mo, d, h, mi] = m;
    const start = Date.UTC(Number(y), Number(mo) - 1, Number(d), h === undefined ? 0 : Number(h), mi === undefined ? 0 : Number(mi));
    if (Number.isNaN(start)) continue;
    out.push({ path: path.join(dir, name), start: new Date(start), period: mi !== undefined ? 'minute' : h !== undefined ? 'hour' : 'day' });
  }
  return out.sort((a, b) => a.start.getTime() - b.start.getTime());
}

/** Deletes (or with dryRun counts) rotated files whose period began `retentionMs` or more ago. */
export function deleteExpiredLogFiles(file: string, retentionMs: number, now: Date, dryRun = false): number {
  let n = 0;
  for (const f of listRotatedLogFiles(file)) {
    if (f.start.getTime() + retentionMs > now.getTime()) continue;
    if (dryRun) {
      n++;
      continue;
    }
    try {
      unlinkSync(f.path);
      n++;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
  return n;
}

export interface RotatingLogFileOptions {
  /** retention.detailedLogs in milliseconds. */
  retention: number;
  clock?: Clock;
  /** Rotate and delete on timers too, not only when a line is written (default true). */
  timers?: boolean;
}

/** A log sink that rotates by period and deletes expired files (see the module comment). */
export class RotatingLogFile {
  readonly period: LogPeriod;
  private fd: number | null = null;
  private start = 0;
  private end = 0;
  private timer: NodeJS.Timeout | null = null;
  private closed = false;
  private failed = false;
  private readonly clock: Clock;

  constructor(
    readonly file: string,
    private readonly opts: RotatingLogFileOptions,
  ) {
    this.clock = opts.clock ?? systemClock;
    this.period = rotationPeriod(opts.retention);
    mkdirSync(path.dirname(file), { recursive: true });
    const now = this.clock.now().getTime();
    // A file left by an earlier run belongs to the period of its last line.
    try {
      const st = statSync(file);
      const lastPeriod = periodStart(st.mtimeMs, this.period);
      if (st.size > 0 && lastPeriod < periodStart(now, this.period)) this.moveAside(lastPeriod);
    } catch {
      // no file yet
    }
    this.open(now);
    this.sweep();
    this.schedule();
  }

  /** Writes one line (a Logger sink). Never throws: a failing log must not stop the server. */
  write(line: string): void {
    if (this.closed) return;
    const now = this.clock.now().getTime();
    try {
      if (now >= this.end) this.rotate(now);
      if (this.fd !== null) writeSync(this.fd, line + '\n');
      this.failed = false;
    } catch (err) {
      if (!this.failed) process.stderr.write(`gatehouse: cannot write the log file ${this.file}: ${(err as Error).message}\n`);
      this.failed = true;
    }
  }

  /** Starts a new file if the current period has ended (a timer calls this too). */
  rotateIfDue(): void {
    if (this.closed) return;
    const now = this.clock.now().getTime();
    if (now >= this.end) this.rotate(now);
  }

  /** Deletes expired rotated files; returns how many. */
  sweep(): number {
    try {
      return deleteExpiredLogFiles(this.file, this.opts.retention, this.clock.now());
    } catch (err) {
      process.stderr.write(`gatehouse: cannot delete old log files of ${this.file}: ${(err as Error).message}\n`);
      return 0;
    }
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.fd !== null) closeSync(this.fd);
    this.fd = null;
  }

  private open(now: number): void {
    this.fd = openSync(this.file, 'a', 0o600);
    this.start = periodStart(now, this.period);
    this.end = this.start + PERIOD_MS[this.period];
  }

  private rotate(now: number): void {
    const fd = this.fd;
    this.fd = null;
    let size = 0;
    if (fd !== null) {
      try {
        size = fstatSync(fd).size;
      } finally {
        closeSync(fd);
      }
    }
    if (size > 0) this.moveAside(this.start);
    this.open(now);
    this.sweep();
  }

  /** Renames the live file to its period's name (appending if that name exists already). */
  private moveAside(start: number): void {
    const target = rotatedName(this.file, start, this.period);
    if (existsSync(target)) {
      appendFileSync(target, readFileSync(this.file));
      unlinkSync(this.file);
    } else {
      renameSync(this.file, target);
    }
  }

  /** A real-time timer for the next rotation or expiry, whichever is first. */
  private schedule(): void {
    if (this.opts.timers === false || this.closed) return;
    const now = this.clock.now().getTime();
    let due = this.end;
    for (const f of listRotatedLogFiles(this.file)) due = Math.min(due, f.start.getTime() + this.opts.retention);
    const delay = Math.min(Math.max(due - now, 0) + 50, 3_600_000);
    this.timer = setTimeout(() => {
      this.timer = null;
      this.rotateIfDue();
      this.sweep();
      this.schedule();
    }, delay);
    this.timer.unref();
  }
}

/**
 * Where a Logger writes when a log file is configured: a RotatingLogFile (P13) with the given
 * retention, or standard error (undefined) without a file. For short-lived processes (CLI
 * commands) timers stay off: rotation and deletion then happen as lines are written.
 */
export function logFileSink(file: string | null | undefined, retentionMs: number, opts: { timers?: boolean } = {}): ((line: string) => void) | undefined {
  if (!file) return undefined;
  const f = new RotatingLogFile(file, { retention: retentionMs, timers: opts.timers ?? true });
  return (line) => f.write(line);
}
