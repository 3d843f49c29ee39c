/**
 * Fetching URLs that people on a network chose (file links said on IRC): the gateway must not
 * become a way into the networks it sits in (SSRF). A request goes out only when
 * - the scheme is https (http only when `media.links.allowHttp`), with no credentials in the URL;
 * - every address the host name resolves to is public unicast: private, loopback, link-local,
 *   unique-local, multicast, CGNAT, documentation, benchmarking, reserved and other special-use
 *   ranges are refused, IPv4 and IPv6, IPv4 embedded in IPv6 (mapped, compatible, NAT64, 6to4) too;
 * - the connection goes to the very address that was checked (the lookup is pinned: a second DNS
 *   answer between check and connect cannot point it elsewhere), TLS still checks the host name;
 * - redirects are followed by hand, each target checked again, at most MAX_LINK_REDIRECTS.
 * `media.links.allowPrivateAddresses` turns the address check off (tests against 127.0.0.1): dangerous.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import { lookup as dnsLookup } from 'node:dns/promises';

export const MAX_LINK_REDIRECTS = 3;

export interface LinkGuardOptions {
  allowHttp: boolean;
  /** Dangerous: lets network users make the gateway fetch from its own and internal networks. */
  allowPrivateAddresses: boolean;
  ca?: Buffer;
  /** Which resolved addresses may be connected to (tests); isPublicAddress by default. */
  allowAddress?: (ip: string) => boolean;
}

/** Why a link was not fetched: the user sees the plain link (and, where useful, a notice). */
export class LinkRefusedError extends Error {}

const V4_SPECIAL = [
  '0.0.0.0/8', // "this network"
  '10.0.0.0/8',
  '100.64.0.0/10', // CGNAT
  '127.0.0.0/8',
  '169.254.0.0/16',
  '172.16.0.0/12',
  '192.0.0.0/24', // IETF protocol assignments
  '192.0.2.0/24', // documentation
  '192.88.99.0/24', // 6to4 relay anycast
  '192.168.0.0/16',
  '198.18.0.0/15', // benchmarking
  '198.51.100.0/24',
  '203.0.113.0/24',
  '224.0.0.0/4', // multicast
  '240.0.0.0/4', // reserved, broadcast
];

const V6_SPECIAL = [
  '::/96', // unspecified, loopback, IPv4-compatible (their IPv4 part is checked as well)
  '64:ff9b:1::/48', // local-use NAT64
  '100::/64', // discard
  '2001::/23', // IETF protocol assignments (Teredo, ORCHID, benchmarking …)
  '2001:db8::/32', // documentation
  '3fff::/20', // documentation
  '5f00::/16', // SRv6 SIDs
  'fc00::/7', // unique local
  'fe80::/10', // link-local
  'fec0::/10', // site-local (deprecated)
  'ff00::/8', // multicast
];

const blocked = new net.BlockList();
for (const r of V4_SPECIAL) {
  const [a, p] = r.split('/');
  blocked.addSubnet(a!, Number(p), 'ipv4');
}
for (const r of V6_SPECIAL) {
  const [a, p] = r.split('/');
  blocked.addSubnet(a!, Number(p), 'ipv6');
}

/** The eight 16-bit groups of an IPv6 address (with an embedded dotted IPv4 part allowed). */
function groupsOf(ip: string): number[] | null {
  let s = ip.split('%')[0]!.toLowerCase();
  const dotted = /(\d+\.\d+\.\d+\.\d+)$/.exec(s);
  if (dotted) {
    const o = dotted[1]!.split('.').map(Number);
    s = s.slice(0, -dotted[1]!.length) + `${((o[0]! << 8) | o[1]!).toString(16)}:${((o[2]! << 8) | o[3]!).toString(16)}`;
  }
  const halves = s.split('::');
  if (halves.length > 2) return null;
  const head = halves[0] ? halves[0].split(':') : [];
  const tail = halves.length === 2 && halves[1] ? halves[1].split(':') : [];
  const fill = halves.length === 2 ? 8 - head.length - tail.length : 0;
  const all = [...head, ...Array<string>(Math.max(0, fill)).fill('0'), ...tail];
  if (all.length !== 8) return null;
  const groups = all.map((g) => parseInt(g, 16));
  return groups.every((g) => Number.isInteger(g) && g >= 0 && g <= 0xffff) ? groups : null;
}

function v4Of(hi: number, lo: number): string {
  return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
}

