/**
 * Text handling between IRC lines and XMPP bodies: formatting codes out, control characters out,
 * long messages split at IRC's 512-byte line limit on UTF-8 (and grapheme) boundaries.
 */

/**
 * Removes mIRC/IRCv3 formatting: bold \x02, colour \x03[fg[,bg]] (1-2 digits each), hex colour
 * \x04[RRGGBB[,RRGGBB]], reset \x0f, reverse \x16, italic \x1d, underline \x1f, strikethrough \x1e,
 * monospace \x11, and then every other C0 control character except tab and newline (XML 1.0 cannot
 * carry them anyway).
 */
export function stripFormatting(text: string): string {
  return text
    .replace(/\x03(?:\d{1,2}(?:,\d{1,2})?)?/g, '')
    .replace(/\x04(?:[0-9a-fA-F]{6}(?:,[0-9a-fA-F]{6})?)?/g, '')
    .replace(/[\x00-\x08\x0b-\x1f\x7f\ufffe\uffff]/g, '')
    .replace(/[\ud800-\udfff]/g, (c, i: number, s: string) => {
      // Lone surrogates (from broken input) cannot be encoded in XML; paired ones stay.
      const code = c.charCodeAt(0);
      if (code <= 0xdbff) {
        const next = s.charCodeAt(i + 1);
        return next >= 0xdc00 && next <= 0xdfff ? c : '\ufffd';
      }
      const prev = s.charCodeAt(i - 1);
      return prev >= 0xd800 && prev <= 0xdbff ? c : '\ufffd';
    });
}

/** Characters that must never reach the IRC wire from a user's text: line breaks end the command, NUL and \x01 (CTCP) are injection. */
export function sanitizeOutgoing(text: string): string {
  return text.replace(/[\x00\x01]/g, '');
}

const encoder = new TextEncoder();

export function utf8Length(s: string): number {
  return encoder.encode(s).length;
}

const graphemes = new Intl.Segmenter(undefined, { granularity: 'grapheme' });

/**
 * Splits one line of text (no line breaks) into chunks of at most maxBytes UTF-8 bytes. Breaks at
 * the last space that fits when there is one in the second half of the chunk, else at a grapheme
 * boundary (never inside a UTF-8 sequence, a surrogate pair or a combining sequence; a single
 * grapheme longer than maxBytes is cut at code points).
 */
export function splitLine(line: string, maxBytes: number): string[] {
  if (maxBytes < 4) throw new RangeError('maxBytes too small');
  if (utf8Length(line) <= maxBytes) return line.length ? [line] : [];
  const chunks: string[] = [];
  let rest = line;
  while (rest.length) {
    if (utf8Length(rest) <= maxBytes) {
      chunks.push(rest);
      break;
    }
    // The longest prefix of whole graphemes that fits.
    let end = 0;
    let bytes = 0;
    for (const { segment, index } of graphemes.segment(rest)) {
      const b = utf8Length(segment);
      if (bytes + b > maxBytes) {
        if (end === 0) end = cutCodePoints(segment, maxBytes) + index; // one huge grapheme
        break;
      }
      bytes += b;
      end = index + segment.length;
    }
    const window = rest.slice(0, end);
    const space = window.lastIndexOf(' ');
    if (space > 0 && utf8Length(window.slice(0, space)) >= maxBytes / 2) {
      chunks.push(window.slice(0, space));
      rest = rest.slice(space + 1);
    } else {
      chunks.push(window);
      rest = rest.slice(end);
    }
  }
  return chunks.filter((c) => c.length > 0);
}

/** Length (UTF-16 units) of the longest prefix of s that fits maxBytes on whole code points. */
function cutCodePoints(s: string, maxBytes: number): number {
  let bytes = 0;
  let i = 0;
  for (const cp of s) {
    const b = utf8Length(cp);
    if (bytes + b > maxBytes) break;
    bytes += b;
    i += cp.length;
  }
  return Math.max(i, 1);
}

/** Splits a message into IRC-sized chunks: one or more per line, empty lines dropped. */
export function splitMessage(text: string, maxBytes: number): string[] {
  return text
    .split(/\r\n|\r|\n/)
    .flatMap((line) => splitLine(line.replace(/\s+$/, ''), maxBytes));
}

const utf8Strict = new TextDecoder('utf-8', { fatal: true });

/** Windows-1252 0x80–0x9F (undefined positions stay as their Latin-1 control code). */
const CP1252_HIGH = '\u20ac\x81\u201a\u0192\u201e\u2026\u2020\u2021\u02c6\u2030\u0160\u2039\u0152\x8d\u017d\x8f\x90\u2018\u2019\u201c\u201d\u2022\u2013\u2014\u02dc\u2122\u0161\u203a\u0153\x9d\u017e\u0178';

/** Decodes one received line: UTF-8 when valid, else Windows-1252 (Latin-1 clients still exist). */
export function decodeLine(bytes: Uint8Array): string {
  try {
    return utf8Strict.decode(bytes);
  } catch {
    let out = '';
    for (const b of bytes) out += b >= 0x80 && b <= 0x9f ? CP1252_HIGH[b - 0x80] : String.fromCharCode(b);
    return out;
  }
}
