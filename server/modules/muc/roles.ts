/**
 * Affiliations (long-lived, per bare JID) and roles (per visit, per occupant) of XEP-0045 section 5,
 * and who may change whose (sections 5.1.3, 5.2.2, 9 and 10).
 */
export const NS_MUC = 'http://jabber.org/protocol/muc';
export const NS_MUC_USER = 'http://jabber.org/protocol/muc#user';
export const NS_MUC_ADMIN = 'http://jabber.org/protocol/muc#admin';
export const NS_MUC_OWNER = 'http://jabber.org/protocol/muc#owner';
export const NS_MUC_ROOMCONFIG = 'http://jabber.org/protocol/muc#roomconfig';
export const NS_MUC_ROOMINFO = 'http://jabber.org/protocol/muc#roominfo';
export const NS_MUC_UNIQUE = 'http://jabber.org/protocol/muc#unique';
export const NS_MUC_REQUEST = 'http://jabber.org/protocol/muc#request';
export const NS_STANZA_ID = 'urn:xmpp:sid:0';
export const NS_OCCUPANT_ID = 'urn:xmpp:occupant-id:0';
export const NS_MODERATE = 'urn:xmpp:message-moderate:1';
export const NS_RETRACT = 'urn:xmpp:message-retract:1';
export const NS_CONFERENCE = 'jabber:x:conference';

export const AFFILIATIONS = ['owner', 'admin', 'member', 'none', 'outcast'] as const;
export type Affiliation = (typeof AFFILIATIONS)[number];
export const ROLES = ['moderator', 'participant', 'visitor', 'none'] as const;
export type Role = (typeof ROLES)[number];

export function isAffiliation(v: string | undefined): v is Affiliation {
  return (AFFILIATIONS as readonly string[]).includes(v ?? '');
}

export function isRole(v: string | undefined): v is Role {
  return (ROLES as readonly string[]).includes(v ?? '');
}

const AFF_RANK: Record<Affiliation, number> = { owner: 4, admin: 3, member: 2, none: 1, outcast: 0 };

export function affRank(a: Affiliation): number {
  return AFF_RANK[a];
}

/** The role an occupant gets on entering (5.1.2): owners and admins moderate, visitors in a moderated room without membership. */
export function defaultRole(aff: Affiliation, moderated: boolean): Role {
  if (aff === 'owner' || aff === 'admin') return 'moderator';
  if (moderated && aff === 'none') return 'visitor';
  return 'participant';
}

/**
 * Whether `actor` (an affiliation) may give `target` (its current affiliation) the affiliation
 * `to` (the tables of 5.2.2): owners change anyone's; admins only of those below admin, and only
 * to member, none or outcast.
 */
export function mayChangeAffiliation(actor: Affiliation, target: Affiliation, to: Affiliation): boolean {
  if (actor === 'owner') return true;
  if (actor !== 'admin') return false;
  return affRank(target) < AFF_RANK.admin && affRank(to) < AFF_RANK.admin;
}

/**
 * Whether an occupant with `actorRole`/`actorAff` may give an occupant with `targetRole`/`targetAff`
 * the role `to` (5.1.3): moderators kick and grant or revoke voice of those below admin; granting
 * or revoking moderator is for admins and owners; nobody changes the role of someone with a higher
 * affiliation, and an admin's or owner's role is theirs (not-allowed).
 */
export function mayChangeRole(actorRole: Role, actorAff: Affiliation, targetAff: Affiliation, targetRole: Role, to: Role): boolean {
  if (actorRole !== 'moderator') return false;
  if (affRank(targetAff) > affRank(actorAff)) return false;
  if (targetAff === 'owner' || targetAff === 'admin') return false;
  if ((to === 'moderator' || targetRole === 'moderator') && affRank(actorAff) < AFF_RANK.admin) return false;
  return true;
}
