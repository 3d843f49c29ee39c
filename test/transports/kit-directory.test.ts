/**
 * The kit's room directory (room-directory.ts, rsm.ts), the one disco#items mechanism behind IRC's
 * channel list on a server JID and Discord's guild nodes on the gateway JID: XEP-0059 paging,
 * XEP-0030 nodes (hierarchy branches, item-not-found), the cache per user and node (expiry, the
 * network's directoryChanged), caps, failures, and which JID shows it on single- and multi-server
 * networks. Over real sockets with the fake network.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import type { Element } from '../../shared/xml/element.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { ManualClock } from '../../shared/clock.js';
import type { DirectoryItem } from '../../transports/kit/adapter.js';
import { NS_RSM, rsmPage } from '../../transports/kit/rsm.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { GW, bareOf, errorOf, onlineUser, startKit, until, type Kit } from './kit-harness.js';

const MUC = 'http://jabber.org/protocol/muc';
const FIVE_MINUTES = 5 * 60_000;

function set(children: Record<string, string>): Element {
  return x('set', { xmlns: NS_RSM }, Object.entries(children).map(([k, v]) => x(k, {}, v)));
}

function items(to: string, node?: string, rsm?: Element): Element {
  return x('iq', { type: 'get', to }, x('query', { xmlns: NS.discoItems, ...(node ? { node } : {}) }, rsm ?? null));
}

function listed(reply: Element): { jid: string; node?: string; name?: string }[] {
  assert.equal(reply.attrs.type, 'result', String(reply));
  return reply.getChild('query', NS.discoItems)!.getChildren('item').map((i) => ({ ...i.attrs }) as { jid: string; node?: string; name?: string });
}

function rsmOf(reply: Element): Element | undefined {
  return reply.getChild('query', NS.discoItems)?.getChild('set', NS_RSM);
}

describe('transport kit: XEP-0059 pages (rsm.ts)', () => {
  const all = ['a', 'b', 'c', 'd', 'e'];
  const page = (s: Element | undefined, limit = 10) => rsmPage(all, (v) => v, s, limit);
  const ok = (p: ReturnType<typeof page>) => {
    assert.ok(!('error' in p));
    return { items: p.items, first: p.set?.getChild('first')?.attrs.index, firstId: p.set?.getChildText('first'), last: p.set?.getChildText('last'), count: p.set?.getChildText('count') };
  };

  test('without a <set/>: the whole list, or the first `limit` items with a <set/> saying how many there are', () => {
    assert.deepEqual(ok(page(undefined)), { items: all, first: undefined, firstId: undefined, last: undefined, count: undefined });
    assert.deepEqual(ok(page(undefined, 3)), { items: ['a', 'b', 'c'], first: '0', firstId: 'a', last: 'c', count: '5' });
  });

  test('forwards with <after/>, backwards with <before/>, the last page with an empty <before/>, out of order with <index/>', () => {
    assert.deepEqual(ok(page(set({ max: '2' }))), { items: ['a', 'b'], first: '0', firstId: 'a', last: 'b', count: '5' });
    assert.deepEqual(ok(page(set({ max: '2', after: 'b' }))), { items: ['c', 'd'], first: '2', firstId: 'c', last: 'd', count: '5' });
    assert.deepEqual(ok(page(set({ max: '2', after: 'e' }))), { items: [], first: undefined, firstId: undefined, last: undefined, count: '5' }, 'past the end: an empty page');
    assert.deepEqual(ok(page(set({ max: '2', before: 'd' }))), { items: ['b', 'c'], first: '1', firstId: 'b', last: 'c', count: '5' });
    assert.deepEqual(ok(page(set({ max: '2', before: '' }))), { items: ['d', 'e'], first: '3', firstId: 'd', last: 'e', count: '5' });
    assert.deepEqual(ok(page(set({ max: '2', index: '4' }))), { items: ['e'], first: '4', firstId: 'e', last: 'e', count: '5' });
    assert.deepEqual(ok(page(set({ max: '2', index: '9' }))), { items: [], first: undefined, firstId: undefined, last: undefined, count: '5' }, 'an index past the end: an empty page');
  });

  test('<max>0</max> is the count alone; a larger max than the limit gets the limit; a bad max is no max', () => {
    assert.deepEqual(ok(page(set({ max: '0' }))), { items: [], first: undefined, firstId: undefined, last: undefined, count: '5' });
    assert.deepEqual(ok(page(set({ max: '50' }), 3)).items, ['a', 'b', 'c']);
    assert.deepEqual(ok(page(set({ max: 'lots' }), 4)).items, ['a', 'b', 'c', 'd']);
    assert.deepEqual(ok(page(set({ max: '-1' }), 4)).items, ['a', 'b', 'c', 'd']);
  });

  test('an <after/> or <before/> naming no item of the list is item-not-found (XEP-0059 §2.5)', () => {
    assert.deepEqual(page(set({ max: '2', after: 'zz' })), { error: 'item-not-found' });
    assert.deepEqual(page(set({ max: '2', before: 'zz' })), { error: 'item-not-found' });
  });
});

const room = (id: string, members?: number, topic?: string): DirectoryItem => ({ room: { id }, ...(members !== undefined ? { members } : {}), ...(topic ? { topic } : {}) });

describe('transport kit: the room directory on the gateway JID (a single-server network)', () => {
  let kit: Kit;
  let clock: ManualClock;
  let alice: TestClient;
  let user: string;
  const calls = (node: string) => kit.net.directoryCalls.filter((c) => c.node === node).length;

  before(async () => {
    clock = new ManualClock();
    kit = await startKit({ clock, fake: { servers: [] } });
    kit.net.directory.set(null, [{ node: 'cat/a', name: 'Category A' }, { room: { id: '#lobby', name: 'The lobby' } }, room('#plain')]);
    kit.net.directory.set('cat/a', [room('#a1', 3, 'first'), room('#a2', 0), room('#a3'), room('#a4', 12, 'fourth'), room('#a5')]);
    alice = await onlineUser(kit, 'dir-alice', 'alice-dir', 'pw-alice');
    user = bareOf(alice);
    await until(() => kit.transport.gateway.sessions.get(user, undefined)?.state === 'online', 'alice online');
  });

  after(async () => {
    await kit.stop();
  });

  test('without a session nothing is listed and nobody is logged in: the top level is empty, a node is item-not-found', async () => {
    const nobody = await kit.ts.user('dir-nobody');
    const logins = kit.net.logins.length;
    const top = await nobody.iq(items(GW));
    assert.deepEqual(listed(top), []);
    assert.equal(errorOf(await nobody.iq(items(GW, 'cat/a'))), 'item-not-found');
    const info = await nobody.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo, node: 'cat/a' })));
    assert.equal(errorOf(info), 'item-not-found');
    assert.equal(kit.net.logins.length, logins, 'browsing logs nobody in');
    assert.equal(kit.net.directoryCalls.length, 0);
  });

  test('the top level: the rooms the user is in first, then the directory (a room in both once); nodes are hierarchy branches (XEP-0030)', async () => {
    alice.send(x('presence', { to: `#lobby@${GW}/alice` }, x('x', { xmlns: MUC })));
    await alice.expect((el) => el.name === 'message' && el.attrs.from === `#lobby@${GW}` && !!el.getChild('subject'));
    const top = listed(await alice.iq(items(GW)));
    assert.deepEqual(top, [
      { jid: `#lobby@${GW}`, name: 'Fake room #lobby' },
      { jid: GW, node: 'cat/a', name: 'Category A' },
      { jid: `#plain@${GW}`, name: '#plain' },
    ]);
    const info = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo, node: 'cat/a' })));
    assert.equal(info.attrs.type, 'result', String(info));
    const q = info.getChild('query', NS.discoInfo)!;
    assert.equal(q.attrs.node, 'cat/a');
    assert.deepEqual({ ...q.getChild('identity')!.attrs }, { category: 'hierarchy', type: 'branch' });
    const gatewayInfo = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo })));
    assert.ok(gatewayInfo.getChild('query', NS.discoInfo)!.getChildren('feature').some((f) => f.attrs.var === NS_RSM), 'the gateway says it pages (XEP-0059 §5)');
  });

  test('a node lists its rooms, names with members and topic, the node mirrored; an unknown node is item-not-found', async () => {
    const reply = await alice.iq(items(GW, 'cat/a'));
    assert.equal(reply.getChild('query', NS.discoItems)!.attrs.node, 'cat/a');
    assert.deepEqual(listed(reply), [
      { jid: `#a1@${GW}`, name: '#a1 (3) – first' },
      { jid: `#a2@${GW}`, name: '#a2 (0)' },
      { jid: `#a3@${GW}`, name: '#a3' },
      { jid: `#a4@${GW}`, name: '#a4 (12) – fourth' },
      { jid: `#a5@${GW}`, name: '#a5' },
    ]);
    assert.equal(rsmOf(reply), undefined, 'a short list without a <set/> when none was asked for');
    assert.equal(errorOf(await alice.iq(items(GW, 'cat/none'))), 'item-not-found');
    const info = await alice.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoInfo, node: 'cat/none' })));
    assert.equal(errorOf(info), 'item-not-found');
  });

  test('XEP-0059 pages of a node and of the top level; an item gone from the list is item-not-found', async () => {
    const first = await alice.iq(items(GW, 'cat/a', set({ max: '2' })));
    assert.deepEqual(listed(first).map((i) => i.jid), [`#a1@${GW}`, `#a2@${GW}`]);
    assert.equal(rsmOf(first)!.getChildText('count'), '5');
    assert.equal(rsmOf(first)!.getChild('first')!.attrs.index, '0');
    const next = await alice.iq(items(GW, 'cat/a', set({ max: '2', after: rsmOf(first)!.getChildText('last')! })));
    assert.deepEqual(listed(next).map((i) => i.jid), [`#a3@${GW}`, `#a4@${GW}`]);
    assert.equal(rsmOf(next)!.getChild('first')!.attrs.index, '2');
    const last = await alice.iq(items(GW, 'cat/a', set({ max: '2', before: '' })));
    assert.deepEqual(listed(last).map((i) => i.jid), [`#a4@${GW}`, `#a5@${GW}`]);
    const byIndex = await alice.iq(items(GW, 'cat/a', set({ max: '2', index: '4' })));
    assert.deepEqual(listed(byIndex).map((i) => i.jid), [`#a5@${GW}`]);
    assert.equal(errorOf(await alice.iq(items(GW, 'cat/a', set({ max: '2', after: `#gone@${GW}` })))), 'item-not-found');
    // The top level pages too: the joined room, then the node item (its id names the node).
    const top1 = await alice.iq(items(GW, undefined, set({ max: '2' })));
    assert.deepEqual(listed(top1).map((i) => i.node ?? i.jid), [`#lobby@${GW}`, 'cat/a']);
    assert.equal(rsmOf(top1)!.getChildText('count'), '3');
    const top2 = await alice.iq(items(GW, undefined, set({ max: '2', after: rsmOf(top1)!.getChildText('last')! })));
    assert.deepEqual(listed(top2).map((i) => i.jid), [`#plain@${GW}`]);
  });

  test('a listing is cached per user and node for five minutes, and dropped early when the network says its directory changed', async () => {
    // A fresh start: whatever earlier tests cached has expired.
    clock.advance(FIVE_MINUTES);
    const names = async (c: TestClient) => listed(await c.iq(items(GW, 'cat/a'))).map((i) => i.jid);
    const before = calls('cat/a');
    assert.equal((await names(alice)).length, 5);
    assert.equal(calls('cat/a'), before + 1);
    kit.net.directory.get('cat/a')!.push(room('#a6'));
    assert.equal((await names(alice)).length, 5, 'served from the cache');
    assert.equal(calls('cat/a'), before + 1);
    // Another user's listing is their own (their own session asks).
    const bob = await onlineUser(kit, 'dir-bob', 'bob-dir', 'pw-bob');
    await until(() => kit.transport.gateway.sessions.get(bareOf(bob), undefined)?.state === 'online', 'bob online');
    assert.equal((await names(bob)).length, 6);
    assert.equal(calls('cat/a'), before + 2);
    clock.advance(FIVE_MINUTES - 1);
    assert.equal((await names(alice)).length, 5, 'still cached just before five minutes');
    clock.advance(1);
    assert.equal((await names(alice)).length, 6, 'listed again after five minutes');
    assert.equal(calls('cat/a'), before + 3);
    // The network says the directory changed: the next request lists again, well within the five minutes.
    kit.net.directory.get('cat/a')!.push(room('#a7'));
    kit.net.directoryChanged();
    await until(async () => (await names(alice)).includes(`#a7@${GW}`), 'the new room listed');
    assert.equal(calls('cat/a'), before + 4, 'listed once after the change, then cached again');
    await bob.close();
  });

  test('a failing network: a node is remote-server-timeout with the reason, the gateway still lists the rooms the user is in', async () => {
    clock.advance(FIVE_MINUTES);
    kit.net.directoryFailure = 'the directory service is down';
    try {
      const node = await alice.iq(items(GW, 'cat/a'));
      assert.equal(errorOf(node), 'remote-server-timeout');
      assert.match(node.getChild('error')!.getChildText('text', NS.stanzas) ?? '', /directory service is down/);
      assert.deepEqual(listed(await alice.iq(items(GW))), [{ jid: `#lobby@${GW}`, name: 'Fake room #lobby' }]);
    } finally {
      kit.net.directoryFailure = null;
    }
    // A failure is not cached.
    assert.equal(listed(await alice.iq(items(GW, 'cat/a'))).length, 7);
  });

  test('caps: a listing is cut at 10,000 rooms (the adapter is asked for no more), a client that does not page gets 1,000 with a <set/>', async () => {
    kit.net.directory.set('big', Array.from({ length: 10_050 }, (_, i) => room(`#r${i}`)));
    const reply = await alice.iq(items(GW, 'big'));
    assert.equal(listed(reply).length, 1000);
    assert.equal(rsmOf(reply)!.getChildText('count'), '10000');
    assert.equal(kit.net.directoryCalls.at(-1)!.max, 10_000);
    const lastPage = await alice.iq(items(GW, 'big', set({ max: '10', before: '' })));
    assert.equal(listed(lastPage).at(-1)!.jid, `#r9999@${GW}`);
  });
});

describe('transport kit: the room directory on server JIDs (a multi-server network)', () => {
  let kit: Kit;
  let alice: TestClient;

  before(async () => {
    kit = await startKit();
    kit.net.directory.set(null, [room('#x', 4, 'ex'), room('#y'), { node: 'more', name: 'More rooms' }]);
    kit.net.directory.set('more', [room('#z')]);
    alice = await onlineUser(kit, 'dirm-alice', 'alice-dirm', 'pw-alice');
    await until(() => kit.transport.gateway.sessions.get(bareOf(alice), 'irc.one')?.state === 'online', 'alice online');
  });

  after(async () => {
    await kit.stop();
  });

  test("a server JID lists that server's directory, nodes under the server JID; the gateway JID lists only joined rooms", async () => {
    const server = `irc.one@${GW}`;
    const top = await alice.iq(items(server));
    assert.deepEqual(listed(top), [
      { jid: `#x%irc.one@${GW}`, name: '#x (4) – ex' },
      { jid: `#y%irc.one@${GW}`, name: '#y' },
      { jid: server, node: 'more', name: 'More rooms' },
    ]);
    assert.deepEqual(listed(await alice.iq(items(server, 'more'))), [{ jid: `#z%irc.one@${GW}`, name: '#z' }]);
    const info = await alice.iq(x('iq', { type: 'get', to: server }, x('query', { xmlns: NS.discoInfo, node: 'more' })));
    assert.equal(info.getChild('query', NS.discoInfo)?.getChild('identity')?.attrs.category, 'hierarchy', String(info));
    assert.equal(errorOf(await alice.iq(items(server, 'nothing-here'))), 'item-not-found');
    assert.deepEqual(listed(await alice.iq(items(GW))), []);
    assert.ok(kit.net.directoryCalls.every((c) => c.server === 'irc.one'), 'asked of the irc.one session only');
  });

  test('a server JID needs a session there: registration-required for a user with none', async () => {
    const nobody = await kit.ts.user('dirm-nobody');
    const reply = await nobody.iq(items(`irc.one@${GW}`));
    assert.equal(errorOf(reply), 'registration-required');
  });
});
