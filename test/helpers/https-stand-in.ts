/**
 * A stand-in for the server's HTTPS service (core/http-service.ts) until the real one lands:
 * a module 'http' that provides the `http` service on an HTTPS listener at 127.0.0.1 with a
 * certificate of a throwaway CA for `localhost` (and *.localhost). baseUrl() is always
 * https://localhost:PORT, since no upload.<host> name resolves on a test machine.
 */
import { createServer, type Server } from 'node:https';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { GatehouseModule } from '../../server/core/context.js';
import type { HttpRoute, HttpService } from '../../server/core/http-service.js';
import { allModules } from '../../server/modules/index.js';
import { createTestCa, type TestCa } from './test-ca.js';

export interface HttpsStandIn {
  module: GatehouseModule;
  ca: TestCa;
  /** The CA certificate (PEM) clients must trust. */
  caPem: string;
  port(): number;
}

export function httpsStandIn(): HttpsStandIn {
  const ca = createTestCa('Gatehouse upload test CA');
  const files = ca.issue('localhost');
  let server: Server | undefined;
  const routes: HttpRoute[] = [];
  const service: HttpService = {
    route(route) {
      if (routes.some((r) => r.path === route.path)) throw new Error(`route ${route.path} exists`);
      routes.push(route);
      return () => {
        const i = routes.indexOf(route);
        if (i >= 0) routes.splice(i, 1);
      };
    },
    baseUrl: () => (server ? `https://localhost:${(server.address() as AddressInfo).port}` : null),
  };
  const module: GatehouseModule = {
    name: 'http',
    specs: [],
    provides: ['http'],
    async load(ctx) {
      server = createServer({ cert: readFileSync(files.cert), key: readFileSync(files.key) }, (req, res) => {
        const url = new URL(req.url ?? '/', 'https://localhost');
        const route = routes.find((r) => (r.path.endsWith('/') ? url.pathname.startsWith(r.path) : url.pathname === r.path));
        if (!route) {
          req.resume();
          res.writeHead(404).end();
          return;
        }
        if (!route.methods.includes(req.method ?? '')) {
          req.resume();
          res.writeHead(405, { Allow: route.methods.join(', ') }).end();
          return;
        }
        Promise.resolve(route.handle(req, res, { ip: req.socket.remoteAddress ?? '', host: (req.headers.host ?? '').replace(/:\d+$/, '').toLowerCase(), url })).catch(() => {
          if (!res.headersSent) res.writeHead(500).end();
          else res.destroy();
        });
      });
      await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
      ctx.services.provide('http', service);
    },
    async unload() {
      const s = server;
      server = undefined;
      if (s) {
        s.closeAllConnections();
        await new Promise<void>((resolve) => s.close(() => resolve()));
      }
    },
  };
  return { module, ca, caPem: readFileSync(ca.caFile, 'utf8'), port: () => (server!.address() as AddressInfo).port };
}

/** The server's modules with `extra` loaded just before the upload module (which uses the http service). */
export function modulesWithHttp(extra: GatehouseModule): GatehouseModule[] {
  const list = allModules();
  const i = list.findIndex((m) => m.name === 'upload');
  list.splice(i, 0, extra);
  return list;
}
