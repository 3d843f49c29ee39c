/**
 * The module contract (server/core): load order of services, one provider per service, named hook
 * phases, fresh module instances per server, and the commands and admin pages modules declare.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import type { GatehouseModule } from '../../server/core/context.js';
import { checkModuleOrder, retentionClassesOf } from '../../server/core/module.js';
import { HookBus, PHASES, type HookPhase } from '../../server/core/hooks.js';
import { MissingServiceError, ServiceRegistry } from '../../server/core/services.js';
import { allModules } from '../../server/modules/index.js';
import { configSchema } from '../../server/config/schema.js';
import { startTestServer } from '../helpers/server.js';
import type { RetentionClass } from '../../server/core/retention-class.js';
import { commands, commandsOf } from '../../server/cli/commands.js';
import { coreCommands } from '../../server/cli/core.js';
import { parseArgs } from '../../server/commands/parse.js';
import { adminRoutes } from '../../server/admin/http.js';
import { html } from '../../server/admin/pages/layout.js';

const mod = (name: string, more: Partial<GatehouseModule> = {}): GatehouseModule => ({ name, specs: [], load() {}, ...more });

test('a module needing a service that a later module provides is refused, naming both', () => {
  const list = [mod('blocking', { needs: ['roster'] }), mod('roster', { provides: ['roster'] })];
  assert.throws(() => checkModuleOrder(list), /module 'blocking' needs service 'roster', provided by module 'roster', which is listed after it/);
  assert.throws(() => checkModuleOrder([mod('blocking', { needs: ['roster'] })]), /module 'blocking' needs service 'roster', which no module provides/);
  assert.throws(() => checkModuleOrder([mod('a', { provides: ['roster'] }), mod('b', { provides: ['roster'] })]), /provided by both module 'a' and module 'b'/);
  assert.throws(() => checkModuleOrder([mod('a'), mod('a')]), /listed twice/);
  checkModuleOrder(list.reverse());
});

test('a command or control command declared by two modules is refused, naming both', () => {
  const flush = { summary: 'flush', handler: () => null };
  assert.throws(
    () => checkModuleOrder([mod('a', { commands: { control: { 'stats.flush': flush } } }), mod('b', { commands: { control: { 'stats.flush': flush } } })]),
    /control command stats\.flush is declared by both module 'a' and module 'b'/,
  );
  assert.throws(() => checkModuleOrder([mod('a', { commands: { control: { 'Bad Name': flush } } })]), /module 'a' declares a badly named control command Bad Name/);
  const def = { name: 'sessions', summary: 's', server: 'no' as const, run: async () => 0 };
  assert.throws(() => checkModuleOrder([mod('a', { commands: { cli: [def] } }), mod('b', { commands: { cli: [def] } })]), /command sessions is declared by both module 'a' and module 'b'/);
});

test('the control commands are declared by the modules that hold their state', () => {
  const declared = allModules().flatMap((m) => Object.keys(m.commands?.control ?? {}).map((n) => `${n} ${m.name}`));
  assert.deepEqual(declared.sort(), ['accounts.delete register', 'accounts.recount export', 'cluster-status operator', 'kick operator', 'muc.destroy muc', 'muc.list muc', 'policy.held privacy-policy', 'reload operator', 'sessions session-stats', 'stats.flush statistics', 'status operator']);
});

test('a module declaring its config section finds it in the configuration schema, under its key', () => {
  const declared = allModules().filter((m) => m.config);
  assert.deepEqual(declared.map((m) => `${m.name} ${m.config!.key}`).sort(), [
    'admin-http admin',
    'backup backups',
    'caps caps',
    'failed-login-guard loginGuard',
    'https http',
    'muc muc',
    'offline offline',
    'pep pep',
    'presence subscriptions',
    'privacy-policy policy',
    'private-storage privateStorage',
    'register registrationLimit',
    's2s s2s',
    'transports-supervisor transports',
    'upload upload',
    'vcard vcard',
  ]);
  const fields = configSchema.fields as Record<string, unknown>;
  for (const m of declared) assert.equal(fields[m.config!.key], m.config!.schema, `module ${m.name}: the schema composes another ${m.config!.key}`);
});

test('the server refuses to start with a module before the provider of what it needs, naming both', async () => {
  const modules = allModules();
  const roster = modules.findIndex((m) => m.name === 'roster');
  const [r] = modules.splice(roster, 1);
  modules.push(r!);
  await assert.rejects(startTestServer({ modules }), /module 'presence' needs service 'roster', provided by module 'roster', which is listed after it/);
});

test('the modules in modules/index.ts are in an order that satisfies every need', () => {
  checkModuleOrder(allModules());
});

test('services: provide once, need or get, shared hubs created on first use', () => {
  const s = new ServiceRegistry();
  assert.throws(() => s.need('roster'), MissingServiceError);
  assert.equal(s.get('roster'), undefined);
  const fake = {} as never;
  const withdraw = s.provide('roster', fake);
  assert.equal(s.need('roster'), fake);
  assert.throws(() => s.provide('roster', fake), /provided twice/);
  withdraw();
  assert.equal(s.has('roster'), false);
  let made = 0;
  const a = s.shared('statistics', () => (made++, {} as never));
  assert.equal(s.shared('statistics', () => (made++, {} as never)), a);
  assert.equal(made, 1);
});

test('allModules() gives fresh instances: no module object is shared between two servers', () => {
  const a = allModules();
  const b = allModules();
  assert.deepEqual(a.map((m) => m.name), b.map((m) => m.name));
  for (const [i, m] of a.entries()) assert.notEqual(m, b[i], `module ${m.name} is one object for every server`);
});

test('retention class names are unique across modules', () => {
  const cls = { name: 'x', clause: 'P13', describe: () => 'x', run: async () => 0 };
  assert.throws(() => retentionClassesOf([mod('a', { retention: [cls] }), mod('b', { retention: [cls] })]), /owned by both module 'a' and module 'b'/);
});

test('hook phases run highest first, in load order within a phase; an unknown phase is refused', async () => {
  const bus = new HookBus();
  const order: string[] = [];
  const phases = Object.keys(PHASES) as HookPhase[];
  for (const p of [...phases].reverse()) bus.on('account/created', () => void order.push(p), p);
  bus.on('account/created', () => void order.push('handle-2'));
  await bus.emit('account/created', {} as never);
  assert.deepEqual(order, [...phases.slice(0, phases.indexOf('handle') + 1), 'handle-2', ...phases.slice(phases.indexOf('handle') + 1)]);
  assert.deepEqual(phases, [...phases].sort((a, b) => PHASES[b] - PHASES[a]), 'PHASES is listed in running order');
  assert.throws(() => bus.on('account/created', () => {}, 'soon' as HookPhase), /unknown hook phase 'soon'/);
});

test('docs/architecture.md lists every hook phase with its priority, in running order', () => {
  const doc = readFileSync(fileURLToPath(new URL('../../../docs/architecture.md', import.meta.url)), 'utf8');
  const rows = [...doc.matchAll(/^\s*\| `([a-z-]+)` \| (-?[\d.]+) \|/gm)].map((m) => [m[1], Number(m[2])]);
  assert.deepEqual(rows, Object.entries(PHASES));
});

test('every gatehouse command is a core command or declared by exactly one module', () => {
  const owners = new Map<string, string>(Object.keys(coreCommands).map((n) => [n, 'core']));
  for (const m of allModules()) for (const d of m.commands?.cli ?? []) owners.set(d.name, m.name);
  assert.deepEqual(Object.keys(commands).sort(), [...owners.keys()].sort());
  const owner = (name: string) => owners.get(name);
  assert.equal(owner('retention run'), 'retention');
  assert.equal(owner('blocks lift'), 'failed-login-guard');
  assert.equal(owner('policy announce'), 'privacy-policy');
  assert.equal(owner('backup'), 'backup');
  assert.equal(owner('user export'), 'export');
  assert.equal(owner('transport'), 'transports-supervisor');
  assert.equal(owner('audit transports'), 'transports-supervisor');
  // Each statistics command with the module whose control handler answers it.
  assert.equal(owner('stats'), 'statistics');
  assert.equal(owner('sessions'), 'session-stats');
  for (const m of allModules()) {
    for (const d of m.commands?.cli ?? []) {
      if (d.control) assert.ok(Object.hasOwn(m.commands?.control ?? {}, d.control), `${d.name}: its control command ${d.control} is declared by module ${m.name} too`);
    }
  }
});

test('a module declaring a command the core or another module has is refused, naming both', () => {
  const def = (name: string) => ({ name, summary: 's', server: 'no' as const, run: async () => 0 });
  assert.throws(() => commandsOf([mod('mine', { commands: { cli: [def('user add')] } })]), /command user add of module 'mine' is already declared by the core/);
  assert.throws(() => commandsOf([mod('a', { commands: { cli: [def('x y')] } }), mod('b', { commands: { cli: [def('x y')] } })]), /command x y of module 'b' is already declared by module 'a'/);
  const set = commandsOf([mod('a', { commands: { cli: [def('zz one'), def('user frob')] } })]);
  const names = Object.keys(set);
  assert.ok(names.includes('zz one'));
  assert.equal(names.indexOf('user frob'), names.indexOf('user hashes') + 1, 'a command joins the group of its first word');
});

test('gatehouse retention run sweeps exactly the retention classes of the modules it is handed', async () => {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-contract-'));
  try {
    const config = path.join(dir, 'gatehouse.yaml');
    writeFileSync(config, stringify({ dataDir: dir }));
    const runs: string[] = [];
    const cls = (name: string, count: number): RetentionClass => ({
      name,
      clause: 'P13',
      describe: () => `records of ${name}`,
      run: async (_env, _now, opts) => (runs.push(`${name} ${opts.dryRun ? 'dry' : 'real'}`), count),
    });
    const modules = [mod('first', { retention: [cls('first-records', 3)] }), mod('second', { retention: [cls('second-records', 0)] })];
    const def = commands['retention run']!;
    const lines: string[] = [];
    const original = console.log;
    console.log = (...a: unknown[]) => void lines.push(a.join(' '));
    let code: number;
    try {
      code = await def.run(parseArgs(['--dry-run', '--config', config], def), { modules });
    } finally {
      console.log = original;
    }
    assert.equal(code, 0);
    assert.deepEqual(runs, ['first-records dry', 'second-records dry']);
    assert.deepEqual(lines.map((l) => l.split(/\s+/).slice(0, 3).join(' ')), ['P13 first-records 3', 'P13 second-records 0', 'dry run: nothing']);
    assert.ok(!lines.some((l) => /inactive-accounts|offline-messages/.test(l)), 'no class of a module it was not handed');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('admin pages, actions and downloads are declared by the modules that own them; one path, one module', () => {
  const routes = adminRoutes(allModules());
  const ownerOf = new Map<string, string>();
  for (const m of allModules()) {
    for (const p of [...(m.admin?.pages ?? []), ...(m.admin?.downloads ?? []), ...(m.admin?.public ?? [])]) ownerOf.set(`GET ${p.path}`, m.name);
    for (const a of m.admin?.actions ?? []) ownerOf.set(`POST ${a.path}`, m.name);
  }
  assert.deepEqual(Object.fromEntries([...ownerOf].sort()), {
    'GET /blocks': 'failed-login-guard',
    'GET /datenschutz': 'privacy-policy',
    'GET /muc': 'muc',
    'GET /policy': 'privacy-policy',
    'GET /privacy': 'privacy-policy',
    'GET /sessions': 'session-stats',
    'GET /statistics': 'statistics',
    'GET /transports': 'transports-supervisor',
    'GET /transports.csv': 'transports-supervisor',
    'POST /blocks/lift': 'failed-login-guard',
    'POST /blocks/lift-all': 'failed-login-guard',
    'POST /sessions/disconnect': 'session-stats',
  });
  assert.deepEqual(
    routes.nav.map((n) => n.label),
    ['Overview', 'Sessions', 'Statistics', 'Failed logins & blocks', 'Transport audit', 'Group chats', 'Policy'],
  );
  const page = { path: '/things', render: () => ({ title: 't', body: html`` }) };
  assert.throws(() => adminRoutes([mod('a', { admin: { pages: [page] } }), mod('b', { admin: { pages: [page] } })]), /admin path GET \/things is declared by both module 'a' and module 'b'/);
  assert.throws(() => adminRoutes([mod('a', { admin: { pages: [{ ...page, path: '/login' }] } })]), /module 'a' declares the admin page \/login, which the admin interface serves itself/);
  assert.throws(() => adminRoutes([mod('a', { admin: { public: [{ path: '/api/x', serve: async () => ({ type: 'text/plain', body: '' }) }] } })]), /serves itself/);
  assert.throws(() => adminRoutes([mod('a', { admin: { pages: [{ ...page, path: 'things' }] } })]), /not a plain lower-case path/);
  // A page and an action may share a path: one answers GET, the other POST.
  adminRoutes([mod('a', { admin: { pages: [page], actions: [{ path: '/things', run: async () => ({ redirect: '/things', flash: '' }) }] } })]);
});
