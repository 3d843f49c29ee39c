import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import type { ClientSession } from '../core/session.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { messageType, topResources } from '../core/delivery.js';
import { checkQuota, KeyedSerial, xmlBytes } from '../core/quota.js';
import { offlineConfigSection } from './offline-config.js';


declare module '../core/hooks.js' {
  interface HookEvents {
    /** Messages were stored for an offline account (no address: for the anonymous statistics). */
    'offline/stored': { count: number };
    /** Stored messages were delivered and deleted. */
    'offline/delivered': { count: number };
  }
}

/**
 * XEP-0160 offline messages with XEP-0203 delay stamps (privacy clause P5).
 *
 * Storing: the message module fires 'message/offline' for a normal/chat message that no resource
 * can take. The stanza is stored with its arrival time and the handler resolves only after the
 * row is committed (OfflineRepository.store is durable on return), so nothing acknowledges a
 * message that a crash could still lose. What is stored (XEP-0160 section 3, XEP-0085, XEP-0334):
 * - normal and chat only; headline, groupchat and error never reach storage;
 * - a message with nothing but chat states, hints, thread, stanza/origin ids or delays is
 *   dropped silently: bouncing a typing notification would only put an error in the sender's chat;
 * - `<no-store xmlns='urn:xmpp:hints'/>` on a message with content: not stored, bounced with
 *   service-unavailable so the sender knows it was not delivered;
 * - `<store xmlns='urn:xmpp:hints'/>` stores even a message that has no content of its own.
 * Everything else is stored as received (receipts, markers, OMEMO/OpenPGP payloads untouched),
 * with only its 'to' set to the account's bare JID (RFC 6121 8.5.3.2.1: treated as addressed there).
 *
 * Quota (core/quota.ts): when `offline.maxPerUser` messages are waiting, or the message would take
 * the stored stanzas over `offline.maxBytesPerUser` bytes, it bounces with service-unavailable:
 * XEP-0160 section 2 names this condition for a full queue, and it is the same error a non-existent
 * account gives (without a text, like that one), so a sender learns nothing about a mailbox (P17).
 * resource-constraint would say "try later" about one user's storage and is
 * meant for server load. Without the byte quota 1,000 messages of 256 KiB could pin 256 MiB per
 * account. maxPerUser 0 stores nothing: the message module then bounces (XEP-0160: no storage, error).
 *
 * Delivery: when a resource sends initial presence with a non-negative priority ('session/available'),
 * every stored message goes to it in arrival order with
 * `<delay xmlns='urn:xmpp:delay' from='<host>' stamp='<arrival, UTC>'>Offline Storage</delay>`.
 * No legacy jabber:x:delay (XEP-0091, obsolete since 2009): every maintained client reads XEP-0203
 * and the old element would only double the bytes. Rows are deleted batch by batch after the batch
 * was written to the resource's stream and the resource is still connected; a crash or disconnect
 * before the delete means the message comes again at the next login (duplicated, never lost).
 *
 * Store and delivery for one account are serialised, and a store that finds a resource available
 * (it came online while the message was being stored) delivers at once, so no message waits for a
 * later login because of that race. In a cluster a resource on another node is not delivered to
 * from here: its node is asked to deliver what is stored, and deletes it once written to the stream.
 */

const HINTS = 'urn:xmpp:hints';
const CHATSTATES = 'http://jabber.org/protocol/chatstates';
/** Children that carry no content of their own: a message with only these is not worth storing. */
const EPHEMERAL_NS = new Set([CHATSTATES, HINTS, 'urn:xmpp:sid:0', NS.delay, 'jabber:x:delay', 'jabber:x:event']);
const STANZA_NS = new Set<string | undefined>([undefined, NS.client, NS.server, NS.component]);
/** Bytes written to a stream between yields to the event loop while flushing a queue. */
const FLUSH_BATCH_BYTES = 32 * 1024;

export type OfflineDecision = 'store' | 'discard' | 'refuse';

/** What offline storage does with a message for an unavailable account (see the module comment). */
export function offlineDecision(stanza: Element): OfflineDecision {
  const type = messageType(stanza);
  if (type !== 'normal' && type !== 'chat') return 'refuse';
  if (stanza.getChild('no-store', HINTS)) return hasContent(stanza) ? 'refuse' : 'discard';
  if (stanza.getChild('store', HINTS)) return 'store';
  return hasContent(stanza) ? 'store' : 'discard';
}

function hasContent(stanza: Element): boolean {
  for (const child of stanza.elements) {
    const ns = child.xmlns;
    if (child.name === 'thread' && STANZA_NS.has(ns)) continue;
    if (ns !== undefined && EPHEMERAL_NS.has(ns)) continue;
    return true;
  }
  return false;
}

function withoutOwnDelays(el: Element, host: string): string {
  const c = el.clone();
  c.children = c.children.filter((ch) => typeof ch === 'string' || !(ch.is('delay', NS.delay) && ch.attrs.from === host));
  return c.toString();
}

export function delayElement(from: string, at: Date): Element {
  return x('delay', { xmlns: NS.delay, from, stamp: at.toISOString() }, 'Offline Storage');
}

class OfflineStore {
  /** Per-account chains: stores and deliveries for one account run one at a time, in order. */
  private readonly perAccount = new KeyedSerial<number>();

  constructor(private readonly ctx: ServerContext) {}

