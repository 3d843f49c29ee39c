/** A room's history (server/modules/muc/history.ts): what a joining occupant's <history/> selects, and the age limit. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { RoomHistory, historyRequest } from '../../server/modules/muc/history.js';
import { x } from '../../shared/xml/element.js';

const msg = (n: number) => x('message', { type: 'groupchat', from: `r@c/n${n}` }, x('body', {}, `m${n}`));
const bodies = (h: RoomHistory, req: Parameters<RoomHistory['select']>[0], now: number) => h.select(req, now).map((e) => e.stanza.getChildText('body'));

test('XEP-0045 7.2.15 history: the room keeps its last N; maxstanzas, maxchars, seconds and since cut from the newest end', () => {
  const h = new RoomHistory(3, 3_600_000);
  for (let i = 1; i <= 5; i++) h.add(msg(i), `id${i}`, i * 1000);
  assert.deepEqual(bodies(h, {}, 6000), ['m3', 'm4', 'm5']);
  assert.deepEqual(bodies(h, { maxstanzas: 2 }, 6000), ['m4', 'm5']);
  assert.deepEqual(bodies(h, { maxstanzas: 0 }, 6000), []);
  assert.deepEqual(bodies(h, { seconds: 2 }, 6000), ['m4', 'm5']);
  assert.deepEqual(bodies(h, { since: 4000 }, 6000), ['m5']);
  const one = h.select({}, 6000)[2]!.chars;
  assert.deepEqual(bodies(h, { maxchars: one * 2 }, 6000), ['m4', 'm5']);
  assert.deepEqual(bodies(h, { maxchars: one - 1 }, 6000), []);
  h.setLimit(1);
  assert.deepEqual(bodies(h, {}, 6000), ['m5']);
});

test('P11 history older than the maximum age is dropped, and a retraction replaces its message', () => {
  const h = new RoomHistory(10, 60_000);
  h.add(msg(1), 'a', 0);
  h.add(msg(2), 'b', 30_000);
  assert.deepEqual(bodies(h, {}, 59_000), ['m1', 'm2']);
  assert.deepEqual(bodies(h, {}, 61_000), ['m2']);
  assert.ok(h.replace('b', x('message', {}, x('retract'))));
  assert.deepEqual(bodies(h, {}, 61_000), [undefined]);
  h.prune(100_000);
  assert.equal(h.size, 0);
});

test('XEP-0045 <history/> attributes are read as numbers and dates; bad values are ignored', () => {
  assert.deepEqual(historyRequest(x('history', { maxstanzas: '5', maxchars: '100', seconds: '60', since: '2026-01-01T00:00:00Z' })), {
    maxstanzas: 5,
    maxchars: 100,
    seconds: 60,
    since: Date.UTC(2026, 0, 1),
  });
  assert.deepEqual(historyRequest(x('history', { maxstanzas: '-1', seconds: 'x', since: 'yesterday' })), {});
  assert.deepEqual(historyRequest(undefined), {});
});
