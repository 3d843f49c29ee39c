/**
 * Random well-formed stanzas and nonzas for the live-stream fuzzer: IQs with payloads for every
 * namespace a module handles (server/modules/*), messages and presences with the extensions the
 * modules look at, nonzas (stream management, CSI), with plausible and implausible children,
 * attributes, addresses and ids. Text and attribute values are unicode (astral included) but
 * only XML characters: these stanzas test the modules, not the parser.
 */
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { Prng } from './prng.js';

const NS_SM = 'urn:xmpp:sm:3';
const NS_CSI = 'urn:xmpp:csi:0';
const NS_BLOCKING = 'urn:xmpp:blocking';
const NS_CARBONS = 'urn:xmpp:carbons:2';
const NS_FORWARD = 'urn:xmpp:forward:0';
const NS_RECEIPTS = 'urn:xmpp:receipts';
const NS_MARKERS = 'urn:xmpp:chat-markers:0';
const NS_HINTS = 'urn:xmpp:hints';
const NS_CHATSTATES = 'http://jabber.org/protocol/chatstates';
const NS_SID = 'urn:xmpp:sid:0';
const NS_JMI = 'urn:xmpp:jingle-message:0';
const NS_MUC = 'http://jabber.org/protocol/muc';

const TEXTS = ['', 'a', 'hello', ' ', 'é', '日本語', '\u{1F600}', '\u{10FFFF}', '<&>"\'', '0', '-1', '4294967296', '1e309', 'NaN', 'true', 'x'.repeat(1100), '\u202e', 'user@localhost', 'localhost', '2026-12-06T10:00:00Z', 'not-a-date', 'AAAA', '====', '\t\n'];
const NAMES = ['item', 'x', 'query', 'value', 'field', 'group', 'body', 'a', 'b', 'remove', 'jid', 'name', 'node', 'ver', 'ü', '\u{10400}'];
const RANDOM_NS = ['urn:fuzz:a', 'urn:fuzz:b', NS.client, NS.server, NS.stanzas, NS.dataForms, 'jabber:iq:roster', 'vcard-temp', 'storage:bookmarks', ''];

/** Addresses a fuzzing client may use, relative to its own JID and the other clients'. */
export interface Addressing {
  domain: string;
  ownBare: string;
  ownFull: string;
  peers: string[];
}

export class StanzaGenerator {
  private ids = 0;

  constructor(private readonly r: Prng) {}

  private text(): string {
    const r = this.r;
    return r.chance(0.8) ? r.pick(TEXTS) : String.fromCodePoint(r.pick([0x41, 0xe9, 0x3b1, 0x4e2d, 0x1f600, 0x10400, 0xff10, 0xe000]) + r.int(16)).repeat(r.range(1, 40));
  }

  private jid(a: Addressing): string {
    const r = this.r;
    const peer = a.peers.length > 0 ? r.pick(a.peers) : a.ownBare;
    return r.pick([a.domain, a.ownBare, a.ownFull, peer, `${peer}/r${r.int(3)}`, `nobody${r.int(5)}@${a.domain}`, `${a.domain}/x`, 'remote.invalid', `u@remote.invalid/r`, '', '@localhost', 'a@b@c', 'a/b/c', `${'x'.repeat(1100)}@${a.domain}`, 'Ünïcödé@localhost', 'ⅷ@localhost', `${a.ownBare}/${this.text()}`]);
  }

  private id(): string {
    const r = this.r;
    return r.chance(0.9) ? `f${++this.ids}` : r.pick(['', 'dup', this.text()]);
  }

  /** A random element, possibly nested: the implausible child. */
  private junk(depth = 0): Element {
    const r = this.r;
    const el = new Element(r.pick(NAMES), {});
    if (r.chance(0.5)) el.attrs.xmlns = r.pick(RANDOM_NS);
    for (let i = r.int(3); i > 0; i--) el.attrs[r.pick(['a', 'type', 'jid', 'node', 'id', 'ver', 'h', 'xml:lang'])] = this.text();
    for (let i = depth < 4 ? r.int(3) : 0; i > 0; i--) el.append(r.chance(0.5) ? this.text() : this.junk(depth + 1));
    return el;
  }