/**
 * Whether the gateway may connect to `ip` for a URL someone on a network chose: only public
 * unicast. Anything that is not an IP address counts as not public.
 */
export function isPublicAddress(ip: string): boolean {
  const kind = net.isIP(ip.split('%')[0]!);
  if (kind === 4) return !blocked.check(ip, 'ipv4');
  if (kind !== 6) return false;
  const g = groupsOf(ip);
  if (!g) return false;
  // IPv4 inside IPv6: mapped (::ffff:a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) reach that IPv4 address.
  const prefix80Zero = g.slice(0, 5).every((v) => v === 0);
  if (prefix80Zero && g[5] === 0xffff) return isPublicAddress(v4Of(g[6]!, g[7]!));
  if (g[0] === 0x64 && g[1] === 0xff9b && g.slice(2, 6).every((v) => v === 0)) return isPublicAddress(v4Of(g[6]!, g[7]!));
  if (g[0] === 0x2002) return isPublicAddress(v4Of(g[1]!, g[2]!));
  // Global unicast is 2000::/3; the rest is reserved or special.
  if ((g[0]! & 0xe000) !== 0x2000) return false;
  const norm = g.map((v) => v.toString(16)).join(':');
  return !blocked.check(norm, 'ipv6');
}

/** Checks the URL's form; throws LinkRefusedError. */
export function checkLinkUrl(url: URL, o: Pick<LinkGuardOptions, 'allowHttp'>): void {
  if (url.protocol !== 'https:' && !(url.protocol === 'http:' && o.allowHttp)) throw new LinkRefusedError(`${url.protocol.replace(':', '')} links are not fetched`);
  if (url.username || url.password) throw new LinkRefusedError('links with credentials are not fetched');
}

async function resolveChecked(host: string, o: LinkGuardOptions, signal: AbortSignal): Promise<{ address: string; family: number }> {
  const bare = host.startsWith('[') ? host.slice(1, -1) : host;
  let addresses: { address: string; family: number }[];
  if (net.isIP(bare)) addresses = [{ address: bare, family: net.isIP(bare) }];
  else {
    const aborted = new Promise<never>((_, reject) => {
      if (signal.aborted) reject(new Error('timed out'));
      signal.addEventListener('abort', () => reject(new Error('timed out')), { once: true });
    });
    aborted.catch(() => undefined);
    try {
      addresses = await Promise.race([dnsLookup(bare, { all: true, verbatim: false }), aborted]);
    } catch (err) {
      if (signal.aborted) throw err;
      throw new LinkRefusedError('the host name does not resolve');
    }
  }
  if (!addresses.length) throw new LinkRefusedError('the host name does not resolve');
  // One special address among the answers is enough to refuse: which one a client would take is not ours to guess.
  const allowed = o.allowAddress ?? isPublicAddress;
  if (!o.allowPrivateAddresses && addresses.some((a) => !allowed(a.address))) {
    throw new LinkRefusedError('the link points to a private or special-use address');
  }
  return addresses[0]!;
}

/**
 * A GET of a URL a network user chose, under the rules above: the response (unread, 2xx or
 * other), after at most MAX_LINK_REDIRECTS redirects, each checked like the first.
 */
export async function guardedGet(target: string, o: LinkGuardOptions, signal: AbortSignal): Promise<http.IncomingMessage> {
  let url = new URL(target);
  for (let hop = 0; ; hop++) {
    checkLinkUrl(url, o);
    const pinned = await resolveChecked(url.hostname, o, signal);
    const lookup = (_h: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void): void => {
      if (opts?.all) cb(null, [pinned]);
      else cb(null, pinned.address, pinned.family);
    };
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(
        url,
        {
          method: 'GET',
          agent: false,
          lookup: lookup as unknown as net.LookupFunction,
          signal,
          headers: { Accept: '*/*', 'User-Agent': 'Gatehouse-gateway' },
          ...(o.ca && url.protocol === 'https:' ? { ca: o.ca } : {}),
        },
        resolve,
      );
      req.on('error', reject);
      req.end();
    });
    const status = res.statusCode ?? 0;
    if ([301, 302, 303, 307, 308].includes(status)) {
      res.resume();
      const location = res.headers.location;
      if (!location) throw new LinkRefusedError(`a redirect without a target (HTTP ${status})`);
      if (hop >= MAX_LINK_REDIRECTS) throw new LinkRefusedError('too many redirects');
      url = new URL(location, url);
      continue;
    }
    return res;
  }
}
