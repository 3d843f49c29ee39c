/**
 * The HTTP side of XEP-0363 on the server's HTTPS service: PUT into an open slot, GET/HEAD of
 * stored files (single byte ranges), OPTIONS for CORS. Paths are `/upload/<id>` with an optional
 * `.<extension>` of the original name (clients such as Conversations and Converse.js decide from
 * it whether to show an image inline); the id alone names the file. Anything else is 404, so there
 * is no listing and no path of the client's choosing.
 */
import { createReadStream } from 'node:fs';
import { stat } from 'node:fs/promises';
import { timingSafeEqual } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { ID_PATTERN, TooLongError, type FileStore } from './files.js';
import type { UploadFileRow } from './storage.js';

export const ROUTE_PATH = '/upload/';

/** A slot handed out and not used yet (in memory only). */
export interface Slot {
  id: string;
  token: string;
  /** Whose slot it is: an account's id, or 0 with `component` set for a local component's. */
  accountId: number;
  component?: string;
  size: number;
  /** As requested; null when the request named none (then the PUT's type is taken). */
  contentType: string | null;
  fileName: string;
  getUrl: string;
  expiresAt: number;
}

export interface UploadHttpDeps {
  files: FileStore;
  /** Takes the slot for an upload (single use): null when unknown, expired or already taken. */
  takeSlot(id: string, token: string): Slot | null;
  /** Gives a taken slot's reservation back after a failed upload. */
  releaseSlot(slot: Slot): void;
  /** Records a complete upload; false when that failed (its account is gone, say); the file is then removed. */
  complete(slot: Slot, contentType: string): Promise<boolean>;
  file(id: string): Promise<UploadFileRow | null>;
  log: { info(msg: string, f?: Record<string, unknown>): void; warn(msg: string, f?: Record<string, unknown>): void };
}

