/**
 * The server's one HTTPS service (issue #15): a listener on `listen.https` with the hosts'
 * certificates, the per-address limits and timeouts of the other listeners, on which features
 * serve their paths (WebSocket at /xmpp-websocket, XEP-0156 host-meta, XEP-0363 uploads). A feature
 * gets it as the service `http` (`needs: ['http']`) and adds its routes in load().
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';

/** What the service knows about a request before a route sees it. */
export interface HttpRequestInfo {
  /** The client's address (after the PROXY protocol of a trusted proxy). */
  readonly ip: string;
  /** The Host header's name, lower-cased, without the port ('' when missing). */
  readonly host: string;
  /** The request's URL, resolved against the service's own origin. */
  readonly url: URL;
}

export interface HttpRoute {
  /** A path prefix starting and ending with '/' ('/upload/'), or an exact path ('/xmpp-websocket'). */
  readonly path: string;
  /** The methods the route answers; others get 405 with an Allow header (OPTIONS is answered for CORS by the route itself if listed). */
  readonly methods: readonly string[];
  /** Answers the request; a thrown error is a 500 without details. Must consume or discard the body. */
  handle(req: IncomingMessage, res: ServerResponse, info: HttpRequestInfo): void | Promise<void>;
  /**
   * Takes a GET with `Upgrade` (a WebSocket handshake) on this path; without it such a request is
   * answered 400. The route owns `socket` from then on: it answers or destroys it.
   */
  upgrade?(req: IncomingMessage, socket: Duplex, head: Buffer, info: HttpRequestInfo): void;
}

export interface HttpService {
  /** Adds a route; a path another route has is an error. The returned function removes it. */
  route(route: HttpRoute): () => void;
  /**
   * The public base URL for a host, without a trailing slash ('https://upload.example.org:5443'):
   * from the configuration's public URL if set, else the host name and the listener's port. Null
   * when the service is off (no listener).
   */
  baseUrl(host: string): string | null;
}

declare module './services.js' {
  interface Services {
    http: HttpService;
  }
}
