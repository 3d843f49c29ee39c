/**
 * The privacy policy inside the running server (P22). At start the first start stores the policy
 * rendered from the configuration (in force at once). A configuration whose policy differs from the
 * version in force still starts: the parts that would widen the policy are held back (holdback.ts)
 * and the module puts the rest in force (ctx.configInForce), logging one line per held-back part.
 * When an announced version allowing a held-back part takes effect (its date on ctx.clock, or at
 * once when technical), the part comes into force without a restart. This happens in prepare(),
 * before any module loads, so every module reads the configuration in force from the start.
 *
 * While running, announcements (made with `gatehouse policy announce`, seen within a minute) are
 * told to online users with a headline message, and to users who come online later, once per
 * account.
 */
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import type { Logger } from '../../../shared/logger.js';
import { after, type Timer } from '../../../shared/clock.js';
import { dateEn } from './format.js';
import { checkPolicyAtStart, earliestEffectiveDay, upcoming } from './versions.js';
import { holdBack, type HeldPart } from './holdback.js';
import { PolicyNotifier } from './announce.js';
import { policyCommands } from './cli-policy.js';
import { policyPage } from './admin-policy.js';
import { publicPolicyPages } from './public-policy.js';
import { policyConfigSection } from './config.js';

export type { HeldPart } from './holdback.js';

/** A held-back part as the control socket and the admin API answer it. */
export interface HeldPartInfo {
  key: string;
  change: string;
  /** ISO date-time it comes into force, or null when no announced version allows it yet. */
  until: string | null;
  technical: string | null;
}

export interface PolicyService {
  /** The parts of the configuration held back now (P22). */
  held(): readonly HeldPart[];
  /** Re-reads the stored versions first (an announcement may just have been made), then answers. */
  refresh(): Promise<readonly HeldPart[]>;
}

declare module '../../core/services.js' {
  interface Services {
    policy: PolicyService;
  }
}

export interface PolicyModuleOptions {
  /** How often to look for new announcements (default one minute). */
  checkIntervalMs?: number;
}

const errorText = (err: unknown): string => (err instanceof Error ? err.message : String(err));

export function heldPartInfo(p: HeldPart): HeldPartInfo {
  return { key: p.key, change: p.change, until: p.until?.toISOString() ?? null, technical: p.technical };
}

/** The configuration in force, kept up to date with the stored versions. */
class HoldBackKeeper implements PolicyService {
  private parts: HeldPart[] = [];
  private timer: Timer | null = null;
  private chain: Promise<unknown> = Promise.resolve();
  private stopped = false;

  constructor(
    private readonly ctx: ServerContext,
    private readonly log: Logger,
  ) {}

  held(): readonly HeldPart[] {
    return this.parts;
  }

  refresh(): Promise<readonly HeldPart[]> {
    const run = this.chain.then(() => this.update(false));
    this.chain = run.catch(() => undefined);
    return run.then(() => this.parts);
  }

  /** Computes the configuration in force now, puts it in force and waits for the next effective date. */
  async update(atStart: boolean): Promise<void> {
    if (this.stopped) return;
    const { ctx, log } = this;
    const versions = await ctx.storage.policyVersions.list();
    if (this.stopped) return;
    const now = ctx.clock.now(); // after the read: a moved clock counts
    const result = holdBack(ctx.configInForce.file, versions, now);
    const before = new Map(this.parts.map((p) => [p.key, p]));
    this.parts = result.held;
    if (atStart) {
      for (const p of result.held) {
        const until = p.until ? `until ${p.until.toISOString()}${p.technical ? ' (technical change)' : ''}` : 'until a change is announced';
        log.warn(`configuration held back ${until}: ${p.change}`, {
          part: p.key,
          until: p.until?.toISOString() ?? null,
          ...(p.until ? {} : { announce: `gatehouse policy announce --effective ${earliestEffectiveDay(now)} (or sooner with --technical REASON)` }),
        });
      }
      if (result.inForceAtOnce.length) {
        log.info('configuration changes that narrow the privacy policy are in force at once; the published policy states the version in force until a new one is announced', {
          changes: result.inForceAtOnce.join('; '),
          version: result.version.id,
        });
      }
    } else {
      for (const [key, p] of before) {
        if (!result.held.some((h) => h.key === key)) log.info(`held-back configuration in force now: ${p.change}`, { part: key, version: result.version.id });
      }
      // A reload (a new file configuration) may bring new parts to hold back.
      for (const p of result.held) {
        if (!before.has(p.key)) log.warn(`configuration held back ${p.until ? `until ${p.until.toISOString()}` : 'until a change is announced'}: ${p.change}`, { part: p.key });
      }
    }
    if (JSON.stringify(result.config) !== JSON.stringify(ctx.configInForce.get())) await ctx.configInForce.put(result.config);
    this.schedule(upcoming(versions, now), now);
  }

