/**
 * End-to-end encryption through Gatehouse: an XMPP TestClient on Gatehouse, the transport kit with
 * the Matrix adapter (Rust crypto, transports/matrix/crypto.ts), the fake homeserver with its E2EE
 * endpoints (test/fakes/matrix-keys.ts), and on the other side independent matrix-js-sdk clients
 * with their own Rust crypto playing Element users (matrix-element-peer.ts).
 *
 * An encrypted direct chat and an encrypted room both ways (what the homeserver carries is
 * ciphertext only), a restart of the transport that keeps the device and keeps decrypting, a new
 * device of the other side that can read new messages, an event without keys that becomes the
 * notice, and the encryption store erased with the registration (P23).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { UNDECRYPTABLE_TEXT, type MatrixSession } from '../../transports/matrix/index.js';
import type { RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { GW, availableUser, bareOf, registerForm, startServer, subscribeBoth, until } from './kit-harness.js';
import { matrixTransport, type TransportFixture } from './transport-fixture.js';
import { ElementPeer } from './matrix-element-peer.js';

const MUC = 'http://jabber.org/protocol/muc';

describe('Matrix end-to-end encryption through Gatehouse', () => {
  let hs: FakeHomeserver;
  let ts: TestServer;
  let matrix: TransportFixture;
  let transport: RunningTransport;
  let alice: TestClient;
  let user: string;
  let meId: string;
  let bobId: string;
  let carolId: string;
  let dmRoom: string;
  let secretRoom: string;
  let bob: ElementPeer;
  let carol: ElementPeer;
  const peers: ElementPeer[] = [];
  const logLines: string[] = [];

  const jidOf = (matrixId: string) => `${escapeLocal(matrixId)}@${GW}`;
  const isMsg = (el: Element) => el.name === 'message';
  const bodyIs = (text: string) => (el: Element) => isMsg(el) && el.getChildText('body') === text;
  /** What the homeserver got from the gateway's device in a room: the event types only. */
  const sentTypes = (roomId: string) => hs.sent({ kind: 'event', roomId, userId: meId }).map((r) => r.eventType);
  const gatewayDevice = () => hs.keys.devicesWithKeys(meId);

  before(async () => {
    hs = await FakeHomeserver.start();
    meId = hs.createUser('alice', { password: 'alice-pw-e2ee', displayName: 'Alice' });
    bobId = hs.createUser('bob', { displayName: 'Bob' });
    carolId = hs.createUser('carol', { displayName: 'Carol' });
    dmRoom = hs.createRoom({ creator: bobId, members: [meId], direct: true, encrypted: true });
    secretRoom = hs.createRoom({ creator: carolId, members: [meId, bobId], name: 'Secret', alias: 'secret', encrypted: true });

    ts = await startServer();
    matrix = matrixTransport({ componentPort: ts.componentPort, logLines }, {
      admins: ['admin@localhost'],
      loginTimeout: '15s',
      network: { pollTimeout: 2, syncFailureTimeout: 2, retryInterval: 0.2, requestTimeout: 5, joinTimeout: 5, undecryptableTimeout: 2 },
    });
    transport = await matrix.start();
    alice = await availableUser(ts, 'mx-e2ee');
    user = bareOf(alice);

    bob = await ElementPeer.start(hs, bobId);
    carol = await ElementPeer.start(hs, carolId);
    peers.push(bob, carol);
  });

  after(async () => {
    for (const p of peers) p.stop();
    await alice?.close().catch(() => undefined);
    await matrix?.stop();
    await ts?.stop();
    await hs?.stop();
  });

  test('registration sets up a device with keys on the homeserver; its encryption store is kept sealed', async () => {
    const ok = await registerForm(alice, { username: meId, homeserver: hs.url, password: 'alice-pw-e2ee' });
    assert.equal(ok.attrs.type, 'result', String(ok));
    await subscribeBoth(alice);
    await until(() => gatewayDevice().length === 1, 'the gateway device uploads its keys', 15000);
    let prepared = await transport.gateway.registration.loginRequestFor(user, undefined);
    assert.equal(gatewayDevice()[0], prepared?.credentials.deviceId, 'the keys are those of the registered device');
    assert.ok(hs.keys.oneTimeKeyCount(meId, gatewayDevice()[0]!) > 0, 'one-time keys uploaded');
    await until(async () => (await transport.storage.transports.getSecretState('matrix', user, '')) !== null, 'the encryption store is stored', 10000);
    const sealed = await transport.storage.transports.getSecretState('matrix', user, '');
    const identity = hs.keys.deviceKeys(meId, gatewayDevice()[0]!)!.keys as Record<string, string>;
    // The store holds the device's private keys; what the database has is ciphertext only.
    const curve = Object.entries(identity).find(([k]) => k.startsWith('curve25519:'))![1];
    assert.ok(sealed && sealed.ciphertext.length > 100);
    assert.equal(sealed.ciphertext.indexOf(Buffer.from(curve)), -1);
    prepared = await transport.gateway.registration.loginRequestFor(user, undefined);
    assert.ok(prepared?.secretState && prepared.secretState.length > 100, 'the kit opens it for the next login');
  });

  test('an encrypted direct chat both ways: Element-style messages decrypted, replies encrypted for the contact', async () => {
    const bobJid = jidOf(bobId);
    await bob.sendText(dmRoom, 'secret hello from bob');
    const inbound = await alice.expect(bodyIs('secret hello from bob'), 15000);
    assert.equal(inbound.attrs.from, bobJid);
    assert.equal(inbound.attrs.type, 'chat');
    // A notice and an emote too.
    await bob.sendText(dmRoom, 'a notice', { msgtype: 'm.notice' });
    await alice.expect(bodyIs('a notice'), 15000);
    await bob.sendText(dmRoom, 'waves', { msgtype: 'm.emote' });
    await alice.expect((el) => isMsg(el) && el.getChildText('body') === '/me waves', 15000);

    alice.send(x('message', { to: bobJid, type: 'chat', id: 'e2ee-dm-1' }, x('body', {}, 'secret answer from xmpp')));
    const got = await bob.waitForMessage(dmRoom, (c) => c.body === 'secret answer from xmpp');
    assert.equal(got.getSender(), meId);
    assert.ok(got.isEncrypted(), 'it came encrypted');
    assert.deepEqual([...new Set(sentTypes(dmRoom))], ['m.room.encrypted'], 'nothing in clear text');
    for (const r of hs.sent({ kind: 'event', roomId: dmRoom, userId: meId })) assert.ok(!JSON.stringify(r.body).includes('secret answer'), 'the homeserver never sees the text');
  });

  test('an encrypted room joined as a MUC, both ways; an edit and a reply keep their relations', async () => {
    const room = `${escapeLocal(`#secret:${hs.serverName}`)}@${GW}`;
    alice.send(x('presence', { to: `${room}/alice` }, x('x', { xmlns: MUC })));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${room}/`) === true && !!el.getChild('x', `${MUC}#user`)?.getChildren('status').some((st) => st.attrs.code === '110'), 15000);
    const first = await carol.sendText(secretRoom, 'room secret from carol');
    const inbound = await alice.expect(bodyIs('room secret from carol'), 15000);
    assert.equal(inbound.attrs.from, `${room}/Carol`);
    assert.equal(inbound.attrs.type, 'groupchat');
    await carol.sendText(secretRoom, '* room secret from carol, edited', { 'm.new_content': { msgtype: 'm.text', body: 'room secret from carol, edited' }, 'm.relates_to': { rel_type: 'm.replace', event_id: first } });
    const edit = await alice.expect(bodyIs('room secret from carol, edited'), 15000);
    assert.equal(edit.getChild('replace', 'urn:xmpp:message-correct:0')?.attrs.id, first);
    await carol.sendText(secretRoom, 'a reply', { 'm.relates_to': { 'm.in_reply_to': { event_id: first } } });
    const reply = await alice.expect(bodyIs('a reply'), 15000);
    assert.equal(reply.getChild('reply', 'urn:xmpp:reply:0')?.attrs.id, first);

    alice.send(x('message', { to: room, type: 'groupchat', id: 'e2ee-room-1' }, x('body', {}, 'room answer from xmpp')));
    await alice.expect((el) => isMsg(el) && el.attrs.id === 'e2ee-room-1' && el.attrs.type === 'groupchat', 15000);
    // Every member's devices got the room key: both Element users read it.
    await carol.waitForMessage(secretRoom, (c) => c.body === 'room answer from xmpp');
    await bob.waitForMessage(secretRoom, (c) => c.body === 'room answer from xmpp');
    assert.deepEqual([...new Set(sentTypes(secretRoom))], ['m.room.encrypted'], 'nothing in clear text');
  });

  test('a restart of the transport keeps the device and its keys, and keeps decrypting both ways', async () => {
    const device = gatewayDevice()[0]!;
    const keysBefore = JSON.stringify(hs.keys.deviceKeys(meId, device));
    await transport.stop();
    transport = await matrix.start();
    alice.send(x('presence'));
    await until(() => transport.gateway.sessions.ofUser(user)[0]?.state === 'online', 'logged in again', 20000);
    assert.deepEqual(hs.keys.deviceIds(meId).length, 1, 'no new device');
    assert.deepEqual(gatewayDevice(), [device]);
    assert.equal(JSON.stringify(hs.keys.deviceKeys(meId, device)), keysBefore, 'the same identity keys');
    // The room key bob used before the restart is still known (same Megolm session), and new ones arrive.
    await bob.sendText(dmRoom, 'after the restart');
    await alice.expect(bodyIs('after the restart'), 20000);
    alice.send(x('message', { to: jidOf(bobId), type: 'chat', id: 'e2ee-dm-2' }, x('body', {}, 'still encrypted after the restart')));
    await bob.waitForMessage(dmRoom, (c) => c.body === 'still encrypted after the restart');
  });

  test('a new device of the contact gets the keys of new messages', async () => {
    const bob2 = await ElementPeer.start(hs, bobId);
    peers.push(bob2);
    await until(() => hs.keys.devicesWithKeys(bobId).includes(bob2.deviceId), 'the new device uploads its keys', 15000);
    // The gateway hears of it through device_lists in its next sync (as a real client would).
    const session = transport.gateway.sessions.ofUser(user)[0]!.legacy as MatrixSession;
    await until(async () => (await session.encryption!.api.getUserDeviceInfo([bobId])).get(bobId)?.has(bob2.deviceId) === true, 'the gateway knows the new device', 15000);
    alice.send(x('message', { to: jidOf(bobId), type: 'chat', id: 'e2ee-dm-3' }, x('body', {}, 'for all of bob devices')));
    await bob2.waitForMessage(dmRoom, (c) => c.body === 'for all of bob devices');
    await bob.waitForMessage(dmRoom, (c) => c.body === 'for all of bob devices');
    assert.ok(hs.keys.toDeviceLog.some((m) => m.sender === meId && m.userId === bobId && m.deviceId === bob2.deviceId), 'the room key went to the new device');
  });

  test('an event whose room key comes late is delivered once the key is there; one whose key never comes becomes the notice', async () => {
    // Bob starts a new room key (a new session after rotation) and its to-device message is held back.
    const crypto = bob.client.getCrypto()!;
    await crypto.forceDiscardSession(dmRoom);
    hs.keys.hold(meId);
    await bob.sendText(dmRoom, 'the key comes late');
    await new Promise((resolve) => setTimeout(resolve, 700));
    assert.ok(!alice.received.some(bodyIs('the key comes late')), 'not delivered without its key');
    hs.keys.release(meId);
    const late = await alice.expect(bodyIs('the key comes late'), 15000);
    assert.equal(late.attrs.from, jidOf(bobId));
    assert.ok(late.getChild('delay', 'urn:xmpp:delay'), 'delivered late, with its time');

    await crypto.forceDiscardSession(dmRoom);
    hs.keys.hold(meId);
    await bob.sendText(dmRoom, 'the key never comes');
    const notice = await alice.expect(bodyIs(UNDECRYPTABLE_TEXT), 15000);
    assert.equal(notice.attrs.from, jidOf(bobId));
    assert.ok(!alice.received.some(bodyIs('the key never comes')));
    // A broken event is the notice at once (no key could help it).
    hs.inject(dmRoom, { type: 'm.room.encrypted', sender: bobId, content: { algorithm: 'm.megolm.v1.aes-sha2', ciphertext: 'AwgAEnSecret', session_id: 'unknown-session', sender_key: 'k', device_id: 'DEVX' } });
    await alice.expect((el) => bodyIs(UNDECRYPTABLE_TEXT)(el) && el !== notice, 15000);
    hs.keys.release(meId);
  });

  test('P23 removing the registration erases the encryption store', async () => {
    const rows = async () => (await transport.storage.transports.listSecretStates('matrix')).filter((r) => r.record.userJid === user);
    assert.equal((await rows()).length, 1);
    const res = await alice.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(res.attrs.type, 'result', String(res));
    assert.equal((await rows()).length, 0);
    assert.equal(await transport.storage.transports.getSecretState('matrix', user, ''), null);
    // Nothing writes it back after the logout.
    await new Promise((resolve) => setTimeout(resolve, 500));
    assert.equal((await rows()).length, 0);
    const log = logLines.join('\n');
    for (const text of ['secret hello from bob', 'secret answer from xmpp', 'room secret from carol']) assert.ok(!log.includes(text), 'no message text in the log');
  });
});

