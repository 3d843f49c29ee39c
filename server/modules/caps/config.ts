/**
 * The `caps` configuration section, declared next to the entity capabilities module (caps.ts) and
 * composed into the whole schema by server/config/schema.ts.
 */
import { duration, int, object, section } from '../../../shared/schema-kit.js';

export const capsConfigSection = section(
  'caps',
  object(
    {
      cacheSize: int({
        default: 1000,
        min: 1,
        doc: 'Most verified capability hashes (XEP-0115 `ver`) remembered with their features, least recently used dropped first. Kept in memory only.',
      }),
      queryTimeout: duration({
        default: '30s',
        min: 1000,
        doc: 'How long to wait for the answer to a disco#info query about a `ver` before giving up on that entity.',
      }),
      maxResourcesPerAccount: int({
        default: 5000,
        min: 1,
        doc: "Most available resources (own and contacts') whose capabilities are tracked per account; over it the one seen least recently is forgotten.",
      }),
      maxPendingQueries: int({
        default: 100,
        min: 1,
        doc: 'Most disco#info queries about capabilities waiting for an answer at once, server-wide; more wait their turn.',
      }),
    },
    { doc: 'Entity capabilities (XEP-0115) of clients: which features each available resource has, for PEP notifications. Nothing is stored; what is known about a resource is forgotten when it goes unavailable.' },
  ),
);