  async onOffline(event: StanzaEvent): Promise<boolean> {
    const { config, storage, router, clock, sessions, log } = this.ctx;
    const decision = offlineDecision(event.stanza);
    if (decision === 'discard') return true;
    if (decision === 'refuse') return false;
    const max = config.offline.maxPerUser;
    if (max <= 0) return false;
    const account = await storage.accounts.get(event.to.local, event.to.domain);
    if (!account) return false;
    const bare = event.to.bare;
    return this.perAccount.run(account.id, async () => {
      const copy = event.stanza.clone();
      copy.attrs.to = bare;
      if (copy.attrs.xmlns === NS.server || copy.attrs.xmlns === NS.component) copy.attrs.xmlns = NS.client;
      // A message the server routes again (a stream management queue, a cluster node's journal or an
      // unconfirmed delivery to another node) may be here already by another of those ways.
      if (event.origin.kind === 'server' && copy.attrs.id && (await this.storedAlready(account.id, copy, event.to.domain))) return true;
      const text = copy.toString();
      const quota = checkQuota(await storage.offline.usage(account.id), { items: 1, bytes: xmlBytes(text) }, { maxItems: max, maxBytes: config.offline.maxBytesPerUser }, 'offline storage');
      if (!quota.ok) {
        log.debug('offline store full', { account: bare, limit: quota.exceeded });
        return router.bounce(event, 'service-unavailable');
      }
      await storage.offline.store(account.id, text, clock.now());
      void this.ctx.hooks.emit('offline/stored', { count: 1 });
      // A resource may have come online while the row was being written. One on another cluster
      // node gets the stored messages from its own node, which deletes them once written to the
      // stream: deleted here on the strength of a stand-in, a message its node then could not
      // deliver would only be stored again (with one more delay stamp, round and round while
      // that node is dying), or be lost if this node stopped meanwhile.
      const cluster = this.ctx.services.get('cluster');
      const top = topResources(sessions, bare).filter((s) => !cluster?.deliverStoredThere(s));
      if (top.length > 0) await this.deliverStored(account.id, top);
      return true;
    });
  }

  /**
   * Whether the same message (sender, id and content, leaving out the delay stamps this server
   * added) is stored for the account: a copy routed again is stored once (XEP-0198 allows a
   * duplicate, but offline storage need not make one).
   */
  private async storedAlready(accountId: number, copy: Element, host: string): Promise<boolean> {
    const id = copy.attrs.id!;
    const same = withoutOwnDelays(copy, host);
    for (const row of await this.ctx.storage.offline.list(accountId)) {
      if (!row.stanza.includes(id)) continue;
      const el = parseXmlText(row.stanza, NS.client);
      if (el && el.attrs.id === id && el.attrs.from === copy.attrs.from && withoutOwnDelays(el, host) === same) return true;
    }
    return false;
  }

  async onAvailable(session: ClientSession): Promise<void> {
    if (session.priority < 0) return;
    const account = session.account ?? (await this.ctx.storage.accounts.get(session.jid.local, session.jid.domain));
    if (!account) return;
    await this.perAccount.run(account.id, () => this.deliverStored(account.id, [session]));
  }

  /** Sends every stored message to the given resources, then deletes what reached a live stream. */
  private async deliverStored(accountId: number, targets: ClientSession[]): Promise<void> {
    const { storage, sessions, router, log } = this.ctx;
    const stored = await storage.offline.list(accountId);
    if (stored.length === 0) return;
    const live = () => targets.filter((s) => sessions.get(s.jid.full) === s);
    let batch: number[] = [];
    let batchBytes = 0;
    const commit = async (): Promise<boolean> => {
      // Let the streams write what was queued; delete only if a target is still connected.
      await new Promise<void>((resolve) => setImmediate(resolve));
      if (live().length === 0) return false;
      if (batch.length > 0) {
        await storage.offline.delete(accountId, batch);
        void this.ctx.hooks.emit('offline/delivered', { count: batch.length });
      }
      batch = [];
      batchBytes = 0;
      return true;
    };
    for (const message of stored) {
      const recipients = live();
      if (recipients.length === 0) return;
      const el = parseXmlText(message.stanza, NS.client);
      if (!el) {
        log.warn('stored offline message is not well-formed; kept for the retention sweep', { id: message.id });
        continue;
      }
      el.append(delayElement(targets[0]!.jid.domain, message.receivedAt));
      for (const s of recipients) router.deliver(s, el);
      batch.push(message.id);
      batchBytes += message.stanza.length;
      if (batchBytes >= FLUSH_BATCH_BYTES && !(await commit())) return;
    }
    await commit();
  }
}

export function createOfflineModule(): GatehouseModule {
  return {
    name: 'offline',
    config: offlineConfigSection,
    specs: [
      { id: 'XEP-0160', version: '1.0.1', status: 'complete', note: 'normal and chat messages; quotas offline.maxPerUser and offline.maxBytesPerUser, a full store bounces with service-unavailable' },
      { id: 'XEP-0203', version: '2.0', status: 'complete', note: 'delay stamp with the arrival time on offline delivery' },
      { id: 'XEP-0334', version: '1.0.0', status: 'partial', note: 'store and no-store honoured by offline storage' },
    ],
    load(ctx) {
      const store = new OfflineStore(ctx);
      ctx.disco.addServerFeature(NS.msgoffline);
      ctx.hooks.on('message/offline', (e) => store.onOffline(e));
      ctx.hooks.on('session/available', ({ session }) => store.onAvailable(session));
      ctx.hooks.on('session/stored-messages', ({ session }) => (session.available ? store.onAvailable(session) : undefined));
    },
  };
}
