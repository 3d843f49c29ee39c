/**
 * XEP-0114 external components, accept side, over real sockets: xmpp.js's @xmpp/component plays
 * the component, TestClient plays local users, and a raw socket checks the exact bytes.
 */
import { test, describe, before, after, afterEach } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import type { GatehouseModule } from '../../server/core/context.js';
import type { DeliveryFailure } from '../../server/core/router.js';
import { createRosterModule } from '../../server/modules/roster.js';
import { createPresenceModule } from '../../server/modules/presence.js';
import { createMessageModule } from '../../server/modules/message.js';
import { createComponentsModule } from '../../server/modules/components.js';
import { forComponentWire, verifyHandshake, handshakeDigest } from '../../server/streams/component.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { asTypeOrmStorage } from '../../storage/typeorm-storage.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const DOMAIN = 'gw.localhost';
const SECRET = 'component-secret-7f3a9c';
const OTHER = 'other.localhost';
const OTHER_SECRET = 'other-secret-51e2';

// ---- support ----

function modules(): GatehouseModule[] {
  const list = allModules();
  for (const m of [createRosterModule(), createPresenceModule(), createMessageModule(), createComponentsModule()]) if (!list.some((x) => x.name === m.name)) list.push(m);
  return list;
}

/* eslint-disable @typescript-eslint/no-explicit-any -- @xmpp/component ships no types */
type XmlEl = any;
type XmppComponent = any;

let xmppLib: { component: (o: Record<string, unknown>) => XmppComponent; xml: (...a: unknown[]) => XmlEl } | null = null;
async function lib(): Promise<NonNullable<typeof xmppLib>> {
  // The package has no type declarations (test/untyped-modules.d.ts).
  xmppLib ??= (await import('@xmpp/component')) as NonNullable<typeof xmppLib>;
  return xmppLib;
}

/** Everything a test opened, closed after it even when it fails (so one failure does not cascade). */
const opened: { close(): void | Promise<void> }[] = [];

/** An @xmpp/component instance with a stanza inbox. */
class Component {
  readonly inbox: XmlEl[] = [];
  readonly errors: Error[] = [];
  private waiters: { match: (s: XmlEl) => boolean; resolve: (s: XmlEl) => void }[] = [];

  constructor(readonly xmpp: XmppComponent) {
    xmpp.on('error', (err: Error) => this.errors.push(err));
    xmpp.on('stanza', (s: XmlEl) => {
      const i = this.waiters.findIndex((w) => w.match(s));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(s);
      else this.inbox.push(s);
    });
  }

  static async create(port: number, domain = DOMAIN, password = SECRET): Promise<Component> {
    const { component } = await lib();
    const c = new Component(component({ service: `xmpp://127.0.0.1:${port}`, domain, password }));
    opened.push({ close: () => c.stop() });
    // Tests decide when to connect again.
    c.xmpp.reconnect.stop();
    return c;
  }

  /** Connects and completes the handshake; resolves with the JID it is online as. */
  async start(): Promise<string> {
    const address = await this.xmpp.start();
    return String(address);
  }

  /** Starts and expects the server to refuse: resolves with the stream error condition. */
  async refused(): Promise<string> {
    try {
      await this.xmpp.start();
    } catch (err) {
      await this.stop();
      return (err as { condition?: string }).condition ?? String(err);
    }
    await this.stop();
    throw new Error('the server accepted the component');
  }

  expect(match: (s: XmlEl) => boolean, timeoutMs = 5000): Promise<XmlEl> {
    const i = this.inbox.findIndex(match);
    if (i >= 0) return Promise.resolve(this.inbox.splice(i, 1)[0]);
    return new Promise((resolve, reject) => {
      const waiter = { match, resolve: (s: XmlEl) => (clearTimeout(timer), resolve(s)) };
      const timer = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(waiter), 1);
        reject(new Error(`component: timed out; inbox: ${this.inbox.map(String).join(' ').slice(0, 1000)}`));
      }, timeoutMs);
      this.waiters.push(waiter);
    });
  }

  /** Waits for the server to end the stream; resolves with the stream error condition. */
  async streamError(timeoutMs = 5000): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const err = this.errors.find((e) => e.name === 'StreamError') as { condition?: string } | undefined;
      if (err) {
        await this.stop();
        return err.condition ?? 'unknown';
      }
      await delay(20);
    }
    throw new Error(`no stream error; errors: ${this.errors.map(String).join('; ')}`);
  }

  send(el: XmlEl): Promise<void> {
    return this.xmpp.send(el);
  }

  async stop(): Promise<void> {
    this.xmpp.reconnect.stop();
    await this.xmpp.stop().catch(() => {});
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

async function until(cond: () => boolean, what: string, timeoutMs = 3000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await delay(10);
  }
}

