/**
 * XEP-0156 discovery over HTTP: /.well-known/host-meta (XRD, RFC 6415) and host-meta.json name the
 * WebSocket endpoint (urn:xmpp:alt-connections:websocket) of the host the request is for, from the
 * service's public URL. Open to every origin (a web client on another site reads it), never cached
 * long: the URL follows the configuration. A Host header that names no served host gets 404.
 */
import type { HttpRoute, HttpService } from '../core/http-service.js';
import { escapeAttr } from '../../shared/xml/element.js';
import { plain } from './routes.js';

export const WEBSOCKET_PATH = '/xmpp-websocket';
const REL_WEBSOCKET = 'urn:xmpp:alt-connections:websocket';
const NS_XRD = 'http://docs.oasis-open.org/ns/xri/xrd-1.0';

/** The WebSocket URL of a host ('wss://host:5443/xmpp-websocket'), or null when the service is off. */
export function webSocketUrl(http: HttpService, host: string): string | null {
  const base = http.baseUrl(host);
  return base === null ? null : `${base.replace(/^http/, 'ws')}${WEBSOCKET_PATH}`;
}

export function hostMetaRoutes(http: HttpService, served: () => readonly string[]): HttpRoute[] {
  const answer = (json: boolean): HttpRoute['handle'] => (req, res, info) => {
    res.setHeader('Access-Control-Allow-Origin', '*');
    const url = served().includes(info.host) ? webSocketUrl(http, info.host) : null;
    if (url === null) return plain(req, res, 404, 'not found');
    const body = json
      ? `${JSON.stringify({ links: [{ rel: REL_WEBSOCKET, href: url }] })}\n`
      : `<?xml version='1.0' encoding='utf-8'?>\n<XRD xmlns='${NS_XRD}'>\n  <Link rel='${REL_WEBSOCKET}' href='${escapeAttr(url)}'/>\n</XRD>\n`;
    res.writeHead(200, {
      'Content-Type': json ? 'application/json' : 'application/xrd+xml; charset=utf-8',
      'Content-Length': Buffer.byteLength(body),
      'Cache-Control': 'max-age=300',
    });
    res.end(req.method === 'HEAD' ? undefined : body);
  };
  return [
    { path: '/.well-known/host-meta', methods: ['GET', 'HEAD'], handle: answer(false) },
    { path: '/.well-known/host-meta.json', methods: ['GET', 'HEAD'], handle: answer(true) },
  ];
}
