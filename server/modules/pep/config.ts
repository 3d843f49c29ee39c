/**
 * The `pep` configuration section, declared next to the PEP module (pep.ts) and composed into the
 * whole schema by server/config/schema.ts. Kept apart from the module so the schema does not load it.
 */
import { bool, duration, int, object, section, size } from '../../../shared/schema-kit.js';

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
      subscriptions: bool({
        default: true,
        doc: 'Explicit subscriptions to PEP nodes (XEP-0060 subscribe, as Movim uses for microblogs): stored, so who follows whose node is personal data the privacy policy names (P22: turning it on is announced first). Off: subscribe is answered `feature-not-implemented` and the retention sweep deletes the stored subscriptions; notifications by +notify stay.',
      }),
      remoteSubscriptionLifetime: duration({
        default: '90d',
        min: 3_600_000,
        doc: 'A subscription of a JID on another server is deleted this long after it was made, unless its client subscribes again (which renews it); subscriptions of local accounts last until they unsubscribe, lose access or are deleted.',
      }),
      maxSubscriptionsPerNode: int({
        default: 1000,
        min: 0,
        doc: 'Most explicit subscriptions one node keeps (and at most 8 of one bare JID, its resources). One more is refused with `policy-violation` and `<too-many-subscriptions/>`.',
      }),
    },
    { doc: 'Personal eventing (PEP, XEP-0163): what clients publish on their account (encryption keys, avatars, bookmarks, nickname).' },
  ),
);
