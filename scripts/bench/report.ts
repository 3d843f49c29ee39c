/** The benchmark's result types and their rendering as docs/benchmarks.md. */
import type { ServerKind } from './servers.js';

/** Who used the CPU during a phase, in cores (1 = one core fully busy). */
export interface LoadShare {
  seconds: number;
  serverCores: number;
  generatorCores: number;
  /** Everything else on the machine (other users' processes, the kernel's own threads). */
  otherCores: number;
  /** Share of all cores busy, percent. */
  machineBusyPercent: number;
  /** Share of all cores taken by the hypervisor, percent. */
  stealPercent: number;
}

export interface Latency {
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

export interface LoginsResult {
  attempted: number;
  ok: number;
  failed: number;
  errors: string[];
  loginsPerSec: number;
  wallMs: number;
  latency: Latency;
  serverCpuSec: number;
  serverCpuMsPerLogin: number;
  serverRssBytes: number;
  generatorCpuSec: number;
  /** SaltedPassword computations by the clients (0: every client used its cached one). */
  clientPbkdf2: number;
  load: LoadShare;
}

/** What one rate of the messages, PEP and MUC scenarios measures alike (scripts/bench/run.ts `closeDeliveryWindow`). */
export interface Deliveries {
  /** Received in the end, including late deliveries after the 20 s wait (once the server was idle again). */
  received: number;
  /** Received within the 20 s wait after sending. */
  receivedInWait: number;
  lost: number;
  duplicates: number;
  stale: number;
  /** Scheduled send time to receipt. */
  latency: Latency;
  /** Server CPU from the start of sending until the deliveries were in (or the wait ended). */
  serverCpuSec: number;
  /** Server CPU during the sending window only. */
  serverCpuSecSending: number;
  /** Server CPU during the sending window, percent of one core. */
  serverCpuPercent: number;
  serverRssPeakBytes: number;
  /** The server was idle (under 5 % of a core) before sending started / after the backlog. */
  serverQuietBefore: boolean;
  serverQuietAfter: boolean;
  load: LoadShare;
  disconnects: number;
  streamErrors: string[];
}

export interface MessagesResult extends Deliveries {
  offeredRate: number;
  durationS: number;
  online: number;
  offered: number;
  sent: number;
  skippedBackpressure: number;
  /** Received during the sending window, per second. */
  deliveredPerSec: number;
  generator: {
    workers: number;
    cpuSec: number;
    cpuPercentOfOneCore: number;
    lagP99Ms: number;
    lagMaxMs: number;
    elapsedMs: number;
    keptUp: boolean;
    loopDelayP99Ms: number;
  };
}

/** A bare Node.js TLS server (scripts/bench/tls-floor.ts) holding the same number of idle connections. */
export interface TlsFloorResult {
  connections: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  rssPerConnectionBytes: number;
  cpuMsPerHandshake: number;
}

export interface IdleResult {
  connections: number;
  failed: number;
  errors: string[];
  loginsPerSec: number;
  rssBeforeBytes: number;
  rssAfterBytes: number;
  rssPerConnectionBytes: number;
  idleCpuSecPer5s: number;
  serverCpuSecLogins: number;
  loadDuringLogins: LoadShare;
  generatorRssBytes: number;
  disconnects: number;
}

export interface OfflineResult {
  offered: number;
  sent: number;
  skipped: number;
  storeMs: number;
  storedPerSec: number;
  pingFailures: number;
  serverCpuSecStore: number;
  /** CPU the server used after acknowledging, before it was idle again (background writes). */
  serverCpuSecAfterStore: number;
  loadStore: LoadShare;
  loadDrain: LoadShare;
  recipientLogins: number;
  recipientLoginFailures: number;
  delivered: number;
  lost: number;
  duplicates: number;
  drainMs: number;
  drainedPerSec: number;
  serverCpuSecDrain: number;
  serverRssBytes: number;
  disconnects: number;
}

/** One publishing rate of the PEP scenario; the deliveries are notifications, latency from the scheduled publish to receipt by a contact. */
export interface PepRateResult extends Deliveries {
  itemsPerSec: number;
  items: number;
  /** Seconds from the first scheduled publish to the end of the window (items ÷ rate). */
  windowS: number;
  published: number;
  publishOk: number;
  publishErrors: number;
  publishUnanswered: number;
  firstPublishError?: string;
  /** Publish round trip: scheduled time to the server's result. */
  publishAck: Latency;
  /** Notifications that should arrive: published items × contacts online. */
  expected: number;
  /** Notifications received during the publishing window, per second. */
  notificationsPerSec: number;
  generator: { cpuSec: number; lagP99Ms: number; keptUp: boolean; loopDelayP99Ms: number };
}

/** A user with many online contacts publishes to a PEP node (XEP-0163); the contacts get the notifications. */
export interface PepResult {
  node: string;
  contacts: number;
  contactsOnline: number;
  /** Contacts with subscription=both in the publisher's roster as the server sends it. */
  mutualSubscriptions: number;
  /** How the rosters were written into the server's storage before start, and how long it took. */
  rosterProvisioning: string;
  rosterProvisionMs: number;
  /** disco#info queries for the contacts' caps node that the contacts answered. */
  discoQueries: number;
  /** The account's disco#info shows `<identity category='pubsub' type='pep'/>`. */
  advertisesPep: boolean;
  /** False when the server answered the publish with an error: no figures then. */
  supported: boolean;
  unsupportedReason?: string;
  /** Contacts that received the (unmeasured) warm-up item, and after how many tries. */
  warmupNotified: number;
  warmupTries: number;
  rates: PepRateResult[];
}

/** One message rate of the MUC scenario: messages to the room, each delivered to every occupant (latency: scheduled send to receipt by an occupant). */
export interface MucRateResult extends Deliveries {
  messagesPerSec: number;
  durationS: number;
  occupants: number;
  sent: number;
  skippedBackpressure: number;
  /** Deliveries that should arrive: messages sent × occupants (the sender gets its own copy too). */
  expected: number;
  /** Deliveries received during the sending window, per second. */
  deliveredPerSec: number;
  generator: { cpuSec: number; lagP99Ms: number; keptUp: boolean; loopDelayP99Ms: number };
}

/** One room with many occupants (XEP-0045): how fast group chat messages fan out. */
export interface MucResult {
  room: string;
  occupants: number;
  loggedIn: number;
  /** False when the conference service does not answer disco#info as one: no figures then. */
  supported: boolean;
  unsupportedReason?: string;
  joined: number;
  joinRefused: number;
  joinTimedOut: number;
  firstJoinError?: string;
  /** From the first join to the last occupant in. */
  joinMs: number;
  warmupDelivered: number;
  rates: MucRateResult[];
}

export interface ServerResults {
  kind: ServerKind;
  label: string;
  port?: number;
  provisioning?: string;
  provisionMs?: number;
  openFilesLimit?: string;
  startRssBytes?: number;
  endRssBytes?: number;
  errors?: string[];
  /** Restarts and rates not run, with the reason. */
  notes?: string[];
  scenarios: {
    logins?: LoginsResult;
    messages?: MessagesResult[];
    idle?: IdleResult;
    offline?: OfflineResult;
    pep?: PepResult;
    muc?: MucResult;
  };
}

import type { ClusterResult } from './cluster.js';

/** The sizes of the scenarios and of the load generator, as chosen on the command line (scripts/bench/run.ts). */
export interface ScenarioSizes {
  logins: number;
  users: number;
  rates: number[];
  durationS: number;
  idle: number;
  offline: number;
  offlineSenders: number;
  offlineRecipients: number;
  offlineRate: number;
  workers: number;
  loginConcurrency: number;
}

export interface BenchResults {
  date: string;
  command: string;
  smoke: boolean;
  machine: { nproc: number; cpu: string; memoryBytes: number; kernel: string; os: string; openFilesLimit: string };
  versions: { node: string; gatehouse: string; prosody: string | null; ejabberd: string | null; erlang: string | null; lua: string | null; openssl: string | null };
  parameters: ScenarioSizes & {
    scramIterations: number;
    scenarios: string[];
    /** Key of the shared certificate, e.g. "ECDSA P-256" (runs before it was recorded used RSA 2048). */
    certificate?: string;
    /** PEP scenario (absent in runs before it existed). */
    pepContacts?: number;
    pepRates?: number[];
    pepItems?: number;
    /** MUC scenario (absent in runs before it existed). */
    mucOccupants?: number;
    mucRates?: number[];
    mucDurationS?: number;
  };
  servers: ServerResults[];
  /** The idle scenario's reference: what Node.js's own TLS needs per idle connection. */
  tlsFloor?: TlsFloorResult;
  /** The cluster scenario (scripts/bench/cluster.ts): not part of the generated report, its figures go into the hand-written Cluster section. */
  cluster?: ClusterResult;
  totalSeconds?: number;
  broken?: string[];
}

const MARKER = '<!-- end of generated part: everything below this line is kept when the benchmark is run again -->';

// ---- formatting ----

function int(n: number | undefined): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  return Math.round(n).toLocaleString('en-US');
}

