/**
 * One load-generator process (forked by run.ts): a share of the benchmark clients over raw
 * sockets. Each client does what a real one does, and no more: TCP, STARTTLS, SCRAM-SHA-1 with the
 * SaltedPassword cached per account, resource binding, initial presence; then it sends chat
 * messages on an open-loop schedule and finds the timestamps in what it receives with a regular
 * expression (no XML parser: the generator must not be what is measured).
 *
 * In the PEP scenario the clients cut what they receive into whole stanzas (iq, presence, message:
 * none of them nests another of its kind here) because they must answer the server's iqs, among
 * them the disco#info query for their XEP-0115 caps node.
 *
 * Every wait is bounded; the worker exits when its parent goes away.
 */
import net from 'node:net';
import tls from 'node:tls';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Histogram, nowUs, PEP_NODE, type BenchAccount, type Command, type DiscoInfoResult, type IqAnswer, type LoginResult, type MucJoinResult, type PepDiscoResult, type PepRole, type PepRosterResult, type PingResult, type PublishResult, type Reply, type SendResult, type StatsResult, type WorkerInit } from './protocol.js';

const NS_SASL = 'urn:ietf:params:xml:ns:xmpp-sasl';
/** Longest a body marker can be: `<body>B ` + 16 digits + space. */
const MARKER_TAIL = 48;
const BODY_RE = /<body>B (\d+) (\d+)-(\d+)-(\d+)<\/body>/g;
const MAX_LOGIN_BUFFER = 256 * 1024;

// ---- PEP scenario ----

/** Marker in the published payload: `P <scheduled µs> <phase>-<worker>-<k>`. */
const PEP_RE = />P (\d+) (\d+)-(\d+)-(\d+)</g;
const STANZA_START = /<(iq|presence|message)(?=[\s/>])[^>]*>/y;
const ID_RE = /\bid=['"]([^'"]*)['"]/;
const TYPE_RE = /\btype=['"]([^'"]*)['"]/;
const FROM_RE = /\bfrom=['"]([^'"]*)['"]/;
/** A partial stanza larger than this (a roster of some thousand items is about 100 KB) means the framing lost its way. */
const MAX_FRAME_BUFFER = 8 * 1024 * 1024;
const NS_DISCO_INFO = 'http://jabber.org/protocol/disco#info';
const CAPS_NODE = 'https://gatehouse.invalid/bench-client';
const CAPS_IDENTITY = { category: 'client', type: 'pc', name: 'Gatehouse bench' };
const CAPS_FEATURES = ['http://jabber.org/protocol/caps', NS_DISCO_INFO, PEP_NODE, `${PEP_NODE}+notify`, 'urn:xmpp:ping'].sort();
/** XEP-0115 §5.1 verification string and `ver` (SHA-1, base64). */
const CAPS_VER = createHash('sha1')
  .update(`${CAPS_IDENTITY.category}/${CAPS_IDENTITY.type}//${CAPS_IDENTITY.name}<` + CAPS_FEATURES.map((f) => `${f}<`).join(''), 'utf8')
  .digest('base64');
const CAPS_PRESENCE = `<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' node='${CAPS_NODE}' ver='${CAPS_VER}'/></presence>`;
const CAPS_QUERY_BODY =
  `<identity category='${CAPS_IDENTITY.category}' type='${CAPS_IDENTITY.type}' name='${CAPS_IDENTITY.name}'/>` + CAPS_FEATURES.map((f) => `<feature var='${f}'/>`).join('');

let init: WorkerInit | null = null;
const saltedCache = new Map<string, Buffer>();
let pbkdf2Count = 0;

/** Clients by account index. */
const clients = new Map<number, Client>();

// ---- receive-side counters, reset by 'stats' with reset=true ----
let latency = new Histogram();
let received = 0;
let receivedInWindow = 0;
let windowEndUs = Infinity;
let duplicates = 0;
let stale = 0;
let lastReceiveUs = 0;
let phase = 0;
let seenIds: Set<string> | null = null;
let disconnects = 0;
let discoQueries = 0;
let streamErrors: string[] = [];
let cpuMark = process.cpuUsage();
const loopDelay = monitorEventLoopDelay({ resolution: 10 });
loopDelay.enable();

function send(msg: Reply): void {
  if (process.connected) process.send!(msg);
}

class LoginError extends Error {}

/** One received benchmark marker (a message body or a PEP payload). */
function record(now: number, scheduledUs: number, markerPhase: number, key: string): void {
  if (markerPhase !== phase) {
    stale++;
    return;
  }
  if (seenIds) {
    if (seenIds.has(key)) {
      duplicates++;
      return;
    }
    seenIds.add(key);
  }
  received++;
  lastReceiveUs = now;
  if (now <= windowEndUs) receivedInWindow++;
  latency.record(now - scheduledUs);
}

