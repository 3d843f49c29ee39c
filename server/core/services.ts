/**
 * Services modules offer each other on one server, found by name on `ctx.services` (like Prosody's
 * `module:provides` / `module:depends`). The provider declares the name and its type by declaration
 * merging, so a consumer gets the type without importing the providing module:
 *
 *     declare module '../core/services.js' {
 *       interface Services { roster: RosterService }
 *     }
 *     // provider, in load():  ctx.services.provide('roster', new RosterService(ctx));
 *     // consumer:             const roster = ctx.services.need('roster');
 *
 * The module also lists the name in `provides` / `needs`, so main.ts can check the load order.
 */
// eslint-disable-next-line @typescript-eslint/no-empty-interface
export interface Services {}

/** A typed service key: the name of a service some module provides. */
export type ServiceKey = keyof Services & string;

export class MissingServiceError extends Error {
  constructor(readonly service: string) {
    super(`service '${service}' is not provided on this server (is the module that provides it loaded before its users?)`);
  }
}

/** One server's services: one implementation per name. */
export class ServiceRegistry {
  private readonly impls = new Map<string, unknown>();

  /** Offers `impl` under `key`; a second provider of the same name is an error. */
  provide<K extends ServiceKey>(key: K, impl: Services[K]): () => void {
    if (this.impls.has(key)) throw new Error(`service '${key}' is provided twice`);
    this.impls.set(key, impl);
    return () => {
      if (this.impls.get(key) === impl) this.impls.delete(key);
    };
  }

  /** The service, or an error naming it when no module provides it. */
  need<K extends ServiceKey>(key: K): Services[K] {
    if (!this.impls.has(key)) throw new MissingServiceError(key);
    return this.impls.get(key) as Services[K];
  }

  /** The service if some module provides it (for optional collaborators). */
  get<K extends ServiceKey>(key: K): Services[K] | undefined {
    return this.impls.get(key) as Services[K] | undefined;
  }

  /**
   * The service, created on first use. Only for per-server hubs every module may write into
   * whatever the load order (statistics counters, control commands): whoever comes first creates.
   */
  shared<K extends ServiceKey>(key: K, create: () => Services[K]): Services[K] {
    if (!this.impls.has(key)) this.impls.set(key, create());
    return this.impls.get(key) as Services[K];
  }

  has(key: ServiceKey): boolean {
    return this.impls.has(key);
  }
}
