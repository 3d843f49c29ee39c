/**
 * `gatehouse blocks list|lift` (P7), declared by the failed-login guard: works on the database directly, so it also works while the
 * server runs (a lift reaches the running server at the next attempt from that address, or within
 * the guard's poll interval).
 */
import { CONFIG_FLAG, UsageError, commandSet, configFrom, withStorage } from '../../cli/kit.js';
import { Jid } from '../../../shared/jid.js';
import { parseIp } from '../../../shared/ip-addresses.js';
import type { AuthBlock, BlockKind } from '../../../storage/types.js';
import { ipSubject } from './subjects.js';

function describeBlock(b: AuthBlock, now: Date): string {
  const state = b.expiresAt.getTime() > now.getTime() ? `until ${b.expiresAt.toISOString()}` : `expired ${b.expiresAt.toISOString()}`;
  return `${b.kind.padEnd(8)} ${b.subject}\t${state}\t(${b.failures} failures, since ${b.createdAt.toISOString()})`;
}

/** What an admin typed: an IP (counted per /64 for IPv6), a listed subject, or an account JID. */
export function blockTarget(arg: string): { kind: BlockKind; subject: string } {
  const text = arg.trim();
  const slash = text.lastIndexOf('/');
  if (slash > 0 && text.slice(slash + 1) === '64' && parseIp(text.slice(0, slash))) return { kind: 'ip', subject: ipSubject(text.slice(0, slash)) };
  if (parseIp(text)) return { kind: 'ip', subject: ipSubject(text) };
  const jid = Jid.tryParse(text);
  if (jid && jid.local && !jid.resource) return { kind: 'account', subject: jid.bare };
  throw new UsageError(`not an IP address, IPv6 /64 or account JID: ${arg}`);
}

export const blockCommands = commandSet(
  {
    name: 'blocks list',
    summary: 'list temporary login blocks (P7); --all includes expired ones not yet swept',
    flags: [{ name: 'all', type: 'boolean', doc: 'include expired blocks the sweeper has not removed yet' }, CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      const now = new Date();
      const blocks = await withStorage(config, ctx, (storage) => storage.privacyLogs.listBlocks(args.flags.has('all') ? undefined : now));
      if (blocks.length === 0) console.log('no blocks');
      for (const b of blocks) console.log(describeBlock(b, now));
      return 0;
    },
  },
  {
    name: 'blocks lift',
    summary: 'lift a temporary login block (the server notices at the next attempt)',
    args: [{ name: 'TARGET', doc: 'an IP address, an IPv6 prefix as ADDRESS/64, or an account USER@DOMAIN (not needed with --all)', optional: true }],
    flags: [{ name: 'all', type: 'boolean', doc: 'lift every block' }, CONFIG_FLAG],
    server: 'no',
    async run(args, ctx) {
      const config = configFrom(args);
      if (args.flags.has('all')) {
        const n = await withStorage(config, ctx, (storage) => storage.privacyLogs.liftAllBlocks());
        console.log(`lifted ${n} block${n === 1 ? '' : 's'}`);
        return 0;
      }
      const arg = args.positional[0];
      if (!arg) throw new UsageError('give an IP address, an IPv6 /64, an account JID, or --all');
      const { kind, subject } = blockTarget(arg);
      const lifted = await withStorage(config, ctx, (storage) => storage.privacyLogs.liftBlock(kind, subject));
      if (!lifted) {
        console.log(`no block for ${kind} ${subject}`);
        return 1;
      }
      console.log(`lifted the block of ${kind} ${subject}`);
      return 0;
    },
  },
);
