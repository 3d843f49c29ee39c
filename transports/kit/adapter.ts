/**
 * The meeting point of the transport kit (which speaks XMPP) and one network adapter (which
 * speaks IRC, Matrix or Discord). The kit owns registration, the credential vault, the connection
 * audit log, JID mapping, rosters and MUC rooms; an adapter only logs in, sends, and reports events.
 * Adapters never see JIDs or XML; the kit never sees a network protocol.
 */
import type { EventEmitter } from 'node:events';

/** A field of the registration form (XEP-0077 legacy field and XEP-0004 data form field). */
export interface RegistrationField {
  /** Form variable; for legacy XEP-0077 forms one of the standard names where one fits (username, password, nick, ...). */
  name: string;
  label: string;
  type: 'text-single' | 'text-multi' | 'text-private' | 'boolean' | 'list-single';
  required: boolean;
  /** Secret fields go into the vault and are never echoed back in forms or logs. */
  secret: boolean;
  options?: string[];
  default?: string;
  description?: string;
}

/** What a user gave at registration, by field name. Secret values stay in memory only while logging in. */
export type Credentials = Record<string, string>;

/** A foreign-network identity as the adapter knows it. `server` is the network endpoint (IRC server host, homeserver). */
export interface LegacyContact {
  /** The contact's id on its network (IRC nick, Matrix user ID, Discord user id). */
  id: string;
  /** For networks where a user spans several servers (IRC): which one. */
  server?: string;
  displayName?: string;
  /**
   * Optional (kit extension): names the contact's current picture (a hash or id that changes with
   * it); the kit fetches it with fetchAvatar when a client needs it (vCard-temp, XEP-0153).
   */
  avatar?: string;
}

/** Optional (kit extension): a message of a room's history (roomJoined). */
export interface RoomHistoryItem {
  nick: string;
  message: TextMessage;
}

/** Optional (kit extension): a picture, as fetched from the network. */
export interface AvatarImage {
  data: Buffer;
  /** image/png, image/jpeg, ... */
  type: string;
}

export interface LegacyRoom {
  /** The room's id on its network (IRC channel name, Matrix room ID/alias, Discord channel id). */
  id: string;
  server?: string;
  /** Human name for disco (e.g. "Guild / #channel"). */
  name?: string;
}

export type OccupantRole = 'moderator' | 'participant' | 'visitor';
export type OccupantAffiliation = 'owner' | 'admin' | 'member' | 'none' | 'outcast';

export interface Occupant {
  nick: string;
  role: OccupantRole;
  affiliation: OccupantAffiliation;
  /** The occupant's own contact identity, where the network exposes it (for private messages). */
  contact?: LegacyContact;
}

export interface TextMessage {
  text: string;
  /** /me, CTCP ACTION, m.emote */
  action?: boolean;
  /** IRC NOTICE, m.notice: shown, never auto-answered */
  notice?: boolean;
  /** Network message id, for edits/reactions/replies where the network has them. */
  id?: string;
  replyTo?: string;
  /** Links to media (XEP-0066 out-of-band URLs). */
  attachments?: string[];
  timestamp?: Date;
  /**
   * Optional (kit extension): this message corrects an earlier one (XEP-0308; Matrix m.replace);
   * `text` is the new text. Ids are network ids in events, and the kit's ids of messages it sent
   * (or network ids) in calls to the adapter.
   */
  editOf?: string;
  /** Optional (kit extension): retracts the message with this id (XEP-0424; Matrix redaction); `text` is empty. */
  redacts?: string;
  /**
   * Optional (kit extension): the sender's reactions to message `to` (XEP-0444), always the whole
   * current set of this sender (an empty `keys` removes them all); `text` is empty.
   */
  reactions?: { to: string; keys: string[] };
}

/**
 * Optional (kit extension): an entry of the network's room directory, shown in the disco#items of
 * the gateway: a room (its JID), or a node to browse further (a Discord guild).
 */
