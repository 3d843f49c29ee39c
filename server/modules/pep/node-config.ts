/**
 * PEP node configuration (XEP-0060 16.4.4, FORM_TYPE http://jabber.org/protocol/pubsub#node_config):
 * the options Gatehouse supports, their defaults for PEP (XEP-0163: presence access, the last item
 * sent on presence, one persisted item), the owner's configuration form, and publish-options
 * (XEP-0060 7.1.5, XEP-0223) compared with a node's configuration.
 */
import { x, type Element } from '../../../shared/xml/element.js';
import { NS } from '../../../shared/ns.js';

export const PUBSUB = 'http://jabber.org/protocol/pubsub';
export const PUBSUB_OWNER = `${PUBSUB}#owner`;
export const NODE_CONFIG_FORM = `${PUBSUB}#node_config`;
export const PUBLISH_OPTIONS_FORM = `${PUBSUB}#publish-options`;

export const ACCESS_MODELS = ['open', 'presence', 'roster', 'whitelist'] as const;
export type AccessModel = (typeof ACCESS_MODELS)[number];
const SEND_LAST = ['never', 'on_sub', 'on_sub_and_presence'] as const;
type SendLast = (typeof SEND_LAST)[number];

export interface NodeConfig {
  access: AccessModel;
  /** pubsub#roster_groups_allowed (access model roster). */
  groups: string[];
  persist: boolean;
  /** pubsub#max_items: a number, or 'max' (the server's limit, pep.maxItemsPerNode). */
  maxItems: number | 'max';
  sendLast: SendLast;
  notifyRetract: boolean;
  notifyDelete: boolean;
  deliverPayloads: boolean;
  deliverNotifications: boolean;
  title: string;
  /** pubsub#type: the payload namespace (informational). */
  type: string;
}

export function defaultConfig(): NodeConfig {
  return {
    access: 'presence',
    groups: [],
    persist: true,
    maxItems: 1,
    sendLast: 'on_sub_and_presence',
    notifyRetract: true,
    notifyDelete: true,
    deliverPayloads: true,
    deliverNotifications: true,
    title: '',
    type: '',
  };
}

/** The number of items a node keeps under the server's limit. */
export function itemLimit(config: NodeConfig, serverMax: number): number {
  return config.maxItems === 'max' ? serverMax : Math.min(config.maxItems, serverMax);
}

/** A stored configuration (JSON); unknown or damaged fields fall back to the defaults. */
export function parseStoredConfig(json: string): NodeConfig {
  const config = defaultConfig();
  let raw: Record<string, unknown>;
  try {
    raw = JSON.parse(json) as Record<string, unknown>;
  } catch {
    return config;
  }
  if (!raw || typeof raw !== 'object') return config;
  if (ACCESS_MODELS.includes(raw.access as AccessModel)) config.access = raw.access as AccessModel;
  if (Array.isArray(raw.groups)) config.groups = raw.groups.filter((g): g is string => typeof g === 'string');
  if (typeof raw.persist === 'boolean') config.persist = raw.persist;
  if (raw.maxItems === 'max' || (typeof raw.maxItems === 'number' && Number.isSafeInteger(raw.maxItems) && raw.maxItems >= 0)) config.maxItems = raw.maxItems;
  if (SEND_LAST.includes(raw.sendLast as SendLast)) config.sendLast = raw.sendLast as SendLast;
  for (const k of ['notifyRetract', 'notifyDelete', 'deliverPayloads', 'deliverNotifications'] as const) if (typeof raw[k] === 'boolean') config[k] = raw[k];
  if (typeof raw.title === 'string') config.title = raw.title;
  if (typeof raw.type === 'string') config.type = raw.type;
  return config;
}

export function storedConfig(config: NodeConfig): string {
  return JSON.stringify(config);
}

const bool = (b: boolean) => (b ? '1' : '0');

/** The field values of a configuration, as the form shows them. */
function fieldValues(config: NodeConfig): Map<string, string[]> {
  return new Map<string, string[]>([
    ['pubsub#access_model', [config.access]],
    ['pubsub#roster_groups_allowed', config.groups],
    ['pubsub#persist_items', [bool(config.persist)]],
    ['pubsub#max_items', [String(config.maxItems)]],
    ['pubsub#send_last_published_item', [config.sendLast]],
    ['pubsub#notify_retract', [bool(config.notifyRetract)]],
    ['pubsub#notify_delete', [bool(config.notifyDelete)]],
    ['pubsub#deliver_payloads', [bool(config.deliverPayloads)]],
    ['pubsub#deliver_notifications', [bool(config.deliverNotifications)]],
    ['pubsub#title', [config.title]],
    ['pubsub#type', [config.type]],
  ]);
}

