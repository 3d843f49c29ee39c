/**
 * Explicit subscriptions to PEP nodes (XEP-0060 6.1, 6.2, 5.6, 5.7, 8.8, 8.9 on XEP-0163) over real
 * client connections, with the stanzas Movim and bots send: who may subscribe (the access model,
 * P16; a node the requester may not read answers like one that does not exist, P17), where the
 * notifications go (bare JID or full JID, never twice to one resource), the last item on
 * subscribe, the end of a subscription the access model no longer allows (roster removal,
 * unsubscribed presence, a new access model) with the subscriber told, the owner's lists, erasure
 * with the subscriber's account (P23), the remote subscriptions' retention (P11), and the policy
 * facts (P22): turning pep.subscriptions on is held back until announced.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { ManualClock } from '../../shared/clock.js';
import { parseConfig } from '../../server/config/index.js';
import { pepStorage } from '../../server/modules/pep/storage.js';
import { createPepModule } from '../../server/modules/pep/pep.js';
import { factsFromConfig } from '../../server/modules/policy/facts.js';
import { policyEn } from '../../server/modules/policy/texts-en.js';
import { policyDe } from '../../server/modules/policy/texts-de.js';
import { announcePolicy } from '../../server/modules/policy/announce.js';
import { controlHandlers } from '../../server/admin/control.js';
import type { HeldPartInfo } from '../../server/modules/policy/module.js';
import { OWNER, PUBSUB, arrived, contacts, errorOf, form, isEvent, online, owner, publish, rosterItem, roundTrip } from './pep-helpers.js';

const MICROBLOG = 'urn:xmpp:microblog:0';
const NICK = 'http://jabber.org/protocol/nick';
const OPEN = { 'pubsub#access_model': 'open' };

const entry = (title: string) => x('entry', { xmlns: 'http://www.w3.org/2005/Atom' }, x('title', {}, title));

function subscribe(to: string, node: string, jid: string, options?: Element): Element {
  return x('iq', { type: 'set', to }, x('pubsub', { xmlns: PUBSUB }, x('subscribe', { node, jid }), options));
}

function unsubscribe(to: string, node: string, jid: string): Element {
  return x('iq', { type: 'set', to }, x('pubsub', { xmlns: PUBSUB }, x('unsubscribe', { node, jid })));
}

function mySubscriptions(to: string, node?: string): Element {
  return x('iq', { type: 'get', to }, x('pubsub', { xmlns: PUBSUB }, x('subscriptions', { node })));
}

/** The subscriptions of a 5.6 or 8.8.1 result, as "node jid state" (node left out by 8.8.1). */
function subscriptionsOf(reply: Element): string[] {
  const list = reply.getChild('pubsub', PUBSUB)?.getChild('subscriptions') ?? reply.getChild('pubsub', OWNER)?.getChild('subscriptions');
  return (list?.getChildren('subscription') ?? []).map((s) => [s.attrs.node, s.attrs.jid, s.attrs.subscription].filter((v) => v !== undefined).join(' '));
}

/** XEP-0060 8.8.4: the message telling a subscriber its subscription ended. */
const isCancellation = (node: string, jid: string) => (el: Element) => {
  const sub = el.name === 'message' ? el.getChild('pubsub', PUBSUB)?.getChild('subscription') : undefined;
  return sub?.attrs.node === node && sub.attrs.jid === jid && sub.attrs.subscription === 'none';
};

/** How many notifications for `node` arrived by now (a round trip), taking them out. */
async function eventCount(client: TestClient, node: string): Promise<number> {
  await roundTrip(client);
  let n = 0;
  for (let i = client.received.length - 1; i >= 0; i--) {
    if (!isEvent(node)(client.received[i]!)) continue;
    client.received.splice(i, 1);
    n++;
  }
  return n;
}

function titleOf(message: Element): string | undefined {
  return message.getChild('event', `${PUBSUB}#event`)?.getChild('items')?.getChild('item')?.firstElement()?.getChildText('title') ?? undefined;
}

