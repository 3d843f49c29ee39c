/**
 * One user's session state in the kit (per user and, on multi-server networks, per server): the
 * foreign session, its connection state, and what the kit keeps for it (rooms, contacts met,
 * presence). Shared by the sessions (sessions.ts and its session-*.ts layers, which drive it),
 * the rooms (rooms.ts and its room-*.ts layers) and contacts.ts.
 */
import type { Timer } from '../../shared/clock.js';
import type { LegacyContact, LegacySession } from './adapter.js';
import type { RoomState } from './room-state.js';

export type SessionState = 'connecting' | 'online' | 'retrying' | 'failed' | 'closed';

export interface LoginFailure {
  condition: 'not-authorized' | 'remote-server-timeout' | 'internal-server-error' | 'registration-required';
  text: string;
}

/** Thrown to callers waiting for a session that could not be established. */
export class SessionUnavailableError extends Error {
  constructor(readonly failure: LoginFailure) {
    super(failure.text);
  }
}

export class UserSession {
  state: SessionState = 'connecting';
  legacy: LegacySession | null = null;
  since: Date;
  /** The foreign account, for the audit log and the admin list (never a secret). */
  account: string | null = null;
  /** Credential values, scrubbed from every reason written to the audit log. */
  secrets: string[] = [];
  attempt = 0;
  failure: LoginFailure | null = null;
  failureNotified = false;
  retryTimer: Timer | null = null;
  graceTimer: Timer | null = null;
  loginDone: Promise<void> | null = null;
  /** Bumped per connection; events of an older connection are ignored. */
  generation = 0;
  /** Rooms by bare room JID (rooms.ts). */
  readonly rooms = new Map<string, RoomState>();
  /** The network's spelling of contacts met, by bare contact JID. */
  readonly contacts = new Map<string, LegacyContact>();
  /** Last known presence of contacts, by bare contact JID. */
  readonly contactPresence = new Map<string, { show: 'available' | 'away' | 'dnd' | 'xa'; status: string | null }>();
  /** Contact JIDs the user was sent available presence for. */
  readonly announced = new Set<string>();
  /** Staying connected (bouncer mode): the session and its rooms outlive the user's resources. */
  keepAlive = false;
  /** The own presence last passed to setPresence. */
  appliedPresence: string | null = null;
  /** The adapter's latest 'syncState' and the timer that stores it. */
  syncState: string | undefined;
  syncTimer: Timer | null = null;
  /** Secret state reported and not stored yet, and whether a write is under way. */
  secretState: Uint8Array | null = null;
  secretWriting = false;
  /** The registration is being removed: nothing of this session is stored any more. */
  erasing = false;

  constructor(
    readonly user: string,
    readonly server: string | undefined,
    now: Date,
  ) {
    this.since = now;
  }

  get key(): string {
    return sessionKey(this.user, this.server);
  }
}

export function sessionKey(user: string, server: string | undefined): string {
  return `${user}\u0000${server ?? ''}`;
}
