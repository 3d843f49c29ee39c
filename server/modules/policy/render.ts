/**
 * The privacy policy, generated from the live configuration (P22).
 *
 * configuration → PolicyFacts (facts.ts: every number and setting the policy states) → one PolicyDocument
 * per language (texts-de.ts, texts-en.ts: headings, paragraphs, lists, in the order of the seed
 * policy) → Markdown or HTML. The hash of the documents identifies a policy version: a
 * configuration change that changes any sentence changes the hash and must be announced.
 *
 * Dates (in force since, upcoming change) are not part of the documents, so they are not hashed:
 * they belong to the stored version and are added around the document when it is shown.
 */
import { createHash } from 'node:crypto';
import type { Config } from '../../config/index.js';
import { factsFromConfig, type PolicyFacts } from './facts.js';
import { LANGS, date, type Block, type Lang, type PolicyTexts } from './format.js';
import { policyDe } from './texts-de.js';
import { policyEn } from './texts-en.js';

export type { Lang } from './format.js';

// ---------------------------------------------------------------------------------------------
// The document model (format.ts): plain text only, so both renderers can escape everything.

export type { PolicyTexts } from './format.js';

export function renderTexts(facts: PolicyFacts): PolicyTexts {
  return { de: policyDe(facts), en: policyEn(facts) };
}

/** SHA-256 (hex) of the documents in every language. */
export function policyHash(texts: PolicyTexts): string {
  const canonical = JSON.stringify(LANGS.map((l) => [l, texts[l].title, texts[l].blocks]));
  return createHash('sha256').update(canonical, 'utf8').digest('hex');
}

/** The policy the configuration describes: its facts, its texts and their hash. */
export function policyFromConfig(config: Config): { facts: PolicyFacts; texts: PolicyTexts; hash: string } {
  const facts = factsFromConfig(config);
  const texts = renderTexts(facts);
  return { facts, texts, hash: policyHash(texts) };
}

// ---------------------------------------------------------------------------------------------
// Showing a version: the document plus its dates and notices.

export interface ShownVersion {
  /** null: a draft rendered from the configuration, not stored. */
  id: number | null;
  effectiveAt: Date;
  announcedAt: Date;
  technicalReason: string | null;
  texts: PolicyTexts;
}

export interface PolicyView {
  /** The version in force. */
  current: ShownVersion;
  /** Announced versions not yet in force, soonest first. */
  upcoming: ShownVersion[];
}

const LABELS = {
  en: {
    inForce: (d: string, v: number) => `In force since ${d} (version ${v}).`,
    draft: 'Draft generated from the server configuration; not announced.',
    notice: (d: string, a: string) => `Announced change: a new version of this policy takes effect on ${d} (announced on ${a}). Until then the version below stays in force; the new text follows after it.`,
    technical: (r: string) => `It takes effect on shorter notice than four weeks for technical reasons: ${r}`,
    upcomingHeading: (d: string, v: number | null) => `New version, in force from ${d} (version ${v})`,
  },
  de: {
    inForce: (d: string, v: number) => `Gültig seit ${d} (Version ${v}).`,
    draft: 'Entwurf aus der Serverkonfiguration; nicht angekündigt.',
    notice: (d: string, a: string) => `Angekündigte Änderung: Ab ${d} gilt eine neue Fassung dieser Erklärung (angekündigt am ${a}). Bis dahin gilt die folgende Fassung; der neue Text steht im Anschluss.`,
    technical: (r: string) => `Sie tritt aus technischen Gründen mit kürzerer Frist als vier Wochen in Kraft: ${r}`,
    upcomingHeading: (d: string, v: number | null) => `Neue Fassung, gültig ab ${d} (Version ${v})`,
  },
} as const;

function statusLine(v: ShownVersion, lang: Lang): string {
  return v.id === null ? LABELS[lang].draft : LABELS[lang].inForce(date(v.effectiveAt, lang), v.id);
}

/** A short paragraph list describing the upcoming versions (also used by other pages). */
export function upcomingNotices(view: PolicyView, lang: Lang): string[] {
  const L = LABELS[lang];
  return view.upcoming.map((u) => {
    const base = L.notice(date(u.effectiveAt, lang), date(u.announcedAt, lang));
    return u.technicalReason ? `${base} ${L.technical(u.technicalReason)}` : base;
  });
}