function dec(n: number | undefined, digits = 1): string {
  if (n === undefined || !Number.isFinite(n)) return '–';
  if (Math.abs(n) >= 100) return int(n);
  return n.toFixed(digits);
}

function mib(bytes: number | undefined): string {
  return bytes === undefined ? '–' : dec(bytes / 2 ** 20, 1);
}

function kib(bytes: number | undefined): string {
  return bytes === undefined ? '–' : dec(bytes / 1024, 1);
}

function ratio(g: number | undefined, o: number | undefined): string {
  if (g === undefined || o === undefined || !Number.isFinite(g) || !Number.isFinite(o) || o === 0) return '–';
  return (g / o).toFixed(2);
}

type Getter = (s: ServerResults) => number | undefined;

interface Row {
  label: string;
  get: Getter;
  fmt: (n: number | undefined) => string;
  /** No ratio for counts such as losses. */
  noRatio?: boolean;
  /** A text cell instead of fmt(get(s)); no ratio. */
  text?: (s: ServerResults) => string;
}

function table(results: BenchResults, rows: Row[]): string {
  const by = (k: ServerKind) => results.servers.find((s) => s.kind === k);
  const g = by('gatehouse');
  const p = by('prosody');
  const e = by('ejabberd');
  const cols = results.servers.map((s) => s.label);
  const showRatios = !!g && (!!p || !!e);
  const head = ['', ...cols, ...(showRatios ? [p ? 'Gatehouse/Prosody' : null, e ? 'Gatehouse/ejabberd' : null].filter((x): x is string => !!x) : [])];
  const lines = [`| ${head.join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`];
  for (const r of rows) {
    const cells = [r.label, ...results.servers.map((s) => (r.text ? r.text(s) : r.fmt(r.get(s))))];
    if (showRatios) {
      const gv = r.get(g!);
      const none = r.noRatio || !!r.text;
      if (p) cells.push(none ? '' : ratio(gv, r.get(p)));
      if (e) cells.push(none ? '' : ratio(gv, r.get(e)));
    }
    lines.push(`| ${cells.join(' | ')} |`);
  }
  return lines.join('\n');
}

