/**
 * The admin HTTP interface: the public privacy policy page (P22), the admin console (P6 live
 * sessions, P12 statistics charts, P7 failed logins and blocks, P10 transport audit, policy
 * versions) and /metrics (P12). node:http only; server-rendered HTML without JavaScript.
 *
 * Listeners: one per `listen.admin` entry (default none: no HTTP at all). The module opens them in
 * load() and closes them in unload(), so server/main.ts needs no change; adminHttpListeners(ctx)
 * tells where they are bound (tests read the port there).
 *
 * TLS: the listeners serve HTTPS with the XMPP hosts' certificates (loadTlsContexts: each host's
 * certificate chosen by SNI, the top-level one, or the generated self-signed one). If no TLS
 * context can be built, a loopback listener falls back to plain HTTP with a warning, and any other
 * address refuses to start: passwords and session cookies never cross a network in clear. The
 * option `tls: 'off'` (config `admin.tls: off`) serves plain HTTP, for loopback only,
 * e.g. behind a reverse proxy on the same host that terminates TLS.
 *
 * Routes (GET also answers HEAD): this file serves GET /healthz, GET|POST /login, POST /logout,
 * GET / (the overview), /metrics and /api/NAME; every other path is declared by a module in its
 * `admin` slot (contract.ts) and served while that module is loaded (adminRoutes below):
 *   public   GET /healthz, GET|POST /login; public pages: /privacy, /datenschutz (?format=md, policy)
 *   admin    GET / (overview); pages: /sessions (session-stats), /statistics (statistics), /blocks
 *            (failed-login guard), /transports and the download /transports.csv (transports),
 *            /policy (privacy policy); POST /logout; actions: /sessions/disconnect, /blocks/lift,
 *            /blocks/lift-all
 *   metrics  GET /metrics: an admin session, or `Authorization: Bearer <token>` when a metrics
 *            token is configured (option metricsToken, or config `admin.metricsToken`)
 *   api      GET /api/NAME: JSON for the modules' commands marked `http` (api.ts); an admin
 *            session, else 401
 * An admin page without a session redirects to /login; a POST without one is refused (403).
 *
 * Login and sessions: see auth.ts. Every POST needs the session's CSRF token (or, for the login
 * form, the token of its double-submit cookie); a POST whose Origin names another site, or that a
 * browser marks Sec-Fetch-Site: cross-site, is refused as well.
 *
 * Audit (P21): every page that shows JIDs or IPs (sessions, failed logins and blocks, transport
 * audit and its CSV) records the read with env.audit() (auditRead with the admin's JID); admin
 * actions (disconnect, lift) are logged with the admin's JID.
 *
 * Headers on every response: Content-Security-Policy (default-src 'none'; style-src
 * 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri
 * 'none'), X-Content-Type-Options: nosniff, Referrer-Policy: no-referrer, X-Frame-Options: DENY,
 * Cross-Origin-Opener-Policy and -Resource-Policy: same-origin; admin responses are not cached.
 * Limits: request bodies 16 KiB (413), headers 8 KiB, 10 s to send the headers, 30 s per request,
 * 5 s keep-alive; connections are counted when accepted (server/net/listeners.ts): at most
 * `admin.maxConnections` in all and `admin.maxConnectionsPerIp` per address (IPv6: /64), and a TLS
 * handshake must finish within `tls.handshakeTimeout`.
 *
 * Client address: the peer's, or the PROXY header's when the peer is in the listener's
 * `proxyProtocol` ranges; X-Forwarded-For is only believed from `admin.trustedProxies`.
 */
