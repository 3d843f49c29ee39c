/** Runs the real `gatehouse start` command in a child process, as an operator would. */
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { writeClusterSecrets } from './cluster-secrets.js';

export const CLI = fileURLToPath(new URL('../../server/cli.js', import.meta.url));

export interface ServerProcess {
  proc: ChildProcess;
  port: number;
  tlsPort: number;
  output: string[];
  /** Resolves with the exit code or signal once the process has ended. */
  exited: Promise<number | string>;
}

/** Writes `config` as YAML into `dir` and starts the server; resolves when it listens. */
export async function startServerProcess(dir: string, config: Record<string, unknown>): Promise<ServerProcess> {
  const path = join(dir, 'gatehouse.yaml');
  writeFileSync(path, stringify(config));
  // Cluster nodes share these files (a node whose copies differ refuses to join).
  if ((config.cluster as { enabled?: boolean } | undefined)?.enabled) writeClusterSecrets(dir);
  return startServerProcessWith(['start', '--config', path], JSON.stringify(config));
}

/** Runs `gatehouse ARGS` (a start command) and resolves when it listens for clients. */
export async function startServerProcessWith(cliArgs: string[], configText = ''): Promise<ServerProcess> {
  const config = configText;
  const proc = spawn(process.execPath, [CLI, ...cliArgs], { stdio: ['ignore', 'pipe', 'pipe'] });
  const output: string[] = [];
  const exited = new Promise<number | string>((resolve) => proc.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown')));
  const ports = await new Promise<{ port: number; tlsPort: number }>((resolve, reject) => {
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString();
      output.push(d.toString());
      const plain = /clients \(STARTTLS\): \S+ port (\d+)/.exec(text);
      const tls = /clients \(direct TLS\): \S+ port (\d+)/.exec(text);
      if (plain && (tls || !/direct TLS/.test(config))) resolve({ port: Number(plain[1]), tlsPort: tls ? Number(tls[1]) : 0 });
    };
    proc.stdout!.on('data', onData);
    proc.stderr!.on('data', (d: Buffer) => output.push(d.toString()));
    void exited.then((code) => reject(new Error(`server exited (${code}) before listening: ${output.join('')}`)));
    setTimeout(() => reject(new Error(`server did not start: ${output.join('')}`)), 20_000).unref();
  });
  return { proc, output, exited, ...ports };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
  /** stdout and stderr as they arrived. */
  out: string;
}

/** Runs `gatehouse <args>` (the built CLI) to its end. */
export async function runCli(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<CliResult> {
  const proc = spawn(process.execPath, [CLI, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env });
  let stdout = '';
  let stderr = '';
  let out = '';
  proc.stdout!.on('data', (d: Buffer) => ((stdout += d), (out += d)));
  proc.stderr!.on('data', (d: Buffer) => ((stderr += d), (out += d)));
  const code = await new Promise<number>((resolve) => proc.on('close', (c) => resolve(c ?? 1)));
  return { code, stdout, stderr, out };
}
