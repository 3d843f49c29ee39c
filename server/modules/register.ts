/**
 * XEP-0077 In-Band Registration, for the server's own accounts.
 *
 * Before authentication (the 'c2s/preauth-iq' hook): the registration form (get) and account
 * creation (set), when the host's `registration` policy admits the client's address and the
 * stream is encrypted (XEP-0077 section 10: never over an unsecured channel). The stream feature
 * `<register xmlns='http://jabber.org/features/iq-register'/>` is announced under the same
 * conditions only.
 *
 * After authentication (IQs to the host, or without 'to'): get answers <registered/> with the
 * username (the password element stays empty), set with username+password changes the password
 * of the sender's own account (section 3.3), set with <remove/> deletes the account with all its
 * data (section 3.2, P23): the result is sent first, then every session of the account is ended
 * with a <not-authorized/> stream error.
 *
 * Failed attempts fire 'register/failed' (IP, host, attempted username, condition) for the
 * failed-login guard (P7). Passwords never reach a log line, an event or an error reply.
 *
 * Successful registrations are throttled too (`registrationLimit`, like Prosody's
 * registration_throttle_max/period): at most `maxPerAddress` accounts per address (IPv6: per /64,
 * which one host usually owns whole) within `window`. Further attempts get policy-violation of type
 * wait with the time to retry (Prosody's answer too; clients show the text) and count as failed
 * registrations (P7: the guard then delays and blocks an address that keeps trying). The counts
 * live in memory and hold only addresses that registered within the window; a slot is taken before
 * the account is created and given back if creation fails, so concurrent attempts cannot overrun it.
 */
import type { GatehouseModule, ServerContext, StreamInfo } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import { replyError, replyResult } from '../core/iq.js';
import { errorReply, iqResult, type ErrorType } from '../../shared/xml/stanza-errors.js';
import type { RegistrationPolicy } from '../config/index.js';
import { AccountError, AccountExistsError, AccountService, InvalidPasswordError, InvalidUsernameError, NoSuchAccountError, UnknownHostError } from '../accounts/service.js';
import { verifyPlainAsync } from '../auth/scram.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid, normaliseLocal } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { ControlError } from '../commands/command.js';
import { registrationLimitConfigSection, type RegistrationLimitConfig } from './register-config.js';
import { addressGroup, cidrContains } from '../../shared/ip-addresses.js';

/** A refused or failed registration, password change or removal (P7: no password, ever). */
export interface RegistrationFailure {
  at: Date;
  ip: string;
  host: string;
  /** The normalised username attempted, or null if none was usable. */
  username: string | null;
  /** The stanza error condition returned. */
  condition: string;
}

declare module '../core/hooks.js' {
  interface HookEvents {
    'register/failed': RegistrationFailure;
  }
}

const FORM_TYPE = NS.register;
const FORM_TYPE_CHANGE_PASSWORD = 'jabber:iq:register:changepassword';

const INSTRUCTIONS = 'Choose a username and password to create an account on this server.';

// ------------------------------------------------------------------------------------------------
// Address policy

const LOOPBACK = ['127.0.0.0/8', '::1/128'];

/** Whether a client at `ip` may register under `policy`. */
export function registrationAllowed(policy: RegistrationPolicy, ip: string): boolean {
  if (policy === 'open') return true;
  if (policy === 'closed') return false;
  const ranges = policy === 'loopback' ? LOOPBACK : policy.allow;
  return ranges.some((r) => cidrContains(r, ip));
}

/** Successful registrations per address group within a sliding window (see the module comment). */
export class RegistrationThrottle {
  private readonly recent = new Map<string, number[]>();

  constructor(
    private readonly limits: () => RegistrationLimitConfig,
    private readonly now: () => number,
  ) {}

  /** Takes a slot for `ip`: a release function (for a registration that failed after all), or the time to retry. */
  take(ip: string): { release: () => void } | { retryAt: number } {
    const { maxPerAddress, window, exempt } = this.limits();
    if (maxPerAddress <= 0 || exempt.some((r) => cidrContains(r, ip))) return { release: () => {} };
    const now = this.now();
    this.prune(now - window);
    const group = addressGroup(ip);
    const times = this.recent.get(group) ?? [];
    if (times.length >= maxPerAddress) return { retryAt: times[0]! + window };
    times.push(now);
    this.recent.set(group, times);
    return {
      release: () => {
        const i = times.indexOf(now);
        if (i >= 0) times.splice(i, 1);
        if (times.length === 0 && this.recent.get(group) === times) this.recent.delete(group);
      },
    };
  }

