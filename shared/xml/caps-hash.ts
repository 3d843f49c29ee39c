/**
 * XEP-0115 (Entity Capabilities) 1.6.0: the verification string of a disco#info answer (section
 * 5.1, with XEP-0128 extended forms) and the checks a processing entity makes on an answer before
 * it trusts it (section 5.4). Used for the server's own caps (core/disco-registry.ts) and to verify
 * what clients advertise (modules/caps/).
 */
import { createHash } from 'node:crypto';
import type { Element } from './element.js';
import { NS } from '../ns.js';

export interface CapsIdentity {
  category: string;
  type: string;
  lang?: string;
  name?: string;
}

/** An extended service discovery form (XEP-0128): its FORM_TYPE and its other fields. */
export interface CapsForm {
  formType: string;
  fields: { var: string; values: string[] }[];
}

export interface CapsInfo {
  identities: CapsIdentity[];
  features: string[];
  forms: CapsForm[];
}

/**
 * Hash names as the 'hash' attribute carries them (the IANA "Hash Function Textual Names"
 * registry, which XEP-0115 section 5.1 refers to), mapped to Node's names. md2 and md5 are in the
 * registry too but are not accepted for verification: a broken hash proves nothing.
 */
const HASHES: Readonly<Record<string, { node: string; bytes: number }>> = {
  'sha-1': { node: 'sha1', bytes: 20 },
  'sha-224': { node: 'sha224', bytes: 28 },
  'sha-256': { node: 'sha256', bytes: 32 },
  'sha-384': { node: 'sha384', bytes: 48 },
  'sha-512': { node: 'sha512', bytes: 64 },
};

export function isSupportedCapsHash(name: string): boolean {
  return Object.hasOwn(HASHES, name);
}

/** Whether `ver` can be an output of the hash `name` at all (base64 of the right length). */
export function plausibleVer(name: string, ver: string): boolean {
  const h = HASHES[name];
  if (!h || !/^[A-Za-z0-9+/]+={0,2}$/.test(ver) || ver.length % 4 !== 0) return false;
  return Buffer.from(ver, 'base64').length === h.bytes;
}

/** i;octet ordering (RFC 4790): by the UTF-8 bytes, which differs from JS string order above U+D7FF. */
function octets(a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'));
}

function identityString(i: CapsIdentity): string {
  return `${i.category}/${i.type}/${i.lang ?? ''}/${i.name ?? ''}`;
}

/**
 * Section 5.1 says to sort identities "by category and then by type and then by xml:lang", which
 * is what 'fields' does (the name last, to make the order total). Several implementations sort
 * the joined "category/type/lang/name" strings instead; the two differ only when one value is a
 * prefix of another at the same place (types 'pc' and 'pc-x'), so verification accepts either.
 */
type IdentityOrder = 'fields' | 'string';

function sortIdentities(list: CapsIdentity[], order: IdentityOrder): CapsIdentity[] {
  const copy = [...list];
  if (order === 'string') return copy.sort((a, b) => octets(identityString(a), identityString(b)));
  return copy.sort(
    (a, b) => octets(a.category, b.category) || octets(a.type, b.type) || octets(a.lang ?? '', b.lang ?? '') || octets(a.name ?? '', b.name ?? ''),
  );
}

/** The string S of section 5.1, steps 1 to 7. */
export function verificationString(info: CapsInfo, order: IdentityOrder = 'fields'): string {
  let s = '';
  for (const i of sortIdentities(info.identities, order)) s += identityString(i) + '<';
  for (const f of [...info.features].sort(octets)) s += f + '<';
  for (const form of [...info.forms].sort((a, b) => octets(a.formType, b.formType))) {
    s += form.formType + '<';
    for (const field of [...form.fields].sort((a, b) => octets(a.var, b.var))) {
      s += field.var + '<';
      for (const v of [...field.values].sort(octets)) s += v + '<';
    }
  }
  return s;
}

/** The 'ver' for `info` with the hash `hashName` (section 5.1 step 8), or undefined for an unsupported hash. */
export function capsVer(info: CapsInfo, hashName: string, order: IdentityOrder = 'fields'): string | undefined {
  const h = HASHES[hashName];
  if (!h) return undefined;
  return createHash(h.node).update(verificationString(info, order), 'utf8').digest('base64');
}

/** How much of a disco#info answer is read before it is refused as too large. */
export interface CapsLimits {
  identities: number;
  features: number;
  forms: number;
  /** Fields per form, FORM_TYPE included. */
  fields: number;
  /** Values per field. */
  values: number;
  /** Characters of any one category, type, name, feature, field name or value. */
  stringLength: number;
}

export const DEFAULT_CAPS_LIMITS: CapsLimits = { identities: 32, features: 512, forms: 16, fields: 64, values: 64, stringLength: 1024 };

