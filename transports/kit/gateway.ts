/**
 * The gateway: one transport process (or in-process instance) for one network adapter, speaking
 * XEP-0114 to any XMPP server. It dispatches every stanza for its domain:
 *
 *   domain                    the gateway: disco (identity gateway/<network>, plus
 *                             conference/<network> for rooms), XEP-0077 registration,
 *                             jabber:iq:gateway, ad-hoc commands, ping, version; presence
 *                             subscriptions and the user's presence (logs in, logs out)
 *   server@domain             (multi-server networks) a server: its messages, per-server
 *                             settings, presence for that server's session
 *   id[%server]@domain        a contact (contacts.ts)
 *   #room[%server]@domain[/n] a room and its occupants (rooms.ts)
 *
 * At start it tells every registered user it is there (available presence) and probes them, so
 * users already online log in again; at shutdown every user sees its rooms (status 332) and
 * contacts go and the gateway say it is going away (XEP-0100 §6, business rule 6).
 */
import { createHash } from 'node:crypto';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import type { Clock } from '../../shared/clock.js';
import { systemClock } from '../../shared/clock.js';
import { Logger } from '../../shared/logger.js';
import { logFileSink } from '../../shared/rotating-log-file.js';
import type { Storage, TransportRepository } from '../../storage/types.js';
import type { NetworkAdapter } from './adapter.js';
import { Addresses, type Address } from './addresses.js';
import { AuditLog } from './audit-log.js';
import { AdHocCommands } from './adhoc.js';
import { Contacts } from './contacts.js';
import { KeyedQueue, errorText } from './context.js';
import type { Kit, KitSettings } from './kit-types.js';
import { ComponentLink, type StanzaLink } from './link.js';
import { Registration } from './registration.js';
import { Rooms } from './rooms.js';
import { SessionManager } from './sessions.js';
import { NS_COMMANDS, NS_GATEWAY, NS_JID_ESCAPING, NS_MUC, iqError, iqResult } from './stanzas.js';
import { Vault, readKeyFile, resolveVaultKey, type KeyResolution } from './vault.js';
import type { TransportConfig } from './config.js';
import { openTransportStorage } from './storage.js';
import { MediaService, type MediaSettings } from './media.js';
import { RoomDirectory, type RoomDirectorySettings } from './room-directory.js';
import { NS_RSM } from './rsm.js';
import { SessionUnavailableError } from './user-session.js';
import { AvatarCache, NS_VCARD, vcardElement, type AvatarSettings } from './avatars.js';

export const TRANSPORT_SOFTWARE = 'Gatehouse transport';
export const TRANSPORT_VERSION = '0.1.0';

export interface GatewayDeps {
  domain: string;
  adapter: NetworkAdapter;
  settings: KitSettings;
  repo: TransportRepository;
  vault: Vault;
  link: Pick<StanzaLink, 'send' | 'request'>;
  clock?: Clock;
  log: Logger;
  /** Attachments through the XMPP server's upload service; without it they stay links. */
  media?: MediaSettings;
  /** The room directory in disco#items (cache age, caps, page size). */
  roomDirectory?: RoomDirectorySettings;
  /** Pictures of contacts and occupants (vCard-temp, XEP-0153); without it none are fetched. */
  avatars?: AvatarSettings;
}

/** "IRC gateway" → "IRC". */
function networkNameOf(adapter: NetworkAdapter): string {
  const stripped = adapter.name.replace(/\s+(gateway|transport|bridge)$/i, '').trim();
  return stripped || adapter.network;
}

export class Gateway implements Kit {
  readonly domain: string;
  readonly adapter: NetworkAdapter;
  readonly settings: KitSettings;
  readonly repo: TransportRepository;
  readonly vault: Vault;
  readonly audit: AuditLog;
  readonly addresses: Addresses;
  readonly clock: Clock;
  readonly log: Logger;
  readonly sessions: SessionManager;
  readonly rooms: Rooms;
  readonly contacts: Contacts;
  readonly registration: Registration;
  readonly adhoc: AdHocCommands;
  readonly networkName: string;
  readonly media: MediaService;
  readonly roomDirectory: RoomDirectory;
  readonly avatars: AvatarCache | null;
  private readonly presenceQueue = new KeyedQueue();
  private readonly messageQueue = new KeyedQueue();
  private readonly link: Pick<StanzaLink, 'send' | 'request'>;
  private stopping = false;

