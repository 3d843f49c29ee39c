/**
 * The transport kit end to end: a real Gatehouse, the kit connected over XEP-0114 (xmpp.js
 * component-core), the fake network, TestClients as users. Registration (XEP-0077/0100), disco,
 * jabber:iq:gateway, the credential vault (P9).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import path from 'node:path';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Vault, VaultKeyMismatchError, VaultError, vaultKey } from '../../transports/kit/vault.js';
import { startTransport } from '../../transports/kit/gateway.js';
import { FakeAdapter } from '../../transports/fake/fake-network.js';
import { transportConfig } from './kit-harness.js';
import { GW, bareOf, errorOf, registerForm, registerLegacy, startKit, subscribeBoth, until, type Kit } from './kit-harness.js';
import { Logger } from '../../shared/logger.js';

let kit: Kit;

before(async () => {
  kit = await startKit();
});

after(async () => {
  await kit.stop();
});

function fieldsOf(form: ReturnType<typeof x> | undefined): Map<string, { type?: string; values: string[]; required: boolean }> {
  const out = new Map<string, { type?: string; values: string[]; required: boolean }>();
  for (const f of form?.getChildren('field') ?? []) {
    out.set(f.attrs.var!, { type: f.attrs.type, values: f.getChildren('value').map((v) => v.text()), required: !!f.getChild('required') });
  }
  return out;
}

/** Every file of a directory tree, as bytes (the SQLite database with its WAL). */
function allBytes(dir: string): Buffer {
  const parts: Buffer[] = [];
  const walk = (d: string) => {
    for (const name of readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, name.name);
      if (name.isDirectory()) walk(p);
      else if (name.isFile()) parts.push(readFileSync(p));
    }
  };
  walk(dir);
  return Buffer.concat(parts);
}

