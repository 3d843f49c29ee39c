/**
 * The `subscriptions` configuration section, declared next to the presence module that enforces
 * it (presence.ts) and composed into the whole schema by server/config/schema.ts.
 */
import { int, object, section } from '../../shared/schema-kit.js';

export const subscriptionsConfigSection = section(
  'subscriptions',
  object(
    {
      maxPendingPerUser: int({
        default: 100,
        min: 0,
        doc:
          'Most unanswered inbound subscription requests an account keeps. Further requests are refused with a `resource-constraint` presence error (type wait) to the sender; ' +
          'the requests already waiting stay (the oldest survive, nothing is dropped silently), and the user makes room by answering them. ' +
          'Requests from contacts already on the roster and from configured components (transports adding legacy contacts) are always accepted.',
      }),
      maxPendingPerDomain: int({
        default: 20,
        min: 0,
        doc:
          "Most unanswered inbound subscription requests an account keeps from one remote domain (this server's own hosts are not limited by it). " +
          'Further ones from that domain are refused with a `policy-violation` presence error (type wait), so one hostile server cannot fill `maxPendingPerUser` alone.',
      }),
    },
    { doc: 'Presence subscription requests (RFC 6121 section 3) that wait for the user: limits against floods from other servers.' },
  ),
);
