/**
 * The `registrationLimit` configuration section, declared next to the register module that
 * enforces it (register.ts) and composed into the whole schema by server/config/schema.ts.
 */
import { array, duration, int, object, section, type Infer } from '../../shared/schema-kit.js';
import { cidr } from '../../shared/config-values.js';

export const registrationLimitConfigSection = section(
  'registrationLimit',
  object(
    {
      maxPerAddress: int({
        default: 3,
        min: 0,
        doc: 'Most successful in-band registrations (XEP-0077) from one address (IPv6: one /64) within `window`; 0 means no limit. Further attempts get a `policy-violation` error (type wait) and count as failed registrations (P7).',
      }),
      window: duration({ default: '1h', min: 1000, doc: 'The period `maxPerAddress` counts over.' }),
      exempt: array(cidr, {
        default: [],
        doc: 'Addresses (CIDR) not limited, such as a web sign-up gateway. Empty by default, loopback included: behind a reverse proxy without the PROXY protocol every client looks like loopback.',
      }),
    },
    { doc: 'Throttle for in-band account registration, like Prosody\'s registration_throttle_max/period. Counted in memory (a restart resets it).' },
  ),
);

export type RegistrationLimitConfig = Infer<typeof registrationLimitConfigSection.schema>;
