/**
 * Headless Chromium (Debian package `chromium`) driven over the DevTools protocol on a pipe
 * (--remote-debugging-pipe: JSON messages separated by NUL on file descriptors 3 and 4), which
 * needs no npm package (playwright-core or puppeteer). Used by the admin console's browser test
 * and the Converse.js check (test/helpers/converse.ts).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import type { Readable, Writable } from 'node:stream';
import { CHROMIUM } from './requirements.js';

type Message = { id?: number; method?: string; params?: any; result?: any; error?: { message: string }; sessionId?: string };

/** A minimal Chrome DevTools Protocol client over --remote-debugging-pipe. */
export class Browser {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: any) => void; reject: (e: Error) => void }>();
  private readonly waiters: { method: string; sessionId?: string; resolve: (p: any) => void }[] = [];
  readonly events: Message[] = [];
  private buffer = '';

  private constructor(
    private readonly proc: ChildProcess,
    private readonly out: Writable,
    input: Readable,
  ) {
    input.setEncoding('utf8');
    input.on('data', (chunk: string) => {
      this.buffer += chunk;
      let nul: number;
      while ((nul = this.buffer.indexOf('\0')) >= 0) {
        const text = this.buffer.slice(0, nul);
        this.buffer = this.buffer.slice(nul + 1);
        this.onMessage(JSON.parse(text) as Message);
      }
    });
  }

  static launch(profileDir: string): Browser {
    const proc = spawn(
      CHROMIUM,
      [
        '--headless',
        '--no-sandbox',
        '--disable-background-networking',
        '--disable-gpu',
        '--disable-dev-shm-usage',
        '--no-first-run',
        '--no-default-browser-check',
        // The test server's certificate is self-signed.
        '--ignore-certificate-errors',
        '--remote-debugging-pipe',
        `--user-data-dir=${profileDir}`,
        'about:blank',
      ],
      { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'] },
    );
    proc.stderr!.resume();
    return new Browser(proc, proc.stdio[3] as Writable, proc.stdio[4] as Readable);
  }

  private onMessage(m: Message): void {
    if (m.id !== undefined) {
      const p = this.pending.get(m.id);
      this.pending.delete(m.id);
      if (m.error) p?.reject(new Error(m.error.message));
      else p?.resolve(m.result);
      return;
    }
    this.events.push(m);
    const i = this.waiters.findIndex((w) => w.method === m.method && (w.sessionId === undefined || w.sessionId === m.sessionId));
    if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(m.params);
  }

  send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<any> {
    const id = this.nextId++;
    this.out.write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + '\0');
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      setTimeout(() => {
        if (this.pending.delete(id)) reject(new Error(`DevTools ${method} timed out`));
      }, 20_000).unref();
    });
  }

  event(method: string, sessionId?: string, ms = 20_000): Promise<any> {
    return new Promise((resolve, reject) => {
      const w = { method, sessionId, resolve };
      this.waiters.push(w);
      setTimeout(() => {
        const i = this.waiters.indexOf(w);
        if (i >= 0) {
          this.waiters.splice(i, 1);
          reject(new Error(`timed out waiting for ${method}`));
        }
      }, ms).unref();
    });
  }

  async close(): Promise<void> {
    await this.send('Browser.close').catch(() => {});
    await new Promise<void>((resolve) => {
      if (this.proc.exitCode !== null) return resolve();
      const timer = setTimeout(() => {
        this.proc.kill('SIGKILL');
        resolve();
      }, 5000);
      this.proc.once('exit', () => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** Evaluates an expression in the page and returns its value. */
export async function evaluate<T>(b: Browser, sessionId: string, expression: string): Promise<T> {
  const r = await b.send('Runtime.evaluate', { expression, returnByValue: true, awaitPromise: true }, sessionId);
  if (r.exceptionDetails) throw new Error(`page script failed: ${JSON.stringify(r.exceptionDetails).slice(0, 300)}`);
  return r.result.value as T;
}
