/**
 * The server-to-server link manager (P18): one per running server, shared by the s2s module
 * (outbound stanzas), the inbound listener (server/federation/s2s-in.ts) and the outbound links
 * (server/federation/s2s-out.ts).
 *
 * - Outbound: a stanza for a remote domain goes to a link to that domain that has proved (or is
 *   proving) the sender's local domain. Links are keyed by remote domain; one link carries several
 *   local domains when the peer supports dialback (XEP-0220 "piggybacking"): the first local
 *   domain opens it (SASL EXTERNAL or dialback), further ones send their own <db:result> on it.
 *   Stanzas wait in the link's per-domain queue until their pair is proved; when that fails they
 *   bounce with remote-server-not-found, or remote-server-timeout when the link did not come up
 *   within `connectTimeout` (router.bounce records the P8 delivery failure).
 * - Dialback as receiving server: `verifyKey` sends <db:verify> to the claimed domain's
 *   authoritative server over a link to that domain (opened if needed) and waits for the answer.
 * - Policy: `s2s.allow` / `s2s.deny` apply both ways; a local domain is never accepted as a remote one.
 * - Anonymous statistics (P12): gauges s2s.links{direction=in|out} (links that proved at least
 *   one pair) and the counter s2s.links.opened{direction}.
 *
 * Settings are read from the live config at each use, so `s2s.static` can be changed at run time.
 */
import type { ServerContext } from '../core/context.js';
import type { StanzaEvent } from '../core/hooks.js';
import type { Logger } from '../../shared/logger.js';
import { newDialbackSecret } from './dialback.js';
import { serverKey } from '../auth/server-secret.js';
import { systemSrvSource, type SrvSource } from './resolver.js';
import { S2sTls, configuredCaFile } from './certificates.js';
import { OutgoingS2S, type LinkManager, type VerifyOutcome } from './s2s-out.js';
import type { S2sLinkInfo } from './s2s-common.js';
import { statsFor } from '../modules/statistics/statistics.js';

export interface S2sOptions {
  /** Milliseconds a link may take to come up before its queued stanzas bounce (remote-server-timeout). */
  connectTimeout?: number;
  /** Milliseconds without stanzas after which a link is closed. */
  idleTimeout?: number;
  /** Milliseconds to wait for an authoritative server's answer to <db:verify>. */
  verifyTimeout?: number;
  /** SRV lookups; node:dns by default. */
  dns?: SrvSource;
  /** CA certificates (PEM) trusted for peers besides the system store; default config s2s.caFile. */
  caFile?: string;
  /** Most stanzas waiting per local domain on a link that is coming up. */
  maxQueued?: number;
  /**
   * Connect to loopback, private and link-local addresses found through DNS too (tests that point
   * SRV records at 127.0.0.1). Off by default: `s2s.static` is the way to reach such a server.
   */
  allowInternalTargets?: boolean;
}

/** Presence that is dropped, not bounced, when it cannot be delivered (nobody waits for it). */
const SILENT_PRESENCE = new Set(['unavailable', 'probe', 'error']);

/** Inbound streams as the service sees them (server/federation/s2s-in.ts). */
export interface InboundLink {
  readonly authenticated: boolean;
  info(): S2sLinkInfo;
  sweep(now: number): void;
  close(condition?: string, text?: string): void;
}

export class S2sService implements LinkManager {
  /**
   * The dialback secret: random per start on one node; in a cluster derived from the installation's
   * secret (the same `server-secret` file on every node), since a remote server checks a key our
   * outgoing link sent by connecting back to whichever node it reaches.
   */
  readonly secret: string;
  readonly log: Logger;
  readonly settings: Required<Omit<S2sOptions, 'caFile' | 'dns'>>;
  readonly dns: SrvSource;
  readonly outgoing = new Map<string, OutgoingS2S[]>();
  readonly incoming = new Set<InboundLink>();
  tls!: S2sTls;
  private sweepTimer: NodeJS.Timeout | null = null;
  private removeGauges: (() => void)[] = [];
  private stopped = false;

  constructor(
    readonly ctx: ServerContext,
    private readonly opts: S2sOptions = {},
  ) {
    this.secret = ctx.config.cluster.enabled ? serverKey(ctx.config, 'dialback').toString('hex') : newDialbackSecret();
    this.log = ctx.log.child('s2s');
    this.dns = opts.dns ?? systemSrvSource();
    this.settings = {
      connectTimeout: opts.connectTimeout ?? ctx.config.s2s.connectTimeout,
      idleTimeout: opts.idleTimeout ?? ctx.config.s2s.idleTimeout,
      verifyTimeout: opts.verifyTimeout ?? 30_000,
      maxQueued: opts.maxQueued ?? 1000,
      allowInternalTargets: opts.allowInternalTargets ?? false,
    };
  }

  async init(): Promise<void> {
    this.tls = await S2sTls.create(this.ctx.config, configuredCaFile(this.ctx.config, this.opts.caFile));
    const stats = statsFor(this.ctx);
    this.removeGauges.push(stats.gauge('s2s.links', () => this.countLinks('in'), { labels: { direction: 'in' }, rollup: 'avg' }));
    this.removeGauges.push(stats.gauge('s2s.links', () => this.countLinks('out'), { labels: { direction: 'out' }, rollup: 'avg' }));
    const { idleTimeout, connectTimeout, verifyTimeout } = this.settings;
    const authTimeout = this.ctx.config.c2s.authTimeout;
    const interval = Math.max(50, Math.min(5_000, Math.floor(Math.min(idleTimeout, connectTimeout, verifyTimeout, authTimeout) / 4)));
    this.sweepTimer = setInterval(() => this.sweep(), interval);
    this.sweepTimer.unref();
  }

