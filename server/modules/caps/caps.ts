/**
 * XEP-0115 entity capabilities of clients: which features each available resource has, learnt from
 * the <c/> in its presence, so PEP (XEP-0163) knows who wants '+notify' for which node.
 *
 * What is observed ('observe' phase, before any module acts on the presence):
 * - a local client's broadcast presence (its own full JID, observed by its own account);
 * - presence a local account receives from a contact, and only from contacts with a subscription
 *   to the account's presence ('from' or 'both', as Prosody's mod_pep does; a stranger's directed
 *   presence makes the account ask nothing). The disco#info query goes out from the account's bare
 *   JID, the PEP service, which is there whether or not the account has a resource online. So a
 *   remote contact's presence is learnt also while the account is offline: XEP-0163 4.3.4 has the
 *   service send the last published item when a contact's resource becomes available, the owner
 *   online or not. A local contact's presence is learnt for an offline account neither (its own
 *   account learns it, and PEP sends local contacts' last items from there) nor kept once the
 *   account's last resource goes. A contact's presence is tracked per observing account, since
 *   each account sees only what was sent to it.
 *
 * For a `ver` not known yet, one disco#info query with node 'node#ver' goes to one resource that
 * advertised it (from the observing account's bare JID), however many resources advertise it at
 * once; the answer is read and checked as section 5.4 says (shared/xml/caps-hash.ts) and only a
 * verified answer enters the server-wide cache (`caps.cacheSize` hashes, least recently used out).
 * A wrong or ill-formed answer is not cached and poisons nothing: the next resource advertising the
 * same `ver` is asked. A resource whose answer failed is not asked about that `ver` again while it
 * keeps it, and after a few failures not at all until it goes unavailable.
 *
 * Caps without a 'hash' attribute (the legacy format before version 1.4) and caps with a hash this
 * server does not verify (md5, unknown names): section 5.4 step 3.2 applies to both. The resource's
 * disco#info (without node: the legacy 'ver' was a version number, not a hash) is asked once and
 * its answer kept for that resource only, never in the cache. A 'ver' that cannot be an output of
 * its (supported) hash at all is ignored without a query.
 *
 * Bounds: per account at most `caps.maxResourcesPerAccount` tracked resources (the least recently
 * seen forgotten first); server-wide at most `caps.maxPendingQueries` queries in flight, one per
 * resource at a time, each ending after `caps.queryTimeout`; answers over the limits of
 * DEFAULT_CAPS_LIMITS are refused as a whole. Nothing is stored: the data (which features a
 * contact's client has) lives in memory and is forgotten with the presence (unavailable or error
 * presence, the end of a local session; local contacts' when the observing account's last resource
 * goes offline; everything an account saw when it is deleted). A remote contact that never says
 * unavailable (its server vanished) stays until the per-account bound pushes it out.
 */
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import type { StanzaEvent } from '../../core/hooks.js';
import type { ClientSession } from '../../core/session.js';
import { mayViewPresenceInfo } from '../../core/subscription-states.js';
import { Jid } from '../../../shared/jid.js';
import { NS } from '../../../shared/ns.js';
import { x, type Element } from '../../../shared/xml/element.js';
import { isSupportedCapsHash, plausibleVer, readDiscoInfo, verifyCaps } from '../../../shared/xml/caps-hash.js';
import { capsConfigSection } from './config.js';

export interface CapsFeaturesEvent {
  /** The resource whose features are now known (a full JID; a bare one for entities without resources). */
  jid: string;
  /** The local account (bare JID) that saw the resource's presence. */
  observer: string;
  features: ReadonlySet<string>;
}

export interface CapsResource {
  jid: string;
  /** undefined while not known (the query is out, or failed). */
  features: ReadonlySet<string> | undefined;
}

export interface CapsService {
  /** The features of an available resource, or undefined while unknown or not tracked. */
  featuresOf(fullJid: string): ReadonlySet<string> | undefined;
  /** The resources of `contactBare` that `observerBare` has seen available with caps (its own, for itself). */
  availableResources(observerBare: string, contactBare: string): CapsResource[];
  /**
   * Called when a resource became available (or changed its 'ver') and its features are known: at
   * once on a cache hit, else when the answer was verified. Returns the unsubscribe function.
   */
  onFeatures(listener: (event: CapsFeaturesEvent) => void): () => void;
  /** Whether the resource advertises `node`+'+notify' (XEP-0163). */
  wantsNotify(fullJid: string, node: string): boolean;
}

