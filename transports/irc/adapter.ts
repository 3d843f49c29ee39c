/**
 * The IRC network adapter (irc-framework): one LegacySession per user and IRC server.
 *
 * Addresses are the kit's business (Biboumi style: `#channel%irc.example.org@irc.<domain>`); the
 * adapter says `multiServer = true` and which ids are channels (`isRoomId`: # & + !). Contacts and
 * rooms it reports carry `server` = the host the kit passed to `login`.
 *
 * Joining without registration (guestCredentials): the MUC nick is the IRC nick, as with Biboumi.
 * Settings (all per user and server, see settings.ts; registration or the server JID's ad-hoc
 * command): nick, username, realname, password (server PASS, secret), saslAccount + saslPassword
 * (SASL PLAIN, secret), saslExternal (a client certificate the adapter makes, stored as
 * clientCertificate/clientKey), nickservPassword (IDENTIFY after connecting, secret; not used when
 * SASL is), port + tls (one port), tlsPorts and ports (tried in order: TLS first, plain only when
 * named), verifyCertificate (default true), certificateFingerprint (trust exactly one SHA-256
 * certificate fingerprint, e.g. a self-signed server), autojoin, afterConnect (raw commands, kept
 * like a password) and stayConnected (bouncer mode, see staysConnected). Turning verifyCertificate
 * off lets anyone on the path read and change the connection, passwords included; pinning a
 * fingerprint is the safe way to reach a self-signed server. Passwords are never logged nor put
 * into error texts. Operator defaults per server (serverDefaults), flood control per server
 * (serverFlood), identd (identd.ts) and WEBIRC (webirc.ts) come from the adapter's options.
 *
 * Reconnection: the adapter never reconnects by itself. A session whose connection is lost emits
 * `disconnected(reason, final)` once and is then dead (its methods reject with
 * LegacyNetworkError). Unless `final` (the server banned us), the kit calls `login` again with
 * its own backoff, then `joinRoom` for every room its users are in; channels in the
 * registration's `autojoin` are joined by each new session by itself, and joinRoom on an already
 * joined channel just re-emits `roomJoined`.
 *
 * Events after login: `connected(server, account)` is emitted once, in a macrotask after `login`
 * resolved (so listeners attached right after the await get it), followed by server notices and
 * the MOTD received while logging in (serverMessage), then the autojoin rooms.
 *
 * Echo: IRC servers do not echo channel messages, so `sendRoomMessage` emits the sent message
 * back as a `roomMessage` from our own nick, with the kit's `id`, once it went out; the kit can
 * reflect it like any MUC message. Private messages are not echoed.
 *
 * Commands the server can refuse (kick, setSubject, changeNick, leaveRoom, a message too long
 * for IRC) reject with IrcCommandError, whose `condition` is an XMPP stanza error condition.
 * Other refusals (e.g. "cannot send to channel", "no such nick") arrive as serverMessage.
 *
 * Privacy: CTCP VERSION, TIME, PING etc. are not answered (they would reveal the software and the
 * user's clock); only ACTION is understood. Incoming lines are decoded as UTF-8, else
 * Windows-1252; formatting codes and control characters are stripped before the kit sees text.
 */
import type { LoginRequest, NetworkAdapter } from '../kit/adapter.js';
import { LegacyAuthError, LegacyNetworkError, type Credentials, type LegacySession } from '../kit/adapter.js';
import { makeClientCertificate, type ClientCertificate } from './client-certificate.js';
import { DEFAULT_FLOOD, type FloodOptions } from './flood.js';
import { IrcSession, type IrcSessionOptions } from './session.js';
import { identFor, type IdentServer } from './identd.js';
import { webircFor, type WebircServer } from './webirc.js';
import { IRC_REGISTRATION_FIELDS, isValidNick, parseBoolean, parseServerSettings } from './settings.js';

export interface IrcAdapterOptions extends Partial<IrcSessionOptions> {
  /**
   * Which servers users may connect to (default: any). A gateway that lets anyone name a host and
   * port makes connections on their behalf; operators may want to refuse internal addresses.
   */
  allowServer?: (host: string, port: number) => boolean;
  /** Shown in disco (default "IRC gateway"). */
  name?: string;
  flood?: FloodOptions;
  /**
   * Operator defaults per IRC server host (lower case): registration values (tlsPorts, ports,
   * verifyCertificate, ...) that a user's own values override, e.g. a network's TLS port.
   */
  serverDefaults?: Record<string, Credentials>;
  /** Flood control per IRC server host (lower case), instead of `flood`. */
  serverFlood?: Record<string, FloodOptions>;
  /** The gateway's identd (started by the caller): it answers for each connection with the user's ident. */
  identd?: IdentServer | null;
  /** WEBIRC per IRC server host (lower case), for networks the operator has an agreement with. */
  webirc?: Record<string, WebircServer>;
}

export const DEFAULT_SESSION_OPTIONS: IrcSessionOptions = {
  flood: DEFAULT_FLOOD,
  connectTimeoutMs: 20_000,
  registrationTimeoutMs: 30_000,
  nickservTimeoutMs: 15_000,
  commandTimeoutMs: 15_000,
  joinTimeoutMs: 30_000,
  pingIntervalS: 60,
  pingTimeoutS: 120,
  maxNickAttempts: 5,
  lineLimit: 512,
  maxIncomingLineBytes: 16_384,
  maxLinesPerMessage: 50,
  forwardMotd: true,
};

