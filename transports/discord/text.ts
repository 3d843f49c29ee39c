/**
 * Text between XMPP and Discord.
 *
 * Incoming: Discord's markup for mentions and friends becomes readable text: `<@id>`/`<@!id>`
 * → `@Name` (the occupant's nick in a room, so XMPP clients highlight it), `<@&id>` → `@Role`,
 * `<#id>` → `#channel`, custom emoji `<:name:id>`/`<a:name:id>` → `:name:`, timestamps
 * `<t:unix:style>` → `2024-05-01 12:00 UTC`, slash-command mentions `</name:id>` → `/name`.
 *
 * Outgoing: `@Nick` (and a leading `Nick: ` / `Nick, ` as XMPP clients write when addressing
 * someone) becomes `<@id>` when exactly one occupant has that nick; `#channel` becomes `<#id>` when
 * exactly one text channel of the guild has that name. Longest names win ("@Ann Lee" before "@Ann").
 * Nothing inside `code` or ```code blocks``` is touched.
 *
 * Discord allows 2000 characters per message; longer text is split at line breaks or spaces.
 */

export const MESSAGE_LIMIT = 2000;

export interface MentionNames {
  user(id: string): string | null;
  role(id: string): string | null;
  channel(id: string): string | null;
}

/** Control characters other than tab and newline, U+FFFE/U+FFFF and lone surrogates never reach the kit. */
export function sanitize(text: string): string {
  return text.replace(/\r\n?/g, '\n').replace(/[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]|[\ud800-\udbff](?![\udc00-\udfff])|(?<![\ud800-\udbff])[\udc00-\udfff]/g, '');
}

/** Applies `fn` to the parts of `text` outside inline code and code blocks. */
function outsideCode(text: string, fn: (s: string, atStart: boolean) => string): string {
  const parts = text.split(/(```[\s\S]*?```|`[^`\n]+`)/);
  return parts.map((p, i) => (i % 2 === 1 ? p : fn(p, i === 0))).join('');
}

function formatTimestamp(unix: number, style: string | undefined): string {
  const d = new Date(unix * 1000);
  if (Number.isNaN(d.getTime())) return String(unix);
  const iso = d.toISOString();
  const date = iso.slice(0, 10);
  const time = iso.slice(11, 16);
  switch (style) {
    case 't':
    case 'T':
      return `${time} UTC`;
    case 'd':
    case 'D':
      return date;
    default:
      return `${date} ${time} UTC`;
  }
}

/** Discord markup → plain text for XMPP. */
export function fromDiscordMarkup(content: string, names: MentionNames): string {
  return outsideCode(sanitize(content), (s) =>
    s
      .replace(/<@!?(\d{5,25})>/g, (_, id: string) => `@${names.user(id) ?? 'unknown-user'}`)
      .replace(/<@&(\d{5,25})>/g, (_, id: string) => `@${names.role(id) ?? 'unknown-role'}`)
      .replace(/<#(\d{5,25})>/g, (_, id: string) => `#${names.channel(id) ?? 'unknown-channel'}`)
      .replace(/<a?:([\w~-]{1,32}):\d{5,25}>/g, ':$1:')
      .replace(/<t:(-?\d{1,13})(?::([tTdDfFR]))?>/g, (_, n: string, style: string | undefined) => formatTimestamp(Number(n), style))
      .replace(/<\/([\w -]{1,100}):\d{5,25}>/g, '/$1'),
  );
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

export interface MentionTargets {
  /** [nick, user id] of everyone who may be mentioned (room occupants). */
  users: [string, string][];
  /** [name, channel id] of the guild's text channels. */
  channels: [string, string][];
}

/** Only names that identify exactly one target. */
function unambiguous(pairs: [string, string][]): Map<string, string> {
  const seen = new Map<string, string | null>();
  for (const [name, id] of pairs) {
    if (!name) continue;
    const prev = seen.get(name);
    seen.set(name, prev === undefined || prev === id ? id : null);
  }
  return new Map([...seen].filter((e): e is [string, string] => e[1] !== null));
}

/** Plain text from XMPP → Discord markup with mentions. */
export function toDiscordMarkup(text: string, targets: MentionTargets): string {
  const users = unambiguous(targets.users);
  const channels = unambiguous(targets.channels);
  const userNames = [...users.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
  const channelNames = [...channels.keys()].sort((a, b) => b.length - a.length).map(escapeRegExp);
  const userRe = userNames.length ? new RegExp(`(^|[^\\w@<])@(${userNames.join('|')})(?![\\w])`, 'g') : null;
  const leadRe = userNames.length ? new RegExp(`^(${userNames.join('|')})([:,] )`) : null;
  const channelRe = channelNames.length ? new RegExp(`(^|[^\\w#<&])#(${channelNames.join('|')})(?![\\w-])`, 'g') : null;
  return outsideCode(text, (s, atStart) => {
    let out = s;
    if (atStart && leadRe) out = out.replace(leadRe, (_, nick: string, sep: string) => `<@${users.get(nick)}>${sep}`);
    if (userRe) out = out.replace(userRe, (_, pre: string, nick: string) => `${pre}<@${users.get(nick)}>`);
    if (channelRe) out = out.replace(channelRe, (_, pre: string, name: string) => `${pre}<#${channels.get(name)}>`);
    return out;
  });
}

/**
 * Splits text into pieces of at most `limit` UTF-16 units, preferring line breaks, then spaces;
 * never inside a surrogate pair. Empty text gives no pieces.
 */
export function splitMessage(text: string, limit = MESSAGE_LIMIT): string[] {
  const out: string[] = [];
  let rest = text;
  while (rest.length > limit) {
    let cut = rest.lastIndexOf('\n', limit);
    if (cut < limit / 2) cut = rest.lastIndexOf(' ', limit);
    if (cut < limit / 2) {
      cut = limit;
      const code = rest.charCodeAt(cut - 1);
      if (code >= 0xd800 && code <= 0xdbff) cut--;
    }
    out.push(rest.slice(0, cut));
    rest = rest.slice(cut).replace(/^[ \n]/, '');
  }
  if (rest) out.push(rest);
  return out;
}

/** The text of a nick: no control characters, no line breaks, trimmed; MUC nicks cannot be empty. */
export function cleanNick(name: string | null | undefined): string {
  return sanitize(name ?? '')
    .replace(/[\n\t]+/g, ' ')
    .trim();
}
