/** P9: the vault's AES-GCM records authenticate with a full 16-byte tag, never a shortened one. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { Vault, VaultError, vaultKey } from '../../transports/kit/vault.js';

test('P9 the vault refuses a record whose GCM tag was truncated', () => {
  const v = new Vault(vaultKey(randomBytes(32), 'test'));
  const record = v.seal('alice@localhost', 'irc', { fields: { password: 'hunter2' } }, new Date());
  assert.equal(record.tag.length, 16);
  assert.equal(v.open(record).fields.password, 'hunter2');
  // A shortened tag is a prefix of the right one: GCM would accept it unless the length is pinned.
  for (const length of [4, 8, 12, 15]) {
    assert.throws(
      () => v.open({ ...record, tag: record.tag.subarray(0, length) }),
      (err: Error) => err instanceof VaultError && /do not authenticate/.test(err.message) && !err.message.includes('hunter2'),
      `a ${length}-byte tag`,
    );
  }
  assert.throws(() => v.open({ ...record, tag: Buffer.concat([record.tag, Buffer.alloc(1)]) }), VaultError, 'a 17-byte tag');
});