  constructor(deps: GatewayDeps) {
    this.domain = deps.domain;
    this.adapter = deps.adapter;
    this.settings = deps.settings;
    this.repo = deps.repo;
    this.vault = deps.vault;
    this.link = deps.link;
    this.clock = deps.clock ?? systemClock;
    this.log = deps.log;
    this.networkName = networkNameOf(deps.adapter);
    this.addresses = new Addresses(deps.domain, deps.adapter);
    this.audit = new AuditLog(deps.repo, deps.adapter.network, this.clock, (err) =>
      this.log.error('cannot write the connection log', { network: deps.adapter.network, error: errorText(err) }),
    );
    this.registration = new Registration(this);
    this.sessions = new SessionManager(this);
    this.rooms = new Rooms(this);
    this.contacts = new Contacts(this);
    this.adhoc = new AdHocCommands(this);
    this.roomDirectory = new RoomDirectory(this, deps.roomDirectory);
    this.media = new MediaService(this, deps.media ?? { enabled: false, maxSize: 0, timeout: 60_000, service: null, server: null, caFile: null });
    this.avatars = deps.avatars && deps.avatars.maxEntries > 0 ? new AvatarCache(deps.avatars, () => this.clock.now().getTime()) : null;
  }

  send(stanza: Element): void {
    if (!stanza.attrs.from) stanza.attrs.from = this.domain;
    this.link.send(stanza);
  }

  request(iq: Element, timeoutMs?: number): Promise<Element> {
    if (!iq.attrs.from) iq.attrs.from = this.domain;
    return this.link.request(iq, timeoutMs);
  }

  // ---- dispatch ----

  /** Handles one stanza from the XMPP server. Never throws. */
  async handle(stanza: Element): Promise<void> {
    if (this.stopping) return;
    try {
      const from = Jid.tryParse(stanza.attrs.from);
      const to = Jid.tryParse(stanza.attrs.to);
      if (!from || !to) return;
      if (to.domain !== this.domain) {
        if (stanza.name === 'iq' && (stanza.attrs.type === 'get' || stanza.attrs.type === 'set')) this.send(iqError(stanza, 'service-unavailable'));
        return;
      }
      const addr = this.addresses.parse(to);
      switch (stanza.name) {
        case 'iq':
          return await this.iq(stanza, from, to, addr);
        case 'message':
          return await this.messageQueue.run(from.bare, () => this.message(stanza, from, to, addr));
        case 'presence':
          return await this.presenceQueue.run(from.bare, () => this.presence(stanza, from, to, addr));
      }
    } catch (err) {
      this.log.error('stanza handling failed', { network: this.adapter.network, kind: stanza.name, error: errorText(err) });
      if (stanza.name === 'iq' && (stanza.attrs.type === 'get' || stanza.attrs.type === 'set')) this.send(iqError(stanza, 'internal-server-error'));
    }
  }

  private async iq(iq: Element, from: Jid, to: Jid, addr: Address | null): Promise<void> {
    const type = iq.attrs.type;
    if (type !== 'get' && type !== 'set') return;
    if (iq.elements.length !== 1) return this.send(iqError(iq, 'bad-request', 'an IQ carries exactly one payload'));
    let reply: Element | null;
    if (!addr) reply = iqError(iq, 'item-not-found', 'not an address of this transport');
    else if (addr.kind === 'gateway') reply = await this.gatewayIq(iq, from, to);
    else if (addr.kind === 'server') reply = await this.serverIq(iq, from, to, addr.server);
    else if (addr.kind === 'room') reply = await this.rooms.iqIn(from, to, addr, iq);
    else reply = await this.contactIq(iq, from, addr);
    if (reply) this.send(reply);
  }