  /** Mostly plausible children from `make`, sometimes junk too. */
  private children(make: () => Element | string, max = 3): (Element | string)[] {
    const r = this.r;
    const out: (Element | string)[] = [];
    for (let i = r.int(max + 1); i > 0; i--) out.push(make());
    if (r.chance(0.2)) out.push(this.junk());
    if (r.chance(0.05)) out.push(this.text());
    return out;
  }

  private item(attrs: string[], a: Addressing): Element {
    const r = this.r;
    const el = x('item');
    for (const name of attrs) if (r.chance(0.8)) el.attrs[name] = name === 'jid' ? this.jid(a) : this.text();
    return el;
  }

  private iqPayload(a: Addressing): { type: string; payload?: Element } {
    const r = this.r;
    const get = r.chance(0.5) ? 'get' : 'set';
    const q = (name: string, xmlns: string, attrs: Record<string, string> = {}, kids: (Element | string)[] = []): Element => x(name, { xmlns, ...attrs }, kids);
    switch (r.int(19)) {
      case 0:
        return { type: get, payload: q('query', NS.roster, r.chance(0.3) ? { ver: this.text() } : {}, this.children(() => {
          const item = this.item(['jid', 'name'], a);
          if (r.chance(0.5)) item.attrs.subscription = r.pick(['none', 'to', 'from', 'both', 'remove', 'bogus']);
          if (r.chance(0.2)) item.attrs.ask = r.pick(['subscribe', 'x']);
          for (let i = r.int(3); i > 0; i--) item.append(x('group', {}, this.text()));
          return item;
        })) };
      case 1:
        return { type: get, payload: q(r.pick(['blocklist', 'block', 'unblock']), NS_BLOCKING, {}, this.children(() => this.item(['jid'], a))) };
      case 2:
        return { type: 'set', payload: q(r.pick(['enable', 'disable', 'private']), NS_CARBONS, {}, this.children(() => this.junk(), 1)) };
      case 3:
        return { type: get, payload: q('query', r.pick([NS.discoInfo, NS.discoItems]), r.chance(0.3) ? { node: r.pick([NS.msgoffline, 'http://jabber.org/protocol/commands', this.text()]) } : {}, this.children(() => this.junk(), 1)) };
      case 4:
        return { type: get, payload: q('ping', NS.ping) };
      case 5:
        return { type: get, payload: q('time', NS.time) };
      case 6:
        return { type: get, payload: q('query', r.pick([NS.version, NS.last]), {}, this.children(() => x(r.pick(['name', 'version', 'os']), {}, this.text()), 1)) };
      case 7: {
        const inner = this.junk();
        if (r.chance(0.8)) inner.attrs.xmlns = r.pick(['storage:bookmarks', 'urn:fuzz:a', 'jabber:iq:private', NS.client, 'storage:rosternotes']);
        return { type: get, payload: q('query', NS.privateXml, {}, r.chance(0.9) ? [inner, ...(r.chance(0.2) ? [this.junk()] : [])] : []) };
      }
      case 8:
        return { type: get, payload: q('vCard', NS.vcard, {}, this.children(() => r.pick([
          x('FN', {}, this.text()),
          x('NICKNAME', {}, this.text()),
          x('PHOTO', {}, x('TYPE', {}, r.pick(['image/png', this.text()])), x('BINVAL', {}, r.chance(0.5) ? Buffer.from(this.text()).toString('base64') : this.text())),
          x('EMAIL', {}, x('USERID', {}, this.text())),
          x('N', {}, x('GIVEN', {}, this.text())),
        ]), 5)) };
      case 9:
        // In-band registration: password changes and <remove/> too (the fuzzer then logs in afresh).
        return { type: get, payload: q('query', NS.register, {}, this.children(() => r.pick([
          x('username', {}, this.text()),
          x('password', {}, this.text()),
          x('email', {}, this.text()),
          ...(r.chance(0.1) ? [x('remove')] : []),
          x('x', { xmlns: NS.dataForms, type: 'submit' }, x('field', { var: 'username' }, x('value', {}, this.text()))),
        ]))) };
      case 10:
        return { type: get, payload: q('offline', 'http://jabber.org/protocol/offline', {}, this.children(() => r.pick([
          x('item', { action: r.pick(['view', 'remove', 'x']), node: this.text() }),
          x('fetch'),
          x('purge'),
        ]))) };
      case 11:
        return { type: 'set', payload: r.chance(0.5) ? q('session', NS.session) : q('bind', NS.bind, {}, [x('resource', {}, this.text())]) };
      case 12:
        return { type: get, payload: q('query', 'urn:xmpp:mam:2', {}, this.children(() => this.junk())) };
      case 13:
        return { type: r.pick(['result', 'error']), payload: r.chance(0.5) ? this.junk() : undefined };
      case 14:
        return { type: r.pick(['', 'bogus', 'GET']), payload: this.junk() };
      case 15:
        return { type: get };
      case 16:
        return { type: get, payload: q(r.pick(['query', 'x']), r.pick(RANDOM_NS), {}, this.children(() => this.junk())) };
      case 17:
        return { type: get, payload: q('query', NS.discoInfo, {}, [x('identity', { category: this.text() }), this.junk()]) };
      default:
        return { type: get, payload: q('command', 'http://jabber.org/protocol/commands', { node: this.text(), action: 'execute' }) };
    }
  }

