/**
 * RFC 6121 Appendix A, row by row. The appendix has eight tables: A.2.1-A.2.4 for the stanzas a
 * user sends (subscribe, unsubscribe, subscribed, unsubscribed: "Route?" column) and A.3.1-A.3.4
 * for the ones a user's server receives ("Deliver?" column). The expectations below are written
 * out from the RFC, independently of the implementation's tables, plus what sections 3.1-3.4 say
 * about roster pushes, presence and pre-approval for each row.
 */
import { test, describe } from 'node:test';
import assert from 'node:assert/strict';
import {
  STATE_NAMES,
  fromStateName,
  inbound,
  outbound,
  stateName,
  type PresenceEffect,
  type StateName,
  type SubState,
  type SubscriptionStanza,
} from '../../server/core/subscription-states.js';

/** [existing state, route/deliver?, new state ('-' = no state change), roster push?, presence, extra] */
type Expect = [StateName, boolean, StateName | '-', boolean, PresenceEffect, { approved?: boolean; autoReply?: 'subscribed' }?];

const A_2_1: Expect[] = [
  ['None', true, 'None + Pending Out', true, 'none'],
  ['None + Pending Out', true, '-', false, 'none'],
  ['None + Pending In', true, 'None + Pending Out+In', true, 'none'],
  ['None + Pending Out+In', true, '-', false, 'none'],
  ['To', true, '-', false, 'none'],
  ['To + Pending In', true, '-', false, 'none'],
  ['From', true, 'From + Pending Out', true, 'none'],
  ['From + Pending Out', true, '-', false, 'none'],
  ['Both', true, '-', false, 'none'],
];

const A_2_2: Expect[] = [
  ['None', true, '-', false, 'none'],
  ['None + Pending Out', true, 'None', true, 'none'],
  ['None + Pending In', true, '-', false, 'none'],
  ['None + Pending Out+In', true, 'None + Pending In', true, 'none'],
  ['To', true, 'None', true, 'none'],
  ['To + Pending In', true, 'None + Pending In', true, 'none'],
  ['From', true, '-', false, 'none'],
  ['From + Pending Out', true, 'From', true, 'none'],
  ['Both', true, 'From', true, 'none'],
];

/** "no" + "no state change" rows without a subscription from the contact become pre-approvals (3.4.2). */
const A_2_3: Expect[] = [
  ['None', false, '-', true, 'none', { approved: true }],
  ['None + Pending Out', false, '-', true, 'none', { approved: true }],
  ['None + Pending In', true, 'From', true, 'available'],
  ['None + Pending Out+In', true, 'From + Pending Out', true, 'available'],
  ['To', false, '-', true, 'none', { approved: true }],
  ['To + Pending In', true, 'Both', true, 'available'],
  ['From', false, '-', false, 'none'],
  ['From + Pending Out', false, '-', false, 'none'],
  ['Both', false, '-', false, 'none'],
];

const A_2_4: Expect[] = [
  ['None', false, '-', false, 'none'],
  ['None + Pending Out', false, '-', false, 'none'],
  ['None + Pending In', true, 'None', false, 'none'],
  ['None + Pending Out+In', true, 'None + Pending Out', false, 'none'],
  ['To', false, '-', false, 'none'],
  ['To + Pending In', true, 'To', false, 'none'],
  ['From', true, 'None', true, 'unavailable'],
  ['From + Pending Out', true, 'None + Pending Out', true, 'unavailable'],
  ['Both', true, 'To', true, 'unavailable'],
];

/** From / From + Pending Out / Both: the server replies "subscribed" itself (3.1.3). */
const A_3_1: Expect[] = [
  ['None', true, 'None + Pending In', false, 'none'],
  ['None + Pending Out', true, 'None + Pending Out+In', false, 'none'],
  ['None + Pending In', false, '-', false, 'none'],
  ['None + Pending Out+In', false, '-', false, 'none'],
  ['To', true, 'To + Pending In', false, 'none'],
  ['To + Pending In', false, '-', false, 'none'],
  ['From', false, '-', false, 'available', { autoReply: 'subscribed' }],
  ['From + Pending Out', false, '-', false, 'available', { autoReply: 'subscribed' }],
  ['Both', false, '-', false, 'available', { autoReply: 'subscribed' }],
];

const A_3_2: Expect[] = [
  ['None', false, '-', false, 'none'],
  ['None + Pending Out', false, '-', false, 'none'],
  ['None + Pending In', true, 'None', false, 'none'],
  ['None + Pending Out+In', true, 'None + Pending Out', false, 'none'],
  ['To', false, '-', false, 'none'],
  ['To + Pending In', true, 'To', false, 'none'],
  ['From', true, 'None', true, 'unavailable'],
  ['From + Pending Out', true, 'None + Pending Out', true, 'unavailable'],
  ['Both', true, 'To', true, 'unavailable'],
];

const A_3_3: Expect[] = [
  ['None', false, '-', false, 'none'],
  ['None + Pending Out', true, 'To', true, 'none'],
  ['None + Pending In', false, '-', false, 'none'],
  ['None + Pending Out+In', true, 'To + Pending In', true, 'none'],
  ['To', false, '-', false, 'none'],
  ['To + Pending In', false, '-', false, 'none'],
  ['From', false, '-', false, 'none'],
  ['From + Pending Out', true, 'Both', true, 'none'],
  ['Both', false, '-', false, 'none'],
];

