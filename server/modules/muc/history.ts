/**
 * A room's discussion history (XEP-0045 7.2.15): the last messages, in memory only, for at most
 * `muc.historyMaxAge`; what a joining occupant asks for with `<history/>` (maxchars, maxstanzas,
 * seconds, since) is cut from it. Nothing here is ever written to disk.
 */
import { Element, serialize } from '../../../shared/xml/element.js';

export interface HistoryEntry {
  /** The message as broadcast (from the occupant's room JID, with stanza-id and occupant-id), without 'to'. */
  stanza: Element;
  at: number;
  /** The sender's stanza id (XEP-0359, for XEP-0425 moderation). */
  stanzaId: string;
  /** Characters of the serialised stanza, for maxchars. */
  chars: number;
}

export interface HistoryRequest {
  maxchars?: number;
  maxstanzas?: number;
  seconds?: number;
  since?: number;
}

export class RoomHistory {
  private entries: HistoryEntry[] = [];

  constructor(
    private limit: number,
    private readonly maxAgeMs: number,
  ) {}

  setLimit(n: number): void {
    this.limit = n;
    if (this.entries.length > n) this.entries.splice(0, this.entries.length - n);
  }

  add(stanza: Element, stanzaId: string, at: number): void {
    if (this.limit <= 0) return;
    this.entries.push({ stanza, at, stanzaId, chars: serialize(stanza).length });
    if (this.entries.length > this.limit) this.entries.splice(0, this.entries.length - this.limit);
  }

  /** Drops what is older than the maximum age. */
  prune(now: number): void {
    const cut = now - this.maxAgeMs;
    let i = 0;
    while (i < this.entries.length && this.entries[i]!.at <= cut) i++;
    if (i > 0) this.entries.splice(0, i);
  }

  /** Replaces a message (by its stanza id) with `replacement` (a moderated retraction); false when unknown. */
  replace(stanzaId: string, replacement: Element | null): boolean {
    const i = this.entries.findIndex((e) => e.stanzaId === stanzaId);
    if (i < 0) return false;
    if (replacement) this.entries[i] = { ...this.entries[i]!, stanza: replacement, chars: serialize(replacement).length };
    else this.entries.splice(i, 1);
    return true;
  }

  find(stanzaId: string): HistoryEntry | undefined {
    return this.entries.find((e) => e.stanzaId === stanzaId);
  }

  clear(): void {
    this.entries = [];
  }

  get size(): number {
    return this.entries.length;
  }

  /** The entries a join asks for, oldest first. */
  select(req: HistoryRequest, now: number): HistoryEntry[] {
    this.prune(now);
    let list = this.entries;
    if (req.seconds !== undefined) list = list.filter((e) => e.at >= now - req.seconds! * 1000);
    if (req.since !== undefined) list = list.filter((e) => e.at > req.since!);
    if (req.maxstanzas !== undefined) list = req.maxstanzas <= 0 ? [] : list.slice(-req.maxstanzas);
    if (req.maxchars !== undefined) {
      let budget = req.maxchars;
      const out: HistoryEntry[] = [];
      for (let i = list.length - 1; i >= 0; i--) {
        budget -= list[i]!.chars;
        if (budget < 0) break;
        out.unshift(list[i]!);
      }
      list = out;
    }
    return list;
  }
}

/** Reads a join's `<history/>` element (absent attributes are no limit); bad numbers are ignored. */
export function historyRequest(el: Element | undefined): HistoryRequest {
  if (!el) return {};
  const num = (a: string) => {
    const v = el.attrs[a];
    if (v === undefined || !/^\d{1,12}$/.test(v)) return undefined;
    return Number(v);
  };
  const out: HistoryRequest = {};
  const maxchars = num('maxchars');
  const maxstanzas = num('maxstanzas');
  const seconds = num('seconds');
  if (maxchars !== undefined) out.maxchars = maxchars;
  if (maxstanzas !== undefined) out.maxstanzas = maxstanzas;
  if (seconds !== undefined) out.seconds = seconds;
  if (el.attrs.since !== undefined) {
    const t = Date.parse(el.attrs.since);
    if (!Number.isNaN(t)) out.since = t;
  }
  return out;
}
