/**
 * contrib/systemd: the unit passes `systemd-analyze verify` without a single complaint, its sandbox
 * rates OK or better in `systemd-analyze security`, the sysusers.d and tmpfiles.d files make the user
 * and directories the unit expects, and the credentials it loads are the ones the server reads.
 * Also the certbot deploy hook (contrib/certbot) that hands renewed certificates to the service.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SYSTEMD_ANALYZE, SYSTEMD_SYSUSERS, SYSTEMD_TMPFILES, skipWithout } from '../helpers/requirements.js';
import { loadBackupKey } from '../../server/modules/backup/crypto.js';
import { keyIdOf, resolveVaultKey } from '../../transports/kit/vault.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const CONTRIB = join(ROOT, 'contrib/systemd');
const UNIT = readFileSync(join(CONTRIB, 'gatehouse.service'), 'utf8');

function run(file: string, args: string[]): Promise<{ code: number; output: string }> {
  return new Promise((resolve) => {
    execFile(file, args, { env: { ...process.env, SYSTEMD_COLORS: '0', SYSTEMD_PAGER: '' } }, (err, stdout, stderr) => {
      resolve({ code: err ? (typeof err.code === 'number' ? err.code : 1) : 0, output: stdout + stderr });
    });
  });
}

function tempDir(t: { after(fn: () => void): void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-systemd-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

/** The values of `key=` lines in the unit (comments left out). */
function settings(key: string): string[] {
  return UNIT.split('\n')
    .filter((l) => l.startsWith(`${key}=`))
    .map((l) => l.slice(key.length + 1));
}

/** A copy of the unit whose ExecStart uses the node running this test (verify checks that it is executable). */
function unitCopy(dir: string, extra = ''): string {
  const file = join(dir, 'gatehouse.service');
  writeFileSync(file, UNIT.replace(/^ExecStart=\/usr\/bin\/node /m, `ExecStart=${process.execPath} `) + extra);
  return file;
}

/** systemd-analyze's lines about the unit (it also prints what it thinks of units the unit names). */
async function complaints(file: string): Promise<{ code: number; lines: string[] }> {
  const { code, output } = await run(SYSTEMD_ANALYZE, ['verify', file]);
  return { code, lines: output.split('\n').filter((l) => l.includes('gatehouse.service')) };
}