/** `type/condition` of a stanza error, plus a pubsub#errors condition if any; never element text. */
function errorCondition(stanza: string): string {
  const err = /<error\b([^>]*)>([\s\S]*?)<\/error>/.exec(stanza);
  if (!err) return 'error without <error/>';
  const type = TYPE_RE.exec(err[1]!)?.[1] ?? '?';
  const cond = /<([a-z-]+)[^>]*xmlns=['"]urn:ietf:params:xml:ns:xmpp-stanzas['"]/.exec(err[2]!)?.[1] ?? '?';
  const ps = /<([a-z-]+)(?=[^>]*\bxmlns=['"]http:\/\/jabber\.org\/protocol\/pubsub#errors['"])(?=(?:[^>]*\bfeature=['"]([^'"]*)['"])?)/.exec(err[2]!);
  return `${type}/${cond}${ps ? ` (pubsub#errors ${ps[1]}${ps[2] ? ` feature=${ps[2]}` : ''})` : ''}`;
}

class Client {
  raw: net.Socket | null = null;
  sock: net.Socket | null = null;
  private buf = '';
  private waiter: { re: RegExp; resolve: (m: RegExpExecArray) => void; reject: (e: Error) => void; timer: NodeJS.Timeout } | null = null;
  online = false;
  closing = false;
  closed = false;
  private pings = new Map<string, () => void>();
  private pingSeq = 0;
  /** Answers to our own iqs in the PEP scenario, by id; called with null when the connection closes. */
  private iqWaiters = new Map<string, (stanza: string | null) => void>();
  /** MUC scenario: the join in progress, resolved by the own presence from the room or an error presence. */
  private joinWaiter: { occupantJid: string; resolve: (presence: string | null) => void } | null = null;

  constructor(
    readonly index: number,
    readonly account: BenchAccount,
    /** Set for the PEP scenario: whole stanzas are handled (see the file comment). */
    readonly pep: PepRole | null = null,
  ) {}

  /** Connect, STARTTLS, SCRAM-SHA-1, bind, presence. Rejects with a one-line reason. */
  async login(timeoutMs: number): Promise<void> {
    const cfg = init!;
    const deadline = Date.now() + timeoutMs;
    const left = () => Math.max(1, deadline - Date.now());
    const raw = net.connect({ host: cfg.host, port: cfg.port });
    raw.setNoDelay(true);
    this.raw = raw;
    this.sock = raw;
    this.attach(raw);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new LoginError('connect timeout')), left());
      raw.once('connect', () => {
        clearTimeout(t);
        resolve();
      });
      raw.once('error', (e) => {
        clearTimeout(t);
        reject(new LoginError(`connect: ${e.message}`));
      });
    });
    const header = `<?xml version='1.0'?><stream:stream to='${cfg.domain}' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0' xml:lang='en'>`;
    this.write(header);
    let features = await this.expect(/<stream:features[\s\S]*?<\/stream:features>|<stream:features\/>/, left());
    if (!features[0].includes('starttls')) throw new LoginError('no STARTTLS offered');
    this.write("<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>");
    await this.expect(/<proceed[^>]*?(?:\/>|>\s*<\/proceed>)/, left());
    raw.removeAllListeners('data');
    const secure = tls.connect({ socket: raw, servername: cfg.domain, secureContext: clientContext(), minVersion: 'TLSv1.2' });
    this.sock = secure;
    this.buf = '';
    this.attach(secure);
    await new Promise<void>((resolve, reject) => {
      const t = setTimeout(() => reject(new LoginError('TLS handshake timeout')), left());
      secure.once('secureConnect', () => {
        clearTimeout(t);
        resolve();
      });
      secure.once('error', (e) => {
        clearTimeout(t);
        reject(new LoginError(`TLS: ${e.message}`));
      });
    });
    this.write(header);
    features = await this.expect(/<stream:features[\s\S]*?<\/stream:features>/, left());
    if (!/<mechanism>SCRAM-SHA-1<\/mechanism>/.test(features[0])) throw new LoginError('SCRAM-SHA-1 not offered');

    // SCRAM-SHA-1 (RFC 5802), no channel binding ("n,,").
    const acc = this.account;
    const cnonce = randomBytes(18).toString('base64');
    const clientFirstBare = `n=${acc.name.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${cnonce}`;
    this.write(`<auth xmlns='${NS_SASL}' mechanism='SCRAM-SHA-1'>${Buffer.from('n,,' + clientFirstBare).toString('base64')}</auth>`);
    const ch = await this.expect(/<challenge[^>]*>([^<]*)<\/challenge>|<failure[\s\S]*?<\/failure>/, left());
    if (ch[1] === undefined) throw new LoginError(`SASL failure: ${ch[0].slice(0, 200)}`);
    const serverFirst = Buffer.from(ch[1], 'base64').toString('utf8');
    const attrs = new Map(serverFirst.split(',').map((kv) => [kv.slice(0, 1), kv.slice(2)] as [string, string]));
    const nonce = attrs.get('r') ?? '';
    const saltB64 = attrs.get('s') ?? '';
    const iterations = Number(attrs.get('i'));
    if (!nonce.startsWith(cnonce) || !saltB64 || !Number.isSafeInteger(iterations)) throw new LoginError(`bad server-first-message: ${serverFirst}`);
    const salted = saltedPassword(acc, saltB64, iterations);
    const clientFinalNoProof = `c=biws,r=${nonce}`;
    const authMessage = `${clientFirstBare},${serverFirst},${clientFinalNoProof}`;
    const clientKey = createHmac('sha1', salted).update('Client Key').digest();
    const storedKey = createHash('sha1').update(clientKey).digest();
    const clientSig = createHmac('sha1', storedKey).update(authMessage).digest();
    for (let i = 0; i < clientKey.length; i++) clientKey[i]! ^= clientSig[i]!;
    const clientFinal = `${clientFinalNoProof},p=${clientKey.toString('base64')}`;
    this.write(`<response xmlns='${NS_SASL}'>${Buffer.from(clientFinal).toString('base64')}</response>`);
    const done = await this.expect(/<success[^>]*?\/>|<success[^>]*>([^<]*)<\/success>|<failure[\s\S]*?<\/failure>|<challenge[^>]*>([^<]*)<\/challenge>/, left());
    if (done[0].startsWith('<failure')) throw new LoginError(`SASL failure: ${done[0].slice(0, 200)}`);
    const final = done[1] ?? done[2];
    if (final) {
      const v = Buffer.from(final, 'base64').toString('utf8');
      const serverKey = createHmac('sha1', salted).update('Server Key').digest();
      const expected = createHmac('sha1', serverKey).update(authMessage).digest('base64');
      if (v !== `v=${expected}`) throw new LoginError('server signature does not verify');
      // RFC 6120 6.3.10: a challenge carrying the additional data needs an empty response.
      if (done[0].startsWith('<challenge')) {
        this.write(`<response xmlns='${NS_SASL}'/>`);
        await this.expect(/<success[^>]*?\/>|<success[^>]*>[^<]*<\/success>/, left());
      }
    }
    this.write(header);
    features = await this.expect(/<stream:features[\s\S]*?<\/stream:features>/, left());
    if (!features[0].includes('urn:ietf:params:xml:ns:xmpp-bind')) throw new LoginError('no resource binding offered');
    this.write("<iq type='set' id='bind1'><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'><resource>bench</resource></bind></iq>");
    const bound = await this.expect(/<iq[^>]*?id=['"]bind1['"][^>]*?(?:\/>|>[\s\S]*?<\/iq>)/, left());
    if (!/type=['"]result['"]/.test(bound[0])) throw new LoginError(`bind failed: ${bound[0].slice(0, 200)}`);
    this.write(this.pep === 'contact' ? CAPS_PRESENCE : '<presence/>');
    this.online = true;
    const rest = this.buf;
    this.buf = '';
    if (rest) this.receive(rest);
  }

  private attach(s: net.Socket): void {
    s.on('data', (chunk: Buffer) => this.onData(chunk));
    s.on('error', () => undefined);
    s.on('close', () => this.onClose());
  }

  private onClose(): void {
    if (this.closed) return;
    // The raw socket closes with its TLS wrapper; count the client once.
    this.closed = true;
    if (this.online && !this.closing) disconnects++;
    this.online = false;
    if (this.waiter) {
      clearTimeout(this.waiter.timer);
      this.waiter.reject(new LoginError(`connection closed${this.buf ? `: ${this.buf.slice(-200)}` : ''}`));
      this.waiter = null;
    }
    for (const done of this.pings.values()) done();
    this.pings.clear();
    for (const done of this.iqWaiters.values()) done(null);
    this.iqWaiters.clear();
  }

  private onData(chunk: Buffer): void {
    const text = chunk.toString('latin1');
    if (this.online) {
      this.receive(this.buf + text);
      return;
    }
    this.buf += text;
    if (this.buf.length > MAX_LOGIN_BUFFER) {
      this.waiter?.reject(new LoginError('too much data during login'));
      this.waiter = null;
      return;
    }
    this.checkWaiter();
  }

  private checkWaiter(): void {
    const w = this.waiter;
    if (!w) return;
    const err = /<stream:error>[\s\S]*?<\/stream:error>/.exec(this.buf);
    if (err) {
      clearTimeout(w.timer);
      this.waiter = null;
      w.reject(new LoginError(`stream error: ${err[0].slice(0, 200)}`));
      return;
    }
    const m = w.re.exec(this.buf);
    if (!m) return;
    clearTimeout(w.timer);
    this.waiter = null;
    this.buf = this.buf.slice(m.index + m[0].length);
    w.resolve(m);
  }

  private expect(re: RegExp, timeoutMs: number): Promise<RegExpExecArray> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        reject(new LoginError(`timeout waiting for ${re.source.slice(0, 40)} (have: ${this.buf.slice(-160)})`));
      }, timeoutMs);
      this.waiter = { re, resolve, reject, timer };
      this.checkWaiter();
    });
  }

  write(data: string): void {
    const s = this.sock;
    if (s && !s.destroyed) s.write(data);
  }

  get buffered(): number {
    return this.sock?.writableLength ?? 0;
  }

  private receive(text: string): void {
    if (this.pep) this.frame(text);
    else this.scan(text);
  }

  /** Finds the benchmark messages in received text; keeps a tail that may hold a partial marker. */
  private scan(text: string): void {
    const now = nowUs();
    BODY_RE.lastIndex = 0;
    let end = 0;
    let m: RegExpExecArray | null;
    while ((m = BODY_RE.exec(text)) !== null) {
      end = m.index + m[0].length;
      record(now, Number(m[1]), Number(m[2]), `${m[3]}-${m[4]}`);
    }
    if (text.includes('<iq')) this.answerIqs(text);
    if (text.includes('<stream:error')) {
      const e = /<stream:error>([\s\S]*?)<\/stream:error>/.exec(text);
      if (e && streamErrors.length < 10) streamErrors.push(e[1]!.slice(0, 200));
    }
    const keepFrom = Math.max(end, text.length - MARKER_TAIL);
    this.buf = text.slice(keepFrom);
  }

  /** Answers server pings (XEP-0199) and completes our own. */
  private answerIqs(text: string): void {
    const re = /<iq\b([^>]*)>/g;
    let m: RegExpExecArray | null;
    while ((m = re.exec(text)) !== null) {
      const a = m[1]!;
      const id = /\bid=['"]([^'"]*)['"]/.exec(a)?.[1];
      const type = /\btype=['"]([^'"]*)['"]/.exec(a)?.[1];
      if (!id) continue;
      if (type === 'get') {
        const from = /\bfrom=['"]([^'"]*)['"]/.exec(a)?.[1];
        this.write(`<iq type='result' id='${id}'${from ? ` to='${from}'` : ''}/>`);
      } else if ((type === 'result' || type === 'error') && this.pings.has(id)) {
        const done = this.pings.get(id)!;
        this.pings.delete(id);
        done();
      }
    }
  }

  /** Cuts `text` into whole top-level stanzas and handles each; keeps an incomplete one for the next read. */
  private frame(text: string): void {
    let pos = 0;
    for (;;) {
      const lt = text.indexOf('<', pos);
      if (lt < 0) {
        pos = text.length;
        break;
      }
      STANZA_START.lastIndex = lt;
      const m = STANZA_START.exec(text);
      if (!m) {
        if (text.startsWith('<stream:error', lt)) {
          const close = text.indexOf('</stream:error>', lt);
          if (close < 0) {
            pos = lt;
            break;
          }
          if (streamErrors.length < 10) streamErrors.push(text.slice(lt, close).replace(/^<stream:error>/, '').slice(0, 200));
          pos = close + 15;
          continue;
        }
        // Anything else at the top level (the end of the stream, whitespace pings) is not ours to answer.
        const gt = text.indexOf('>', lt);
        if (gt < 0) {
          pos = lt;
          break;
        }
        pos = gt + 1;
        continue;
      }
      const name = m[1]!;
      let end: number;
      if (m[0].endsWith('/>')) end = lt + m[0].length;
      else {
        const close = text.indexOf(`</${name}>`, lt + m[0].length);
        if (close < 0) {
          pos = lt;
          break;
        }
        end = close + name.length + 3;
      }
      this.stanza(name, m[0], text.slice(lt, end));
      pos = end;
    }
    this.buf = text.slice(pos);
    if (this.buf.length > MAX_FRAME_BUFFER) {
      if (streamErrors.length < 10) streamErrors.push(`load generator: ${this.buf.length} bytes without a complete stanza`);
      this.buf = '';
    }
  }

  private stanza(name: string, startTag: string, stanza: string): void {
    const type = TYPE_RE.exec(startTag)?.[1];
    if (name === 'message') {
      if (this.pep === 'occupant') {
        const now = nowUs();
        BODY_RE.lastIndex = 0;
        let m: RegExpExecArray | null;
        while ((m = BODY_RE.exec(stanza)) !== null) record(now, Number(m[1]), Number(m[2]), `${this.index}:${m[3]}-${m[4]}`);
        if (type === 'error' && streamErrors.length < 10) streamErrors.push(`group chat message refused: ${errorCondition(stanza)}`);
        return;
      }
      if (this.pep !== 'contact') return;
      const now = nowUs();
      PEP_RE.lastIndex = 0;
      let m: RegExpExecArray | null;
      while ((m = PEP_RE.exec(stanza)) !== null) record(now, Number(m[1]), Number(m[2]), `${this.index}:${m[3]}-${m[4]}`);
      return;
    }
    if (name === 'presence') {
      const w = this.joinWaiter;
      if (w && FROM_RE.exec(startTag)?.[1] === w.occupantJid && (type === 'error' || /\bcode=['"]110['"]/.test(stanza))) {
        this.joinWaiter = null;
        w.resolve(stanza);
      }
      return;
    }
    const from = FROM_RE.exec(startTag)?.[1];
    const id = ID_RE.exec(startTag)?.[1];
    if (id === undefined) return;
    if (type === 'result' || type === 'error') {
      const waiter = this.iqWaiters.get(id);
      if (waiter) {
        this.iqWaiters.delete(id);
        waiter(stanza);
        return;
      }
      const ping = this.pings.get(id);
      if (ping) {
        this.pings.delete(id);
        ping();
      }
      return;
    }
    const to = from ? ` to='${from}'` : '';
    if (type === 'get' && stanza.includes(NS_DISCO_INFO)) {
      discoQueries++;
      const node = /<query\b[^>]*\bnode=['"]([^'"]*)['"]/.exec(stanza)?.[1];
      this.write(`<iq type='result' id='${id}'${to}><query xmlns='${NS_DISCO_INFO}'${node ? ` node='${node}'` : ''}>${CAPS_QUERY_BODY}</query></iq>`);
    } else if ((type === 'set' && stanza.includes('jabber:iq:roster')) || (type === 'get' && stanza.includes('urn:xmpp:ping'))) {
      this.write(`<iq type='result' id='${id}'${to}/>`);
    } else {
      this.write(`<iq type='error' id='${id}'${to}><error type='cancel'><service-unavailable xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/></error></iq>`);
    }
  }

  /** Sends an iq (PEP scenario) and resolves with the answer, or null on timeout or close. */
  iq(id: string, stanza: string, timeoutMs: number): Promise<string | null> {
    if (!this.online) return Promise.resolve(null);
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.iqWaiters.delete(id);
        resolve(null);
      }, timeoutMs);
      this.iqWaiters.set(id, (answer) => {
        clearTimeout(t);
        resolve(answer);
      });
      this.write(stanza);
    });
  }

  /** Enters a room (XEP-0045 7.2, no history); resolves with the own presence or the error presence, null on timeout. */
  joinRoom(room: string, timeoutMs: number): Promise<string | null> {
    if (!this.online) return Promise.resolve(null);
    const occupantJid = `${room}/${this.account.name}`;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.joinWaiter = null;
        resolve(null);
      }, timeoutMs);
      this.joinWaiter = {
        occupantJid,
        resolve: (p) => {
          clearTimeout(t);
          resolve(p);
        },
      };
      this.write(`<presence to='${occupantJid}'><x xmlns='http://jabber.org/protocol/muc'><history maxstanzas='0'/></x></presence>`);
    });
  }

  /** Round trip to the server: it answers after it has handled everything sent before. */
  ping(timeoutMs: number): Promise<boolean> {
    if (!this.online) return Promise.resolve(false);
    const id = `p${++this.pingSeq}`;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        this.pings.delete(id);
        resolve(false);
      }, timeoutMs);
      this.pings.set(id, () => {
        clearTimeout(t);
        resolve(true);
      });
      this.write(`<iq type='get' id='${id}' to='${init!.domain}'><ping xmlns='urn:xmpp:ping'/></iq>`);
    });
  }

  /** Ends the stream politely; destroys the socket if the server does not close within the time. */
  close(timeoutMs: number): Promise<void> {
    this.closing = true;
    if (this.closed || !this.sock) return Promise.resolve();
    const s = this.sock;
    return new Promise((resolve) => {
      const t = setTimeout(() => {
        s.destroy();
        this.raw?.destroy();
        resolve();
      }, timeoutMs);
      s.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      if (this.online) s.write('</stream:stream>');
      s.end();
    });
  }

  destroy(): void {
    this.closing = true;
    this.sock?.destroy();
    this.raw?.destroy();
  }
}

