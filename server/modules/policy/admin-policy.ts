/**
 * The console page /policy of the privacy-policy module (P22): the stored versions of the privacy policy with their announcement and effective
 * dates, which one is in force and which are announced, whether the running configuration renders
 * the latest version (or what an announcement would have to announce), and whether users are
 * being told about a change right now, and which parts of the configuration are held back until
 * their change takes effect. No personal data.
 */
import { policyFromConfig } from './render.js';
import { announcementToNotify } from './announce.js';
import { NOTICE_MS, changesBetween, earliestEffectiveDay, inForce, upcoming } from './versions.js';
import type { AdminPage } from '../../admin/contract.js';
import { html, utc, type PageEnv, type PageResult } from '../../admin/pages/layout.js';

async function renderPolicy(env: PageEnv): Promise<PageResult> {
  const { ctx, now } = env;
  const versions = await ctx.storage.policyVersions.list();
  const current = inForce(versions, now);
  const pending = new Set(upcoming(versions, now).map((v) => v.id));
  // The file's configuration: what an announcement would publish (ctx.config is the one in force).
  const config = policyFromConfig(ctx.configInForce.file);
  const held = ctx.services.get('policy')?.held() ?? [];
  const latest = versions.at(-1) ?? null;
  const notifying = announcementToNotify(versions, now);

  const state = (id: number, effective: Date): string => {
    if (current && id === current.id) return 'in force';
    if (pending.has(id)) return `announced: takes effect ${utc(effective)} UTC`;
    if (effective.getTime() > now.getTime()) return 'superseded before it took effect';
    return current && id < current.id ? 'replaced' : 'not in force';
  };

  let status;
  if (!latest) {
    status = html`<p class="error">No policy version is stored yet: the privacy-policy module stores the first one when the server starts. The public page shows a draft meanwhile.</p>`;
  } else if (latest.hash === config.hash) {
    status = html`<p class="flash">The running configuration renders version ${latest.id}, the latest one.</p>`;
  } else {
    const same = [...versions].reverse().find((v) => v.hash === config.hash);
    const changes = changesBetween(latest, config, 'en', 'operator');
    status = html`<div class="error"><p>${
      same ? `The running configuration renders version ${same.id}, not the latest announced version ${latest.id}.` : `The running configuration differs from the latest announced version ${latest.id}.`
    } What differs from version ${latest.id}:</p><ul>${changes.map((c) => html`<li>${c}</li>`)}</ul>
<p>To publish it, announce it on the command line: <code>gatehouse policy announce --effective YYYY-MM-DD</code> (${earliestEffectiveDay(now)} at the earliest, ${Math.round(NOTICE_MS / 86_400_000)} days' notice; sooner only with <code>--technical REASON</code>).</p></div>`;
  }

  const body = html`<h1>Privacy policy</h1>
<p>Published at <a href="/privacy">/privacy</a> (English) and <a href="/datenschutz">/datenschutz</a> (German), also as Markdown (<a href="/privacy?format=md">en</a>, <a href="/datenschutz?format=md">de</a>).</p>
${status}
${
  held.length
    ? html`<h2>Held back</h2>
<p>Parts of the configuration that would change the published policy wait until an announced version allowing them takes effect (the server applies them then, without a restart):</p>
<ul>${held.map((p) => html`<li>${p.change}: ${p.until ? `until ${utc(p.until)} UTC${p.technical ? ' (technical change)' : ''}` : 'until a change is announced'}</li>`)}</ul>`
    : html`<p class="muted">Nothing in the configuration is held back.</p>`
}
${
  notifying
    ? html`<p>Users are being told about version ${notifying.id} (a headline message once per account, when online) until ${utc(new Date(Math.max(notifying.effectiveAt.getTime(), notifying.announcedAt.getTime() + NOTICE_MS)))} UTC.</p>`
    : html`<p class="muted">No announcement is being told to users now.</p>`
}
<h2>Versions</h2>
${
  versions.length === 0
    ? html`<p class="muted">None stored.</p>`
    : html`<table>
<thead><tr><th class="num">Version</th><th>Announced (UTC)</th><th>Effective (UTC)</th><th>Notice</th><th>State</th><th>Technical reason</th></tr></thead>
<tbody>
${[...versions].reverse().map((v) => {
  const days = (v.effectiveAt.getTime() - v.announcedAt.getTime()) / 86_400_000;
  return html`<tr><td class="num">${v.id}</td><td>${utc(v.announcedAt)}</td><td>${utc(v.effectiveAt)}</td><td>${v.id === versions[0]!.id ? 'first version' : `${Math.round(days * 10) / 10} days`}</td><td>${state(v.id, v.effectiveAt)}</td><td>${v.technicalReason ?? ''}</td></tr>`;
})}
</tbody>
</table>`
}`;
  return { title: 'Policy', body };
}

export const policyPage: AdminPage = { path: '/policy', nav: { label: 'Policy', order: 50 }, render: renderPolicy };
