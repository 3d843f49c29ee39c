/**
 * Account data export and import in the XEP-0227 format (Portable Import/Export Format for XMPP-IM
 * Servers, version 1.1), for privacy clause P23: a user's data as one XML file, and the way back.
 *
 *   <server-data xmlns='urn:xmpp:pie:0'>
 *     <host jid='example.org'>
 *       <user name='alice' createdAt='2026-01-01T00:00:00.000Z'>
 *         <scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-256'>
 *           <iter-count/> <salt/> <server-key/> <stored-key/>          (base64)
 *         </scram-credentials>
 *         <query xmlns='jabber:iq:roster'> items as in a roster result (RFC 6121 2.1.4) </query>
 *         <presence xmlns='jabber:client' type='subscribe' from='…'/>  (pending inbound requests)
 *         <vCard xmlns='vcard-temp'>…</vCard>
 *         <query xmlns='jabber:iq:private'> the stored elements </query>
 *         <offline-messages> <message xmlns='jabber:client'>… <delay from='host' stamp='arrival'/></message> </offline-messages>
 *         <account xmlns='urn:gatehouse:pie:0' lastUsedAt=… warnedAt=…> Gatehouse-only data </account>
 *       </user>
 *     </host>
 *   </server-data>
 *
 * Credentials (P2): Gatehouse stores only SCRAM verifiers, so they are exported in the form the XEP
 * defines for that (never a 'password' attribute). An import from another server that carries a
 * plaintext 'password' turns it into verifiers at once; the plaintext is never stored or printed.
 *
 * Everything Gatehouse keeps about an account that the XEP has no element for (last use, the
 * inactivity warning, server-side state such as the last logout, roster records of subscription
 * requests the user has not answered) goes into the `urn:gatehouse:pie:0` extension element, which
 * other servers ignore as the XEP says, so a Gatehouse → Gatehouse round trip loses nothing.
 *
 * The loaded modules add their own data (GatehouseModule `accountData`, e.g. PEP nodes and items):
 * each export function takes that list of parts; a part's elements follow the core data in the
 * <user/>, and on import every child a part claims is checked by it before anything is written and
 * stored by it after the account's core data.
 *
 * Import is all-or-nothing per file for the checks (unknown host, malformed data, an account that
 * exists without --force, an administrator's account not named with --replace-admin: nothing is
 * written) and per account for the writes (an account whose data fails to store is removed again).
 * SCRAM iteration counts must lie within IMPORT_MIN_ITERATIONS..IMPORT_MAX_ITERATIONS.
 */
import { normaliseDomain, normaliseLocal, Jid } from '../../../shared/jid.js';
import { Element, x } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import { parseXmlText } from '../../../shared/xml/parse-xml.js';
import { XmlStreamParser } from '../../../shared/xml/stream-parser.js';
import { asTypeOrmStorage } from '../../../storage/typeorm-storage.js';
import type { Account, RosterItem, ScramVerifier, Storage, Subscription } from '../../../storage/types.js';
import { makeVerifierAsync } from '../../accounts/service.js';
import { MAX_ITERATIONS, MIN_ITERATIONS } from '../../auth/scram.js';
import { HIDDEN_GROUP, rosterItemElement } from '../../core/subscription-states.js';
import type { AccountDataPart, GatehouseModule } from '../../core/context.js';

export const PIE_NS = 'urn:xmpp:pie:0';
/** The namespace of XEP-0227 before version 1.0; accepted on import. */
export const PIE_NS_LEGACY = 'http://www.xmpp.org/extensions/xep-0227.html#ns';
export const PIE_SCRAM_NS = 'urn:xmpp:pie:0#scram';
/** Gatehouse's own additions (other importers ignore them, as XEP-0227 section 4 says). */
export const GATEHOUSE_PIE_NS = 'urn:gatehouse:pie:0';

const SUBSCRIPTIONS: readonly Subscription[] = ['none', 'to', 'from', 'both'];
const MECHANISMS: Record<string, ScramVerifier['hash']> = { 'SCRAM-SHA-1': 'SHA-1', 'SCRAM-SHA-256': 'SHA-256' };
const KEY_BYTES: Record<ScramVerifier['hash'], number> = { 'SHA-1': 20, 'SHA-256': 32 };
/** Largest import file read. */
export const MAX_IMPORT_BYTES = 512 * 1024 * 1024;
/**
 * SCRAM iteration counts an imported verifier may have. Fewer than RFC 7677's minimum makes a
 * stolen verifier cheap to attack; a huge count makes every PLAIN login of the account (checked
 * on the server) stall the event loop.
 */
