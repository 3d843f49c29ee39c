/**
 * Starts a real InspIRCd 3 from Debian (/usr/sbin/inspircd) for a test: a generated configuration
 * in a temporary directory, a random loopback port, Debian's default flood limits of a connect
 * class (threshold 10, commandrate 1000: one command a second after ten, and a receive queue of
 * 8192 bytes whose overflow ends the connection with "RecvQ exceeded"), optionally ident lookups
 * (m_ident) and WEBIRC (m_cgiirc).
 *
 * Where InspIRCd differs from ngIRCd for the gateway: it cuts a client off that sends faster than
 * it reads (ngIRCd throttles and reads on), and it can trust WEBIRC from one password.
 *
 * Tests that use it take their `skip` option from skipWithout('inspircd').
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync, existsSync } from 'node:fs';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { reservedPort } from './ports.js';
import { generate } from 'selfsigned';
import { INSPIRCD } from './requirements.js';

export interface InspircdOptions {
  name?: string;
  /** m_ident: ask each client's identd (port 113 of its address). */
  ident?: boolean;
  /** m_cgiirc: trust WEBIRC lines with this password from any host. */
  webircPassword?: string;
  /** Also listen for TLS (m_ssl_gnutls), with a self-signed certificate for 127.0.0.1 and localhost. */
  tls?: boolean;
}

export interface Inspircd {
  readonly host: '127.0.0.1';
  readonly name: string;
  readonly port: number;
  /** 0 unless started with tls. */
  readonly tlsPort: number;
  /** PEM of the self-signed certificate (tls only). */
  readonly certPem: string | null;
  /** InspIRCd's log (connections, quits), for assertions. */
  log(): string;
  stop(): Promise<void>;
}

async function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect({ host: '127.0.0.1', port });
    s.once('connect', () => (s.destroy(), resolve(true)));
    s.once('error', () => resolve(false));
  });
}

export async function startInspircd(opts: InspircdOptions = {}): Promise<Inspircd> {
  if (!existsSync(INSPIRCD)) throw new Error(`${INSPIRCD} is not installed (apt-get install inspircd)`);
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-inspircd-'));
  const name = opts.name ?? 'irc.insp.example';
  const logFile = join(dir, 'ircd.log');
  writeFileSync(join(dir, 'motd'), 'Gatehouse InspIRCd test server\n');
  let port = 0;
  let tlsPort = 0;
  let certPem: string | null = null;
  if (opts.tls) {
    const pems = await generate([{ name: 'commonName', value: 'localhost' }], {
      keyType: 'ec',
      curve: 'P-256',
      algorithm: 'sha256',
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'extKeyUsage', serverAuth: true },
        { name: 'subjectAltName', altNames: [{ type: 2 as const, value: 'localhost' }, { type: 7 as const, ip: '127.0.0.1' }] },
      ],
    });
    writeFileSync(join(dir, 'server.crt'), pems.cert);
    writeFileSync(join(dir, 'server.key'), pems.private, { mode: 0o600 });
    certPem = pems.cert;
  }
  let proc: ChildProcess | null = null;
  let exited: Promise<void> = Promise.resolve();
  for (let attempt = 0; ; attempt++) {
    port = await reservedPort();
    tlsPort = opts.tls ? await reservedPort() : 0;
    const conf = [
      `<server name="${name}" description="Gatehouse test" network="GatehouseTest">`,
      '<admin name="test" nick="test" email="test@example.invalid">',
      `<bind address="127.0.0.1" port="${port}" type="clients">`,
      ...(opts.tls
        ? [
            '<module name="ssl_gnutls">',
            `<sslprofile name="main" provider="gnutls" certfile="${join(dir, 'server.crt')}" keyfile="${join(dir, 'server.key')}" dhfile="" requestclientcert="no">`,
            `<bind address="127.0.0.1" port="${tlsPort}" type="clients" sslprofile="main">`,
          ]
        : []),
      `<connect name="main" allow="*" timeout="20" pingfreq="120" recvq="8192" sendq="262144" threshold="10" commandrate="1000" fakelag="yes" localmax="1000" globalmax="1000" useident="${opts.ident ? 'yes' : 'no'}" limit="5000" maxchans="50" resolvehostnames="no">`,
      `<pid file="${join(dir, 'inspircd.pid')}">`,
      `<log method="file" type="* -USERINPUT -USEROUTPUT" level="default" target="${logFile}">`,
      `<files motd="${join(dir, 'motd')}">`,
      '<options>',
      '<security>',
      '<performance>',
      '<dns server="127.0.0.1" timeout="1">',
      ...(opts.ident ? ['<module name="ident">', '<ident timeout="3">'] : []),
      ...(opts.webircPassword ? ['<module name="cgiirc">', `<cgihost type="webirc" password="${opts.webircPassword}" mask="*">`] : []),
    ];
    writeFileSync(join(dir, 'inspircd.conf'), conf.join('\n') + '\n');
    const child = spawn(INSPIRCD, [`--config=${join(dir, 'inspircd.conf')}`, '--nofork', ...(process.getuid?.() === 0 ? ['--runasroot'] : [])], { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    proc = child;
    exited = new Promise((resolve) => child.once('exit', () => resolve()));
    let out = '';
    child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    let gone = false;
    void exited.then(() => (gone = true));
    const deadline = Date.now() + 15_000;
    let up = false;
    while (Date.now() < deadline && !gone) {
      if (/is now running/.test(out) && (await canConnect(port)) && (!tlsPort || (await canConnect(tlsPort)))) {
        up = true;
        break;
      }
      await new Promise((r) => setTimeout(r, 50));
    }
    if (up) break;
    child.kill('SIGKILL');
    await exited;
    if (attempt >= 2) {
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`inspircd did not start: ${out}`);
    }
  }
  return {
    host: '127.0.0.1',
    name,
    port,
    tlsPort,
    certPem,
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
    async stop() {
      const p = proc as ChildProcess | null;
      if (p && p.exitCode === null && p.signalCode === null) {
        p.kill('SIGTERM');
        await exited;
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
