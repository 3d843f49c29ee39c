/**
 * The public privacy policy (P22), public pages of the privacy-policy module on the admin HTTP
 * listener: /privacy (English) and /datenschutz (German), HTML by default or Markdown with
 * ?format=md. The page is the stored version in force at this moment, rendered by
 * server/modules/policy/render.ts, with every announced change: a notice with its effective date
 * at the top and the new text after the current one. Until a version is stored (the policy module
 * stores the first one at start), it shows the draft the configuration renders, marked as such.
 */
import type { ServerContext } from '../../core/context.js';
import { policyFromConfig, renderView, type Lang, type PolicyView } from './render.js';
import { viewAt } from './versions.js';
import { AdminHttpError, type PublicPage } from '../../admin/contract.js';
import { CSS, escapeHtml } from '../../admin/pages/layout.js';

const POLICY_PATHS: Record<Lang, string> = { en: '/privacy', de: '/datenschutz' };

const SWITCH: Record<Lang, { other: Lang; label: string; md: string }> = {
  en: { other: 'de', label: 'Deutsch', md: 'Markdown' },
  de: { other: 'en', label: 'English', md: 'Markdown' },
};

async function policyView(ctx: ServerContext, now: Date): Promise<PolicyView> {
  const versions = await ctx.storage.policyVersions.list();
  const view = viewAt(versions, now);
  if (view) return view;
  const { texts } = policyFromConfig(ctx.config);
  return { current: { id: null, effectiveAt: now, announcedAt: now, technicalReason: null, texts }, upcoming: [] };
}

/** The page body and its content type. */
async function privacyPage(ctx: ServerContext, lang: Lang, format: 'html' | 'md', now: Date): Promise<{ type: string; body: string }> {
  const view = await policyView(ctx, now);
  if (format === 'md') return { type: 'text/markdown; charset=utf-8', body: renderView(view, lang, 'md') };
  const s = SWITCH[lang];
  const other = POLICY_PATHS[s.other];
  const head =
    `<link rel="alternate" hreflang="${s.other}" href="${other}">\n` +
    `<link rel="alternate" type="text/markdown" href="${POLICY_PATHS[lang]}?format=md">\n` +
    `<style>${CSS}</style>\n</head>`;
  const nav = `<main class="doc">\n<p class="langs"><a href="${other}" hreflang="${s.other}" lang="${s.other}">${escapeHtml(s.label)}</a> · <a href="${POLICY_PATHS[lang]}?format=md">${escapeHtml(s.md)}</a></p>`;
  const doc = renderView(view, lang, 'html').replace('</head>', () => head).replace('<main>', () => nav);
  return { type: 'text/html; charset=utf-8', body: doc };
}

function publicPolicy(lang: Lang): PublicPage {
  return {
    path: POLICY_PATHS[lang],
    serve({ ctx, url, now }) {
      const format = url.searchParams.get('format') ?? 'html';
      if (format !== 'html' && format !== 'md') throw new AdminHttpError(400, 'format must be html or md');
      return privacyPage(ctx, lang, format, now);
    },
  };
}

export const publicPolicyPages: readonly PublicPage[] = [publicPolicy('en'), publicPolicy('de')];
