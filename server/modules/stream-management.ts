/**
 * XEP-0198 Stream Management (version 1.6.3) for client streams: stanza acknowledgements and
 * stream resumption, so that a phone that loses its connection loses no message in flight.
 *
 * Design: a session that outlives its connection. The core splits what used to be one object:
 * - BoundSession (server/core/session.ts) is the bound resource: JID, presence state, counters and
 *   the outbound path. It is what the registry, the router and every module hold.
 * - C2SStream (server/streams/c2s.ts) is one connection (TLS, SASL, parser). Once bound it is only
 *   the session's transport; a later C2SStream of the same account may take over (`resume`).
 * - Modules take part in one session's stanza flow as SessionLayers: this module is the layer that
 *   counts, queues and retransmits; client state indication (csi.ts) is one that holds stanzas back.
 * When a transport is lost (the connection breaks, or a silent peer times out: anything but
 * </stream:stream> or a server-side stream error), the session asks its layers whether to live on;
 * this layer says yes for a resumable session, which then hibernates: it stays bound and in the
 * registry, stays available to contacts, and whatever is routed to it lands in the unacked queue.
 * A new stream that authenticates as the same account and sends <resume/> instead of binding gets
 * <resumed/> and the queue's unacknowledged stanzas, and carries on with the same counters.
 * Without a resumption within the timeout the session ends as any other: 'session/closed' fires
 * (unavailable presence to contacts) and the queue is handled as below.
 *
 * Protocol decisions, with the XEP text they follow:
 * - The <sm xmlns='urn:xmpp:sm:3'/> feature is offered after authentication only (section 2).
 *   <enable/> before binding and <resume/> after it get <failed><unexpected-request/></failed>
 *   (section 3); a second <enable/> is a stream error, policy-violation (section 3: "SHOULD respond
 *   with a stream error").
 * - <enabled/> carries id, resume='true' and max (seconds) when the client asked for resumption and
 *   the timeout is not zero: the smaller of the client's max and ours (default 300 s, the module
 *   option `resumptionTimeout`, configuration key c2s.resumptionTimeout). No 'location':
 *   every listener of this process can resume, and in a cluster every node (below).
 * - h counts the stanzas the server accepted from the client (counted before routing, so a
 *   resumption overtaking the routing of the last stanza still counts it) and is answered to every
 *   <r/> at once; both counters wrap at 2^32 (section 4). Nonzas are never counted.
 * - The server requests acks: <r/> when 5 stanzas are unacknowledged, or 5 s after the first
 *   unacknowledged one, with one request outstanding at a time. A request unanswered within
 *   c2s.pingTimeout means the connection is dead: it is closed as lost (connection-timeout), so a
 *   resumable session hibernates at once instead of writing into a dead socket until the idle ping.
 * - An <a/> (or <resume/>) acknowledging more than was sent ends the stream with undefined-condition
 *   and <handled-count-too-high h='..' send-count='..'/> (section 6).
 * - The unacknowledged queue is bounded by constants: 2000 stanzas or 4 MiB. A client that does not
 *   acknowledge (or a hibernating session that fills up) ends with policy-violation: section 6 allows
 *   terminating a stream over misuse, and the queue is not lost (below). At most 10 sessions of one
 *   account hibernate; an eleventh ends the oldest.
 * - <resume previd h/> (section 5): the SM-ID is 144 random bits, valid for the session's account
 *   only. Unknown, expired or another account's: <failed><item-not-found/></failed>, with the h of a
 *   recently expired session of the same account when known (section 5, "MAY include h"), and the
 *   client may bind instead on the same stream. A stream still carrying the session (its loss not
 *   noticed yet) is closed with a conflict stream error. <resumed previd h/> is written first, then
 *   every stanza still unacknowledged, then (client state indication resets to active, XEP-0352)
 *   held-back stanzas.
 * - A cleanly closed stream (</stream:stream>) ends the session at once (section 7); an <a/> sent
 *   just before it is handled first.
 * - Unacknowledged stanzas of an ended session (section 4: "treat unacknowledged stanzas in the same
 *   way that it would treat a stanza sent to an unavailable resource") are routed again through the
 *   router in their original order, as if they had arrived after the session went away: chat and
 *   normal messages go to another resource of the account (RFC 6121 8.5.3.2.1, full JID falls back to
 *   the bare JID) or to offline storage (or bounce when it refuses them), with
 *   <delay xmlns='urn:xmpp:delay' from='host' stamp='when the stanza was first sent to the session'/>
 *   added unless the server already stamped one (section 4: "SHOULD add a delay element with the
 *   original (failed) delivery timestamp"). Carbon copies, MAM results and groupchat, headline and
 *   error messages are dropped (the original exists elsewhere), IQ requests are answered with
 *   service-unavailable, presence is dropped (it is state, not content). A message that reaches
 *   another resource may be a duplicate of its carbon copy; XEP-0198 section 4 accepts duplicates,
 *   and clients weed them out by the stanza id.
 * - Cluster mode (server/cluster/sm-journal.ts, docs/cluster.md): the SM-ID ends with `.NODE`; a
 *   <resume/> reaching another node makes NODE hand the session over (counters, queue, presence
 *   state; it leaves there without 'session/closed', so no unavailable) and the new node answers
 *   <resumed/> as above. Messages written to a session are also kept in a JetStream journal until
 *   acknowledged, so a node killed with SIGKILL loses none: a survivor routes them as for an ended
 *   session, and a <resume/> of the dead node's session gets <failed><item-not-found/></failed>.
 *   A single server has no journal (its kill -9 loses the in-memory queue, as it always did).
 * - Stanza contents are never logged.
 */
