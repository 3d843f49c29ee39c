/**
 * One definition per administrative command, served on every surface it is marked for:
 *
 *   cli      `gatehouse NAME ...` (server/cli.ts); every command is served there
 *   control  the control socket of a running server (server/admin/control.ts): `control` names the
 *            socket command the CLI asks when the command needs the running server (e.g. `user del`
 *            closes the account's sessions; `sessions` lists them)
 *   http     the admin HTTP API, `GET /api/NAME` on the admin listener, for an admin session as the
 *            console uses (server/admin/http.ts); its query parameters are the command's flags
 *
 * The help text (`gatehouse help NAME`, `gatehouse NAME --help`), the usage line, docs/cli.md and the
 * man page docs/gatehouse.1 are all generated from these fields, so there is one text to maintain.
 */
import type { GatehouseModule, ServerContext } from '../core/context.js';

/** What a parsed command line is: positionals in order, flags by name (`true` for a flag without value). */
export interface ParsedArgs {
  positional: string[];
  flags: Map<string, string | true>;
}

export interface FlagDefinition {
  /** Without the dashes: `dry-run` for `--dry-run`. */
  name: string;
  /** `boolean`: present or not; `string`: takes a value (`--name VALUE` or `--name=VALUE`). */
  type: 'boolean' | 'string';
  /** The value's placeholder in usage lines (FILE, JID, ...); string flags only. */
  value?: string;
  /** One or two sentences for the help text and the reference. */
  doc: string;
  /** The value used when the flag is not given, as documented (the command applies it). */
  default?: string;
  /** Required for the command to do anything (still parsed as a flag). */
  required?: boolean;
}

export interface ArgDefinition {
  /** The placeholder shown in usage lines: USER@DOMAIN, BACKUP-FILE. */
  name: string;
  doc: string;
  optional?: boolean;
  /** Takes one or more (or, when optional, any number of) values. */
  variadic?: boolean;
}

/** Whether the command needs the running server (reached through the control socket). */
export type ServerNeed =
  /** works on the configuration and the database alone */
  | 'no'
  /** asks the running server when there is one, else works on the database */
  | 'if-running'
  /** only works against a running server */
  | 'yes';

export interface HttpApi {
  /**
   * Answers `GET /api/NAME` with a JSON-serialisable value; throw UsageError for a bad parameter
   * (400). Without it, the handler of the command's `control` socket command answers, with the
   * string flags as its arguments: one server-side implementation for the socket and the API.
   */
  serve?(ctx: ServerContext, args: ParsedArgs): unknown | Promise<unknown>;
  /** What an admin read through this call (for the P21 audit record); null when it reads no personal data. */
  audit?: (result: unknown) => string | null;
}

export interface CommandDefinition {
  /** One or two words: `start`, `user add`. */
  name: string;
  /** One line, lower case, no full stop: shown in the command list. */
  summary: string;
  /** Paragraphs of help after the usage line (blank-line separated); plain text. */
  description?: string;
  args?: readonly ArgDefinition[];
  flags?: readonly FlagDefinition[];
  server: ServerNeed;
  /**
   * The control-socket command the CLI asks a running server (see ServerNeed): `user del` has the
   * server delete the account, `sessions` asks for the live list, `stats` has it write the figures
   * it holds in memory before reading them. The module that owns the state gives its handler in
   * its `commands.control` declaration.
   */
  control?: string;
  /** Also served on the admin HTTP API. */
  http?: HttpApi;
  /** Runs the command on the command line; resolves with the exit code. */
  run(args: ParsedArgs, ctx: CommandContext): Promise<number>;
}

/**
 * What the command surface (server/cli/commands.ts) hands every command it runs, so that a command
 * reads what it needs of the other modules here instead of importing them.
 */
export interface CommandContext {
  /**
   * The server's modules as modules/index.ts lists them: fresh instances, not loaded (no server
   * runs in the CLI process). A command reads their declarations, e.g. `retention run` sweeps the
   * retention classes of exactly these.
   */
  readonly modules: readonly GatehouseModule[];
}

/** The arguments of a control-socket request (a JSON object). */
export type ControlArgs = Record<string, unknown>;

/**
 * The server-side handler of a control-socket command (a definition's `control` name), given by the
 * module that holds the state in its `commands.control` declaration (ModuleCommands below); the
 * control socket and the admin HTTP API serve it while that module is loaded.
 */
export interface ControlHandler {
  summary: string;
  /** False while the module's feature is off in the configuration: the command is then unknown. */
  available?(): boolean;
  /** Resolves with a JSON-serialisable result; throws ControlError for a one-line error shown as is. */
  handler(args: ControlArgs): unknown | Promise<unknown>;
}

/** An error whose message is shown to the admin as is (one line, no internals). */
export class ControlError extends Error {}

declare module '../core/context.js' {
  interface GatehouseModule {
    /**
     * The module's administrative commands: `cli` definitions join the `gatehouse` command list
     * (and the admin HTTP API when marked `http`); `control` handlers are served on the control
     * socket and the admin API while the module is loaded (closures over the state load() builds).
     */
    readonly commands?: ModuleCommands;
  }
}

/** What a module declares in its `commands` slot (core/context.ts GatehouseModule). */
export interface ModuleCommands {
  /** Commands of the `gatehouse` CLI (and, when marked `http`, of the admin HTTP API). */
  readonly cli?: readonly CommandDefinition[];
  /** Handlers of control-socket commands, by name (a definition's `control` names one). */
  readonly control?: Readonly<Record<string, ControlHandler>>;
}

/** A usage mistake: printed with the command's name, exit code 2. */
export class UsageError extends Error {}

/** The flag every command that reads the server configuration takes. */
export const CONFIG_FLAG: FlagDefinition = {
  name: 'config',
  type: 'string',
  value: 'FILE',
  doc: 'the configuration file (YAML); without it, the embedded defaults (see docs/configuration.md)',
};

/** A set of definitions keyed by name (the shape the CLI, the docs and the tests look them up in). */
export type CommandSet = Record<string, CommandDefinition>;

/** Builds a CommandSet, checking that every name is given once. */
export function commandSet(...defs: CommandDefinition[]): CommandSet {
  const out: CommandSet = {};
  for (const d of defs) {
    if (Object.hasOwn(out, d.name)) throw new Error(`command ${d.name} is defined twice`);
    out[d.name] = d;
  }
  return out;
}

/** The surfaces a command is served on, for help and docs. */
export function surfacesOf(def: CommandDefinition): ('cli' | 'control' | 'http')[] {
  return ['cli' as const, ...(def.control ? ['control' as const] : []), ...(def.http ? ['http' as const] : [])];
}
