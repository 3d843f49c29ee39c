/**
 * What the benchmark orchestrator (run.ts) and its load-generator workers (loadgen-worker.ts)
 * exchange over IPC, and the latency histogram both sides use.
 */

/** One benchmark account, the same on every server. */
export interface BenchAccount {
  name: string;
  password: string;
  /** Salt bytes, base64 (an ASCII hex string, as Prosody's own salts are text). */
  salt: string;
  iterations: number;
  /** SCRAM-SHA-1 SaltedPassword, base64: what a real client caches after its first login. */
  salted: string;
  /** StoredKey and ServerKey, base64: what the servers store. */
  storedKey: string;
  serverKey: string;
}

export interface WorkerInit {
  type: 'init';
  workerId: number;
  host: string;
  port: number;
  domain: string;
  /** PEM of the shared self-signed certificate: the workers verify the server against it. */
  ca: string;
  accounts: BenchAccount[];
}

/**
 * What a client does in the PEP scenario: the publisher publishes to its own PEP node; a contact
 * advertises +notify for that node through XEP-0115 caps and counts the notifications it receives.
 */
/**
 * Clients that cut what they receive into whole stanzas: the PEP scenario's publisher and contacts,
 * and the MUC scenario's room occupants (which count the group chat messages they receive, each
 * occupant for itself).
 */
export type PepRole = 'publisher' | 'contact' | 'occupant';

/** XEP-0172 User Nickname: a PEP node every server under test accepts, with the default (presence) access model. */
export const PEP_NODE = 'http://jabber.org/protocol/nick';

export type Command =
  | { type: 'login'; id: number; accounts: number[]; concurrency: number; timeoutMs: number; pep?: PepRole }
  | { type: 'logout'; id: number; timeoutMs: number }
  | {
      type: 'send';
      id: number;
      /** Messages per second offered by this worker. */
      rate: number;
      durationMs: number;
      /** Monotonic time (process.hrtime, microseconds) at which sending starts, the same for every worker. */
      startAtUs: number;
      /** Account indices this worker sends from (must be online in this worker). */
      senders: number[];
      /** Account indices (online anywhere, or offline on purpose) messages go to. */
      recipients: number[];
      /** A socket holding more unsent bytes than this is skipped (counted as not sent). */
      maxBufferedBytes: number;
      /** Written into every body; receivers count only the current phase. */
      phase: number;
      /** MUC scenario: every message goes to this room as type groupchat (recipients unused). */
      groupchat?: string;
    }
  | { type: 'ping'; id: number; accounts: number[]; timeoutMs: number }
  /** The publisher's roster, counted by subscription state. */
  | { type: 'pep-roster'; id: number; publisher: number; timeoutMs: number }
  /** disco#info of the publisher's own bare JID (XEP-0163 §6: identity pubsub/pep). */
  | { type: 'pep-disco'; id: number; publisher: number; timeoutMs: number }
  | {
      type: 'pep-publish';
      id: number;
      publisher: number;
      /** Items in total, published at `rate` per second from startAtUs (open loop). */
      count: number;
      rate: number;
      startAtUs: number;
      phase: number;
      /** How long to wait for the last answers after the last publish. */
      timeoutMs: number;
    }
  /** Each account (online in this worker as an occupant) enters `room` as nick = its account name, history off. */
  | { type: 'muc-join'; id: number; room: string; accounts: number[]; concurrency: number; timeoutMs: number }
  /** disco#info of a JID (the MUC scenario asks the service whether it is one). */
  | { type: 'disco-info'; id: number; from: number; jid: string; timeoutMs: number }
  /** Any iq from an online account ("{id}" in `stanza` is replaced by a fresh id); answered with the reply as text. */
  | { type: 'iq'; id: number; from: number; stanza: string; timeoutMs: number }
  | { type: 'stats'; id: number; reset: boolean; windowEndUs?: number; phase?: number }
  | { type: 'exit'; id: number };

export interface MucJoinResult {
  joined: number;
  /** Account indices now in the room. */
  occupants: number[];
  /** Joins answered with an error presence, and the first error's type/condition. */
  refused: number;
  firstError?: string;
  timedOut: number;
  durationMs: number;
}

export interface IqAnswer {
  /** The answer as received, null when none came within the time. */
  answer: string | null;
}

export interface DiscoInfoResult {
  answered: boolean;
  error?: string;
  identities: string[];
  features: string[];
}

export interface LoginResult {
  ok: number;
  /** Account indices now online in this worker. */
  online: number[];
  failed: number;
  errors: string[];
  /** Login times (connect to bind result), microseconds. */
  latency: HistogramData;
  /** SaltedPassword computations the worker had to do (0 when the cache was warm). */
  pbkdf2: number;
  durationMs: number;
  cpuUs: number;
}

