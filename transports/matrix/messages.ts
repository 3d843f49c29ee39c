/**
 * Matrix messages both ways: m.room.message and stickers (media re-hosted on the XMPP server's
 * upload service, or as links without one; see content.ts), edits,
 * redactions, reactions (always the sender's whole set), replies, typing and read receipts, in
 * rooms and direct chats.
 *
 * End-to-end encryption (crypto.ts sets up the Rust crypto): m.room.encrypted events are decrypted
 * and handled as what they carry (the relation stays in the clear part, as the spec has it);
 * encrypted attachments are downloaded, decrypted and checked against their hash on the way to the
 * upload service (attachments.ts). An event whose room key has not arrived yet waits for it (the
 * Rust crypto decrypts it again when keys arrive, and it is delivered then, with its time) for
 * `undecryptableTimeoutMs`, then becomes the notice UNDECRYPTABLE_TEXT. Sending into an encrypted
 * room encrypts (the SDK shares the room key with the members' devices; files are encrypted before
 * they are uploaded); without a working crypto it is refused (not-acceptable), never sent in clear.
 */
import * as sdk from 'matrix-js-sdk';
import type { Readable } from 'node:stream';
import { type FetchedMedia, type LegacyContact, type LegacyRoom, type SendReport, type TextMessage } from '../kit/adapter.js';
import { httpRequest } from '../kit/media.js';
import { fileLinkNotice, withOutgoingFile } from '../kit/outgoing-files.js';
import { formatBytes } from '../../shared/format.js';
import {
  authenticatedMediaUrl,
  contentFromMessage,
  fileContent,
  mediaOf,
  messageFromContent,
  parseMxc,
  pollText,
  reactionOf,
  UNDECRYPTABLE_TEXT,
  type MatrixFile,
} from './content.js';
import { MatrixCommandError, commandError, describe } from './errors.js';
import { Encrypting, decryptingStream } from './attachments.js';
import { MatrixRooms } from './rooms.js';
import { BoundedMap, TIMELINE_KEEP } from './sdk.js';

type Json = Record<string, unknown>;

/** The longest one decryption may hold up the session's events. */
const DECRYPT_WAIT_MS = 10_000;

/** Decryption failures that keys arriving later (to-device, key backup) can still resolve. */
const WAIT_FOR_KEYS = new Set([
  'MEGOLM_UNKNOWN_INBOUND_SESSION_ID',
  'OLM_UNKNOWN_MESSAGE_INDEX',
  'HISTORICAL_MESSAGE_NO_KEY_BACKUP',
  'HISTORICAL_MESSAGE_BACKUP_UNCONFIGURED',
  'HISTORICAL_MESSAGE_WORKING_BACKUP',
  // Withheld from this device while it is not verified: the recovery key (key backup) brings it (trust.ts).
  'MEGOLM_KEY_WITHHELD_FOR_UNVERIFIED_DEVICE',
]);

export abstract class MatrixMessages extends MatrixRooms {
  /** Reaction event ID → what it reacted to (to turn the redaction of a reaction into a new reaction set). */
  private readonly reactionIndex = new BoundedMap<string, { roomId: string; to: string; sender: string; key: string }>(5000);
  /** Events delivered by the catch-up after a resume (the live sync may bring them again). */
  protected readonly caughtUp = new Set<string>();
  /** When each user last sent a message in a room (typing stop after a message is 'active'). */
  private readonly lastMessage = new BoundedMap<string, number>(2000);
  protected readonly typingSince = new BoundedMap<string, number>(2000);
  private readonly sinceTrim = new Map<string, number>();
  /** Encrypted events waiting for their room key (event ID → stop waiting). */
  private readonly awaitingKeys = new Map<string, () => void>();
  /** Encrypted events given up on (delivered as the undecryptable notice). */
  private readonly gaveUp = new BoundedMap<string, true>(2000);

  /** Runs a task in the session's event order (session.ts). */
  protected abstract later(task: () => unknown): void;