/** p50, p99 and max of a latency, e.g. "latency send → occupant p50 (ms)". */
function latencyRows(what: string, get: (s: ServerResults) => Latency | undefined): Row[] {
  return [
    { label: `${what} p50 (ms)`, get: (s) => get(s)?.p50Ms, fmt: (n) => dec(n, 2) },
    { label: `${what} p99 (ms)`, get: (s) => get(s)?.p99Ms, fmt: (n) => dec(n, 2) },
    { label: `${what} max (ms)`, get: (s) => get(s)?.maxMs, fmt: dec },
  ];
}

/** A share of the CPU during a phase, as percent of one core. */
function loadRow(label: string, cores: (l: LoadShare) => number, get: (s: ServerResults) => LoadShare | undefined): Row {
  const percent = (l: LoadShare | undefined) => (l ? 100 * cores(l) : undefined);
  return { label: `${label} (% of one core)`, get: (s) => percent(get(s)), fmt: int, noRatio: true };
}

const otherCpuRow = (get: (s: ServerResults) => LoadShare | undefined) => loadRow('CPU of other processes on the machine', (l) => l.otherCores, get);
const generatorCpuRow = (get: (s: ServerResults) => LoadShare | undefined) => loadRow('load generator CPU', (l) => l.generatorCores, get);

// ---- the document ----