  private addressed(el: Element, a: Addressing): Element {
    const r = this.r;
    if (r.chance(0.85)) el.attrs.to = this.jid(a);
    // A claimed 'from' must be the session's own JID; a different one costs the stream (tested too, rarely).
    if (r.chance(0.1)) el.attrs.from = r.chance(0.95) ? r.pick([a.ownBare, a.ownFull]) : this.jid(a);
    if (r.chance(0.05)) el.attrs['xml:lang'] = r.pick(['en', 'de', '', this.text()]);
    return el;
  }

  private iq(a: Addressing): Element {
    const r = this.r;
    const { type, payload } = this.iqPayload(a);
    const iq = x('iq', { type, id: this.id() }, payload ?? null, r.chance(0.05) ? this.junk() : null);
    if (r.chance(0.03)) delete iq.attrs.id;
    return this.addressed(iq, a);
  }

  private message(a: Addressing): Element {
    const r = this.r;
    const msg = x('message', { type: r.pick(['chat', 'normal', 'groupchat', 'headline', 'error', 'bogus', '']), id: this.id() });
    if (r.chance(0.1)) delete msg.attrs.type;
    const extensions = (): Element => r.pick([
      x('body', r.chance(0.2) ? { 'xml:lang': r.pick(['en', 'fr', '']) } : {}, this.text()),
      x('subject', {}, this.text()),
      x('thread', r.chance(0.3) ? { parent: this.text() } : {}, this.text()),
      x('request', { xmlns: NS_RECEIPTS }),
      x('received', { xmlns: NS_RECEIPTS, id: this.text() }),
      x(r.pick(['markable', 'displayed', 'received', 'acknowledged']), { xmlns: NS_MARKERS, id: this.text() }),
      x(r.pick(['no-store', 'no-copy', 'store', 'no-permanent-store']), { xmlns: NS_HINTS }),
      x('private', { xmlns: NS_CARBONS }),
      x(r.pick(['sent', 'received']), { xmlns: NS_CARBONS }, x('forwarded', { xmlns: NS_FORWARD }, x('message', { xmlns: NS.client, from: this.jid(a), to: this.jid(a) }, x('body', {}, this.text())))),
      x(r.pick(['active', 'composing', 'paused', 'inactive', 'gone']), { xmlns: NS_CHATSTATES }),
      x(r.pick(['origin-id', 'stanza-id']), { xmlns: NS_SID, id: this.text(), by: this.jid(a) }),
      x('delay', { xmlns: NS.delay, stamp: this.text(), from: this.jid(a) }),
      x('x', { xmlns: 'jabber:x:event' }, x('composing')),
      x(r.pick(['propose', 'retract', 'accept', 'proceed']), { xmlns: NS_JMI, id: this.text() }),
      x('error', { type: r.pick(['cancel', 'modify', 'bogus']) }, x('item-not-found', { xmlns: NS.stanzas })),
      x('x', { xmlns: NS.oob }, x('url', {}, this.text())),
    ]);
    for (const child of this.children(extensions, 5)) msg.append(child);
    return this.addressed(msg, a);
  }

