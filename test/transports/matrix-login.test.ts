/**
 * Logging in to Matrix as matrix.org users can today, end to end through Gatehouse: an XMPP
 * TestClient, the transport kit and the Matrix adapter against fake homeservers behind a fake
 * Matrix Authentication Service (test/fakes/matrix-oauth.ts).
 *
 * - Server discovery: the user names a server, the adapter reads its /.well-known/matrix/client
 *   (served by a separate HTTP server, as matrix.org → matrix-client.matrix.org); a bad
 *   well-known file is a clear registration error.
 * - OAuth 2.0 device authorization grant: the user gets a chat message with the link and code, the
 *   test approves as the user in a browser would, the registration completes and messages flow; a
 *   denied login is a clear error.
 * - Tokens: renewed before they expire (rotation; the vault holds the latest), renewed after a
 *   soft logout (401 M_UNKNOWN_TOKEN, soft_logout) without ending the session; a refused renewal
 *   ends the session with a clear presence error and audit rows (P10).
 * - P9: no access or refresh token in any log line or, in clear, in the database.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type Server } from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import type { Element } from '../../shared/xml/element.js';
import type { TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { createMatrixAdapter } from '../../transports/matrix/index.js';
import { LegacyAuthError, LegacyNetworkError } from '../../transports/kit/adapter.js';
import type { TransportConfig } from '../../transports/kit/config.js';
import type { RunningTransport } from '../../transports/kit/gateway.js';
import { escapeLocal } from '../../transports/kit/jid-escaping.js';
import { GW, availableUser, bareOf, errorOf, registerForm, startServer, subscribeBoth, until } from './kit-harness.js';
import { matrixTransport, type TransportFixture } from './transport-fixture.js';

/** A tiny web server for a server name's /.well-known/matrix/client (what matrix.org serves). */
async function wellKnownServer(answer: () => { status: number; body: string }): Promise<{ server: Server; name: string }> {
  const server = createServer((req, res) => {
    if (req.url !== '/.well-known/matrix/client') return void res.writeHead(404).end();
    const a = answer();
    res.writeHead(a.status, { 'Content-Type': 'application/json' }).end(a.body);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { server, name: `localhost:${(server.address() as { port: number }).port}` };
}

describe('Matrix login through Gatehouse: discovery, OAuth 2.0 device grant, token renewal', () => {
  let short: FakeHomeserver;
  let long: FakeHomeserver;
  let ts: TestServer;
  let matrix: TransportFixture;
  let transport: RunningTransport;
  let config: TransportConfig;
  let wk: { server: Server; name: string };
  let wkAnswer = () => ({ status: 200, body: '{}' });
  const logLines: string[] = [];
  const clients: TestClient[] = [];
  /** The direct chat of the first OAuth user (on `short`) with bob. */
  let danaDm = '';

  const isChatFromGw = (el: Element) => el.name === 'message' && el.attrs.from === GW && el.attrs.type === 'chat';

  async function xmppUser(name: string): Promise<TestClient> {
    const c = await availableUser(ts, name);
    clients.push(c);
    return c;
  }

  /** Registers without a password: the device grant; the test approves as `matrixId` in the "browser". */
  async function deviceRegister(c: TestClient, hs: FakeHomeserver, fields: Record<string, string>, matrixId: string): Promise<{ reply: Element; prompt: Element }> {
    const pending = registerForm(c, fields);
    const prompt = await c.expect(isChatFromGw, 10_000);
    const body = prompt.getChildText('body') ?? '';
    const code = /code ([A-Z]{4}-[A-Z]{4})/.exec(body)?.[1];
    assert.ok(code, `a code in: ${body}`);
    hs.oauth!.approve(code, matrixId);
    return { reply: await pending, prompt };
  }

  before(async () => {
    short = await FakeHomeserver.start({ oauth: { accessTokenLifetimeMs: 2500, intervalS: 1 } });
    long = await FakeHomeserver.start({ oauth: { accessTokenLifetimeMs: 3_600_000, intervalS: 1 } });
    wk = await wellKnownServer(() => wkAnswer());
    ts = await startServer();
    matrix = matrixTransport({ componentPort: ts.componentPort, logLines }, {
      admins: ['admin@localhost'],
      gracePeriod: '30s',
      network: { pollTimeout: 1, syncFailureTimeout: 5, retryInterval: 0.2, requestTimeout: 5, loginTimeout: 5, joinTimeout: 3 },
    });
    config = matrix.config;
    transport = await matrix.start();
  });

  after(async () => {
    for (const c of clients) await c.close().catch(() => undefined);
    await matrix?.stop();
    await ts?.stop();
    await short?.stop();
    await long?.stop();
    wk?.server.close();
  });

  test('a bad .well-known file is a clear registration error; nothing is stored', async () => {
    const c = await xmppUser('mx-wk-bad');
    const fields = { username: '@someone:matrix.test', homeserver: wk.name };
    wkAnswer = () => ({ status: 200, body: 'this is not json' });
    let reply = await registerForm(c, fields);
    assert.equal(reply.attrs.type, 'error');
    assert.match(String(reply), /homeserver lookup for localhost:\d+ failed: .*not a JSON object/);
    wkAnswer = () => ({ status: 200, body: JSON.stringify({ 'm.identity_server': {} }) });
    reply = await registerForm(c, fields);
    assert.match(String(reply), /has no m\.homeserver\.base_url/);
    // A base URL that is not a homeserver (the well-known server itself answers 404 to /versions).
    wkAnswer = () => ({ status: 200, body: JSON.stringify({ 'm.homeserver': { base_url: `http://${wk.name}` } }) });
    reply = await registerForm(c, fields);
    assert.match(String(reply), /names localhost:\d+ as its homeserver, but .*not a Matrix homeserver/);
    assert.equal(await transport.storage.transports.getRegistration('matrix', bareOf(c)), null);
  });

  test('P9 discovery through .well-known, then the device grant: the user gets a link and code, approves, and messages flow', async () => {
    const me = short.createUser('dana', { displayName: 'Dana' });
    const bob = short.createUser('bob');
    const dm = short.createRoom({ creator: bob, members: [me], direct: true });
    danaDm = dm;
    wkAnswer = () => ({ status: 200, body: JSON.stringify({ 'm.homeserver': { base_url: short.url } }) });
    const c = await xmppUser('mx-oauth-a');
    const { reply, prompt } = await deviceRegister(c, short, { username: me, homeserver: wk.name }, me);
    assert.equal(reply.attrs.type, 'result', String(reply));
    const text = prompt.getChildText('body')!;
    assert.ok(text.includes(`${short.url}/link?code=`), text);
    assert.match(text, /approve the login/);
    // The gateway registered itself as a public client for the device grant, with the Matrix scopes.
    const client = [...short.oauth!.clients.values()][0]!;
    assert.deepEqual(client.grant_types, ['urn:ietf:params:oauth:grant-type:device_code', 'refresh_token']);
    assert.equal(client.token_endpoint_auth_method, 'none');
    assert.equal(short.sent({ kind: 'login' }).length, 0, 'no password login');

    // The vault holds the discovered base URL, the tokens and the client; no token in clear in the database.
    const prepared = await transport.gateway.registration.loginRequestFor(bareOf(c), undefined);
    assert.ok(prepared);
    assert.equal(prepared.credentials.homeserver, short.url);
    assert.deepEqual(Object.keys(prepared.credentials).sort(), ['clientId', 'deviceId', 'expiresAt', 'homeserver', 'refreshToken', 'token', 'username']);
    assert.match(prepared.credentials.deviceId!, /^GATEHOUSE[0-9A-F]{12}$/);

    await subscribeBoth(c);
    await until(() => short.pendingSyncs > 0, 'a /sync long poll', 8000);
    short.message(dm, bob, 'hello after the browser login');
    const msg = await c.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello after the browser login', 8000);
    assert.equal(msg.attrs.from, `${escapeLocal(bob)}@${GW}`);
  });

  test('tokens are renewed before they expire (rotation): the vault keeps the latest, and messages keep flowing', async () => {
    const before = short.oauth!.log.filter((r) => r.kind === 'token-refresh' && r.ok).length;
    // Access tokens live 2.5 s: two renewals happen on their own, each before the token expired.
    await until(() => short.oauth!.log.filter((r) => r.kind === 'token-refresh' && r.ok).length >= before + 2, 'two renewals', 15_000);
    assert.equal(short.oauth!.log.filter((r) => r.kind === 'token-refresh' && !r.ok).length, 0, 'no refused renewal (rotation respected)');
    assert.deepEqual(short.tokenRefusals, [], 'no request was made with an expired token: renewed ahead of time');
    const user = clients.find((c) => c.jid.startsWith('mx-oauth-a@'))!;
    const bob = '@bob:matrix.test';
    const dm = danaDm;
    // The stored refresh token is the newest one (the earlier ones are spent).
    await until(async () => {
      const p = await transport.gateway.registration.loginRequestFor(bareOf(user), undefined);
      return p?.credentials.refreshToken === short.oauth!.issuedTokens().at(-1);
    }, 'the vault holds the newest refresh token', 5000);
    short.message(dm, bob, 'after renewals');
    await user.expect((el) => el.name === 'message' && el.getChildText('body') === 'after renewals', 8000);
    const rows = await transport.storage.transports.queryAudit({ network: 'matrix', userJid: bareOf(user) });
    assert.ok(!rows.some((r) => r.event === 'disconnected'), 'the session never ended');
  });

  test('a soft logout (401 M_UNKNOWN_TOKEN, soft_logout) is answered by a renewal, not by ending the session', async () => {
    const me = long.createUser('erin');
    const bob = long.createUser('bob');
    const dm = long.createRoom({ creator: bob, members: [me], direct: true });
    const c = await xmppUser('mx-oauth-b');
    const { reply } = await deviceRegister(c, long, { username: me, homeserver: long.url, password: '' }, me);
    assert.equal(reply.attrs.type, 'result', String(reply));
    await subscribeBoth(c);
    await until(() => long.pendingSyncs > 0, 'a /sync long poll', 8000);
    assert.equal(long.oauth!.log.filter((r) => r.kind === 'token-refresh').length, 0, 'no renewal yet (tokens live an hour)');
    long.oauth!.expireAccessTokens(me);
    await long.oauth!.waitFor((r) => r.kind === 'token-refresh' && r.ok);
    long.message(dm, bob, 'after the soft logout');
    await c.expect((el) => el.name === 'message' && el.getChildText('body') === 'after the soft logout', 8000);
    const rows = await transport.storage.transports.queryAudit({ network: 'matrix', userJid: bareOf(c) });
    assert.ok(!rows.some((r) => r.event === 'disconnected' || r.event === 'auth-failed'), JSON.stringify(rows.map((r) => r.event)));
  });

  test('P10 a refused renewal ends the session: a clear presence error and audit rows', async () => {
    const c = clients.find((cl) => cl.jid.startsWith('mx-oauth-b@'))!;
    const me = '@erin:matrix.test';
    long.oauth!.revokeRefreshTokens(me);
    long.oauth!.expireAccessTokens(me);
    const err = await c.expect((el) => el.name === 'presence' && el.attrs.type === 'error' && el.attrs.from === GW, 10_000);
    assert.match(String(err), /could not be renewed/);
    assert.match(String(err), /register again/);
    assert.equal(errorOf(err), 'not-authorized');
    await until(async () => {
      const rows = await transport.storage.transports.queryAudit({ network: 'matrix', userJid: bareOf(c) });
      return rows.some((r) => r.event === 'disconnected' && /could not be renewed/.test(r.reason ?? ''));
    }, 'a disconnected audit row naming the failed renewal', 5000);
  });

  test('registering again after a refused renewal starts a new browser login, and the session is back', async () => {
    const c = clients.find((cl) => cl.jid.startsWith('mx-oauth-b@'))!;
    const me = '@erin:matrix.test';
    const before = await transport.gateway.registration.loginRequestFor(bareOf(c), undefined);
    const { reply } = await deviceRegister(c, long, { username: me, homeserver: long.url }, me);
    assert.equal(reply.attrs.type, 'result', String(reply));
    const after = await transport.gateway.registration.loginRequestFor(bareOf(c), undefined);
    assert.notEqual(after!.credentials.refreshToken, before!.credentials.refreshToken, 'new tokens stored');
    assert.equal(after!.credentials.deviceId, before!.credentials.deviceId, 'the same Matrix device');
    assert.equal(after!.credentials.clientId, before!.credentials.clientId, 'the same OAuth client');
    const bob = '@bob:matrix.test';
    const dm = long.createRoom({ creator: bob, members: [me], direct: true });
    await until(() => long.pendingSyncs > 0, 'a /sync long poll', 8000);
    long.message(dm, bob, 'welcome back');
    await c.expect((el) => el.name === 'message' && el.getChildText('body') === 'welcome back', 8000);
  });

  test('a login denied in the browser is a clear registration error', async () => {
    const me = long.createUser('fay');
    const c = await xmppUser('mx-oauth-c');
    const pending = registerForm(c, { username: me, homeserver: long.url });
    const prompt = await c.expect(isChatFromGw, 10_000);
    const code = /code ([A-Z]{4}-[A-Z]{4})/.exec(prompt.getChildText('body') ?? '')![1]!;
    long.oauth!.deny(code);
    const reply = await pending;
    assert.equal(reply.attrs.type, 'error');
    assert.equal(errorOf(reply), 'not-acceptable');
    assert.match(String(reply), /denied in the browser/);
  });

  test('P9 no access or refresh token in any log line, nor in clear in the database', async () => {
    const tokens = [...short.oauth!.issuedTokens(), ...long.oauth!.issuedTokens()];
    assert.ok(tokens.length >= 6, 'tokens were issued');
    const log = logLines.join('\n');
    // Positive control: the scan sees what is logged (renewals are logged, without the token).
    assert.match(log, /matrix access token renewed/);
    for (const t of tokens) assert.ok(!log.includes(t), 'no token in the log');
    const dbFiles = [config.storage.path!, `${config.storage.path}-wal`].filter((f) => existsSync(f));
    const bytes = Buffer.concat(dbFiles.map((f) => readFileSync(f)));
    assert.ok(bytes.includes(Buffer.from('mx-oauth-a@localhost')), 'the scan finds the registered JID');
    for (const t of tokens) assert.equal(bytes.indexOf(t), -1, 'no token in clear in the database');
  });
});

describe('Matrix adapter: choosing the login, stored OAuth sessions', () => {
  const quiet = { debug() {}, info() {}, warn() {} };
  const fast = { pollTimeoutMs: 1000, requestTimeoutMs: 5000, loginTimeoutMs: 5000, syncFailureTimeoutMs: 5000 };

  test('password login still works where m.login.password is offered, even next to OAuth 2.0', async () => {
    const hs = await FakeHomeserver.start({ oauth: { passwordLogin: true } });
    try {
      const me = hs.createUser('gil', { password: 'gil-secret-pw' });
      const adapter = createMatrixAdapter(fast);
      let prompted = false;
      const session = await adapter.login({ userJid: 'g@localhost', credentials: { username: me, homeserver: hs.url, password: 'gil-secret-pw' }, log: quiet, prompt: () => (prompted = true) });
      try {
        assert.equal(prompted, false);
        assert.equal(hs.sent({ kind: 'login', userId: me }).length, 1, 'POST /login was used');
        assert.equal(hs.oauth!.log.length, 0, 'no OAuth request');
        assert.deepEqual(Object.keys(adapter.credentialsToStore(session, {})).sort(), ['deviceId', 'homeserver', 'token', 'username']);
      } finally {
        await session.logout();
      }
    } finally {
      await hs.stop();
    }
  });

  test('a password for a homeserver that only offers OAuth 2.0 starts the browser login, and says the password is not used', async () => {
    const hs = await FakeHomeserver.start({ oauth: {} });
    try {
      const me = hs.createUser('hal');
      const adapter = createMatrixAdapter(fast);
      const texts: string[] = [];
      const login = adapter.login({
        userJid: 'h@localhost',
        credentials: { username: me, homeserver: hs.url, password: 'not-used-pw' },
        log: quiet,
        prompt: (text) => texts.push(text),
      });
      const grant = await hs.oauth!.nextDeviceLogin();
      hs.oauth!.approve(grant.userCode, me);
      const session = await login;
      try {
        assert.match(texts[0] ?? '', /password you gave is not used/);
        assert.equal(hs.logins, 0, 'no password login attempted');
        assert.equal(session.deviceId, grant.deviceId, 'the device named in the scope');
      } finally {
        await session.logout();
      }
      // Without a way to reach the user (a stored registration that lost its tokens) the login is refused clearly.
      await assert.rejects(adapter.login({ userJid: 'h@localhost', credentials: { username: me, homeserver: hs.url }, log: quiet }), (err: Error) => err instanceof LegacyAuthError && /approved in a browser/.test(err.message));
    } finally {
      await hs.stop();
    }
  });

  test('discovery: a server without a .well-known file is tried as the homeserver itself; a plain web server is a clear error', async () => {
    const hs = await FakeHomeserver.start({ wellKnown: false });
    const web = await wellKnownServer(() => ({ status: 404, body: '' }));
    try {
      const me = hs.createUser('kim', { password: 'kim-secret-pw' });
      const name = hs.url.replace('http://', '');
      const session = await createMatrixAdapter(fast).login({ userJid: 'k@localhost', credentials: { username: me, homeserver: name, password: 'kim-secret-pw' }, log: quiet });
      try {
        assert.equal(session.homeserver, `http://${name}`);
        assert.ok(hs.requests.includes('GET /.well-known/matrix/client'), 'the well-known file was asked for');
      } finally {
        await session.logout();
      }
      await assert.rejects(
        createMatrixAdapter(fast).login({ userJid: 'k@localhost', credentials: { username: me, homeserver: web.name, password: 'pw' }, log: quiet }),
        (err: Error) => err instanceof LegacyNetworkError && new RegExp(`${web.name} has no /.well-known/matrix/client and is not a homeserver itself`).test(err.message),
      );
    } finally {
      web.server.close();
      await hs.stop();
    }
  });

  test('a login code that expires unapproved is a clear error', async () => {
    const hs = await FakeHomeserver.start({ oauth: { deviceCodeLifetimeS: 1 } });
    try {
      const me = hs.createUser('jon');
      const texts: string[] = [];
      await assert.rejects(
        createMatrixAdapter(fast).login({ userJid: 'j@localhost', credentials: { username: me, homeserver: hs.url }, log: quiet, prompt: (t) => texts.push(t) }),
        (err: Error) => err instanceof LegacyAuthError && /expired before it was approved/.test(err.message),
      );
      assert.equal(texts.length, 1);
    } finally {
      await hs.stop();
    }
  });

  test('a stored OAuth session whose access token expired is renewed at login; the new tokens are reported for the vault', async () => {
    const hs = await FakeHomeserver.start({ oauth: { accessTokenLifetimeMs: 3_600_000 } });
    try {
      const me = hs.createUser('ivy');
      const adapter = createMatrixAdapter(fast);
      const login = adapter.login({ userJid: 'i@localhost', credentials: { username: me, homeserver: hs.url }, log: quiet, prompt: () => undefined });
      const grant = await hs.oauth!.nextDeviceLogin();
      hs.oauth!.approve(grant.userCode, me);
      const first = await login;
      const stored = adapter.credentialsToStore(first, {});
      await first.logout();
      hs.oauth!.expireAccessTokens(me);
      const refusedBefore = hs.tokenRefusals.length;
      const again = await adapter.login({ userJid: 'i@localhost', credentials: { ...stored, expiresAt: String(Date.now() - 1000) }, log: quiet });
      try {
        const reported = await new Promise<Record<string, string>>((resolve) => again.once('credentials', resolve));
        assert.notEqual(reported.refreshToken, stored.refreshToken, 'rotated');
        assert.notEqual(reported.token, stored.token);
        assert.equal(reported.deviceId, stored.deviceId, 'the same device');
        assert.deepEqual(hs.tokenRefusals.slice(refusedBefore).filter((r) => !r.includes('/sync')), [], 'renewed before the expired token was used');
        assert.equal(hs.oauth!.log.filter((r) => r.kind === 'token-refresh' && r.ok).length, 1);
      } finally {
        await again.logout();
      }
    } finally {
      await hs.stop();
    }
  });
});