/** The bounds a login accepts (server/auth/scram.ts): an import outside them could never be used. */
export const IMPORT_MIN_ITERATIONS = MIN_ITERATIONS;
export const IMPORT_MAX_ITERATIONS = MAX_ITERATIONS;

export class ExportError extends Error {
  override name = 'ExportError';
}

// ---------------------------------------------------------------------------------------------
// Export

interface KvEntry {
  key: string;
  xml: string;
}

/**
 * Every key of one kind of kv_items of an account. The KeyValueRepository interface has no list
 * operation yet, so this reads the table through the storage's raw query (TypeORM storage only).
 */
async function listKv(storage: Storage, accountId: number, kind: 'vcard' | 'private' | 'state'): Promise<KvEntry[]> {
  const s = asTypeOrmStorage(storage);
  const [a, b] = storage.kind === 'postgres' ? ['$1', '$2'] : ['?', '?'];
  const rows = await s.rawQuery(`SELECT item_key, xml FROM kv_items WHERE account_id = ${a} AND kind = ${b}`, [accountId, kind]);
  return rows
    .map((r: { item_key: string; xml: string }) => ({ key: String(r.item_key), xml: String(r.xml) }))
    .sort((p, q) => (p.key < q.key ? -1 : p.key > q.key ? 1 : 0));
}

function iso(d: Date | null): string | undefined {
  return d ? d.toISOString() : undefined;
}

/** A stored XML value as an element, or (unreadable) as text inside a wrapper that says so. */
function storedElement(xml: string): Element | null {
  return parseXmlText(xml);
}

function scramElement(v: ScramVerifier): Element {
  return x(
    'scram-credentials',
    { xmlns: PIE_SCRAM_NS, mechanism: `SCRAM-${v.hash}` },
    x('iter-count', {}, String(v.iterations)),
    x('salt', {}, v.salt.toString('base64')),
    x('server-key', {}, v.serverKey.toString('base64')),
    x('stored-key', {}, v.storedKey.toString('base64')),
  );
}


/** The account data parts (GatehouseModule `accountData`) of the given modules, in their order. */
export function accountDataParts(modules: readonly GatehouseModule[]): AccountDataPart[] {
  return modules.flatMap((m) => (m.accountData ? [m.accountData] : []));
}

/** The XEP-0227 <user/> element of one account, with the data of the modules' parts. */
export async function exportUser(storage: Storage, account: Account, parts: readonly AccountDataPart[]): Promise<Element> {
  const user = x('user', { name: account.username, createdAt: account.createdAt.toISOString() });
  for (const v of await storage.accounts.getVerifiers(account.id)) user.append(scramElement(v));

  const items = await storage.roster.list(account.id);
  const visible = items.filter((i) => !i.groups.includes(HIDDEN_GROUP));
  const hidden = items.filter((i) => i.groups.includes(HIDDEN_GROUP));
  if (visible.length) user.append(x('query', { xmlns: NS.roster }, visible.map((i) => rosterItemElement(i))));
  // XEP-0227: subscription requests the user has not answered yet.
  for (const i of items) if (i.pendingIn) user.append(x('presence', { xmlns: NS.client, type: 'subscribe', from: i.jid }));

  const vcard = await storage.vcards.get(account.id, 'vcard');
  const vcardEl = vcard !== null ? storedElement(vcard) : null;
  if (vcardEl) user.append(vcardEl);

  const privateItems = await listKv(storage, account.id, 'private');
  const privateEls: Element[] = [];
  const unreadable: KvEntry[] = [];
  for (const p of privateItems) {
    const el = storedElement(p.xml);
    if (el) privateEls.push(el);
    else unreadable.push(p);
  }
  if (privateEls.length) user.append(x('query', { xmlns: NS.privateXml }, privateEls));

  const offline = await storage.offline.list(account.id);
  if (offline.length) {
    const box = x('offline-messages');
    for (const m of offline) {
      const el = parseXmlText(m.stanza, NS.client);
      if (!el) continue;
      const { xmlns: _ns, ...rest } = el.attrs;
      el.attrs = { xmlns: NS.client, ...rest };
      el.append(x('delay', { xmlns: NS.delay, from: account.host, stamp: m.receivedAt.toISOString() }, 'Offline Storage'));
      box.append(el);
    }
    user.append(box);
  }

  for (const part of parts) for (const el of await part.export(storage, account)) user.append(el);

  // Gatehouse-only data.
  const ext = x('account', { xmlns: GATEHOUSE_PIE_NS, lastUsedAt: iso(account.lastUsedAt), warnedAt: iso(account.warnedAt) });
  for (const i of hidden) ext.append(rosterItemElement(i, { 'pending-in': i.pendingIn ? 'true' : undefined, hidden: 'true' }));
  if (vcard !== null && !vcardEl) ext.append(x('value', { store: 'vcard', key: 'vcard' }, vcard));
  for (const p of unreadable) ext.append(x('value', { store: 'private', key: p.key }, p.xml));
  for (const s of await listKv(storage, account.id, 'state')) {
    const el = storedElement(s.xml);
    ext.append(x('value', { store: 'state', key: s.key }, el ?? s.xml));
  }
  for (const m of offline) {
    if (!parseXmlText(m.stanza, NS.client)) ext.append(x('value', { store: 'offline', stamp: m.receivedAt.toISOString() }, m.stanza));
  }
  user.append(ext);
  return user;
}