  private async gatewayIq(iq: Element, from: Jid, to: Jid): Promise<Element | null> {
    const child = iq.elements[0]!;
    const ns = child.xmlns;
    const get = iq.attrs.type === 'get';
    if (ns === NS.discoInfo && child.name === 'query' && get) {
      const node = child.attrs.node;
      if (node === NS_COMMANDS) return iqResult(iq, x('query', { xmlns: NS.discoInfo, node }, x('identity', { category: 'automation', type: 'command-list', name: 'Commands' })));
      if (node) {
        const info = await this.adhoc.info(from, to, node);
        if (info) return iqResult(iq, info);
        const branch = await this.roomDirectory.nodeInfo(from, undefined, node);
        return branch ? iqResult(iq, branch) : iqError(iq, 'item-not-found');
      }
      return iqResult(iq, this.gatewayInfo());
    }
    if (ns === NS.discoItems && child.name === 'query' && get) {
      const node = child.attrs.node;
      if (node === NS_COMMANDS) return iqResult(iq, x('query', { xmlns: NS.discoItems, node }, await this.adhoc.items(from, to)));
      return this.roomDirectory.items(iq, from, undefined);
    }
    if (ns === NS.register && child.name === 'query') return get ? this.registration.form(iq, from) : this.registration.set(iq, from);
    if (ns === NS_GATEWAY && child.name === 'query') return this.gatewayTranslate(iq, from);
    if (ns === NS_COMMANDS && child.name === 'command' && !get) return this.adhoc.execute(iq, from, to);
    if (ns === NS.ping && get) return iqResult(iq);
    if (ns === NS.version && get) {
      return iqResult(iq, x('query', { xmlns: NS.version }, x('name', {}, `${TRANSPORT_SOFTWARE} (${this.adapter.network})`), x('version', {}, TRANSPORT_VERSION)));
    }
    return iqError(iq, 'service-unavailable');
  }

  private gatewayInfo(): Element {
    const features = [NS.discoInfo, NS.discoItems, NS_RSM, NS.register, NS_GATEWAY, NS_COMMANDS, NS.ping, NS.version, NS_JID_ESCAPING];
    if (this.adapter.isRoomId) features.push(NS_MUC);
    return x(
      'query',
      { xmlns: NS.discoInfo },
      x('identity', { category: 'gateway', type: this.adapter.network, name: this.adapter.name }),
      this.adapter.isRoomId ? x('identity', { category: 'conference', type: this.adapter.network, name: `${this.networkName} rooms` }) : null,
      features.map((v) => x('feature', { var: v })),
    );
  }

  /**
   * jabber:iq:gateway (XEP-0100 §6.3): the prompt, and the JID for a legacy address. On
   * multi-server networks the address is `id%server` or just `id` (the user's default server).
   */
  private async gatewayTranslate(iq: Element, from: Jid): Promise<Element> {
    const multi = this.adapter.multiServer;
    if (iq.attrs.type === 'get') {
      const desc = multi
        ? `Enter the ${this.networkName} address of the contact or room, as name%server (the server may be left out for your default server).`
        : `Enter the ${this.networkName} address of the contact or room.`;
      return iqResult(iq, x('query', { xmlns: NS_GATEWAY }, x('desc', {}, desc), x('prompt', {}, multi ? 'Address (name%server)' : 'Address')));
    }
    const prompt = iq.getChild('query', NS_GATEWAY)?.getChildText('prompt')?.trim() ?? '';
    if (!prompt) return iqError(iq, 'bad-request', 'give the address in <prompt/>');
    let id = prompt;
    let server: string | undefined;
    if (multi) {
      const at = prompt.lastIndexOf('%');
      if (at > 0) {
        id = prompt.slice(0, at);
        server = prompt.slice(at + 1);
      } else {
        server = this.registration.cachedDefaultServer(from.bare);
      }
      if (!server) return iqError(iq, 'not-acceptable', 'give the address as name%server');
    }
    const jid = this.addresses.isRoomId(id) ? this.addresses.roomJid({ id, server }) : this.addresses.contactJid({ id, server });
    if (!jid) return iqError(iq, 'not-acceptable', 'that address cannot be written as a JID');
    return iqResult(iq, x('query', { xmlns: NS_GATEWAY }, x('jid', {}, jid), x('prompt', {}, jid)));
  }