declare module '../../core/services.js' {
  interface Services {
    caps: CapsService;
  }
}

const MAX_NODE = 1024;
const MAX_VER = 256;
const MAX_HASH_NAME = 32;
/** Failed answers after which a resource is not asked again until it goes unavailable. */
const MAX_FAILURES_PER_RESOURCE = 3;

/** One resource as one account sees it. */
interface Entry {
  readonly observer: string;
  readonly jid: string;
  readonly bare: string;
  readonly node: string;
  readonly ver: string;
  /** A supported hash, or undefined: legacy or unverifiable caps, learnt per resource. */
  readonly hash: string | undefined;
  /** `${hash} ${ver}` for verifiable caps (the cache key), else undefined. */
  readonly key: string | undefined;
  /** Visible and usable: own presence, or the contact's subscription was confirmed. */
  checked: boolean;
  /** This resource gave a wrong answer for this ver; it is not asked about it again. */
  failed: boolean;
  features: ReadonlySet<string> | undefined;
}

/** What one account has seen: in order of last sight (oldest first), and by contact. */
interface Observed {
  readonly order: Map<string, Entry>;
  readonly byBare: Map<string, Map<string, Entry>>;
}

interface Advertised {
  node: string;
  ver: string;
  hash: string | undefined;
}

/** The caps of a presence: null when there are none or they cannot be used. */
function advertised(stanza: Element): Advertised | null {
  const c = stanza.getChild('c', NS.caps);
  if (!c) return null;
  const { node, ver, hash } = c.attrs;
  if (!node || !ver || node.length > MAX_NODE || ver.length > MAX_VER) return null;
  if (hash !== undefined) {
    if (hash.length > MAX_HASH_NAME) return null;
    if (isSupportedCapsHash(hash) && !plausibleVer(hash, ver)) return null;
  }
  return { node, ver, hash: hash !== undefined && isSupportedCapsHash(hash) ? hash : undefined };
}

class LruCache<V> {
  private readonly map = new Map<string, V>();
  constructor(private readonly size: number) {}
  get(key: string): V | undefined {
    const v = this.map.get(key);
    if (v !== undefined) {
      this.map.delete(key);
      this.map.set(key, v);
    }
    return v;
  }
  set(key: string, v: V): void {
    this.map.delete(key);
    this.map.set(key, v);
    while (this.map.size > this.size) this.map.delete(this.map.keys().next().value as string);
  }
}

export class Caps implements CapsService {
  private readonly observed = new Map<string, Observed>();
  private readonly byJid = new Map<string, Set<Entry>>();
  private readonly byKey = new Map<string, Set<Entry>>();
  private readonly cache: LruCache<ReadonlySet<string>>;
  private readonly listeners = new Set<(event: CapsFeaturesEvent) => void>();
  /** Keys with a query out, and resources with a query out (one at a time each). */
  private readonly keysAsked = new Set<string>();
  private readonly busy = new Set<string>();
  private readonly failures = new Map<string, number>();
  /** Keys, and resources with legacy caps, waiting for a free query slot, oldest first. */
  private readonly waiting = new Set<string>();
  private readonly waitingJids = new Set<string>();
  private pending = 0;
  private stopped = false;

  constructor(private readonly ctx: ServerContext) {
    this.cache = new LruCache(ctx.config.caps.cacheSize);
  }

  stop(): void {
    this.stopped = true;
    this.listeners.clear();
  }

  // ---- the service ----

  featuresOf(fullJid: string): ReadonlySet<string> | undefined {
    let found: ReadonlySet<string> | undefined;
    for (const e of this.byJid.get(fullJid) ?? []) if (e.checked && e.features) found = e.features;
    // A resource bound on another cluster node: its node learnt its features and shares them.
    return found ?? this.ctx.sessions.get(fullJid)?.capabilities;
  }

  availableResources(observerBare: string, contactBare: string): CapsResource[] {
    const entries = this.observed.get(observerBare)?.byBare.get(contactBare);
    if (!entries) return [];
    return [...entries.values()].filter((e) => e.checked).map((e) => ({ jid: e.jid, features: e.features }));
  }