/** The <server-data/> document of the given accounts (grouped by host, in the order given). */
export async function exportAccounts(storage: Storage, accounts: { username: string; host: string }[], parts: readonly AccountDataPart[]): Promise<Element> {
  const root = x('server-data', { xmlns: PIE_NS });
  const hosts = new Map<string, Element>();
  for (const a of accounts) {
    const account = await storage.accounts.get(a.username, a.host);
    if (!account) throw new ExportError(`no account ${a.username}@${a.host}`);
    let host = hosts.get(account.host);
    if (!host) {
      host = x('host', { jid: account.host });
      hosts.set(account.host, host);
      root.append(host);
    }
    host.append(await exportUser(storage, account, parts));
  }
  return root;
}

/** Elements whose children go on lines of their own; everything else (user data) is written as stored. */
const STRUCTURAL = new Set(['server-data', 'host', 'user', 'offline-messages', 'scram-credentials']);

function isStructural(el: Element): boolean {
  if (STRUCTURAL.has(el.name)) return true;
  if (el.name === 'query' && (el.attrs.xmlns === NS.roster || el.attrs.xmlns === NS.privateXml)) return true;
  return el.name === 'account' && el.attrs.xmlns === GATEHOUSE_PIE_NS;
}

function pretty(el: Element, depth: number, out: string[]): void {
  const pad = '  '.repeat(depth);
  if (!isStructural(el) || el.children.length === 0 || el.children.some((c) => typeof c === 'string')) {
    out.push(pad + el.toString());
    return;
  }
  const open = new Element(el.name, el.attrs).toString().replace(/\/>$/, '>');
  out.push(pad + open);
  for (const c of el.elements) pretty(c, depth + 1, out);
  out.push(`${pad}</${el.name}>`);
}

/** The export document as a file: XML declaration, indented structure, user data byte for byte. */
export function renderExport(root: Element): string {
  const out: string[] = ["<?xml version='1.0' encoding='UTF-8'?>"];
  pretty(root, 0, out);
  return out.join('\n') + '\n';
}

// ---------------------------------------------------------------------------------------------
// Import: parsing

export interface ImportedUser {
  username: string;
  host: string;
  createdAt: Date | null;
  lastUsedAt: Date | null;
  warnedAt: Date | null;
  verifiers: ScramVerifier[];
  /** A plaintext password from another server's export: turned into verifiers, never stored. */
  password: string | null;
  roster: RosterItem[];
  vcard: string | null;
  privateXml: KvEntry[];
  state: KvEntry[];
  offline: { stanza: string; receivedAt: Date | null }[];
  /** The children of <user/> each module's part claimed (already checked by it). */
  claimed: Map<AccountDataPart, Element[]>;
}

export interface ParsedImport {
  users: ImportedUser[];
  /** What was skipped (unknown elements, unsupported mechanisms); never contains user data. */
  warnings: string[];
}

function parseDate(value: string | undefined, what: string): Date | null {
  if (value === undefined || value === '') return null;
  const d = new Date(value);
  if (Number.isNaN(d.getTime())) throw new ExportError(`${what}: not a date/time: ${value.slice(0, 40)}`);
  return d;
}

