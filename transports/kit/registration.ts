/**
 * Registration with the transport: XEP-0077 (In-Band Registration) as XEP-0100 (Gateway
 * Interaction) uses it, with both the legacy fields (<username/>, <password/>, ...) and an
 * XEP-0004 data form (FORM_TYPE jabber:iq:register) built from the adapter's registrationFields.
 *
 * - The foreign login is tried before anything is stored: wrong credentials get not-acceptable
 *   (XEP-0100 §4.1.2), an unreachable network remote-server-timeout, and nothing is written
 *   except the audit rows of the attempt (P10). The session of a successful test is kept as the
 *   user's live session (it logs out after the grace period unless presence arrives).
 * - Secret fields (passwords, tokens) never leave the transport again: the edit form shows the
 *   stored non-secret values and leaves secret fields empty; an empty secret field in an edit keeps
 *   the stored value. Everything the user typed goes into the vault (vault.ts), nothing in clear.
 * - <remove/>: logs out, deletes the credentials and all state, unsubscribes the user from every
 *   contact (unsubscribe + unsubscribed from each, XEP-0100 §4.3) and from the gateway itself.
 *   A user who revokes the gateway's subscription (presence unsubscribed, which is also what an
 *   account deletion on the user's server sends) is unregistered the same way.
 * - After a new registration the gateway asks for the user's presence (subscribe), per XEP-0100.
 */
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { LegacyAuthError, type Credentials, type LegacySession, type RegistrationField } from './adapter.js';
import { KeyedQueue, errorText } from './context.js';
import type { Kit, KitRegistration, LoginPreparation } from './kit-types.js';
import { scrub } from './audit-log.js';
import { dataForm, findForm, parseBoolean, readForm, type FormField } from './forms.js';
import { iqError, iqResult } from './stanzas.js';
import { stateServerKey, type VaultPayload } from './vault.js';
import { LoginDeadline, loginPrompt } from './login-prompt.js';

/** XEP-0077 §14.1 fields that also exist as legacy child elements of <query/>. */
export const LEGACY_FIELDS = new Set(['username', 'nick', 'password', 'name', 'first', 'last', 'email', 'address', 'city', 'state', 'zip', 'phone', 'url', 'date', 'misc', 'text', 'key']);

/**
 * Settings keys that held adapter state (the 'syncState' event) before it got its own table
 * (transport_sync_state): still read when the table has nothing, removed at the next save.
 */
export const STATE_PREFIX = '_state:';

/** The user's settings without the kit's own state keys (what the adapter gets as settings). */
export function userSettings(settings: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(settings).filter(([k]) => !k.startsWith(STATE_PREFIX)));
}

export type ValidationResult = { ok: true; values: Credentials } | { ok: false; text: string };

/** The user-facing outcome of trying credentials. */
export type TryLoginResult =
  | { ok: true; session: LegacySession; account: string | null }
  | { ok: false; condition: 'not-acceptable' | 'remote-server-timeout'; text: string };

export class Registration implements KitRegistration {
  /** Registered users (bare JIDs), loaded at start. */
  private readonly registered = new Set<string>();
  /** Multi-server networks: each user's default server and the servers with a per-server registration. */
  private readonly serverInfo = new Map<string, { default: string | undefined; servers: string[] }>();
  private readonly queue = new KeyedQueue();
  /** Sessions whose users chose to stay connected, found at start: logged in by the gateway without waiting for presence. */
  readonly stayingConnected: { user: string; server: string | undefined }[] = [];

  constructor(private readonly kit: Kit) {}

  get fields(): RegistrationField[] {
    return this.kit.adapter.registrationFields;
  }

