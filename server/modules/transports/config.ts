/**
 * The `transports` configuration section, declared next to the supervisor that runs them
 * (transports-supervisor.ts) and composed into the whole schema by server/config/schema.ts.
 */
import { array, fail, filePath, object, section, str } from '../../../shared/schema-kit.js';

export const transportsConfigSection = section(
  'transports',
  array(
    object({
      name: str({
        check(v, keyPath) {
          if (!/^[a-z][a-z0-9-]*$/.test(v)) fail(keyPath, 'must be a lower-case name such as irc');
          return v;
        },
        doc: 'The transport (irc, matrix, discord): which adapter the child process runs.',
      }),
      config: filePath({ mustExist: true, doc: "The transport's own configuration file (see docs/transports.md)." }),
    }),
    { default: [], uniqueBy: (t) => t.config, uniqueWhat: 'transport config', uniqueKey: 'config', doc: 'Transports the server runs as child processes, restarted with backoff when they exit.' },
  ),
);