const CONTENT_TYPE = /^[A-Za-z0-9!#$&^_.+-]{1,127}\/[A-Za-z0-9!#$&^_.+-]{1,127}$/;

/** The media type of a Content-Type header or slot attribute, lower-cased without parameters; null when malformed. */
export function mediaType(value: string | undefined): string | null {
  if (value === undefined) return null;
  const t = value.split(';')[0]!.trim().toLowerCase();
  return CONTENT_TYPE.test(t) ? t : null;
}

const CORS: Record<string, string> = {
  'Access-Control-Allow-Origin': '*',
  'Access-Control-Allow-Methods': 'GET, HEAD, PUT, OPTIONS',
  'Access-Control-Allow-Headers': 'Content-Type, Authorization',
  'Access-Control-Expose-Headers': 'Content-Length, Content-Range, Content-Disposition',
  'Access-Control-Max-Age': '86400',
};

/** What a served file may do when a browser opens it: nothing (no scripts, no loads, sandboxed). */
const FILE_CSP = "default-src 'none'; img-src 'self'; media-src 'self'; style-src 'unsafe-inline'; sandbox";

function plain(res: ServerResponse, status: number, text: string, extra: Record<string, string> = {}): void {
  const body = text + '\n';
  res.writeHead(status, { ...CORS, 'Content-Type': 'text/plain; charset=utf-8', 'Content-Length': Buffer.byteLength(body), 'X-Content-Type-Options': 'nosniff', ...extra });
  res.end(body);
}

/** The file id of a request path, or null. */
export function idOfPath(pathname: string): string | null {
  if (!pathname.startsWith(ROUTE_PATH)) return null;
  const rest = pathname.slice(ROUTE_PATH.length);
  const m = /^([A-Za-z0-9_-]{24})(?:\.[A-Za-z0-9]{1,16})?$/.exec(rest);
  return m && ID_PATTERN.test(m[1]!) ? m[1]! : null;
}

/** The extension kept in URLs: letters and digits of the name's last dot part, if short. */
export function extensionOf(fileName: string): string {
  const m = /\.([A-Za-z0-9]{1,16})$/.exec(fileName);
  return m ? '.' + m[1]!.toLowerCase() : '';
}

/** Shown in the browser (images, audio, video that cannot run script); everything else is downloaded. */
function inlineType(type: string): boolean {
  return (/^(image|audio|video)\//.test(type) && type !== 'image/svg+xml') || type === 'text/plain';
}

/** RFC 6266 Content-Disposition with an ASCII fallback and the UTF-8 name (RFC 8187). */
export function contentDisposition(type: string, fileName: string): string {
  const fallback = fileName.replace(/[^\x20-\x7e]|["\\%]/g, '_');
  const encoded = encodeURIComponent(fileName).replace(/['()*]/g, (c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
  return `${inlineType(type) ? 'inline' : 'attachment'}; filename="${fallback}"; filename*=UTF-8''${encoded}`;
}

/** A single byte range of `size` bytes: 'none' (serve whole), 'bad' (416), or the inclusive bounds. */
export function parseRange(header: string | undefined, size: number): 'none' | 'bad' | { start: number; end: number } {
  if (header === undefined) return 'none';
  const value = header.trim();
  // Another unit or several ranges: RFC 9110 14.2 lets a server ignore Range and send the whole.
  if (!value.startsWith('bytes=') || value.includes(',')) return 'none';
  const m = /^bytes=(\d*)-(\d*)$/.exec(value);
  if (!m) return 'bad';
  const [, a, b] = m;
  if (a === '' && b === '') return 'bad';
  if (a === '') {
    const n = Number(b);
    if (n === 0 || size === 0) return 'bad';
    return { start: Math.max(0, size - n), end: size - 1 };
  }
  const start = Number(a);
  const end = b === '' ? size - 1 : Math.min(Number(b), size - 1);
  if (start >= size || (b !== '' && Number(b) < start)) return 'bad';
  return { start, end };
}

export function uploadRouteHandler(deps: UploadHttpDeps) {
  return async (req: IncomingMessage, res: ServerResponse, info: { url: URL }): Promise<void> => {
    const method = req.method ?? 'GET';
    if (method === 'OPTIONS') {
      req.resume();
      res.writeHead(204, { ...CORS, 'Content-Length': '0' });
      res.end();
      return;
    }
    const id = idOfPath(info.url.pathname);
    if (method === 'PUT') return put(deps, id, req, res, info.url);
    req.resume();
    if (!id) return plain(res, 404, 'not found');
    if (method === 'GET' || method === 'HEAD') return get(deps, id, req, res, method === 'HEAD');
    return plain(res, 405, 'method not allowed', { Allow: 'GET, HEAD, PUT, OPTIONS' });
  };
}

async function put(deps: UploadHttpDeps, id: string | null, req: IncomingMessage, res: ServerResponse, url: URL): Promise<void> {
  const refuse = (status: number, text: string, extra: Record<string, string> = {}) => {
    // The body is not wanted: close the connection after answering rather than read it all.
    plain(res, status, text, { Connection: 'close', ...extra });
    req.resume();
  };
  if (!id) return refuse(404, 'not found');
  const token = url.searchParams.get('token') ?? '';
  const slot = deps.takeSlot(id, token);
  if (!slot) return refuse(403, 'no valid upload slot for this URL (unknown, expired or already used)');
  let taken = true;
  const release = () => {
    if (taken) deps.releaseSlot(slot);
    taken = false;
  };
  const lengthHeader = req.headers['content-length'];
  if (lengthHeader === undefined || !/^\d+$/.test(lengthHeader)) {
    release();
    return refuse(411, 'Content-Length is required');
  }
  if (Number(lengthHeader) !== slot.size) {
    release();
    return refuse(Number(lengthHeader) > slot.size ? 413 : 400, `Content-Length must be the slot's size, ${slot.size}`);
  }
  const type = mediaType(req.headers['content-type']);
  if (slot.contentType !== null ? type !== slot.contentType : req.headers['content-type'] !== undefined && type === null) {
    release();
    return refuse(415, slot.contentType !== null ? `Content-Type must be the slot's, ${slot.contentType}` : 'malformed Content-Type');
  }
  try {
    await deps.files.write(id, req, slot.size);
  } catch (err) {
    release();
    deps.log.info('upload failed', { id, reason: err instanceof TooLongError ? 'too long' : 'incomplete' });
    if (!res.headersSent && !res.destroyed) refuse(err instanceof TooLongError ? 413 : 400, 'the upload did not complete');
    return;
  }
  let stored = false;
  try {
    stored = await deps.complete(slot, slot.contentType ?? type ?? 'application/octet-stream');
  } finally {
    if (!stored) {
      release();
      await deps.files.remove(id);
    }
  }
  if (!stored) return plain(res, 500, 'the upload could not be stored');
  taken = false;
  deps.log.info('upload stored', { id, size: slot.size });
  res.writeHead(201, { ...CORS, 'Content-Length': '0', Location: slot.getUrl });
  res.end();
}

async function get(deps: UploadHttpDeps, id: string, req: IncomingMessage, res: ServerResponse, head: boolean): Promise<void> {
  const row = await deps.file(id);
  const st = row ? await stat(deps.files.path(id)).catch(() => null) : null;
  if (!row || !st?.isFile()) return plain(res, 404, 'not found');
  const size = st.size;
  const headers: Record<string, string | number> = {
    ...CORS,
    'Content-Type': row.contentType,
    'Content-Disposition': contentDisposition(row.contentType, row.fileName),
    'X-Content-Type-Options': 'nosniff',
    'Content-Security-Policy': FILE_CSP,
    'Referrer-Policy': 'no-referrer',
    'Accept-Ranges': 'bytes',
    'Cache-Control': 'private, max-age=86400',
    ETag: `"${id}"`,
    'Last-Modified': row.createdAt.toUTCString(),
  };
  const ifRange = req.headers['if-range'];
  const range = ifRange !== undefined && ifRange !== `"${id}"` ? 'none' : parseRange(req.headers.range, size);
  if (range === 'bad') return plain(res, 416, 'range not satisfiable', { 'Content-Range': `bytes */${size}` });
  const { start, end } = range === 'none' ? { start: 0, end: size - 1 } : range;
  const length = size === 0 ? 0 : end - start + 1;
  if (range !== 'none') headers['Content-Range'] = `bytes ${start}-${end}/${size}`;
  headers['Content-Length'] = length;
  res.writeHead(range === 'none' ? 200 : 206, headers);
  if (head || length === 0) {
    res.end();
    return;
  }
  const stream = createReadStream(deps.files.path(id), { start, end });
  stream.on('error', () => res.destroy());
  res.on('close', () => stream.destroy());
  stream.pipe(res);
  deps.log.info('upload served', { id, bytes: length });
}

/** Compares a token without revealing where it differs. */
export function sameToken(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}
