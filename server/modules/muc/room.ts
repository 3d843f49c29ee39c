/**
 * One room's state, all in memory: configuration, affiliations, occupants (by nick, each with the
 * client sessions that joined under it, XEP-0045 7.2 "multi-session nicks"), history and subject.
 * Persistent rooms write their configuration and affiliations through the service (storage.ts).
 */
import type { Element } from '../../../shared/xml/element.js';
import type { RoomConfig } from './config-form.js';
import { RoomHistory } from './history.js';
import type { Affiliation, Role } from './roles.js';

export interface AffiliationEntry {
  affiliation: Exclude<Affiliation, 'none'>;
  nick: string | null;
  reason: string | null;
}

export interface Occupant {
  nick: string;
  /** The real bare JID. */
  bare: string;
  /** Each joined session (full JID) with the presence it last sent, as received (muc x removed). */
  sessions: Map<string, Element>;
  /** The session whose presence the room shows (the last one that sent presence). */
  shown: string;
  role: Role;
  occupantId: string;
  /** Token bucket of the message rate limit. */
  tokens: number;
  refilledAt: number;
}

export interface Subject {
  text: string;
  /** The nick that set it ('' for the room itself). */
  nick: string;
  occupantId: string | null;
  at: number;
}

export class Room {
  readonly jid: string;
  readonly affiliations = new Map<string, AffiliationEntry>();
  /**
   * JIDs whose affiliation was taken away since the room was last stored: a stored row of anyone
   * else that memory does not know came from elsewhere (an account import) and is kept.
   */
  readonly dropped = new Set<string>();
  readonly occupants = new Map<string, Occupant>();
  /** Full JID of a joined session → its occupant. */
  readonly sessions = new Map<string, Occupant>();
  readonly history: RoomHistory;
  subject: Subject | null = null;
  /** Created and not yet configured (10.1.1): only owners may enter. */
  locked = false;
  /** The row of a persistent room, once stored. */
  storedId: number | null = null;
  destroyed = false;
  readonly createdAt: number;

  constructor(
    readonly name: string,
    readonly service: string,
    public config: RoomConfig,
    historyMaxAgeMs: number,
    now: number,
  ) {
    this.jid = `${name}@${service}`;
    this.history = new RoomHistory(config.historyLength, historyMaxAgeMs);
    this.createdAt = now;
  }

  affiliationOf(bare: string): Affiliation {
    return this.affiliations.get(bare)?.affiliation ?? 'none';
  }

  /** The bare JIDs of one affiliation, sorted. */
  withAffiliation(a: Affiliation): string[] {
    return [...this.affiliations].filter(([, e]) => e.affiliation === a).map(([j]) => j).sort();
  }

  /** The nick another user has reserved (registered members, 7.2.9), if any. */
  reservedBy(nick: string): string | undefined {
    const folded = nick.toLowerCase();
    for (const [jid, e] of this.affiliations) if (e.nick !== null && e.nick.toLowerCase() === folded) return jid;
    return undefined;
  }

  /** Whether the other occupants see the presence of an occupant in `role` (muc#roomconfig_presencebroadcast). */
  broadcasts(role: string): boolean {
    return (this.config.presenceBroadcast as string[]).includes(role);
  }

  get nonAnonymous(): boolean {
    return this.config.whois === 'anyone';
  }

  /** Whether `viewer` may see real JIDs (7.2.3/7.2.4). */
  showsRealJidsTo(viewer: Occupant): boolean {
    return this.nonAnonymous || viewer.role === 'moderator';
  }

  get empty(): boolean {
    return this.occupants.size === 0;
  }
}
