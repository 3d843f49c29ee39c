/**
 * A real web client in a group chat: Converse.js in headless Chromium enters a room on
 * conference.localhost over WebSocket, sees the other occupant, gets the subject (and, as it asks,
 * no history),
 * talks with a raw-socket client in the room, and creates a room of its own (201, its instant or
 * configured room), which the other client then finds in the service's list.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { startUploadServer } from '../helpers/upload-server.js';
import { skipWithout } from '../helpers/requirements.js';
import { ensureAccount, loginAs } from '../helpers/server.js';
import { startConverse, type ConverseHandle } from '../helpers/converse.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { SERVICE, createInstant } from '../modules/muc-helpers.js';

const skip = skipWithout('chromium');

test('XEP-0045 Converse.js enters a Gatehouse room, gets the subject and no history as it asks, talks with another client, and creates a room', { skip, timeout: 120_000 }, async () => {
  const web = await startUploadServer({ logLevel: 'info' });
  const ts = web.ts;
  let converse: ConverseHandle | null = null;
  try {
    await ensureAccount(ts, 'alice');
    const bob = await loginAs(ts, 'bob');
    const room = `web@${SERVICE}`;
    await createInstant(bob, room, 'Bob', { 'muc#roomconfig_roomname': 'Web room' });
    bob.send(x('message', { type: 'groupchat', to: room }, x('subject', {}, 'Browsers welcome')));
    bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'said before you came')));
    await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'said before you came');

    converse = await startConverse({ websocketUrl: `wss://localhost:${web.port}/xmpp-websocket`, jid: 'alice@localhost', password: 'pw-alice' });
    const entered = await converse.evaluate<{ status: number; nicks: string[]; subject: string; bodies: string[] }>(`(async () => {
      const { u } = window.converse.env;
      const room = await window.gatehouseTest.api.rooms.open(${JSON.stringify(room)}, { nick: 'Alice' }, true);
      await u.waitUntil(() => room.session.get('connection_status') === 5, 15000);
      await u.waitUntil(() => room.get('subject')?.text, 15000);
      return {
        status: room.session.get('connection_status'),
        nicks: room.occupants.map((o) => o.get('nick')).sort(),
        subject: room.get('subject').text,
        bodies: room.messages.map((m) => m.get('body')).filter(Boolean),
      };
    })()`);
    assert.equal(entered.status, 5);
    assert.deepEqual(entered.nicks, ['Alice', 'Bob']);
    assert.equal(entered.subject, 'Browsers welcome');
    // Converse asks for no history (<history maxstanzas='0'/>; it keeps its own): none comes.
    assert.deepEqual(entered.bodies, []);
    await bob.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Alice`);

    // Converse talks; the other client hears it from Alice's occupant JID.
    await converse.evaluate(`(async () => {
      const room = await window.gatehouseTest.api.rooms.get(${JSON.stringify(room)});
      await room.sendMessage({ body: 'hello from the browser' });
      return true;
    })()`);
    const said = await bob.expect((el) => el.name === 'message' && el.getChildText('body') === 'hello from the browser');
    assert.equal(said.attrs.from, `${room}/Alice`);
    // And hears the other client.
    bob.send(x('message', { type: 'groupchat', to: room }, x('body', {}, 'hi Alice')));
    const heard = await converse.evaluate<string>(`(async () => {
      const { u } = window.converse.env;
      const room = await window.gatehouseTest.api.rooms.get(${JSON.stringify(room)});
      await u.waitUntil(() => room.messages.find((m) => m.get('body') === 'hi Alice'), 15000);
      return room.messages.find((m) => m.get('body') === 'hi Alice').get('nick');
    })()`);
    assert.equal(heard, 'Bob');

    // Converse creates a room of its own; it is usable and listed.
    const made = await converse.evaluate<number>(`(async () => {
      const { u } = window.converse.env;
      const room = await window.gatehouseTest.api.rooms.open('fresh@${SERVICE}', { nick: 'Alice' }, true);
      await u.waitUntil(() => room.session.get('connection_status') === 5, 15000);
      return room.session.get('connection_status');
    })()`);
    assert.equal(made, 5);
    const info = await bob.iq(x('iq', { type: 'get', to: `fresh@${SERVICE}` }, x('query', { xmlns: NS.discoInfo })));
    assert.equal(info.attrs.type, 'result', 'the room Converse created is configured (not locked)');
  } finally {
    await converse?.close();
    await web.stop();
  }
});
