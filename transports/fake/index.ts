/**
 * `gatehouse transport fake --config FILE`: the fake network as a transport, for trying the kit
 * and for tests that run a transport as its own process. Settings (`network:` in the file):
 *
 *   network:
 *     network: fake            # the network id (disco type, audit log)
 *     servers: [irc.one, irc.two]   # multi-server like IRC; leave out for a single network
 *     echo: false              # the network echoes room messages
 *     accounts: { alice: secret }   # who may log in
 *     rooms: { "#lobby": { topic: Welcome, users: [bob] } }
 */
import type { AdapterFactory } from '../kit/adapter.js';
import { FakeAdapter, FakeNetwork } from './fake-network.js';

export { FakeAdapter, FakeNetwork, FakeSession } from './fake-network.js';

function fail(key: string, problem: string): never {
  throw new Error(`config error: network.${key}: ${problem}`);
}

export const createAdapter: AdapterFactory = (settings) => {
  const servers = settings.servers;
  if (servers !== undefined && (!Array.isArray(servers) || servers.some((s) => typeof s !== 'string'))) fail('servers', 'expected a list of server names');
  const net = new FakeNetwork({
    network: typeof settings.network === 'string' ? settings.network : 'fake',
    servers: servers as string[] | undefined,
    echo: settings.echo === true,
  });
  const accounts = settings.accounts ?? {};
  if (typeof accounts !== 'object' || accounts === null || Array.isArray(accounts)) fail('accounts', 'expected a mapping of user name to password');
  for (const [user, pw] of Object.entries(accounts)) {
    if (typeof pw !== 'string') fail(`accounts.${user}`, 'expected a password string');
    net.addAccount(user, pw);
  }
  const rooms = settings.rooms ?? {};
  if (typeof rooms !== 'object' || rooms === null || Array.isArray(rooms)) fail('rooms', 'expected a mapping of room to settings');
  for (const [id, spec] of Object.entries(rooms as Record<string, { topic?: string; users?: string[] }>)) {
    const r = net.room(id);
    if (spec?.topic) r.subject = spec.topic;
    for (const u of spec?.users ?? []) net.remoteJoin(id, u);
  }
  return new FakeAdapter(net);
};
