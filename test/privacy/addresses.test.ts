/**
 * Privacy of addresses: no client IP ever reaches another user, a component or another server
 * (P19); no user listing and no way to tell existing from nonexistent accounts (P17); admin
 * features only for the configured admins, and their reads of audit data logged (P21).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import { createPresenceModule } from '../../server/modules/presence.js';
import { createRosterModule } from '../../server/modules/roster.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { parseConfig } from '../../server/config/index.js';
import { HookBus } from '../../server/core/hooks.js';
import { Logger } from '../../shared/logger.js';
import { ManualClock } from '../../shared/clock.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { auditRead, isAdmin, osReader, type AuditRead } from '../../server/modules/policy/admins.js';

const CLIENT_IP = '127.0.0.2';
const GW = 'gw.localhost';
const GW_SECRET = 'gw-secret-4b1d';
const COMMANDS = 'http://jabber.org/protocol/commands';

function modules(): GatehouseModule[] {
  const list = [...allModules()];
  for (const m of [createRosterModule(), createPresenceModule()]) if (!list.some((l) => l.name === m.name)) list.push(m);
  return list;
}

const delay = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Awaits a step of a long scenario, naming the step when it fails. */
async function step<T>(name: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** Every byte a client receives from now on (after TLS: the decrypted stream). */
function record(client: TestClient): { text: string } {
  const rec = { text: '' };
  client.tlsSocketOrSocket().on('data', (d: Buffer) => (rec.text += d.toString('utf8')));
  return rec;
}

/** A XEP-0114 component on a raw socket: the handshake by hand, every byte it receives kept. */
class RawComponent {
  text = '';
  private constructor(readonly socket: Socket) {
    socket.on('data', (d: Buffer) => (this.text += d.toString('utf8')));
    socket.on('error', () => {});
  }
  static async connect(port: number): Promise<RawComponent> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    const c = new RawComponent(socket);
    socket.write(`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}' to='${GW}'>`);
    const [, id] = await c.waitFor(/ id='([^']+)'/);
    socket.write(`<handshake>${createHash('sha1').update(id + GW_SECRET).digest('hex')}</handshake>`);
    await c.waitFor(/<handshake\/>/);
    return c;
  }
  async waitFor(re: RegExp, timeoutMs = 5000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.text);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`component: timed out waiting for ${re}; got ${this.text.slice(-1000)}`);
      await delay(10);
    }
  }
  write(s: string): void {
    this.socket.write(s);
  }
}

