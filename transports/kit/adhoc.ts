/**
 * XEP-0050 (Ad-Hoc Commands 1.3) of the transport, one stage each:
 *
 *   gateway   settings     registered users: whether server messages are forwarded, and the
 *                          adapter's own per-user settings (settingsFields)
 *   gateway   users        admins: who is connected, to which server, since when, how many rooms
 *                          (never a credential)
 *   gateway   disconnect   admins: end a user's foreign sessions
 *   gateway   (adapter)    registered users: the adapter's own commands (NetworkAdapter.commands,
 *                          e.g. Matrix "Recovery key"), run in the user's session, logged in for it
 *   server    settings     registered users, multi-server networks: per-server overrides of the
 *   JID                    registration (e.g. another nick or password on one IRC server); tried
 *                          before stored, secrets never shown, empty keeps them
 *
 * Admins are the bare JIDs in the transport's `admins` setting (P21).
 */
import { randomBytes } from 'node:crypto';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { CommandFailure, type AdapterCommand, type RegistrationField } from './adapter.js';
import { SessionUnavailableError } from './user-session.js';
import type { Kit } from './kit-types.js';
import { dataForm, findForm, parseBoolean, readForm, type FormField } from './forms.js';
import { NS_COMMANDS, iqError, iqResult } from './stanzas.js';

interface CommandDef {
  node: string;
  name: string;
  /** Completes at once (a report, no form to fill in). */
  immediate?: boolean;
  /** Whether `from` may see and run it at `to`. */
  allowed(from: Jid, to: Jid): Promise<boolean>;
  /** The form of the first stage. */
  form(from: Jid, to: Jid): Promise<Element>;
  /** Handles the submitted form; returns a note text, or an error. */
  submit(from: Jid, to: Jid, values: Map<string, string[]>): Promise<{ note: string; form?: Element } | { error: string; text: string }>;
}

interface CommandSession {
  node: string;
  owner: string;
  to: string;
  expires: number;
}

const SESSION_TTL = 10 * 60_000;

const KIT_SETTINGS: RegistrationField[] = [
  {
    name: 'serverMessages',
    label: 'Forward server messages (notices, MOTD)',
    type: 'boolean',
    required: false,
    secret: false,
    default: 'true',
  },
];

export class AdHocCommands {
  private readonly sessions = new Map<string, CommandSession>();
  private readonly gatewayCommands: CommandDef[];
  private readonly serverCommands: CommandDef[];

  constructor(private readonly kit: Kit) {
    const isAdmin = async (from: Jid) => kit.settings.admins.includes(from.bare);
    const isRegistered = (from: Jid) => kit.registration.isRegistered(from.bare);
    this.gatewayCommands = [
      {
        node: 'settings',
        name: 'Settings',
        allowed: async (from) => (await isRegistered(from)) || kit.registration.mayJoinWithoutRegistration(from),
        form: async (from) => {
          const stored = (await kit.registration.settingsOf(from.bare)) ?? {};
          return dataForm('form', {
            title: `${kit.networkName} settings`,
            instructions: 'Changes to network settings apply at the next login.',
            fields: this.settingFields().map((f) => toFormField(f, stored[f.name])),
          });
        },
        submit: async (from, _to, values) => {
          const current = (await kit.registration.settingsOf(from.bare)) ?? {};
          const next = { ...current };
          for (const f of this.settingFields()) {
            const v = values.get(f.name)?.[0];
            if (v === undefined) continue;
            if (f.type === 'boolean') {
              const b = parseBoolean(v);
              if (b === null) return { error: 'bad-request', text: `${f.label} must be true or false` };
              next[f.name] = b ? 'true' : 'false';
            } else if (f.type === 'list-single' && f.options && v !== '' && !f.options.includes(v)) {
              return { error: 'bad-request', text: `${f.label} must be one of ${f.options.join(', ')}` };
            } else if (v === '') delete next[f.name];
            else next[f.name] = v.slice(0, 1024);
          }
          await kit.registration.saveSettings(from.bare, next);
          return { note: 'Settings saved.' };
        },
      },
      {
        node: 'users',
        name: 'Connected users',
        immediate: true,
        allowed: isAdmin,
        form: async () => this.usersForm(),
        submit: async () => ({ note: 'Connected users', form: this.usersForm() }),
      },
      {
        node: 'disconnect',
        name: 'Disconnect a user',
        allowed: isAdmin,
        form: async () =>
          dataForm('form', {
            title: 'Disconnect a user',
            instructions: 'Ends every foreign session of the user. The user logs in again with new presence.',
            fields: [
              { var: 'user', type: 'jid-single', label: 'User (bare JID)', required: true },
              { var: 'reason', type: 'text-single', label: 'Reason (shown to the user)' },
            ],
          }),
        submit: async (_from, _to, values) => {
          const target = Jid.tryParse(values.get('user')?.[0]?.trim());
          if (!target || !target.local) return { error: 'bad-request', text: 'give the user as user@domain' };
          const reason = values.get('reason')?.[0]?.trim() || 'disconnected by an administrator';
          const n = await kit.sessions.logoutUser(target.bare, reason, { tellUser: true });
          return { note: n ? `${target.bare}: ${n} session(s) ended.` : `${target.bare} had no session.` };
        },
      },
      ...(kit.adapter.commands ?? []).map((c) => this.adapterCommand(c, isRegistered)),
    ];
    // Per-server settings need no registration where joining needs none (Biboumi's way): saving them creates one.
    const mayConfigureServer = async (from: Jid) => (await isRegistered(from)) || kit.registration.mayJoinWithoutRegistration(from);
    this.serverCommands = [
      {
        node: 'settings',
        name: 'Settings for this server',
        allowed: mayConfigureServer,
        form: async (from, to) => {
          const server = this.serverOf(to);
          const values = server ? await kit.registration.serverValues(from.bare, server) : null;
          return dataForm('form', {
            title: `Settings for ${server}`,
            instructions: 'Overrides your registration on this server only. The transport logs in with them before it stores anything; passwords are never shown, leave them empty to keep them.',
            fields: kit.registration.serverFormFields(values),
          });
        },
        submit: async (from, to, values) => {
          const server = this.serverOf(to);
          if (!server) return { error: 'item-not-found', text: 'no such server' };
          const given = new Map<string, string>();
          for (const [k, v] of values) if (k !== 'FORM_TYPE') given.set(k, v.join('\n'));
          const failed = await kit.registration.saveServerSettings(from.bare, server, given, { create: kit.registration.mayJoinWithoutRegistration(from) });
          if (failed) return { error: failed.condition, text: failed.text };
          return { note: `Settings for ${server} saved.` };
        },
      },
    ];
  }

