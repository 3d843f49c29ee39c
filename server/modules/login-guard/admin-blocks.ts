/**
 * The console page /blocks of the failed-login guard (P7): the temporary blocks in force, with a button that lifts one (or
 * all), and the failed authentications and registrations recorded within the detailed-log
 * retention period (newest first). IPs and account names are audit data: every view is recorded
 * (env.audit, P21), and so is every lift (a log line naming the admin).
 */
import type { ServerContext } from '../../core/context.js';
import type { BlockKind } from '../../../storage/types.js';
import { formatDurationShort, formatDurationWords } from '../../../shared/format.js';
import type { AdminAction, AdminPage } from '../../admin/contract.js';
import { csrfField, html, utc, type PageEnv, type PageResult } from '../../admin/pages/layout.js';

/** Most failed-login records shown. */
export const FAILED_LOGINS_SHOWN = 200;

async function renderBlocks(env: PageEnv): Promise<PageResult> {
  const { ctx, admin, now } = env;
  const retention = ctx.config.retention.detailedLogs;
  const [blocks, failures] = await Promise.all([
    ctx.storage.privacyLogs.listBlocks(now),
    ctx.storage.privacyLogs.listFailedLogins({ since: new Date(now.getTime() - retention), limit: FAILED_LOGINS_SHOWN }),
  ]);
  env.audit(`failed logins and login blocks on the admin console: ${blocks.length} blocks, ${failures.length} failed logins shown`);
  const guard = ctx.services.get('login-guard');
  const body = html`<h1>Failed logins &amp; blocks</h1>
<p class="muted">After repeated failed logins an address (IPv6: its /64) or an account is blocked for a while (P7). Records of failed logins are deleted after ${formatDurationWords(retention)}.${guard ? '' : ' The failed-login guard is not running in this server.'}</p>
<h2>Blocks in force</h2>
${
  blocks.length === 0
    ? html`<p>No blocks.</p>`
    : html`<table>
<thead><tr><th>Kind</th><th>Subject</th><th>Since (UTC)</th><th>Until (UTC)</th><th class="num">Remaining</th><th class="num">Failures</th><th></th></tr></thead>
<tbody>
${blocks.map(
  (b) => html`<tr>
<td>${b.kind === 'ip' ? 'address' : 'account'}</td>
<td class="mono">${b.subject}</td>
<td>${utc(b.createdAt)}</td>
<td>${utc(b.expiresAt)}</td>
<td class="num">${formatDurationShort(b.expiresAt.getTime() - now.getTime())}</td>
<td class="num">${b.failures}</td>
<td><form class="inline" method="post" action="/blocks/lift">${csrfField(admin.csrf)}<input type="hidden" name="kind" value="${b.kind}"><input type="hidden" name="subject" value="${b.subject}"><button type="submit">Lift</button></form></td>
</tr>`,
)}
</tbody>
</table>
<form method="post" action="/blocks/lift-all">${csrfField(admin.csrf)}<button class="secondary" type="submit">${blocks.length === 1 ? 'Lift it' : `Lift all ${blocks.length} blocks`}</button></form>`
}
<h2>Failed logins and registrations</h2>
${
  failures.length === 0
    ? html`<p>None in the last ${formatDurationWords(retention)}.</p>`
    : html`<table>
<thead><tr><th>Time (UTC)</th><th>IP</th><th>Host</th><th>Account tried</th><th>Kind</th><th>Mechanism</th><th>Condition</th></tr></thead>
<tbody>
${failures.map(
  (f) => html`<tr><td>${utc(f.at)}</td><td class="mono">${f.ip}</td><td class="mono">${f.host}</td><td class="mono">${f.username ?? html`<span class="muted">—</span>`}</td><td>${f.kind === 'auth' ? 'login' : 'registration'}</td><td>${f.mechanism}</td><td>${f.condition}</td></tr>`,
)}
</tbody>
</table>
${failures.length >= FAILED_LOGINS_SHOWN ? html`<p class="muted">The newest ${FAILED_LOGINS_SHOWN} are shown.</p>` : ''}`
}`;
  return { title: 'Failed logins & blocks', body };
}

/** Lifts one block (both in storage and in the running guard); true if there was one. */
async function liftBlock(ctx: ServerContext, adminJid: string, kind: string, subject: string): Promise<boolean> {
  if (kind !== 'ip' && kind !== 'account') return false;
  if (!subject || subject.length > 600) return false;
  const lifted = await ctx.storage.privacyLogs.liftBlock(kind as BlockKind, subject);
  if (lifted) {
    ctx.log.child('admin-http').info('admin lifted a login block', { admin: adminJid, kind, subject });
    await ctx.services.get('login-guard')?.poll();
  }
  return lifted;
}

async function liftAllBlocks(ctx: ServerContext, adminJid: string): Promise<number> {
  const n = await ctx.storage.privacyLogs.liftAllBlocks();
  ctx.log.child('admin-http').info('admin lifted all login blocks', { admin: adminJid, count: n });
  await ctx.services.get('login-guard')?.poll();
  return n;
}

export const blocksPage: AdminPage = { path: '/blocks', nav: { label: 'Failed logins & blocks', order: 30 }, render: renderBlocks };

export const blockActions: readonly AdminAction[] = [
  {
    path: '/blocks/lift',
    async run(env, form) {
      const subject = form.get('subject') ?? '';
      const lifted = await liftBlock(env.ctx, env.admin.jid, form.get('kind') ?? '', subject);
      return { redirect: '/blocks', flash: lifted ? `Lifted the block of ${subject}.` : `There was no block for ${subject}.` };
    },
  },
  {
    path: '/blocks/lift-all',
    async run(env) {
      const n = await liftAllBlocks(env.ctx, env.admin.jid);
      return { redirect: '/blocks', flash: `Lifted ${n} block${n === 1 ? '' : 's'}.` };
    },
  },
];
