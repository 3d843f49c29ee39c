/** The adapters' shared occupant table (transports/kit/occupants.ts): the events the kit gets from it. */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import type { LegacyRoom, LegacySessionEvents, Occupant } from '../../transports/kit/adapter.js';
import { OccupantTable, type OccupantEvent } from '../../transports/kit/occupants.js';

function table(keyOf?: (id: string) => string): { t: OccupantTable; events: [OccupantEvent, ...unknown[]][]; room: LegacyRoom } {
  const room: LegacyRoom = { id: '#chan', server: 'irc.example.org' };
  const events: [OccupantEvent, ...unknown[]][] = [];
  const t = new OccupantTable(room, <K extends OccupantEvent>(event: K, ...args: LegacySessionEvents[K]) => void events.push([event, ...args]), keyOf);
  return { t, events, room };
}

const member = (nick: string, role: Occupant['role'] = 'participant'): Occupant => ({ nick, role, affiliation: role === 'moderator' ? 'admin' : 'member', contact: { id: nick } });

describe('occupant table', () => {
  test('silent until announced; roomJoined gets the whole list', () => {
    const { t, events } = table();
    t.join('u1', member('ann'), undefined);
    t.join('u2', member('bob', 'moderator'), undefined);
    t.update('u1', { nick: 'anna' });
    t.part('u2');
    assert.deepEqual(events, []);
    assert.deepEqual(t.list(), [{ nick: 'anna', role: 'participant', affiliation: 'member', contact: { id: 'ann' } }]);
  });

  test('once announced: joins, nick changes, role changes and parts become the kit events, in that order', () => {
    const { t, events, room } = table();
    t.announced = true;
    t.join('u1', member('ann'), undefined);
    t.join('u1', member('anna', 'moderator'), undefined);
    t.rename('u1', 'u1b', 'ann2');
    t.part('u1b', 'bye', 'op');
    assert.deepEqual(events, [
      ['occupantJoined', room, member('ann')],
      ['nickChanged', room, 'ann', 'anna'],
      ['occupantChanged', room, { nick: 'anna', role: 'moderator', affiliation: 'admin', contact: { id: 'anna' } }],
      ['nickChanged', room, 'anna', 'ann2'],
      ['occupantLeft', room, 'ann2', 'bye', 'op'],
    ]);
    assert.equal(t.size, 0);
    assert.equal(t.idOf('ann2'), undefined);
  });

  test('an update that changes nothing reports nothing; replaceAll is silent', () => {
    const { t, events } = table();
    t.announced = true;
    t.join('u1', member('ann'), undefined);
    events.length = 0;
    t.update('u1', { nick: 'ann', role: 'participant', affiliation: 'member' });
    t.replaceAll([{ id: 'u2', occupant: member('bob'), data: undefined }]);
    assert.deepEqual(events, []);
    assert.deepEqual(t.ids(), ['u2']);
    assert.equal(t.announced, true);
  });

  test('ids compare by keyOf (IRC casemapping); a rename moves the key', () => {
    const { t } = table((id) => id.toLowerCase());
    t.join('Ann', member('Ann'), undefined);
    assert.equal(t.has('ANN'), true);
    t.rename('ann', 'Anna', 'Anna');
    assert.equal(t.has('ann'), false);
    assert.equal(t.get('ANNA')?.id, 'Anna');
    assert.equal(t.idOf('Anna'), 'Anna');
  });

  test('nick conflicts: whoever had a name first keeps it; a nick stays while its base is unchanged', () => {
    const { t } = table();
    const nick = (id: string, base: string, user: string) => t.uniqueNick(id, base, [base, `${base} (${user})`, `${base} (${id})`], () => `${base} (${id}-x)`);
    t.join('1', member(nick('1', 'Ann', 'ann_lee')), undefined, 'Ann');
    t.join('2', member(nick('2', 'Ann', 'ann_b')), undefined, 'Ann');
    assert.deepEqual(t.list().map((o) => o.nick), ['Ann', 'Ann (ann_b)']);
    // The first leaves: the second keeps its nick (its base did not change).
    t.part('1');
    assert.equal(nick('2', 'Ann', 'ann_b'), 'Ann (ann_b)');
    // A new display name: the plain name if it is free.
    assert.equal(nick('2', 'Annie', 'ann_b'), 'Annie');
    t.join('3', member('Bea'), undefined, 'Bea');
    t.join('4', member('Bea (bea)'), undefined, 'Bea');
    assert.equal(nick('6', 'Bea', 'bea'), 'Bea (6)');
    t.join('9', member('Bea (8)'), undefined, 'Bea');
    assert.equal(nick('8', 'Bea', 'bea'), 'Bea (8-x)');
  });
});
