/**
 * Starts a real IRC server from Debian (ngIRCd, /usr/sbin/ngircd) for a test: a generated
 * configuration in a temporary directory, random loopback ports, optionally a TLS port with a
 * freshly made self-signed certificate, a server password and IRC operators. The server can be
 * killed and started again on the same ports (reconnection tests).
 *
 * Why ngIRCd: it starts in milliseconds from one small file and needs no services. It has no
 * SASL and no NickServ; NickServ is simulated in tests by a raw client registered as "NickServ"
 * (see test/helpers/irc-client.ts), and SASL PLAIN is tested against a scripted fake server.
 *
 * Tests that use it take their `skip` option from skipWithout('ngircd') (test/helpers/requirements.ts):
 * skipped with the reason locally, a failure when GATEHOUSE_TEST_REQUIRE names ngircd (CI).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { reservedPort } from './ports.js';
import { X509Certificate } from 'node:crypto';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { generate } from 'selfsigned';
import { NGIRCD } from './requirements.js';

export { NGIRCD };

export interface IrcdOptions {
  /** The server's IRC name (must contain a dot). */
  name?: string;
  /** Global connection password (PASS). */
  password?: string;
  /** Also listen for TLS, with a self-signed certificate for 127.0.0.1 and localhost. */
  tls?: boolean;
  /** IRC operators: OPER name password. */
  operators?: { name: string; password: string }[];
  maxNickLength?: number;
  motd?: string;
  /** Send "NOTICE *" server notices during registration (default true). */
  noticeBeforeRegistration?: boolean;
  /** ngIRCd's penalty time per command; 0 (the default here) disables its input throttling. */
  maxPenaltyTime?: number;
  /** Ask each client's identd (RFC 1413, port 113 of the client's address) for its user name. */
  ident?: boolean;
  /** Reverse-DNS lookups of connecting clients (with noticeBeforeRegistration: "*** Looking up your hostname" notices). */
  dns?: boolean;
}

export interface Ircd {
  readonly host: '127.0.0.1';
  readonly name: string;
  readonly port: number;
  /** 0 unless started with tls. */
  readonly tlsPort: number;
  /** PEM of the self-signed certificate (tls only). */
  readonly certPem: string | null;
  /** SHA-256 fingerprint of that certificate, colon-separated upper-case hex as Node prints it. */
  readonly certFingerprint256: string | null;
  readonly dir: string;
  /** Everything ngIRCd printed. */
  readonly output: string[];
  readonly running: boolean;
  /** SIGKILL: connections die without a goodbye. */
  kill(): Promise<void>;
  /** Starts again on the same ports. */
  restart(): Promise<void>;
  /** SIGTERM, then removes the temporary directory. */
  stop(): Promise<void>;
}


async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

