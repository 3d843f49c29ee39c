/**
 * The `loginGuard` configuration section, declared next to the failed-login guard that reads it
 * (failed-login-guard.ts) and composed into the whole schema by server/config/schema.ts.
 */
import { array, duration, int, object, section, type Infer } from '../../../shared/schema-kit.js';
import { cidr } from '../../../shared/config-values.js';

export const loginGuardConfigSection = section(
  'loginGuard',
  object(
    {
      window: duration({ default: '10m', min: 1000, doc: 'Failed logins older than this are forgotten by the guard.' }),
      delayAfter: int({ default: 3, min: 1, doc: 'Failures (per address or account, within `window`) before further attempts are answered late.' }),
      delayBase: duration({ default: '1s', doc: 'The first delay; it doubles with every further failure.' }),
      delayMax: duration({ default: '30s', doc: 'The longest delay.' }),
      blockAfter: int({ default: 10, min: 1, doc: 'Failures from one address (IPv6: one /64) within `window` that block it.' }),
      accountBlockAfter: int({ default: 20, min: 1, doc: 'Failures against one account within `window` that block logins to it.' }),
      blockFor: duration({ default: '15m', min: 1000, doc: 'How long a block lasts (`gatehouse blocks lift` ends it early).' }),
      trustedProxies: array(cidr, {
        default: [],
        doc:
          'Addresses (CIDR) never delayed or blocked by address, such as a load balancer or a web client gateway whose users all share its address. Account limits still apply. ' +
          'None by default, loopback included: behind sslh, stunnel or HAProxy on the same host every client would come from loopback, so trusting it would switch the address limits off.',
      }),
    },
    { doc: 'Failed-login guard (P7): growing delays, then temporary blocks.' },
  ),
);

export type LoginGuardConfig = Infer<typeof loginGuardConfigSection.schema>;