export interface DirectoryItem {
  name: string;
  room?: LegacyRoom;
  /** A node of the gateway's disco#items (the adapter's own naming), listed by directory(node). */
  node?: string;
}

/** Why a login or connection failed, mapped by the kit to presence errors and audit events. */
export class LegacyAuthError extends Error {
  readonly kind = 'auth';
}
export class LegacyNetworkError extends Error {
  readonly kind = 'network';
}

/** Events a session reports to the kit. */
export interface LegacySessionEvents {
  /** A direct/private message from a contact. */
  message: [from: LegacyContact, message: TextMessage];
  /** A message in a room; `self` true for the echo of what this user sent, when the network echoes. */
  roomMessage: [room: LegacyRoom, nick: string, message: TextMessage];
  /**
   * This user is in the room now, with its occupant list (including itself as `ownNick`).
   * Optional (kit extension) `history`: messages said while the user was away, oldest first, with
   * their timestamps; the kit sends them between the self-presence and the subject, as XEP-0045
   * orders a room's history.
   */
  roomJoined: [room: LegacyRoom, ownNick: string, occupants: Occupant[], subject: string | null, history?: RoomHistoryItem[]];
  /** Joining failed (banned, invite only, bad key, ...). */
  roomJoinFailed: [room: LegacyRoom, reason: string, condition: 'forbidden' | 'not-authorized' | 'registration-required' | 'service-unavailable' | 'conflict' | 'item-not-found' | 'not-acceptable'];
  occupantJoined: [room: LegacyRoom, occupant: Occupant];
  /** An occupant left: part, quit or kick (then `kickedBy`). If nick is our own, we left. */
  occupantLeft: [room: LegacyRoom, nick: string, reason: string | null, kickedBy: string | null];
  occupantChanged: [room: LegacyRoom, occupant: Occupant];
  nickChanged: [room: LegacyRoom, oldNick: string, newNick: string];
  subject: [room: LegacyRoom, subject: string, by: string | null];
  /** Server notices and other text from the network itself (IRC server notices). */
  serverMessage: [server: string, message: TextMessage];
  contactPresence: [contact: LegacyContact, show: 'available' | 'away' | 'dnd' | 'xa' | 'unavailable', status: string | null];
  typing: [from: LegacyContact | { room: LegacyRoom; nick: string }, state: 'composing' | 'paused' | 'active'];
  /** The connection was lost; the kit reconnects with backoff unless the adapter says it is final. */
  disconnected: [reason: string, final: boolean];
  /**
   * The connection is (re-)established; the kit writes a 'connected' audit row. (The kit writes
   * one when login() resolves; a first 'connected' right after that is taken as the same event.)
   */
  connected: [server: string, account: string];
  /**
   * Optional (kit extension): the network's own contact list (friends, buddy list), on login or
   * when it changes. The kit offers contacts the user does not have yet (XEP-0144 roster item
   * exchange where the client supports it, else a subscription request per contact).
   */
  roster: [contacts: LegacyContact[]];
  /** Optional (kit extension): a contact or occupant has read up to this message (XEP-0333 displayed). */
  displayed: [from: LegacyContact | { room: LegacyRoom; nick: string }, messageId: string];
  /** Optional (kit extension): this user was invited to a room (becomes a XEP-0249 invitation). */
  invited: [room: LegacyRoom, by: LegacyContact, reason: string | null];
  /**
   * Optional (kit extension): the position in the network's event stream moved (Matrix sync
   * token). The kit stores the latest value and passes it back as LoginRequest.state, so a new
   * session resumes there instead of replaying or losing events. Not secret, but not for logs.
   */
  syncState: [state: string];
  /**
   * Optional (kit extension): credentials changed during the session (a renewed OAuth access
   * token and a rotated refresh token, a Matrix recovery key the user gave); the kit merges these
   * fields into the vault record (an empty value removes the field), and from then on scrubs
   * their values from audit reasons. Never logged.
   */
  credentials: [fields: Credentials];
  /**
   * Optional (kit extension): the session's secret state changed (Matrix: the end-to-end
   * encryption store). The kit seals it with the vault's key, stores it per registration and
   * server (transport_secret_state, erased with the registration) and passes it back as
   * LoginRequest.secretState. Opaque bytes; never logged.
   */
  secretState: [data: Uint8Array];
  /**
   * Optional (kit extension): the session tells its user something that is neither a contact's
   * nor a room's message (a verification request and its emoji, a question to answer): a chat
   * message from the gateway's JID. Answers come back through LegacySession.gatewayMessage.
   */
  gatewayMessage: [text: string];
}

