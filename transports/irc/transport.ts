/**
 * The socket under irc-framework (its `transport` option): TCP or TLS with certificate checks on by
 * default, optional pinning of one certificate by SHA-256 fingerprint, a connect timeout, a cap on
 * line length, and per-line decoding (UTF-8, else Windows-1252). Replacing irc-framework's own net
 * transport lets the adapter check a pinned certificate *before* anything (a server password) is
 * written, and see why a connection failed.
 */
import { EventEmitter } from 'node:events';
import { connect as netConnect, isIP, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { decodeLine } from './text.js';

export interface TransportSettings {
  host: string;
  port: number;
  tls: boolean;
  /** Check the certificate chain and host name (ignored when a fingerprint is pinned). */
  verifyCertificate: boolean;
  /** Trust exactly the certificate with this SHA-256 fingerprint ("AB:CD:…"). */
  fingerprint256: string | null;
  /** Extra trusted CA certificates (PEM), e.g. a private CA. */
  ca?: string | string[];
  connectTimeoutMs: number;
  /** Longest line accepted from the server, in bytes (IRCv3 tags included). */
  maxLineBytes: number;
  /** Called once the TCP connection is up (before TLS), e.g. to answer identd queries for it; returns its undo. */
  onTcpConnect?: (localPort: number, remotePort: number) => () => void;
  /** A client certificate and key (PEM) shown in the TLS handshake (SASL EXTERNAL). */
  clientCertificate?: { cert: string; key: string } | null;
}

/** Why a socket failed, in words fit for a presence error and the audit log (no secrets). */
export class TransportError extends Error {
  constructor(
    message: string,
    readonly code: string,
    readonly certificate = false,
  ) {
    super(message);
  }
}

const CERT_CODES = new Set([
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'CERT_HAS_EXPIRED',
  'CERT_NOT_YET_VALID',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'CERT_SIGNATURE_FAILURE',
  'ERR_TLS_CERT_ALTNAME_INVALID',
  'HOSTNAME_MISMATCH',
]);

export function describeSocketError(err: unknown, host: string, port: number): TransportError {
  if (err instanceof TransportError) return err;
  const e = err as NodeJS.ErrnoException & { reason?: string };
  const code = e?.code ?? 'UNKNOWN';
  if (CERT_CODES.has(code)) {
    return new TransportError(`the TLS certificate of ${host} was rejected (${e.reason ?? e.message ?? code}); certificate checks are on`, code, true);
  }
  switch (code) {
    case 'ECONNREFUSED':
      return new TransportError(`connection to ${host} port ${port} refused`, code);
    case 'ENOTFOUND':
    case 'EAI_AGAIN':
      return new TransportError(`unknown IRC server host ${host}`, code);
    case 'ETIMEDOUT':
      return new TransportError(`connection to ${host} port ${port} timed out`, code);
    case 'ECONNRESET':
      return new TransportError(`connection to ${host} reset`, code);
    case 'EHOSTUNREACH':
    case 'ENETUNREACH':
      return new TransportError(`${host} is unreachable`, code);
    default:
      if (/^ERR_SSL|^ERR_TLS|SSL|TLS/i.test(code) || /ssl|tls|handshake/i.test(e?.message ?? '')) {
        return new TransportError(`TLS with ${host} failed (${code})`, code);
      }
      return new TransportError(`connection to ${host} failed (${code})`, code);
  }
}

/** irc-framework transport interface: events 'open', 'line', 'close' (err | false), 'debug', 'extra'. */
export class GatehouseIrcTransport extends EventEmitter {
  private socket: Socket | TLSSocket | null = null;
  private connected = false;
  private lastError: TransportError | null = null;
  private incoming: Buffer = Buffer.alloc(0);
  private connectTimer: NodeJS.Timeout | null = null;
  private readonly settings: TransportSettings;

  constructor(options: { gatehouse: TransportSettings }) {
    super();
    this.settings = options.gatehouse;
  }

  isConnected(): boolean {
    return this.connected;
  }

  setEncoding(_encoding: string): boolean {
    return true; // always UTF-8 out, UTF-8/Windows-1252 in
  }

  connect(): void {
    this.disposeSocket();
    const s = this.settings;
    this.lastError = null;
    this.incoming = Buffer.alloc(0);
    let socket: Socket | TLSSocket;
    if (s.tls) {
      const pinned = s.fingerprint256 !== null;
      socket = tlsConnect({
        host: s.host,
        port: s.port,
        servername: isIP(s.host) ? undefined : s.host,
        rejectUnauthorized: pinned ? false : s.verifyCertificate,
        ca: s.ca,
        minVersion: 'TLSv1.2',
        ...(s.clientCertificate ? { cert: s.clientCertificate.cert, key: s.clientCertificate.key } : {}),
      });
      socket.once('secureConnect', () => {
        if (pinned) {
          const cert = (socket as TLSSocket).getPeerCertificate();
          if (!cert || cert.fingerprint256?.toUpperCase() !== s.fingerprint256) {
            this.fail(new TransportError(`the TLS certificate of ${s.host} does not match the trusted fingerprint`, 'CERT_FINGERPRINT_MISMATCH', true));
            return;
          }
        }
        this.opened();
      });
    } else {
      socket = netConnect({ host: s.host, port: s.port });
      socket.once('connect', () => this.opened());
    }
    this.socket = socket;
    let release: (() => void) | null = null;
    if (s.onTcpConnect) {
      const hook = s.onTcpConnect;
      socket.once('connect', () => {
        if (socket.localPort) release = hook(socket.localPort, s.port);
      });
      socket.once('close', () => release?.());
    }
    socket.setNoDelay(true);
    socket.setKeepAlive(true, 60_000);
    this.connectTimer = setTimeout(() => {
      this.fail(new TransportError(`connection to ${s.host} port ${s.port} timed out`, 'ETIMEDOUT'));
    }, s.connectTimeoutMs);
    socket.on('data', (d: Buffer) => this.onData(d));
    socket.on('error', (err) => {
      this.lastError ??= describeSocketError(err, s.host, s.port);
    });
    socket.on('close', () => {
      if (this.connectTimer) clearTimeout(this.connectTimer);
      this.connectTimer = null;
      this.connected = false;
      if (this.socket === socket) this.socket = null;
      this.emit('close', this.lastError ?? false);
    });
  }

  private opened(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    this.connected = true;
    this.emit('extra', 'raw socket connected', this.socket);
    this.emit('open');
  }

  private fail(err: TransportError): void {
    this.lastError ??= err;
    this.socket?.destroy();
  }

  private onData(data: Buffer): void {
    this.incoming = this.incoming.length ? Buffer.concat([this.incoming, data]) : data;
    let start = 0;
    for (;;) {
      const nl = this.incoming.indexOf(0x0a, start);
      if (nl === -1) break;
      let end = nl;
      if (end > start && this.incoming[end - 1] === 0x0d) end--;
      if (end > start) {
        const line = decodeLine(this.incoming.subarray(start, end));
        this.emit('line', line);
        if (!this.socket) return; // closed by a handler
      }
      start = nl + 1;
    }
    this.incoming = this.incoming.subarray(start);
    if (this.incoming.length > this.settings.maxLineBytes) {
      this.fail(new TransportError(`${this.settings.host} sent a line longer than ${this.settings.maxLineBytes} bytes`, 'LINE_TOO_LONG'));
    }
  }

  writeLine(line: string, cb?: () => void): void {
    if (this.socket && this.connected && !this.socket.destroyed) {
      this.socket.write(line + '\r\n', () => cb?.());
    } else if (cb) {
      process.nextTick(cb);
    }
  }

  disposeSocket(): void {
    if (this.connectTimer) clearTimeout(this.connectTimer);
    this.connectTimer = null;
    if (this.socket) {
      const s = this.socket;
      this.socket = null;
      this.connected = false;
      s.removeAllListeners();
      s.on('error', () => undefined);
      s.destroy();
    }
  }

  close(force?: boolean): void {
    if (!this.socket) return;
    if (force || !this.connected) this.socket.destroy();
    else this.socket.end();
  }
}
