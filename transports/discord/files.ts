/**
 * Files users send from XMPP, as Discord attachments. A message whose body is just an upload URL
 * with the same URL as XEP-0066 OOB (how clients send a file) is a file message: the file is
 * fetched from the user's own XMPP server through the kit (MediaHost.fetch, which fetches nothing
 * else), held in memory (discord.js sends `files[n]` from a Buffer) and posted as a multipart
 * message. Whatever stops that leaves the message as it is today, the link, and says why in a
 * notice to the user (SendReport). Nothing is stored; the bytes are dropped once posted.
 *
 * The limit is Discord's for bots (10 MiB by default, more in boosted servers: `maxFileSize`)
 * and the kit's `media.maxSize`; files are fetched a few at a time for the whole transport.
 */
import type { Readable } from 'node:stream';
import { DiscordAPIError, type RawFile } from 'discord.js';
import type { MediaHost, TextMessage } from '../kit/adapter.js';
import { MediaTooLargeError } from '../kit/media.js';
import { formatBytes } from '../../shared/format.js';

/** Files held in memory at once, across all sessions of the transport; more wait their turn. */
const FILES_AT_ONCE = 4;

/** Takes turns: at most `size` holders at once. */
export class Turns {
  private busy = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(private readonly size: number = FILES_AT_ONCE) {}

  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.busy >= this.size) await new Promise<void>((resolve) => this.waiting.push(resolve));
    else this.busy++;
    try {
      return await fn();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.busy--;
    }
  }
}

/** The URL of a file message (body = the one OOB URL), or null for any other message. */
export function fileUrlOf(message: TextMessage): string | null {
  const urls = message.attachments ?? [];
  if (urls.length !== 1 || message.editOf || message.action || message.redacts || message.reactions) return null;
  const url = urls[0]!;
  return message.text.trim() === url ? url : null;
}

export type FileOutcome = { file: RawFile } | { notice: string };

export interface FileSource {
  media: MediaHost | undefined;
  /** Discord's limit for the bot (network.maxFileSize). */
  maxBytes: number;
  turns: Turns;
}

/**
 * The notice for a file that went to Discord as a link, naming it when its name is known (upload
 * URLs carry no name: it comes with the file, from Content-Disposition).
 */
export function linkNotice(name: string | null, why: string): string {
  return `${name ? `${[...name].slice(0, 80).join('')}` : 'Your file'} went to Discord as a link: ${why}.`;
}

/**
 * Fetches the file of a file message for Discord, or says why it stays a link. Rejects never;
 * `onFailure` hears the reason of a failed fetch (for the log: no URL, no name).
 */
export async function fetchFile(src: FileSource, url: string, onFailure: (reason: string) => void): Promise<FileOutcome> {
  const { media } = src;
  if (!media || media.enabled === false) return { notice: linkNotice(null, 'this gateway passes on no files') };
  if (!media.fetchable(url)) return { notice: linkNotice(null, 'the gateway passes on files from your own server only') };
  const limit = Math.min(src.maxBytes, media.maxSize);
  const tooLarge = (name: string | null) => ({ notice: linkNotice(name, `it is larger than the ${formatBytes(limit)} the gateway sends to Discord`) });
  return src.turns.run(async () => {
    let fetched: Awaited<ReturnType<MediaHost['fetch']>>;
    try {
      fetched = await media.fetch(url);
    } catch (err) {
      if (err instanceof MediaTooLargeError) return tooLarge(null);
      const reason = err instanceof Error ? err.message : String(err);
      onFailure(reason);
      return { notice: linkNotice(null, `the gateway could not fetch it (${reason})`) };
    }
    if (fetched.size > limit) {
      fetched.cancel();
      return tooLarge(fetched.name);
    }
    try {
      const data = await readAll(fetched.stream as Readable, fetched.size);
      return { file: { name: discordName(fetched.name), data, contentType: fetched.type } };
    } catch (err) {
      fetched.cancel();
      const reason = err instanceof Error ? err.message : String(err);
      onFailure(reason);
      return { notice: linkNotice(fetched.name, `the gateway could not fetch it (${reason})`) };
    }
  });
}

/** Exactly `size` bytes of the stream (the kit's fetch stops a longer one). */
async function readAll(stream: Readable, size: number): Promise<Buffer> {
  const data = Buffer.allocUnsafe(size);
  let at = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    if (at + chunk.length > size) throw new Error('the file is longer than announced');
    chunk.copy(data, at);
    at += chunk.length;
  }
  if (at !== size) throw new Error('the file ended early');
  return data;
}

/** A file name Discord keeps: no path, no control characters or quotes, at most 200 characters. */
function discordName(name: string): string {
  const clean = name.replace(/[\x00-\x1f\x7f"\\/]/g, '_').trim();
  return clean ? [...clean].slice(0, 200).join('') : 'file';
}

/**
 * Whether Discord refused the attachment rather than the message (too large for the channel,
 * no Attach Files permission): the message then goes as a link, with this notice.
 */
export function refusedAttachment(err: unknown, file: RawFile): string | null {
  if (!(err instanceof DiscordAPIError)) return null;
  if (err.code === 40005 || err.status === 413) return linkNotice(file.name, 'Discord refused it as too large for this channel');
  if (err.code === 50013) return linkNotice(file.name, 'the bot may not attach files here (Attach Files permission)');
  return null;
}