/** Channel prefixes: # (network), & (server-local), + (modeless), ! (safe). */
export function isIrcRoomId(id: string): boolean {
  return /^[#&+!]/.test(id);
}

export class IrcAdapter implements NetworkAdapter {
  readonly network = 'irc';
  readonly name: string;
  readonly registrationFields = IRC_REGISTRATION_FIELDS;
  readonly multiServer = true;
  readonly rawCommands = true;
  /** The client certificate the gateway made for SASL EXTERNAL: stored with the registration, never shown. */
  readonly storedSecrets = ['clientCertificate', 'clientKey'];
  private readonly sessionOptions: IrcSessionOptions;
  private readonly allowServer: (host: string, port: number) => boolean;
  private readonly serverDefaults: Record<string, Credentials>;
  private readonly serverFlood: Record<string, FloodOptions>;
  private readonly webirc: Record<string, WebircServer>;

  constructor(options: IrcAdapterOptions = {}) {
    const { allowServer, name, serverDefaults, serverFlood, webirc, ...session } = options;
    const lower = <T>(r: Record<string, T> | undefined) => Object.fromEntries(Object.entries(r ?? {}).map(([h, v]) => [h.toLowerCase(), v]));
    this.serverFlood = lower(serverFlood);
    this.webirc = lower(webirc);
    this.serverDefaults = Object.fromEntries(Object.entries(serverDefaults ?? {}).map(([h, v]) => [h.toLowerCase(), v]));
    this.name = name ?? 'IRC gateway';
    this.allowServer = allowServer ?? (() => true);
    this.sessionOptions = { ...DEFAULT_SESSION_OPTIONS, ...stripUndefined(session) };
  }

  /** Whether a network id names a channel (else a nick). */
  isRoomId(id: string): boolean {
    return isIrcRoomId(id);
  }

  /** A certificate made at this login (SASL EXTERNAL) is stored with what the user entered. */
  credentialsToStore(session: LegacySession, given: Credentials): Credentials {
    const made = session instanceof IrcSession ? session.generatedCertificate : null;
    return made ? { ...given, clientCertificate: made.cert, clientKey: made.key } : given;
  }

  /** Staying connected (bouncer mode): the per-server setting `stayConnected`. */
  staysConnected(credentials: Credentials): boolean {
    try {
      return parseBoolean(credentials.stayConnected, false);
    } catch {
      return false;
    }
  }

  /** Join without registration (Biboumi's way): the MUC nick is the IRC nick; TLS first, as the defaults say. */
  guestCredentials(_server: string | undefined, nick: string): Credentials | null {
    return isValidNick(nick) ? { nick } : null;
  }

  /**
   * Logs in on the first of the settings' ports that works: the TLS ports in order, then the plain
   * ports (only those the user's settings name). An authentication failure ends the search.
   */
  async login(request: LoginRequest): Promise<IrcSession> {
    const host = (request.server ?? '').toLowerCase();
    const settings = parseServerSettings(request.server, { ...(this.serverDefaults[host] ?? {}), ...request.credentials });
    const pseudonym = request.pseudonym ?? null;
    settings.ident = pseudonym && this.sessionOptions.identd ? identFor(pseudonym) : null;
    const webirc = this.webirc[host];
    settings.webirc = webirc && pseudonym ? webircFor(webirc, pseudonym) : null;
    const opts = this.serverFlood[host] ? { ...this.sessionOptions, flood: this.serverFlood[host] } : this.sessionOptions;
    let generated: ClientCertificate | null = null;
    if (settings.saslExternal && !settings.sasl) {
      if (!settings.clientCertificate) settings.clientCertificate = generated = await makeClientCertificate(settings.nick);
      settings.attempts = settings.attempts.filter((a) => a.tls);
      if (!settings.attempts.length) throw new LegacyAuthError('SASL EXTERNAL (a client certificate) needs TLS: turn TLS on or give a TLS port');
    }
    const allowed = settings.attempts.filter((a) => this.allowServer(settings.host, a.port));
    if (!allowed.length) throw new LegacyAuthError(`connections to ${settings.host} port ${settings.port} are not allowed by this gateway`);
    let lastError: unknown = null;
    for (const [i, attempt] of allowed.entries()) {
      if (i > 0) request.log.info('irc trying the next port', { server: settings.host, port: attempt.port, tls: attempt.tls });
      const session = new IrcSession({ ...settings, ...attempt }, opts, request.log);
      session.media = request.media;
      try {
        await session.start();
        if (generated) session.adoptGeneratedCertificate(generated);
        return session;
      } catch (err) {
        if (!(err instanceof LegacyNetworkError) || !session.failedToConnect) throw err;
        lastError = err;
      }
    }
    throw lastError;
  }
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

export function createIrcAdapter(options: IrcAdapterOptions = {}): IrcAdapter {
  return new IrcAdapter(options);
}

/** The adapter with default settings. */
export const ircAdapter = createIrcAdapter();
