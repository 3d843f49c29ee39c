/**
 * HTML building blocks of the admin console and the public policy page: an escaping template tag,
 * the page shell (inline CSS, navigation, no script, no external asset) and small helpers for
 * tables, forms and numbers.
 *
 * Every interpolated value is escaped by `html` unless it is itself `Html` (built by `html` or
 * marked with `raw`, which only ever wraps markup produced by this server: an SVG chart or the
 * policy renderer's output). So no JID, IP, reason text or query parameter reaches a page unescaped.
 */
import type { ServerContext } from '../../core/context.js';

/** What an admin page, action or download (admin/contract.ts) gets. */
export interface PageEnv {
  ctx: ServerContext;
  /** The signed-in administrator (bare JID) and the session's CSRF token. */
  admin: { jid: string; csrf: string };
  url: URL;
  now: Date;
  /** Records that this administrator read audit data (P21): `what` says what, never a value of it. */
  audit(what: string): void;
}

/** What an admin page handler returns: the title and the content of <main>. */
export interface PageResult {
  title: string;
  body: Html;
  status?: number;
}

/** A fragment of markup that is already safe to embed. */
export class Html {
  constructor(readonly value: string) {}
  toString(): string {
    return this.value;
  }
}

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

/** Markup produced by this server (never user input). */
export function raw(markup: string): Html {
  return new Html(markup);
}

function part(v: unknown): string {
  if (v instanceof Html) return v.value;
  if (v === null || v === undefined || v === false) return '';
  if (Array.isArray(v)) return v.map(part).join('');
  return escapeHtml(String(v));
}

/** Template tag: literal parts as written, every value escaped (arrays joined, null/false empty). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += part(values[i]) + strings[i + 1]!;
  return new Html(out);
}

export const CSS = `
:root { color-scheme: light; --fg: #1d2430; --muted: #5b6573; --line: #d8dde5; --accent: #1f5fa8; --bg: #ffffff; --soft: #f4f6f9; --bad: #a61b1b; --ok: #1d6b2f; }
* { box-sizing: border-box; }
body { margin: 0; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header.top { display: flex; flex-wrap: wrap; align-items: center; gap: .25rem 1rem; padding: .6rem 1.2rem; background: #16263d; color: #fff; }
header.top .brand { font-weight: 700; margin-right: .5rem; }
header.top nav a { color: #cfe0f7; text-decoration: none; padding: .2rem .45rem; border-radius: 4px; }
header.top nav a.current, header.top nav a:hover { background: #2c4465; color: #fff; }
header.top .who { margin-left: auto; display: flex; gap: .6rem; align-items: center; font-size: .9em; color: #cfe0f7; }
header.top .who button { background: transparent; color: #fff; border: 1px solid #6f86a6; }
main { padding: 1rem 1.2rem 3rem; max-width: 1200px; }
main.doc { max-width: 52rem; margin: 0 auto; }
h1 { font-size: 1.5rem; margin: .4rem 0 1rem; }
h2 { font-size: 1.15rem; margin: 1.6rem 0 .6rem; }
table { border-collapse: collapse; width: 100%; margin: .4rem 0 1rem; font-size: .92em; }
th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
th { background: var(--soft); font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
td.mono, .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; font-size: .95em; overflow-wrap: break-word; }
.muted { color: var(--muted); }
.flash { padding: .6rem .8rem; border-radius: 6px; background: #e8f3ea; color: var(--ok); border: 1px solid #b9dcc1; margin-bottom: 1rem; }
.error { padding: .6rem .8rem; border-radius: 6px; background: #fbeaea; color: var(--bad); border: 1px solid #ecc0c0; margin-bottom: 1rem; }
.cards { display: grid; grid-template-columns: repeat(auto-fill, minmax(12rem, 1fr)); gap: .8rem; margin-bottom: 1rem; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: .7rem .9rem; background: var(--soft); }
.card .value { font-size: 1.6rem; font-weight: 700; }
.card .label { color: var(--muted); font-size: .9em; }
form.inline { display: inline; margin: 0; }
button, .button { font: inherit; padding: .3rem .8rem; border-radius: 5px; border: 1px solid var(--accent); background: var(--accent); color: #fff; cursor: pointer; text-decoration: none; display: inline-block; }
button.danger { background: var(--bad); border-color: var(--bad); }
button.secondary, .button.secondary { background: #fff; color: var(--accent); }
input[type=text], input[type=password], input[type=search], select { font: inherit; padding: .3rem .45rem; border: 1px solid #aab4c2; border-radius: 4px; }
form.filters { display: flex; flex-wrap: wrap; gap: .6rem 1rem; align-items: flex-end; margin-bottom: 1rem; }
form.filters label { display: flex; flex-direction: column; font-size: .9em; color: var(--muted); gap: .15rem; }
.switch a { padding: .2rem .6rem; border: 1px solid var(--line); border-radius: 4px; text-decoration: none; color: var(--accent); }
.switch a.current { background: var(--accent); color: #fff; border-color: var(--accent); }
figure.chart { margin: 0 0 1.5rem; }
figure.chart svg { max-width: 100%; height: auto; border: 1px solid var(--line); border-radius: 6px; }
figure.chart figcaption { color: var(--muted); font-size: .9em; margin-top: .3rem; }
.login { max-width: 24rem; margin: 3rem auto; border: 1px solid var(--line); border-radius: 10px; padding: 1.2rem 1.4rem; }
.login label { display: block; margin: .7rem 0 .2rem; }
.login input { width: 100%; }
.login button { margin-top: 1rem; width: 100%; }
.langs { text-align: right; font-size: .9em; }
aside.policy-change { border-left: 4px solid #c98a00; background: #fff8e5; padding: .2rem .9rem; margin: 1rem 0; }
`;

export interface NavItem {
  path: string;
  label: string;
}

export interface ShellOptions {
  title: string;
  /** Path of the current page (highlighted in the navigation). */
  current?: string;
  /** The console's navigation (shown with `admin`): the overview and the pages the modules list. */
  nav?: readonly NavItem[];
  /** The signed-in admin and the CSRF token for the logout form; absent on public pages. */
  admin?: { jid: string; csrf: string };
  flash?: string | null;
  error?: string | null;
  lang?: string;
  mainClass?: string;
}