let sharedContext: tls.SecureContext | null = null;
/** One context for every client: building one per connection (parsing the CA) costs more than the handshake. */
function clientContext(): tls.SecureContext {
  return (sharedContext ??= tls.createSecureContext({ ca: init!.ca, minVersion: 'TLSv1.2' }));
}

function saltedPassword(acc: BenchAccount, saltB64: string, iterations: number): Buffer {
  const key = `${acc.name}\u0000${saltB64}\u0000${iterations}`;
  let v = saltedCache.get(key);
  if (!v) {
    v = pbkdf2Sync(acc.password, Buffer.from(saltB64, 'base64'), iterations, 20, 'sha1');
    pbkdf2Count++;
    saltedCache.set(key, v);
  }
  return v;
}

// ---- commands ----

async function login(accounts: number[], concurrency: number, timeoutMs: number, pep: PepRole | null): Promise<LoginResult> {
  const cpu0 = process.cpuUsage();
  const t0 = Date.now();
  const pb0 = pbkdf2Count;
  const hist = new Histogram();
  const errors: string[] = [];
  let ok = 0;
  let failed = 0;
  let next = 0;
  const online: number[] = [];
  const runOne = async (): Promise<void> => {
    while (next < accounts.length) {
      const index = accounts[next++]!;
      const previous = clients.get(index);
      if (previous && !previous.closed) previous.destroy();
      const c = new Client(index, init!.accounts[index]!, pep);
      clients.set(index, c);
      const start = nowUs();
      try {
        await c.login(timeoutMs);
        hist.record(nowUs() - start);
        ok++;
        online.push(index);
      } catch (err) {
        failed++;
        if (errors.length < 5) errors.push(`${c.account.name}: ${err instanceof Error ? err.message : String(err)}`);
        c.destroy();
        clients.delete(index);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, accounts.length)) }, runOne));
  const cpu = process.cpuUsage(cpu0);
  return { ok, online, failed, errors, latency: hist.toJSON(), pbkdf2: pbkdf2Count - pb0, durationMs: Date.now() - t0, cpuUs: cpu.user + cpu.system };
}

