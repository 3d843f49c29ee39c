/** The console page /muc: the rooms of the chat service with their occupant counts (no occupant is named). */
import type { AdminPage } from '../../admin/contract.js';
import { html, type PageEnv, type PageResult } from '../../admin/pages/layout.js';
import { roomSummaries } from './commands.js';
import type { RoomSummary } from './service.js';

async function render(env: PageEnv): Promise<PageResult> {
  const s = env.ctx.services.get('muc');
  const rooms: RoomSummary[] = !s ? [] : s.cluster ? await s.cluster.allRooms() : roomSummaries(s);
  const clustered = s?.cluster != null;
  const total = rooms.reduce((n, r) => n + r.occupants, 0);
  const body = html`<h1>Group chats</h1>
<p class="muted">Rooms of the multi-user chat service (XEP-0045). Messages are kept in memory only, for late joiners; persistent rooms store their configuration and affiliations.${s ? '' : ' The chat service is not running in this server.'}</p>
${
  rooms.length === 0
    ? html`<p>No rooms.</p>`
    : html`<p>${rooms.length} room${rooms.length === 1 ? '' : 's'}, ${total} occupant${total === 1 ? '' : 's'}.</p>
<table>
<thead><tr><th>Room</th><th>Name</th><th class="num">Occupants</th><th>Type</th>${clustered ? html`<th>Node</th>` : ''}</tr></thead>
<tbody>
${rooms.map(
  (r) => html`<tr><td class="mono">${r.jid}</td><td>${r.name}</td><td class="num">${r.occupants}</td><td>${[r.persistent ? 'persistent' : 'temporary', r.public ? 'public' : 'hidden', ...(r.membersOnly ? ['members-only'] : []), ...(r.locked ? ['locked'] : [])].join(', ')}</td>${clustered ? html`<td class="mono">${r.node ?? ''}</td>` : ''}</tr>`,
)}
</tbody>
</table>`
}`;
  return { title: 'Group chats', body };
}

export const mucRoomsPage: AdminPage = { path: '/muc', nav: { label: 'Group chats', order: 45 }, render };
