/**
 * A room's configuration, its owner form (`muc#roomconfig`, XEP-0045 10.2 and the field registry
 * of 15.5.3) and the `muc#roominfo` form of its disco#info (6.4, 15.5.4).
 */
import { Element, x } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';
import { NS_MUC_ROOMCONFIG, NS_MUC_ROOMINFO, type Role } from './roles.js';

export type Whois = 'moderators' | 'anyone';
export type AllowPm = 'anyone' | 'participants' | 'moderators' | 'none';

export interface RoomConfig {
  name: string;
  description: string;
  language: string;
  persistent: boolean;
  public: boolean;
  membersOnly: boolean;
  /** Empty: no password. */
  password: string;
  moderated: boolean;
  whois: Whois;
  maxUsers: number;
  changeSubject: boolean;
  allowInvites: boolean;
  allowPm: AllowPm;
  historyLength: number;
  getMemberList: Role[];
  /** Roles whose presence the other occupants see (muc#roomconfig_presencebroadcast); everyone always sees their own. */
  presenceBroadcast: Role[];
  /** The room's vCard-temp (avatar, XEP-0054 / XEP-0153 on the room JID) as XML, or ''. */
  vcard: string;
}

export interface ConfigLimits {
  maxOccupants: number;
  defaultHistory: number;
  maxHistory: number;
}

export function defaultConfig(limits: ConfigLimits): RoomConfig {
  return {
    name: '',
    description: '',
    language: '',
    persistent: false,
    public: true,
    membersOnly: false,
    password: '',
    moderated: false,
    whois: 'moderators',
    maxUsers: limits.maxOccupants,
    changeSubject: false,
    allowInvites: false,
    allowPm: 'anyone',
    historyLength: Math.min(limits.defaultHistory, limits.maxHistory),
    getMemberList: ['moderator', 'participant', 'visitor'],
    presenceBroadcast: ['moderator', 'participant', 'visitor'],
    vcard: '',
  };
}

/** The stored form of a configuration (JSON) and back; unknown or bad values fall back to the defaults. */
export function configToJson(c: RoomConfig): string {
  return JSON.stringify(c);
}

export function configFromJson(text: string, limits: ConfigLimits): RoomConfig {
  const base = defaultConfig(limits);
  let raw: Record<string, unknown> = {};
  try {
    const parsed: unknown = JSON.parse(text);
    if (parsed && typeof parsed === 'object') raw = parsed as Record<string, unknown>;
  } catch {
    return base;
  }
  const out: RoomConfig = { ...base };
  for (const k of Object.keys(base) as (keyof RoomConfig)[]) {
    const v = raw[k];
    if (v !== undefined && typeof v === typeof base[k] && Array.isArray(v) === Array.isArray(base[k])) (out as unknown as Record<string, unknown>)[k] = v;
  }
  out.getMemberList = out.getMemberList.filter(isListedRole);
  out.presenceBroadcast = out.presenceBroadcast.filter(isListedRole);
  out.maxUsers = Math.max(1, Math.min(out.maxUsers, limits.maxOccupants));
  out.historyLength = Math.max(0, Math.min(out.historyLength, limits.maxHistory));
  return out;
}

const isListedRole = (v: unknown): v is Role => v === 'moderator' || v === 'participant' || v === 'visitor';
const ROLE_OPTIONS: [string, string][] = [
  ['moderator', 'Moderator'],
  ['participant', 'Participant'],
  ['visitor', 'Visitor'],
];

function field(v: string, type: string, label: string, values: string[], options?: [string, string][]): Element {
  return x(
    'field',
    { var: v, type, label },
    options?.map(([value, text]) => x('option', { label: text }, x('value', {}, value))),
    values.map((value) => x('value', {}, value)),
  );
}

const bool = (b: boolean) => [b ? '1' : '0'];
const MAXUSERS_CHOICES = [5, 10, 20, 30, 50, 100, 200, 500, 1000];