  private schedule(coming: { effectiveAt: Date }[], now: Date): void {
    this.timer?.cancel();
    this.timer = null;
    const next = coming[0];
    if (!next || this.stopped) return;
    this.timer = after(this.ctx.clock, next.effectiveAt.getTime() - now.getTime(), () => {
      this.timer = null;
      this.refresh().catch((err) => this.log.error('putting the held-back configuration in force failed', { error: errorText(err) }));
    });
  }

  stop(): void {
    this.stopped = true;
    this.timer?.cancel();
    this.timer = null;
  }
}

/** One instance per server (the notifier and hold-back state live in it). */
export function createPolicyModule(opts: PolicyModuleOptions = {}): GatehouseModule {
  const stops = new Set<() => void>();
  let keeper: HoldBackKeeper | null = null;
  return {
    name: 'privacy-policy',
    config: policyConfigSection,
    specs: [],
    clauses: ['P22'],
    provides: ['policy'],
    commands: {
      cli: Object.values(policyCommands),
      control: {
        'policy.held': {
          summary: 'the parts of the configuration held back until their privacy policy change takes effect (P22)',
          available: () => keeper !== null,
          handler: async () => (keeper ? (await keeper.refresh()).map(heldPartInfo) : []),
        },
      },
    },
    admin: { pages: [policyPage], public: publicPolicyPages },
    // Before any module loads, so every module reads the configuration in force from the start.
    async prepare(ctx: ServerContext) {
      const log = ctx.log.child('policy');
      const result = await checkPolicyAtStart(ctx.storage, ctx.configInForce.file, ctx.clock.now());
      if (result.status === 'first') log.info('privacy policy stored as version 1', { version: result.version.id });
      else if (result.status === 'older')
        log.warn('the configuration renders an older privacy policy version than the last one announced', {
          matches: result.version.id,
          announced: result.latest.id,
          effective: dateEn(result.latest.effectiveAt),
        });
      const k = new HoldBackKeeper(ctx, log);
      // Throws PolicyChangeError (one line) only when no configured host is in force.
      await k.update(true);
      keeper = k;
    },
    async load(ctx: ServerContext) {
      const log = ctx.log.child('policy');
      const k = keeper ?? new HoldBackKeeper(ctx, log);
      keeper = k;
      stops.add(ctx.services.provide('policy', k));
      stops.add(() => k.stop());
      const notifier = new PolicyNotifier(ctx);
      const check = () => {
        notifier.check().catch((err) => log.error('policy announcement check failed', { error: errorText(err) }));
        k.refresh().catch((err) => log.error('putting the held-back configuration in force failed', { error: errorText(err) }));
      };
      await notifier.check().catch((err) => log.error('policy announcement check failed', { error: errorText(err) }));
      const off = ctx.hooks.on('session/available', ({ session }) => {
        notifier.onAvailable(session).catch((err) => log.error('policy notification failed', { error: errorText(err) }));
      });
      const timer = setInterval(check, opts.checkIntervalMs ?? 60_000);
      timer.unref();
      stops.add(() => {
        clearInterval(timer);
        off();
      });
    },
    unload() {
      for (const stop of stops) stop();
      stops.clear();
      keeper = null;
    },
  };
}
