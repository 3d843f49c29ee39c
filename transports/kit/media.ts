/**
 * Attachments through the XMPP server's upload service (XEP-0363), the standard way a component
 * gets one: the service is found in the disco#items of the server's domain (or configured), the
 * transport asks it for a slot from its own domain, PUTs the bytes, and hands out the GET URL.
 *
 * - rehost(): fetches a network's attachment (a Matrix file with the user's token, a Discord CDN
 *   URL before its signature expires) and uploads it; the bytes are streamed, never held whole.
 *   A source without Content-Length is spooled to a temporary file first (the slot needs the size).
 * - fetch(): the other way, a file a user sent from XMPP, only from the user's own server (its
 *   domain or a subdomain, https): the transport fetches no URL of the user's choosing.
 * - Everything is bounded: `media.maxSize` (and the service's max-file-size), `media.timeout` for
 *   the whole transfer. Without an upload service attachments stay links (logged once).
 * - Logs name hosts and sizes, never URLs (Discord's are signed, PUT URLs hold a token), headers or
 *   file names.
 */
import http from 'node:http';
import https from 'node:https';
import { createReadStream, createWriteStream, readFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Readable, Transform, type TransformCallback } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { Logger } from '../../shared/logger.js';
import type { FetchedMedia, MediaHost, MediaInfo, MediaSource, RehostOutcome } from './adapter.js';
import { errorText } from './context.js';
import { guardedGet, LinkRefusedError } from './link-guard.js';

export const NS_UPLOAD = 'urn:xmpp:http:upload:0';

export interface MediaSettings {
  /** false: attachments stay links, nothing is uploaded or fetched. */
  enabled: boolean;
  maxSize: number;
  /** Milliseconds one transfer (fetch and upload) may take. */
  timeout: number;
  /** The upload service's JID; null: discovered in the disco#items of `server`. */
  service: string | null;
  /** The XMPP server's domain; null: the component domain without its first label. */
  server: string | null;
  /** PEM file of CAs to trust besides the system's (a private CA of the XMPP server). */
  caFile: string | null;
  /** File links said on the network (IRC): fetched through link-guard.ts; absent: not re-hosted. */
  links?: LinkSettings;
}

export interface LinkSettings {
  enabled: boolean;
  /** Every http(s) link, not only those whose path ends in an extension of `extensions`. */
  allLinks: boolean;
  allowHttp: boolean;
  /** Dangerous: see link-guard.ts. */
  allowPrivateAddresses: boolean;
  /** Media types re-hosted ("image/*" for a whole kind); others stay links. */
  types: string[];
  /** File name extensions (without dot) that make a link a file link. */
  extensions: string[];
  /** Links remembered (their upload URL or why not), and for how long in milliseconds. */
  cacheSize: number;
  cacheAge: number;
}

interface Service {
  jid: string;
  maxFileSize: number;
}

/** How long a failed discovery is remembered before asking again. */
const REDISCOVER_MS = 10 * 60_000;
const MAX_REDIRECTS = 3;

const RETRY_FAILED_LINK_MS = 60_000;

export class MediaTooLargeError extends Error {}

/**
 * At most `maxEntries` values, each until its own expiry (milliseconds on the caller's clock); the
 * oldest entry goes first when it is full.
 */
export class ExpiringCache<V> {
  private readonly entries = new Map<string, { value: V; until: number }>();
  constructor(private readonly maxEntries: number) {}

  get(key: string, now: number): V | undefined {
    const e = this.entries.get(key);
    if (!e) return undefined;
    if (now < e.until) return e.value;
    this.entries.delete(key);
    return undefined;
  }

  set(key: string, value: V, now: number, ttl: number): void {
    this.entries.delete(key);
    if (this.maxEntries <= 0) return;
    this.entries.set(key, { value, until: now + ttl });
    while (this.entries.size > this.maxEntries) this.entries.delete(this.entries.keys().next().value!);
  }

  /** Ends the entry earlier, if it still holds `value`. */
  shorten(key: string, value: V, until: number): void {
    const e = this.entries.get(key);
    if (e && e.value === value && until < e.until) e.until = until;
  }

  get size(): number {
    return this.entries.size;
  }
}

