/**
 * What a user does with an IRC server beyond channels and messages, on top of channels.ts: the
 * channel list (LIST, for disco#items on the server JID) and raw commands (a message to the
 * server JID is sent as a line of IRC, Biboumi's way; numeric replies for a while afterwards come
 * back as server messages, connection.ts). session.ts builds on it.
 */
import type { DirectoryItem, DirectoryListing, DirectoryRequest } from '../kit/adapter.js';
import { IrcChannels } from './channels.js';
import { IrcCommandError } from './errors.js';
import type { Waiter } from './link.js';
import { stripFormatting } from './text.js';
import { rawLineProblem } from './settings.js';

/** How long numeric replies count as the answer to a raw command. */
const RAW_REPLY_WINDOW_MS = 10_000;

export abstract class IrcCommands extends IrcChannels {
  private listing: Promise<DirectoryListing> | null = null;

  /** LIST: the server's channels, at most `max` (the rest of the list is read and dropped); no nodes. */
  async roomDirectory({ node, max }: DirectoryRequest): Promise<DirectoryListing | null> {
    if (node !== null) return null;
    this.ensureReady();
    this.listing ??= this.list(max).finally(() => (this.listing = null));
    return this.listing;
  }

  private list(max: number): Promise<DirectoryListing> {
    const rooms: DirectoryItem[] = [];
    let complete = true;
    return new Promise((resolve, reject) => {
      const waiter: Waiter = {
        match: (m) => {
          if (m.command === '322') {
            const [, channel, users, topic] = m.params;
            if (!channel || channel === '*') return undefined;
            if (rooms.length >= max) complete = false;
            else {
              const listed: DirectoryItem = { room: { id: channel, server: this.server } };
              const n = Number(users);
              if (Number.isInteger(n) && n >= 0) listed.members = n;
              const t = stripFormatting(topic ?? '').trim();
              if (t) listed.topic = t;
              rooms.push(listed);
            }
            return undefined;
          }
          if (m.command === '323') return true;
          if (m.command === '416' || m.command === '481') return new IrcCommandError(`${this.server} refused the channel list: ${stripFormatting(m.params[m.params.length - 1] ?? '')}`, 'forbidden');
          return undefined;
        },
        settle: (err) => {
          this.waiters.delete(waiter);
          this.clearTimer(waiter.timer);
          if (err) reject(err);
          else resolve({ items: rooms, complete });
        },
        timer: null,
      };
      this.waiters.add(waiter);
      // A large network's list takes a while to arrive: four times the usual command timeout.
      waiter.timer = this.timer(() => waiter.settle(new IrcCommandError(`${this.server} did not finish the channel list`, 'remote-server-timeout')), this.opts.commandTimeoutMs * 4);
      this.queue.send('LIST').catch((err: Error) => waiter.settle(err));
    });
  }

  /** A line typed by the user, sent as it is (through flood control); its numeric replies come back as server messages. */
  async sendRaw(line: string): Promise<void> {
    this.ensureReady();
    const text = line.replace(/^\s+/, '').replace(/\s+$/, '');
    if (!text) return;
    const problem = rawLineProblem(text, this.opts.lineLimit - 2);
    if (problem) throw new IrcCommandError(problem, 'not-acceptable');
    this.rawRepliesUntil = Date.now() + RAW_REPLY_WINDOW_MS;
    await this.queue.send(text);
  }
}