  /** Loads the registered users and checks that every stored record opens with the configured key. */
  async load(): Promise<number> {
    const { repo, adapter, vault } = this.kit;
    vault.checkKeyIds((await repo.keyIdCounts(adapter.network)).keys());
    const regs = await repo.listRegistrations(adapter.network);
    for (const r of regs) this.registered.add(r.userJid);
    if (adapter.multiServer) {
      for (const rec of await repo.listCredentials(adapter.network)) {
        try {
          this.remember(rec.userJid, vault.open(rec));
        } catch {
          // reported at login
        }
      }
    }
    if (adapter.staysConnected) {
      for (const rec of await repo.listCredentials(adapter.network)) {
        let payload: VaultPayload;
        try {
          payload = vault.open(rec);
        } catch {
          continue;
        }
        const servers: (string | undefined)[] = adapter.multiServer ? Object.keys(payload.servers ?? {}) : [undefined];
        if (adapter.multiServer && payload.fields.server) servers.push(payload.fields.server);
        for (const server of new Set(servers)) {
          const values = { ...payload.fields, ...(server !== undefined ? (payload.servers?.[server] ?? {}) : {}) };
          if (adapter.staysConnected(values)) this.stayingConnected.push({ user: rec.userJid, server });
        }
      }
    }
    return regs.length;
  }

  registeredUsers(): string[] {
    return [...this.registered];
  }

  async isRegistered(user: string): Promise<boolean> {
    return this.registered.has(user);
  }

  mayRegister(user: Jid): boolean {
    const allow = this.kit.settings.allowDomains;
    return allow.length === 0 || allow.includes(user.domain);
  }

  private remember(user: string, payload: VaultPayload): void {
    if (!this.kit.adapter.multiServer) return;
    const def = Object.keys(payload.fields).length ? payload.fields.server || this.kit.adapter.defaultServer : undefined;
    this.serverInfo.set(user, { default: def, servers: Object.keys(payload.servers ?? {}) });
  }

  /** The user's default server (multi-server networks): the registration's server, else the adapter's. */
  cachedDefaultServer(user: string): string | undefined {
    const info = this.serverInfo.get(user);
    return info ? info.default : this.kit.adapter.defaultServer;
  }

  /**
   * The sessions that presence to the gateway itself logs in: the one network, or on multi-server
   * networks the default server and every server with a per-server registration.
   */
  gatewayServers(user: string): (string | undefined)[] {
    if (!this.kit.adapter.multiServer) return [undefined];
    const info = this.serverInfo.get(user);
    const out = new Set<string>();
    const def = info ? info.default : this.kit.adapter.defaultServer;
    if (def) out.add(def);
    for (const s of info?.servers ?? []) out.add(s);
    return [...out];
  }

  private async payloadOf(user: string): Promise<VaultPayload | null> {
    const rec = await this.kit.repo.getCredentials(this.kit.adapter.network, user);
    return rec ? this.kit.vault.open(rec) : null;
  }

  /** What the adapter gets to log the user in to `server`; null when the user is not registered. */
  async loginRequestFor(user: string, server: string | undefined): Promise<LoginPreparation | null> {
    const { repo, adapter } = this.kit;
    const reg = await repo.getRegistration(adapter.network, user);
    if (!reg) return null;
    const state = (await repo.getSyncState(adapter.network, user, server ?? '')) ?? reg.settings[STATE_PREFIX + (server ?? '')];
    const payload = await this.payloadOf(user);
    if (!payload) return null;
    const secretState = await this.secretStateOf(user, server ?? '');
    const credentials: Credentials = { ...payload.fields, ...(server !== undefined ? (payload.servers?.[server] ?? {}) : {}) };
    // Multi-server networks registered per server: no values for this server means not registered there.
    // (A single-server registration may hold no values at all: Discord's shared bot needs no token.)
    if (adapter.multiServer && Object.keys(credentials).length === 0) return null;
    return {
      credentials,
      settings: userSettings(reg.settings),
      state,
      secretState,
      account: this.accountOf(credentials),
      secrets: this.secretsOf(credentials),
    };
  }

  mayJoinWithoutRegistration(user: Jid): boolean {
    return !!this.kit.adapter.guestCredentials && this.mayRegister(user);
  }

  async guestLoginFor(user: string, server: string | undefined, nick: string): Promise<LoginPreparation | null> {
    const { repo, adapter } = this.kit;
    const credentials = adapter.guestCredentials?.(server, nick) ?? null;
    if (!credentials || !this.mayRegister(Jid.parse(user))) return null;
    const reg = await repo.getRegistration(adapter.network, user);
    return { credentials, settings: userSettings(reg?.settings ?? {}), state: undefined, secretState: null, account: this.accountOf(credentials), secrets: [] };
  }