  onFeatures(listener: (event: CapsFeaturesEvent) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  wantsNotify(fullJid: string, node: string): boolean {
    return this.featuresOf(fullJid)?.has(node + '+notify') ?? false;
  }

  // ---- presence ----

  /** A local client's own presence (c2s origin, before the presence module acts on it). */
  outbound(e: StanzaEvent): void {
    if (e.origin.kind !== 'c2s') return;
    const session = e.origin.session;
    const own = session.jid.bare;
    if (e.stanza.attrs.to !== undefined && !(e.to.bare === own && !e.to.resource)) return;
    this.presence(own, session.jid, e.stanza, true);
  }

  /** Presence for a local account from anyone but its own client. */
  inbound(e: StanzaEvent): void {
    if (e.origin.kind === 'c2s' || !e.to.local) return;
    const observer = e.to.bare;
    if (e.from.bare === observer) return;
    this.presence(observer, e.from, e.stanza, false);
  }

  private presence(observer: string, from: Jid, stanza: Element, own: boolean): void {
    const type = stanza.attrs.type;
    if (type === 'unavailable' || type === 'error') {
      if (from.resource) this.forget(observer, from.full);
      else for (const e of this.observed.get(observer)?.byBare.get(from.bare)?.values() ?? []) this.remove(e);
      return;
    }
    if (type !== undefined) return;
    const caps = advertised(stanza);
    const seen = this.observed.get(observer);
    const existing = seen?.order.get(from.full);
    if (!caps) {
      if (existing) this.remove(existing);
      return;
    }
    if (existing && existing.node === caps.node && existing.ver === caps.ver && existing.hash === caps.hash) {
      seen!.order.delete(from.full);
      seen!.order.set(from.full, existing);
      return;
    }
    if (!own && !this.online(observer) && this.ctx.router.isLocalHost(from.domain)) return;
    if (existing) this.remove(existing);
    const entry = this.add(observer, from, caps);
    if (own) {
      entry.checked = true;
      this.learn(entry);
      return;
    }
    mayViewPresenceInfo(this.ctx.storage, Jid.parse(observer), from)
      .then((allowed) => {
        if (!this.current(entry)) return;
        if (!allowed) return this.remove(entry);
        entry.checked = true;
        this.learn(entry);
      })
      .catch((err) => this.ctx.log.warn('caps: subscription check failed', { error: String(err) }));
  }

  private online(account: string): boolean {
    return this.ctx.sessions.ofAccount(account).some((s) => s.available);
  }

  /** A resource went unavailable or ended; when it was the account's last, it keeps only what remote contacts showed it. */
  sessionGone(session: ClientSession, ended: boolean): void {
    const own = session.jid.bare;
    const holder = this.ctx.sessions.get(session.jid.full);
    // A session replaced by a new one with the same JID leaves the new one's caps alone.
    if (!holder || holder === session) {
      if (ended) for (const e of [...(this.byJid.get(session.jid.full) ?? [])]) this.remove(e);
      else this.forget(own, session.jid.full);
    }
    if (!this.online(own)) this.forgetObserver(own, (e) => this.local(e.bare));
  }

  forgetObserver(observer: string, which: (e: Entry) => boolean = () => true): void {
    const seen = this.observed.get(observer);
    if (!seen) return;
    for (const e of [...seen.order.values()]) if (which(e)) this.remove(e);
  }

  private local(bare: string): boolean {
    const at = bare.lastIndexOf('@');
    return this.ctx.router.isLocalHost(at < 0 ? bare : bare.slice(at + 1));
  }

  // ---- the tables ----

  private add(observer: string, from: Jid, caps: Advertised): Entry {
    const key = caps.hash !== undefined ? `${caps.hash} ${caps.ver}` : undefined;
    const entry: Entry = { observer, jid: from.full, bare: from.bare, ...caps, key, checked: false, failed: false, features: undefined };
    let seen = this.observed.get(observer);
    if (!seen) this.observed.set(observer, (seen = { order: new Map(), byBare: new Map() }));
    seen.order.set(entry.jid, entry);
    let ofBare = seen.byBare.get(entry.bare);
    if (!ofBare) seen.byBare.set(entry.bare, (ofBare = new Map()));
    ofBare.set(entry.jid, entry);
    addTo(this.byJid, entry.jid, entry);
    if (key) addTo(this.byKey, key, entry);
    const max = this.ctx.config.caps.maxResourcesPerAccount;
    while (seen.order.size > max) this.remove(seen.order.values().next().value as Entry);
    return entry;
  }

  private current(entry: Entry): boolean {
    return this.observed.get(entry.observer)?.order.get(entry.jid) === entry;
  }

  private forget(observer: string, jid: string): void {
    const entry = this.observed.get(observer)?.order.get(jid);
    if (entry) this.remove(entry);
  }

  private remove(entry: Entry): void {
    const seen = this.observed.get(entry.observer);
    if (!seen || seen.order.get(entry.jid) !== entry) return;
    seen.order.delete(entry.jid);
    const ofBare = seen.byBare.get(entry.bare);
    ofBare?.delete(entry.jid);
    if (ofBare?.size === 0) seen.byBare.delete(entry.bare);
    if (seen.order.size === 0) this.observed.delete(entry.observer);
    removeFrom(this.byJid, entry.jid, entry);
    if (entry.observer === entry.bare && entry.features) {
      // Its own resource: the features shared with the other cluster nodes go too.
      const session = this.ctx.sessions.get(entry.jid);
      if (session && session.capabilities === entry.features) session.capabilities = undefined;
    }
    if (entry.key) {
      removeFrom(this.byKey, entry.key, entry);
      if (!this.byKey.has(entry.key)) this.waiting.delete(entry.key);
    }
    if (!this.byJid.has(entry.jid)) {
      this.failures.delete(entry.jid);
      this.waitingJids.delete(entry.jid);
    }
  }

  // ---- learning features ----

  private learn(entry: Entry): void {
    if (entry.key) {
      const known = this.cache.get(entry.key);
      if (known) this.setFeatures(entry, known);
      else this.resolve(entry.key);
      return;
    }
    // Legacy or unverifiable: another account may already have asked this very resource.
    for (const other of this.byJid.get(entry.jid) ?? []) {
      if (other !== entry && other.features && other.key === undefined && other.node === entry.node && other.ver === entry.ver) {
        this.setFeatures(entry, other.features);
        return;
      }
    }
    this.askResource(entry.jid);
  }

  private setFeatures(entry: Entry, features: ReadonlySet<string>): void {
    if (entry.features === features || !this.current(entry)) return;
    entry.features = features;
    if (entry.observer === entry.bare) {
      // Its own resource: kept on the session too, where other cluster nodes see it (PEP's +notify).
      const session = this.ctx.sessions.get(entry.jid);
      if (session) session.capabilities = features;
    }
    const event: CapsFeaturesEvent = { jid: entry.jid, observer: entry.observer, features };
    for (const listener of [...this.listeners]) {
      try {
        listener(event);
      } catch (err) {
        this.ctx.log.error('caps: a features listener failed', { error: String(err) });
      }
    }
  }

  private askable(jid: string): boolean {
    return !this.busy.has(jid) && (this.failures.get(jid) ?? 0) < MAX_FAILURES_PER_RESOURCE;
  }

  private slotFree(): boolean {
    return this.pending < this.ctx.config.caps.maxPendingQueries;
  }

  /** Learns the features behind a verifiable key: one query at a time, to one resource advertising it. */
  private resolve(key: string): void {
    if (this.stopped || this.keysAsked.has(key)) return;
    const entries = this.byKey.get(key);
    if (!entries) return;
    const known = this.cache.get(key);
    if (known) {
      for (const e of [...entries]) if (e.checked) this.setFeatures(e, known);
      return;
    }
    const candidate = [...entries].find((e) => e.checked && !e.failed && this.askable(e.jid));
    if (!candidate) return;
    if (!this.slotFree()) {
      if (this.waiting.size < this.ctx.config.caps.cacheSize) this.waiting.add(key);
      return;
    }
    this.keysAsked.add(key);
    void this.query(candidate, `${candidate.node}#${candidate.ver}`).then((query) => {
      this.keysAsked.delete(key);
      if (this.stopped) return;
      const verified = query ? verifyCaps(query, candidate.hash!, candidate.ver) : ({ ok: false, reason: 'no answer' } as const);
      if (verified.ok) {
        const features: ReadonlySet<string> = new Set(verified.info.features);
        this.cache.set(key, features);
        for (const e of [...(this.byKey.get(key) ?? [])]) if (e.checked) this.setFeatures(e, features);
      } else {
        this.ctx.log.debug('caps: answer not verified', { reason: verified.reason });
        this.failed(candidate.jid, (e) => e.key === key);
        this.resolve(key);
      }
      this.freed(candidate.jid);
    });
  }

  /** Legacy and unverifiable caps: the resource's own disco#info, kept for it alone. */
  private askResource(jid: string): void {
    if (this.stopped || !this.askable(jid)) return;
    const entry = [...(this.byJid.get(jid) ?? [])].find((e) => e.checked && !e.key && !e.features && !e.failed);
    if (!entry) return;
    if (!this.slotFree()) {
      if (this.waitingJids.size < this.ctx.config.caps.cacheSize) this.waitingJids.add(jid);
      return;
    }
    const { node, ver, hash } = entry;
    const same = (e: Entry) => !e.key && e.node === node && e.ver === ver && e.hash === hash;
    void this.query(entry, undefined).then((query) => {
      if (this.stopped) return;
      const read = query ? readDiscoInfo(query) : ({ ok: false, reason: 'no answer' } as const);
      if (read.ok) {
        const features: ReadonlySet<string> = new Set(read.info.features);
        for (const e of [...(this.byJid.get(jid) ?? [])]) if (e.checked && same(e)) this.setFeatures(e, features);
      } else {
        this.ctx.log.debug('caps: unusable disco#info answer', { reason: read.reason });
        this.failed(jid, same);
      }
      this.freed(jid);
    });
  }

  private failed(jid: string, which: (e: Entry) => boolean): void {
    if (!this.byJid.has(jid)) return;
    this.failures.set(jid, (this.failures.get(jid) ?? 0) + 1);
    for (const e of this.byJid.get(jid) ?? []) if (which(e)) e.failed = true;
  }

  /** A query ended: this resource may have advertised something new meanwhile, and a slot is free. */
  private freed(jid: string): void {
    for (const e of [...(this.byJid.get(jid) ?? [])]) {
      if (!e.checked || e.features || e.failed) continue;
      if (e.key) this.resolve(e.key);
      else this.askResource(jid);
    }
    for (const key of [...this.waiting]) {
      if (!this.slotFree()) break;
      this.waiting.delete(key);
      this.resolve(key);
    }
    for (const waiting of [...this.waitingJids]) {
      if (!this.slotFree()) break;
      this.waitingJids.delete(waiting);
      this.askResource(waiting);
    }
  }

  /** One disco#info query from the observing account's bare JID; the <query/> of a result, else null. */
  private async query(entry: Entry, node: string | undefined): Promise<Element | null> {
    this.pending++;
    this.busy.add(entry.jid);
    try {
      const iq = x('iq', { type: 'get', from: entry.observer, to: entry.jid }, x('query', { xmlns: NS.discoInfo, node }));
      const reply = await this.ctx.router.request(iq, this.ctx.config.caps.queryTimeout);
      if (!reply || reply.attrs.type !== 'result') return null;
      return reply.getChild('query', NS.discoInfo) ?? null;
    } catch (err) {
      this.ctx.log.warn('caps: query failed', { error: String(err) });
      return null;
    } finally {
      this.pending--;
      this.busy.delete(entry.jid);
    }
  }
}

function addTo<V>(map: Map<string, Set<V>>, key: string, v: V): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(v);
}

