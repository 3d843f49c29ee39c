/**
 * XEP-0106 (JID Escaping 1.1): legacy ids that contain characters a JID localpart may not
 * (space " & ' / : < > @) become `\hh` sequences, and so does the escaping character itself,
 * exactly as the XEP's tables and examples show (`c:\net` → `c\3a\5cnet`). Unescaping turns only
 * the ten defined sequences back (`\2plus` and `foo\bar` stay as they are).
 *
 * A localpart may not begin or end with `\20` (XEP-0106 §4, business rule 6), so an id with a
 * leading or trailing space cannot be mapped: escapeLocal returns null for it, as for the empty id.
 */

const ESCAPES: Readonly<Record<string, string>> = {
  ' ': '\\20',
  '"': '\\22',
  '&': '\\26',
  "'": '\\27',
  '/': '\\2f',
  ':': '\\3a',
  '<': '\\3c',
  '>': '\\3e',
  '@': '\\40',
  '\\': '\\5c',
};

const UNESCAPES: Readonly<Record<string, string>> = Object.fromEntries(Object.entries(ESCAPES).map(([c, e]) => [e.slice(1), c]));

/** The escaped localpart for a legacy id, or null if the id cannot be one (empty, leading/trailing space). */
export function escapeLocal(id: string): string | null {
  if (id === '' || id.startsWith(' ') || id.endsWith(' ')) return null;
  let out = '';
  for (const ch of id) out += ESCAPES[ch] ?? ch;
  return out;
}

/** The legacy id for an escaped localpart; sequences that are not one of the ten are kept. */
export function unescapeLocal(local: string): string {
  // Case is significant (XEP-0106 §3): only the lower-case forms are escapes.
  return local.replace(/\\(20|22|26|27|2f|3a|3c|3e|40|5c)/g, (whole, hex: string) => UNESCAPES[hex] ?? whole);
}
