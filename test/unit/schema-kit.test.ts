import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  ConfigError,
  array,
  defaultsOf,
  docRows,
  duration,
  enumOf,
  fieldOf,
  int,
  nullable,
  object,
  optional,
  refine,
  section,
  size,
  str,
  type Infer,
} from '../../shared/schema-kit.js';
import { parseConfig, type Config, type RegistrationPolicy, type StorageConfig } from '../../server/config/index.js';
import type { OfflineConfig } from '../../server/modules/offline-config.js';
import { offlineConfigSection } from '../../server/modules/offline-config.js';
import { DEFAULT_LOGIN_GUARD } from '../../server/modules/login-guard/failed-login-guard.js';
import { parseTransportConfig, transportConfigSchema } from '../../transports/kit/config.js';

type Same<A, B> = (<T>() => T extends A ? 1 : 2) extends <T>() => T extends B ? 1 : 2 ? true : false;
const same = <A, B>(ok: Same<A, B>): Same<A, B> => ok;

test('defaultsOf parses the defaults in their input form: durations in ms, sizes in bytes, nested objects', () => {
  const s = object({
    window: duration({ default: '10m' }),
    limit: size({ default: '1MiB' }),
    level: enumOf(['a', 'b'], { default: 'b' }),
    inner: object({ n: int({ default: 3 }) }),
    maybe: optional(str()),
  });
  assert.deepEqual(defaultsOf(s), { window: 600_000, limit: 1_048_576, level: 'b', inner: { n: 3 } });
});

test('defaultsOf refuses a schema without a default', () => {
  assert.throws(() => defaultsOf(object({ name: str() })), /has no default/);
});

test('a section composed with fieldOf keeps its place among the fields, for parsing and the docs', () => {
  const part = section('middle', object({ x: int({ default: 1, doc: 'X.' }) }, { doc: 'Middle.' }));
  const whole = object({ first: int({ default: 0 }), ...fieldOf(part), last: int({ default: 2 }) });
  assert.deepEqual(Object.keys(whole.fields ?? {}), ['first', 'middle', 'last']);
  assert.deepEqual(
    docRows(whole, '').map((r) => r.key),
    ['first', 'middle', 'middle.x', 'last'],
  );
  const v = whole.parse({ middle: { x: 5 } }, '', { baseDir: '/', vars: {} });
  assert.deepEqual(v, { first: 0, middle: { x: 5 }, last: 2 });
  assert.ok(same<typeof v, { first: number; middle: { x: number }; last: number }>(true));
});

test('the offline section is declared next to its module and composed into the configuration', () => {
  const config = parseConfig({ offline: { maxBytesPerUser: '1MiB' } }, '/srv/gh');
  assert.deepEqual(config.offline, { maxPerUser: 1000, maxBytesPerUser: 1_048_576 });
  assert.equal(parseConfig(null, '/srv/gh').offline.maxBytesPerUser, defaultsOf(offlineConfigSection.schema).maxBytesPerUser);
  assert.ok(same<OfflineConfig, Config['offline']>(true));
  assert.ok(same<OfflineConfig, { maxPerUser: number; maxBytesPerUser: number }>(true));
});

test('the failed-login guard takes its built-in defaults from the loginGuard section of the schema', () => {
  const { poll, ...fromModule } = DEFAULT_LOGIN_GUARD;
  assert.equal(poll, 30_000);
  assert.deepEqual(fromModule, parseConfig(null, '/srv/gh').loginGuard);
});

test('inferred types are exact: literal unions, optional and nullable keys, lists, refine() output', () => {
  const s = object({
    level: enumOf(['debug', 'info']),
    file: nullable(str(), { default: null }),
    ciphers: optional(str()),
    hashes: array(enumOf(['SHA-1', 'SHA-256'])),
    addr: refine(str(), (v) => ({ host: v, port: 1 })),
  });
  assert.ok(
    same<
      Infer<typeof s>,
      { level: 'debug' | 'info'; file: string | null; hashes: ('SHA-1' | 'SHA-256')[]; addr: { host: string; port: number }; ciphers?: string }
    >(true),
  );
  // An object schema keeps its fields' schemas, so a section's defaults can be taken from it.
  assert.ok(same<Infer<typeof s.fields.level>, 'debug' | 'info'>(true));
  assert.equal(s.fields.file.defaultValue, null);
  // The named configuration types are derived the same way.
  assert.ok(same<RegistrationPolicy, 'closed' | 'open' | 'loopback' | { allow: string[] }>(true));
  assert.ok(same<StorageConfig['type'], 'sqlite' | 'mysql' | 'postgres'>(true));
  assert.ok(same<Config['log']['level'], 'debug' | 'info' | 'warn' | 'error'>(true));
  assert.ok(same<Config['tls']['ciphers'], string | undefined>(true));
  // @ts-expect-error: not a key of the configuration
  const nope: keyof Config = 'offlin';
  void nope;
});

test('the transport configuration uses the shared kit and values: network mapping, domains, admins', () => {
  const base = { component: { domain: 'IRC.Example.org', secret: 'change-me' } };
  const t = parseTransportConfig({ ...base, admins: ['Admin@Example.org'] }, '/srv/t', 'irc', {});
  assert.equal(t.component.domain, 'irc.example.org');
  assert.deepEqual(t.admins, ['admin@example.org']);
  assert.deepEqual(t.network, {});
  assert.throws(
    () => parseTransportConfig({ ...base, network: 5 }, '/srv/t', 'irc', {}),
    (e: unknown) => e instanceof ConfigError && e.message === 'config error: network: expected a mapping, got 5',
  );
  assert.throws(
    () => parseTransportConfig({ ...base, allowDomains: ['a b'] }, '/srv/t', 'irc', {}),
    (e: unknown) => e instanceof ConfigError && e.message === 'config error: allowDomains[0]: expected a domain name, got "a b"',
  );
  const network = transportConfigSchema.fields?.network;
  assert.equal(network?.type, 'mapping (adapter-specific)');
  assert.equal(network?.defaultDoc, '{}');
});
