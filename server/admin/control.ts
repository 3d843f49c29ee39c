/**
 * The local admin control channel: how `gatehouse` CLI commands talk to the running server.
 *
 * Transport: a unix domain socket at `<dataDir>/control.sock`, created with mode 0600 (the process
 * umask is narrowed while binding, so there is no moment in which the socket is more open) and
 * removed when the server stops. A socket left behind by a killed server is detected (nobody
 * answers on it) and replaced; if another live server answers on it, this server refuses to start,
 * since two servers on one data directory would share a database and certificates.
 *
 * Admin boundary (PRIVACY.md P21): whoever can open the socket is an administrator. The file mode
 * lets only the operating-system user that runs the server (and root) connect; there is no password
 * on top of that. Run admin commands as that user (`sudo -u gatehouse gatehouse sessions`). Every
 * command is logged with its name (never its arguments), so reads of audit data (the live session
 * list names JIDs and IPs) leave a trace.
 *
 * Protocol: newline-delimited JSON. A request is `{"id": any, "command": "name", "args": {...}}`,
 * a response `{"id": same, "ok": true, "result": ...}` or `{"id": same, "ok": false, "error": "one
 * line"}`. Requests on one connection are answered in order. A line longer than 1 MiB closes the
 * connection.
 *
 * Commands (for feature modules): a module gives the handlers of its control commands in its
 * `commands.control` declaration (GatehouseModule, core/context.ts), closures over the state its
 * load() builds; the socket serves those of the server's modules (controlHandlers below):
 *
 *   commands: { control: { 'blocks.lift': {
 *     summary: 'lift a temporary block',
 *     handler: async (args) => { ... return { lifted: true }; },   // JSON-serialisable result
 *   } } },
 *
 * A handler throws ControlError for a one-line error the CLI prints as is; any other error is
 * reported as "internal error" (its details go to the server log only). Built-in command:
 * `commands` (names and summaries); `status` is the operator module's (modules/operator/).
 * On the CLI side, `controlRequest(dataDir, command, args)` sends one request and returns the result.
 * A CLI command that asks the running server names its control command in its definition
 * (`control`, server/commands/command.ts); the admin HTTP API (api.ts) calls the same handlers
 * in-process, so the socket and the API share one implementation per command.
 *
 * The socket is opened by the module `createControlModule()` (one instance per server start, as
 * allModules() creates them); without it, registered commands are simply unreachable.
 */
import { connect, createServer, type Server, type Socket } from 'node:net';
import cluster from 'node:cluster';
import { chmodSync, lstatSync, unlinkSync } from 'node:fs';
import path from 'node:path';
import type { GatehouseModule, ServerContext } from '../core/context.js';
import { ControlError, type ControlArgs, type ControlHandler } from '../commands/command.js';

export const CONTROL_SOCKET = 'control.sock';
/** Longest request or response line. */
export const MAX_LINE_BYTES = 1024 * 1024;

/** Nobody listens on the control socket: the server is not running on this data directory. */
export class ServerNotRunningError extends Error {}

/**
 * The control commands the server's modules declare, by name, without those whose module is not
 * loaded or has its feature off (checkModuleOrder, core/module.ts, refuses a name declared twice).
 */
export function controlHandlers(ctx: ServerContext): Map<string, ControlHandler> {
  const out = new Map<string, ControlHandler>();
  for (const m of ctx.modules) {
    for (const [name, handler] of Object.entries(m.commands?.control ?? {})) {
      if (handler.available?.() !== false) out.set(name, handler);
    }
  }
  return out;
}

export function controlSocketPath(dataDir: string): string {
  return path.join(dataDir, CONTROL_SOCKET);
}

// ---- server side ----

interface Request {
  id: unknown;
  command: unknown;
  args?: unknown;
}

/** Listens on the control socket of `ctx`'s data directory. */
export class ControlServer {
  private server: Server | null = null;
  private readonly sockets = new Set<Socket>();
  readonly path: string;