  private async serverIq(iq: Element, from: Jid, to: Jid, server: string): Promise<Element | null> {
    const child = iq.elements[0]!;
    const ns = child.xmlns;
    const get = iq.attrs.type === 'get';
    if (ns === NS.discoInfo && child.name === 'query' && get) {
      const node = child.attrs.node;
      if (node) {
        const info = node === NS_COMMANDS ? x('query', { xmlns: NS.discoInfo, node }) : ((await this.adhoc.info(from, to, node)) ?? (await this.roomDirectory.nodeInfo(from, server, node)));
        return info ? iqResult(iq, info) : iqError(iq, 'item-not-found');
      }
      return iqResult(
        iq,
        x(
          'query',
          { xmlns: NS.discoInfo },
          x('identity', { category: 'gateway', type: this.adapter.network, name: `${this.networkName} server ${server}` }),
          [NS.discoInfo, NS.discoItems, NS_RSM, NS.register, NS_COMMANDS, NS.ping].map((v) => x('feature', { var: v })),
        ),
      );
    }
    if (ns === NS.discoItems && child.name === 'query' && get) {
      if (child.attrs.node === NS_COMMANDS) return iqResult(iq, x('query', { xmlns: NS.discoItems, node: NS_COMMANDS }, await this.adhoc.items(from, to)));
      return this.roomDirectory.items(iq, from, server);
    }
    if (ns === NS_COMMANDS && child.name === 'command' && !get) return this.adhoc.execute(iq, from, to);
    if (ns === NS.register && child.name === 'query') return get ? this.registration.serverForm(iq, from, server) : this.registration.serverSet(iq, from, server);
    if (ns === NS.ping && get) return iqResult(iq);
    return iqError(iq, 'service-unavailable');
  }

  private async contactIq(iq: Element, from: Jid, addr: { id: string; server?: string | undefined }): Promise<Element> {
    const id = addr.id;
    const child = iq.elements[0]!;
    if (iq.attrs.type === 'get' && child.xmlns === NS_VCARD && child.name === 'vCard') return this.contactVcard(iq, from, addr);
    if (iq.attrs.type === 'get' && child.xmlns === NS.discoInfo && child.name === 'query' && !child.attrs.node) {
      return iqResult(
        iq,
        x(
          'query',
          { xmlns: NS.discoInfo },
          x('identity', { category: 'client', type: 'pc', name: id }),
          [NS.discoInfo, 'http://jabber.org/protocol/chatstates'].map((v) => x('feature', { var: v })),
        ),
      );
    }
    return iqError(iq, 'service-unavailable');
  }

  /** Uploads of users' own pictures: user → the picture's SHA-1 and its URL (in memory; the same picture is uploaded once). */
  private readonly ownAvatars = new Map<string, { sha1: string; url: string }>();

  async ownAvatarUrl(user: string): Promise<string | null> {
    if (!this.avatars) return null;
    let card: Element;
    try {
      card = await this.request(x('iq', { type: 'get', to: user, from: this.domain }, x('vCard', { xmlns: NS_VCARD })), 10_000);
    } catch {
      return null;
    }
    const photo = card.attrs.type === 'result' ? card.getChild('vCard', NS_VCARD)?.getChild('PHOTO') : undefined;
    const type = photo?.getChildText('TYPE')?.trim().toLowerCase() ?? '';
    const data = Buffer.from((photo?.getChildText('BINVAL') ?? '').replace(/\s+/g, ''), 'base64');
    if (!/^image\/[a-z0-9.+-]+$/.test(type) || data.length === 0 || data.length > this.avatars.maxImageSize) return null;
    const sha1 = createHash('sha1').update(data).digest('hex');
    const known = this.ownAvatars.get(user);
    if (known?.sha1 === sha1) return known.url;
    const out = await this.media.upload(data, { type, name: `avatar.${type.split('/')[1]!.replace(/\W.*$/, '') || 'img'}` });
    if (out.url === null) return null;
    this.ownAvatars.delete(user);
    this.ownAvatars.set(user, { sha1, url: out.url });
    // Bounded like the other pictures.
    while (this.ownAvatars.size > 1000) this.ownAvatars.delete(this.ownAvatars.keys().next().value!);
    return out.url;
  }

