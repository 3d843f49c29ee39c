/**
 * P15: no telemetry, no outbound call the operator did not configure. The real `gatehouse start`
 * runs in a child process with a preload (no-egress-hook.js) that records and refuses every
 * network operation that is not loopback; the server is started with everything switched on and
 * used by clients and a component; afterwards the record must show no outbound attempt.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, connect, type Socket } from 'node:net';
import { createHash } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { TestClient } from '../helpers/xmpp-client.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const CLI = fileURLToPath(new URL('../../server/cli.js', import.meta.url));
const HOOK = fileURLToPath(new URL('./no-egress-hook.js', import.meta.url));
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function freePort(): Promise<number> {
  const srv = createServer();
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as { port: number }).port;
  await new Promise((r) => srv.close(r));
  return port;
}

function run(args: string[], env: NodeJS.ProcessEnv): { proc: ChildProcess; output: () => string; exited: Promise<number | string> } {
  const proc = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
  let out = '';
  proc.stdout!.on('data', (d) => (out += d));
  proc.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | string>((r) => proc.once('exit', (code, signal) => r(code ?? signal ?? 'unknown')));
  return { proc, output: () => out, exited };
}

describe('P15 no telemetry', () => {
  test('P15 the hook catches outbound connections, lookups and datagrams (control)', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-egress-'));
    try {
      const log = join(dir, 'egress.log');
      const script = `
        import { connect } from 'node:net';
        import tls from 'node:tls';
        import dns from 'node:dns';
        import dgram from 'node:dgram';
        const attempts = [
          () => connect(443, '192.0.2.1'),
          () => tls.connect({ host: 'telemetry.example', port: 443 }),
          () => dns.lookup('example.com', () => {}),
          () => dgram.createSocket('udp4').send('x', 53, '192.0.2.53'),
          () => fetch('https://example.org/collect'),
          () => connect(1, '127.0.0.1').on('error', () => {}),
        ];
        for (const a of attempts) { try { const r = a(); if (r && r.catch) await r.catch(() => {}); } catch {} }
        process.exit(0);`;
      const p = run(['--import', HOOK, '--input-type=module', '-e', script], { GATEHOUSE_EGRESS_LOG: log });
      assert.equal(await p.exited, 0, p.output());
      const lines = readFileSync(log, 'utf8').trim().split('\n');
      assert.deepEqual(lines, ['LOADED', 'EGRESS tcp 192.0.2.1:443', 'EGRESS tcp telemetry.example:443', 'EGRESS dns-lookup example.com', 'EGRESS udp 192.0.2.53', 'EGRESS fetch https://example.org/collect']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P15 the server with every feature switched on opens no outbound connection while clients and a component use it', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-egress-'));
    const log = join(dir, 'egress.log');
    // A port nothing listens on: where the operator routed the remote domain.
    const closedPort = await freePort();
    const configFile = join(dir, 'gatehouse.yaml');
    writeFileSync(
      configFile,
      stringify({
        dataDir: dir,
        hosts: [{ domain: 'localhost', registration: 'open' }, { domain: 'second.localhost', registration: 'loopback' }],
        admins: ['admin@localhost'],
        listen: {
          c2s: [{ host: '127.0.0.1', port: 0 }],
          c2sDirectTls: [{ host: '127.0.0.1', port: 0 }],
          components: [{ host: '127.0.0.1', port: 0 }],
          s2s: [{ host: '127.0.0.1', port: 0 }],
          admin: [{ host: '127.0.0.1', port: 0 }],
          https: [{ host: '127.0.0.1', port: 0 }],
        },
        auth: { scramIterations: 4096 },
        components: [{ domain: 'gw.localhost', secret: 'gw-secret' }],
        // Federation is configured: a message to remote.example must go exactly where the operator
        // routed it (a closed loopback port here), and nowhere else.
        s2s: { static: { 'remote.example': `127.0.0.1:${closedPort}` } },
        retention: { detailedLogs: '24h', offlineMessages: '7d' },
        backups: { schedule: 'daily', keep: 3 },
        policy: { contact: 'mailto:privacy@localhost', language: 'de' },
        log: { level: 'debug', file: join(dir, 'gatehouse.log') },
      }),
    );
    const server = run(['--import', HOOK, CLI, 'start', '--config', configFile], { GATEHOUSE_EGRESS_LOG: log });
    const clients: TestClient[] = [];
    let component: Socket | null = null;
    try {
      const [port, componentPort] = await new Promise<[number, number]>((resolve, reject) => {
        const timer = setInterval(() => {
          const m = /clients \(STARTTLS\): \S+ port (\d+)/.exec(server.output());
          const c = /components \(XEP-0114\): \S+ port (\d+)/.exec(server.output());
          if (m && c) {
            clearInterval(timer);
            resolve([Number(m[1]), Number(c[1])]);
          }
        }, 20);
        void server.exited.then((code) => (clearInterval(timer), reject(new Error(`server exited (${code}): ${server.output()}`))));
      });

      const alice = await TestClient.connect({ port });
      clients.push(alice);
      assert.equal((await alice.register('alice', 'pw-alice')).attrs.type, 'result');
      await alice.login('alice', 'pw-alice');
      const bob = await TestClient.connect({ port });
      clients.push(bob);
      assert.equal((await bob.register('bob', 'pw-bob')).attrs.type, 'result');
      await bob.login('bob', 'pw-bob');
      for (const c of [alice, bob]) {
        await c.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
        c.send(x('presence'));
      }
      alice.send(x('message', { to: 'bob@localhost', type: 'chat' }, x('body', {}, 'hello')));
      await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello');
      // Addresses elsewhere: a remote domain (federation goes only where the operator routed it),
      // the component, the second host.
      alice.send(x('message', { to: 'someone@remote.example', type: 'chat' }, x('body', {}, 'far')));
      await alice.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Alice'), x('URL', {}, 'https://alice.example/'))));
      await bob.iq(x('iq', { type: 'get', to: 'alice@localhost' }, x('vCard', { xmlns: NS.vcard })));
      for (const to of ['localhost', 'second.localhost', 'gw.localhost']) await alice.iq(x('iq', { type: 'get', to }, x('query', { xmlns: NS.discoInfo })));
      await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.version })));

      component = connect({ host: '127.0.0.1', port: componentPort });
      let wire = '';
      component.on('data', (d) => (wire += d));
      component.on('error', () => {});
      await new Promise<void>((r, j) => component!.once('connect', r).once('error', j));
      component.write(`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}' to='gw.localhost'>`);
      for (let i = 0; i < 200 && !/ id='([^']+)'/.test(wire); i++) await new Promise((r) => setTimeout(r, 10));
      const id = / id='([^']+)'/.exec(wire)![1]!;
      component.write(`<handshake>${createHash('sha1').update(id + 'gw-secret').digest('hex')}</handshake>`);
      for (let i = 0; i < 200 && !wire.includes('<handshake/>'); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(wire.includes('<handshake/>'), wire);
      alice.send(x('message', { to: 'nick@gw.localhost', type: 'chat' }, x('body', {}, 'to the gateway')));
      for (let i = 0; i < 200 && !wire.includes('to the gateway'); i++) await new Promise((r) => setTimeout(r, 10));
      assert.ok(wire.includes('to the gateway'));

      await alice.close();
      await new Promise((r) => setTimeout(r, 300));
    } finally {
      for (const c of clients) c.destroy();
      component?.destroy();
      server.proc.kill('SIGTERM');
      await server.exited;
    }
    try {
      assert.ok(existsSync(log), `the hook was not loaded: ${server.output()}`);
      const lines = readFileSync(log, 'utf8').trim().split('\n');
      assert.equal(lines[0], 'LOADED');
      assert.deepEqual(lines.slice(1), [], 'outbound network attempts');
      assert.ok(!server.output().includes('EGRESS'), server.output());
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P15 no dependency, direct or transitive, is an analytics, tracking or telemetry package', () => {
    const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as Record<string, Record<string, string> | undefined>;
    const direct = [...Object.keys(pkg.dependencies ?? {}), ...Object.keys(pkg.devDependencies ?? {})];
    const lockPath = join(ROOT, 'package-lock.json');
    const installed = existsSync(lockPath)
      ? Object.keys((JSON.parse(readFileSync(lockPath, 'utf8')) as { packages: Record<string, unknown> }).packages)
          .map((k) => k.replace(/^.*node_modules\//, ''))
          .filter(Boolean)
      : [];
    const telemetry =
      /analytics|telemetry|segment|mixpanel|amplitude|posthog|sentry|bugsnag|datadog|dd-trace|newrelic|applicationinsights|opentelemetry|rollbar|honeybadger|raygun|logrocket|hotjar|fullstory|countly|matomo|plausible|statsig|launchdarkly|tracking|tracker|beacon|crash-?report/i;
    assert.ok(direct.length > 0);
    assert.deepEqual([...new Set([...direct, ...installed])].filter((n) => telemetry.test(n)), []);
  });
});
