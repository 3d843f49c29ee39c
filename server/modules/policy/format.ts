/** Numbers, durations, dates and lists as the policy texts write them, in German and English. */

export type Lang = 'de' | 'en';
export const LANGS: readonly Lang[] = ['de', 'en'];

/** The policy document model: plain text only (no markup inside), escaped by each renderer. */
export type Block = { kind: 'h2'; text: string } | { kind: 'p'; text: string } | { kind: 'ul'; items: string[] };

export interface PolicyDocument {
  lang: Lang;
  title: string;
  blocks: Block[];
}

export type PolicyTexts = Record<Lang, PolicyDocument>;

export const h2 = (text: string): Block => ({ kind: 'h2', text });
export const p = (text: string): Block => ({ kind: 'p', text });
export const ul = (items: string[]): Block => ({ kind: 'ul', items });

const UNITS = [
  { ms: 86_400_000, en: ['day', 'days'], de: ['Tag', 'Tage', 'Tagen'] },
  { ms: 3_600_000, en: ['hour', 'hours'], de: ['Stunde', 'Stunden', 'Stunden'] },
  { ms: 60_000, en: ['minute', 'minutes'], de: ['Minute', 'Minuten', 'Minuten'] },
  { ms: 1_000, en: ['second', 'seconds'], de: ['Sekunde', 'Sekunden', 'Sekunden'] },
] as const;

/** The largest unit that measures `ms` exactly (48 hours are "2 days"). */
function unitOf(ms: number): { n: number; unit: (typeof UNITS)[number] } {
  for (const unit of UNITS) if (ms % unit.ms === 0) return { n: ms / unit.ms, unit };
  const unit = UNITS[UNITS.length - 1]!;
  return { n: Math.ceil(ms / unit.ms), unit };
}

/** "1 day", "48 hours" → "2 days", "90 minutes". */
export function durationEn(ms: number): string {
  const { n, unit } = unitOf(ms);
  return `${n} ${n === 1 ? unit.en[0] : unit.en[1]}`;
}

/** German with its case: nominative/accusative ("2 Tage") or dative ("nach 2 Tagen"). */
export function durationDe(ms: number, grammaticalCase: 'acc' | 'dat' = 'acc'): string {
  const { n, unit } = unitOf(ms);
  return `${n} ${n === 1 ? unit.de[0] : grammaticalCase === 'dat' ? unit.de[2] : unit.de[1]}`;
}

export function duration(ms: number, lang: Lang): string {
  return lang === 'de' ? durationDe(ms) : durationEn(ms);
}

/** "2026-03-01" (UTC). */
export function dateEn(d: Date): string {
  return d.toISOString().slice(0, 10);
}

/** "1.3.2026" (UTC), the way the German seed policy writes dates. */
export function dateDe(d: Date): string {
  return `${d.getUTCDate()}.${d.getUTCMonth() + 1}.${d.getUTCFullYear()}`;
}

export function date(d: Date, lang: Lang): string {
  return lang === 'de' ? dateDe(d) : dateEn(d);
}

/** "a", "a and b", "a, b and c". */
export function list(items: readonly string[], lang: Lang): string {
  const and = lang === 'de' ? 'und' : 'and';
  if (items.length <= 1) return items.join('');
  return `${items.slice(0, -1).join(', ')} ${and} ${items[items.length - 1]}`;
}

/** Counted noun: plural(1, 'Sicherung', 'Sicherungen') → "1 Sicherung". */
export function count(n: number, one: string, many: string): string {
  return `${n} ${n === 1 ? one : many}`;
}
