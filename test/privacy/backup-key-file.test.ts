/** P14: the backup key file is checked like the vault's: others must not be able to read it. */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { BackupError, loadBackupKey } from '../../server/modules/backup/crypto.js';
import { runCli } from '../helpers/server-process.js';

const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-backup-key-'));
after(() => rmSync(dir, { recursive: true, force: true }));

function keyFile(name: string, mode: number): { file: string; text: string } {
  const file = path.join(dir, name);
  const text = randomBytes(32).toString('base64');
  writeFileSync(file, text + '\n', { mode });
  chmodSync(file, mode);
  return { file, text };
}

test('P14 a backup key file readable by group or others is refused', () => {
  const good = keyFile('private.key', 0o600);
  assert.equal(loadBackupKey({ keyFile: good.file, env: {} })?.length, 32);
  for (const mode of [0o644, 0o640, 0o604, 0o660]) {
    const { file, text } = keyFile(`loose-${mode.toString(8)}.key`, mode);
    assert.throws(
      () => loadBackupKey({ keyFile: file, env: {} }),
      (err: Error) => err instanceof BackupError && err.message.includes(file) && err.message.includes(`mode ${mode.toString(8)}`) && /chmod 600/.test(err.message) && !err.message.includes(text),
    );
  }
});

test('P14 the backup commands name the loose key file and its mode', async () => {
  const { file, text } = keyFile('cli.key', 0o644);
  const r = await runCli(['backup', 'verify', path.join(dir, 'no-such-backup'), '--key-file', file]);
  assert.equal(r.code, 1);
  assert.match(r.stderr, /gatehouse backup verify: the backup key file .*cli\.key can be read or written by other users \(mode 644\); run chmod 600/);
  assert.ok(!r.out.includes(text), 'the key is not printed');
});
