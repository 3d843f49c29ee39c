/**
 * The `offline` configuration section, declared next to the offline module that reads it and
 * composed into the whole schema by server/config/schema.ts. Kept apart from offline.ts so the
 * schema does not load the module's code.
 */
import { int, object, section, size, type Infer } from '../../shared/schema-kit.js';

export const offlineConfigSection = section(
  'offline',
  object(
    {
      maxPerUser: int({ default: 1000, min: 0, doc: 'Most messages stored per offline user; 0 stores none.' }),
      maxBytesPerUser: size({
        default: '10MiB',
        min: 0,
        doc: 'Most bytes of stored messages per offline user (the XML as stored). A message that would go over it bounces with `service-unavailable`, like one over `maxPerUser`.',
      }),
    },
    { doc: 'Messages for offline users.' },
  ),
);

export type OfflineConfig = Infer<typeof offlineConfigSection.schema>;
