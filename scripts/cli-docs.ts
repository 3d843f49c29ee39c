/**
 * Generates docs/cli.md and the man page docs/gatehouse.1 from the command definitions.
 *
 *   node dist/scripts/cli-docs.js --write   rewrite both files
 *   node dist/scripts/cli-docs.js --check   exit 1 if either is out of date
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commands } from '../server/cli/commands.js';
import { renderCliReference, renderManPage } from '../server/commands/docs.js';
import { packageVersion } from '../server/commands/version.js';

/** The repository root (this file runs from dist/scripts/). */
const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/** Each generated file with its path relative to the repository root. */
export function generatedCliDocs(): { file: string; text: string }[] {
  const defs = Object.values(commands);
  return [
    { file: 'docs/cli.md', text: renderCliReference(defs) },
    { file: 'docs/gatehouse.1', text: renderManPage(defs, packageVersion()) },
  ];
}

function current(file: string): string | null {
  try {
    return readFileSync(join(ROOT, file), 'utf8');
  } catch {
    return null;
  }
}

const invokedDirectly = process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1];
if (invokedDirectly) {
  const mode = process.argv[2];
  const docs = generatedCliDocs();
  if (mode === '--write') {
    for (const d of docs) writeFileSync(join(ROOT, d.file), d.text);
    console.log(`wrote ${docs.map((d) => d.file).join(', ')}`);
  } else if (mode === '--check') {
    const stale = docs.filter((d) => current(d.file) !== d.text).map((d) => d.file);
    if (stale.length) {
      console.error(`${stale.join(', ')} out of date: run \`npx tsc -p tsconfig.json && node dist/scripts/cli-docs.js --write\``);
      process.exit(1);
    }
  } else {
    console.error('usage: node dist/scripts/cli-docs.js --write | --check');
    process.exit(2);
  }
}
