/**
 * A test server with the HTTPS service on (listen.https on 127.0.0.1) and a certificate of a
 * throwaway CA for localhost and *.localhost, so clients check it against that CA. The public URL
 * is https://localhost:PORT (http.publicUrl), since no upload.<host> name resolves on a test
 * machine; the upload service's domain is still upload.<host>.
 */
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import type { Clock } from '../../shared/clock.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { startTestServer, type TestServer } from './server.js';
import { reservedPort } from './ports.js';
import { createTestCa, type TestCa } from './test-ca.js';

export interface UploadServer {
  ts: TestServer;
  ca: TestCa;
  /** The CA certificate (PEM) clients must trust. */
  caPem: string;
  port: number;
  stop(): Promise<void>;
}

export async function startUploadServer(opts: { clock?: Clock; config?: Record<string, unknown>; logLevel?: 'debug' | 'info'; modules?: GatehouseModule[] } = {}): Promise<UploadServer> {
  const ca = createTestCa('Gatehouse upload test CA');
  const files = ca.issue('localhost');
  const port = await reservedPort();
  const { listen, ...rest } = opts.config ?? {};
  const ts = await startTestServer({
    clock: opts.clock,
    logLevel: opts.logLevel,
    modules: opts.modules,
    config: {
      tls: { cert: files.cert, key: files.key },
      listen: { ...(listen as Record<string, unknown> | undefined), https: [{ host: '127.0.0.1', port }] },
      http: { publicUrl: `https://localhost:${port}` },
      ...rest,
    },
  });
  return {
    ts,
    ca,
    caPem: readFileSync(ca.caFile, 'utf8'),
    port,
    async stop() {
      await ts.stop();
      ca.remove();
    },
  };
}

/** GET over HTTPS trusting `ca` (PEM): the status, the body and its content type. */
export function fetchBytes(url: string, ca: string): Promise<{ status: number; body: Buffer; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    request(url, { ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), type: res.headers['content-type'] }));
    })
      .on('error', reject)
      .end();
  });
}

/** PUT `body` (as a client does into an upload slot) over HTTPS trusting `ca`: the status. */
export function putBytes(url: string, ca: string, body: Buffer, type: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', ca, headers: { 'Content-Type': type, 'Content-Length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}
