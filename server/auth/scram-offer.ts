/**
 * Which SCRAM hashes a host offers (RFC 6120 section 6.4.1: mechanisms are offered before the
 * client names its account, and clients choose the strongest offered one).
 *
 * A verifier for one hash cannot be made from another's: accounts imported from Prosody or ejabberd
 * usually have SCRAM-SHA-1 verifiers only, and a client that picks SCRAM-SHA-256 cannot log in to
 * them. So a hash is offered only while it is not stronger than the strongest hash that at least
 * `auth.offerCoverage` percent of the host's accounts have a verifier for (100: every account).
 * Weaker configured hashes stay offered: a client picks the strongest anyway, and old clients keep
 * the mechanism they know. When no configured hash reaches the threshold the one most accounts have
 * is the strongest offered. A host without accounts offers every configured hash.
 *
 * The counts come from storage (AccountRepository.verifierCoverage) and are read again every
 * REFRESH_MS and soon after this process changes verifiers (account created, deleted, password set,
 * verifiers added at a PLAIN login). The CLI commands that write accounts (`gatehouse import`,
 * `user add`, `user passwd`) ask a running server to count again (control `accounts.recount`);
 * what another cluster node wrote is seen at the next periodic refresh.
 */
import type { Storage, ScramVerifier, VerifierCoverage } from '../../storage/types.js';
import type { Logger } from '../../shared/logger.js';

type Hash = ScramVerifier['hash'];

declare module '../core/services.js' {
  interface Services {
    /** The SCRAM hashes each host offers (main.ts provides it; c2s reads it for the stream features). */
    'scram-offer': ScramOffer;
  }
}

/** Weakest first. */
const STRENGTH: readonly Hash[] = ['SHA-1', 'SHA-256'];

/** How often the counts are read from storage even when nothing here changed them. */
const REFRESH_MS = 60_000;
/** A burst of local changes (an import of many accounts, many logins) costs one recount. */
const DEBOUNCE_MS = 200;

/** Percentage (0..100) of `c`'s accounts with a verifier for `hash`; 100 for a host without accounts. */
export function coveragePercent(c: VerifierCoverage, hash: Hash): number {
  return c.accounts === 0 ? 100 : (100 * c.withHash[hash]) / c.accounts;
}

/**
 * The configured hashes the host offers, weakest first (see the module comment). `coverage`
 * undefined (not counted yet, or no accounts) offers all of them.
 */
export function offeredHashes(configured: readonly Hash[], coverage: VerifierCoverage | undefined, threshold: number): Hash[] {
  const ordered = STRENGTH.filter((h) => configured.includes(h));
  if (!coverage || coverage.accounts === 0 || threshold <= 0) return ordered;
  let top = -1;
  for (let i = ordered.length - 1; i >= 0 && top < 0; i--) if (coveragePercent(coverage, ordered[i]!) >= threshold) top = i;
  if (top < 0) {
    // Nothing reaches the threshold: the hash most accounts can use (the stronger on a tie).
    let best = 0;
    ordered.forEach((h, i) => {
      if (coverage.withHash[h] >= coverage.withHash[ordered[best]!]) best = i;
    });
    top = best;
  }
  return ordered.slice(0, top + 1);
}

/** The per-host counts of one server, kept fresh, and the hashes each host offers from them. */
export class ScramOffer {
  private byHost = new Map<string, VerifierCoverage>();
  private timer: NodeJS.Timeout | null = null;
  private debounce: NodeJS.Timeout | null = null;
  private running: Promise<void> | null = null;
  private again = false;
  private stopped = false;

  constructor(
    private readonly storage: Storage,
    private readonly settings: () => { hashes: readonly Hash[]; offerCoverage: number },
    private readonly log: Logger,
  ) {}

  /** Counts once (awaited: the first stream features already see them), then every REFRESH_MS. */
  async start(): Promise<void> {
    await this.refresh();
    this.timer = setInterval(() => void this.refresh(), REFRESH_MS);
    this.timer.unref();
  }

  stop(): void {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.debounce) clearTimeout(this.debounce);
    this.timer = this.debounce = null;
  }

  /** Something here changed verifiers: count again shortly. */
  changed(): void {
    if (this.stopped || this.debounce) return;
    this.debounce = setTimeout(() => {
      this.debounce = null;
      void this.refresh();
    }, DEBOUNCE_MS);
    this.debounce.unref();
  }

  /** Reads the counts now; concurrent calls share one read (and one more after it). */
  refresh(): Promise<void> {
    if (this.running) {
      this.again = true;
      return this.running;
    }
    this.running = (async () => {
      do {
        this.again = false;
        try {
          const rows = await this.storage.accounts.verifierCoverage();
          this.byHost = new Map(rows.map((r) => [r.host, r]));
        } catch (err) {
          // The last counts stay in use; no account data is in the message.
          if (!this.stopped) this.log.warn('could not count the SCRAM verifiers per host', { error: err instanceof Error ? err.message : String(err) });
        }
      } while (this.again && !this.stopped);
    })().finally(() => {
      this.running = null;
    });
    return this.running;
  }

  /** Accounts of the served hosts without a verifier for each configured hash, as last counted (/metrics). */
  lacking(hosts: readonly string[]): Partial<Record<Hash, number>> {
    const { hashes } = this.settings();
    const out: Partial<Record<Hash, number>> = {};
    for (const h of STRENGTH) {
      if (!hashes.includes(h)) continue;
      out[h] = 0;
      for (const host of hosts) {
        const c = this.byHost.get(host);
        if (c) out[h] += c.accounts - c.withHash[h];
      }
    }
    return out;
  }

  /** The hashes `host` offers now, weakest first. */
  hashes(host: string): Hash[] {
    const { hashes, offerCoverage } = this.settings();
    return offeredHashes(hashes, this.byHost.get(host), offerCoverage);
  }
}

/** One host's line of `gatehouse user hashes`: counts only, no account named. */
export interface HashReport {
  host: string;
  accounts: number;
  /** Accounts with a verifier for each hash. */
  withHash: Record<Hash, number>;
  /** Accounts without a verifier for each configured hash: they get one when their password is next seen in clear. */
  lacking: Partial<Record<Hash, number>>;
  /** The SCRAM hashes the host offers with these counts, weakest first. */
  offered: Hash[];
}

/** The report of every configured host (hosts without accounts too), from the stored counts. */
export function hashReport(hosts: readonly string[], rows: readonly VerifierCoverage[], settings: { hashes: readonly Hash[]; offerCoverage: number }): HashReport[] {
  return hosts.map((host) => {
    const c = rows.find((r) => r.host === host) ?? { host, accounts: 0, withHash: { 'SHA-1': 0, 'SHA-256': 0 } };
    const lacking: Partial<Record<Hash, number>> = {};
    for (const h of STRENGTH) if (settings.hashes.includes(h)) lacking[h] = c.accounts - c.withHash[h];
    return { host, accounts: c.accounts, withHash: { ...c.withHash }, lacking, offered: offeredHashes(settings.hashes, c, settings.offerCoverage) };
  });
}
