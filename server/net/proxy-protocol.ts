/**
 * The PROXY protocol (HAProxy, versions 1 and 2): a proxy in front of a listener (HAProxy, sslh,
 * stunnel, nginx stream) starts each connection with a header naming the client's address.
 *
 * Only connections from the sources a listener trusts (its `proxyProtocol` ranges) are read this
 * way, and they must send a header; anybody else could claim any address with one.
 *
 * - Version 1: one text line `PROXY TCP4|TCP6|UNKNOWN ...\r\n` of at most 107 bytes.
 * - Version 2: the 12-byte signature, version/command, family, a 16-bit length, the addresses,
 *   then TLVs (ignored). At most MAX_PROXY_HEADER_BYTES in all.
 * - LOCAL (v2) and UNKNOWN (v1) headers, and families other than TCP over IPv4/IPv6, mean "use the
 *   connection's own address", as the specification asks (health checks, Unix sockets).
 * Anything else (a wrong signature, a bad address, a header too long) is invalid: the caller
 * closes the connection.
 */
import type { Socket } from 'node:net';
import { isIPv4, isIPv6 } from 'node:net';
import { formatIp } from '../../shared/ip-addresses.js';

export const PROXY_V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
const V1_MAX_BYTES = 107;
/** Version 2 headers may carry TLVs (TLS details, an id); more than this is refused. */
export const MAX_PROXY_HEADER_BYTES = 4096;
/** How long a trusted proxy may take to send the header after connecting. */
export const PROXY_HEADER_TIMEOUT_MS = 5_000;

export type ProxyHeaderParse =
  | { status: 'incomplete' }
  | { status: 'invalid'; reason: string }
  /** `source` null: use the connection's own address. */
  | { status: 'done'; length: number; source: { address: string; port: number } | null };

/** Parses a PROXY header at the start of `buf` (everything received so far). */
export function parseProxyHeader(buf: Buffer): ProxyHeaderParse {
  if (startsLike(buf, PROXY_V2_SIGNATURE)) return buf.length < PROXY_V2_SIGNATURE.length ? { status: 'incomplete' } : parseV2(buf);
  if (startsLike(buf, V1_PREFIX)) return buf.length < V1_PREFIX.length ? { status: 'incomplete' } : parseV1(buf);
  return { status: 'invalid', reason: 'no PROXY protocol header' };
}

/** Whether the bytes so far agree with `prefix` (as far as either goes). */
function startsLike(buf: Buffer, prefix: Buffer): boolean {
  const n = Math.min(buf.length, prefix.length);
  return n > 0 && buf.subarray(0, n).equals(prefix.subarray(0, n));
}

function parseV1(buf: Buffer): ProxyHeaderParse {
  const end = buf.subarray(0, V1_MAX_BYTES).indexOf('\r\n', 0, 'latin1');
  if (end < 0) return buf.length >= V1_MAX_BYTES ? { status: 'invalid', reason: 'PROXY v1 line too long' } : { status: 'incomplete' };
  const length = end + 2;
  const parts = buf.subarray(0, end).toString('latin1').split(' ');
  if (parts[1] === 'UNKNOWN') return { status: 'done', length, source: null };
  if (parts.length !== 6) return { status: 'invalid', reason: 'PROXY v1 line malformed' };
  const [, family, src, dst, sport, dport] = parts as [string, string, string, string, string, string];
  const valid = family === 'TCP4' ? isIPv4 : family === 'TCP6' ? isIPv6 : null;
  if (!valid) return { status: 'invalid', reason: 'PROXY v1 family unknown' };
  if (!valid(src) || !valid(dst)) return { status: 'invalid', reason: 'PROXY v1 address malformed' };
  const port = parsePort(sport);
  if (port === null || parsePort(dport) === null) return { status: 'invalid', reason: 'PROXY v1 port malformed' };
  return { status: 'done', length, source: { address: src.toLowerCase(), port } };
}

function parsePort(s: string): number | null {
  if (!/^\d{1,5}$/.test(s)) return null;
  const n = Number(s);
  return n <= 65535 ? n : null;
}

function parseV2(buf: Buffer): ProxyHeaderParse {
  if (buf.length < 16) return { status: 'incomplete' };
  const version = buf[12]! >> 4;
  const command = buf[12]! & 0x0f;
  if (version !== 2) return { status: 'invalid', reason: 'PROXY v2 version unknown' };
  if (command > 1) return { status: 'invalid', reason: 'PROXY v2 command unknown' };
  const addressLength = buf.readUInt16BE(14);
  const length = 16 + addressLength;
  if (length > MAX_PROXY_HEADER_BYTES) return { status: 'invalid', reason: 'PROXY v2 header too long' };
  if (buf.length < length) return { status: 'incomplete' };
  if (command === 0) return { status: 'done', length, source: null };
  const family = buf[13]! >> 4;
  const transport = buf[13]! & 0x0f;
  if (transport !== 1 || (family !== 1 && family !== 2)) return { status: 'done', length, source: null };
  const body = buf.subarray(16, length);
  if (family === 1) {
    if (body.length < 12) return { status: 'invalid', reason: 'PROXY v2 addresses truncated' };
    const mapped = new Uint8Array(16);
    mapped[10] = 0xff;
    mapped[11] = 0xff;
    mapped.set(body.subarray(0, 4), 12);
    return { status: 'done', length, source: { address: formatIp(mapped), port: body.readUInt16BE(8) } };
  }
  if (body.length < 36) return { status: 'invalid', reason: 'PROXY v2 addresses truncated' };
  return { status: 'done', length, source: { address: formatIp(body.subarray(0, 16)), port: body.readUInt16BE(32) } };
}

/** `closed`: the peer went away before sending a header (a health check, say): nothing to complain about. */
export type ProxyHeaderResult = { ok: true; source: string | null } | { ok: false; reason: string; closed?: boolean };

/**
 * Reads the PROXY header from a freshly accepted socket. What follows the header stays in the
 * socket for whoever reads it next (unshifted: a TLS socket wrapped around it replays it too).
 */
export function readProxyHeader(socket: Socket, timeoutMs: number = PROXY_HEADER_TIMEOUT_MS): Promise<ProxyHeaderResult> {
  return new Promise((resolve) => {
    let received: Buffer = Buffer.alloc(0);
    let done = false;
    const finish = (r: ProxyHeaderResult): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      resolve(r);
    };
    const onReadable = (): void => {
      let chunk: Buffer | null;
      while (!done && (chunk = socket.read() as Buffer | null) !== null) {
        received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
        const r = parseProxyHeader(received);
        if (r.status === 'incomplete') continue;
        if (r.status === 'invalid') return finish({ ok: false, reason: r.reason });
        const rest = received.subarray(r.length);
        if (rest.length > 0) socket.unshift(rest);
        return finish({ ok: true, source: r.source?.address ?? null });
      }
    };
    const onEnd = (): void => finish({ ok: false, reason: 'closed before the PROXY header', closed: received.length === 0 });
    const timer = setTimeout(() => finish({ ok: false, reason: 'no PROXY header in time' }), timeoutMs);
    timer.unref();
    socket.on('readable', onReadable);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}