  protected async onRoomEvent(ev: sdk.MatrixEvent, room: sdk.Room, catchUp: boolean): Promise<void> {
    const id = ev.getId();
    if (!catchUp && id && this.caughtUp.has(id)) return;
    if (ev.getWireType() === 'm.room.encrypted') {
      // Sent through this gateway (only this device gets the transaction id back): the kit has it.
      if (ev.getSender() === this.userId && ev.getUnsigned().transaction_id !== undefined) return;
      if (this.crypto && !(id && this.gaveUp.has(id)) && !(await this.decrypted(ev, room))) return;
    }
    // Still encrypted (no crypto, or given up): the SDK's stand-in text is not shown, the notice is.
    const type = ev.getWireType() === 'm.room.encrypted' && (ev.isDecryptionFailure() || ev.getType() === 'm.room.encrypted') ? 'm.room.encrypted' : ev.getType();
    const sender = ev.getSender();
    if (!sender) return;
    if (type === 'm.room.member' || type === 'm.room.name' || type === 'm.room.canonical_alias') this.contactsCache = null;
    if (type === 'm.room.member') return this.onMember(ev, room);
    if (room.getMyMembership() !== 'join') return;
    if (ev.isState()) {
      const kr = this.kitRooms.get(room.roomId);
      if (!kr) return;
      if (type === 'm.room.topic' && ev.getStateKey() === '') {
        const topic = ev.getContent().topic;
        this.safeEmit('subject', kr.room, typeof topic === 'string' ? topic : '', this.nickIn(kr, room, sender));
      } else if (type === 'm.room.power_levels' && ev.getStateKey() === '') {
        this.refreshRoles(kr, room);
      } else if (type === 'm.room.name') {
        const name = ev.getContent().name;
        if (typeof name === 'string' && name) kr.room.name = name;
      }
      return;
    }
    // Sent through this gateway (only this device gets the transaction id back): the kit has it.
    if (sender === this.userId && ev.getUnsigned().transaction_id !== undefined) return;
    // Already redacted when it arrived (a gap or catch-up holding both): nothing to show.
    if (type !== 'm.room.redaction' && ev.isRedacted()) return;
    let msg: TextMessage | null = null;
    let from = sender;
    switch (type) {
      case 'm.room.message':
      case 'm.sticker': {
        const content = contentOf(ev);
        msg = messageFromContent(content, type, this.homeserver);
        if (msg) {
          this.lastMessage.set(`${room.roomId}\u0000${sender}`, Date.now());
          const file = mediaOf(content, type);
          if (file && this.media) await this.rehostFile(msg, file);
          else if (file?.encrypted) msg.text = `${file.caption ?? file.name} [encrypted file: the gateway has no upload service to pass it on]`;
        }
        break;
      }
      case 'm.room.encrypted':
        msg = { text: UNDECRYPTABLE_TEXT, notice: true };
        break;
      case 'm.poll.start':
      case 'org.matrix.msc3381.poll.start': {
        const text = pollText(ev.getContent());
        msg = text ? { text, notice: true } : null;
        break;
      }
      case 'm.reaction': {
        const r = reactionOf(contentOf(ev));
        if (!r) return;
        if (id) this.reactionIndex.set(id, { roomId: room.roomId, to: r.to, sender, key: r.key });
        const keys = await this.reactionKeys(room.roomId, r.to, sender);
        msg = { text: '', reactions: { to: r.to, keys: [...keys.keys()] } };
        break;
      }
      case 'm.room.redaction': {
        const target = (ev.event as { redacts?: string }).redacts ?? (ev.getContent().redacts as string | undefined);
        if (!target) return;
        const reaction = this.reactionIndex.get(target);
        if (reaction) {
          this.reactionIndex.delete(target);
          const keys = await this.reactionKeys(reaction.roomId, reaction.to, reaction.sender);
          keys.delete(reaction.key);
          msg = { text: '', reactions: { to: reaction.to, keys: [...keys.keys()] } };
          from = reaction.sender;
        } else {
          msg = { text: '', redacts: target };
        }
        break;
      }
      default:
        return;
    }
    if (!msg) return;
    if (msg.replyTo) msg.replyTo = this.kitIdOf(msg.replyTo);
    if (msg.editOf) msg.editOf = this.kitIdOf(msg.editOf);
    if (msg.redacts) msg.redacts = this.kitIdOf(msg.redacts);
    if (msg.reactions) msg.reactions.to = this.kitIdOf(msg.reactions.to);
    if (id) {
      msg.id = id;
      this.eventRooms.set(id, room.roomId);
    }
    if (catchUp) msg.timestamp = new Date(ev.getTs());
    this.deliver(room, from, msg, ev.getTs());
    if (!catchUp) this.trim(room);
  }

