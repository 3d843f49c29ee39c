#!/usr/bin/env node
// The `gatehouse` command. It runs the build in dist/, and refuses to when that build is missing
// or older than the sources beside it (npm run build makes it current).
import { fileURLToPath } from 'node:url';
import { describeStale, staleSources } from '../scripts/build-check.js';

const root = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const stale = staleSources(root);
if (stale.length > 0) {
  console.error(`gatehouse: ${describeStale(stale)}; run npm run build in ${root} first`);
  process.exit(2);
}
await import('../dist/server/cli.js');
