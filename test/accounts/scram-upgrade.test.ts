/**
 * The upgrade path for accounts imported with SCRAM-SHA-1 verifiers only (Prosody 0.12, ejabberd
 * with `auth_scram_hash: sha`): a host offers no SCRAM hash stronger than its accounts can serve
 * (auth.offerCoverage), so a client that picks the strongest offered mechanism (slixmpp, as
 * Conversations, Gajim and Dino do) still logs in; the password seen in clear (a PLAIN login over
 * TLS, an in-band password change) adds the missing SCRAM-SHA-256 verifier; once every account has
 * one the host offers SCRAM-SHA-256(-PLUS) and slixmpp uses it. `gatehouse user hashes` counts.
 * On SQLite, MariaDB and PostgreSQL (storage/test-databases.ts).
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { runCli, startServerProcess } from '../helpers/server-process.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { skipWithout } from '../helpers/requirements.js';
import { SlixmppPeer } from '../e2e/slixmpp-peer.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { StorageConfig } from '../../storage/datasource.js';
import { makeVerifierAsync } from '../../server/accounts/service.js';
import { offeredHashes } from '../../server/auth/scram-offer.js';
import type { ScramVerifier, VerifierCoverage } from '../../storage/types.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const PASSWORDS = { alice: 'alice Prosody pw 1', bob: 'bob-Prosody-pw-2', bobNew: 'bob new pw 3' };

const temps: string[] = [];
after(() => {
  for (const d of temps) rmSync(d, { recursive: true, force: true });
});

/** An export as Prosody 0.12's prosody-migrator writes it: SCRAM-SHA-1 credentials only. */
async function prosodyExport(users: Record<string, string>): Promise<string> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-scram-export-'));
  temps.push(dir);
  for (const [name, password] of Object.entries(users)) {
    const v = await makeVerifierAsync(password, 'SHA-1', 4096);
    const creds =
      `<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>${v.iterations}</iter-count>` +
      `<salt>${v.salt.toString('base64')}</salt><server-key>${v.serverKey.toString('base64')}</server-key><stored-key>${v.storedKey.toString('base64')}</stored-key></scram-credentials>`;
    writeFileSync(path.join(dir, `${name}@localhost.xml`), `<?xml version='1.0' encoding='utf-8'?>\n<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='${name}'>${creds}</user></host></server-data>\n`);
  }
  return dir;
}

function configFile(storage: StorageConfig, auth: Record<string, unknown> = {}): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-scram-'));
  temps.push(dir);
  const file = path.join(dir, 'gatehouse.yaml');
  const raw = storage.type === 'sqlite' ? { type: 'sqlite', path: storage.path } : { type: storage.type, url: storage.url };
  writeFileSync(file, stringify({ dataDir: dir, hosts: [{ domain: 'localhost' }], storage: raw, auth: { scramIterations: 4096, ...auth } }));
  return file;
}

async function cli(args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, r.out);
  return r.stdout;
}

async function mechanisms(ts: TestServer): Promise<string[]> {
  const c = await ts.client();
  try {
    return c.mechanisms();
  } finally {
    await c.close();
  }
}

/** Waits (bounded) until a new connection is offered `mechanism`: the server counts again after a change it made. */
async function offered(ts: TestServer, mechanism: string): Promise<string[]> {
  let last: string[] = [];
  for (let i = 0; i < 200; i++) {
    last = await mechanisms(ts);
    if (last.includes(mechanism)) return last;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${mechanism} never offered; last offer: ${last.join(' ')}`);
}

/** slixmpp with its own choice of mechanism: the one it used. */
async function slixmppLogin(ts: TestServer, user: string, password: string): Promise<string> {
  const peer = SlixmppPeer.spawn(['127.0.0.1', String(ts.port), `${user}@localhost`, password, 'nobody@localhost', 'auto']);
  try {
    const started = await peer.expect((e) => e.event === 'session_start' || e.event === 'disconnected', `${user}'s login`, 30_000);
    assert.equal(started.event, 'session_start', JSON.stringify(peer.log));
    assert.deepEqual(peer.log.filter((e) => e.event === 'failed_auth'), [], `${user} went through a failed authentication`);
    peer.command({ cmd: 'quit' });
    await peer.exited;
    return String(started.mechanism);
  } finally {
    peer.proc.kill();
  }
}

