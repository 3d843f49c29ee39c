/**
 * Files users send from XMPP (a message that is just an upload URL, with the same URL as XEP-0066
 * OOB), fetched for a network that takes files: the checks and the fetch every transport makes, and
 * the words of the notice (SendReport) that tells the user when the file went as a plain link
 * instead, and why. The transports add their own reasons (the network refused the file) with
 * fileLinkNotice, so that the user reads the same sentence from every network.
 */
import type { FetchedMedia, MediaHost } from './adapter.js';
import { MediaTooLargeError } from './media.js';
import { formatBytes } from '../../shared/format.js';

/**
 * "report.pdf went to Matrix as a link: why." Names the file when its name is known (upload URLs
 * carry none: it comes with the file, from Content-Disposition).
 */
export function fileLinkNotice(network: string, name: string | null, why: string): string {
  return `${name ? [...name].slice(0, 80).join('') : 'Your file'} went to ${network} as a link: ${why}.`;
}

export interface OutgoingFileOptions {
  /** The network's name, as the user knows it (in the notice). */
  network: string;
  /** The network's own limit in bytes, if it has one below `media.maxSize`. */
  maxBytes?: number;
  /** Takes turns with other files (held in memory) for the fetch and `use`; the checks before the fetch do not wait. */
  queue?: <T>(run: () => Promise<T>) => Promise<T>;
  /** Hears why a fetch failed, for the log (the reason names no URL and no file). */
  onFailure(reason: string): void;
}

/**
 * The file at `url` (a file message's upload URL), fetched from the user's own server through the
 * kit and handed to `use`, which reads its stream to the end or cancels it; or the notice saying
 * why it stays a link. Rejects only when `use` does.
 */
export async function withOutgoingFile<R>(media: MediaHost | undefined, url: string, o: OutgoingFileOptions, use: (file: FetchedMedia) => Promise<R>): Promise<R | { notice: string }> {
  const notice = (name: string | null, why: string) => ({ notice: fileLinkNotice(o.network, name, why) });
  if (!media || media.enabled === false) return notice(null, 'this gateway passes on no files');
  if (!media.fetchable(url)) return notice(null, 'the gateway passes on files from your own server only');
  const limit = Math.min(o.maxBytes ?? Infinity, media.maxSize);
  const tooLarge = (name: string | null) => notice(name, `it is larger than the ${formatBytes(limit)} the gateway sends to ${o.network}`);
  const run = async (): Promise<R | { notice: string }> => {
    let fetched: FetchedMedia;
    try {
      fetched = await media.fetch(url);
    } catch (err) {
      if (err instanceof MediaTooLargeError) return tooLarge(null);
      const reason = err instanceof Error ? err.message : String(err);
      o.onFailure(reason);
      return notice(null, `the gateway could not fetch it (${reason})`);
    }
    if (fetched.size > limit) {
      fetched.cancel();
      return tooLarge(fetched.name);
    }
    return use(fetched);
  };
  return o.queue ? o.queue(run) : run();
}
