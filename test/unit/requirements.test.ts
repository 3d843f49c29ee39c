/**
 * test/helpers/requirements.ts: a proof that needs ngIRCd, Prosody, ejabberd, Chromium, slixmpp or systemd's tools is skipped
 * with a reason when the program is missing, and fails when GATEHOUSE_TEST_REQUIRE (set by .ci/run)
 * names it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { knownRequirements, requiredByEnvironment, verdict } from '../helpers/requirements.js';

test('a missing program skips with the reason and how to install it; required, it fails as well', () => {
  assert.deepEqual(verdict('ngircd', null, new Set()), { run: true });
  assert.deepEqual(verdict('ngircd', null, new Set(['ngircd'])), { run: true });
  const local = verdict('ngircd', '/usr/sbin/ngircd not installed', new Set(['prosody']));
  assert.deepEqual(local, { run: false, skip: 'ngircd: /usr/sbin/ngircd not installed (apt-get install ngircd)', fail: null });
  const ci = verdict('slixmpp', 'slixmpp cannot be imported by /usr/bin/python3', new Set(['slixmpp']));
  assert.equal(ci.run, false);
  assert.match(ci.run ? '' : ci.fail ?? '', /^GATEHOUSE_TEST_REQUIRE requires slixmpp, but slixmpp: slixmpp cannot be imported .*\(apt-get install python3-slixmpp\)$/);
});

test('GATEHOUSE_TEST_REQUIRE: a list of known names; a typo is an error, not a silent skip', () => {
  assert.deepEqual([...requiredByEnvironment('')], []);
  assert.deepEqual([...requiredByEnvironment('ngircd, prosody chromium,slixmpp')], ['ngircd', 'prosody', 'chromium', 'slixmpp']);
  assert.throws(() => requiredByEnvironment('ngircd,prosdy'), /GATEHOUSE_TEST_REQUIRE: unknown prosdy \(known: ngircd, inspircd, prosody, ejabberd, chromium, systemd, slixmpp\)/);
});

test('.ci/run requires every program a proof can skip for', () => {
  const script = readFileSync(fileURLToPath(new URL('../../../.ci/run', import.meta.url)), 'utf8');
  const line = /^export GATEHOUSE_TEST_REQUIRE=(\S+)$/m.exec(script);
  assert.ok(line, '.ci/run exports GATEHOUSE_TEST_REQUIRE');
  assert.deepEqual([...requiredByEnvironment(line[1])].sort(), knownRequirements().sort());
});