const HEADER = (to: string = DOMAIN, ns: string = NS.component) => `<?xml version='1.0'?><stream:stream xmlns='${ns}' xmlns:stream='${NS.stream}' to='${to}'>`;

/** A component written by hand: everything the server says, as text. */
class RawPeer {
  out = '';
  closed = false;
  private constructor(readonly socket: Socket) {
    socket.on('data', (d) => (this.out += d.toString('utf8')));
    socket.on('close', () => (this.closed = true));
    socket.on('error', () => {});
  }
  static async connect(port: number): Promise<RawPeer> {
    const socket = connect({ host: '127.0.0.1', port });
    await new Promise<void>((r, j) => socket.once('connect', r).once('error', j));
    opened.push({ close: () => void socket.destroy() });
    return new RawPeer(socket);
  }
  write(s: string): void {
    this.socket.write(s);
  }
  /** Waits until the output matches, and returns the match. */
  async waitFor(re: RegExp, timeoutMs = 5000): Promise<RegExpExecArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const m = re.exec(this.out);
      if (m) return m;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${re}; got: ${this.out.slice(0, 1000)}`);
      await delay(10);
    }
  }
  async waitClosed(timeoutMs = 5000): Promise<void> {
    await until(() => this.closed, 'the server to close the connection', timeoutMs);
  }
  /** Opens the stream and completes the handshake; returns the stream id. */
  async handshake(domain = DOMAIN, secret = SECRET): Promise<string> {
    this.write(HEADER(domain));
    const [, id] = await this.waitFor(/ id='([^']+)'/);
    this.write(`<handshake>${createHash('sha1').update(id + secret).digest('hex')}</handshake>`);
    await this.waitFor(/<handshake\/>/);
    return id!;
  }
  destroy(): void {
    this.socket.destroy();
  }
}

function streamErrorOf(output: string): string | null {
  const m = /<stream:error><([a-z-]+) xmlns='urn:ietf:params:xml:ns:xmpp-streams'/.exec(output);
  return m ? m[1]! : null;
}

// ---- unit ----

describe('component wire helpers', () => {
  test('the handshake is hex SHA-1 of stream id and secret, checked in constant time', () => {
    const hex = createHash('sha1').update('abc123' + 's3cret').digest('hex');
    assert.equal(handshakeDigest('abc123', 's3cret').toString('hex'), hex);
    assert.equal(verifyHandshake('abc123', 's3cret', hex), true);
    assert.equal(verifyHandshake('abc123', 's3cret', ` ${hex.toUpperCase()}\n`), true);
    assert.equal(verifyHandshake('abc123', 'wrong', hex), false);
    assert.equal(verifyHandshake('abc124', 's3cret', hex), false);
    assert.equal(verifyHandshake('abc123', 's3cret', hex.slice(0, 39)), false);
    assert.equal(verifyHandshake('abc123', 's3cret', ''), false);
    assert.equal(verifyHandshake('abc123', 's3cret', '0'.repeat(40)), false);
    assert.equal(verifyHandshake('abc123', 's3cret', hex + '00'), false);
  });

  test('stanzas for a component lose jabber:client on the stanza and its direct children only', () => {
    const forwarded = x('message', { xmlns: NS.client, from: 'a@localhost/r', to: 'b@localhost' }, x('body', {}, 'inner'));
    const stanza = x(
      'message',
      { xmlns: NS.client, from: 'alice@localhost/r', to: 'x@gw.localhost', type: 'error' },
      x('body', { xmlns: NS.client }, 'hi'),
      x('error', { type: 'cancel' }, x('service-unavailable', { xmlns: NS.stanzas })),
      x('sent', { xmlns: 'urn:xmpp:carbons:2' }, x('forwarded', { xmlns: 'urn:xmpp:forward:0' }, forwarded)),
    );
    const before = stanza.toString();
    const wire = forComponentWire(stanza).toString();
    assert.equal(
      wire,
      `<message from="alice@localhost/r" to="x@gw.localhost" type="error"><body>hi</body><error type="cancel"><service-unavailable xmlns="${NS.stanzas}"/></error>` +
        `<sent xmlns="urn:xmpp:carbons:2"><forwarded xmlns="urn:xmpp:forward:0"><message xmlns="jabber:client" from="a@localhost/r" to="b@localhost"><body>inner</body></message></forwarded></sent></message>`,
    );
    // The routed element itself is untouched (other recipients may get it too).
    assert.equal(stanza.toString(), before);
    assert.equal(stanza.getChild('body')!.parent, stanza);
    // Nothing to change: the very same element, no copy.
    const plain = x('presence', { from: 'localhost', to: 'gw.localhost' });
    assert.equal(forComponentWire(plain), plain);
  });
});

// ---- end to end ----

describe('XEP-0114 components', () => {
  let ts: TestServer;
  let n = 0;
  /** Component links up right now, from the server's events. */
  let live = 0;
  const users: TestClient[] = [];
  const user = async (): Promise<TestClient> => {
    const c = await ts.user(`user${++n}`);
    users.push(c);
    return c;
  };

  before(async () => {
    ts = await startTestServer({
      modules: modules(),
      config: {
        components: [
          { domain: DOMAIN, secret: SECRET },
          { domain: OTHER, secret: OTHER_SECRET },
        ],
        listen: { components: [{ host: '127.0.0.1', port: 0 }] },
        c2s: { authTimeout: '2s' },
      },
    });
    assert.ok(ts.componentPort > 0);
    ts.server.ctx.hooks.on('component/connected', () => void live++);
    ts.server.ctx.hooks.on('component/disconnected', () => void live--);
  });
  after(() => ts.stop());
  afterEach(async () => {
    for (const o of opened.splice(0)) await o.close();
    for (const u of users.splice(0)) u.destroy();
    await until(() => live === 0, 'every component link to be down');
  });

  test('the handshake bytes on the wire, and stanzas both ways in the right namespaces', async () => {
    const raw = await RawPeer.connect(ts.componentPort);
    raw.write(HEADER());
    const [header] = await raw.waitFor(/^<\?xml version='1\.0'\?><stream:stream [^>]*>/);
    assert.match(
      header,
      new RegExp(`^<\\?xml version='1\\.0'\\?><stream:stream xmlns='jabber:component:accept' xmlns:stream='http://etherx\\.jabber\\.org/streams' id='([0-9a-f]{32})' from='gw\\.localhost'>$`),
    );
    const streamId = /id='([0-9a-f]+)'/.exec(header!)![1]!;
    // No stream features: the next thing the server says is the handshake reply.
    raw.write(`<handshake>${createHash('sha1').update(streamId + SECRET).digest('hex')}</handshake>`);
    await raw.waitFor(/<handshake\/>/);
    assert.equal(raw.out, `${header}<handshake/>`);

    // A user's message arrives without xmlns='jabber:client': in the stream's default namespace.
    const alice = await user();
    raw.out = '';
    alice.send(x('message', { to: 'someone@gw.localhost', type: 'chat', id: 'm1' }, x('body', {}, 'hello component')));
    const [msg] = await raw.waitFor(/<message[^>]*>.*?<\/message>/);
    assert.match(msg!, /^<message [^>]*>/);
    const open = /^<message [^>]*>/.exec(msg!)![0];
    assert.doesNotMatch(open, /xmlns=/);
    assert.match(open, new RegExp(`from="${alice.jid.replace(/[.]/g, '\\.')}"`));
    assert.match(msg!, /<body>hello component<\/body>/);

    // The component's own namespace (the stream default) comes out as jabber:client.
    raw.write(`<message from='someone@gw.localhost/irc' to='${alice.jid}' type='chat' id='r1'><body>hello user</body></message>`);
    const got = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'r1');
    assert.equal(got.attrs.xmlns, NS.client);
    assert.equal(got.attrs.from, 'someone@gw.localhost/irc');
    assert.equal(got.getChild('body')!.xmlns, NS.client);
    assert.equal(got.getChildText('body'), 'hello user');

    // Whitespace keepalives are fine; the stream closes cleanly.
    raw.write(' \n ');
    raw.write('</stream:stream>');
    await raw.waitClosed();
    assert.match(raw.out, /<\/stream:stream>$/);
    await alice.close();
  });

  test('stanzas sent just before the closing tag are still delivered', async () => {
    const alice = await user();
    const raw = await RawPeer.connect(ts.componentPort);
    await raw.handshake();
    // An unhandled IQ makes the stanza queue wait; the goodbye and the close must not overtake it.
    raw.write(
      `<iq from='gw.localhost' to='localhost' type='get' id='q1'><query xmlns='urn:example:unknown'/></iq>` +
        `<message from='gw.localhost' to='${alice.jid}' type='headline' id='bye'><body>going away</body></message></stream:stream>`,
    );
    const bye = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'bye');
    assert.equal(bye.getChildText('body'), 'going away');
    await raw.waitClosed();
  });

  test('@xmpp/component completes the handshake and comes online', async () => {
    const c = await Component.create(ts.componentPort);
    assert.equal(await c.start(), DOMAIN);
    assert.equal(ts.server.ctx.router.componentDomains().includes(DOMAIN), true);
    await c.stop();
  });

  test('P7 a wrong secret is not-authorized, recorded as a failed authentication, and never logged', async () => {
    const failures: { ip: string; host: string; username: string | null }[] = [];
    const off = ts.server.ctx.hooks.on('auth/failed', (e) => void failures.push(e));
    try {
      const c = await Component.create(ts.componentPort, DOMAIN, 'not-the-secret');
      assert.equal(await c.refused(), 'not-authorized');
      await until(() => failures.length === 1, 'auth/failed');
      assert.equal(failures[0]!.host, DOMAIN);
      assert.equal(failures[0]!.ip, '127.0.0.1');
      assert.equal(failures[0]!.username, null);
      // The right component can still connect.
      const ok = await Component.create(ts.componentPort);
      await ok.start();
      await ok.stop();
      assert.equal(ts.logLines.some((l) => l.includes(SECRET) || l.includes('not-the-secret')), false);
    } finally {
      off();
    }
  });

  test('an unknown component domain is host-unknown, before any handshake', async () => {
    const c = await Component.create(ts.componentPort, 'nobody.localhost', 'whatever');
    assert.equal(await c.refused(), 'host-unknown');
    // Raw: a missing 'to' and a local host are unknown components too; the wrong namespace is invalid-namespace.
    for (const [header, condition] of [
      [`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}'>`, 'host-unknown'],
      [HEADER('localhost'), 'host-unknown'],
      [HEADER(DOMAIN, NS.client), 'invalid-namespace'],
    ] as const) {
      const raw = await RawPeer.connect(ts.componentPort);
      raw.write(header);
      await raw.waitClosed();
      assert.equal(streamErrorOf(raw.out), condition, raw.out);
      assert.match(raw.out, /^<\?xml version='1\.0'\?><stream:stream xmlns='jabber:component:accept'/);
    }
  });

  test('a second connection for a connected domain gets conflict; the first keeps working', async () => {
    const first = await Component.create(ts.componentPort);
    await first.start();
    const second = await Component.create(ts.componentPort);
    assert.equal(await second.refused(), 'conflict');
    const alice = await user();
    alice.send(x('message', { to: 'bot@gw.localhost', type: 'chat', id: 'still-there' }, x('body', {}, 'ping')));
    const got = await first.expect((s) => s.is('message') && s.attrs.id === 'still-there');
    assert.equal(got.attrs.from, alice.jid);
    await first.stop();
    // Once the first is gone, a new connection is accepted.
    const third = await Component.create(ts.componentPort);
    await third.start();
    await third.stop();
    await alice.close();
  });

  test('messages both ways: the component sees the full JID of the user, the user a jabber:client stanza', async () => {
    const { xml } = await lib();
    const c = await Component.create(ts.componentPort);
    await c.start();
    const alice = await user();
    alice.send(x('message', { to: 'someone@gw.localhost', type: 'chat', id: 'to-gw' }, x('body', {}, 'hi someone')));
    const got = await c.expect((s) => s.is('message') && s.attrs.id === 'to-gw');
    assert.equal(got.attrs.from, alice.jid);
    assert.equal(got.attrs.to, 'someone@gw.localhost');
    assert.ok(got.attrs.xmlns === undefined || got.attrs.xmlns === NS.component, `xmlns ${got.attrs.xmlns}`);
    assert.equal(got.getChildText('body'), 'hi someone');

    await c.send(xml('message', { from: 'someone@gw.localhost', to: alice.jid, type: 'chat', id: 'from-gw' }, xml('body', {}, 'hi alice')));
    const reply = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'from-gw');
    assert.equal(reply.attrs.xmlns, NS.client);
    assert.equal(reply.attrs.from, 'someone@gw.localhost');
    assert.equal(reply.getChildText('body'), 'hi alice');
    await c.stop();
    await alice.close();
  });

  test('subdomains of the component domain are routed to it', async () => {
    const { xml } = await lib();
    const c = await Component.create(ts.componentPort);
    await c.start();
    const alice = await user();
    alice.send(x('message', { to: 'room@conf.gw.localhost', type: 'groupchat', id: 'sub' }, x('body', {}, 'in the room')));
    const got = await c.expect((s) => s.is('message') && s.attrs.id === 'sub');
    assert.equal(got.attrs.to, 'room@conf.gw.localhost');
    // And the component may speak from its subdomains.
    await c.send(xml('message', { from: 'room@conf.gw.localhost/bob', to: alice.jid, type: 'groupchat', id: 'sub-back' }, xml('body', {}, 'hi')));
    const back = await alice.expect((el) => el.name === 'message' && el.attrs.id === 'sub-back');
    assert.equal(back.attrs.from, 'room@conf.gw.localhost/bob');
    await c.stop();
    await alice.close();
  });

  test('a component sending from another domain is invalid-from', async () => {
    const { xml } = await lib();
    const c = await Component.create(ts.componentPort);
    await c.start();
    await c.send(xml('message', { from: 'x@other.domain', to: 'localhost', id: 'forged' }, xml('body', {}, 'x')));
    assert.equal(await c.streamError(), 'invalid-from');

    // Not a local user, not another configured component, not a host that is a sibling.
    for (const from of ['alice@localhost', `x@${OTHER}`, 'localhost', 'gw.localhost.evil']) {
      const raw = await RawPeer.connect(ts.componentPort);
      await raw.handshake();
      raw.write(`<message from='${from}' to='localhost' id='f'><body>x</body></message>`);
      await raw.waitClosed();
      assert.equal(streamErrorOf(raw.out), 'invalid-from', from);
    }
    // Without 'from' too.
    const raw = await RawPeer.connect(ts.componentPort);
    await raw.handshake();
    raw.write(`<message to='localhost' id='f'><body>x</body></message>`);
    await raw.waitClosed();
    assert.equal(streamErrorOf(raw.out), 'invalid-from');
  });

  test("stanzas without a valid 'to', unknown elements and pre-handshake stanzas are stream errors", async () => {
    const cases: [string, string, boolean][] = [
      [`<message from='a@gw.localhost' id='n'><body>x</body></message>`, 'improper-addressing', true],
      [`<message from='a@gw.localhost' to='@@' id='n'/>`, 'improper-addressing', true],
      [`<foo xmlns='jabber:component:accept'/>`, 'unsupported-stanza-type', true],
      [`<message xmlns='urn:example' from='a@gw.localhost' to='localhost'/>`, 'unsupported-stanza-type', true],
      [`<message from='a@gw.localhost' to='localhost'/>`, 'not-authorized', false],
      [`<message from='a@gw.localhost' to='localhost'><!-- hi --></message>`, 'restricted-xml', true],
      [`<message from='a@gw.localhost' to='localhost'><a></b></message>`, 'not-well-formed', true],
    ];
    for (const [input, condition, afterHandshake] of cases) {
      const raw = await RawPeer.connect(ts.componentPort);
      if (afterHandshake) await raw.handshake();
      else raw.write(HEADER());
      raw.write(input);
      await raw.waitClosed();
      assert.equal(streamErrorOf(raw.out), condition, input);
    }
    // Before the handshake the pre-auth size limit applies.
    const raw = await RawPeer.connect(ts.componentPort);
    raw.write(HEADER());
    raw.write(`<handshake>${'a'.repeat(ts.config.c2s.maxStanzaBytesPreAuth + 10)}</handshake>`);
    await raw.waitClosed();
    assert.equal(streamErrorOf(raw.out), 'policy-violation');
  });

  test('an IQ without an id is answered bad-request and the link stays up', async () => {
    const raw = await RawPeer.connect(ts.componentPort);
    await raw.handshake();
    raw.write(`<iq type='get' from='gw.localhost' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    await raw.waitFor(/<iq [^>]*type="error"[^>]*>.*?<bad-request/);
    raw.write(`<iq type='get' id='p1' from='gw.localhost' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>`);
    const [pong] = await raw.waitFor(/<iq [^>]*id="p1"[^>]*\/>|<iq [^>]*id="p1"[^>]*>.*?<\/iq>/);
    assert.match(pong!, /type="result"/);
    assert.match(pong!, /to="gw\.localhost"/);
    assert.doesNotMatch(pong!, /xmlns="jabber:client"/);
    raw.write('</stream:stream>');
    await raw.waitClosed();
  });

  test('an unauthenticated component connection times out', async () => {
    const raw = await RawPeer.connect(ts.componentPort);
    raw.write(HEADER());
    await raw.waitClosed(6000);
    assert.equal(streamErrorOf(raw.out), 'connection-timeout');
  });

  test('the server disco#items lists the components; disco#info to a component is answered by it', async () => {
    const alice = await user();
    const items = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
    assert.equal(items.attrs.type, 'result');
    const jids = items.getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.jid);
    assert.deepEqual(jids.filter((j) => j === DOMAIN || j === OTHER).sort(), [DOMAIN, OTHER].sort());

    const { xml } = await lib();
    const c = await Component.create(ts.componentPort);
    c.xmpp.iqCallee.get(NS.discoInfo, 'query', () =>
      xml('query', { xmlns: NS.discoInfo }, xml('identity', { category: 'gateway', type: 'irc', name: 'IRC' }), xml('feature', { var: NS.discoInfo })),
    );
    await c.start();
    const info = await alice.iq(x('iq', { type: 'get', to: DOMAIN }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.attrs.type, 'result');
    assert.equal(info.attrs.from, DOMAIN);
    assert.equal(info.getChild('query', NS.discoInfo)!.getChild('identity')!.attrs.type, 'irc');
    await c.stop();
    await alice.close();
  });

  test('P8 while the component is down a message to it gets service-unavailable and a delivery failure without content', async () => {
    const failures: DeliveryFailure[] = [];
    const off = ts.server.ctx.hooks.on('delivery/failed', (e) => void failures.push(e));
    try {
      const alice = await user();
      const bareAlice = alice.jid.split('/')[0]!;
      // Never connected (OTHER), and gone after a disconnect (DOMAIN).
      const c = await Component.create(ts.componentPort);
      await c.start();
      await c.stop();
      for (const to of [`bot@${OTHER}`, 'bot@gw.localhost', 'room@conf.gw.localhost']) {
        alice.send(x('message', { to, type: 'chat', id: `down-${to}` }, x('body', {}, 'secret body text')));
        const err = await alice.expect((el) => el.name === 'message' && el.attrs.id === `down-${to}`);
        assert.equal(err.attrs.type, 'error');
        assert.equal(errorCondition(err), 'service-unavailable');
        assert.equal(err.attrs.from, to);
      }
      await until(() => failures.length === 3, 'three delivery/failed events');
      for (const f of failures) {
        assert.deepEqual(Object.keys(f).sort(), ['at', 'condition', 'from', 'kind', 'to']);
        assert.equal(f.from, bareAlice);
        assert.equal(f.kind, 'message');
        assert.equal(f.condition, 'service-unavailable');
        assert.equal(JSON.stringify(f).includes('secret body text'), false);
      }
      assert.deepEqual(failures.map((f) => f.to), [`bot@${OTHER}`, 'bot@gw.localhost', 'room@conf.gw.localhost']);

      // What an admin finds: the stored delivery-failure rows, with no column for content and no body.
      const storage = asTypeOrmStorage(ts.server.ctx.storage);
      const stored = () => storage.rawQuery('SELECT * FROM delivery_failures WHERE sender = ? ORDER BY id', [bareAlice]);
      let rows = await stored();
      for (const end = Date.now() + 3000; rows.length < 3 && Date.now() < end; rows = await stored()) await delay(10);
      assert.deepEqual(
        rows.map((r) => [r.sender, r.recipient, r.stanza_kind, r.error_condition, Number(r.at)]),
        failures.map((f) => [bareAlice, f.to, 'message', 'service-unavailable', f.at.getTime()]),
      );
      for (const r of rows) {
        assert.deepEqual(Object.keys(r).sort(), ['at', 'error_condition', 'id', 'recipient', 'sender', 'stanza_kind']);
        assert.equal(JSON.stringify(r).includes('secret body text'), false);
      }
      await alice.close();
    } finally {
      off();
    }
  });

  test('presence to and from the component', async () => {
    const { xml } = await lib();
    const c = await Component.create(ts.componentPort);
    await c.start();
    const alice = await user();
    alice.send(x('presence'));
    await alice.expect((el) => el.name === 'presence' && el.attrs.from === alice.jid);
    // Directed presence to a contact behind the component.
    alice.send(x('presence', { to: 'someone@gw.localhost' }, x('show', {}, 'away')));
    const p = await c.expect((s) => s.is('presence') && s.attrs.to === 'someone@gw.localhost');
    assert.equal(p.attrs.from, alice.jid);
    assert.equal(p.getChildText('show'), 'away');
    // The contact's presence back to the user.
    await c.send(xml('presence', { from: 'someone@gw.localhost/irc', to: alice.jid }, xml('status', {}, 'on IRC')));
    const back = await alice.expect((el) => el.name === 'presence' && el.attrs.from === 'someone@gw.localhost/irc');
    assert.equal(back.attrs.xmlns, NS.client);
    assert.equal(back.getChildText('status'), 'on IRC');
    await c.stop();
    await alice.close();
  });

  test('the link is cleared when the component disconnects, and server shutdown closes component streams', async () => {
    const events: string[] = [];
    const offUp = ts.server.ctx.hooks.on('component/connected', (e) => void events.push(`up ${e.domain}`));
    const offDown = ts.server.ctx.hooks.on('component/disconnected', (e) => void events.push(`down ${e.domain}`));
    try {
      const raw = await RawPeer.connect(ts.componentPort);
      await raw.handshake(OTHER, OTHER_SECRET);
      raw.destroy();
      await until(() => events.length === 2, 'connected and disconnected events');
      assert.deepEqual(events, [`up ${OTHER}`, `down ${OTHER}`]);
    } finally {
      offUp();
      offDown();
    }
    // A separate server, so shutting it down does not disturb the other tests.
    const other = await startTestServer({
      modules: modules(),
      config: { components: [{ domain: DOMAIN, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] } },
    });
    const raw = await RawPeer.connect(other.componentPort);
    await raw.handshake();
    await other.stop();
    await raw.waitClosed();
    assert.equal(streamErrorOf(raw.out), 'system-shutdown');
  });

  test('an idle link gets whitespace keepalives', async () => {
    const other = await startTestServer({
      modules: modules(),
      config: { components: [{ domain: DOMAIN, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] }, c2s: { idlePingAfter: '1s' } },
    });
    try {
      const raw = await RawPeer.connect(other.componentPort);
      await raw.handshake();
      await raw.waitFor(/<handshake\/> +$/, 4000);
      assert.equal(raw.closed, false);
    } finally {
      await other.stop();
    }
  });

  test('no component listener is opened without configured components', async () => {
    const plain = await startTestServer({ config: { listen: { components: [{ host: '127.0.0.1', port: 0 }] } } });
    try {
      assert.equal(plain.componentPort, 0);
    } finally {
      await plain.stop();
    }
  });
});