  private prune(before: number): void {
    for (const [group, times] of this.recent) {
      while (times.length > 0 && times[0]! <= before) times.shift();
      if (times.length === 0) this.recent.delete(group);
    }
  }
}

// ------------------------------------------------------------------------------------------------
// Forms

interface Submission {
  username: string | null;
  password: string | null;
  oldPassword: string | null;
  formType: string | null;
}

/** The data form (XEP-0004) submission if there is one (it takes precedence, XEP-0077 section 6), else the legacy fields. */
function readSubmission(query: Element): Submission {
  const form = query.getChild('x', NS.dataForms);
  if (form && (form.attrs.type ?? 'submit') === 'submit') {
    const value = (name: string): string | null => {
      const field = form.getChildren('field').find((f) => f.attrs.var === name);
      return field ? (field.getChildText('value') ?? '') : null;
    };
    return { username: value('username'), password: value('password'), oldPassword: value('old_password'), formType: value('FORM_TYPE') };
  }
  return { username: query.getChildText('username') ?? null, password: query.getChildText('password') ?? null, oldPassword: null, formType: null };
}

function registrationForm(): Element {
  return x(
    'query',
    { xmlns: NS.register },
    x('instructions', {}, INSTRUCTIONS),
    x('username'),
    x('password'),
    x(
      'x',
      { xmlns: NS.dataForms, type: 'form' },
      x('title', {}, 'Account registration'),
      x('instructions', {}, INSTRUCTIONS),
      x('field', { type: 'hidden', var: 'FORM_TYPE' }, x('value', {}, FORM_TYPE)),
      x('field', { type: 'text-single', var: 'username', label: 'Username' }, x('required')),
      x('field', { type: 'text-private', var: 'password', label: 'Password' }, x('required')),
    ),
  );
}

// ------------------------------------------------------------------------------------------------
// The module

export function createRegisterModule(): GatehouseModule {
  let accounts: AccountService | null = null;
  return {
    name: 'register',
    config: registrationLimitConfigSection,
    commands: {
      control: {
        // `gatehouse user del` while the server runs: deleted here, so the account's sessions close
        // and its contacts are told (account/deleting), which the CLI alone could not do.
        'accounts.delete': {
          summary: 'delete an account and all its data, closing its sessions',
          available: () => accounts !== null,
          handler: async (args) => {
            const { username, host } = args;
            if (typeof username !== 'string' || typeof host !== 'string') throw new ControlError('username and host are required');
            try {
              await accounts?.delete(username, host);
            } catch (err) {
              if (err instanceof AccountError) throw new ControlError(err.message);
              throw err;
            }
            return { deleted: `${username}@${host}` };
          },
        },
      },
    },
    specs: [
      {
        id: 'XEP-0077',
        version: '2.4',
        status: 'complete',
        note: 'account registration (per-host policy: closed, open, loopback or CIDR ranges; TLS only; successful registrations throttled per address, registrationLimit), password change, account removal with all data; legacy fields and data forms',
      },
    ],
    load(ctx) {
      const { hooks, disco } = ctx;
      const service = new AccountService({ storage: ctx.storage, hooks: ctx.hooks, config: ctx.config, clock: ctx.clock, sessions: ctx.sessions });
      const reg = new Registration(ctx, service);
      accounts = service;
      disco.addServerFeature(NS.register);
      hooks.on('c2s/features', ({ stream, stage, features }) => {
        if (stage === 'pre-auth' && reg.mayRegister(stream)) features.append(x('register', { xmlns: NS.registerFeature }));
      });
      hooks.on('c2s/preauth-iq', ({ stream, stanza }) => reg.preAuth(stream, stanza));
      for (const type of ['get', 'set'] as const) {
        hooks.on(`iq-${type}/host/${NS.register}:query`, (e) => reg.authenticated(e));
        hooks.on(`iq-${type}/bare/${NS.register}:query`, (e) => (e.from.bare === e.to.bare ? reg.authenticated(e) : undefined));
      }
    },
  };
}

