/**
 * The route table of the HTTPS service and how a request reaches a route: the longest matching
 * path (an exact path, or a prefix ending in '/'), 404 for a path no route has, 405 with Allow for
 * a method the route does not list, 500 without details when a route throws. Every response
 * carries the security headers below; a route may replace them before it writes its head.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import type { HttpRequestInfo, HttpRoute, HttpService } from '../core/http-service.js';
import type { Logger } from '../../shared/logger.js';

export const SECURITY_HEADERS: Readonly<Record<string, string>> = {
  'Strict-Transport-Security': 'max-age=31536000',
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'Content-Security-Policy': "default-src 'none'; frame-ancestors 'none'; base-uri 'none'",
  'Cross-Origin-Resource-Policy': 'cross-origin',
};

export class HttpRoutes implements HttpService {
  private readonly routes = new Map<string, HttpRoute>();

  constructor(
    private readonly log: Logger,
    private readonly base: (host: string) => string | null,
  ) {}

  route(route: HttpRoute): () => void {
    if (!route.path.startsWith('/')) throw new Error(`HTTP route path must start with '/': ${route.path}`);
    if (this.routes.has(route.path)) throw new Error(`HTTP route ${route.path} is served twice`);
    this.routes.set(route.path, route);
    return () => {
      if (this.routes.get(route.path) === route) this.routes.delete(route.path);
    };
  }

  baseUrl(host: string): string | null {
    return this.base(host.toLowerCase());
  }

  /** The route for a path: an exact one, else the longest prefix ending in '/'. */
  find(path: string): HttpRoute | null {
    const exact = this.routes.get(path);
    if (exact && !exact.path.endsWith('/')) return exact;
    let best: HttpRoute | null = null;
    for (const r of this.routes.values()) {
      if (r.path.endsWith('/') && path.startsWith(r.path) && (!best || r.path.length > best.path.length)) best = r;
    }
    return best;
  }

  async handle(req: IncomingMessage, res: ServerResponse, ip: string): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    const info = requestInfo(req, ip);
    if (!info) return plain(req, res, 400, 'bad request');
    const route = this.find(info.url.pathname);
    if (!route) return plain(req, res, 404, 'not found');
    if (!route.methods.includes(req.method ?? '')) {
      res.setHeader('Allow', route.methods.join(', '));
      return plain(req, res, 405, 'method not allowed');
    }
    try {
      await route.handle(req, res, info);
    } catch (err) {
      this.log.error('HTTP route failed', { path: route.path, error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) plain(req, res, 500, 'internal server error');
      else res.destroy();
    }
  }

  /** An Upgrade request (WebSocket): only a route with `upgrade` takes it. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer, ip: string): void {
    const info = requestInfo(req, ip);
    const route = info ? this.find(info.url.pathname) : null;
    if (!info || !route?.upgrade || req.method !== 'GET') return refuseUpgrade(socket, route ? 400 : 404, route ? 'Bad Request' : 'Not Found');
    try {
      route.upgrade(req, socket, head, info);
    } catch (err) {
      this.log.error('HTTP upgrade failed', { path: route.path, error: err instanceof Error ? err.message : String(err) });
      socket.destroy();
    }
  }
}

export function requestInfo(req: IncomingMessage, ip: string): HttpRequestInfo | null {
  const host = hostName(req.headers.host ?? '');
  if (host === null) return null;
  const target = req.url ?? '';
  if (!target.startsWith('/')) return null;
  try {
    // Appended, not resolved: '//other.example/x' is a path here, never another origin.
    const url = new URL(`https://${host || 'invalid'}${target}`);
    return { ip, host, url };
  } catch {
    return null;
  }
}

/** The Host header's name, lower-cased, without the port; '' when missing; null when malformed. */
export function hostName(header: string): string | null {
  const h = header.trim().toLowerCase();
  if (h === '') return '';
  const m = /^(\[[0-9a-f:.]+\]|[a-z0-9.-]+)(?::\d{1,5})?$/.exec(h);
  return m ? m[1]! : null;
}

/** A short text answer (the body is not sent for HEAD). */
export function plain(req: IncomingMessage, res: ServerResponse, status: number, text: string): void {
  const body = `${text}\n`;
  // A request body that was not read: the connection is not kept for another request.
  if (!req.complete) res.setHeader('Connection', 'close');
  res.writeHead(status, { 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body) });
  res.end(req.method === 'HEAD' ? undefined : body);
}

/** Answers an Upgrade request that is not taken, on the raw socket (no ServerResponse exists for it). */
export function refuseUpgrade(socket: Duplex, status: number, reason: string, text = reason): void {
  const body = `${text}\n`;
  const headers = [`HTTP/1.1 ${status} ${reason}`, 'Connection: close', 'Content-Type: text/plain; charset=utf-8', `Content-Length: ${Buffer.byteLength(body)}`];
  for (const [k, v] of Object.entries(SECURITY_HEADERS)) headers.push(`${k}: ${v}`);
  if (socket.writable) socket.end(`${headers.join('\r\n')}\r\n\r\n${body}`);
  else socket.destroy();
}