/**
 * Optional (kit extension): what sendMessage or sendRoomMessage may resolve with when the message
 * went out, but not quite as the user sent it (a file that went as a link): `notice` says what and
 * why, fit for the user. The kit tells the user: in a room as a message from the room itself, to
 * a contact as a message from the gateway. Never a secret or the message's text in it.
 */
export interface SendReport {
  notice?: string;
}

/** One user's live connection to the foreign network (for IRC: to one server). */
export interface LegacySession extends EventEmitter<LegacySessionEvents> {
  sendMessage(to: LegacyContact, message: TextMessage): Promise<void | SendReport>;
  sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<void | SendReport>;
  joinRoom(room: LegacyRoom, nick: string, password?: string): Promise<void>;
  leaveRoom(room: LegacyRoom, reason?: string): Promise<void>;
  setSubject(room: LegacyRoom, subject: string): Promise<void>;
  changeNick(room: LegacyRoom | null, nick: string): Promise<void>;
  kick(room: LegacyRoom, nick: string, reason?: string): Promise<void>;
  /** Ends the connection; emits no 'disconnected' afterwards. */
  logout(reason?: string): Promise<void>;
  /**
   * Optional: the foreign account's name, for the audit log (P10), when the credentials do not
   * name it (a bot token); never a secret.
   */
  readonly account?: string;
  /**
   * Optional (kit extension): the user put this contact on (or took it off) their roster; networks
   * that watch contacts (IRC MONITOR, buddy lists) start or stop reporting its presence. At login
   * the kit calls addContact for every contact the user has through the transport.
   */
  addContact?(contact: LegacyContact): Promise<void>;
  removeContact?(contact: LegacyContact): Promise<void>;
  /** Optional (kit extension): the user's own availability changed (IRC AWAY). */
  setPresence?(show: 'available' | 'away' | 'dnd' | 'xa', status: string | null): Promise<void>;
  /** Optional (kit extension): chat state notifications (XEP-0085) where the network has typing. */
  sendTyping?(to: LegacyContact | LegacyRoom, state: 'composing' | 'paused' | 'active'): Promise<void>;
  /** Optional (kit extension): the user has read up to this message (XEP-0333 displayed); kit id or network id. */
  markRead?(where: LegacyContact | LegacyRoom, messageId: string): Promise<void>;
  /** Optional (kit extension): invite a contact to a room (XEP-0249 / XEP-0045 mediated invitation from the user). */
  invite?(room: LegacyRoom, contact: LegacyContact, reason?: string): Promise<void>;
  /** Optional (kit extension): the current position in the network's event stream (see the 'syncState' event). */
  syncState?(): string | null;
  /**
   * Optional (kit extension): the rooms the network lists (IRC LIST), at most `max` of them;
   * `complete` is false when the list was cut there. The kit caches the answer (see room-list.ts).
   */
  roomDirectory?(max: number): Promise<{ rooms: ListedRoom[]; complete: boolean }>;
  /**
   * Optional (kit extension): a line the user typed to send to the network as it is (IRC raw
   * commands, messages to the server JID); the network's answers come back as serverMessage.
   * Rejects with an Error whose message is fit for the user when the line is refused.
   */
  sendRaw?(line: string): Promise<void>;
  /** Optional (kit extension): the picture of a contact or occupant (LegacyContact.avatar), at most maxBytes; null when it has none. */
  fetchAvatar?(contact: LegacyContact, maxBytes: number): Promise<AvatarImage | null>;
  /**
   * Optional (kit extension): the network's rooms for browsing (XEP-0030 disco#items on the
   * gateway): `null` is the top level; a node from an earlier item lists that node; an unknown
   * node is null (item-not-found).
   */
  directory?(node: string | null): Promise<DirectoryItem[] | null>;
  /**
   * Optional (kit extension): the latest secret state (see the 'secretState' event), with any
   * change still pending included; also after logout(). Null when there is none.
   */
  secretState?(): Promise<Uint8Array | null>;
  /** Optional (kit extension): the user wrote this to the gateway's JID (a chat message; see the 'gatewayMessage' event). */
  gatewayMessage?(text: string): Promise<void>;
  /**
   * Optional (kit extension): runs one of the adapter's `commands` (XEP-0050 on the gateway JID)
   * with the submitted values (secret ones included: never logged, never echoed); resolves with
   * the note shown to the user, rejects with a CommandFailure whose text the user sees.
   */
  runCommand?(node: string, values: Record<string, string>): Promise<string>;
}

