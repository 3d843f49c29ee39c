/**
 * The configuration in force (P22). The policy module keeps parts of the file's configuration that
 * would change the published privacy policy out of force until the announced change takes effect
 * (modules/policy/holdback.ts); everything else reads the configuration in force.
 *
 * `ctx.config` is a live view of it: each top-level section is read through to the configuration
 * in force at the time, so code that keeps `ctx.config` and reads `config.auth.hashes` later sees
 * a part that has since come into force. Code that must act when a part comes into force (add a
 * component domain, start a transport, open the s2s listener) listens to 'config/in-force', which
 * fires both when a held-back part takes effect and when a reload (server/main.ts) changes settings.
 */
import type { Config } from '../config/index.js';
import type { HookBus } from './hooks.js';

declare module './hooks.js' {
  interface HookEvents {
    /** Another configuration came into force: a held-back part took effect (P22), or a reload changed settings. */
    'config/in-force': { before: Config; after: Config };
  }
}

export class ConfigInForce {
  private current: Config;
  /** What `ctx.config` is: reads through to the configuration in force. */
  readonly view: Config;

  /** `file`: the configuration as read from its file (in force until put() says otherwise). */
  constructor(
    private fileConfig: Config,
    private readonly hooks: HookBus,
  ) {
    const file = fileConfig;
    this.current = file;
    const view = {};
    for (const key of Object.keys(file) as (keyof Config)[]) {
      Object.defineProperty(view, key, { get: () => this.current[key], enumerable: true });
    }
    this.view = Object.freeze(view) as Config;
  }

  /** The configuration as read from its file (at start, or at the last reload). */
  get file(): Config {
    return this.fileConfig;
  }

  /**
   * A reload read the file again: what the server should run with from now on, before the policy
   * module decides which of its parts are in force (server/main.ts, then put()).
   */
  setFile(next: Config): void {
    this.fileConfig = next;
  }

  /** The configuration in force now (a plain value, not the live view). */
  get(): Config {
    return this.current;
  }

  /** Puts `next` in force and tells the listeners of 'config/in-force'. Only the policy module calls it. */
  async put(next: Config): Promise<void> {
    const before = this.current;
    if (before === next) return;
    this.current = next;
    await this.hooks.emit('config/in-force', { before, after: next });
  }
}