const FIELD_TYPES: Record<string, string> = {
  'pubsub#access_model': 'list-single',
  'pubsub#roster_groups_allowed': 'list-multi',
  'pubsub#persist_items': 'boolean',
  'pubsub#max_items': 'text-single',
  'pubsub#send_last_published_item': 'list-single',
  'pubsub#notify_retract': 'boolean',
  'pubsub#notify_delete': 'boolean',
  'pubsub#deliver_payloads': 'boolean',
  'pubsub#deliver_notifications': 'boolean',
  'pubsub#title': 'text-single',
  'pubsub#type': 'text-single',
};

const LABELS: Record<string, string> = {
  'pubsub#access_model': 'Who may retrieve items and get notifications',
  'pubsub#roster_groups_allowed': 'Roster groups allowed (access model roster)',
  'pubsub#persist_items': 'Keep published items',
  'pubsub#max_items': 'Most items kept (a number or max)',
  'pubsub#send_last_published_item': 'When to send the last published item',
  'pubsub#notify_retract': 'Notify when an item is retracted',
  'pubsub#notify_delete': 'Notify when the node is deleted',
  'pubsub#deliver_payloads': 'Deliver payloads with notifications',
  'pubsub#deliver_notifications': 'Deliver notifications',
  'pubsub#title': 'A name for the node',
  'pubsub#type': 'The payload type',
};

const OPTIONS: Record<string, readonly string[]> = {
  'pubsub#access_model': ACCESS_MODELS,
  'pubsub#send_last_published_item': SEND_LAST,
};

/**
 * The configuration as a data form: type 'form' for the owner to fill in (with field types,
 * labels and options), type 'submit' for the XEP-0227 export.
 */
export function configForm(config: NodeConfig, type: 'form' | 'submit', rosterGroups: readonly string[] = []): Element {
  const form = x('x', { xmlns: NS.dataForms, type }, x('field', { var: 'FORM_TYPE', type: 'hidden' }, x('value', {}, NODE_CONFIG_FORM)));
  for (const [name, values] of fieldValues(config)) {
    const field = x('field', type === 'form' ? { var: name, type: FIELD_TYPES[name], label: LABELS[name] } : { var: name });
    const options = name === 'pubsub#roster_groups_allowed' ? [...new Set([...rosterGroups, ...config.groups])] : OPTIONS[name];
    if (type === 'form' && options) for (const o of options) field.append(x('option', {}, x('value', {}, o)));
    for (const v of values) field.append(x('value', {}, v));
    form.append(field);
  }
  return form;
}

/** The values of a submitted data form, by field name (FORM_TYPE kept apart). */
export function formValues(form: Element): { formType: string | undefined; fields: Map<string, string[]> } {
  const fields = new Map<string, string[]>();
  let formType: string | undefined;
  for (const f of form.getChildren('field')) {
    const name = f.attrs.var;
    if (!name) continue;
    const values = f.getChildren('value').map((v) => v.text());
    if (name === 'FORM_TYPE') formType = values[0];
    else fields.set(name, values);
  }
  return { formType, fields };
}

function parseBool(v: string | undefined): boolean | null {
  if (v === '1' || v === 'true') return true;
  if (v === '0' || v === 'false') return false;
  return null;
}

export type Parsed = { ok: true; config: NodeConfig } | { ok: false; text: string };

/**
 * Applies submitted field values to a configuration. Fields Gatehouse does not know are left out
 * (`unknown` lists them); a known field with a value it cannot take is an error naming it.
 */
