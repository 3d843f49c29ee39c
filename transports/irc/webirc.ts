/**
 * WEBIRC (the IRCv3 WebIRC extension, as KiwiIRC and Biboumi send it) for operators who have an
 * agreement with a network: the gateway introduces each connection with a shared password and the
 * address the network should show and limit by. The gateway never knows, and never sends, a
 * user's IP address (P19): it sends a pseudonymous per-user address from an IPv6 prefix the
 * operator set aside (the prefix and the first bits of the user's pseudonym, an HMAC of the JID
 * under the vault key), so per-address limits apply per user and one user can be banned alone.
 */
import { isIPv6 } from 'node:net';

export interface WebircServer {
  password: string;
  /** The gateway's name in the WEBIRC line. */
  gateway: string;
  /** 16 bytes of the prefix and its length in bits (16 to 112). */
  prefix: { bytes: Buffer; bits: number };
  /** Host names `<12 hex digits>.<hostSuffix>` instead of the bare address (the suffix should resolve on the operator's DNS). */
  hostSuffix: string | null;
}

/** "2001:db8:1:2::/64" → bytes and length; throws an Error naming `where`. */
export function parsePrefix(value: string, where: string): { bytes: Buffer; bits: number } {
  const m = /^([0-9a-fA-F:]+)\/(\d{1,3})$/.exec(value.trim());
  if (!m || !isIPv6(m[1]!)) throw new Error(`${where}: an IPv6 prefix such as 2001:db8:1:2::/64`);
  const bits = Number(m[2]);
  if (bits < 16 || bits > 112) throw new Error(`${where}: the prefix length must be from 16 to 112 (a /64 is usual)`);
  return { bytes: ipv6Bytes(m[1]!), bits };
}

function ipv6Bytes(text: string): Buffer {
  const [head, tail] = text.includes('::') ? text.split('::') : [text, null];
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail === null ? h : [...h, ...Array(8 - h.length - t.length).fill('0'), ...t];
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(Number.parseInt(g || '0', 16), i * 2));
  return out;
}

function formatIpv6(bytes: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(bytes.readUInt16BE(i).toString(16));
  return groups.join(':');
}

/** The user's address: the prefix, then the pseudonym's bits. */
export function webircAddress(server: WebircServer, pseudonym: string): string {
  const own = Buffer.from(pseudonym.slice(0, 32).padEnd(32, '0'), 'hex');
  const out = Buffer.alloc(16);
  for (let bit = 0; bit < 128; bit++) {
    const byte = bit >> 3;
    const mask = 0x80 >> (bit & 7);
    const from = bit < server.prefix.bits ? server.prefix.bytes : own;
    if (from[byte]! & mask) out[byte]! |= mask;
  }
  return formatIpv6(out);
}

/** The WEBIRC values of one connection. */
export function webircFor(server: WebircServer, pseudonym: string): { password: string; gateway: string; hostname: string; address: string } {
  const address = webircAddress(server, pseudonym);
  return { password: server.password, gateway: server.gateway, hostname: server.hostSuffix ? `${pseudonym.slice(0, 12)}.${server.hostSuffix}` : address, address };
}