function base64(value: string | undefined, what: string): Buffer {
  const t = (value ?? '').replace(/\s+/g, '');
  if (!t || !/^[A-Za-z0-9+/]*={0,2}$/.test(t) || t.length % 4 !== 0) throw new ExportError(`${what}: not base64`);
  return Buffer.from(t, 'base64');
}

function isPie(el: Element): boolean {
  const ns = el.xmlns;
  return ns === undefined || ns === PIE_NS || ns === PIE_NS_LEGACY;
}

function parseScram(el: Element, who: string, warnings: string[]): ScramVerifier | null {
  const mechanism = el.attrs.mechanism ?? '';
  const hash = MECHANISMS[mechanism];
  if (!hash) {
    warnings.push(`${who}: skipped credentials for ${mechanism.slice(0, 40) || 'an unnamed mechanism'} (Gatehouse uses SCRAM-SHA-1 and SCRAM-SHA-256)`);
    return null;
  }
  const text = (name: string) => el.getChildText(name)?.trim();
  const iterText = text('iter-count') ?? text('iteration-count');
  const iterations = Number(iterText);
  if (!iterText || !/^\d+$/.test(iterText) || !Number.isSafeInteger(iterations) || iterations < 1) throw new ExportError(`${who}: ${mechanism} iteration count is not a positive integer`);
  if (iterations < IMPORT_MIN_ITERATIONS || iterations > IMPORT_MAX_ITERATIONS) {
    const bound = (n: number) => n.toLocaleString('en-US');
    throw new ExportError(`${who}: ${mechanism} iteration count ${bound(iterations)} must be between ${bound(IMPORT_MIN_ITERATIONS)} and ${bound(IMPORT_MAX_ITERATIONS)} (set a new password after importing without these credentials)`);
  }
  const salt = base64(text('salt'), `${who}: ${mechanism} salt`);
  const serverKey = base64(text('server-key'), `${who}: ${mechanism} server-key`);
  const storedKey = base64(text('stored-key'), `${who}: ${mechanism} stored-key`);
  if (salt.length === 0) throw new ExportError(`${who}: ${mechanism} salt is empty`);
  if (serverKey.length !== KEY_BYTES[hash] || storedKey.length !== KEY_BYTES[hash]) throw new ExportError(`${who}: ${mechanism} keys must be ${KEY_BYTES[hash]} bytes`);
  return { hash, iterations, salt, serverKey, storedKey };
}

function parseRosterItem(el: Element, who: string): RosterItem {
  const jid = Jid.tryParse(el.attrs.jid ?? '');
  if (!jid || jid.resource) throw new ExportError(`${who}: roster item with an invalid JID`);
  const subscription = (el.attrs.subscription ?? 'none') as Subscription;
  if (!SUBSCRIPTIONS.includes(subscription)) throw new ExportError(`${who}: roster item ${jid.bare} has subscription '${String(subscription).slice(0, 20)}'`);
  const groups: string[] = [];
  for (const g of el.getChildren('group')) {
    const name = g.text();
    if (name && !groups.includes(name)) groups.push(name);
  }
  return {
    jid: jid.bare,
    name: el.attrs.name !== undefined && el.attrs.name !== '' ? el.attrs.name : null,
    subscription,
    ask: el.attrs.ask === 'subscribe',
    pendingIn: el.attrs['pending-in'] === 'true',
    approved: el.attrs.approved === 'true' || el.attrs.approved === '1',
    groups,
  };
}

/** The stored form of an exported offline message: without the delay Gatehouse added and without the default namespace. */
function offlineStanza(el: Element, host: string): { stanza: string; receivedAt: Date | null } {
  const copy = el.clone();
  const delays = copy.getChildren('delay', NS.delay);
  const ours = [...delays].reverse().find((d) => d.attrs.from === host) ?? (delays.length === 1 ? delays[0] : undefined);
  let receivedAt: Date | null = null;
  if (ours) {
    receivedAt = parseDate(ours.attrs.stamp, 'offline message delay');
    copy.remove(ours);
  }
  if (copy.attrs.xmlns === NS.client || copy.attrs.xmlns === PIE_NS || copy.attrs.xmlns === PIE_NS_LEGACY) delete copy.attrs.xmlns;
  return { stanza: copy.toString(), receivedAt };
}

