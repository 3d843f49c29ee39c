/**
 * IRC channel membership prefixes to XEP-0045 roles and affiliations.
 *
 *   ~ q founder/owner  → moderator / owner
 *   & a admin/protect  → moderator / admin
 *   @ o operator       → moderator / admin
 *   % h half-operator  → moderator / member
 *   + v voice          → participant / member
 *   (none)             → participant / none; visitor in a moderated (+m) channel
 *
 * The highest prefix wins (with multi-prefix a member may hold several). Prefix modes a network
 * adds beyond these are ranked by their position in ISUPPORT PREFIX: above "o" like an operator,
 * below it like voice.
 */
import type { OccupantAffiliation, OccupantRole } from '../kit/adapter.js';

export interface PrefixMode {
  symbol: string;
  mode: string;
}

/** RFC 2812 / most networks, used until ISUPPORT PREFIX says otherwise. */
export const DEFAULT_PREFIXES: PrefixMode[] = [
  { symbol: '~', mode: 'q' },
  { symbol: '&', mode: 'a' },
  { symbol: '@', mode: 'o' },
  { symbol: '%', mode: 'h' },
  { symbol: '+', mode: 'v' },
];

const KNOWN: Record<string, { role: OccupantRole; affiliation: OccupantAffiliation }> = {
  q: { role: 'moderator', affiliation: 'owner' },
  a: { role: 'moderator', affiliation: 'admin' },
  o: { role: 'moderator', affiliation: 'admin' },
  h: { role: 'moderator', affiliation: 'member' },
  v: { role: 'participant', affiliation: 'member' },
};

export function roleFor(
  modes: Iterable<string>,
  prefixes: PrefixMode[],
  moderated: boolean,
): { role: OccupantRole; affiliation: OccupantAffiliation } {
  // prefixes are ordered from highest to lowest rank
  const held = new Set(modes);
  const opRank = prefixes.findIndex((p) => p.mode === 'o');
  for (let i = 0; i < prefixes.length; i++) {
    const m = prefixes[i]!.mode;
    if (!held.has(m)) continue;
    const known = KNOWN[m];
    if (known) return known;
    return opRank === -1 || i < opRank ? { role: 'moderator', affiliation: 'admin' } : { role: 'participant', affiliation: 'member' };
  }
  return { role: moderated ? 'visitor' : 'participant', affiliation: 'none' };
}
