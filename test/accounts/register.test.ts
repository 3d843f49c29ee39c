/** XEP-0077 in-band registration, password change and account removal, end to end; CIDR policy units. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import { registrationAllowed, type RegistrationFailure } from '../../server/modules/register.js';
import { cidrContains, parseIp } from '../../shared/ip-addresses.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { verifyPlain } from '../../server/auth/scram.js';
import { ManualClock } from '../../shared/clock.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

function modules(): GatehouseModule[] {
  return allModules();
}
const HAS_PRESENCE = allModules().some((m) => /presence/i.test(m.name));

function query(...children: Element[]): Element {
  return x('query', { xmlns: NS.register }, ...children);
}

function registerIq(c: TestClient, type: 'get' | 'set', ...children: Element[]): Promise<Element> {
  return c.iq(x('iq', { type, to: c.domain }, query(...children)));
}

function legacy(username: string | null, password: string | null): Element[] {
  const out: Element[] = [];
  if (username !== null) out.push(x('username', {}, username));
  if (password !== null) out.push(x('password', {}, password));
  return out;
}

function form(formType: string, fields: Record<string, string>): Element {
  return x(
    'x',
    { xmlns: NS.dataForms, type: 'submit' },
    x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, formType)),
    Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v))),
  );
}

function hasRegisterFeature(c: TestClient): boolean {
  return !!c.streamFeatures?.getChild('register', NS.registerFeature);
}

async function until<T>(fn: () => Promise<T>, ok: (v: T) => boolean, ms = 3000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await fn();
    if (ok(v) || Date.now() > end) return v;
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function canLogin(ts: TestServer, username: string, password: string, mechanism = 'SCRAM-SHA-256'): Promise<string> {
  const c = await ts.client();
  const outcome = await c.authenticate(username, password, mechanism);
  await c.close();
  return outcome.name === 'success' ? 'success' : (outcome.firstElement()?.name ?? 'failure');
}

describe('in-band registration (open host)', () => {
  let ts: TestServer;
  const failures: RegistrationFailure[] = [];

  before(async () => {
    // Many refused registrations from this one address: the failed-login guard (P7) must not slow
    // them down, so loopback is a trusted proxy here (it is not by default).
    ts = await startTestServer({ modules: modules(), config: { loginGuard: { trustedProxies: ['127.0.0.0/8', '::1/128'] } } });
    ts.server.ctx.hooks.on('register/failed', (f) => void failures.push(f));
  });
  after(() => ts.stop());

  test('the registration form offers legacy fields and a jabber:iq:register data form', async () => {
    const c = await ts.client();
    assert.ok(hasRegisterFeature(c), 'register stream feature announced');
    const reply = await registerIq(c, 'get');
    assert.equal(reply.attrs.type, 'result');
    assert.equal(reply.attrs.to, undefined);
    const q = reply.getChild('query', NS.register)!;
    assert.ok(q.getChildText('instructions'));
    assert.equal(q.getChildText('username'), '');
    assert.equal(q.getChildText('password'), '');
    assert.equal(q.getChild('registered'), undefined);
    const f = q.getChild('x', NS.dataForms)!;
    assert.equal(f.attrs.type, 'form');
    const fields = Object.fromEntries(f.getChildren('field').map((fl) => [fl.attrs.var, fl]));
    assert.equal(fields.FORM_TYPE?.attrs.type, 'hidden');
    assert.equal(fields.FORM_TYPE?.getChildText('value'), NS.register);
    assert.ok(fields.username?.getChild('required'));
    assert.equal(fields.password?.attrs.type, 'text-private');
    assert.ok(fields.password?.getChild('required'));
    await c.close();
  });

  test('P1 Alice registers and logs in as alice: one account, whatever the case', async () => {
    const c = await ts.client();
    const reg = await c.register('Alice', 'pw-Alice');
    assert.equal(reg.attrs.type, 'result');
    const acc = await ts.server.ctx.storage.accounts.get('alice', 'localhost');
    assert.ok(acc);
    const jid = await c.login('alice', 'pw-Alice');
    assert.match(jid, /^alice@localhost\//);
    await c.close();
    assert.equal(await canLogin(ts, 'ALICE', 'pw-Alice'), 'success');

    // Registering ALICE after Alice is a conflict.
    const c2 = await ts.client();
    const again = await c2.register('ALICE', 'other');
    assert.equal(again.attrs.type, 'error');
    assert.equal(errorCondition(again), 'conflict');
    assert.equal(again.getChild('error')?.attrs.type, 'cancel');
    assert.ok(!again.toString().includes('other'), 'the error does not echo the password');
    assert.ok(failures.some((f) => f.username === 'alice' && f.condition === 'conflict' && f.ip === '127.0.0.1' && f.host === 'localhost'));
    await c2.close();
    assert.equal(await ts.server.ctx.storage.accounts.count('localhost'), 1);
  });

  test('P1 invalid usernames are refused with not-acceptable', async () => {
    const c = await ts.client();
    const before = await ts.server.ctx.storage.accounts.count();
    for (const bad of ['a@b', 'a/b', 'a b', '', 'x'.repeat(1024)]) {
      const reply = await c.register(bad, 'pw');
      assert.equal(reply.attrs.type, 'error', JSON.stringify(bad.slice(0, 20)));
      assert.equal(errorCondition(reply), 'not-acceptable');
    }
    assert.equal(await ts.server.ctx.storage.accounts.count(), before);
    await c.close();
  });

  test('missing or empty fields are not-acceptable', async () => {
    const c = await ts.client();
    for (const children of [legacy('nopass', null), legacy('nopass', ''), legacy(null, 'pw'), []]) {
      const reply = await registerIq(c, 'set', ...children);
      assert.equal(errorCondition(reply), 'not-acceptable');
      assert.equal(reply.getChild('error')?.attrs.type, 'modify');
    }
    assert.equal(await ts.server.ctx.storage.accounts.get('nopass', 'localhost'), null);
    // Removal needs an authenticated stream.
    const remove = await registerIq(c, 'set', x('remove'));
    assert.equal(errorCondition(remove), 'unexpected-request');
    await c.close();
  });

  test('a data form submission registers (Gajim style)', async () => {
    const c = await ts.client();
    const reply = await registerIq(c, 'set', form(NS.register, { username: 'Formuser', password: 'form-pw' }));
    assert.equal(reply.attrs.type, 'result');
    await c.login('formuser', 'form-pw');
    await c.close();
    const c2 = await ts.client();
    const wrong = await registerIq(c2, 'set', form('urn:example:other', { username: 'x2', password: 'pw' }));
    assert.equal(errorCondition(wrong), 'bad-request');
    await c2.close();
  });

  test('P2 no plaintext password in the database files or logs; SCRAM verifiers for SHA-1 and SHA-256', async () => {
    const marker = 'PW-MARKER-' + randomBytes(8).toString('hex');
    const username = 'p2user' + randomBytes(4).toString('hex');
    const c = await ts.client();
    assert.equal((await c.register(username, marker)).attrs.type, 'result');
    await c.login(username, marker);
    await c.close();

    const path = ts.config.storage.path!;
    const files = [path, `${path}-wal`, `${path}-journal`].filter((f) => existsSync(f));
    const bytes = Buffer.concat(files.map((f) => readFileSync(f)));
    assert.ok(bytes.includes(Buffer.from(username)), 'the scan sees what was written (the username is there)');
    assert.ok(!bytes.includes(Buffer.from(marker)), 'the plaintext password is not in the database files');
    assert.ok(!bytes.includes(Buffer.from(marker, 'utf16le')));
    assert.ok(!bytes.includes(Buffer.from(Buffer.from(marker).toString('base64'))));

    const acc = (await ts.server.ctx.storage.accounts.get(username, 'localhost'))!;
    const verifiers = await ts.server.ctx.storage.accounts.getVerifiers(acc.id);
    assert.deepEqual(verifiers.map((v) => v.hash).sort(), ['SHA-1', 'SHA-256']);
    for (const v of verifiers) {
      assert.ok(v.iterations >= 4096);
      assert.ok(verifyPlain(marker, v));
    }

    // PLAIN is not offered (nor anything else) before TLS.
    const plain = await ts.client({ plain: true });
    assert.ok(plain.streamFeatures?.getChild('starttls', NS.tls)?.getChild('required'));
    assert.deepEqual(plain.mechanisms(), []);
    assert.equal(plain.streamFeatures?.getChild('mechanisms', NS.sasl), undefined);
    assert.ok(!hasRegisterFeature(plain));
    plain.destroy();

    // Over TLS, PLAIN is offered and checked against the verifiers.
    const tlsClient = await ts.client();
    assert.ok(tlsClient.mechanisms().includes('PLAIN'));
    await tlsClient.close();
    assert.equal(await canLogin(ts, username, marker, 'PLAIN'), 'success');
    assert.equal(await canLogin(ts, username, marker + 'x', 'PLAIN'), 'not-authorized');
    assert.equal(await canLogin(ts, username, marker + 'x', 'SCRAM-SHA-1'), 'not-authorized');
    assert.equal(await canLogin(ts, username, marker, 'SCRAM-SHA-1'), 'success');

    assert.ok(ts.logLines.length > 0);
    assert.ok(!ts.logLines.some((l) => l.includes(marker)), 'the password never reaches a log line');
  });

  test('after login, get answers <registered/> with the username and never the password', async () => {
    const c = await ts.user('reggie', 'reggie-secret');
    for (const to of ['localhost', undefined]) {
      const reply = await c.iq(x('iq', { type: 'get', to }, query()));
      assert.equal(reply.attrs.type, 'result');
      const q = reply.getChild('query', NS.register)!;
      assert.ok(q.getChild('registered'));
      assert.equal(q.getChildText('username'), 'reggie');
      assert.equal(q.getChildText('password') ?? '', '');
      assert.ok(!reply.toString().includes('reggie-secret'));
    }
    await c.close();
  });

  test('a password change lets only the new password in', async () => {
    const c = await ts.user('pat', 'old-pw');
    const change = await c.iq(x('iq', { type: 'set', to: 'localhost' }, query(...legacy('pat', 'new-pw'))));
    assert.equal(change.attrs.type, 'result');
    assert.equal(await canLogin(ts, 'pat', 'old-pw'), 'not-authorized');
    assert.equal(await canLogin(ts, 'pat', 'new-pw'), 'success');

    // Without 'to', with the bare JID as username (as in XEP-0077's data form examples).
    const change2 = await c.iq(x('iq', { type: 'set' }, query(...legacy('pat@localhost', 'newer-pw'))));
    assert.equal(change2.attrs.type, 'result');
    assert.equal(await canLogin(ts, 'pat', 'newer-pw'), 'success');

    // Only the own account; no empty password; a username is required.
    await ts.user('quinn', 'quinn-pw');
    const other = await c.iq(x('iq', { type: 'set', to: 'localhost' }, query(...legacy('quinn', 'hijack'))));
    assert.equal(errorCondition(other), 'not-allowed');
    assert.equal(await canLogin(ts, 'quinn', 'quinn-pw'), 'success');
    const empty = await c.iq(x('iq', { type: 'set', to: 'localhost' }, query(...legacy('pat', ''))));
    assert.equal(errorCondition(empty), 'bad-request');
    const nameless = await c.iq(x('iq', { type: 'set', to: 'localhost' }, query(...legacy(null, 'x'))));
    assert.equal(errorCondition(nameless), 'bad-request');
    assert.equal(await canLogin(ts, 'pat', 'newer-pw'), 'success');

    // The change-password data form, with the old password checked when given.
    const wrongOld = await c.iq(x('iq', { type: 'set', to: 'localhost' }, query(form('jabber:iq:register:changepassword', { username: 'pat', old_password: 'nope', password: 'formed' }))));
    assert.equal(errorCondition(wrongOld), 'not-authorized');
    assert.ok(!wrongOld.toString().includes('formed'));
    const rightOld = await c.iq(x('iq', { type: 'set', to: 'localhost' }, query(form('jabber:iq:register:changepassword', { username: 'pat', old_password: 'newer-pw', password: 'formed' }))));
    assert.equal(rightOld.attrs.type, 'result');
    assert.equal(await canLogin(ts, 'pat', 'formed'), 'success');
    assert.ok(!ts.logLines.some((l) => l.includes('newer-pw') || l.includes('formed')));
    await c.close();
  });

  test('P23 <remove/> erases the account and all its data, ends its sessions and unsubscribes contacts', async () => {
    const { storage, hooks } = ts.server.ctx;
    const deleting: string[] = [];
    const off = hooks.on('account/deleting', ({ jid }) => void deleting.push(jid.bare));

    const bob = await ts.user('bob', 'bob-pw');
    const gone = await ts.user('gone', 'gone-pw', 'one');
    const gone2 = await ts.client();
    await gone2.login('gone', 'gone-pw', { resource: 'two' });
    const acc = (await storage.accounts.get('gone', 'localhost'))!;
    const bobAcc = (await storage.accounts.get('bob', 'localhost'))!;
    const item = { name: null, subscription: 'both' as const, ask: false, pendingIn: false, approved: false, groups: [] };
    await storage.roster.put(acc.id, { ...item, jid: 'bob@localhost' });
    await storage.roster.put(bobAcc.id, { ...item, jid: 'gone@localhost' });
    await storage.vcards.set(acc.id, 'vcard', '<vCard xmlns="vcard-temp"><FN>Gone</FN></vCard>');
    await storage.privateXml.set(acc.id, '{storage:bookmarks} storage', '<storage xmlns="storage:bookmarks"/>');
    await storage.accountState.set(acc.id, 'last', '<last/>');
    await storage.offline.store(acc.id, '<message from="bob@localhost" to="gone@localhost"><body>hi</body></message>', new Date());
    bob.send(x('presence'));
    // Bob's stream handles stanzas in order: once the ping is answered, his presence was routed.
    await bob.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));

    const reply = await gone.iq(x('iq', { type: 'set' }, query(x('remove'))));
    assert.equal(reply.attrs.type, 'result');
    await gone.waitClosed();
    await gone2.waitClosed();
    assert.equal(gone.streamError, 'not-authorized');
    assert.equal(gone2.streamError, 'not-authorized');

    assert.deepEqual(deleting, ['gone@localhost']);
    off();
    assert.equal(await storage.accounts.get('gone', 'localhost'), null);
    assert.deepEqual(await storage.accounts.getVerifiers(acc.id), []);
    assert.deepEqual(await storage.roster.list(acc.id), []);
    assert.equal(await storage.vcards.get(acc.id, 'vcard'), null);
    assert.equal(await storage.privateXml.get(acc.id, '{storage:bookmarks} storage'), null);
    assert.equal(await storage.accountState.get(acc.id, 'last'), null);
    assert.equal(await storage.offline.count(acc.id), 0);
    assert.equal(await canLogin(ts, 'gone', 'gone-pw'), 'not-authorized');

    if (HAS_PRESENCE) {
      const isFromGone = (type: string) => (el: Element) => el.name === 'presence' && el.attrs.type === type && el.attrs.from?.startsWith('gone@localhost') === true;
      await bob.expect(isFromGone('unsubscribe'));
      await bob.expect(isFromGone('unsubscribed'));
    }
    await bob.close();
  });

  test('<remove/> with other children is a bad request and deletes nothing', async () => {
    const c = await ts.user('keeper', 'keeper-pw');
    const reply = await c.iq(x('iq', { type: 'set' }, query(x('remove'), x('username', {}, 'keeper'))));
    assert.equal(errorCondition(reply), 'bad-request');
    assert.ok(await ts.server.ctx.storage.accounts.get('keeper', 'localhost'));
    await c.close();
  });

  test('jabber:iq:register is a server disco feature', async () => {
    const c = await ts.user('disco', 'disco-pw');
    assert.ok(ts.server.ctx.disco.serverFeatures.has(NS.register));
    await c.close();
  });
});

describe('registration policy per host', () => {
  let ts: TestServer;
  const failures: RegistrationFailure[] = [];

  before(async () => {
    ts = await startTestServer({
      modules: modules(),
      config: {
        hosts: [
          { domain: 'localhost', registration: 'closed' },
          { domain: 'loop.test', registration: 'loopback' },
          { domain: 'ten.test', registration: { allow: ['10.0.0.0/8'] } },
          { domain: 'here.test', registration: { allow: ['192.0.2.0/24', '127.0.0.1'] } },
        ],
      },
    });
    ts.server.ctx.hooks.on('register/failed', (f) => void failures.push(f));
  });
  after(() => ts.stop());

  test('a closed host announces no registration and answers not-allowed', async () => {
    const c = await ts.client({ domain: 'localhost' });
    assert.ok(!hasRegisterFeature(c));
    assert.ok(c.mechanisms().length > 0, 'features were sent');
    const get = await registerIq(c, 'get');
    assert.equal(errorCondition(get), 'not-allowed');
    const set = await c.register('mallory', 'pw');
    assert.equal(errorCondition(set), 'not-allowed');
    assert.equal(await ts.server.ctx.storage.accounts.get('mallory', 'localhost'), null);
    assert.ok(failures.some((f) => f.host === 'localhost' && f.username === 'mallory' && f.condition === 'not-allowed' && f.ip === '127.0.0.1'));
    assert.ok(!failures.some((f) => JSON.stringify(f).includes('"pw"')));
    await c.close();
  });

  test('loopback allows clients on 127.0.0.1 and 127.0.0.2', async () => {
    for (const localAddress of ['127.0.0.1', '127.0.0.2']) {
      const c = await ts.client({ domain: 'loop.test', localAddress });
      assert.ok(hasRegisterFeature(c));
      const name = 'local' + localAddress.replace(/\./g, '');
      assert.equal((await c.register(name, 'pw')).attrs.type, 'result');
      await c.login(name, 'pw');
      await c.close();
    }
  });

  test('{ allow: [10.0.0.0/8] } refuses 127.0.0.1; a listed address is admitted', async () => {
    const c = await ts.client({ domain: 'ten.test' });
    assert.ok(!hasRegisterFeature(c));
    assert.equal(errorCondition(await c.register('outsider', 'pw')), 'not-allowed');
    await c.close();
    const ok = await ts.client({ domain: 'here.test' });
    assert.ok(hasRegisterFeature(ok));
    assert.equal((await ok.register('insider', 'pw')).attrs.type, 'result');
    await ok.close();
    const other = await ts.client({ domain: 'here.test', localAddress: '127.0.0.3' });
    assert.equal(errorCondition(await other.register('insider2', 'pw')), 'not-allowed');
    await other.close();
  });
});

describe('registration needs TLS even where authentication does not', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ modules: modules(), config: { c2s: { requireEncryption: false } } });
  });
  after(() => ts.stop());

  test('no register feature and not-allowed on an unencrypted stream', async () => {
    const c = await ts.client({ plain: true });
    assert.ok(c.mechanisms().length > 0);
    assert.ok(!c.mechanisms().includes('PLAIN'));
    assert.ok(!hasRegisterFeature(c));
    assert.equal(errorCondition(await registerIq(c, 'get')), 'not-allowed');
    assert.equal(errorCondition(await c.register('cleartext', 'pw')), 'not-allowed');
    assert.equal(await ts.server.ctx.storage.accounts.get('cleartext', 'localhost'), null);
    c.destroy();
  });
});

describe('account activity', () => {
  test('P4 created_at is set at registration and last_used_at at login and at the end of the session', async () => {
    const start = Date.UTC(2026, 0, 10, 12, 0, 0);
    const clock = new ManualClock(start);
    const ts = await startTestServer({ modules: modules(), clock });
    try {
      const { storage } = ts.server.ctx;
      const c = await ts.client();
      assert.equal((await c.register('Walter', 'walter-pw')).attrs.type, 'result');
      let acc = (await storage.accounts.get('walter', 'localhost'))!;
      assert.equal(acc.createdAt.getTime(), start);
      assert.equal(acc.lastUsedAt, null);

      clock.advance(3_600_000);
      await c.login('walter', 'walter-pw');
      acc = await until(
        async () => (await storage.accounts.get('walter', 'localhost'))!,
        (a) => a.lastUsedAt !== null,
      );
      assert.equal(acc.lastUsedAt?.getTime(), start + 3_600_000);
      assert.equal(acc.createdAt.getTime(), start);

      clock.advance(2 * 3_600_000);
      await c.close();
      acc = await until(
        async () => (await storage.accounts.get('walter', 'localhost'))!,
        (a) => a.lastUsedAt?.getTime() === start + 3 * 3_600_000,
      );
      assert.equal(acc.lastUsedAt?.getTime(), start + 3 * 3_600_000);
      // Inactivity is measured from there.
      assert.deepEqual((await storage.accounts.listInactiveSince(new Date(start + 3 * 3_600_000 + 1), 10)).map((a) => a.username), ['walter']);
      assert.deepEqual(await storage.accounts.listInactiveSince(new Date(start + 3 * 3_600_000), 10), []);
    } finally {
      await ts.stop();
    }
  });
});

describe('CIDR matching', () => {
  test('parseIp maps IPv4 into IPv6 and accepts the IPv6 forms', () => {
    assert.deepEqual([...parseIp('1.2.3.4')!], [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 255, 255, 1, 2, 3, 4]);
    assert.deepEqual(parseIp('::ffff:1.2.3.4'), parseIp('1.2.3.4'));
    assert.deepEqual(parseIp('::FFFF:0102:0304'), parseIp('1.2.3.4'));
    assert.deepEqual([...parseIp('::1')!], [...new Array(15).fill(0), 1]);
    assert.deepEqual([...parseIp('::')!], new Array(16).fill(0));
    assert.deepEqual([...parseIp('2001:db8::')!].slice(0, 4), [0x20, 0x01, 0x0d, 0xb8]);
    assert.deepEqual(parseIp('fe80::1%eth0'), parseIp('fe80::1'));
    assert.deepEqual(parseIp('[2001:db8::1]'), parseIp('2001:db8:0:0:0:0:0:1'));
    for (const bad of ['', 'unknown', '1.2.3', '1.2.3.256', '2001:db8::1::2', 'localhost', '::ffff:1.2.3']) assert.equal(parseIp(bad), null, bad);
  });

  test('IPv4 ranges', () => {
    assert.ok(cidrContains('10.0.0.0/8', '10.255.1.2'));
    assert.ok(!cidrContains('10.0.0.0/8', '11.0.0.1'));
    assert.ok(!cidrContains('10.0.0.0/8', '127.0.0.1'));
    assert.ok(cidrContains('192.168.1.128/25', '192.168.1.200'));
    assert.ok(!cidrContains('192.168.1.128/25', '192.168.1.127'));
    assert.ok(cidrContains('172.16.0.0/12', '172.31.255.255'));
    assert.ok(!cidrContains('172.16.0.0/12', '172.32.0.0'));
    assert.ok(cidrContains('0.0.0.0/0', '8.8.8.8'));
    assert.ok(!cidrContains('0.0.0.0/0', '2001:db8::1'), 'an IPv4 range never matches a native IPv6 address');
    assert.ok(cidrContains('203.0.113.7', '203.0.113.7'));
    assert.ok(!cidrContains('203.0.113.7', '203.0.113.8'));
    assert.ok(cidrContains('203.0.113.7/32', '203.0.113.7'));
    assert.ok(!cidrContains('10.0.0.0/33', '10.0.0.1'));
    assert.ok(!cidrContains('10.0.0.0/8', 'unknown'));
  });

  test('IPv6 ranges and IPv4-mapped addresses', () => {
    assert.ok(cidrContains('2001:db8::/32', '2001:db8:1234::5'));
    assert.ok(!cidrContains('2001:db8::/32', '2001:db9::1'));
    assert.ok(cidrContains('fd00::/8', 'fdab:cdef::1'));
    assert.ok(!cidrContains('fd00::/8', 'fe80::1'));
    assert.ok(cidrContains('2001:db8::/127', '2001:db8::1'));
    assert.ok(!cidrContains('2001:db8::/127', '2001:db8::2'));
    assert.ok(cidrContains('::1', '::1'));
    assert.ok(cidrContains('::/0', '1.2.3.4'));
    assert.ok(cidrContains('10.0.0.0/8', '::ffff:10.1.2.3'), 'an IPv4 range matches the IPv4-mapped form');
    assert.ok(cidrContains('::ffff:10.0.0.0/104', '10.9.9.9'), 'an IPv4-mapped range matches the plain IPv4 form');
    assert.ok(!cidrContains('::ffff:10.0.0.0/104', '11.0.0.1'));
    assert.ok(!cidrContains('2001:db8::/129', '2001:db8::1'));
  });

  test('registration policies', () => {
    assert.ok(registrationAllowed('open', 'unknown'));
    assert.ok(!registrationAllowed('closed', '127.0.0.1'));
    for (const ip of ['127.0.0.1', '127.1.2.3', '::1', '::ffff:127.0.0.1']) assert.ok(registrationAllowed('loopback', ip), ip);
    for (const ip of ['10.0.0.1', '::2', '192.0.2.1', 'unknown', '::']) assert.ok(!registrationAllowed('loopback', ip), ip);
    assert.ok(registrationAllowed({ allow: ['10.0.0.0/8', '2001:db8::/32'] }, '2001:db8::42'));
    assert.ok(!registrationAllowed({ allow: ['10.0.0.0/8'] }, '127.0.0.1'));
  });
});