async function failureOf(ts: TestServer, user: string, password: string, mechanism: string): Promise<string> {
  const c = await ts.client();
  try {
    const outcome = await c.authenticate(user, password, mechanism);
    assert.equal(outcome.name, 'failure', `${mechanism} as ${user}`);
    return outcome.toString();
  } finally {
    await c.close();
  }
}

const hashesOf = (vs: ScramVerifier[]) => vs.map((v) => v.hash).sort();

for (const target of storageTargets()) {
  test(`P2 accounts imported from Prosody with SCRAM-SHA-1 only: slixmpp logs in, PLAIN over TLS and a password change add SCRAM-SHA-256, then slixmpp uses SCRAM-SHA-256-PLUS (${target.name})`, { skip: skipWithout('slixmpp') }, async () => {
    const { config: storage, drop } = await target.make();
    try {
      const cfg = configFile(storage);
      await cli(['import', await prosodyExport({ alice: PASSWORDS.alice, bob: PASSWORDS.bob }), '--config', cfg]);
      assert.match(await cli(['user', 'hashes', '--config', cfg]), /^localhost: 2 accounts; SCRAM-SHA-1 2, SCRAM-SHA-256 0; 0 lack SCRAM-SHA-1, 2 lack SCRAM-SHA-256; offers SCRAM-SHA-1 \(auth.offerCoverage 100%\)$/m);

      const ts = await startTestServer({ storage });
      try {
        const { accounts } = ts.server.ctx.storage;
        const alice = (await accounts.get('alice', 'localhost'))!;
        const importedSha1 = (await accounts.getVerifiers(alice.id))[0]!;

        // SCRAM-SHA-256 is not offered while accounts lack it; SHA-1 (with channel binding) and PLAIN are.
        const before = await mechanisms(ts);
        assert.deepEqual(before, ['SCRAM-SHA-1-PLUS', 'SCRAM-SHA-1', 'PLAIN']);
        assert.match(await slixmppLogin(ts, 'alice', PASSWORDS.alice), /^SCRAM-SHA-1/);

        // A client that insists on SCRAM-SHA-256 gets what a wrong password or an unknown account gets (P17).
        const noVerifier = await failureOf(ts, 'alice', PASSWORDS.alice, 'SCRAM-SHA-256');
        assert.equal(noVerifier, await failureOf(ts, 'nobody', PASSWORDS.alice, 'SCRAM-SHA-256'));
        assert.equal(noVerifier, await failureOf(ts, 'alice', 'not her password', 'SCRAM-SHA-1'));
        assert.match(noVerifier, /<not-authorized\/>/);

        // PLAIN over TLS: the password in clear adds the SHA-256 verifier; the imported SHA-1 one stays.
        const plain = await ts.client();
        await plain.login('alice', PASSWORDS.alice, { mechanism: 'PLAIN' });
        await plain.close();
        const upgraded = await accounts.getVerifiers(alice.id);
        assert.deepEqual(hashesOf(upgraded), ['SHA-1', 'SHA-256']);
        assert.ok(upgraded.find((v) => v.hash === 'SHA-1')!.storedKey.equals(importedSha1.storedKey), 'the imported SHA-1 verifier is kept');
        assert.equal(upgraded.find((v) => v.hash === 'SHA-256')!.iterations, 4096, 'made with auth.scramIterations');
        // Adding never replaces: another SHA-256 verifier (say, from a second login at once) is not taken.
        assert.deepEqual(await accounts.addVerifiers(alice.id, [await makeVerifierAsync('other', 'SHA-256', 4096)]), []);
        assert.ok((await accounts.getVerifiers(alice.id)).find((v) => v.hash === 'SHA-256')!.storedKey.equals(upgraded.find((v) => v.hash === 'SHA-256')!.storedKey));

        // bob still lacks it: still not offered, though alice could now use it.
        assert.ok(!(await mechanisms(ts)).includes('SCRAM-SHA-256'));
        const sha256 = await ts.client();
        await sha256.login('alice', PASSWORDS.alice, { mechanism: 'SCRAM-SHA-256' });
        await sha256.close();

        // bob changes his password in band (XEP-0077), after a SCRAM-SHA-1 login: verifiers for every hash.
        const bob = await ts.client();
        await bob.login('bob', PASSWORDS.bob, { mechanism: 'SCRAM-SHA-1' });
        const changed = await bob.iq(x('iq', { type: 'set', to: 'localhost' }, x('query', { xmlns: NS.register }, x('username', {}, 'bob'), x('password', {}, PASSWORDS.bobNew))));
        assert.equal(changed.attrs.type, 'result', changed.toString());
        await bob.close();

        // Every account can serve SCRAM-SHA-256 now: offered, with channel binding, and slixmpp takes it.
        assert.deepEqual(await offered(ts, 'SCRAM-SHA-256'), ['SCRAM-SHA-256-PLUS', 'SCRAM-SHA-1-PLUS', 'SCRAM-SHA-256', 'SCRAM-SHA-1', 'PLAIN']);
        assert.equal(await slixmppLogin(ts, 'alice', PASSWORDS.alice), 'SCRAM-SHA-256-PLUS');
        assert.equal(await slixmppLogin(ts, 'bob', PASSWORDS.bobNew), 'SCRAM-SHA-256-PLUS');
        assert.match(await cli(['user', 'hashes', '--config', cfg]), /^localhost: 2 accounts; SCRAM-SHA-1 2, SCRAM-SHA-256 2; 0 lack SCRAM-SHA-1, 0 lack SCRAM-SHA-256; offers SCRAM-SHA-1, SCRAM-SHA-256 /m);

        const log = ts.logLines.join('\n');
        assert.match(log, /added SCRAM verifiers at a PLAIN login.*alice@localhost.*SHA-256/);
        for (const pw of Object.values(PASSWORDS)) assert.ok(!log.includes(pw), 'no password in the log');
        for (const v of await accounts.getVerifiers(alice.id)) assert.ok(!log.includes(v.storedKey.toString('base64')) && !log.includes(v.serverKey.toString('base64')), 'no verifier in the log');
      } finally {
        await ts.stop();
      }
    } finally {
      await drop();
    }
  });
}

