/**
 * The `privateStorage` configuration section, declared next to the private storage module
 * (private-storage.ts) and composed into the whole schema by server/config/schema.ts.
 */
import { object, section, size } from '../../shared/schema-kit.js';

export const privateStorageConfigSection = section(
  'privateStorage',
  object(
    {
      maxBytesPerUser: size({
        default: '1MiB',
        min: 0,
        doc: 'Most bytes of private XML (XEP-0049) per account, keys included. A set that would go over it is refused with `resource-constraint`; what was stored stays.',
      }),
    },
    { doc: 'Private XML storage (XEP-0049).' },
  ),
);