class Registration {
  private readonly throttle: RegistrationThrottle;

  constructor(
    private readonly ctx: ServerContext,
    private readonly accounts: AccountService,
  ) {
    this.throttle = new RegistrationThrottle(
      () => ctx.config.registrationLimit,
      () => ctx.clock.now().getTime(),
    );
  }

  private policy(host: string): RegistrationPolicy {
    return this.ctx.config.hosts.find((h) => h.domain === host)?.registration ?? 'closed';
  }

  /** Registration is offered only over TLS and only to addresses the host's policy admits. */
  mayRegister(stream: StreamInfo): boolean {
    return stream.secure && registrationAllowed(this.policy(stream.host), stream.ip);
  }

  private failed(stream: { ip: string; host: string }, username: string | null, condition: string): void {
    void this.ctx.hooks.emit('register/failed', { at: this.ctx.clock.now(), ip: stream.ip, host: stream.host, username, condition });
  }

  // ---- before authentication ----

  async preAuth(stream: StreamInfo, iq: Element): Promise<boolean | void> {
    const query = iq.getChild('query', NS.register);
    if (!query || iq.elements.length !== 1) return;
    if (iq.attrs.to !== undefined && Jid.tryParse(iq.attrs.to)?.full !== stream.host) return;
    const type = iq.attrs.type;
    if (type === 'result' || type === 'error') return true;
    const send = (reply: Element | null) => {
      if (!reply) return true;
      delete reply.attrs.to;
      if (iq.attrs.to !== undefined) reply.attrs.from = stream.host;
      else delete reply.attrs.from;
      stream.send(reply);
      return true;
    };
    const error = (condition: string, text?: string, errorType?: ErrorType) => send(errorReply(iq, condition, text, errorType));
    if (type !== 'get' && type !== 'set') return error('bad-request');
    const allowed = this.mayRegister(stream);

    if (type === 'get') {
      if (!allowed) return error('not-allowed', stream.secure ? 'in-band registration is not available here' : 'registration needs an encrypted connection (STARTTLS)');
      return send(iqResult(iq, registrationForm()));
    }

    if (query.getChild('remove')) return error('unexpected-request', 'authenticate to remove an account');
    const sub = readSubmission(query);
    const attempted = sub.username ? normaliseLocal(sub.username) : null;
    const fail = (condition: string, text?: string, errorType?: ErrorType) => {
      this.failed(stream, attempted, condition);
      return error(condition, text, errorType);
    };
    if (!allowed) return fail('not-allowed', stream.secure ? 'in-band registration is not available here' : 'registration needs an encrypted connection (STARTTLS)');
    if (sub.formType !== null && sub.formType !== FORM_TYPE) return fail('bad-request', 'unknown FORM_TYPE');
    if (!sub.username || !sub.password) return fail('not-acceptable', 'username and password are required');
    const slot = this.throttle.take(stream.ip);
    if ('retryAt' in slot) {
      const minutes = Math.max(1, Math.ceil((slot.retryAt - this.ctx.clock.now().getTime()) / 60_000));
      return fail('policy-violation', `too many accounts were registered from your address recently; try again in ${minutes} minute${minutes === 1 ? '' : 's'}`, 'wait');
    }
    // In a cluster the limit counts the registrations of every node (shared counters).
    const cluster = this.ctx.services.get('cluster');
    const { maxPerAddress, window, exempt } = this.ctx.config.registrationLimit;
    const counted = cluster && maxPerAddress > 0 && !exempt.some((r) => cidrContains(r, stream.ip)) ? addressGroup(stream.ip) : null;
    if (cluster && counted !== null && (await cluster.peek('registration', counted, window)) >= maxPerAddress) {
      slot.release();
      return fail('policy-violation', 'too many accounts were registered from your address recently; try again later', 'wait');
    }
    try {
      const account = await this.accounts.create(sub.username, stream.host, sub.password, stream.ip);
      if (cluster && counted !== null) await cluster.count('registration', counted, window);
      this.ctx.log.info('account registered in-band', { account: `${account.username}@${account.host}` });
      return send(iqResult(iq));
    } catch (err) {
      slot.release();
      if (err instanceof AccountExistsError) return fail('conflict', 'that username is taken');
      if (err instanceof InvalidUsernameError) return fail('not-acceptable', err.message);
      if (err instanceof InvalidPasswordError) return fail('not-acceptable', err.message);
      if (err instanceof UnknownHostError) return fail('not-allowed');
      this.ctx.log.error('registration failed', { error: err instanceof Error ? err.name : 'unknown' });
      return error('internal-server-error');
    }
  }