/** A whole page: doctype, head with inline CSS, the admin navigation (when signed in) and the content. */
export function page(opts: ShellOptions, content: Html): string {
  const nav = opts.admin
    ? html`<header class="top">
<span class="brand">Gatehouse admin</span>
<nav>${(opts.nav ?? []).map((n) => html`<a href="${n.path}"${opts.current === n.path ? raw(' class="current" aria-current="page"') : ''}>${n.label}</a> `)}</nav>
<div class="who"><span>${opts.admin.jid}</span>
<form class="inline" method="post" action="/logout"><input type="hidden" name="csrf" value="${opts.admin.csrf}"><button type="submit">Log out</button></form></div>
</header>`
    : '';
  const doc = html`<!DOCTYPE html>
<html lang="${opts.lang ?? 'en'}">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>${opts.title}</title>
<style>${raw(CSS)}</style>
</head>
<body>
${nav}
<main${opts.mainClass ? html` class="${opts.mainClass}"` : ''}>
${opts.flash ? html`<p class="flash" role="status">${opts.flash}</p>` : ''}
${opts.error ? html`<p class="error" role="alert">${opts.error}</p>` : ''}
${content}
</main>
</body>
</html>
`;
  return doc.value;
}

/** A hidden CSRF field for a POST form. */
export function csrfField(token: string): Html {
  return html`<input type="hidden" name="csrf" value="${token}">`;
}

/** '2026-03-01 12:00:05' (UTC). */
export function utc(d: Date | number | string): string {
  return new Date(d).toISOString().slice(0, 19).replace('T', ' ');
}

/** A query string from non-empty values ('' when there are none), with the leading '?'. */
export function query(params: Record<string, string | undefined | null>): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== '') q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
}
