/**
 * Summarises a V8 .cpuprofile (node --cpu-prof, e.g. from `run.js --profile`): self time per
 * function and per file, heaviest first.
 *
 *   node dist/scripts/bench/profile-summary.js FILE.cpuprofile [top=30] [fromSeconds] [toSeconds]
 *
 * fromSeconds/toSeconds limit the summary to a time window (seconds since the profile started),
 * e.g. one scenario of the run. The third list charges every sample to the nearest Gatehouse
 * function on its stack (dist/server, dist/shared), so time spent inside libraries (TypeORM,
 * better-sqlite3, TLS) shows up at the Gatehouse code that asked for it.
 */
import { readFileSync } from 'node:fs';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}

interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

const file = process.argv[2];
if (!file) {
  console.error('usage: profile-summary FILE.cpuprofile [top]');
  process.exit(2);
}
const top = Number(process.argv[3] ?? 30);
const from = Number(process.argv[4] ?? 0) * 1e6;
const to = process.argv[5] === undefined ? Infinity : Number(process.argv[5]) * 1e6;
const p = JSON.parse(readFileSync(file, 'utf8')) as Profile;
const byId = new Map(p.nodes.map((n) => [n.id, n]));
const self = new Map<number, number>();
let t = 0;
for (let i = 0; i < p.samples.length; i++) {
  t += p.timeDeltas[i] ?? 0;
  if (t < from || t > to) continue;
  self.set(p.samples[i]!, (self.get(p.samples[i]!) ?? 0) + (p.timeDeltas[i] ?? 0));
}
const total = [...self.values()].reduce((a, b) => a + b, 0);

function shortUrl(url: string): string {
  if (!url) return '(native)';
  const i = url.indexOf('/dist/');
  if (i >= 0) return url.slice(i + 1);
  const j = url.indexOf('node_modules/');
  if (j >= 0) return url.slice(j);
  return url.replace(/^file:\/\//, '');
}

const fns = new Map<string, number>();
const files = new Map<string, number>();
for (const [id, us] of self) {
  const n = byId.get(id)!;
  const cf = n.callFrame;
  const key = `${cf.functionName || '(anonymous)'}  ${shortUrl(cf.url)}${cf.url ? `:${cf.lineNumber + 1}` : ''}`;
  fns.set(key, (fns.get(key) ?? 0) + us);
  const f = cf.url ? shortUrl(cf.url) : cf.functionName.startsWith('(') ? cf.functionName : '(native)';
  files.set(f, (files.get(f) ?? 0) + us);
}

const parent = new Map<number, number>();
for (const n of p.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const isApp = (url: string) => url.includes('/dist/') && !url.includes('node_modules') && !url.includes('/dist/scripts/');
const byApp = new Map<string, number>();
for (const [id, us] of self) {
  let cur: number | undefined = id;
  let key = '(no Gatehouse frame: idle, GC, event loop)';
  while (cur !== undefined) {
    const cf = byId.get(cur)!.callFrame;
    if (isApp(cf.url)) {
      key = `${cf.functionName || '(anonymous)'}  ${shortUrl(cf.url)}:${cf.lineNumber + 1}`;
      break;
    }
    cur = parent.get(cur);
  }
  byApp.set(key, (byApp.get(key) ?? 0) + us);
}

const pct = (us: number) => ((100 * us) / total).toFixed(1).padStart(5) + ' %';
console.log(`${file}: ${(total / 1e6).toFixed(2)} s sampled (profile ${((p.endTime - p.startTime) / 1e6).toFixed(1)} s long)`);
console.log('\nself time by function:');
for (const [k, us] of [...fns].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`);
console.log('\nself time by file:');
for (const [k, us] of [...files].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`);
console.log('\nself time charged to the nearest Gatehouse function:');
for (const [k, us] of [...byApp].sort((a, b) => b[1] - a[1]).slice(0, top)) console.log(`${pct(us)}  ${k}`);
