/**
 * Reload (SIGHUP, `gatehouse reload`): the configuration and the certificates are read again
 * without dropping sessions; what cannot change live is named; an invalid configuration is refused
 * and the running one stays. Real sockets and TLS; the process-level signal and CLI are in
 * test/admin/operator.test.ts.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import { connect, type Socket } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { copyFileSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { startTestServer, modulesWith } from '../helpers/server.js';
import { openRaw, waitClosed } from '../helpers/raw-connections.js';
import { createTestCa } from '../helpers/test-ca.js';
import { ReloadRefused } from '../../server/core/runtime.js';
import { handshakeDigest } from '../../server/streams/component.js';
import { controlRequest } from '../../server/admin/control.js';
import { announcePolicy } from '../../server/modules/policy/announce.js';
import { createTransportsSupervisor } from '../../server/modules/transports/supervisor.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const ping = () => x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping }));

/**
 * The component side of XEP-0114 on a raw socket: resolves with what the server answered the
 * handshake. The connection is closed then, unless `kept` is given: it receives the open socket.
 */
function componentHandshake(port: number, domain: string, secret: string, kept?: (s: Socket) => void): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(port, '127.0.0.1');
    let buf = '';
    let sent = false;
    s.setEncoding('utf8');
    s.on('error', reject);
    s.on('connect', () => s.write(`<stream:stream xmlns='jabber:component:accept' xmlns:stream='${NS.stream}' to='${domain}'>`));
    s.on('data', (d: string) => {
      buf += d;
      const id = /id='([^']+)'/.exec(buf)?.[1];
      if (id && !sent) {
        sent = true;
        s.write(`<handshake>${handshakeDigest(id, secret).toString('hex')}</handshake>`);
      }
      if (buf.includes('<handshake/>') || buf.includes('</stream:stream>')) {
        if (kept && buf.includes('<handshake/>')) kept(s);
        else s.destroy();
        resolve(buf);
      }
    });
  });
}

