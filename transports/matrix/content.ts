/**
 * Matrix event content ↔ the kit's TextMessage, without any I/O (spec v1.11, "Instant
 * Messaging", "Event replacements", "Rich replies", "Reactions" modules).
 *
 * Incoming: m.text / m.notice / m.emote become text, notice and action messages; m.image, m.file,
 * m.video, m.audio and m.sticker become their caption or file name plus an HTTP link (XEP-0066
 * attachment) to the homeserver's media download URL (mediaOf() tells the session what to re-host
 * on the XMPP server instead: that link needs no token only on homeservers that still serve
 * unauthenticated media); m.location becomes its geo: URI. An
 * m.replace relation makes an edit (`editOf`, text from m.new_content), m.in_reply_to a reply
 * (`replyTo`, with the reply fallback quoted at the top of older clients' bodies removed).
 *
 * Outgoing: the reverse; an edit carries "* text" as the fallback body and the new content in
 * m.new_content, a reply only the relation (reply fallbacks were removed from the spec in v1.13),
 * attachments are appended to the text as links (XMPP clients send media as URLs); a file on the
 * user's XMPP server is uploaded to the homeserver and sent as m.image / m.video / m.audio / m.file
 * (fileContent()).
 */
import type { TextMessage } from '../kit/adapter.js';
import { encryptedFileInfo, type EncryptedFileInfo } from './attachments.js';

type Json = Record<string, unknown>;

/** The notice text for encrypted events the gateway cannot decrypt (no room key arrived in time, a broken event, or no crypto). */
export const UNDECRYPTABLE_TEXT = '[encrypted message that the gateway cannot decrypt]';

const MEDIA_TYPES = new Set(['m.image', 'm.file', 'm.video', 'm.audio']);

/** `mxc://server/id` → [server, id], or null if it is not a valid content URI. */
export function parseMxc(uri: unknown): [string, string] | null {
  if (typeof uri !== 'string') return null;
  const m = /^mxc:\/\/([A-Za-z0-9.\-:[\]]+)\/([A-Za-z0-9_-]+)$/.exec(uri);
  return m ? [m[1]!, m[2]!] : null;
}

/**
 * The HTTP URL of a content URI on the homeserver. The legacy (unauthenticated) download path is
 * used because XMPP clients fetch the link without the user's Matrix token; the file name is
 * appended so that clients show and save it under its name.
 */
export function mediaUrl(homeserver: string, mxc: unknown, filename?: unknown): string | null {
  const parts = parseMxc(mxc);
  if (!parts) return null;
  const base = homeserver.replace(/\/+$/, '');
  const name = typeof filename === 'string' && filename && !filename.includes('/') ? `/${encodeURIComponent(filename)}` : '';
  return `${base}/_matrix/media/v3/download/${encodeURIComponent(parts[0])}/${encodeURIComponent(parts[1])}${name}`;
}

/** The authenticated download URL (client-server API v1.11) of a content URI. */
export function authenticatedMediaUrl(homeserver: string, server: string, mediaId: string): string {
  return `${homeserver.replace(/\/+$/, '')}/_matrix/client/v1/media/download/${encodeURIComponent(server)}/${encodeURIComponent(mediaId)}`;
}

/** A media event's file, to re-host: where it is, what it is, and the caption if the body is one. */
export interface MatrixFile {
  server: string;
  mediaId: string;
  name: string;
  type?: string;
  size?: number;
  caption: string | null;
  /** An encrypted attachment (encrypted rooms): the key, IV and hash to decrypt and check it. */
  encrypted?: EncryptedFileInfo;
}

/** The file of an m.image / m.file / m.video / m.audio / m.sticker content (`url`, or `file` when encrypted), or null. */
export function mediaOf(content: Json, eventType: string): MatrixFile | null {
  const relates = content['m.relates_to'] as Json | undefined;
  if (relates?.rel_type === 'm.replace') return null;
  const msgtype = eventType === 'm.sticker' ? 'm.sticker' : str(content.msgtype);
  if (!msgtype || !(MEDIA_TYPES.has(msgtype) || msgtype === 'm.sticker')) return null;
  const encrypted = content.url === undefined ? encryptedFileInfo(content.file) : null;
  const parts = parseMxc(encrypted ? encrypted.url : content.url);
  if (!parts) return null;
  const body = str(content.body) ?? '';
  const filename = str(content.filename);
  const info = (content.info ?? {}) as Json;
  // Spec v1.10: with a `filename` different from it, the body is a caption.
  const caption = filename !== undefined && filename !== body && body !== '' ? body : null;
  const out: MatrixFile = { server: parts[0], mediaId: parts[1], name: filename ?? (body || 'file'), caption, ...(encrypted ? { encrypted: encrypted.info } : {}) };
  if (typeof info.mimetype === 'string') out.type = info.mimetype;
  if (typeof info.size === 'number' && Number.isSafeInteger(info.size) && info.size >= 0) out.size = info.size;
  return out;
}