  private presence(a: Addressing): Element {
    const r = this.r;
    const p = x('presence', {});
    if (r.chance(0.6)) p.attrs.type = r.pick(['subscribe', 'subscribed', 'unsubscribe', 'unsubscribed', 'probe', 'unavailable', 'error', 'bogus']);
    const extensions = (): Element => r.pick([
      x('show', {}, r.pick(['away', 'chat', 'dnd', 'xa', 'bogus', ''])),
      x('status', {}, this.text()),
      x('priority', {}, r.pick(['0', '1', '-128', '127', '128', '-129', '99999999999', 'x', ''])),
      x('c', { xmlns: NS.caps, hash: r.pick(['sha-1', 'md5', this.text()]), node: this.text(), ver: this.text() }),
      x('x', { xmlns: NS_MUC }, x('password', {}, this.text())),
      x('delay', { xmlns: NS.delay, stamp: this.text() }),
      x('nick', { xmlns: 'http://jabber.org/protocol/nick' }, this.text()),
      x('preapproved', { xmlns: NS.preApproval }),
    ]);
    for (const child of this.children(extensions, 4)) p.append(child);
    // Presence to itself or the server is unusual; most go to no one (broadcast) or a contact.
    if (r.chance(0.4)) return p;
    return this.addressed(p, a);
  }

  /** Stream management and client state indication nonzas (top-level, not stanzas). */
  private nonza(): Element {
    const r = this.r;
    switch (r.int(6)) {
      case 0:
        return x('enable', { xmlns: NS_SM, ...(r.chance(0.5) ? { resume: r.pick(['true', '1', 'false', 'x']) } : {}), ...(r.chance(0.3) ? { max: r.pick(['1', '0', '-5', '999999999999', 'x']) } : {}) });
      case 1:
        return x('r', { xmlns: NS_SM });
      case 2:
        return x('a', { xmlns: NS_SM, h: r.pick(['0', '1', '4294967295', '4294967296', '-1', 'x', '']) });
      case 3:
        return x('resume', { xmlns: NS_SM, previd: this.text(), h: r.pick(['0', '1', 'x']) });
      default:
        return x(r.pick(['active', 'inactive']), { xmlns: NS_CSI });
    }
  }

  /** One top-level element to send before authentication: mostly IQs (in-band registration among them). */
  preauth(a: Addressing): Element {
    const r = this.r;
    if (r.chance(0.1)) return this.next(a);
    const iq = r.chance(0.5) ? this.registration() : this.iq(a);
    if (r.chance(0.7)) delete iq.attrs.from;
    return iq;
  }

  private registration(): Element {
    const r = this.r;
    const fields = this.children(() => r.pick([
      x('username', {}, r.chance(0.5) ? `reg${r.int(1000)}` : this.text()),
      x('password', {}, this.text()),
      x('email', {}, this.text()),
      x('remove'),
    ]), 3);
    return x('iq', { type: r.pick(['get', 'set', 'set']), id: this.id(), ...(r.chance(0.5) ? { to: 'localhost' } : {}) }, x('query', { xmlns: NS.register }, fields));
  }

  /** One top-level element to send on a bound stream. */
  next(a: Addressing): Element {
    const k = this.r.int(100);
    if (k < 40) return this.iq(a);
    if (k < 70) return this.message(a);
    if (k < 90) return this.presence(a);
    if (k < 99) return this.nonza();
    return this.addressed(this.junk(), a);
  }
}
