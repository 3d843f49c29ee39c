/**
 * Mapping between legacy identities and JIDs of the transport's domain.
 *
 *   contact  escape(id)%server@domain   (multi-server networks: IRC nick%irc.example.org@irc.domain)
 *            escape(id)@domain          (otherwise)
 *   room     escape(room.id)%server@domain, occupants room@domain/nick
 *   server   escape(server)@domain      (multi-server networks: carries server messages and
 *                                        per-server settings)
 *   gateway  domain
 *
 * The last `%` separates id and server (server names never contain one, ids may). Whether an id is
 * a room or a contact is the adapter's call (isRoomId). JIDs are normalised (RFC 7622: localparts
 * are case-folded), so an id read back from a JID may differ in case from the network's spelling;
 * sessions remember the spelling the network used (see sessions.ts).
 */
import { Jid } from '../../shared/jid.js';
import type { LegacyContact, LegacyRoom, NetworkAdapter } from './adapter.js';
import { escapeLocal, unescapeLocal } from './jid-escaping.js';

export type Address =
  | { kind: 'gateway' }
  | { kind: 'server'; server: string }
  | { kind: 'contact'; id: string; server: string | undefined }
  | { kind: 'room'; id: string; server: string | undefined; nick: string | null };

export class Addresses {
  constructor(
    readonly domain: string,
    private readonly adapter: Pick<NetworkAdapter, 'multiServer' | 'isRoomId'>,
  ) {}

  get multiServer(): boolean {
    return this.adapter.multiServer;
  }

  private local(id: string, server: string | undefined): string | null {
    const escaped = escapeLocal(id);
    if (escaped === null) return null;
    if (!this.adapter.multiServer) return escaped;
    if (!server) return null;
    const s = escapeLocal(server);
    return s === null ? null : `${escaped}%${s}`;
  }

  private bare(local: string | null): string | null {
    if (local === null) return null;
    return Jid.of(local, this.domain)?.bare ?? null;
  }

  /** The contact's bare JID, or null if the id cannot be mapped (empty, invalid, no server on a multi-server network). */
  contactJid(contact: LegacyContact, server?: string): string | null {
    return this.bare(this.local(contact.id, contact.server ?? server));
  }

  roomJid(room: LegacyRoom, server?: string): string | null {
    return this.bare(this.local(room.id, room.server ?? server));
  }

  occupantJid(room: LegacyRoom, nick: string, server?: string): string | null {
    const local = this.local(room.id, room.server ?? server);
    if (local === null) return null;
    return Jid.of(local, this.domain, nick)?.full ?? null;
  }

  /** The JID of a server of a multi-server network. */
  serverJid(server: string): string | null {
    return this.bare(escapeLocal(server));
  }

  isRoomId(id: string): boolean {
    return this.adapter.isRoomId?.(id) ?? false;
  }

  /** What a JID of this domain names; null for other domains and unmappable localparts. */
  parse(jid: Jid): Address | null {
    if (jid.domain !== this.domain) return null;
    if (!jid.local) return { kind: 'gateway' };
    let idPart = jid.local;
    let server: string | undefined;
    if (this.adapter.multiServer) {
      const at = jid.local.lastIndexOf('%');
      if (at < 0) return jid.resource ? null : { kind: 'server', server: unescapeLocal(jid.local) };
      idPart = jid.local.slice(0, at);
      server = unescapeLocal(jid.local.slice(at + 1));
      if (!idPart || !server) return null;
    }
    const id = unescapeLocal(idPart);
    if (this.isRoomId(id)) return { kind: 'room', id, server, nick: jid.resource || null };
    return { kind: 'contact', id, server };
  }
}
