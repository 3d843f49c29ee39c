/**
 * HTTP File Upload (XEP-0363) through real XMPP streams and real HTTPS: slots, PUT, GET with
 * ranges, bad input, retention with a moved clock, account deletion, the export list.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request as httpsRequest } from 'node:https';
import { connect as tlsConnect } from 'node:tls';
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { randomBytes } from 'node:crypto';
import { loginAs, type TestServer } from '../helpers/server.js';
import { startUploadServer, type UploadServer } from '../helpers/upload-server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { ManualClock } from '../../shared/clock.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { makeVerifier } from '../../server/auth/scram.js';
import { parseConfig } from '../../server/config/index.js';
import { accountDataParts, exportAccounts, parseExport, renderExport } from '../../server/modules/export/export.js';

const UPLOAD = 'urn:xmpp:http:upload:0';
const SERVICE = 'upload.localhost';

interface HttpResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

function http(ca: string, method: string, url: string, headers: Record<string, string | number> = {}, body?: Buffer): Promise<HttpResult> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { method, headers, ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

/** Sends a request line as written (no URL normalisation by a client library). */
function rawGet(ca: string, port: number, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername: 'localhost', ca }, () => {
      s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n`);
    });
    let data = '';
    s.on('data', (d) => (data += String(d)));
    s.on('end', () => resolve(data.split('\r\n')[0]!));
    s.on('error', reject);
  });
}

const slotRequest = (filename: string, size: number | string, type?: string, to = SERVICE) =>
  x('iq', { type: 'get', to }, x('request', { xmlns: UPLOAD, filename, size: String(size), 'content-type': type }));

async function slot(c: TestClient, filename: string, size: number, type?: string): Promise<{ put: string; get: string; headers: Element[] }> {
  const reply = await c.iq(slotRequest(filename, size, type));
  assert.equal(reply.attrs.type, 'result', reply.toString());
  const s = reply.getChild('slot', UPLOAD)!;
  return { put: s.getChild('put')!.attrs.url!, get: s.getChild('get')!.attrs.url!, headers: s.getChild('put')!.getChildren('header') };
}

function filesOnDisk(ts: TestServer): { done: string[]; partial: string[] } {
  const dir = join(ts.dir, 'uploads');
  return { done: readdirSync(dir).filter((n) => n !== 'tmp'), partial: readdirSync(join(dir, 'tmp')) };
}

async function untilLogged(ts: TestServer, pattern: RegExp, from: number): Promise<void> {
  while (!ts.logLines.slice(from).some((l) => pattern.test(l))) await new Promise((r) => setTimeout(r, 5));
}

describe('HTTP File Upload (XEP-0363)', () => {
  let ts: TestServer;
  let web: UploadServer;
  let alice: TestClient;
  let bob: TestClient;
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12, 0, 0));

  before(async () => {
    web = await startUploadServer({
      clock,
      config: {
        hosts: [
          { domain: 'localhost', registration: 'open' },
          { domain: 'other.localhost', registration: 'open' },
        ],
        upload: { maxFileSize: '64KiB', quotaPerUser: '100KiB', maxOpenSlots: 3, domains: { 'other.localhost': 'files.other.localhost' } },
      },
    });
    ts = web.ts;
    alice = await loginAs(ts, 'alice');
    bob = await loginAs(ts, 'bob');
  });
  after(async () => {
    await web.stop();
  });

  test('the host lists the upload service; its disco#info has store/file, the feature and max-file-size', async () => {
    const items = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
    const jids = items.getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.jid);
    assert.ok(jids.includes(SERVICE), jids.join(','));
    assert.ok(jids.includes('files.other.localhost') && !jids.includes('upload.other.localhost'), jids.join(','));
    const info = await alice.iq(x('iq', { type: 'get', to: SERVICE }, x('query', { xmlns: NS.discoInfo })));
    const q = info.getChild('query', NS.discoInfo)!;
    assert.deepEqual({ ...q.getChild('identity')!.attrs }, { category: 'store', type: 'file', name: 'HTTP File Upload' });
    assert.ok(q.getChildren('feature').some((f) => f.attrs.var === UPLOAD));
    const form = q.getChild('x', NS.dataForms)!;
    const field = (v: string) => form.getChildren('field').find((f) => f.attrs.var === v)?.getChildText('value');
    assert.equal(field('FORM_TYPE'), UPLOAD);
    assert.equal(field('max-file-size'), String(64 * 1024));
  });

  test('the configuration refuses an upload domain without {host} or a per-host domain that is none', () => {
    assert.throws(() => parseConfig({ upload: { domain: 'upload.example.org' } }, ts.dir), /upload\.domain: must be a domain containing \{host\}/);
    assert.throws(() => parseConfig({ upload: { domains: { 'example.org': 'not a domain' } } }, ts.dir), /upload\.domains\["example\.org"\]: must be a domain/);
  });

  test('slot, PUT, then another client downloads it: same bytes, safe headers, no name in the URL', async () => {
    const data = randomBytes(5000);
    const s = await slot(alice, 'Ferien am Meer (1).JPG', data.length, 'image/jpeg');
    assert.match(s.get, /^https:\/\/localhost:\d+\/upload\/[A-Za-z0-9_-]{24}\.jpg$/);
    assert.ok(!/alice|Ferien/i.test(s.put + s.get));
    assert.equal(s.headers.length, 0);
    const put = await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'image/jpeg', 'Content-Length': data.length }, data);
    assert.equal(put.status, 201);
    assert.equal(put.headers['access-control-allow-origin'], '*');

    const got = await http(web.caPem, 'GET', s.get);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(data));
    assert.equal(got.headers['content-type'], 'image/jpeg');
    assert.equal(got.headers['content-length'], String(data.length));
    assert.equal(got.headers['x-content-type-options'], 'nosniff');
    assert.match(String(got.headers['content-security-policy']), /default-src 'none'.*sandbox/);
    assert.equal(got.headers['content-disposition'], `inline; filename="Ferien am Meer (1).JPG"; filename*=UTF-8''Ferien%20am%20Meer%20%281%29.JPG`);
    assert.equal(got.headers['access-control-allow-origin'], '*');
    assert.equal(got.headers['accept-ranges'], 'bytes');

    const head = await http(web.caPem, 'HEAD', s.get);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(data.length));
    assert.equal(head.body.length, 0);

    const pre = await http(web.caPem, 'OPTIONS', s.put, { Origin: 'https://web.example', 'Access-Control-Request-Method': 'PUT' });
    assert.equal(pre.status, 204);
    assert.match(String(pre.headers['access-control-allow-methods']), /PUT/);
    assert.match(String(pre.headers['access-control-allow-headers']), /Content-Type/);

    // On disk: complete files only, owner-only permissions.
    const disk = filesOnDisk(ts);
    assert.deepEqual(disk.partial, []);
    assert.equal(statSync(join(ts.dir, 'uploads')).mode & 0o777, 0o700);
    for (const f of disk.done) assert.equal(statSync(join(ts.dir, 'uploads', f)).mode & 0o777, 0o600);
  });

  test('other types are downloaded, not shown, with the UTF-8 name', async () => {
    const data = Buffer.from('<script>alert(1)</script>');
    const s = await slot(bob, 'Grüße.html', data.length, 'text/html');
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'text/html', 'Content-Length': data.length }, data)).status, 201);
    const got = await http(web.caPem, 'GET', s.get);
    assert.equal(got.headers['content-disposition'], `attachment; filename="Gr__e.html"; filename*=UTF-8''Gr%C3%BC%C3%9Fe.html`);
    assert.equal(got.headers['x-content-type-options'], 'nosniff');
  });

  test('byte ranges: 206 with Content-Range, suffix and open ranges; 416 beyond the end', async () => {
    const data = Buffer.from('0123456789abcdefghij');
    const s = await slot(alice, 'range.txt', data.length, 'text/plain');
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 201);
    const r1 = await http(web.caPem, 'GET', s.get, { Range: 'bytes=2-5' });
    assert.equal(r1.status, 206);
    assert.equal(r1.body.toString(), '2345');
    assert.equal(r1.headers['content-range'], 'bytes 2-5/20');
    const r2 = await http(web.caPem, 'GET', s.get, { Range: 'bytes=-3' });
    assert.equal(r2.status, 206);
    assert.equal(r2.body.toString(), 'hij');
    const r3 = await http(web.caPem, 'GET', s.get, { Range: 'bytes=15-' });
    assert.equal(r3.body.toString(), 'fghij');
    assert.equal(r3.headers['content-range'], 'bytes 15-19/20');
    const r4 = await http(web.caPem, 'GET', s.get, { Range: 'bytes=20-30' });
    assert.equal(r4.status, 416);
    assert.equal(r4.headers['content-range'], 'bytes */20');
    // Several ranges or another unit: the whole file (RFC 9110 allows ignoring Range); nonsense: 416.
    for (const range of ['bytes=0-1,4-5', 'items=0-1']) {
      const whole = await http(web.caPem, 'GET', s.get, { Range: range });
      assert.equal(whole.status, 200, range);
      assert.ok(whole.body.equals(data));
    }
    assert.equal((await http(web.caPem, 'GET', s.get, { Range: 'bytes=x-2' })).status, 416);
    const r5 = await http(web.caPem, 'HEAD', s.get, { Range: 'bytes=0-0' });
    assert.equal(r5.status, 206);
    assert.equal(r5.headers['content-length'], '1');
  });

  test('a file over the limit gets not-acceptable with <file-too-large/> and the limit', async () => {
    const reply = await alice.iq(slotRequest('big.bin', 64 * 1024 + 1, 'application/octet-stream'));
    assert.equal(reply.attrs.type, 'error');
    assert.equal(errorCondition(reply), 'not-acceptable');
    assert.equal(reply.getChild('error')!.attrs.type, 'modify');
    assert.equal(reply.getChild('error')!.getChild('file-too-large', UPLOAD)!.getChildText('max-file-size'), String(64 * 1024));
  });

  test('malformed requests get bad-request; another host\'s user gets not-allowed', async () => {
    for (const req of [slotRequest('', 10), slotRequest('a.txt', '-1'), slotRequest('a.txt', 'ten'), slotRequest('a.txt', 10, 'not a type')]) {
      const reply = await alice.iq(req);
      assert.equal(errorCondition(reply), 'bad-request', req.toString());
    }
    const { storage } = ts.server.ctx;
    await storage.accounts.create('carol', 'other.localhost', [makeVerifier('pw-carol', 'SHA-256', 4096)], clock.now());
    const carol = await ts.client({ domain: 'other.localhost' });
    await carol.login('carol', 'pw-carol');
    const reply = await carol.iq(slotRequest('a.txt', 10));
    assert.equal(errorCondition(reply), 'not-allowed');
    // Her own host's service (named in upload.domains) serves her.
    const own = await carol.iq(slotRequest('a.txt', 10, undefined, 'files.other.localhost'));
    assert.equal(own.attrs.type, 'result');
  });

  test('PUT with a wrong or missing length or a wrong type is refused, uses up the slot and leaves nothing on disk', async () => {
    const before = filesOnDisk(ts).done.length;
    const data = Buffer.from('hello world');
    const a = await slot(alice, 'a.txt', data.length, 'text/plain');
    const wrongLength = await http(web.caPem, 'PUT', a.put, { 'Content-Type': 'text/plain', 'Content-Length': 5 }, data.subarray(0, 5));
    assert.equal(wrongLength.status, 400);
    assert.equal((await http(web.caPem, 'PUT', a.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 403);
    const b = await slot(alice, 'b.txt', data.length, 'text/plain');
    const wrongType = await http(web.caPem, 'PUT', b.put, { 'Content-Type': 'text/html', 'Content-Length': data.length }, data);
    assert.equal(wrongType.status, 415);
    const c = await slot(alice, 'c.txt', data.length, 'text/plain');
    const longer = await http(web.caPem, 'PUT', c.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length + 1 }, Buffer.concat([data, Buffer.from('!')]));
    assert.equal(longer.status, 413);
    const d = await slot(alice, 'd.txt', data.length, 'text/plain');
    const chunked = await http(web.caPem, 'PUT', d.put, { 'Content-Type': 'text/plain', 'Transfer-Encoding': 'chunked' }, data);
    assert.equal(chunked.status, 411);
    for (const s of [a, b, c, d]) assert.equal((await http(web.caPem, 'GET', s.get)).status, 404);
    assert.equal(filesOnDisk(ts).done.length, before);
    assert.deepEqual(filesOnDisk(ts).partial, []);
  });

  test('an upload broken off midway leaves nothing, and its slot is gone', async () => {
    const before = filesOnDisk(ts).done.length;
    const s = await slot(alice, 'cut.bin', 40_000, 'application/octet-stream');
    const mark = ts.logLines.length;
    await new Promise<void>((resolve) => {
      const req = httpsRequest(s.put, { method: 'PUT', ca: web.caPem, headers: { 'Content-Type': 'application/octet-stream', 'Content-Length': 40_000 } });
      req.on('error', () => resolve());
      req.write(randomBytes(10_000), () => {
        req.destroy();
        resolve();
      });
    });
    await untilLogged(ts, /upload failed/, mark);
    assert.deepEqual(filesOnDisk(ts).partial, []);
    assert.equal(filesOnDisk(ts).done.length, before);
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'application/octet-stream', 'Content-Length': 40_000 }, randomBytes(40_000))).status, 403);
  });

  test('a used slot cannot be used again; an expired one not at all; a wrong token neither', async () => {
    const data = Buffer.from('once');
    const s = await slot(bob, 'once.txt', data.length, 'text/plain');
    const wrong = s.put.replace(/token=[^&]+/, 'token=' + 'A'.repeat(24));
    assert.equal((await http(web.caPem, 'PUT', wrong, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 403);
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 201);
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, Buffer.from('twic'))).status, 403);
    assert.equal((await http(web.caPem, 'GET', s.get)).body.toString(), 'once');

    const late = await slot(bob, 'late.txt', data.length, 'text/plain');
    clock.advance(5 * 60_000 + 1);
    assert.equal((await http(web.caPem, 'PUT', late.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 403);
    assert.equal((await http(web.caPem, 'GET', late.get)).status, 404);
  });

  test('paths that are not a file id are 404: traversal, listing, other names', async () => {
    for (const path of ['/upload/', '/upload/../../etc/passwd', '/upload/..%2f..%2fetc%2fpasswd', '/upload/%2e%2e/%2e%2e/etc/passwd', '/upload/tmp', '/upload/AAAAAAAAAAAAAAAAAAAAAAAA/x.jpg', '/upload/AAAAAAAAAAAAAAAAAAAAAAAA']) {
      const line = await rawGet(web.caPem, web.port, path);
      assert.match(line, /^HTTP\/1\.1 404/, path);
    }
  });

  test('the quota counts stored files and open slots: resource-constraint when full', async () => {
    const dave = await loginAs(ts, 'dave');
    const data = randomBytes(60 * 1024);
    const s = await slot(dave, 'big.bin', data.length, 'application/octet-stream');
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'application/octet-stream', 'Content-Length': data.length }, data)).status, 201);
    await slot(dave, 'open.bin', 30 * 1024, 'application/octet-stream');
    const full = await dave.iq(slotRequest('more.bin', 20 * 1024, 'application/octet-stream'));
    assert.equal(errorCondition(full), 'resource-constraint');
    assert.equal(full.getChild('error')!.attrs.type, 'wait');
    assert.match(full.getChild('error')!.getChildText('text', NS.stanzas)!, /quota/);
    // Still room for a small one.
    await slot(dave, 'small.bin', 1024, 'application/octet-stream');
  });

  test('open slots are limited per account, with a retry time', async () => {
    const erin = await loginAs(ts, 'erin');
    for (let i = 0; i < 3; i++) await slot(erin, `f${i}.txt`, 1, 'text/plain');
    const reply = await erin.iq(slotRequest('f3.txt', 1, 'text/plain'));
    assert.equal(errorCondition(reply), 'resource-constraint');
    assert.match(reply.getChild('error')!.getChild('retry', UPLOAD)!.attrs.stamp!, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/);
  });

  test('P23 the XEP-0227 export lists the account\'s files (name, size, type, URL, date), not their contents; an import skips the list', async () => {
    const { storage, modules } = ts.server.ctx;
    const parts = accountDataParts(modules);
    const root = await exportAccounts(storage, [{ username: 'alice', host: 'localhost' }], parts);
    const xml = renderExport(root);
    const user = root.getChild('host')!.getChild('user')!;
    const list = user.getChild('uploads', 'urn:gatehouse:uploads:0')!;
    const files = list.getChildren('file');
    const photo = files.find((f) => f.attrs.name === 'Ferien am Meer (1).JPG')!;
    assert.equal(photo.attrs.size, '5000');
    assert.equal(photo.attrs['content-type'], 'image/jpeg');
    assert.match(photo.attrs.url!, /^https:\/\/localhost:\d+\/upload\//);
    assert.ok(!Number.isNaN(Date.parse(photo.attrs.created!)));
    assert.equal(photo.children.length, 0);
    // Read back as an import would: the list is claimed (no unknown-element warning) and nothing else happens.
    const parsed = parseExport(xml, parts);
    assert.deepEqual(parsed.warnings, []);
  });

  test('P11 retention: files older than retention.uploads are gone from disk and database', async () => {
    const data = Buffer.from('kept for now');
    const s = await slot(bob, 'recent.txt', data.length, 'text/plain');
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 201);
    const mod = ts.server.ctx.modules.find((m) => m.name === 'upload')!;
    const sweep = mod.retention![0]!;
    assert.equal(sweep.name, 'uploads');
    const all = filesOnDisk(ts).done.length;
    // 29 days on: nothing is old enough.
    clock.advance(29 * 86_400_000);
    assert.equal(await sweep.run(ts.server.ctx, clock.now(), { dryRun: false, batch: 500 }), 0);
    assert.equal((await http(web.caPem, 'GET', s.get)).status, 200);
    clock.advance(2 * 86_400_000);
    const deleted = await sweep.run(ts.server.ctx, clock.now(), { dryRun: false, batch: 2 });
    assert.equal(deleted, all);
    assert.equal((await http(web.caPem, 'GET', s.get)).status, 404);
    assert.deepEqual(filesOnDisk(ts).done, []);
    const account = (await ts.server.ctx.storage.accounts.get('bob', 'localhost'))!;
    assert.deepEqual(await mod.accountData!.export(ts.server.ctx.storage, account), []);
  });

  test('P23 deleting the account (XEP-0077 remove) deletes its files', async () => {
    const frank = await loginAs(ts, 'frank');
    const data = Buffer.from('mine');
    const s = await slot(frank, 'mine.txt', data.length, 'text/plain');
    assert.equal((await http(web.caPem, 'PUT', s.put, { 'Content-Type': 'text/plain', 'Content-Length': data.length }, data)).status, 201);
    const id = /\/upload\/([^.]+)/.exec(s.get)![1]!;
    assert.ok(existsSync(join(ts.dir, 'uploads', id)));
    const mark = ts.logLines.length;
    const removed = await frank.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(removed.attrs.type, 'result');
    await untilLogged(ts, /uploads of a deleted account removed/, mark);
    assert.equal((await http(web.caPem, 'GET', s.get)).status, 404);
    assert.ok(!existsSync(join(ts.dir, 'uploads', id)));
  });

  test('logs name upload ids and sizes, never file names', () => {
    const text = ts.logLines.join('\n');
    for (const name of ['Ferien', 'Grüße', 'range.txt', 'mine.txt', 'once.txt']) assert.ok(!text.includes(name), name);
    assert.match(text, /upload stored/);
  });
});

