/**
 * XEP-0059 Result Set Management over a list the kit holds whole (a cached room directory): the
 * page a request's <set/> asks for (`max`, `after`, `before`, empty `before` for the last page,
 * `index`), with <first index='…'/>, <last/> and <count/>. Without a <set/> the whole list, unless
 * it is longer than `limit`: then its first `limit` items with a <set/> saying how many there are.
 * An `after` or `before` naming no item of the list is item-not-found (§2.5: the list changed).
 */
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';

export const NS_RSM = 'http://jabber.org/protocol/rsm';

export type Page<T> = { items: T[]; set: Element | null } | { error: 'item-not-found' };

/** The page of `all` that `set` (the request's <set xmlns=rsm/>, if any) asks for; `uid` names an item opaquely and uniquely. */
export function rsmPage<T>(all: readonly T[], uid: (item: T) => string, set: Element | undefined, limit: number): Page<T> {
  if (!set) return all.length <= limit ? { items: [...all], set: null } : withSet(all, uid, 0, limit);
  const asked = wholeNumber(set.getChildText('max'));
  const max = asked === null ? limit : Math.min(asked, limit);
  const after = set.getChild('after');
  const before = set.getChild('before');
  const position = (id: string) => all.findIndex((item) => uid(item) === id);
  if (after && after.text() !== '') {
    const i = position(after.text());
    return i < 0 ? { error: 'item-not-found' } : withSet(all, uid, i + 1, max);
  }
  if (before) {
    const end = before.text() === '' ? all.length : position(before.text());
    if (end < 0) return { error: 'item-not-found' };
    const start = Math.max(0, end - max);
    return withSet(all, uid, start, end - start);
  }
  return withSet(all, uid, wholeNumber(set.getChildText('index')) ?? 0, max);
}

function wholeNumber(text: string | null | undefined): number | null {
  if (text === null || text === undefined || !/^\s*\d+\s*$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}

function withSet<T>(all: readonly T[], uid: (item: T) => string, start: number, count: number): Page<T> {
  const items = all.slice(start, start + Math.max(0, count));
  const set = x('set', { xmlns: NS_RSM });
  if (items.length) {
    set.append(x('first', { index: String(start) }, uid(items[0]!)));
    set.append(x('last', {}, uid(items[items.length - 1]!)));
  }
  set.append(x('count', {}, String(all.length)));
  return { items, set };
}
