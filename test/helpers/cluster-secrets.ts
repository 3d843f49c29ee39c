/**
 * The files every node of a cluster shares (docs/cluster.md): the test nodes each have a data
 * directory of their own, so each gets the same copies, as an operator copies them from the first node.
 */
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLUSTER_SERVER_SECRET = 'c1'.repeat(32);
export const CLUSTER_MUC_KEY = 'd2'.repeat(32);

/** Writes the shared server secret and occupant-id key into `dir` (unless already there). */
export function writeClusterSecrets(dir: string): void {
  mkdirSync(dir, { recursive: true });
  for (const [file, value] of [
    ['server-secret', CLUSTER_SERVER_SECRET],
    ['muc-occupant-id.key', CLUSTER_MUC_KEY],
  ] as const) {
    const path = join(dir, file);
    if (!existsSync(path)) writeFileSync(path, value + '\n', { mode: 0o600 });
  }
}
