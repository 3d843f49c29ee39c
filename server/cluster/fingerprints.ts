/**
 * The files every node of a cluster must share (docs/cluster.md, "What it needs"), checked rather
 * than only documented: each node tells the others, in its heartbeat, a keyed fingerprint of each
 * file (an HMAC of a constant under the file's secret: it tells whether two secrets are equal and
 * nothing else about them), and a node whose fingerprint differs from a running node's refuses to
 * join, naming the file to copy.
 * - `server-secret`: the fake SCRAM salts (P17: two secrets let a client tell existing accounts from
 *   unknown ones by asking two nodes) and the dialback keys;
 * - `muc-occupant-id.key`: occupant ids (XEP-0421) of a room that moves to another node.
 */
import { createHmac } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { readOrCreateServerSecret, SERVER_SECRET_FILE } from '../auth/server-secret.js';

const MUC_KEY_FILE = 'muc-occupant-id.key';
const CONSTANT = 'gatehouse cluster: the same secret on every node';

/** File name → fingerprint (absent: this node has no such file yet). */
export type Fingerprints = Record<string, string>;

function fingerprint(secret: Buffer): string {
  return createHmac('sha256', secret).update(CONSTANT).digest('hex').slice(0, 32);
}

/** This node's fingerprints: the server secret (made now if missing, as the server would) and the occupant-id key if there is one. */
export function ownFingerprints(dataDir: string): Fingerprints {
  const secret = readOrCreateServerSecret(dataDir);
  const out: Fingerprints = { [SERVER_SECRET_FILE]: fingerprint(secret) };
  secret.fill(0);
  try {
    const text = readFileSync(join(dataDir, MUC_KEY_FILE), 'utf8').trim();
    if (/^[0-9a-f]{64}$/.test(text)) out[MUC_KEY_FILE] = fingerprint(Buffer.from(text, 'hex'));
  } catch {
    // Not made yet (the first start with group chat makes it).
  }
  return out;
}

/**
 * What a running node's fingerprints say about this node's: the first file that differs, or that
 * the other node has and this one lacks (the group chat module would make a new, different key).
 */
export function mismatch(own: Fingerprints, theirs: Fingerprints | undefined): string | null {
  if (!theirs) return null;
  for (const [file, fp] of Object.entries(theirs)) {
    if (typeof fp !== 'string') continue;
    if (own[file] !== fp) return file;
  }
  return null;
}

export function mismatchError(dataDir: string, file: string, peer: string, node: string): Error {
  return new Error(
    `cluster: ${join(dataDir, file)} differs from the one of node ${peer} (every node needs the same ${file}: copy it from a running node's data directory, then start ${node} again)`,
  );
}