  /**
   * Decrypts an m.room.encrypted event; false when its room key is not there (yet): then it waits
   * for the key (the Rust crypto tries again when keys arrive) and is handled when decrypted, or as
   * the undecryptable notice after undecryptableTimeoutMs.
   */
  private async decrypted(ev: sdk.MatrixEvent, room: sdk.Room): Promise<boolean> {
    let timer: NodeJS.Timeout | undefined;
    try {
      // Bounded: the session's events wait in line behind this one.
      await Promise.race([
        this.client.decryptEventIfNeeded(ev),
        new Promise<void>((resolve) => {
          timer = setTimeout(resolve, DECRYPT_WAIT_MS);
          timer.unref();
        }),
      ]);
    } catch (err) {
      this.log.debug('matrix decryption failed', { homeserver: this.host, reason: describe(err) });
    } finally {
      clearTimeout(timer);
    }
    if (!ev.isDecryptionFailure() && ev.getType() !== 'm.room.encrypted') return true;
    // Only a missing room key may still come; anything else (a broken event) is the notice now.
    if (!WAIT_FOR_KEYS.has(ev.decryptionFailureReason ?? '')) return true;
    const id = ev.getId();
    if (!id || this.awaitingKeys.has(id)) return false;
    const stop = () => {
      clearTimeout(wait);
      ev.off(sdk.MatrixEventEvent.Decrypted, onDecrypted);
      this.awaitingKeys.delete(id);
    };
    const onDecrypted = (e: sdk.MatrixEvent) => {
      if (e.isDecryptionFailure() || e.getType() === 'm.room.encrypted') return;
      stop();
      // Late: delivered with its own time (catch-up handling).
      this.later(() => this.onRoomEvent(ev, room, true));
    };
    const wait = setTimeout(() => {
      stop();
      this.gaveUp.set(id, true);
      this.log.info('matrix event not decrypted in time; the user gets a notice', { homeserver: this.host, reason: ev.decryptionFailureReason ?? 'unknown' });
      this.later(() => this.onRoomEvent(ev, room, true));
    }, this.opts.undecryptableTimeoutMs);
    wait.unref();
    ev.on(sdk.MatrixEventEvent.Decrypted, onDecrypted);
    this.awaitingKeys.set(id, stop);
    return false;
  }

  /** Stops waiting for room keys (the session ends). */
  protected stopAwaitingKeys(): void {
    for (const stop of [...this.awaitingKeys.values()]) stop();
  }

  /**
   * A file of the homeserver, fetched with the user's token from the authenticated media API, is
   * put on the XMPP server's upload service: the message's body is its URL (with the caption above
   * it, if any) and its attachment (XEP-0066) too, so that clients show an image inline. Without
   * an upload service, or if that fails, the message keeps the link to the homeserver.
   */
  private async rehostFile(msg: TextMessage, file: MatrixFile): Promise<void> {
    const encrypted = file.encrypted;
    const out = await this.media!.rehost(
      {
        url: authenticatedMediaUrl(this.homeserver, file.server, file.mediaId),
        headers: { Authorization: `Bearer ${this.accessToken}` },
        ...(encrypted ? { transform: () => decryptingStream(encrypted) } : {}),
      },
      { name: file.name, ...(file.type !== undefined ? { type: file.type } : {}), ...(file.size !== undefined ? { size: file.size } : {}) },
    );
    if (out.url !== null) {
      msg.attachments = [out.url];
      msg.text = file.caption !== null ? `${file.caption}\n${out.url}` : out.url;
    } else if (out.reason === 'too-large') {
      msg.text = `${encrypted ? (file.caption ?? file.name) : msg.text}\n[file too large for the gateway to pass on (at most ${formatBytes(this.media!.maxSize)})]`;
    } else if (encrypted) {
      msg.text = `${file.caption ?? file.name} [encrypted file that the gateway could not pass on]`;
    }
  }

