import type { Element } from '../../shared/xml/element.js';
import type { Jid } from '../../shared/jid.js';
import type { ClientSession } from './session.js';
import type { Account } from '../../storage/types.js';

/** Where a stanza entered the server. */
export type Origin =
  | { kind: 'c2s'; session: ClientSession }
  | { kind: 'server' }
  | { kind: 'component'; domain: string }
  | { kind: 's2s'; domain: string };

export interface StanzaEvent {
  stanza: Element;
  /** Trusted sender address, stamped by the stream that received the stanza. */
  from: Jid;
  /** Recipient; for a client stanza without 'to', the sender's bare JID (RFC 6120 10.3). */
  to: Jid;
  origin: Origin;
}

/**
 * Every event on the bus. Stanza events are named `<kind>/<target>` with target host, bare, full
 * or remote (e.g. 'message/bare'), and IQs also `iq-get/<target>/<xmlns>:<name>` for the child.
 * Modules add their own events by declaration merging on this interface.
 */
export interface HookEvents {
  /** A resource sent its initial available presence (fired by the presence module, after broadcast). */
  'session/available': { session: ClientSession };
  /** A resource became unavailable: unavailable presence (given as stanza) or disconnect (fired by the presence module). */
  'session/unavailable': { session: ClientSession; stanza?: Element };
  /**
   * A message for an existing local account that no resource can take right now (fired by the
   * message module). The offline module stores it and returns true; unhandled means bounce.
   */
  'message/offline': StanzaEvent;
  /**
   * Messages may have been stored offline for this available resource's account by a cluster node
   * that did not know yet the resource was online (fired on the resource's node by the cluster
   * layer): the offline module delivers what is stored, as at initial presence.
   */
  'session/stored-messages': { session: ClientSession };
  /** An account is about to be deleted: modules unsubscribe contacts, close sessions. */
  'account/deleting': { account: Account; jid: Jid };
  /** An account and all its rows are gone. */
  'account/deleted': { account: Account; jid: Jid };
  'account/created': { account: Account; jid: Jid; ip: string | null };
  /**
   * The server is stopping: listeners are closed, client streams and server-to-server links are
   * still open, so modules can still tell others (the chat rooms' 332). Bounded by main.ts.
   */
  'server/stopping': Record<string, never>;
  /** The account's SCRAM verifiers were replaced (new password) or completed (a hash it lacked). */
  'account/verifiers-changed': { account: Account };
  [stanzaEvent: `message/${string}` | `presence/${string}` | `iq/${string}` | `iq-get/${string}` | `iq-set/${string}` | `iq-result/${string}` | `iq-error/${string}`]: StanzaEvent;
}

/**
 * The named phases of a hook, in the order handlers run (highest first). The numbers live only
 * here; modules say the phase. Within a phase, handlers run in module load order.
 */
export const PHASES = {
  /** Sees the event before anyone acts on it; never handles it (last activity's status, session counters). */
  observe: 1000,
  /** Policy on what a user sends, before any processing (blocking, outbound). */
  filter: 20,
  /** Takes the event before the ordinary handlers (presence's outbound processing, the login guard before registration). */
  intercept: 10,
  /** The default: a module's own handlers (and blocking's inbound filter, by load order). */
  handle: 0,
  /** Copies a stanza before it is delivered (carbons). */
  copy: -0.5,
  /** Delivers to local resources (message and presence inbound delivery, after copies and filters). */
  deliver: -1,
  /** Hands stanzas for other domains to federation. */
  federate: -50,
  /** The router's last resort: component delivery, service-unavailable, bounce. */
  fallback: -100,
} as const;

export type HookPhase = keyof typeof PHASES;

export type HookHandler<T> = (payload: T) => boolean | void | Promise<boolean | void>;

interface Registered<T> {
  handler: HookHandler<T>;
  priority: number;
  phase: HookPhase;
  /** The module that was loading when the handler was added ('core' outside module loads). */
  owner: string;
}

/** One registered handler, for the generated table of hooks (docs/architecture.md). */
export interface HookRegistration {
  event: string;
  phase: HookPhase;
  owner: string;
}

/**
 * Prosody-style hook bus: handlers run by phase (PHASES, highest first); a handler that returns true
 * has handled the event and stops the chain. Handler errors are contained and reported.
 */
export class HookBus {
  private readonly handlers = new Map<string, Registered<any>[]>();

  /** Set by main.ts while a module loads, so each handler knows its module. */
  owner = 'core';

  constructor(private readonly onError: (event: string, err: unknown) => void = () => {}) {}

  on<K extends keyof HookEvents & string>(event: K, handler: HookHandler<HookEvents[K]>, phase: HookPhase = 'handle'): () => void {
    const priority = PHASES[phase];
    if (priority === undefined) throw new Error(`unknown hook phase '${String(phase)}'`);
    const list = this.handlers.get(event) ?? [];
    const entry: Registered<HookEvents[K]> = { handler, priority, phase, owner: this.owner };
    list.push(entry);
    list.sort((a, b) => b.priority - a.priority);
    this.handlers.set(event, list);
    return () => {
      const i = list.indexOf(entry);
      if (i >= 0) list.splice(i, 1);
    };
  }

  /** Every handler, by event name and then in running order. */
  registrations(): HookRegistration[] {
    return [...this.handlers.entries()]
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .flatMap(([event, list]) => list.map(({ phase, owner }) => ({ event, phase, owner })));
  }

  has(event: string): boolean {
    return (this.handlers.get(event)?.length ?? 0) > 0;
  }

  /** Runs handlers in order until one returns true. Resolves to whether the event was handled. */
  async fire<K extends keyof HookEvents & string>(event: K, payload: HookEvents[K]): Promise<boolean> {
    const list = this.handlers.get(event);
    if (!list) return false;
    for (const { handler } of list.slice()) {
      try {
        if ((await handler(payload)) === true) return true;
      } catch (err) {
        this.onError(event, err);
        throw err;
      }
    }
    return false;
  }

  /** Fires to every handler regardless of return values; errors are reported, not thrown. */
  async emit<K extends keyof HookEvents & string>(event: K, payload: HookEvents[K]): Promise<void> {
    const list = this.handlers.get(event);
    if (!list) return;
    for (const { handler } of list.slice()) {
      try {
        await handler(payload);
      } catch (err) {
        this.onError(event, err);
      }
    }
  }
}
