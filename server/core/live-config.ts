/**
 * The configuration a running server works with, replaced by a reload (server/reload.ts).
 *
 * `ctx.config` is a live view: each top-level section is read through to the configuration of the
 * moment, so code that keeps `ctx.config` (or destructures it in load()) and reads
 * `config.offline.maxPerUser` when it acts sees a reloaded value. Code that copied a value at load
 * (a listener's address, a timer's interval, a built object) reacts to 'config/reloaded' instead,
 * or the setting is one that needs a restart (RESTART_ONLY in server/reload.ts).
 */
import type { Config } from '../config/index.js';

declare module './hooks.js' {
  interface HookEvents {
    /**
     * A reload is about to put `after` in force. A handler that cannot accept it (e.g. it would
     * change the published privacy policy unannounced) calls `refuse(reason)`: the reload is
     * refused with that reason and the running configuration stays. Nothing may change here.
     */
    'config/reloading': { before: Config; after: Config; refuse(reason: string): void };
    /** A reload put `after` in force (ctx.config reads it now); modules apply what they built from `before`. */
    'config/reloaded': { before: Config; after: Config };
  }
}

export class LiveConfig {
  private current: Config;
  /** What `ctx.config` is: reads through to the configuration in force. */
  readonly view: Config;

  constructor(initial: Config) {
    this.current = initial;
    const view = {};
    for (const key of Object.keys(initial) as (keyof Config)[]) {
      Object.defineProperty(view, key, { get: () => this.current[key], enumerable: true });
    }
    this.view = Object.freeze(view) as Config;
  }

  /** The configuration in force (a plain value, not the live view). */
  get(): Config {
    return this.current;
  }

  set(next: Config): void {
    this.current = next;
  }
}