describe('transport kit: discovery and registration', () => {
  test('disco#info: identity gateway/<network> and conference/<network>, with the XEP features', async () => {
    const alice = await kit.ts.user('disco1');
    const info = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.attrs.type, 'result', String(info));
    const q = info.getChild('query', NS.discoInfo)!;
    const ids = q.getChildren('identity').map((i) => `${i.attrs.category}/${i.attrs.type}`);
    assert.deepEqual(ids.sort(), ['conference/fake', 'gateway/fake']);
    const features = q.getChildren('feature').map((f) => f.attrs.var);
    for (const f of [NS.register, 'jabber:iq:gateway', 'http://jabber.org/protocol/commands', 'http://jabber.org/protocol/muc', 'jid\\20escaping', NS.discoInfo]) {
      assert.ok(features.includes(f), `feature ${f} in ${features.join(' ')}`);
    }
    // A room: conference identity with MUC features, without message archive (no history is kept).
    const room = await alice.iq(x('iq', { type: 'get', to: `#lobby%irc.one@${GW}` }, x('query', { xmlns: NS.discoInfo })));
    const rq = room.getChild('query', NS.discoInfo)!;
    assert.equal(rq.getChild('identity')!.attrs.category, 'conference');
    assert.equal(rq.getChild('identity')!.attrs.type, 'fake');
    const rf = rq.getChildren('feature').map((f) => f.attrs.var);
    assert.ok(rf.includes('http://jabber.org/protocol/muc'));
    assert.ok(!rf.some((f) => f?.startsWith('urn:xmpp:mam')));
    // The server JID of a multi-server network.
    const server = await alice.iq(x('iq', { type: 'get', to: `irc.two@${GW}` }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(server.getChild('query', NS.discoInfo)!.getChild('identity')!.attrs.category, 'gateway');
    await alice.close();
  });

  test('the registration form has legacy fields and an XEP-0004 form with every adapter field', async () => {
    const alice = await kit.ts.user('form1');
    const reply = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.register })));
    assert.equal(reply.attrs.type, 'result');
    const q = reply.getChild('query', NS.register)!;
    assert.equal(q.getChild('registered'), undefined);
    assert.ok(q.getChildText('instructions'));
    // Legacy (XEP-0077 §14.1) names only: username, password, nick; realname and server only in the form.
    assert.ok(q.getChild('username') && q.getChild('password') && q.getChild('nick'));
    assert.equal(q.getChild('realname'), undefined);
    const form = q.getChild('x', NS.dataForms)!;
    assert.equal(form.attrs.type, 'form');
    const fields = fieldsOf(form);
    assert.deepEqual(fields.get('FORM_TYPE')?.values, [NS.register]);
    assert.equal(fields.get('username')?.required, true);
    assert.equal(fields.get('password')?.type, 'text-private');
    assert.equal(fields.get('realname')?.type, 'text-single');
    assert.equal(fields.get('server')?.type, 'list-single');
    assert.deepEqual(form.getChildren('field').find((f) => f.attrs.var === 'server')!.getChildren('option').map((o) => o.getChildText('value')), ['irc.one', 'irc.two']);
    await alice.close();
  });

  test('P10 P9 a wrong password is tried before anything is stored: not-acceptable, no registration, scrubbed audit rows', async () => {
    const marker = `wrong-${randomBytes(6).toString('hex')}`;
    kit.net.addAccount('wrongpw', 'the-right-one');
    const alice = await kit.ts.user('wrong1');
    const reply = await registerLegacy(alice, { username: 'wrongpw', password: marker });
    assert.equal(reply.attrs.type, 'error');
    assert.equal(errorOf(reply), 'not-acceptable');
    // The error never carries the submitted payload back (it held the password).
    assert.equal(String(reply).includes(marker), false, String(reply));
    const user = bareOf(alice);
    assert.equal(await kit.transport.storage.transports.getRegistration('fake', user), null);
    assert.equal(await kit.transport.storage.transports.getCredentials('fake', user), null);
    assert.ok(kit.net.logins.some((l) => l.userJid === user && !l.ok), 'the login was tried');
    const rows = await kit.audit(user);
    assert.deepEqual(rows.map((r) => r.event), ['connecting', 'auth-failed']);
    assert.equal(rows[1]!.account, 'wrongpw');
    assert.equal(rows[1]!.server, 'irc.one');
    assert.ok(rows[1]!.reason && !rows[1]!.reason.includes(marker), `reason scrubbed: ${rows[1]!.reason}`);
    assert.equal(JSON.stringify(rows).includes(marker), false);
    assert.equal(kit.logLines.some((l) => l.includes(marker)) || kit.ts.logLines.some((l) => l.includes(marker)), false);
    // An unreachable network: remote-server-timeout, nothing stored either.
    kit.net.failNextLogins.push('network');
    const down = await registerLegacy(alice, { username: 'wrongpw', password: 'the-right-one' });
    assert.equal(errorOf(down), 'remote-server-timeout');
    assert.equal(await kit.transport.storage.transports.getRegistration('fake', user), null);
    await alice.close();
  });

  test('P9 registering with a data form stores the credentials encrypted only; the marker is nowhere in the databases', async () => {
    const marker = `P9-marker-${randomBytes(8).toString('hex')}`;
    kit.net.addAccount('carol-irc', marker);
    const carol = await kit.ts.user('carol');
    carol.send(x('presence'));
    const reply = await registerForm(carol, { username: 'carol-irc', password: marker, realname: 'Carol Q', server: 'irc.two' });
    assert.equal(reply.attrs.type, 'result', String(reply));
    // XEP-0100: the gateway asks for the user's presence.
    await carol.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === GW);
    const user = bareOf(carol);
    const repo = kit.transport.storage.transports;
    const reg = await repo.getRegistration('fake', user);
    assert.ok(reg);
    const rec = await repo.getCredentials('fake', user);
    assert.ok(rec);
    assert.equal(rec.keyId, kit.transport.gateway.vault.keyId);
    assert.equal(rec.nonce.length, 12);
    assert.equal(rec.tag.length, 16);
    // The login was made before storing, on the chosen server.
    assert.ok(kit.net.logins.some((l) => l.userJid === user && l.ok && l.server === 'irc.two'));
    // Scan every database byte (transport and server, WAL included) for the marker.
    await until(() => existsSync(path.join(kit.dir, 'transport.sqlite')), 'database file');
    // Positive control: the same scans find what is stored in clear (the registration's JID, the
    // account's name), so not finding the marker means it is not there, not that the scan is blind.
    assert.equal(allBytes(kit.dir).includes(Buffer.from(user)), true, 'the scan finds the registered JID in the transport database');
    assert.equal(allBytes(kit.ts.dir).includes(Buffer.from(user.split('@')[0]!)), true, 'the scan finds the account name in the server data');
    assert.equal(allBytes(kit.dir).includes(Buffer.from(marker)), false, 'marker in the transport database');
    assert.equal(allBytes(kit.ts.dir).includes(Buffer.from(marker)), false, 'marker in the server data');
    // The user name is a credential too: not in clear either.
    assert.equal(allBytes(kit.dir).includes(Buffer.from('Carol Q')), false);
    // The right key opens it; another key cannot (key id mismatch), nor can this key for another user (AAD).
    const opened = kit.transport.gateway.vault.open(rec);
    assert.equal(opened.fields.password, marker);
    const other = new Vault(vaultKey(randomBytes(32), 'test'));
    assert.throws(() => other.open(rec), (err: Error) => err instanceof VaultKeyMismatchError && err.message.includes(`key id ${rec.keyId} expected`));
    assert.throws(() => kit.transport.gateway.vault.open({ ...rec, userJid: 'mallory@localhost' }), VaultError);
    assert.throws(() => kit.transport.gateway.vault.open({ ...rec, network: 'other' }), VaultError);
    const forged = Buffer.from(rec.ciphertext);
    forged[0] = forged[0]! ^ 1;
    assert.throws(() => kit.transport.gateway.vault.open({ ...rec, ciphertext: forged }), VaultError);
    assert.equal(kit.logLines.some((l) => l.includes(marker)), false);
    await carol.close();
  });

  test('P9 editing never echoes a secret: the form shows stored values but no password; an empty password keeps it', async () => {
    const marker = `edit-${randomBytes(8).toString('hex')}`;
    kit.net.addAccount('dave-irc', marker);
    const dave = await kit.ts.user('dave');
    assert.equal((await registerLegacy(dave, { username: 'dave-irc', password: marker, nick: 'Dave' })).attrs.type, 'result');
    const form = await dave.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.register })));
    const wire = String(form);
    assert.equal(wire.includes(marker), false, 'the password never comes back');
    const q = form.getChild('query', NS.register)!;
    assert.ok(q.getChild('registered'));
    assert.equal(q.getChildText('username'), 'dave-irc');
    assert.equal(q.getChildText('nick'), 'Dave');
    assert.equal(q.getChildText('password'), '');
    const fields = fieldsOf(q.getChild('x', NS.dataForms));
    assert.deepEqual(fields.get('username')?.values, ['dave-irc']);
    assert.deepEqual(fields.get('password')?.values, []);
    assert.equal(fields.get('password')?.required, false, 'a stored secret need not be typed again');

    // Change the nick without retyping the password: the stored password is kept (and tried).
    const before = kit.net.logins.length;
    const edit = await registerForm(dave, { username: 'dave-irc', password: '', nick: 'David' });
    assert.equal(edit.attrs.type, 'result', String(edit));
    assert.ok(kit.net.logins.slice(before).some((l) => l.ok && l.username === 'dave-irc'));
    const rec = await kit.transport.storage.transports.getCredentials('fake', bareOf(dave));
    const payload = kit.transport.gateway.vault.open(rec!);
    assert.equal(payload.fields.password, marker);
    assert.equal(payload.fields.nick, 'David');
    // A wrong new password is refused and changes nothing.
    const bad = await registerLegacy(dave, { username: 'dave-irc', password: 'not-it', nick: 'David' });
    assert.equal(errorOf(bad), 'not-acceptable');
    const after = kit.transport.gateway.vault.open((await kit.transport.storage.transports.getCredentials('fake', bareOf(dave)))!);
    assert.equal(after.fields.password, marker);
    // Missing required values are refused before any login.
    const missing = await registerLegacy(dave, { password: marker });
    assert.equal(errorOf(missing), 'not-acceptable');
    await dave.close();
  });

  test('<remove/> logs out, deletes credentials and state, and unsubscribes the contacts and the gateway', async () => {
    kit.net.addAccount('erin-irc', 'erin-pw');
    const erin = await kit.ts.user('erin');
    await erin.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    erin.send(x('presence'));
    assert.equal((await registerLegacy(erin, { username: 'erin-irc', password: 'erin-pw' })).attrs.type, 'result');
    await subscribeBoth(erin);
    const user = bareOf(erin);
    await until(() => kit.net.sessionOf(user) !== undefined, 'a live session');
    // A contact through the gateway.
    const contact = `frank%irc.one@${GW}`;
    erin.send(x('presence', { type: 'subscribe', to: contact }));
    await erin.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribed' && el.attrs.from === contact);
    await until(async () => (await kit.transport.storage.transports.getRegistration('fake', user))?.contacts.includes(contact) ?? false, 'stored contact');
    const session = kit.net.sessionOf(user)!;
    // P23 the adapter's sync state (stored in its own table) goes with the registration.
    kit.net.sync(user, 'erin-position', session.server);
    const storedState = () => kit.transport.storage.transports.getSyncState('fake', user, session.server ?? '');
    await until(async () => (await storedState()) === 'erin-position', 'the stored sync state', 10_000);

    const reply = await erin.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(reply.attrs.type, 'result');
    assert.equal(session.closed, true, 'logged out of the network');
    assert.equal(await kit.transport.storage.transports.getRegistration('fake', user), null);
    assert.equal(await kit.transport.storage.transports.getCredentials('fake', user), null);
    assert.equal(await storedState(), null, 'the sync state is deleted');
    // The contact and the gateway cancel their subscriptions (the roster shows them gone).
    await erin.expect((el) => el.name === 'iq' && !!el.getChild('query', NS.roster)?.getChildren('item').some((i) => i.attrs.jid === contact && i.attrs.subscription === 'none'));
    await erin.expect((el) => el.name === 'iq' && !!el.getChild('query', NS.roster)?.getChildren('item').some((i) => i.attrs.jid === GW && (i.attrs.subscription === 'none' || i.attrs.subscription === 'to' || i.attrs.subscription === 'from')));
    const rows = await kit.audit(user);
    assert.equal(rows.at(-1)!.event, 'disconnected');
    assert.equal(rows.at(-1)!.reason, 'registration removed');
    // Removing again: not registered.
    const again = await erin.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(errorOf(again), 'registration-required');
    await erin.close();
  });

  test('multi-server networks: XEP-0077 at a server JID registers for that server only; <remove/> there unregisters it', async () => {
    kit.net.addAccount('olga-two', 'pw-olga');
    const olga = await kit.ts.user('olga');
    olga.send(x('presence'));
    const serverJid = `irc.two@${GW}`;
    const form = await olga.iq(x('iq', { type: 'get', to: serverJid }, x('query', { xmlns: NS.register })));
    const q = form.getChild('query', NS.register)!;
    assert.equal(q.getChild('registered'), undefined);
    assert.equal(fieldsOf(q.getChild('x', NS.dataForms)).has('server'), false, 'the server is the address');
    const bad = await registerLegacy(olga, { username: 'olga-two', password: 'nope' }, serverJid);
    assert.equal(errorOf(bad), 'not-acceptable');
    const ok = await registerLegacy(olga, { username: 'olga-two', password: 'pw-olga' }, serverJid);
    assert.equal(ok.attrs.type, 'result', String(ok));
    const user = bareOf(olga);
    assert.ok(kit.net.logins.some((l) => l.userJid === user && l.ok && l.server === 'irc.two'));
    const payload = kit.transport.gateway.vault.open((await kit.transport.storage.transports.getCredentials('fake', user))!);
    assert.deepEqual(payload.fields, {});
    assert.equal(payload.servers?.['irc.two']?.password, 'pw-olga');
    const again = await olga.iq(x('iq', { type: 'get', to: serverJid }, x('query', { xmlns: NS.register })));
    assert.ok(again.getChild('query', NS.register)!.getChild('registered'));
    assert.equal(String(again).includes('pw-olga'), false);
    // Not registered on irc.one: a room there is registration-required.
    olga.send(x('presence', { to: `#x%irc.one@${GW}/olga` }, x('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    const err = await olga.expect((el) => el.name === 'presence' && el.attrs.type === 'error');
    assert.equal(errorOf(err), 'registration-required');
    const removed = await olga.iq(x('iq', { type: 'set', to: serverJid }, x('query', { xmlns: NS.register }, x('remove'))));
    assert.equal(removed.attrs.type, 'result');
    assert.equal(await kit.transport.storage.transports.getRegistration('fake', user), null, 'nothing left: unregistered');
    await olga.close();
  });

  test('jabber:iq:gateway: prompt, and XEP-0106 escaped JIDs for legacy addresses', async () => {
    kit.net.addAccount('gina-irc', 'gina-pw');
    const gina = await kit.ts.user('gina');
    assert.equal((await registerLegacy(gina, { username: 'gina-irc', password: 'gina-pw' })).attrs.type, 'result');
    const prompt = await gina.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: 'jabber:iq:gateway' })));
    assert.ok(prompt.getChild('query', 'jabber:iq:gateway')!.getChildText('prompt'));
    const ask = async (text: string) => {
      const r = await gina.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: 'jabber:iq:gateway' }, x('prompt', {}, text))));
      return r.getChild('query', 'jabber:iq:gateway')?.getChildText('jid') ?? `error ${errorOf(r)}`;
    };
    assert.equal(await ask('bob'), `bob%irc.one@${GW}`);
    assert.equal(await ask('Bob%irc.two'), `bob%irc.two@${GW}`);
    assert.equal(await ask("d'artagnan@home"), `d\\27artagnan\\40home%irc.one@${GW}`);
    assert.equal(await ask('#Chan'), `#chan%irc.one@${GW}`);
    assert.equal(await ask('c:\\net'), `c\\3a\\5cnet%irc.one@${GW}`);
    await gina.close();
  });

  test('P9 a wrong vault key stops the transport with a clear error and changes nothing', async () => {
    const repo = kit.transport.storage.transports;
    const before = await repo.listCredentials('fake');
    assert.ok(before.length > 0);
    const wrongDir = path.join(kit.dir, 'wrong');
    const config = transportConfig(kit.ts, kit.dir, { vault: { keyFile: path.join(wrongDir, 'other.key') } });
    // A second instance would also conflict on the component; the key check comes first.
    await assert.rejects(
      startTransport({ config, adapter: new FakeAdapter(kit.net), log: new Logger({ level: 'error', format: 'text', sink: () => {} }), env: {} }),
      (err: Error) => err instanceof VaultKeyMismatchError && /the vault key does not match the stored credentials \(key id [0-9a-f]{16} expected/.test(err.message),
    );
    const afterRecs = await repo.listCredentials('fake');
    assert.deepEqual(
      afterRecs.map((r) => [r.userJid, r.keyId, r.ciphertext.toString('hex')]),
      before.map((r) => [r.userJid, r.keyId, r.ciphertext.toString('hex')]),
    );
    // GATEHOUSE_VAULT_KEY that is not a key: a clear error too.
    await assert.rejects(
      startTransport({ config, adapter: new FakeAdapter(kit.net), log: new Logger({ level: 'error', format: 'text', sink: () => {} }), env: { GATEHOUSE_VAULT_KEY: 'short' } }),
      /GATEHOUSE_VAULT_KEY must hold 32 bytes/,
    );
  });
});