  /**
   * The SDK keeps every event of a room's live timeline for the life of the client; a gateway runs
   * for months. Older events are dropped (the adapter only looks up recent ones).
   */
  private trim(room: sdk.Room): void {
    const n = (this.sinceTrim.get(room.roomId) ?? 0) + 1;
    this.sinceTrim.set(room.roomId, n);
    if (n < 50) return;
    this.sinceTrim.set(room.roomId, 0);
    const events = room.getLiveTimeline().getEvents();
    if (events.length <= TIMELINE_KEEP + 50) return;
    for (const e of events.slice(0, events.length - TIMELINE_KEEP)) {
      const id = e.getId();
      if (id && e.status === null && !e.isRedaction()) room.removeEvent(id);
    }
  }

  private deliver(room: sdk.Room, sender: string, msg: TextMessage, ts: number): void {
    const kr = this.kitRooms.get(room.roomId);
    if (!kr) {
      const contact = this.directContactOf(room);
      if (contact) {
        if (sender === this.userId) return; // sent from another of the user's Matrix clients
        this.safeEmit('message', this.contactOf(sender, room), msg);
        return;
      }
      // Not joined by the kit (yet): kept until it joins.
      let list = this.backlog.get(room.roomId);
      if (!list) this.backlog.set(room.roomId, (list = []));
      list.push({ sender, msg: { ...msg, timestamp: msg.timestamp ?? new Date(ts) } });
      if (list.length > this.opts.backlogLimit) list.splice(0, list.length - this.opts.backlogLimit);
      return;
    }
    this.safeEmit('roomMessage', kr.room, this.nickIn(kr, room, sender), msg);
  }

  protected onTyping(roomId: string, userId: string, typing: boolean): void {
    const room = this.client.getRoom(roomId);
    if (!room || room.getMyMembership() !== 'join') return;
    let state: 'composing' | 'paused' | 'active' = 'composing';
    if (!typing) {
      // Typing stops when the message is sent (active), or when the user gave up (paused).
      const key = `${roomId}\u0000${userId}`;
      const last = this.lastMessage.get(key);
      const since = this.typingSince.get(key);
      this.typingSince.delete(key);
      state = last !== undefined && since !== undefined && last >= since ? 'active' : 'paused';
    }
    const kr = this.kitRooms.get(roomId);
    if (kr) {
      this.safeEmit('typing', { room: kr.room, nick: this.nickIn(kr, room, userId) }, state);
      return;
    }
    if (this.directContactOf(room)) this.safeEmit('typing', this.contactOf(userId, room), state);
  }

  protected onReceipt(room: sdk.Room, content: Record<string, Record<string, Record<string, unknown>>>): void {
    if (room.getMyMembership() !== 'join') return;
    const kr = this.kitRooms.get(room.roomId);
    const direct = kr ? null : this.directContactOf(room);
    if (!kr && !direct) return;
    for (const [eventId, types] of Object.entries(content)) {
      // The SDK adds a receipt of each sender for its own message; that is not a read marker.
      const author = room.findEventById(eventId)?.getSender();
      for (const userId of Object.keys(types['m.read'] ?? {})) {
        if (userId === this.userId || userId === author) continue;
        if (kr) this.safeEmit('displayed', { room: kr.room, nick: this.nickIn(kr, room, userId) }, this.kitIdOf(eventId));
        else this.safeEmit('displayed', this.contactOf(userId, room), this.kitIdOf(eventId));
      }
    }
  }

