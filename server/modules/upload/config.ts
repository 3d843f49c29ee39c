/**
 * The `upload` configuration section (XEP-0363 HTTP File Upload), read by the upload module and
 * composed into the schema by server/config/schema.ts. How long files are kept is
 * `retention.uploads`, with the other retention periods.
 */
import { anyMapping, bool, duration, int, joinKey, object, refine, section, size, str, fail } from '../../../shared/schema-kit.js';

export const uploadConfigSection = section(
  'upload',
  object(
    {
      enabled: bool({
        default: true,
        doc: 'Offer HTTP File Upload (XEP-0363) on the HTTPS service. It is a fact of the privacy policy: turning it on is held back until announced.',
      }),
      domain: refine(
        str({
          default: 'upload.{host}',
          doc: 'The upload service\'s address for each host; `{host}` stands for the host\'s domain. It must resolve to this server and be covered by its certificate.',
        }),
        (v, keyPath) => {
          if (!/^[a-z0-9.{}-]+$/i.test(v) || !v.includes('{host}')) fail(keyPath, 'must be a domain containing {host}, such as upload.{host}');
          return v.toLowerCase();
        },
      ),
      domains: refine(
        anyMapping({
          default: {},
          type: 'mapping of host to domain',
          doc: 'Per host, the upload service\'s address instead of `domain`, e.g. `{ example.org: files.example.org }`.',
        }),
        (v, keyPath) => {
          const out: Record<string, string> = {};
          for (const [host, d] of Object.entries(v)) {
            if (typeof d !== 'string' || !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(d)) fail(joinKey(keyPath, host), 'must be a domain such as files.example.org');
            out[host.toLowerCase()] = d.toLowerCase();
          }
          return out;
        },
      ),
      maxFileSize: size({ default: '50MiB', min: 1, doc: 'Largest file one slot may hold; larger requests get `file-too-large`.' }),
      quotaPerUser: size({ default: '500MiB', min: 0, doc: 'Bytes of stored files (and open slots) per account; a slot that would exceed it gets `resource-constraint`. 0: no limit.' }),
      slotLifetime: duration({ default: '5m', min: 10_000, doc: 'How long a slot\'s PUT URL can be used; each slot can be used once.' }),
      maxOpenSlots: int({ default: 10, min: 1, doc: 'Slots one account may hold at once before uploading (a client asking for more gets `resource-constraint`, type wait).' }),
      componentQuota: size({
        default: '2GiB',
        min: 0,
        doc: 'Bytes of stored files (and open slots) per local component (`components`, such as a transport re-hosting Matrix and Discord attachments); 0: components may not upload. Their files belong to no account and are deleted after `retention.uploads`.',
      }),
      componentMaxOpenSlots: int({ default: 50, min: 1, doc: 'Slots one local component may hold at once before uploading.' }),
    },
    { doc: 'HTTP File Upload (XEP-0363): clients upload files over HTTPS and share the link.' },
  ),
);