  /** The foreign account name for the audit log: the first non-secret, non-server value. */
  accountOf(values: Credentials): string | null {
    for (const f of this.fields) {
      if (f.secret || f.name === 'server' || f.type === 'boolean') continue;
      const v = values[f.name];
      if (v) return v;
    }
    return null;
  }

  secretsOf(values: Credentials): string[] {
    const names = [...this.fields.filter((f) => f.secret).map((f) => f.name), ...(this.kit.adapter.storedSecrets ?? [])];
    return names.map((n) => values[n] ?? '').filter((v) => v.length > 0);
  }

  // ---- forms ----

  private formFields(values: Credentials | null, fields: RegistrationField[] = this.fields): FormField[] {
    return fields.map((f) => {
      const current = values?.[f.name];
      const value = f.secret ? undefined : (current ?? f.default);
      let desc = f.description;
      if (f.secret && values && values[f.name]) desc = `${desc ? `${desc} ` : ''}Leave empty to keep the current one.`;
      return {
        var: f.name,
        type: f.type,
        label: f.label,
        desc,
        required: f.required && !(f.secret && values && values[f.name]),
        values: value !== undefined && value !== '' ? (f.type === 'text-multi' ? value.split('\n') : [f.type === 'boolean' ? (parseBoolean(value) ? '1' : '0') : value]) : [],
        options: f.options?.map((o) => ({ value: o, label: o })),
      };
    });
  }

  private instructions(registered: boolean): string {
    const net = this.kit.networkName;
    const { adapter, domain } = this.kit;
    if (adapter.multiServer && !adapter.defaultServer && !this.fields.some((f) => f.name === 'server')) {
      return `${net} accounts are per server: register at SERVER@${domain} (for example irc.example.org@${domain}) for each server you use.`;
    }
    return registered
      ? `You are registered with ${net}. Change your details below, or unregister. Passwords are never shown; leave them empty to keep them.`
      : `Enter your ${net} account details. The transport tries to log in with them before it stores anything; passwords are stored encrypted and never shown again.`;
  }

  /** XEP-0077 registration form (IQ get), with the stored non-secret values when registered. */
  async form(iq: Element, from: Jid): Promise<Element> {
    if (!this.mayRegister(from)) return iqError(iq, 'not-allowed', `users of ${from.domain} cannot register with this transport`);
    const registered = this.registered.has(from.bare);
    const values = registered ? ((await this.payloadOf(from.bare).catch(() => null))?.fields ?? {}) : null;
    const query = x('query', { xmlns: NS.register });
    if (registered) query.append(x('registered'));
    query.append(x('instructions', {}, this.instructions(registered)));
    for (const f of this.fields) {
      if (!LEGACY_FIELDS.has(f.name)) continue;
      const v = f.secret ? undefined : values?.[f.name];
      query.append(x(f.name, {}, v ?? null));
    }
    query.append(
      dataForm('form', { title: `Registration with ${this.kit.networkName}`, instructions: this.instructions(registered), formType: NS.register, fields: this.formFields(values) }),
    );
    return iqResult(iq, query);
  }

  /** The values a registration IQ-set carries, from its data form or its legacy fields. */
  submitted(query: Element): Map<string, string> {
    const out = new Map<string, string>();
    const form = findForm(query, 'submit');
    if (form) {
      for (const [k, v] of readForm(form)) if (k !== 'FORM_TYPE') out.set(k, v.join('\n'));
      return out;
    }
    for (const f of this.fields) {
      const el = query.getChild(f.name);
      if (el) out.set(f.name, el.text());
    }
    return out;
  }

  /** Checks submitted values against `fields`; empty secrets keep `previous` values. */
  validate(given: Map<string, string>, previous: Credentials | null, fields: RegistrationField[] = this.fields, partial = false): ValidationResult {
    const values: Credentials = {};
    for (const f of fields) {
      let v = given.get(f.name);
      if (v !== undefined && f.type !== 'text-private') v = v.trim();
      if ((v === undefined || v === '') && f.secret && previous?.[f.name]) v = previous[f.name];
      if ((v === undefined || v === '') && !partial && f.default !== undefined && !f.secret) v = f.default;
      if (v === undefined || v === '') {
        if (f.required && !partial) return { ok: false, text: `${f.label || f.name} is required` };
        continue;
      }
      if (f.type === 'boolean') {
        const b = parseBoolean(v);
        if (b === null) return { ok: false, text: `${f.label || f.name} must be true or false` };
        v = b ? 'true' : 'false';
      }
      if (f.type === 'list-single' && f.options && !f.options.includes(v)) return { ok: false, text: `${f.label || f.name} must be one of ${f.options.join(', ')}` };
      if (v.length > 4096) return { ok: false, text: `${f.label || f.name} is too long` };
      values[f.name] = v;
    }
    return { ok: true, values };
  }

