/**
 * Secrets handed over by systemd (LoadCredential=, LoadCredentialEncrypted=, SetCredential=): the
 * service manager puts each one in a file named after it in the directory $CREDENTIALS_DIRECTORY,
 * readable by this service only (on a memory file system where it can). Gatehouse looks there
 * for the keys it needs (contrib/systemd/gatehouse.service names them):
 *
 * - `vault-key`: the transports' credential vault key (transports/kit/vault.ts); a transport first
 *   looks for `vault-key.NAME` (NAME: irc, matrix, discord), so each may have its own;
 * - `backup-key`: the backup encryption key (server/modules/backup/crypto.ts).
 */
import { statSync } from 'node:fs';
import path from 'node:path';

export const CREDENTIALS_DIRECTORY_ENV = 'CREDENTIALS_DIRECTORY';

/**
 * The file of the first of `names` that $CREDENTIALS_DIRECTORY holds, or null (no directory set,
 * or none of them in it). Names with a path separator are never looked up.
 */
export function credentialFile(names: string[], env: NodeJS.ProcessEnv = process.env): string | null {
  const dir = env[CREDENTIALS_DIRECTORY_ENV];
  if (!dir) return null;
  for (const name of names) {
    if (name === '' || name.includes('/') || name.includes('\\') || name === '.' || name === '..') continue;
    const file = path.join(dir, name);
    try {
      if (statSync(file).isFile()) return file;
    } catch {
      // not there: the next name
    }
  }
  return null;
}
