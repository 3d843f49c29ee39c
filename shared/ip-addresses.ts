/**
 * Peer addresses as the listeners count and compare them: one canonical text per address
 * (IPv4-mapped IPv6 written as IPv4, IPv6 in RFC 5952 form), a grouping for per-address limits
 * (IPv6 by /64, since one host usually owns a whole /64) and CIDR matching.
 */
import { isIPv4, isIPv6 } from 'node:net';

/** The 16 bytes of an IPv4 or IPv6 address (IPv4 as ::ffff:a.b.c.d), or null. Zone ids are dropped. */
export function parseIp(text: string): Uint8Array | null {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const out = new Uint8Array(16);
  if (isIPv4(s)) {
    out[10] = 0xff;
    out[11] = 0xff;
    s.split('.').forEach((p, i) => (out[12 + i] = Number(p)));
    return out;
  }
  if (!isIPv6(s)) return null;
  let v4: number[] = [];
  const lastColon = s.lastIndexOf(':');
  if (s.slice(lastColon + 1).includes('.')) {
    v4 = s.slice(lastColon + 1).split('.').map(Number);
    s = s.slice(0, lastColon + 1) + '0:0';
  }
  const [head, tail] = s.includes('::') ? (s.split('::') as [string, string]) : [s, null];
  const headWords = head ? head.split(':').map((w) => parseInt(w, 16)) : [];
  const tailWords = tail ? tail.split(':').map((w) => parseInt(w, 16)) : [];
  const zeros = tail === null ? 0 : 8 - headWords.length - tailWords.length;
  const words = [...headWords, ...new Array<number>(zeros).fill(0), ...tailWords];
  if (words.length !== 8) return null;
  words.forEach((w, i) => {
    out[2 * i] = w >> 8;
    out[2 * i + 1] = w & 0xff;
  });
  v4.forEach((b, i) => (out[12 + i] = b));
  return out;
}

function isMappedIpv4(bytes: Uint8Array): boolean {
  return bytes.subarray(0, 10).every((b) => b === 0) && bytes[10] === 0xff && bytes[11] === 0xff;
}

/** An address as text: IPv4(-mapped) dotted, IPv6 in RFC 5952 form (lower case, longest zero run as '::'). */
export function formatIp(bytes: Uint8Array): string {
  if (isMappedIpv4(bytes)) return `${bytes[12]}.${bytes[13]}.${bytes[14]}.${bytes[15]}`;
  const words = Array.from({ length: 8 }, (_, i) => (bytes[2 * i]! << 8) | bytes[2 * i + 1]!);
  return compressIpv6(words);
}

function compressIpv6(words: number[]): string {
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (words[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && words[j] === 0) j++;
    if (j - i > bestLen && j - i >= 2) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = words.map((w) => w.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/** The canonical text of a peer address; 'unknown' when there is none (a socket already gone). */
export function canonicalIp(address: string | undefined): string {
  if (!address) return 'unknown';
  const bytes = parseIp(address);
  return bytes ? formatIp(bytes) : address;
}

/**
 * What per-address connection limits count under: an IPv4 address (also IPv4-mapped) as itself,
 * an IPv6 address as its /64 ('2001:db8:1:2::/64'). Anything unparsable counts as itself.
 */
export function addressGroup(ip: string): string {
  const bytes = parseIp(ip);
  if (!bytes) return ip.trim();
  if (isMappedIpv4(bytes)) return formatIp(bytes);
  const prefix = new Uint8Array(16);
  prefix.set(bytes.subarray(0, 8));
  return `${formatIp(prefix)}/64`;
}

/**
 * Whether `ip` lies in `cidr` ('address/prefix', or a plain address for just that one). An IPv4
 * range also matches IPv4-mapped IPv6 addresses: both are compared as IPv6.
 */
export function cidrContains(cidr: string, ip: string): boolean {
  const slash = cidr.indexOf('/');
  const base = slash >= 0 ? cidr.slice(0, slash) : cidr;
  const range = parseIp(base);
  const addr = parseIp(ip);
  if (!range || !addr) return false;
  const v4 = isIPv4(base.trim());
  let prefix = slash >= 0 ? Number(cidr.slice(slash + 1)) : v4 ? 32 : 128;
  if (!Number.isInteger(prefix) || prefix < 0 || prefix > (v4 ? 32 : 128)) return false;
  if (v4) prefix += 96;
  const full = prefix >> 3;
  for (let i = 0; i < full; i++) if (range[i] !== addr[i]) return false;
  const bits = prefix & 7;
  if (bits === 0) return true;
  const mask = (0xff << (8 - bits)) & 0xff;
  return (range[full]! & mask) === (addr[full]! & mask);
}

export function inRanges(ranges: readonly string[], ip: string): boolean {
  return ranges.some((r) => cidrContains(r, ip));
}