test('auth.offerCoverage: a threshold below 100 offers SCRAM-SHA-256 once that share of accounts has it; SCRAM-SHA-256 for an account without it is not-authorized', async () => {
  const ts = await startTestServer({ config: { auth: { offerCoverage: 50 } } });
  try {
    const { storage, clock, services } = ts.server.ctx;
    const offer = services.need('scram-offer');
    const sha1 = (pw: string) => makeVerifierAsync(pw, 'SHA-1', 4096);
    await storage.accounts.create('one', 'localhost', [await sha1('pw-one')], clock.now());
    await storage.accounts.create('two', 'localhost', [await sha1('pw-two')], clock.now());
    await storage.accounts.create('three', 'localhost', [await sha1('pw-three'), await makeVerifierAsync('pw-three', 'SHA-256', 4096)], clock.now());
    // Written behind the server's back (as `gatehouse import` does): seen at the next count.
    await offer.refresh();
    assert.ok(!(await mechanisms(ts)).includes('SCRAM-SHA-256'), '1 of 3 is below 50%');
    const two = await ts.client();
    await two.login('two', 'pw-two', { mechanism: 'PLAIN' });
    await two.close();
    assert.ok((await offered(ts, 'SCRAM-SHA-256')).includes('SCRAM-SHA-256-PLUS'), '2 of 3 reach 50%');
    // The account still without it fails as with a wrong password, and the server goes on.
    assert.match(await failureOf(ts, 'one', 'pw-one', 'SCRAM-SHA-256'), /<not-authorized\/>/);
    assert.match(await failureOf(ts, 'one', 'pw-one', 'SCRAM-SHA-256-PLUS'), /<not-authorized\/>/);
    const one = await ts.client();
    await one.login('one', 'pw-one', { mechanism: 'SCRAM-SHA-1-PLUS' });
    await one.close();
  } finally {
    await ts.stop();
  }
});