/** The owner's configuration form (10.2), filled with the current values. */
export function configForm(c: RoomConfig, admins: string[], owners: string[], limits: ConfigLimits): Element {
  const maxusers = [...new Set([...MAXUSERS_CHOICES.filter((n) => n <= limits.maxOccupants), limits.maxOccupants, c.maxUsers])].sort((a, b) => a - b);
  return x(
    'x',
    { xmlns: NS.dataForms, type: 'form' },
    x('title', {}, 'Room configuration'),
    x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NS_MUC_ROOMCONFIG)),
    field('muc#roomconfig_roomname', 'text-single', 'Name', [c.name]),
    field('muc#roomconfig_roomdesc', 'text-single', 'Description', [c.description]),
    field('muc#roomconfig_lang', 'text-single', 'Language of the discussion', [c.language]),
    field('muc#roomconfig_persistentroom', 'boolean', 'Persistent (kept when the last occupant leaves)', bool(c.persistent)),
    field('muc#roomconfig_publicroom', 'boolean', 'Listed in the public room list', bool(c.public)),
    field('muc#roomconfig_membersonly', 'boolean', 'Members only', bool(c.membersOnly)),
    field('muc#roomconfig_passwordprotectedroom', 'boolean', 'Password required to enter', bool(c.password !== '')),
    field('muc#roomconfig_roomsecret', 'text-private', 'Password', [c.password]),
    field('muc#roomconfig_moderatedroom', 'boolean', 'Moderated (only occupants with voice may speak)', bool(c.moderated)),
    field('muc#roomconfig_whois', 'list-single', 'Who may see the occupants\' real addresses', [c.whois], [
      ['moderators', 'Moderators only'],
      ['anyone', 'Anyone'],
    ]),
    field('muc#roomconfig_maxusers', 'list-single', 'Maximum number of occupants', [String(c.maxUsers)], maxusers.map((n) => [String(n), String(n)])),
    field('muc#roomconfig_changesubject', 'boolean', 'Occupants may change the subject', bool(c.changeSubject)),
    field('muc#roomconfig_allowinvites', 'boolean', 'Occupants may invite others', bool(c.allowInvites)),
    field('muc#roomconfig_allowpm', 'list-single', 'Who may send private messages', [c.allowPm], [
      ['anyone', 'Anyone'],
      ['participants', 'Participants and moderators'],
      ['moderators', 'Moderators only'],
      ['none', 'Nobody'],
    ]),
    field('muc#maxhistoryfetch', 'text-single', `Messages kept for occupants who join later (at most ${limits.maxHistory}, in memory only)`, [String(c.historyLength)]),
    field('muc#roomconfig_getmemberlist', 'list-multi', 'Roles that may see the member list', c.getMemberList, ROLE_OPTIONS),
    field('muc#roomconfig_presencebroadcast', 'list-multi', 'Roles whose presence the other occupants see', c.presenceBroadcast, ROLE_OPTIONS),
    field('muc#roomconfig_roomadmins', 'jid-multi', 'Administrators', admins),
    field('muc#roomconfig_roomowners', 'jid-multi', 'Owners', owners),
  );
}

export interface SubmittedConfig {
  config: RoomConfig;
  /** Present when the form had the field: the new full lists. */
  admins?: string[];
  owners?: string[];
}

function isTrue(v: string | undefined): boolean {
  return v === '1' || v === 'true';
}

/**
 * Applies a submitted form to `current`; throws an Error whose message is the bad-request text
 * for a value out of range. Fields the form leaves out keep their value (an empty form is the
 * instant room of 10.1.2).
 */
