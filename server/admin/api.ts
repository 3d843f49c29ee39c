/**
 * The admin HTTP API: `GET /api/NAME` answers the commands marked `http` with JSON, for an admin
 * session as the console uses (server/admin/http.ts checks it before calling here). Reads of
 * personal data are recorded with auditRead (P21), as the console's pages do. Query
 * parameters are the command's flags (`?since=48h&series=logins`); an unknown one is a 400 with a
 * suggestion, as on the command line.
 */
import type { ServerContext } from '../core/context.js';
import { controlHandlers } from './control.js';
import { ControlError, UsageError, type CommandDefinition, type ParsedArgs } from '../commands/command.js';
import { apiName } from '../commands/help.js';
import { closest } from '../commands/parse.js';
import { auditRead } from '../modules/policy/admins.js';

/** The commands served on the admin HTTP API: those marked `http` that the server's modules declare. */
function apiCommands(ctx: ServerContext): CommandDefinition[] {
  return ctx.modules.flatMap((m) => m.commands?.cli ?? []).filter((d) => d.http);
}

interface ApiAnswer {
  status: number;
  body: unknown;
}

function argsFromQuery(def: CommandDefinition, query: URLSearchParams): ParsedArgs {
  const known = new Map((def.flags ?? []).filter((f) => f.name !== 'config' && f.name !== 'json').map((f) => [f.name, f]));
  const flags = new Map<string, string | true>();
  for (const [name, value] of query) {
    const flag = known.get(name);
    if (!flag) {
      const near = closest(name, known.keys());
      throw new UsageError(`unknown parameter ${name}${near ? `; did you mean ${near}?` : ''}`);
    }
    flags.set(name, flag.type === 'string' ? value : true);
  }
  return { positional: [], flags };
}

/** Answers one API request of the administrator `adminJid` (`name` is the path after /api/). */
export async function answerApi(ctx: ServerContext, adminJid: string, name: string, query: URLSearchParams): Promise<ApiAnswer> {
  const def = apiCommands(ctx).find((d) => apiName(d) === name);
  if (!def?.http) return { status: 404, body: { error: `no API command ${JSON.stringify(name.slice(0, 80))}` } };
  let args: ParsedArgs;
  try {
    args = argsFromQuery(def, query);
  } catch (err) {
    return { status: 400, body: { error: (err as Error).message } };
  }
  const http = def.http;
  let serve = http.serve?.bind(http);
  if (!serve && def.control) {
    const control = controlHandlers(ctx).get(def.control);
    if (control) serve = (_ctx, a) => control.handler(Object.fromEntries([...a.flags].filter(([, v]) => typeof v === 'string')));
  }
  if (!serve) return { status: 503, body: { error: `${def.name} is not available: the module that answers it is not loaded` } };
  try {
    const result = await serve(ctx, args);
    const read = http.audit?.(result);
    if (read) auditRead(ctx, { jid: adminJid }, read);
    return { status: 200, body: result ?? null };
  } catch (err) {
    if (err instanceof UsageError || err instanceof ControlError) return { status: 400, body: { error: err.message } };
    throw err;
  }
}
