/**
 * `node dist/scripts/bench/upload.js`: HTTP File Upload (XEP-0363) throughput and memory, Gatehouse
 * beside Prosody's mod_http_file_share in the same run.
 *
 *   node dist/scripts/bench/upload.js [--servers gatehouse,prosody] [--files 100] [--mib 10] [--json FILE]
 *
 * For each server: one account logs in (STARTTLS, PLAIN), asks upload.<domain> for --files slots,
 * then PUTs all files at once (--files concurrent HTTPS connections, --mib MiB each, streamed from
 * one buffer), then GETs all of them at once. Reported: wall time and throughput of each phase,
 * the server's peak resident memory during it (sampled every 50 ms from /proc) and its CPU time.
 * A file that does not arrive whole, or a status other than 201/200, fails the run.
 */
import net from 'node:net';
import tls from 'node:tls';
import https from 'node:https';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchAccount } from './protocol.js';
import { DOMAIN, SERVER_LABEL, freePort, killAllAndWait, killAllNow, serverAvailable, startBenchServer, type CertFiles, type RunningBenchServer, type ServerKind } from './servers.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const repoRoot = path.resolve(here, '../../..');
const UPLOAD = `upload.${DOMAIN}`;

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 && process.argv[i + 1] ? process.argv[i + 1]! : fallback;
}

function account(name: string, password: string): BenchAccount {
  const salt = Buffer.from(randomBytes(12).toString('hex'));
  const salted = pbkdf2Sync(password, salt, 4096, 20, 'sha1');
  const clientKey = createHmac('sha1', salted).update('Client Key').digest();
  return {
    name,
    password,
    salt: salt.toString('base64'),
    iterations: 4096,
    salted: salted.toString('base64'),
    storedKey: createHash('sha1').update(clientKey).digest().toString('base64'),
    serverKey: createHmac('sha1', salted).update('Server Key').digest().toString('base64'),
  };
}

function certificate(dir: string): CertFiles {
  const cert = path.join(dir, 'cert.pem');
  const key = path.join(dir, 'key.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes', '-keyout', key, '-out', cert, '-days', '30', '-subj', `/CN=${DOMAIN}`, '-addext', `subjectAltName=DNS:${DOMAIN},DNS:*.${DOMAIN}`], { stdio: 'ignore' });
  const combined = path.join(dir, 'combined.pem');
  const pem = readFileSync(cert, 'utf8');
  writeFileSync(combined, pem + readFileSync(key, 'utf8'));
  return { cert, key, combined, pem };
}

/** A minimal XMPP client: STARTTLS, SASL PLAIN, bind; then IQs answered by id. */
class Xmpp {
  private buf = '';
  private sock!: net.Socket;
  private waiters: { re: RegExp; resolve: (m: RegExpExecArray) => void }[] = [];

