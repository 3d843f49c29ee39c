/**
 * The privacy policy inside the running server (P22): at start the policy rendered from the
 * configuration must be a stored version (the first start stores it, in force at once); a change
 * that was not announced stops the start with a one-line error. While running, announcements
 * (made with `gatehouse policy announce`, seen within a minute) are told to online users with a
 * headline message, and to users who come online later, once per account.
 */
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import { dateEn } from './format.js';
import { checkPolicyAtStart, unannouncedChange } from './versions.js';
import { PolicyNotifier } from './announce.js';
import { policyCommands } from './cli-policy.js';
import { policyPage } from './admin-policy.js';
import { publicPolicyPages } from './public-policy.js';
import { policyConfigSection } from './config.js';

export interface PolicyModuleOptions {
  /** How often to look for new announcements (default one minute). */
  checkIntervalMs?: number;
}

/** One instance per server (the notifier state lives in it). */
export function createPolicyModule(opts: PolicyModuleOptions = {}): GatehouseModule {
  const stops = new Set<() => void>();
  return {
    name: 'privacy-policy',
    config: policyConfigSection,
    specs: [],
    clauses: ['P22'],
    commands: { cli: Object.values(policyCommands) },
    admin: { pages: [policyPage], public: publicPolicyPages },
    async load(ctx: ServerContext) {
      const log = ctx.log.child('policy');
      // Throws PolicyChangeError (one line) when the configuration changes the policy unannounced.
      const result = await checkPolicyAtStart(ctx.storage, ctx.config, ctx.clock.now());
      if (result.status === 'first') log.info('privacy policy stored as version 1', { version: result.version.id });
      else if (result.status === 'older')
        log.warn('the configuration renders an older privacy policy version than the last one announced', {
          matches: result.version.id,
          announced: result.latest.id,
          effective: dateEn(result.latest.effectiveAt),
        });
      const notifier = new PolicyNotifier(ctx);
      const check = () =>
        notifier.check().catch((err) => log.error('policy announcement check failed', { error: err instanceof Error ? err.message : String(err) }));
      await check();
      const off = ctx.hooks.on('session/available', ({ session }) => {
        notifier.onAvailable(session).catch((err) => log.error('policy notification failed', { error: err instanceof Error ? err.message : String(err) }));
      });
      // A reload may not change the published policy unannounced (P22): it is refused, as a start was.
      const offReload = ctx.hooks.on('config/reloading', async ({ after, refuse }) => {
        const reason = await unannouncedChange(ctx.storage, after, ctx.clock.now());
        if (reason) refuse(reason);
      });
      const timer = setInterval(check, opts.checkIntervalMs ?? 60_000);
      timer.unref();
      stops.add(() => {
        clearInterval(timer);
        off();
        offReload();
      });
    },
    unload() {
      for (const stop of stops) stop();
      stops.clear();
    },
  };
}
