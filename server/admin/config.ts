/**
 * The `admin` configuration section, declared next to the admin web console that reads it
 * (http.ts) and composed into the whole schema by server/config/schema.ts. Its listeners are
 * `listen.admin`, with the other listeners.
 */
import { array, enumOf, fail, int, nullable, object, section, str } from '../../shared/schema-kit.js';
import { cidr } from '../../shared/config-values.js';

export const adminConfigSection = section(
  'admin',
  object(
    {
      metricsToken: nullable(
        str({
          secret: true,
          check(v, keyPath) {
            if (v.length < 16) fail(keyPath, 'must be at least 16 characters');
            return v;
          },
        }),
        { default: null, doc: 'Bearer token that may read `/metrics` without an admin login (`Authorization: Bearer …`). `null`: only logged-in admins.' },
      ),
      tls: enumOf(['auto', 'off'], {
        default: 'auto',
        doc: "`auto` serves the admin console over HTTPS with the hosts' certificates; `off` serves plain HTTP and is only allowed on loopback addresses.",
      }),
      maxConnections: int({ default: 64, min: 1, doc: 'Most open connections to the admin listeners together; more are closed as soon as they are accepted.' }),
      maxConnectionsPerIp: int({ default: 16, min: 1, doc: 'Most open admin connections from one IPv4 address or one IPv6 /64.' }),
      trustedProxies: array(cidr, {
        default: [],
        type: 'list of CIDR ranges or IP addresses',
        doc:
          'Reverse proxies (CIDR) whose `X-Forwarded-For` header names the client (the last address in it that is not itself such a proxy). ' +
          'From any other address the header is ignored. A proxy that speaks the PROXY protocol is configured in `listen.admin[].proxyProtocol` instead.',
      }),
    },
    { doc: 'The admin web console and public privacy page (opened on `listen.admin`).' },
  ),
);
