import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBase64, randomHex } from '../../shared/random.js';

test('pooled random ids have the asked length and never repeat across pool refills', () => {
  const seen = new Set<string>();
  // 24 bytes × 1,000 spans several 4 KiB pool refills.
  for (let i = 0; i < 1000; i++) {
    const id = randomHex(24);
    assert.match(id, /^[0-9a-f]{48}$/);
    assert.ok(!seen.has(id), 'an id came out twice');
    seen.add(id);
  }
  assert.equal(Buffer.from(randomBase64(24), 'base64').length, 24);
  assert.equal(randomHex(5000).length, 10000, 'more than a pool at once');
});
