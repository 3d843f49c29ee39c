/**
 * Files from XMPP to Discord as real attachments, end to end: a Gatehouse with its upload service
 * (HTTPS, test CA), the Discord transport as a component, the fake Discord (REST v10 and gateway).
 * An XMPP user uploads a file (XEP-0363) and sends its URL as body and XEP-0066 OOB, as clients
 * do; the transport fetches it from the user's own server (kit MediaHost.fetch) and posts it as a
 * multipart message (`files[0]` + `payload_json`), with the user's own bot in a direct message and
 * a channel, and with the shared bot through the channel's webhook. The fake keeps the bytes and
 * serves them on its CDN at a signed URL, so the round trip is checked byte for byte.
 *
 * What stops a file (larger than `network.maxFileSize`, Discord's 413 / 40005, no Attach Files
 * permission, a fetch that fails, a link to another server) leaves the message a link, and the user
 * gets a notice: from the room in a room, from the gateway in a chat. Logs name no URL or file.
 * The fake refuses malformed multipart bodies as Discord does.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { Readable } from 'node:stream';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { randomBytes } from 'node:crypto';
import { type Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { startUploadServer, type UploadServer } from '../helpers/upload-server.js';
import { FakeDiscord, Perm, type FakeChannel, type FakeGuild, type RecordedRequest } from '../fakes/discord.js';
import { createAdapter } from '../../transports/discord/index.js';
import { Turns, fetchFile } from '../../transports/discord/files.js';
import { MediaTooLargeError } from '../../transports/kit/media.js';
import type { MediaHost } from '../../transports/kit/adapter.js';
import { parseTransportConfig } from '../../transports/kit/config.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { SECRET, registerForm, serverModules } from './kit-harness.js';

const UPLOAD = 'urn:xmpp:http:upload:0';
const MUC = 'http://jabber.org/protocol/muc';
const DC = 'dc.localhost';
/** network.maxFileSize of the transport (Discord's limit for the bot). */
const DISCORD_LIMIT = 100 * 1024;

function put(url: string, ca: string, body: Buffer, type: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'PUT', ca, headers: { 'Content-Type': type, 'Content-Length': body.length } }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function httpsBytes(url: string, ca: string): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    request(url, { ca }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve(Buffer.concat(chunks)));
    })
      .on('error', reject)
      .end();
  });
}

async function subscribeTo(c: TestClient, gw: string): Promise<void> {
  await c.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === gw);
  c.send(x('presence', { type: 'subscribed', to: gw }));
  c.send(x('presence', { type: 'subscribe', to: gw }));
  await c.expect((el) => el.name === 'iq' && el.attrs.type === 'set' && !!el.getChild('query', NS.roster)?.getChildren('item').some((i) => i.attrs.jid === gw && i.attrs.subscription === 'both'));
}

/** A message as clients send a file: the upload URL as body and as XEP-0066 OOB. */
function fileMessage(to: string, type: 'chat' | 'groupchat', id: string, url: string): Element {
  return x('message', { to, type, id }, x('body', {}, url), x('x', { xmlns: NS.oob }, x('url', {}, url)));
}

const multipart = (r: RecordedRequest) => (r.files?.length ?? 0) > 0;

