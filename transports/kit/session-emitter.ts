/**
 * The common base of the network sessions (IRC, Matrix, Discord): events to the kit and callbacks
 * from the network's client library run guarded, so a listener or handler that throws is logged
 * (with the network and the connection's context, never message text) instead of breaking the
 * library's event loop or the session.
 */
import { EventEmitter } from 'node:events';
import type { AdapterLogger, LegacyRoom, LegacySessionEvents } from './adapter.js';
import { OccupantTable } from './occupants.js';

export abstract class LegacySessionEmitter extends EventEmitter<LegacySessionEvents> {
  /** The network's name in log lines ('irc'). */
  protected abstract readonly network: string;
  protected abstract readonly log: AdapterLogger;

  /** Fields that name the connection in log lines (e.g. the server); nothing secret. */
  protected logContext(): Record<string, string> {
    return {};
  }

  /** Runs a callback from the network's client library; an exception is logged, not thrown. */
  protected guard(where: string, fn: () => void): void {
    try {
      fn();
    } catch (err) {
      this.log.warn(`${this.network} event handler failed`, { ...this.logContext(), where, error: errorText(err) });
    }
  }

  /** A room's occupant table that reports its changes through safeEmit. */
  protected occupantTable<D = undefined>(room: LegacyRoom, keyOf?: (id: string) => string): OccupantTable<D> {
    return new OccupantTable<D>(room, (event, ...args) => this.safeEmit(event, ...args), keyOf);
  }

  /** Emits an event to the kit; a listener that throws is logged, not thrown into the caller. */
  protected safeEmit<K extends keyof LegacySessionEvents>(event: K, ...args: LegacySessionEvents[K]): void {
    try {
      (this.emit as (e: K, ...a: LegacySessionEvents[K]) => boolean)(event, ...args);
    } catch (err) {
      this.log.warn(`${this.network} session listener failed`, { ...this.logContext(), event: String(event), error: errorText(err) });
    }
  }
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}
