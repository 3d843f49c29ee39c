/**
 * Overview: how long the server runs, how many sessions are online, the hosts and the components
 * (transports) connected. Counts only: no JID or IP, so no audit record is needed.
 */
import { html, utc, type PageEnv, type PageResult } from './layout.js';
import { inForce } from '../../modules/policy/versions.js';
import { formatDurationShort } from '../../../shared/format.js';

export interface ComponentState {
  /** Configured component domains → when they connected (null: not connected). */
  connected: Map<string, Date | null>;
}

export async function overviewPage(env: PageEnv, components: ComponentState): Promise<PageResult> {
  const { ctx, now } = env;
  const uptime = now.getTime() - ctx.startedAt.getTime();
  const sessions = [...ctx.sessions.all()];
  const accounts = new Set(sessions.map((s) => s.jid.bare)).size;
  const perHost = new Map<string, number>(ctx.config.hosts.map((h) => [h.domain, 0]));
  for (const s of sessions) perHost.set(s.jid.domain, (perHost.get(s.jid.domain) ?? 0) + 1);
  const blocks = await ctx.storage.privacyLogs.listBlocks(now).catch(() => null);
  const versions = await ctx.storage.policyVersions.list().catch(() => null);
  const policy = versions ? inForce(versions, now) : null;
  const domains = [...components.connected.keys()].sort();
  const online = domains.filter((d) => components.connected.get(d));

  const card = (value: unknown, label: string, href?: string) =>
    html`<div class="card"><div class="value">${href ? html`<a href="${href}">${value}</a>` : value}</div><div class="label">${label}</div></div>`;

  const body = html`<h1>Overview</h1>
<div class="cards">
${card(formatDurationShort(uptime), `up since ${utc(ctx.startedAt)} UTC`)}
${card(sessions.length, `client sessions online (${accounts} account${accounts === 1 ? '' : 's'})`, '/sessions')}
${card(ctx.config.hosts.length, ctx.config.hosts.length === 1 ? 'host' : 'hosts')}
${card(`${online.length} / ${domains.length}`, 'components connected')}
${card(blocks ? blocks.length : '?', 'login blocks in force', '/blocks')}
${card(policy ? `v${policy.id}` : '—', 'privacy policy in force', '/policy')}
</div>
<h2>Hosts</h2>
<table>
<thead><tr><th>Domain</th><th>Registration</th><th class="num">Sessions online</th></tr></thead>
<tbody>
${ctx.config.hosts.map(
  (h) =>
    html`<tr><td class="mono">${h.domain}</td><td>${typeof h.registration === 'string' ? h.registration : `from ${h.registration.allow.join(', ')}`}</td><td class="num">${perHost.get(h.domain) ?? 0}</td></tr>`,
)}
</tbody>
</table>
<h2>Components</h2>
${
  domains.length === 0
    ? html`<p class="muted">No components (transports) are configured.</p>`
    : html`<table>
<thead><tr><th>Domain</th><th>State</th></tr></thead>
<tbody>
${domains.map((d) => {
  const since = components.connected.get(d);
  return html`<tr><td class="mono">${d}</td><td>${since ? `connected since ${utc(since)} UTC` : html`<span class="muted">not connected</span>`}</td></tr>`;
})}
</tbody>
</table>`
}
<h2>Process</h2>
<table>
<tbody>
<tr><th>Node.js</th><td>${process.version}</td></tr>
<tr><th>Memory (resident)</th><td>${Math.round(process.memoryUsage.rss() / 1048576)} MiB</td></tr>
<tr><th>Server time</th><td>${utc(now)} UTC</td></tr>
</tbody>
</table>`;
  return { title: 'Overview', body };
}
