import { createServer as createTcpServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import type { TlsContexts } from './tls.js';

export interface ListenAddress {
  host: string;
  port: number;
}

export interface BoundListener {
  kind: string;
  host: string;
  port: number;
  server: Server;
}

export interface ListenerOptions {
  kind: string;
  address: ListenAddress;
  /** Direct TLS (XEP-0368) when given; plain TCP (STARTTLS offered by the stream) otherwise. */
  tls?: TlsContexts;
  /** ALPN protocols for direct TLS (XEP-0368): xmpp-client or xmpp-server. */
  alpn?: string[];
  maxConnectionsPerIp: number;
  onConnection(socket: Socket, ip: string): void;
  onRejected?(ip: string): void;
}

/** Counts open connections per peer address, so one address cannot exhaust the server. */
export class ConnectionCounter {
  private readonly counts = new Map<string, number>();
  acquire(ip: string, max: number): boolean {
    const n = this.counts.get(ip) ?? 0;
    if (n >= max) return false;
    this.counts.set(ip, n + 1);
    return true;
  }
  release(ip: string): void {
    const n = (this.counts.get(ip) ?? 1) - 1;
    if (n <= 0) this.counts.delete(ip);
    else this.counts.set(ip, n);
  }
}

export function normaliseIp(address: string | undefined): string {
  if (!address) return 'unknown';
  return address.startsWith('::ffff:') ? address.slice(7) : address;
}

export async function listen(opts: ListenerOptions, counter: ConnectionCounter): Promise<BoundListener> {
  const handle = (socket: Socket): void => {
    const ip = normaliseIp(socket.remoteAddress);
    if (!counter.acquire(ip, opts.maxConnectionsPerIp)) {
      opts.onRejected?.(ip);
      socket.destroy();
      return;
    }
    socket.once('close', () => counter.release(ip));
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    opts.onConnection(socket, ip);
  };
  const server: Server = opts.tls
    ? // Node uses only cert/key (not secureContext) for clients that send no server name.
      createTlsServer({ ...opts.tls.defaultOptions, SNICallback: opts.tls.sniCallback, ALPNProtocols: opts.alpn ?? ['xmpp-client'] }, handle)
    : createTcpServer(handle);
  if (opts.tls) server.on('tlsClientError', () => {});
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host: opts.address.host, port: opts.address.port, backlog: 1024 }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const addr = server.address() as AddressInfo;
  return { kind: opts.kind, host: addr.address, port: addr.port, server };
}
