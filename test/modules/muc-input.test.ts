/**
 * Bad input to the chat service gets a clear stanza error, never a crash or a hang: presence
 * without a nick, overlong nicks, unknown IQs, malformed admin items and forms, messages to the
 * service itself, an owner form with values out of range, IQs to occupants from outsiders.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, loginAs } from '../helpers/server.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { MUC, MUC_ADMIN, MUC_OWNER, SERVICE, createInstant, errorOf } from './muc-helpers.js';

test('XEP-0045 bad requests to the service, a room or an occupant get stanza errors; the room keeps working', async () => {
  const ts = await startTestServer({ logLevel: 'warn' });
  try {
    const alice = await loginAs(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const room = `rough@${SERVICE}`;
    await createInstant(alice, room, 'Alice');
    const iq = (c: typeof alice, type: string, to: string, child: ReturnType<typeof x>) => c.iq(x('iq', { type, to }, child));

    // Presence without a nick, or with a very long one.
    bob.send(x('presence', { to: room }, x('x', { xmlns: MUC })));
    assert.equal(errorOf(await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'error')), 'jid-malformed');
    bob.send(x('presence', { to: `${room}/${'n'.repeat(300)}` }, x('x', { xmlns: MUC })));
    assert.equal(errorOf(await bob.expect((el) => el.name === 'presence' && el.attrs.type === 'error')), 'not-acceptable');

    // IQs nobody serves, empty IQs, disco nodes that do not exist.
    assert.equal(errorOf(await iq(bob, 'get', SERVICE, x('query', { xmlns: 'jabber:iq:version' }))), 'service-unavailable');
    assert.equal(errorOf(await iq(bob, 'get', room, x('query', { xmlns: 'jabber:iq:last' }))), 'service-unavailable');
    assert.equal(errorOf(await iq(bob, 'get', room, x('query', { xmlns: NS.discoInfo, node: 'nope' }))), 'item-not-found');
    assert.equal(errorOf(await iq(bob, 'get', `nowhere@${SERVICE}`, x('query', { xmlns: NS.discoInfo }))), 'item-not-found');
    assert.equal(errorOf(await iq(bob, 'get', `${room}/Alice`, x('query', { xmlns: 'jabber:iq:version' }))), 'not-acceptable', 'outsiders do not reach occupants');

    // Admin items without what they need, unknown roles and affiliations, bad JIDs.
    assert.equal(errorOf(await iq(alice, 'set', room, x('query', { xmlns: MUC_ADMIN }))), 'bad-request');
    assert.equal(errorOf(await iq(alice, 'set', room, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: 'bob@localhost' })))), 'bad-request');
    assert.equal(errorOf(await iq(alice, 'set', room, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: 'bob@localhost', affiliation: 'king' })))), 'bad-request');
    assert.equal(errorOf(await iq(alice, 'set', room, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: '@@', affiliation: 'member' })))), 'jid-malformed');
    assert.equal(errorOf(await iq(alice, 'set', room, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'Ghost', role: 'visitor' })))), 'item-not-found');
    assert.equal(errorOf(await iq(alice, 'get', room, x('query', { xmlns: MUC_ADMIN }, x('item', { affiliation: 'none' })))), 'bad-request');

    // Owner forms: not a form, a wrong form type, values out of range.
    assert.equal(errorOf(await iq(alice, 'set', room, x('query', { xmlns: MUC_OWNER }))), 'bad-request');
    const form = (...fields: [string, string][]) =>
      x('query', { xmlns: MUC_OWNER }, x('x', { xmlns: NS.dataForms, type: 'submit' }, fields.map(([v, value]) => x('field', { var: v }, x('value', {}, value)))));
    assert.equal(errorOf(await iq(alice, 'set', room, form(['FORM_TYPE', 'urn:other']))), 'bad-request');
    assert.equal(errorOf(await iq(alice, 'set', room, form(['muc#roomconfig_maxusers', '-3']))), 'not-acceptable');
    assert.equal(errorOf(await iq(alice, 'set', room, form(['muc#roomconfig_whois', 'everyone']))), 'not-acceptable');
    assert.equal(errorOf(await iq(alice, 'set', room, form(['muc#roomconfig_passwordprotectedroom', '1']))), 'not-acceptable');
    assert.equal(errorOf(await iq(alice, 'set', room, form(['muc#roomconfig_roomowners', 'not a jid@@']))), 'jid-malformed');
    // Moving ownership through the form: bob becomes the owner, alice an admin.
    assert.equal((await iq(alice, 'set', room, form(['muc#roomconfig_roomowners', 'bob@localhost'], ['muc#roomconfig_roomadmins', 'alice@localhost']))).attrs.type, 'result');
    assert.equal(errorOf(await iq(bob, 'get', room, x('query', { xmlns: MUC_OWNER }))), undefined, 'bob is an owner now');
    assert.equal(errorOf(await iq(alice, 'get', room, x('query', { xmlns: MUC_OWNER }))), 'forbidden', 'alice is an admin now');

    // Messages to the service itself, chat messages to the room.
    alice.send(x('message', { to: SERVICE }, x('body', {}, 'hello service')));
    assert.equal(errorOf(await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error')), 'service-unavailable');
    alice.send(x('message', { to: room, type: 'chat' }, x('body', {}, 'hello room')));
    assert.equal(errorOf(await alice.expect((el) => el.name === 'message' && el.attrs.type === 'error')), 'bad-request');

    // Still working.
    alice.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'still here')));
    await alice.expect((el) => el.name === 'message' && el.getChildText('body') === 'still here');
  } finally {
    await ts.stop();
  }
});
