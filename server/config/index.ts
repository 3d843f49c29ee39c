/**
 * Loading and validating the configuration file (`gatehouse start --config FILE`).
 *
 * Every problem is reported as a ConfigError whose message is one line naming the key path, e.g.
 * `config error: c2s.maxStanzaBytes: expected a size >= 1KiB (…), got "big"`. Secret values
 * (component secrets, passwords in database URLs) never appear in messages.
 */
import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { ConfigError, describe, isPlainObject, type Ctx } from '../../shared/schema-kit.js';
import { configSchema, DB_SCHEMES, redactDbUrl } from './schema.js';
import type { Config } from './types.js';

export type * from './types.js';
export { ConfigError } from '../../shared/schema-kit.js';
export { renderConfigDocs } from './docs.js';

/** Environment variable overriding storage.url (and storage.type, from the URL's scheme). */
export const STORAGE_URL_ENV = 'GATEHOUSE_STORAGE_URL';

/**
 * Validates a raw configuration (as parsed from YAML; null/undefined = all defaults) and fills in
 * the defaults. Relative paths resolve against baseDir. Does not read the environment.
 */
export function parseConfig(raw: unknown, baseDir: string): Config {
  const doc = raw === null || raw === undefined ? {} : raw;
  if (!isPlainObject(doc)) throw new ConfigError('', `expected a mapping of settings at the top level, got ${describe(doc)}`);
  const ctx: Ctx = { baseDir: path.resolve(baseDir), vars: {} };
  // dataDir first: other paths default to places inside it (`<dataDir>/…`).
  const dataDirSchema = configSchema.fields.dataDir;
  const dataDir: string = dataDirSchema.parse(doc.dataDir ?? dataDirSchema.defaultValue, 'dataDir', ctx);
  ctx.vars.dataDir = dataDir;
  return configSchema.parse(doc, '', ctx);
}

/**
 * Reads and validates the configuration file; `path` null = defaults only. Relative paths resolve
 * against the file's directory (process.cwd() without a file).
 *
 * `overrides` (e.g. from tests or command-line flags) is merged over the file's contents before
 * validation: mappings merge key by key, anything else (lists included) replaces. Then
 * GATEHOUSE_STORAGE_URL, if set and not empty, replaces storage.url and sets storage.type from its
 * scheme (mysql://, mariadb://, postgres://, postgresql://).
 */
export function loadConfig(file: string | null, overrides?: unknown, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown = {};
  let baseDir = process.cwd();
  if (file !== null) {
    const abs = path.resolve(file);
    baseDir = path.dirname(abs);
    let text: string;
    try {
      text = fs.readFileSync(abs, 'utf8');
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      throw new ConfigError('', `cannot read ${abs}: ${code === 'ENOENT' ? 'file not found' : code === 'EISDIR' ? 'is a directory' : (code ?? String(e))}`);
    }
    raw = parseYaml(text, abs);
  }
  if (overrides !== undefined) {
    if (!isPlainObject(overrides)) throw new ConfigError('', `overrides must be a mapping, got ${describe(overrides)}`);
    raw = merge(raw, overrides);
  }
  const envUrl = env[STORAGE_URL_ENV];
  const fromEnv = typeof envUrl === 'string' && envUrl !== '';
  if (fromEnv) raw = applyStorageUrl(raw, envUrl);
  try {
    return parseConfig(raw, baseDir);
  } catch (e) {
    if (fromEnv && e instanceof ConfigError && e.keyPath === 'storage.url') throw new ConfigError(`storage.url (from ${STORAGE_URL_ENV})`, e.problem);
    throw e;
  }
}

function parseYaml(text: string, file: string): unknown {
  let doc: YAML.Document.Parsed;
  try {
    doc = YAML.parseDocument(text, { uniqueKeys: true, prettyErrors: true });
  } catch (e) {
    throw new ConfigError('', `${file}: invalid YAML: ${firstLine(String((e as Error).message ?? e))}`);
  }
  const err = doc.errors[0];
  if (err) {
    const pos = err.linePos?.[0];
    const where = pos ? ` at line ${pos.line}, column ${pos.col}` : '';
    // Only the first line: later lines quote the file, which may contain secrets.
    let what = firstLine(err.message).replace(/ at line \d+, column \d+:?$/, '');
    if (err.code === 'MULTIPLE_DOCS') what = 'more than one YAML document in the file';
    throw new ConfigError('', `${file}: invalid YAML${where}: ${what}`);
  }
  try {
    return doc.toJS();
  } catch (e) {
    throw new ConfigError('', `${file}: invalid YAML: ${firstLine(String((e as Error).message ?? e))}`);
  }
}

function firstLine(s: string): string {
  return s.split('\n')[0].replace(/:\s*$/, '');
}

function merge(base: unknown, over: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(over)) return over;
  const out: Record<string, unknown> = { ...base };
  for (const [k, v] of Object.entries(over)) {
    if (v === undefined) continue;
    Object.defineProperty(out, k, { value: merge(out[k], v), enumerable: true, writable: true, configurable: true });
  }
  return out;
}

function applyStorageUrl(raw: unknown, url: string): unknown {
  const keyPath = `storage.url (from ${STORAGE_URL_ENV})`;
  const scheme = /^([a-z][a-z0-9+.-]*:)\/\//i.exec(url)?.[1].toLowerCase();
  const type = scheme ? DB_SCHEMES[scheme] : undefined;
  if (!type)
    throw new ConfigError(
      keyPath,
      `expected a URL starting with mysql://, mariadb://, postgres:// or postgresql://, got ${describe(url, false, redactDbUrl)}`,
    );
  if (!isPlainObject(raw)) return raw; // parseConfig reports it
  const storage = isPlainObject(raw.storage) ? { ...raw.storage } : {};
  delete storage.path;
  storage.type = type;
  storage.url = url;
  return { ...raw, storage };
}
