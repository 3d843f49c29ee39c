/**
 * The `s2s` configuration section, declared next to the federation code that reads it
 * (service.ts, s2s-in.ts, s2s-out.ts, certificates.ts; the s2s module in modules/s2s.ts loads it)
 * and composed into the whole schema by server/config/schema.ts.
 */
import net from 'node:net';
import { normaliseDomain } from '../../shared/jid.js';
import { array, bool, describe, duration, fail, filePath, int, map, nullable, object, refine, section, str } from '../../shared/schema-kit.js';
import { domain } from '../../shared/config-values.js';

/** `host:port` or `[ipv6]:port`. */
const hostPort = refine(
  str({
    type: '"host:port"',
    expected: 'a "host:port" string (such as xmpp.example.org:5269 or [2001:db8::1]:5269)',
    check(s, keyPath) {
      const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^\s:[\]/@]+)):(\d{1,5})$/.exec(s.trim());
      const port = m ? Number(m[3]) : 0;
      if (!m || port < 1 || port > 65535 || (m[1] !== undefined && net.isIPv6(m[1]) === false))
        fail(keyPath, `expected a "host:port" string (such as xmpp.example.org:5269 or [2001:db8::1]:5269), got ${describe(s)}`);
      return s.trim();
    },
  }),
  (s) => {
    const i = s.lastIndexOf(':');
    return { host: s.slice(0, i).replace(/^\[(.*)\]$/, '$1').toLowerCase(), port: Number(s.slice(i + 1)) };
  },
);

export const s2sConfigSection = section(
  's2s',
  object(
    {
      requireEncryption: bool({ default: true, doc: 'Federate only over TLS.' }),
      requireValidCertificates: bool({ default: false, doc: 'Reject remote servers without a valid certificate for their domain (otherwise fall back to dialback).' }),
      allow: array(domain(), { default: [], type: 'list of domain names', uniqueBy: (d) => d, uniqueWhat: 'domain', doc: 'If not empty, federate only with these domains.' }),
      deny: array(domain(), { default: [], type: 'list of domain names', uniqueBy: (d) => d, uniqueWhat: 'domain', doc: 'Never federate with these domains.' }),
      static: map(hostPort, {
        default: {},
        keyName: 'domain',
        key(k, keyPath) {
          const d = normaliseDomain(k.trim());
          if (d === null) fail(keyPath, 'expected a domain name as key');
          return d;
        },
        doc: 'Fixed addresses for remote domains instead of DNS SRV lookups: `{ "example.net": "xmpp.example.net:5269" }`. Through DNS, federation only connects to public addresses (never loopback, private, link-local or other special-purpose ranges); a server on such an address is reached only when its domain is listed here.',
      }),
      caFile: nullable(filePath({ mustExist: true }), {
        default: null,
        doc: 'PEM file of certificate authorities trusted for remote servers, besides the system store.',
      }),
      connectTimeout: duration({ default: '30s', min: 1000, doc: 'Stanzas to a server whose link is not up after this long bounce with `remote-server-timeout`.' }),
      idleTimeout: duration({ default: '10m', min: 1000, doc: 'Links idle this long are closed (and opened again when needed).' }),
      maxConnections: int({ default: 1000, min: 1, doc: 'Most open inbound server connections (`listen.s2s`); more are closed as soon as they are accepted.' }),
    },
    { doc: 'Server-to-server federation (opened when `listen.s2s` is not empty): TLS, SASL EXTERNAL or dialback (XEP-0220).' },
  ),
);