/** Every account enters the room, `concurrency` joins at a time (each waits for its own presence). */
async function mucJoin(room: string, accounts: number[], concurrency: number, timeoutMs: number): Promise<MucJoinResult> {
  const t0 = Date.now();
  const result: MucJoinResult = { joined: 0, occupants: [], refused: 0, timedOut: 0, durationMs: 0 };
  let next = 0;
  const one = async (): Promise<void> => {
    while (next < accounts.length) {
      const index = accounts[next++]!;
      const c = clients.get(index);
      const answer = c ? await c.joinRoom(room, timeoutMs) : null;
      if (answer === null) result.timedOut++;
      else if (TYPE_RE.exec(answer)?.[1] === 'error') {
        result.refused++;
        result.firstError ??= errorCondition(answer);
      } else {
        result.joined++;
        result.occupants.push(index);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, Math.min(concurrency, accounts.length)) }, one));
  result.durationMs = Date.now() - t0;
  return result;
}

async function discoInfo(from: number, jid: string, timeoutMs: number): Promise<DiscoInfoResult> {
  const c = clients.get(from);
  if (!c?.online) throw new Error(`account ${from} is not online in this worker`);
  const id = `dinfo${++iqSeq}`;
  const answer = await c.iq(id, `<iq type='get' id='${id}' to='${jid}'><query xmlns='${NS_DISCO_INFO}'/></iq>`, timeoutMs);
  if (answer === null) return { answered: false, identities: [], features: [] };
  if (TYPE_RE.exec(answer)?.[1] === 'error') return { answered: true, error: errorCondition(answer), identities: [], features: [] };
  const attr = (tag: string, name: string) => new RegExp(`\\b${name}=['"]([^'"]*)['"]`).exec(tag)?.[1] ?? '';
  return {
    answered: true,
    identities: (answer.match(/<identity\b[^>]*>/g) ?? []).map((t) => `${attr(t, 'category')}/${attr(t, 'type')}`),
    features: (answer.match(/<feature\b[^>]*>/g) ?? []).map((t) => attr(t, 'var')),
  };
}