test('gatehouse import into a running server: SCRAM-SHA-256 is off the host\'s offer when the command returns; gatehouse user passwd puts it back', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-scram-running-'));
  temps.push(dir);
  const cfg = path.join(dir, 'gatehouse.yaml');
  const server = await startServerProcess(dir, {
    dataDir: dir,
    hosts: [{ domain: 'localhost', registration: 'open' }],
    listen: { c2s: [{ host: '127.0.0.1', port: 0 }], c2sDirectTls: [], https: [], components: [], s2s: [], admin: [] },
    auth: { scramIterations: 4096 },
    log: { level: 'warn' },
  });
  const offer = async () => {
    const c = await TestClient.connect({ port: server.port });
    const m = c.mechanisms();
    c.destroy();
    return m;
  };
  try {
    const carol = await TestClient.connect({ port: server.port });
    assert.equal((await carol.register('carol', 'carol-pw')).attrs.type, 'result');
    carol.destroy();
    assert.ok((await offer()).includes('SCRAM-SHA-256-PLUS'), 'carol has every verifier');

    await cli(['import', await prosodyExport({ dave: 'dave old pw' }), '--config', cfg]);
    assert.deepEqual(await offer(), ['SCRAM-SHA-1-PLUS', 'SCRAM-SHA-1', 'PLAIN'], 'counted again before the import command returned');
    const dave = await TestClient.connect({ port: server.port });
    await dave.login('dave', 'dave old pw', { mechanism: 'SCRAM-SHA-1' });
    dave.destroy();

    const pwFile = path.join(dir, 'new-password');
    writeFileSync(pwFile, 'dave new pw\n', { mode: 0o600 });
    await cli(['user', 'passwd', 'dave@localhost', '--config', cfg, '--password-file', pwFile]);
    assert.ok((await offer()).includes('SCRAM-SHA-256-PLUS'), 'counted again before the passwd command returned');
    const again = await TestClient.connect({ port: server.port });
    await again.login('dave', 'dave new pw', { mechanism: 'SCRAM-SHA-256' });
    again.destroy();
  } finally {
    server.proc.kill('SIGTERM');
    await server.exited;
  }
});

test('offeredHashes: the strongest hash the threshold share of accounts has, and the weaker configured ones', () => {
  const c = (accounts: number, sha1: number, sha256: number): VerifierCoverage => ({ host: 'h', accounts, withHash: { 'SHA-1': sha1, 'SHA-256': sha256 } });
  const both = ['SHA-1', 'SHA-256'] as const;
  assert.deepEqual(offeredHashes(both, undefined, 100), ['SHA-1', 'SHA-256'], 'not counted yet');
  assert.deepEqual(offeredHashes(both, c(0, 0, 0), 100), ['SHA-1', 'SHA-256'], 'no accounts');
  assert.deepEqual(offeredHashes(both, c(10, 10, 9), 100), ['SHA-1']);
  assert.deepEqual(offeredHashes(both, c(10, 10, 10), 100), ['SHA-1', 'SHA-256']);
  assert.deepEqual(offeredHashes(both, c(10, 10, 9), 90), ['SHA-1', 'SHA-256']);
  assert.deepEqual(offeredHashes(both, c(10, 10, 0), 0), ['SHA-1', 'SHA-256'], '0: every configured hash');
  // Accounts with SHA-256 only (made by an older Gatehouse test helper, or ejabberd with sha256): SHA-1 stays offered for old clients.
  assert.deepEqual(offeredHashes(both, c(10, 0, 10), 100), ['SHA-1', 'SHA-256']);
  // Only SHA-256 configured and nobody has it: it is still the one offered (PLAIN then upgrades).
  assert.deepEqual(offeredHashes(['SHA-256'], c(10, 10, 0), 100), ['SHA-256']);
  assert.deepEqual(offeredHashes(['SHA-1'], c(10, 0, 10), 100), ['SHA-1']);
  // Nothing reaches the threshold: the hash most accounts have.
  assert.deepEqual(offeredHashes(both, c(10, 6, 4), 100), ['SHA-1']);
});