function parseUser(el: Element, host: string, warnings: string[], parts: readonly AccountDataPart[]): ImportedUser {
  const rawName = el.attrs.name ?? '';
  const username = normaliseLocal(rawName);
  if (!username) throw new ExportError(`host ${host}: a user has no valid 'name'`);
  const who = `${username}@${host}`;
  const user: ImportedUser = {
    username,
    host,
    createdAt: parseDate(el.attrs.createdAt, `${who} createdAt`),
    lastUsedAt: null,
    warnedAt: null,
    verifiers: [],
    password: el.attrs.password ?? null,
    roster: [],
    vcard: null,
    privateXml: [],
    state: [],
    offline: [],
    claimed: new Map(),
  };
  const roster = new Map<string, RosterItem>();
  const pendingIn = new Set<string>();
  for (const child of el.elements) {
    const ns = child.xmlns;
    const part = parts.find((p) => p.claims(child));
    if (part) {
      const list = user.claimed.get(part) ?? [];
      list.push(child);
      user.claimed.set(part, list);
    } else if (child.name === 'scram-credentials' && ns === PIE_SCRAM_NS) {
      const v = parseScram(child, who, warnings);
      if (v && !user.verifiers.some((o) => o.hash === v.hash)) user.verifiers.push(v);
    } else if (child.name === 'query' && ns === NS.roster) {
      for (const item of child.getChildren('item')) {
        const r = parseRosterItem(item, who);
        roster.set(r.jid, r);
      }
    } else if (child.name === 'presence' && (ns === NS.client || isPie(child))) {
      if (child.attrs.type !== 'subscribe') continue;
      const from = Jid.tryParse(child.attrs.from ?? '');
      if (from) pendingIn.add(from.bare);
    } else if (child.name === 'vCard' && ns === NS.vcard) {
      user.vcard = child.clone().toString();
    } else if (child.name === 'query' && ns === NS.privateXml) {
      for (const p of child.elements) {
        const copy = p.clone();
        user.privateXml.push({ key: `{${copy.attrs.xmlns ?? ''}}${copy.name}`, xml: copy.toString() });
      }
    } else if (child.name === 'offline-messages' && isPie(child)) {
      for (const m of child.elements) {
        if (m.name !== 'message') continue;
        user.offline.push(offlineStanza(m, host));
      }
    } else if (child.name === 'account' && ns === GATEHOUSE_PIE_NS) {
      user.lastUsedAt = parseDate(child.attrs.lastUsedAt, `${who} lastUsedAt`);
      user.warnedAt = parseDate(child.attrs.warnedAt, `${who} warnedAt`);
      for (const e of child.elements) {
        if (e.name === 'item') {
          const r = parseRosterItem(e, who);
          if (e.attrs.hidden === 'true') r.groups = [...r.groups, HIDDEN_GROUP];
          if (!roster.has(r.jid)) roster.set(r.jid, r);
        } else if (e.name === 'value') {
          const inner = e.firstElement();
          let xml = e.text();
          if (inner) {
            // A stored value keeps the form it had: it inherits no namespace from the wrapper.
            const copy = inner.clone();
            if (inner.attrs.xmlns === undefined) delete copy.attrs.xmlns;
            xml = copy.toString();
          }
          const key = e.attrs.key ?? '';
          if (e.attrs.store === 'state' && key) user.state.push({ key, xml });
          else if (e.attrs.store === 'private' && key) user.privateXml.push({ key, xml });
          else if (e.attrs.store === 'vcard') user.vcard = xml;
          else if (e.attrs.store === 'offline') user.offline.push({ stanza: xml, receivedAt: parseDate(e.attrs.stamp, `${who} offline stamp`) });
        }
      }
    } else {
      warnings.push(`${who}: skipped <${child.name}${ns ? ` xmlns='${ns.slice(0, 80)}'` : ''}/> (not supported)`);
    }
  }
  for (const jid of pendingIn) {
    const item = roster.get(jid);
    if (item) item.pendingIn = true;
    else roster.set(jid, { jid, name: null, subscription: 'none', ask: false, pendingIn: true, approved: false, groups: [HIDDEN_GROUP] });
  }
  user.roster = [...roster.values()];
  for (const [part, elements] of user.claimed) {
    const problems = part.check(elements);
    if (problems.length > 0) throw new ExportError(`${who}: ${problems.slice(0, 5).join('; ')}${problems.length > 5 ? '; …' : ''}`);
  }
  return user;
}

/**
 * Parses an XEP-0227 document (no DTD, comments or processing instructions: the stream parser's
 * rules); the children of a <user/> that one of `parts` claims are checked by it and kept for it.
 */
