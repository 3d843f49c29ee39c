/**
 * Offering uploads is a fact of the privacy policy (P22): turning the service off takes effect at
 * once; turning it on again is not held back while the version in force still states uploads (a
 * version that does not is test/privacy/policy-holdback.test.ts's); the service leaves and joins the
 * host's disco#items without a restart.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loginAs } from '../helpers/server.js';
import { startUploadServer } from '../helpers/upload-server.js';
import { x } from '../../shared/xml/element.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { NS } from '../../shared/ns.js';

test('P22 upload.enabled off is in force at once, and on again while the policy in force states uploads; disco and slot requests follow without a restart', async () => {
  const web = await startUploadServer();
  try {
    const alice = await loginAs(web.ts, 'alice');
    const items = async () =>
      (await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems }))))
        .getChild('query', NS.discoItems)!
        .getChildren('item')
        .map((i) => i.attrs.jid);
    const request = () => alice.iq(x('iq', { type: 'get', to: 'upload.localhost' }, x('request', { xmlns: 'urn:xmpp:http:upload:0', filename: 'a.txt', size: '3' })));
    assert.ok((await items()).includes('upload.localhost'));
    assert.equal((await request()).attrs.type, 'result');

    const off = await web.ts.reload({ upload: { enabled: false } });
    assert.deepEqual(off.heldBack, []);
    assert.ok(!(await items()).includes('upload.localhost'));
    assert.notEqual(errorCondition(await request()), undefined);

    const on = await web.ts.reload({ upload: { enabled: true } });
    assert.deepEqual(on.heldBack, []);
    assert.ok((await items()).includes('upload.localhost'));
    assert.equal((await request()).attrs.type, 'result');
  } finally {
    await web.stop();
  }
});