/** Passes at most `limit` bytes and fails beyond. */
class Limit extends Transform {
  seen = 0;
  constructor(private readonly limit: number) {
    super();
  }
  override _transform(chunk: Buffer, _enc: BufferEncoding, done: TransformCallback): void {
    this.seen += chunk.length;
    if (this.seen > this.limit) return done(new MediaTooLargeError(`more than ${this.limit} bytes`));
    done(null, chunk);
  }
}

/** The media type of a Content-Type value, lower-cased without parameters; null when malformed. */
export function mediaTypeOf(value: string | undefined | null): string | null {
  if (!value) return null;
  const t = value.split(';')[0]!.trim().toLowerCase();
  return /^[a-z0-9!#$&^_.+-]{1,127}\/[a-z0-9!#$&^_.+-]{1,127}$/.test(t) ? t : null;
}

/** Whether a media type is one of `types` (entries like "image/*" match a whole kind). */
export function typeAllowed(type: string | null, types: string[]): boolean {
  if (!type) return false;
  return types.some((t) => t === type || (t.endsWith('/*') && type.startsWith(t.slice(0, -1))));
}

/** A file name usable in a slot request: the last path segment, without control characters. */
function cleanName(name: string | undefined): string | null {
  const n = (name ?? '').split(/[/\\]/).pop()!.replace(/[\x00-\x1f\x7f]/g, '').trim();
  return n ? [...n].slice(0, 200).join('') : null;
}

function nameFromUrl(url: URL): string | null {
  const last = url.pathname.split('/').pop() ?? '';
  try {
    return cleanName(decodeURIComponent(last));
  } catch {
    return null;
  }
}

export interface HttpOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: Readable;
  signal: AbortSignal;
  ca?: Buffer;
}

/**
 * One HTTP(S) request, its response unread. GETs follow up to three redirects; an Authorization
 * header goes to the first origin only.
 */
export async function httpRequest(target: string, o: HttpOptions): Promise<http.IncomingMessage> {
  let url = new URL(target);
  const origin = url.origin;
  for (let hop = 0; ; hop++) {
    if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error(`unsupported URL scheme ${url.protocol}`);
    const headers = { ...(o.headers ?? {}) };
    if (url.origin !== origin) delete headers.Authorization;
    const res = await new Promise<http.IncomingMessage>((resolve, reject) => {
      const mod = url.protocol === 'https:' ? https : http;
      const req = mod.request(url, { method: o.method ?? 'GET', headers, signal: o.signal, ...(o.ca && url.protocol === 'https:' ? { ca: o.ca } : {}) }, resolve);
      req.on('error', reject);
      if (o.body) {
        o.body.on('error', (e) => req.destroy(e));
        o.body.pipe(req);
      }
      else req.end();
    });
    const status = res.statusCode ?? 0;
    if ((o.method ?? 'GET') === 'GET' && [301, 302, 303, 307, 308].includes(status) && res.headers.location && hop < MAX_REDIRECTS) {
      res.resume();
      url = new URL(res.headers.location, url);
      continue;
    }
    return res;
  }
}

export class MediaService implements MediaHost {
  readonly maxSize: number;
  private found: { at: number; service: Service | null } | null = null;
  private discovering: Promise<Service | null> | null = null;
  private loggedMissing = false;
  private readonly ca: Buffer | undefined;
  private readonly server: string;

  constructor(
    private readonly kit: { domain: string; request(iq: Element, timeoutMs?: number): Promise<Element>; log: Logger; clock: { now(): Date } },
    private readonly settings: MediaSettings,
  ) {
    this.maxSize = settings.maxSize;
    this.ca = settings.caFile ? readFileSync(settings.caFile) : undefined;
    this.server = settings.server ?? (kit.domain.includes('.') ? kit.domain.slice(kit.domain.indexOf('.') + 1) : kit.domain);
  }

  get enabled(): boolean {
    return this.settings.enabled;
  }

  /** The upload service, discovered once (again after a while when there was none). */
  async service(): Promise<Service | null> {
    if (!this.settings.enabled) return null;
    const now = this.kit.clock.now().getTime();
    if (this.found && (this.found.service || now - this.found.at < REDISCOVER_MS)) return this.found.service;
    this.discovering ??= this.discover().then(
      (service) => {
        this.found = { at: this.kit.clock.now().getTime(), service };
        this.discovering = null;
        if (!service && !this.loggedMissing) {
          this.loggedMissing = true;
          this.kit.log.info('no upload service found; attachments are passed on as links', { server: this.server });
        } else if (service) this.kit.log.info('upload service found', { service: service.jid, maxFileSize: service.maxFileSize });
        return service;
      },
      () => null,
    );
    return this.discovering;
  }

