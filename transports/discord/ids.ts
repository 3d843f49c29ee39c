/**
 * Message ids between the kit and Discord. The kit names messages by its own ids (the XMPP
 * stanza ids it passed as TextMessage.id); Discord by snowflakes. A message sent through the
 * transport keeps the kit's id in both directions: a later edit, deletion, reaction or reply that
 * names it reaches the right Discord message, and Discord events about it (a reply, a reaction)
 * carry the kit's id. Messages from Discord keep their snowflakes. Bounded: the oldest mappings
 * are forgotten first.
 */

/** A Map that forgets its oldest entries beyond `max`. */
export class BoundedMap<K, V> extends Map<K, V> {
  constructor(private readonly max: number) {
    super();
  }

  override set(key: K, value: V): this {
    if (super.has(key)) super.delete(key);
    super.set(key, value);
    while (this.size > this.max) {
      const oldest = this.keys().next();
      if (oldest.done) break;
      super.delete(oldest.value);
    }
    return this;
  }
}

export function isSnowflake(id: string): boolean {
  return /^\d{15,21}$/.test(id);
}

export class IdMap {
  private readonly toDiscord: BoundedMap<string, string[]>;
  private readonly fromDiscord: BoundedMap<string, string>;

  constructor(max = 5000) {
    this.toDiscord = new BoundedMap(max);
    this.fromDiscord = new BoundedMap(max * 2);
  }

  /** Records that the kit's `kitId` went out as these Discord messages (a long text may take several). */
  link(kitId: string, snowflakes: string[]): void {
    if (!snowflakes.length) return;
    this.toDiscord.set(kitId, snowflakes);
    for (const s of snowflakes) this.fromDiscord.set(s, kitId);
  }

  /** The Discord messages an id names: the mapped ones, or the id itself if it is a snowflake. */
  discordIds(id: string): string[] {
    return this.toDiscord.get(id) ?? (isSnowflake(id) ? [id] : []);
  }

  /** The id the kit knows a Discord message by. */
  kitId(snowflake: string): string {
    return this.fromDiscord.get(snowflake) ?? snowflake;
  }
}