export function applyFields(base: NodeConfig, fields: Map<string, string[]>, serverMax: number, unknown: string[] = []): Parsed {
  const config: NodeConfig = { ...base, groups: [...base.groups] };
  for (const [name, values] of fields) {
    // An empty field in a submitted form sets nothing (but an empty list of groups is a value).
    if (values.length === 0 && name !== 'pubsub#roster_groups_allowed') continue;
    const v = values[0];
    const bad = (): Parsed => ({ ok: false, text: `${name}: unsupported value` });
    switch (name) {
      case 'pubsub#access_model':
        if (!ACCESS_MODELS.includes(v as AccessModel)) return bad();
        config.access = v as AccessModel;
        break;
      case 'pubsub#roster_groups_allowed':
        config.groups = [...new Set(values)];
        break;
      case 'pubsub#persist_items':
      case 'pubsub#notify_retract':
      case 'pubsub#notify_delete':
      case 'pubsub#deliver_payloads':
      case 'pubsub#deliver_notifications': {
        const b = parseBool(v);
        if (b === null) return bad();
        const key = ({ 'pubsub#persist_items': 'persist', 'pubsub#notify_retract': 'notifyRetract', 'pubsub#notify_delete': 'notifyDelete', 'pubsub#deliver_payloads': 'deliverPayloads', 'pubsub#deliver_notifications': 'deliverNotifications' } as const)[name];
        config[key] = b;
        break;
      }
      case 'pubsub#max_items': {
        if (v === 'max') config.maxItems = 'max';
        else if (v !== undefined && /^\d{1,9}$/.test(v)) {
          const n = Number(v);
          if (n > serverMax) return { ok: false, text: `pubsub#max_items: at most ${serverMax} (or max)` };
          config.maxItems = n;
        } else return bad();
        break;
      }
      case 'pubsub#send_last_published_item':
        if (!SEND_LAST.includes(v as SendLast)) return bad();
        config.sendLast = v as SendLast;
        break;
      case 'pubsub#title':
        config.title = (v ?? '').slice(0, 255);
        break;
      case 'pubsub#type':
        config.type = (v ?? '').slice(0, 255);
        break;
      default:
        unknown.push(name);
    }
  }
  return { ok: true, config };
}

/** Whether two configurations agree on a field (max_items 'max' is the server's limit). */
function sameField(name: string, a: NodeConfig, b: NodeConfig, serverMax: number): boolean {
  switch (name) {
    case 'pubsub#access_model':
      return a.access === b.access;
    case 'pubsub#roster_groups_allowed':
      return a.groups.length === b.groups.length && a.groups.every((g) => b.groups.includes(g));
    case 'pubsub#persist_items':
      return a.persist === b.persist;
    case 'pubsub#max_items':
      return itemLimit(a, serverMax) === itemLimit(b, serverMax);
    case 'pubsub#send_last_published_item':
      return a.sendLast === b.sendLast;
    case 'pubsub#notify_retract':
      return a.notifyRetract === b.notifyRetract;
    case 'pubsub#notify_delete':
      return a.notifyDelete === b.notifyDelete;
    case 'pubsub#deliver_payloads':
      return a.deliverPayloads === b.deliverPayloads;
    case 'pubsub#deliver_notifications':
      return a.deliverNotifications === b.deliverNotifications;
    case 'pubsub#title':
      return a.title === b.title;
    case 'pubsub#type':
      return a.type === b.type;
    default:
      return false;
  }
}

export type Preconditions = { ok: true; config: NodeConfig } | { ok: false; kind: 'invalid' | 'unmet'; text: string };

/**
 * Publish-options (XEP-0060 7.1.5): the configuration a new node gets from them, or whether an
 * existing node's configuration meets each of them. An option Gatehouse does not support cannot be
 * met, so it is refused (precondition-not-met) rather than ignored.
 */
export function checkPreconditions(existing: NodeConfig | null, fields: Map<string, string[]>, serverMax: number): Preconditions {
  const unknown: string[] = [];
  const wanted = applyFields(existing ?? defaultConfig(), fields, serverMax, unknown);
  if (unknown.length > 0) return { ok: false, kind: 'unmet', text: `unsupported publish option ${unknown[0]!.slice(0, 64)}` };
  if (!wanted.ok) return { ok: false, kind: existing ? 'unmet' : 'invalid', text: wanted.text };
  if (!existing) return { ok: true, config: wanted.config };
  for (const name of fields.keys()) {
    if (!sameField(name, existing, wanted.config, serverMax)) return { ok: false, kind: 'unmet', text: `the node's ${name} differs` };
  }
  return { ok: true, config: existing };
}