import { createServer as createHttpServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import type { Config } from '../config/index.js';
import type { GatehouseModule, ServerContext } from '../core/context.js';
import { loadTlsContexts, type TlsContexts } from '../net/tls.js';
import { ConnectionLimits, listen, rejectionLogger } from '../net/listeners.js';
import { canonicalIp, inRanges, parseIp } from '../../shared/ip-addresses.js';
import { AdminAuthenticator, AdminSessions, SESSION_DEFAULTS, clearCookie, cookieNames, loginFormToken, parseCookies, sameToken, setCookie, type AdminSession } from './auth.js';
import { html, page, type Html, type NavItem, type PageEnv } from './pages/layout.js';
import { loginPage } from './pages/login.js';
import { overviewPage, type ComponentState } from './pages/overview.js';
import { METRICS_CONTENT_TYPE, ServerMetrics } from './pages/metrics.js';
import { answerApi } from './api.js';
import { AdminHttpError, type AdminAction, type AdminDownload, type AdminPage, type PublicPage } from './contract.js';
import { auditRead } from '../modules/policy/admins.js';
import { adminConfigSection } from './config.js';
import { createHash, timingSafeEqual } from 'node:crypto';

export const MAX_BODY_BYTES = 16 * 1024;
export const MAX_HEADER_BYTES = 8 * 1024;
export const HEADERS_TIMEOUT_MS = 10_000;
export const REQUEST_TIMEOUT_MS = 30_000;
export const KEEP_ALIVE_MS = 5_000;

export const CONTENT_SECURITY_POLICY = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'; base-uri 'none'";

const SECURITY_HEADERS: Record<string, string> = {
  'Content-Security-Policy': CONTENT_SECURITY_POLICY,
  'X-Content-Type-Options': 'nosniff',
  'Referrer-Policy': 'no-referrer',
  'X-Frame-Options': 'DENY',
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Resource-Policy': 'same-origin',
};

export interface AdminHttpOptions {
  /** Bearer token that may read /metrics without a session (else config `admin.metricsToken`, if the schema has it). */
  metricsToken?: string | null;
  /** 'auto' (default): HTTPS with the server's certificates; 'off': plain HTTP, loopback addresses only. */
  tls?: 'auto' | 'off';
  /** Replaces loadTlsContexts (tests). */
  loadTls?: (config: Config) => Promise<TlsContexts>;
  /** Admin sessions end after this long without a request (default 30 minutes). */
  idleTimeoutMs?: number;
  /** Most open connections, all listeners together (else config `admin.maxConnections`). */
  maxConnections?: number;
}

export interface AdminListener {
  host: string;
  port: number;
  /** Served over TLS (HTTPS). */
  secure: boolean;
}

declare module '../core/services.js' {
  interface Services {
    'admin-http-listeners': AdminListener[];
  }
}

/** Where the admin HTTP listeners of a running server are bound (empty when there are none). */
export function adminHttpListeners(ctx: ServerContext): AdminListener[] {
  return ctx.services.get('admin-http-listeners') ?? [];
}

export function isLoopback(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  return h === 'localhost' || h === '::1' || /^127(\.\d{1,3}){3}$/.test(h) || /^::ffff:127(\.\d{1,3}){3}$/.test(h);
}

interface Request {
  req: IncomingMessage;
  res: ServerResponse;
  url: URL;
  ip: string;
  secure: boolean;
}

/** Paths this file serves itself (and everything under /api/): no module may declare them. */
const RESERVED_PATHS = new Set(['/', '/login', '/logout', '/metrics', '/healthz']);

/** What the modules declare for the admin interface (their `admin` slots, admin/contract.ts), by path. */
export interface AdminRoutes {
  pages: Map<string, AdminPage>;
  actions: Map<string, AdminAction>;
  downloads: Map<string, AdminDownload>;
  public: Map<string, PublicPage>;
  /** The navigation: the overview, then the pages with `nav` by their order (then module order). */
  nav: NavItem[];
}

/**
 * Collects the admin declarations of `modules`; throws, naming the module, for a path declared
 * twice for one method, a path this file serves itself, or one that is not a plain path.
 */
export function adminRoutes(modules: readonly GatehouseModule[]): AdminRoutes {
  const routes: AdminRoutes = { pages: new Map(), actions: new Map(), downloads: new Map(), public: new Map(), nav: [] };
  const owner = new Map<string, string>();
  const listed: { item: NavItem; order: number }[] = [];
  for (const m of modules) {
    const a = m.admin;
    if (!a) continue;
    const declared: [string, 'GET' | 'POST', readonly { path: string }[] | undefined, Map<string, unknown>][] = [
      ['page', 'GET', a.pages, routes.pages],
      ['download', 'GET', a.downloads, routes.downloads],
      ['public page', 'GET', a.public, routes.public],
      ['action', 'POST', a.actions, routes.actions],
    ];
    for (const [kind, method, list, into] of declared) {
      for (const r of list ?? []) {
        if (!/^\/[a-z0-9][a-z0-9._/-]*$/.test(r.path) || r.path.includes('//')) throw new Error(`module '${m.name}' declares the admin ${kind} ${JSON.stringify(r.path)}, which is not a plain lower-case path`);
        if (RESERVED_PATHS.has(r.path) || r.path.startsWith('/api/')) throw new Error(`module '${m.name}' declares the admin ${kind} ${r.path}, which the admin interface serves itself`);
        const key = `${method} ${r.path}`;
        const other = owner.get(key);
        if (other) throw new Error(`admin path ${key} is declared by both module '${other}' and module '${m.name}'`);
        owner.set(key, m.name);
        into.set(r.path, r);
      }
    }
    for (const p of a.pages ?? []) if (p.nav) listed.push({ item: { path: p.path, label: p.nav.label }, order: p.nav.order });
  }
  routes.nav = [{ path: '/', label: 'Overview' }, ...listed.sort((x, y) => x.order - y.order).map((l) => l.item)];
  return routes;
}

/** One server's admin HTTP interface (its listeners, sessions and routes). */
export class AdminHttp {
  private readonly servers: NetServer[] = [];
  private http: Server | null = null;
  /** Every connection handed to `http`, with its client address (the proxied one behind a PROXY header). */
  private readonly peers = new Map<Socket, string>();
  readonly sessions: AdminSessions;
  private readonly auth: AdminAuthenticator;
  private readonly components: ComponentState = { connected: new Map() };
  private readonly offs: (() => void)[] = [];
  private readonly metricsRegistry: ServerMetrics;
  private readonly log;
  private sweepTimer: NodeJS.Timeout | null = null;

  private readonly routes: AdminRoutes;

  constructor(
    private readonly ctx: ServerContext,
    private readonly options: AdminHttpOptions = {},
  ) {
    this.log = ctx.log.child('admin-http');
    this.routes = adminRoutes(ctx.modules);
    this.routes.pages.set('/', { path: '/', render: (env) => overviewPage(env, this.components) });
    this.sessions = new AdminSessions(() => ctx.clock.now().getTime(), { ...SESSION_DEFAULTS, idleMs: options.idleTimeoutMs ?? SESSION_DEFAULTS.idleMs });
    this.auth = new AdminAuthenticator(ctx);
    for (const c of ctx.config.components) this.components.connected.set(c.domain, null);
    this.metricsRegistry = new ServerMetrics(ctx, this.components.connected);
    this.offs.push(ctx.hooks.on('component/connected', ({ domain, at }) => void this.components.connected.set(domain, at)));
    this.offs.push(ctx.hooks.on('component/disconnected', ({ domain }) => void this.components.connected.set(domain, null)));
  }

  async start(): Promise<AdminListener[]> {
    const { config } = this.ctx;
    const addresses = config.listen.admin;
    if (addresses.length === 0) return [];
    const mode = this.options.tls ?? config.admin.tls;
    let tls: TlsContexts | null = null;
    let tlsError: string | null = null;
    if (mode === 'auto') {
      try {
        // The server's contexts, which every reload renews (also when only the files changed).
        tls = this.options.loadTls ? await this.options.loadTls(config) : (this.ctx.services.get('tls-contexts') ?? (await loadTlsContexts(config)));
      } catch (err) {
        tlsError = err instanceof Error ? err.message : String(err);
      }
    } else tlsError = 'TLS is turned off for the admin interface';
    for (const a of addresses) {
      if (!tls && !isLoopback(a.host)) {
        throw new Error(
          `listen.admin: refusing to serve the admin interface on ${a.host} without TLS (${tlsError}); ` +
            'passwords and session cookies would cross the network in clear. Configure a certificate, or listen on 127.0.0.1 or ::1 only.',
        );
      }
    }
    if (!tls && mode === 'auto') this.log.warn('admin interface served over plain HTTP on loopback: no TLS certificate could be loaded', { error: tlsError });

    const listeners: AdminListener[] = [];
    const secure = tls !== null;
    const http = createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => void this.handle(req, res, secure));
    http.headersTimeout = HEADERS_TIMEOUT_MS;
    http.requestTimeout = REQUEST_TIMEOUT_MS;
    http.keepAliveTimeout = KEEP_ALIVE_MS;
    http.maxHeadersCount = 64;
    http.maxRequestsPerSocket = 1000;
    http.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    // Connections come from our listeners (counted at accept, PROXY header, TLS), never from
    // http.listen(); 'listening' is what starts its header and request timeout checks.
    http.emit('listening');
    this.http = http;
    const limits = new ConnectionLimits(this.options.maxConnections ?? config.admin.maxConnections, config.admin.maxConnectionsPerIp);
    const onRejected = rejectionLogger(this.log, 'admin');
    const serve = (socket: Socket, ip: string): void => {
      this.peers.set(socket, ip);
      socket.once('close', () => this.peers.delete(socket));
      if (socket instanceof TLSSocket) socket.once('secure', () => http.emit('connection', socket));
      else http.emit('connection', socket);
    };
    try {
      for (const a of addresses) {
        const l = await listen({
          kind: secure ? 'admin-https' : 'admin-http',
          address: a,
          tls: tls ?? undefined,
          alpn: ['http/1.1'],
          handshakeTimeout: config.tls.handshakeTimeout,
          limits,
          onConnection: serve,
          onRejected,
        });
        l.server.on('error', (err) => this.log.error('admin HTTP listener error', { error: err.message }));
        this.servers.push(l.server);
        listeners.push({ host: l.host, port: l.port, secure });
        this.log.info('listening', { kind: l.kind, address: l.host, port: l.port });
      }
    } catch (err) {
      await this.stop();
      throw new Error(`listen.admin: cannot listen: ${err instanceof Error ? err.message : String(err)}`);
    }
    // A reload: the connection caps, and the certificates renewed on disk for new connections.
    this.offs.push(
      this.ctx.hooks.on('config/in-force', async ({ after }) => {
        limits.setCaps(this.options.maxConnections ?? after.admin.maxConnections, after.admin.maxConnectionsPerIp);
        if (!tls || tls === this.ctx.services.get('tls-contexts')) return;
        try {
          tls.adopt(await (this.options.loadTls ?? loadTlsContexts)(after));
        } catch (err) {
          this.log.warn('admin interface keeps its certificates: the renewed ones could not be loaded', { error: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    this.sweepTimer = setInterval(() => this.sessions.sweep(), 60_000);
    this.sweepTimer.unref();
    return listeners;
  }

  async stop(): Promise<void> {
    for (const off of this.offs.splice(0)) off();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const servers = this.servers.splice(0);
    const closed = Promise.all(servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const socket of [...this.peers.keys()]) socket.destroy();
    this.http?.close();
    this.http = null;
    await closed;
    this.sessions.clear();
  }

  // ---- requests ----

  private async handle(req: IncomingMessage, res: ServerResponse, secure: boolean): Promise<void> {
    for (const [k, v] of Object.entries(SECURITY_HEADERS)) res.setHeader(k, v);
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://admin.invalid');
    } catch {
      return this.plain(res, 400, 'bad request');
    }
    const r: Request = { req, res, url, ip: this.clientIp(req), secure };
    try {
      await this.route(r);
    } catch (err) {
      if (err instanceof AdminHttpError) {
        if (err.status === 413) res.setHeader('Connection', 'close');
        return this.plain(res, err.status, err.message);
      }
      this.log.error('admin HTTP request failed', { path: url.pathname, error: err instanceof Error ? err.message : String(err) });
      if (!res.headersSent) this.plain(res, 500, 'internal error (see the server log)');
      else res.destroy();
    }
  }

  /**
   * The connection's client address; behind a trusted reverse proxy, the last address in
   * X-Forwarded-For that is not itself a trusted proxy (earlier entries are the client's to invent).
   */
  private clientIp(req: IncomingMessage): string {
    const peer = this.peers.get(req.socket) ?? canonicalIp(req.socket.remoteAddress);
    const trusted = this.ctx.config.admin.trustedProxies;
    const forwarded = req.headers['x-forwarded-for'];
    if (forwarded === undefined || !inRanges(trusted, peer)) return peer;
    let ip = peer;
    for (const entry of [forwarded].flat().join(',').split(',').reverse()) {
      const candidate = entry.trim();
      if (!parseIp(candidate)) break;
      ip = canonicalIp(candidate);
      if (!inRanges(trusted, ip)) break;
    }
    return ip;
  }

  private async route(r: Request): Promise<void> {
    const method = r.req.method ?? 'GET';
    const path = r.url.pathname;
    const get = method === 'GET' || method === 'HEAD';
    const isPost = method === 'POST';
    if (!get && !isPost) {
      r.res.setHeader('Allow', 'GET, HEAD, POST');
      throw new AdminHttpError(405, 'method not allowed');
    }

    // ---- public ----
    if (path === '/healthz') {
      if (!get) throw new AdminHttpError(405, 'method not allowed');
      r.res.setHeader('Cache-Control', 'no-store');
      return this.plain(r.res, 200, 'ok');
    }
    const publicPage = this.routes.public.get(path);
    if (publicPage) {
      if (!get) throw new AdminHttpError(405, 'method not allowed');
      const { type, body } = await publicPage.serve({ ctx: this.ctx, url: r.url, now: this.ctx.clock.now() });
      r.res.setHeader('Cache-Control', 'no-cache');
      return this.send(r.res, 200, type, body);
    }
    if (path === '/login') return get ? this.loginForm(r) : this.login(r);
    if (path === '/metrics') {
      if (!get) throw new AdminHttpError(405, 'method not allowed');
      return this.metrics(r);
    }
    if (path.startsWith('/api/')) {
      if (!get) throw new AdminHttpError(405, 'method not allowed');
      return this.api(r);
    }

    // ---- admin: the overview and what the modules declare ----
    const session = this.session(r);
    const adminPage = get ? this.routes.pages.get(path) : undefined;
    const download = get ? this.routes.downloads.get(path) : undefined;
    const action = isPost ? this.routes.actions.get(path) : undefined;
    const logout = isPost && path === '/logout';
    if (!adminPage && !download && !action && !logout) {
      if (!session) throw new AdminHttpError(404, 'not found');
      return this.html(r.res, 404, page({ title: 'Not found', admin: session, current: '', nav: this.routes.nav }, html`<h1>Not found</h1><p><a href="/">Overview</a></p>`));
    }
    if (!session) {
      if (!get) throw new AdminHttpError(403, 'not logged in (or the session expired): log in again');
      return this.redirect(r.res, `/login?next=${encodeURIComponent(path + r.url.search)}`);
    }
    r.res.setHeader('Cache-Control', 'no-store');
    const env: PageEnv = {
      ctx: this.ctx,
      admin: { jid: session.jid, csrf: session.csrf },
      url: r.url,
      now: this.ctx.clock.now(),
      audit: (what) => auditRead(this.ctx, { jid: session.jid }, what),
    };
    if (download) {
      const file = await download.serve(env);
      if (file.status !== 200) throw new AdminHttpError(file.status, file.body.trim());
      r.res.setHeader('Content-Disposition', `attachment; filename="${file.filename}"`);
      return this.send(r.res, 200, file.type, file.body);
    }
    if (adminPage) {
      const result = await adminPage.render(env);
      const flash = session.flash;
      session.flash = null;
      return this.html(r.res, result.status ?? 200, page({ title: `${result.title} – Gatehouse admin`, admin: session, current: path, flash, nav: this.routes.nav }, result.body));
    }
    const form = await this.form(r);
    if (!sameToken(form.get('csrf'), session.csrf)) throw new AdminHttpError(403, 'the form is missing its CSRF token or it does not match: reload the page and try again');
    if (logout) {
      this.sessions.destroy(session);
      this.log.info('admin console logout', { admin: session.jid });
      r.res.setHeader('Set-Cookie', clearCookie(cookieNames(r.secure).session, r.secure));
      return this.redirect(r.res, '/login?loggedout=1');
    }
    const done = await action!.run(env, form);
    session.flash = done.flash;
    return this.redirect(r.res, done.redirect);
  }

  private session(r: Request): AdminSession | null {
    const token = parseCookies(r.req.headers.cookie).get(cookieNames(r.secure).session);
    return this.sessions.get(token);
  }

  // ---- login ----

  private loginForm(r: Request, error: string | null = null, status = 200, username = ''): void {
    const next = safeNext(r.url.searchParams.get('next'));
    if (!error && this.session(r)) return this.redirect(r.res, next);
    const token = loginFormToken();
    r.res.setHeader('Set-Cookie', setCookie(cookieNames(r.secure).login, token, { secure: r.secure, maxAgeSeconds: 900 }));
    r.res.setHeader('Cache-Control', 'no-store');
    const flash = r.url.searchParams.has('loggedout') ? 'You are logged out.' : null;
    this.html(r.res, status, loginPage({ formToken: token, next, username, error, flash }));
  }

  private async login(r: Request): Promise<void> {
    const form = await this.form(r);
    const names = cookieNames(r.secure);
    const cookie = parseCookies(r.req.headers.cookie).get(names.login);
    if (!cookie || !sameToken(form.get('csrf'), cookie)) {
      throw new AdminHttpError(403, 'the login form expired or is missing its CSRF token: reload the login page and try again');
    }
    const username = (form.get('username') ?? '').slice(0, 3071);
    const password = form.get('password') ?? '';
    const next = safeNext(form.get('next'));
    r.url.searchParams.set('next', next);
    const result = await this.auth.login(username, password, r.ip);
    if (!result.ok) return this.loginForm(r, result.message, result.status, username);
    const { token } = this.sessions.create(result.jid, r.ip);
    r.res.setHeader('Set-Cookie', [setCookie(names.session, token, { secure: r.secure }), clearCookie(names.login, r.secure)]);
    this.redirect(r.res, next);
  }

  // ---- metrics ----

  private async metrics(r: Request): Promise<void> {
    const auth = r.req.headers.authorization;
    let allowed = false;
    if (auth !== undefined) {
      const m = /^Bearer\s+(\S+)\s*$/i.exec(auth);
      // Read at each request: a reload may set or change the token.
      const token = this.options.metricsToken ?? this.ctx.config.admin.metricsToken;
      allowed = m !== null && token !== null && equalSecret(m[1]!, token);
      if (!allowed) this.log.info('metrics request with a wrong bearer token', { ip: r.ip });
    } else allowed = this.session(r) !== null;
    if (!allowed) {
      r.res.setHeader('WWW-Authenticate', 'Bearer realm="gatehouse metrics"');
      throw new AdminHttpError(401, 'log in as an administrator or send the metrics bearer token');
    }
    r.res.setHeader('Cache-Control', 'no-store');
    this.send(r.res, 200, METRICS_CONTENT_TYPE, await this.metricsRegistry.text());
  }

  // ---- the JSON API (commands marked http, server/admin/api.ts) ----

  private async api(r: Request): Promise<void> {
    const session = this.session(r);
    r.res.setHeader('Cache-Control', 'no-store');
    const answer = session ? await answerApi(this.ctx, session.jid, r.url.pathname.slice('/api/'.length), r.url.searchParams) : { status: 401, body: { error: 'log in as an administrator' } };
    this.send(r.res, answer.status, 'application/json; charset=utf-8', JSON.stringify(answer.body, null, 2) + '\n');
  }

  // ---- bodies and responses ----

  /** Reads an application/x-www-form-urlencoded body of at most MAX_BODY_BYTES, after the origin checks. */
  private async form(r: Request): Promise<URLSearchParams> {
    const { req } = r;
    const origin = req.headers.origin;
    // With Referrer-Policy no-referrer, browsers send "Origin: null" on same-site form posts.
    if (origin && origin !== 'null') {
      const expected = `${r.secure ? 'https' : 'http'}://${req.headers.host ?? ''}`.toLowerCase();
      if (origin.toLowerCase() !== expected) throw new AdminHttpError(403, 'cross-origin form submission refused');
    }
    if (req.headers['sec-fetch-site'] === 'cross-site') throw new AdminHttpError(403, 'cross-site form submission refused');
    const type = (req.headers['content-type'] ?? '').split(';')[0]!.trim().toLowerCase();
    if (type !== 'application/x-www-form-urlencoded') throw new AdminHttpError(415, 'expected a form (application/x-www-form-urlencoded)');
    const declared = Number(req.headers['content-length'] ?? '0');
    if (declared > MAX_BODY_BYTES) throw new AdminHttpError(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of req as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > MAX_BODY_BYTES) throw new AdminHttpError(413, `request body larger than ${MAX_BODY_BYTES} bytes`);
      chunks.push(chunk);
    }
    return new URLSearchParams(Buffer.concat(chunks).toString('utf8'));
  }

  private send(res: ServerResponse, status: number, type: string, body: string): void {
    const buf = Buffer.from(body, 'utf8');
    res.writeHead(status, { 'Content-Type': type, 'Content-Length': buf.length });
    res.end(buf);
  }

  private html(res: ServerResponse, status: number, doc: string | Html): void {
    this.send(res, status, 'text/html; charset=utf-8', String(doc));
  }

  private plain(res: ServerResponse, status: number, text: string): void {
    this.send(res, status, 'text/plain; charset=utf-8', text + '\n');
  }

  private redirect(res: ServerResponse, to: string): void {
    res.writeHead(303, { Location: to, 'Content-Length': 0 });
    res.end();
  }
}

/** A local path to go to after login: '/' unless it is a plain path on this site. */
export function safeNext(v: string | null | undefined): string {
  if (!v || v.length > 500 || !v.startsWith('/') || v.startsWith('//') || /[\\\s\u0000-\u001f]/.test(v)) return '/';
  if (v.startsWith('/login') || v.startsWith('/logout')) return '/';
  return v;
}

function equalSecret(a: string, b: string): boolean {
  const x = createHash('sha256').update(a).digest();
  const y = createHash('sha256').update(b).digest();
  return timingSafeEqual(x, y);
}

/**
 * The module. A factory: every server start needs its own instance (tests run several servers in
 * one process; unload() is not told which server stops). Call it inside allModules().
 */
export function createAdminHttpModule(options: AdminHttpOptions = {}): GatehouseModule {
  let http: AdminHttp | null = null;
  return {
    name: 'admin-http',
    config: adminConfigSection,
    specs: [],
    clauses: ['P6', 'P7', 'P10', 'P12', 'P21', 'P22'],
    provides: ['admin-http-listeners'],
    async load(ctx) {
      http = new AdminHttp(ctx, options);
      try {
        ctx.services.provide('admin-http-listeners', await http.start());
      } catch (err) {
        await http.stop();
        http = null;
        throw err;
      }
    },
    async unload() {
      await http?.stop();
      http = null;
    },
  };
}