  /** Tries a login with these credentials, writing the audit rows of the attempt. */
  async tryLogin(user: string, server: string | undefined, credentials: Credentials, settings: Record<string, string>): Promise<TryLoginResult> {
    const { kit } = this;
    const account = this.accountOf(credentials);
    const secrets = this.secretsOf(credentials);
    const ctx = { userJid: user, account, server: server ?? null, secrets };
    await kit.audit.record('connecting', ctx);
    const deadline = new LoginDeadline(kit.clock, kit.settings.loginTimeout);
    const attempt = kit.adapter.login({
      userJid: user,
      pseudonym: kit.vault.pseudonym(user, kit.adapter.network),
      credentials,
      server,
      log: kit.log.child(`${kit.adapter.network}-adapter`),
      settings,
      media: kit.media,
      ownAvatarUrl: () => kit.ownAvatarUrl(user),
      prompt: loginPrompt(kit, user, deadline),
      timeoutMs: kit.settings.loginTimeout,
    });
    try {
      const session = await Promise.race([attempt, deadline.expired]);
      const named = account ?? session.account ?? null;
      await kit.audit.record('connected', { ...ctx, account: named });
      return { ok: true, session, account: named };
    } catch (err) {
      if (deadline.passed) attempt.then((late) => late.logout('login timed out')).catch(() => undefined);
      const reason = scrub(errorText(err), secrets);
      if (err instanceof LegacyAuthError) {
        await kit.audit.record('auth-failed', ctx, reason);
        return { ok: false, condition: 'not-acceptable', text: `${kit.networkName} refused the login: ${reason}` };
      }
      await kit.audit.record('error', ctx, reason);
      return { ok: false, condition: 'remote-server-timeout', text: `cannot reach ${kit.networkName}${server ? ` (${server})` : ''}: ${reason}` };
    } finally {
      deadline.cancel();
    }
  }

  /** XEP-0077 IQ set; resolves with the reply, or null when the reply was already sent. */
  set(iq: Element, from: Jid): Promise<Element | null> {
    return this.queue.run(from.bare, () => this.setLocked(iq, from));
  }

