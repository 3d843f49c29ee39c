/** What the parts of the kit share (built once by gateway.ts). */
import type { Clock } from '../../shared/clock.js';
import type { Logger } from '../../shared/logger.js';
import type { Element } from '../../shared/xml/element.js';
import type { TransportRepository } from '../../server/storage/types.js';
import type { NetworkAdapter } from './adapter.js';
import type { Addresses } from './addresses.js';
import type { AuditLog } from './audit-log.js';
import type { Vault } from './vault.js';
import type { SessionManager } from './sessions.js';
import type { Rooms } from './rooms.js';
import type { Contacts } from './contacts.js';
import type { Registration } from './registration.js';

export interface KitSettings {
  /** Milliseconds a foreign session outlives the user's last resource. */
  gracePeriod: number;
  /** Milliseconds a login may take. */
  loginTimeout: number;
  reconnect: { min: number; max: number };
  /** Normalised bare JIDs. */
  admins: string[];
  /** Domains whose users may register; empty: any. */
  allowDomains: string[];
}

export interface Kit {
  readonly domain: string;
  readonly adapter: NetworkAdapter;
  readonly settings: KitSettings;
  readonly repo: TransportRepository;
  readonly vault: Vault;
  readonly audit: AuditLog;
  readonly addresses: Addresses;
  readonly clock: Clock;
  readonly log: Logger;
  readonly sessions: SessionManager;
  readonly rooms: Rooms;
  readonly contacts: Contacts;
  readonly registration: Registration;
  /** Sends a stanza to the XMPP server ('from' defaults to the transport's domain). */
  send(stanza: Element): void;
  /** Sends an IQ get/set and resolves with its result or error. */
  request(iq: Element, timeoutMs?: number): Promise<Element>;
  /** The network's display name for messages, e.g. "IRC". */
  readonly networkName: string;
}

/** Runs tasks of one key one after another (registration changes of one user, for instance). */
export class KeyedQueue {
  private readonly tails = new Map<string, Promise<unknown>>();

  run<T>(key: string, task: () => Promise<T>): Promise<T> {
    const prev = this.tails.get(key) ?? Promise.resolve();
    const next = prev.then(task, task);
    const tail = next.then(
      () => undefined,
      () => undefined,
    );
    this.tails.set(key, tail);
    void tail.then(() => {
      if (this.tails.get(key) === tail) this.tails.delete(key);
    });
    return next;
  }
}

/** An Error message for logs and audit rows: one line. */
export function errorText(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0]!.trim() || (err instanceof Error ? err.name : 'error');
}