  constructor(private readonly ctx: ServerContext) {
    this.path = controlSocketPath(ctx.config.dataDir);
  }

  async start(): Promise<void> {
    // sockaddr_un.sun_path: 108 bytes on Linux, 104 on macOS/BSD, including the final NUL.
    if (Buffer.byteLength(this.path) > 103) {
      throw new Error(`the control socket path ${this.path} is too long for a unix socket (at most 103 bytes); choose a shorter dataDir`);
    }
    await removeStaleSocket(this.path);
    const server = createServer((socket) => this.onConnection(socket));
    server.on('error', (err) => this.ctx.log.error('control socket error', { error: err.message }));
    // The socket file is created by bind() inside listen(): narrow the umask around it so the file
    // is never accessible to other users, not even for a moment before the chmod below.
    let previous: number | null = null;
    try {
      previous = process.umask(0o177);
    } catch {
      // umask cannot be changed in a worker thread; the chmod below still applies
    }
    try {
      await new Promise<void>((resolve, reject) => {
        const onError = (err: Error) => reject(err);
        server.once('error', onError);
        server.listen(this.path, () => {
          server.off('error', onError);
          resolve();
        });
      });
    } catch (err) {
      throw new Error(`cannot open the control socket ${this.path}: ${(err as Error).message}`);
    } finally {
      if (previous !== null) process.umask(previous);
    }
    chmodSync(this.path, 0o600);
    this.server = server;
    this.ctx.log.info('control socket listening', { path: this.path });
  }

  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = null;
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((resolve) => server.close(() => resolve()));
    try {
      unlinkSync(this.path);
    } catch {
      // already removed by close()
    }
  }

  private onConnection(socket: Socket): void {
    this.sockets.add(socket);
    socket.on('close', () => this.sockets.delete(socket));
    socket.on('error', () => socket.destroy());
    socket.setEncoding('utf8');
    let buffer = '';
    let chain: Promise<void> = Promise.resolve();
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim() === '') continue;
        chain = chain
          .then(() => this.answer(line))
          .then(
            (response) => {
              if (!socket.destroyed) socket.write(response + '\n');
            },
            () => {
              socket.destroy();
            },
          );
      }
      if (Buffer.byteLength(buffer) > MAX_LINE_BYTES) {
        socket.end(JSON.stringify({ id: null, ok: false, error: 'request too long' }) + '\n');
        socket.destroy();
      }
    });
  }

  private async answer(line: string): Promise<string> {
    let req: Request;
    try {
      req = JSON.parse(line) as Request;
    } catch {
      return JSON.stringify({ id: null, ok: false, error: 'request is not valid JSON' });
    }
    if (typeof req !== 'object' || req === null || Array.isArray(req)) return JSON.stringify({ id: null, ok: false, error: 'request must be a JSON object' });
    const id = req.id ?? null;
    if (typeof req.command !== 'string') return JSON.stringify({ id, ok: false, error: 'request has no command' });
    const args = req.args === undefined || req.args === null ? {} : req.args;
    if (typeof args !== 'object' || Array.isArray(args)) return JSON.stringify({ id, ok: false, error: 'args must be a JSON object' });
    const name = req.command;
    const command = this.builtin(name) ?? controlHandlers(this.ctx).get(name);
    if (!command) return JSON.stringify({ id, ok: false, error: `unknown command ${JSON.stringify(name).slice(0, 80)}` });
    // P21: the admin's reads are logged (the command name only; arguments may name users).
    this.ctx.log.info('control command', { command: name });
    try {
      const result = await command.handler(args as ControlArgs);
      // Inside the try: a result that cannot be serialised is a handler bug, reported as such.
      return JSON.stringify({ id, ok: true, result: result ?? null });
    } catch (err) {
      if (err instanceof ControlError) return JSON.stringify({ id, ok: false, error: oneLine(err.message) });
      this.ctx.log.error('control command failed', { command: name, error: err instanceof Error ? err.message : String(err) });
      return JSON.stringify({ id, ok: false, error: 'internal error (see the server log)' });
    }
  }

  private builtin(name: string): ControlHandler | undefined {
    if (name === 'commands') {
      return {
        summary: 'list the control commands',
        handler: () => [
          { name: 'commands', summary: 'list the control commands' },
          ...[...controlHandlers(this.ctx)].map(([n, c]) => ({ name: n, summary: c.summary })).sort((a, b) => (a.name < b.name ? -1 : 1)),
        ],
      };
    }
    return undefined;
  }
}

