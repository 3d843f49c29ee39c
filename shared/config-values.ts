/**
 * Configuration values with XMPP knowledge, shared by the server's and the transports'
 * configuration schemas (the kit itself, shared/schema-kit.ts, knows nothing of XMPP).
 */
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
