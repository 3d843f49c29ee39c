/**
 * The kit's extensions for adapters that talk to the user themselves (used by Matrix trust):
 * ad-hoc commands of the adapter on the gateway JID (NetworkAdapter.commands, run in the user's
 * session), chat with the gateway both ways (LegacySession.gatewayMessage, the 'gatewayMessage'
 * event), and a credential the session reports empty being removed from the vault.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { GW, bareOf, errorOf, onlineUser, startKit, until, type Kit } from './kit-harness.js';

const COMMANDS = 'http://jabber.org/protocol/commands';

describe('transport kit: adapter commands and chat with the gateway', () => {
  let kit: Kit;
  let user: TestClient;

  before(async () => {
    kit = await startKit({
      fake: {
        commands: [
          {
            node: 'unlock',
            name: 'Unlock',
            instructions: 'Give the secret.',
            fields: [
              { name: 'secret', label: 'Secret', type: 'text-private', required: true, secret: true },
              { name: 'fail', label: 'Fail with', type: 'text-single', required: false, secret: false },
            ],
          },
        ],
      },
    });
    user = await onlineUser(kit, 'cmd-user', 'cmduser', 'cmd-pw');
  });

  after(async () => {
    await user?.close().catch(() => undefined);
    await kit.stop();
  });

  async function run(fields: Record<string, string>): Promise<Element> {
    const first = await user.iq(x('iq', { type: 'set', to: GW }, x('command', { xmlns: COMMANDS, node: 'unlock', action: 'execute' })));
    const sid = first.getChild('command', COMMANDS)!.attrs.sessionid;
    return user.iq(x('iq', { type: 'set', to: GW }, x('command', { xmlns: COMMANDS, node: 'unlock', action: 'complete', sessionid: sid }, x('x', { xmlns: NS.dataForms, type: 'submit' }, Object.entries(fields).map(([k, v]) => x('field', { var: k }, x('value', {}, v)))))));
  }

  test('the adapter command is listed for registered users, with its secret field private', async () => {
    const items = await user.iq(x('iq', { type: 'get', to: GW }, x('query', { xmlns: NS.discoItems, node: COMMANDS })));
    assert.deepEqual(items.getChild('query', NS.discoItems)!.getChildren('item').map((i) => i.attrs.node), ['settings', 'unlock']);
    const first = await user.iq(x('iq', { type: 'set', to: GW }, x('command', { xmlns: COMMANDS, node: 'unlock', action: 'execute' })));
    const form = first.getChild('command', COMMANDS)!.getChild('x', NS.dataForms)!;
    assert.equal(form.getChildText('instructions'), 'Give the secret.');
    assert.equal(form.getChildren('field').find((f) => f.attrs.var === 'secret')?.attrs.type, 'text-private');
  });

  test('it runs in the user session; failures and missing fields are errors with their text', async () => {
    const ok = await run({ secret: 'hunter22' });
    assert.equal(ok.attrs.type, 'result', String(ok));
    assert.equal(ok.getChild('command', COMMANDS)!.getChildText('note'), 'unlock ran for cmduser: secret=(8 characters), fail=');
    const failed = await run({ secret: 'x', fail: 'on purpose' });
    assert.equal(errorOf(failed), 'not-acceptable');
    assert.equal(failed.getChild('error')!.getChildText('text', NS.stanzas), 'failed as asked: on purpose');
    const missing = await run({ fail: '' });
    assert.equal(errorOf(missing), 'bad-request');
    assert.ok(!kit.logLines.join('\n').includes('hunter22'), 'the secret is not logged');
  });

  test('chat with the gateway goes to the session, and the session writes back from the gateway JID', async () => {
    user.send(x('message', { to: GW, type: 'chat', id: 'gw-chat-1' }, x('body', {}, 'hello gateway')));
    const reply = await user.expect((el) => el.name === 'message' && el.attrs.from === GW && el.getChildText('body') === 'heard: hello gateway');
    assert.equal(reply.attrs.type, 'chat');
  });

  test('a credential the session reports empty is removed from the vault', async () => {
    const me = bareOf(user);
    const session = kit.net.sessionOf(me)!;
    session.emit('credentials', { extraSecret: 'kept-for-now' });
    await until(async () => (await kit.transport.gateway.registration.loginRequestFor(me, undefined))?.credentials.extraSecret === 'kept-for-now', 'stored');
    session.emit('credentials', { extraSecret: '' });
    await until(async () => !('extraSecret' in ((await kit.transport.gateway.registration.loginRequestFor(me, undefined))?.credentials ?? {})), 'removed');
    assert.equal((await kit.transport.gateway.registration.loginRequestFor(me, undefined))?.credentials.password, 'cmd-pw', 'the rest stays');
  });
});