describe('PEP explicit subscriptions (XEP-0060 6.1-6.2, 5.6, 8.8)', () => {
  let ts: TestServer;
  before(async () => {
    ts = await startTestServer({ config: { pep: { maxSubscriptionsPerNode: 3 } } });
  });
  after(async () => {
    await ts.stop();
  });

  test('P16 Movim follows a stranger\'s open microblog at its bare JID: the last item after the result, then each new item once, at the bare JID; unsubscribe ends it', async () => {
    const alice = await online(ts, 'mb-alice', []);
    assert.equal((await alice.iq(publish(MICROBLOG, entry('first'), 'p1', OPEN))).attrs.type, 'result');
    const movim = await online(ts, 'mb-reader', []);

    // The account's features are for the owner and contacts to see (P17: a stranger is answered as for no account).
    const disco = await alice.iq(x('iq', { type: 'get', to: 'mb-alice@localhost' }, x('query', { xmlns: NS.discoInfo })));
    const features = disco.getChild('query', NS.discoInfo)!.getChildren('feature').map((f) => f.attrs.var);
    for (const f of ['subscribe', 'retrieve-subscriptions', 'manage-subscriptions', 'retrieve-affiliations']) assert.ok(features.includes(`${PUBSUB}#${f}`), f);

    const result = await movim.iq(subscribe('mb-alice@localhost', MICROBLOG, 'mb-reader@localhost'));
    assert.equal(result.attrs.type, 'result', String(result));
    const sub = result.getChild('pubsub', PUBSUB)!.getChild('subscription')!;
    assert.deepEqual([sub.attrs.node, sub.attrs.jid, sub.attrs.subscription], [MICROBLOG, 'mb-reader@localhost', 'subscribed']);
    const last = await movim.expect(isEvent(MICROBLOG));
    assert.equal(last.attrs.from, 'mb-alice@localhost');
    assert.equal(last.attrs.to, 'mb-reader@localhost', 'at the bare JID');
    assert.ok(last.getChild('delay', NS.delay), 'the last item carries its delay');
    assert.equal(titleOf(last), 'first');

    assert.deepEqual(subscriptionsOf(await movim.iq(mySubscriptions('mb-alice@localhost'))), [`${MICROBLOG} mb-reader@localhost subscribed`]);
    assert.deepEqual(subscriptionsOf(await movim.iq(mySubscriptions('mb-alice@localhost', 'urn:example:other'))), []);

    await alice.iq(publish(MICROBLOG, entry('second'), 'p2'));
    const next = await movim.expect(isEvent(MICROBLOG));
    assert.equal(next.attrs.to, 'mb-reader@localhost');
    assert.equal(titleOf(next), 'second');
    assert.equal(await eventCount(movim, MICROBLOG), 0, 'once');

    assert.equal((await movim.iq(unsubscribe('mb-alice@localhost', MICROBLOG, 'mb-reader@localhost'))).attrs.type, 'result');
    assert.deepEqual(errorOf(await movim.iq(unsubscribe('mb-alice@localhost', MICROBLOG, 'mb-reader@localhost'))), ['unexpected-request', 'not-subscribed']);
    await alice.iq(publish(MICROBLOG, entry('third'), 'p3'));
    assert.equal(await eventCount(movim, MICROBLOG), 0, 'no notification after unsubscribe');
    assert.deepEqual(subscriptionsOf(await movim.iq(mySubscriptions('mb-alice@localhost'))), []);
    await Promise.all([alice.close(), movim.close()]);
  });

  test('XEP-0163 4.3.2 no second copy: a bare-JID subscriber with +notify is notified at the interested resource only; without it once at the bare JID; a full-JID subscription at that resource, once', async () => {
    await contacts(ts, 'dup-alice', 'dup-bob');
    const alice = await online(ts, 'dup-alice', []);
    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'A1'), 'current'));
    const phone = await online(ts, 'dup-bob', [NICK], 'phone');
    const desktop = await online(ts, 'dup-bob', [], 'desktop');
    await eventCount(phone, NICK);
    assert.equal((await desktop.iq(subscribe('dup-alice@localhost', NICK, 'dup-bob@localhost'))).attrs.type, 'result');
    assert.equal(await eventCount(phone, NICK), 1, 'the last item, at the interested resource');
    assert.equal(await eventCount(desktop, NICK), 0);

    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'A2'), 'current'));
    assert.equal(await eventCount(phone, NICK), 1, 'auto-subscribed and subscribed: one notification');
    assert.equal(await eventCount(desktop, NICK), 0, 'XEP-0163 4.3.2: the resources with +notify only');

    // The desktop subscribes at its full JID as well: one copy each.
    assert.equal((await desktop.iq(subscribe('dup-alice@localhost', NICK, desktop.jid))).attrs.type, 'result');
    assert.equal(await eventCount(desktop, NICK), 1, 'the last item at the full JID');
    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'A3'), 'current'));
    assert.equal(await eventCount(phone, NICK), 1);
    assert.equal(await eventCount(desktop, NICK), 1);

    // Without any resource interested, the bare JID: both resources, one copy each.
    await phone.close();
    assert.equal((await desktop.iq(unsubscribe('dup-alice@localhost', NICK, desktop.jid))).attrs.type, 'result');
    const laptop = await online(ts, 'dup-bob', [], 'laptop');
    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'A4'), 'current'));
    assert.equal(await eventCount(desktop, NICK), 1);
    assert.equal(await eventCount(laptop, NICK), 1);
    await Promise.all([alice.close(), desktop.close(), laptop.close()]);
  });

  test('P17 a stranger subscribing to a presence node, a contact to a whitelist node, anyone to a missing node or account: the same item-not-found', async () => {
    await contacts(ts, 'acc-alice', 'acc-bob');
    const alice = await loginAs(ts, 'acc-alice');
    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Alice'), 'current'));
    await alice.iq(publish('urn:xmpp:bookmarks:1', x('conference', { xmlns: 'urn:xmpp:bookmarks:1' }), 'r@muc.localhost', { 'pubsub#access_model': 'whitelist' }));
    const stranger = await loginAs(ts, 'acc-stranger');
    const bob = await loginAs(ts, 'acc-bob');
    const answers = [
      await stranger.iq(subscribe('acc-alice@localhost', NICK, 'acc-stranger@localhost')),
      await bob.iq(subscribe('acc-alice@localhost', 'urn:xmpp:bookmarks:1', 'acc-bob@localhost')),
      await bob.iq(subscribe('acc-alice@localhost', 'urn:xmpp:nothing', 'acc-bob@localhost')),
      await bob.iq(subscribe('nobody@localhost', NICK, 'acc-bob@localhost')),
      await stranger.iq(unsubscribe('acc-alice@localhost', NICK, 'acc-stranger@localhost')),
    ];
    for (const a of answers) assert.deepEqual(errorOf(a), ['item-not-found', undefined], String(a));
    assert.equal(new Set(answers.map((a) => a.getChild('error')!.toString())).size, 1, 'the errors are identical');
    assert.deepEqual(subscriptionsOf(await stranger.iq(mySubscriptions('acc-alice@localhost', NICK))), subscriptionsOf(await stranger.iq(mySubscriptions('nobody@localhost', NICK))));

    // The contact may; with another's JID or with subscription options it may not.
    assert.equal((await bob.iq(subscribe('acc-alice@localhost', NICK, 'acc-bob@localhost'))).attrs.type, 'result');
    assert.deepEqual(errorOf(await bob.iq(subscribe('acc-alice@localhost', NICK, 'acc-stranger@localhost'))), ['bad-request', 'invalid-jid']);
    assert.deepEqual(errorOf(await bob.iq(unsubscribe('acc-alice@localhost', NICK, 'acc-stranger@localhost'))), ['forbidden', undefined]);
    const withOptions = await bob.iq(subscribe('acc-alice@localhost', NICK, bob.jid, x('options', {}, form(`${PUBSUB}#subscribe_options`, { 'pubsub#deliver': 'true' }))));
    assert.deepEqual(errorOf(withOptions), ['feature-not-implemented', 'unsupported']);
    assert.equal(withOptions.getChild('error')!.getChild('unsupported')!.attrs.feature, 'subscription-options');
    const options = await bob.iq(x('iq', { type: 'get', to: 'acc-alice@localhost' }, x('pubsub', { xmlns: PUBSUB }, x('options', { node: NICK, jid: 'acc-bob@localhost' }))));
    assert.deepEqual(errorOf(options), ['feature-not-implemented', 'unsupported']);

    // XEP-0163 5: the contact is a member of the nodes it may read; the stranger has no affiliation.
    const affiliations = async (c: TestClient) =>
      (await c.iq(x('iq', { type: 'get', to: 'acc-alice@localhost' }, x('pubsub', { xmlns: PUBSUB }, x('affiliations')))))
        .getChild('pubsub', PUBSUB)!
        .getChild('affiliations')!
        .getChildren('affiliation')
        .map((a) => `${a.attrs.node} ${a.attrs.affiliation}`);
    assert.deepEqual(await affiliations(bob), [`${NICK} member`]);
    assert.deepEqual(await affiliations(stranger), []);
    assert.deepEqual((await affiliations(alice)).sort(), [`${NICK} owner`, 'urn:xmpp:bookmarks:1 owner']);
    await Promise.all([alice.close(), stranger.close(), bob.close()]);
  });

  test('policy-violation with too-many-subscriptions over pep.maxSubscriptionsPerNode; subscribing again renews instead', async () => {
    const alice = await loginAs(ts, 'max-alice');
    await alice.iq(publish(MICROBLOG, entry('x'), 'p', OPEN));
    const readers = await Promise.all(['max-r1', 'max-r2', 'max-r3', 'max-r4'].map((n) => loginAs(ts, n)));
    for (const r of readers.slice(0, 3)) assert.equal((await r.iq(subscribe('max-alice@localhost', MICROBLOG, r.jid))).attrs.type, 'result');
    assert.equal((await readers[0]!.iq(subscribe('max-alice@localhost', MICROBLOG, readers[0]!.jid))).attrs.type, 'result', 'a renewal, not one more');
    assert.deepEqual(errorOf(await readers[3]!.iq(subscribe('max-alice@localhost', MICROBLOG, readers[3]!.jid))), ['policy-violation', 'too-many-subscriptions']);
    await Promise.all([alice.close(), ...readers.map((r) => r.close())]);
  });

  test('P16 removing the contact from the roster and cancelling its presence subscription end its subscriptions to presence nodes; the subscriber is told (8.8.4) and notified no more; open nodes stay', async () => {
    await contacts(ts, 'rm-alice', 'rm-bob');
    await contacts(ts, 'rm-alice', 'rm-carol');
    const alice = await online(ts, 'rm-alice', []);
    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Alice'), 'current'));
    await alice.iq(publish(MICROBLOG, entry('open'), 'p', OPEN));
    const bob = await online(ts, 'rm-bob', []);
    const carol = await online(ts, 'rm-carol', []);
    for (const [c, node] of [
      [bob, NICK],
      [bob, MICROBLOG],
      [carol, NICK],
    ] as const) {
      assert.equal((await c.iq(subscribe('rm-alice@localhost', node, c.jid.split('/')[0]!))).attrs.type, 'result');
      await c.expect(isEvent(node));
    }

    // Roster removal (RFC 6121 2.5) through the roster protocol.
    assert.equal((await alice.iq(x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, x('item', { jid: 'rm-bob@localhost', subscription: 'remove' }))))).attrs.type, 'result');
    await bob.expect(isCancellation(NICK, 'rm-bob@localhost'));
    // Cancelling the contact's presence subscription (RFC 6121 3.2).
    alice.send(x('presence', { type: 'unsubscribed', to: 'rm-carol@localhost' }));
    await carol.expect(isCancellation(NICK, 'rm-carol@localhost'));

    await alice.iq(publish(NICK, x('nick', { xmlns: NICK }, 'Alice 2'), 'current'));
    await alice.iq(publish(MICROBLOG, entry('open 2'), 'p2'));
    assert.equal(await eventCount(bob, NICK), 0);
    assert.equal(await eventCount(carol, NICK), 0);
    assert.equal(await eventCount(bob, MICROBLOG), 1, 'anyone may follow an open node');
    assert.equal(await arrived(bob, isCancellation(MICROBLOG, 'rm-bob@localhost')), false);
    const list = await alice.iq(owner('get', x('subscriptions', { node: NICK })));
    assert.deepEqual(subscriptionsOf(list), []);
    await Promise.all([alice.close(), bob.close(), carol.close()]);
  });

  test('P16 roster access model: the owner moving the contact out of the allowed group ends its subscription (the subscriber told); back in, it may subscribe again', async () => {
    await rosterItem(ts, 'grp-alice', 'grp-bob', 'both', ['Family']);
    await rosterItem(ts, 'grp-bob', 'grp-alice', 'both');
    const alice = await online(ts, 'grp-alice', []);
    await alice.iq(publish('http://jabber.org/protocol/geoloc', x('geoloc', { xmlns: 'http://jabber.org/protocol/geoloc' }, x('locality', {}, 'Verona')), 'current', { 'pubsub#access_model': 'roster', 'pubsub#roster_groups_allowed': 'Family' }));
    const bob = await online(ts, 'grp-bob', []);
    assert.equal((await bob.iq(subscribe('grp-alice@localhost', 'http://jabber.org/protocol/geoloc', 'grp-bob@localhost'))).attrs.type, 'result');
    const group = (name: string) => x('iq', { type: 'set' }, x('query', { xmlns: NS.roster }, x('item', { jid: 'grp-bob@localhost' }, x('group', {}, name))));
    assert.equal((await alice.iq(group('Work'))).attrs.type, 'result');
    await bob.expect(isCancellation('http://jabber.org/protocol/geoloc', 'grp-bob@localhost'));
    assert.deepEqual(errorOf(await bob.iq(subscribe('grp-alice@localhost', 'http://jabber.org/protocol/geoloc', 'grp-bob@localhost'))), ['item-not-found', undefined]);
    assert.equal((await alice.iq(group('Family'))).attrs.type, 'result');
    assert.equal((await bob.iq(subscribe('grp-alice@localhost', 'http://jabber.org/protocol/geoloc', 'grp-bob@localhost'))).attrs.type, 'result');
    await Promise.all([alice.close(), bob.close()]);
  });

  test('XEP-0060 8.2 a new access model ends the subscriptions it leaves out, the subscribers told; the owner lists (8.8.1), ends one (8.8.2) and reads the affiliations (8.9.1)', async () => {
    await contacts(ts, 'own-alice', 'own-bob');
    const alice = await online(ts, 'own-alice', []);
    await alice.iq(publish(MICROBLOG, entry('x'), 'p', OPEN));
    const bob = await online(ts, 'own-bob', []);
    const eve = await online(ts, 'own-eve', []);
    const dave = await online(ts, 'own-dave', []);
    for (const c of [bob, eve, dave]) assert.equal((await c.iq(subscribe('own-alice@localhost', MICROBLOG, c.jid.split('/')[0]!))).attrs.type, 'result');
    assert.deepEqual(subscriptionsOf(await alice.iq(owner('get', x('subscriptions', { node: MICROBLOG })))), [
      'own-bob@localhost subscribed',
      'own-eve@localhost subscribed',
      'own-dave@localhost subscribed',
    ]);
    // Not for anyone else to see.
    assert.deepEqual(errorOf(await bob.iq(x('iq', { type: 'get', to: 'own-alice@localhost' }, x('pubsub', { xmlns: OWNER }, x('subscriptions', { node: MICROBLOG }))))), ['forbidden', undefined]);

    const removal = x('subscriptions', { node: MICROBLOG }, x('subscription', { jid: 'own-dave@localhost', subscription: 'none' }));
    assert.equal((await alice.iq(owner('set', removal))).attrs.type, 'result');
    await dave.expect(isCancellation(MICROBLOG, 'own-dave@localhost'));
    const imposed = x('subscriptions', { node: MICROBLOG }, x('subscription', { jid: 'own-carol@localhost', subscription: 'subscribed' }));
    assert.deepEqual(errorOf(await alice.iq(owner('set', imposed))), ['not-acceptable', undefined]);

    const configure = x('configure', { node: MICROBLOG }, form(`${PUBSUB}#node_config`, { 'pubsub#access_model': 'presence' }));
    assert.equal((await alice.iq(owner('set', configure))).attrs.type, 'result');
    await eve.expect(isCancellation(MICROBLOG, 'own-eve@localhost'));
    assert.equal(await arrived(bob, isCancellation(MICROBLOG, 'own-bob@localhost')), false, 'the contact may still read');
    assert.deepEqual(subscriptionsOf(await alice.iq(owner('get', x('subscriptions', { node: MICROBLOG })))), ['own-bob@localhost subscribed']);

    const affiliations = await alice.iq(owner('get', x('affiliations', { node: MICROBLOG })));
    assert.deepEqual(
      affiliations.getChild('pubsub', OWNER)!.getChild('affiliations')!.getChildren('affiliation').map((a) => `${a.attrs.jid} ${a.attrs.affiliation}`),
      ['own-alice@localhost owner'],
    );
    const modify = await alice.iq(owner('set', x('affiliations', { node: MICROBLOG }, x('affiliation', { jid: 'own-eve@localhost', affiliation: 'member' }))));
    assert.deepEqual(errorOf(modify), ['feature-not-implemented', 'unsupported']);
    assert.equal(modify.getChild('error')!.getChild('unsupported')!.attrs.feature, 'modify-affiliations');

    // Deleting the node tells the subscriber, and the subscriptions go with it.
    assert.equal((await alice.iq(owner('set', x('delete', { node: MICROBLOG })))).attrs.type, 'result');
    await bob.expect(isEvent(MICROBLOG, 'delete'));
    const account = (await ts.server.ctx.storage.accounts.get('own-alice', 'localhost'))!;
    assert.deepEqual(await ts.server.ctx.storage.repository(pepStorage).subscriptionsOf(account.id, 'own-bob@localhost'), []);
    await Promise.all([alice.close(), bob.close(), eve.close(), dave.close()]);
  });

  test('P23 deleting the subscriber\'s account (XEP-0077 remove) erases its subscriptions on others\' nodes', async () => {
    const alice = await online(ts, 'era-alice', []);
    await alice.iq(publish(MICROBLOG, entry('x'), 'p', OPEN));
    const gone = await ts.user('era-gone', 'gone-pw');
    assert.equal((await gone.iq(subscribe('era-alice@localhost', MICROBLOG, 'era-gone@localhost'))).attrs.type, 'result');
    assert.equal((await gone.iq(subscribe('era-alice@localhost', MICROBLOG, gone.jid))).attrs.type, 'result');
    assert.equal(subscriptionsOf(await alice.iq(owner('get', x('subscriptions', { node: MICROBLOG })))).length, 2);
    assert.equal((await gone.iq(x('iq', { type: 'set' }, x('query', { xmlns: 'jabber:iq:register' }, x('remove'))))).attrs.type, 'result');
    await gone.waitClosed();
    assert.deepEqual(subscriptionsOf(await alice.iq(owner('get', x('subscriptions', { node: MICROBLOG })))), []);
    await alice.close();
  });
});