export function applyConfigForm(form: Element, current: RoomConfig, limits: ConfigLimits): SubmittedConfig {
  const c: RoomConfig = { ...current, getMemberList: [...current.getMemberList], presenceBroadcast: [...current.presenceBroadcast] };
  const out: SubmittedConfig = { config: c };
  let passwordFlag: boolean | undefined;
  for (const f of form.getChildren('field')) {
    const values = f.getChildren('value').map((v) => v.text());
    const one = values[0] ?? '';
    switch (f.attrs.var) {
      case 'muc#roomconfig_roomname':
        c.name = one.slice(0, 200);
        break;
      case 'muc#roomconfig_roomdesc':
        c.description = one.slice(0, 1000);
        break;
      case 'muc#roomconfig_lang':
        c.language = one.slice(0, 35);
        break;
      case 'muc#roomconfig_persistentroom':
        c.persistent = isTrue(one);
        break;
      case 'muc#roomconfig_publicroom':
        c.public = isTrue(one);
        break;
      case 'muc#roomconfig_membersonly':
        c.membersOnly = isTrue(one);
        break;
      case 'muc#roomconfig_passwordprotectedroom':
        passwordFlag = isTrue(one);
        break;
      case 'muc#roomconfig_roomsecret':
        c.password = one.slice(0, 200);
        break;
      case 'muc#roomconfig_moderatedroom':
        c.moderated = isTrue(one);
        break;
      case 'muc#roomconfig_whois':
        if (one !== 'moderators' && one !== 'anyone') throw new Error('muc#roomconfig_whois must be moderators or anyone');
        c.whois = one;
        break;
      case 'muc#roomconfig_maxusers': {
        const n = one === '' || one === 'none' ? limits.maxOccupants : Number(one);
        if (!Number.isInteger(n) || n < 1) throw new Error('muc#roomconfig_maxusers must be a positive number');
        c.maxUsers = Math.min(n, limits.maxOccupants);
        break;
      }
      case 'muc#roomconfig_changesubject':
        c.changeSubject = isTrue(one);
        break;
      case 'muc#roomconfig_allowinvites':
        c.allowInvites = isTrue(one);
        break;
      case 'muc#roomconfig_allowpm':
        if (!['anyone', 'participants', 'moderators', 'none'].includes(one)) throw new Error('muc#roomconfig_allowpm must be anyone, participants, moderators or none');
        c.allowPm = one as AllowPm;
        break;
      case 'muc#maxhistoryfetch':
      case 'muc#roomconfig_historylength': {
        const n = one === '' ? limits.defaultHistory : Number(one);
        if (!Number.isInteger(n) || n < 0) throw new Error(`${f.attrs.var} must be a number of messages`);
        c.historyLength = Math.min(n, limits.maxHistory);
        break;
      }
      case 'muc#roomconfig_getmemberlist':
        c.getMemberList = values.filter(isListedRole);
        break;
      case 'muc#roomconfig_presencebroadcast':
        c.presenceBroadcast = [...new Set(values.filter(isListedRole))];
        break;
      case 'muc#roomconfig_roomadmins':
        out.admins = values.filter((v) => v !== '');
        break;
      case 'muc#roomconfig_roomowners':
        out.owners = values.filter((v) => v !== '');
        break;
      default:
        break;
    }
  }
  if (passwordFlag === false) c.password = '';
  else if (passwordFlag === true && c.password === '') throw new Error('a password-protected room needs muc#roomconfig_roomsecret');
  return out;
}

/**
 * The status codes occupants get for a configuration change (XEP-0045 10.2.1, 15.6): 172/173 when
 * who sees real JIDs changed, 104 when anything else did, none when nothing changed. The room
 * keeps no logs (170/171 never apply) and never shows unavailable members (102/103 never apply).
 */
export function configChangeCodes(before: RoomConfig, after: RoomConfig): number[] {
  const out: number[] = [];
  const { whois: w1, ...rest1 } = before;
  const { whois: w2, ...rest2 } = after;
  if (JSON.stringify(rest1) !== JSON.stringify(rest2)) out.push(104);
  if (w1 !== w2) out.push(w2 === 'anyone' ? 172 : 173);
  return out;
}

/** The extended information of a room's disco#info (15.5.4). */
export function roomInfoForm(c: RoomConfig, occupants: number, subject: string, avatarHash: string | null): Element {
  const f = (v: string, label: string, value: string, type?: string) => x('field', { var: v, label, type }, x('value', {}, value));
  return x(
    'x',
    { xmlns: NS.dataForms, type: 'result' },
    x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NS_MUC_ROOMINFO)),
    f('muc#roomconfig_roomname', 'Name', c.name),
    f('muc#roominfo_description', 'Description', c.description),
    c.language ? f('muc#roominfo_lang', 'Language', c.language) : null,
    f('muc#roominfo_occupants', 'Number of occupants', String(occupants)),
    f('muc#roominfo_subject', 'Subject', subject),
    f('muc#roominfo_subjectmod', 'Occupants may change the subject', c.changeSubject ? '1' : '0', 'boolean'),
    f('muc#maxhistoryfetch', 'Messages kept for occupants who join later', String(c.historyLength)),
    f('muc#roomconfig_changesubject', 'Occupants may change the subject', c.changeSubject ? '1' : '0', 'boolean'),
    f('muc#roomconfig_allowinvites', 'Occupants may invite others', c.allowInvites ? '1' : '0', 'boolean'),
    f('muc#roomconfig_allowpm', 'Who may send private messages', c.allowPm, 'list-single'),
    avatarHash ? x('field', { var: 'muc#roominfo_avatarhash', type: 'text-multi' }, x('value', {}, avatarHash)) : null,
  );
}
