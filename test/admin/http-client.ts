/** A small cookie-keeping HTTP(S) client for the admin interface tests (real requests over loopback). */
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { Duplex } from 'node:stream';

export interface Response {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** Raw Set-Cookie headers of this response. */
  setCookies: string[];
}

export interface RequestOptions {
  form?: Record<string, string>;
  /** A raw body (with its own content type header). */
  body?: string | Buffer;
  headers?: Record<string, string>;
  /** Leave the cookie jar out of this request. */
  noCookies?: boolean;
}

export class AdminClient {
  readonly cookies = new Map<string, string>();
  /** The CSRF token of the last page that had a form. */
  csrf = '';

  constructor(
    readonly port: number,
    readonly secure = true,
    /** Opens each request's connection instead of the default (e.g. to send a PROXY header first). */
    readonly createConnection?: () => Duplex,
  ) {}

  async request(method: string, path: string, opts: RequestOptions = {}): Promise<Response> {
    let body: Buffer | undefined;
    const headers: Record<string, string | number> = { ...(opts.headers ?? {}) };
    if (opts.form) {
      body = Buffer.from(new URLSearchParams(opts.form).toString());
      headers['content-type'] = 'application/x-www-form-urlencoded';
    } else if (opts.body !== undefined) body = Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body);
    if (body) headers['content-length'] = body.length;
    if (!opts.noCookies && this.cookies.size) headers.cookie = [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; ');
    const send = this.secure ? httpsRequest : httpRequest;
    const res = await new Promise<Response>((resolve, reject) => {
      const req = send(
        {
          host: '127.0.0.1',
          port: this.port,
          method,
          path,
          headers,
          rejectUnauthorized: false,
          // Node uses createConnection only without an agent.
          ...(this.createConnection ? { createConnection: this.createConnection } : { agent: false }),
        },
        (r) => {
          const chunks: Buffer[] = [];
          r.on('data', (c: Buffer) => chunks.push(c));
          r.on('end', () => resolve({ status: r.statusCode ?? 0, headers: r.headers, body: Buffer.concat(chunks).toString('utf8'), setCookies: r.headers['set-cookie'] ?? [] }));
          r.on('error', reject);
        },
      );
      req.on('error', reject);
      req.end(body);
    });
    for (const c of res.setCookies) {
      const [pair] = c.split(';');
      const eq = pair!.indexOf('=');
      const name = pair!.slice(0, eq).trim();
      const value = pair!.slice(eq + 1).trim();
      if (/max-age=0/i.test(c) || value === '') this.cookies.delete(name);
      else this.cookies.set(name, value);
    }
    const m = /name="csrf" value="([^"]*)"/.exec(res.body);
    if (m) this.csrf = m[1]!;
    return res;
  }

  get(path: string, opts: RequestOptions = {}): Promise<Response> {
    return this.request('GET', path, opts);
  }

  /** A form POST with the current CSRF token added (unless the form has its own `csrf`, or csrf: null). */
  post(path: string, form: Record<string, string | null> = {}, opts: RequestOptions = {}): Promise<Response> {
    const fields: Record<string, string> = {};
    if (!('csrf' in form)) fields.csrf = this.csrf;
    for (const [k, v] of Object.entries(form)) if (v !== null) fields[k] = v;
    return this.request('POST', path, { ...opts, form: fields });
  }

  /** Opens the login form and submits it; returns the answer to the POST. */
  async login(username: string, password: string, next?: string): Promise<Response> {
    const form = await this.get(`/login${next ? `?next=${encodeURIComponent(next)}` : ''}`);
    if (form.status !== 200) throw new Error(`login form: HTTP ${form.status}`);
    const fields: Record<string, string> = { username, password };
    if (next) fields.next = next;
    return this.post('/login', fields);
  }
}