/** The content of a file message for an uploaded file (m.image, m.video, m.audio by type, else m.file). */
export function fileContent(mxc: string, file: { name: string; type: string; size: number }): Json {
  const major = file.type.split('/')[0];
  const msgtype = major === 'image' ? 'm.image' : major === 'video' ? 'm.video' : major === 'audio' ? 'm.audio' : 'm.file';
  return { msgtype, body: file.name, filename: file.name, url: mxc, info: { size: file.size, mimetype: file.type } };
}

/** Removes the "> <@user:server> quoted text" lines older clients put above a reply. */
export function stripReplyFallback(body: string): string {
  const lines = body.split('\n');
  let i = 0;
  while (i < lines.length && lines[i]!.startsWith('>')) i++;
  if (i === 0) return body;
  if (i < lines.length && lines[i] === '') i++;
  return lines.slice(i).join('\n');
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

/**
 * A message event's content as a TextMessage (without id and timestamp), or null when the content
 * is not a message the kit can show (no body, unknown structure).
 */
export function messageFromContent(content: Json, eventType: string, homeserver: string): TextMessage | null {
  const relates = (content['m.relates_to'] ?? undefined) as Json | undefined;
  let source = content;
  let editOf: string | undefined;
  if (relates && relates.rel_type === 'm.replace' && typeof relates.event_id === 'string') {
    editOf = relates.event_id;
    const fresh = content['m.new_content'];
    if (fresh && typeof fresh === 'object') source = fresh as Json;
  }
  const replyTo = str((relates?.['m.in_reply_to'] as Json | undefined)?.event_id);
  let body = str(source.body);
  if (body === undefined) return null;
  if (replyTo && !editOf) body = stripReplyFallback(body);
  const msgtype = eventType === 'm.sticker' ? 'm.sticker' : str(source.msgtype) ?? 'm.text';
  const msg: TextMessage = { text: body };
  if (msgtype === 'm.emote') msg.action = true;
  else if (msgtype === 'm.notice') msg.notice = true;
  else if (MEDIA_TYPES.has(msgtype) || msgtype === 'm.sticker') {
    const filename = str(source.filename) ?? body;
    const url = mediaUrl(homeserver, source.url, filename);
    if (url) msg.attachments = [url];
    else if (source.file && typeof source.file === 'object') msg.text = `${body} [encrypted file that the gateway cannot decrypt]`;
  } else if (msgtype === 'm.location') {
    const geo = str(source.geo_uri);
    if (geo && !body.includes(geo)) msg.text = `${body} (${geo})`;
  }
  if (replyTo) msg.replyTo = replyTo;
  if (editOf) msg.editOf = editOf;
  return msg;
}

/** The body text to send for a message: its text, with attachment links the text does not already hold. */
export function outgoingBody(msg: TextMessage): string {
  let text = msg.text;
  for (const url of msg.attachments ?? []) {
    if (!text.includes(url)) text = text ? `${text}\n${url}` : url;
  }
  return text;
}

/**
 * The content of an m.room.message for a TextMessage. `editOf` and `replyTo` must already be
 * Matrix event IDs.
 */
export function contentFromMessage(msg: TextMessage, ids: { editOf?: string; replyTo?: string } = {}): Json {
  const msgtype = msg.action ? 'm.emote' : msg.notice ? 'm.notice' : 'm.text';
  const body = outgoingBody(msg);
  if (ids.editOf) {
    return {
      msgtype,
      body: `* ${body}`,
      'm.new_content': { msgtype, body },
      'm.relates_to': { rel_type: 'm.replace', event_id: ids.editOf },
    };
  }
  const content: Json = { msgtype, body };
  if (ids.replyTo) content['m.relates_to'] = { 'm.in_reply_to': { event_id: ids.replyTo } };
  return content;
}

/** Keys of an m.annotation reaction content, or null. */
export function reactionOf(content: Json): { to: string; key: string } | null {
  const rel = content['m.relates_to'] as Json | undefined;
  if (!rel || rel.rel_type !== 'm.annotation') return null;
  const to = str(rel.event_id);
  const key = str(rel.key);
  return to && key ? { to, key } : null;
}

/** A poll (m.poll.start, MSC3381) as text: the question and its answers. */
export function pollText(content: Json): string | null {
  const poll = (content['m.poll'] ?? content['org.matrix.msc3381.poll.start']) as Json | undefined;
  if (!poll || typeof poll !== 'object') return null;
  const textOf = (v: unknown): string | undefined => {
    if (typeof v === 'string') return v;
    if (!v || typeof v !== 'object') return undefined;
    const o = v as Json;
    const direct = str(o.body) ?? str(o['org.matrix.msc1767.text']) ?? str(o['m.text']);
    if (direct) return direct;
    const list = (o['m.text'] ?? o['org.matrix.msc1767.text']) as unknown;
    if (Array.isArray(list)) for (const item of list) if (item && typeof item === 'object' && typeof (item as Json).body === 'string') return (item as Json).body as string;
    return undefined;
  };
  const question = textOf(poll.question);
  if (!question) return null;
  const answers = Array.isArray(poll.answers) ? (poll.answers as unknown[]).map(textOf).filter((a): a is string => !!a) : [];
  return `[poll] ${question}${answers.length ? `\n${answers.map((a, i) => `${i + 1}. ${a}`).join('\n')}` : ''}`;
}