describe('reload', () => {
  test('a changed log level and registration policy are in force at once; a session stays connected', async () => {
    const ts = await startTestServer({ logLevel: 'warn', config: { hosts: [{ domain: 'localhost', registration: 'closed' }] } });
    try {
      const alice = await ts.user('alice').catch((e: Error) => e);
      assert.ok(alice instanceof Error && /not-allowed/.test(alice.message), 'registration is closed before the reload');
      const mark = ts.logLines.length;
      const outcome = await ts.reload({ log: { level: 'info' }, hosts: [{ domain: 'localhost', registration: 'open' }] });
      assert.deepEqual(outcome.needsRestart, []);
      assert.ok(outcome.changed.includes('log.level') && outcome.changed.includes('hosts') && outcome.changed.includes('certificates'), outcome.changed.join(', '));
      // Logged at info: the line is only there because the new level is in force.
      assert.ok(ts.logLines.slice(mark).some((l) => /configuration reloaded/.test(l)), 'the reload is logged at the new level');
      const bob = await ts.user('bob');
      assert.equal((await bob.iq(ping())).attrs.type, 'result', 'registration is open after the reload');
      // The level goes back down: info lines stop.
      await ts.reload({ log: { level: 'warn' }, hosts: [{ domain: 'localhost', registration: 'open' }] });
      const quiet = ts.logLines.length;
      await (await ts.user('carol')).close();
      assert.equal(ts.logLines.slice(quiet).filter((l) => / info /.test(l)).length, 0);
      assert.equal((await bob.iq(ping())).attrs.type, 'result', 'the session from before the reloads is still served');
    } finally {
      await ts.stop();
    }
  });

  test('a renewed certificate is presented to connections made after the reload; an existing session keeps its connection', async () => {
    const ca = createTestCa();
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-reload-cert-'));
    const cert = join(dir, 'localhost.crt');
    const key = join(dir, 'localhost.key');
    const first = ca.issue('localhost');
    copyFileSync(first.cert, cert);
    copyFileSync(first.key, key);
    const fingerprint = (file: string) => new X509Certificate(readFileSync(file)).fingerprint256;
    const ts = await startTestServer({ config: { hosts: [{ domain: 'localhost', registration: 'open', tls: { cert, key } }], listen: { admin: [{ host: '127.0.0.1', port: 0 }] } } });
    try {
      const old = await ts.user('alice');
      assert.equal(old.tlsSocket!.getPeerCertificate().fingerprint256, fingerprint(first.cert));
      // What certbot does: the files at the configured paths are replaced by the renewed ones.
      const renewed = ca.issue('localhost');
      copyFileSync(renewed.cert, cert);
      copyFileSync(renewed.key, key);
      assert.notEqual(fingerprint(renewed.cert), fingerprint(first.cert));
      const outcome = await ts.reload();
      assert.ok(outcome.changed.includes('certificates'));
      const starttls = await ts.client();
      assert.equal(starttls.tlsSocket!.getPeerCertificate().fingerprint256, fingerprint(renewed.cert), 'STARTTLS after the reload');
      const direct = await ts.client({ directTls: true });
      assert.equal(direct.tlsSocket!.getPeerCertificate().fingerprint256, fingerprint(renewed.cert), 'direct TLS after the reload');
      const admin = await new Promise<TLSSocket>((resolve, reject) => {
        const s = tlsConnect({ host: '127.0.0.1', port: ts.adminPort, servername: 'localhost', rejectUnauthorized: false }, () => resolve(s));
        s.once('error', reject);
      });
      assert.equal(admin.getPeerCertificate().fingerprint256, fingerprint(renewed.cert), 'the admin console after the reload');
      admin.destroy();
      assert.equal(old.closed, false);
      assert.equal((await old.iq(ping())).attrs.type, 'result', 'the session from before the reload is still served');
      assert.equal(old.tlsSocket!.getPeerCertificate().fingerprint256, fingerprint(first.cert), 'on its old TLS connection');

      // A broken certificate file refuses the reload; the renewed certificate stays in use.
      writeFileSync(cert, 'not a certificate');
      await assert.rejects(ts.reload(), (err: Error) => err instanceof ReloadRefused && /^certificate: /.test(err.message));
      const after = await ts.client({ directTls: true });
      assert.equal(after.tlsSocket!.getPeerCertificate().fingerprint256, fingerprint(renewed.cert));
    } finally {
      await ts.stop();
      ca.remove();
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an invalid configuration is refused with the config error and the running one stays', async () => {
    const ts = await startTestServer({ logLevel: 'info' });
    try {
      const alice = await ts.user('alice');
      const before = ts.server.ctx.config.c2s.maxStanzaBytes;
      await assert.rejects(
        ts.reload({ log: { level: 'debug' }, c2s: { maxStanzaBytes: 'big' } }),
        (err: Error) => err instanceof ReloadRefused && /^config error: c2s\.maxStanzaBytes: /.test(err.message),
      );
      assert.equal(ts.server.ctx.config.c2s.maxStanzaBytes, before);
      assert.equal(ts.server.ctx.config.log.level, 'info', 'nothing of the refused file is in force');
      assert.ok(ts.logLines.some((l) => /reload refused, the running configuration stays/.test(l) && /c2s\.maxStanzaBytes/.test(l)));
      assert.equal((await alice.iq(ping())).attrs.type, 'result');
    } finally {
      await ts.stop();
    }
  });

  test('what cannot change while running keeps its value and is named; connection caps change for new connections', async () => {
    const ts = await startTestServer({ logLevel: 'info' });
    try {
      const first = await ts.user('alice');
      const name = ts.server.ctx.config.server.name;
      const outcome = await ts.reload({ listen: { c2s: [{ host: '127.0.0.1', port: ts.port + 1 }] }, server: { name: 'Renamed' }, c2s: { maxConnectionsPerIp: 1 } });
      assert.deepEqual(outcome.needsRestart, ['listen.c2s', 'server']);
      assert.ok(outcome.changed.includes('c2s.maxConnectionsPerIp') && !outcome.changed.includes('listen.c2s'), outcome.changed.join(', '));
      assert.ok(ts.logLines.some((l) => /needs a restart: listen\.c2s, server/.test(l)));
      assert.equal(ts.server.ctx.config.listen.c2s[0]!.port, 0, 'the running listener address stays');
      assert.equal(ts.server.ctx.config.server.name, name);
      // One connection per address now: a second one from 127.0.0.1 is closed at once, the first stays.
      await waitClosed(await openRaw(ts.port), 'a second connection over the reloaded per-address cap');
      assert.equal(first.closed, false);
      assert.equal((await first.iq(ping())).attrs.type, 'result', 'the session from before the reload is still served');
    } finally {
      await ts.stop();
    }
  });

  test('P22 a component added by reload is held back until its policy change is announced, then connects', async () => {
    const ts = await startTestServer({ config: { listen: { components: [{ host: '127.0.0.1', port: 0 }] } } });
    try {
      assert.equal(ts.componentPort, 0, 'no component listener without components');
      const components = [{ domain: 'gw.localhost', secret: 'component-secret-2c81' }];
      // The published policy lists gateways (P22): one added without an announcement is held back,
      // as at a start: the listener opens (the file names a component) and refuses it.
      const held = await ts.reload({ components });
      assert.deepEqual(held.heldBack, ['components: — → gw.localhost']);
      assert.equal(ts.server.ctx.config.components.length, 0);
      const heldPort = ts.server.listeners.find((l) => l.kind === 'component')?.port;
      assert.ok(heldPort, 'the component listener opened with the first component in the file');
      assert.match(await componentHandshake(heldPort, 'gw.localhost', 'component-secret-2c81'), /host-unknown/);

      const { ctx } = ts.server;
      await announcePolicy(ctx.storage, { ...ts.config, components }, { effective: ctx.clock.now().toISOString().slice(0, 10), technical: 'a gateway for the test', now: ctx.clock.now() });
      const outcome = await ts.reload({ components });
      assert.deepEqual(outcome.heldBack, []);
      assert.equal(ts.server.ctx.config.components.length, 1, 'in force after the announcement');
      const port = ts.server.listeners.find((l) => l.kind === 'component')?.port;
      assert.ok(port, 'the component listener opened with the first component');
      let link: Socket | null = null;
      assert.match(await componentHandshake(port, 'gw.localhost', 'component-secret-2c81', (s) => (link = s)), /<handshake\/>/);
      const [listed] = (await controlRequest(ts.dir, 'sessions', { kind: 'component' })) as { domain: string; connectedSince: string | null }[];
      assert.equal(listed?.domain, 'gw.localhost');
      assert.ok(listed.connectedSince, 'gatehouse sessions --kind component shows it connected');
      // A second connection while it is connected: conflict (the secret is right).
      assert.match(await componentHandshake(port, 'gw.localhost', 'component-secret-2c81'), /conflict/);
      assert.match(await componentHandshake(port, 'gw.localhost', 'wrong-secret-0000'), /not-authorized/, 'the configured secret is checked');
      // Removed by a reload while connected: its link is closed with host-unknown.
      const closed = new Promise<string>((resolve) => {
        let tail = '';
        link!.on('data', (d: Buffer) => void (tail += d.toString()));
        link!.on('close', () => resolve(tail));
      });
      await ts.reload({ components: [] });
      assert.match(await closed, /host-unknown/);
      // Removed (the policy version without it is stored): its domain is unknown to the listener.
      assert.equal(ts.server.ctx.router.componentFor('gw.localhost'), undefined);
      assert.match(await componentHandshake(port, 'gw.localhost', 'component-secret-2c81'), /host-unknown/);
    } finally {
      await ts.stop();
    }
  });

  test('transports added to the configuration are started by a reload and removed ones stopped', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-reload-tr-'));
    const file = join(dir, 'irc.yaml');
    writeFileSync(file, 'irc: {}\n');
    // A stand-in child: it only waits to be stopped.
    const supervisor = createTransportsSupervisor({ command: () => ({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 1000)'] }) });
    const ts = await startTestServer({ logLevel: 'info', modules: modulesWith(supervisor) });
    try {
      assert.deepEqual(supervisor.running(), []);
      await ts.reload({ transports: [{ name: 'irc', config: file }] });
      const [child] = supervisor.running();
      assert.equal(child?.name, 'irc');
      assert.ok(child.pid);
      // The reload waits for the removed transport's process to exit.
      await ts.reload({ transports: [] });
      assert.throws(() => process.kill(child.pid!, 0), /ESRCH/);
      assert.deepEqual(supervisor.running(), []);
      assert.ok(ts.logLines.some((l) => /stopping transport \(removed from the configuration\)/.test(l)));
    } finally {
      await ts.stop();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