  /** vCard-temp of a contact (XEP-0054): its name and picture, for a user with a session (item-not-found otherwise). */
  private async contactVcard(iq: Element, from: Jid, addr: { id: string; server?: string | undefined }): Promise<Element> {
    const s = this.sessions.get(from.bare, addr.server);
    const legacy = s?.legacy;
    if (!legacy) return iqError(iq, 'item-not-found', 'log in to the network first (send available presence to the gateway)');
    const contact = { id: addr.id, ...(addr.server !== undefined ? { server: addr.server } : {}) };
    const avatar = this.avatars && legacy.fetchAvatar ? await this.avatars.get(legacy, contact) : null;
    return iqResult(iq, vcardElement(undefined, avatar));
  }

  private async message(stanza: Element, from: Jid, to: Jid, addr: Address | null): Promise<void> {
    if (stanza.attrs.type === 'error') return;
    if (!addr) {
      this.replyError(stanza, 'item-not-found', 'not an address of this transport');
      return;
    }
    switch (addr.kind) {
      case 'contact':
        return this.contacts.message(from, to, addr, stanza);
      case 'room':
        return this.rooms.messageIn(from, to, addr, stanza);
      case 'server':
        if (stanza.getChild('body')) await this.rawCommand(stanza, from, addr.server);
        return;
      case 'gateway':
        return this.gatewayMessage(stanza, from);
    }
  }

  /** A message to a server JID: its lines go to the network as raw commands (Biboumi's way), where the adapter and the user's settings allow. */
  private async rawCommand(stanza: Element, from: Jid, server: string): Promise<void> {
    const settings = (await this.registration.settingsOf(from.bare)) ?? {};
    if (!this.adapter.rawCommands || settings.rawCommands === 'false') {
      this.replyError(stanza, 'feature-not-implemented', `messages to a server are not sent as commands${this.adapter.rawCommands ? ' (turned off in your settings)' : ''}; write to name%${server}@${this.domain}`);
      return;
    }
    const lines = (stanza.getChildText('body') ?? '').split(/\r?\n/).filter((l) => l.trim() !== '');
    if (!lines.length) return;
    let session;
    try {
      session = await this.sessions.ensure(from.bare, server);
    } catch (err) {
      const failure = err instanceof SessionUnavailableError ? err.failure : { condition: 'remote-server-timeout', text: errorText(err) };
      const text = failure.condition === 'registration-required' ? `not connected to ${server}: join a channel there first, or set your nickname in the server's settings` : failure.text;
      this.replyError(stanza, failure.condition === 'registration-required' ? 'registration-required' : 'remote-server-timeout', text);
      return;
    }
    try {
      for (const line of lines) await session.legacy!.sendRaw!(line);
    } catch (err) {
      this.replyError(stanza, 'not-acceptable', errorText(err));
    }
  }

  /** A chat message to the gateway itself: for the user's session, when its adapter takes them (LegacySession.gatewayMessage). */
  private async gatewayMessage(stanza: Element, from: Jid): Promise<void> {
    const body = stanza.getChild('body')?.text().trim();
    if (!body || (stanza.attrs.type !== 'chat' && stanza.attrs.type !== 'normal' && stanza.attrs.type !== undefined)) return;
    const s = this.sessions.ofUser(from.bare).find((u) => u.state === 'online' && u.legacy?.gatewayMessage);
    if (!s) {
      if (this.adapter.commands?.length) this.replyError(stanza, 'service-unavailable', `not connected to ${this.networkName}; send your presence to the gateway first`);
      return;
    }
    await s.legacy!.gatewayMessage!(body);
  }