export function parseExport(text: string | Buffer, parts: readonly AccountDataPart[]): ParsedImport {
  const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
  if (buf.length > MAX_IMPORT_BYTES) throw new ExportError(`the file is larger than ${MAX_IMPORT_BYTES} bytes`);
  const hosts: Element[] = [];
  let root: { name: string; attrs: Record<string, string> } | null = null;
  let closed = false;
  let error: string | null = null;
  const parser = new XmlStreamParser(
    {
      streamOpen: (name, attrs) => {
        root = { name, attrs };
      },
      stanza: (el) => {
        hosts.push(el);
      },
      streamClose: () => {
        closed = true;
      },
      error: (_condition, message) => {
        error ??= message;
      },
    },
    { maxStanzaBytes: MAX_IMPORT_BYTES, maxDepth: 512, maxAttributes: 512 },
  );
  parser.write(buf);
  if (error) throw new ExportError(`not a readable XML file: ${error}`);
  const r = root as { name: string; attrs: Record<string, string> } | null;
  if (!r) throw new ExportError('the file holds no XML document');
  if (r.name !== 'server-data' || (r.attrs.xmlns !== PIE_NS && r.attrs.xmlns !== PIE_NS_LEGACY)) {
    throw new ExportError(`not an XEP-0227 file: the root element must be <server-data xmlns='${PIE_NS}'/>`);
  }
  if (!closed) throw new ExportError('the file is truncated: </server-data> is missing');
  const warnings: string[] = [];
  const users: ImportedUser[] = [];
  const seen = new Set<string>();
  for (const h of hosts) {
    if (h.name !== 'host' || !isPie(h)) {
      warnings.push(`skipped <${h.name}/> at the top level (not supported)`);
      continue;
    }
    const host = normaliseDomain(h.attrs.jid ?? '');
    if (!host) throw new ExportError(`a <host/> has no valid 'jid'`);
    for (const u of h.elements) {
      if (u.name !== 'user' || !isPie(u)) {
        warnings.push(`host ${host}: skipped <${u.name}/> (not supported)`);
        continue;
      }
      const user = parseUser(u, host, warnings, parts);
      const jid = `${user.username}@${host}`;
      if (seen.has(jid)) throw new ExportError(`${jid} appears twice in the file`);
      seen.add(jid);
      users.push(user);
    }
  }
  return { users, warnings };
}

// ---------------------------------------------------------------------------------------------
// Import: writing

export interface ImportOptions {
  /** Domains this server hosts; users of other hosts are refused. */
  hosts: string[];
  /** Replace accounts that exist (delete them with all their data first). */
  force?: boolean;
  /** Administrators (config `admins`): their accounts are replaced only when also in `replaceAdmins`. */
  admins?: string[];
  /** Administrators' accounts the operator named explicitly for replacement. */
  replaceAdmins?: string[];
  /** For accounts without createdAt. */
  now: Date;
  /** For verifiers made from a plaintext password in a foreign export. */
  auth: { hashes: ScramVerifier['hash'][]; scramIterations: number };
  /** Deletes an existing account (with --force); defaults to storage.accounts.delete. */
  deleteAccount?: (account: Account) => Promise<void>;
}

export interface ImportResult {
  imported: string[];
  replaced: string[];
  warnings: string[];
}

export interface ImportPlan {
  /** Accounts the import would create. */
  create: string[];
  /** Existing accounts it would delete and create again from the file. */
  replace: string[];
  /** Of `replace`: administrators' accounts (config `admins`). */
  admins: string[];
  /** Administrators' accounts in `replace` that were not named in `replaceAdmins`. */
  adminsNotNamed: string[];
}

function normalisedJids(list: string[] | undefined): Set<string> {
  return new Set((list ?? []).map((j) => Jid.tryParse(j)?.bare ?? j.toLowerCase()));
}

