/**
 * One command surface: every command of `gatehouse` comes from one definition (server/commands),
 * which gives its help text, its flags (unknown ones are usage errors with a suggestion), the CLI
 * reference docs/cli.md and the man page docs/gatehouse.1.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { commandContext, commands } from '../../server/cli/commands.js';
import { runCommandLine } from '../../server/commands/run.js';
import { renderHelp } from '../../server/commands/help.js';
import { closest, levenshtein, parseArgs } from '../../server/commands/parse.js';
import { generatedCliDocs } from '../../scripts/cli-docs.js';
import { runCli } from '../helpers/server-process.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));

async function run(argv: string[]): Promise<{ code: number; out: string; err: string }> {
  let out = '';
  let err = '';
  const code = await runCommandLine(commands, argv, commandContext(), { out: (t) => void (out += t), err: (t) => void (err += t) });
  return { code, out, err };
}

test('gatehouse --version prints the version of package.json', async () => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  const r = await runCli(['--version']);
  assert.equal(r.code, 0, r.stderr);
  assert.equal(r.stdout, `gatehouse ${version}\n`);
});

test('gatehouse help COMMAND and gatehouse COMMAND --help print the same text, for every command', async () => {
  const spawned = await runCli(['help', 'user', 'add']);
  assert.equal(spawned.code, 0, spawned.stderr);
  assert.equal(spawned.stdout, (await runCli(['user', 'add', '--help'])).stdout);
  assert.match(spawned.stdout, /^Usage: gatehouse user add USER@DOMAIN \[--config FILE\] \[--password-file FILE\]\n/);
  for (const name of Object.keys(commands)) {
    const words = name.split(' ');
    const help = await run(['help', ...words]);
    const flag = await run([...words, '--help']);
    assert.equal(help.code, 0, name);
    assert.equal(flag.code, 0, name);
    assert.equal(help.out, flag.out, name);
    assert.equal(help.out, renderHelp(commands[name]!), name);
    for (const f of commands[name]!.flags ?? []) assert.ok(help.out.includes(`--${f.name}`), `${name}: --${f.name} is in the help`);
  }
});

test('an unknown flag is a usage error (exit code 2) that names the closest flag', async () => {
  const r = await runCli(['retention', 'run', '--dryrun']);
  assert.equal(r.code, 2);
  assert.equal(r.stderr, 'gatehouse retention run: unknown flag --dryrun; did you mean --dry-run?\n');
  const far = await run(['user', 'list', '--zzzzzzzz']);
  assert.equal(far.code, 2);
  assert.equal(far.err, 'gatehouse user list: unknown flag --zzzzzzzz\n');
  const boolWithValue = await run(['blocks', 'list', '--all=yes']);
  assert.equal(boolWithValue.code, 2);
  assert.equal(boolWithValue.err, 'gatehouse blocks list: --all takes no value\n');
  const noValue = await run(['user', 'add', 'alice@localhost', '--password-file']);
  assert.equal(noValue.code, 2, 'a string flag without its value is refused, not read from standard input');
  assert.equal(noValue.err, 'gatehouse user add: --password-file needs a value (--password-file FILE or --password-file=FILE)\n');
  // The case of issue #14: a mistyped --config used to start the server on the embedded defaults.
  const conf = await run(['start', '--conf', 'x']);
  assert.equal(conf.code, 2);
  assert.equal(conf.err, 'gatehouse start: unknown flag --conf; did you mean --config?\n');
  const top = await run(['--verison']);
  assert.equal(top.code, 2);
  assert.match(top.err, /unknown flag --verison; did you mean --version\?/);
});

test('an unknown command is a usage error that names the closest command', async () => {
  const sub = await runCli(['user', 'dell', 'alice@localhost']);
  assert.equal(sub.code, 2);
  assert.equal(sub.stderr, "gatehouse: unknown command 'user dell'; did you mean 'user del'? (see gatehouse --help)\n");
  const top = await run(['stat']);
  assert.equal(top.code, 2);
  assert.equal(top.err, "gatehouse: unknown command 'stat'; did you mean 'stats'? (see gatehouse --help)\n");
  const group = await run(['user']);
  assert.equal(group.code, 2);
  assert.equal(group.err, 'gatehouse user: give one of add, del, passwd, list, hashes, export, import\n');
  const groupTypo = await run(['backup', 'verfy', 'x.backup']);
  assert.equal(groupTypo.code, 2);
  assert.equal(groupTypo.err, "gatehouse: unknown command 'backup verfy'; did you mean 'backup verify'? (see gatehouse --help)\n");
  const help = await run(['help', 'nosuch']);
  assert.equal(help.code, 2);
  const none = await run([]);
  assert.equal(none.code, 2, 'no command: the list, as a usage error');
  assert.match(none.out, /^Usage: gatehouse COMMAND \[options\]\n\nCommands:\n {2}start /);
  assert.equal((await run(['--help'])).code, 0);
});

test('the definitions are complete: every flag and argument is documented, string flags name their value', () => {
  for (const [name, def] of Object.entries(commands)) {
    assert.equal(def.name, name);
    assert.match(def.summary, /^[a-z].*[^.]$/, `${name}: a summary in lower case without a full stop`);
    const seen = new Set<string>();
    for (const f of def.flags ?? []) {
      assert.ok(!seen.has(f.name), `${name}: --${f.name} twice`);
      seen.add(f.name);
      assert.match(f.name, /^[a-z][a-z0-9-]*$/);
      assert.ok(f.doc.length > 5, `${name} --${f.name} has a doc text`);
      if (f.type === 'string') assert.ok(f.value, `${name} --${f.name} names its value`);
    }
    for (const a of def.args ?? []) assert.ok(a.doc.length > 5, `${name} ${a.name} has a doc text`);
    if (def.server === 'yes') assert.ok(def.control, `${name} needs the server, so it names its control command`);
  }
  assert.ok(commands['user del']!.control && commands['sessions']!.control, 'user del and sessions reach the running server');
  assert.ok(commands['sessions']!.http && commands['stats']!.http, 'sessions and stats are on the admin HTTP API');
});

test('flags are parsed by the definition: a string flag takes the next word, --name=value works, positionals stay in order', () => {
  const def = commands['stats']!;
  const args = parseArgs(['--series', 'logins', '--resolution=minute', '--json', '--config', 'c.yaml'], def);
  assert.deepEqual(Object.fromEntries(args.flags), { series: 'logins', resolution: 'minute', json: true, config: 'c.yaml' });
  assert.deepEqual(parseArgs(['a', '--force', 'b'], commands['user import']!).positional, ['a', 'b']);
  assert.equal(levenshtein('dryrun', 'dry-run'), 1);
  assert.equal(levenshtein('', 'abc'), 3);
  assert.equal(closest('confg', ['config', 'force']), 'config');
  assert.equal(closest('xyz', ['config', 'force']), null);
});

test('docs/cli.md and docs/gatehouse.1 are in sync with the command definitions', () => {
  for (const { file, text } of generatedCliDocs()) {
    let current: string | null = null;
    try {
      current = readFileSync(join(ROOT, file), 'utf8');
    } catch {
      // missing: reported below
    }
    assert.ok(current === text, `${file} is out of date; run: npx tsc -p tsconfig.json && node dist/scripts/cli-docs.js --write`);
  }
  const md = generatedCliDocs()[0]!.text;
  for (const name of Object.keys(commands)) assert.ok(md.includes(`## gatehouse ${name}\n`), `${name} has a section`);
  const man = generatedCliDocs()[1]!.text;
  assert.match(man, /^\.\\" .*\n\.TH GATEHOUSE 1 /);
  for (const line of man.split('\n')) {
    assert.ok(!line.startsWith("'"), line);
    if (line.startsWith('.')) assert.match(line, /^\.(\\"|TH|SH|SS|PP|TP|B|BI|I|br)( |$)/, `only known roff requests: ${line}`);
  }
});

test('the README links the CLI reference from its Command line section', () => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Command line'));
  assert.ok(readme.includes('## Command line'), 'the README has a Command line section');
  assert.match(section.slice(0, section.indexOf('\n## ', 3) > 0 ? section.indexOf('\n## ', 3) : undefined), /\(docs\/cli\.md\)/);
});
