import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { architectureDocPath, callArguments, renderHooksTable, scanHooks, withHooksTable } from '../../scripts/hooks-table.js';

test('the hooks table in docs/architecture.md is what the code registers and fires', () => {
  const doc = readFileSync(architectureDocPath(), 'utf8');
  assert.equal(doc, withHooksTable(doc, renderHooksTable(scanHooks())), 'the hooks table in docs/architecture.md is out of date: run `node dist/scripts/hooks-table.js`');
});

test('the scanner finds handlers with their priority argument as written, and who fires an event', () => {
  const uses = scanHooks();
  const s2s = uses.filter((u) => u.event === 'message/remote' && u.kind === 'on');
  assert.deepEqual(
    s2s.map((u) => [u.file, u.order]).sort(),
    [
      ['server/core/router.ts', '-100'],
      ['server/modules/s2s.ts', '-50'],
    ],
  );
  assert.ok(uses.some((u) => u.event === 'delivery/failed' && u.kind === 'emit' && u.file === 'server/core/router.ts'));
  assert.ok(uses.some((u) => u.event === '`iq-get/host/${NS.ping}:ping`' && u.file === 'server/modules/ping.ts' && u.order === null));
});

test('call arguments are split at the top level only, past strings, templates and nested calls', () => {
  const src = "hooks.on(`a/${f(1, 2)}`, (e) => { g(e, ')'); return true; }, PHASE.filter + 1);";
  assert.deepEqual(callArguments(src, src.indexOf('(')), ['`a/${f(1, 2)}`', "(e) => { g(e, ')'); return true; }", 'PHASE.filter + 1']);
});
