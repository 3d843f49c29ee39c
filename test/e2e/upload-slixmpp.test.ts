/**
 * slixmpp's xep_0363 plugin (Debian's python3-slixmpp 1.8) finds the upload service in the host's
 * disco#items, asks for a slot and PUTs the file; the URL it sends reaches a second user, whose
 * client downloads exactly the bytes. A second slixmpp client downloads it too.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:https';
import { ensureAccount, loginAs, type TestServer } from '../helpers/server.js';
import { startUploadServer, type UploadServer } from '../helpers/upload-server.js';
import { SlixmppPeer } from './slixmpp-peer.js';
import { skipWithout } from '../helpers/requirements.js';

let ts: TestServer;
let web: UploadServer;

before(async () => {
  web = await startUploadServer({ logLevel: 'info' });
  ts = web.ts;
});
after(async () => {
  await web.stop();
});

function download(url: string): Promise<{ status: number; body: Buffer; type: string | undefined }> {
  return new Promise((resolve, reject) => {
    request(url, { ca: web.caPem }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: Buffer.concat(chunks), type: res.headers['content-type'] }));
    })
      .on('error', reject)
      .end();
  });
}

test('slixmpp uploads with xep_0363, another user gets the URL and downloads the same bytes', { skip: skipWithout('slixmpp') }, async () => {
  await ensureAccount(ts, 'sam');
  await ensureAccount(ts, 'tina');
  const tina = await loginAs(ts, 'tina');
  const file = join(ts.dir, 'holiday photo.png');
  const data = randomBytes(300 * 1024);
  writeFileSync(file, data);
  const env = { SSL_CERT_FILE: web.ca.caFile };
  const sam = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'sam@localhost', 'pw-sam', 'tina@localhost'], env);
  const uma = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), 'tina@localhost', 'pw-tina', 'nobody@localhost'], env);
  try {
    await sam.expect((e) => e.event === 'session_start', 'sam logged in', 30_000);
    await uma.expect((e) => e.event === 'session_start', 'second client logged in', 30_000);
    sam.command({ cmd: 'upload', path: file, content_type: 'image/png', to: tina.jid });
    const service = await sam.expect((e) => e.event === 'upload_service', 'the upload service found in disco', 30_000);
    assert.deepEqual({ jid: service.jid, max: service.max_file_size }, { jid: 'upload.localhost', max: 50 * 1024 * 1024 });
    const done = await sam.expect((e) => e.event === 'uploaded' || e.event === 'upload_failed', 'the upload', 30_000);
    assert.equal(done.event, 'uploaded', JSON.stringify(done));
    const url = String(done.url);
    assert.match(url, /^https:\/\/localhost:\d+\/upload\/[A-Za-z0-9_-]{24}\.png$/);

    const msg = await tina.expect((el) => el.name === 'message' && el.getChildText('body') !== undefined);
    assert.equal(msg.getChildText('body'), url);
    const got = await download(url);
    assert.equal(got.status, 200);
    assert.equal(got.type, 'image/png');
    assert.ok(got.body.equals(data));

    uma.command({ cmd: 'download', url });
    const fetched = await uma.expect((e) => e.event === 'downloaded', 'the download by slixmpp', 30_000);
    assert.equal(fetched.status, 200);
    assert.equal(fetched.sha256, createHash('sha256').update(data).digest('hex'));
    assert.match(String(fetched.disposition), /^inline; filename="holiday photo.png"/);
    sam.command({ cmd: 'quit' });
    uma.command({ cmd: 'quit' });
    await Promise.all([sam.exited, uma.exited]);
  } finally {
    sam.proc.kill();
    uma.proc.kill();
  }
});
