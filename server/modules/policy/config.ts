/**
 * The `policy` configuration section, declared next to the privacy policy module that reads it
 * (module.ts, facts.ts, announce.ts) and composed into the whole schema by server/config/schema.ts.
 */
import { enumOf, nullable, object, section, str } from '../../../shared/schema-kit.js';

export const policyConfigSection = section(
  'policy',
  object(
    {
      contact: nullable(str(), {
        default: null,
        doc: 'How users can reach the operator (e.g. `mailto:admin@example.org`), shown in the privacy policy and contact info (XEP-0157).',
      }),
      language: enumOf(['de', 'en'], { default: 'en', doc: 'Language of the privacy policy and of server messages to users.' }),
    },
    { doc: 'The privacy policy.' },
  ),
);