export interface SendResult {
  sent: number;
  /** Not written because the socket's send buffer was over maxBufferedBytes (server not reading). */
  skipped: number;
  /** How late each message was written compared with its schedule, microseconds. */
  lag: HistogramData;
  /** Wall time from startAt to the last message written, milliseconds. */
  elapsedMs: number;
  cpuUs: number;
}

export interface StatsResult {
  received: number;
  /** Received no later than windowEndUs (when given). */
  receivedInWindow: number;
  duplicates: number;
  /** Benchmark messages of an earlier phase that arrived late. */
  stale: number;
  latency: HistogramData;
  /** Monotonic time of the last counted receipt, microseconds (0 if none). */
  lastReceiveUs: number;
  /** Sessions that ended without the worker asking. */
  disconnects: number;
  streamErrors: string[];
  online: number;
  cpuUs: number;
  rssBytes: number;
  /** Event loop delay p99 since the last reset, microseconds. */
  loopDelayP99Us: number;
  /** disco#info queries (XEP-0115 caps) the clients answered since the last reset. */
  discoQueries: number;
}

export interface PepRosterResult {
  items: number;
  both: number;
}

export interface PepDiscoResult {
  answered: boolean;
  /** `<identity category='pubsub' type='pep'/>` on the account. */
  pepIdentity: boolean;
  error?: string;
}

export interface PublishResult {
  sent: number;
  /** Publishes answered with type=result. */
  ok: number;
  errors: number;
  unanswered: number;
  /** The first error answer, shortened (an error condition, never a payload). */
  firstError?: string;
  lag: HistogramData;
  elapsedMs: number;
  /** Publish round trip (scheduled time to the server's answer), microseconds. */
  ack: HistogramData;
}

export interface PingResult {
  ok: number;
  failed: number;
  durationMs: number;
}

export type Reply =
  | { type: 'ready'; workerId: number }
  | { type: 'reply'; id: number; result: LoginResult | SendResult | StatsResult | PingResult | PepRosterResult | null | PepDiscoResult | PublishResult | MucJoinResult | DiscoInfoResult | IqAnswer | { closed: number } }
  | { type: 'error'; id: number; message: string };

// ---- histogram ----

/**
 * Log-linear buckets in the manner of HdrHistogram: exact below 64 µs, then 32 sub-buckets per
 * power of two (about 3 % resolution), up to 2^31 µs (35 minutes).
 */
export const HIST_BUCKETS = 64 + 26 * 32;

export interface HistogramData {
  counts: number[];
  count: number;
  max: number;
  sum: number;
}

export class Histogram {
  counts = new Float64Array(HIST_BUCKETS);
  count = 0;
  max = 0;
  sum = 0;

  static bucket(v: number): number {
    let n = Math.floor(v);
    if (n < 0) n = 0;
    if (n < 64) return n;
    if (n > 0x7fffffff) n = 0x7fffffff;
    const e = 31 - Math.clz32(n);
    const m = n >>> (e - 5);
    return Math.min(HIST_BUCKETS - 1, 64 + (e - 6) * 32 + (m - 32));
  }

  /** Middle of a bucket, microseconds. */
  static value(index: number): number {
    if (index < 64) return index;
    const e = Math.floor((index - 64) / 32) + 6;
    const m = ((index - 64) % 32) + 32;
    const low = m * 2 ** (e - 5);
    return low + 2 ** (e - 5) / 2;
  }

  record(v: number): void {
    this.counts[Histogram.bucket(v)]!++;
    this.count++;
    this.sum += v;
    if (v > this.max) this.max = v;
  }

  add(d: HistogramData): void {
    for (let i = 0; i < HIST_BUCKETS; i++) this.counts[i]! += d.counts[i] ?? 0;
    this.count += d.count;
    this.sum += d.sum;
    if (d.max > this.max) this.max = d.max;
  }

  /** The value below which `q` (0..1) of the samples fall, microseconds; 0 when empty. */
  quantile(q: number): number {
    if (this.count === 0) return 0;
    const target = Math.max(1, Math.ceil(q * this.count));
    let seen = 0;
    for (let i = 0; i < HIST_BUCKETS; i++) {
      seen += this.counts[i]!;
      if (seen >= target) return Math.min(Histogram.value(i), this.max);
    }
    return this.max;
  }

  toJSON(): HistogramData {
    // Sparse enough to send: trailing zero buckets are dropped.
    let last = HIST_BUCKETS - 1;
    while (last >= 0 && this.counts[last] === 0) last--;
    return { counts: Array.from(this.counts.subarray(0, last + 1)), count: this.count, max: this.max, sum: this.sum };
  }

  static from(...parts: HistogramData[]): Histogram {
    const h = new Histogram();
    for (const p of parts) h.add(p);
    return h;
  }
}

/** Monotonic clock shared by every process on the machine (CLOCK_MONOTONIC), microseconds. */
export function nowUs(): number {
  return Number(process.hrtime.bigint() / 1000n);
}