const A_3_4: Expect[] = [
  ['None', false, '-', false, 'none'],
  ['None + Pending Out', true, 'None', true, 'none'],
  ['None + Pending In', false, '-', false, 'none'],
  ['None + Pending Out+In', true, 'None + Pending In', true, 'none'],
  ['To', true, 'None', true, 'none'],
  ['To + Pending In', true, 'None + Pending In', true, 'none'],
  ['From', false, '-', false, 'none'],
  ['From + Pending Out', true, 'From', true, 'none'],
  ['Both', true, 'From', true, 'none'],
];

const TABLES: { id: string; direction: 'outbound' | 'inbound'; type: SubscriptionStanza; rows: Expect[] }[] = [
  { id: 'A.2.1', direction: 'outbound', type: 'subscribe', rows: A_2_1 },
  { id: 'A.2.2', direction: 'outbound', type: 'unsubscribe', rows: A_2_2 },
  { id: 'A.2.3', direction: 'outbound', type: 'subscribed', rows: A_2_3 },
  { id: 'A.2.4', direction: 'outbound', type: 'unsubscribed', rows: A_2_4 },
  { id: 'A.3.1', direction: 'inbound', type: 'subscribe', rows: A_3_1 },
  { id: 'A.3.2', direction: 'inbound', type: 'unsubscribe', rows: A_3_2 },
  { id: 'A.3.3', direction: 'inbound', type: 'subscribed', rows: A_3_3 },
  { id: 'A.3.4', direction: 'inbound', type: 'unsubscribed', rows: A_3_4 },
];

for (const table of TABLES) {
  describe(`RFC 6121 ${table.id}: ${table.direction} ${table.type}`, () => {
    test(`${table.id} lists every one of the nine states once`, () => {
      assert.deepEqual(table.rows.map((r) => r[0]).sort(), [...STATE_NAMES].sort());
    });
    for (const [existing, route, next, push, presence, extra] of table.rows) {
      const verb = table.direction === 'outbound' ? 'routed' : 'delivered';
      const title = `${table.id} ${table.type} in state "${existing}": ${route ? verb : 'not ' + verb}, ${next === '-' ? 'no state change' : '-> "' + next + '"'}`;
      test(title, () => {
        const before = fromStateName(existing);
        const t = table.direction === 'outbound' ? outbound(before, table.type) : inbound(before, table.type);
        assert.equal(t.table, table.id);
        assert.equal(t.from, existing);
        assert.equal(t.route, route, 'route/deliver');
        assert.equal(t.to, next === '-' ? existing : next, 'new state');
        assert.equal(t.rosterPush, push, 'roster push');
        assert.equal(t.presence, presence, 'presence effect');
        assert.equal(t.state.approved, extra?.approved ?? false, 'pre-approval');
        assert.equal(t.autoReply, extra?.autoReply, 'automatic reply');
        assert.equal(t.changed, next !== '-' || (extra?.approved ?? false), 'stored item changes');
      });
    }
  });
}

describe('RFC 6121 3.4 subscription pre-approval', () => {
  const approved = (name: StateName): SubState => ({ ...fromStateName(name), approved: true });

  test('3.4 a pre-approved contact subscribing in "None" is approved at once: "From", not delivered', () => {
    const t = inbound(approved('None'), 'subscribe');
    assert.equal(t.to, 'From');
    assert.equal(t.route, false);
    assert.equal(t.autoReply, 'subscribed');
    assert.equal(t.rosterPush, true);
    assert.equal(t.presence, 'available');
    assert.equal(t.state.approved, false);
  });

  test('3.4 pre-approved in "None + Pending Out" -> "From + Pending Out"; in "To" -> "Both"', () => {
    assert.equal(inbound(approved('None + Pending Out'), 'subscribe').to, 'From + Pending Out');
    const t = inbound(approved('To'), 'subscribe');
    assert.equal(t.to, 'Both');
    assert.equal(t.autoReply, 'subscribed');
  });

  test('3.4 a second "subscribed" while pre-approved changes nothing', () => {
    const t = outbound(approved('None'), 'subscribed');
    assert.equal(t.changed, false);
    assert.equal(t.rosterPush, false);
    assert.equal(t.route, false);
  });

  test('3.4 "unsubscribed" cancels a pre-approval without routing', () => {
    const t = outbound(approved('To'), 'unsubscribed');
    assert.equal(t.state.approved, false);
    assert.equal(t.to, 'To');
    assert.equal(t.rosterPush, true);
    assert.equal(t.route, false);
  });

  test('3.4 the pre-approval survives a subscribe and an inbound unsubscribed', () => {
    assert.equal(outbound(approved('None'), 'subscribe').state.approved, true);
    assert.equal(inbound(approved('None + Pending Out'), 'unsubscribed').state.approved, true);
  });
});

describe('RFC 6121 A.1 defined states', () => {
  test('A.1 the nine states round-trip through the stored shape', () => {
    for (const name of STATE_NAMES) assert.equal(stateName(fromStateName(name)), name);
  });
});
