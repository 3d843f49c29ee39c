import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { featuresDocPath, renderFeaturesDoc } from '../../server/modules/features-doc.js';
import { allModules } from '../../server/modules/index.js';

test('docs/features.md lists exactly what the modules declare', () => {
  assert.equal(readFileSync(featuresDocPath(), 'utf8'), renderFeaturesDoc(), 'docs/features.md is out of date: run `node dist/server/modules/features-doc.js --write`');
});

test('every module declares the specifications or privacy clauses it implements', () => {
  for (const m of allModules()) assert.ok(m.specs.length > 0 || (m.clauses?.length ?? 0) > 0, `${m.name} declares neither a specification nor a privacy clause`);
});
