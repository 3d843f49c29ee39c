/**
 * One user's connection to one IRC server: connecting, registration (nick collisions at login,
 * SASL, server password, NickServ), the server's replies and the end of the connection. It builds
 * on link.ts (client, send queue, commands); channels.ts and session.ts build on it.
 *
 * irc-framework does the protocol plumbing (line parsing, CAP negotiation, SASL PLAIN, PING/PONG,
 * NAMES aggregation, mode parsing); every user-caused line goes through flood control.
 *
 * Lifecycle: `start()` resolves once the server welcomed us, sent its ISUPPORT and MOTD, and (if
 * configured) NickServ accepted our password. After a lost connection the session emits
 * `disconnected(reason, final)` once and is dead: it never reconnects by itself. The kit reconnects
 * by calling `login` again (with its own backoff) and re-joins the rooms its users are in; the
 * per-server autojoin channels are joined by every new session by itself.
 */
import type { IrcFrameworkMessage } from 'irc-framework';
import { LegacyAuthError, LegacyNetworkError, type AdapterLogger, type LegacyRoom } from '../kit/adapter.js';
import type { IrcServerSettings } from './settings.js';
import { IrcLink, type IrcSessionOptions, type Waiter } from './link.js';
import { sanitizeOutgoing, stripFormatting } from './text.js';
import { TransportError } from './transport.js';
import { certificateFingerprint, type ClientCertificate } from './client-certificate.js';