export function renderMarkdown(r: BenchResults, previous: string | null): string {
  const P = r.parameters;
  const out: string[] = [];
  const push = (...lines: string[]) => out.push(...lines);
  const m = r.machine;
  const v = r.versions;
  push(
    '# Benchmarks',
    '',
    `Generated by \`npm run bench\` (code in \`scripts/bench/\`) on ${r.date.slice(0, 16).replace('T', ' ')} UTC${r.smoke ? ' — **smoke run: tiny sizes, not a measurement**' : ''}. ` +
      'The same workload runs, one server after the other, against Gatehouse, Prosody and ejabberd on this machine; ' +
      'raw figures are in [`benchmarks.json`](benchmarks.json).',
    '',
    'Ratios are Gatehouse ÷ other server. For rates (logins/s, messages/s) above 1 means Gatehouse is faster; ' +
      'for latency, CPU and memory below 1 means Gatehouse needs less.',
    '',
    '## Machine',
    '',
    `- CPU: ${m.cpu}, ${m.nproc} cores (shared by the server under test and the load generator)`,
    `- Memory: ${dec(m.memoryBytes / 2 ** 30, 1)} GiB`,
    `- OS: ${m.os}, ${m.kernel}`,
    `- Open-files limit: ${m.openFilesLimit} for every server and worker (the soft limit is already at this machine's hard limit, which cannot be raised here; 10,000 connections need about 10,000)`,
    '',
    '## Versions',
    '',
    '| Software | Version |',
    '|---|---|',
    `| Gatehouse | ${v.gatehouse} |`,
    `| Node.js | ${v.node} |`,
    `| Prosody (Debian) | ${v.prosody ?? 'not installed'} |`,
    `| Lua (Debian) | ${v.lua ?? '?'} |`,
    `| ejabberd (Debian) | ${v.ejabberd ?? 'not installed'} |`,
    `| Erlang/OTP (Debian erlang-base) | ${v.erlang ?? '?'} |`,
    `| OpenSSL | ${v.openssl ?? '?'} |`,
    '',
    '## Command',
    '',
    '```sh',
    'npx tsc -p tsconfig.json',
    r.command,
    '```',
    '',
    `Total run time ${r.totalSeconds ? `${Math.round(r.totalSeconds)} s` : '?'}. ` +
      `Parameters: ${int(P.logins)} logins; ${int(P.users)} online users at offered ${P.rates.map((x) => int(x)).join(', ')} messages/s for ${P.durationS} s each; ` +
      `${int(P.idle)} idle connections; ${int(P.offline)} messages from ${int(P.offlineSenders)} users to ${int(P.offlineRecipients)} offline users at ${int(P.offlineRate)}/s; ` +
      (P.pepContacts !== undefined && P.scenarios.includes('pep')
        ? `PEP: 1 publisher with ${int(P.pepContacts)} online contacts, ${int(P.pepItems)} items at ${(P.pepRates ?? []).map((x) => int(x)).join(', ')} items/s; `
        : '') +
      `${P.workers} load-generator processes, ${P.loginConcurrency} logins in flight.`,
    '',
    '## How it works',
    '',
    '- **Load generator** (`scripts/bench/loadgen-worker.ts`, forked ' + P.workers + ' times): raw TCP sockets, STARTTLS (certificate verified), ' +
      `SCRAM-SHA-1 (${P.scramIterations} iterations) with the SaltedPassword cached per account as real clients do, resource binding, initial presence. ` +
      'No XML parser: it finds its own message bodies with a regular expression, so the generator stays cheap. ' +
      'Messages are `type=chat` to the bare JID of a random online user, sent on a fixed schedule (open loop: the next message does not wait for the previous one). ' +
      'The body carries the scheduled send time (CLOCK_MONOTONIC, shared by all processes), so latency includes any delay in sending (no coordinated omission).',
    '- **Delivered/s** counts messages received during the sending window. The run then waits up to 20 s for the rest (until 5 s pass without a delivery); ' +
      'if some are still missing it waits, up to 30 s more, until the server is idle, and counts those as "delivered late". **Lost** is what never arrived. ' +
      'Before each rate the server must be idle again (under 5 % of a core), so one rate\'s backlog does not spill into the next. ' +
      'The generator reports whether it met the offered rate (schedule lag p99 under 100 ms, nothing skipped because a socket had 1 MiB unsent).',
    '- **Server figures** come from `/proc/<pid>`: CPU seconds are utime+stime over the scenario, memory is VmRSS (for ejabberd the `beam.smp` process). ' +
      '**RSS per connection** is (RSS with all idle clients − RSS before they connected) ÷ connections.',
    '- **Logins** are timed from the TCP connect to the bind result, with ' + P.loginConcurrency + ' in flight; every login is a full TLS handshake (no session resumption). ' +
      'All three servers run side by side (idle when not measured); each scenario, and each message rate, goes through them one after the other, ' +
      'so load from other processes on a shared machine changes little between the servers of one comparison. ' +
      'Every scenario starts with freshly started servers (same accounts), so nothing one scenario leaves behind (grown heaps, backlogs, sessions still closing) weighs on the next.',
    '- **Shared machine**: the load generator runs on the same ' + m.nproc + ' cores as the server, as does anything else running on the machine. ' +
      'Each phase records the CPU of the server, of the generator and of everything else (from `/proc/stat`, which includes the kernel\'s network processing for loopback TCP); ' +
      'large "other" shares are listed under "Problems seen during the run".',
    '- **Offline**: senders send ' + int(P.offline) + ' messages to users who are not online; "stored" is when every sender\'s following ping was answered (each server handles a stream\'s stanzas in order). ' +
      'Then the recipients log in and send initial presence; "drain" runs from the first recipient login to the last message received.',
    ...(P.pepContacts !== undefined && P.scenarios.includes('pep')
      ? [
          '- **PEP** (XEP-0163): the publisher and each of its ' + int(P.pepContacts) + ' contacts have each other in their rosters with `subscription=both`, ' +
            'written into each server\'s storage before start like the accounts (see the table below; a subscription exchange over the wire is quadratic in Prosody\'s file storage and took minutes). ' +
            'The publisher logs in first, then the contacts; the publisher\'s roster, fetched over the wire, must show every contact as `both`. The contacts\' initial presence carries XEP-0115 caps (SHA-1 `ver` over their real disco#info, which lists ' +
            '`http://jabber.org/protocol/nick+notify`) and they answer the server\'s disco#info query for their caps node. After one unmeasured warm-up item reached every contact, ' +
            'the publisher publishes XEP-0172 nick items to its own PEP node on a fixed schedule (open loop); each contact records the receipt of every `pubsub#event` ' +
            'notification. Latency runs from the scheduled publish time to the receipt; notifications/s counts receipts during the publishing window; lost = items published × contacts − received. ' +
            'Prosody loads mod_pep and ejabberd mod_caps and mod_pubsub (plugins flat and pep) for this scenario only, as their packaged configurations do. ' +
            'A server that answers the publish with an error is reported as not supporting PEP.',
        ]
      : []),
    '- **Equivalent settings**: the same certificate (' + (P.certificate ?? 'RSA 2048') + ', self-signed), the same accounts with the same salts and SCRAM-SHA-1 verifiers, ' +
      'STARTTLS required, loopback only, no traffic shapers or limits (no Prosody mod_limits, no ejabberd c2s_shaper), listen backlog 1024, ' +
      'in-band registration on without throttles (unused), log level warning, file storage (Gatehouse SQLite, Prosody internal, ejabberd Mnesia). ' +
      'Prosody runs with `run_as_root = true`; ejabberd from a copy of ejabberdctl with the install user emptied, so all three run as the same user with the same open-files limit.',
    '',
    '### Accounts',
    '',
    '| Server | How the accounts were created | Time | Open files |',
    '|---|---|---:|---|',
    ...r.servers.map((s) => `| ${s.label} | ${s.provisioning ?? '–'} | ${s.provisionMs !== undefined ? `${dec(s.provisionMs / 1000, 1)} s` : '–'} | ${s.openFilesLimit ?? '–'} |`),
    '',
    '## Results',
    '',
  );

  const sc = (s: ServerResults) => s.scenarios;
  if (r.servers.some((s) => sc(s).logins)) {
    push(
      `### Logins (${int(P.logins)} accounts)`,
      '',
      table(r, [
        { label: 'logins/s', get: (s) => sc(s).logins?.loginsPerSec, fmt: int },
        { label: 'login time p50 (ms)', get: (s) => sc(s).logins?.latency.p50Ms, fmt: dec },
        { label: 'login time p99 (ms)', get: (s) => sc(s).logins?.latency.p99Ms, fmt: dec },
        { label: 'login time max (ms)', get: (s) => sc(s).logins?.latency.maxMs, fmt: dec },
        { label: 'server CPU (s)', get: (s) => sc(s).logins?.serverCpuSec, fmt: (n) => dec(n, 2) },
        { label: 'server CPU per login (ms)', get: (s) => sc(s).logins?.serverCpuMsPerLogin, fmt: (n) => dec(n, 2) },
        { label: 'load generator CPU (s)', get: (s) => sc(s).logins?.generatorCpuSec, fmt: (n) => dec(n, 2) },
        otherCpuRow((s) => sc(s).logins?.load),
        { label: 'failed logins', get: (s) => sc(s).logins?.failed, fmt: int, noRatio: true },
      ]),
      '',
    );
  }
  const rates = [...new Set(r.servers.flatMap((s) => (sc(s).messages ?? []).map((x) => x.offeredRate)))];
  for (const rate of rates) {
    const mr = (s: ServerResults) => sc(s).messages?.find((x) => x.offeredRate === rate);
    push(
      `### Messages: ${int(P.users)} online users, offered ${int(rate)} messages/s for ${P.durationS} s`,
      '',
      table(r, [
        { label: 'delivered messages/s', get: (s) => mr(s)?.deliveredPerSec, fmt: int },
        ...latencyRows('latency', (s) => mr(s)?.latency),
        { label: 'messages delivered late (after the 20 s wait)', get: (s) => (mr(s) ? mr(s)!.received - mr(s)!.receivedInWait : undefined), fmt: int, noRatio: true },
        { label: 'messages lost', get: (s) => mr(s)?.lost, fmt: int, noRatio: true },
        { label: 'server CPU while sending (% of one core)', get: (s) => mr(s)?.serverCpuPercent, fmt: int },
        { label: 'server CPU incl. catch-up (s)', get: (s) => mr(s)?.serverCpuSec, fmt: (n) => dec(n, 2) },
        { label: 'server RSS peak (MiB)', get: (s) => mr(s)?.serverRssPeakBytes, fmt: mib },
        generatorCpuRow((s) => mr(s)?.load),
        otherCpuRow((s) => mr(s)?.load),
        { label: 'generator met the offered rate', get: (s) => (mr(s) ? (mr(s)!.generator.keptUp ? 1 : 0) : undefined), fmt: (n) => (n === undefined ? '–' : n ? 'yes' : '**no**'), noRatio: true },
      ]),
      '',
    );
  }
  if (r.servers.some((s) => sc(s).idle)) {
    push(
      `### Idle connections: ${int(P.idle)} logged-in clients (TLS, bound, available)`,
      '',
      table(r, [
        { label: 'connections established', get: (s) => sc(s).idle?.connections, fmt: int, noRatio: true },
        { label: 'server RSS before (MiB)', get: (s) => sc(s).idle?.rssBeforeBytes, fmt: mib },
        { label: 'server RSS with all connected (MiB)', get: (s) => sc(s).idle?.rssAfterBytes, fmt: mib },
        { label: 'RSS per connection (KiB)', get: (s) => sc(s).idle?.rssPerConnectionBytes, fmt: kib },
        { label: 'logins/s while connecting', get: (s) => sc(s).idle?.loginsPerSec, fmt: int },
        { label: 'server CPU while idle (s per 5 s)', get: (s) => sc(s).idle?.idleCpuSecPer5s, fmt: (n) => dec(n, 3) },
      ]),
      '',
    );
    const f = r.tlsFloor;
    if (f)
      push(
        `For reference, measured the same way in this run: a bare Node.js TLS server (\`tls.createServer\` with the same certificate and Node.js, no XMPP; ` +
          '`scripts/bench/tls-floor.ts`) holding ' +
          `${int(f.connections)} idle TLS connections needs **${kib(f.rssPerConnectionBytes)} KiB per connection** ` +
          `(RSS ${mib(f.rssBeforeBytes)} → ${mib(f.rssAfterBytes)} MiB). That is the floor for any server on Node.js's TLS; what Gatehouse adds on top is its own per-connection state.`,
        '',
      );
  }
  if (r.servers.some((s) => sc(s).offline)) {
    push(
      `### Offline messages: ${int(P.offline)} messages to ${int(P.offlineRecipients)} offline users, then their logins drain the store`,
      '',
      table(r, [
        { label: 'stored messages/s (offered ' + int(P.offlineRate) + '/s)', get: (s) => sc(s).offline?.storedPerSec, fmt: int },
        { label: 'time until all stored (s)', get: (s) => (sc(s).offline ? sc(s).offline!.storeMs / 1000 : undefined), fmt: dec },
        { label: 'server CPU storing (s)', get: (s) => sc(s).offline?.serverCpuSecStore, fmt: (n) => dec(n, 2) },
        { label: 'drain time (s)', get: (s) => (sc(s).offline ? sc(s).offline!.drainMs / 1000 : undefined), fmt: dec },
        { label: 'drained messages/s', get: (s) => sc(s).offline?.drainedPerSec, fmt: int },
        { label: 'server CPU draining (s)', get: (s) => sc(s).offline?.serverCpuSecDrain, fmt: (n) => dec(n, 2) },
        { label: 'messages delivered', get: (s) => sc(s).offline?.delivered, fmt: int, noRatio: true },
        { label: 'messages lost', get: (s) => sc(s).offline?.lost, fmt: int, noRatio: true },
        { label: 'duplicates', get: (s) => sc(s).offline?.duplicates, fmt: int, noRatio: true },
      ]),
      '',
    );
  }

  if (r.servers.some((s) => sc(s).pep)) {
    const pp = (s: ServerResults) => sc(s).pep;
    const node = r.servers.map((s) => pp(s)?.node).find(Boolean) ?? '?';
    push(
      `### PEP: one user with ${int(P.pepContacts)} online contacts publishes to \`${node}\``,
      '',
      '| Server | How the mutual rosters were written | Time |',
      '|---|---|---:|',
      ...r.servers.filter((s) => pp(s)).map((s) => `| ${s.label} | ${pp(s)!.rosterProvisioning} | ${dec(pp(s)!.rosterProvisionMs / 1000, 1)} s |`),
      '',
      table(r, [
        { label: 'contacts online', get: (s) => pp(s)?.contactsOnline, fmt: int, noRatio: true },
        { label: 'mutual subscriptions in the publisher\'s roster', get: (s) => pp(s)?.mutualSubscriptions, fmt: int, noRatio: true },
        { label: 'caps disco#info queries answered by the contacts', get: (s) => pp(s)?.discoQueries, fmt: int, noRatio: true },
        { label: 'account disco#info shows identity pubsub/pep', get: () => undefined, fmt: int, text: (s) => (pp(s) ? (pp(s)!.advertisesPep ? 'yes' : 'no') : '–') },
        { label: 'PEP publish', get: () => undefined, fmt: int, text: (s) => (pp(s) ? (pp(s)!.supported ? 'accepted' : `**not supported** (${pp(s)!.unsupportedReason ?? '?'})`) : '–') },
        { label: 'contacts notified of the warm-up item', get: (s) => (pp(s)?.supported ? pp(s)!.warmupNotified : undefined), fmt: int, noRatio: true },
      ]),
      '',
    );
    const pepRates = [...new Set(r.servers.flatMap((s) => (pp(s)?.rates ?? []).map((x) => x.itemsPerSec)))];
    for (const rate of pepRates) {
      const pr = (s: ServerResults) => pp(s)?.rates.find((x) => x.itemsPerSec === rate);
      const first = r.servers.map(pr).find(Boolean)!;
      push(
        `### PEP: ${int(rate)} items/s to ${int(P.pepContacts)} contacts (${int(rate * (P.pepContacts ?? 0))} notifications/s offered), ${int(first.items)} items`,
        '',
        table(r, [
          { label: 'notifications delivered/s', get: (s) => pr(s)?.notificationsPerSec, fmt: int },
          ...latencyRows('latency publish → notification', (s) => pr(s)?.latency),
          { label: 'publish answered p99 (ms)', get: (s) => pr(s)?.publishAck.p99Ms, fmt: (n) => dec(n, 2) },
          { label: 'notifications delivered late (after the 20 s wait)', get: (s) => (pr(s) ? pr(s)!.received - pr(s)!.receivedInWait : undefined), fmt: int, noRatio: true },
          { label: 'notifications lost', get: (s) => pr(s)?.lost, fmt: int, noRatio: true },
          { label: 'publishes answered with an error', get: (s) => pr(s)?.publishErrors, fmt: int, noRatio: true },
          { label: 'server CPU while publishing (% of one core)', get: (s) => pr(s)?.serverCpuPercent, fmt: int },
          { label: 'server CPU incl. catch-up (s)', get: (s) => pr(s)?.serverCpuSec, fmt: (n) => dec(n, 2) },
          { label: 'server CPU per 1,000 notifications (ms)', get: (s) => (pr(s)?.received ? (pr(s)!.serverCpuSec * 1e6) / pr(s)!.received : undefined), fmt: (n) => dec(n, 1) },
          { label: 'server RSS peak (MiB)', get: (s) => pr(s)?.serverRssPeakBytes, fmt: mib },
          generatorCpuRow((s) => pr(s)?.load),
          otherCpuRow((s) => pr(s)?.load),
        ]),
        '',
      );
    }
  }

  if (r.servers.some((s) => sc(s).muc)) {
    const mu = (s: ServerResults) => sc(s).muc;
    push(
      `### MUC: one room with ${int(P.mucOccupants)} occupants`,
      '',
      table(r, [
        { label: 'conference service', get: () => undefined, fmt: int, text: (s) => (mu(s) ? (mu(s)!.supported ? 'answers as a MUC service' : `**skipped** (${mu(s)!.unsupportedReason ?? '?'})`) : '–') },
        { label: 'occupants in the room', get: (s) => (mu(s)?.supported ? mu(s)!.joined : undefined), fmt: int, noRatio: true },
        { label: 'joins refused', get: (s) => (mu(s)?.supported ? mu(s)!.joinRefused : undefined), fmt: int, noRatio: true },
        { label: 'time for everyone to enter (s)', get: (s) => (mu(s)?.supported ? mu(s)!.joinMs / 1000 : undefined), fmt: (n) => dec(n, 1) },
        { label: 'occupants who got the warm-up message', get: (s) => (mu(s)?.supported ? mu(s)!.warmupDelivered : undefined), fmt: int, noRatio: true },
      ]),
      '',
    );
    const mucRates = [...new Set(r.servers.flatMap((s) => (mu(s)?.rates ?? []).map((x) => x.messagesPerSec)))];
    for (const rate of mucRates) {
      const mr = (s: ServerResults) => mu(s)?.rates.find((x) => x.messagesPerSec === rate);
      const first = r.servers.map(mr).find(Boolean)!;
      push(
        `### MUC: ${int(rate)} messages/s to ${int(first.occupants)} occupants (${int(rate * first.occupants)} deliveries/s offered) for ${int(first.durationS)} s`,
        '',
        table(r, [
          { label: 'deliveries/s', get: (s) => mr(s)?.deliveredPerSec, fmt: int },
          ...latencyRows('latency send → occupant', (s) => mr(s)?.latency),
          { label: 'deliveries lost', get: (s) => mr(s)?.lost, fmt: int, noRatio: true },
          { label: 'server CPU while sending (% of one core)', get: (s) => mr(s)?.serverCpuPercent, fmt: int },
          { label: 'server CPU per 1,000 deliveries (ms)', get: (s) => (mr(s)?.received ? (mr(s)!.serverCpuSec * 1e6) / mr(s)!.received : undefined), fmt: (n) => dec(n, 1) },
          { label: 'server RSS peak (MiB)', get: (s) => mr(s)?.serverRssPeakBytes, fmt: mib },
          otherCpuRow((s) => mr(s)?.load),
        ]),
        '',
      );
    }
  }

  // Load generator and problems.
  const gen: string[] = [];
  for (const s of r.servers) {
    for (const x of sc(s).messages ?? []) {
      gen.push(
        `| ${s.label} | ${int(x.offeredRate)} | ${int(x.sent)} | ${int(x.skippedBackpressure)} | ${dec(x.generator.lagP99Ms, 1)} | ${int(x.generator.cpuPercentOfOneCore)} % | ${x.generator.keptUp ? 'yes' : '**no**'} |`,
      );
    }
  }
  if (gen.length) {
    push(
      '### Load generator',
      '',
      'Per worker process: CPU while sending as a share of one core. "Skipped" messages were not written because the sender\'s socket already held 1 MiB the server had not read.',
      '',
      '| Server | Offered/s | Sent | Skipped | Schedule lag p99 (ms) | Generator CPU | Met the rate |',
      '|---|---:|---:|---:|---:|---:|---|',
      ...gen,
      '',
    );
  }
  const problems: string[] = [];
  for (const s of r.servers) {
    for (const e of s.errors ?? []) problems.push(`- ${s.label}: ${e.split('\n')[0]}`);
    for (const n of s.notes ?? []) problems.push(`- ${s.label}: ${n}.`);
    const l = sc(s).logins;
    if (l?.failed) problems.push(`- ${s.label}: ${l.failed} logins failed (${l.errors.join('; ')})`);
    if (l?.clientPbkdf2) problems.push(`- ${s.label}: clients had to compute ${l.clientPbkdf2} SaltedPasswords (the server offered a different salt or iteration count)`);
    for (const x of sc(s).messages ?? []) {
      if (x.disconnects) problems.push(`- ${s.label}, ${int(x.offeredRate)}/s: ${x.disconnects} clients were disconnected by the server${x.streamErrors.length ? ` (${x.streamErrors.join('; ')})` : ''}`);
      if (x.duplicates) problems.push(`- ${s.label}, ${int(x.offeredRate)}/s: ${x.duplicates} messages delivered twice`);
      if (!x.generator.keptUp)
        problems.push(
          `- ${s.label}, ${int(x.offeredRate)}/s: the load generator could not send at the offered rate (schedule lag p99 ${dec(x.generator.lagP99Ms)} ms, ${int(x.skippedBackpressure)} skipped because the server did not read); treat the figures as the server's behaviour under overload.`,
        );
    }
    const busy: [string, LoadShare | undefined][] = [
      ['logins', sc(s).logins?.load],
      ...(sc(s).messages ?? []).map((x): [string, LoadShare] => [`${int(x.offeredRate)}/s`, x.load]),
      ['idle logins', sc(s).idle?.loadDuringLogins],
      ['offline store', sc(s).offline?.loadStore],
      ['offline drain', sc(s).offline?.loadDrain],
    ];
    for (const [what, l] of busy) {
      if (l && l.otherCores > 0.2) problems.push(`- ${s.label}, ${what}: other processes on the machine used ${int(100 * l.otherCores)} % of a core meanwhile; the figures are disturbed by that much.`);
      if (l && l.stealPercent > 5) problems.push(`- ${s.label}, ${what}: the hypervisor took ${int(l.stealPercent)} % of the CPU (steal).`);
    }
    for (const x of sc(s).messages ?? []) {
      if (!x.serverQuietBefore) problems.push(`- ${s.label}, ${int(x.offeredRate)}/s: the server was still busy with the previous rate's backlog when this one started.`);
      if (!x.serverQuietAfter)
        problems.push(
          `- ${s.label}, ${int(x.offeredRate)}/s: the server was still busy 50 s after sending ended` +
            (x.lost ? `; the ${int(x.lost)} messages not delivered by then are counted as lost.` : ' (all messages had arrived by then).'),
        );
    }
    const i = sc(s).idle;
    if (i?.failed) problems.push(`- ${s.label}, idle: ${i.failed} connections failed (${i.errors.join('; ')})`);
    if (i?.disconnects) problems.push(`- ${s.label}, idle: the server closed ${i.disconnects} idle connections`);
    const pe = sc(s).pep;
    if (pe) {
      if (pe.contactsOnline < pe.contacts) problems.push(`- ${s.label}, PEP: only ${int(pe.contactsOnline)} of ${int(pe.contacts)} contacts logged in`);
      if (pe.mutualSubscriptions < pe.contactsOnline) problems.push(`- ${s.label}, PEP: only ${int(pe.mutualSubscriptions)} of ${int(pe.contactsOnline)} subscriptions became mutual`);
      if (pe.supported && pe.warmupNotified < pe.contactsOnline)
        problems.push(`- ${s.label}, PEP: the warm-up item reached ${int(pe.warmupNotified)} of ${int(pe.contactsOnline)} contacts after ${pe.warmupTries} tries; contacts the server does not consider interested count as lost below`);
      for (const x of pe.rates) {
        const at = `${s.label}, PEP ${int(x.itemsPerSec)} items/s`;
        if (x.publishErrors) problems.push(`- ${at}: ${int(x.publishErrors)} publishes answered with an error (${x.firstPublishError ?? '?'})`);
        if (x.publishUnanswered) problems.push(`- ${at}: ${int(x.publishUnanswered)} publishes not answered`);
        if (x.duplicates) problems.push(`- ${at}: ${int(x.duplicates)} notifications delivered twice`);
        if (x.disconnects) problems.push(`- ${at}: ${x.disconnects} clients were disconnected by the server${x.streamErrors.length ? ` (${x.streamErrors.join('; ')})` : ''}`);
        if (!x.generator.keptUp) problems.push(`- ${at}: the publisher could not keep to its schedule (lag p99 ${dec(x.generator.lagP99Ms)} ms)`);
        if (!x.serverQuietBefore) problems.push(`- ${at}: the server was still busy with the previous rate's backlog when this one started.`);
        if (!x.serverQuietAfter) problems.push(`- ${at}: the server was still busy 50 s after publishing ended` + (x.lost ? `; the ${int(x.lost)} notifications not delivered by then are counted as lost.` : '.'));
        if (x.load.otherCores > 0.2) problems.push(`- ${at}: other processes on the machine used ${int(100 * x.load.otherCores)} % of a core meanwhile; the figures are disturbed by that much.`);
        if (x.load.stealPercent > 5) problems.push(`- ${at}: the hypervisor took ${int(x.load.stealPercent)} % of the CPU (steal).`);
      }
    }
    const mu = sc(s).muc;
    if (mu?.supported) {
      if (mu.joined < mu.loggedIn) problems.push(`- ${s.label}, MUC: ${int(mu.joined)} of ${int(mu.loggedIn)} occupants entered the room${mu.firstJoinError ? ` (${mu.firstJoinError})` : ''}`);
      for (const x of mu.rates) {
        const at = `${s.label}, MUC ${int(x.messagesPerSec)} messages/s`;
        if (x.duplicates) problems.push(`- ${at}: ${int(x.duplicates)} deliveries twice`);
        if (x.disconnects || x.streamErrors.length) problems.push(`- ${at}: ${x.disconnects} clients disconnected${x.streamErrors.length ? ` (${x.streamErrors.join('; ')})` : ''}`);
        if (!x.serverQuietAfter) problems.push(`- ${at}: the server was still busy 50 s after sending ended` + (x.lost ? `; the ${int(x.lost)} deliveries not made by then are counted as lost.` : '.'));
        if (x.load.otherCores > 0.2) problems.push(`- ${at}: other processes on the machine used ${int(100 * x.load.otherCores)} % of a core meanwhile; the figures are disturbed by that much.`);
      }
    }
    const o = sc(s).offline;
    if (o?.pingFailures) problems.push(`- ${s.label}, offline: ${o.pingFailures} senders' pings were not answered`);
    if (o?.recipientLoginFailures) problems.push(`- ${s.label}, offline: ${o.recipientLoginFailures} recipient logins failed`);
    if (o?.disconnects) problems.push(`- ${s.label}, offline: ${o.disconnects} clients disconnected by the server`);
  }
  push('### Problems seen during the run', '', ...(problems.length ? problems : ['None.']), '');
  push(MARKER, '');

  const kept = previous && previous.includes(MARKER) ? previous.slice(previous.indexOf(MARKER) + MARKER.length).replace(/^\n+/, '') : null;
  if (kept) push(kept.trimEnd(), '');
  else push('## Observations', '', '(Written by hand after a run.)', '', '## Optimisation log', '', '(Before/after figures for each optimisation step, newest last.)', '');
  return out.join('\n');
}
