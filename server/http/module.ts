/**
 * The HTTPS service (issue #15): one node:http server behind the listeners of `listen.https`
 * (server/net/listeners.ts: counted at accept against `http.maxConnections` and the per-address
 * `http.maxConnectionsPerIp`, the PROXY protocol from the listener's `proxyProtocol` ranges, direct
 * TLS with the hosts' certificates chosen by SNI and a handshake within `tls.handshakeTimeout`),
 * offered to features as the service `http` (server/core/http-service.ts). It serves itself:
 *   /xmpp-websocket               client streams over WebSocket (RFC 7395, streams/websocket.ts)
 *   /.well-known/host-meta[.json] XEP-0156 discovery of that WebSocket URL
 * and whatever routes features add (XEP-0363 uploads). Unknown paths get 404, a method a route
 * does not list 405 with Allow; there are no directory listings.
 *
 * It is a module outside server/modules/ (like the admin console) because it opens listeners,
 * which feature modules may not; the service exists from its load() on, so a feature that `needs`
 * it adds its routes in its own load(). Its certificates are the server's TLS contexts (service
 * `tls-contexts`), which every reload renews; a reload also applies the caps and timeouts
 * ('config/in-force'); the addresses need a restart.
 */
import { createServer as createHttpServer, type Server } from 'node:http';
import type { Server as NetServer, Socket } from 'node:net';
import { TLSSocket } from 'node:tls';
import { WebSocketServer } from 'ws';
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { HttpRoute } from '../core/http-service.js';
import type { Config } from '../config/index.js';
import { loadTlsContexts } from '../net/tls.js';
import { ConnectionLimits, listen, rejectionLogger } from '../net/listeners.js';
import type { C2SEnvironment, C2SStream } from '../streams/c2s.js';
import { WebSocketC2SStream, XMPP_SUBPROTOCOL } from '../streams/websocket.js';
import { httpConfigSection } from './config.js';
import { HttpRoutes, refuseUpgrade } from './routes.js';
import { WEBSOCKET_PATH, hostMetaRoutes } from './host-meta.js';

const MAX_HEADER_BYTES = 16 * 1024;
const KEEP_ALIVE_MS = 5_000;

/** Where the HTTPS listeners of a running server are bound (tests read the port). */
export interface HttpsListener {
  host: string;
  port: number;
}

declare module '../core/services.js' {
  interface Services {
    'https-listeners': HttpsListener[];
  }
}

class HttpsService {
  readonly routes: HttpRoutes;
  readonly listeners: HttpsListener[] = [];
  private readonly servers: NetServer[] = [];
  private http: Server | null = null;
  private readonly peers = new Map<Socket, string>();
  private readonly offs: (() => void)[] = [];
  private env: C2SEnvironment | null = null;
  private sweepTimer: NodeJS.Timeout | null = null;
  private wss: WebSocketServer | null = null;
  private readonly log;

  constructor(private readonly ctx: ServerContext) {
    this.log = ctx.log.child('https');
    this.routes = new HttpRoutes(this.log, (host) => this.baseUrl(host));
  }

  private baseUrl(host: string): string | null {
    const first = this.listeners[0];
    if (!first) return null;
    const configured = this.ctx.config.http.publicUrl;
    if (configured) return configured.replace(/\{host\}/g, host);
    return `https://${host}${first.port === 443 ? '' : `:${first.port}`}`;
  }

  async start(): Promise<void> {
    const { config } = this.ctx;
    for (const r of [this.webSocketRoute(), ...hostMetaRoutes(this.routes, () => this.ctx.config.hosts.map((h) => h.domain))]) this.offs.push(this.routes.route(r));
    if (config.listen.https.length === 0) return;
    // The server's contexts, which every reload renews; a server assembled without main.ts loads its own.
    const shared = this.ctx.services.get('tls-contexts');
    const tls = shared ?? (await loadTlsContexts(config));
    const env: C2SEnvironment = { ctx: this.ctx, tls, streams: new Set<C2SStream>() };
    this.env = env;
    const http = createHttpServer({ maxHeaderSize: MAX_HEADER_BYTES }, (req, res) => void this.routes.handle(req, res, this.peers.get(req.socket) ?? ''));
    this.http = http;
    applyTimeouts(http, config);
    http.keepAliveTimeout = KEEP_ALIVE_MS;
    http.maxHeadersCount = 64;
    http.on('upgrade', (req, socket, head) => this.routes.upgrade(req, socket, head, this.peers.get(req.socket) ?? ''));
    http.on('clientError', (_err, socket) => {
      if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n');
      else socket.destroy();
    });
    // Connections come from our listeners, never from http.listen(); 'listening' starts its timeout checks.
    http.emit('listening');
    const limits = new ConnectionLimits(config.http.maxConnections, config.http.maxConnectionsPerIp);
    const onRejected = rejectionLogger(this.log, 'https');
    const serve = (socket: Socket, ip: string): void => {
      this.peers.set(socket, ip);
      socket.once('close', () => this.peers.delete(socket));
      if (socket instanceof TLSSocket) socket.once('secure', () => http.emit('connection', socket));
    };
    try {
      for (const address of config.listen.https) {
        const l = await listen({ kind: 'https', address, tls, alpn: ['http/1.1'], handshakeTimeout: config.tls.handshakeTimeout, limits, onConnection: serve, onRejected });
        l.server.on('error', (err) => this.log.error('HTTPS listener error', { error: err.message }));
        this.servers.push(l.server);
        this.listeners.push({ host: l.host, port: l.port });
        this.log.info('listening', { kind: l.kind, address: l.host, port: l.port });
      }
    } catch (err) {
      await this.stop();
      throw new Error(`listen.https: cannot listen: ${err instanceof Error ? err.message : String(err)}`);
    }
    this.offs.push(
      this.ctx.hooks.on('config/in-force', async ({ after }) => {
        limits.setCaps(after.http.maxConnections, after.http.maxConnectionsPerIp);
        // New WebSockets get the new cap (ws reads it at each upgrade); open ones keep theirs, as their parsers do.
        if (this.wss) this.wss.options.maxPayload = webSocketPayloadCap(after);
        applyTimeouts(http, after);
        if (shared) return;
        try {
          tls.adopt(await loadTlsContexts(after));
        } catch (err) {
          this.log.warn('HTTPS service keeps its certificates: the renewed ones could not be loaded', { error: err instanceof Error ? err.message : String(err) });
        }
      }),
    );
    this.sweepTimer = setInterval(() => {
      const now = Date.now();
      for (const s of env.streams) s.sweep(now);
    }, sweepInterval(config));
    this.sweepTimer.unref();
  }

