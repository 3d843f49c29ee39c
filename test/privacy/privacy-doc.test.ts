/**
 * docs/privacy.md maps every privacy clause to its configuration and to the tests that prove it;
 * the table is generated from the test titles (scripts/privacy-map.ts) and must be up to date.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { BEGIN, CLAUSES, DOC, END, collectProofs, renderMap, updateDoc } from '../../scripts/privacy-map.js';

test('docs/privacy.md lists the tests of every clause as the test titles say (regenerate: node dist/scripts/privacy-map.js --write)', () => {
  const doc = readFileSync(DOC, 'utf8');
  const map = renderMap(collectProofs());
  assert.equal(updateDoc(doc, map), doc, 'docs/privacy.md is out of date: run `npm run build && node dist/scripts/privacy-map.js --write`');
});

test('the clause table names every clause P1-P23 once, with its tests or an explicit "no test yet"', () => {
  assert.deepEqual(CLAUSES.map((c) => c.id), Array.from({ length: 23 }, (_, i) => `P${i + 1}`));
  const doc = readFileSync(DOC, 'utf8');
  const table = doc.slice(doc.indexOf(BEGIN), doc.indexOf(END));
  const proofs = collectProofs();
  for (const c of CLAUSES) {
    const rows = table.split('\n').filter((l) => l.startsWith(`| ${c.id} |`));
    assert.equal(rows.length, 1, c.id);
    const mine = proofs.filter((p) => p.clause === c.id);
    if (mine.length === 0) {
      assert.ok(rows[0]!.includes('**no test yet**'), c.id);
      assert.ok(table.includes(`\n- ${c.id}: `), `${c.id} is listed as lacking a test`);
    } else for (const p of mine) assert.ok(rows[0]!.includes(p.file), `${c.id}: ${p.file}`);
  }
});

test('test titles are found in every quoting style, and the generated part is replaced in place', () => {
  const proofs = collectProofs();
  assert.ok(proofs.some((p) => p.file === 'test/privacy/policy.test.ts' && p.title.startsWith('P22 ')));
  assert.ok(proofs.some((p) => p.file === 'test/privacy/policy.test.ts' && p.title === 'P22 policy versions on …'), 'template literal titles');
  assert.ok(proofs.some((p) => p.file === 'test/privacy/addresses.test.ts' && p.title.startsWith("P17 no user listing: not in the host's items")), 'double-quoted titles');
  const doc = `intro\n${BEGIN}\nold\n${END}\noutro\n`;
  assert.equal(updateDoc(doc, 'new'), `intro\n${BEGIN}\nnew\n${END}\noutro\n`);
  assert.throws(() => updateDoc('no markers', 'x'), /no generated section/);
});