  private async setLocked(iq: Element, from: Jid): Promise<Element | null> {
    const { kit } = this;
    const user = from.bare;
    const query = iq.getChild('query', NS.register)!;
    if (query.getChild('remove')) {
      if (query.elements.length > 1) return iqError(iq, 'bad-request', '<remove/> must be the only child');
      if (!this.registered.has(user)) return iqError(iq, 'registration-required', 'you are not registered');
      await this.unregister(user, 'registration removed');
      kit.send(iqResult(iq));
      this.afterUnregister(user);
      return null;
    }
    if (!this.mayRegister(from)) return iqError(iq, 'not-allowed', `users of ${from.domain} cannot register with this transport`);
    const registered = this.registered.has(user);
    let previous: VaultPayload | null = null;
    if (registered) {
      try {
        previous = await this.payloadOf(user);
      } catch (err) {
        kit.log.error('cannot read stored credentials', { network: kit.adapter.network, user, error: errorText(err) });
        return iqError(iq, 'internal-server-error', 'the stored registration cannot be read; ask the administrator');
      }
    }
    const checked = this.validate(this.submitted(query), previous?.fields ?? null);
    if (!checked.ok) return iqError(iq, 'not-acceptable', checked.text);
    const values = checked.values;
    if (previous) this.carryStoredOnly(previous.fields, values, query);
    // The same values again: nothing to do while the session is up; otherwise a new login attempt
    // (e.g. "register again" after the network refused the stored login).
    const online = kit.sessions.ofUser(user).some((s) => s.state === 'online' || s.state === 'connecting');
    if (previous && sameValues(previous.fields, values) && online) return iqResult(iq);

    const reg = registered ? await kit.repo.getRegistration(kit.adapter.network, user) : null;
    const server = kit.adapter.multiServer ? values.server || kit.adapter.defaultServer : undefined;
    if (kit.adapter.multiServer && !server) {
      return iqError(iq, 'not-acceptable', `${kit.networkName} accounts are per server: register at SERVER@${kit.domain} (e.g. with your client's registration for that address)`);
    }
    const tried = await this.tryLogin(user, server, values, userSettings(reg?.settings ?? {}));
    if (!tried.ok) return iqError(iq, tried.condition, tried.text);
    const stored = kit.adapter.credentialsToStore?.(tried.session, values) ?? values;
    const payload: VaultPayload = { fields: stored, ...(previous?.servers ? { servers: previous.servers } : {}) };
    try {
      const record = kit.vault.seal(user, kit.adapter.network, payload, kit.clock.now());
      await kit.repo.saveRegistration({ network: kit.adapter.network, userJid: user, settings: reg?.settings ?? {}, contacts: reg?.contacts ?? [] }, record, kit.clock.now());
    } catch (err) {
      kit.log.error('cannot store a registration', { network: kit.adapter.network, user, error: errorText(err) });
      await tried.session.logout('registration failed').catch(() => undefined);
      await kit.audit.record('disconnected', { userJid: user, account: tried.account, server: server ?? null }, 'registration could not be stored');
      return iqError(iq, 'internal-server-error', 'the registration could not be stored');
    }
    this.registered.add(user);
    this.remember(user, payload);
    kit.log.info(registered ? 'registration changed' : 'registered', { network: kit.adapter.network, user });
    kit.sessions.adopt(user, server, tried.session, tried.account, this.secretsOf(stored), kit.adapter.staysConnected?.(values) ?? false);
    kit.send(iqResult(iq));
    if (!registered) {
      // XEP-0100 §4.1.1: the gateway asks for the user's presence, and says it is there.
      kit.send(x('presence', { type: 'subscribe', from: kit.domain, to: user }));
      kit.send(x('presence', { from: kit.domain, to: user }));
    }
    return null;
  }

  /**
   * Stored values no form field shows (a refresh token next to an access token) stay with the
   * secret they belong to: when every stored secret is kept (submitted empty), they are kept too;
   * a newly typed secret starts afresh without them.
   */
  private carryStoredOnly(previous: Credentials, values: Credentials, query: Element): void {
    const submitted = this.submitted(query);
    const secrets = this.fields.filter((f) => f.secret && previous[f.name]);
    if (secrets.some((f) => (submitted.get(f.name) ?? '') !== '')) return;
    const shown = new Set(this.fields.map((f) => f.name));
    for (const [k, v] of Object.entries(previous)) if (!shown.has(k) && values[k] === undefined) values[k] = v;
  }

  /** Logs the user out and deletes everything the transport holds for them. */
  async unregister(user: string, reason: string): Promise<void> {
    const { kit } = this;
    const reg = await kit.repo.getRegistration(kit.adapter.network, user);
    // The sync state goes with the registration: the logout must not store it (that would also
    // wait for this user's queue, which runs this very task).
    for (const s of kit.sessions.ofUser(user)) {
      s.syncTimer?.cancel();
      s.syncTimer = null;
      s.syncState = undefined;
      s.erasing = true;
      s.secretState = null;
    }
    await kit.sessions.logoutUser(user, reason);
    await kit.repo.deleteRegistration(kit.adapter.network, user);
    this.registered.delete(user);
    this.serverInfo.delete(user);
    kit.log.info('unregistered', { network: kit.adapter.network, user });
    // Contacts first: the user's roster drops them (XEP-0100 §4.3).
    for (const contact of reg?.contacts ?? []) {
      kit.send(x('presence', { type: 'unsubscribe', from: contact, to: user }));
      kit.send(x('presence', { type: 'unsubscribed', from: contact, to: user }));
      kit.send(x('presence', { type: 'unavailable', from: contact, to: user }));
    }
  }

