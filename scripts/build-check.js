/**
 * Is dist/ the build of the sources beside it? tsc copies each source file's text into its source
 * map (tsconfig.json: inlineSources), so the build is current exactly when every source file equals
 * that copy. Edits, checkouts, archives unpacked over an old tree: all are caught whatever the
 * files' modification times say. Plain JavaScript, because it runs before anything is compiled
 * (bin/gatehouse.js, scripts/build.js).
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';

/** What the server and the transports run from; the tests and scripts are not needed to run them. */
export const RUNTIME_DIRS = ['server', 'shared', 'storage', 'transports'];

function sourceFiles(root, dir) {
  const out = [];
  const walk = (rel) => {
    for (const entry of readdirSync(path.join(root, rel), { withFileTypes: true })) {
      const child = path.join(rel, entry.name);
      if (entry.isDirectory()) walk(child);
      else if (entry.name.endsWith('.ts') && !entry.name.endsWith('.d.ts')) out.push(child);
    }
  };
  if (existsSync(path.join(root, dir))) walk(dir);
  return out.sort();
}

function builtCopy(root, file) {
  try {
    const map = JSON.parse(readFileSync(path.join(root, 'dist', file.replace(/\.ts$/, '.js.map')), 'utf8'));
    const content = map?.sourcesContent?.[0];
    return typeof content === 'string' ? content : null;
  } catch {
    return null;
  }
}

/**
 * The source files under `dirs` whose build in dist/ is missing or was made from other text, each
 * with the reason ('not built' or 'changed'); empty when dist/ is current. A tree without sources
 * (only dist/ was shipped) has nothing to compare and counts as current.
 */
export function staleSources(root, dirs = RUNTIME_DIRS) {
  const stale = [];
  for (const dir of dirs) {
    for (const file of sourceFiles(root, dir)) {
      const built = builtCopy(root, file);
      if (built === null) stale.push({ file, reason: 'not built' });
      else if (built !== readFileSync(path.join(root, file), 'utf8')) stale.push({ file, reason: 'changed' });
    }
  }
  return stale;
}

/** One line about a non-empty staleSources() answer: the first few files and how many more. */
export function describeStale(stale) {
  if (stale.every((s) => s.reason === 'not built') && stale.some((s) => s.file === path.join('server', 'cli.ts'))) return 'dist/ is not built';
  const more = stale.length > 3 ? ` and ${stale.length - 3} more` : '';
  return `dist/ is older than the sources (changed since the build: ${stale.slice(0, 3).map((s) => s.file).join(', ')}${more})`;
}