  /** A sender's current reaction keys on an event (key → reaction event ID), from the server's relations. */
  private async reactionKeys(roomId: string, to: string, sender: string): Promise<Map<string, string>> {
    const keys = new Map<string, string>();
    try {
      let from: string | undefined;
      for (let page = 0; page < 10; page++) {
        const res = await this.client.fetchRelations(roomId, to, 'm.annotation', 'm.reaction', { dir: sdk.Direction.Backward, limit: 100, ...(from ? { from } : {}) } as never);
        for (const raw of res.chunk as unknown as Json[]) {
          const r = reactionOf((raw.content ?? {}) as Json);
          const id = raw.event_id as string | undefined;
          if (!r || !id) continue;
          this.reactionIndex.set(id, { roomId, to, sender: String(raw.sender), key: r.key });
          if (raw.sender === sender && !keys.has(r.key)) keys.set(r.key, id);
        }
        from = res.next_batch ?? undefined;
        if (!from) break;
      }
    } catch (err) {
      this.log.debug('matrix relations not available; using the reactions seen', { homeserver: this.host, reason: describe(err) });
      keys.clear();
      for (const [id, r] of this.reactionIndex) if (r.roomId === roomId && r.to === to && r.sender === sender && !keys.has(r.key)) keys.set(r.key, id);
    }
    return keys;
  }

  async sendRoomMessage(room: LegacyRoom, message: TextMessage): Promise<void | SendReport> {
    this.ensureReady();
    return this.send(this.requireKitRoom(room).roomId, message);
  }

  async sendMessage(to: LegacyContact, message: TextMessage): Promise<void | SendReport> {
    this.ensureReady();
    if (to.id === this.userId) throw new MatrixCommandError('cannot send a direct message to yourself', 'not-acceptable');
    const roomId = await this.directRoomFor(to.id, true);
    return this.send(roomId!, message);
  }

  async sendTyping(to: LegacyContact | LegacyRoom, state: 'composing' | 'paused' | 'active'): Promise<void> {
    this.ensureReady();
    const roomId = this.isRoomRef(to) ? this.kitRoomFor(to)?.roomId : await this.directRoomFor(to.id, false);
    if (!roomId) return;
    try {
      await this.client.sendTyping(roomId, state === 'composing', 30_000);
    } catch (err) {
      throw commandError(err, 'cannot send the typing notification');
    }
  }

  async markRead(where: LegacyContact | LegacyRoom, messageId: string): Promise<void> {
    this.ensureReady();
    const eventId = this.eventId(messageId);
    const roomId = this.isRoomRef(where) ? this.kitRoomFor(where)?.roomId : (this.eventRooms.get(eventId) ?? (await this.directRoomFor(where.id, false)));
    if (!roomId) return;
    try {
      await this.client.setRoomReadMarkersHttpRequest(roomId, eventId, eventId);
    } catch (err) {
      throw commandError(err, 'cannot send the read marker');
    }
  }

