import { test } from 'node:test';
import assert from 'node:assert/strict';
import { formatBytes, formatDurationSetting, formatDurationShort, formatDurationWords, formatSizeLimit, formatSizeSetting } from '../../shared/format.js';

test('durations: the configuration syntax, words for sentences, short for tables', () => {
  assert.equal(formatDurationSetting(90_000), '1m30s');
  assert.equal(formatDurationSetting(0), '0s');
  assert.equal(formatDurationWords(30 * 86_400_000), '30 days');
  assert.equal(formatDurationWords(3_600_000), '1 hour');
  assert.equal(formatDurationWords(90_000), '90 seconds');
  assert.equal(formatDurationWords(90_500), '2 minutes');
  assert.equal(formatDurationShort(3_725_000), '1 h 2 min');
  assert.equal(formatDurationShort(42_000), '42 s');
});

test('sizes: the configuration syntax, exact limits, rounded amounts', () => {
  assert.equal(formatSizeSetting(262_144), '256KiB');
  assert.equal(formatSizeSetting(1000), '1000B');
  assert.equal(formatSizeLimit(2048), '2 KiB');
  assert.equal(formatSizeLimit(20), '20 bytes');
  assert.equal(formatBytes(1536), '1.5 KiB');
  assert.equal(formatBytes(512), '512 B');
  assert.equal(formatBytes(42 * 1024 * 1024 + 5), '42 MiB');
});