async function rawIq(from: number, stanza: string, timeoutMs: number): Promise<IqAnswer> {
  const c = clients.get(from);
  if (!c?.online) throw new Error(`account ${from} is not online in this worker`);
  const id = `raw${++iqSeq}`;
  return { answer: await c.iq(id, stanza.replace('{id}', id), timeoutMs) };
}

async function logout(timeoutMs: number): Promise<{ closed: number }> {
  const all = [...clients.values()];
  clients.clear();
  await Promise.all(all.map((c) => c.close(timeoutMs)));
  return { closed: all.length };
}

function sendPhase(cmd: Extract<Command, { type: 'send' }>): Promise<SendResult> {
  const cfg = init!;
  const senders = cmd.senders.map((i) => clients.get(i)).filter((c): c is Client => !!c && c.online);
  const recipients = cmd.recipients.map((i) => `${cfg.accounts[i]!.name}@${cfg.domain}`);
  const total = Math.round((cmd.rate * cmd.durationMs) / 1000);
  const intervalUs = 1e6 / cmd.rate;
  const lag = new Histogram();
  const cpu0 = process.cpuUsage();
  let k = 0;
  let sent = 0;
  let skipped = 0;
  const wid = cfg.workerId;
  return new Promise((resolve) => {
    if (senders.length === 0 || (recipients.length === 0 && !cmd.groupchat) || total === 0) {
      resolve({ sent: 0, skipped: total, lag: lag.toJSON(), elapsedMs: 0, cpuUs: 0 });
      return;
    }
    let lastWriteUs = cmd.startAtUs;
    const tick = (): void => {
      const now = nowUs();
      if (now >= cmd.startAtUs) {
        const due = Math.min(total, Math.floor((now - cmd.startAtUs) / intervalUs) + 1);
        while (k < due) {
          const scheduled = cmd.startAtUs + k * intervalUs;
          const from = senders[(Math.random() * senders.length) | 0]!;
          if (cmd.groupchat) {
            k++;
            if (!from.online || from.buffered > cmd.maxBufferedBytes) {
              skipped++;
              continue;
            }
            from.write(`<message to='${cmd.groupchat}' type='groupchat' id='g${wid}-${k}'><body>B ${Math.round(scheduled)} ${cmd.phase}-${wid}-${k}</body></message>`);
            sent++;
            lag.record(now - scheduled);
            continue;
          }
          let to = recipients[(Math.random() * recipients.length) | 0]!;
          if (recipients.length > 1 && to.startsWith(`${from.account.name}@`)) to = recipients[(recipients.indexOf(to) + 1) % recipients.length]!;
          k++;
          if (!from.online || from.buffered > cmd.maxBufferedBytes) {
            skipped++;
            continue;
          }
          from.write(`<message to='${to}' type='chat' id='m${wid}-${k}'><body>B ${Math.round(scheduled)} ${cmd.phase}-${wid}-${k}</body></message>`);
          sent++;
          lag.record(now - scheduled);
        }
        lastWriteUs = now;
      }
      if (k >= total) {
        clearInterval(timer);
        const cpu = process.cpuUsage(cpu0);
        resolve({ sent, skipped, lag: lag.toJSON(), elapsedMs: (lastWriteUs - cmd.startAtUs) / 1000, cpuUs: cpu.user + cpu.system });
      }
    };
    const timer = setInterval(tick, 1);
  });
}