describe('the systemd unit', { skip: skipWithout('systemd') }, () => {
  test('systemd-analyze verify has nothing to say about it', async (t) => {
    const dir = tempDir(t);
    const verified = await complaints(unitCopy(dir));
    assert.deepEqual(verified.lines, []);
    assert.equal(verified.code, 0);
    // The same check on a copy with a mistake: it is seen.
    mkdirSync(join(dir, 'wrong'));
    const wrong = await complaints(unitCopy(join(dir, 'wrong'), '\n[Service]\nProtectHome=maybe\n'));
    assert.equal(wrong.lines.length, 1, wrong.lines.join('\n'));
    assert.match(wrong.lines[0]!, /gatehouse\.service:\d+: Failed to parse protect home value, ignoring: maybe/);
  });

  test('systemd-analyze security rates its sandbox OK or better', async () => {
    const { code, output } = await run(SYSTEMD_ANALYZE, ['security', '--offline=yes', '--no-pager', join(CONTRIB, 'gatehouse.service')]);
    assert.equal(code, 0, output);
    const level = /Overall exposure level for gatehouse\.service: ([\d.]+) (\w+)/.exec(output);
    assert.ok(level, output);
    assert.ok(['OK', 'SAFE', 'PERFECT'].includes(level[2]!), `exposure ${level[1]} ${level[2]}`);
  });

  test('it runs bin/gatehouse.js as the gatehouse user with its state in StateDirectory, without privileges, and with V8 able to compile', () => {
    assert.deepEqual(settings('ExecStart'), ['/usr/bin/node /opt/gatehouse/bin/gatehouse.js start --config /etc/gatehouse/config.yaml']);
    assert.deepEqual(settings('User'), ['gatehouse']);
    assert.deepEqual(settings('StateDirectory'), ['gatehouse']);
    assert.deepEqual(settings('StateDirectoryMode'), ['0700'], 'the server warns about a data directory others can read');
    assert.deepEqual(settings('LogsDirectory'), ['gatehouse'], 'for log.file, which the server prunes (P13)');
    assert.deepEqual(settings('WorkingDirectory'), ['/var/lib/gatehouse']);
    assert.deepEqual(settings('CapabilityBoundingSet'), ['']);
    assert.deepEqual(settings('AmbientCapabilities'), []);
    assert.deepEqual(settings('MemoryDenyWriteExecute'), []);
    assert.deepEqual(settings('RestartPreventExitStatus'), ['2'], 'a configuration error is not retried');
    // systemctl reload asks the running server to reload (gatehouse reload), which fails on a refusal.
    assert.deepEqual(settings('ExecReload'), ['/usr/bin/node /opt/gatehouse/bin/gatehouse.js reload --config /etc/gatehouse/config.yaml']);
  });

  test('the credentials it loads are the ones the backups and the transports read', async (t) => {
    const credentials = new Map(settings('LoadCredential').map((v) => v.split(':') as [string, string]));
    assert.deepEqual([...credentials.keys()].sort(), ['backup-key', 'vault-key']);
    for (const file of credentials.values()) assert.match(file, /^\/etc\/gatehouse\/keys\//);
    const dir = tempDir(t);
    const backupKey = randomBytes(32);
    const vaultKey = randomBytes(32);
    writeFileSync(join(dir, 'backup-key'), backupKey.toString('base64') + '\n', { mode: 0o400 });
    writeFileSync(join(dir, 'vault-key'), vaultKey.toString('base64') + '\n', { mode: 0o400 });
    const env = { CREDENTIALS_DIRECTORY: dir };
    assert.deepEqual(loadBackupKey({ env }), backupKey);
    assert.equal((await resolveVaultKey({ env, keyFile: null, keyringAccount: 'irc' })).id, keyIdOf(vaultKey));
  });

  test('systemd-sysusers makes the gatehouse system user, at home in the state directory, without a login shell', async (t) => {
    const root = tempDir(t);
    mkdirSync(join(root, 'etc'));
    const r = await run(SYSTEMD_SYSUSERS, [`--root=${root}`, join(CONTRIB, 'gatehouse.sysusers')]);
    assert.equal(r.code, 0, r.output);
    const user = readFileSync(join(root, 'etc/passwd'), 'utf8').split('\n').find((l) => l.startsWith('gatehouse:'));
    assert.ok(user, 'a passwd entry');
    const [, , uid, , , home, shell] = user.split(':');
    assert.ok(Number(uid) < 1000, `a system user (uid ${uid})`);
    assert.equal(home, '/var/lib/gatehouse');
    assert.equal(shell, '/usr/sbin/nologin');
    assert.match(readFileSync(join(root, 'etc/group'), 'utf8'), /^gatehouse:x:\d+:$/m);
  });

  test('systemd-tmpfiles makes /etc/gatehouse readable by the group and the keys directory root-only', async (t) => {
    const root = tempDir(t);
    // The group is looked up on this machine, which has none called gatehouse: root stands in.
    const conf = join(root, 'gatehouse.conf');
    writeFileSync(conf, readFileSync(join(CONTRIB, 'gatehouse.tmpfiles'), 'utf8').replace(/ gatehouse -$/gm, ' root -'));
    const r = await run(SYSTEMD_TMPFILES, [`--root=${root}`, '--create', conf]);
    assert.equal(r.code, 0, r.output);
    const mode = (p: string) => (statSync(join(root, p)).mode & 0o777).toString(8);
    assert.equal(mode('etc/gatehouse'), '750');
    assert.equal(mode('etc/gatehouse/certs'), '750');
    assert.equal(mode('etc/gatehouse/keys'), '700');
  });
});

describe('the certbot deploy hook', { skip: process.getuid?.() === 0 ? false : 'it sets the owner of the copies to root: run as root' }, () => {
  test('copies the renewed certificate and key for the group only, and reloads the service', async (t) => {
    const dir = tempDir(t);
    const lineage = join(dir, 'live/example.org');
    mkdirSync(lineage, { recursive: true });
    writeFileSync(join(lineage, 'fullchain.pem'), 'CERTIFICATE CHAIN\n');
    writeFileSync(join(lineage, 'privkey.pem'), 'PRIVATE KEY\n', { mode: 0o600 });
    // systemctl is replaced by a script that writes down how it was called.
    const bin = join(dir, 'bin');
    mkdirSync(bin);
    writeFileSync(join(bin, 'systemctl'), `#!/bin/sh\necho "$*" >> ${JSON.stringify(join(dir, 'systemctl.log'))}\n`);
    chmodSync(join(bin, 'systemctl'), 0o755);
    const certs = join(dir, 'certs');
    const hook = join(ROOT, 'contrib/certbot/gatehouse-deploy-hook');
    const env = { PATH: `${bin}:${process.env['PATH']}`, RENEWED_LINEAGE: lineage, GATEHOUSE_CERT_DIR: certs, GATEHOUSE_GROUP: 'root' };
    const r = await new Promise<{ code: number; output: string }>((resolve) =>
      execFile('/bin/sh', [hook], { env }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, output: stdout + stderr })),
    );
    assert.equal(r.code, 0, r.output);
    const out = join(certs, 'example.org');
    assert.deepEqual(readdirSync(out).sort(), ['fullchain.pem', 'privkey.pem']);
    assert.equal(readFileSync(join(out, 'privkey.pem'), 'utf8'), 'PRIVATE KEY\n');
    for (const f of ['fullchain.pem', 'privkey.pem']) assert.equal((statSync(join(out, f)).mode & 0o777).toString(8), '640', f);
    assert.equal((statSync(out).mode & 0o777).toString(8), '750');
    assert.equal(readFileSync(join(dir, 'systemctl.log'), 'utf8'), 'try-reload-or-restart gatehouse.service\n');

    const outside = await new Promise<{ code: number; output: string }>((resolve) =>
      execFile('/bin/sh', [hook], { env: { PATH: env.PATH } }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code ?? 1) : 0, output: stdout + stderr })),
    );
    assert.notEqual(outside.code, 0);
    assert.match(outside.output, /RENEWED_LINEAGE: not set: this script is run by certbot as a deploy hook/);
  });
});
