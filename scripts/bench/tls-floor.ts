/**
 * The memory floor of an idle TLS connection in Node.js itself: a bare `tls.createServer` (the
 * benchmark's certificate, this Node.js, no XMPP) holding N connections that each completed a
 * handshake and sent a few bytes. Measured the same way as the idle scenario: (RSS with all
 * connected − RSS before) ÷ N. The clients run in a child process.
 *
 *   node dist/scripts/bench/tls-floor.js CERT.pem KEY.pem N [SETTLE_MS=5000]
 *
 * Prints one JSON line: { connections, rssBeforeBytes, rssAfterBytes, rssPerConnectionBytes, cpuMsPerHandshake }.
 */
import { fork } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';

const IN_FLIGHT = 100;

function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
  return m ? Number(m[1]) * 1024 : process.memoryUsage().rss;
}

async function clients(port: number, n: number): Promise<void> {
  const held: TLSSocket[] = [];
  const one = () =>
    new Promise<void>((resolve, reject) => {
      const s = connect({ port, host: '127.0.0.1', rejectUnauthorized: false }, () => {
        s.write('<presence/>');
        resolve();
      });
      s.once('error', reject);
      held.push(s);
    });
  for (let i = 0; i < n; i += IN_FLIGHT) await Promise.all(Array.from({ length: Math.min(IN_FLIGHT, n - i) }, one));
  process.send!('connected');
  process.on('disconnect', () => process.exit(0));
}

async function server(certFile: string, keyFile: string, n: number, settleMs: number): Promise<void> {
  let received = 0;
  const srv = createServer({ cert: readFileSync(certFile), key: readFileSync(keyFile) }, (s) => {
    s.once('data', () => received++);
    s.on('error', () => {});
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  const port = (srv.address() as AddressInfo).port;
  await new Promise((r) => setTimeout(r, 500));
  const before = rssBytes();
  const cpu0 = process.cpuUsage();
  const child = fork(fileURLToPath(import.meta.url), ['--clients', String(port), String(n)], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
  await new Promise<void>((resolve, reject) => {
    child.once('message', () => resolve());
    child.once('exit', (code) => reject(new Error(`TLS clients exited with ${code}`)));
  });
  while (received < n) await new Promise((r) => setTimeout(r, 50));
  const cpu = process.cpuUsage(cpu0);
  // The same settling time as the idle scenario gives a server before it reads the memory.
  await new Promise((r) => setTimeout(r, settleMs));
  const after = rssBytes();
  child.disconnect();
  console.log(
    JSON.stringify({ connections: n, rssBeforeBytes: before, rssAfterBytes: after, rssPerConnectionBytes: (after - before) / n, cpuMsPerHandshake: (cpu.user + cpu.system) / 1000 / n }),
  );
  srv.close();
  process.exit(0);
}

const args = process.argv.slice(2);
if (args[0] === '--clients') await clients(Number(args[1]), Number(args[2]));
else {
  const [cert, key, n, settle] = args;
  if (!cert || !key || !(Number(n) > 0)) {
    console.error('usage: tls-floor CERT.pem KEY.pem CONNECTIONS [SETTLE_MS]');
    process.exit(2);
  }
  await server(cert, key, Number(n), settle === undefined ? 5000 : Number(settle));
}
