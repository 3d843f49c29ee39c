/**
 * The kit is a plain XEP-0114 component: it works with another server too. Prosody from Debian
 * (/usr/bin/prosody) on random loopback ports with a temporary configuration and data directory:
 * registration with the gateway, the XEP-0100 subscription flow, a message both ways, a room.
 * Skipped when Prosody is not installed (a failure when GATEHOUSE_TEST_REQUIRE names it).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Logger } from '../../shared/logger.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { FakeAdapter, FakeNetwork } from '../../transports/fake/fake-network.js';
import { parseTransportConfig } from '../../transports/kit/config.js';
import { startTransport, type RunningTransport } from '../../transports/kit/gateway.js';
import { delay, until } from './kit-harness.js';
import { PROSODY, skipWithout } from '../helpers/requirements.js';

const GW = 'gw.localhost';
const SECRET = 'prosody-component-secret-9d';

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise<void>((r) => srv.close(() => r()));
  return port;
}

async function portOpen(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

describe('transport kit with Prosody', { skip: skipWithout('prosody') }, () => {
  let dir: string;
  let prosody: ChildProcess;
  let c2sPort: number;
  let componentPort: number;
  let transport: RunningTransport;
  const net = new FakeNetwork({ servers: ['irc.one'] });
  const logLines: string[] = [];

  before(async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-prosody-'));
    mkdirSync(path.join(dir, 'data'));
    c2sPort = await freePort();
    componentPort = await freePort();
    const cfg = path.join(dir, 'prosody.cfg.lua');
    writeFileSync(
      cfg,
      [
        `pidfile = "${dir}/prosody.pid"`,
        `data_path = "${dir}/data"`,
        `certificates = "${dir}"`,
        process.getuid?.() === 0 ? 'run_as_root = true' : '',
        `log = { { levels = { min = "info" }, to = "file", filename = "${dir}/prosody.log" } }`,
        'interfaces = { "127.0.0.1" }',
        `c2s_ports = { ${c2sPort} }`,
        'c2s_direct_tls_ports = { }',
        'legacy_ssl_ports = { }',
        's2s_ports = { }',
        `component_ports = { ${componentPort} }`,
        'component_interfaces = { "127.0.0.1" }',
        'http_ports = { }',
        'https_ports = { }',
        'modules_enabled = { "roster", "saslauth", "disco", "ping", "register", "presence", "message", "iq" }',
        'modules_disabled = { "s2s", "tls", "posix" }',
        'allow_registration = true',
        'c2s_require_encryption = false',
        'allow_unencrypted_plain_auth = true',
        'authentication = "internal_hashed"',
        'storage = "internal"',
        'VirtualHost "localhost"',
        `Component "${GW}"`,
        `  component_secret = "${SECRET}"`,
        '',
      ].join('\n'),
    );
    prosody = spawn(PROSODY, ['--config', cfg, '-F'], { stdio: 'ignore' });
    await until(async () => (await portOpen(c2sPort)) && (await portOpen(componentPort)), 'Prosody to listen', 20000);
    const config = parseTransportConfig(
      {
        adapter: 'fake',
        component: { domain: GW, secret: SECRET, host: '127.0.0.1', port: componentPort },
        storage: { type: 'sqlite', path: path.join(dir, 'transport.sqlite') },
        vault: { keyFile: path.join(dir, 'vault.key') },
        gracePeriod: '2s',
        loginTimeout: '5s',
        reconnect: { min: '100ms', max: '1s' },
      },
      dir,
      'fake',
      {},
    );
    transport = await startTransport({ config, adapter: new FakeAdapter(net), log: new Logger({ level: 'debug', format: 'text', sink: (l) => logLines.push(l) }), env: {} });
  });

  after(async () => {
    await transport?.stop().catch(() => undefined);
    if (prosody && prosody.exitCode === null) {
      const exited = new Promise((r) => prosody.once('exit', r));
      prosody.kill('SIGTERM');
      await Promise.race([exited, delay(5000)]);
      if (prosody.exitCode === null) prosody.kill('SIGKILL');
    }
    if (process.env.GATEHOUSE_KEEP_PROSODY_LOG) console.log(readFileSync(path.join(dir, 'prosody.log'), 'utf8'));
    rmSync(dir, { recursive: true, force: true });
  });

  async function prosodyUser(name: string, password: string): Promise<TestClient> {
    const c = await TestClient.connect({ port: c2sPort, plain: true });
    const reg = await c.register(name, password);
    assert.equal(reg.attrs.type, 'result', `Prosody registration: ${reg}`);
    await c.close();
    const client = await TestClient.connect({ port: c2sPort, plain: true });
    const mech = client.mechanisms().includes('SCRAM-SHA-256') ? 'SCRAM-SHA-256' : 'SCRAM-SHA-1';
    await client.login(name, password, { mechanism: mech, resource: 'test' });
    return client;
  }

  test('registration, the subscription flow, and a message both ways through Prosody', async () => {
    net.addAccount('pat-irc', 'pw-pat');
    const pat = await prosodyUser('pat', 'pat-xmpp-pw');
    await pat.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
    pat.send(x('presence'));
    // Disco through Prosody reaches the component.
    const info = await pat.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.attrs.type, 'result', String(info));
    assert.ok(info.getChild('query', NS.discoInfo)!.getChildren('identity').some((i) => i.attrs.category === 'gateway' && i.attrs.type === 'fake'));
    // Registration: the wrong password first, then the right one.
    const bad = await pat.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: NS.register }, x('username', {}, 'pat-irc'), x('password', {}, 'nope'))));
    assert.equal(bad.attrs.type, 'error');
    const reg = await pat.iq(x('iq', { type: 'set', to: GW }, x('query', { xmlns: NS.register }, x('username', {}, 'pat-irc'), x('password', {}, 'pw-pat'))));
    assert.equal(reg.attrs.type, 'result', String(reg));
    // XEP-0100: the gateway subscribes; pat approves and subscribes back.
    await pat.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribe' && el.attrs.from === GW);
    pat.send(x('presence', { type: 'subscribed', to: GW }));
    pat.send(x('presence', { type: 'subscribe', to: GW }));
    await pat.expect((el) => el.name === 'presence' && el.attrs.type === 'subscribed' && el.attrs.from === GW);
    const user = pat.jid.split('/')[0]!;
    await until(() => net.sessionOf(user) !== undefined, 'a live foreign session');

    // A message out, through Prosody and the gateway to the network.
    pat.send(x('message', { to: `quinn%irc.one@${GW}`, type: 'chat', id: 'p1' }, x('body', {}, 'hello from Prosody')));
    await until(() => net.sent.some((s) => s.kind === 'message' && s.to === 'quinn' && s.text === 'hello from Prosody'), 'the message on the network');
    // And one in.
    net.remotePrivate('quinn', user, 'hello from the network');
    const inbound = await pat.expect((el) => el.name === 'message' && el.attrs.from === `quinn%irc.one@${GW}`);
    assert.equal(inbound.getChildText('body'), 'hello from the network');

    // A room through Prosody: the join sequence and the echo.
    net.remoteJoin('#prosody', 'quinn');
    pat.send(x('presence', { to: `#prosody%irc.one@${GW}/pat` }, x('x', { xmlns: 'http://jabber.org/protocol/muc' })));
    await pat.expect((el) => el.name === 'message' && el.attrs.from === `#prosody%irc.one@${GW}` && !!el.getChild('subject'));
    pat.send(x('message', { to: `#prosody%irc.one@${GW}`, type: 'groupchat', id: 'g1' }, x('body', {}, 'hi room')));
    const echo = await pat.expect((el) => el.name === 'message' && el.attrs.id === 'g1');
    assert.equal(echo.attrs.from, `#prosody%irc.one@${GW}/pat`);
    assert.ok(!logLines.some((l) => l.includes('pw-pat')));
    await pat.close();
  });
});