  /** The gateway's own goodbye after <remove/>. */
  afterUnregister(user: string): void {
    const { kit } = this;
    kit.send(x('presence', { type: 'unsubscribe', from: kit.domain, to: user }));
    kit.send(x('presence', { type: 'unsubscribed', from: kit.domain, to: user }));
    kit.send(x('presence', { type: 'unavailable', from: kit.domain, to: user }));
  }

  /** The user revoked the gateway's subscription (removed it from the roster, or the account went). */
  revoked(user: string): Promise<void> {
    return this.queue.run(user, async () => {
      if (!this.registered.has(user)) return;
      await this.unregister(user, 'the user removed the gateway from the roster');
    });
  }

  // ---- state used by contacts and ad-hoc commands ----

  async contactsOf(user: string): Promise<string[]> {
    return (await this.kit.repo.getRegistration(this.kit.adapter.network, user))?.contacts ?? [];
  }

  /** Adds or removes a contact JID on the user's stored list; false when not registered. */
  changeContacts(user: string, add: string[], remove: string[]): Promise<boolean> {
    return this.queue.run(user, async () => {
      const { repo, adapter, clock } = this.kit;
      const reg = await repo.getRegistration(adapter.network, user);
      if (!reg) return false;
      const set = new Set(reg.contacts);
      let changed = false;
      for (const c of add) if (!set.has(c)) (set.add(c), (changed = true));
      for (const c of remove) if (set.delete(c)) changed = true;
      if (changed) await repo.updateState(adapter.network, user, { contacts: [...set].sort() }, clock.now());
      return true;
    });
  }

  async settingsOf(user: string): Promise<Record<string, string> | null> {
    return (await this.kit.repo.getRegistration(this.kit.adapter.network, user))?.settings ?? null;
  }

  /** The stored secret state, unsealed; null (with a warning) when the vault cannot open it. */
  private async secretStateOf(user: string, server: string): Promise<Uint8Array | null> {
    const { repo, adapter, vault, log } = this.kit;
    const rec = await repo.getSecretState(adapter.network, user, server);
    if (!rec) return null;
    try {
      return vault.openBytes(rec, stateServerKey(server));
    } catch (err) {
      log.warn('cannot open the stored secret state; the session starts without it', { network: adapter.network, user, error: errorText(err) });
      return null;
    }
  }

  /** Seals and stores a session's secret state (the adapter's 'secretState'). */
  saveSecretState(user: string, server: string | undefined, data: Uint8Array): Promise<boolean> {
    return this.queue.run(user, async () => {
      const { repo, adapter, vault, clock } = this.kit;
      return repo.saveSecretState(server ?? '', vault.sealBytes(user, adapter.network, stateServerKey(server ?? ''), data, clock.now()));
    });
  }

  /** Remembers where a session's event stream stopped (the adapter's 'syncState'). */
  saveSyncState(user: string, server: string | undefined, state: string): Promise<boolean> {
    return this.queue.run(user, async () => {
      const { repo, adapter, clock } = this.kit;
      if (!(await repo.saveSyncState(adapter.network, user, server ?? '', state, clock.now()))) return false;
      const reg = await repo.getRegistration(adapter.network, user);
      const key = STATE_PREFIX + (server ?? '');
      if (reg && key in reg.settings) {
        const { [key]: _old, ...rest } = reg.settings;
        await repo.updateState(adapter.network, user, { settings: rest }, clock.now());
      }
      return true;
    });
  }

  updateStoredCredentials(user: string, server: string | undefined, fields: Credentials): Promise<boolean> {
    return this.queue.run(user, async () => {
      const { kit } = this;
      const payload = await this.payloadOf(user);
      if (!payload) return false;
      const merge = (base: Credentials): Credentials => {
        const out = { ...base, ...fields };
        for (const [k, v] of Object.entries(fields)) if (v === '') delete out[k];
        return out;
      };
      const next: VaultPayload =
        server !== undefined && payload.servers?.[server]
          ? { ...payload, servers: { ...payload.servers, [server]: merge(payload.servers[server]) } }
          : { ...payload, fields: merge(payload.fields) };
      return kit.repo.updateCredentials(kit.vault.seal(user, kit.adapter.network, next, kit.clock.now()));
    });
  }