  private async discover(): Promise<Service | null> {
    const candidates: string[] = [];
    if (this.settings.service) candidates.push(this.settings.service);
    else {
      const items = await this.query(this.server, NS.discoItems);
      for (const item of items?.getChildren('item') ?? []) if (item.attrs.jid && !item.attrs.node) candidates.push(item.attrs.jid);
    }
    for (const jid of candidates.slice(0, 20)) {
      const info = await this.query(jid, NS.discoInfo);
      if (!info?.getChildren('feature').some((f) => f.attrs.var === NS_UPLOAD)) continue;
      let maxFileSize = Infinity;
      for (const form of info.getChildren('x', NS.dataForms)) {
        const fields = form.getChildren('field');
        if (fields.find((f) => f.attrs.var === 'FORM_TYPE')?.getChildText('value') !== NS_UPLOAD) continue;
        const max = Number(fields.find((f) => f.attrs.var === 'max-file-size')?.getChildText('value'));
        if (Number.isFinite(max) && max > 0) maxFileSize = max;
      }
      return { jid, maxFileSize };
    }
    return null;
  }

  private async query(to: string, xmlns: string): Promise<Element | null> {
    try {
      const res = await this.kit.request(x('iq', { type: 'get', to, from: this.kit.domain }, x('query', { xmlns })), 10_000);
      return res.attrs.type === 'result' ? (res.getChild('query', xmlns) ?? null) : null;
    } catch {
      return null;
    }
  }

  async rehost(source: MediaSource, info: MediaInfo): Promise<RehostOutcome> {
    return this.copy(source, info, (signal) => httpRequest(source.url, { headers: source.headers ?? {}, signal, ca: this.ca }), null);
  }

