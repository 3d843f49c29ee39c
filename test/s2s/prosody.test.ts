/**
 * Federation between Gatehouse and Debian's Prosody (P18), both directions: subscription,
 * presence, messages, vCard fetch and ping; once with certificates from a test CA (SASL EXTERNAL
 * both ways, Prosody with s2s_secure_auth) and once with untrusted self-signed certificates
 * (dialback over TLS). Prosody reaches Gatehouse through a test plugin that stands in for DNS
 * (see test/helpers/prosody.ts); Gatehouse reaches Prosody through s2s.static.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { createTestCa, type TestCa } from '../helpers/test-ca.js';
import { startProsody, type Prosody } from '../helpers/prosody.js';
import { skipWithout } from '../helpers/requirements.js';
import { allModules } from '../../server/modules/index.js';
import { createS2sModule } from '../../server/modules/s2s.js';
import type { HookEvents } from '../../server/core/hooks.js';
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

const SKIP = skipWithout('prosody');
const G = 'gatehouse.test';
const P = 'prosody.test';

const isMessageFrom = (bare: string, body?: string) => (el: Element) =>
  el.name === 'message' && (el.attrs.from ?? '').split('/')[0] === bare && (body === undefined || el.getChildText('body') === body);
const isPresence = (bare: string, type?: string) => (el: Element) => el.name === 'presence' && (el.attrs.from ?? '').split('/')[0] === bare && el.attrs.type === type;

/** Names the step in the error when an expectation times out. */
async function step<T>(name: string, p: Promise<T>): Promise<T> {
  try {
    return await p;
  } catch (err) {
    throw new Error(`${name}: ${err instanceof Error ? err.message : String(err)}`);
  }
}

async function online(c: TestClient): Promise<void> {
  c.send(x('presence', {}));
  await c.expect((el) => el.name === 'presence' && el.attrs.from === c.jid && el.attrs.type === undefined);
}

interface Pair {
  g: TestServer;
  p: Prosody;
  auths: HookEvents['s2s/authenticated'][];
  alice: TestClient;
  pat: TestClient;
}

async function startPair(ca: TestCa, mode: 'external' | 'dialback'): Promise<Pair> {
  const external = mode === 'external';
  const gCert = external ? ca.issue(G) : ca.selfSigned(G);
  const pCert = external ? ca.issue(P) : ca.selfSigned(P);
  const g = await startTestServer({
    modules: [...allModules().filter((m) => m.name !== 's2s'), createS2sModule(external ? { caFile: ca.caFile } : {})],
    logLevel: 'info',
    config: {
      hosts: [{ domain: G, registration: 'open' }],
      listen: { s2s: [{ host: '127.0.0.1', port: 0 }] },
      tls: { cert: gCert.cert, key: gCert.key },
      s2s: { requireValidCertificates: external },
    },
  });
  const auths: HookEvents['s2s/authenticated'][] = [];
  g.server.ctx.hooks.on('s2s/authenticated', (e) => void auths.push(e));
  const p = await startProsody({
    domain: P,
    cert: pCert,
    caFile: external ? ca.caFile : undefined,
    secureAuth: external,
    // With certificates Prosody comes in over direct TLS (XEP-0368), otherwise over STARTTLS.
    ...(external ? { directTlsRoutes: { [G]: g.s2sPort } } : { routes: { [G]: g.s2sPort } }),
    users: [['pat', 'pw-pat']],
  });
  g.config.s2s.static[P] = { host: '127.0.0.1', port: p.s2sPort };
  const alice = await g.client({ domain: G });
  assert.equal((await alice.register('alice', 'pw-alice')).attrs.type, 'result');
  await alice.login('alice', 'pw-alice', { resource: 'laptop' });
  const pat = await TestClient.connect({ port: p.c2sPort, domain: P });
  await pat.login('pat', 'pw-pat', { mechanism: 'SCRAM-SHA-1', resource: 'phone' });
  await online(alice);
  await online(pat);
  return { g, p, auths, alice, pat };
}

async function stopPair(pair: Pair | undefined): Promise<void> {
  if (!pair) return;
  pair.pat.destroy();
  await pair.g.stop();
  await pair.p.stop();
}

function withLog<T>(pair: () => Pair, fn: () => Promise<T>): () => Promise<T> {
  return async () => {
    try {
      return await fn();
    } catch (err) {
      const p = pair();
      const prosodyLog = p.p
        .log()
        .split('\n')
        .filter((l) => /s2s|dialback|tls|sasl|error|warn/i.test(l))
        .slice(-60)
        .join('\n');
      const gLog = p.g.logLines.filter((l) => /s2s/.test(l)).slice(-40).join('\n');
      throw new Error(`${err instanceof Error ? err.stack : String(err)}\n--- prosody ---\n${prosodyLog}\n--- gatehouse ---\n${gLog}`);
    }
  };
}

