/** How a stream management journal's records are routed again (journal-recovery.ts reads them), and by which node. */
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { x } from '../../shared/xml/element.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import type { ServerContext } from '../core/context.js';
import type { JournalRecord } from './sm-journal.js';

/**
 * One record of a stream management journal (a dead node's, or this node's previous run's): the
 * message its client had not acknowledged is routed again as for a session that ended (XEP-0198
 * section 4): another resource of the account, or offline storage, with the delay of its first
 * sending. Throws when it could not be routed or stored (journal-recovery.ts tries again).
 */
export async function routeAgain(ctx: ServerContext | null, r: JournalRecord): Promise<void> {
  if (!ctx) throw new Error('the node is not running');
  const el = parseXmlText(r.data, NS.client);
  const to = Jid.tryParse(el?.attrs.to);
  if (!el || !to) return;
  const from = Jid.tryParse(el.attrs.from) ?? Jid.parse(to.domain);
  if (!el.getChildren('delay', NS.delay).some((d) => d.attrs.from === to.domain)) el.append(x('delay', { xmlns: NS.delay, from: to.domain, stamp: r.at }));
  await ctx.router.route(el, from, { kind: 'server' });
}

/** Whether this node routes the journal of a run declared dead (see Membership.declareDead). */
export function journalOf(why: string, recover: boolean | null, owner: boolean): boolean {
  if (why === 'restarted') return false;
  return recover ?? owner;
}
