/**
 * The `pep` configuration section, declared next to the PEP module (pep.ts) and composed into the
 * whole schema by server/config/schema.ts. Kept apart from the module so the schema does not load it.
 */
import { int, object, section, size } from '../../../shared/schema-kit.js';

export const pepConfigSection = section(
  'pep',
  object(
    {
      maxItemsPerNode: int({
        default: 256,
        min: 1,
        doc: 'Most items one PEP node keeps; `pubsub#max_items` may not be set higher, and `max` means this number. A node full to its max_items drops its oldest item for a new one, as XEP-0060 says.',
      }),
      maxItemBytes: size({
        default: '256KiB',
        min: 1,
        doc: 'Largest payload of one item (the XML as stored). A bigger one is refused with `not-acceptable` and `<payload-too-big/>`. The stanza size limit applies too.',
      }),
      maxNodesPerUser: int({
        default: 512,
        min: 0,
        doc: 'Most PEP nodes per account. Creating one more is refused with `not-allowed` and `<max-nodes-exceeded/>`.',
      }),
      maxBytesPerUser: size({
        default: '10MiB',
        min: 0,
        doc: 'Most bytes of PEP data per account (node names, configurations, item ids and payloads). A publish that would go over it is refused with `resource-constraint`; what was stored stays.',
      }),
    },
    { doc: 'Personal eventing (PEP, XEP-0163): what clients publish on their account (encryption keys, avatars, bookmarks, nickname).' },
  ),
);