import { randomBytes } from 'node:crypto';
import type { GatehouseModule, ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import type { BoundSession, SessionLayer } from '../core/session.js';
import type { ClientStream } from '../streams/c2s.js';
import { sessionState, type SessionHandover, type SessionState, type StreamManagementJournal, type TakeOverAnswer, type TakeOverRequest } from '../core/cluster.js';
import { parseXmlText } from '../../shared/xml/parse-xml.js';
import { Element, x } from '../../shared/xml/element.js';
import { Jid } from '../../shared/jid.js';
import { NS } from '../../shared/ns.js';
import { messageType } from '../core/delivery.js';
import { after, type Timer } from '../../shared/clock.js';

export const NS_SM = 'urn:xmpp:sm:3';
const NS_CARBONS = 'urn:xmpp:carbons:2';

/** Unacknowledged stanzas kept per session, at most (count and serialised characters). */
export const MAX_UNACKED_STANZAS = 2000;
export const MAX_UNACKED_CHARS = 4 * 1024 * 1024;
/** Hibernating sessions per account, at most; the oldest ends first. */
export const MAX_HIBERNATING_PER_ACCOUNT = 10;
/** How long the h of an expired session is remembered for a late <resume/>, and how many. */
const STALE_H_MS = 60 * 60 * 1000;
const MAX_STALE_H = 10_000;
const U32 = 2 ** 32;

export interface StreamManagementOptions {
  /** Longest hibernation of a resumable session, in ms (config key c2s.resumptionTimeout); 0 disables resumption. Default 300 s. */
  resumptionTimeout?: number;
  /** Request an ack once this many stanzas are unacknowledged. Default 5. */
  requestAfterStanzas?: number;
  /** Request an ack once a stanza has been unacknowledged this long, in ms. Default 5 s. */
  requestAfterMs?: number;
  /** A request unanswered this long closes the connection as lost, in ms. Default c2s.pingTimeout. */
  ackTimeout?: number;
  /** For tests: a smaller bound on the unacknowledged queue than MAX_UNACKED_STANZAS. */
  maxUnackedStanzas?: number;
}

interface Unacked {
  data: string;
  /** When it was first sent to the session (the delay stamp if it has to be routed again). */
  at: Date;
  /** In cluster mode, a message that would be routed again: its record in the journal. */
  journaled?: Promise<number>;
}

/** The 'h' attribute: an xs:unsignedInt. */
function parseH(value: string | undefined): number | null {
  if (value === undefined || !/^\d{1,10}$/.test(value)) return null;
  const n = Number(value);
  return n < U32 ? n : null;
}

function failed(condition: string, h?: number): Element {
  return x('failed', { xmlns: NS_SM, h }, x(condition, { xmlns: NS.stanzas }));
}

/** One session's stream management state: the layer that counts, queues and retransmits. */
class SmSession implements SessionLayer {
  /** Stanzas the server handled from the client (h), mod 2^32. */
  inbound = 0;
  /** Stanzas sent to the client since <enabled/>, mod 2^32. */
  sent = 0;
  /** The client's last h. */
  acked = 0;
  readonly queue: Unacked[] = [];
  private queueChars = 0;
  /** A <r/> is outstanding. */
  private requested = false;
  private sinceRequest = 0;
  private requestTimer: Timer | null = null;
  private ackTimer: Timer | null = null;
  private hibernationTimer: Timer | null = null;

  constructor(
    private readonly sm: StreamManagement,
    readonly session: BoundSession,
    /** The SM-ID when resumable. */
    readonly id: string | null,
    /** Resumption timeout, ms. */
    readonly maxMs: number,
    /** In cluster mode: the journal keeping the unacknowledged messages, and this session's key in it. */
    private readonly journal: StreamManagementJournal | null = null,
    private readonly journalKey = '',
  ) {}

  // ---- SessionLayer ----

  written(_stanza: Element, data: string): void {
    this.sent = (this.sent + 1) % U32;
    const at = this.sm.ctx.clock.now();
    const journaled = this.journal && _stanza.name === 'message' && rerouted(_stanza) ? this.journal.record(this.journalKey, data, at) : undefined;
    this.queue.push({ data, at, journaled });
    this.queueChars += data.length;
    if (this.queue.length > this.sm.maxUnacked || this.queueChars > MAX_UNACKED_CHARS) {
      this.sm.ctx.log.info('too many unacknowledged stanzas; ending the session', { session: this.session.id, unacked: this.queue.length });
      this.session.close('policy-violation', 'too many unacknowledged stanzas');
      return;
    }
    if (!this.session.currentTransport) return;
    this.sinceRequest++;
    if (this.requested) return;
    if (this.sinceRequest >= this.sm.requestAfterStanzas) this.request();
    else if (!this.requestTimer) this.requestTimer = this.after(this.sm.requestAfterMs, () => this.request());
  }

  handled(): void {
    this.inbound = (this.inbound + 1) % U32;
  }

  lost(): boolean {
    this.clearTimers();
    if (!this.id) return false;
    this.hibernationTimer = this.after(this.maxMs, () => this.session.close('connection-timeout'));
    this.sm.hibernating(this);
    return true;
  }

  attached(): void {
    this.hibernationTimer?.cancel();
    this.hibernationTimer = null;
    this.sm.awake(this);
  }

  ended(condition?: string): void {
    this.clearTimers();
    this.hibernationTimer?.cancel();
    this.hibernationTimer = null;
    if (condition === 'moved') {
      // Handed over to another node with its queue (see takeOverForOtherNode).
      this.queue.splice(0);
      this.queueChars = 0;
      this.sm.forget(this, true);
      return;
    }
    const unacked = this.queue.splice(0);
    this.queueChars = 0;
    this.sm.forget(this);
    if (this.journal?.fenced) {
      // This node was declared dead: the journal's records are routed again by the cluster (once);
      // from here only what never reached the journal (its write failed, or it is not a message).
      void this.sm.requeueUnjournaled(this.session, unacked);
      return;
    }
    const requeued = unacked.length > 0 ? this.sm.requeue(this.session, unacked) : Promise.resolve();
    // Routed again from here: the journal's copy goes once that is done.
    if (this.journal) void requeued.then(() => this.journal?.discard(this.journalKey));
  }

  // ---- acknowledgements ----

  /** Sends <r/> (one outstanding at a time); unanswered within the ack timeout, the connection is dead. */
  request(): void {
    this.requestTimer?.cancel();
    this.requestTimer = null;
    const transport = this.session.currentTransport;
    if (this.requested || !transport || this.queue.length === 0) return;
    this.requested = true;
    this.sinceRequest = 0;
    this.session.writeRaw(`<r xmlns='${NS_SM}'/>`);
    this.ackTimer = this.after(this.sm.ackTimeout, () => {
      this.ackTimer = null;
      if (this.session.currentTransport === transport) transport.close('connection-timeout', 'no acknowledgement from the client');
    });
  }

  /** How many queued stanzas an h acknowledges, or null if more than were sent. */
  newlyAcked(h: number): number | null {
    const n = (h - this.acked + U32) % U32;
    return n <= this.queue.length ? n : null;
  }

  /** Applies an h the client reported (checked with newlyAcked first). */
  ack(h: number): void {
    const n = this.newlyAcked(h) ?? 0;
    let lastJournaled: Promise<number> | undefined;
    for (const e of this.queue.splice(0, n)) {
      this.queueChars -= e.data.length;
      if (e.journaled) lastJournaled = e.journaled;
    }
    this.acked = h;
    if (lastJournaled) this.journal?.acknowledged(this.journalKey, lastJournaled);
  }

  /** An <a/> arrived: the outstanding request is answered; more may be requested. */
  answered(): void {
    this.requested = false;
    this.ackTimer?.cancel();
    this.ackTimer = null;
    if (this.sinceRequest >= this.sm.requestAfterStanzas) this.request();
    else if (this.queue.length > 0 && !this.requestTimer) this.requestTimer = this.after(this.sm.requestAfterMs, () => this.request());
  }

  /** What another node needs to carry this session on (XEP-0198 resumption there). */
  handoverState(): Omit<SessionHandover, keyof SessionState> {
    return {
      journalKey: this.journalKey,
      maxMs: this.maxMs,
      inbound: this.inbound,
      sent: this.sent,
      acked: this.acked,
      queue: this.queue.map((e) => ({ data: e.data, at: e.at.toISOString(), journaled: e.journaled !== undefined })),
    };
  }

  /** Takes on the counters and queue another node handed over; the queue's messages go into this node's journal. */
  takeOn(h: SessionHandover): void {
    this.inbound = h.inbound;
    this.sent = h.sent;
    this.acked = h.acked;
    for (const e of h.queue) {
      const at = new Date(e.at);
      this.queue.push({ data: e.data, at, journaled: e.journaled && this.journal ? this.journal.record(this.journalKey, e.data, at) : undefined });
      this.queueChars += e.data.length;
    }
  }

  /** Writes <resumed/> and everything still unacknowledged, on the transport that now carries the session. */
  handover(): void {
    this.clearTimers();
    this.session.writeRaw(x('resumed', { xmlns: NS_SM, previd: this.id, h: this.inbound }).toString());
    for (const e of this.queue) this.session.writeRaw(e.data);
    this.sinceRequest = this.queue.length;
    this.request();
  }

  /** Timers run on the server clock (tests move a ManualClock instead of waiting). */
  private after(ms: number, fn: () => void): Timer {
    return after(this.sm.ctx.clock, ms, fn);
  }

  private clearTimers(): void {
    this.requestTimer?.cancel();
    this.ackTimer?.cancel();
    this.requestTimer = this.ackTimer = null;
    this.requested = false;
  }
}

class StreamManagement {
  readonly resumptionTimeout: number;
  readonly requestAfterStanzas: number;
  readonly requestAfterMs: number;
  readonly ackTimeout: number;
  readonly maxUnacked: number;
  private readonly bySession = new WeakMap<BoundSession, SmSession>();
  private readonly byId = new Map<string, SmSession>();
  /** Hibernating sessions per account (bare JID), oldest first. */
  private readonly asleep = new Map<string, Set<SmSession>>();
  /** The final h of recently ended resumable sessions, for <failed h=''/>. */
  private readonly stale = new Map<string, { accountId: number; h: number; until: number }>();
  private readonly pending = new Set<Promise<void>>();
  private servingOtherNodes = false;
  /** SM-IDs of sessions handed over to another node, and which (a later <resume/> elsewhere is sent on). */
  private readonly movedTo = new Map<string, string>();

  constructor(
    readonly ctx: ServerContext,
    opts: StreamManagementOptions,
  ) {
    this.resumptionTimeout = opts.resumptionTimeout ?? ctx.config.c2s.resumptionTimeout;
    this.requestAfterStanzas = Math.max(1, opts.requestAfterStanzas ?? 5);
    this.requestAfterMs = opts.requestAfterMs ?? 5_000;
    this.ackTimeout = opts.ackTimeout ?? ctx.config.c2s.pingTimeout;
    this.maxUnacked = Math.min(MAX_UNACKED_STANZAS, opts.maxUnackedStanzas ?? MAX_UNACKED_STANZAS);
  }

  features(stage: 'pre-auth' | 'post-auth', features: Element): void {
    if (stage === 'post-auth') features.append(x('sm', { xmlns: NS_SM }));
  }

  nonza(stream: ClientStream, session: BoundSession | null, el: Element): boolean {
    if (el.xmlns !== NS_SM) return false;
    const state = session ? this.bySession.get(session) : undefined;
    switch (el.name) {
      case 'enable':
        if (!session) stream.writeNonza(failed('unexpected-request'));
        else if (state) stream.close('policy-violation', 'stream management is already enabled');
        else this.enable(stream, session, el);
        return true;
      case 'resume':
        if (session) stream.writeNonza(failed('unexpected-request'));
        else this.resume(stream, el);
        return true;
      case 'r':
        if (state) stream.writeNonza(x('a', { xmlns: NS_SM, h: state.inbound }));
        return true;
      case 'a': {
        if (!state) return true;
        const h = parseH(el.attrs.h);
        if (h === null) {
          stream.close('bad-format', "'h' must be an unsigned 32-bit integer");
          return true;
        }
        if (state.newlyAcked(h) === null) {
          this.tooHigh(stream, h, state);
          return true;
        }
        state.ack(h);
        state.answered();
        return true;
      }
      default:
        stream.writeNonza(failed('feature-not-implemented'));
        return true;
    }
  }

  private enable(stream: ClientStream, session: BoundSession, el: Element): void {
    const wantsResume = el.attrs.resume === 'true' || el.attrs.resume === '1';
    let maxMs = this.resumptionTimeout;
    const requested = el.attrs.max !== undefined ? parseH(el.attrs.max) : null;
    if (requested !== null && requested > 0) maxMs = Math.min(maxMs, requested * 1000);
    const resumable = wantsResume && maxMs > 0;
    const journal = this.ctx.services.get('sm-journal') ?? null;
    const key = randomBytes(18).toString('base64url');
    // In a cluster the SM-ID names the node holding the session: a <resume/> reaching another node finds it.
    const id = resumable ? (journal ? `${key}.${journal.node}` : key) : null;
    if (journal) this.serveOtherNodes(journal);
    const state = new SmSession(this, session, id, maxMs, journal, key);
    // Counting starts with <enabled/> (section 4): nothing is written in between.
    stream.writeNonza(x('enabled', { xmlns: NS_SM, id: id ?? undefined, resume: resumable ? 'true' : undefined, max: resumable ? Math.max(1, Math.round(maxMs / 1000)) : undefined }));
    this.bySession.set(session, state);
    if (id) this.byId.set(id, state);
    session.addLayer(state);
  }

  private resume(stream: ClientStream, el: Element): void {
    const previd = el.attrs.previd;
    const h = parseH(el.attrs.h);
    const account = stream.account;
    if (!previd || h === null || !account) {
      stream.writeNonza(failed('bad-request'));
      return;
    }
    const state = this.byId.get(previd);
    const journal = this.ctx.services.get('sm-journal');
    const node = this.movedTo.get(previd) ?? previd.slice(previd.indexOf('.') + 1);
    if (!state && journal && previd.includes('.') && node !== journal.node) {
      void this.resumeElsewhere(stream, journal, node, previd, account.id, h);
      return;
    }
    if (!state || state.session.ended || state.session.account.id !== account.id) {
      // The same answer for a session that never existed and another account's: nothing to learn.
      const old = this.stale.get(previd);
      const known = old && old.accountId === account.id && old.until > Date.now() ? old.h : undefined;
      stream.writeNonza(failed('item-not-found', known));
      return;
    }
    if (state.newlyAcked(h) === null) {
      this.tooHigh(stream, h, state);
      return;
    }
    state.ack(h);
    if (!stream.resume(state.session, () => state.handover())) stream.writeNonza(failed('unexpected-request'));
  }

  /**
   * A <resume/> of a session held by another node of the cluster (the client reconnected through a
   * load balancer to another node). That node hands it over: the session, its counters and its
   * unacknowledged queue move here, it leaves there without ending for contacts, and the client gets
   * <resumed/> and the queue as on the node it left. A node that cannot hand over ends the session
   * (its unacknowledged messages go to other resources or offline storage) and the client gets
   * <failed/> with the session's h (section 5); a dead node's session is gone, its journal is routed
   * by a survivor, and the client gets <failed/>, binds anew and receives them as offline messages.
   */
  private async resumeElsewhere(stream: ClientStream, journal: StreamManagementJournal, node: string, previd: string, accountId: number, h: number): Promise<void> {
    const answer = await journal.takeOver(node, { smid: previd, accountId, h, node: journal.node });
    if (!answer) {
      stream.writeNonza(failed('item-not-found'));
      return;
    }
    if (!('handover' in answer)) {
      if (answer.tooHigh !== undefined) stream.close('undefined-condition', 'acknowledged more stanzas than were sent', x('handled-count-too-high', { xmlns: NS_SM, h, 'send-count': answer.tooHigh }));
      else stream.writeNonza(failed('item-not-found', answer.h));
      return;
    }
    const hv = answer.handover;
    this.serveOtherNodes(journal);
    const jid = Jid.tryParse(hv.jid);
    const session = jid
      ? stream.adopt({ id: hv.id, jid, startedAt: new Date(hv.startedAt) }, (s) => {
          s.priority = hv.priority;
          s.presence = hv.presence ? parseXmlText(hv.presence, NS.client) : null;
          s.interested = hv.interested;
          s.capabilities = hv.capabilities ? new Set(hv.capabilities) : undefined;
          for (const f of hv.flags) s.setFlag(f, true);
          for (const d of hv.directed) s.directedPresence.add(d);
          s.available = hv.available;
          const state = new SmSession(this, s, previd, hv.maxMs, journal, hv.journalKey);
          state.takeOn(hv);
          this.bySession.set(s, state);
          this.byId.set(previd, state);
          s.addLayer(state);
          state.handover();
        })
      : null;
    if (!session) {
      stream.writeNonza(failed('unexpected-request'));
      return;
    }
    journal.released(node, hv.journalKey);
  }

  /** From the first session with stream management here (enabled or taken over): other nodes' <resume/> of it are answered. */
  private serveOtherNodes(journal: StreamManagementJournal): void {
    if (this.servingOtherNodes) return;
    this.servingOtherNodes = true;
    journal.serveTakeOver((request) => this.takeOverForOtherNode(journal, request));
  }

  /**
   * Another node's <resume/> of a session here: handed over (it leaves here without ending for
   * contacts; its stream, if still open, gets a conflict stream error). An SM-ID handed over before
   * is asked of the node it went to.
   */
  async takeOverForOtherNode(journal: StreamManagementJournal, request: TakeOverRequest): Promise<TakeOverAnswer | null> {
    const went = this.movedTo.get(request.smid);
    if (went && went !== request.node) return journal.takeOver(went, request);
    const state = this.byId.get(request.smid);
    if (!state || state.session.ended || state.session.account.id !== request.accountId) return null;
    if (state.newlyAcked(request.h) === null) return { h: state.inbound, tooHigh: state.sent };
    state.ack(request.h);
    const s = state.session;
    const handover: SessionHandover = { ...state.handoverState(), ...sessionState(s) };
    this.movedTo.delete(request.smid);
    this.movedTo.set(request.smid, request.node);
    if (this.movedTo.size > MAX_STALE_H) this.movedTo.delete(this.movedTo.keys().next().value as string);
    s.moveAway();
    return { handover };
  }

  private tooHigh(stream: ClientStream, h: number, state: SmSession): void {
    stream.close('undefined-condition', 'acknowledged more stanzas than were sent', x('handled-count-too-high', { xmlns: NS_SM, h, 'send-count': state.sent }));
  }

  // ---- hibernation ----

  hibernating(state: SmSession): void {
    const bare = state.session.jid.bare;
    let set = this.asleep.get(bare);
    if (!set) this.asleep.set(bare, (set = new Set()));
    set.add(state);
    if (set.size > MAX_HIBERNATING_PER_ACCOUNT) {
      const oldest = set.values().next().value as SmSession;
      oldest.session.close('resource-constraint');
    }
  }

  awake(state: SmSession): void {
    const bare = state.session.jid.bare;
    const set = this.asleep.get(bare);
    if (!set) return;
    set.delete(state);
    if (set.size === 0) this.asleep.delete(bare);
  }

  forget(state: SmSession, moved = false): void {
    this.awake(state);
    this.bySession.delete(state.session);
    if (!state.id) return;
    this.byId.delete(state.id);
    if (moved) return;
    const now = Date.now();
    for (const [id, s] of this.stale) {
      if (this.stale.size < MAX_STALE_H && s.until > now) break;
      this.stale.delete(id);
    }
    this.stale.set(state.id, { accountId: state.session.account.id, h: state.inbound, until: now + STALE_H_MS });
  }

  /** Routes an ended session's unacknowledged stanzas again, in order (see the module comment). */
  requeue(session: BoundSession, unacked: Unacked[]): Promise<void> {
    const run = (async () => {
      for (const entry of unacked) {
        // Never within the call that ended the session (a replacing session answers its bind
        // first), and one stanza at a time: a long queue must not hold up other connections.
        await new Promise<void>((resolve) => setImmediate(resolve));
        try {
          await this.redeliver(session, entry);
        } catch (err) {
          this.ctx.log.warn('could not route an unacknowledged stanza again', { session: session.id, error: err instanceof Error ? err.message : String(err) });
        }
      }
    })();
    this.pending.add(run);
    void run.finally(() => this.pending.delete(run));
    return run;
  }

  /** requeue() of the stanzas the journal does not hold (their record failed, or they have none). */
  async requeueUnjournaled(session: BoundSession, unacked: Unacked[]): Promise<void> {
    const kept = await Promise.all(unacked.map(async (e) => ((e.journaled ? await e.journaled : 0) > 0 ? null : e)));
    const rest = kept.filter((e): e is Unacked => e !== null);
    if (rest.length > 0) await this.requeue(session, rest);
  }

  private async redeliver(session: BoundSession, entry: Unacked): Promise<void> {
    const { router } = this.ctx;
    const el = parseXmlText(entry.data, NS.client);
    if (!el) return;
    const host = session.jid.domain;
    const from = Jid.tryParse(el.attrs.from) ?? Jid.parse(host);
    if (el.attrs.to === undefined) el.attrs.to = session.jid.full;
    if (el.name === 'message') {
      if (!rerouted(el)) return;
      if (!el.getChildren('delay', NS.delay).some((d) => d.attrs.from === host)) {
        el.append(x('delay', { xmlns: NS.delay, from: host, stamp: entry.at.toISOString() }));
      }
      await router.route(el, from, { kind: 'server' });
    } else if (el.name === 'iq' && (el.attrs.type === 'get' || el.attrs.type === 'set')) {
      const event: StanzaEvent = { stanza: el, from, to: session.jid, origin: { kind: 'server' } };
      router.bounce(event, 'service-unavailable');
    }
  }

  /** Ends hibernating sessions (their queues go to offline storage) and waits for every requeue. */
  async shutdown(): Promise<void> {
    for (const set of [...this.asleep.values()]) for (const state of [...set]) state.session.close('system-shutdown');
    while (this.pending.size > 0) await Promise.allSettled([...this.pending]);
  }
}

/** c2s.resumptionTimeout (ms), once the configuration schema has that key (proposed); the module option wins. */
/** Messages that go to another resource or offline storage when their session ended unacknowledged. */
function rerouted(el: Element): boolean {
  const type = messageType(el);
  if (type !== 'chat' && type !== 'normal') return false;
  if (el.getChild('received', NS_CARBONS) || el.getChild('sent', NS_CARBONS)) return false;
  if (el.elements.some((c) => c.name === 'result' && (c.xmlns ?? '').startsWith('urn:xmpp:mam:'))) return false;
  return true;
}

export function createStreamManagementModule(opts: StreamManagementOptions = {}): GatehouseModule {
  let sm: StreamManagement | null = null;
  return {
    name: 'stream-management',
    specs: [
      {
        id: 'XEP-0198',
        version: '1.6.3',
        status: 'complete',
        note: 'acks both ways; resumption within 5 minutes (c2s.resumptionTimeout) retransmits what the client missed; unacknowledged messages of a session that ends go to another resource or offline storage; in a cluster a session resumes on any node, and a killed node loses no unacknowledged message',
      },
    ],
    load(ctx) {
      const m = (sm = new StreamManagement(ctx, opts));
      ctx.hooks.on('c2s/features', ({ stage, features }) => m.features(stage, features));
      ctx.hooks.on('c2s/nonza', ({ stream, session, element }) => m.nonza(stream, session, element));
    },
    async unload() {
      await sm?.shutdown();
    },
  };
}
