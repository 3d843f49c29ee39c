/**
 * XEP-0398 section 4 and XEP-0153: the server puts the hash of the account's vCard PHOTO into the
 * available presence its clients send, broadcast and directed, as contacts' clients see it; and
 * broadcasts it again when the avatar changes (a vCard set or an XEP-0084 publish).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { ensureAccount, loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { publish, roundTrip } from './pep-helpers.js';

const UPDATE = 'vcard-temp:x:update';
const PNG_A = Buffer.from('89504e470d0a1a0a0000000d49484452000000010000000108060000001f15c489', 'hex');
const PNG_B = Buffer.from('89504e470d0a1a0a0000000d4948445200000002000000020806000000f478d4fa', 'hex');
const sha1 = (b: Buffer) => createHash('sha1').update(b).digest('hex');

/** The x:update elements of a presence, as what each says: the photo text, or null for an x without photo. */
function updates(presence: Element): (string | null)[] {
  return presence.getChildren('x', UPDATE).map((u) => u.getChild('photo')?.text() ?? null);
}

async function subscribed(ts: TestServer, owner: string, contact: string): Promise<void> {
  for (const [a, b] of [
    [owner, contact],
    [contact, owner],
  ] as const) {
    const id = await ensureAccount(ts, a);
    await ts.server.ctx.storage.roster.put(id, { jid: `${b}@localhost`, name: null, subscription: 'both', ask: false, pendingIn: false, approved: false, groups: [] });
  }
}

describe('avatar hash in presence (XEP-0398, XEP-0153)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer();
  });
  after(async () => {
    await ts.stop();
  });

  test('XEP-0398 every available presence gets the hash of the vCard PHOTO (empty <photo/> without one); an x without photo and another hash are replaced; an empty <photo/> from the client stays', async () => {
    await subscribed(ts, 'avi', 'cora');
    const cora = await loginAs(ts, 'cora');
    cora.send(x('presence'));
    await cora.expect((el) => el.name === 'presence' && el.attrs.from === cora.jid);
    const avi = await loginAs(ts, 'avi');
    const fromAvi = (el: Element) => el.name === 'presence' && el.attrs.from === avi.jid && el.attrs.type === undefined;

    avi.send(x('presence', {}, x('show', {}, 'chat')));
    let seen = await cora.expect(fromAvi);
    assert.deepEqual(updates(seen), [''], 'no avatar: an empty photo');
    assert.equal(seen.getChildText('show'), 'chat', 'the rest of the presence is untouched');
    await avi.expect(fromAvi); // its own copy

    // The avatar set through the vCard: contacts see the presence again, with the new hash.
    const vcard = x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Avi'), x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, PNG_A.toString('base64'))));
    assert.equal((await avi.iq(x('iq', { type: 'set' }, vcard))).attrs.type, 'result');
    seen = await cora.expect(fromAvi);
    assert.deepEqual(updates(seen), [sha1(PNG_A)]);
    assert.equal(seen.getChildText('show'), 'chat', 'the presence sent again is the last one the client sent');
    await avi.expect(fromAvi);

    avi.send(x('presence', {}, x('x', { xmlns: UPDATE })));
    assert.deepEqual(updates(await cora.expect(fromAvi)), [sha1(PNG_A)], 'an x without photo is overwritten');
    avi.send(x('presence', {}, x('x', { xmlns: UPDATE }, x('photo', {}, 'da39a3ee5e6b4b0d3255bfef95601890afd80709'))));
    assert.deepEqual(updates(await cora.expect(fromAvi)), [sha1(PNG_A)], 'a hash that is not the vCard photo is replaced');
    avi.send(x('presence', {}, x('x', { xmlns: UPDATE }, x('photo'))));
    assert.deepEqual(updates(await cora.expect(fromAvi)), [''], 'the client said "no avatar": left as it is');

    // A probe is answered with the stored presence, as the server broadcast it.
    avi.send(x('presence'));
    await cora.expect(fromAvi);
    const cora2 = await loginAs(ts, 'cora', 'second');
    cora2.send(x('presence'));
    assert.deepEqual(updates(await cora2.expect(fromAvi)), [sha1(PNG_A)]);

    // Directed presence (a MUC join, here a local stranger's resource) carries it too.
    const stranger = await loginAs(ts, 'stray');
    stranger.send(x('presence'));
    await stranger.expect((el) => el.name === 'presence' && el.attrs.from === stranger.jid);
    avi.send(x('presence', { to: stranger.jid }));
    assert.deepEqual(updates(await stranger.expect(fromAvi)), [sha1(PNG_A)]);

    // The avatar published with XEP-0084: the vCard follows (XEP-0398 3.1) and so does the presence.
    const id = sha1(PNG_B);
    assert.equal((await avi.iq(publish('urn:xmpp:avatar:data', x('data', { xmlns: 'urn:xmpp:avatar:data' }, PNG_B.toString('base64')), id))).attrs.type, 'result');
    const meta = x('metadata', { xmlns: 'urn:xmpp:avatar:metadata' }, x('info', { id, bytes: String(PNG_B.length), type: 'image/png' }));
    const published = avi.iq(publish('urn:xmpp:avatar:metadata', meta, id));
    seen = await cora.expect(fromAvi);
    assert.deepEqual(updates(seen), [id]);
    assert.equal((await published).attrs.type, 'result');
    assert.deepEqual(updates(await cora2.expect(fromAvi)), [id]);

    // The avatar removed: an empty photo.
    const none = avi.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Avi'))));
    assert.deepEqual(updates(await cora.expect(fromAvi)), ['']);
    assert.equal((await none).attrs.type, 'result');
    for (const c of [avi, cora, cora2, stranger]) await c.close();
  });

  test('the hash is read from the stored vCard at login, and a client that says "no avatar" is not sent again when the avatar changes', async () => {
    await subscribed(ts, 'bea', 'dov');
    const beaId = await ensureAccount(ts, 'bea');
    const card = x('vCard', { xmlns: NS.vcard }, x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, PNG_B.toString('base64'))));
    await ts.server.ctx.storage.vcards.set(beaId, 'vcard', card.toString());
    const dov = await loginAs(ts, 'dov');
    dov.send(x('presence'));
    await dov.expect((el) => el.name === 'presence' && el.attrs.from === dov.jid);
    const bea = await loginAs(ts, 'bea');
    const fromBea = (el: Element) => el.name === 'presence' && el.attrs.from === bea.jid && el.attrs.type === undefined;
    bea.send(x('presence'));
    assert.deepEqual(updates(await dov.expect(fromBea)), [sha1(PNG_B)]);

    bea.send(x('presence', {}, x('x', { xmlns: UPDATE }, x('photo'))));
    assert.deepEqual(updates(await dov.expect(fromBea)), ['']);
    const vcard = x('vCard', { xmlns: NS.vcard }, x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, PNG_A.toString('base64'))));
    assert.equal((await bea.iq(x('iq', { type: 'set' }, vcard))).attrs.type, 'result');
    // Anything the change made the server send dov was written before the result bea got; a round
    // trip on dov's stream after that brings it in.
    await roundTrip(dov);
    assert.equal(dov.received.some(fromBea), false, 'no presence sent again on its behalf');
    for (const c of [bea, dov]) await c.close();
  });
});