/** Why an adapter command failed: shown to the user as the command's error (never a secret in it). */
export class CommandFailure extends Error {
  constructor(
    message: string,
    readonly condition: 'bad-request' | 'not-acceptable' | 'item-not-found' | 'service-unavailable' = 'bad-request',
  ) {
    super(message);
  }
}

/** Optional (kit extension): an ad-hoc command of the adapter on the gateway JID, run in the user's session (LegacySession.runCommand). */
export interface AdapterCommand {
  node: string;
  name: string;
  instructions: string;
  /** The form; secret fields are text-private and never shown back. */
  fields: RegistrationField[];
}

/** A room in a network's directory (LegacySession.roomDirectory). */
export interface ListedRoom {
  room: LegacyRoom;
  /** Members, where the network says. */
  members?: number;
  /** The topic, or a description. */
  topic?: string;
}

export interface AdapterLogger {
  debug(msg: string, fields?: Record<string, string | number | boolean | null | undefined>): void;
  info(msg: string, fields?: Record<string, string | number | boolean | null | undefined>): void;
  warn(msg: string, fields?: Record<string, string | number | boolean | null | undefined>): void;
}

/** What is known of a file before it is fetched (each may be missing). */
export interface MediaInfo {
  /** The file's name as the sender called it (no path). */
  name?: string;
  /** Media type, such as image/png. */
  type?: string;
  /** Bytes, when the network says. */
  size?: number;
}

/**
 * Where the bytes of a file to re-host are: an HTTP(S) URL, with the headers the fetch needs (a
 * Matrix access token in `Authorization`: used for that request only, never logged).
 */
export interface MediaSource {
  url: string;
  headers?: Record<string, string>;
  /**
   * Optional: a stream the downloaded bytes pass through before they are uploaded, of the same
   * length (Matrix: decrypting an encrypted attachment); an error in it fails the re-hosting.
   */
  transform?: () => NodeJS.ReadWriteStream;
}

/** The result of a re-hosting: the URL on the XMPP server's upload service, or why there is none. */
export type RehostOutcome = { url: string } | { url: null; reason: 'no-service' | 'too-large' | 'failed' | 'refused'; text: string };

/** A file fetched for the network (from XMPP to the network): its bytes as a stream, at most `MediaHost.maxSize`. */
export interface FetchedMedia {
  stream: NodeJS.ReadableStream;
  /** Bytes: always known (a source without Content-Length is spooled to a temporary file first). */
  size: number;
  type: string;
  name: string;
  /** Ends the transfer early (the stream is not read to its end). */
  cancel(): void;
}

