/**
 * Legacy contacts: the XEP-0100 subscription flow, presence both ways, one-to-one messages.
 *
 * - The user adds `nick%server@gateway` (subscribe): the transport approves for the contact
 *   (subscribed), sends the contact's presence, asks back (subscribe, so the user's presence
 *   reaches the contact and keeps the session alive), stores the contact's JID on the user's
 *   registration (only to unsubscribe it at <remove/>) and tells the adapter (addContact).
 * - Contacts the network knows (adapter 'roster' event) are offered with XEP-0144 roster item
 *   exchange when the user's client supports it, else with a subscription request from each
 *   contact carrying its name (XEP-0172).
 * - Contact presence from the network goes to the user for contacts on the user's list; the
 *   user's presence goes to the network (setPresence) from the session manager.
 * - Messages (messages.ts): /me becomes an action, attachments XEP-0066 URLs, timestamps XEP-0203
 *   delay; ids, corrections, retractions, reactions, replies and read markers both ways; chat
 *   states where the adapter has typing; XEP-0249 invitations both ways. No message is stored or
 *   logged by the transport.
 */
import { randomBytes } from 'node:crypto';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { LegacyContact, LegacyRoom, TextMessage } from './adapter.js';
import { errorText } from './context.js';
import type { Kit, KitContacts } from './kit-types.js';
import type { Address } from './addresses.js';
import { SessionUnavailableError, type UserSession } from './user-session.js';
import { LegacyNetworkError } from './adapter.js';
import { NS_CHATSTATES, NS_NICK, NS_ROSTERX, chatStateOf, stanzaError } from './stanzas.js';
import { avatarUpdateElement } from './avatars.js';
import { NS_CONFERENCE, displayedMarker, displayedStanza, noticeStanza, stanzaOf, textMessageOf } from './messages.js';

type ContactAddress = Extract<Address, { kind: 'contact' }>;

export function newId(): string {
  return randomBytes(8).toString('hex');
}

export class Contacts implements KitContacts {
  private readonly rosterxSupport = new Map<string, boolean>();

  constructor(private readonly kit: Kit) {}

  private jidOf(s: UserSession, contact: LegacyContact): string | null {
    const jid = this.kit.addresses.contactJid(contact, s.server);
    if (jid) s.contacts.set(jid, contact);
    return jid;
  }

  /** The network's spelling of a contact addressed by JID (ids in JIDs are case-folded). */
  private canonical(s: UserSession | undefined, bare: string, addr: ContactAddress): LegacyContact {
    for (const sess of s ? [s] : []) {
      const known = sess.contacts.get(bare);
      if (known) return known;
    }
    return { id: addr.id, ...(addr.server !== undefined ? { server: addr.server } : {}) };
  }

  // ---- from the user ----

