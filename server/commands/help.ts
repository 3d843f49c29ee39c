/** The help texts: one per command, printed by `gatehouse help NAME` and `gatehouse NAME --help`. */
import { surfacesOf, type CommandDefinition, type FlagDefinition } from './command.js';

export const PROGRAM = 'gatehouse';

function flagSynopsis(f: FlagDefinition): string {
  const text = f.type === 'string' ? `--${f.name} ${f.value ?? 'VALUE'}` : `--${f.name}`;
  return f.required ? text : `[${text}]`;
}

function argSynopsis(a: { name: string; optional?: boolean; variadic?: boolean }): string {
  const text = a.variadic ? `${a.name}...` : a.name;
  return a.optional ? `[${text}]` : text;
}

/** `gatehouse user add USER@DOMAIN [--config FILE] [--password-file FILE]` */
export function usageLine(def: CommandDefinition): string {
  return [PROGRAM, def.name, ...(def.args ?? []).map(argSynopsis), ...(def.flags ?? []).map(flagSynopsis)].join(' ');
}

const SERVER_NEED: Record<CommandDefinition['server'], string> = {
  no: '',
  'if-running': 'Asks the running server when there is one (over the control socket), else works on the database.',
  yes: 'Needs the running server (asks it over the control socket).',
};

/** A flag's description with its default, as the help and the reference show it. */
export function flagDoc(f: FlagDefinition): string {
  return f.default !== undefined ? `${f.doc} (default: ${f.default})` : f.doc;
}

function wrap(text: string, width: number, indent: string): string {
  const lines: string[] = [];
  let line = '';
  for (const word of text.split(/\s+/).filter(Boolean)) {
    if (line && line.length + 1 + word.length > width) {
      lines.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) lines.push(line);
  return lines.map((l) => indent + l).join('\n');
}

/** The whole help of one command. */
export function renderHelp(def: CommandDefinition): string {
  const out = [`Usage: ${usageLine(def)}`, '', wrap(`${def.summary[0]!.toUpperCase()}${def.summary.slice(1)}.`, 78, '')];
  for (const para of (def.description ?? '').split(/\n\s*\n/).map((p) => p.trim()).filter(Boolean)) out.push('', wrap(para, 78, ''));
  if (def.args?.length) {
    out.push('', 'Arguments:');
    for (const a of def.args) out.push(`  ${argSynopsis(a)}`, wrap(a.doc, 72, '      '));
  }
  if (def.flags?.length) {
    out.push('', 'Options:');
    for (const f of def.flags) out.push(`  ${flagSynopsis(f).replace(/^\[|\]$/g, '')}`, wrap(flagDoc(f), 72, '      '));
  }
  if (SERVER_NEED[def.server]) out.push('', wrap(SERVER_NEED[def.server], 78, ''));
  const surfaces = surfacesOf(def);
  if (surfaces.includes('http')) out.push(wrap(`Also served on the admin HTTP API: GET /api/${apiName(def)} (an admin session; flags as query parameters).`, 78, ''));
  return out.join('\n') + '\n';
}

/** The admin HTTP API path segment of a command: its words joined by '-'. */
export function apiName(def: Pick<CommandDefinition, 'name'>): string {
  return def.name.replace(/ /g, '-');
}

/** The list of commands (`gatehouse`, `gatehouse --help`). */
export function renderOverview(defs: readonly CommandDefinition[]): string {
  const width = Math.max(...defs.map((d) => d.name.length)) + 2;
  const lines = [`Usage: ${PROGRAM} COMMAND [options]`, '', 'Commands:'];
  for (const d of defs) lines.push(`  ${d.name.padEnd(width)}${d.summary}`);
  lines.push('', `Run ${PROGRAM} help COMMAND (or ${PROGRAM} COMMAND --help) for the options of one command; ${PROGRAM} --version prints the version.`);
  return lines.join('\n') + '\n';
}
