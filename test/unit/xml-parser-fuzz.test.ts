/**
 * The differential fuzzer for shared/xml/stream-parser.ts against saxes (scripts/fuzz/):
 * a fixed-seed slice and a clock-seeded slice, each bounded by a count and by time; and the
 * inputs it found, as regression tests. A failure prints the seed and the input index to replay
 * (`npm run fuzz -- --seed S --only I`) with the input, minimised.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { describeFailure, runXmlFuzz } from '../../scripts/fuzz/xml-fuzz.js';
import { compare, runOurs } from '../../scripts/fuzz/xml-oracle.js';

const HEADER = `<stream:stream xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' to='example.com' version='1.0'>`;

/** Gatehouse's parser over HEADER + body: its error condition, or null. */
function errorOf(body: string): string | null {
  return runOurs(Buffer.from(HEADER + body), []).error;
}

function agreesWithOracle(input: string | Buffer, cuts: number[] = []): void {
  const bytes = typeof input === 'string' ? Buffer.from(input) : input;
  assert.equal(compare(bytes, cuts), null);
}

function fuzzSlice(seed: number, count: number, maxMs: number): void {
  const result = runXmlFuzz({ seed, count, maxMs });
  const failure = result.failures[0];
  if (failure) assert.fail(describeFailure(failure));
  assert.ok(result.inputs > 0);
}

test('fuzz finding: an unbound namespace prefix on an element or attribute is not-well-formed', () => {
  assert.equal(errorOf(`<message><foo:bar/></message>`), 'not-well-formed');
  assert.equal(errorOf(`<message foo:a='1'/>`), 'not-well-formed');
  assert.equal(runOurs(Buffer.from(`<stream:stream xmlns='jabber:client' to='example.com'>`), []).error, 'not-well-formed');
  // Declared on the element itself, on an ancestor or on the stream header, or the reserved xml prefix: fine.
  assert.equal(errorOf(`<message xmlns:foo='urn:foo'><foo:bar foo:a='1'/></message>`), null);
  assert.equal(errorOf(`<foo:message xmlns:foo='jabber:client'/>`), null);
  assert.equal(errorOf(`<stream:features/><message xml:lang='en'/>`), null);
  agreesWithOracle(`<m:m x=''>`);
});

test('fuzz finding: reserved namespace declarations and xmlns as an element prefix are not-well-formed', () => {
  for (const bad of [
    `<a xmlns:xmlns='urn:x'/>`,
    `<a xmlns:xml='urn:x'/>`,
    `<a xmlns:p='http://www.w3.org/XML/1998/namespace'/>`,
    `<a xmlns:p='http://www.w3.org/2000/xmlns/'/>`,
    `<a xmlns='http://www.w3.org/2000/xmlns/'/>`,
    `<a xmlns='http://www.w3.org/XML/1998/namespace'/>`,
    `<a xmlns:p=''/>`,
    `<xmlns:a/>`,
  ]) {
    assert.equal(errorOf(bad), 'not-well-formed', bad);
    agreesWithOracle(HEADER + bad);
  }
  assert.equal(errorOf(`<a xmlns:xml='http://www.w3.org/XML/1998/namespace' xmlns=''/>`), null);
});

test('fuzz finding: two attributes with the same local name in the same namespace are not-well-formed', () => {
  assert.equal(errorOf(`<a xmlns:p='urn:x' xmlns:q='urn:x' p:b='1' q:b='2'/>`), 'not-well-formed');
  assert.equal(errorOf(`<a xmlns:p='urn:x' xmlns:q='urn:y' p:b='1' q:b='2' b='3'/>`), null);
  agreesWithOracle(HEADER + `<a xmlns:p='urn:x'><b xmlns:q='urn:x' q:c='' p:c=''/></a>`);
});

test('XML parser differential fuzz, fixed seed (20,000 inputs or 25 s)', () => {
  fuzzSlice(20261206, 20_000, 25_000);
});

test('XML parser differential fuzz, clock seed (20,000 inputs or 25 s)', () => {
  const seed = Date.now() % 2 ** 31;
  console.log(`XML parser fuzz seed ${seed}`);
  fuzzSlice(seed, 20_000, 25_000);
});
