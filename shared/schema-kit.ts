/**
 * A tiny declarative schema kit for configuration files (the server's and the transports'). Each
 * schema knows how to validate and normalise one raw YAML value, what it expects (for one-line
 * error messages naming the key path), its default (in input form, so defaults go through the same
 * parsing as user values) and its documentation text, so the same schema produces the docs.
 * The TypeScript type of a parsed value is derived from its schema (`Infer<typeof schema>`), so
 * nothing is declared twice. Generic: no XMPP knowledge here.
 */
import fs from 'node:fs';
import path from 'node:path';
import { formatDurationSetting as formatDuration, formatSizeSetting as formatSize } from './format.js';
export { formatDurationSetting as formatDuration, formatSizeSetting as formatSize } from './format.js';

/** A configuration problem. The message is a single line: `config error: <key path>: <problem>`. */
export class ConfigError extends Error {
  /** The key path of the offending value, e.g. `hosts[0].tls.cert`; '' for the document itself. */
  readonly keyPath: string;
  /** The problem without the key path. */
  readonly problem: string;

  constructor(keyPath: string, problem: string) {
    const oneLine = problem.replace(/\s*[\r\n]+\s*/g, ' ').trim();
    super(keyPath ? `config error: ${keyPath}: ${oneLine}` : `config error: ${oneLine}`);
    this.name = 'ConfigError';
    this.keyPath = keyPath;
    this.problem = oneLine;
  }
}

/** Throws a ConfigError for `keyPath`. */
export function fail(keyPath: string, problem: string): never {
  throw new ConfigError(keyPath, problem);
}

/** What parsing needs besides the value. */
export interface Ctx {
  /** Relative paths resolve against this directory. */
  baseDir: string;
  /** Placeholders usable at the start of path values, e.g. `dataDir` for `<dataDir>/backups`. */
  vars: Record<string, string>;
}

export type SchemaKind =
  | 'string'
  | 'int'
  | 'bool'
  | 'enum'
  | 'duration'
  | 'size'
  | 'path'
  | 'array'
  | 'object'
  | 'map'
  | 'oneOf'
  | 'nullable';

