/**
 * The fake homeserver's cross-signing and key backup endpoints (test/fakes/matrix-trust.ts) over
 * real HTTP, as the client-server API describes them: what a client that is not matrix-js-sdk
 * would meet (the trust tests use the SDK, which takes the happy paths).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { FakeHomeserver } from '../fakes/matrix-homeserver.js';

type Json = Record<string, any>;

describe('fake homeserver: cross-signing and key backup endpoints', () => {
  let hs: FakeHomeserver;
  let me: string;
  let other: string;
  let token: string;
  let device: string;
  let otherToken: string;

  async function call(method: string, path: string, body?: unknown, as = token): Promise<{ status: number; json: Json }> {
    const res = await fetch(`${hs.url}/_matrix/client/v3${path}`, {
      method,
      headers: { authorization: `Bearer ${as}`, 'content-type': 'application/json' },
      ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
    });
    return { status: res.status, json: (await res.json()) as Json };
  }
  const key = (userId: string, usage: string, pub: string) => ({ user_id: userId, usage: [usage], keys: { [`ed25519:${pub}`]: pub } });
  const session = (first: number, forwarded: number, verified: boolean, tag: string) => ({ first_message_index: first, forwarded_count: forwarded, is_verified: verified, session_data: { ciphertext: tag, ephemeral: 'e', mac: 'm' } });

  before(async () => {
    hs = await FakeHomeserver.start();
    me = hs.createUser('carla', { password: 'carla-pw' });
    other = hs.createUser('dan', { password: 'dan-pw' });
    ({ accessToken: token, deviceId: device } = hs.issueToken(me));
    otherToken = hs.issueToken(other).accessToken;
  });

  after(async () => {
    await hs?.stop();
  });

  test('cross-signing keys: first upload without authentication, replacing them needs the password', async () => {
    const first = { master_key: key(me, 'master', 'MASTER1'), self_signing_key: key(me, 'self_signing', 'SELF1'), user_signing_key: key(me, 'user_signing', 'USER1') };
    assert.equal((await call('POST', '/keys/device_signing/upload', first)).status, 200);
    assert.equal((await call('POST', '/keys/device_signing/upload', first)).status, 200, 'the same keys again need no authentication');
    const replace = { master_key: key(me, 'master', 'MASTER2') };
    const challenge = await call('POST', '/keys/device_signing/upload', replace);
    assert.equal(challenge.status, 401);
    assert.deepEqual(challenge.json.flows, [{ stages: ['m.login.password'] }]);
    assert.equal(typeof challenge.json.session, 'string');
    const wrong = await call('POST', '/keys/device_signing/upload', { ...replace, auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: me }, password: 'nope', session: challenge.json.session } });
    assert.equal(wrong.status, 401);
    assert.equal(wrong.json.errcode, 'M_FORBIDDEN');
    const ok = await call('POST', '/keys/device_signing/upload', { ...replace, auth: { type: 'm.login.password', identifier: { type: 'm.id.user', user: me }, password: 'carla-pw', session: challenge.json.session } });
    assert.equal(ok.status, 200);
    const bad = await call('POST', '/keys/device_signing/upload', { self_signing_key: key(other, 'self_signing', 'X') });
    assert.equal(bad.status, 400, 'a key of another user is refused');
  });

  test('keys/query: master and self-signing keys of everyone, the user-signing key only for its owner', async () => {
    await call('POST', '/keys/device_signing/upload', { master_key: key(other, 'master', 'DANM'), self_signing_key: key(other, 'self_signing', 'DANS'), user_signing_key: key(other, 'user_signing', 'DANU') }, otherToken);
    const mine = await call('POST', '/keys/query', { device_keys: { [me]: [], [other]: [] } });
    assert.equal(mine.status, 200);
    assert.deepEqual(Object.keys(mine.json.master_keys).sort(), [me, other].sort());
    assert.ok(mine.json.self_signing_keys[other]);
    assert.deepEqual(Object.keys(mine.json.user_signing_keys), [], 'the new master key dropped the old user-signing key');
    const theirs = await call('POST', '/keys/query', { device_keys: { [other]: [] } }, otherToken);
    assert.ok(theirs.json.user_signing_keys[other]);
  });

  test('signatures/upload: a signature of another user\'s master key is kept, unknown keys are failures', async () => {
    const res = await call('POST', '/keys/signatures/upload', {
      [other]: { DANM: { ...key(other, 'master', 'DANM'), signatures: { [me]: { 'ed25519:USER1': 'sig' } } }, NOSUCH: { signatures: { [me]: { 'ed25519:USER1': 'sig' } } } },
    });
    assert.equal(res.status, 200);
    assert.equal(res.json.failures[other].NOSUCH.errcode, 'M_NOT_FOUND');
    assert.equal((hs.trust.crossSigningKey(other, 'master')!.signatures as Json)[me]['ed25519:USER1'], 'sig');
  });

  test('a device signature survives a new upload of the device keys (kept apart, as Synapse does)', async () => {
    const deviceKeys = (curve: string) => ({ user_id: me, device_id: device, algorithms: ['m.olm.v1.curve25519-aes-sha2'], keys: { [`curve25519:${device}`]: curve, [`ed25519:${device}`]: 'ED' }, signatures: { [me]: { [`ed25519:${device}`]: 'self' } } });
    assert.equal((await call('POST', '/keys/upload', { device_keys: deviceKeys('C1') })).status, 200);
    const signed = await call('POST', '/keys/signatures/upload', { [me]: { [device]: { ...deviceKeys('C1'), signatures: { [me]: { 'ed25519:SELF1': 'cross' } } } } });
    assert.deepEqual(signed.json.failures, {});
    assert.equal((await call('POST', '/keys/upload', { device_keys: deviceKeys('C2') })).status, 200);
    const q = await call('POST', '/keys/query', { device_keys: { [me]: [device] } });
    assert.deepEqual(q.json.device_keys[me][device].signatures[me], { [`ed25519:${device}`]: 'self', 'ed25519:SELF1': 'cross' });
  });

  test('key backup: versions, keys only into the current version, a stored key replaced only by a better one', async () => {
    const none = await call('GET', '/room_keys/version');
    assert.equal(none.status, 404);
    assert.equal(none.json.errcode, 'M_NOT_FOUND');
    const v1 = await call('POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'PUB1' } });
    assert.equal(v1.status, 200);
    const put = await call('PUT', `/room_keys/keys/!r:x/S1?version=${v1.json.version}`, session(5, 1, false, 'first'));
    assert.deepEqual([put.status, put.json.count], [200, 1]);
    const etag = put.json.etag;
    const worse = await call('PUT', `/room_keys/keys?version=${v1.json.version}`, { rooms: { '!r:x': { sessions: { S1: session(9, 0, false, 'worse') } } } });
    assert.equal(worse.json.etag, etag, 'a later first index does not replace it');
    await call('PUT', `/room_keys/keys/!r:x?version=${v1.json.version}`, { sessions: { S1: session(9, 3, true, 'verified') } });
    const got = await call('GET', `/room_keys/keys/!r:x/S1?version=${v1.json.version}`);
    assert.equal(got.json.session_data.ciphertext, 'verified', 'a verified key wins');
    const info = await call('GET', '/room_keys/version');
    assert.deepEqual([info.json.version, info.json.count, info.json.algorithm], [v1.json.version, 1, 'm.megolm_backup.v1.curve25519-aes-sha2']);

    const v2 = await call('POST', '/room_keys/version', { algorithm: 'm.megolm_backup.v1.curve25519-aes-sha2', auth_data: { public_key: 'PUB2' } });
    const stale = await call('PUT', `/room_keys/keys/!r:x/S2?version=${v1.json.version}`, session(0, 0, false, 'late'));
    assert.equal(stale.status, 403);
    assert.equal(stale.json.errcode, 'M_WRONG_ROOM_KEYS_VERSION');
    assert.equal(stale.json.current_version, v2.json.version);
    assert.equal((await call('GET', `/room_keys/keys?version=${v1.json.version}`)).json.rooms['!r:x'].sessions.S1.session_data.ciphertext, 'verified', 'an older version is still readable');
    assert.equal((await call('PUT', `/room_keys/version/${v2.json.version}`, { algorithm: 'other', auth_data: {} })).status, 400, 'the algorithm stays');
    assert.equal((await call('DELETE', `/room_keys/version/${v2.json.version}`)).status, 200);
    assert.equal((await call('GET', '/room_keys/version')).json.version, v1.json.version, 'the previous version is current again');
    assert.equal((await call('GET', `/room_keys/keys/!r:x/S1?version=${v1.json.version}`, undefined, otherToken)).status, 404, "another user's backup is not visible");
  });
});
