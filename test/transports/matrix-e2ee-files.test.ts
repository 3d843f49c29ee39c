/**
 * Encrypted attachments (Matrix spec, "Sending encrypted attachments") through Gatehouse: a Gatehouse
 * with its upload service (test CA), the Matrix transport with its Rust crypto, the fake homeserver,
 * and an Element-like peer with its own crypto (matrix-element-peer.ts) in an encrypted direct chat.
 *
 * - The peer sends an m.image with `file` (an EncryptedFile v2, AES-256-CTR, made here with
 *   node:crypto as a client would): the XMPP user gets an upload-service URL with the plaintext.
 *   A ciphertext that does not match its hash gives a notice, never the file.
 * - An upload URL sent from XMPP reaches the peer as an event with `file` and no `url`: the
 *   homeserver holds ciphertext only, and the peer decrypts it to the original bytes.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { fetchBytes, putBytes, startUploadServer, type UploadServer } from '../helpers/upload-server.js';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { SECRET, availableUser, registerForm, serverModules, subscribeBoth, until } from './kit-harness.js';
import { matrixTransport, type TransportFixture } from './transport-fixture.js';
import { ElementPeer } from './matrix-element-peer.js';

const UPLOAD = 'urn:xmpp:http:upload:0';
const MX = 'mxe.localhost';

type Json = Record<string, unknown>;

const unpadded = (b: Buffer) => b.toString('base64').replace(/=+$/, '');
const fromBase64 = (s: string) => Buffer.from(s.replace(/-/g, '+').replace(/_/g, '/'), 'base64');

/** What an Element client does before uploading into an encrypted room: the ciphertext and its EncryptedFile (url still to set). */
function encryptAttachment(plain: Buffer): { ciphertext: Buffer; file: (url: string) => Json } {
  const key = randomBytes(32);
  const iv = Buffer.concat([randomBytes(8), Buffer.alloc(8)]);
  const cipher = createCipheriv('aes-256-ctr', key, iv);
  const ciphertext = Buffer.concat([cipher.update(plain), cipher.final()]);
  return {
    ciphertext,
    file: (url) => ({
      v: 'v2',
      url,
      key: { kty: 'oct', key_ops: ['encrypt', 'decrypt'], alg: 'A256CTR', k: key.toString('base64url'), ext: true },
      iv: unpadded(iv),
      hashes: { sha256: unpadded(createHash('sha256').update(ciphertext).digest()) },
    }),
  };
}