  private async send(roomId: string, msg: TextMessage): Promise<void | SendReport> {
    try {
      if (msg.redacts) {
        const target = this.eventId(msg.redacts);
        await this.client.redactEvent(roomId, target, this.txn());
        return;
      }
      if (msg.reactions) {
        await this.setReactions(roomId, this.eventId(msg.reactions.to), msg.reactions.keys);
        return;
      }
      const room = this.client.getRoom(roomId);
      const encrypted = !!room?.hasEncryptionStateEvent();
      if (encrypted) await this.readyToEncrypt(room!);
      const ids: { editOf?: string; replyTo?: string } = {};
      if (msg.editOf) ids.editOf = this.eventId(msg.editOf);
      if (msg.replyTo) {
        try {
          ids.replyTo = this.eventId(msg.replyTo);
        } catch {
          // A reply to a message the gateway does not know is sent as a plain message.
        }
      }
      const file = await this.fileContentFor(msg, ids, encrypted);
      const content = file && 'content' in file ? file.content : contentFromMessage(msg, ids);
      const res = await this.client.sendEvent(roomId, 'm.room.message' as never, content as never, this.txn());
      if (msg.id) {
        this.ids.set(msg.id, res.event_id);
        this.kitIds.set(res.event_id, msg.id);
      }
      this.eventRooms.set(res.event_id, roomId);
      return file && 'notice' in file ? { notice: file.notice } : undefined;
    } catch (err) {
      const event = (err as { event?: sdk.MatrixEvent }).event;
      if (event) {
        try {
          this.client.cancelPendingEvent(event);
        } catch {
          // not pending any more
        }
      }
      throw commandError(err, 'cannot send the message');
    }
  }

  /**
   * A message that is just a file on the user's XMPP server (its body the upload URL, with that URL
   * as XEP-0066 attachment, as clients send uploads): the file is uploaded to the homeserver's media
   * repository and sent as a file message. When that cannot be, the message goes as the link and
   * the notice says why (kit's outgoing-files.ts, the same words as the other networks). Any other
   * message: null.
   */
  private async fileContentFor(msg: TextMessage, ids: { editOf?: string; replyTo?: string }, encrypted: boolean): Promise<{ content: Json } | { notice: string } | null> {
    const url = msg.attachments?.length === 1 ? msg.attachments[0]! : null;
    if (!url || ids.editOf || msg.action || msg.notice) return null;
    if (msg.text.trim() !== url && msg.text.trim() !== '') return null;
    const onFailure = (reason: string) => this.log.info('file not fetched for the homeserver; sent as a link', { homeserver: this.host, reason: reason.slice(0, 200) });
    return withOutgoingFile(this.media, url, { network: 'Matrix', onFailure }, async (file) => {
      try {
        let content: Json;
        if (encrypted) {
          // Encrypted rooms: the homeserver gets the ciphertext only; the key travels in the (encrypted) event.
          const cipher = new Encrypting();
          const plain = file.stream as Readable;
          plain.on('error', (e) => cipher.destroy(e));
          const mxc = await this.uploadToHomeserver({ ...file, type: 'application/octet-stream', stream: plain.pipe(cipher) });
          const { url: _plainUrl, ...rest } = fileContent(mxc, file);
          content = { ...rest, file: cipher.encryptedFile(mxc) };
        } else {
          const mxc = await this.uploadToHomeserver(file);
          content = fileContent(mxc, file);
        }
        if (ids.replyTo) content['m.relates_to'] = { 'm.in_reply_to': { event_id: ids.replyTo } };
        return { content };
      } catch (err) {
        file.cancel();
        this.log.info('file not uploaded to the homeserver; sent as a link', { homeserver: this.host, reason: describe(err) });
        return { notice: fileLinkNotice('Matrix', file.name, uploadFailure(err)) };
      }
    });
  }

  /** POST /_matrix/media/v3/upload with the file streamed; its mxc:// URI. */
  private async uploadToHomeserver(file: FetchedMedia): Promise<string> {
    const target = `${this.homeserver.replace(/\/+$/, '')}/_matrix/media/v3/upload?filename=${encodeURIComponent(file.name)}`;
    const res = await httpRequest(target, {
      method: 'POST',
      headers: { Authorization: `Bearer ${this.accessToken}`, 'Content-Type': file.type, 'Content-Length': String(file.size) },
      body: file.stream as Readable,
      signal: AbortSignal.timeout(Math.max(60_000, this.opts.requestTimeoutMs)),
    });
    const chunks: Buffer[] = [];
    let n = 0;
    for await (const c of res as AsyncIterable<Buffer>) {
      n += c.length;
      if (n > 65_536) throw new Error('the homeserver answered the upload with too much');
      chunks.push(c);
    }
    let body: Json = {};
    try {
      body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Json;
    } catch {
      // not JSON: reported below by its status
    }
    if (res.statusCode !== 200 || !parseMxc(body.content_uri)) throw new UploadRefusedError(res.statusCode ?? 0, typeof body.errcode === 'string' ? body.errcode : null);
    return body.content_uri as string;
  }

