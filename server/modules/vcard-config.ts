/**
 * The `vcard` configuration section, declared next to the vCard module (vcard.ts) and composed into
 * the whole schema by server/config/schema.ts.
 */
import { bool, object, section } from '../../shared/schema-kit.js';

export const vcardConfigSection = section(
  'vcard',
  object(
    {
      avatarHashInPresence: bool({
        default: true,
        doc:
          "Put the hash of the user's vCard photo into the available presence their clients send (XEP-0398 section 4, XEP-0153), as Prosody and ejabberd do, and send the presence again when the photo changes, " +
          "so contacts' clients see avatars without asking each time. The hash is of the user's own public vCard photo, nothing about the connection. " +
          'Set to `false` where the published policy is read strictly as "presence passes unchanged" (P19): then the server leaves the presence its clients send as it is, and clients announce their avatars themselves.',
      }),
    },
    { doc: 'vCard (XEP-0054) and avatars in presence.' },
  ),
);