  async login(port: number, user: string, password: string): Promise<void> {
    const raw = net.connect({ host: '127.0.0.1', port });
    await new Promise<void>((resolve, reject) => raw.once('connect', resolve).once('error', reject));
    this.attach(raw);
    const header = `<?xml version='1.0'?><stream:stream to='${DOMAIN}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>`;
    this.write(header);
    await this.expect(/<\/stream:features>/);
    this.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.expect(/<proceed[^>]*>/);
    raw.removeAllListeners('data');
    const secure = tls.connect({ socket: raw, servername: DOMAIN, rejectUnauthorized: false });
    await new Promise<void>((resolve, reject) => secure.once('secureConnect', resolve).once('error', reject));
    this.buf = '';
    this.attach(secure);
    this.write(header);
    await this.expect(/<\/stream:features>/);
    this.write(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='PLAIN'>${Buffer.from(`\0${user}\0${password}`).toString('base64')}</auth>`);
    const r = await this.expect(/<success[^>]*(?:\/>|>[^<]*<\/success>)|<failure[\s\S]*?<\/failure>/);
    if (r[0].startsWith('<failure')) throw new Error(`login failed: ${r[0]}`);
    this.write(header);
    await this.expect(/<\/stream:features>/);
    this.write("<iq type='set' id='bind'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/></iq>");
    await this.expect(/<iq[^>]*id=['"]bind['"][\s\S]*?<\/iq>/);
  }

  private attach(s: net.Socket): void {
    this.sock = s;
    s.on('data', (d: Buffer) => {
      this.buf += d.toString('utf8');
      this.check();
    });
  }

  private check(): void {
    for (const w of [...this.waiters]) {
      const m = w.re.exec(this.buf);
      if (m) {
        this.buf = this.buf.slice(0, m.index) + this.buf.slice(m.index + m[0].length);
        this.waiters.splice(this.waiters.indexOf(w), 1);
        w.resolve(m);
      }
    }
  }

  write(s: string): void {
    this.sock.write(s);
  }

  expect(re: RegExp): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`timeout waiting for ${re}: ${this.buf.slice(-300)}`)), 30_000);
      this.waiters.push({ re, resolve: (m) => (clearTimeout(timer), resolve(m)) });
      this.check();
    });
  }

  async slot(i: number, size: number): Promise<{ put: string; get: string; headers: Record<string, string> }> {
    const id = `slot${i}`;
    this.write(`<iq type='get' id='${id}' to='${UPLOAD}'><request xmlns='urn:xmpp:http:upload:0' filename='file-${i}.bin' size='${size}' content-type='application/octet-stream'/></iq>`);
    const m = await this.expect(new RegExp(`<iq[^>]*id=['"]${id}['"][\\s\\S]*?</iq>`));
    const put = /<put[^>]*url=['"]([^'"]+)['"]/.exec(m[0]);
    const get = /<get[^>]*url=['"]([^'"]+)['"]/.exec(m[0]);
    if (!put || !get) throw new Error(`no slot: ${m[0].slice(0, 300)}`);
    const headers: Record<string, string> = {};
    for (const h of m[0].matchAll(/<header[^>]*name=['"]([^'"]+)['"][^>]*>([^<]*)<\/header>/g)) headers[h[1]!] = h[2]!;
    const unescape = (s: string) => s.replace(/&amp;/g, '&');
    return { put: unescape(put[1]!), get: unescape(get[1]!), headers };
  }

  close(): void {
    this.sock.end('</stream:stream>');
  }
}

/** upload.<domain> and <domain> are this machine. */
const lookup: net.LookupFunction = (_host, opts, cb) => {
  if ((opts as { all?: boolean }).all) (cb as unknown as (e: null, a: { address: string; family: number }[]) => void)(null, [{ address: '127.0.0.1', family: 4 }]);
  else cb(null, '127.0.0.1', 4);
};

function request(method: string, url: string, headers: Record<string, string | number>, body?: Buffer): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = https.request(url, { method, headers, lookup, rejectUnauthorized: false, agent: false }, (res) => {
      let bytes = 0;
      res.on('data', (c: Buffer) => (bytes += c.length));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
      res.on('error', reject);
    });
    req.on('error', reject);
    if (!body) return void req.end();
    // Written in 64 KiB pieces with back-pressure, as a client streaming a file does.
    let off = 0;
    const pump = (): void => {
      while (off < body.length) {
        const piece = body.subarray(off, off + 65536);
        off += piece.length;
        if (!req.write(piece)) return void req.once('drain', pump);
      }
      req.end();
    };
    pump();
  });
}

interface Phase {
  seconds: number;
  mibPerSecond: number;
  peakRssMiB: number;
  cpuSeconds: number;
}

async function measured(server: RunningBenchServer, totalBytes: number, work: () => Promise<void>): Promise<Phase> {
  const before = server.sample();
  let peak = before.rssBytes;
  const timer = setInterval(() => {
    try {
      peak = Math.max(peak, server.sample().rssBytes);
    } catch {
      // the process may be gone; the phase fails elsewhere
    }
  }, 50);
  const t0 = process.hrtime.bigint();
  try {
    await work();
  } finally {
    clearInterval(timer);
  }
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  const after = server.sample();
  peak = Math.max(peak, after.rssBytes);
  return { seconds, mibPerSecond: totalBytes / 1048576 / seconds, peakRssMiB: peak / 1048576, cpuSeconds: after.cpuSec - before.cpuSec };
}

