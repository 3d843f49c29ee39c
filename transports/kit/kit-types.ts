/**
 * What the parts of the kit share (built once by gateway.ts), as types: the Kit and the services
 * in it, as interfaces the concrete classes (sessions.ts, rooms.ts, contacts.ts, registration.ts)
 * implement. The parts call each other through these, so none imports another's file for it.
 */
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { TransportRepository } from '../../storage/types.js';
import type { Credentials, LegacyContact, MediaHost, LegacyRoom, LegacySession, NetworkAdapter, Occupant, RoomHistoryItem, TextMessage } from './adapter.js';
import type { Addresses } from './addresses.js';
import type { AuditLog } from './audit-log.js';
import type { Vault } from './vault.js';
import type { FormField } from './forms.js';
import type { LoginFailure, SessionState, UserSession } from './user-session.js';
import type { AvatarCache } from './avatars.js';

export interface KitSettings {
  /** Milliseconds a foreign session outlives the user's last resource. */
  gracePeriod: number;
  /** Milliseconds a login may take. */
  loginTimeout: number;
  reconnect: { min: number; max: number };
  /** Normalised bare JIDs. */
  admins: string[];
  /** Domains whose users may register; empty: any. */
  allowDomains: string[];
  /** Staying connected: room lines kept per room while the user is offline, and for how long (ms). */
  bouncer?: { maxLines: number; maxAge: number };
}

export interface Kit {
  readonly domain: string;
  readonly adapter: NetworkAdapter;
  readonly settings: KitSettings;
  readonly repo: TransportRepository;
  readonly vault: Vault;
  readonly audit: AuditLog;
  readonly addresses: Addresses;
  readonly clock: Clock;
  readonly log: Logger;
  readonly sessions: KitSessions;
  readonly rooms: KitRooms;
  readonly contacts: KitContacts;
  readonly registration: KitRegistration;
  /** Sends a stanza to the XMPP server ('from' defaults to the transport's domain). */
  send(stanza: Element): void;
  /** Sends an IQ get/set and resolves with its result or error. */
  request(iq: Element, timeoutMs?: number): Promise<Element>;
  /** The network's display name for messages, e.g. "IRC". */
  readonly networkName: string;
  /** The XMPP server's upload service, offered to sessions (LoginRequest.media). */
  readonly media: MediaHost;
  /** The room directory in disco#items (room-directory.ts): `forget` drops a session's cached listings. */
  readonly roomDirectory: { forget(user: string, server: string | undefined): void };
  /** Pictures of contacts and occupants, in memory (null: switched off). */
  readonly avatars: AvatarCache | null;
  /** The user's own vCard picture on the upload service (LoginRequest.ownAvatarUrl), or null. */
  ownAvatarUrl(user: string): Promise<string | null>;
}

/** The foreign sessions, driven by presence (sessions.ts). */
export interface KitSessions {
  get(user: string, server: string | undefined): UserSession | undefined;
  ofUser(user: string): UserSession[];
  /** The user's full JIDs with presence for that server (all servers with `anyServer`). */
  resourcesOf(user: string, server?: string | undefined, anyServer?: boolean): string[];
  userAvailable(full: Jid, servers: (string | undefined)[], presence: Element): Promise<void>;
  userUnavailable(full: Jid): Promise<void>;
  userGone(user: string): Promise<void>;
  /** A resource joined a room: the room's server is demanded. */
  /** `nick`: the nick joined with, the login's nick when the user has no stored values for the server (join without registration). */
  addRoomDemand(full: Jid, roomJid: string, server: string | undefined, nick?: string): Promise<void>;
  removeRoomDemand(full: Jid, roomJid: string): Promise<void>;
  /** The session, logged in (or failing with SessionUnavailableError). */
  ensure(user: string, server: string | undefined): Promise<UserSession>;
  logout(s: UserSession, reason: string, opts?: { shutdown?: boolean; tellUser?: boolean }): Promise<void>;
  logoutUser(user: string, reason: string, opts?: { tellUser?: boolean }): Promise<number>;
  /** Takes over a session registration logged in. */
  adopt(user: string, server: string | undefined, legacy: LegacySession, account: string | null, secrets: string[], keepAlive?: boolean): UserSession;
  connectedUsers(): { user: string; server: string | undefined; state: SessionState; since: Date; account: string | null; rooms: number }[];
}

