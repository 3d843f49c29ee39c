/**
 * Installing and starting: `node bin/gatehouse.js` runs the build in dist/ only when it is the
 * build of the sources beside it, and scripts/build.js (the prepare script of `npm ci`, and
 * `npm start`) compiles only when it is not. Run on a small copy of the repository's build setup
 * (its bin/, scripts/build*.js, tsconfig.json) with one source file, compiled by the real compiler.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { appendFileSync, copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function node(args: string[], cwd: string): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, args, { cwd }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout, stderr });
    });
  });
}

/** A tree with the repository's build setup, package version 9.8.7 and server/cli.ts printing `text` and its arguments. */
function makeTree(t: { after(fn: () => void): void }, text: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-install-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  for (const d of ['bin', 'scripts', 'server']) mkdirSync(join(dir, d));
  for (const f of ['bin/gatehouse.js', 'scripts/build.js', 'scripts/build-check.js', 'tsconfig.json']) copyFileSync(join(ROOT, f), join(dir, f));
  writeFileSync(join(dir, 'package.json'), JSON.stringify({ name: 'gatehouse', version: '9.8.7', type: 'module' }));
  writeSource(dir, text);
  return dir;
}

function writeSource(dir: string, text: string): void {
  writeFileSync(join(dir, 'server/cli.ts'), `const words: string[] = process.argv.slice(2);\nconsole.log(${JSON.stringify(text)} + ' ' + words.join(' '));\n`);
}

function linkModules(dir: string): void {
  symlinkSync(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
}

test('node bin/gatehouse.js --version prints the version of package.json', async () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = await node([join(ROOT, 'bin/gatehouse.js'), '--version'], tmpdir());
  assert.equal(r.stderr, '');
  assert.equal(r.stdout, `gatehouse ${version}\n`);
  assert.equal(r.code, 0);
});

test('the package scripts: npm ci builds (prepare), npm start builds only a stale dist/ and starts through bin/gatehouse.js', () => {
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { scripts: Record<string, string>; bin: Record<string, string> };
  assert.equal(pkg.scripts['prepare'], 'node scripts/build.js --if-stale');
  assert.equal(pkg.scripts['start'], 'node scripts/build.js --if-stale && node bin/gatehouse.js start');
  assert.equal(pkg.bin['gatehouse'], 'bin/gatehouse.js');
});

test('a fresh tree: gatehouse refuses to run until built; the build runs it; a current build is not compiled again', async (t) => {
  const dir = makeTree(t, 'first');
  linkModules(dir);
  const unbuilt = await node(['bin/gatehouse.js', '--version'], dir);
  assert.equal(unbuilt.code, 2);
  assert.equal(unbuilt.stdout, '');
  assert.equal(unbuilt.stderr, `gatehouse: dist/ is not built; run npm run build in ${dir} first\n`);

  const build = await node(['scripts/build.js', '--if-stale'], dir);
  assert.equal(build.code, 0, build.stdout + build.stderr);
  const run = await node(['bin/gatehouse.js', 'start', '--config', 'x.yaml'], dir);
  assert.equal(run.stderr, '');
  assert.equal(run.stdout, 'first start --config x.yaml\n');

  // A mark in the output survives only if nothing is compiled.
  appendFileSync(join(dir, 'dist/server/cli.js'), '\nconsole.log("not recompiled");\n');
  const again = await node(['scripts/build.js', '--if-stale'], dir);
  assert.equal(again.code, 0, again.stderr);
  assert.equal(again.stdout, 'gatehouse: dist/ is current, not compiling\n');
  assert.equal((await node(['bin/gatehouse.js'], dir)).stdout, 'first \nnot recompiled\n');
});

test('a changed source: gatehouse names it and refuses; the build (npm start) compiles it and the new code runs', async (t) => {
  const dir = makeTree(t, 'old');
  linkModules(dir);
  assert.equal((await node(['scripts/build.js'], dir)).code, 0);
  writeSource(dir, 'new');
  writeFileSync(join(dir, 'server/added.ts'), 'export const added = 1;\n');

  const stale = await node(['bin/gatehouse.js', '--version'], dir);
  assert.equal(stale.code, 2);
  assert.equal(stale.stdout, '');
  assert.equal(stale.stderr, `gatehouse: dist/ is older than the sources (changed since the build: server/added.ts, server/cli.ts); run npm run build in ${dir} first\n`);

  const build = await node(['scripts/build.js', '--if-stale'], dir);
  assert.equal(build.code, 0, build.stdout + build.stderr);
  assert.doesNotMatch(build.stdout, /not compiling/);
  assert.equal((await node(['bin/gatehouse.js', 'x'], dir)).stdout, 'new x\n');
});

test('without TypeScript (npm ci --omit=dev): a current dist/ is accepted, a missing or stale one is an error that says how to build', async (t) => {
  const dir = makeTree(t, 'v1');
  const missing = await node(['scripts/build.js', '--if-stale'], dir);
  assert.equal(missing.code, 1);
  assert.equal(
    missing.stderr,
    'gatehouse: cannot build: TypeScript is not installed (npm ci --omit=dev leaves out the devDependencies) and dist/ is not built.\n' +
      'Build with the devDependencies and remove them afterwards: npm ci && npm prune --omit=dev (see docs/production.md)\n',
  );

  linkModules(dir);
  assert.equal((await node(['scripts/build.js'], dir)).code, 0);
  unlinkSync(join(dir, 'node_modules'));
  const current = await node(['scripts/build.js', '--if-stale'], dir);
  assert.equal(current.code, 0, current.stderr);
  assert.equal(current.stdout, 'gatehouse: dist/ is current, not compiling\n');
  const forced = await node(['scripts/build.js'], dir);
  assert.equal(forced.code, 0, forced.stderr);
  assert.equal(forced.stdout, 'gatehouse: dist/ is current (TypeScript is not installed, nothing was compiled)\n');

  writeSource(dir, 'v2');
  const stale = await node(['scripts/build.js', '--if-stale'], dir);
  assert.equal(stale.code, 1);
  assert.match(stale.stderr, /^gatehouse: cannot build: TypeScript is not installed .* and dist\/ is older than the sources \(changed since the build: server\/cli\.ts\)\.\n/);
  assert.equal((await node(['bin/gatehouse.js'], dir)).code, 2);
});
