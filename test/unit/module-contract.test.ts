/**
 * The module contract (server/core): load order of services, one provider per service, named hook
 * phases, and fresh module instances per server.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import type { GatehouseModule } from '../../server/core/context.js';
import { checkModuleOrder, retentionClassesOf } from '../../server/core/module.js';
import { HookBus, PHASES, type HookPhase } from '../../server/core/hooks.js';
import { MissingServiceError, ServiceRegistry } from '../../server/core/services.js';
import { allModules } from '../../server/modules/index.js';
import { configSchema } from '../../server/config/schema.js';
import { startTestServer } from '../helpers/server.js';

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
  assert.deepEqual(declared.sort(), ['accounts.delete register', 'sessions session-stats', 'stats.flush statistics']);
});

test('a module declaring its config section finds it in the configuration schema, under its key', () => {
  const declared = allModules().filter((m) => m.config);
  assert.deepEqual(declared.map((m) => `${m.name} ${m.config!.key}`).sort(), ['caps caps', 'offline offline', 'pep pep', 'presence subscriptions', 'private-storage privateStorage', 'register registrationLimit']);
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