  /**
   * Before sending into an encrypted room: the Rust crypto must know the room's encryption (a
   * resumed session may not have seen its m.room.encryption event), else the message is refused
   * rather than sent in clear text. The SDK loads the members (lazy loading) and shares the room key.
   */
  private async readyToEncrypt(room: sdk.Room): Promise<void> {
    const crypto = this.client.getCrypto() as unknown as { onCryptoEvent?(room: sdk.Room, ev: sdk.MatrixEvent): Promise<void>; roomEncryptors?: Record<string, unknown> } | undefined;
    if (!crypto || !this.crypto) throw new MatrixCommandError('this Matrix room is end-to-end encrypted, and encryption is not available in this session', 'not-acceptable');
    const state = room.currentState.getStateEvents('m.room.encryption', '');
    if (state && crypto.roomEncryptors && !crypto.roomEncryptors[room.roomId] && crypto.onCryptoEvent) await crypto.onCryptoEvent(room, state);
    if (crypto.roomEncryptors && !crypto.roomEncryptors[room.roomId]) {
      throw new MatrixCommandError('this Matrix room uses an encryption the gateway does not support', 'not-acceptable');
    }
  }

  private async setReactions(roomId: string, to: string, wanted: string[]): Promise<void> {
    const current = await this.reactionKeys(roomId, to, this.userId);
    const keys = [...new Set(wanted.filter((k) => k.length > 0))];
    for (const key of keys) {
      if (current.has(key)) continue;
      const res = await this.client.sendEvent(roomId, 'm.reaction' as never, { 'm.relates_to': { rel_type: 'm.annotation', event_id: to, key } } as never, this.txn());
      this.reactionIndex.set(res.event_id, { roomId, to, sender: this.userId, key });
    }
    for (const [key, eventId] of current) {
      if (keys.includes(key)) continue;
      await this.client.redactEvent(roomId, eventId, this.txn());
      this.reactionIndex.delete(eventId);
    }
  }
}

/** The homeserver's media repository said no to an upload. */
class UploadRefusedError extends Error {
  constructor(
    readonly status: number,
    readonly errcode: string | null,
  ) {
    super(`the homeserver refused the upload (HTTP ${status}${errcode ? ` ${errcode}` : ''})`);
  }
}

/**
 * Why an upload to the homeserver failed, for the user's notice: the spec's error codes of the
 * content repository (M_TOO_LARGE: over its limit; M_LIMIT_EXCEEDED: rate-limited; M_FORBIDDEN:
 * uploads not allowed to this user), else the status, else what failed on the way.
 */
function uploadFailure(err: unknown): string {
  if (!(err instanceof UploadRefusedError)) return `the upload to the homeserver failed (${err instanceof Error ? err.message : String(err)})`;
  if (err.errcode === 'M_TOO_LARGE' || err.status === 413) return 'the homeserver refused it as too large';
  if (err.errcode === 'M_LIMIT_EXCEEDED' || err.status === 429) return 'the homeserver refused it for now (too many uploads), try again later';
  if (err.errcode === 'M_FORBIDDEN' || err.status === 403) return 'the homeserver does not let you upload files';
  return `the homeserver refused it (HTTP ${err.status}${err.errcode ? ` ${err.errcode}` : ''})`;
}

/** An event's content; for decrypted events with the relation of the clear part (spec: m.relates_to stays unencrypted). */
function contentOf(ev: sdk.MatrixEvent): Json {
  const content = ev.getContent() as Json;
  const relation = (ev.getWireContent() as Json)['m.relates_to'];
  return ev.isEncrypted() && relation && !content['m.relates_to'] ? { ...content, 'm.relates_to': relation } : content;
}
