/**
 * Where to connect for a remote domain (RFC 6120 3.2, XEP-0368):
 * 1. a static route from config (`s2s.static`, for private federations and tests): STARTTLS there;
 * 2. DNS SRV `_xmpps-server._tcp.<domain>` (TLS from the first byte) and `_xmpp-server._tcp.<domain>`
 *    (STARTTLS), merged and ordered by priority, then randomly by weight (RFC 2782); at equal
 *    priority direct TLS goes first. A single record with target '.' says the service is
 *    deliberately absent for that kind;
 * 3. with no SRV record at all: the domain itself on port 5269 (STARTTLS).
 * Lookup failures (SERVFAIL, timeouts) count as "no record", so federation still falls back to the
 * domain on 5269 as other servers do; the connection attempt then decides.
 *
 * Targets found through DNS are untrusted: an unauthenticated peer names the domain (dialback), so
 * it chooses where this server connects. `publicAddresses` resolves a target's host once and keeps
 * only addresses outside loopback, private, link-local and other special-purpose ranges; the link
 * then connects to those addresses (not the name again, so a second DNS answer cannot point
 * elsewhere). Static routes are the operator's own and are used as given.
 */
import { promises as dnsPromises } from 'node:dns';
import { BlockList, isIP } from 'node:net';
import { domainToASCII } from 'node:url';

export interface SrvRecordLike {
  name: string;
  port: number;
  priority: number;
  weight: number;
}

/** The part of node:dns this needs; tests give their own. */
export interface SrvSource {
  resolveSrv(name: string): Promise<SrvRecordLike[]>;
  /** A host name's IPv4 and IPv6 addresses; node:dns lookup (the system resolver) when absent. */
  lookup?(host: string): Promise<string[]>;
}

export interface ConnectTarget {
  host: string;
  port: number;
  /** XEP-0368: TLS from the first byte (ALPN xmpp-server, SNI the domain). */
  directTls: boolean;
  via: 'static' | 'srv' | 'fallback';
}

export function systemSrvSource(): SrvSource {
  const resolver = new dnsPromises.Resolver({ timeout: 5000, tries: 2 });
  return { resolveSrv: (name) => resolver.resolveSrv(name), lookup: systemLookup };
}

async function systemLookup(host: string): Promise<string[]> {
  return (await dnsPromises.lookup(host, { all: true, verbatim: true })).map((a) => a.address);
}

/** Special-purpose ranges (RFC 6890 and successors) that federation never connects to through DNS. */
const INTERNAL = new BlockList();
for (const [net, prefix] of [
  ['0.0.0.0', 8], // "this network", unspecified
  ['10.0.0.0', 8], // RFC 1918
  ['100.64.0.0', 10], // carrier-grade NAT (RFC 6598)
  ['127.0.0.0', 8], // loopback
  ['169.254.0.0', 16], // link-local
  ['172.16.0.0', 12], // RFC 1918
  ['192.0.0.0', 24], // IETF protocol assignments
  ['192.0.2.0', 24], // documentation
  ['192.88.99.0', 24], // 6to4 relay anycast
  ['192.168.0.0', 16], // RFC 1918
  ['198.18.0.0', 15], // benchmarking
  ['198.51.100.0', 24], // documentation
  ['203.0.113.0', 24], // documentation
  ['224.0.0.0', 4], // multicast
  ['240.0.0.0', 4], // reserved, broadcast
] as const) INTERNAL.addSubnet(net, prefix, 'ipv4');
for (const [net, prefix] of [
  ['::', 96], // unspecified, loopback, IPv4-compatible (deprecated)
  ['64:ff9b:1::', 48], // local-use NAT64
  ['100::', 64], // discard
  ['2001::', 23], // IETF protocol assignments (Teredo, ORCHID, ...)
  ['2001:db8::', 32], // documentation
  ['fc00::', 7], // unique local
  ['fe80::', 10], // link-local
  ['fec0::', 10], // site-local (deprecated)
  ['ff00::', 8], // multicast
] as const) INTERNAL.addSubnet(net, prefix, 'ipv6');

/**
 * Whether `address` is loopback, private, link-local, unspecified, multicast or otherwise not a
 * public unicast address. IPv6 forms that carry an IPv4 address (mapped, NAT64, 6to4) are judged
 * by that address. Anything that is not an IP address counts as internal.
 */