  private replyError(stanza: Element, condition: string, text: string): void {
    if (stanza.attrs.type === 'error') return;
    this.send(x(stanza.name, { type: 'error', id: stanza.attrs.id, from: stanza.attrs.to, to: stanza.attrs.from }, x('error', { type: condition === 'item-not-found' || condition === 'feature-not-implemented' ? 'cancel' : 'modify' }, x(condition, { xmlns: NS.stanzas }), x('text', { xmlns: NS.stanzas }, text))));
  }

  private async presence(stanza: Element, from: Jid, to: Jid, addr: Address | null): Promise<void> {
    if (!addr) {
      if (stanza.attrs.type === 'subscribe') this.send(x('presence', { type: 'unsubscribed', from: to.bare, to: from.bare }));
      return;
    }
    const type = stanza.attrs.type;
    if (type === 'unavailable' && !from.resource) {
      // A probe answer for an offline user, or the account going away: every resource is gone.
      await this.sessions.userGone(from.bare);
      return;
    }
    switch (addr.kind) {
      case 'gateway':
        return this.gatewayPresence(stanza, from, type);
      case 'server':
        return this.serverPresence(stanza, from, to, type, addr.server);
      case 'contact':
        return this.contacts.presence(from, to, addr, stanza);
      case 'room':
        return this.rooms.presenceIn(from, to, addr, stanza);
    }
  }

  private async gatewayPresence(stanza: Element, from: Jid, type: string | undefined): Promise<void> {
    const user = from.bare;
    const registered = await this.registration.isRegistered(user);
    switch (type) {
      case 'subscribe':
        if (registered) {
          this.send(x('presence', { type: 'subscribed', from: this.domain, to: user }));
          this.send(x('presence', { from: this.domain, to: user }));
        } else {
          this.send(x('presence', { type: 'unsubscribed', from: this.domain, to: user }));
        }
        return;
      case 'unsubscribed':
        // The user took the gateway's subscription away (roster removal, account deletion): unregister.
        await this.registration.revoked(user);
        return;
      case 'probe':
        this.send(registered ? x('presence', { from: this.domain, to: from.full }) : x('presence', { type: 'unsubscribed', from: this.domain, to: user }));
        return;
      case undefined:
        if (!registered) return;
        await this.sessions.userAvailable(from, this.registration.gatewayServers(user), stanza);
        return;
      case 'unavailable':
        await this.sessions.userUnavailable(from);
        return;
      default:
        return;
    }
  }

  private async serverPresence(stanza: Element, from: Jid, to: Jid, type: string | undefined, server: string): Promise<void> {
    const user = from.bare;
    const registered = await this.registration.isRegistered(user);
    switch (type) {
      case 'subscribe':
        if (!registered) {
          this.send(x('presence', { type: 'unsubscribed', from: to.bare, to: user }));
          return;
        }
        this.send(x('presence', { type: 'subscribed', from: to.bare, to: user }));
        this.send(x('presence', { from: to.bare, to: user }));
        this.send(x('presence', { type: 'subscribe', from: to.bare, to: user }));
        return;
      case 'probe': {
        const s = this.sessions.get(user, server);
        this.send(x('presence', { from: to.bare, to: from.full, type: s?.state === 'online' ? undefined : 'unavailable' }));
        return;
      }
      case undefined:
        if (registered) await this.sessions.userAvailable(from, [server], stanza);
        return;
      case 'unavailable':
        await this.sessions.userUnavailable(from);
        return;
      default:
        return;
    }
  }

  // ---- lifecycle ----

  /** The link to the XMPP server is (again) up: tell registered users, and ask for their presence. */
  announce(): void {
    for (const user of this.registration.registeredUsers()) {
      this.send(x('presence', { from: this.domain, to: user }));
      this.send(x('presence', { type: 'probe', from: this.domain, to: user }));
    }
    // Staying connected: back on the network at once (channels to join come from the adapter's own settings, IRC autojoin).
    for (const { user, server } of this.registration.stayingConnected.splice(0)) this.sessions.restore(user, server);
  }

