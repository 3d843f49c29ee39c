/**
 * The chat service's part of an account's XEP-0227 export and import (P23): the account's
 * affiliations with persistent rooms of this server (a Gatehouse extension element; XEP-0227
 * has none for MUC):
 *
 *   <muc-affiliations xmlns='urn:gatehouse:muc:0'>
 *     <room jid='room@conference.example.org' affiliation='member' nick='…'/>
 *   </muc-affiliations>
 *
 * An import restores an affiliation in a room that exists on the importing server; others are
 * skipped (the room is its owner's to recreate). Erasure needs nothing here: the rows reference
 * the account (ON DELETE CASCADE).
 */
import type { AccountDataPart } from '../../core/context.js';
import { x } from '../../../shared/xml/element.js';
import { Jid } from '../../../shared/jid.js';
import { mucStorage } from './storage.js';
import { isAffiliation } from './roles.js';

export const NS_MUC_EXPORT = 'urn:gatehouse:muc:0';

export const mucAccountData: AccountDataPart = {
  async export(storage, account) {
    const rows = await storage.repository(mucStorage).ofAccount(account.id);
    if (rows.length === 0) return [];
    return [
      x(
        'muc-affiliations',
        { xmlns: NS_MUC_EXPORT },
        rows.map((r) => x('room', { jid: r.room, affiliation: r.affiliation, nick: r.nick ?? undefined }, r.reason ? x('reason', {}, r.reason) : null)),
      ),
    ];
  },
  claims: (el) => el.name === 'muc-affiliations' && el.xmlns === NS_MUC_EXPORT,
  check(elements) {
    const problems: string[] = [];
    for (const el of elements) {
      for (const r of el.getChildren('room')) {
        const jid = Jid.tryParse(r.attrs.jid);
        if (!jid?.local || jid.resource) problems.push('MUC: a room address is not a valid room JID');
        else if (!isAffiliation(r.attrs.affiliation) || r.attrs.affiliation === 'none') problems.push(`MUC ${jid.bare}: unknown affiliation`);
      }
    }
    return problems;
  },
  async import(storage, account, elements) {
    const repo = storage.repository(mucStorage);
    const self = `${account.username}@${account.host}`;
    for (const el of elements) {
      for (const r of el.getChildren('room')) {
        const jid = Jid.tryParse(r.attrs.jid);
        if (!jid?.local || !isAffiliation(r.attrs.affiliation) || r.attrs.affiliation === 'none') continue;
        await repo.importAffiliation(jid.domain, jid.local, { jid: self, affiliation: r.attrs.affiliation, nick: r.attrs.nick ?? null, reason: r.getChildText('reason') ?? null }, account.id);
      }
    }
  },
};
