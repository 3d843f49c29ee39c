/** Drives test/e2e/slixmpp_peer.py (Debian's python3-slixmpp) from the end-to-end tests. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { createInterface } from 'node:readline';

import { PYTHON } from '../helpers/requirements.js';
const PEER_SCRIPT = fileURLToPath(new URL('../../../test/e2e/slixmpp_peer.py', import.meta.url));
const PEP_PEER_SCRIPT = fileURLToPath(new URL('../../../test/e2e/slixmpp_pep_peer.py', import.meta.url));
const MUC_PEER_SCRIPT = fileURLToPath(new URL('../../../test/e2e/slixmpp_muc_peer.py', import.meta.url));

export interface PeerEvent {
  event: string;
  [k: string]: unknown;
}

export class SlixmppPeer {
  private readonly events: PeerEvent[] = [];
  private waiters: { match: (e: PeerEvent) => boolean; resolve: (e: PeerEvent) => void }[] = [];
  readonly stderr: string[] = [];
  /** Every event seen, in order (also those taken by expect()). */
  readonly log: PeerEvent[] = [];
  readonly exited: Promise<void>;
  private tags = 0;

  constructor(readonly proc: ChildProcessWithoutNullStreams) {
    this.exited = new Promise((resolve) => proc.on('exit', () => resolve()));
    createInterface({ input: proc.stdout }).on('line', (line) => {
      let e: PeerEvent;
      try {
        e = JSON.parse(line) as PeerEvent;
      } catch {
        return;
      }
      this.log.push(e);
      const i = this.waiters.findIndex((w) => w.match(e));
      if (i >= 0) this.waiters.splice(i, 1)[0]!.resolve(e);
      else this.events.push(e);
    });
    proc.stderr.on('data', (d) => this.stderr.push(String(d)));
  }

  /** Starts slixmpp_peer.py: HOST PORT JID PASSWORD PEER_JID [MECHANISM] (see the script). */
  static spawn(args: string[], env?: Record<string, string>): SlixmppPeer {
    return new SlixmppPeer(spawn(PYTHON, [PEER_SCRIPT, ...args], env ? { env: { ...process.env, ...env } } : {}));
  }

  /** Starts slixmpp_pep_peer.py: HOST PORT JID PASSWORD [INTERESTS [PLUGINS]] (see the script). */
  static spawnPep(args: string[]): SlixmppPeer {
    return new SlixmppPeer(spawn(PYTHON, [PEP_PEER_SCRIPT, ...args]));
  }

  /** Starts slixmpp_muc_peer.py: HOST PORT JID PASSWORD [MECHANISM] (see the script). */
  static spawnMuc(args: string[]): SlixmppPeer {
    return new SlixmppPeer(spawn(PYTHON, [MUC_PEER_SCRIPT, ...args]));
  }

  expect(match: (e: PeerEvent) => boolean, what: string, timeoutMs = 15_000): Promise<PeerEvent> {
    const i = this.events.findIndex(match);
    if (i >= 0) return Promise.resolve(this.events.splice(i, 1)[0]!);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`slixmpp: timed out waiting for ${what}; events: ${JSON.stringify(this.events)}; stderr: ${this.stderr.join('').slice(-2000)}`)), timeoutMs);
      this.waiters.push({ match, resolve: (e) => (clearTimeout(timer), resolve(e)) });
    });
  }

  command(cmd: Record<string, unknown>): void {
    this.proc.stdin.write(JSON.stringify(cmd) + '\n');
  }

  /** Sends a tagged command and resolves with its answer: a 'result' or an 'error' event. */
  call(cmd: Record<string, unknown>): Promise<PeerEvent> {
    const tag = `t${++this.tags}`;
    this.command({ ...cmd, tag });
    return this.expect((e) => (e.event === 'result' || e.event === 'error') && e.tag === tag, `the answer to ${String(cmd.cmd)}`);
  }
}