/**
 * Optional (kit extension): the XMPP side's file service, offered to sessions in
 * LoginRequest.media. Attachments from the network are re-hosted through an XEP-0363 slot of the
 * XMPP server's upload service (their network URLs expire or need the user's token); files users
 * send from XMPP (upload URLs on their server) can be fetched to be sent as files.
 */
export interface MediaHost {
  /** Largest file re-hosted or fetched, in bytes. */
  readonly maxSize: number;
  /** Optional (kit extension): false when the operator turned files off (`media.enabled: false`): nothing is fetched or re-hosted. */
  readonly enabled?: boolean;
  rehost(source: MediaSource, info: MediaInfo): Promise<RehostOutcome>;
  /**
   * Whether `url` is a file on the user's XMPP server (its upload service) that `fetch` will get;
   * other URLs are left as links (the transport fetches no URL of the user's choosing).
   */
  fetchable(url: string): boolean;
  /** Fetches such a URL; rejects when it is not fetchable, too large or unavailable. */
  fetch(url: string): Promise<FetchedMedia>;
  /**
   * Optional (kit extension): whether a link someone on the network said (IRC) is a file link the
   * gateway re-hosts (`media.links`); false when links are off or there is no upload service setting.
   */
  wantsLink?(url: string): boolean;
  /**
   * Optional (kit extension): re-hosts such a link behind the SSRF guard (link-guard.ts), once per
   * URL for all users; 'refused' when the guard or the type rules say no (the link stays as it is).
   */
  rehostLink?(url: string): Promise<RehostOutcome>;
}

export interface LoginRequest {
  /** The XMPP user, only for log context; adapters must not send it to the network. */
  userJid: string;
  credentials: Credentials;
  /** For multi-server networks (IRC): which server; else undefined. */
  server?: string;
  log: AdapterLogger;
  /**
   * Optional (kit extension): a stable per-user, per-network identifier that is not the JID (64 hex
   * digits; Vault.pseudonym), for what the network may see to tell users apart (IRC ident, WEBIRC).
   */
  pseudonym?: string;
  /** Optional (kit extension): the user's values for the adapter's `settingsFields`, by name. */
  settings?: Record<string, string>;
  /** Optional (kit extension): the last value of the previous session's 'syncState' event, to resume from. */
  state?: string;
  /** Optional (kit extension): the XMPP server's upload service, for attachments both ways. */
  media?: MediaHost;
  /** Optional (kit extension): the last secret state the previous session reported (the 'secretState' event), unsealed. */
  secretState?: Uint8Array;
  /**
   * Optional (kit extension): tells the user something the login needs from them (a link to
   * approve the login in a browser, with its code), as a chat message from the gateway, and gives
   * the login `waitMs` more time than the kit's login timeout from now on.
   */
  prompt?(text: string, waitMs: number): void;
  /**
   * Optional (kit extension): the user's own XMPP picture (their vCard-temp PHOTO) as an https URL
   * on the XMPP server's upload service, for networks that show it with the user's messages; null
   * without a picture or an upload service. Fetched and uploaded when first called.
   */
  ownAvatarUrl?(): Promise<string | null>;
  /**
   * Optional (kit extension): the transport's `loginTimeout` in milliseconds. The kit gives up on
   * a login after this long; an adapter with its own deadline (e.g. for a first sync) uses this one.
   */
  timeoutMs?: number;
}