  saveSettings(user: string, settings: Record<string, string>): Promise<boolean> {
    return this.queue.run(user, async () => {
      const { kit } = this;
      if (!this.registered.has(user) && kit.adapter.guestCredentials && this.mayRegister(Jid.parse(user))) {
        // Settings without a registration (joining needs none): stored as a registration with no credentials.
        const record = kit.vault.seal(user, kit.adapter.network, { fields: {} }, kit.clock.now());
        await kit.repo.saveRegistration({ network: kit.adapter.network, userJid: user, settings, contacts: [] }, record, kit.clock.now());
        this.registered.add(user);
        this.remember(user, { fields: {} });
        // As for any registration (XEP-0100): the gateway asks for the user's presence, so that an
        // account deletion (unsubscribed) reaches it and the stored settings go with the account.
        kit.send(x('presence', { type: 'subscribe', from: kit.domain, to: user }));
        kit.send(x('presence', { from: kit.domain, to: user }));
        return true;
      }
      return kit.repo.updateState(kit.adapter.network, user, { settings }, kit.clock.now());
    });
  }

  /** The fields that can be overridden per server (all but `server` itself). */
  serverFields(): RegistrationField[] {
    return this.fields.filter((f) => f.name !== 'server');
  }

  /** Per-server settings form values: the override, else the registration's value; secrets never. */
  async serverValues(user: string, server: string): Promise<Credentials | null> {
    const payload = await this.payloadOf(user);
    if (!payload) return null;
    return { ...payload.fields, ...(payload.servers?.[server] ?? {}) };
  }

  serverFormFields(values: Credentials | null): FormField[] {
    return this.formFields(values, this.serverFields());
  }

  /**
   * Saves per-server values (XEP-0077 at a server JID, or the ad-hoc command there) after trying
   * them: what differs from the registration's own values is stored as that server's override.
   * With `create`, a user without a registration gets one (multi-server networks such as IRC are
   * registered per server). Returns null on success (or when nothing changed).
   */
  saveServerSettings(user: string, server: string, given: Map<string, string>, opts: { create?: boolean } = {}): Promise<{ condition: string; text: string } | null> {
    return this.queue.run(user, async () => {
      const { kit } = this;
      let payload: VaultPayload | null;
      try {
        payload = await this.payloadOf(user);
      } catch (err) {
        kit.log.error('cannot read stored credentials', { network: kit.adapter.network, user, error: errorText(err) });
        return { condition: 'internal-server-error', text: 'the stored registration cannot be read; ask the administrator' };
      }
      if (!payload && !opts.create) return { condition: 'registration-required', text: 'you are not registered' };
      const base = payload?.fields ?? {};
      const current = { ...base, ...(payload?.servers?.[server] ?? {}) };
      const checked = this.validate(given, payload ? current : null, this.serverFields());
      if (!checked.ok) return { condition: 'not-acceptable', text: checked.text };
      // Values no form shows (an adapter's stored secrets, e.g. a client certificate it made) stay.
      for (const k of kit.adapter.storedSecrets ?? []) if (current[k] !== undefined && checked.values[k] === undefined) checked.values[k] = current[k];
      if (payload?.servers?.[server] && sameValues(pick(current, this.serverFields()), pick(checked.values, this.serverFields()))) return null;
      const override: Credentials = {};
      for (const [k, v] of Object.entries(checked.values)) if (base[k] !== v) override[k] = v;
      const merged = { ...base, ...override };
      const reg = await kit.repo.getRegistration(kit.adapter.network, user);
      const tried = await this.tryLogin(user, server, merged, userSettings(reg?.settings ?? {}));
      if (!tried.ok) return { condition: tried.condition, text: tried.text };
      const stored = kit.adapter.credentialsToStore?.(tried.session, override) ?? override;
      const servers = { ...(payload?.servers ?? {}), [server]: stored };
      const record = kit.vault.seal(user, kit.adapter.network, { fields: base, servers }, kit.clock.now());
      const isNew = !reg;
      try {
        if (reg) {
          if (!(await kit.repo.updateCredentials(record))) throw new Error('the registration disappeared');
        } else {
          await kit.repo.saveRegistration({ network: kit.adapter.network, userJid: user, settings: {}, contacts: [] }, record, kit.clock.now());
        }
      } catch (err) {
        kit.log.error('cannot store a registration', { network: kit.adapter.network, user, error: errorText(err) });
        await tried.session.logout('registration failed').catch(() => undefined);
        await kit.audit.record('disconnected', { userJid: user, account: tried.account, server }, 'registration could not be stored');
        return { condition: 'internal-server-error', text: 'the registration could not be stored' };
      }
      this.registered.add(user);
      this.remember(user, { fields: base, servers });
      kit.log.info(isNew ? 'registered' : 'registration changed', { network: kit.adapter.network, user, server });
      kit.sessions.adopt(user, server, tried.session, tried.account, this.secretsOf(merged), kit.adapter.staysConnected?.(merged) ?? false);
      if (isNew) {
        kit.send(x('presence', { type: 'subscribe', from: kit.domain, to: user }));
        kit.send(x('presence', { from: kit.domain, to: user }));
      }
      return null;
    });
  }