export interface Schema<T> {
  readonly kind: SchemaKind;
  /** Short type for the docs, e.g. `integer >= 1024`. */
  readonly type: string;
  /** What an error message says was expected, e.g. `an integer >= 1024`. */
  readonly expected: string;
  readonly doc: string;
  readonly hasDefault: boolean;
  /** The default in input form (parsed like a user value when the key is absent). */
  readonly defaultValue: unknown;
  /** How the docs show the default; derived from defaultValue unless given. */
  readonly defaultDoc: string | undefined;
  /** The key may be absent (the value is then left out). */
  readonly optional: boolean;
  /** Values are never shown in error messages. */
  readonly secret: boolean;
  readonly fields?: Readonly<Record<string, AnySchema>>;
  readonly item?: AnySchema;
  readonly branches?: readonly AnySchema[];
  /** Whether a raw value has the basic shape of this schema (used by oneOf to pick a branch). */
  accepts(value: unknown): boolean;
  parse(value: unknown, keyPath: string, ctx: Ctx): T;
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export type AnySchema = Schema<any>;
export type Infer<S> = S extends Schema<infer T> ? T : never;
export interface OptionalSchema<T> extends Schema<T | undefined> {
  readonly optional: true;
}

/** Options every builder takes. `In` is the input form of the default. */
export interface Common<In> {
  doc?: string;
  default?: In;
  /** Overrides how the docs show the default (e.g. `<dataDir>/gatehouse.sqlite`). */
  defaultDoc?: string;
  secret?: boolean;
}

// ---------------------------------------------------------------------------------------------
// Describing values in error messages

/** Hides the password of `scheme://user:password@host` and `password=` query parameters. */
export function redactUrl(s: string): string {
  return s
    .replace(/^([a-z][a-z0-9+.-]*:\/*[^/@:?#]*):[^@/?#]*@/i, '$1:***@')
    .replace(/([?&;](?:password|passwd|pwd|pass|secret|token)=)[^&;#]*/gi, '$1***');
}

function kindOf(v: unknown): string {
  if (v === null) return 'null';
  if (v === undefined) return 'nothing';
  if (Array.isArray(v)) return 'a list';
  switch (typeof v) {
    case 'string':
      return v === '' ? 'an empty string' : 'a string';
    case 'number':
      return 'a number';
    case 'boolean':
      return 'a boolean';
    case 'object':
      return 'a mapping';
    default:
      return `a ${typeof v}`;
  }
}

/** How an error message shows a raw value; secrets only by their kind. */
export function describe(v: unknown, secret = false, redact?: (s: string) => string): string {
  if (secret) return kindOf(v);
  if (typeof v === 'string') {
    let s = redactUrl(redact ? redact(v) : v);
    if (s.length > 80) s = `${s.slice(0, 77)}...`;
    return JSON.stringify(s);
  }
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  return kindOf(v);
}

function mismatch(keyPath: string, expected: string, v: unknown, secret = false): never {
  fail(keyPath, `expected ${expected}, got ${describe(v, secret)}`);
}

export function isPlainObject(v: unknown): v is Record<string, unknown> {
  if (v === null || typeof v !== 'object' || Array.isArray(v)) return false;
  const proto = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/** `a.b`, `a[0]`, `a["odd key"]`. */
export function joinKey(parent: string, key: string | number): string {
  if (typeof key === 'number') return `${parent}[${key}]`;
  if (/^[A-Za-z_$][\w$]*$/.test(key)) return parent ? `${parent}.${key}` : key;
  return `${parent}[${JSON.stringify(key)}]`;
}

function article(s: string): string {
  return /^[aeiou]/i.test(s) ? `an ${s}` : `a ${s}`;
}

// ---------------------------------------------------------------------------------------------
// Units

const DURATION_UNITS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
  w: 604_800_000,
};

/**
 * Parses a duration to milliseconds: `30s`, `5m`, `48h`, `14d`, `2w`, `1h30m`, `250ms`, or a plain
 * number of seconds. Returns undefined when the value is not a duration.
 */
export function parseDuration(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isFinite(v) && v >= 0 ? Math.round(v * 1000) : undefined;
  if (typeof v !== 'string') return undefined;
  const s = v.trim();
  if (/^\d+(\.\d+)?$/.test(s)) return Math.round(Number(s) * 1000);
  if (!/^(\d+(\.\d+)?\s*(ms|s|m|h|d|w)\s*)+$/.test(s)) return undefined;
  let total = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)\s*(ms|s|m|h|d|w)/g)) total += Number(m[1]) * DURATION_UNITS[m[2]];
  return Number.isFinite(total) ? Math.round(total) : undefined;
}

