/**
 * The console page /transports of the transports module (P10): the transport connection log (time, user JID, network, foreign account,
 * server, event, reason), filtered by user JID, network and a time range, as a table or a CSV
 * download (/transports.csv). Reading it is a read of audit data (P21): every view and every
 * download is recorded (env.audit), naming the filters.
 *
 * Times in the filter are ISO 8601; without a zone they are UTC (what <input type=datetime-local>
 * sends is read that way). A date alone means its midnight UTC. An age such as 2h or 7d counts
 * back from now.
 */
import type { ServerContext } from '../../core/context.js';
import type { TransportAuditEntry, TransportAuditQuery } from '../../../storage/types.js';
import { Jid } from '../../../shared/jid.js';
import type { AdminDownload, AdminPage, Download } from '../../admin/contract.js';
import { html, query, utc, type PageEnv, type PageResult } from '../../admin/pages/layout.js';
import { formatDurationWords } from '../../../shared/format.js';

/** Most rows shown on the page (the CSV has all, up to CSV_MAX_ROWS). */
export const ROWS_SHOWN = 1000;
export const CSV_MAX_ROWS = 100_000;

export interface AuditFilter {
  /** The raw form values, to show them again. */
  values: { jid: string; network: string; since: string; until: string };
  query: TransportAuditQuery;
  errors: string[];
}

const AGE = /^(\d{1,6})\s*(m|min|h|d|w)$/i;
const AGE_MS: Record<string, number> = { m: 60_000, min: 60_000, h: 3_600_000, d: 86_400_000, w: 7 * 86_400_000 };

/** An ISO time (UTC without zone), a date (midnight UTC) or an age back from `now`; null if none of them. */
export function parseTime(text: string, now: Date): Date | null {
  const s = text.trim();
  const age = AGE.exec(s);
  if (age) return new Date(now.getTime() - Number(age[1]) * AGE_MS[age[2]!.toLowerCase()]!);
  let iso = s;
  if (/^\d{4}-\d{2}-\d{2}$/.test(s)) iso = `${s}T00:00:00Z`;
  else if (/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?$/.test(s)) iso = `${s.replace(' ', 'T')}Z`;
  else if (!/^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:?\d{2})$/i.test(s)) return null;
  const d = new Date(iso.replace(' ', 'T'));
  return Number.isNaN(d.getTime()) ? null : d;
}

export function auditFilter(params: URLSearchParams, now: Date): AuditFilter {
  const get = (k: string) => (params.get(k) ?? '').trim().slice(0, 3071);
  const values = { jid: get('jid'), network: get('network'), since: get('since'), until: get('until') };
  const q: TransportAuditQuery = {};
  const errors: string[] = [];
  if (values.jid) {
    const jid = Jid.tryParse(values.jid);
    if (!jid || !jid.local) errors.push(`Not a JID: ${values.jid}`);
    else q.userJid = jid.bare;
  }
  if (values.network) {
    if (!/^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/.test(values.network)) errors.push(`Not a network name: ${values.network}`);
    else q.network = values.network.toLowerCase();
  }
  for (const k of ['since', 'until'] as const) {
    if (!values[k]) continue;
    const d = parseTime(values[k], now);
    if (!d) errors.push(`${k}: expected a time such as 2026-03-01T12:00 (UTC), a date, or an age such as 2h or 7d`);
    else q[k] = d;
  }
  return { values, query: q, errors };
}

function describe(f: AuditFilter): string {
  const parts: string[] = [];
  if (f.query.userJid) parts.push(`user ${f.query.userJid}`);
  if (f.query.network) parts.push(`network ${f.query.network}`);
  if (f.query.since) parts.push(`since ${f.query.since.toISOString()}`);
  if (f.query.until) parts.push(`until ${f.query.until.toISOString()}`);
  return parts.length ? parts.join(', ') : 'no filter';
}

async function rows(ctx: ServerContext, f: AuditFilter, limit: number): Promise<TransportAuditEntry[]> {
  if (f.errors.length) return [];
  return ctx.storage.transports.queryAudit({ ...f.query, limit });
}

