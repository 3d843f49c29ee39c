/**
 * The operator's commands on the running server: `gatehouse status`, `kick`, `sessions` filters,
 * and `reload` / SIGHUP against a real `gatehouse start` process.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { controlRequest } from '../../server/admin/control.js';
import { ControlError } from '../../server/commands/command.js';
import type { ServerStatus } from '../../server/modules/operator/status.js';
import { renderStatus } from '../../server/modules/operator/cli-operator.js';
import type { LiveSession } from '../../server/modules/statistics/live-sessions.js';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { runCli, startServerProcess } from '../helpers/server-process.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const ping = () => x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping }));

describe('operator commands on the control socket', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ config: { hosts: [{ domain: 'localhost', registration: 'open' }, { domain: 'other.localhost', registration: 'open' }] } });
  });
  after(() => ts.stop());

  test('status: version, uptime, listeners with their addresses, session counts, data directory and database, no JID', async () => {
    const alice = await loginAs(ts, 'alice', 'phone');
    const status = (await controlRequest(ts.dir, 'status')) as ServerStatus;
    const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
    assert.equal(status.version, version);
    assert.equal(status.pid, process.pid);
    assert.ok(status.uptimeSeconds >= 0);
    assert.deepEqual(
      status.listeners.filter((l) => l.kind.startsWith('c2s')).map((l) => `${l.kind} ${l.host} ${l.port}`).sort(),
      [`c2s 127.0.0.1 ${ts.port}`, `c2s-tls 127.0.0.1 ${ts.tlsPort}`],
    );
    assert.equal(status.sessions, ts.server.ctx.sessions.size);
    assert.ok(status.sessions >= 1);
    assert.deepEqual(status.components, { connected: 0, configured: 0 });
    assert.deepEqual(status.s2s, { in: 0, out: 0 });
    assert.equal(status.dataDir, ts.dir);
    assert.equal(status.database, 'sqlite');
    assert.deepEqual(status.heldBack, [], 'the policy module holds nothing back for a configuration that is in force');
    const text = renderStatus(status);
    assert.match(text, new RegExp(`^Gatehouse ${version.replace(/\./g, '\\.')}, pid \\d+, running since `));
    assert.match(text, new RegExp(`clients \\(STARTTLS\\) +127\\.0\\.0\\.1 port ${ts.port}$`, 'm'));
    assert.match(text, /^data: .* database: sqlite$/m);
    assert.ok(!JSON.stringify(status).includes('@'), 'status names no account');
    await alice.close();
  });

  test('kick: a full JID closes that session with <policy-violation/>, a bare JID every session of the account; others stay', async () => {
    const a = await loginAs(ts, 'kim', 'a');
    const b = await loginAs(ts, 'kim', 'b');
    const bob = await loginAs(ts, 'bob', 'r');
    const one = (await controlRequest(ts.dir, 'kick', { jid: 'kim@localhost/a' })) as { kicked: string[] };
    assert.deepEqual(one.kicked, ['kim@localhost/a']);
    await a.waitClosed();
    assert.equal(a.streamError, 'policy-violation');
    assert.equal((await b.iq(ping())).attrs.type, 'result', 'the other session of the account stays');
    assert.equal(ts.server.ctx.sessions.get('kim@localhost/a'), undefined, 'the session is gone, not kept for resumption');

    const c = await loginAs(ts, 'kim', 'c');
    const all = (await controlRequest(ts.dir, 'kick', { jid: 'kim@localhost' })) as { kicked: string[] };
    assert.deepEqual(all.kicked.sort(), ['kim@localhost/b', 'kim@localhost/c']);
    await b.waitClosed();
    await c.waitClosed();
    assert.equal(c.streamError, 'policy-violation');
    assert.equal(ts.server.ctx.sessions.ofAccount('kim@localhost').length, 0);
    assert.equal((await bob.iq(ping())).attrs.type, 'result', "another account's session stays");
    assert.ok(ts.logLines.some((l) => /administrator kicked a client session/.test(l) && l.includes('kim@localhost/a')));

    await assert.rejects(controlRequest(ts.dir, 'kick', { jid: 'kim@localhost' }), (e: Error) => e instanceof ControlError && e.message === 'no session of kim@localhost is online');
    await assert.rejects(controlRequest(ts.dir, 'kick', { jid: 'localhost' }), (e: Error) => e instanceof ControlError && /not an account's JID/.test(e.message));
    await bob.close();
  });

  test('kick: a session with stream management enabled cannot be resumed afterwards', async () => {
    const NS_SM = 'urn:xmpp:sm:3';
    const c = await ts.user('smk');
    c.send(x('enable', { xmlns: NS_SM, resume: 'true' }));
    const enabled = await c.expect((el) => el.name === 'enabled' && el.attrs.xmlns === NS_SM);
    assert.ok(enabled.attrs.id);
    await controlRequest(ts.dir, 'kick', { jid: c.jid });
    await c.waitClosed();
    const again = await ts.client();
    await again.authenticateAndRestart('smk', 'secret-smk');
    again.send(x('resume', { xmlns: NS_SM, previd: enabled.attrs.id, h: 0 }));
    const answer = await again.expect((el) => el.attrs.xmlns === NS_SM && (el.name === 'resumed' || el.name === 'failed'));
    assert.equal(answer.name, 'failed');
    again.destroy();
  });

  test('sessions --host and --jid: the server returns only the matching sessions', async () => {
    const a1 = await loginAs(ts, 'sam', 'one');
    const a2 = await loginAs(ts, 'sam', 'two');
    const other = await TestClient.connect({ port: ts.port, domain: 'other.localhost' });
    assert.equal((await other.register('olga', 'pw-olga')).attrs.type, 'result');
    await other.login('olga', 'pw-olga', { resource: 'x' });
    const list = async (args: Record<string, string>) => ((await controlRequest(ts.dir, 'sessions', args)) as LiveSession[]).map((s) => s.jid).sort();
    assert.deepEqual(await list({ jid: 'sam@localhost' }), ['sam@localhost/one', 'sam@localhost/two']);
    assert.deepEqual(await list({ jid: 'sam@localhost/two' }), ['sam@localhost/two']);
    assert.deepEqual(await list({ host: 'other.localhost' }), ['olga@other.localhost/x']);
    const local = await list({ host: 'localhost' });
    assert.ok(local.includes('sam@localhost/one') && local.every((j) => /^[^@]+@localhost\//.test(j)), local.join(' '));
    await assert.rejects(controlRequest(ts.dir, 'sessions', { jid: 'not a jid@@' }), /--jid: not an account's JID/);
    await assert.rejects(controlRequest(ts.dir, 'sessions', { kind: 'users' }), /--kind: expected one of c2s, s2s, component, got "users"/);
    await assert.rejects(controlRequest(ts.dir, 'sessions', { kind: 's2s', host: 'localhost' }), /--host and --jid narrow client sessions/);
    assert.deepEqual(await controlRequest(ts.dir, 'sessions', { kind: 's2s' }), [], 'federation is off');
    for (const c of [a1, a2, other]) await c.close();
  });
});

test('gatehouse status, reload and SIGHUP against a running gatehouse start', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-op-'));
  const config = {
    dataDir: dir,
    hosts: [{ domain: 'localhost', registration: 'closed' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [] },
    auth: { scramIterations: 4096 },
    log: { level: 'info' },
  };
  const file = join(dir, 'gatehouse.yaml');
  const server = await startServerProcess(dir, config);
  try {
    const status = await runCli(['status', '--config', file]);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, new RegExp(`clients \\(STARTTLS\\) +127\\.0\\.0\\.1 port ${server.port}`));
    assert.match(status.stdout, /^sessions: 0 clients, /m);

    const reg = await TestClient.connect({ port: server.port });
    assert.equal((await reg.register('alice', 'alice-pw')).attrs.type, 'error', 'registration is closed');
    writeFileSync(file, stringify({ ...config, hosts: [{ domain: 'localhost', registration: 'open' }], listen: { ...config.listen, c2s: [{ host: '127.0.0.1', port: 1 }] } }));
    const reload = await runCli(['reload', '--config', file]);
    assert.equal(reload.code, 0, reload.stderr);
    assert.match(reload.stdout, /^reloaded: hosts, certificates$/m);
    assert.match(reload.stdout, /^needs a restart: listen\.c2s$/m);
    assert.equal((await reg.register('alice', 'alice-pw')).attrs.type, 'result', 'registration is open after gatehouse reload, on the same connection');
    await reg.login('alice', 'alice-pw');

    // An invalid file: the command cannot even read where the server is; the server is not asked.
    writeFileSync(file, 'hosts: [unclosed');
    const invalid = await runCli(['reload', '--config', file]);
    assert.equal(invalid.code, 2);
    assert.match(invalid.stderr, /^config error: .*invalid YAML/);

    // SIGHUP re-reads the file too; the server logs the outcome: refused, then reloaded.
    const logLine = (re: RegExp) =>
      new Promise<void>((resolve) => {
        let seen = '';
        const onData = (d: Buffer) => {
          seen += d.toString();
          if (re.test(seen)) {
            server.proc.stderr!.off('data', onData);
            resolve();
          }
        };
        server.proc.stderr!.on('data', onData);
      });
    const refused = logLine(/reload refused, the running configuration stays.*invalid YAML/);
    server.proc.kill('SIGHUP');
    await refused;
    writeFileSync(file, stringify({ ...config, hosts: [{ domain: 'localhost', registration: 'open' }], log: { level: 'debug' } }));
    const reloaded = logLine(/configuration reloaded.*log\.level/);
    server.proc.kill('SIGHUP');
    await reloaded;
    assert.equal((await reg.iq(ping())).attrs.type, 'result', 'the session survives both reloads');
    reg.destroy();
  } finally {
    server.proc.kill('SIGTERM');
    await server.exited;
    rmSync(dir, { recursive: true, force: true });
  }
});