describe('files from XMPP reach Discord as attachments', () => {
  let web: UploadServer;
  let ts: TestServer;
  let fake: FakeDiscord;
  let dc: RunningTransport;
  let dir: string;
  let alice: TestClient;
  let carl: TestClient;
  let aliceBot: string;
  let bob: string;
  let dm: FakeChannel;
  let guild: FakeGuild;
  let pics: FakeChannel;
  let nofiles: FakeChannel;
  const logLines: string[] = [];
  const room = (ch: FakeChannel) => `${escapeLocal(`#${ch.id}`)}@${DC}`;

  /** Alice uploads a file to her server (XEP-0363); its GET URL. */
  async function upload(c: TestClient, bytes: Buffer, name: string, type: string): Promise<string> {
    const slot = await c.iq(x('iq', { type: 'get', to: 'upload.localhost' }, x('request', { xmlns: UPLOAD, filename: name, size: String(bytes.length), 'content-type': type })));
    assert.equal(slot.attrs.type, 'result', String(slot));
    const s = slot.getChild('slot', UPLOAD)!;
    assert.equal(await put(s.getChild('put')!.attrs.url!, web.caPem, bytes, type), 201);
    return s.getChild('get')!.attrs.url!;
  }

  async function cdnBytes(url: string): Promise<Buffer> {
    const res = await fetch(url);
    assert.equal(res.status, 200, 'the signed CDN URL serves the file');
    return Buffer.from(await res.arrayBuffer());
  }

  async function joinRoom(c: TestClient, ch: FakeChannel, nick: string): Promise<void> {
    c.send(x('presence', { to: `${room(ch)}/${nick}` }, x('x', { xmlns: MUC })));
    await c.expect((el) => el.name === 'message' && el.attrs.from?.startsWith(room(ch)) === true && !!el.getChild('subject'), 10000);
  }

  before(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    const own = fake.createBot('alice-bot');
    aliceBot = own.user.id;
    bob = fake.createUser('bob', { globalName: 'Bob' }).id;
    dm = fake.dmChannel(bob, aliceBot);
    guild = fake.createGuild('Files', { bots: [fake.bot.id, aliceBot] });
    pics = fake.createChannel(guild.id, 'pics');
    // Files may not be attached in this one (a deny of @everyone, as moderators set it).
    nofiles = fake.createChannel(guild.id, 'no-files', { overwrites: [{ id: guild.id, type: 0, allow: '0', deny: String(Perm.AttachFiles) }] });
    // The shared bot may manage webhooks.
    fake.updateMember(guild.id, fake.bot.id, { roles: [fake.createRole(guild.id, 'Bridge', Perm.ManageWebhooks).id] });

    web = await startUploadServer({
      modules: serverModules(),
      config: { components: [{ domain: DC, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] }, upload: { componentQuota: '1MiB' } },
    });
    ts = web.ts;
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-discord-files-'));
    const tokenFile = path.join(dir, 'discord-bot.token');
    writeFileSync(tokenFile, fake.token, { mode: 0o600 });
    const config = parseTransportConfig(
      {
        adapter: 'discord',
        component: { domain: DC, secret: SECRET, host: '127.0.0.1', port: ts.componentPort },
        storage: { type: 'sqlite', path: path.join(dir, 'discord.sqlite') },
        vault: { keyFile: path.join(dir, 'keys', 'discord.key') },
        gracePeriod: '2s',
        loginTimeout: '5s',
        reconnect: { min: '50ms', max: '400ms' },
        media: { caFile: web.ca.caFile, maxSize: '256KiB', timeout: '10s' },
        network: { api: fake.apiBase, cdn: fake.cdnBase, reconnectGraceSeconds: 2, loginTimeoutSeconds: 5, maxFileSize: '100KiB', sharedBot: { tokenFile, guilds: [guild.id] } },
      },
      dir,
      'discord',
      {},
    );
    dc = await startTransport({
      config,
      adapter: await createAdapter(config.network, { debug() {}, info() {}, warn() {} }),
      log: new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }, 'transport-discord'),
      env: {},
    });
    alice = await ts.user('files-alice');
    carl = await ts.user('files-carl');
    for (const [c, token] of [
      [alice, own.token],
      [carl, ''],
    ] as const) {
      await c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
      c.send(x('presence'));
      await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid);
      const reg = await registerForm(c, { password: token }, DC);
      assert.equal(reg.attrs.type, 'result', String(reg));
      await subscribeTo(c, DC);
    }
  });

  after(async () => {
    await alice?.close().catch(() => undefined);
    await carl?.close().catch(() => undefined);
    await dc?.stop().catch(() => undefined);
    await web?.stop();
    await fake?.close();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  test('a file sent to a Discord user arrives as an attachment (multipart files[0] + payload_json) with the same bytes; retracting it deletes it', async () => {
    const bytes = randomBytes(30_000);
    const url = await upload(alice, bytes, 'holiday.jpg', 'image/jpeg');
    alice.send(fileMessage(`${bob}@${DC}`, 'chat', 'dm-file-1', url));
    const req = await fake.waitForRequest({ method: 'POST', path: `/channels/${dm.id}/messages`, pred: multipart }, 10000);
    assert.equal(req.status, 200);
    assert.equal(req.files!.length, 1);
    const [file] = req.files!;
    assert.equal(file!.field, 'files[0]');
    assert.equal(file!.filename, 'holiday.jpg');
    assert.equal(file!.contentType, 'image/jpeg');
    assert.ok(file!.data.equals(bytes), 'Discord got the bytes of the upload');
    assert.equal(req.body.content, undefined, 'no link in the text: the file is the message');
    assert.equal(typeof req.body.nonce, 'string', 'the JSON part came as payload_json');
    const posted = [...dm.messages.values()].map((m) => m.message).find((m) => m.attachments.length === 1)!;
    assert.equal(posted.author.id, aliceBot);
    assert.equal(posted.attachments[0]!.filename, 'holiday.jpg');
    assert.equal(posted.attachments[0]!.size, bytes.length);
    assert.match(posted.attachments[0]!.url, /\?ex=[0-9a-f]+&is=[0-9a-f]+&hm=[0-9a-f]+$/);
    assert.ok((await cdnBytes(posted.attachments[0]!.url)).equals(bytes), 'served back on the CDN');
    // The XMPP message id names the Discord message: a retraction deletes it.
    alice.send(x('message', { to: `${bob}@${DC}`, type: 'chat', id: 'dm-retract-1' }, x('retract', { xmlns: 'urn:xmpp:message-retract:1', id: 'dm-file-1' })));
    await fake.waitForRequest({ method: 'DELETE', path: `/channels/${dm.id}/messages/${posted.id}` }, 10000);
  });

  test("in a channel with the user's own bot: an attachment, the room echoes the message, no notice", async () => {
    await joinRoom(alice, pics, 'alice');
    const bytes = randomBytes(5_000);
    const url = await upload(alice, bytes, 'diagram.png', 'image/png');
    alice.send(fileMessage(room(pics), 'groupchat', 'room-file-1', url));
    const echo = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'room-file-1', 10000);
    assert.equal(echo.getChildText('body'), url);
    const req = fake.requests.find((r) => r.method === 'POST' && r.path === `/channels/${pics.id}/messages` && multipart(r));
    assert.ok(req, 'posted before the echo');
    assert.ok(req.files![0]!.data.equals(bytes));
    const posted = [...pics.messages.values()].map((m) => m.message).find((m) => m.attachments[0]?.filename === 'diagram.png')!;
    assert.equal(posted.author.id, aliceBot);
    assert.ok((await cdnBytes(posted.attachments[0]!.url)).equals(bytes));
    // The next message goes on normally, and no notice came in between.
    alice.send(x('message', { to: room(pics), type: 'groupchat', id: 'room-text-1' }, x('body', {}, 'that was the diagram')));
    const next = await alice.expect((el) => el.name === 'message' && (el.attrs.id === 'room-text-1' || el.attrs.from === room(pics)), 10000);
    assert.equal(next.attrs.id, 'room-text-1', `no notice from the room: ${String(next)}`);
  });

  test("shared bot: the file goes through the channel's webhook as multipart, under the user's nick, and comes back to XMPP re-hosted", async () => {
    await joinRoom(carl, pics, 'carl');
    const bytes = randomBytes(20_000);
    const url = await upload(carl, bytes, 'notes.pdf', 'application/pdf');
    carl.send(fileMessage(room(pics), 'groupchat', 'hook-file-1', url));
    const req = await fake.waitForRequest({ method: 'POST', path: /^\/webhooks\/\d+\/[^/]+$/, pred: multipart }, 10000);
    assert.equal(req.status, 200);
    assert.equal(req.query.wait, 'true');
    assert.equal(req.body.username, 'carl');
    assert.equal(req.files![0]!.filename, 'notes.pdf');
    assert.equal(req.files![0]!.contentType, 'application/pdf');
    assert.ok(req.files![0]!.data.equals(bytes));
    const posted = [...pics.messages.values()].map((m) => m.message).find((m) => m.attachments[0]?.filename === 'notes.pdf')!;
    assert.ok(posted.webhook_id, 'posted by the webhook');
    assert.equal(posted.author.username, 'carl');
    assert.ok((await cdnBytes(posted.attachments[0]!.url)).equals(bytes));
    // Alice's own bot sees it on Discord: it reaches her re-hosted on the upload service.
    const atAlice = await alice.expect((el) => el.name === 'message' && el.attrs.from === `${room(pics)}/carl` && el.getChildren('x', NS.oob).length > 0, 10000);
    const back = atAlice.getChild('x', NS.oob)!.getChildText('url')!;
    assert.match(back, new RegExp(`^https://localhost:${web.port}/upload/`));
    assert.notEqual(back, url, 'a copy of the Discord attachment');
    assert.ok((await httpsBytes(back, web.caPem)).equals(bytes), 'the same bytes, XMPP → Discord → XMPP');
  });

  test('a file larger than network.maxFileSize goes as the link, and the room tells the user why', async () => {
    const url = await upload(alice, randomBytes(DISCORD_LIMIT + 1), 'video.mp4', 'video/mp4');
    alice.send(fileMessage(room(pics), 'groupchat', 'room-big-1', url));
    const notice = await alice.expect((el) => el.name === 'message' && el.attrs.from === room(pics) && el.attrs.type === 'groupchat', 10000);
    assert.equal(notice.getChildText('body'), 'video.mp4 went to Discord as a link: it is larger than the 100 KiB the gateway sends to Discord.');
    const sent = fake.requests.filter((r) => r.method === 'POST' && r.path === `/channels/${pics.id}/messages` && r.body?.content === url);
    assert.equal(sent.length, 1, 'the link went out as text');
    assert.ok(!sent.some(multipart));
  });

  test('too large for a direct message: the link, and a notice from the gateway', async () => {
    const url = await upload(alice, randomBytes(DISCORD_LIMIT + 1), 'big.zip', 'application/zip');
    alice.send(fileMessage(`${bob}@${DC}`, 'chat', 'dm-big-1', url));
    const notice = await alice.expect((el) => el.name === 'message' && el.attrs.from === DC && el.attrs.type === 'chat', 10000);
    assert.match(notice.getChildText('body')!, /^big\.zip went to Discord as a link: it is larger than/);
    await fake.waitForRequest({ method: 'POST', path: `/channels/${dm.id}/messages`, pred: (r) => r.body?.content === url }, 10000);
  });

  test("Discord refuses the attachment as too large (413 / 40005, the channel's limit is lower): the link, with a notice", async () => {
    const limit = fake.attachmentLimit;
    fake.attachmentLimit = 1000;
    try {
      const url = await upload(alice, randomBytes(5_000), 'scan.png', 'image/png');
      alice.send(fileMessage(room(pics), 'groupchat', 'room-413-1', url));
      const notice = await alice.expect((el) => el.name === 'message' && el.attrs.from === room(pics) && el.attrs.type === 'groupchat', 10000);
      assert.equal(notice.getChildText('body'), 'scan.png went to Discord as a link: Discord refused it as too large for this channel.');
      const refused = fake.requests.find((r) => r.path === `/channels/${pics.id}/messages` && multipart(r) && r.files![0]!.filename === 'scan.png');
      assert.equal(refused?.status, 413);
      assert.ok(fake.requests.some((r) => r.path === `/channels/${pics.id}/messages` && r.body?.content === url && r.status === 200), 'then the link');
    } finally {
      fake.attachmentLimit = limit;
    }
  });

  test('the bot may not attach files in a channel: the link with a notice, and the file is not fetched', async () => {
    await joinRoom(alice, nofiles, 'alice');
    const url = await upload(alice, randomBytes(1_000), 'nope.png', 'image/png');
    alice.send(fileMessage(room(nofiles), 'groupchat', 'nofiles-1', url));
    const notice = await alice.expect((el) => el.name === 'message' && el.attrs.from === room(nofiles) && el.attrs.type === 'groupchat', 10000);
    assert.equal(notice.getChildText('body'), 'Your file went to Discord as a link: the bot may not attach files here (Attach Files permission).');
    assert.ok(fake.requests.some((r) => r.path === `/channels/${nofiles.id}/messages` && r.body?.content === url && r.status === 200));
    assert.ok(!fake.requests.some((r) => r.path === `/channels/${nofiles.id}/messages` && multipart(r)));
  });

  test('a file the gateway cannot fetch (gone from the upload service): the link, a notice, and no URL or file name in the log', async () => {
    const real = await upload(alice, randomBytes(100), 'secret-plans.png', 'image/png');
    const gone = real.replace(/\/upload\/[A-Za-z0-9_-]+/, '/upload/AAAAAAAAAAAAAAAAAAAAAA');
    alice.send(fileMessage(room(pics), 'groupchat', 'gone-1', gone));
    const notice = await alice.expect((el) => el.name === 'message' && el.attrs.from === room(pics) && el.attrs.type === 'groupchat', 10000);
    assert.match(notice.getChildText('body')!, /went to Discord as a link: the gateway could not fetch it \(the file's server answered HTTP 404\)\.$/);
    assert.ok(fake.requests.some((r) => r.path === `/channels/${pics.id}/messages` && r.body?.content === gone));
    assert.ok(logLines.some((l) => l.includes('file not fetched for Discord')), 'the failure is logged');
    for (const secret of [gone, real, 'secret-plans', 'AAAAAAAAAAAAAAAAAAAAAA', '/upload/']) assert.ok(!logLines.some((l) => l.includes(secret)), `no ${secret} in the transport's log`);
  });

  test("a file on another server stays a link (the gateway fetches no URL of the user's choosing), with a notice", async () => {
    const url = 'https://files.example.net/share/cat.png';
    alice.send(fileMessage(room(pics), 'groupchat', 'elsewhere-1', url));
    const notice = await alice.expect((el) => el.name === 'message' && el.attrs.from === room(pics) && el.attrs.type === 'groupchat', 10000);
    assert.equal(notice.getChildText('body'), 'Your file went to Discord as a link: the gateway passes on files from your own server only.');
    assert.ok(fake.requests.some((r) => r.path === `/channels/${pics.id}/messages` && r.body?.content === url));
  });

  test('jabber:iq:oob (the IQ part of XEP-0066) to a contact is service-unavailable, and not announced', async () => {
    const iq = await alice.iq(x('iq', { type: 'set', to: `${bob}@${DC}` }, x('query', { xmlns: 'jabber:iq:oob' }, x('url', {}, 'https://files.example.net/a.png'))));
    assert.equal(iq.attrs.type, 'error');
    assert.ok(iq.getChild('error')!.getChild('service-unavailable', NS.stanzas), String(iq));
    const info = await alice.iq(x('iq', { type: 'get', to: `${bob}@${DC}` }, x('query', { xmlns: NS.discoInfo })));
    assert.ok(!info.getChild('query', NS.discoInfo)!.getChildren('feature').some((f) => f.attrs.var === 'jabber:iq:oob'), String(info));
  });

  test('a message with text besides the file URL is text: the link stays in it, no attachment, no notice', async () => {
    const url = await upload(alice, randomBytes(500), 'shot.png', 'image/png');
    alice.send(x('message', { to: room(pics), type: 'groupchat', id: 'caption-1' }, x('body', {}, `look at this ${url}`), x('x', { xmlns: NS.oob }, x('url', {}, url))));
    const req = await fake.waitForRequest({ method: 'POST', path: `/channels/${pics.id}/messages`, pred: (r) => r.body?.content === `look at this ${url}` }, 10000);
    assert.ok(!multipart(req));
  });
});

describe('the fake Discord takes multipart uploads as Discord does', () => {
  let fake: FakeDiscord;
  let channel: FakeChannel;

  before(async () => {
    fake = await FakeDiscord.start({ heartbeatIntervalMs: 400 });
    const guild = fake.createGuild('Uploads');
    channel = fake.createChannel(guild.id, 'files');
  });
  after(async () => {
    await fake?.close();
  });

  const CRLF = '\r\n';
  function form(parts: { name: string; filename?: string; type?: string; data: string | Buffer }[], boundary = 'XyZ123'): Buffer {
    const chunks: Buffer[] = [];
    for (const p of parts) {
      const disposition = `Content-Disposition: form-data; name="${p.name}"${p.filename !== undefined ? `; filename="${p.filename}"` : ''}`;
      chunks.push(Buffer.from(`--${boundary}${CRLF}${disposition}${CRLF}${p.type ? `Content-Type: ${p.type}${CRLF}` : ''}${CRLF}`));
      chunks.push(Buffer.isBuffer(p.data) ? p.data : Buffer.from(p.data));
      chunks.push(Buffer.from(CRLF));
    }
    chunks.push(Buffer.from(`--${boundary}--${CRLF}`));
    return Buffer.concat(chunks);
  }
  async function post(body: Buffer, contentType = 'multipart/form-data; boundary=XyZ123'): Promise<{ status: number; json: any }> {
    const res = await fetch(`${fake.apiBase}/v10/channels/${channel.id}/messages`, { method: 'POST', headers: { Authorization: `Bot ${fake.token}`, 'Content-Type': contentType }, body: new Uint8Array(body) });
    return { status: res.status, json: await res.json() };
  }

  test('payload_json with an attachments entry naming files[0]: the message has the file (name and description from the entry), on the CDN', async () => {
    const bytes = randomBytes(2048);
    const res = await post(
      form([
        { name: 'payload_json', type: 'application/json', data: JSON.stringify({ content: 'with a file', attachments: [{ id: 0, filename: 'renamed.bin', description: 'some bytes' }] }) },
        { name: 'files[0]', filename: 'original.bin', type: 'application/octet-stream', data: bytes },
      ]),
    );
    assert.equal(res.status, 200, JSON.stringify(res.json));
    assert.equal(res.json.content, 'with a file');
    assert.equal(res.json.attachments[0].filename, 'renamed.bin');
    assert.equal(res.json.attachments[0].size, 2048);
    const cdn = await fetch(res.json.attachments[0].url);
    assert.equal(cdn.status, 200);
    assert.ok(Buffer.from(await cdn.arrayBuffer()).equals(bytes));
  });

  test('malformed bodies are refused: no boundary, no close delimiter, a file part without filename, duplicate names (50035); bad payload_json (50109)', async () => {
    const file = { name: 'files[0]', filename: 'a.txt', type: 'text/plain', data: 'abc' };
    const cases: [string, Buffer, string, number, number][] = [
      ['no boundary', form([file]), 'multipart/form-data', 400, 50035],
      ['no close delimiter', form([file]).subarray(0, -10), 'multipart/form-data; boundary=XyZ123', 400, 50035],
      ['no filename', form([{ name: 'files[0]', type: 'text/plain', data: 'abc' }]), 'multipart/form-data; boundary=XyZ123', 400, 50035],
      ['duplicate', form([file, file]), 'multipart/form-data; boundary=XyZ123', 400, 50035],
      ['bad JSON', form([{ name: 'payload_json', data: '{"content": ' }, file]), 'multipart/form-data; boundary=XyZ123', 400, 50109],
      [
        'attachment without its file',
        form([{ name: 'payload_json', data: JSON.stringify({ attachments: [{ id: 3, filename: 'x' }] }) }, file]),
        'multipart/form-data; boundary=XyZ123',
        400,
        50035,
      ],
      ['eleven files', form(Array.from({ length: 11 }, (_, i) => ({ ...file, name: `files[${i}]` }))), 'multipart/form-data; boundary=XyZ123', 400, 50035],
      ['empty', form([{ name: 'payload_json', data: '{}' }]), 'multipart/form-data; boundary=XyZ123', 400, 50006],
    ];
    for (const [what, body, type, status, code] of cases) {
      const res = await post(body, type);
      assert.deepEqual([res.status, res.json.code], [status, code], what);
    }
    assert.equal(channel.messages.size, 1, 'only the good upload of the test before made a message');
  });

  test('files over the limit in total: 413 with JSON error 40005', async () => {
    fake.attachmentLimit = 1000;
    const res = await post(
      form([
        { name: 'files[0]', filename: 'a.bin', data: randomBytes(600) },
        { name: 'files[1]', filename: 'b.bin', data: randomBytes(600) },
      ]),
    );
    assert.deepEqual([res.status, res.json.code, res.json.message], [413, 40005, 'Request entity too large']);
  });
});

test('network.maxFileSize takes sizes up to 100MiB', () => {
  const quiet = { debug() {}, info() {}, warn() {} };
  for (const bad of ['1GiB', 0, 'lots', -5]) assert.throws(() => createAdapter({ maxFileSize: bad }, quiet), /config error: network\.maxFileSize: /, String(bad));
  const adapter = createAdapter({ maxFileSize: '25MiB' }, quiet) as unknown as { options: { maxFileSize: number } };
  assert.equal(adapter.options.maxFileSize, 25 * 1024 * 1024);
});

test('files on their way to Discord are held a few at a time: the others wait their turn, in order', async () => {
  const turns = new Turns(2);
  let running = 0;
  let most = 0;
  const order: number[] = [];
  const gates = Array.from({ length: 5 }, () => {
    let resolve!: () => void;
    const promise = new Promise<void>((r) => (resolve = r));
    return { promise, resolve };
  });
  const runs = gates.map((g, i) =>
    turns.run(async () => {
      running++;
      most = Math.max(most, running);
      order.push(i);
      await g.promise;
      running--;
    }),
  );
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [0, 1], 'two at once');
  gates[1]!.resolve();
  await new Promise((r) => setImmediate(r));
  assert.deepEqual(order, [0, 1, 2]);
  for (const g of gates) g.resolve();
  await Promise.all(runs);
  assert.deepEqual([order, most], [[0, 1, 2, 3, 4], 2]);
  await assert.rejects(turns.run(() => Promise.reject(new Error('failed'))), /failed/);
  assert.equal(await turns.run(async () => 'still works'), 'still works', 'a failure gives its turn back');
});