  /** Logs every session out and tells every registered user the gateway is going away. */
  async shutdown(reason = 'the transport is shutting down'): Promise<void> {
    if (this.stopping) return;
    await this.sessions.closeAll(reason);
    this.stopping = true;
    try {
      await this.adapter.close?.();
    } catch (err) {
      this.log.warn('the network adapter did not close cleanly', { network: this.adapter.network, error: errorText(err) });
    }
    for (const user of this.registration.registeredUsers()) {
      this.send(x('presence', { type: 'unavailable', from: this.domain, to: user }, x('status', {}, `${this.networkName} gateway going away`)));
    }
  }
}

// ---- running a transport ----

export interface TransportOptions {
  config: TransportConfig;
  adapter: NetworkAdapter;
  log?: Logger;
  clock?: Clock;
  env?: NodeJS.ProcessEnv;
  /** A storage to use instead of opening config.storage; not closed by stop(). */
  storage?: Storage;
  loadKeyring?: KeyResolution['loadKeyring'];
}

export interface RunningTransport {
  gateway: Gateway;
  link: ComponentLink;
  storage: Storage;
  /** Logs every user out, says goodbye, closes the connection (and the storage it opened). */
  stop(): Promise<void>;
}

const AUDIT_SWEEP_INTERVAL = 60 * 60_000;

/**
 * Starts a transport: storage (migrated), vault key (a stored record encrypted with another key
 * stops the start with a clear error and changes nothing), the component connection. Resolves
 * once the XMPP server accepted the component; rejects if it refuses it for good.
 */
export async function startTransport(opts: TransportOptions): Promise<RunningTransport> {
  const { config, adapter } = opts;
  const log =
    opts.log ??
    new Logger({ level: config.log.level, format: config.log.format, sink: logFileSink(config.log.file, config.retention.auditLog) }, `transport-${config.adapter}`);
  const clock = opts.clock ?? systemClock;
  const storage = opts.storage ?? (await openTransportStorage(config.storage, log));
  const ownsStorage = !opts.storage;
  let link: ComponentLink | null = null;
  try {
    const key = await resolveVaultKey({ env: opts.env, keyFile: config.vault.keyFile, keyringAccount: config.adapter, loadKeyring: opts.loadKeyring, log });
    const previous = config.vault.previousKeyFiles.map((f) => readKeyFile(f, { create: false }).key);
    const vault = new Vault(key, previous);
    link = new ComponentLink({ ...config.component, reconnect: config.reconnect, log });
    const gateway = new Gateway({
      domain: config.component.domain,
      adapter,
      settings: {
        gracePeriod: config.gracePeriod,
        loginTimeout: config.loginTimeout,
        reconnect: config.reconnect,
        admins: config.admins,
        allowDomains: config.allowDomains,
        bouncer: config.bouncer,
      },
      repo: storage.transports,
      vault,
      link,
      clock,
      log,
      media: config.media,
      avatars: config.avatars,
    });
    const registered = await gateway.registration.load();
    const l = link;
    l.on('stanza', (stanza) => void gateway.handle(stanza));
    l.on('online', () => gateway.announce());
    l.on('offline', () => gateway.sessions.linkLost());
    const sweep = async () => {
      try {
        const n = await gateway.audit.sweep(config.retention.auditLog);
        if (n) log.info('deleted old connection-log rows', { network: adapter.network, count: n });
      } catch (err) {
        log.error('connection-log sweep failed', { error: errorText(err) });
      }
    };
    await sweep();
    const timer = setInterval(() => void sweep(), AUDIT_SWEEP_INTERVAL);
    timer.unref();
    await l.start();
    log.info('transport running', { network: adapter.network, domain: config.component.domain, registered, vault: vault.primary.source });
    let stopped = false;
    return {
      gateway,
      link: l,
      storage,
      async stop() {
        if (stopped) return;
        stopped = true;
        clearInterval(timer);
        await gateway.shutdown();
        await l.stop();
        if (ownsStorage) await storage.close();
        log.info('transport stopped', { network: adapter.network });
      },
    };
  } catch (err) {
    await link?.stop().catch(() => undefined);
    if (ownsStorage) await storage.close().catch(() => undefined);
    throw err;
  }
}