/** What importing `parsed` would do, without changing anything; refuses an unknown host. */
export async function planImport(storage: Storage, parsed: ParsedImport, opts: Pick<ImportOptions, 'hosts' | 'admins' | 'replaceAdmins'>): Promise<ImportPlan> {
  const unknownHosts = [...new Set(parsed.users.map((u) => u.host).filter((h) => !opts.hosts.includes(h)))];
  if (unknownHosts.length) throw new ExportError(`the file has accounts on hosts this server does not serve: ${unknownHosts.join(', ')}`);
  const admins = normalisedJids(opts.admins);
  const named = normalisedJids(opts.replaceAdmins);
  const plan: ImportPlan = { create: [], replace: [], admins: [], adminsNotNamed: [] };
  for (const u of parsed.users) {
    const jid = `${u.username}@${u.host}`;
    if (!(await storage.accounts.get(u.username, u.host))) {
      plan.create.push(jid);
      continue;
    }
    plan.replace.push(jid);
    if (admins.has(jid)) {
      plan.admins.push(jid);
      if (!named.has(jid)) plan.adminsNotNamed.push(jid);
    }
  }
  return plan;
}

/**
 * Writes the parsed accounts. Refuses (writing nothing) on an unknown host, an existing account
 * without force, or an administrator's account not named in replaceAdmins.
 */
export async function importAccounts(storage: Storage, parsed: ParsedImport, opts: ImportOptions, parts: readonly AccountDataPart[]): Promise<ImportResult> {
  const warnings = [...parsed.warnings];
  const plan = await planImport(storage, parsed, opts);
  const existing = new Map<string, Account>();
  for (const u of parsed.users) {
    const a = plan.replace.includes(`${u.username}@${u.host}`) ? await storage.accounts.get(u.username, u.host) : null;
    if (a) existing.set(`${u.username}@${u.host}`, a);
  }
  if (existing.size && !opts.force) {
    const names = [...existing.keys()];
    throw new ExportError(`${names.length === 1 ? 'account exists' : 'accounts exist'}: ${names.slice(0, 10).join(', ')}${names.length > 10 ? ', …' : ''} (use --force to replace)`);
  }
  if (plan.adminsNotNamed.length) {
    const names = plan.adminsNotNamed;
    throw new ExportError(
      `${names.join(', ')} ${names.length === 1 ? 'is an administrator' : 'are administrators'} (config admins): replacing ${names.length === 1 ? 'it' : 'them'} needs --replace-admin ${names.join(',')}; nothing was imported`,
    );
  }
  // Verifiers for a plaintext password are made before anything is written.
  const verifiers = new Map<ImportedUser, ScramVerifier[]>();
  for (const u of parsed.users) {
    const list = [...u.verifiers];
    if (u.password !== null) {
      for (const hash of opts.auth.hashes) {
        if (list.some((v) => v.hash === hash)) continue;
        try {
          list.push(await makeVerifierAsync(u.password, hash, opts.auth.scramIterations));
        } catch {
          throw new ExportError(`${u.username}@${u.host}: the password in the file cannot be used (SASLprep)`);
        }
      }
    }
    if (list.length === 0) warnings.push(`${u.username}@${u.host}: no usable credentials in the file: set a password with gatehouse user passwd`);
    verifiers.set(u, list);
  }

  const result: ImportResult = { imported: [], replaced: [], warnings };
  for (const u of parsed.users) {
    const jid = `${u.username}@${u.host}`;
    const old = existing.get(jid);
    if (old) {
      await (opts.deleteAccount ? opts.deleteAccount(old) : storage.accounts.delete(old.id).then(() => undefined));
      result.replaced.push(jid);
    }
    const account = await storage.accounts.create(u.username, u.host, verifiers.get(u)!, u.createdAt ?? opts.now);
    if (!account) throw new ExportError(`${jid} was created by someone else during the import`);
    try {
      if (u.lastUsedAt) await storage.accounts.touch(account.id, u.lastUsedAt);
      if (u.warnedAt) await storage.accounts.setWarnedAt(account.id, u.warnedAt);
      for (const item of u.roster) await storage.roster.put(account.id, item);
      if (u.vcard !== null) await storage.vcards.set(account.id, 'vcard', u.vcard);
      for (const p of u.privateXml) await storage.privateXml.set(account.id, p.key, p.xml);
      for (const s of u.state) await storage.accountState.set(account.id, s.key, s.xml);
      for (const m of u.offline) await storage.offline.store(account.id, m.stanza, m.receivedAt ?? opts.now);
      for (const part of parts) {
        const elements = u.claimed.get(part);
        if (elements?.length) await part.import(storage, account, elements);
      }
    } catch (err) {
      await storage.accounts.delete(account.id).catch(() => undefined);
      throw new ExportError(`${jid}: import failed, the account was not created: ${err instanceof Error ? err.message : String(err)}`);
    }
    result.imported.push(jid);
  }
  return result;
}