describe('PEP subscriptions: retention and the privacy policy', () => {
  test('P11 a subscription from another server expires pep.remoteSubscriptionLifetime after it was made or renewed; a local one stays; a dry run only counts', async () => {
    const clock = new ManualClock(Date.UTC(2026, 5, 1));
    const ts = await startTestServer({ clock, config: { pep: { remoteSubscriptionLifetime: '30d' } } });
    try {
      const alice = await loginAs(ts, 'ret-alice');
      await alice.iq(publish(MICROBLOG, entry('x'), 'p', OPEN));
      const local = await loginAs(ts, 'ret-local');
      assert.equal((await local.iq(subscribe('ret-alice@localhost', MICROBLOG, 'ret-local@localhost'))).attrs.type, 'result');
      const repo = ts.server.ctx.storage.repository(pepStorage);
      const account = (await ts.server.ctx.storage.accounts.get('ret-alice', 'localhost'))!;
      const node = (await repo.node(account.id, MICROBLOG))!;
      // What an s2s subscribe stores (test/s2s/pep-federation.test.ts makes one over a link).
      await repo.subscribe(node.id, 'romeo@montague.example', 'romeo@montague.example', clock.now(), 10);
      await repo.subscribe(node.id, 'juliet@capulet.example/balcony', 'juliet@capulet.example', clock.now(), 10);
      const sweep = createPepModule().retention!.find((c) => c.name === 'pep-subscriptions')!;
      assert.match(sweep.describe(ts.server.ctx.config), /other servers 30 days/);

      clock.advance(20 * 86_400_000);
      await repo.subscribe(node.id, 'juliet@capulet.example/balcony', 'juliet@capulet.example', clock.now(), 10);
      clock.advance(11 * 86_400_000);
      assert.equal(await sweep.run(ts.server.ctx, clock.now(), { dryRun: true, batch: 500 }), 1);
      assert.equal((await repo.subscriptions(node.id)).length, 3, 'a dry run deletes nothing');
      assert.equal(await sweep.run(ts.server.ctx, clock.now(), { dryRun: false, batch: 1 }), 1);
      assert.deepEqual((await repo.subscriptions(node.id)).map((s) => s.jid).sort(), ['juliet@capulet.example/balcony', 'ret-local@localhost']);
      clock.advance(20 * 86_400_000);
      assert.equal(await sweep.run(ts.server.ctx, clock.now(), { dryRun: false, batch: 500 }), 1);
      assert.deepEqual((await repo.subscriptions(node.id)).map((s) => s.jid), ['ret-local@localhost'], 'the local subscription stays');
      await Promise.all([alice.close(), local.close()]);
    } finally {
      await ts.stop();
    }
  });

  test('P22 the policy names stored PEP subscriptions and the remote lifetime in both languages, only while pep.subscriptions is on', () => {
    const on = factsFromConfig(parseConfig({ pep: { remoteSubscriptionLifetime: '60d' } }, '/tmp'));
    const en = JSON.stringify(policyEn(on));
    const de = JSON.stringify(policyDe(on));
    assert.match(en, /subscribe to such published data/);
    assert.match(en, /deleted 60 days after it was made/);
    assert.match(de, /abonnieren/);
    assert.match(de, /60 Tage nach seinem Abschluss gelöscht/);
    const off = factsFromConfig(parseConfig({ pep: { subscriptions: false } }, '/tmp'));
    assert.equal(off.pepSubscriptions, undefined);
    assert.doesNotMatch(JSON.stringify(policyEn(off)), /subscribe to such published data/);
    assert.doesNotMatch(JSON.stringify(policyDe(off)), /abonnieren/);
  });

  test('P22 turning pep.subscriptions on is held back while the policy in force does not name it: subscribe answers feature-not-implemented and disco does not offer it, until announced', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-pepsub-'));
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
    const start = (config: Record<string, unknown>) => startTestServer({ storage: { type: 'sqlite', path: join(dir, 'db.sqlite') }, clock, config, logLevel: 'info' });
    try {
      await (await start({ pep: { subscriptions: false } })).stop();
      const ts = await start({});
      try {
        const held = (await controlHandlers(ts.server.ctx).get('policy.held')!.handler({})) as HeldPartInfo[];
        assert.deepEqual(held.map((h) => h.key), ['pep.subscriptions']);
        const alice = await loginAs(ts, 'hb-alice');
        await alice.iq(publish(MICROBLOG, entry('x'), 'p', OPEN));
        const bob = await loginAs(ts, 'hb-bob');
        const refused = await bob.iq(subscribe('hb-alice@localhost', MICROBLOG, 'hb-bob@localhost'));
        assert.deepEqual(errorOf(refused), ['feature-not-implemented', 'unsupported']);
        assert.equal(refused.getChild('error')!.getChild('unsupported')!.attrs.feature, 'subscribe');
        const features = async () =>
          (await alice.iq(x('iq', { type: 'get', to: 'hb-alice@localhost' }, x('query', { xmlns: NS.discoInfo })))).getChild('query', NS.discoInfo)!.getChildren('feature').map((f) => f.attrs.var);
        assert.ok(!(await features()).includes(`${PUBSUB}#subscribe`));
        assert.equal((await ts.server.ctx.storage.repository(pepStorage).subscriptionsOf((await ts.server.ctx.storage.accounts.get('hb-alice', 'localhost'))!.id, 'hb-bob@localhost')).length, 0, 'nothing stored');

        const inForce = new Promise<void>((resolve) => {
          const off = ts.server.ctx.hooks.on('config/in-force', () => {
            off();
            resolve();
          });
        });
        await announcePolicy(ts.server.ctx.storage, ts.config, { effective: '2026-03-01', technical: 'Movim users follow microblogs', now: clock.now() });
        await controlHandlers(ts.server.ctx).get('policy.held')!.handler({});
        await inForce;
        assert.ok((await features()).includes(`${PUBSUB}#subscribe`));
        assert.equal((await bob.iq(subscribe('hb-alice@localhost', MICROBLOG, 'hb-bob@localhost'))).attrs.type, 'result');
        await Promise.all([alice.close(), bob.close()]);
      } finally {
        await ts.stop();
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  test('P22 pep.subscriptions off in force at once: subscribe is refused again and the sweep deletes what was stored', async () => {
    const ts = await startTestServer({});
    try {
      const alice = await loginAs(ts, 'off-alice');
      await alice.iq(publish(MICROBLOG, entry('x'), 'p', OPEN));
      const bob = await loginAs(ts, 'off-bob');
      assert.equal((await bob.iq(subscribe('off-alice@localhost', MICROBLOG, 'off-bob@localhost'))).attrs.type, 'result');
      const off = await ts.reload({ pep: { subscriptions: false } });
      assert.deepEqual(off.heldBack, []);
      assert.deepEqual(errorOf(await bob.iq(subscribe('off-alice@localhost', MICROBLOG, 'off-bob@localhost'))), ['feature-not-implemented', 'unsupported']);
      const sweep = createPepModule().retention!.find((c) => c.name === 'pep-subscriptions')!;
      assert.equal(await sweep.run(ts.server.ctx, new Date(), { dryRun: false, batch: 500 }), 1);
      const account = (await ts.server.ctx.storage.accounts.get('off-alice', 'localhost'))!;
      assert.deepEqual(await ts.server.ctx.storage.repository(pepStorage).subscriptionsOf(account.id, 'off-bob@localhost'), []);
      await Promise.all([alice.close(), bob.close()]);
    } finally {
      await ts.stop();
    }
  });
});
