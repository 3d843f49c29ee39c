/**
 * P23 / P2: what an XEP-0227 import may do. SCRAM iteration counts are bounded (a huge one would
 * stall every PLAIN login of the account), `--dry-run` shows what would be created or replaced,
 * an administrator's account is only replaced when named, and the import lists what it replaced.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { exportAccounts, parseExport, renderExport, ExportError, IMPORT_MAX_ITERATIONS, IMPORT_MIN_ITERATIONS } from '../../server/modules/export/export.js';
import { loadConfig, parseConfig } from '../../server/config/index.js';
import { openStorage } from '../../storage/datasource.js';
import { makeVerifierAsync } from '../../server/accounts/service.js';
import { runCli } from '../helpers/server-process.js';

const PASSWORD = 'Correct-Horse-7-Battery';
const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

function scramUser(name: string, iterations: string): string {
  const b64 = (n: number) => Buffer.alloc(n, 7).toString('base64');
  return `<user name='${name}'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'><iter-count>${iterations}</iter-count><salt>${b64(16)}</salt><server-key>${b64(32)}</server-key><stored-key>${b64(32)}</stored-key></scram-credentials></user>`;
}
const file = (...users: string[]) => `<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'>${users.join('')}</host></server-data>`;

test('P2 import refuses SCRAM iteration counts outside 4096..10,000,000, naming the account and the bounds', () => {
  assert.equal(IMPORT_MIN_ITERATIONS, 4096);
  assert.equal(IMPORT_MAX_ITERATIONS, 10_000_000);
  for (const n of ['1', '4095', '10000001', String(2 ** 53 - 1)]) {
    assert.throws(
      () => parseExport(file(scramUser('ok', '4096'), scramUser('mallory', n)), []),
      (err: Error) => err instanceof ExportError && /mallory@localhost/.test(err.message) && /4,?096/.test(err.message) && /10,?000,?000/.test(err.message),
      n,
    );
  }
  for (const n of ['4096', '10000', '10000000']) assert.equal(parseExport(file(scramUser('ok', n)), []).users[0]!.verifiers[0]!.iterations, Number(n));
});

/** A configuration with one admin and accounts alice (admin), bob and carol in the database. */
async function setup(): Promise<{ cfgFile: string; dir: string; xml: string }> {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-import-limits-'));
  dirs.push(dir);
  const raw = { dataDir: path.join(dir, 'data'), hosts: [{ domain: 'localhost' }], admins: ['alice@localhost'], auth: { scramIterations: 4096 } };
  const cfgFile = path.join(dir, 'gatehouse.yaml');
  writeFileSync(cfgFile, stringify(raw));
  const storage = await openStorage(parseConfig(raw, dir).storage);
  try {
    const accounts = [];
    for (const name of ['alice', 'bob', 'carol']) {
      const a = await storage.accounts.create(name, 'localhost', [await makeVerifierAsync(PASSWORD, 'SHA-256', 4096)], new Date());
      accounts.push(a!);
    }
    const xml = renderExport(await exportAccounts(storage, accounts, [])).replace('</host>', `${scramUser('newcomer', '4096')}</host>`);
    return { cfgFile, dir, xml };
  } finally {
    await storage.close();
  }
}

async function accountIds(cfgFile: string): Promise<Record<string, number>> {
  const storage = await openStorage(loadConfig(cfgFile).storage);
  try {
    const out: Record<string, number> = {};
    for (const a of await storage.accounts.list()) out[a.username] = a.id;
    return out;
  } finally {
    await storage.close();
  }
}

test('P23 gatehouse user import --dry-run lists what would be created and replaced and changes nothing', async () => {
  const { cfgFile, dir, xml } = await setup();
  const input = path.join(dir, 'in.xml');
  writeFileSync(input, xml, { mode: 0o600 });
  const before = await accountIds(cfgFile);
  const r = await runCli(['user', 'import', input, '--config', cfgFile, '--dry-run']);
  assert.equal(r.code, 0, r.out);
  assert.match(r.stdout, /would create newcomer@localhost/);
  assert.match(r.stdout, /would replace bob@localhost/);
  assert.match(r.stdout, /would replace carol@localhost/);
  assert.match(r.stdout, /would replace alice@localhost .*administrator.*--replace-admin alice@localhost/);
  assert.match(r.stdout, /dry run: nothing was changed/);
  assert.deepEqual(await accountIds(cfgFile), before, 'no account was created, deleted or replaced');
});

test('P23 import --force does not replace an administrator unless named with --replace-admin, and lists what it replaced', async () => {
  const { cfgFile, dir, xml } = await setup();
  const input = path.join(dir, 'in.xml');
  writeFileSync(input, xml, { mode: 0o600 });
  const before = await accountIds(cfgFile);

  const refused = await runCli(['user', 'import', input, '--config', cfgFile, '--force']);
  assert.equal(refused.code, 1, refused.out);
  assert.match(refused.stderr, /alice@localhost is an administrator .*--replace-admin alice@localhost/);
  assert.deepEqual(await accountIds(cfgFile), before, 'nothing of the file was written');

  const wrongName = await runCli(['user', 'import', input, '--config', cfgFile, '--force', '--replace-admin', 'bob@localhost']);
  assert.notEqual(wrongName.code, 0);
  assert.deepEqual(await accountIds(cfgFile), before);

  const done = await runCli(['user', 'import', input, '--config', cfgFile, '--force', '--replace-admin', 'alice@localhost']);
  assert.equal(done.code, 0, done.out);
  assert.match(done.stdout, /replaced alice@localhost \(administrator\)/);
  assert.match(done.stdout, /replaced bob@localhost/);
  assert.match(done.stdout, /replaced carol@localhost/);
  assert.match(done.stdout, /created newcomer@localhost/);
  assert.match(done.stdout, /imported 4 accounts: 3 replaced, 1 created/);
  const after = await accountIds(cfgFile);
  for (const name of ['alice', 'bob', 'carol']) assert.notEqual(after[name], before[name], `${name} was replaced`);
  assert.ok(after.newcomer);
});

test('P2 gatehouse user import names the account and the bounds of a refused iteration count', async () => {
  const { cfgFile, dir } = await setup();
  const input = path.join(dir, 'huge.xml');
  writeFileSync(input, file(scramUser('mallory', String(2 ** 40))), { mode: 0o600 });
  const r = await runCli(['user', 'import', input, '--config', cfgFile]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /gatehouse user import: mallory@localhost: SCRAM-SHA-256 iteration count .* must be between 4,096 and 10,000,000/);
});
