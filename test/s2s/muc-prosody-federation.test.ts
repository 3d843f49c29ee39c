/**
 * Multi-user chat across servers (issue #17, XEP-0045 with P18): users of Debian's Prosody join a
 * room on Gatehouse's conference.gatehouse.test over server-to-server links, talk with local users,
 * and see the right presences: their own with 110, the others' without real JIDs in a
 * semi-anonymous room, while the moderator sees theirs; a private message crosses the link through
 * the room; leaving is seen by everyone.
 *
 * The link is authenticated with certificates from a test CA (SASL EXTERNAL, Prosody with
 * s2s_secure_auth); Prosody reaches gatehouse.test and conference.gatehouse.test through the test
 * routes plugin (test/helpers/prosody.ts). With GATEHOUSE_MUC_TARGET=prosody the room's server is
 * a second Prosody with its MUC component, which shows that the check itself is right.
 */
import { describe, test, before, beforeEach, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { createTestCa, type TestCa } from '../helpers/test-ca.js';
import { startProsody, type Prosody } from '../helpers/prosody.js';
import { reservedPort } from '../helpers/ports.js';
import { skipWithout } from '../helpers/requirements.js';
import { MUC, mucItem, mucTargetKind, statusCodes } from '../helpers/muc-target.js';
import { allModules } from '../../server/modules/index.js';
import { createS2sModule } from '../../server/modules/s2s.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const G = 'gatehouse.test';
const GMUC = `conference.${G}`;
const P = 'prosody.test';
const ROOM = `forest@${GMUC}`;

interface RoomHost {
  login(name: string): Promise<TestClient>;
  log(): string;
  stop(): Promise<void>;
}

/** The server of the room: Gatehouse, or (to check the check) a Prosody with its MUC component. */
async function startRoomHost(ca: TestCa, remote: { s2sPort: number }, s2sPort: number): Promise<RoomHost> {
  const cert = ca.issue(G);
  const users: [string, string][] = [
    ['alice', 'pw-alice'],
    ['bob', 'pw-bob'],
  ];
  if (mucTargetKind() === 'prosody') {
    const host = await startProsody({
      domain: G,
      cert,
      caFile: ca.caFile,
      secureAuth: true,
      s2sPort,
      routes: { [P]: remote.s2sPort },
      users,
      components: [{ domain: GMUC, module: 'muc', options: { restrict_room_creation: false } }],
    });
    const clients: TestClient[] = [];
    return {
      async login(name) {
        const c = await TestClient.connect({ port: host.c2sPort, domain: G });
        await c.login(name, `pw-${name}`, { mechanism: 'SCRAM-SHA-1', resource: 'home' });
        clients.push(c);
        return c;
      },
      log: () => host.log().split('\n').filter((l) => /s2s|muc|conference|error|warn/i.test(l)).slice(-60).join('\n'),
      async stop() {
        for (const c of clients) c.destroy();
        await host.stop();
      },
    };
  }
  const g: TestServer = await startTestServer({
    modules: [...allModules().filter((m) => m.name !== 's2s'), createS2sModule({ caFile: ca.caFile })],
    logLevel: 'info',
    config: {
      hosts: [{ domain: G, registration: 'open' }],
      listen: { s2s: [{ host: '127.0.0.1', port: s2sPort }] },
      tls: { cert: cert.cert, key: cert.key },
      s2s: { requireValidCertificates: true },
    },
  });
  g.config.s2s.static[P] = { host: '127.0.0.1', port: remote.s2sPort };
  for (const [name, password] of users) {
    const c = await g.client({ domain: G });
    assert.equal((await c.register(name, password)).attrs.type, 'result');
    c.destroy();
  }
  return {
    async login(name) {
      const c = await g.client({ domain: G });
      await c.login(name, `pw-${name}`, { resource: 'home' });
      return c;
    },
    log: () => g.logLines.filter((l) => /s2s|muc/i.test(l)).slice(-60).join('\n'),
    stop: () => g.stop(),
  };
}

const presenceFrom = (from: string, type?: string) => (el: Element) => el.name === 'presence' && el.attrs.from === from && el.attrs.type === type;
const groupchat = (from: string, body: string) => (el: Element) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from === from && el.getChildText('body') === body;

async function join(c: TestClient, nick: string): Promise<Element> {
  const self = c.expect((el) => el.name === 'presence' && (el.attrs.from ?? '').startsWith(`${ROOM}/`) && (el.attrs.type === 'error' || (el.attrs.type === undefined && statusCodes(el).includes(110))), 20_000);
  c.send(x('presence', { to: `${ROOM}/${nick}` }, x('x', { xmlns: MUC.base })));
  const got = await self;
  assert.notEqual(got.attrs.type, 'error', `${c.jid} joining ${ROOM}: ${got}`);
  return got;
}

describe('a Gatehouse room with users from Prosody (XEP-0045 over s2s, P18)', { skip: skipWithout('prosody') }, () => {
  let ca: TestCa;
  let remote: Prosody;
  let host: RoomHost;
  let alice: TestClient;
  let bob: TestClient;
  let pat: TestClient;
  let quinn: TestClient;
  let missing: string | null = null;

  before(async () => {
    ca = createTestCa();
    const hostS2s = await reservedPort();
    remote = await startProsody({
      domain: P,
      cert: ca.issue(P),
      caFile: ca.caFile,
      secureAuth: true,
      // Both the host and its MUC service are reached at the room host's s2s port: Gatehouse's takes
      // direct TLS (XEP-0368) as in test/s2s/prosody.test.ts, Prosody's STARTTLS.
      ...(mucTargetKind() === 'prosody' ? { routes: { [G]: hostS2s, [GMUC]: hostS2s } } : { directTlsRoutes: { [G]: hostS2s, [GMUC]: hostS2s } }),
      users: [
        ['pat', 'pw-pat'],
        ['quinn', 'pw-quinn'],
      ],
    });
    host = await startRoomHost(ca, remote, hostS2s);
    alice = await host.login('alice');
    bob = await host.login('bob');
    pat = await TestClient.connect({ port: remote.c2sPort, domain: P });
    await pat.login('pat', 'pw-pat', { mechanism: 'SCRAM-SHA-1', resource: 'phone' });
    quinn = await TestClient.connect({ port: remote.c2sPort, domain: P });
    await quinn.login('quinn', 'pw-quinn', { mechanism: 'SCRAM-SHA-1', resource: 'laptop' });
    for (const c of [alice, bob, pat, quinn]) c.send(x('presence'));
    const info = await alice.iq(x('iq', { type: 'get', to: GMUC }, x('query', { xmlns: NS.discoInfo })));
    if (info.attrs.type !== 'result' || !info.getChild('query', NS.discoInfo)?.getChildren('feature').some((f) => f.attrs.var === MUC.base)) {
      missing = `no multi-user chat service at ${GMUC} (issue #17): disco#info answered ${info.toString().slice(0, 400)}`;
    }
  });
  beforeEach(() => {
    if (missing) throw new Error(missing);
  });
  after(async () => {
    pat?.destroy();
    quinn?.destroy();
    await host?.stop();
    await remote?.stop();
    ca?.remove();
  });

  const withLogs = (fn: () => Promise<void>) => async () => {
    try {
      await fn();
    } catch (err) {
      const prosodyLog = remote.log().split('\n').filter((l) => /s2s|muc|conference|error|warn/i.test(l)).slice(-40).join('\n');
      throw new Error(`${err instanceof Error ? err.stack : String(err)}\n--- remote prosody ---\n${prosodyLog}\n--- room host ---\n${host.log()}`);
    }
  };

  test(
    'remote users join a semi-anonymous room: their own presence with 110, the others\' without real JIDs; the moderator sees their real JIDs',
    withLogs(async () => {
      const created = await join(alice, 'Titania');
      assert.deepEqual(statusCodes(created), [110, 201]);
      // Semi-anonymous by configuration, not by the server's default.
      const semiAnonymous = x(
        'x',
        { xmlns: 'jabber:x:data', type: 'submit' },
        x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, MUC.roomconfig)),
        x('field', { var: 'muc#roomconfig_whois' }, x('value', {}, 'moderators')),
      );
      const unlocked = await alice.iq(x('iq', { type: 'set', to: ROOM }, x('query', { xmlns: MUC.owner }, semiAnonymous)));
      assert.equal(unlocked.attrs.type, 'result', String(unlocked));
      await join(bob, 'Bottom');

      const patAtAlice = alice.expect(presenceFrom(`${ROOM}/Pat`), 20_000);
      const patAtBob = bob.expect(presenceFrom(`${ROOM}/Pat`), 20_000);
      const own = await join(pat, 'Pat');
      assert.deepEqual([own.attrs.from, statusCodes(own), mucItem(own)?.role], [`${ROOM}/Pat`, [110], 'participant']);
      // Before the own presence, the occupants' presences; none shows a real JID to a participant.
      for (const nick of ['Titania', 'Bottom']) {
        const seen = pat.received.find(presenceFrom(`${ROOM}/${nick}`)) ?? (await pat.expect(presenceFrom(`${ROOM}/${nick}`)));
        assert.equal(mucItem(seen)?.jid, undefined, `Pat was shown ${nick}'s real JID: ${seen}`);
      }
      assert.equal(mucItem(await patAtAlice)?.jid, pat.jid, 'the moderator (owner) sees the remote real JID');
      assert.equal(mucItem(await patAtBob)?.jid, undefined, 'a participant does not');

      await join(quinn, 'Quinn');
      const quinnAtPat = await pat.expect(presenceFrom(`${ROOM}/Quinn`), 20_000);
      assert.equal(mucItem(quinnAtPat)?.jid, undefined);
    }),
  );

  test(
    'messages both ways across the link, from the occupant JIDs; a private message from a local user reaches the remote one through the room',
    withLogs(async () => {
      const atPat = pat.expect(groupchat(`${ROOM}/Titania`, 'Ill met by moonlight'), 20_000);
      const atQuinn = quinn.expect(groupchat(`${ROOM}/Titania`, 'Ill met by moonlight'), 20_000);
      alice.send(x('message', { to: ROOM, type: 'groupchat', id: 'moon-1' }, x('body', {}, 'Ill met by moonlight')));
      await atPat;
      await atQuinn;

      const atAlice = alice.expect(groupchat(`${ROOM}/Pat`, 'What, jealous Oberon?'), 20_000);
      const atBob = bob.expect(groupchat(`${ROOM}/Pat`, 'What, jealous Oberon?'), 20_000);
      const reflected = pat.expect(groupchat(`${ROOM}/Pat`, 'What, jealous Oberon?'), 20_000);
      pat.send(x('message', { to: ROOM, type: 'groupchat', id: 'jealous-1' }, x('body', {}, 'What, jealous Oberon?')));
      await atAlice;
      await atBob;
      assert.equal((await reflected).attrs.id, 'jealous-1');

      const pm = pat.expect((el) => el.name === 'message' && el.getChildText('body') === 'a word aside', 20_000);
      bob.send(x('message', { to: `${ROOM}/Pat`, type: 'chat' }, x('body', {}, 'a word aside'), x('x', { xmlns: MUC.user })));
      const got = await pm;
      assert.equal(got.attrs.from, `${ROOM}/Bottom`);
      assert.ok(!got.toString().includes(`bob@${G}`), `the private message does not show Bob's real JID: ${got}`);
      assert.equal(quinn.received.some((el) => el.getChildText('body') === 'a word aside'), false);
    }),
  );

  test(
    'a remote user leaving is seen by local and remote occupants; a remote user is kicked by the local moderator (307)',
    withLogs(async () => {
      const leftAtAlice = alice.expect(presenceFrom(`${ROOM}/Quinn`, 'unavailable'), 20_000);
      const leftAtPat = pat.expect(presenceFrom(`${ROOM}/Quinn`, 'unavailable'), 20_000);
      const own = quinn.expect(presenceFrom(`${ROOM}/Quinn`, 'unavailable'), 20_000);
      quinn.send(x('presence', { to: `${ROOM}/Quinn`, type: 'unavailable' }));
      assert.deepEqual(statusCodes(await own), [110]);
      await leftAtAlice;
      await leftAtPat;

      const kicked = pat.expect(presenceFrom(`${ROOM}/Pat`, 'unavailable'), 20_000);
      const seen = bob.expect(presenceFrom(`${ROOM}/Pat`, 'unavailable'), 20_000);
      const ok = await alice.iq(x('iq', { type: 'set', to: ROOM }, x('query', { xmlns: MUC.admin }, x('item', { nick: 'Pat', role: 'none' }, x('reason', {}, 'Out, out')))));
      assert.equal(ok.attrs.type, 'result', String(ok));
      assert.deepEqual(statusCodes(await kicked), [110, 307]);
      assert.deepEqual(statusCodes(await seen), [307]);
    }),
  );
});