describe('P19 client addresses never leave the server', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({
      modules: modules(),
      config: { components: [{ domain: GW, secret: GW_SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] } },
    });
  });
  after(async () => {
    await ts.stop();
  });

  test('P19 everything other users, a component and other servers receive from a client is free of its IP address', async () => {
    const component = await RawComponent.connect(ts.componentPort);
    // What would leave for other servers (and components) is seen on the remote hooks before it goes.
    const outbound: string[] = [];
    for (const kind of ['message', 'presence', 'iq'] as const) {
      ts.server.ctx.hooks.on(`${kind}/remote`, (e) => void outbound.push(e.stanza.toString()), 'observe');
    }

    const aliceConn = await ts.client();
    const alice = record(aliceConn);
    assert.equal((await aliceConn.register('alice', 'pw-alice')).attrs.type, 'result');
    await aliceConn.login('alice', 'pw-alice', { resource: 'desk' });

    const bob = await ts.client({ localAddress: CLIENT_IP });
    assert.equal((await bob.register('bob', 'pw-bob')).attrs.type, 'result');
    await bob.login('bob', 'pw-bob', { resource: 'phone' });
    assert.equal(ts.server.ctx.sessions.get(bob.jid)?.ip.replace(/^::ffff:/, ''), CLIENT_IP, 'the server sees bob at the distinctive address');

    // Roster and mutual subscription.
    await bob.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    await aliceConn.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    aliceConn.send(x('presence'));
    bob.send(x('presence'));
    await step('initial presence', aliceConn.expect((el) => el.name === 'presence' && el.attrs.from === aliceConn.jid));
    await bob.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, x('item', { jid: 'alice@localhost', name: 'Alice' }, x('group', {}, 'Friends')))));
    bob.send(x('presence', { to: 'alice@localhost', type: 'subscribe' }, x('nick', { xmlns: 'http://jabber.org/protocol/nick' }, 'Bobby')));
    await step('step 1', aliceConn.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe'));
    aliceConn.send(x('presence', { to: 'bob@localhost', type: 'subscribed' }));
    aliceConn.send(x('presence', { to: 'bob@localhost', type: 'subscribe' }));
    await step('step 2', bob.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe'));
    bob.send(x('presence', { to: 'alice@localhost', type: 'subscribed' }));

    // Presence with everything a client puts in it.
    bob.send(
      x(
        'presence',
        {},
        x('show', {}, 'chat'),
        x('status', {}, 'on the train'),
        x('priority', {}, '5'),
        x('c', { xmlns: NS.caps, hash: 'sha-1', node: 'https://example.org/client', ver: 'abc=' }),
      ),
    );
    await step('step 3', aliceConn.expect((el) => el.name === 'presence' && el.attrs.from === bob.jid && !el.attrs.type));

    // Messages: to the bare and full JID, with receipts and chat states; to the component; to a remote server.
    bob.send(x('message', { to: 'alice@localhost', type: 'chat', id: 'm1' }, x('body', {}, 'hi alice'), x('request', { xmlns: 'urn:xmpp:receipts' }), x('active', { xmlns: 'http://jabber.org/protocol/chatstates' })));
    await step('step 4', aliceConn.expect((el) => el.name === 'message' && el.getChildText('body') === 'hi alice'));
    bob.send(x('message', { to: aliceConn.jid, type: 'chat', id: 'm2' }, x('body', {}, 'to your desk')));
    await step('step 5', aliceConn.expect((el) => el.name === 'message' && el.getChildText('body') === 'to your desk'));
    bob.send(x('message', { to: `someone@${GW}`, type: 'chat', id: 'm3' }, x('body', {}, 'hi gateway')));
    await step('step 6', component.waitFor(/hi gateway/));
    bob.send(x('message', { to: 'rob@remote.example', type: 'chat', id: 'm4' }, x('body', {}, 'hi remote')));
    await step('step 7', bob.expect((el) => el.name === 'message' && el.attrs.id === 'm4' && el.attrs.type === 'error'));

    // Presence and subscriptions to the component and a remote contact.
    bob.send(x('presence', { to: GW }));
    bob.send(x('presence', { to: `someone@${GW}`, type: 'subscribe' }));
    bob.send(x('presence', { to: 'rob@remote.example', type: 'subscribe' }));
    await step('step 8', component.waitFor(/type=["']subscribe["']/));

    // vCard: bob publishes, alice reads.
    await bob.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Bob Builder'), x('NICKNAME', {}, 'bob'))));
    const card = await aliceConn.iq(x('iq', { type: 'get', to: 'bob@localhost' }, x('vCard', { xmlns: NS.vcard })));
    assert.equal(card.getChild('vCard', NS.vcard)?.getChildText('FN'), 'Bob Builder');

    // Queries to alice's server and to alice: version, last activity, ping, time, disco.
    for (const q of [x('query', { xmlns: NS.version }), x('query', { xmlns: NS.last }), x('ping', { xmlns: NS.ping }), x('time', { xmlns: NS.time }), x('query', { xmlns: NS.discoInfo }), x('query', { xmlns: NS.discoItems })]) {
      await bob.iq(x('iq', { type: 'get', to: 'localhost' }, q.clone()));
      await bob.iq(x('iq', { type: 'get', to: 'alice@localhost' }, q.clone()));
    }
    // alice asks about bob: last activity and disco (she is subscribed), and bob's client directly.
    await aliceConn.iq(x('iq', { type: 'get', to: 'bob@localhost' }, x('query', { xmlns: NS.last })));
    await aliceConn.iq(x('iq', { type: 'get', to: 'bob@localhost' }, x('query', { xmlns: NS.discoInfo })));
    const toBob = aliceConn.iq(x('iq', { type: 'get', to: bob.jid, id: 'v1' }, x('query', { xmlns: NS.version })));
    const asked = await bob.expect((el) => el.name === 'iq' && el.attrs.id === 'v1');
    bob.send(x('iq', { type: 'result', to: asked.attrs.from, id: 'v1' }, x('query', { xmlns: NS.version }, x('name', {}, 'BobClient'), x('version', {}, '1.0'))));
    assert.equal((await toBob).attrs.type, 'result');
    // bob's client asks alice's client, and the component.
    const toAlice = bob.iq(x('iq', { type: 'get', to: aliceConn.jid, id: 'v2' }, x('query', { xmlns: NS.version })));
    const q2 = await aliceConn.expect((el) => el.name === 'iq' && el.attrs.id === 'v2');
    aliceConn.send(x('iq', { type: 'result', to: q2.attrs.from, id: 'v2' }, x('query', { xmlns: NS.version })));
    await toAlice;
    bob.send(x('iq', { type: 'get', to: GW, id: 'c1' }, x('query', { xmlns: NS.discoInfo })));
    await step('step 9', component.waitFor(/id=["']c1["']/));
    component.write(`<iq type='result' from='${GW}' to='${bob.jid}' id='c1'><query xmlns='${NS.discoInfo}'><identity category='gateway' type='irc'/></query></iq>`);
    await step('step 10', bob.expect((el) => el.name === 'iq' && el.attrs.id === 'c1'));

    // Errors bob causes, and his departure.
    bob.send(x('message', { to: 'nobody-here@localhost', type: 'chat', id: 'm5' }, x('body', {}, 'anyone?')));
    await step('step 11', bob.expect((el) => el.name === 'message' && el.attrs.id === 'm5'));
    bob.send(x('presence', { type: 'unavailable' }, x('status', {}, 'bye')));
    await step('step 12', aliceConn.expect((el) => el.name === 'presence' && el.attrs.from === bob.jid && el.attrs.type === 'unavailable'));
    aliceConn.send(x('message', { to: 'bob@localhost', type: 'chat' }, x('body', {}, 'stored for bob')));
    await delay(100);
    bob.destroy();
    await delay(300);

    // The scan: real traffic reached every party, and none of it names bob's address.
    assert.ok(alice.text.includes('bob@localhost') && alice.text.includes('on the train') && alice.text.includes('Bob Builder'), 'alice saw bob');
    assert.ok(component.text.includes('bob@localhost/phone') && component.text.includes('hi gateway'), 'the component saw bob');
    assert.ok(outbound.some((s) => s.includes('rob@remote.example')) && outbound.some((s) => s.includes(GW)), 'stanzas for other domains were seen');
    for (const [who, text] of [['alice', alice.text], ['component', component.text], ['other servers', outbound.join('\n')]] as const) {
      assert.ok(!text.includes(CLIENT_IP), `${who} received bob's IP address`);
      assert.ok(!text.includes('127.0.0.1'), `${who} received a client IP address`);
    }
    await aliceConn.close();
  });
});

// ---------------------------------------------------------------------------------------------

/** A reply without its addressing, for comparing two answers. */
function shape(el: Element): string {
  const copy = el.clone();
  delete copy.attrs.id;
  delete copy.attrs.from;
  delete copy.attrs.to;
  return copy.toString();
}

describe('P17 and P21: no user listing, no account probing, admin features for admins only', () => {
  let ts: TestServer;
  let mallory: TestClient;
  let alice: TestClient;
  before(async () => {
    ts = await startTestServer({ modules: modules(), config: { admins: ['admin@localhost'] } });
    alice = await ts.user('alice');
    await ts.user('carol').then((c) => c.close());
    await ts.user('admin').then((c) => c.close());
    mallory = await ts.user('mallory');
  });
  after(async () => {
    await ts.stop();
  });

  test('P17 a stranger gets the same answer for an existing and a nonexistent account, whatever it asks', async () => {
    const queries: Element[] = [
      x('query', { xmlns: NS.version }),
      x('time', { xmlns: NS.time }),
      x('ping', { xmlns: NS.ping }),
      x('query', { xmlns: NS.roster }),
      x('query', { xmlns: NS.privateXml }, x('storage', { xmlns: 'storage:bookmarks' })),
      x('query', { xmlns: NS.last }),
      x('vCard', { xmlns: NS.vcard }),
      x('query', { xmlns: NS.discoInfo }),
      x('query', { xmlns: NS.discoItems }),
      x('query', { xmlns: NS.register }),
      x('query', { xmlns: 'jabber:iq:search' }),
      x('pubsub', { xmlns: 'http://jabber.org/protocol/pubsub' }, x('items', { node: 'urn:xmpp:avatar:metadata' })),
      x('blocklist', { xmlns: 'urn:xmpp:blocking' }),
      x('query', { xmlns: 'urn:example:unknown' }),
    ];
    // carol exists (offline, no vCard, no contacts); nobody-here does not. Same for resources.
    for (const [existing, missing] of [
      ['carol@localhost', 'nobody-here@localhost'],
      ['carol@localhost/phone', 'nobody-here@localhost/phone'],
    ]) {
      for (const q of queries) {
        for (const type of ['get', 'set'] as const) {
          const a = await mallory.iq(x('iq', { type, to: existing }, q.clone()));
          const b = await mallory.iq(x('iq', { type, to: missing }, q.clone()));
          assert.equal(a.attrs.type, 'error', `${type} ${q.xmlns} to ${existing}: ${a}`);
          assert.equal(shape(a), shape(b), `${type} ${q.xmlns} to ${existing} and ${missing}`);
        }
      }
    }
    // Presence probes and subscription requests: no answer reveals which account exists.
    for (const type of ['probe', 'subscribe'] as const) {
      const got: string[] = [];
      for (const to of ['carol@localhost', 'nobody-here@localhost']) {
        mallory.send(x('presence', { to, type }));
        try {
          const reply = await mallory.expect((el) => el.name === 'presence' && el.attrs.from === to, 400);
          got.push(shape(reply));
        } catch {
          got.push('(nothing)');
        }
      }
      assert.equal(got[0], got[1], `presence ${type}`);
    }
  });

  test("P17 no user listing: not in the host's items, no user search, no reading another user's roster", async () => {
    const items = await mallory.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
    for (const item of items.getChild('query', NS.discoItems)!.getChildren('item')) assert.ok(!item.attrs.jid!.includes('@'));
    // XEP-0133 user lists and XEP-0055 search are not there.
    for (const node of ['http://jabber.org/protocol/admin#get-registered-users-list', 'http://jabber.org/protocol/admin#get-online-users-list', 'all users', 'online users']) {
      const r = await mallory.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems, node })));
      assert.ok(!r.toString().includes('alice@'), node);
      assert.equal(r.attrs.type, 'error', node);
    }
    for (const type of ['get', 'set'] as const) {
      const search = await mallory.iq(x('iq', { type, to: 'localhost' }, x('query', { xmlns: 'jabber:iq:search' }, x('nick', {}, '*'))));
      assert.equal(errorCondition(search), 'service-unavailable');
    }
    const features = (await mallory.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoInfo })))).getChild('query', NS.discoInfo)!;
    assert.ok(!features.getChildren('feature').some((f) => f.attrs.var === 'jabber:iq:search'));
    // Another user's roster: refused, and the owner's roster is intact.
    const roster = await mallory.iq(x('iq', { type: 'get', to: 'alice@localhost' }, x('query', { xmlns: NS.roster })));
    assert.equal(roster.attrs.type, 'error');
    assert.ok(!roster.toString().includes('<item'));
    assert.equal((await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })))).attrs.type, 'result');
  });

  test('P21 a user who is not an admin reaches no admin command, no admin node and no user list', async () => {
    const cmdItems = await mallory.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems, node: COMMANDS })));
    const commands = cmdItems.attrs.type === 'result' ? cmdItems.getChild('query', NS.discoItems)!.getChildren('item') : [];
    assert.deepEqual(commands.map((c) => c.attrs.node).filter((n) => /admin|user|announce|shutdown|restart/i.test(n ?? '')), [], 'no admin commands for a non-admin');
    const hostItems = await mallory.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
    assert.ok(!hostItems.getChild('query', NS.discoItems)!.getChildren('item').some((i) => i.attrs.node !== undefined || /admin/i.test(i.attrs.jid ?? '')));
    // Executing an XEP-0133 command directly fails for a non-admin.
    for (const node of ['http://jabber.org/protocol/admin#get-registered-users-num', 'http://jabber.org/protocol/admin#get-online-users-list', 'http://jabber.org/protocol/admin#announce', 'http://jabber.org/protocol/admin#delete-user']) {
      const r = await mallory.iq(x('iq', { type: 'set', to: 'localhost' }, x('command', { xmlns: COMMANDS, node, action: 'execute' })));
      assert.equal(r.attrs.type, 'error', node);
      assert.ok(['forbidden', 'service-unavailable', 'item-not-found', 'not-allowed', 'feature-not-implemented'].includes(errorCondition(r) ?? ''), `${node}: ${r}`);
      assert.ok(!r.toString().includes('alice@'));
    }
  });

  test('P21 admins are the JIDs named in the configuration', () => {
    const config = parseConfig({ dataDir: ts.dir, admins: ['Admin@LocalHost', 'ops@example.org'] }, ts.dir);
    assert.equal(isAdmin(config, 'admin@localhost'), true);
    assert.equal(isAdmin(config, 'ADMIN@localhost/laptop'), true, 'any resource, case-insensitive');
    assert.equal(isAdmin(config, 'ops@example.org'), true);
    assert.equal(isAdmin(config, 'mallory@localhost'), false);
    assert.equal(isAdmin(config, 'localhost'), false);
    assert.equal(isAdmin(config, 'not a jid@@'), false);
    assert.equal(isAdmin(ts.config, 'admin@localhost'), true);
    assert.equal(isAdmin(ts.config, 'mallory@localhost'), false);
  });

  test("P21 an admin's read of audit data is itself logged, and a non-admin's is refused", async () => {
    const lines: string[] = [];
    const log = new Logger({ level: 'info', format: 'text', sink: (l) => lines.push(l) });
    const clock = new ManualClock(Date.UTC(2026, 4, 1, 8));
    const hooks = new HookBus();
    const events: AuditRead[] = [];
    hooks.on('audit/read', (e) => void events.push(e));
    const record = auditRead({ log, clock, hooks, config: ts.config }, { jid: 'admin@localhost/desk' }, 'transport connection log\n(irc.localhost, last 48 hours)');
    assert.deepEqual(record, { at: clock.now(), reader: 'xmpp:admin@localhost/desk', what: 'transport connection log (irc.localhost, last 48 hours)' });
    await delay(10);
    assert.deepEqual(events, [record]);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /audit: audit data read reader=xmpp:admin@localhost\/desk what="transport connection log \(irc\.localhost, last 48 hours\)" at=2026-05-01T08:00:00\.000Z$/);
    assert.throws(() => auditRead({ log, clock, config: ts.config }, { jid: 'mallory@localhost' }, 'failed logins'), /not an administrator/);
    assert.equal(lines.length, 1);
    // Command-line reads name the operating-system user.
    const os = auditRead({ log, clock }, osReader(), 'failed logins');
    assert.match(os.reader, /^os:.+/);
    assert.equal(lines.length, 2);
  });
});
