/**
 * Configuration values with XMPP knowledge, shared by the server's and the transports'
 * configuration schemas (the kit itself, shared/schema-kit.ts, knows nothing of XMPP).
 */
import net from 'node:net';
import { Jid, normaliseDomain } from './jid.js';
import { describe, fail, str, type Common, type Schema } from './schema-kit.js';

/** A domain name, normalised to lower case. */
export function domain(o: Common<string> = {}): Schema<string> {
  return str({
    ...o,
    type: 'domain name',
    check(s, keyPath) {
      const d = normaliseDomain(s.trim());
      if (d === null || d.startsWith('[') || d.includes(':')) fail(keyPath, `expected a domain name, got ${describe(s)}`);
      return d;
    },
  });
}

/** A bare JID such as admin@example.org, normalised. */
export const bareJid = str({
  type: 'bare JID',
  check(s, keyPath) {
    const jid = Jid.tryParse(s.trim());
    if (!jid || !jid.local || jid.resource) fail(keyPath, `expected a bare JID (such as admin@example.org), got ${describe(s)}`);
    return jid.bare;
  },
});

/** `address` or `address/prefix` → `address/prefix`. */
function parseCidr(s: string): string | { error: string } {
  const m = /^([0-9A-Fa-f:.]+)(?:\/(\d{1,3}))?$/.exec(s.trim());
  const version = m ? net.isIP(m[1]) : 0;
  if (!m || version === 0) return { error: 'expected an IPv4 or IPv6 address or CIDR range (such as 192.168.0.0/16 or fd00::/8)' };
  const max = version === 4 ? 32 : 128;
  const prefix = m[2] === undefined ? max : Number(m[2]);
  if (prefix > max) return { error: `prefix length /${prefix} is out of range for IPv${version} (0 to ${max})` };
  return `${m[1].toLowerCase()}/${prefix}`;
}

/** An IPv4 or IPv6 address or CIDR range, normalised to `address/prefix`. */
export const cidr = str({
  type: 'CIDR range or IP address',
  check(s, keyPath) {
    const r = parseCidr(s);
    if (typeof r !== 'string') fail(keyPath, `${r.error}, got ${describe(s)}`);
    return r;
  },
});