  get requireEncryption(): boolean {
    return this.ctx.config.s2s.requireEncryption;
  }

  get requireValidCertificates(): boolean {
    return this.ctx.config.s2s.requireValidCertificates;
  }

  /** A domain this server answers for: a host, a module's service domain or a component domain (or one of its subdomains). */
  isLocalDomain(domain: string): boolean {
    const { router } = this.ctx;
    return router.isLocalHost(domain) || router.isServiceDomain(domain) || router.componentFor(domain) !== undefined;
  }

  /** Whether federation with `domain` is permitted (s2s.allow / s2s.deny). */
  isAllowed(domain: string): boolean {
    const { allow, deny } = this.ctx.config.s2s;
    if (this.isLocalDomain(domain)) return false;
    if (deny.some((d) => d === domain)) return false;
    return allow.length === 0 || allow.some((d) => d === domain);
  }

  /** Links (inbound or outbound) that proved at least one domain pair. */
  countLinks(direction: 'in' | 'out'): number {
    let n = 0;
    if (direction === 'in') {
      for (const l of this.incoming) if (l.authenticated) n++;
    } else {
      for (const list of this.outgoing.values()) for (const l of list) if (l.authenticated) n++;
    }
    return n;
  }

  /** The links that proved at least one domain pair, inbound and outbound. */
  links(): S2sLinkInfo[] {
    const out: S2sLinkInfo[] = [];
    for (const l of this.incoming) if (l.authenticated) out.push(l.info());
    for (const list of this.outgoing.values()) for (const l of list) if (l.authenticated) out.push(l.info());
    return out;
  }

  linkOpened(direction: 'in' | 'out'): void {
    statsFor(this.ctx).increment('s2s.links.opened', { direction });
  }

  /** Sends a stanza from a local domain to a remote one (or bounces it). */
  send(event: StanzaEvent): void {
    const remote = event.to.domain;
    const local = event.from.domain;
    if (this.stopped) return void this.bounce(event, 'remote-server-not-found', 'the server is shutting down');
    if (!this.isLocalDomain(local)) {
      this.log.warn('dropping a stanza for a remote domain from a non-local sender', { remote });
      return;
    }
    if (!this.isAllowed(remote)) return void this.bounce(event, 'remote-server-not-found', 'federation with this domain is not allowed');
    this.linkFor(remote, local).enqueue(local, event);
  }

  /** The link to use for local -> remote: one that proved or can prove `local`, else a new one. */
  linkFor(remote: string, local: string): OutgoingS2S {
    const list = this.outgoing.get(remote) ?? [];
    const link = list.find((l) => l.hasProved(local)) ?? list.find((l) => l.canServe(local));
    if (link) return link;
    const created = new OutgoingS2S(this, remote, local);
    list.push(created);
    this.outgoing.set(remote, list);
    created.start();
    return created;
  }

  /**
   * As receiving server (XEP-0220 2.1.2): asks the authoritative server of `originating` whether
   * `key` is the one it made for this stream.
   */
  async verifyKey(receiving: string, originating: string, streamId: string, key: string): Promise<VerifyOutcome> {
    if (!this.isAllowed(originating)) return { type: 'error', condition: 'policy-violation' };
    const list = this.outgoing.get(originating) ?? [];
    const link = list.find((l) => l.usable) ?? this.linkFor(originating, receiving);
    return link.requestVerify(receiving, originating, streamId, key);
  }

  /** Called by a link once it is closed. */
  linkClosed(link: OutgoingS2S): void {
    const list = this.outgoing.get(link.remote);
    if (!list) return;
    const i = list.indexOf(link);
    if (i >= 0) list.splice(i, 1);
    if (list.length === 0) this.outgoing.delete(link.remote);
  }

  /** Bounces an undeliverable stanza; presence nobody waits for is dropped. */
  bounce(event: StanzaEvent, condition: string, text?: string): void {
    const s = event.stanza;
    if (s.attrs.type === 'error') return;
    if (s.name === 'presence' && SILENT_PRESENCE.has(s.attrs.type ?? '')) return;
    if (s.name === 'iq' && s.attrs.type === 'result') return;
    this.ctx.router.bounce(event, condition, text);
  }

  sweep(): void {
    const t = Date.now();
    for (const list of [...this.outgoing.values()]) for (const l of [...list]) l.sweep(t);
    for (const l of [...this.incoming]) l.sweep(t);
  }

  stop(): void {
    if (this.stopped) return;
    this.stopped = true;
    if (this.sweepTimer) clearInterval(this.sweepTimer);
    for (const r of this.removeGauges) r();
    for (const list of [...this.outgoing.values()]) for (const l of [...list]) l.close('system-shutdown');
    for (const l of [...this.incoming]) l.close('system-shutdown');
  }
}

declare module '../core/services.js' {
  interface Services {
    s2s: S2sService;
  }
}

/** The federation service of a running server, if the s2s module is loaded (and federation on). */
export function s2sServiceOf(ctx: ServerContext): S2sService | undefined {
  return ctx.services.get('s2s');
}