const NICK_IN_USE = new Set(['433', '436', '437']);
const NICKSERV_OK = /you are now (identified|logged in|recognized)|password accepted|successfully identified|you are already (identified|logged in)/i;
const NICKSERV_BAD = /(invalid|incorrect|wrong|bad) password|password (is )?(incorrect|invalid|wrong)|authentication failed|(is not|isn't|not) (a )?registered|access denied|identification failed/i;

/** Replies the channel layer reads for joins (names, topic, modes): never forwarded as raw-command answers. */
const CHANNEL_STATE_REPLIES = new Set(['321', '322', '323', '324', '329', '332', '333', '353', '366']);

export abstract class IrcConnection extends IrcLink {
  /** Until when numeric replies are forwarded to the user as the answer to a raw command (commands.ts). */
  protected rawRepliesUntil = 0;
  private nickAttempt = 0;
  private nickMaxLen = Infinity;
  private authFailure: string | null = null;
  /** A login failure decided by us (wins over what the socket says afterwards). */
  private loginError: Error | null = null;
  private banned = false;
  private errorReason: string | null = null;
  private transportError: TransportError | null = null;
  private pingTimedOut = false;
  private saslDone = false;
  /** SASL EXTERNAL was refused (or not offered): the login goes on without it, the user is told the fingerprint. */
  protected externalRefused = false;
  private motd: string[] = [];
  private loginSettle: ((err?: Error) => void) | null = null;

  constructor(settings: IrcServerSettings, opts: IrcSessionOptions, log: AdapterLogger) {
    super(settings, opts, log);
    this.bind();
  }

  /** Joins a channel (channels.ts); also used for the autojoin channels after login. */
  abstract joinRoom(room: LegacyRoom, nick: string, password?: string): Promise<void>;
  /** The connection is gone: pending joins end, channel state is forgotten. */
  protected abstract forgetChannels(): void;
  /** RPL_CHANNELMODEIS: a channel's modes. */
  protected abstract channelModes(channel: string, modes: string): void;
  /** A numeric that refuses a pending JOIN: reported as a join failure (true), or not one (false). */
  protected abstract refusedJoin(m: IrcFrameworkMessage): boolean;

  /** The client certificate made at this login (SASL EXTERNAL), to be stored with the registration. */
  generatedCertificate: ClientCertificate | null = null;

  /** Keeps a certificate made at login: stored by registration (credentialsToStore) or, for a stored registration, through the 'credentials' event. */
  adoptGeneratedCertificate(cert: ClientCertificate): void {
    this.generatedCertificate = cert;
    setImmediate(() => this.safeEmit('credentials', { clientCertificate: cert.cert, clientKey: cert.key }));
  }

  /** The login failed before the server welcomed us, for a socket reason (refused, TLS, timeout): another port may do. */
  get failedToConnect(): boolean {
    return this.transportError !== null && !this.loginError && !this.authFailure && !this.banned;
  }

  /** Connects and registers; rejects with LegacyAuthError or LegacyNetworkError. */
  start(): Promise<void> {
    return new Promise((resolve, reject) => {
      const deadline = this.timer(() => {
        this.finishLogin(new LegacyNetworkError(`${this.server} did not complete the login in time`));
      }, this.opts.connectTimeoutMs + this.opts.registrationTimeoutMs + (this.settings.nickservPassword ? this.opts.nickservTimeoutMs : 0));
      this.loginSettle = (err) => {
        this.clearTimer(deadline);
        this.loginSettle = null;
        if (err) reject(err);
        else resolve();
      };
      this.log.info('irc connecting', { server: this.server, port: this.settings.port, tls: this.settings.tls });
      if (this.settings.tls && !this.settings.verifyCertificate && !this.settings.certificateFingerprint) {
        this.log.warn('irc TLS certificate verification is off for this server', { server: this.server });
      }
      this.client.connect();
    });
  }

  private finishLogin(err?: Error): void {
    const settle = this.loginSettle;
    if (!settle) return;
    if (err) {
      this.state = 'closed';
      this.teardown(err instanceof LegacyAuthError ? err : new LegacyNetworkError(err.message));
      // Error texts are built here from server names and server replies: they never hold a password.
      this.log.info('irc login failed', { server: this.server, kind: err instanceof LegacyAuthError ? 'auth' : 'network', reason: err.message });
      settle(err);
      return;
    }
    this.state = 'ready';
    this.log.info('irc connected', { server: this.server, nick: this.ownNick });
    const cert = this.settings.saslExternal && !this.settings.sasl ? this.settings.clientCertificate : null;
    if (cert && !this.saslDone) {
      const fp = certificateFingerprint(cert.cert);
      this.early.push({ text: `${this.server} did not log you in with your client certificate (SASL EXTERNAL). Add its fingerprint to your account, e.g. "PRIVMSG NickServ :CERT ADD ${fp}" as a raw command to this server's JID after identifying. SHA-256 fingerprint: ${fp}`, notice: true });
    }
    settle();
    // After the kit has attached its listeners to the resolved session:
    setImmediate(() => {
      if (this.state !== 'ready') return;
      this.safeEmit('connected', this.server, this.settings.sasl?.account ?? this.ownNick);
      for (const m of this.early.splice(0)) this.safeEmit('serverMessage', this.server, m);
      // After-connect commands (they may hold a password: sent, never logged); their replies come back like a raw command's.
      if (this.settings.afterConnect.length) this.rawRepliesUntil = Date.now() + 10_000;
      for (const line of this.settings.afterConnect) void this.queue.send(line).catch(() => undefined);
      for (const channel of this.settings.autojoin) void this.joinRoom({ id: channel, server: this.server }, this.ownNick).catch(() => undefined);
    });
  }

  /** After 001: wait for ISUPPORT and the MOTD, then identify to NickServ, then we are usable. */
  private afterMotd(): void {
    if (this.state !== 'registered') return;
    if (this.opts.forwardMotd && this.motd.length) this.early.push({ text: this.motd.join('\n'), notice: true });
    this.motd = [];
    if (this.settings.nickservPassword && !this.settings.sasl) {
      this.state = 'identifying';
      void this.identify().then(
        () => this.finishLogin(),
        (err: Error) => this.finishLogin(err),
      );
    } else {
      this.finishLogin();
    }
  }

  private identify(): Promise<void> {
    const password = this.settings.nickservPassword!;
    const args = this.client.caseCompare(this.ownNick, this.settings.nick) ? password : `${this.settings.nick} ${password}`;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match: (m) => {
          if (m.command === 'NOTICE' && this.client.caseCompare(m.nick, 'NickServ')) {
            const text = stripFormatting(m.params[m.params.length - 1] ?? '');
            if (NICKSERV_BAD.test(text)) return new LegacyAuthError('NickServ rejected the password');
            if (NICKSERV_OK.test(text)) return true;
            return undefined;
          }
          if (m.command === '900') return true;
          if ((m.command === '401' || m.command === '440') && this.client.caseCompare(m.params[1] ?? '', 'NickServ')) {
            return new LegacyNetworkError(`NickServ is not available on ${this.server}`);
          }
          return undefined;
        },
        settle: (err) => {
          this.clearTimer(waiter.timer);
          this.waiters.delete(waiter);
          if (err) reject(err);
          else resolve();
        },
        timer: null,
      };
      this.waiters.add(waiter);
      waiter.timer = this.timer(() => waiter.settle(new LegacyNetworkError(`NickServ on ${this.server} did not answer`)), this.opts.nickservTimeoutMs);
      // The password goes on the wire only; it is never logged.
      this.queue.send(`PRIVMSG NickServ :IDENTIFY ${args}`).catch((err: Error) => waiter.settle(err));
    });
  }

  private bind(): void {
    this.client.use((_client, raw) => {
      raw.use((_command, message, _line, _c, next) => {
        this.guard('raw', () => this.onRaw(message));
        next();
      });
    });
    const on = this.onIrc.bind(this);
    on('socket close', (err: unknown) => this.onSocketClose(err));
    on('ping timeout', () => (this.pingTimedOut = true));
    on('registered', (e: { nick: string }) => this.onRegistered(e.nick));
    on('sasl failed', (e: { reason: string }) => {
      if (this.settings.saslExternal && !this.settings.sasl) {
        // The certificate is not (yet) on the account: go on without, and say which fingerprint to add.
        this.externalRefused = true;
        return;
      }
      this.authFailure = e.reason === 'capability_missing' || e.reason === 'unsupported_mechanism' ? `${this.server} does not offer SASL PLAIN` : 'SASL authentication failed';
      this.client.quit();
    });
    on('loggedin', () => (this.saslDone = true));
    on('wallops', (e) => this.serverText({ text: stripFormatting(`${e.nick ? e.nick + ': ' : ''}${e.message}`), notice: true }));
    on('ctcp request', (e) => this.log.debug('irc CTCP request ignored', { server: this.server, type: String(e.type ?? '') }));
  }

  private onRegistered(nick: string): void {
    this.ownNick = nick;
    if (this.settings.sasl && !this.saslDone) {
      this.authFailure ??= `${this.server} did not complete SASL authentication`;
      this.client.quit();
      return;
    }
    this.state = 'registered';
    // ISUPPORT follows 001; the MOTD (or ERR_NOMOTD) ends the burst. Servers that send neither still get in.
    this.timer(() => this.afterMotd(), 10_000);
  }

  private onRaw(m: IrcFrameworkMessage): void {
    let handled = false;
    for (const w of [...this.waiters]) {
      const r = w.match(m);
      if (r === undefined) continue;
      handled = true;
      w.settle(r === true ? undefined : r);
    }
    const cmd = m.command;
    const p = m.params;
    switch (cmd) {
      case '001': {
        const mask = /(\S+)!(\S+)@(\S+)$/.exec(p[p.length - 1] ?? '');
        if (mask) ((this.ownIdent = mask[2]!), (this.ownHost = mask[3]!));
        return;
      }
      case '396': // displayed host
        if (p[1]) this.ownHost = p[1];
        return;
      case '903':
        this.saslDone = true;
        return;
      case '375':
        this.motd = [];
        return;
      case '372':
        this.motd.push(stripFormatting(p[p.length - 1] ?? ''));
        return;
      case '376':
      case '422':
        if (this.state === 'registered') this.afterMotd();
        return;
      case '464':
        this.authFailure = `${this.server} rejected the server password`;
        return;
      case '465':
        this.banned = true;
        this.authFailure = `banned from ${this.server}: ${stripFormatting(p[p.length - 1] ?? '')}`;
        return;
      case 'ERROR': {
        const reason = stripFormatting(p[p.length - 1] ?? '');
        this.errorReason = reason;
        if (this.state !== 'ready' && /password|passwd/i.test(reason)) this.authFailure ??= `${this.server} rejected the server password`;
        if (/\b([kgzd]-?lined|banned)\b/i.test(reason)) this.banned = true;
        return;
      }
      case '324': // RPL_CHANNELMODEIS
        this.channelModes(p[1] ?? '', p[2] ?? '');
        return;
    }
    if (this.state === 'connecting' && (NICK_IN_USE.has(cmd) || cmd === '432')) {
      this.onLoginNickRefused(cmd);
      return;
    }
    if (this.state === 'ready' && !handled && /^[23]\d\d$/.test(cmd) && Date.now() < this.rawRepliesUntil && !CHANNEL_STATE_REPLIES.has(cmd)) {
      // The answer to a raw command the user sent (commands.ts): shown like a client's status window.
      const text = p.slice(1).join(' ');
      this.serverText({ text: stripFormatting(text || cmd), notice: true });
      return;
    }
    if (/^[45]\d\d$/.test(cmd)) {
      if (this.refusedJoin(m)) return;
      if (handled || this.state !== 'ready') return;
      // Anything else the server refused: tell the user, like a client's status window would.
      const what = p.slice(1, -1).join(' ');
      this.serverText({ text: stripFormatting(`${what ? what + ': ' : ''}${p[p.length - 1] ?? cmd}`), notice: true });
    }
  }

  /** 433/436/437/432 before 001: try nick_, nick__, … (shortened when the server finds them too long). */
  private onLoginNickRefused(cmd: string): void {
    const tried = this.nickAttempt === 0 ? this.settings.nick : this.candidate(this.nickAttempt);
    if (cmd === '432') {
      if (this.nickAttempt === 0) {
        this.loginError = new LegacyAuthError(`${this.server} does not accept the nickname ${this.settings.nick}`);
        this.client.quit();
        return;
      }
      this.nickMaxLen = Math.min(this.nickMaxLen, tried.length - 1);
      const shorter = this.candidate(this.nickAttempt);
      if (shorter !== tried && shorter.length <= this.nickMaxLen && this.nickMaxLen >= 2) {
        this.client.changeNick(shorter); // same attempt, shortened to fit
        return;
      }
    }
    this.nickAttempt++;
    if (this.nickAttempt > this.opts.maxNickAttempts) {
      this.loginError = new LegacyNetworkError(`the nickname ${this.settings.nick} and its alternatives are in use on ${this.server}`);
      this.client.quit();
      return;
    }
    const next = this.candidate(this.nickAttempt);
    this.log.debug('irc nick in use at login, trying another', { server: this.server, attempt: this.nickAttempt });
    this.client.changeNick(next);
  }

  private candidate(attempt: number): string {
    const suffix = '_'.repeat(attempt);
    const base = this.settings.nick;
    if (base.length + suffix.length <= this.nickMaxLen) return base + suffix;
    return base.slice(0, Math.max(1, this.nickMaxLen - suffix.length)) + suffix;
  }

  private onSocketClose(err: unknown): void {
    if (err instanceof TransportError) this.transportError = err;
    else if (err) this.transportError = new TransportError(`connection to ${this.server} failed`, 'UNKNOWN');
    if (this.loginSettle) {
      let failure: Error;
      if (this.loginError) failure = this.loginError;
      else if (this.authFailure) failure = new LegacyAuthError(this.authFailure);
      else if (this.transportError) failure = new LegacyNetworkError(this.transportError.message);
      else if (this.errorReason) failure = new LegacyNetworkError(`${this.server} closed the connection: ${this.errorReason}`);
      else failure = new LegacyNetworkError(`${this.server} closed the connection`);
      this.finishLogin(failure);
      return;
    }
    if (this.state === 'closed') return;
    this.state = 'closed';
    const reason = this.loggingOut
      ? 'logged out'
      : this.pingTimedOut
        ? `ping timeout on ${this.server}`
        : this.errorReason
          ? `${this.server} closed the connection: ${this.errorReason}`
          : this.transportError
            ? this.transportError.message
            : `connection to ${this.server} lost`;
    this.teardown(new LegacyNetworkError(`not connected to ${this.server}`));
    if (this.loggingOut) return;
    this.log.info('irc disconnected', { server: this.server, final: this.banned, reason });
    this.safeEmit('disconnected', reason, this.banned);
  }

  /** Fails everything pending and forgets channel state. */
  private teardown(err: Error): void {
    this.queue.close(err);
    for (const w of [...this.waiters]) w.settle(err);
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
    this.forgetChannels();
    // A polite QUIT, then the socket is destroyed (no reconnection: auto_reconnect is off).
    if (this.client.connected) this.client.connection.end(this.client.rawString('QUIT', 'Gatehouse'), true);
  }

  /** Ends the connection with QUIT; emits no 'disconnected'. */
  async logout(reason?: string): Promise<void> {
    if (this.state === 'closed') return;
    this.loggingOut = true;
    if (this.loginSettle) {
      this.finishLogin(new LegacyNetworkError('logged out'));
      return;
    }
    if (this.client.connected) {
      await Promise.race([this.queue.drained(), sleep(2000)]);
      const closed = new Promise<void>((resolve) => this.client.once('socket close', () => resolve()));
      this.client.quit(reason ? oneLine(sanitizeOutgoing(reason)) : 'Gatehouse');
      await Promise.race([closed, sleep(2000)]);
    }
    // (the socket closing normally got here first)
    if ((this.state as string) !== 'closed') {
      this.state = 'closed';
      this.teardown(new LegacyNetworkError('logged out'));
    }
    this.log.info('irc logged out', { server: this.server });
  }
}

export function oneLine(s: string): string {
  return s.replace(/[\r\n]+/g, ' ');
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref?.());
}