  // ---- after authentication ----

  async authenticated(e: StanzaEvent): Promise<true> {
    const { router } = this.ctx;
    const { from, to, stanza } = e;
    // Only the sender's own home server handles its account (section 3.2, scenario 1).
    if (e.origin.kind !== 'c2s' || !from.local || from.domain !== to.domain) return replyError(router, e, 'service-unavailable');
    const query = stanza.firstElement()!;
    const ip = e.origin.session.ip;
    const where = { ip, host: from.domain };

    if (stanza.attrs.type === 'get') {
      return replyResult(
        router,
        e,
        x('query', { xmlns: NS.register }, x('registered'), x('instructions', {}, 'You are registered. Send a new password to change it, or <remove/> to delete your account and all its data.'), x('username', {}, from.local), x('password')),
      );
    }

    if (query.getChild('remove')) {
      if (query.elements.length !== 1) return replyError(router, e, 'bad-request', '<remove/> must be the only child');
      // Result first, then the stream error and the erasure (XEP-0077 section 3.2).
      replyResult(router, e);
      try {
        await this.accounts.delete(from.local, from.domain);
        this.ctx.log.info('account removed in-band', { account: from.bare });
      } catch (err) {
        if (!(err instanceof NoSuchAccountError)) {
          this.ctx.log.error('account removal failed', { account: from.bare, error: err instanceof Error ? err.message : 'unknown' });
          e.origin.session.close('internal-server-error');
        }
      }
      return true;
    }

    // Password change (section 3.3).
    const sub = readSubmission(query);
    const fail = (condition: string, text?: string) => {
      this.failed(where, from.local, condition);
      return replyError(router, e, condition, text);
    };
    const session = e.origin.session as { secure?: boolean };
    if (session.secure === false) return fail('not-authorized', 'password changes need an encrypted connection');
    if (sub.formType !== null && sub.formType !== FORM_TYPE && sub.formType !== FORM_TYPE_CHANGE_PASSWORD) return fail('bad-request', 'unknown FORM_TYPE');
    if (!sub.username) return fail('bad-request', 'the username is required');
    if (!sub.password) return fail('bad-request', 'the new password must not be empty');
    if (!sameAccount(sub.username, from)) return fail('not-allowed', 'you can change only your own password');
    if (sub.oldPassword !== null && !(await this.checkPassword(from, sub.oldPassword))) return fail('not-authorized', 'the old password is wrong');
    try {
      await this.accounts.changePassword(from.local, from.domain, sub.password);
      this.ctx.log.info('password changed in-band', { account: from.bare });
      return replyResult(router, e);
    } catch (err) {
      if (err instanceof InvalidPasswordError) return fail('not-acceptable', err.message);
      this.ctx.log.error('password change failed', { account: from.bare, error: err instanceof Error ? err.name : 'unknown' });
      return replyError(router, e, 'internal-server-error');
    }
  }

  private async checkPassword(jid: Jid, password: string): Promise<boolean> {
    const account = await this.ctx.storage.accounts.get(jid.local, jid.domain);
    if (!account) return false;
    for (const v of await this.ctx.storage.accounts.getVerifiers(account.id)) if (await verifyPlainAsync(password, v)) return true;
    return false;
  }
}

/** The <username/> of a password change names the sender's account: a localpart or a bare JID. */
function sameAccount(username: string, jid: Jid): boolean {
  if (username.includes('@')) {
    const given = Jid.tryParse(username);
    return !!given && !given.resource && given.bare === jid.bare;
  }
  return normaliseLocal(username) === jid.local;
}