  /** An adapter's command: its form, then LegacySession.runCommand in the user's session. */
  private adapterCommand(c: AdapterCommand, allowed: (from: Jid) => Promise<boolean>): CommandDef {
    const { kit } = this;
    return {
      node: c.node,
      name: c.name,
      allowed,
      form: async () => dataForm('form', { title: c.name, instructions: c.instructions, fields: c.fields.map((f) => toFormField(f, undefined)) }),
      submit: async (from, _to, values) => {
        const given: Record<string, string> = {};
        for (const f of c.fields) {
          const v = values.get(f.name)?.join('\n') ?? '';
          if (f.required && !v.trim()) return { error: 'bad-request', text: `${f.label} is required` };
          given[f.name] = v;
        }
        const server = kit.adapter.multiServer ? kit.registration.cachedDefaultServer(from.bare) : undefined;
        let legacy;
        try {
          legacy = (await kit.sessions.ensure(from.bare, server)).legacy;
        } catch (err) {
          return { error: 'remote-server-timeout', text: err instanceof SessionUnavailableError ? err.failure.text : `not connected to ${kit.networkName}` };
        }
        if (!legacy?.runCommand) return { error: 'service-unavailable', text: `not connected to ${kit.networkName}` };
        try {
          return { note: await legacy.runCommand(c.node, given) };
        } catch (err) {
          if (err instanceof CommandFailure) return { error: err.condition, text: err.message };
          kit.log.warn('adapter command failed', { network: kit.adapter.network, node: c.node, error: err instanceof Error ? err.name : 'unknown' });
          return { error: 'internal-server-error', text: `${c.name} failed` };
        }
      },
    };
  }

  private settingFields(): RegistrationField[] {
    const raw: RegistrationField[] = this.kit.adapter.rawCommands
      ? [{ name: 'rawCommands', label: 'Send messages to a server JID as raw commands', type: 'boolean', required: false, secret: false, default: 'true' }]
      : [];
    return [...KIT_SETTINGS, ...raw, ...(this.kit.adapter.settingsFields ?? []).filter((f) => !f.secret)];
  }

  private usersForm(): Element {
    const rows = this.kit.sessions.connectedUsers().sort((a, b) => a.user.localeCompare(b.user));
    const reported: FormField[] = [
      { var: 'user', label: 'User', type: 'jid-single' },
      { var: 'server', label: 'Server', type: 'text-single' },
      { var: 'account', label: 'Account', type: 'text-single' },
      { var: 'state', label: 'State', type: 'text-single' },
      { var: 'since', label: 'Since', type: 'text-single' },
      { var: 'rooms', label: 'Rooms', type: 'text-single' },
    ];
    return dataForm('result', {
      title: `${rows.length} connected session(s)`,
      fields: [],
      reported,
      items: rows.map((r) => [
        { var: 'user', values: [r.user] },
        { var: 'server', values: [r.server ?? ''] },
        { var: 'account', values: [r.account ?? ''] },
        { var: 'state', values: [r.state] },
        { var: 'since', values: [r.since.toISOString()] },
        { var: 'rooms', values: [String(r.rooms)] },
      ]),
    });
  }