  async presence(from: Jid, to: Jid, addr: ContactAddress, stanza: Element): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type;
    const user = from.bare;
    const contact = to.bare;
    switch (type) {
      case 'subscribe': {
        if (!(await kit.registration.isRegistered(user))) {
          kit.send(x('presence', { type: 'unsubscribed', from: contact, to: user }));
          return;
        }
        await kit.registration.changeContacts(user, [contact], []);
        kit.send(x('presence', { type: 'subscribed', from: contact, to: user }));
        this.sendKnownPresence(user, addr.server, contact);
        kit.send(x('presence', { type: 'subscribe', from: contact, to: user }));
        const s = kit.sessions.get(user, addr.server);
        if (s?.state === 'online' && s.legacy?.addContact) {
          await s.legacy.addContact(this.canonical(s, contact, addr)).catch((err) => kit.log.debug('addContact failed', { network: kit.adapter.network, error: errorText(err) }));
        }
        return;
      }
      case 'subscribed':
        if (await kit.registration.isRegistered(user)) await kit.registration.changeContacts(user, [contact], []);
        return;
      case 'unsubscribe': {
        await kit.registration.changeContacts(user, [], [contact]);
        const s = kit.sessions.get(user, addr.server);
        s?.announced.delete(contact);
        if (s?.state === 'online' && s.legacy?.removeContact) {
          await s.legacy.removeContact(this.canonical(s, contact, addr)).catch((err) => kit.log.debug('removeContact failed', { network: kit.adapter.network, error: errorText(err) }));
        }
        return;
      }
      case 'unsubscribed':
        return;
      case 'probe':
        this.sendKnownPresence(user, addr.server, contact, from.resource ? from.full : user);
        return;
      case undefined:
        await kit.sessions.userAvailable(from, [addr.server], stanza);
        return;
      case 'unavailable':
        await kit.sessions.userUnavailable(from);
        return;
      default:
        return;
    }
  }

  /** The contact's presence as far as the network told it, else unavailable. */
  private sendKnownPresence(user: string, server: string | undefined, contact: string, to: string = user): void {
    const s = this.kit.sessions.get(user, server);
    const known = s?.state === 'online' ? s.contactPresence.get(contact) : undefined;
    if (known) {
      s!.announced.add(contact);
      this.kit.send(
        x('presence', { from: contact, to }, known.show !== 'available' ? x('show', {}, known.show) : null, known.status ? x('status', {}, known.status) : null),
      );
    } else {
      this.kit.send(x('presence', { type: 'unavailable', from: contact, to }));
    }
  }

  async message(from: Jid, to: Jid, addr: ContactAddress, stanza: Element): Promise<void> {
    const { kit } = this;
    const type = stanza.attrs.type ?? 'normal';
    if (type === 'error' || type === 'groupchat' || type === 'headline') return;
    const invitation = stanza.getChild('x', NS_CONFERENCE);
    if (invitation?.attrs.jid) return this.directInvitation(from, to, addr, stanza, invitation);
    const msg = textMessageOf(stanza);
    if (!msg) {
      // A read marker or a chat state alone: passed on where the adapter takes them, never an error.
      const s = kit.sessions.get(from.bare, addr.server);
      if (s?.state !== 'online' || !s.legacy) return;
      const contact = this.canonical(s, to.bare, addr);
      const marker = displayedMarker(stanza);
      if (marker && s.legacy.markRead) await s.legacy.markRead(contact, marker).catch(() => undefined);
      const state = chatStateOf(stanza);
      if ((state === 'composing' || state === 'paused' || state === 'active') && s.legacy.sendTyping) await s.legacy.sendTyping(contact, state).catch(() => undefined);
      return;
    }
    let s: UserSession;
    try {
      s = await kit.sessions.ensure(from.bare, addr.server);
    } catch (err) {
      const failure = err instanceof SessionUnavailableError ? err.failure : { condition: 'remote-server-timeout' as const, text: errorText(err) };
      const reply = stanzaError(stanza, failure.condition, failure.text);
      if (reply) kit.send(reply);
      return;
    }
    try {
      const report = await s.legacy!.sendMessage(this.canonical(s, to.bare, addr), msg);
      if (report?.notice) kit.send(noticeStanza(kit.domain, from.full, 'chat', report.notice, newId()));
    } catch (err) {
      const reply = stanzaError(stanza, err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'service-unavailable', errorText(err));
      if (reply) kit.send(reply);
    }
  }

  /** XEP-0249: the user invites a contact to one of the transport's rooms. */
  private async directInvitation(from: Jid, to: Jid, addr: ContactAddress, stanza: Element, invitation: Element): Promise<void> {
    const { kit } = this;
    const roomJid = Jid.tryParse(invitation.attrs.jid);
    const room = roomJid ? kit.addresses.parse(roomJid) : null;
    const fail = (condition: string, text: string) => {
      const reply = stanzaError(stanza, condition, text);
      if (reply) kit.send(reply);
    };
    if (!room || room.kind !== 'room' || room.server !== addr.server) return fail('bad-request', `invitations go to rooms of this network on the same server`);
    try {
      const s = await kit.sessions.ensure(from.bare, addr.server);
      if (!s.legacy!.invite) return fail('feature-not-implemented', `${kit.networkName} invitations are not supported`);
      const known = s.rooms.get(roomJid!.bare)?.room ?? { id: room.id, ...(room.server !== undefined ? { server: room.server } : {}) };
      await s.legacy!.invite(known, this.canonical(s, to.bare, addr), invitation.attrs.reason || undefined);
    } catch (err) {
      fail(err instanceof SessionUnavailableError ? err.failure.condition : err instanceof LegacyNetworkError ? 'remote-server-timeout' : 'not-allowed', errorText(err));
    }
  }

  // ---- from the network ----

  /** A session logged in: the adapter learns the user's contacts on that server. */
  async sessionOnline(s: UserSession): Promise<void> {
    const legacy = s.legacy;
    if (!legacy?.addContact) return;
    for (const jid of await this.kit.registration.contactsOf(s.user)) {
      const parsed = Jid.tryParse(jid);
      const addr = parsed ? this.kit.addresses.parse(parsed) : null;
      if (!addr || addr.kind !== 'contact' || addr.server !== s.server) continue;
      await legacy.addContact(this.canonical(s, jid, addr)).catch((err) => this.kit.log.debug('addContact failed', { network: this.kit.adapter.network, error: errorText(err) }));
    }
  }

  /** The connection ended: every contact it announced goes unavailable. */
  connectionLost(s: UserSession): void {
    for (const contact of s.announced) this.kit.send(x('presence', { type: 'unavailable', from: contact, to: s.user }));
    s.announced.clear();
    s.contactPresence.clear();
  }

  legacyMessage(s: UserSession, from: LegacyContact, msg: TextMessage): void {
    const jid = this.jidOf(s, from);
    if (!jid) return;
    const nick = from.displayName && from.displayName !== from.id ? x('nick', { xmlns: NS_NICK }, from.displayName) : null;
    this.kit.send(
      stanzaOf(msg, {
        type: 'chat',
        from: jid,
        to: s.user,
        by: this.kit.domain,
        fresh: newId,
        markable: !!s.legacy?.markRead,
        extra: [nick, msg.redacts || msg.reactions ? null : x('active', { xmlns: NS_CHATSTATES })],
      }),
    );
  }

  /** A contact read the user's messages up to this one (XEP-0333). */
  legacyDisplayed(s: UserSession, from: LegacyContact, messageId: string): void {
    const jid = this.jidOf(s, from);
    if (jid) this.kit.send(displayedStanza(jid, s.user, 'chat', messageId, newId));
  }

  /** The network invites the user to a room (XEP-0249 direct invitation from the inviter). */
  legacyInvited(s: UserSession, room: LegacyRoom, by: LegacyContact, reason: string | null): void {
    const roomJid = this.kit.addresses.roomJid(room, s.server);
    const from = this.jidOf(s, by) ?? this.kit.domain;
    if (!roomJid) return;
    const name = by.displayName ?? by.id;
    this.kit.send(
      x(
        'message',
        { from, to: s.user, id: newId() },
        x('body', {}, `${name} invites you to ${room.name ?? room.id}${reason ? `: ${reason}` : ''} (${roomJid})`),
        x('x', { xmlns: NS_CONFERENCE, jid: roomJid, reason: reason ?? undefined }),
      ),
    );
  }

  async legacyPresence(s: UserSession, contact: LegacyContact, show: 'available' | 'away' | 'dnd' | 'xa' | 'unavailable', status: string | null): Promise<void> {
    const jid = this.jidOf(s, contact);
    if (!jid) return;
    if (show === 'unavailable') s.contactPresence.delete(jid);
    else s.contactPresence.set(jid, { show, status });
    if (!(await this.kit.registration.contactsOf(s.user)).includes(jid)) return;
    if (show === 'unavailable') {
      s.announced.delete(jid);
      this.kit.send(x('presence', { type: 'unavailable', from: jid, to: s.user }, status ? x('status', {}, status) : null));
      return;
    }
    s.announced.add(jid);
    // XEP-0153: the picture's hash once it was fetched (a vCard request fetches it).
    const hash = this.kit.avatars && contact.avatar ? this.kit.avatars.hashOf(contact) : undefined;
    this.kit.send(x('presence', { from: jid, to: s.user }, show !== 'available' ? x('show', {}, show) : null, status ? x('status', {}, status) : null, hash !== undefined ? avatarUpdateElement(hash) : null));
  }

  legacyTyping(s: UserSession, from: LegacyContact, state: 'composing' | 'paused' | 'active'): void {
    const jid = this.jidOf(s, from);
    if (!jid) return;
    this.kit.send(x('message', { type: 'chat', from: jid, to: s.user, id: newId() }, x(state, { xmlns: NS_CHATSTATES })));
  }

  /** Server notices: from the server JID (multi-server networks) or the gateway, unless the user turned them off. */
  async serverMessage(s: UserSession, server: string, msg: TextMessage): Promise<void> {
    const settings = (await this.kit.registration.settingsOf(s.user)) ?? {};
    if (settings.serverMessages === 'false') return;
    // Staying connected with nobody online: a server's chatter (MOTD, notices) is not worth an offline message.
    if (s.keepAlive && this.kit.sessions.resourcesOf(s.user, undefined, true).length === 0) return;
    const from = (this.kit.addresses.multiServer ? this.kit.addresses.serverJid(server || s.server || '') : null) ?? this.kit.domain;
    this.kit.send(stanzaOf({ ...msg, id: undefined }, { type: 'chat', from, to: s.user, by: from, fresh: newId, markable: false }));
  }

  /** The network's contact list: contacts the user does not have yet are offered. */
  async legacyRoster(s: UserSession, contacts: LegacyContact[]): Promise<void> {
    const { kit } = this;
    const stored = new Set(await kit.registration.contactsOf(s.user));
    const fresh: { jid: string; contact: LegacyContact }[] = [];
    for (const c of contacts) {
      const jid = this.jidOf(s, c);
      if (jid && !stored.has(jid) && !fresh.some((f) => f.jid === jid)) fresh.push({ jid, contact: c });
    }
    if (fresh.length === 0) return;
    const resource = kit.sessions.resourcesOf(s.user, s.server)[0];
    if (resource && (await this.supportsRosterx(resource))) {
      kit.send(
        x(
          'message',
          { from: kit.domain, to: resource, id: newId() },
          x('body', {}, `${kit.networkName} contacts to add to your roster`),
          x(
            'x',
            { xmlns: NS_ROSTERX },
            fresh.map((f) => x('item', { action: 'add', jid: f.jid, name: f.contact.displayName ?? f.contact.id }, x('group', {}, kit.networkName))),
          ),
        ),
      );
      return;
    }
    for (const f of fresh) {
      kit.send(x('presence', { type: 'subscribe', from: f.jid, to: s.user }, x('nick', { xmlns: NS_NICK }, f.contact.displayName ?? f.contact.id)));
    }
  }

  /** Whether the client at `full` supports XEP-0144 (asked once per resource). */
  private async supportsRosterx(full: string): Promise<boolean> {
    const known = this.rosterxSupport.get(full);
    if (known !== undefined) return known;
    let supported = false;
    try {
      const reply = await this.kit.request(x('iq', { type: 'get', from: this.kit.domain, to: full }, x('query', { xmlns: NS.discoInfo })), 5000);
      supported = reply.attrs.type === 'result' && (reply.getChild('query', NS.discoInfo)?.getChildren('feature').some((f) => f.attrs.var === NS_ROSTERX) ?? false);
    } catch {
      supported = false;
    }
    if (this.rosterxSupport.size > 10_000) this.rosterxSupport.clear();
    this.rosterxSupport.set(full, supported);
    return supported;
  }
}