const SIZE_UNITS: Record<string, number> = {
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** Parses a size to bytes: `256KiB`, `1MiB`, `10kB`, `512B`, or a plain number of bytes. */
export function parseSize(v: unknown): number | undefined {
  if (typeof v === 'number') return Number.isSafeInteger(v) && v >= 0 ? v : undefined;
  if (typeof v !== 'string') return undefined;
  const m = /^(\d+(?:\.\d+)?)\s*([a-z]*)$/i.exec(v.trim());
  if (!m) return undefined;
  const unit = SIZE_UNITS[(m[2] || 'b').toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Number(m[1]) * unit;
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

// ---------------------------------------------------------------------------------------------
// Showing defaults in the docs

/** A compact YAML-flow rendering of an input-form value for the docs. */
export function flow(v: unknown): string {
  if (v === null || v === undefined) return 'null';
  if (Array.isArray(v)) return `[${v.map(flow).join(', ')}]`;
  if (isPlainObject(v)) {
    const entries = Object.entries(v);
    return entries.length ? `{ ${entries.map(([k, x]) => `${k}: ${flow(x)}`).join(', ')} }` : '{}';
  }
  if (typeof v === 'string') {
    return /^[A-Za-z0-9_./<>-][A-Za-z0-9_./<>@ -]*$/.test(v) && !/^(true|false|null|~|\d[\d.]*)$/i.test(v) && !v.endsWith(' ')
      ? v
      : JSON.stringify(v);
  }
  return String(v);
}

// ---------------------------------------------------------------------------------------------
// Builders

interface Spec<T> {
  kind: SchemaKind;
  type: string;
  expected?: string;
  accepts(v: unknown): boolean;
  parse(v: unknown, keyPath: string, ctx: Ctx): T;
  fields?: Record<string, AnySchema>;
  item?: AnySchema;
  branches?: AnySchema[];
  implicitDefault?: { value: unknown };
}

function make<T, In>(spec: Spec<T>, o: Common<In> = {}): Schema<T> {
  const hasExplicit = Object.prototype.hasOwnProperty.call(o, 'default');
  const hasDefault = hasExplicit || spec.implicitDefault !== undefined;
  const defaultValue = hasExplicit ? o.default : spec.implicitDefault?.value;
  return {
    kind: spec.kind,
    type: spec.type,
    expected: spec.expected ?? article(spec.type),
    doc: o.doc ?? '',
    hasDefault,
    defaultValue,
    defaultDoc: o.defaultDoc,
    optional: false,
    secret: o.secret ?? false,
    fields: spec.fields,
    item: spec.item,
    branches: spec.branches,
    accepts: spec.accepts,
    parse: spec.parse,
  };
}

const isString = (v: unknown): boolean => typeof v === 'string';

export interface StringOptions extends Common<string> {
  /** Allow ''. Default false. */
  allowEmpty?: boolean;
  /** Further validation/normalisation; call `fail(keyPath, …)` to reject. */
  check?: (s: string, keyPath: string) => string;
  /** Redacts the value for error messages (besides the built-in URL password redaction). */
  redact?: (s: string) => string;
  type?: string;
  expected?: string;
}

export function str(o: StringOptions = {}): Schema<string> {
  const type = o.type ?? (o.allowEmpty ? 'string' : 'non-empty string');
  const expected = o.expected ?? article(type);
  return make(
    {
      kind: 'string',
      type,
      expected,
      accepts: isString,
      parse(v, keyPath) {
        if (typeof v !== 'string' || (!o.allowEmpty && v === ''))
          fail(keyPath, `expected ${expected}, got ${describe(v, o.secret, o.redact)}`);
        return o.check ? o.check(v, keyPath) : v;
      },
    },
    o,
  );
}

export interface IntOptions extends Common<number> {
  min?: number;
  max?: number;
}

function rangeText(min: number | undefined, max: number | undefined, show: (n: number) => string): string {
  if (min !== undefined && max !== undefined) return ` between ${show(min)} and ${show(max)}`;
  if (min !== undefined) return ` >= ${show(min)}`;
  if (max !== undefined) return ` <= ${show(max)}`;
  return '';
}

export function int(o: IntOptions = {}): Schema<number> {
  const type = `integer${rangeText(o.min, o.max, String)}`;
  return make(
    {
      kind: 'int',
      type,
      accepts: (v) => typeof v === 'number',
      parse(v, keyPath) {
        if (
          typeof v !== 'number' ||
          !Number.isSafeInteger(v) ||
          (o.min !== undefined && v < o.min) ||
          (o.max !== undefined && v > o.max)
        )
          mismatch(keyPath, article(type), v, o.secret);
        return v;
      },
    },
    o,
  );
}

export function bool(o: Common<boolean> = {}): Schema<boolean> {
  return make(
    {
      kind: 'bool',
      type: 'boolean',
      expected: 'true or false',
      accepts: (v) => typeof v === 'boolean',
      parse(v, keyPath) {
        if (typeof v !== 'boolean') mismatch(keyPath, 'true or false', v);
        return v;
      },
    },
    o,
  );
}

export function enumOf<const V extends readonly string[]>(values: V, o: Common<V[number]> = {}): Schema<V[number]> {
  const list = values.map((x) => JSON.stringify(x));
  const expected = list.length === 1 ? list[0] : `one of ${list.slice(0, -1).join(', ')} or ${list[list.length - 1]}`;
  return make(
    {
      kind: 'enum',
      type: expected,
      expected,
      accepts: isString,
      parse(v, keyPath) {
        if (typeof v !== 'string' || !values.includes(v)) mismatch(keyPath, expected, v);
        return v as V[number];
      },
    },
    o,
  );
}

export interface DurationOptions extends Common<string | number> {
  /** Minimum in milliseconds. */
  min?: number;
  /** Maximum in milliseconds. */
  max?: number;
}

function durationSchema(o: DurationOptions, unlimited: boolean): Schema<number | null> {
  const range = rangeText(o.min, o.max, formatDuration);
  const type = `duration${range}${unlimited ? ' or "unlimited"' : ''}`;
  const expected = `a duration${range} (such as 30s, 5m, 48h, 14d or a number of seconds)${unlimited ? ' or "unlimited"' : ''}`;
  return make(
    {
      kind: 'duration',
      type,
      expected,
      accepts: (v) => typeof v === 'string' || typeof v === 'number',
      parse(v, keyPath) {
        if (unlimited && v === 'unlimited') return null;
        const ms = parseDuration(v);
        if (ms === undefined || (o.min !== undefined && ms < o.min) || (o.max !== undefined && ms > o.max))
          mismatch(keyPath, expected, v);
        return ms;
      },
    },
    o,
  );
}

/** A duration, stored in milliseconds. */
export function duration(o: DurationOptions = {}): Schema<number> {
  return durationSchema(o, false) as Schema<number>;
}

/** A duration in milliseconds, or null for `unlimited`. */
export function durationOrUnlimited(o: DurationOptions = {}): Schema<number | null> {
  return durationSchema(o, true);
}

export interface SizeOptions extends Common<string | number> {
  min?: number;
  max?: number;
}

/** A size, stored in bytes. */
export function size(o: SizeOptions = {}): Schema<number> {
  const range = rangeText(o.min, o.max, formatSize);
  const type = `size${range}`;
  const expected = `a size${range} (a number of bytes, or such as 10KiB or 1MiB)`;
  return make(
    {
      kind: 'size',
      type,
      expected,
      accepts: (v) => typeof v === 'string' || typeof v === 'number',
      parse(v, keyPath) {
        const bytes = parseSize(v);
        if (bytes === undefined || (o.min !== undefined && bytes < o.min) || (o.max !== undefined && bytes > o.max))
          mismatch(keyPath, expected, v);
        return bytes;
      },
    },
    o,
  );
}

export interface PathOptions extends Common<string> {
  /** The file must exist (and be a regular file). */
  mustExist?: boolean;
  /** Values kept verbatim instead of being resolved, e.g. `:memory:`. */
  verbatim?: readonly string[];
}

/**
 * A file system path, resolved to an absolute path against ctx.baseDir. A leading `<name>/`
 * (e.g. `<dataDir>/backups`) is replaced by ctx.vars[name].
 */
export function filePath(o: PathOptions = {}): Schema<string> {
  return make(
    {
      kind: 'path',
      type: o.mustExist ? 'path to an existing file' : 'path',
      expected: 'a non-empty path',
      accepts: isString,
      parse(v, keyPath, ctx) {
        if (typeof v !== 'string' || v.trim() === '') mismatch(keyPath, 'a non-empty path', v);
        if (o.verbatim?.includes(v)) return v;
        let p = v;
        const m = /^<(\w+)>(?=[/\\]|$)/.exec(p);
        if (m) {
          const base = ctx.vars[m[1]];
          if (base === undefined) fail(keyPath, `unknown placeholder <${m[1]}> in path ${describe(v)}`);
          p = base + p.slice(m[0].length);
        }
        const resolved = path.resolve(ctx.baseDir, p);
        if (o.mustExist) {
          let st: fs.Stats;
          try {
            st = fs.statSync(resolved);
          } catch {
            fail(keyPath, `file not found: ${resolved}`);
          }
          if (!st.isFile()) fail(keyPath, `not a regular file: ${resolved}`);
        }
        return resolved;
      },
    },
    o,
  );
}

export interface ArrayOptions<T> extends Common<unknown[]> {
  minItems?: number;
  /** Items must be unique by this key (after parsing); the error names the later item. */
  uniqueBy?: (item: T) => string;
  /** What a duplicate is called in the error message, e.g. `host`. */
  uniqueWhat?: string;
  /** The key inside an item that uniqueBy reads, for the error's key path (e.g. `domain`). */
  uniqueKey?: string;
  /** The docs type, e.g. `list of domain names` (default: `list of <item type>`). */
  type?: string;
  /** Further checks on the parsed list. */
  check?: (items: T[], keyPath: string, ctx: Ctx) => void;
}

export function array<S extends AnySchema>(item: S, o: ArrayOptions<Infer<S>> = {}): Schema<Infer<S>[]> {
  const type =
    o.type ?? (item.kind === 'object' ? 'list of mappings' : item.kind === 'enum' ? `list, each ${item.type}` : `list of ${item.type}`);
  const expected = o.minItems ? `a list with at least ${o.minItems} item${o.minItems === 1 ? '' : 's'}` : 'a list';
  return make(
    {
      kind: 'array',
      type,
      expected,
      item,
      accepts: Array.isArray,
      parse(v, keyPath, ctx) {
        if (!Array.isArray(v)) mismatch(keyPath, expected, v, item.secret);
        if (o.minItems !== undefined && v.length < o.minItems) mismatch(keyPath, expected, v);
        const out = v.map((x, i) => item.parse(x, joinKey(keyPath, i), ctx) as Infer<S>);
        if (o.uniqueBy) {
          const seen = new Map<string, number>();
          out.forEach((x, i) => {
            const k = o.uniqueBy!(x);
            const prev = seen.get(k);
            const at = o.uniqueKey ? joinKey(joinKey(keyPath, i), o.uniqueKey) : joinKey(keyPath, i);
            if (prev !== undefined)
              fail(at, `duplicate ${o.uniqueWhat ?? 'item'} ${JSON.stringify(k)} (already ${joinKey(keyPath, prev)})`);
            seen.set(k, i);
          });
        }
        o.check?.(out, keyPath, ctx);
        return out;
      },
    },
    o,
  );
}

type OptionalKeys<F> = { [K in keyof F]: F[K] extends { readonly optional: true } ? K : never }[keyof F];
type Simplify<T> = { [K in keyof T]: T[K] } & {};
export type ObjectOut<F extends Record<string, AnySchema>> = Simplify<
  { [K in Exclude<keyof F, OptionalKeys<F>>]: Infer<F[K]> } & { [K in OptionalKeys<F>]?: Exclude<Infer<F[K]>, undefined> }
>;

/** An object schema keeps the types of its fields, so `schema.fields.key` is that key's schema. */
export interface ObjectSchema<F extends Record<string, AnySchema>> extends Schema<ObjectOut<F>> {
  readonly kind: 'object';
  readonly fields: Readonly<F>;
}

export interface ObjectOptions<T> extends Common<Record<string, unknown>> {
  /** Cross-field checks; may return a normalised value. */
  check?: (value: T, keyPath: string, ctx: Ctx) => T | void;
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = d[0];
    d[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const tmp = d[j];
      d[j] = Math.min(d[j] + 1, d[j - 1] + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = tmp;
    }
  }
  return d[b.length];
}

function suggestion(key: string, known: string[]): string {
  let best: string | undefined;
  let bestDist = Infinity;
  for (const k of known) {
    const dist = k.toLowerCase() === key.toLowerCase() ? 0 : levenshtein(key.toLowerCase(), k.toLowerCase());
    if (dist < bestDist) {
      best = k;
      bestDist = dist;
    }
  }
  return best !== undefined && bestDist <= Math.max(1, Math.floor(key.length / 3)) ? ` (did you mean "${best}"?)` : '';
}

/**
 * A mapping with known keys. Unknown keys are errors. Absent keys take their default; an object
 * whose fields all have defaults (or are optional) defaults to `{}`, i.e. to all its defaults.
 */
export function object<F extends Record<string, AnySchema>>(fields: F, o: ObjectOptions<ObjectOut<F>> = {}): ObjectSchema<F> {
  const keys = Object.keys(fields);
  const allDefaulted = keys.every((k) => fields[k].hasDefault || fields[k].optional);
  const schema = make(
    {
      kind: 'object',
      type: 'mapping',
      fields,
      implicitDefault: allDefaulted ? { value: {} } : undefined,
      accepts: isPlainObject,
      parse(v, keyPath, ctx) {
        if (!isPlainObject(v)) mismatch(keyPath, 'a mapping', v);
        for (const k of Object.keys(v)) {
          if (!Object.prototype.hasOwnProperty.call(fields, k)) fail(joinKey(keyPath, k), `unknown key${suggestion(k, keys)}`);
        }
        const out: Record<string, unknown> = {};
        for (const k of keys) {
          const f = fields[k];
          const kp = joinKey(keyPath, k);
          const raw = v[k];
          if (raw !== undefined) out[k] = f.parse(raw, kp, ctx);
          else if (f.hasDefault) out[k] = f.parse(f.defaultValue, kp, ctx);
          else if (!f.optional) fail(kp, `missing; expected ${f.expected}`);
        }
        const value = out as ObjectOut<F>;
        return (o.check?.(value, keyPath, ctx) ?? value) as ObjectOut<F>;
      },
    },
    o,
  );
  return { ...schema, kind: 'object', fields };
}

export interface MapOptions extends Common<Record<string, unknown>> {
  /** Validates and normalises a key; call `fail(keyPath, …)` to reject. */
  key: (k: string, keyPath: string) => string;
  /** What keys are, for the docs, e.g. `domain`. */
  keyName: string;
}

/** A mapping from free-form (validated) keys to values. */
export function map<S extends AnySchema>(value: S, o: MapOptions): Schema<Record<string, Infer<S>>> {
  return make(
    {
      kind: 'map',
      type: `mapping of ${o.keyName} to ${value.type}`,
      expected: 'a mapping',
      item: value,
      accepts: isPlainObject,
      parse(v, keyPath, ctx) {
        if (!isPlainObject(v)) mismatch(keyPath, 'a mapping', v);
        const entries: [string, Infer<S>][] = [];
        const seen = new Map<string, string>();
        for (const [rawKey, x] of Object.entries(v)) {
          const kp = joinKey(keyPath, rawKey);
          const k = o.key(rawKey, kp);
          const prev = seen.get(k);
          if (prev !== undefined) fail(kp, `duplicate ${o.keyName} ${JSON.stringify(k)} (already ${prev})`);
          seen.set(k, kp);
          entries.push([k, value.parse(x, kp, ctx) as Infer<S>]);
        }
        // fromEntries defines own properties, so a key like "__proto__" is harmless.
        return Object.fromEntries(entries) as Record<string, Infer<S>>;
      },
    },
    o,
  );
}

/** A mapping not checked inside (e.g. settings handed on to a plug-in that checks them itself). */
export function anyMapping(o: Common<Record<string, unknown>> & { type?: string } = {}): Schema<Record<string, unknown>> {
  return make(
    {
      kind: 'map',
      type: o.type ?? 'mapping',
      expected: 'a mapping',
      accepts: isPlainObject,
      parse: (v, keyPath) => (isPlainObject(v) ? v : mismatch(keyPath, 'a mapping', v)),
    },
    o,
  );
}

/**
 * One of several schemas, chosen by the basic shape of the value (the first branch that
 * accepts it), so errors come from the branch the user evidently meant.
 */
export function oneOf<B extends AnySchema[]>(branches: [...B], o: Common<unknown> & { type?: string } = {}): Schema<Infer<B[number]>> {
  const type = o.type ?? branches.map((b) => b.type).join(', or ');
  const expected = o.type ?? branches.map((b) => b.expected).join(' or ');
  return make(
    {
      kind: 'oneOf',
      type,
      expected,
      branches,
      accepts: (v) => branches.some((b) => b.accepts(v)),
      parse(v, keyPath, ctx) {
        const branch = branches.find((b) => b.accepts(v));
        if (!branch) mismatch(keyPath, expected, v);
        return branch.parse(v, keyPath, ctx) as Infer<B[number]>;
      },
    },
    o,
  );
}

/** `inner` or null. */
export function nullable<T>(inner: Schema<T>, o: Common<unknown> = {}): Schema<T | null> {
  return make(
    {
      kind: 'nullable',
      type: `${inner.type} or null`,
      expected: `${inner.expected} or null`,
      item: inner,
      accepts: (v) => v === null || inner.accepts(v),
      parse: (v, keyPath, ctx) => (v === null ? null : inner.parse(v, keyPath, ctx)),
    },
    { secret: inner.secret, ...o },
  );
}

/** The key may be absent; the parsed object then lacks it. */
export function optional<T>(inner: Schema<T>, o: { doc?: string } = {}): OptionalSchema<T> {
  return { ...inner, doc: o.doc ?? inner.doc, hasDefault: false, defaultValue: undefined, optional: true };
}

/** Transforms the parsed value (e.g. into a discriminated union), keeping docs and defaults. */
export function refine<T, U>(inner: Schema<T>, fn: (value: T, keyPath: string, ctx: Ctx) => U): Schema<U> {
  return { ...inner, parse: (v, keyPath, ctx) => fn(inner.parse(v, keyPath, ctx), keyPath, ctx) };
}

/**
 * A named part of a larger object schema, declared next to the code that uses it (e.g. a server
 * module's `offline` section) and assembled into the whole with fieldOf().
 */
export interface Section<K extends string, S extends AnySchema> {
  readonly key: K;
  readonly schema: S;
}

export function section<const K extends string, S extends AnySchema>(key: K, schema: S): Section<K, S> {
  return { key, schema };
}

/** `{ [key]: schema }`, spread among the fields given to object() where the section belongs. */
export function fieldOf<K extends string, S extends AnySchema>(s: Section<K, S>): { [P in K]: S } {
  return { [s.key]: s.schema } as { [P in K]: S };
}

/**
 * The parsed default of a schema (for an object whose fields all have defaults: all of them), for
 * code that needs the defaults without a configuration file. Relative paths resolve against ctx.
 */
export function defaultsOf<S extends AnySchema>(schema: S, ctx: Ctx = { baseDir: process.cwd(), vars: {} }): Infer<S> {
  if (!schema.hasDefault) throw new Error(`the schema has no default (${schema.type})`);
  return schema.parse(schema.defaultValue, '', ctx) as Infer<S>;
}

// ---------------------------------------------------------------------------------------------
// Docs

export interface DocRow {
  key: string;
  type: string;
  /** '' when the key is required, `(not set)` for an optional key without default. */
  default: string;
  required: boolean;
  doc: string;
  schema: AnySchema;
}

function defaultText(s: AnySchema): string {
  if (s.defaultDoc !== undefined) return s.defaultDoc;
  if (s.optional) return '(not set)';
  if (!s.hasDefault) return '';
  if (s.kind === 'object') return '';
  return flow(s.defaultValue);
}

/** One row per key, depth first, in declaration order. */
export function docRows(s: AnySchema, prefix: string): DocRow[] {
  const rows: DocRow[] = [];
  const visit = (schema: AnySchema, key: string, isRoot: boolean): void => {
    if (!isRoot) {
      rows.push({
        key,
        type: schema.type,
        default: defaultText(schema),
        required: !schema.hasDefault && !schema.optional,
        doc: schema.doc,
        schema,
      });
    }
    if (schema.kind === 'object' && schema.fields) {
      for (const [k, f] of Object.entries(schema.fields)) visit(f, key ? `${key}.${k}` : k, false);
    } else if (schema.kind === 'array' && schema.item?.kind === 'object') {
      visitChildren(schema.item, `${key}[]`);
    } else if (schema.kind === 'map' && schema.item?.kind === 'object') {
      visitChildren(schema.item, `${key}.<key>`);
    } else if (schema.kind === 'nullable' && schema.item?.kind === 'object') {
      visitChildren(schema.item, key);
    } else if (schema.kind === 'oneOf' && schema.branches) {
      for (const b of schema.branches) if (b.kind === 'object') visitChildren(b, key);
    }
  };
  const visitChildren = (schema: AnySchema, key: string): void => {
    for (const [k, f] of Object.entries(schema.fields ?? {})) visit(f, `${key}.${k}`, false);
  };
  visit(s, prefix, true);
  return rows;
}