  private webSocketRoute(): HttpRoute {
    const wss = new WebSocketServer({
      noServer: true,
      perMessageDeflate: false,
      maxPayload: webSocketPayloadCap(this.ctx.config),
      handleProtocols: (offered) => (offered.has(XMPP_SUBPROTOCOL) ? XMPP_SUBPROTOCOL : false),
    });
    this.wss = wss;
    return {
      path: WEBSOCKET_PATH,
      methods: ['GET'],
      handle: (req, res) => {
        res.writeHead(426, { 'Content-Type': 'text/plain; charset=utf-8', Upgrade: 'websocket', Connection: 'Upgrade' });
        res.end(`connect with a WebSocket (subprotocol ${XMPP_SUBPROTOCOL}, RFC 7395)\n`);
      },
      upgrade: (req, socket, head, info) => {
        const offered = (req.headers['sec-websocket-protocol'] ?? '').split(',').map((p) => p.trim());
        // RFC 7395 3.3.1: without the xmpp subprotocol this is no XMPP stream.
        if (!offered.includes(XMPP_SUBPROTOCOL)) return refuseUpgrade(socket, 400, 'Bad Request', `the WebSocket subprotocol '${XMPP_SUBPROTOCOL}' is required (RFC 7395)`);
        if (!(req.socket instanceof TLSSocket)) return refuseUpgrade(socket, 400, 'Bad Request');
        const tlsSocket = req.socket;
        const env = this.env;
        if (!env) return refuseUpgrade(socket, 503, 'Service Unavailable');
        wss.handleUpgrade(req, socket, head, (ws) => {
          new WebSocketC2SStream(env, ws, tlsSocket, info.ip);
        });
      },
    };
  }

  async stop(): Promise<void> {
    for (const off of this.offs.splice(0)) off();
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    this.sweepTimer = null;
    const closed = Promise.all(this.servers.splice(0).map((s) => new Promise<void>((resolve) => s.close(() => resolve()))));
    for (const s of [...(this.env?.streams ?? [])]) s.close('system-shutdown');
    this.http?.closeAllConnections();
    for (const socket of this.peers.keys()) socket.destroy();
    this.listeners.length = 0;
    await closed;
  }
}

/** Larger than any stanza the parser lets through, so that it, not the WebSocket layer, refuses one with a stream error. */
function webSocketPayloadCap(config: Config): number {
  return 2 * config.c2s.maxStanzaBytes + 4096;
}

function applyTimeouts(http: Server, config: Config): void {
  http.headersTimeout = config.http.headersTimeout;
  http.requestTimeout = Math.max(config.http.requestTimeout, config.http.headersTimeout);
  http.timeout = config.http.idleTimeout;
}

/** As main.ts's for the client listeners: no timeout overshoots by more than half its length. */
function sweepInterval(config: Config): number {
  const shortest = Math.min(config.c2s.authTimeout, config.c2s.idlePingAfter, config.c2s.pingTimeout);
  return Math.max(100, Math.min(5_000, Math.floor(shortest / 2)));
}

/** The HTTPS service as a module (a factory: every server gets its own). */
export function createHttpsModule(): GatehouseModule {
  let service: HttpsService | null = null;
  return {
    name: 'https',
    config: httpConfigSection,
    specs: [
      { id: 'RFC 7395', status: 'complete', note: 'client streams over WebSocket at /xmpp-websocket on the HTTPS service (listen.https), with the same SASL, limits and stream features as TCP; no see-other-uri' },
      { id: 'XEP-0156', status: 'partial', note: 'HTTP discovery: /.well-known/host-meta and host-meta.json name the WebSocket URL; DNS TXT records are the operator\'s; no BOSH' },
    ],
    provides: ['http', 'https-listeners'],
    async load(ctx) {
      service = new HttpsService(ctx);
      ctx.services.provide('http', service.routes);
      try {
        await service.start();
      } catch (err) {
        await service.stop();
        service = null;
        throw err;
      }
      ctx.services.provide('https-listeners', service.listeners);
    },
    async unload() {
      await service?.stop();
      service = null;
    },
  };
}

/** Where the HTTPS listeners of a running server are bound (empty when there are none or the module is not loaded). */
export function httpsListeners(ctx: ServerContext): HttpsListener[] {
  return ctx.services.get('https-listeners') ?? [];
}