/** MUC rooms (rooms.ts): what the sessions report to them. */
export interface KitRooms {
  sessionOnline(s: UserSession): Promise<void>;
  sessionFailed(s: UserSession, failure: LoginFailure, retrying?: boolean): void;
  connectionLost(s: UserSession): void;
  sessionClosed(s: UserSession, statusCode: number | null): void;
  /** The user's resources `fulls` went unavailable: they leave their rooms. */
  userGone(user: string, fulls: string[]): void;
  joined(s: UserSession, room: LegacyRoom, ownNick: string, occupants: Occupant[], subject: string | null, history?: RoomHistoryItem[]): void;
  joinFailed(s: UserSession, room: LegacyRoom, reason: string, condition: string): void;
  occupantJoined(s: UserSession, room: LegacyRoom, occupant: Occupant): void;
  occupantChanged(s: UserSession, room: LegacyRoom, occupant: Occupant): void;
  occupantLeft(s: UserSession, room: LegacyRoom, nick: string, reason: string | null, kickedBy: string | null): void;
  nickChanged(s: UserSession, room: LegacyRoom, oldNick: string, newNick: string): void;
  subject(s: UserSession, room: LegacyRoom, subject: string, by: string | null): void;
  message(s: UserSession, room: LegacyRoom, nick: string, msg: TextMessage): void;
  displayed(s: UserSession, room: LegacyRoom, nick: string, messageId: string): void;
  typing(s: UserSession, room: LegacyRoom, nick: string, chatState: 'composing' | 'paused' | 'active'): void;
  /** Rooms a user is in, for disco#items of the gateway. */
  roomsOf(user: string): { jid: string; name: string }[];
}

/** Contacts and direct messages (contacts.ts): what the sessions report to them. */
export interface KitContacts {
  sessionOnline(s: UserSession): Promise<void>;
  connectionLost(s: UserSession): void;
  legacyMessage(s: UserSession, from: LegacyContact, msg: TextMessage): void;
  legacyDisplayed(s: UserSession, from: LegacyContact, messageId: string): void;
  legacyInvited(s: UserSession, room: LegacyRoom, by: LegacyContact, reason: string | null): void;
  legacyPresence(s: UserSession, contact: LegacyContact, show: 'available' | 'away' | 'dnd' | 'xa' | 'unavailable', status: string | null): Promise<void>;
  legacyTyping(s: UserSession, from: LegacyContact, state: 'composing' | 'paused' | 'active'): void;
  serverMessage(s: UserSession, server: string, msg: TextMessage): Promise<void>;
  legacyRoster(s: UserSession, contacts: LegacyContact[]): Promise<void>;
}

/** What a login needs from the registration (registration.ts). */
export interface LoginPreparation {
  credentials: Credentials;
  settings: Record<string, string>;
  /** The last 'syncState' of the previous session, to resume from. */
  state: string | undefined;
  /** The last 'secretState' of the previous session, unsealed (null: none, or it could not be opened). */
  secretState: Uint8Array | null;
  account: string | null;
  secrets: string[];
}

/** Registrations and their stored data (registration.ts). */
export interface KitRegistration {
  isRegistered(user: string): Promise<boolean>;
  /** The user's default server, from the cache (multi-server networks). */
  cachedDefaultServer(user: string): string | undefined;
  loginRequestFor(user: string, server: string | undefined): Promise<LoginPreparation | null>;
  /** Whether the user may join rooms without registering (the adapter offers guestCredentials, the user's domain may register). */
  mayJoinWithoutRegistration(user: Jid): boolean;
  /** A login without stored values for the server: the adapter's guest credentials for `nick`, with the user's settings. */
  guestLoginFor(user: string, server: string | undefined, nick: string): Promise<LoginPreparation | null>;
  contactsOf(user: string): Promise<string[]>;
  changeContacts(user: string, add: string[], remove: string[]): Promise<boolean>;
  settingsOf(user: string): Promise<Record<string, string> | null>;
  saveSyncState(user: string, server: string | undefined, state: string): Promise<boolean>;
  /** Seals and stores a session's secret state; false when there is no registration (any more). */
  saveSecretState(user: string, server: string | undefined, data: Uint8Array): Promise<boolean>;
  /** Merges credentials a session renewed (the adapter's 'credentials' event) into the vault record. */
  updateStoredCredentials(user: string, server: string | undefined, fields: Credentials): Promise<boolean>;
  /** The secret values among credentials (scrubbed from audit reasons). */
  secretsOf(values: Credentials): string[];
  saveSettings(user: string, settings: Record<string, string>): Promise<boolean>;
  serverValues(user: string, server: string): Promise<Credentials | null>;
  serverFormFields(values: Credentials | null): FormField[];
  saveServerSettings(user: string, server: string, given: Map<string, string>, opts?: { create?: boolean }): Promise<{ condition: string; text: string } | null>;
}