function oneLine(s: string): string {
  return s.replace(/\s*[\r\n]+\s*/g, ' ').slice(0, 500);
}

/**
 * Clears the way for a new socket: nothing there is fine; a socket nobody answers on (left by a
 * killed server) is removed; a live one means another server uses this data directory; any other
 * kind of file is not ours to delete.
 */
async function removeStaleSocket(file: string): Promise<void> {
  let isSocket: boolean;
  try {
    isSocket = lstatSync(file).isSocket();
  } catch {
    return;
  }
  if (!isSocket) throw new Error(`${file} exists and is not a socket; remove it or choose another dataDir`);
  const alive = await new Promise<boolean>((resolve) => {
    const s = connect(file);
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
  if (alive) throw new Error(`another Gatehouse server is running with this data directory (it answers on ${file})`);
  unlinkSync(file);
}

/**
 * The module that runs the control socket. A factory: each server (tests run several in one
 * process) gets its own instance, since unload() is not told which server is stopping. Call it
 * inside allModules() so every server start gets a fresh one.
 */
export function createControlModule(): GatehouseModule {
  let server: ControlServer | null = null;
  return {
    name: 'admin-control',
    specs: [],
    clauses: ['P21'],
    async load(ctx: ServerContext) {
      // `gatehouse start --nodes N` (server/cli/nodes.ts): the nodes share the data directory, and
      // node 1 answers its control socket for all of them.
      const worker = Number(process.env.GATEHOUSE_NODE_INDEX ?? '0');
      if (cluster.isWorker && worker > 1) return;
      server = new ControlServer(ctx);
      await server.start();
    },
    async unload() {
      await server?.stop();
      server = null;
    },
  };
}

// ---- client side (the CLI) ----

/** Sends one command to the running server and returns its result; throws a one-line Error. */
export async function controlRequest(dataDir: string, command: string, args: ControlArgs = {}, timeoutMs = 10_000): Promise<unknown> {
  const file = controlSocketPath(dataDir);
  return new Promise((resolve, reject) => {
    const socket = connect(file);
    let buffer = '';
    let done = false;
    const finish = (err: Error | null, value?: unknown) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    const timer = setTimeout(() => finish(new Error(`the server did not answer on ${file} within ${Math.round(timeoutMs / 1000)} s`)), timeoutMs);
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(JSON.stringify({ id: 1, command, args }) + '\n'));
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      const nl = buffer.indexOf('\n');
      if (nl < 0) {
        if (Buffer.byteLength(buffer) > 64 * MAX_LINE_BYTES) finish(new Error('the server sent an oversized answer'));
        return;
      }
      let res: { ok?: unknown; result?: unknown; error?: unknown };
      try {
        res = JSON.parse(buffer.slice(0, nl));
      } catch {
        return finish(new Error('the server sent an answer that is not JSON'));
      }
      if (res.ok === true) finish(null, res.result);
      else finish(new ControlError(typeof res.error === 'string' ? res.error : 'the command failed'));
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT' || err.code === 'ECONNREFUSED') finish(new ServerNotRunningError(`the server is not running (no control socket at ${file})`));
      else if (err.code === 'EACCES' || err.code === 'EPERM') finish(new Error(`permission denied on ${file}: run this as the user that runs the server`));
      else finish(new Error(`cannot reach the server on ${file}: ${err.code ?? err.message}`));
    });
    socket.on('close', () => finish(new Error('the server closed the control connection without an answer')));
  });
}
