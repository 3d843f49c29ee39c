/** The generated table of hooks in docs/architecture.md matches what a server with every module registers. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { DOC, collectHooks, renderHooksTable, updateDoc } from '../../scripts/hooks-table.js';

test('docs/architecture.md lists every hook with its phase and module (regenerate: node dist/scripts/hooks-table.js --write)', async () => {
  const regs = await collectHooks();
  assert.ok(regs.some((r) => r.event === 'message/remote' && r.phase === 'federate' && r.owner === 's2s'), 'federation is on while collecting');
  assert.ok(regs.some((r) => r.event === 'iq/host' && r.phase === 'fallback' && r.owner === 'core'));
  const doc = readFileSync(DOC, 'utf8');
  assert.equal(updateDoc(doc, renderHooksTable(regs)), doc, 'docs/architecture.md is out of date: run `npm run build && node dist/scripts/hooks-table.js --write`');
});