describe('avatar hash in presence turned off (vcard.avatarHashInPresence: false)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ config: { vcard: { avatarHashInPresence: false } } });
  });
  after(async () => {
    await ts.stop();
  });

  test('P19 presence passes as the client sent it: its own x:update unchanged, none added, nothing sent again when the vCard photo changes', async () => {
    await subscribed(ts, 'eli', 'fay');
    const eliId = await ensureAccount(ts, 'eli');
    const card = x('vCard', { xmlns: NS.vcard }, x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, PNG_A.toString('base64'))));
    await ts.server.ctx.storage.vcards.set(eliId, 'vcard', card.toString());
    const fay = await loginAs(ts, 'fay');
    fay.send(x('presence'));
    await fay.expect((el) => el.name === 'presence' && el.attrs.from === fay.jid);
    const eli = await loginAs(ts, 'eli');
    const fromEli = (el: Element) => el.name === 'presence' && el.attrs.from === eli.jid && el.attrs.type === undefined;

    eli.send(x('presence'));
    assert.deepEqual(updates(await fay.expect(fromEli)), [], 'no x:update added although the vCard has a photo');
    const own = 'da39a3ee5e6b4b0d3255bfef95601890afd80709';
    eli.send(x('presence', {}, x('x', { xmlns: UPDATE }, x('photo', {}, own))));
    assert.deepEqual(updates(await fay.expect(fromEli)), [own], "the client's own hash passes unchanged");

    const vcard = x('vCard', { xmlns: NS.vcard }, x('PHOTO', {}, x('TYPE', {}, 'image/png'), x('BINVAL', {}, PNG_B.toString('base64'))));
    assert.equal((await eli.iq(x('iq', { type: 'set' }, vcard))).attrs.type, 'result');
    await roundTrip(fay);
    assert.equal(fay.received.some(fromEli), false, 'no presence sent again on its behalf');
    for (const c of [eli, fay]) await c.close();
  });
});