// ---- Markdown ----

/** Escapes Markdown punctuation so that configured text (domains, contact) is shown literally. */
export function escapeMarkdown(s: string): string {
  return s.replace(/[\\`*_[\]<>#|]/g, (c) => `\\${c}`).replace(/\r?\n/g, ' ');
}

function blocksToMarkdown(blocks: Block[], headingLevel: number): string[] {
  const out: string[] = [];
  const hashes = '#'.repeat(headingLevel);
  for (const b of blocks) {
    if (b.kind === 'h2') out.push(`${hashes} ${escapeMarkdown(b.text)}`);
    else if (b.kind === 'p') out.push(escapeMarkdown(b.text));
    else out.push(b.items.map((i) => `- ${escapeMarkdown(i)}`).join('\n'));
  }
  return out;
}

export function toMarkdown(view: PolicyView, lang: Lang): string {
  const L = LABELS[lang];
  const doc = view.current.texts[lang];
  const parts = [`# ${escapeMarkdown(doc.title)}`, `_${escapeMarkdown(statusLine(view.current, lang))}_`];
  for (const n of upcomingNotices(view, lang)) parts.push(`> **${escapeMarkdown(n)}**`);
  parts.push(...blocksToMarkdown(doc.blocks, 2));
  for (const u of view.upcoming) {
    parts.push('---', `## ${escapeMarkdown(L.upcomingHeading(date(u.effectiveAt, lang), u.id))}`);
    parts.push(...blocksToMarkdown(u.texts[lang].blocks, 3));
  }
  return parts.join('\n\n') + '\n';
}

// ---- HTML ----

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);
}

const LINK = /\b(?:https?:\/\/|mailto:|xmpp:)[^\s<>"']+/gi;

/** Escaped text with http(s), mailto and xmpp URLs turned into links (trailing punctuation excluded). */
export function inlineHtml(s: string): string {
  let out = '';
  let last = 0;
  for (const m of s.matchAll(LINK)) {
    const url = m[0].replace(/[.,;:!?)]+$/, '');
    const start = m.index!;
    out += escapeHtml(s.slice(last, start));
    out += `<a href="${escapeHtml(url)}">${escapeHtml(url)}</a>`;
    last = start + url.length;
  }
  return out + escapeHtml(s.slice(last));
}

function blocksToHtml(blocks: Block[], headingLevel: number): string[] {
  return blocks.map((b) => {
    if (b.kind === 'h2') return `<h${headingLevel}>${escapeHtml(b.text)}</h${headingLevel}>`;
    if (b.kind === 'p') return `<p>${inlineHtml(b.text)}</p>`;
    return `<ul>\n${b.items.map((i) => `  <li>${inlineHtml(i)}</li>`).join('\n')}\n</ul>`;
  });
}

export function toHtml(view: PolicyView, lang: Lang): string {
  const L = LABELS[lang];
  const doc = view.current.texts[lang];
  const body = [`<h1>${escapeHtml(doc.title)}</h1>`, `<p class="in-force"><em>${escapeHtml(statusLine(view.current, lang))}</em></p>`];
  for (const n of upcomingNotices(view, lang)) body.push(`<aside class="policy-change"><p><strong>${escapeHtml(n)}</strong></p></aside>`);
  body.push(...blocksToHtml(doc.blocks, 2));
  for (const u of view.upcoming) {
    body.push(`<hr>`, `<section class="upcoming">`, `<h2>${escapeHtml(L.upcomingHeading(date(u.effectiveAt, lang), u.id))}</h2>`, ...blocksToHtml(u.texts[lang].blocks, 3), `</section>`);
  }
  return [
    '<!DOCTYPE html>',
    `<html lang="${lang}">`,
    '<head>',
    '<meta charset="utf-8">',
    '<meta name="viewport" content="width=device-width, initial-scale=1">',
    `<title>${escapeHtml(doc.title)}</title>`,
    '</head>',
    '<body>',
    '<main>',
    ...body,
    '</main>',
    '</body>',
    '</html>',
    '',
  ].join('\n');
}

export function renderView(view: PolicyView, lang: Lang, format: 'md' | 'html'): string {
  return format === 'html' ? toHtml(view, lang) : toMarkdown(view, lang);
}
