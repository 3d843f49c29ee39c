/**
 * An identification server (RFC 1413) for the gateway's own connections to IRC servers. Many
 * users reach a network from the gateway's one address; an IRC server asks identd who owns a
 * connection, and the answer (shown as the user name in `nick!user@host`, without the "~" of an
 * unverified one) lets the network's operators tell those users apart and ban one of them
 * instead of the whole gateway.
 *
 * The answer is a per-user identifier derived from the kit's pseudonym (an HMAC of the JID under
 * the vault key; see identFor), never the JID. Only connections the gateway registered are
 * answered; any other query gets "ERROR : NO-USER". Queries are one line each, at most 1000
 * bytes; a client that sends nothing for 30 s, or too much, is disconnected; at most 64 queriers
 * at once.
 */
import { createServer, type Server, type Socket } from 'node:net';
import type { AdapterLogger } from '../kit/adapter.js';

const MAX_LINE = 1000;
const IDLE_MS = 30_000;
const MAX_CLIENTS = 64;

/** The ident of a user: 'g' and the first 9 hex digits of the pseudonym (10 characters fit every IRC server's USERLEN). */
export function identFor(pseudonym: string): string {
  return `g${pseudonym.replace(/[^0-9a-f]/gi, '').slice(0, 9).toLowerCase()}`;
}

export interface IdentdOptions {
  port: number;
  host: string;
  log?: AdapterLogger;
}

export class IdentServer {
  private server: Server | null = null;
  /** "localPort,remotePort" → ident. */
  private readonly owners = new Map<string, string>();
  private readonly clients = new Set<Socket>();

  constructor(private readonly opts: IdentdOptions) {}

  /** The port it listens on (after start; useful with port 0). */
  get port(): number {
    const addr = this.server?.address();
    return addr && typeof addr === 'object' ? addr.port : this.opts.port;
  }

  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const server = createServer((socket) => this.accept(socket));
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', reject);
        server.on('error', (err) => this.opts.log?.warn('identd error', { error: err.message }));
        this.server = server;
        // It serves the transport's connections; it does not keep the process alive by itself.
        server.unref();
        this.opts.log?.info('identd listening', { host: this.opts.host, port: this.port });
        resolve();
      });
    });
  }

  stop(): Promise<void> {
    for (const c of this.clients) c.destroy();
    this.clients.clear();
    const server = this.server;
    this.server = null;
    return new Promise((resolve) => (server ? server.close(() => resolve()) : resolve()));
  }

  /** Answers for the connection from our `localPort` to the server's `remotePort` until the returned function is called. */
  register(localPort: number, remotePort: number, ident: string): () => void {
    const key = `${localPort},${remotePort}`;
    this.owners.set(key, ident);
    return () => {
      if (this.owners.get(key) === ident) this.owners.delete(key);
    };
  }

  /** The answer line to one query (without CRLF). */
  answer(query: string): string {
    const m = /^\s*(\d{1,5})\s*,\s*(\d{1,5})\s*$/.exec(query);
    if (!m) return '0 , 0 : ERROR : INVALID-PORT';
    const local = Number(m[1]);
    const remote = Number(m[2]);
    if (local < 1 || local > 65535 || remote < 1 || remote > 65535) return `${local} , ${remote} : ERROR : INVALID-PORT`;
    const ident = this.owners.get(`${local},${remote}`);
    return ident ? `${local} , ${remote} : USERID : UNIX : ${ident}` : `${local} , ${remote} : ERROR : NO-USER`;
  }

  private accept(socket: Socket): void {
    if (this.clients.size >= MAX_CLIENTS) {
      socket.destroy();
      return;
    }
    this.clients.add(socket);
    socket.setTimeout(IDLE_MS, () => socket.destroy());
    socket.on('error', () => undefined);
    socket.on('close', () => this.clients.delete(socket));
    let buffer = '';
    socket.on('data', (chunk: Buffer) => {
      buffer += chunk.toString('latin1');
      for (let nl = buffer.indexOf('\n'); nl !== -1; nl = buffer.indexOf('\n')) {
        const line = buffer.slice(0, nl).replace(/\r$/, '');
        buffer = buffer.slice(nl + 1);
        socket.write(this.answer(line) + '\r\n');
      }
      if (buffer.length > MAX_LINE) socket.destroy();
    });
  }
}