test('fetchFile: why a file stays a link, before and after fetching; the bytes when it goes', async () => {
  const url = 'https://example.org/upload/abc.png';
  let cancelled = 0;
  const host = (over: Partial<MediaHost> & { body?: Buffer[]; size?: number }): MediaHost => ({
    maxSize: 1000,
    rehost: () => Promise.reject(new Error('not here')),
    fetchable: () => true,
    fetch: async () => ({
      stream: Readable.from(over.body ?? [Buffer.from('abc')]),
      size: over.size ?? 3,
      type: 'image/png',
      name: 'cat "1".png',
      cancel: () => void cancelled++,
    }),
    ...over,
  });
  const reasons: string[] = [];
  const run = (media: MediaHost | undefined, maxBytes = 500) => fetchFile({ media, maxBytes, turns: new Turns() }, url, (r) => reasons.push(r));
  const noticeOf = (o: Awaited<ReturnType<typeof run>>) => ('notice' in o ? o.notice : null);

  assert.equal(noticeOf(await run(undefined)), 'Your file went to Discord as a link: this gateway passes on no files.');
  assert.equal(noticeOf(await run(host({ enabled: false }))), 'Your file went to Discord as a link: this gateway passes on no files.');
  assert.equal(noticeOf(await run(host({ fetchable: () => false }))), 'Your file went to Discord as a link: the gateway passes on files from your own server only.');
  // Over the kit's media.maxSize: the kit refuses before reading; over Discord's limit: cancelled after the headers.
  assert.equal(noticeOf(await run(host({ fetch: () => Promise.reject(new MediaTooLargeError('more')) }))), 'Your file went to Discord as a link: it is larger than the 500 B the gateway sends to Discord.');
  assert.equal(noticeOf(await run(host({ size: 600, body: [randomBytes(600)] }))), 'cat "1".png went to Discord as a link: it is larger than the 500 B the gateway sends to Discord.');
  assert.equal(cancelled, 1);
  assert.equal(noticeOf(await run(host({ fetch: () => Promise.reject(new Error("the file's server answered HTTP 500")) }))), "Your file went to Discord as a link: the gateway could not fetch it (the file's server answered HTTP 500).");
  assert.equal(noticeOf(await run(host({ size: 10 }))), 'cat "1".png went to Discord as a link: the gateway could not fetch it (the file ended early).');
  assert.deepEqual(reasons, ["the file's server answered HTTP 500", 'the file ended early']);
  const ok = await run(host({ body: [Buffer.from('a'), Buffer.from('bc')] }));
  assert.ok('file' in ok);
  assert.deepEqual([ok.file.name, ok.file.contentType, Buffer.from(ok.file.data as Buffer).toString()], ['cat _1_.png', 'image/png', 'abc']);
});
