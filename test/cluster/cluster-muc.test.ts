/**
 * Group chat (XEP-0045) across three cluster nodes as separate processes, sharing PostgreSQL or
 * MariaDB and the NATS server at 127.0.0.1:4222 under a prefix of their own. Each room runs on one
 * node (rendezvous hashing of the room JID over the living nodes, as server/cluster/node.ts
 * `ownerOf` does); the rooms here are named so that the node running them is the one the test needs.
 * - occupants on all three nodes: join, messages, private messages, a kick by a moderator on another
 *   node, a nick conflict across nodes, `gatehouse muc list` and disco#items with the node;
 * - the node running a persistent room killed (SIGKILL): stanzas sent to its rooms before the others
 *   noticed reach the rooms' new nodes (not lost), the room comes back on another node from the
 *   database, an occupant's self-ping (XEP-0410) gets not-acceptable, and joining again works;
 * - the node running a room stopped cleanly: its occupants get unavailable with status 332.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { runCli } from '../helpers/server-process.js';
import { loginAs, startTestServer, type TestServer } from '../helpers/server.js';
import { controlRequest } from '../../server/admin/control.js';
import { mucRoomsPage } from '../../server/modules/muc/admin-page.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { FAILURE_TIMEOUT_MS, announcePolicy, clusterStorage, nodeClients, skipWithoutClusterDb as skip, startNode, stopNode, type ClusterNode as Node } from '../helpers/cluster-nodes.js';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { MUC, MUC_ADMIN, SERVICE, codes, createInstant, enter, errorOf, item } from '../modules/muc-helpers.js';

const { account, destroyAll } = nodeClients();

/** The node that runs `room` among `living`: the cluster's rendezvous hashing, computed alike here. */
function ownerAmong(room: string, living: string[]): string {
  const score = (node: string) => createHash('sha1').update(`muc\u0000${room}\u0000${node}`).digest().readUInt32BE(0);
  return [...living].sort().reduce((best, n) => (score(n) > score(best) ? n : best));
}

/** A room name, unique to this run, whose room runs on `owner` while `living` are up. */
function roomOn(owner: string, living: string[], tag: string): string {
  for (let i = 0; ; i++) {
    const room = `r${i}-${tag}@${SERVICE}`;
    if (ownerAmong(room, living) === owner) return room;
  }
}

const isGroupchat = (room: string, body: string) => (el: Element) => el.name === 'message' && el.attrs.type === 'groupchat' && el.attrs.from?.startsWith(room + '/') === true && el.getChildText('body') === body;
const presenceOf = (occupant: string) => (el: Element) => el.name === 'presence' && el.attrs.from === occupant && el.attrs.type === undefined;
const selfPing = (c: TestClient, occupant: string) => c.iq(x('iq', { type: 'get', to: occupant }, x('ping', { xmlns: NS.ping })), 3000);

async function nodeState(node: Node, of: string): Promise<string | undefined> {
  const r = await runCli(['cluster', 'status', '--json', '--config', join(node.dir, 'gatehouse.yaml')]);
  const parsed = JSON.parse(r.stdout) as { nodes: { name: string; state: string }[] };
  return parsed.nodes.find((n) => n.name === of)?.state;
}