function publisherClient(index: number): Client {
  const c = clients.get(index);
  if (!c?.online) throw new Error(`PEP publisher ${index} is not online in this worker`);
  return c;
}

let iqSeq = 0;

/** Null when the roster did not come within the time. */
async function pepRoster(publisher: number, timeoutMs: number): Promise<PepRosterResult | null> {
  const id = `roster${++iqSeq}`;
  const answer = await publisherClient(publisher).iq(id, `<iq type='get' id='${id}'><query xmlns='jabber:iq:roster'/></iq>`, timeoutMs);
  if (answer === null) return null;
  return { items: answer.match(/<item\b/g)?.length ?? 0, both: answer.match(/\bsubscription=['"]both['"]/g)?.length ?? 0 };
}

async function pepDisco(publisher: number, timeoutMs: number): Promise<PepDiscoResult> {
  const id = `dpep${++iqSeq}`;
  const bare = `${init!.accounts[publisher]!.name}@${init!.domain}`;
  const answer = await publisherClient(publisher).iq(id, `<iq type='get' id='${id}' to='${bare}'><query xmlns='${NS_DISCO_INFO}'/></iq>`, timeoutMs);
  if (answer === null) return { answered: false, pepIdentity: false };
  if (TYPE_RE.exec(answer)?.[1] === 'error') return { answered: true, pepIdentity: false, error: errorCondition(answer) };
  return { answered: true, pepIdentity: /<identity\b(?=[^>]*\bcategory=['"]pubsub['"])(?=[^>]*\btype=['"]pep['"])[^>]*>/.test(answer) };
}

/** Publishes `count` items on an open-loop schedule; resolves once every publish is answered or timeoutMs after the last one. */
function pepPublish(cmd: Extract<Command, { type: 'pep-publish' }>): Promise<PublishResult> {
  const pub = publisherClient(cmd.publisher);
  const wid = init!.workerId;
  const intervalUs = 1e6 / cmd.rate;
  const lag = new Histogram();
  const ack = new Histogram();
  let k = 0;
  let ok = 0;
  let errors = 0;
  let firstError: string | undefined;
  let lastWriteUs = cmd.startAtUs;
  const answers: Promise<void>[] = [];
  return new Promise((resolve) => {
    const finish = async (): Promise<void> => {
      await Promise.all(answers);
      resolve({ sent: k, ok, errors, unanswered: k - ok - errors, firstError, lag: lag.toJSON(), elapsedMs: (lastWriteUs - cmd.startAtUs) / 1000, ack: ack.toJSON() });
    };
    const tick = (): void => {
      const now = nowUs();
      if (now < cmd.startAtUs) return;
      const due = Math.min(cmd.count, Math.floor((now - cmd.startAtUs) / intervalUs) + 1);
      while (k < due) {
        const scheduled = Math.round(cmd.startAtUs + k * intervalUs);
        k++;
        const id = `pub${cmd.phase}-${wid}-${k}`;
        const left = (cmd.count - k) * (intervalUs / 1000) + cmd.timeoutMs;
        const stanza =
          `<iq type='set' id='${id}'><pubsub xmlns='http://jabber.org/protocol/pubsub'><publish node='${PEP_NODE}'>` +
          `<item id='i${cmd.phase}-${wid}-${k}'><nick xmlns='${PEP_NODE}'>P ${scheduled} ${cmd.phase}-${wid}-${k}</nick></item></publish></pubsub></iq>`;
        answers.push(
          pub.iq(id, stanza, left).then((answer) => {
            if (answer === null) return;
            if (TYPE_RE.exec(answer)?.[1] === 'result') {
              ok++;
              ack.record(nowUs() - scheduled);
            } else {
              errors++;
              firstError ??= errorCondition(answer);
            }
          }),
        );
        lag.record(now - scheduled);
      }
      lastWriteUs = now;
      if (k >= cmd.count) {
        clearInterval(timer);
        void finish();
      }
    };
    const timer = setInterval(tick, 1);
  });
}

async function pingAll(accounts: number[], timeoutMs: number): Promise<PingResult> {
  const t0 = Date.now();
  const results = await Promise.all(accounts.map((i) => clients.get(i)?.ping(timeoutMs) ?? Promise.resolve(false)));
  const ok = results.filter(Boolean).length;
  return { ok, failed: results.length - ok, durationMs: Date.now() - t0 };
}

function stats(reset: boolean, windowEnd?: number, newPhase?: number): StatsResult {
  const cpu = process.cpuUsage(cpuMark);
  let online = 0;
  for (const c of clients.values()) if (c.online) online++;
  const result: StatsResult = {
    received,
    receivedInWindow,
    duplicates,
    stale,
    lastReceiveUs,
    latency: latency.toJSON(),
    disconnects,
    streamErrors,
    online,
    cpuUs: cpu.user + cpu.system,
    rssBytes: process.memoryUsage.rss(),
    loopDelayP99Us: loopDelay.percentile(99) / 1000,
    discoQueries,
  };
  if (reset) {
    latency = new Histogram();
    received = 0;
    receivedInWindow = 0;
    duplicates = 0;
    stale = 0;
    lastReceiveUs = 0;
    disconnects = 0;
    discoQueries = 0;
    streamErrors = [];
    seenIds = new Set();
    cpuMark = process.cpuUsage();
    loopDelay.reset();
  }
  if (reset) windowEndUs = Infinity;
  if (windowEnd !== undefined) windowEndUs = windowEnd;
  if (newPhase !== undefined) phase = newPhase;
  return result;
}

process.on('message', (msg: WorkerInit | Command) => {
  if (msg.type === 'init') {
    init = msg;
    for (const a of msg.accounts) saltedCache.set(`${a.name}\u0000${a.salt}\u0000${a.iterations}`, Buffer.from(a.salted, 'base64'));
    send({ type: 'ready', workerId: msg.workerId });
    return;
  }
  const id = msg.id;
  const run = async (): Promise<Reply> => {
    switch (msg.type) {
      case 'login':
        return { type: 'reply', id, result: await login(msg.accounts, msg.concurrency, msg.timeoutMs, msg.pep ?? null) };
      case 'logout':
        return { type: 'reply', id, result: await logout(msg.timeoutMs) };
      case 'send':
        return { type: 'reply', id, result: await sendPhase(msg) };
      case 'ping':
        return { type: 'reply', id, result: await pingAll(msg.accounts, msg.timeoutMs) };
      case 'pep-roster':
        return { type: 'reply', id, result: await pepRoster(msg.publisher, msg.timeoutMs) };
      case 'pep-disco':
        return { type: 'reply', id, result: await pepDisco(msg.publisher, msg.timeoutMs) };
      case 'pep-publish':
        return { type: 'reply', id, result: await pepPublish(msg) };
      case 'muc-join':
        return { type: 'reply', id, result: await mucJoin(msg.room, msg.accounts, msg.concurrency, msg.timeoutMs) };
      case 'iq':
        return { type: 'reply', id, result: await rawIq(msg.from, msg.stanza, msg.timeoutMs) };
      case 'disco-info':
        return { type: 'reply', id, result: await discoInfo(msg.from, msg.jid, msg.timeoutMs) };
      case 'stats':
        return { type: 'reply', id, result: stats(msg.reset, msg.windowEndUs, msg.phase) };
      case 'exit':
        for (const c of clients.values()) c.destroy();
        setImmediate(() => process.exit(0));
        return { type: 'reply', id, result: { closed: clients.size } };
    }
  };
  run().then(send, (err: unknown) => send({ type: 'error', id, message: err instanceof Error ? err.message : String(err) }));
});

// The orchestrator went away (crash, SIGKILL): do not linger with thousands of sockets.
process.on('disconnect', () => process.exit(0));