  /** XEP-0077 at a server JID of a multi-server network: the per-server registration form. */
  async serverForm(iq: Element, from: Jid, server: string): Promise<Element> {
    if (!this.mayRegister(from)) return iqError(iq, 'not-allowed', `users of ${from.domain} cannot register with this transport`);
    let payload: VaultPayload | null = null;
    try {
      payload = await this.payloadOf(from.bare);
    } catch {
      payload = null;
    }
    const registered = !!payload?.servers?.[server];
    const values = payload ? { ...payload.fields, ...(payload.servers?.[server] ?? {}) } : null;
    const instructions = `Your ${this.kit.networkName} account on ${server}. The transport logs in with it before it stores anything; passwords are stored encrypted and never shown again.`;
    const query = x('query', { xmlns: NS.register }, registered ? x('registered') : null, x('instructions', {}, instructions));
    for (const f of this.serverFields()) {
      if (!LEGACY_FIELDS.has(f.name)) continue;
      query.append(x(f.name, {}, f.secret ? null : (values?.[f.name] ?? null)));
    }
    query.append(dataForm('form', { title: `Registration on ${server}`, instructions, formType: NS.register, fields: this.formFields(values, this.serverFields()) }));
    return iqResult(iq, query);
  }

  /** XEP-0077 set at a server JID: register there, edit, or remove that server only. */
  async serverSet(iq: Element, from: Jid, server: string): Promise<Element | null> {
    const { kit } = this;
    const user = from.bare;
    const query = iq.getChild('query', NS.register)!;
    if (query.getChild('remove')) {
      return this.queue.run(user, async (): Promise<Element | null> => {
        const payload = await this.payloadOf(user).catch(() => null);
        if (!payload?.servers?.[server]) return iqError(iq, 'registration-required', `you are not registered on ${server}`);
        const servers = { ...payload.servers };
        delete servers[server];
        const s = kit.sessions.get(user, server);
        if (s) await kit.sessions.logout(s, 'registration removed');
        if (Object.keys(payload.fields).length === 0 && Object.keys(servers).length === 0) {
          await this.unregister(user, 'registration removed');
          kit.send(iqResult(iq));
          this.afterUnregister(user);
          return null;
        }
        await kit.repo.updateCredentials(kit.vault.seal(user, kit.adapter.network, { fields: payload.fields, servers }, kit.clock.now()));
        this.remember(user, { fields: payload.fields, servers });
        return iqResult(iq);
      });
    }
    if (!this.mayRegister(from)) return iqError(iq, 'not-allowed', `users of ${from.domain} cannot register with this transport`);
    const failed = await this.saveServerSettings(user, server, this.submitted(query), { create: true });
    return failed ? iqError(iq, failed.condition, failed.text) : iqResult(iq);
  }
}

function sameValues(a: Credentials, b: Credentials): boolean {
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]);
  for (const k of keys) if ((a[k] ?? '') !== (b[k] ?? '')) return false;
  return true;
}

function pick(values: Credentials, fields: RegistrationField[]): Credentials {
  const out: Credentials = {};
  for (const f of fields) if (values[f.name] !== undefined) out[f.name] = values[f.name]!;
  return out;
}
