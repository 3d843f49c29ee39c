/**
 * The `http` configuration section, declared next to the HTTPS service that reads it (module.ts)
 * and composed into the whole schema by server/config/schema.ts. Its listeners are
 * `listen.https`, with the other listeners.
 */
import { duration, fail, int, nullable, object, section, str } from '../../shared/schema-kit.js';

export const httpConfigSection = section(
  'http',
  object(
    {
      publicUrl: nullable(
        str({
          check(v, keyPath) {
            let url: URL;
            try {
              url = new URL(v.replace(/\{host\}/g, 'example.org'));
            } catch {
              fail(keyPath, 'must be an absolute URL such as https://{host}:5443');
            }
            if (url.protocol !== 'https:' && url.protocol !== 'http:') fail(keyPath, 'must be an http or https URL');
            if (url.search || url.hash || url.username || url.password) fail(keyPath, 'must not have a query, a fragment or credentials');
            return v.replace(/\/+$/, '');
          },
        }),
        {
          default: null,
          doc:
            'The base URL under which clients reach the HTTPS service, without a trailing slash; `{host}` stands for the host name (an XMPP host or a component such as `upload.<host>`). ' +
            'Set it when a reverse proxy or another port is in front, e.g. `https://{host}` or `https://xmpp.example.org/gatehouse`. `null`: `https://<host>:<port>` with the port of the first `listen.https` entry.',
        },
      ),
      maxConnections: int({ default: 512, min: 1, doc: 'Most open connections to the HTTPS listeners together (WebSocket streams included); more are closed as soon as they are accepted.' }),
      maxConnectionsPerIp: int({ default: 32, min: 1, doc: 'Most open HTTPS connections from one IPv4 address or one IPv6 /64 (a browser opens several).' }),
      headersTimeout: duration({ default: '10s', min: 1000, doc: 'A request whose headers have not arrived after this long is answered 408 and closed.' }),
      requestTimeout: duration({ default: '5m', min: 1000, doc: 'Longest time to receive a whole request, body included (an upload); a WebSocket is not a request once upgraded.' }),
      idleTimeout: duration({ default: '60s', min: 1000, doc: 'A connection without traffic for this long between or during requests is closed (WebSocket streams have the client idle pings instead).' }),
    },
    { doc: 'The HTTPS service on `listen.https`: WebSocket client streams (RFC 7395) at `/xmpp-websocket`, XEP-0156 discovery, and the features that add paths to it.' },
  ),
);