/** A network adapter: one per transport process. */
export interface NetworkAdapter {
  /** 'irc' | 'matrix' | 'discord': the disco identity type and the audit log's network. */
  readonly network: string;
  /** Display name for disco, e.g. "IRC gateway". */
  readonly name: string;
  readonly registrationFields: RegistrationField[];
  /** Whether one registration spans several servers (IRC: each `%server` in addresses). */
  readonly multiServer: boolean;
  /**
   * Logs in. Resolves when the session is usable; rejects with LegacyAuthError or
   * LegacyNetworkError. Registration calls this before anything is stored.
   */
  login(request: LoginRequest): Promise<LegacySession>;
  /** Credentials to store instead of what the user typed (e.g. Matrix: password → access token). */
  credentialsToStore?(session: LegacySession, given: Credentials): Credentials;
  /**
   * Optional (kit extension): names of stored credential values that are secret although no
   * registration field asks for them (a refresh token): scrubbed from audit reasons like passwords.
   */
  readonly storedSecrets?: string[];
  /**
   * Optional (kit extension): whether a legacy id names a room rather than a contact (IRC: it
   * starts with # & + or !). The kit asks it to tell `#chan%irc.example.org@irc.domain` (a room)
   * from `nick%irc.example.org@irc.domain` (a contact). Without it, no address is a room.
   */
  isRoomId?(id: string): boolean;
  /**
   * Optional (kit extension), multi-server networks: the server used when the registration names
   * none (no `server` field) and for presence to the gateway itself.
   */
  readonly defaultServer?: string;
  /**
   * Optional (kit extension): the network echoes the user's own room messages back as
   * `roomMessage` from the own nick (IRC echo-message). Without it the kit echoes each groupchat
   * message to the user itself, as XEP-0045 requires, once sendRoomMessage resolves.
   */
  readonly echoesRoomMessages?: boolean;
  /**
   * Optional (kit extension): sessions take raw commands (LegacySession.sendRaw): messages to a
   * server JID are sent as they are, unless the user's setting `rawCommands` is off.
   */
  readonly rawCommands?: boolean;
  /**
   * Optional (kit extension): staying connected (bouncer mode). Whether the user's stored values
   * for a server ask to keep the session while no resource of theirs is online (IRC: the
   * `stayConnected` setting). The kit then keeps such a session and its rooms after the grace
   * period (no logout, no leaving), reconnects it after drops, logs it in when the transport
   * starts, sends private messages to the bare JID (the XMPP server's offline storage takes them),
   * keeps room lines in memory (`bouncer` limits) for the next join as MUC history, and tells the
   * user of lines naming their nick in a private message.
   */
  staysConnected?(credentials: Credentials): boolean;
  /**
   * Optional (kit extension): join without registration. The credentials of a login for a user
   * who has stored nothing for `server`, from the nick of the room join that asked for it (IRC:
   * connect with the MUC nick, as Biboumi does); null refuses. Without it, joining needs a
   * registration.
   */
  guestCredentials?(server: string | undefined, nick: string): Credentials | null;
  /**
   * Optional (kit extension): per-user settings of this network (ad-hoc command "Settings"),
   * passed back in LoginRequest.settings. Never secret (they are shown back in forms).
   */
  readonly settingsFields?: RegistrationField[];
  /** Optional (kit extension): the transport stops, after every session logged out (a connection the adapter shares between users ends). */
  close?(): Promise<void>;
  /**
   * Optional (kit extension): ad-hoc commands of the network for registered users on the
   * gateway JID; the kit logs the user in if needed and calls LegacySession.runCommand.
   */
  readonly commands?: AdapterCommand[];
}

/**
 * Optional (kit extension): how `gatehouse transport NAME` finds an adapter. By convention
 * transports/<name>/index.ts exports `createAdapter: AdapterFactory`; `settings` is the
 * `network:` mapping of the transport's configuration file, unvalidated (the adapter checks it
 * and throws an Error with a one-line message naming the key).
 */
export type AdapterFactory = (settings: Record<string, unknown>, log: AdapterLogger, kit?: KitSettings) => NetworkAdapter | Promise<NetworkAdapter>;

/** The kit's settings an adapter may need to agree with (its own settings must not contradict them). */
export interface KitSettings {
  /** The transport's `loginTimeout`, in milliseconds (also passed with each login as LoginRequest.timeoutMs). */
  loginTimeoutMs: number;
}
