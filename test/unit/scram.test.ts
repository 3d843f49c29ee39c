import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  DEFAULT_SALT_BYTES,
  MAX_ITERATIONS,
  MIN_ITERATIONS,
  SaslPrepError,
  iterationsUsable,
  escapeSaslName,
  h,
  hashLength,
  hi,
  hiAsync,
  hmac,
  makeVerifier,
  saslPrep,
  unescapeSaslName,
  verifyPlain,
  verifyPlainAsync,
  xor,
} from '../../server/auth/scram.js';

test('hi() is PBKDF2-HMAC (RFC 6070 vectors)', async () => {
  assert.equal(hi('SHA-1', 'password', Buffer.from('salt'), 1).toString('hex'), '0c60c80f961f0e71f3a9b524af6012062fe037a6');
  assert.equal(hi('SHA-1', 'password', Buffer.from('salt'), 4096).toString('hex'), '4b007901b765489abead49d926f721d065a429c1');
  assert.equal((await hiAsync('SHA-1', 'password', Buffer.from('salt'), 2)).toString('hex'), 'ea6c014dc72d6f8ccd1ed92ace1d41f0d8de8957');
  assert.equal(hi('SHA-256', 'password', Buffer.from('salt'), 1).length, 32);
});

test('h() and hmac() use the named hash', () => {
  assert.equal(h('SHA-1', 'abc').toString('hex'), 'a9993e364706816aba3e25717850c26c9cd0d89d');
  assert.equal(h('SHA-256', 'abc').toString('hex'), 'ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  // RFC 4231 test case 2
  assert.equal(
    hmac('SHA-256', Buffer.from('Jefe'), 'what do ya want for nothing?').toString('hex'),
    '5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843',
  );
  assert.equal(hashLength('SHA-1'), 20);
  assert.equal(hashLength('SHA-256'), 32);
  assert.throws(() => h('MD5' as 'SHA-1', 'x'), TypeError);
});

test('xor() combines equal-length buffers and rejects others', () => {
  assert.deepEqual(xor(Buffer.from([0xff, 0x0f, 0x00]), Buffer.from([0x0f, 0x0f, 0xaa])), Buffer.from([0xf0, 0x00, 0xaa]));
  assert.throws(() => xor(Buffer.alloc(2), Buffer.alloc(3)), RangeError);
});

test('saslname escaping', () => {
  assert.equal(escapeSaslName('a,b=c'), 'a=2Cb=3Dc');
  assert.equal(unescapeSaslName('a=2Cb=3Dc'), 'a,b=c');
  assert.equal(unescapeSaslName(escapeSaslName('=,==,,')), '=,==,,');
  assert.equal(unescapeSaslName('plain'), 'plain');
  assert.equal(unescapeSaslName('a=2X'), null);
  assert.equal(unescapeSaslName('a=2c'), null);
  assert.equal(unescapeSaslName('a='), null);
  assert.equal(unescapeSaslName('a,b'), null);
});

test('SASLprep: RFC 4013 section 3 examples', () => {
  assert.equal(saslPrep('I\u00ADX'), 'IX');
  assert.equal(saslPrep('user'), 'user');
  assert.equal(saslPrep('USER'), 'USER');
  assert.equal(saslPrep('\u00AA'), 'a');
  assert.equal(saslPrep('\u2168'), 'IX');
  assert.throws(() => saslPrep('\u0007'), SaslPrepError);
});

test('SASLprep: mapping of spaces and of characters mapped to nothing', () => {
  assert.equal(saslPrep('a\u00A0b'), 'a b');
  assert.equal(saslPrep('a\u3000b\u2003c'), 'a b c');
  assert.equal(saslPrep('a\u200Bb'), 'a b');
  assert.equal(saslPrep('x\u200Dy\uFE0Fz\uFEFF'), 'xyz');
  assert.equal(saslPrep('\uFF21\uFF22'), 'AB'); // NFKC: fullwidth letters
});

test('SASLprep: prohibited characters are rejected without echoing the input', () => {
  for (const bad of ['a\u0000b', 'tab\there', 'del\u007F', '\u0085', 'pua\uE000', '\u{F0001}', '\uFDD0', '\u{1FFFE}', 'lone\uD800', '\u2FF0', '\u200E', '\u202E', '\u{E0041}', '\uFFFD', '\u2028']) {
    assert.throws(
      () => saslPrep(bad),
      (err: unknown) => err instanceof SaslPrepError && err.reason === 'prohibited' && !err.message.includes(bad),
      JSON.stringify(bad),
    );
  }
});

test('SASLprep: unassigned code points allowed in queries, rejected for stored strings', () => {
  assert.equal(saslPrep('a\u0378'), 'a\u0378');
  assert.throws(() => saslPrep('a\u0378', { allowUnassigned: false }), (e: unknown) => e instanceof SaslPrepError && e.reason === 'unassigned');
  assert.throws(() => makeVerifier('a\u0378', 'SHA-256', 4096), SaslPrepError);
});

test('makeVerifier: RFC 5802 example verifies "pencil" and nothing else', () => {
  const v = makeVerifier('pencil', 'SHA-1', 4096, Buffer.from('QSXCR+Q6sek8bf92', 'base64'));
  assert.equal(v.hash, 'SHA-1');
  assert.equal(v.iterations, 4096);
  assert.equal(v.storedKey.length, 20);
  assert.equal(v.serverKey.length, 20);
  assert.equal(verifyPlain('pencil', v), true);
  assert.equal(verifyPlain('Pencil', v), false);
  assert.equal(verifyPlain('', v), false);
  assert.equal(verifyPlain('pen\u0007cil', v), false);
});

test('makeVerifier: random default salt, iterations >= 4096, no password inside', () => {
  const a = makeVerifier('pencil', 'SHA-256', MIN_ITERATIONS);
  const b = makeVerifier('pencil', 'SHA-256', MIN_ITERATIONS);
  assert.ok(MIN_ITERATIONS >= 4096);
  assert.ok(a.iterations >= 4096);
  assert.ok(a.salt.length >= 16 && a.salt.length === DEFAULT_SALT_BYTES);
  assert.notDeepEqual(a.salt, b.salt);
  assert.notDeepEqual(a.storedKey, b.storedKey);
  assert.equal(a.storedKey.length, 32);
  assert.deepEqual(Object.keys(a).sort(), ['hash', 'iterations', 'salt', 'serverKey', 'storedKey']);
  const pw = Buffer.from('pencil');
  for (const buf of [a.salt, a.storedKey, a.serverKey]) assert.equal(buf.indexOf(pw), -1);
  assert.ok(!JSON.stringify(a).includes('pencil'));
  assert.equal(verifyPlain('pencil', a), true);
});

test('makeVerifier: rejects weak parameters and unusable passwords', () => {
  assert.throws(() => makeVerifier('pencil', 'SHA-256', 4095), RangeError);
  assert.throws(() => makeVerifier('pencil', 'SHA-256', 4096.5), RangeError);
  assert.throws(() => makeVerifier('pencil', 'SHA-256', 4096, Buffer.alloc(0)), RangeError);
  assert.throws(() => makeVerifier('', 'SHA-256', 4096), (e: unknown) => e instanceof SaslPrepError && e.reason === 'empty');
  assert.throws(() => makeVerifier('\u00AD', 'SHA-256', 4096), SaslPrepError);
  assert.throws(
    () => makeVerifier('secret\u0001', 'SHA-256', 4096),
    (e: unknown) => e instanceof SaslPrepError && !e.message.includes('secret'),
  );
});

test('makeVerifier/verifyPlain apply SASLprep to both sides', async () => {
  const soft = makeVerifier('I\u00ADX', 'SHA-256', 4096);
  assert.equal(verifyPlain('IX', soft), true);
  assert.equal(await verifyPlainAsync('I\u00ADX', soft), true);
  assert.equal(verifyPlain('\u2168', soft), true);
  const spaced = makeVerifier('correct\u00A0horse', 'SHA-1', 4096);
  assert.equal(verifyPlain('correct horse', spaced), true);
  assert.equal(verifyPlain('correct\u2000horse', spaced), true);
  assert.equal(verifyPlain('correcthorse', spaced), false);
  assert.equal(await verifyPlainAsync('wrong', spaced), false);
});

test('verifyPlain: a verifier with a malformed stored key never matches', () => {
  const v = makeVerifier('pencil', 'SHA-256', 4096);
  assert.equal(verifyPlain('pencil', { ...v, storedKey: v.storedKey.subarray(0, 20) }), false);
});

test('iterationsUsable: a stored count is used at login only within 4096..10,000,000', () => {
  assert.equal(MIN_ITERATIONS, 4096);
  assert.equal(MAX_ITERATIONS, 10_000_000);
  for (const n of [4096, 10_000, 10_000_000]) assert.equal(iterationsUsable(n), true, String(n));
  for (const n of [0, 1, 4095, 10_000_001, 2 ** 40, 2 ** 53, 4096.5, NaN, Infinity, -4096]) assert.equal(iterationsUsable(n), false, String(n));
});