describe('cluster: group chat with occupants on three nodes', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  const nodes: Node[] = [];
  before(async () => {
    await announcePolicy('cluster group chat test configuration');
    for (const name of ['m1', 'm2', 'm3']) nodes.push(await startNode(name, prefix));
  });
  after(async () => {
    destroyAll();
    await Promise.all(nodes.map((n) => stopNode(n)));
  });

  test('XEP-0045 across nodes: join, messages seen by all, private messages, a kick and a nick conflict from other nodes; the listing names the node', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node];
    // The room runs on m2; its owner is on m1, the other occupants on m2 and m3.
    const room = roomOn('m2', ['m1', 'm2', 'm3'], tag);
    const alice = await account(n1, `alice-${tag}`);
    const bob = await account(n2, `bob-${tag}`);
    const carol = await account(n3, `carol-${tag}`);
    const dave = await account(n3, `dave-${tag}`);
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_roomname': 'Across nodes', 'muc#roomconfig_publicroom': '1' });
    assert.ok(codes(await enter(bob, room, 'Bob')).includes(110));
    await alice.expect(presenceOf(`${room}/Bob`));
    assert.ok(codes(await enter(carol, room, 'Carol')).includes(110));
    await alice.expect(presenceOf(`${room}/Carol`));
    await bob.expect(presenceOf(`${room}/Carol`));

    carol.send(x('message', { to: room, type: 'groupchat' }, x('body', {}, 'hello from m3')));
    for (const c of [alice, bob, carol]) assert.equal((await c.expect(isGroupchat(room, 'hello from m3'))).attrs.from, `${room}/Carol`);

    // A private message from m2 to the occupant on m3, through the room on m2.
    bob.send(x('message', { to: `${room}/Carol`, type: 'chat' }, x('body', {}, 'psst'), x('x', { xmlns: 'http://jabber.org/protocol/muc#user' })));
    const pm = await carol.expect((el) => el.name === 'message' && el.getChildText('body') === 'psst');
    assert.equal(pm.attrs.from, `${room}/Bob`);

    // The nick is taken by a user on another node: 409 conflict.
    const refused = await enter(dave, room, 'Carol');
    assert.equal(refused.attrs.type, 'error');
    assert.equal(errorOf(refused), 'conflict');

    // The public listing and `gatehouse muc list`, asked on m1, know the room running on m2.
    const items = await alice.iq(x('iq', { type: 'get', to: SERVICE }, x('query', { xmlns: NS.discoItems })));
    assert.ok(items.getChild('query')?.getChildren('item').some((i) => i.attrs.jid === room && i.attrs.name === 'Across nodes'), `listed: ${items}`);
    const list = await runCli(['muc', 'list', '--json', '--config', join(n1.dir, 'gatehouse.yaml')]);
    assert.equal(list.code, 0, list.out);
    const listed = (JSON.parse(list.stdout) as { rooms: { jid: string; occupants: number; node?: string }[] }).rooms.find((r) => r.jid === room);
    assert.deepEqual(listed && { occupants: listed.occupants, node: listed.node }, { occupants: 3, node: 'm2' });

    // The owner on m1 kicks the occupant on m3 (307, 110 for the kicked one).
    const kick = await alice.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { nick: 'Carol', role: 'none' }, x('reason', {}, 'testing')))));
    assert.equal(kick.attrs.type, 'result', `kick: ${kick}`);
    const kicked = await carol.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Carol` && el.attrs.type === 'unavailable');
    assert.deepEqual(codes(kicked).sort(), [110, 307]);
    const seen = await bob.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Carol` && el.attrs.type === 'unavailable');
    assert.ok(codes(seen).includes(307));
    // Now the nick is free for the user on m3.
    assert.ok(codes(await enter(dave, room, 'Carol', { initial: false })).includes(110));
  });

  test('the node running a persistent room is killed: the room comes back on another node, a self-ping gets not-acceptable, joining again works', async () => {
    const [n1, n2, n3] = nodes as [Node, Node, Node];
    const room = roomOn('m3', ['m1', 'm2', 'm3'], `k${tag}`);
    const erin = await account(n1, `erin-${tag}`);
    const frank = await account(n2, `frank-${tag}`);
    await createInstant(erin, room, 'Erin', { 'muc#roomconfig_persistentroom': '1', 'muc#roomconfig_roomname': 'Survivor' });
    await enter(frank, room, 'Frank');
    await erin.expect(presenceOf(`${room}/Frank`));
    // Frank becomes a member: an affiliation stored in the database.
    const grant = await erin.iq(x('iq', { type: 'set', to: room }, x('query', { xmlns: MUC_ADMIN }, x('item', { jid: `frank-${tag}@localhost`, affiliation: 'member' }))));
    assert.equal(grant.attrs.type, 'result');

    n3.proc.proc.kill('SIGKILL');
    await n3.proc.exited;
    // Sent before the others noticed: m3 does not confirm them, and once the room moved they go to its
    // new node instead of being lost. A message from an occupant the new node does not know yet gets
    // not-acceptable (XEP-0045 7.4); a join of a temporary room of m3 creates it on its new node.
    erin.send(x('message', { to: room, type: 'groupchat', id: `lost-${tag}` }, x('body', {}, 'in the window')));
    const temporary = roomOn('m3', ['m1', 'm2', 'm3'], `w${tag}`);
    frank.send(x('presence', { to: `${temporary}/Frank` }, x('x', { xmlns: MUC })));
    const refused = await erin.expect((el) => el.name === 'message' && el.attrs.id === `lost-${tag}`, FAILURE_TIMEOUT_MS * 4 + 10_000);
    assert.equal(refused.attrs.type, 'error');
    assert.equal(errorOf(refused), 'not-acceptable');
    const joined = await frank.expect((el) => el.name === 'presence' && el.attrs.from === `${temporary}/Frank`, FAILURE_TIMEOUT_MS * 4 + 10_000);
    assert.ok(codes(joined).includes(110) && codes(joined).includes(201), `the room was created on its new node: ${joined}`);
    // Until the others declare m3 dead, stanzas for the room go to m3 and get nothing back.
    while ((await nodeState(n1, 'm3')) !== 'dead' || (await nodeState(n2, 'm3')) !== 'dead') await new Promise((r) => setTimeout(r, 200));

    const ping = await selfPing(erin, `${room}/Erin`);
    assert.equal(ping.attrs.type, 'error');
    assert.equal(errorOf(ping), 'not-acceptable');
    // Joining again: the room was not created anew (no 201) and kept its owner and member.
    const back = await enter(erin, room, 'Erin', { initial: false });
    assert.ok(codes(back).includes(110), `rejoined: ${back}`);
    assert.ok(!codes(back).includes(201), 'the stored room was loaded, not created anew');
    assert.equal(item(back)?.attrs.affiliation, 'owner');
    const frankBack = await enter(frank, room, 'Frank', { initial: false });
    assert.equal(item(frankBack)?.attrs.affiliation, 'member');
    const info = await frank.iq(x('iq', { type: 'get', to: room }, x('query', { xmlns: NS.discoInfo })));
    const features = info.getChild('query')?.getChildren('feature').map((f) => f.attrs.var) ?? [];
    assert.ok(features.includes('muc_persistent'));
    assert.equal(info.getChild('query')?.getChild('identity')?.attrs.name, 'Survivor');
    const list = await runCli(['muc', 'list', '--json', '--config', join(n1.dir, 'gatehouse.yaml')]);
    const listed = (JSON.parse(list.stdout) as { rooms: { jid: string; node?: string }[] }).rooms.find((r) => r.jid === room);
    assert.equal(listed?.node, ownerAmong(room, ['m1', 'm2']));
  });

  test('the node running a room stops cleanly: its occupants get unavailable with status 332 and join again on another node', async () => {
    const [n1, n2] = nodes as [Node, Node, Node];
    // m3 is dead since the test before: the room runs on m2.
    const room = roomOn('m2', ['m1', 'm2'], `s${tag}`);
    const gina = await account(n1, `gina-${tag}`);
    await createInstant(gina, room, 'Gina');
    gina.send(x('message', { to: room, type: 'groupchat' }, x('body', {}, 'before the stop')));
    await gina.expect(isGroupchat(room, 'before the stop'));
    n2.proc.proc.kill('SIGTERM');
    await n2.proc.exited;
    const shut = await gina.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Gina` && el.attrs.type === 'unavailable');
    assert.ok(codes(shut).includes(332), `system shutdown: ${shut}`);
    assert.ok(codes(shut).includes(110));
    // m1 runs the room once it heard m2 leave (right after the 332s, on the same connection).
    while ((await nodeState(n1, 'm2')) === 'up') await new Promise((r) => setTimeout(r, 100));
    // Joined again, the room runs on m1 (history stayed behind: it is memory only).
    gina.send(x('presence', { to: `${room}/Gina` }, x('x', { xmlns: MUC })));
    const again = await gina.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Gina` && codes(el).includes(110));
    assert.ok(codes(again).includes(201), 'a temporary room starts anew');
  });

  test('a node joins that the room now hashes to: the room moves there, its occupants told with 332, and they join again there', async () => {
    const n1 = nodes[0]!;
    // Only m1 is up now; the room runs there until m4 joins.
    const room = roomOn('m4', ['m1', 'm4'], `j${tag}`);
    const hana = await account(n1, `hana-${tag}`);
    await createInstant(hana, room, 'Hana', { 'muc#roomconfig_persistentroom': '1' });
    const n4 = await startNode('m4', prefix);
    nodes.push(n4);
    const moved = await hana.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Hana` && el.attrs.type === 'unavailable');
    assert.ok(codes(moved).includes(332), `moved: ${moved}`);
    const back = await enter(hana, room, 'Hana', { initial: false });
    assert.ok(codes(back).includes(110) && !codes(back).includes(201), `rejoined the stored room: ${back}`);
    assert.equal(item(back)?.attrs.affiliation, 'owner');
    const list = await runCli(['muc', 'list', '--json', '--config', join(n1.dir, 'gatehouse.yaml')]);
    const listed = (JSON.parse(list.stdout) as { rooms: { jid: string; node?: string; occupants: number }[] }).rooms.filter((r) => r.jid === room);
    assert.deepEqual(listed.map((r) => [r.node, r.occupants]), [['m4', 1]], 'one copy of the room, on m4');
  });
});

describe('cluster: the console lists the rooms of every node', { skip }, () => {
  const prefix = 'ghtest-' + randomBytes(4).toString('hex');
  const tag = randomBytes(3).toString('hex');
  let c1: TestServer;
  let c2: TestServer;
  before(async () => {
    const storage = clusterStorage();
    const cluster = (node: string) => ({ cluster: { enabled: true, node, prefix, heartbeatInterval: '200ms', failureTimeout: '1s', deliveryTimeout: '1s' }, muc: { maxRoomsPerUser: 1 } });
    c1 = await startTestServer({ storage, config: cluster('c1'), logLevel: 'warn' });
    c2 = await startTestServer({ storage, config: cluster('c2'), logLevel: 'warn' });
    // Each node has heard the other.
    while (c1.server.ctx.services.get('cluster')!.status().nodes.length < 2 || c2.server.ctx.services.get('cluster')!.status().nodes.length < 2) await new Promise((r) => setTimeout(r, 50));
  });
  after(async () => {
    await c2?.stop();
    await c1?.stop();
  });

  test('the /muc page and muc list of one node show a room running on the other, with its node and occupants; muc destroy reaches it', async () => {
    const room = roomOn('c2', ['c1', 'c2'], `a${tag}`);
    const alice = await loginAs(c1, `alice-${tag}`);
    const bob = await loginAs(c2, `bob-${tag}`);
    await createInstant(alice, room, 'Alice', { 'muc#roomconfig_roomname': 'Console view' });
    await enter(bob, room, 'Bob');
    await alice.expect(presenceOf(`${room}/Bob`));
    assert.equal(c1.server.ctx.services.get('muc')!.rooms.has(room), false, 'the room is not run on c1');
    // The page as the console renders it on c1 (the console's login is tested with the admin module).
    const page = await mucRoomsPage.render({ ctx: c1.server.ctx, admin: { jid: 'admin@localhost', csrf: 'x' }, url: new URL('http://127.0.0.1/muc'), now: new Date(), audit: () => {} });
    const body = String(page.body);
    assert.ok(body.includes(room) && body.includes('Console view'), body);
    assert.match(body, /<td class="num">2<\/td><td>[^<]*<\/td><td class="mono">c2<\/td>/);
    // `gatehouse muc list` and /api/muc-list answer through the control request.
    const { rooms } = (await controlRequest(c1.dir, 'muc.list')) as { rooms: { jid: string; occupants: number; node?: string }[] };
    const listed = rooms.find((r) => r.jid === room);
    assert.deepEqual(listed && [listed.occupants, listed.node], [2, 'c2']);
    // `gatehouse muc destroy` on c1 reaches the room on c2: its occupants are told (10.9).
    const out = (await controlRequest(c1.dir, 'muc.destroy', { room, reason: 'closing' })) as { destroyed: string; occupants: number };
    assert.deepEqual(out, { destroyed: room, occupants: 2 });
    const gone = await bob.expect((el) => el.name === 'presence' && el.attrs.from === `${room}/Bob` && el.attrs.type === 'unavailable');
    assert.equal(gone.getChild('x', 'http://jabber.org/protocol/muc#user')?.getChild('destroy')?.getChildText('reason'), 'closing');
    await assert.rejects(controlRequest(c1.dir, 'muc.destroy', { room }), /no room/);
  });

  test('muc.maxRoomsPerUser counts the rooms a user owns on every node', async () => {
    const owned = roomOn('c2', ['c1', 'c2'], `o${tag}`);
    const second = roomOn('c1', ['c1', 'c2'], `p${tag}`);
    const ida = await loginAs(c1, `ida-${tag}`);
    await createInstant(ida, owned, 'Ida');
    // The second room would run on c1, which holds none of hers: refused all the same.
    const refused = await enter(ida, second, 'Ida', { initial: false });
    assert.equal(refused.attrs.type, 'error');
    assert.equal(errorOf(refused), 'resource-constraint');
  });
});
