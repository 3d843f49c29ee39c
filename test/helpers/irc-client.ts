/**
 * A tiny raw-socket IRC client for tests: it speaks lines, answers PING, and lets a test wait for
 * lines it expects. No library, so what the adapter does is checked against plain IRC.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export interface IrcLine {
  raw: string;
  prefix: string;
  /** The nick of the prefix ('' for a server prefix). */
  nick: string;
  command: string;
  params: string[];
  /** The last parameter ('' when there is none). */
  trailing: string;
}

export function parseIrcLine(raw: string): IrcLine {
  let rest = raw;
  let prefix = '';
  if (rest.startsWith('@')) rest = rest.slice(rest.indexOf(' ') + 1);
  if (rest.startsWith(':')) {
    const sp = rest.indexOf(' ');
    prefix = rest.slice(1, sp);
    rest = rest.slice(sp + 1);
  }
  const params: string[] = [];
  let command = '';
  while (rest.length) {
    rest = rest.replace(/^ +/, '');
    if (!rest) break;
    if (command && rest.startsWith(':')) {
      params.push(rest.slice(1));
      break;
    }
    const sp = rest.indexOf(' ');
    const tok = sp === -1 ? rest : rest.slice(0, sp);
    rest = sp === -1 ? '' : rest.slice(sp + 1);
    if (!command) command = tok.toUpperCase();
    else params.push(tok);
  }
  const bang = prefix.indexOf('!');
  const nick = bang !== -1 ? prefix.slice(0, bang) : prefix.includes('.') ? '' : prefix;
  return { raw, prefix, nick, command, params, trailing: params.length ? params[params.length - 1]! : '' };
}

export type LineMatcher = string | ((l: IrcLine) => boolean);

export interface RawIrcClientOptions {
  host?: string;
  port: number;
  nick: string;
  username?: string;
  realname?: string;
  password?: string;
  tls?: boolean;
}

export class RawIrcClient {
  /** Lines not yet taken by expect(), oldest first. */
  private readonly queue: IrcLine[] = [];
  /** Every line received, for debugging. */
  readonly received: IrcLine[] = [];
  private readonly waiters: { match: (l: IrcLine) => boolean; resolve: (l: IrcLine) => void }[] = [];
  private buffer = '';
  private readonly lineHandlers: ((l: IrcLine) => void)[] = [];
  closed = false;
  nick: string;

  private constructor(private readonly socket: Socket, nick: string) {
    this.nick = nick;
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => this.onData(d));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => undefined);
  }

  /** Connects and registers; resolves after RPL_WELCOME (001) and the end of the MOTD. */
  static async connect(o: RawIrcClientOptions): Promise<RawIrcClient> {
    const host = o.host ?? '127.0.0.1';
    const socket: Socket = await new Promise((resolve, reject) => {
      const s = o.tls ? tlsConnect({ host, port: o.port, rejectUnauthorized: false }) : netConnect({ host, port: o.port });
      s.once(o.tls ? 'secureConnect' : 'connect', () => resolve(s));
      s.once('error', reject);
    });
    const c = new RawIrcClient(socket, o.nick);
    if (o.password) c.send(`PASS ${o.password}`);
    c.send(`NICK ${o.nick}`);
    c.send(`USER ${o.username ?? o.nick.toLowerCase()} 0 * :${o.realname ?? o.nick}`);
    await c.expect((l) => l.command === '001', 10_000);
    await c.expect((l) => l.command === '376' || l.command === '422', 10_000);
    return c;
  }

  private onData(d: string): void {
    this.buffer += d;
    let i: number;
    while ((i = this.buffer.indexOf('\n')) !== -1) {
      const raw = this.buffer.slice(0, i).replace(/\r$/, '');
      this.buffer = this.buffer.slice(i + 1);
      if (!raw) continue;
      const line = parseIrcLine(raw);
      this.received.push(line);
      if (line.command === 'PING') {
        this.send(`PONG :${line.trailing}`);
        continue;
      }
      if (line.command === 'NICK' && line.nick === this.nick) this.nick = line.trailing;
      for (const fn of this.lineHandlers) fn(line);
      const w = this.waiters.findIndex((x) => x.match(line));
      if (w !== -1) {
        const [waiter] = this.waiters.splice(w, 1);
        waiter!.resolve(line);
      } else {
        this.queue.push(line);
      }
    }
  }

  /** Calls fn for every line received from now on (a bot's brain); lines stay available to expect(). */
  onLine(fn: (l: IrcLine) => void): void {
    this.lineHandlers.push(fn);
  }

  send(line: string): void {
    this.socket.write(line + '\r\n');
  }

  /** Waits for (and takes) the first line matching; a string matches the command. */
  expect(matcher: LineMatcher, timeoutMs = 5000): Promise<IrcLine> {
    const match = typeof matcher === 'string' ? (l: IrcLine) => l.command === matcher.toUpperCase() : matcher;
    const i = this.queue.findIndex(match);
    if (i !== -1) return Promise.resolve(this.queue.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const waiter = {
        match,
        resolve: (l: IrcLine) => {
          clearTimeout(timer);
          resolve(l);
        },
      };
      const timer = setTimeout(() => {
        const k = this.waiters.indexOf(waiter);
        if (k !== -1) this.waiters.splice(k, 1);
        reject(new Error(`${this.nick}: no matching IRC line within ${timeoutMs} ms; last lines:\n${this.received.slice(-10).map((l) => l.raw).join('\n')}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Resolves with false if a matching line arrives within ms, true otherwise. */
  async expectNothing(matcher: LineMatcher, ms = 500): Promise<boolean> {
    try {
      await this.expect(matcher, ms);
      return false;
    } catch {
      return true;
    }
  }

  /** Drops all queued (unexpected) lines. */
  clear(): void {
    this.queue.length = 0;
  }

  async join(channel: string, key?: string): Promise<IrcLine[]> {
    this.send(`JOIN ${channel}${key ? ' ' + key : ''}`);
    await this.expect((l) => l.command === 'JOIN' && l.nick === this.nick && l.params[0]?.toLowerCase() === channel.toLowerCase());
    const names: IrcLine[] = [];
    for (;;) {
      const l = await this.expect((x) => (x.command === '353' || x.command === '366') && x.raw.toLowerCase().includes(channel.toLowerCase()));
      if (l.command === '366') return names;
      names.push(l);
    }
  }

  privmsg(target: string, text: string): void {
    this.send(`PRIVMSG ${target} :${text}`);
  }

  notice(target: string, text: string): void {
    this.send(`NOTICE ${target} :${text}`);
  }

  action(target: string, text: string): void {
    this.send(`PRIVMSG ${target} :\x01ACTION ${text}\x01`);
  }

  async quit(reason = 'bye'): Promise<void> {
    if (this.closed) return;
    this.send(`QUIT :${reason}`);
    await new Promise<void>((resolve) => {
      const t = setTimeout(() => {
        this.socket.destroy();
        resolve();
      }, 1000);
      this.socket.once('close', () => {
        clearTimeout(t);
        resolve();
      });
    });
  }

  destroy(): void {
    this.socket.destroy();
  }
}
