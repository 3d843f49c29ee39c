/**
 * The live-stream stanza fuzzer: a real server in this process (all modules, SQLite), a few
 * logged-in clients sending random stanzas (stanza-generator.ts) to each other, to themselves, to
 * the server and to addresses that do not exist, for a bounded time. It reports:
 * - uncaught exceptions and unhandled rejections (process handlers installed for the run);
 * - error-level log lines (a module failure caught by a safety net is still a crash);
 * - heap growth: heap used after GC once the clients are warmed up, and again after the run;
 * - whether a fresh client can still log in and get its roster and a ping answered.
 * A stream the server closes (a stanza that costs the stream, e.g. a forged 'from') is counted and
 * replaced by a fresh login, as a client would reconnect.
 */
import v8 from 'node:v8';
import vm from 'node:vm';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { startTestServer, ensureAccount, type TestServer } from '../../test/helpers/server.js';
import { TestClient } from '../../test/helpers/xmpp-client.js';
import { Prng } from './prng.js';
import { StanzaGenerator, type Addressing } from './stanza-generator.js';

export interface StanzaFuzzOptions {
  seed: number;
  durationMs: number;
  clients?: number;
  /** Stanzas sent between two round trips (back-pressure). */
  burst?: number;
  log?: (line: string) => void;
  /** Called with the last stanzas sent before the server closed a stream (for looking into why). */
  onClosed?: (condition: string, lastSent: string[]) => void;
  /** Called right after each heap measurement (e.g. to write a heap snapshot). */
  onHeapMeasured?: (phase: 'start' | 'end') => void;
}

export interface StanzaFuzzResult {
  seed: number;
  stanzas: number;
  logins: number;
  /** Connections of the client that fuzzes before authentication. */
  preauthConnections: number;
  streamsClosedByServer: Map<string, number>;
  uncaught: string[];
  errorLogLines: string[];
  heapStartBytes: number;
  heapEndBytes: number;
  /** A fresh client logged in and got its roster and a ping answered after the run. */
  serverAnswers: boolean;
  serverAnswerError?: string;
}

/**
 * How long a round waits for its ping answer (or the stream's end). The test client's timers keep
 * a closed client reachable until they fire, so heap is measured only after this much quiet.
 */
const WAIT_MS = 3000;

function settle(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, WAIT_MS + 500));
}

function gcFunction(): () => void {
  v8.setFlagsFromString('--expose-gc');
  return vm.runInNewContext('gc') as () => void;
}

async function heapAfterGc(gc: () => void): Promise<number> {
  for (let i = 0; i < 3; i++) {
    gc();
    await new Promise((resolve) => setImmediate(resolve));
  }
  return process.memoryUsage().heapUsed;
}

interface Fuzzer {
  name: string;
  client: TestClient | null;
  generator: StanzaGenerator;
  lastSent: string[];
}