export type ReadResult = { ok: true; info: CapsInfo } | { ok: false; reason: string };

/**
 * Reads a disco#info <query/> as section 5.4 (steps 3.3 to 3.6) requires: an answer with the same
 * identity or feature twice, two forms of the same FORM_TYPE, or a FORM_TYPE with two different
 * values is ill-formed as a whole; a form without a hidden FORM_TYPE is left out. Also ill-formed
 * here: an identity without category or type, a feature without var, and any string holding '<',
 * the separator of the verification string (escaped in XML it can occur, and would let two
 * different answers give the same string). Over `limits` is refused rather than read in part.
 */
export function readDiscoInfo(query: Element, limits: CapsLimits = DEFAULT_CAPS_LIMITS): ReadResult {
  const fail = (reason: string): ReadResult => ({ ok: false, reason });
  const bad = (s: string) => s.length > limits.stringLength || s.includes('<');
  const identities: CapsIdentity[] = [];
  const features: string[] = [];
  const forms: CapsForm[] = [];
  const seenIdentities = new Set<string>();
  const seenFeatures = new Set<string>();
  const seenForms = new Set<string>();
  for (const el of query.elements) {
    if (el.name === 'identity' && el.xmlns === NS.discoInfo) {
      const { category, type, name } = el.attrs;
      const lang = el.attrs['xml:lang'];
      if (!category || !type) return fail('an identity without category or type');
      if ([category, type, name ?? '', lang ?? ''].some(bad)) return fail('an identity with an unusable value');
      const identity: CapsIdentity = { category, type, lang, name };
      const key = identityString(identity);
      if (seenIdentities.has(key)) return fail('the same identity twice');
      seenIdentities.add(key);
      if (identities.push(identity) > limits.identities) return fail('too many identities');
    } else if (el.name === 'feature' && el.xmlns === NS.discoInfo) {
      const v = el.attrs.var;
      if (!v || bad(v)) return fail('a feature without a usable var');
      if (seenFeatures.has(v)) return fail('the same feature twice');
      seenFeatures.add(v);
      if (features.push(v) > limits.features) return fail('too many features');
    } else if (el.name === 'x' && el.xmlns === NS.dataForms) {
      const form = readForm(el, limits);
      if (typeof form === 'string') return fail(form);
      if (form === null) continue;
      if (seenForms.has(form.formType)) return fail('two forms with the same FORM_TYPE');
      seenForms.add(form.formType);
      if (forms.push(form) > limits.forms) return fail('too many forms');
    }
  }
  return { ok: true, info: { identities, features, forms } };
}

/** A form, null when it is to be ignored (no hidden FORM_TYPE), or why the answer is ill-formed. */
function readForm(x: Element, limits: CapsLimits): CapsForm | null | string {
  const fieldEls = x.getChildren('field');
  if (fieldEls.length > limits.fields) return 'a form with too many fields';
  let formType: string | undefined;
  let hidden = false;
  const fields: CapsForm['fields'] = [];
  for (const f of fieldEls) {
    const values = f.getChildren('value').map((v) => v.text());
    if (values.length > limits.values) return 'a field with too many values';
    if (values.some((v) => v.length > limits.stringLength || v.includes('<'))) return 'a form value that cannot be hashed';
    const name = f.attrs.var;
    if (name === 'FORM_TYPE') {
      if (formType !== undefined) return 'a form with two FORM_TYPE fields';
      const distinct = new Set(values);
      if (distinct.size > 1) return 'a FORM_TYPE with more than one value';
      formType = values[0] ?? '';
      hidden = f.attrs.type === 'hidden';
      continue;
    }
    // A field without a name (a fixed label) has nothing to contribute to the string.
    if (name === undefined) continue;
    if (name.length > limits.stringLength || name.includes('<')) return 'a field name that cannot be hashed';
    fields.push({ var: name, values });
  }
  if (formType === undefined || !hidden) return null;
  return { formType, fields };
}

export type VerifyResult = { ok: true; info: CapsInfo } | { ok: false; reason: string };

/** Section 5.4 step 3: whether a disco#info answer is well-formed and hashes to `ver` with `hashName`. */
export function verifyCaps(query: Element, hashName: string, ver: string, limits: CapsLimits = DEFAULT_CAPS_LIMITS): VerifyResult {
  if (!isSupportedCapsHash(hashName)) return { ok: false, reason: 'unsupported hash' };
  const read = readDiscoInfo(query, limits);
  if (!read.ok) return read;
  if (capsVer(read.info, hashName, 'fields') === ver || capsVer(read.info, hashName, 'string') === ver) return read;
  return { ok: false, reason: 'the answer does not hash to the advertised ver' };
}