export function isInternalAddress(address: string): boolean {
  if (address.includes('%')) return true; // a zone index: link-local by definition
  const family = isIP(address);
  if (family === 4) return INTERNAL.check(address, 'ipv4');
  if (family !== 6) return true;
  const words = ipv6Words(address);
  if (!words) return true;
  const v4 = (hi: number, lo: number) => `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  const zeros = (n: number) => words.slice(0, n).every((w) => w === 0);
  if (zeros(5) && words[5] === 0xffff) return isInternalAddress(v4(words[6]!, words[7]!)); // ::ffff:a.b.c.d
  if (words[0] === 0x64 && words[1] === 0xff9b && words[2] === 0 && words[3] === 0 && words[4] === 0 && words[5] === 0) return isInternalAddress(v4(words[6]!, words[7]!)); // NAT64
  if (words[0] === 0x2002) return isInternalAddress(v4(words[1]!, words[2]!)); // 6to4
  return INTERNAL.check(address, 'ipv6');
}

/** The eight 16-bit words of an IPv6 address (also with a trailing dotted IPv4 part), or null. */
function ipv6Words(address: string): number[] | null {
  let text = address.toLowerCase();
  const dotted = /(\d+)\.(\d+)\.(\d+)\.(\d+)$/.exec(text);
  if (dotted) {
    const b = dotted.slice(1).map(Number);
    if (b.some((n) => n > 255)) return null;
    text = text.slice(0, dotted.index) + `${((b[0]! << 8) | b[1]!).toString(16)}:${((b[2]! << 8) | b[3]!).toString(16)}`;
  }
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const part = (h: string) => (h === '' ? [] : h.split(':').map((w) => parseInt(w, 16)));
  const head = part(halves[0]!);
  const tail = halves.length === 2 ? part(halves[1]!) : [];
  const fill = 8 - head.length - tail.length;
  if (halves.length === 2 ? fill < 1 : fill !== 0) return null;
  const words = [...head, ...Array<number>(halves.length === 2 ? fill : 0).fill(0), ...tail];
  return words.every((w) => Number.isInteger(w) && w >= 0 && w <= 0xffff) ? words : null;
}

/**
 * The addresses to connect to for a target found through DNS: its host resolved once, internal
 * addresses (see isInternalAddress) left out and reported in `refused`.
 */
export async function publicAddresses(host: string, dns: SrvSource): Promise<{ addresses: string[]; refused: string[] }> {
  const all = isIP(host) ? [host] : await (dns.lookup ?? systemLookup)(host);
  const addresses: string[] = [];
  const refused: string[] = [];
  for (const a of all) (isInternalAddress(a) ? refused : addresses).push(a);
  return { addresses, refused };
}

export async function resolveS2sTargets(
  domain: string,
  staticRoutes: Record<string, { host: string; port: number }>,
  dns: SrvSource,
  random: () => number = Math.random,
): Promise<ConnectTarget[]> {
  const fixed = staticRoutes[domain];
  if (fixed) return [{ host: fixed.host, port: fixed.port, directTls: false, via: 'static' }];
  const ascii = domainToASCII(domain);
  if (!ascii) return [];
  const [tls, plain] = await Promise.all([lookup(dns, `_xmpps-server._tcp.${ascii}`), lookup(dns, `_xmpp-server._tcp.${ascii}`)]);
  if (tls.length === 0 && plain.length === 0) return [{ host: ascii, port: 5269, directTls: false, via: 'fallback' }];
  const usable = (records: SrvRecordLike[]) => (records.length === 1 && (records[0]!.name === '.' || records[0]!.name === '') ? [] : records);
  const all = [
    ...usable(tls).map((r) => ({ r, directTls: true })),
    ...usable(plain).map((r) => ({ r, directTls: false })),
  ];
  return orderSrv(all, random).map(({ r, directTls }) => ({ host: r.name.replace(/\.$/, ''), port: r.port, directTls, via: 'srv' as const }));
}

async function lookup(dns: SrvSource, name: string): Promise<SrvRecordLike[]> {
  try {
    return await dns.resolveSrv(name);
  } catch {
    return [];
  }
}

/** RFC 2782 ordering: ascending priority; within one priority, weighted random selection. */
export function orderSrv<T extends { r: SrvRecordLike; directTls: boolean }>(items: T[], random: () => number = Math.random): T[] {
  const byPriority = new Map<number, T[]>();
  for (const it of items) {
    const list = byPriority.get(it.r.priority) ?? [];
    list.push(it);
    byPriority.set(it.r.priority, list);
  }
  const out: T[] = [];
  for (const priority of [...byPriority.keys()].sort((a, b) => a - b)) {
    for (const directTls of [true, false]) {
      const pool = byPriority.get(priority)!.filter((it) => it.directTls === directTls);
      while (pool.length) {
        const total = pool.reduce((s, it) => s + it.r.weight, 0);
        let pick = 0;
        if (total > 0) {
          let n = random() * total;
          pick = pool.findIndex((it) => (n -= it.r.weight) < 0);
          if (pick < 0) pick = pool.length - 1;
        } else {
          pick = Math.floor(random() * pool.length);
        }
        out.push(pool.splice(pick, 1)[0]!);
      }
    }
  }
  return out;
}