for (const mode of ['external', 'dialback'] as const) {
  describe(`Gatehouse and Prosody, ${mode === 'external' ? 'certificates from a test CA (SASL EXTERNAL)' : 'untrusted certificates (dialback)'} (P18)`, { skip: SKIP }, () => {
    let ca: TestCa;
    let pair: Pair;
    const get = () => pair;

    before(async () => {
      ca = createTestCa();
      pair = await startPair(ca, mode);
    });
    after(async () => {
      await stopPair(pair);
      ca?.remove();
    });

    test(
      `P18 messages both ways with Prosody (${mode})`,
      withLog(get, async () => {
        const { alice, pat } = pair;
        alice.send(x('message', { to: `pat@${P}`, type: 'chat', id: 'g1' }, x('body', {}, 'hello prosody')));
        const m = await pat.expect(isMessageFrom(`alice@${G}`, 'hello prosody'), 15_000);
        assert.equal(m.attrs.from, alice.jid);
        pat.send(x('message', { to: `alice@${G}`, type: 'chat', id: 'p1' }, x('body', {}, 'hello gatehouse')));
        const r = await alice.expect(isMessageFrom(`pat@${P}`, 'hello gatehouse'), 15_000);
        assert.equal(r.attrs.from, pat.jid);
        const expected = mode === 'external' ? ['EXTERNAL'] : ['dialback'];
        const out = pair.auths.find((e) => e.direction === 'out' && e.domain === P);
        const inn = pair.auths.find((e) => e.direction === 'in' && e.domain === P);
        assert.ok(out && expected.includes(out.mechanism), `outbound mechanism ${out?.mechanism}`);
        assert.ok(inn && expected.includes(inn.mechanism), `inbound mechanism ${inn?.mechanism}`);
        assert.ok(out.secure && inn.secure);
      }),
    );

    test(
      `P18 subscription and presence with Prosody (${mode})`,
      withLog(get, async () => {
        const { alice, pat } = pair;
        // Both clients fetch their roster first, so they get roster pushes (RFC 6121 2.1.6).
        await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
        await pat.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
        // Gatehouse user asks, Prosody user approves.
        alice.send(x('presence', { to: `pat@${P}`, type: 'subscribe' }));
        await step('step 1', pat.expect(isPresence(`alice@${G}`, 'subscribe'), 15_000));
        pat.send(x('presence', { to: `alice@${G}`, type: 'subscribed' }));
        await step('step 2', alice.expect(isPresence(`pat@${P}`, 'subscribed'), 15_000));
        await step('step 3', alice.expect(isPresence(`pat@${P}`, undefined), 15_000));
        // And the other way round.
        pat.send(x('presence', { to: `alice@${G}`, type: 'subscribe' }));
        await step('step 4', alice.expect(isPresence(`pat@${P}`, 'subscribe'), 15_000));
        alice.send(x('presence', { to: `pat@${P}`, type: 'subscribed' }));
        // Prosody tells its client by a roster push (it does not forward 'subscribed' itself).
        await step('step 5', pat.expect((el) => el.name === 'iq' && el.attrs.type === 'set' && el.getChild('query', NS.roster)?.getChild('item')?.attrs.subscription === 'both', 15_000));
        await step('step 6', pat.expect(isPresence(`alice@${G}`, undefined), 15_000));
        const roster = await alice.iq(x('iq', { type: 'get' }, x('query', { xmlns: NS.roster })));
        const item = roster.getChild('query', NS.roster)?.getChildren('item').find((i) => i.attrs.jid === `pat@${P}`);
        assert.equal(item?.attrs.subscription, 'both');
        // Presence changes now flow both ways.
        pat.send(x('presence', {}, x('show', {}, 'away')));
        await step('step 7', alice.expect((el) => isPresence(`pat@${P}`)(el) && el.getChildText('show') === 'away', 15_000));
        alice.send(x('presence', {}, x('show', {}, 'dnd')));
        await step('step 8', pat.expect((el) => isPresence(`alice@${G}`)(el) && el.getChildText('show') === 'dnd', 15_000));
      }),
    );

    test(
      `P18 vCard fetch and ping with Prosody (${mode})`,
      withLog(get, async () => {
        const { alice, pat } = pair;
        assert.equal((await pat.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Pat Prosody'))))).attrs.type, 'result');
        assert.equal((await alice.iq(x('iq', { type: 'set' }, x('vCard', { xmlns: NS.vcard }, x('FN', {}, 'Alice Gatehouse'))))).attrs.type, 'result');
        const pv = await alice.iq(x('iq', { type: 'get', to: `pat@${P}` }, x('vCard', { xmlns: NS.vcard })), 15_000);
        assert.equal(pv.attrs.type, 'result', String(pv));
        assert.equal(pv.getChild('vCard', NS.vcard)?.getChildText('FN'), 'Pat Prosody');
        const gv = await pat.iq(x('iq', { type: 'get', to: `alice@${G}` }, x('vCard', { xmlns: NS.vcard })), 15_000);
        assert.equal(gv.attrs.type, 'result', String(gv));
        assert.equal(gv.getChild('vCard', NS.vcard)?.getChildText('FN'), 'Alice Gatehouse');
        const ping1 = await alice.iq(x('iq', { type: 'get', to: P }, x('ping', { xmlns: NS.ping })), 15_000);
        assert.equal(ping1.attrs.type, 'result');
        const ping2 = await pat.iq(x('iq', { type: 'get', to: G }, x('ping', { xmlns: NS.ping })), 15_000);
        assert.equal(ping2.attrs.type, 'result');
        assert.equal(ping2.attrs.from, G);
      }),
    );
  });
}
