/**
 * What the running server (main.ts) offers the operator's commands about itself: its listeners and
 * a reload. main.ts provides it as the service `runtime` once its listeners are open; a module
 * reads it when a command runs (`ctx.services.get('runtime')`), never at load.
 */

/** The answer of a reload. */
export interface ReloadOutcome {
  /** Settings (key paths) that changed and are in force now; `certificates` is always re-read. */
  changed: string[];
  /** Settings that changed in the file but keep their running value until a restart. */
  needsRestart: string[];
  /** Changes of the file held back until their privacy policy change takes effect (P22), as `gatehouse status` lists them. */
  heldBack: string[];
}

/** A reload that was refused: the running configuration stays. The message is one line. */
export class ReloadRefused extends Error {}

export interface ServerRuntime {
  /** Re-reads the configuration file and the certificates; throws ReloadRefused. */
  reload(): Promise<ReloadOutcome>;
  listeners(): { kind: string; host: string; port: number }[];
}

declare module './services.js' {
  interface Services {
    runtime: ServerRuntime;
  }
}
