/**
 * TCP listeners for every kind of connection (c2s, c2s direct TLS, s2s, components, admin HTTP).
 *
 * Every connection is counted the moment it is accepted, before any byte is read: against the
 * listener kind's cap on open connections, then against its per-address cap (IPv6 per /64, see
 * shared/ip-addresses.ts). Over either, the socket is destroyed at once. Direct TLS is started here, on
 * the accepted socket, and the stream gets the TLS socket at once (so its authentication timeout
 * runs from accept, whether the handshake finishes or not); a handshake not finished within
 * `handshakeTimeout` closes the connection.
 *
 * PROXY protocol: connections from a listener's `proxyProtocol` ranges must start with a PROXY
 * header (proxy-protocol.ts); its source address is the client's address from then on (limits,
 * login guard, records). Such connections count against the listener's cap at accept, and against
 * the per-address cap under the proxied address once the header is read.
 */
import { createServer as createTcpServer, type Server, type Socket, type AddressInfo } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { TlsContexts } from './tls.js';
import type { Logger } from '../../shared/logger.js';
import { addressGroup, canonicalIp, inRanges } from '../../shared/ip-addresses.js';
import { PROXY_HEADER_TIMEOUT_MS, readProxyHeader } from './proxy-protocol.js';

export interface ListenAddress {
  host: string;
  port: number;
  /** CIDR ranges of proxies that must send a PROXY header; empty or absent: none. */
  proxyProtocol?: string[];
}

export interface BoundListener {
  kind: string;
  host: string;
  port: number;
  server: Server;
}

export type RejectReason = 'listener-full' | 'address-limit' | 'bad-proxy-header';

export interface ListenerOptions {
  kind: string;
  address: ListenAddress;
  /** Direct TLS (XEP-0368) when given; plain TCP (STARTTLS offered by the stream) otherwise. */
  tls?: TlsContexts;
  /** ALPN protocols for direct TLS: xmpp-client, xmpp-server or http/1.1. */
  alpn?: string[];
  /** Milliseconds to finish the TLS handshake (direct TLS only). */
  handshakeTimeout?: number;
  /** Milliseconds a trusted proxy has to send its PROXY header (default 5 s). */
  proxyHeaderTimeout?: number;
  /** Shared by all listeners of one kind. */
  limits: ConnectionLimits;
  /** `ip`: the client's canonical address (the proxied one behind a trusted proxy). */
  onConnection(socket: Socket, ip: string): void;
  onRejected?(ip: string, reason: RejectReason): void;
}

/** One accepted connection's hold on the limits; released once, when the connection closes. */
export interface ConnectionSlot {
  /** Counts the connection under its client address; false (and nothing counted) over the cap. */
  claimAddress(ip: string): boolean;
  release(): void;
}

/** Open connections of one listener kind: all of them, and per address (IPv6: per /64). */
export class ConnectionLimits {
  private total = 0;
  private readonly perAddress = new Map<string, number>();

  constructor(
    public maxConnections: number,
    public maxPerAddress: number,
  ) {}

  /** New caps (a reload): open connections stay, new ones are counted against these. */
  setCaps(maxConnections: number, maxPerAddress: number): void {
    this.maxConnections = maxConnections;
    this.maxPerAddress = maxPerAddress;
  }

  get open(): number {
    return this.total;
  }

  /** Opens a slot for a just-accepted connection, or null when the kind is at its cap. */
  admit(): ConnectionSlot | null {
    if (this.total >= this.maxConnections) return null;
    this.total++;
    let group: string | null = null;
    let released = false;
    return {
      claimAddress: (ip) => {
        if (released || group !== null) return !released;
        const key = addressGroup(ip);
        const n = this.perAddress.get(key) ?? 0;
        if (n >= this.maxPerAddress) return false;
        this.perAddress.set(key, n + 1);
        group = key;
        return true;
      },
      release: () => {
        if (released) return;
        released = true;
        this.total--;
        if (group === null) return;
        const n = (this.perAddress.get(group) ?? 1) - 1;
        if (n <= 0) this.perAddress.delete(group);
        else this.perAddress.set(group, n);
      },
    };
  }
}

const REJECTION_MESSAGES: Record<RejectReason, string> = {
  'listener-full': 'connections refused: the listener is at its connection cap',
  'address-limit': 'connections refused: an address is at its per-address cap',
  'bad-proxy-header': 'connections from a trusted proxy closed: no valid PROXY header',
};

/**
 * An `onRejected` that logs without letting a flood flood the log: per reason, one line at once
 * and then at most one a minute, with how many were refused since. Client addresses are not
 * logged (a proxy's, for a bad PROXY header, is: that is the operator's to fix).
 */
export function rejectionLogger(log: Logger, kind: string, everyMs = 60_000): (ip: string, reason: RejectReason) => void {
  const state = new Map<RejectReason, { last: number; refused: number }>();
  return (ip, reason) => {
    const now = Date.now();
    const s = state.get(reason) ?? { last: -Infinity, refused: 0 };
    state.set(reason, s);
    s.refused++;
    if (now - s.last < everyMs) return;
    const level = reason === 'address-limit' ? 'info' : 'warn';
    log[level](REJECTION_MESSAGES[reason], { kind, refused: s.refused, ...(reason === 'bad-proxy-header' ? { proxy: ip } : {}) });
    s.last = now;
    s.refused = 0;
  };
}

export async function listen(opts: ListenerOptions): Promise<BoundListener> {
  const trusted = opts.address.proxyProtocol ?? [];
  const reject = (socket: Socket, ip: string, reason: RejectReason): void => {
    socket.destroy();
    opts.onRejected?.(ip, reason);
  };

  const accept = (raw: Socket): void => {
    // Errors before a stream takes the socket over (a reset during the PROXY header) end it quietly.
    raw.on('error', () => raw.destroy());
    const peer = canonicalIp(raw.remoteAddress);
    const slot = opts.limits.admit();
    if (!slot) return reject(raw, peer, 'listener-full');
    raw.once('close', () => slot.release());
    if (!inRanges(trusted, peer)) return start(raw, slot, peer);
    void readProxyHeader(raw, opts.proxyHeaderTimeout ?? PROXY_HEADER_TIMEOUT_MS).then((header) => {
      if (raw.destroyed || (!header.ok && header.closed)) return void raw.destroy();
      if (!header.ok) return reject(raw, peer, 'bad-proxy-header');
      start(raw, slot, header.source === null ? peer : canonicalIp(header.source));
    });
  };

  const start = (raw: Socket, slot: ConnectionSlot, ip: string): void => {
    if (!slot.claimAddress(ip)) return reject(raw, ip, 'address-limit');
    raw.setNoDelay(true);
    raw.setKeepAlive(true, 60_000);
    if (!opts.tls) return opts.onConnection(raw, ip);
    const secure = new TLSSocket(raw, {
      isServer: true,
      secureContext: opts.tls.defaultContext,
      SNICallback: opts.tls.sniCallback,
      ALPNProtocols: opts.alpn ?? ['xmpp-client'],
    });
    secure.on('error', () => secure.destroy());
    secure.once('close', () => slot.release());
    if (opts.handshakeTimeout) {
      const timer = setTimeout(() => {
        secure.destroy();
        raw.destroy();
      }, opts.handshakeTimeout);
      timer.unref();
      secure.once('secure', () => clearTimeout(timer));
      secure.once('close', () => clearTimeout(timer));
    }
    opts.onConnection(secure, ip);
  };

  const server: Server = createTcpServer(accept);
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
