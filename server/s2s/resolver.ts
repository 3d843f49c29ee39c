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
 */
import { promises as dnsPromises } from 'node:dns';
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
  return { resolveSrv: (name) => resolver.resolveSrv(name) };
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
