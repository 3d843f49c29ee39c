export type LogLevel = 'debug' | 'info' | 'warn' | 'error';
const LEVELS: Record<LogLevel, number> = { debug: 10, info: 20, warn: 30, error: 40 };

/** Field names whose values never reach a log line, whatever a caller passes. */
const SECRET_FIELDS = /pass|secret|token|key|body|credential|proof|authorization/i;

export type LogFields = Record<string, string | number | boolean | null | undefined>;

export interface LoggerOptions {
  level: LogLevel;
  format: 'text' | 'json';
  /**
   * Where lines go (a rotating log file: shared/rotating-log-file.ts logFileSink; tests capture
   * lines here); standard error without one.
   */
  sink?: (line: string) => void;
  /** The cluster node this process is (cluster mode): every line names it. */
  node?: string;
}

export class Logger {
  constructor(
    private readonly opts: LoggerOptions,
    private readonly component = 'gatehouse',
  ) {}

  child(component: string): Logger {
    return new Logger(this.opts, component);
  }

  /** Changes the level of this logger and of every logger made from the same root (a reload). */
  setLevel(level: LogLevel): void {
    this.opts.level = level;
  }

  get level(): LogLevel {
    return this.opts.level;
  }

  enabled(level: LogLevel): boolean {
    return LEVELS[level] >= LEVELS[this.opts.level];
  }

  debug(msg: string, fields?: LogFields): void {
    this.write('debug', msg, fields);
  }
  info(msg: string, fields?: LogFields): void {
    this.write('info', msg, fields);
  }
  warn(msg: string, fields?: LogFields): void {
    this.write('warn', msg, fields);
  }
  error(msg: string, fields?: LogFields): void {
    this.write('error', msg, fields);
  }

  private write(level: LogLevel, msg: string, fields?: LogFields): void {
    if (!this.enabled(level)) return;
    const time = new Date().toISOString();
    const safe: LogFields = {};
    if (fields) for (const [k, v] of Object.entries(fields)) if (v !== undefined) safe[k] = SECRET_FIELDS.test(k) ? '[redacted]' : v;
    let line: string;
    if (this.opts.format === 'json') {
      line = JSON.stringify(this.opts.node ? { time, level, node: this.opts.node, component: this.component, msg, ...safe } : { time, level, component: this.component, msg, ...safe });
    } else {
      let extra = '';
      for (const [k, v] of Object.entries(safe)) extra += ` ${k}=${formatValue(v)}`;
      const node = this.opts.node ? `[${this.opts.node}] ` : '';
      line = `${time} ${level.padEnd(5)} ${node}${this.component}: ${msg}${extra}`;
    }
    if (this.opts.sink) this.opts.sink(line);
    else process.stderr.write(line + '\n');
  }
}

function formatValue(v: unknown): string {
  const s = String(v);
  return /[\s"=]/.test(s) ? JSON.stringify(s) : s;
}

export const silentLogger = new Logger({ level: 'error', format: 'text', sink: () => {} });