async function renderAudit(env: PageEnv): Promise<PageResult> {
  const { ctx, url, now } = env;
  const filter = auditFilter(url.searchParams, now);
  const list = await rows(ctx, filter, ROWS_SHOWN + 1);
  const more = list.length > ROWS_SHOWN;
  const shown = more ? list.slice(0, ROWS_SHOWN) : list;
  env.audit(`transport connection log on the admin console (${describe(filter)}): ${shown.length} rows shown`);
  const v = filter.values;
  const csvHref = `/transports.csv${query(v)}`;
  const body = html`<h1>Transport audit</h1>
<p class="muted">When a transport connected to a foreign network for which user, with which account and server, and how it ended (P10). Rows are deleted after ${formatDurationWords(ctx.config.retention.detailedLogs)}. Times are UTC.</p>
<form class="filters" method="get" action="/transports">
<label>User JID <input type="text" name="jid" value="${v.jid}" placeholder="user@example.org" size="28"></label>
<label>Network <input type="text" name="network" value="${v.network}" placeholder="irc" size="10"></label>
<label>Since <input type="text" name="since" value="${v.since}" placeholder="2026-03-01T12:00 or 24h" size="20"></label>
<label>Until <input type="text" name="until" value="${v.until}" placeholder="2026-03-02" size="20"></label>
<button type="submit">Filter</button>
<a class="button secondary" href="/transports">Reset</a>
<a class="button secondary" href="${csvHref}" download>Download CSV</a>
</form>
${filter.errors.map((e) => html`<p class="error" role="alert">${e}</p>`)}
${
  shown.length === 0
    ? html`<p>No entries${filter.errors.length ? '' : ' match'}.</p>`
    : html`<table>
<thead><tr><th>Time (UTC)</th><th>User JID</th><th>Network</th><th>Foreign account</th><th>Server</th><th>Event</th><th>Reason</th></tr></thead>
<tbody>
${shown.map(
  (r) => html`<tr><td>${utc(r.at)}</td><td class="mono">${r.userJid}</td><td>${r.network}</td><td class="mono">${r.account ?? ''}</td><td class="mono">${r.server ?? ''}</td><td>${r.event}</td><td>${r.reason ?? ''}</td></tr>`,
)}
</tbody>
</table>
<p class="muted">${shown.length} entr${shown.length === 1 ? 'y' : 'ies'}${more ? `; only the oldest ${ROWS_SHOWN} are shown: narrow the filter or download the CSV` : ''}.</p>`
}`;
  return { title: 'Transport audit', body };
}

/** One CSV field (RFC 4180), with cells that a spreadsheet would run as a formula defused. */
export function csvField(v: string | null): string {
  if (v === null) return '';
  let s = v;
  if (/^[=+\-@\t\r]/.test(s)) s = `'${s}`;
  return /[",\r\n]/.test(s) ? `"${s.replace(/"/g, '""')}"` : s;
}

const CSV = 'text/csv; charset=utf-8';

async function auditCsv(env: PageEnv): Promise<Download> {
  const { ctx, url, now } = env;
  const filter = auditFilter(url.searchParams, now);
  if (filter.errors.length) return { status: 400, type: CSV, body: filter.errors.join('\n') + '\n', filename: '' };
  const list = await rows(ctx, filter, CSV_MAX_ROWS);
  env.audit(`transport connection log downloaded as CSV from the admin console (${describe(filter)}): ${list.length} rows`);
  const lines = ['time,user_jid,network,account,server,event,reason'];
  for (const r of list) lines.push([r.at.toISOString(), r.userJid, r.network, r.account, r.server, r.event, r.reason].map(csvField).join(','));
  const stamp = now.toISOString().slice(0, 19).replace(/[-:]/g, '').replace('T', '-');
  return { status: 200, type: CSV, body: lines.join('\r\n') + '\r\n', filename: `transport-audit-${stamp}.csv` };
}

export const auditPage: AdminPage = { path: '/transports', nav: { label: 'Transport audit', order: 40 }, render: renderAudit };

export const auditDownload: AdminDownload = { path: '/transports.csv', serve: auditCsv };
