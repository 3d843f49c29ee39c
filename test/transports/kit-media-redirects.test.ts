/**
 * Redirects when the kit fetches, against real local HTTPS servers (a test CA): "own" is the
 * user's XMPP server (localhost, on 127.0.0.1), "other" another host (127.0.0.2, with a certificate
 * for that address, so that following the redirect would work if it were allowed).
 * - MediaService.fetch (files users send from XMPP): a redirect may only lead where a first URL may
 *   (the user's own server, https); one to another host or to http fails the fetch before it is
 *   followed, one within the own server is followed.
 * - link-guard.ts (links people said on IRC): each redirect target is checked again, its address
 *   too; one to an address that is not allowed is refused before it is connected to.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer as createHttpsServer, type Server } from 'node:https';
import { createServer as createHttpServer } from 'node:http';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { randomBytes } from 'node:crypto';
import { Logger } from '../../shared/logger.js';
import { MediaService } from '../../transports/kit/media.js';
import { guardedGet, LinkRefusedError } from '../../transports/kit/link-guard.js';
import { createTestCa, type TestCa } from '../helpers/test-ca.js';

type Route = { file: Buffer } | { redirect: string };

interface Site {
  port: number;
  hits: string[];
  routes: Map<string, Route>;
  server: Server | ReturnType<typeof createHttpServer>;
}

async function startSite(host: string, cert: { cert: string; key: string } | null): Promise<Site> {
  const routes = new Map<string, Route>();
  const hits: string[] = [];
  const handler = (req: { url?: string }, res: import('node:http').ServerResponse) => {
    const p = req.url ?? '/';
    hits.push(p);
    const r = routes.get(p);
    if (!r) return void res.writeHead(404).end();
    if ('redirect' in r) return void res.writeHead(302, { Location: r.redirect }).end();
    res.writeHead(200, { 'Content-Type': 'application/octet-stream', 'Content-Length': r.file.length }).end(r.file);
  };
  const server = cert ? createHttpsServer({ cert: readFileSync(cert.cert), key: readFileSync(cert.key) }, handler) : createHttpServer(handler);
  await new Promise<void>((resolve) => server.listen(0, host, resolve));
  return { port: (server.address() as AddressInfo).port, hits, routes, server };
}

async function readAll(stream: NodeJS.ReadableStream): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const c of stream as AsyncIterable<Buffer>) chunks.push(c);
  return Buffer.concat(chunks);
}

describe('redirects when the kit fetches (real HTTPS servers on two hosts)', () => {
  let ca: TestCa;
  let own: Site;
  let other: Site;
  let plain: Site;
  let media: MediaService;
  const file = randomBytes(2048);

  before(async () => {
    ca = createTestCa();
    own = await startSite('127.0.0.1', ca.issue('localhost'));
    other = await startSite('127.0.0.2', ca.issue('127.0.0.2'));
    plain = await startSite('127.0.0.1', null);
    other.routes.set('/file.bin', { file });
    own.routes.set('/real.bin', { file });
    media = new MediaService(
      { domain: 'gateway.localhost', request: () => Promise.reject(new Error('no XMPP here')), log: new Logger({ level: 'error', format: 'text', sink: () => {} }), clock: { now: () => new Date() } },
      { enabled: true, maxSize: 1024 * 1024, timeout: 10_000, service: null, server: 'localhost', caFile: ca.caFile },
    );
  });

  after(() => {
    for (const s of [own, other, plain]) s?.server.close();
    ca?.remove();
  });

  test('the other host serves the file to whoever asks (the redirect would work if followed)', async () => {
    const direct = await guardedGet(`https://127.0.0.2:${other.port}/file.bin`, { allowHttp: false, allowPrivateAddresses: true, ca: readFileSync(ca.caFile) }, new AbortController().signal);
    assert.equal(direct.statusCode, 200);
    assert.ok((await readAll(direct)).equals(file));
    other.hits.length = 0;
  });

  test("MediaService.fetch: a redirect from the user's server to another host fails the fetch, and the other host is never asked", async () => {
    own.routes.set('/away.bin', { redirect: `https://127.0.0.2:${other.port}/file.bin` });
    assert.equal(media.fetchable(`https://localhost:${own.port}/away.bin`), true);
    await assert.rejects(media.fetch(`https://localhost:${own.port}/away.bin`), /sent it on elsewhere than your own server/);
    assert.deepEqual(own.hits.filter((h) => h === '/away.bin'), ['/away.bin']);
    assert.deepEqual(other.hits, [], 'the other host saw no request');
  });

  test('MediaService.fetch: a redirect to http on the same server is refused too', async () => {
    own.routes.set('/downgrade.bin', { redirect: `http://localhost:${plain.port}/real.bin` });
    await assert.rejects(media.fetch(`https://localhost:${own.port}/downgrade.bin`), /sent it on elsewhere than your own server over https/);
    assert.deepEqual(plain.hits, [], 'the http server saw no request');
  });

  test("MediaService.fetch: a redirect within the user's server is followed", async () => {
    own.routes.set('/moved.bin', { redirect: '/real.bin' });
    const fetched = await media.fetch(`https://localhost:${own.port}/moved.bin`);
    assert.equal(fetched.size, file.length);
    assert.ok((await readAll(fetched.stream)).equals(file));
  });

  test('link guard: a redirect to an address that is not allowed is refused before it is connected to; an allowed one is followed', async () => {
    const guardCa = readFileSync(ca.caFile);
    // Here only localhost's addresses count as "public", as a real public host's would.
    const opts = { allowHttp: false, allowPrivateAddresses: false, ca: guardCa, allowAddress: (ip: string) => ip === '127.0.0.1' || ip === '::1' };
    own.routes.set('/link-away.bin', { redirect: `https://127.0.0.2:${other.port}/file.bin` });
    const otherHits = other.hits.length;
    await assert.rejects(guardedGet(`https://localhost:${own.port}/link-away.bin`, opts, new AbortController().signal), (err: unknown) => err instanceof LinkRefusedError && /private or special-use address/.test(err.message));
    assert.equal(other.hits.length, otherHits, 'the other host saw no request');
    own.routes.set('/link-moved.bin', { redirect: `https://localhost:${own.port}/real.bin` });
    const res = await guardedGet(`https://localhost:${own.port}/link-moved.bin`, opts, new AbortController().signal);
    assert.equal(res.statusCode, 200);
    assert.ok((await readAll(res)).equals(file));
  });

  test('link guard: a redirect to http is refused unless allowHttp', async () => {
    own.routes.set('/link-http.bin', { redirect: `http://127.0.0.1:${plain.port}/real.bin` });
    const opts = { allowHttp: false, allowPrivateAddresses: true, ca: readFileSync(ca.caFile) };
    const plainHits = plain.hits.length;
    await assert.rejects(guardedGet(`https://localhost:${own.port}/link-http.bin`, opts, new AbortController().signal), /http links are not fetched/);
    assert.equal(plain.hits.length, plainHits, 'the http server saw no request');
  });
});
