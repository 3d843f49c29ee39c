/**
 * Transports and the upload service (XEP-0363): a Gatehouse with its HTTPS service (test CA), the
 * Matrix and Discord transports as components with the fake homeserver and the fake Discord.
 *
 * - An m.image from an Element-like user: the transport fetches it from the authenticated media API
 *   (the legacy path answers 404 as on matrix.org), re-hosts it through a slot of upload.localhost,
 *   and the XMPP user gets the HTTPS URL in the body and in an OOB element; the bytes are the same.
 * - A Discord attachment likewise; its signed CDN URL expiring afterwards does not matter.
 * - An upload URL sent from XMPP (body = OOB URL) reaches the homeserver as an upload with the same
 *   bytes and an m.image event with size and mimetype.
 * - A file over `media.maxSize` is not re-hosted: a clear notice, with the network's link.
 * - The component's files are its own (its quota, not an account's) and retention.uploads deletes them.
 * - P9: the Matrix token is used for the download only, never logged.
 * - Without an upload service (no HTTPS listener): the old behaviour, links, logged once.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer } from 'node:http';
import { mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { fetchBytes, putBytes, startUploadServer, type UploadServer } from '../helpers/upload-server.js';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { FakeDiscord, Perm, type FakeChannel, type FakeGuild } from '../fakes/discord.js';
import { createAdapter as createDiscordAdapter } from '../../transports/discord/index.js';
import type { RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { MediaService } from '../../transports/kit/media.js';
import { uploadStorage } from '../../server/modules/upload/storage.js';
import { SECRET, availableUser, bareOf, registerForm, serverModules, startServer, subscribeBoth, until } from './kit-harness.js';
import { matrixTransport, transportFixture, type TransportFixture } from './transport-fixture.js';

const UPLOAD = 'urn:xmpp:http:upload:0';
const MX = 'mx.localhost';
const DC = 'dc.localhost';
const LIMIT = 64 * 1024;

function oobUrls(el: Element): string[] {
  return el.getChildren('x', NS.oob).map((o) => o.getChildText('url') ?? '');
}

describe('transports re-host attachments on the upload service', () => {
  let web: UploadServer;
  let ts: TestServer;
  let hs: FakeHomeserver;
  let fake: FakeDiscord;
  let mx: RunningTransport;
  let dc: RunningTransport;
  let dir: string;
  let alice: TestClient;
  let meId: string;
  let bobId: string;
  let dmRoom: string;
  let dcBob: string;
  let dcDm: FakeChannel;
  let dcGuild: FakeGuild;
  let dcPics: FakeChannel;
  const logLines: string[] = [];

  before(async () => {
    hs = await FakeHomeserver.start();
    meId = hs.createUser('alice', { password: 'mx-password-1', displayName: 'Alice' });
    bobId = hs.createUser('bob', { displayName: 'Bob' });
    dmRoom = hs.createRoom({ creator: bobId, members: [meId], direct: true });
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    dcBob = fake.createUser('bob', { globalName: 'Bob' }).id;
    dcDm = fake.dmChannel(dcBob);
    // A guild bridged by the operator's shared bot (it may manage webhooks there).
    dcGuild = fake.createGuild('Media');
    dcPics = fake.createChannel(dcGuild.id, 'pics');
    fake.updateMember(dcGuild.id, fake.bot.id, { roles: [fake.createRole(dcGuild.id, 'Bridge', Perm.ManageWebhooks).id] });

    web = await startUploadServer({
      modules: serverModules(),
      config: {
        components: [
          { domain: MX, secret: SECRET },
          { domain: DC, secret: SECRET },
        ],
        listen: { components: [{ host: '127.0.0.1', port: 0 }] },
        upload: { componentQuota: '100KiB' },
      },
    });
    ts = web.ts;
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-rehost-test-'));
    const media = { caFile: web.ca.caFile, maxSize: LIMIT, timeout: '10s' };
    const shared = { componentPort: ts.componentPort, dir, logLines };
    const network = { pollTimeout: 2, syncFailureTimeout: 1, retryInterval: 0.2, requestTimeout: 5, loginTimeout: 5 };
    mx = await matrixTransport({ ...shared, domain: MX }, { media, network }).start();
    const tokenFile = path.join(dir, 'discord-bot.token');
    writeFileSync(tokenFile, fake.token, { mode: 0o600 });
    const discordNetwork = { api: fake.apiBase, reconnectGraceSeconds: 2, loginTimeoutSeconds: 5, sharedBot: { tokenFile, guilds: [dcGuild.id] } };
    dc = await transportFixture({ ...shared, adapter: 'discord', createAdapter: createDiscordAdapter, domain: DC, settings: { media, network: discordNetwork } }).start();

    alice = await availableUser(ts, 'media-alice');
    const reg = await registerForm(alice, { username: meId, homeserver: hs.url, password: 'mx-password-1' }, MX);
    assert.equal(reg.attrs.type, 'result', String(reg));
    await subscribeBoth(alice, MX);
    const reg2 = await registerForm(alice, { password: fake.token }, DC);
    assert.equal(reg2.attrs.type, 'result', String(reg2));
    await subscribeBoth(alice, DC);
  });

  after(async () => {
    await alice?.close().catch(() => undefined);
    await mx?.stop().catch(() => undefined);
    await dc?.stop().catch(() => undefined);
    await web?.stop();
    await hs?.stop();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('an m.image from Matrix arrives as an HTTPS URL of the upload service, in the body and OOB, with the same bytes', async () => {
    const bytes = randomBytes(20_000);
    const mxc = hs.upload(bytes, 'image/png', 'cat.png');
    hs.inject(dmRoom, { type: 'm.room.message', sender: bobId, content: { msgtype: 'm.image', body: 'cat.png', url: mxc, info: { mimetype: 'image/png', size: bytes.length } } });
    const msg = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${escapeLocal(bobId)}@${MX}` && !!el.getChildText('body'), 8000);
    const body = msg.getChildText('body')!;
    assert.match(body, new RegExp(`^https://localhost:${web.port}/upload/[A-Za-z0-9_-]+\\.png$`));
    assert.deepEqual(oobUrls(msg), [body]);
    const got = await fetchBytes(body, web.caPem);
    assert.equal(got.status, 200);
    assert.equal(got.type, 'image/png');
    assert.ok(got.body.equals(bytes), 'the same bytes');
    // Fetched from the authenticated media API; the legacy path is refused as on matrix.org.
    assert.ok(hs.requests.some((r) => r.startsWith('GET /_matrix/client/v1/media/download/')), hs.requests.join('\n'));
    const legacy = await fetch(`${hs.url}/_matrix/media/v3/download/${mxc.slice('mxc://'.length)}`);
    assert.equal(legacy.status, 404);
    assert.equal(((await legacy.json()) as { errcode: string }).errcode, 'M_NOT_FOUND');
    // The file is the component's, not an account's; no token in any log.
    const row = await ts.server.ctx.storage.repository(uploadStorage).get(body.split('/').pop()!.split('.')[0]!);
    assert.equal(row?.accountId, 0);
  });

  test("P9 the Matrix access token that fetched the file is in no log of the transport or the server, nor the URLs and file names", async () => {
    const tokens = hs.tokensOf(meId).map((t) => t.token);
    assert.ok(tokens.length > 0);
    const logs = [...logLines, ...ts.logLines];
    for (const t of tokens) assert.ok(!logs.some((l) => l.includes(t)), 'no access token in logs');
    assert.ok(!logs.some((l) => l.includes('cat.png') || l.includes('/_matrix/client/v1/media/download/') || l.includes('?token=')), 'no file name or URL in logs');
    assert.ok(logLines.some((l) => l.includes('upload service found')), 'the transport found the service');
  });

  test('a captioned m.image (spec v1.10: body is the caption when filename differs) keeps its caption above the URL', async () => {
    const bytes = randomBytes(2_000);
    const mxc = hs.upload(bytes, 'image/jpeg', 'IMG_0001.jpg');
    hs.inject(dmRoom, { type: 'm.room.message', sender: bobId, content: { msgtype: 'm.image', body: 'our new cat', filename: 'IMG_0001.jpg', url: mxc, info: { mimetype: 'image/jpeg', size: bytes.length } } });
    const msg = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${escapeLocal(bobId)}@${MX}` && (el.getChildText('body') ?? '').startsWith('our new cat'), 8000);
    const [caption, url] = msg.getChildText('body')!.split('\n');
    assert.equal(caption, 'our new cat');
    assert.match(url!, new RegExp(`^https://localhost:${web.port}/upload/[A-Za-z0-9_-]+\\.jpg$`));
    assert.deepEqual(oobUrls(msg), [url]);
    const got = await fetchBytes(url!, web.caPem);
    assert.ok(got.body.equals(bytes));
  });

  test('a Matrix file over media.maxSize is not re-hosted: a notice, and the homeserver link', async () => {
    const big = randomBytes(LIMIT + 1);
    const mxc = hs.upload(big, 'application/pdf', 'report.pdf');
    hs.inject(dmRoom, { type: 'm.room.message', sender: bobId, content: { msgtype: 'm.file', body: 'report.pdf', url: mxc, info: { mimetype: 'application/pdf', size: big.length } } });
    const msg = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${escapeLocal(bobId)}@${MX}` && (el.getChildText('body') ?? '').startsWith('report.pdf'), 8000);
    assert.match(msg.getChildText('body')!, /too large for the gateway/);
    const urls = oobUrls(msg);
    assert.equal(urls.length, 1);
    assert.ok(urls[0]!.startsWith(hs.url), urls[0]);
  });

  test('an upload URL sent from XMPP reaches Matrix as an upload to the media repository and an m.image with size and mimetype', async () => {
    const bytes = randomBytes(30_000);
    const slot = await alice.iq(x('iq', { type: 'get', to: 'upload.localhost' }, x('request', { xmlns: UPLOAD, filename: 'holiday.jpg', size: String(bytes.length), 'content-type': 'image/jpeg' })));
    assert.equal(slot.attrs.type, 'result', String(slot));
    const s = slot.getChild('slot', UPLOAD)!;
    assert.equal(await putBytes(s.getChild('put')!.attrs.url!, web.caPem, bytes, 'image/jpeg'), 201);
    const url = s.getChild('get')!.attrs.url!;
    const before = hs.sent({ kind: 'upload' }).length;
    alice.send(x('message', { type: 'chat', to: `${escapeLocal(bobId)}@${MX}`, id: 'file-1' }, x('body', {}, url), x('x', { xmlns: NS.oob }, x('url', {}, url))));
    const ev = await hs.waitForSent((r) => r.kind === 'event' && r.roomId === dmRoom && (r.body as { msgtype?: string }).msgtype === 'm.image', 8000);
    assert.equal(hs.sent({ kind: 'upload' }).length, before + 1);
    const content = ev.body as { body: string; url: string; info: { size: number; mimetype: string } };
    assert.deepEqual(content.info, { size: bytes.length, mimetype: 'image/jpeg' });
    assert.equal(content.body, 'holiday.jpg');
    const stored = hs.mediaOf(content.url);
    assert.ok(stored, 'the content URI names the upload');
    assert.ok(stored.data.equals(bytes), 'the homeserver got the same bytes');
    assert.equal(stored.contentType, 'image/jpeg');
    assert.equal(stored.filename, 'holiday.jpg');
  });

  test('a link that is not on the XMPP server stays a link (the transport fetches no URL of the user\'s choosing)', async () => {
    const url = `${hs.url}/some/file.png`;
    alice.send(x('message', { type: 'chat', to: `${escapeLocal(bobId)}@${MX}`, id: 'file-2' }, x('body', {}, url), x('x', { xmlns: NS.oob }, x('url', {}, url))));
    const ev = await hs.waitForSent((r) => r.kind === 'event' && r.roomId === dmRoom && (r.body as { body?: string }).body === url, 8000);
    assert.equal((ev.body as { msgtype: string }).msgtype, 'm.text');
  });

  test('a Discord attachment arrives re-hosted; its signed CDN URL expiring afterwards does not matter', async () => {
    const bytes = randomBytes(12_345);
    const posted = fake.say(dcDm.id, dcBob, '', { attachments: [{ filename: 'photo.jpg', content_type: 'image/jpeg', data: bytes }] });
    const cdnUrl = posted.attachments[0]!.url;
    const msg = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${dcBob}@${DC}` && !!el.getChildText('body'), 8000);
    const body = msg.getChildText('body')!;
    assert.match(body, new RegExp(`^https://localhost:${web.port}/upload/[A-Za-z0-9_-]+\\.jpg$`));
    assert.deepEqual(oobUrls(msg), [body]);
    assert.ok(fake.cdnRequests.some((r) => r.status === 200), 'fetched from the CDN while the link was valid');
    fake.expireAttachments();
    assert.equal((await fetch(cdnUrl)).status, 404, 'the CDN link has expired');
    const got = await fetchBytes(body, web.caPem);
    assert.equal(got.status, 200);
    assert.ok(got.body.equals(bytes), 'the same bytes');
    // An edit of the message keeps the re-hosted URL, not the (expired) CDN link.
    fake.edit(dcDm.id, posted.id, 'look');
    const edit = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${dcBob}@${DC}` && !!el.getChild('replace', 'urn:xmpp:message-correct:0'), 8000);
    assert.equal(edit.getChildText('body'), `look\n${body}`);
    assert.deepEqual(oobUrls(edit), [body]);
  });

  test('a Discord attachment over media.maxSize stays the CDN link, with a notice', async () => {
    const posted = fake.say(dcDm.id, dcBob, 'see this', { attachments: [{ filename: 'huge.bin', content_type: 'application/octet-stream', data: randomBytes(LIMIT + 10) }] });
    const cdnUrl = posted.attachments[0]!.url;
    const msg = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${dcBob}@${DC}` && (el.getChildText('body') ?? '').startsWith('see this'), 8000);
    assert.match(msg.getChildText('body')!, /huge\.bin: too large for the gateway/);
    assert.deepEqual(oobUrls(msg), [cdnUrl]);
  });

  test('a source without Content-Length is spooled (and the spool removed), bounded by maxSize; a stalled one times out', async () => {
    const data = randomBytes(40_000);
    const big = randomBytes(LIMIT + 100);
    const server = createServer((req, res) => {
      if (req.url === '/stall') return void res.writeHead(200, { 'Content-Type': 'image/png' }).write('x');
      res.writeHead(200, { 'Content-Type': 'application/x-test' });
      const body = req.url === '/big' ? big : data;
      // Chunked: no Content-Length.
      res.write(body.subarray(0, 1000));
      res.end(body.subarray(1000));
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const base = `http://127.0.0.1:${(server.address() as { port: number }).port}`;
    const spools = () => readdirSync(tmpdir()).filter((n) => n.startsWith('gatehouse-media-'));
    const spoolsBefore = spools().length;
    try {
      const out = await mx.gateway.media.rehost({ url: `${base}/small` }, { name: 'chunked.bin' });
      assert.ok(out.url, JSON.stringify(out));
      const got = await fetchBytes(out.url, web.caPem);
      assert.ok(got.body.equals(data));
      assert.equal(got.type, 'application/x-test');
      const tooBig = await mx.gateway.media.rehost({ url: `${base}/big` }, { name: 'big.bin' });
      assert.deepEqual([tooBig.url, tooBig.url === null && tooBig.reason], [null, 'too-large']);
      assert.equal(spools().length, spoolsBefore, 'no spool left behind');
      const quick = new MediaService(
        { domain: MX, request: (iq, t) => mx.gateway.request(iq, t), log: new Logger({ level: 'error', format: 'text', sink: () => {} }), clock: { now: () => new Date() } },
        { enabled: true, maxSize: LIMIT, timeout: 300, service: null, server: null, caFile: web.ca.caFile },
      );
      const stalled = await quick.rehost({ url: `${base}/stall` }, { name: 'stall.png', size: 10 });
      assert.deepEqual([stalled.url, stalled.url === null && stalled.reason, stalled.url === null && stalled.text], [null, 'failed', 'timed out']);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });

  test("re-hosted files count against the component's quota, not the user's", async () => {
    const repo = ts.server.ctx.storage.repository(uploadStorage);
    assert.equal(await repo.componentUsage(MX), 20_000 + 2_000 + 40_000);
    assert.equal(await repo.componentUsage(DC), 12_345);
    const account = await ts.server.ctx.storage.accounts.get(bareOf(alice).split('@')[0]!, 'localhost');
    assert.equal(await repo.usage(account!.id), 30_000, 'only the file the user uploaded herself');
    // The component's own quota (upload.componentQuota, 100 KiB here) holds 62 000 bytes already.
    const ask = (size: number) =>
      mx.gateway.request(x('iq', { type: 'get', to: 'upload.localhost', from: MX }, x('request', { xmlns: UPLOAD, filename: 'x.bin', size: String(size) })));
    const refused = await ask(50 * 1024);
    assert.equal(refused.attrs.type, 'error', String(refused));
    assert.ok(refused.getChild('error')!.getChild('resource-constraint', NS.stanzas), String(refused));
    assert.equal((await ask(30 * 1024)).attrs.type, 'result');
  });

  test('P11 P13 files the transports re-hosted are deleted after retention.uploads, from disk and database', async () => {
    const repo = ts.server.ctx.storage.repository(uploadStorage);
    const ids = await repo.createdBefore(new Date(Date.now() + 1000), 100);
    const own: string[] = [];
    for (const id of ids) if ((await repo.get(id))?.accountId === 0) own.push(id);
    assert.equal(own.length, 4, 'the two Matrix files, the Discord one and the chunked one');
    const onDisk = () => readdirSync(path.join(ts.dir, 'uploads')).filter((n) => own.includes(n));
    assert.equal(onDisk().length, 4);
    const sweep = ts.server.ctx.modules.find((m) => m.name === 'upload')!.retention![0]!;
    const day = 86_400_000;
    await sweep.run(ts.server.ctx, new Date(Date.now() + ts.config.retention.uploads - day), { dryRun: false, batch: 500 });
    assert.equal(await repo.componentUsage(MX), 62_000, 'kept a day before the end');
    await sweep.run(ts.server.ctx, new Date(Date.now() + ts.config.retention.uploads + day), { dryRun: false, batch: 500 });
    assert.equal(await repo.componentUsage(MX), 0);
    assert.equal(await repo.componentUsage(DC), 0);
    assert.deepEqual(onDisk(), []);
    for (const id of own) assert.equal(await repo.get(id), null);
  });

  test('a Discord attachment whose signed link expired before it could be fetched: the link, with a clear notice', async () => {
    const lifetime = fake.cdnLinkLifetimeMs;
    fake.cdnLinkLifetimeMs = -60_000;
    try {
      const posted = fake.say(dcDm.id, dcBob, 'too late', { attachments: [{ filename: 'gone.png', content_type: 'image/png', data: randomBytes(100) }] });
      const msg = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${dcBob}@${DC}` && (el.getChildText('body') ?? '').startsWith('too late'), 8000);
      const body = msg.getChildText('body')!;
      assert.ok(body.includes(posted.attachments[0]!.url), body);
      assert.match(body, /\[gone\.png: the gateway could not copy it from Discord \(Discord answered HTTP 404\); the link may not work\]$/);
      assert.ok(fake.cdnRequests.some((r) => r.status === 404));
    } finally {
      fake.cdnLinkLifetimeMs = lifetime;
    }
  });

  test("shared bot: the user's own vCard picture is put on the upload service and goes with their webhook messages as avatar_url", async () => {
    const picture = Buffer.concat([Buffer.from('89504e470d0a1a0a', 'hex'), randomBytes(300)]);
    const carl = await ts.user('media-carl');
    try {
      const set = await carl.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: 'vcard-temp' }, x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, picture.toString('base64'))))));
      assert.equal(set.attrs.type, 'result', String(set));
      await carl.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
      carl.send(x('presence'));
      await carl.expect((el) => el.name === 'presence' && el.attrs.from === carl.jid);
      const reg = await registerForm(carl, { password: '' }, DC);
      assert.equal(reg.attrs.type, 'result', String(reg));
      await subscribeBoth(carl, DC);
      const room = `${escapeLocal(`#${dcPics.id}`)}@${DC}`;
      carl.send(x('presence', { to: `${room}/carl` }, x('x', { xmlns: 'http://jabber.org/protocol/muc' })));
      await carl.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/carl`, 10000);
      carl.send(x('message', { to: room, type: 'groupchat', id: 'face-1' }, x('body', {}, 'with my face')));
      const exec = await fake.waitForRequest({ method: 'POST', path: /^\/webhooks\/\d+\/[^/]+$/, pred: (r) => r.body?.content === 'with my face' }, 10000);
      assert.equal(exec.body.username, 'carl');
      const avatar = String(exec.body.avatar_url);
      assert.match(avatar, new RegExp(`^https://localhost:${web.port}/upload/[A-Za-z0-9_-]+\\.png$`));
      const got = await fetchBytes(avatar, web.caPem);
      assert.equal(got.status, 200);
      assert.ok(got.body.equals(picture), 'the same picture');
      // Uploaded once: a second message reuses it.
      carl.send(x('message', { to: room, type: 'groupchat', id: 'face-2' }, x('body', {}, 'again')));
      const again = await fake.waitForRequest({ method: 'POST', path: /^\/webhooks\/\d+\/[^/]+$/, pred: (r) => r.body?.content === 'again' }, 10000);
      assert.equal(again.body.avatar_url, avatar);
    } finally {
      await carl.close().catch(() => undefined);
    }
  });

  test('shared bot: an attachment in the history of a rejoined room arrives re-hosted, with its delay stamp', async () => {
    const dora = await ts.user('media-dora');
    try {
      await dora.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
      dora.send(x('presence'));
      await dora.expect((el) => el.name === 'presence' && el.attrs.from === dora.jid);
      assert.equal((await registerForm(dora, { password: '' }, DC)).attrs.type, 'result');
      await subscribeBoth(dora, DC);
      const room = `${escapeLocal(`#${dcPics.id}`)}@${DC}`;
      const muc = 'http://jabber.org/protocol/muc';
      const isSubject = (el: Element) => el.name === 'message' && el.attrs.from?.startsWith(room) === true && !!el.getChild('subject');
      dora.send(x('presence', { to: `${room}/dora` }, x('x', { xmlns: muc })));
      await dora.expect(isSubject, 10000);
      dora.send(x('presence', { to: `${room}/dora`, type: 'unavailable' }));
      await dora.expect((el) => el.name === 'presence' && el.attrs.type === 'unavailable' && el.attrs.from === `${room}/dora`, 8000);
      const bytes = randomBytes(2_000);
      fake.say(dcPics.id, dcBob, 'while dora was away', { attachments: [{ filename: 'away.png', content_type: 'image/png', data: bytes }] });
      dora.send(x('presence', { to: `${room}/dora` }, x('x', { xmlns: muc })));
      const history = await dora.expect((el) => el.name === 'message' && (el.getChildText('body') ?? '').startsWith('while dora was away'), 10000);
      await dora.expect(isSubject, 10000);
      assert.ok(history.getChild('delay', 'urn:xmpp:delay'), String(history));
      const url = oobUrls(history)[0]!;
      assert.match(url, new RegExp(`^https://localhost:${web.port}/upload/`));
      assert.ok((await fetchBytes(url, web.caPem)).body.equals(bytes), 'the same bytes');
    } finally {
      await dora.close().catch(() => undefined);
    }
  });
});

describe('transports without an upload service', () => {
  let ts: TestServer;
  let hs: FakeHomeserver;
  let matrix: TransportFixture;
  let alice: TestClient;
  let room: string;
  let bobId: string;
  const logLines: string[] = [];

  before(async () => {
    hs = await FakeHomeserver.start();
    const meId = hs.createUser('alice', { password: 'mx-password-2' });
    bobId = hs.createUser('bob');
    room = hs.createRoom({ creator: bobId, members: [meId], direct: true });
    ts = await startServer();
    matrix = matrixTransport({ componentPort: ts.componentPort, logLines }, { media: {}, network: { pollTimeout: 2, requestTimeout: 5, loginTimeout: 5 } });
    await matrix.start();
    alice = await availableUser(ts, 'nomedia-alice');
    const reg = await registerForm(alice, { username: meId, homeserver: hs.url, password: 'mx-password-2' });
    assert.equal(reg.attrs.type, 'result', String(reg));
    await subscribeBoth(alice);
  });

  after(async () => {
    await alice?.close().catch(() => undefined);
    await matrix?.stop();
    await ts?.stop();
    await hs?.stop();
  });

  test('attachments stay links to the network, as before, and the missing service is logged once', async () => {
    for (const name of ['one.png', 'two.png']) {
      const mxc = hs.upload('PNG', 'image/png', name);
      hs.inject(room, { type: 'm.room.message', sender: bobId, content: { msgtype: 'm.image', body: name, url: mxc, info: { mimetype: 'image/png' } } });
      const msg = await alice.expect((el) => el.name === 'message' && el.getChildText('body') === name, 8000);
      const urls = oobUrls(msg);
      assert.equal(urls.length, 1);
      assert.ok(urls[0]!.startsWith(`${hs.url}/_matrix/media/v3/download/`), urls[0]);
    }
    await until(() => logLines.some((l) => l.includes('no upload service found')), 'the log line');
    assert.equal(logLines.filter((l) => l.includes('no upload service found')).length, 1);
  });
});

test("the transport fetches files from the XMPP server's domain and its subdomains only, over HTTPS", () => {
  const media = new MediaService(
    { domain: 'matrix.example.org', request: () => Promise.reject(new Error('no link')), log: new Logger({ level: 'error', format: 'text', sink: () => {} }), clock: { now: () => new Date() } },
    { enabled: true, maxSize: 1024, timeout: 1000, service: null, server: null, caFile: null },
  );
  for (const ok of ['https://example.org/upload/a.png', 'https://upload.example.org/upload/a.png', 'https://EXAMPLE.org:5443/upload/a.png']) assert.equal(media.fetchable(ok), true, ok);
  for (const no of [
    'http://example.org/upload/a.png',
    'https://example.org.evil.test/a.png',
    'https://notexample.org/a.png',
    'https://user:pw@example.org/a.png',
    'https://127.0.0.1/a.png',
    'file:///etc/passwd',
    'not a url',
  ])
    assert.equal(media.fetchable(no), false, no);
  const off = new MediaService(
    { domain: 'matrix.example.org', request: () => Promise.reject(new Error('no link')), log: new Logger({ level: 'error', format: 'text', sink: () => {} }), clock: { now: () => new Date() } },
    { enabled: false, maxSize: 1024, timeout: 1000, service: null, server: null, caFile: null },
  );
  assert.equal(off.fetchable('https://example.org/upload/a.png'), false, 'media.enabled: false fetches nothing');
});