  /**
   * Whether `url`, said by someone on the network, is a link to re-host: links are on, the upload
   * service configured, and the path ends in a file extension of the allowed kinds (or all links).
   */
  wantsLink(url: string): boolean {
    const l = this.settings.links;
    if (!this.settings.enabled || !l?.enabled) return false;
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return false;
    }
    if (u.protocol !== 'https:' && !(u.protocol === 'http:' && l.allowHttp)) return false;
    if (l.allLinks) return true;
    const ext = /\.([A-Za-z0-9]{1,10})$/.exec(u.pathname)?.[1]?.toLowerCase();
    return !!ext && l.extensions.includes(ext);
  }

  /**
   * Re-hosts a file link someone on the network said, through the link guard, once per URL: every
   * user who sees the same link (in a channel or as a private message) gets the same upload URL
   * while the entry lasts (`links.cacheAge`, kept below the upload service's retention).
   */
  rehostLink(url: string): Promise<RehostOutcome> {
    const l = this.settings.links;
    if (!l || !this.wantsLink(url)) return Promise.resolve({ url: null, reason: 'refused', text: 'not a file link' });
    const now = this.kit.clock.now().getTime();
    this.linkCache ??= new ExpiringCache(l.cacheSize);
    const hit = this.linkCache.get(url, now);
    if (hit) return hit;
    const outcome = this.copy({ url }, {}, (signal) => guardedGet(url, { allowHttp: l.allowHttp, allowPrivateAddresses: l.allowPrivateAddresses, ca: this.ca }, signal), l.types);
    const cache = this.linkCache;
    cache.set(url, outcome, now, l.cacheAge);
    // A failure of the moment (the origin down, a timeout) is tried again sooner than a copy is reused.
    void outcome.then((o) => {
      if (o.url === null && (o.reason === 'failed' || o.reason === 'no-service')) cache.shorten(url, outcome, now + Math.min(l.cacheAge, RETRY_FAILED_LINK_MS));
    });
    return outcome;
  }

  private linkCache: ExpiringCache<Promise<RehostOutcome>> | null = null;

  private async copy(source: MediaSource, info: MediaInfo, open: (signal: AbortSignal) => Promise<http.IncomingMessage>, types: string[] | null): Promise<RehostOutcome> {
    const service = await this.service();
    if (!service) return { url: null, reason: 'no-service', text: 'no upload service' };
    const limit = Math.min(this.maxSize, service.maxFileSize);
    const tooLarge = (): RehostOutcome => ({ url: null, reason: 'too-large', text: `the file is larger than ${limit} bytes` });
    if (info.size !== undefined && info.size > limit) return tooLarge();
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error('timed out')), this.settings.timeout);
    timer.unref?.();
    let source$: URL;
    try {
      source$ = new URL(source.url);
    } catch {
      clearTimeout(timer);
      return { url: null, reason: 'failed', text: 'not a URL' };
    }
    let spool: string | null = null;
    let failure: Error | null = null;
    try {
      const res = await open(abort.signal);
      if ((res.statusCode ?? 0) < 200 || (res.statusCode ?? 0) > 299) {
        res.resume();
        throw new Error(`the source answered HTTP ${res.statusCode}`);
      }
      if (types && !typeAllowed(mediaTypeOf(res.headers['content-type']), types)) {
        res.destroy();
        return { url: null, reason: 'refused', text: 'not a kind of file that is re-hosted' };
      }
      const declared = res.headers['content-length'] !== undefined ? Number(res.headers['content-length']) : NaN;
      let input: Readable = res;
      if (source.transform) {
        const t = source.transform();
        // A transform may fail (a hash check at its end) before anything reads it: the whole re-hosting stops then.
        t.on('error', (e: Error) => {
          failure ??= e;
          abort.abort(e);
        });
        res.on('error', (e) => (t as unknown as Readable).destroy(e));
        input = res.pipe(t) as unknown as Readable;
      }
      let body: Readable = input;
      let size: number;
      if (Number.isSafeInteger(declared) && declared >= 0) {
        if (declared > limit) {
          res.destroy();
          return tooLarge();
        }
        size = declared;
      } else {
        // No length: the slot needs one, so the bytes wait in a temporary file.
        spool = await mkdtemp(path.join(tmpdir(), 'gatehouse-media-'));
        const file = path.join(spool, 'data');
        const limiter = new Limit(limit);
        await pipeline(input, limiter, createWriteStream(file, { mode: 0o600 }), { signal: abort.signal });
        size = limiter.seen;
        body = createReadStream(file);
      }
      const type = info.type && mediaTypeOf(info.type) ? mediaTypeOf(info.type)! : (mediaTypeOf(res.headers['content-type']) ?? 'application/octet-stream');
      const name = cleanName(info.name) ?? nameFromUrl(source$) ?? 'file';
      const get = await this.putInSlot(service, body, size, type, name, abort.signal);
      if (get === null) return tooLarge();
      this.kit.log.debug('attachment re-hosted', { source: source$.host, size });
      return { url: get };
    } catch (err) {
      const timedOut = abort.signal.aborted;
      // Whatever is still open of the download or the upload ends here.
      abort.abort();
      if (err instanceof MediaTooLargeError) return tooLarge();
      if (err instanceof LinkRefusedError) {
        this.kit.log.info('link not fetched', { source: source$.host, reason: err.message });
        return { url: null, reason: 'refused', text: err.message };
      }
      const text = failure ? errorText(failure) : timedOut ? 'timed out' : errorText(err);
      this.kit.log.info('attachment not re-hosted', { source: source$.host, reason: text.slice(0, 200) });
      return { url: null, reason: 'failed', text };
    } finally {
      clearTimeout(timer);
      if (spool) await rm(spool, { recursive: true, force: true }).catch(() => undefined);
    }
  }

  /** Puts bytes the transport holds (a user's picture) on the upload service. */
  async upload(data: Buffer, info: { type: string; name: string }): Promise<RehostOutcome> {
    const service = await this.service();
    if (!service) return { url: null, reason: 'no-service', text: 'no upload service' };
    if (data.length > Math.min(this.maxSize, service.maxFileSize)) return { url: null, reason: 'too-large', text: 'the file is too large' };
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error('timed out')), this.settings.timeout);
    timer.unref?.();
    try {
      const get = await this.putInSlot(service, Readable.from([data]), data.length, mediaTypeOf(info.type) ?? 'application/octet-stream', cleanName(info.name) ?? 'file', abort.signal);
      return get === null ? { url: null, reason: 'too-large', text: 'the file is too large' } : { url: get };
    } catch (err) {
      abort.abort();
      return { url: null, reason: 'failed', text: errorText(err) };
    } finally {
      clearTimeout(timer);
    }
  }

  /** Asks the service for a slot and PUTs `size` bytes of `body` there: the GET URL, or null when the service finds it too large. */
  private async putInSlot(service: Service, body: Readable, size: number, type: string, name: string, signal: AbortSignal): Promise<string | null> {
    const slot = await this.kit.request(
      x('iq', { type: 'get', to: service.jid, from: this.kit.domain }, x('request', { xmlns: NS_UPLOAD, filename: name, size: String(size), 'content-type': type })),
      15_000,
    );
    if (slot.attrs.type !== 'result') {
      body.destroy();
      const err = slot.getChild('error');
      if (err?.getChild('file-too-large', NS_UPLOAD)) return null;
      throw new Error(`the upload service refused a slot (${err?.firstElement()?.name ?? 'error'})`);
    }
    const s = slot.getChild('slot', NS_UPLOAD);
    const put = s?.getChild('put');
    const get = s?.getChild('get')?.attrs.url;
    if (!put?.attrs.url || !get || !/^https:\/\//.test(get)) throw new Error('the upload service sent an unusable slot');
    const headers: Record<string, string> = { 'Content-Length': String(size), 'Content-Type': type };
    // XEP-0363 §4: only these headers of the slot are passed on.
    for (const h of put.getChildren('header')) {
      const n = (h.attrs.name ?? '').toLowerCase();
      if (['authorization', 'cookie', 'expires'].includes(n)) headers[h.attrs.name!] = h.text().replace(/[\r\n]/g, '');
    }
    signal.throwIfAborted();
    const limiter = new Limit(size);
    body.pipe(limiter);
    body.on('error', (e) => limiter.destroy(e));
    const up = await httpRequest(put.attrs.url, { method: 'PUT', headers, body: limiter, signal, ca: this.ca });
    up.resume();
    if ((up.statusCode ?? 0) < 200 || (up.statusCode ?? 0) > 299) throw new Error(`the upload was refused (HTTP ${up.statusCode})`);
    return get;
  }

  fetchable(url: string): boolean {
    if (!this.settings.enabled) return false;
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      return false;
    }
    const host = u.hostname.toLowerCase();
    return u.protocol === 'https:' && !u.username && !u.password && (host === this.server || host.endsWith(`.${this.server}`));
  }

  async fetch(url: string): Promise<FetchedMedia> {
    if (!this.fetchable(url)) throw new Error('not a file on the XMPP server');
    const abort = new AbortController();
    const timer = setTimeout(() => abort.abort(new Error('timed out')), this.settings.timeout);
    timer.unref?.();
    const done = () => clearTimeout(timer);
    try {
      const res = await httpRequest(url, { signal: abort.signal, ca: this.ca });
      if ((res.statusCode ?? 0) !== 200) {
        res.resume();
        throw new Error(`the file's server answered HTTP ${res.statusCode}`);
      }
      const size = Number(res.headers['content-length']);
      if (!Number.isSafeInteger(size) || size < 0) {
        res.destroy();
        throw new Error('the file has no length');
      }
      if (size > this.maxSize) {
        res.destroy();
        throw new MediaTooLargeError(`the file is larger than ${this.maxSize} bytes`);
      }
      const limiter = new Limit(size);
      res.pipe(limiter);
      res.on('error', (e) => limiter.destroy(e));
      limiter.on('close', done);
      const disposition = /filename\*=utf-8''([^;]+)/i.exec(String(res.headers['content-disposition'] ?? ''));
      let name: string | null = null;
      try {
        name = disposition ? cleanName(decodeURIComponent(disposition[1]!)) : null;
      } catch {
        name = null;
      }
      return {
        stream: limiter,
        size,
        type: mediaTypeOf(res.headers['content-type']) ?? 'application/octet-stream',
        name: name ?? nameFromUrl(new URL(url)) ?? 'file',
        cancel: () => {
          done();
          res.destroy();
          limiter.destroy();
        },
      };
    } catch (err) {
      done();
      throw err;
    }
  }
}
