/**
 * Keeps `npm run bench` working: a 10-second smoke run against Gatehouse alone. It checks that the
 * benchmark runs and that no message is lost; it asserts nothing about speed (figures belong in
 * docs/benchmarks.md, measured by `npm run bench`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const RUN = fileURLToPath(new URL('../../scripts/bench/run.js', import.meta.url));

test('the benchmark smoke run completes and loses no message', async () => {
  const proc = spawn(process.execPath, [RUN, '--smoke'], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.on('data', (d) => (out += d));
  proc.stderr.on('data', (d) => (out += d));
  const code = await new Promise<number | null>((resolve) => {
    const timer = setTimeout(() => proc.kill('SIGKILL'), 150_000);
    proc.on('exit', (c) => (clearTimeout(timer), resolve(c)));
  });
  assert.equal(code, 0, out.slice(-3000));
  const lost = [...out.matchAll(/\| messages lost \|([^\n]*)/g)].flatMap((m) => m[1]!.split('|').map((c) => c.trim()).filter(Boolean));
  assert.ok(lost.length > 0, 'the smoke run printed no result table');
  assert.ok(lost.every((v) => v === '0' || v === '–'), `messages were lost: ${lost.join(', ')}`);
  assert.match(out, /\| messages delivered \| 100 \|/);
});