export async function startNgircd(opts: IrcdOptions = {}): Promise<Ircd> {
  if (!existsSync(NGIRCD)) throw new Error(`${NGIRCD} is not installed (apt-get install ngircd)`);
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ircd-'));
  // ngIRCd drops root privileges to "nobody": the directory and its files must stay readable.
  chmodSync(dir, 0o755);
  const name = opts.name ?? 'irc.test.example';
  let certPem: string | null = null;
  let fingerprint: string | null = null;
  const certPath = join(dir, 'server.crt');
  const keyPath = join(dir, 'server.key');
  if (opts.tls) {
    const now = new Date();
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      notBeforeDate: new Date(now.getTime() - 60_000),
      notAfterDate: new Date(now.getTime() + 86_400_000),
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2 as const, value: 'localhost' }, { type: 7 as const, ip: '127.0.0.1' }] },
      ],
    });
    writeFileSync(certPath, pems.cert, { mode: 0o644 });
    writeFileSync(keyPath, pems.private, { mode: 0o644 });
    certPem = pems.cert;
    fingerprint = new X509Certificate(pems.cert).fingerprint256;
  }

  const confPath = join(dir, 'ngircd.conf');
  let port = 0;
  let tlsPort = 0;
  const writeConfig = () => {
    const lines = [
      '[Global]',
      `Name = ${name}`,
      'Info = Gatehouse test server',
      'AdminInfo1 = test',
      'AdminInfo2 = test',
      'AdminEMail = test@example.invalid',
      'Listen = 127.0.0.1',
      `Ports = ${port}`,
      `MotdPhrase = ${opts.motd ?? 'Welcome to the Gatehouse test IRC server'}`,
      ...(opts.password ? [`Password = ${opts.password}`] : []),
      '[Limits]',
      `MaxNickLength = ${opts.maxNickLength ?? 30}`,
      'MaxJoins = 50',
      'MaxConnectionsIP = 0',
      `MaxPenaltyTime = ${opts.maxPenaltyTime ?? 0}`,
      'PingTimeout = 120',
      'PongTimeout = 20',
      '[Options]',
      'PAM = no',
      `Ident = ${opts.ident ? 'yes' : 'no'}`,
      (opts.dns ? 'DNS = yes' : 'DNS = no'),
      'OperCanUseMode = yes',
      `NoticeBeforeRegistration = ${opts.noticeBeforeRegistration === false ? 'no' : 'yes'}`,
    ];
    if (opts.tls) lines.push('[SSL]', `CertFile = ${certPath}`, `KeyFile = ${keyPath}`, `Ports = ${tlsPort}`);
    for (const op of opts.operators ?? []) lines.push('[Operator]', `Name = ${op.name}`, `Password = ${op.password}`);
    writeFileSync(confPath, lines.join('\n') + '\n', { mode: 0o644 });
  };

  const output: string[] = [];
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();

  const launch = async (): Promise<void> => {
    const child = spawn(NGIRCD, ['-n', '-f', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
    proc = child;
    exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let text = '';
    const onData = (d: Buffer) => {
      text += d.toString();
      output.push(d.toString());
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    const deadline = Date.now() + 15_000;
    let gone = false;
    void exited.then(() => (gone = true));
    while (Date.now() < deadline) {
      if (gone) throw new Error(`ngircd exited: ${text}`);
      if (/ready\./.test(text) && (await canConnect(port)) && (!tlsPort || (await canConnect(tlsPort)))) return;
      await new Promise((r) => setTimeout(r, 50));
    }
    child.kill('SIGKILL');
    throw new Error(`ngircd did not start: ${text}`);
  };

  // A free port can be taken between probing and binding: retry with new ports.
  for (let attempt = 0; ; attempt++) {
    port = await reservedPort();
    tlsPort = opts.tls ? await reservedPort() : 0;
    writeConfig();
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 2) {
        rmSync(dir, { recursive: true, force: true });
        throw err;
      }
    }
  }

  const stopProc = async (signal: NodeJS.Signals) => {
    const p = proc as ChildProcess | null;
    if (!p || p.exitCode !== null || p.signalCode !== null) return;
    p.kill(signal);
    await exited;
  };

  const ircd: Ircd = {
    host: '127.0.0.1',
    name,
    get port() {
      return port;
    },
    get tlsPort() {
      return tlsPort;
    },
    certPem,
    certFingerprint256: fingerprint,
    dir,
    output,
    get running() {
      const p = proc as ChildProcess | null;
      return !!p && p.exitCode === null && p.signalCode === null;
    },
    async kill() {
      await stopProc('SIGKILL');
    },
    async restart() {
      await stopProc('SIGKILL');
      // The old listening socket may linger for a moment; ngIRCd retries are not built in.
      for (let attempt = 0; ; attempt++) {
        try {
          await launch();
          return;
        } catch (err) {
          if (attempt >= 20) throw err;
          await new Promise((r) => setTimeout(r, 250));
        }
      }
    },
    async stop() {
      await stopProc('SIGTERM');
      rmSync(dir, { recursive: true, force: true });
    },
  };
  return ircd;
}