export async function runStanzaFuzz(options: StanzaFuzzOptions): Promise<StanzaFuzzResult> {
  const log = options.log ?? (() => {});
  const uncaught: string[] = [];
  const onUncaught = (err: unknown): void => void uncaught.push(err instanceof Error ? (err.stack ?? err.message) : String(err));
  process.on('uncaughtException', onUncaught);
  process.on('unhandledRejection', onUncaught);
  const gc = gcFunction();
  const r = new Prng(options.seed);
  const result: StanzaFuzzResult = {
    seed: options.seed, stanzas: 0, logins: 0, preauthConnections: 0, streamsClosedByServer: new Map(), uncaught, errorLogLines: [],
    heapStartBytes: 0, heapEndBytes: 0, serverAnswers: false,
  };
  let ts: TestServer | null = null;
  try {
    // The unauthenticated fuzz client's refused registrations count as failed logins (P7): without
    // trusting loopback the guard would rightly block 127.0.0.1 and the fuzz clients' next logins.
    ts = await startTestServer({ logLevel: 'warn', config: { c2s: { resumptionTimeout: '2s' }, loginGuard: { trustedProxies: ['127.0.0.0/8', '::1/128'] } } });
    const server = ts;
    const takeErrorLines = (): void => {
      for (const line of server.logLines.splice(0)) if (/^\S+ error /.test(line)) result.errorLogLines.push(line);
    };
    const fuzzers: Fuzzer[] = [];
    for (let i = 0; i < (options.clients ?? 4); i++) fuzzers.push({ name: `fuzz${i}`, client: null, generator: new StanzaGenerator(new Prng(r.int(2 ** 31))), lastSent: [] });
    let accountSerial = 0;
    let slowest = 0;
    // Not ts.client(): the test server keeps every client it made until it stops, which would read as a leak here.
    const loginAs = async (name: string, resource: string): Promise<TestClient> => {
      await ensureAccount(server, name);
      const client = await TestClient.connect({ port: server.port });
      await client.login(name, 'pw-' + name, { resource });
      return client;
    };
    const login = async (f: Fuzzer): Promise<TestClient> => {
      // A fresh account each time: the last one may have been removed or had its password changed.
      f.name = `fuzz${accountSerial++}`;
      const client = await loginAs(f.name, 'r');
      client.answerPings();
      result.logins++;
      return client;
    };
    const addressing = (f: Fuzzer): Addressing => ({
      domain: 'localhost',
      ownBare: `${f.name}@localhost`,
      ownFull: f.client?.jid ?? `${f.name}@localhost/r`,
      peers: fuzzers.filter((o) => o !== f).map((o) => `${o.name}@localhost`),
    });
    for (const f of fuzzers) f.client = await login(f);

    // Warm-up (module caches, prepared statements, JIT) before the first heap measurement.
    const deadline = Date.now() + options.durationMs;
    const burst = options.burst ?? 20;
    const round = async (f: Fuzzer): Promise<void> => {
      if (!f.client || f.client.closed) {
        if (f.client) {
          const why = f.client.streamError ?? 'connection closed';
          result.streamsClosedByServer.set(why, (result.streamsClosedByServer.get(why) ?? 0) + 1);
          options.onClosed?.(why, f.lastSent);
          f.client.destroy();
        }
        f.client = await login(f);
      }
      const client = f.client;
      for (let i = 0; i < burst && !client.closed; i++) {
        const stanza = f.generator.next(addressing(f)).toString();
        if (options.onClosed) f.lastSent = [...f.lastSent.slice(-4), stanza];
        client.writeRaw(stanza);
        result.stanzas++;
      }
      // A round trip after each burst: back-pressure, and a check that the stream still works.
      if (!client.closed) {
        const started = Date.now();
        const pong = client.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })), WAIT_MS);
        await Promise.race([pong, client.waitClosed(WAIT_MS)]).catch(() => {});
        pong.catch(() => {});
        slowest = Math.max(slowest, Date.now() - started);
      }
      client.received.length = 0;
      takeErrorLines();
    };
    // One more client stays unauthenticated: registration and other IQs, and what the server refuses before login.
    const anonymous = new StanzaGenerator(new Prng(r.int(2 ** 31)));
    const anonymousUntil = async (until: number): Promise<void> => {
      let client: TestClient | null = null;
      const a: Addressing = { domain: 'localhost', ownBare: 'localhost', ownFull: 'localhost', peers: fuzzers.map((f) => `${f.name}@localhost`) };
      while (Date.now() < until) {
        if (!client || client.closed) {
          client?.destroy();
          client = await TestClient.connect({ port: server.port });
          result.preauthConnections++;
        }
        for (let i = 0; i < burst && !client.closed; i++) {
          client.writeRaw(anonymous.preauth(a).toString());
          result.stanzas++;
        }
        await client.waitClosed(300).catch(() => {});
        client.received.length = 0;
      }
      await client?.close();
    };
    const runUntil = async (until: number): Promise<void> => {
      await Promise.all([
        anonymousUntil(until),
        ...fuzzers.map(async (f) => {
          while (Date.now() < until) await round(f);
        }),
      ]);
    };
    await runUntil(Math.min(deadline, Date.now() + Math.min(5000, options.durationMs / 5)));
    await settle();
    result.heapStartBytes = await heapAfterGc(gc);
    options.onHeapMeasured?.('start');
    log(`stanza fuzz seed ${options.seed}: ${result.stanzas} stanzas in warm-up, slowest round trip ${slowest} ms; heap after warm-up ${(result.heapStartBytes / 2 ** 20).toFixed(1)} MiB`);
    await runUntil(deadline);
    for (const f of fuzzers) await f.client?.close();
    // Let closed sessions (and hibernating XEP-0198 ones, 2 s here) end before measuring.
    await settle();
    takeErrorLines();
    result.heapEndBytes = await heapAfterGc(gc);
    options.onHeapMeasured?.('end');

    try {
      const fresh = await loginAs(`fresh${accountSerial}`, 'after');
      const roster = await fresh.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
      const pong = await fresh.iq(x('iq', { type: 'get', to: 'localhost' }, x('ping', { xmlns: NS.ping })));
      result.serverAnswers = roster.attrs.type === 'result' && pong.attrs.type === 'result';
      if (!result.serverAnswers) result.serverAnswerError = `roster ${roster.attrs.type}, ping ${pong.attrs.type}`;
      await fresh.close();
    } catch (err) {
      result.serverAnswerError = err instanceof Error ? err.message : String(err);
    }
    takeErrorLines();
  } finally {
    await ts?.stop().catch((err) => uncaught.push(`stopping the server: ${String(err)}`));
    process.off('uncaughtException', onUncaught);
    process.off('unhandledRejection', onUncaught);
  }
  return result;
}

/** Problems in a result, empty if the run was clean; heap growth is bounded by maxHeapGrowthBytes. */
export function stanzaFuzzProblems(result: StanzaFuzzResult, maxHeapGrowthBytes: number): string[] {
  const problems: string[] = [];
  for (const u of result.uncaught) problems.push(`uncaught: ${u}`);
  for (const line of result.errorLogLines) problems.push(`error logged: ${line}`);
  const growth = result.heapEndBytes - result.heapStartBytes;
  if (growth > maxHeapGrowthBytes) problems.push(`heap grew by ${(growth / 2 ** 20).toFixed(1)} MiB (bound ${(maxHeapGrowthBytes / 2 ** 20).toFixed(0)} MiB)`);
  if (!result.serverAnswers) problems.push(`the server no longer answers a fresh client: ${result.serverAnswerError ?? 'no answer'}`);
  return problems;
}

export function describeStanzaFuzz(result: StanzaFuzzResult): string {
  const closed = [...result.streamsClosedByServer].map(([k, v]) => `${k} ${v}`).join(', ') || 'none';
  return [
    `stanza fuzz seed ${result.seed}: ${result.stanzas} stanzas, ${result.logins} logins, ${result.preauthConnections} unauthenticated connections`,
    `  streams closed by the server: ${closed}`,
    `  heap after GC: ${(result.heapStartBytes / 2 ** 20).toFixed(1)} MiB -> ${(result.heapEndBytes / 2 ** 20).toFixed(1)} MiB`,
    `  uncaught: ${result.uncaught.length}, error log lines: ${result.errorLogLines.length}, server answers afterwards: ${result.serverAnswers}`,
  ].join('\n');
}