function removeFrom<V>(map: Map<string, Set<V>>, key: string, v: V): void {
  const set = map.get(key);
  if (!set) return;
  set.delete(v);
  if (set.size === 0) map.delete(key);
}

export function createCapsModule(): GatehouseModule {
  let caps: Caps | undefined;
  let withdraw: (() => void) | undefined;
  return {
    name: 'caps',
    // P17: a stranger's presence never makes the server query it on an account's behalf.
    clauses: ['P17'],
    config: capsConfigSection,
    provides: ['caps'],
    specs: [
      {
        id: 'XEP-0115',
        version: '1.6.0',
        status: 'complete',
        note:
          "clients' caps verified (sha-1, sha-224, sha-256, sha-384, sha-512; extended forms) and cached in memory, one disco#info query per hash; " +
          'legacy and unverifiable caps learnt per resource; own resources and contacts subscribed to the account only',
      },
    ],
    load(ctx) {
      const c = (caps = new Caps(ctx));
      withdraw = ctx.services.provide('caps', c);
      const { hooks } = ctx;
      // A broadcast (no 'to', or the account's own bare JID) is a 'presence/bare' event.
      hooks.on('presence/bare', (e) => c.outbound(e), 'observe');
      for (const target of ['bare', 'full'] as const) hooks.on(`presence/${target}`, (e) => c.inbound(e), 'observe');
      hooks.on('session/unavailable', ({ session }) => c.sessionGone(session, false), 'observe');
      hooks.on('session/closed', ({ session }) => c.sessionGone(session, true), 'observe');
      hooks.on('account/deleted', ({ jid }) => c.forgetObserver(jid.bare), 'observe');
    },
    unload() {
      caps?.stop();
      withdraw?.();
    },
  };
}