async function benchOne(kind: ServerKind, files: number, size: number, cert: CertFiles, tmp: string): Promise<Record<string, unknown>> {
  const dir = path.join(tmp, kind);
  const acc = account('uploader', 'upload-bench-password');
  const httpsPort = await freePort();
  const server = await startBenchServer(kind, { dir, repoRoot, cert, accounts: [acc], upload: { httpsPort }, log: (m) => console.error(m) });
  try {
    const idleRssMiB = server.sample().rssBytes / 1048576;
    const client = new Xmpp();
    await client.login(server.port, acc.name, acc.password);
    const slots = await Promise.all(Array.from({ length: files }, (_, i) => client.slot(i, size)));
    const data = randomBytes(size);
    const digest = createHash('sha256').update(data).digest('hex');
    const upload = await measured(server, files * size, async () => {
      const results = await Promise.all(
        slots.map((s) => request('PUT', s.put, { 'Content-Length': size, 'Content-Type': 'application/octet-stream', ...s.headers }, data)),
      );
      const bad = results.filter((r) => r.status !== 201 && r.status !== 200);
      if (bad.length) throw new Error(`${SERVER_LABEL[kind]}: ${bad.length} uploads failed (status ${bad[0]!.status})`);
    });
    const download = await measured(server, files * size, async () => {
      const results = await Promise.all(slots.map((s) => request('GET', s.get, {})));
      const bad = results.filter((r) => r.status !== 200 || r.bytes !== size);
      if (bad.length) throw new Error(`${SERVER_LABEL[kind]}: ${bad.length} downloads incomplete (status ${bad[0]!.status}, ${bad[0]!.bytes} bytes)`);
    });
    client.close();
    return { server: SERVER_LABEL[kind], files, mib: size / 1048576, sha256: digest, idleRssMiB, upload, download };
  } finally {
    await server.stop();
  }
}

async function main(): Promise<void> {
  const servers = arg('servers', 'gatehouse,prosody').split(',').filter(Boolean) as ServerKind[];
  const files = Number(arg('files', '100'));
  const size = Math.round(Number(arg('mib', '10')) * 1048576);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-upload-bench-'));
  const cert = certificate(tmp);
  const results: Record<string, unknown>[] = [];
  try {
    for (const kind of servers) {
      if (!serverAvailable(kind)) {
        console.error(`${SERVER_LABEL[kind]} is not installed; skipped`);
        continue;
      }
      results.push(await benchOne(kind, files, size, cert, tmp));
    }
  } finally {
    await killAllAndWait();
    rmSync(tmp, { recursive: true, force: true });
  }
  const f = (n: number, d = 1) => n.toFixed(d);
  const lines = [
    `${files} concurrent transfers of ${size / 1048576} MiB each (${f((files * size) / 1048576, 0)} MiB), one HTTPS connection per file, over loopback; ${os.cpus().length} cores.`,
    '',
    '| Server | Upload time (s) | Upload MiB/s | Peak RSS uploading (MiB) | CPU uploading (s) | Download time (s) | Download MiB/s | Peak RSS downloading (MiB) | CPU downloading (s) | Idle RSS (MiB) |',
    '|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => {
      const u = r.upload as Phase;
      const d = r.download as Phase;
      return `| ${r.server} | ${f(u.seconds, 2)} | ${f(u.mibPerSecond)} | ${f(u.peakRssMiB)} | ${f(u.cpuSeconds, 2)} | ${f(d.seconds, 2)} | ${f(d.mibPerSecond)} | ${f(d.peakRssMiB)} | ${f(d.cpuSeconds, 2)} | ${f(r.idleRssMiB as number)} |`;
    }),
  ];
  console.log(lines.join('\n'));
  const json = arg('json', '');
  if (json) writeFileSync(json, JSON.stringify(results, null, 2) + '\n');
}

process.on('SIGINT', () => {
  killAllNow();
  process.exit(130);
});

main().catch(async (err) => {
  console.error(err instanceof Error ? err.message : String(err));
  await killAllAndWait();
  process.exit(1);
});
