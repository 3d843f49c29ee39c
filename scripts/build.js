#!/usr/bin/env node
// Builds dist/ with the TypeScript compiler.
// Usage: node scripts/build.js [--if-stale]
//   --if-stale  compile only when dist/ is not the build of the current sources (scripts/build-check.js);
//               `npm ci` (the prepare script) and `npm start` use it.
// Without TypeScript (`npm ci --omit=dev`) a current dist/ is fine and a missing or stale one is an
// error saying how to build: a server never runs code older than its sources.
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describeStale, staleSources } from './build-check.js';

const root = fileURLToPath(new URL('..', import.meta.url));
const args = process.argv.slice(2);
const unknown = args.find((a) => a !== '--if-stale');
if (unknown !== undefined) {
  console.error(`scripts/build.js: unknown argument ${unknown} (usage: node scripts/build.js [--if-stale])`);
  process.exit(2);
}
const ifStale = args.includes('--if-stale');

function typescriptCompiler() {
  try {
    const pkgFile = createRequire(path.join(root, 'package.json')).resolve('typescript/package.json');
    const { bin } = createRequire(import.meta.url)(pkgFile);
    return path.resolve(path.dirname(pkgFile), typeof bin === 'string' ? bin : bin.tsc);
  } catch {
    return null;
  }
}

const tsc = typescriptCompiler();
const stale = ifStale || tsc === null ? staleSources(root) : [];
if (ifStale && stale.length === 0) {
  console.log('gatehouse: dist/ is current, not compiling');
  process.exit(0);
}
if (tsc === null) {
  if (stale.length === 0) {
    console.log('gatehouse: dist/ is current (TypeScript is not installed, nothing was compiled)');
    process.exit(0);
  }
  console.error(
    `gatehouse: cannot build: TypeScript is not installed (npm ci --omit=dev leaves out the devDependencies) and ${describeStale(stale)}.\n` +
      'Build with the devDependencies and remove them afterwards: npm ci && npm prune --omit=dev (see docs/production.md)',
  );
  process.exit(1);
}
const result = spawnSync(process.execPath, [tsc, '-p', 'tsconfig.json'], { cwd: root, stdio: 'inherit' });
if (result.error) {
  console.error(`gatehouse: cannot run the TypeScript compiler: ${result.error.message}`);
  process.exit(1);
}
process.exit(result.status ?? 1);
