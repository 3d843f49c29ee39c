/**
 * The console page /sessions of the session-stats module: live client sessions (P6) with full JID,
 * IP, TLS, start, stanzas and bytes in and out, with a button that disconnects a session (POST
 * /sessions/disconnect). Showing JIDs and IPs is a read of audit data (P21): every view is
 * recorded (env.audit).
 *
 * Disconnecting closes the stream with the stream error <policy-violation/> and the text
 * "disconnected by an administrator" (RFC 6120 4.9.3.14: the entity violated a local service
 * policy; the closest of the defined conditions to an administrator's decision, and one clients
 * show to the user). Clients may reconnect; to keep an abuser out, lock or delete the account.
 * Not <conflict/> (that tells a client another of its own sessions replaced it, and some then
 * stop reconnecting for the wrong reason) and not <system-shutdown/> (the server is not stopping).
 */
import { liveSessions } from './live-sessions.js';
import type { ServerContext } from '../../core/context.js';
import type { AdminAction, AdminPage } from '../../admin/contract.js';
import { csrfField, html, utc, type PageEnv, type PageResult } from '../../admin/pages/layout.js';
import { formatBytes, formatDurationShort } from '../../../shared/format.js';

export const DISCONNECT_CONDITION = 'policy-violation';
export const DISCONNECT_TEXT = 'disconnected by an administrator';

function renderSessions(env: PageEnv): PageResult {
  const { ctx, admin, now } = env;
  const list = liveSessions(ctx);
  env.audit(`live client sessions (JID, IP, counters) on the admin console: ${list.length} shown`);
  const body = html`<h1>Sessions</h1>
<p class="muted">Client sessions online now (P6). The counters are this session's stanzas and bytes; when a session ends they go into the anonymous statistics and its record is deleted after the detailed-log retention period.</p>
${
  list.length === 0
    ? html`<p>No client sessions online.</p>`
    : html`<table>
<thead><tr><th>JID</th><th>IP</th><th>TLS</th><th>Since (UTC)</th><th class="num">Online</th><th class="num">Stanzas in</th><th class="num">Stanzas out</th><th class="num">Bytes in</th><th class="num">Bytes out</th><th></th></tr></thead>
<tbody>
${list.map(
  (s) => html`<tr>
<td class="mono">${s.jid}${s.available ? '' : html` <span class="muted">(not available)</span>`}</td>
<td class="mono">${s.ip}</td>
<td>${s.secure ? 'yes' : 'no'}</td>
<td>${utc(s.startedAt)}</td>
<td class="num">${formatDurationShort(now.getTime() - Date.parse(s.startedAt))}</td>
<td class="num">${s.stanzasIn}</td>
<td class="num">${s.stanzasOut}</td>
<td class="num" title="${s.bytesIn} bytes">${formatBytes(s.bytesIn)}</td>
<td class="num" title="${s.bytesOut} bytes">${formatBytes(s.bytesOut)}</td>
<td><form class="inline" method="post" action="/sessions/disconnect">${csrfField(admin.csrf)}<input type="hidden" name="id" value="${s.id}"><input type="hidden" name="jid" value="${s.jid}"><button class="danger" type="submit">Disconnect</button></form></td>
</tr>`,
)}
</tbody>
</table>
<p class="muted">${list.length} session${list.length === 1 ? '' : 's'}. Disconnect ends the stream with the error &lt;policy-violation/&gt; (“${DISCONNECT_TEXT}”); the client may log in again.</p>`
}`;
  return { title: 'Sessions', body };
}

/**
 * Closes the live session with stream id `id` (and full JID `jid`, so a reused id cannot hit
 * another session); returns the JID closed, or null if it is gone.
 */
function disconnectSession(ctx: ServerContext, adminJid: string, id: string, jid: string): string | null {
  const session = [...ctx.sessions.all()].find((s) => s.id === id && (jid === '' || s.jid.full === jid));
  if (!session) return null;
  ctx.log.child('admin-http').info('admin disconnected a client session', { admin: adminJid, jid: session.jid.full, ip: session.ip });
  session.close(DISCONNECT_CONDITION, DISCONNECT_TEXT);
  return session.jid.full;
}

export const sessionsPage: AdminPage = { path: '/sessions', nav: { label: 'Sessions', order: 10 }, render: renderSessions };

export const disconnectAction: AdminAction = {
  path: '/sessions/disconnect',
  async run(env, form) {
    const jid = disconnectSession(env.ctx, env.admin.jid, form.get('id') ?? '', form.get('jid') ?? '');
    return { redirect: '/sessions', flash: jid ? `Disconnected ${jid}.` : 'That session is no longer online.' };
  },
};
