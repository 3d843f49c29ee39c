import type { GatehouseModule } from '../core/context.js';
import type { ClientSession } from '../core/session.js';
import { replyError, replyResult } from '../core/iq.js';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { mayViewPresenceInfo } from '../core/subscription-states.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { utcDateTime } from '../../shared/datetime.js';

/** accountState key of the last logout record: `<last at='ISO'>status text</last>`. */
export const LAST_KEY = 'last';
const MAX_STATUS_CHARS = 1024;

function statusOf(presence: Element | undefined | null): string | undefined {
  const status = presence?.getChild('status')?.text();
  return status ? status.slice(0, MAX_STATUS_CHARS) : undefined;
}

/**
 * XEP-0012 last activity. To a host: seconds since the server started. To an account's bare JID:
 * answered by the server for the owner and for contacts with a presence subscription ('from' or
 * 'both'); 0 while a resource is available, otherwise the seconds since the last resource went
 * away and the status text of its unavailable presence. Everyone else gets forbidden (XEP-0012
 * section 4.1), whether or not the account exists (P17).
 *
 * The logout time is stored per account in accountState 'last' (deleted with the account) and
 * written when the account's last available resource becomes unavailable or disconnects.
 */
export function createLastActivityModule(): GatehouseModule {
  return {
    name: 'last-activity',
    specs: [{ id: 'XEP-0012', version: '2.0', status: 'complete', note: 'server uptime; user last logout for subscribed contacts' }],
    load({ hooks, router, storage, sessions, clock, disco, startedAt, log }) {
      disco.addServerFeature(NS.last);
      disco.addAccountFeature(NS.last);

      const seconds = (since: Date) => String(Math.max(0, Math.floor((clock.now().getTime() - since.getTime()) / 1000)));

      hooks.on(`iq-get/host/${NS.last}:query`, (e) => replyResult(router, e, x('query', { xmlns: NS.last, seconds: seconds(startedAt) })));

      hooks.on(`iq-get/bare/${NS.last}:query`, async (e) => {
        if (!(await mayViewPresenceInfo(storage, e.to, e.from))) return replyError(router, e, 'forbidden');
        if (sessions.ofAccount(e.to.bare).some((s) => s.available)) return replyResult(router, e, x('query', { xmlns: NS.last, seconds: '0' }));
        const account = await storage.accounts.get(e.to.local, e.to.domain);
        if (!account) return replyError(router, e, 'forbidden');
        const xml = await storage.accountState.get(account.id, LAST_KEY);
        const record = xml !== null ? parseXmlText(xml) : null;
        const at = record ? new Date(record.attrs.at ?? '') : null;
        if (at && !Number.isNaN(at.getTime())) {
          return replyResult(router, e, x('query', { xmlns: NS.last, seconds: seconds(at) }, record!.text() || null));
        }
        // Never logged out since this was recorded: the last login (or the creation) is the best we know.
        return replyResult(router, e, x('query', { xmlns: NS.last, seconds: seconds(account.lastUsedAt ?? account.createdAt) }));
      });

      // The status text of a resource's broadcast unavailable presence, until 'session/unavailable'
      // (whose payload carries only the session) records it. Never handles the presence.
      const lastStatus = new WeakMap<ClientSession, string>();
      const recorded = new WeakSet<ClientSession>();
      hooks.on(
        'presence/bare',
        (e) => {
          if (e.origin.kind !== 'c2s' || e.stanza.attrs.to !== undefined) return;
          const type = e.stanza.attrs.type;
          if (type === 'unavailable') {
            const status = statusOf(e.stanza);
            if (status) lastStatus.set(e.origin.session, status);
            else lastStatus.delete(e.origin.session);
          } else if (type === undefined) {
            lastStatus.delete(e.origin.session);
          }
        },
        'observe',
      );

      const record = async (session: ClientSession, status: string | undefined) => {
        recorded.add(session);
        if (sessions.ofAccount(session.jid.bare).some((s) => s !== session && s.available)) return;
        const account = await storage.accounts.get(session.jid.local, session.jid.domain);
        if (!account) return;
        await storage.accountState.set(account.id, LAST_KEY, x('last', { at: utcDateTime(clock.now()) }, status ?? null).toString());
      };
      const safely = (p: Promise<void>) => p.catch((err) => log.error('last activity not recorded', { error: err instanceof Error ? err.message : String(err) }));

      hooks.on('session/available', ({ session }) => {
        recorded.delete(session);
      });
      hooks.on('session/unavailable', async (payload) => {
        const stanza = (payload as { stanza?: Element }).stanza;
        await safely(record(payload.session, statusOf(stanza) ?? lastStatus.get(payload.session)));
      });
      // A resource that never sent available presence still ends a use of the account.
      hooks.on('session/closed', async ({ session }) => {
        if (!recorded.has(session) && session.jid) await safely(record(session, lastStatus.get(session)));
      });
    },
  };
}