  private serverOf(to: Jid): string | null {
    const addr = this.kit.addresses.parse(to);
    return addr?.kind === 'server' ? addr.server : null;
  }

  private commandsFor(to: Jid): CommandDef[] {
    if (to.isDomain) return this.gatewayCommands;
    return this.serverOf(to) ? this.serverCommands : [];
  }

  /** disco#items for the commands node. */
  async items(from: Jid, to: Jid): Promise<Element[]> {
    const out: Element[] = [];
    for (const c of this.commandsFor(to)) if (await c.allowed(from, to)) out.push(x('item', { jid: to.full, node: c.node, name: c.name }));
    return out;
  }

  /** disco#info for a command node, or null if there is no such command for `from`. */
  async info(from: Jid, to: Jid, node: string): Promise<Element | null> {
    const c = this.commandsFor(to).find((d) => d.node === node);
    if (!c || !(await c.allowed(from, to))) return null;
    return x(
      'query',
      { xmlns: NS.discoInfo, node },
      x('identity', { category: 'automation', type: 'command-node', name: c.name }),
      x('feature', { var: NS_COMMANDS }),
      x('feature', { var: NS.dataForms }),
    );
  }

  private commandError(iq: Element, condition: string, specific: string | null, text?: string): Element {
    const reply = iqError(iq, condition, text);
    if (specific) reply.getChild('error')!.append(x(specific, { xmlns: NS_COMMANDS }));
    return reply;
  }

  private sweep(now: number): void {
    for (const [id, s] of this.sessions) if (s.expires < now) this.sessions.delete(id);
  }

  async execute(iq: Element, from: Jid, to: Jid): Promise<Element> {
    const cmd = iq.getChild('command', NS_COMMANDS)!;
    const node = cmd.attrs.node ?? '';
    const action = cmd.attrs.action ?? 'execute';
    const def = this.commandsFor(to).find((d) => d.node === node);
    if (!def) return this.commandError(iq, 'item-not-found', null, 'no such command');
    if (!(await def.allowed(from, to))) return this.commandError(iq, 'forbidden', null, 'you may not run this command');
    const now = Date.now();
    this.sweep(now);
    const sid = cmd.attrs.sessionid;
    if (!['execute', 'complete', 'cancel', 'next', 'prev'].includes(action)) return this.commandError(iq, 'bad-request', 'malformed-action');
    if (!sid) {
      if (action !== 'execute') return this.commandError(iq, 'bad-request', 'bad-action');
      const id = randomBytes(8).toString('hex');
      if (def.immediate) {
        const outcome = await def.submit(from, to, new Map());
        if ('error' in outcome) return this.commandError(iq, outcome.error, null, outcome.text);
        return iqResult(iq, x('command', { xmlns: NS_COMMANDS, node, sessionid: id, status: 'completed' }, x('note', { type: 'info' }, outcome.note), outcome.form ?? null));
      }
      this.sessions.set(id, { node, owner: from.full, to: to.full, expires: now + SESSION_TTL });
      return iqResult(
        iq,
        x('command', { xmlns: NS_COMMANDS, node, sessionid: id, status: 'executing' }, x('actions', { execute: 'complete' }, x('complete')), await def.form(from, to)),
      );
    }
    const session = this.sessions.get(sid);
    if (!session || session.owner !== from.full || session.node !== node || session.to !== to.full) return this.commandError(iq, 'bad-request', 'bad-sessionid');
    this.sessions.delete(sid);
    if (action === 'cancel') return iqResult(iq, x('command', { xmlns: NS_COMMANDS, node, sessionid: sid, status: 'canceled' }));
    if (action === 'next' || action === 'prev') return this.commandError(iq, 'bad-request', 'bad-action');
    const form = findForm(cmd, 'submit');
    const values = form ? readForm(form) : new Map<string, string[]>();
    const outcome = await def.submit(from, to, values);
    if ('error' in outcome) return this.commandError(iq, outcome.error, null, outcome.text);
    return iqResult(
      iq,
      x('command', { xmlns: NS_COMMANDS, node, sessionid: sid, status: 'completed' }, x('note', { type: 'info' }, outcome.note), outcome.form ?? null),
    );
  }
}

function toFormField(f: RegistrationField, stored: string | undefined): FormField {
  const v = stored ?? f.default;
  return {
    var: f.name,
    type: f.type === 'text-private' ? (f.secret ? 'text-private' : 'text-single') : f.type,
    label: f.label,
    desc: f.description,
    values: v === undefined ? [] : [f.type === 'boolean' ? (parseBoolean(v) === false ? '0' : '1') : v],
    options: f.options?.map((o) => ({ value: o, label: o })),
  };
}
