/**
 * Trust of the gateway's Matrix session through Gatehouse: an XMPP TestClient, the transport kit
 * with the Matrix adapter, the fake homeserver with cross-signing and key backup
 * (test/fakes/matrix-trust.ts), and the user's own Element session (matrix-trust-peer.ts: its own
 * Rust crypto) that set up recovery (cross-signing, secret storage, key backup) before the gateway
 * existed, and Bob's Element, which sends room keys only to devices their owner signed (Element's
 * "exclude insecure devices").
 *
 * The recovery key given through the ad-hoc command: malformed and wrong keys are clear errors;
 * the right one signs the gateway's device (Element sees it cross-signed), restores the key
 * backup (a message the gateway could not decrypt becomes readable), and is kept in the vault
 * only. SAS verification both ways through a chat with the gateway. Forget, and erasure (P23).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { encodeRecoveryKey } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { openStorage } from '../../storage/datasource.js';
import type { RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { GW, availableUser, bareOf, errorOf, registerForm, startServer, subscribeBoth, until } from './kit-harness.js';
import { matrixTransport, type TransportFixture } from './transport-fixture.js';
import { TrustPeer } from './matrix-trust-peer.js';

const COMMANDS = 'http://jabber.org/protocol/commands';
const MUC = 'http://jabber.org/protocol/muc';
const NODE = 'matrix-recovery-key';

describe('Matrix trust: recovery key, key backup and SAS verification through Gatehouse', () => {
  let hs: FakeHomeserver;
  let ts: TestServer;
  let matrix: TransportFixture;
  let transport: RunningTransport;
  let alice: TestClient;
  let user: string;
  let meId: string;
  let bobId: string;
  let room: string;
  let element: TrustPeer;
  let bob: TrustPeer;
  let recoveryKey: string;
  const logLines: string[] = [];
  const PASSWORD = 'alice-pw-trust';

  const isMsg = (el: Element) => el.name === 'message';
  const bodyIs = (text: string) => (el: Element) => isMsg(el) && el.getChildText('body') === text;
  const fromGateway = (pred: (body: string) => boolean) => (el: Element) => isMsg(el) && el.attrs.from === GW && pred(el.getChildText('body') ?? '');
  const gatewayDevice = () => hs.keys.devicesWithKeys(meId).find((d) => d !== element.deviceId)!;
  const sayToGateway = (text: string) => alice.send(x('message', { to: GW, type: 'chat', id: `to-gw-${Date.now()}` }, x('body', {}, text)));

  async function command(fields: Record<string, string>): Promise<Element> {
    const first = await alice.iq(x('iq', { type: 'set', to: GW }, x('command', { xmlns: COMMANDS, node: NODE, action: 'execute' })));
    const cmd = first.getChild('command', COMMANDS);
    assert.equal(cmd?.attrs.status, 'executing', String(first));
    return alice.iq(
      x('iq', { type: 'set', to: GW }, x('command', { xmlns: COMMANDS, node: NODE, action: 'complete', sessionid: cmd!.attrs.sessionid }, x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v)))))),
      60_000,
    );
  }
  const noteOf = (el: Element) => el.getChild('command', COMMANDS)?.getChildText('note') ?? '';
  const errorText = (el: Element) => el.getChild('error')?.getChildText('text', NS.stanzas) ?? '';
  const storedKey = async () => (await transport.gateway.registration.loginRequestFor(user, undefined))?.credentials.recoveryKey;

  before(async () => {
    hs = await FakeHomeserver.start();
    meId = hs.createUser('alice', { password: PASSWORD, displayName: 'Alice' });
    bobId = hs.createUser('bob', { password: 'bob-pw-trust', displayName: 'Bob' });
    room = hs.createRoom({ creator: bobId, members: [meId], name: 'Vault', alias: 'vault', encrypted: true });

    // Alice's Element set up recovery; Bob's Element sends room keys only to devices their owner
    // signed. History is written before the gateway's device exists, and Alice's Element backs up
    // the room key it got.
    element = await TrustPeer.start(hs, meId);
    recoveryKey = await element.setUpRecovery(PASSWORD);
    bob = await TrustPeer.start(hs, bobId);
    await bob.setUpRecovery('bob-pw-trust');
    bob.onlySignedDevices();
    await bob.sendText(room, 'written before the gateway existed');
    await until(() => hs.trust.backedUpSessions(meId).length > 0, 'Element backs up the room key', 20_000);

    ts = await startServer();
    matrix = matrixTransport({ componentPort: ts.componentPort, logLines }, {
      loginTimeout: '15s',
      // Long enough for the message the gateway cannot decrypt yet to wait for the backup.
      network: { pollTimeout: 2, syncFailureTimeout: 2, retryInterval: 0.2, requestTimeout: 10, joinTimeout: 5, undecryptableTimeout: 120 },
    });
    transport = await matrix.start();
    alice = await availableUser(ts, 'mx-trust');
    user = bareOf(alice);
  });

  after(async () => {
    element?.stop();
    bob?.stop();
    await alice?.close().catch(() => undefined);
    await matrix?.stop();
    await ts?.stop();
    await hs?.stop();
  });

  test('the gateway offers the recovery key command; a message to an unsigned device is not readable yet', async () => {
    const ok = await registerForm(alice, { username: meId, homeserver: hs.url, password: PASSWORD });
    assert.equal(ok.attrs.type, 'result', String(ok));
    await subscribeBoth(alice);
    await until(() => hs.keys.devicesWithKeys(meId).length === 2, 'the gateway device uploads its keys', 15_000);
    const items = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems, node: COMMANDS })));
    assert.ok(items.getChild('query', NS.discoItems)!.getChildren('item').some((i) => i.attrs.node === NODE), String(items));
    const first = await alice.iq(x('iq', { type: 'set', to: GW }, x('command', { xmlns: COMMANDS, node: NODE, action: 'execute' })));
    const field = first.getChild('command', COMMANDS)!.getChild('x', NS.dataForms)!.getChildren('field').find((f) => f.attrs.var === 'recoveryKey');
    assert.equal(field?.attrs.type, 'text-private', 'the key is typed into a private field');

    const muc = `${escapeLocal('#vault:' + hs.serverName)}@${GW}`;
    alice.send(x('presence', { to: `${muc}/alice` }, x('x', { xmlns: MUC })));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${muc}/`) === true && el.toString().includes('code="110"'), 15_000);
    await until(async () => (await element.crypto.getUserDeviceInfo([meId], true)).get(meId)?.has(gatewayDevice()) ?? false, 'Element knows the gateway device', 15_000);
    const status = await element.crypto.getDeviceVerificationStatus(meId, gatewayDevice());
    assert.equal(status?.crossSigningVerified, false, 'not signed yet');
    await bob.sendText(room, 'sent while the gateway was not verified');
    assert.equal(await alice.expectNothing(bodyIs('sent while the gateway was not verified'), 1500), true, "Bob's Element kept the room key from the unsigned device");
  });

  test('a malformed or wrong recovery key is a clear error and nothing is stored', async () => {
    const malformed = await command({ recoveryKey: 'EsTc not a key at all' });
    assert.equal(malformed.attrs.type, 'error');
    assert.equal(errorOf(malformed), 'not-acceptable');
    assert.match(errorText(malformed), /not a Matrix recovery key/);
    const other = encodeRecoveryKey(randomBytes(32))!;
    const wrong = await command({ recoveryKey: other });
    assert.equal(wrong.attrs.type, 'error');
    assert.equal(errorOf(wrong), 'not-acceptable');
    assert.match(errorText(wrong), /wrong recovery key/);
    assert.ok(!errorText(wrong).includes(other.slice(0, 8)), 'the key is not echoed');
    assert.equal(await storedKey(), undefined);
    const status = await element.crypto.getDeviceVerificationStatus(meId, gatewayDevice());
    assert.equal(status?.crossSigningVerified, false);
  });

  test('the recovery key signs the gateway device and restores the key backup; older messages become readable', async () => {
    const res = await command({ recoveryKey: recoveryKey.replace(/ /g, '') });
    assert.equal(res.attrs.type, 'result', String(res));
    const note = noteOf(res);
    assert.match(note, /signed with your cross-signing keys/);
    const restored = /(\d+) of (\d+) room keys? restored/.exec(note);
    assert.ok(restored && Number(restored[1]) >= 1 && restored[1] === restored[2], note);

    // The self-signing key's signature is on the gateway device, and Element sees it verified.
    const selfSigning = Object.keys((hs.trust.crossSigningKey(meId, 'self_signing')!.keys as Record<string, string>))[0]!;
    const sigs = (hs.keys.deviceKeys(meId, gatewayDevice())!.signatures as Record<string, Record<string, string>>)[meId]!;
    assert.ok(sigs[selfSigning], 'signed with the self-signing key');
    await until(async () => (await element.crypto.getDeviceVerificationStatus(meId, gatewayDevice()))?.crossSigningVerified === true, 'Element sees the gateway device cross-signed', 20_000);

    // The message Bob's Element kept from the unsigned device is read from the backup and delivered.
    const late = await alice.expect(bodyIs('sent while the gateway was not verified'), 30_000);
    assert.ok(late.attrs.from?.endsWith('/Bob'));
    assert.ok(late.getChild('delay', 'urn:xmpp:delay'), 'delivered with its time');
    // From now on Bob's Element shares its room keys with the gateway directly.
    await bob.sendText(room, 'after the verification');
    await alice.expect(bodyIs('after the verification'), 20_000);

    // Kept in the vault only: the stored value, nowhere in the log or the database in clear.
    assert.equal((await storedKey())?.replace(/ /g, ''), recoveryKey.replace(/ /g, ''));
    const log = logLines.join('\n');
    assert.ok(!log.includes(recoveryKey.replace(/ /g, '').slice(0, 12)) && !log.includes(recoveryKey.slice(0, 14)), 'the recovery key is not logged');
  });

  test('SAS verification started in Element: the gateway shows the emoji, the user confirms from XMPP', async () => {
    const req = await element.crypto.requestDeviceVerification(meId, gatewayDevice());
    const ask = await alice.expect(fromGateway((b) => b.includes('asks to verify')), 20_000);
    assert.match(ask.getChildText('body')!, new RegExp(element.deviceId));
    sayToGateway('yes');
    let emojiShown: Element | null = null;
    await element.sas(req, true, async (emoji) => {
      assert.equal(emoji.length, 7);
      emojiShown = await alice.expect(fromGateway((b) => b.startsWith('Compare these')), 20_000);
      for (const [symbol, name] of emoji) assert.ok(emojiShown.getChildText('body')!.includes(`${symbol} ${name}`), `${name} shown to the XMPP user`);
      sayToGateway('yes');
      return true;
    });
    await alice.expect(fromGateway((b) => b.startsWith('Verified')), 20_000);
    assert.ok(emojiShown);
    const status = await element.crypto.getDeviceVerificationStatus(meId, gatewayDevice());
    assert.equal(status?.localVerified, true, 'Element verified the gateway device itself');
  });

  test('SAS verification started from XMPP ("verify"), accepted in Element; "no" to mismatched emoji cancels', async () => {
    const before = element.incoming.length;
    sayToGateway('verify');
    await until(() => element.incoming.length > before, 'Element gets the request', 20_000);
    const req = element.incoming.at(-1)!;
    await element.sas(req, false, async (emoji) => {
      const shown = await alice.expect(fromGateway((b) => b.startsWith('Compare these')), 20_000);
      for (const [symbol, name] of emoji) assert.ok(shown.getChildText('body')!.includes(`${symbol} ${name}`));
      sayToGateway('yes');
      return true;
    });
    await alice.expect(fromGateway((b) => b.startsWith('Verified')), 20_000);

    // Another round, where the XMPP user says the emoji differ: cancelled on both sides.
    const again = element.incoming.length;
    sayToGateway('verify');
    await until(() => element.incoming.length > again, 'Element gets the second request', 20_000);
    const second = element.incoming.at(-1)!;
    await assert.rejects(
      element.sas(second, false, async () => {
        await alice.expect(fromGateway((b) => b.startsWith('Compare these')), 20_000);
        sayToGateway('no');
        return true;
      }),
    );
    await alice.expect(fromGateway((b) => b.startsWith('The verification was cancelled')), 20_000);

    // Anything else is answered with help.
    sayToGateway('what is this');
    await alice.expect(fromGateway((b) => b.includes('write "verify"')), 10_000);
  });

  test('after a restart the device is still verified and the stored key is not needed', async () => {
    const device = gatewayDevice();
    const linesBefore = logLines.length;
    await transport.stop();
    transport = await matrix.start();
    alice.send(x('presence'));
    await until(() => transport.gateway.sessions.ofUser(user)[0]?.state === 'online', 'logged in again', 20_000);
    assert.equal(gatewayDevice(), device, 'the same device');
    assert.equal((await element.crypto.getDeviceVerificationStatus(meId, device))?.crossSigningVerified, true);
    const muc = `${escapeLocal('#vault:' + hs.serverName)}@${GW}`;
    alice.send(x('presence', { to: `${muc}/alice` }, x('x', { xmlns: MUC })));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from?.startsWith(`${muc}/`) === true && el.toString().includes('code="110"'), 15_000);
    await bob.sendText(room, 'after the restart');
    await alice.expect(bodyIs('after the restart'), 20_000);
    assert.equal(await alice.expectNothing(fromGateway((b) => b.includes('recovery key could not be used')), 500), true);
    assert.ok((await storedKey()) !== undefined, 'still stored');
    assert.ok(!logLines.slice(linesBefore).some((l) => l.includes('stored recovery key used')), 'not used again: the store has the keys');
  });

  test('with its encryption store lost, the gateway uses the stored recovery key at the next login', async () => {
    const device = gatewayDevice();
    const keysBefore = JSON.stringify(hs.keys.deviceKeys(meId, device)!.keys);
    await transport.stop();
    // The sealed store cannot be opened any more (as after a lost or foreign vault key for it).
    const storage = await openStorage(matrix.config.storage, { migrate: false });
    const rec = (await storage.transports.getSecretState('matrix', user, ''))!;
    await storage.transports.saveSecretState('', { ...rec, ciphertext: Buffer.alloc(rec.ciphertext.length) });
    await storage.close();
    transport = await matrix.start();
    alice.send(x('presence'));
    await until(() => transport.gateway.sessions.ofUser(user)[0]?.state === 'online', 'logged in again', 20_000);
    await until(() => JSON.stringify(hs.keys.deviceKeys(meId, device)?.keys) !== keysBefore, 'new identity keys for the device', 20_000);
    await until(() => logLines.some((l) => l.includes('stored recovery key used')), 'the stored key is used', 20_000);
    await until(async () => (await element.crypto.getDeviceVerificationStatus(meId, device))?.crossSigningVerified === true, 'Element sees the new keys cross-signed', 20_000);
  });

  test('"Forget" removes the recovery key from the vault; the device stays verified', async () => {
    const res = await command({ forget: 'true' });
    assert.equal(res.attrs.type, 'result', String(res));
    assert.match(noteOf(res), /no longer stored/);
    await until(async () => (await storedKey()) === undefined, 'the key is gone from the vault', 10_000);
    assert.equal((await element.crypto.getDeviceVerificationStatus(meId, gatewayDevice()))?.crossSigningVerified, true);
  });

  test('P23 removing the registration erases the stored recovery key with the credentials', async () => {
    const res = await command({ recoveryKey });
    assert.equal(res.attrs.type, 'result', String(res));
    await until(async () => (await storedKey()) !== undefined, 'stored again', 10_000);
    const removed = await alice.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(removed.attrs.type, 'result', String(removed));
    assert.equal(await transport.gateway.registration.loginRequestFor(user, undefined), null, 'no vault record');
    assert.equal(await transport.storage.transports.getSecretState('matrix', user, ''), null);
    const log = logLines.join('\n');
    assert.ok(!log.includes(recoveryKey.slice(0, 14)), 'never logged');
  });
});
