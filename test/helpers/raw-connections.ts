/** Bare TCP connections for listener tests: open, idle, and see whether and when the server closes them. */
import { connect as tcpConnect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

export interface RawConnection {
  socket: Socket;
  /** Resolves when the server (or anything) closed the connection. */
  closed: Promise<void>;
  isClosed(): boolean;
}

export async function openRaw(port: number, host = '127.0.0.1', first?: Buffer | string): Promise<RawConnection> {
  const socket = tcpConnect({ port, host });
  let done = false;
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      done = true;
      resolve();
    }),
  );
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  socket.on('error', () => {});
  if (first !== undefined) socket.write(first);
  return { socket, closed, isClosed: () => done };
}

/** Opens `n` idle connections one after the other (so the server accepts them in this order). */
export async function openIdle(n: number, port: number, host = '127.0.0.1'): Promise<RawConnection[]> {
  const out: RawConnection[] = [];
  for (let i = 0; i < n; i++) out.push(await openRaw(port, host));
  return out;
}

/** Waits for the close; fails (after a generous `ms`, only so a broken server does not hang the test) if it never comes. */
export async function waitClosed(c: RawConnection, what: string, ms = 20_000): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: the server did not close the connection`)), ms);
  });
  try {
    await Promise.race([c.closed, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

/** Waits for the first bytes the server sends (proof the connection is open and served). */
export function firstData(socket: Socket, what: string, ms = 20_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${what}: no answer`)), ms);
    socket.once('data', (d: Buffer) => {
      clearTimeout(timer);
      resolve(d.toString('utf8'));
    });
    socket.once('close', () => {
      clearTimeout(timer);
      reject(new Error(`${what}: closed instead of answering`));
    });
  });
}

/** Completes a TLS handshake over an open connection (proof that the server serves it). */
export function handshake(socket: Socket, alpn: string[]): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const secure = tlsConnect({ socket, servername: 'localhost', rejectUnauthorized: false, ALPNProtocols: alpn });
    secure.once('secureConnect', () => resolve(secure));
    secure.once('error', reject);
    secure.once('close', () => reject(new Error('closed during the TLS handshake')));
  });
}

export const C2S_HEADER =
  "<?xml version='1.0'?><stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='localhost' version='1.0'>";

/** A PROXY protocol version 1 header (TCP4 or TCP6 by the address). */
export function proxyV1(source: string, sourcePort = 40000, dest = '127.0.0.1', destPort = 5222): Buffer {
  const family = source.includes(':') ? 'TCP6' : 'TCP4';
  const d = family === 'TCP6' && !dest.includes(':') ? '::1' : dest;
  return Buffer.from(`PROXY ${family} ${source} ${d} ${sourcePort} ${destPort}\r\n`, 'latin1');
}

/** A PROXY protocol version 2 header (command PROXY, TCP over IPv4 or IPv6), with an optional TLV. */
export function proxyV2(source: string, sourcePort = 40000, opts: { tlv?: Buffer } = {}): Buffer {
  const v6 = source.includes(':');
  const addresses = v6 ? Buffer.alloc(36) : Buffer.alloc(12);
  if (v6) {
    ipv6Bytes(source).copy(addresses, 0);
    ipv6Bytes('::1').copy(addresses, 16);
    addresses.writeUInt16BE(sourcePort, 32);
    addresses.writeUInt16BE(5222, 34);
  } else {
    Buffer.from(source.split('.').map(Number)).copy(addresses, 0);
    Buffer.from([127, 0, 0, 1]).copy(addresses, 4);
    addresses.writeUInt16BE(sourcePort, 8);
    addresses.writeUInt16BE(5222, 10);
  }
  const body = Buffer.concat([addresses, opts.tlv ?? Buffer.alloc(0)]);
  const head = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a, 0x21, v6 ? 0x21 : 0x11, 0, 0]);
  head.writeUInt16BE(body.length, 14);
  return Buffer.concat([head, body]);
}

function ipv6Bytes(ip: string): Buffer {
  const [head, tail] = ip.includes('::') ? ip.split('::') : [ip, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const words = [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t].map((w) => parseInt(w, 16));
  const out = Buffer.alloc(16);
  words.forEach((w, i) => out.writeUInt16BE(w, 2 * i));
  return out;
}