describe('Matrix encrypted attachments through Gatehouse', () => {
  let web: UploadServer;
  let ts: TestServer;
  let hs: FakeHomeserver;
  let matrix: TransportFixture;
  let alice: TestClient;
  let meId: string;
  let bobId: string;
  let dmRoom: string;
  let bob: ElementPeer;
  const logLines: string[] = [];
  const bobJid = () => `${escapeLocal(bobId)}@${MX}`;
  const fromBob = (el: Element) => el.name === 'message' && el.attrs.from === bobJid() && !!el.getChildText('body');

  before(async () => {
    hs = await FakeHomeserver.start();
    meId = hs.createUser('alice', { password: 'mx-e2ee-files-1', displayName: 'Alice' });
    bobId = hs.createUser('bob', { displayName: 'Bob' });
    dmRoom = hs.createRoom({ creator: bobId, members: [meId], direct: true, encrypted: true });
    web = await startUploadServer({
      modules: serverModules(),
      config: { components: [{ domain: MX, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] } },
    });
    ts = web.ts;
    matrix = matrixTransport({ componentPort: ts.componentPort, domain: MX, logLines }, {
      loginTimeout: '15s',
      media: { caFile: web.ca.caFile, maxSize: 64 * 1024, timeout: '10s' },
      network: { pollTimeout: 2, syncFailureTimeout: 2, retryInterval: 0.2, requestTimeout: 5, joinTimeout: 5, undecryptableTimeout: 2 },
    });
    await matrix.start();
    alice = await availableUser(ts, 'mxe-alice');
    const reg = await registerForm(alice, { username: meId, homeserver: hs.url, password: 'mx-e2ee-files-1' }, MX);
    assert.equal(reg.attrs.type, 'result', String(reg));
    await subscribeBoth(alice, MX);
    await until(() => hs.keys.devicesWithKeys(meId).length === 1, 'the gateway device uploads its keys', 15000);
    bob = await ElementPeer.start(hs, bobId);
  });

  after(async () => {
    bob?.stop();
    await alice?.close().catch(() => undefined);
    await matrix?.stop();
    await web?.stop();
    await hs?.stop();
  });

  test('an encrypted m.image from Element arrives as an upload-service URL whose bytes are the plaintext', async () => {
    const plain = randomBytes(20_000);
    const enc = encryptAttachment(plain);
    const mxc = hs.upload(enc.ciphertext, 'application/octet-stream', null);
    await bob.sendText(dmRoom, 'cat.png', { msgtype: 'm.image', file: enc.file(mxc), info: { mimetype: 'image/png', size: plain.length } });
    const msg = await alice.expect(fromBob, 20000);
    const body = msg.getChildText('body')!;
    assert.match(body, new RegExp(`^https://localhost:${web.port}/upload/[A-Za-z0-9_-]+\\.png$`));
    assert.deepEqual(msg.getChildren('x', NS.oob).map((o) => o.getChildText('url')), [body]);
    const got = await fetchBytes(body, web.caPem);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(plain), 'the decrypted bytes');
    // What went over the homeserver in the event was ciphertext (an m.room.encrypted event).
    assert.ok(!logLines.some((l) => l.includes('cat.png')), 'no file name in the log');
  });

  test('an encrypted file whose ciphertext does not match its hash gives a notice, not the file', async () => {
    const plain = randomBytes(5_000);
    const enc = encryptAttachment(plain);
    const tampered = Buffer.from(enc.ciphertext);
    tampered[100] = tampered[100]! ^ 0xff;
    const mxc = hs.upload(tampered, 'application/octet-stream', null);
    await bob.sendText(dmRoom, 'tampered.png', { msgtype: 'm.image', file: enc.file(mxc), info: { mimetype: 'image/png', size: plain.length } });
    const msg = await alice.expect((el) => fromBob(el) && el.getChildText('body')!.startsWith('tampered.png'), 20000);
    assert.equal(msg.getChildText('body'), 'tampered.png [encrypted file that the gateway could not pass on]');
    assert.equal(msg.getChildren('x', NS.oob).length, 0, 'no link to the file');
    assert.ok(!msg.getChildText('body')!.includes('https://'), 'no upload URL');
  });

  test('an upload URL sent from XMPP reaches Element as an encrypted file: ciphertext on the homeserver, the original bytes after decryption', async () => {
    const plain = randomBytes(30_000);
    const slot = await alice.iq(x('iq', { type: 'get', to: 'upload.localhost' }, x('request', { xmlns: UPLOAD, filename: 'holiday.jpg', size: String(plain.length), 'content-type': 'image/jpeg' })));
    assert.equal(slot.attrs.type, 'result', String(slot));
    const s = slot.getChild('slot', UPLOAD)!;
    assert.equal(await putBytes(s.getChild('put')!.attrs.url!, web.caPem, plain, 'image/jpeg'), 201);
    const url = s.getChild('get')!.attrs.url!;
    const uploadsBefore = hs.sent({ kind: 'upload' }).length;
    alice.send(x('message', { type: 'chat', to: bobJid(), id: 'e2ee-file-1' }, x('body', {}, url), x('x', { xmlns: NS.oob }, x('url', {}, url))));
    const ev = await bob.waitForMessage(dmRoom, (c) => c.msgtype === 'm.image' && c.body === 'holiday.jpg', 20000);
    assert.ok(ev.isEncrypted(), 'the event itself came encrypted');
    const content = ev.getContent() as { url?: string; file?: { v: string; url: string; key: { k: string; alg: string }; iv: string; hashes: { sha256: string } }; info: Json };
    assert.equal(content.url, undefined, 'no plain url');
    assert.ok(content.file, 'an EncryptedFile');
    assert.equal(content.file.v, 'v2');
    assert.equal(content.file.key.alg, 'A256CTR');
    assert.deepEqual(content.info, { size: plain.length, mimetype: 'image/jpeg' });
    // The peer downloads the ciphertext from the media repository and decrypts it as Element would.
    const res = await fetch(`${hs.url}/_matrix/client/v1/media/download/${content.file.url.slice('mxc://'.length)}`, { headers: { Authorization: `Bearer ${bob.client.getAccessToken()}` } });
    assert.equal(res.status, 200);
    const ciphertext = Buffer.from(await res.arrayBuffer());
    assert.equal(createHash('sha256').update(ciphertext).digest().toString('base64').replace(/=+$/, ''), content.file.hashes.sha256.replace(/=+$/, ''), 'the hash matches');
    const decipher = createDecipheriv('aes-256-ctr', fromBase64(content.file.key.k), fromBase64(content.file.iv));
    const decrypted = Buffer.concat([decipher.update(ciphertext), decipher.final()]);
    assert.ok(decrypted.equals(plain), 'the original bytes');
    // The media repository never saw the plaintext.
    const uploads = hs.sent({ kind: 'upload' }).slice(uploadsBefore);
    assert.equal(uploads.length, 1);
    const stored = hs.mediaOf(content.file.url)!;
    assert.ok(stored.data.equals(ciphertext));
    assert.ok(!stored.data.equals(plain));
    assert.equal(stored.data.indexOf(plain.subarray(0, 64)), -1, 'no plaintext in what the homeserver stored');
    assert.equal(stored.contentType, 'application/octet-stream');
    // And the event on the homeserver is m.room.encrypted, so neither URL nor key is in clear there.
    for (const r of hs.sent({ kind: 'event', roomId: dmRoom, userId: meId })) assert.equal(r.eventType, 'm.room.encrypted');
  });
});
