/**
 * The occupant table of one foreign room, shared by the network adapters (IRC channel, Matrix
 * room, Discord channel): who is in the room, keyed by their foreign id, with the nick the kit
 * shows, role, affiliation and contact. Changes go through join/part/rename/update, which report
 * them to the kit as occupantJoined / occupantLeft / nickChanged / occupantChanged, once the room
 * is `announced` (the kit got roomJoined); before that they are silent, and roomJoined carries
 * the whole list.
 *
 * Nicks are unique in a room (they become MUC occupant JIDs): `uniqueNick` picks the first
 * candidate nobody else holds, and an occupant keeps its nick while the name it was made from
 * (its `base`) is unchanged, so whoever had a name first keeps it.
 */
import type { LegacyRoom, LegacySessionEvents, Occupant } from './adapter.js';

export type OccupantEvent = 'occupantJoined' | 'occupantLeft' | 'occupantChanged' | 'nickChanged';
export type OccupantEmit = <K extends OccupantEvent>(event: K, ...args: LegacySessionEvents[K]) => void;

/** One occupant, with what the adapter keeps about it (`data`: IRC channel modes, for instance). */
export interface OccupantEntry<D = undefined> extends Occupant {
  /** The occupant's id on its network (Matrix user ID, Discord user id, IRC nick). */
  readonly id: string;
  /** The name the nick was made from (a display name), where nicks are made unique. */
  base?: string;
  data: D;
}

export class OccupantTable<D = undefined> {
  /** The kit has the room (roomJoined was emitted): changes are reported from now on. */
  announced = false;
  private readonly byKey = new Map<string, OccupantEntry<D>>();
  private readonly byNick = new Map<string, string>();

  /**
   * @param room the room as events name it (the same object the adapter reports roomJoined with)
   * @param keyOf how ids compare (IRC: case-folded by the server's casemapping)
   */
  constructor(
    readonly room: LegacyRoom,
    private readonly emit: OccupantEmit,
    private readonly keyOf: (id: string) => string = (id) => id,
  ) {}

  get size(): number {
    return this.byKey.size;
  }

  has(id: string): boolean {
    return this.byKey.has(this.keyOf(id));
  }

  get(id: string): OccupantEntry<D> | undefined {
    return this.byKey.get(this.keyOf(id));
  }

  nickOf(id: string): string | undefined {
    return this.get(id)?.nick;
  }

  /** The id of whoever holds `nick` in this room. */
  idOf(nick: string): string | undefined {
    return this.byNick.get(nick);
  }

  entries(): OccupantEntry<D>[] {
    return [...this.byKey.values()];
  }

  ids(): string[] {
    return this.entries().map((e) => e.id);
  }

  /** The occupants as the kit sees them (for roomJoined). */
  list(): Occupant[] {
    return this.entries().map(publicOccupant);
  }

  /** Forgets everyone, silently (a new member list follows). */
  clear(): void {
    this.byKey.clear();
    this.byNick.clear();
  }

  /** Replaces the whole list, silently (a member list that roomJoined reports, or a refresh of it). */
  replaceAll(list: { id: string; occupant: Occupant; data: D }[]): void {
    this.clear();
    const announced = this.announced;
    this.announced = false;
    try {
      for (const { id, occupant, data } of list) this.join(id, occupant, data);
    } finally {
      this.announced = announced;
    }
  }

  /**
   * Someone is in the room: a new occupant is reported as occupantJoined; a known one is updated
   * (nickChanged, then occupantChanged if the role or affiliation changed).
   */
  join(id: string, occupant: Occupant, data: D, base?: string): OccupantEntry<D> {
    const known = this.get(id);
    if (known) {
      known.data = data;
      if (base !== undefined) known.base = base;
      this.update(id, occupant);
      return known;
    }
    const entry: OccupantEntry<D> = { id, nick: occupant.nick, role: occupant.role, affiliation: occupant.affiliation, data };
    if (occupant.contact) entry.contact = occupant.contact;
    if (base !== undefined) entry.base = base;
    this.byKey.set(this.keyOf(id), entry);
    this.byNick.set(entry.nick, id);
    if (this.announced) this.emit('occupantJoined', this.room, publicOccupant(entry));
    return entry;
  }

  /** Someone left (part, quit, kick: `by`); reported as occupantLeft. */
  part(id: string, reason: string | null = null, by: string | null = null): OccupantEntry<D> | undefined {
    const k = this.keyOf(id);
    const entry = this.byKey.get(k);
    if (!entry) return undefined;
    this.byKey.delete(k);
    if (this.byNick.get(entry.nick) === entry.id) this.byNick.delete(entry.nick);
    if (this.announced) this.emit('occupantLeft', this.room, entry.nick, reason, by);
    return entry;
  }

  /** An occupant's id changes with its nick (IRC NICK); reported as nickChanged. */
  rename(oldId: string, newId: string, nick: string, contact?: Occupant['contact']): void {
    const k = this.keyOf(oldId);
    const entry = this.byKey.get(k);
    if (!entry) return;
    this.byKey.delete(k);
    const moved: OccupantEntry<D> = { ...entry, id: newId };
    if (contact) moved.contact = contact;
    this.byKey.set(this.keyOf(newId), moved);
    if (this.byNick.get(entry.nick) === entry.id) this.byNick.delete(entry.nick);
    moved.nick = nick;
    this.byNick.set(nick, newId);
    if (this.announced) this.emit('nickChanged', this.room, entry.nick, nick);
  }

  /**
   * New nick, role, affiliation or contact of an occupant: nickChanged if the nick changed, then
   * occupantChanged if the role or affiliation did.
   */
  update(id: string, change: Partial<Occupant>, base?: string): void {
    const entry = this.get(id);
    if (!entry) return;
    if (base !== undefined) entry.base = base;
    if (change.contact) entry.contact = change.contact;
    if (change.nick !== undefined && change.nick !== entry.nick) {
      const old = entry.nick;
      if (this.byNick.get(old) === entry.id) this.byNick.delete(old);
      entry.nick = change.nick;
      this.byNick.set(entry.nick, entry.id);
      if (this.announced) this.emit('nickChanged', this.room, old, entry.nick);
    }
    const role = change.role ?? entry.role;
    const affiliation = change.affiliation ?? entry.affiliation;
    if (role === entry.role && affiliation === entry.affiliation) return;
    entry.role = role;
    entry.affiliation = affiliation;
    if (this.announced) this.emit('occupantChanged', this.room, publicOccupant(entry));
  }

  /**
   * A nick for `id` made from `base`: its current nick while its base is unchanged, else the
   * first of `candidates` (base first) nobody else in the room holds, else `fallback()`.
   */
  uniqueNick(id: string, base: string, candidates: string[], fallback: () => string): string {
    const current = this.get(id);
    if (current && current.base === base) return current.nick;
    const free = (n: string) => {
      const holder = this.byNick.get(n);
      return holder === undefined || holder === id;
    };
    for (const candidate of candidates) if (free(candidate)) return candidate;
    return fallback();
  }
}

function publicOccupant(e: Occupant): Occupant {
  const o: Occupant = { nick: e.nick, role: e.role, affiliation: e.affiliation };
  if (e.contact) o.contact = e.contact;
  return o;
}
