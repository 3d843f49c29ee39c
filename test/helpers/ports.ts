/**
 * Ports for external programs a test starts (ngIRCd, Prosody). Such a program binds a port the
 * test chose beforehand, and a reconnection test frees it while the program is down. A port from
 * the kernel's ephemeral range (listen(0)) can be handed to any other socket in that window — another
 * test's listener, or the source port of an outgoing connection — and then the program fails to start
 * or, worse, a client reaches the wrong server. Ports below the ephemeral range are never handed out
 * by the kernel, so only another pick of this helper could collide, and it checks before returning.
 */
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';

const LOW = 20000;

function ephemeralStart(): number {
  try {
    const first = Number(readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/)[0]);
    return Number.isInteger(first) && first > LOW + 1000 ? first : 32768;
  } catch {
    return 32768;
  }
}

function bindable(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

/** A free loopback port outside the kernel's ephemeral range. */
export async function reservedPort(): Promise<number> {
  const high = ephemeralStart();
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = LOW + Math.floor(Math.random() * (high - LOW));
    if (await bindable(port)) return port;
  }
  throw new Error(`no free port between ${LOW} and ${high}`);
}
