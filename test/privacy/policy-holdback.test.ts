/**
 * P22: a configuration that would change the published privacy policy never stops the server. The
 * parts that widen the policy (a new component, host, administrator, a longer retention period, ...)
 * are held back until an announced version allowing them takes effect, on its date (a moved
 * ManualClock) or at once when technical, without a restart; narrowing changes are in force at once.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { stringify } from 'yaml';
import { modulesWith, startTestServer, type TestServer } from '../helpers/server.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { createTransportsSupervisor } from '../../server/modules/transports/supervisor.js';
import { TestClient } from '../helpers/xmpp-client.js';
import { runCli } from '../helpers/server-process.js';
import { parseConfig, type Config } from '../../server/config/index.js';
import { ManualClock } from '../../shared/clock.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { handshakeDigest } from '../../server/streams/component.js';
import { controlHandlers } from '../../server/admin/control.js';
import { announcePolicy } from '../../server/modules/policy/announce.js';
import { RULES, holdBack } from '../../server/modules/policy/holdback.js';
import { FACT_KEYS, type PolicyVersion } from '../../server/modules/policy/versions.js';
import { policyFromConfig } from '../../server/modules/policy/render.js';
import type { HeldPartInfo } from '../../server/modules/policy/module.js';
import { policyPage } from '../../server/modules/policy/admin-policy.js';

const DAY = 86_400_000;
const COMPONENT = 'irc.localhost';
const SECRET = 'holdback-component-secret-31c7';

/** Everything the server sent on a connection until it closed it. */
function rawExchange(port: number, write: (send: (s: string) => void, received: () => string) => void, until: (data: string) => boolean): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect({ port, host: '127.0.0.1' });
    let data = '';
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`no answer; got: ${data.slice(0, 500)}`));
    }, 20_000);
    const finish = () => {
      clearTimeout(timer);
      socket.destroy();
      resolve(data);
    };
    socket.on('error', () => {});
    socket.on('data', (d: Buffer) => {
      data += d.toString('utf8');
      write((s) => socket.write(s), () => data);
      if (until(data)) finish();
    });
    socket.on('close', finish);
    socket.on('connect', () => write((s) => socket.write(s), () => data));
  });
}

/** Connects as the XEP-0114 component: 'accepted' after <handshake/>, else the stream error condition. */
async function componentConnects(port: number, domain = COMPONENT, secret = SECRET): Promise<string> {
  let step = 0;
  const data = await rawExchange(
    port,
    (send, received) => {
      if (step === 0) {
        step = 1;
        send(`<?xml version='1.0'?><stream:stream xmlns='${NS.component}' xmlns:stream='${NS.stream}' to='${domain}'>`);
        return;
      }
      const id = /<stream:stream[^>]*\sid=['"]([^'"]+)['"]/.exec(received())?.[1];
      if (step === 1 && id) {
        step = 2;
        send(`<handshake>${handshakeDigest(id, secret).toString('hex')}</handshake>`);
      }
    },
    (d) => d.includes('<handshake/>') || d.includes('</stream:stream>'),
  );
  if (data.includes('<handshake/>')) return 'accepted';
  return /<stream:error><([a-z-]+)/.exec(data)?.[1] ?? `no stream error in: ${data.slice(0, 300)}`;
}

/** Opens a client (or `ns` server) stream to `domain`: the stream error condition, or 'features' when it is served. */
async function clientStreamTo(port: number, domain: string, ns = 'jabber:client'): Promise<string> {
  let sent = false;
  const data = await rawExchange(
    port,
    (send) => {
      if (sent) return;
      sent = true;
      send(`<?xml version='1.0'?><stream:stream xmlns='${ns}' xmlns:stream='${NS.stream}' to='${domain}' version='1.0'>`);
    },
    (d) => d.includes('</stream:features>') || d.includes('</stream:stream>'),
  );
  if (data.includes('</stream:features>')) return 'features';
  return /<stream:error><([a-z-]+)/.exec(data)?.[1] ?? `no stream error in: ${data.slice(0, 300)}`;
}

async function held(ts: TestServer): Promise<HeldPartInfo[]> {
  const handler = controlHandlers(ts.server.ctx).get('policy.held');
  assert.ok(handler, 'the policy module serves policy.held on the control socket');
  return (await handler.handler({})) as HeldPartInfo[];
}

/** Resolves when the next configuration comes into force. */
function nextInForce(ts: TestServer): Promise<Config> {
  return new Promise((resolve) => {
    const off = ts.server.ctx.hooks.on('config/in-force', ({ after }) => {
      off();
      resolve(after);
    });
  });
}

describe('P22 policy changes never block a start: held back until announced', () => {
  let dir: string;
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-holdback-'));
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  let n = 0;
  /** A database of its own, and a starter for servers on it with the given configuration. */
  function installation(clock: ManualClock) {
    const dbPath = join(dir, `db-${++n}.sqlite`);
    return (config: Record<string, unknown> = {}, modules?: GatehouseModule[]) => startTestServer({ storage: { type: 'sqlite', path: dbPath }, clock, config, modules, logLevel: 'info' });
  }

  const withComponent = { components: [{ domain: COMPONENT, secret: SECRET }], listen: { components: [{ host: '127.0.0.1', port: 0 }] } };

  test('P22 a component added without an announcement: the server serves clients, the component is refused, and it connects on the announced date without a restart', async () => {
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
    const start = installation(clock);
    await (await start()).stop();

    const ts = await start(withComponent);
    try {
      const line = ts.logLines.find((l) => l.includes('held back') && l.includes(`components: — → ${COMPONENT}`));
      assert.ok(line, `one log line names the held-back component; got:\n${ts.logLines.join('\n')}`);
      assert.ok(line.includes('until a change is announced'));
      assert.equal(ts.logLines.filter((l) => l.includes('held back until')).length, 1, 'one line per held-back part');

      const alice = await ts.user('alice');
      const items = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
      assert.ok(!items.toString().includes(COMPONENT), 'a held-back component is not offered to clients');
      assert.ok(ts.componentPort > 0, 'the component listener is open');
      assert.equal(await componentConnects(ts.componentPort), 'host-unknown');
      assert.deepEqual(await held(ts), [{ key: 'components', change: `components: — → ${COMPONENT}`, until: null, technical: null }]);
      const page = String((await policyPage.render({ ctx: ts.server.ctx, admin: { jid: 'admin@localhost', csrf: 'x' }, url: new URL('http://localhost/policy'), now: clock.now(), audit: () => {} })).body);
      assert.ok(page.includes('<h2>Held back</h2>') && page.includes(`<li>components: — → ${COMPONENT}: until a change is announced</li>`), 'the admin console lists it');

      const announced = await announcePolicy(ts.server.ctx.storage, ts.config, { effective: '2026-04-01', now: clock.now() });
      assert.deepEqual(announced.changes, [`components: — → ${COMPONENT}`]);
      assert.deepEqual(await held(ts), [{ key: 'components', change: `components: — → ${COMPONENT}`, until: '2026-04-01T00:00:00.000Z', technical: null }]);
      assert.equal(await componentConnects(ts.componentPort), 'host-unknown', 'still held back before the date');

      const inForce = nextInForce(ts);
      clock.set(new Date(Date.UTC(2026, 3, 1)));
      const config = await inForce;
      assert.deepEqual(config.components.map((c) => c.domain), [COMPONENT]);
      assert.deepEqual(await held(ts), []);
      assert.equal(await componentConnects(ts.componentPort), 'accepted', 'the component connects on the effective date, without a restart');
      assert.ok(ts.logLines.some((l) => l.includes('held-back configuration in force now') && l.includes(COMPONENT)));
      const after = await alice.iq(x('iq', { type: 'get', to: 'localhost' }, x('query', { xmlns: NS.discoItems })));
      assert.ok(after.toString().includes(COMPONENT), 'and is offered to clients');
    } finally {
      await ts.stop();
    }
  });

  test('P22 the transport of a held-back component is not started until the component comes into force', async () => {
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
    const start = installation(clock);
    await (await start()).stop();
    const transportFile = join(dir, 'irc-transport.yaml');
    writeFileSync(transportFile, stringify({ adapter: 'irc', component: { domain: COMPONENT, secret: SECRET } }));
    const supervisor = createTransportsSupervisor({
      transports: [{ name: 'irc', config: transportFile }],
      // A stand-in child that runs until it is stopped.
      command: () => ({ command: process.execPath, args: ['-e', 'setInterval(() => {}, 60000)'] }),
      stopTimeout: 5000,
    });
    const ts = await start(withComponent, modulesWith(supervisor));
    try {
      assert.deepEqual(supervisor.running(), [{ name: 'irc', pid: null, restarts: 0 }], 'not started while held back');
      assert.ok(ts.logLines.some((l) => l.includes('transport not started') && l.includes(COMPONENT)));
      await announcePolicy(ts.server.ctx.storage, ts.config, { effective: '2026-03-01', technical: 'the IRC gateway replaces a broken bridge', now: clock.now() });
      assert.deepEqual(await held(ts), []);
      assert.ok(supervisor.running()[0]!.pid, 'started when its component came into force');
      assert.ok(ts.logLines.some((l) => l.includes('transport started')));
    } finally {
      await ts.stop();
    }
  });

  test('P22 a new host is held back: its clients get host-unknown until a technical announcement puts it in force at once', async () => {
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
    const start = installation(clock);
    await (await start()).stop();
    const hosts = [
      { domain: 'localhost', registration: 'open' },
      { domain: 'chat.localhost', registration: 'open' },
    ];
    const ts = await start({ hosts });
    try {
      assert.ok(ts.logLines.some((l) => l.includes('held back') && l.includes('hosts: localhost → localhost, chat.localhost')));
      await (await ts.user('alice')).close();
      assert.equal(await clientStreamTo(ts.port, 'chat.localhost'), 'host-unknown');

      await assert.rejects(announcePolicy(ts.server.ctx.storage, ts.config, { effective: '2026-03-02', now: clock.now() }), /less than 28 days ahead/);
      await announcePolicy(ts.server.ctx.storage, ts.config, { effective: '2026-03-01', technical: 'the service moves to a new domain', now: clock.now() });
      const inForce = nextInForce(ts);
      assert.deepEqual(await held(ts), [], 'a technical announcement is in force at once');
      await inForce;
      assert.equal(await clientStreamTo(ts.port, 'chat.localhost'), 'features');
      const bob = await TestClient.connect({ port: ts.port, domain: 'chat.localhost' });
      try {
        assert.equal((await bob.register('bob', 'secret-bob')).attrs.type, 'result');
        assert.match(await bob.login('bob', 'secret-bob'), /^bob@chat\.localhost\//);
      } finally {
        bob.destroy();
      }
    } finally {
      await ts.stop();
    }
  });

  test('P22 federation turned on is held back: no s2s listener until the change is in force, then it opens without a restart', async () => {
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
    const start = installation(clock);
    await (await start()).stop();
    const ts = await start({ listen: { s2s: [{ host: '127.0.0.1', port: 0 }] } });
    try {
      assert.equal(ts.s2sPort, 0, 'no s2s listener while federation is held back');
      assert.ok(ts.logLines.some((l) => l.includes('held back') && l.includes('listen.s2s: no → yes')));
      assert.equal(ts.server.ctx.services.get('s2s'), undefined);
      await announcePolicy(ts.server.ctx.storage, ts.config, { effective: '2026-03-01', technical: 'federation with the sister server', now: clock.now() });
      assert.deepEqual(await held(ts), []);
      const s2s = ts.server.listeners.find((l) => l.kind === 's2s');
      assert.ok(s2s, 'the s2s listener opened');
      assert.ok(ts.server.ctx.services.get('s2s'), 'the federation service runs');
      assert.equal(await clientStreamTo(s2s.port, 'localhost', 'jabber:server'), 'features', 'other servers are answered');
    } finally {
      await ts.stop();
    }
  });

  test('P22 narrowing changes (a transport removed, a shorter retention) need no hold-back; widening ones keep the values in force', async () => {
    const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
    const start = installation(clock);
    await (await start({ ...withComponent, admins: ['root@localhost'] })).stop();

    let ts = await start({ retention: { offlineMessages: '14d' } });
    try {
      assert.deepEqual(await held(ts), []);
      assert.equal(ts.server.ctx.config.retention.offlineMessages, 14 * DAY);
      assert.deepEqual(ts.server.ctx.config.components, []);
      assert.ok(ts.logLines.some((l) => l.includes('narrow the privacy policy are in force at once') && l.includes('retention.offlineMessages: 30 days → 14 days') && l.includes('components: irc.localhost → —')));
      assert.ok(!ts.logLines.some((l) => l.includes('held back')));
    } finally {
      await ts.stop();
    }

    ts = await start({ ...withComponent, retention: { offlineMessages: '60d' }, admins: ['root@localhost', 'second@localhost'] });
    try {
      assert.deepEqual(
        (await held(ts)).map((p) => p.change),
        ['admins: 1 → 2', 'retention.offlineMessages: 30 days → 60 days'],
      );
      assert.equal(ts.server.ctx.config.retention.offlineMessages, 30 * DAY, 'the period in force stays');
      assert.deepEqual(ts.server.ctx.config.admins, ['root@localhost'], 'the administrators the policy in force counts, first listed first');
      assert.equal(ts.server.ctx.configInForce.file.retention.offlineMessages, 60 * DAY);
      assert.equal(await componentConnects(ts.componentPort), 'accepted', 'the component of the policy in force connects');
    } finally {
      await ts.stop();
    }
  });

  test('P22 gatehouse check-config names the held-back parts before a restart', async () => {
    const clock = new ManualClock(Date.now());
    const dbPath = join(dir, 'cli.sqlite');
    const base = { dataDir: join(dir, 'cli-data'), hosts: [{ domain: 'localhost', registration: 'open' }], storage: { type: 'sqlite', path: dbPath } };
    const file = join(dir, 'cli.yaml');
    writeFileSync(file, stringify(base));
    const fresh = await runCli(['check-config', '--config', file]);
    assert.equal(fresh.code, 0, fresh.stderr);
    assert.match(fresh.stdout, /no database yet/);

    await (await startTestServer({ storage: { type: 'sqlite', path: dbPath }, clock })).stop();
    writeFileSync(file, stringify({ ...base, components: [{ domain: COMPONENT, secret: SECRET }], retention: { offlineMessages: '14d' } }));
    const r = await runCli(['check-config', '--config', file]);
    assert.equal(r.code, 0, r.stderr);
    const lines = r.stdout.trim().split('\n');
    assert.match(lines[0]!, /^configuration OK: 1 host\(s\), storage sqlite$/);
    assert.ok(lines.includes(`held back until a change is announced: components: — → ${COMPONENT}`), r.stdout);
    assert.ok(lines.some((l) => /^to announce it: gatehouse policy announce --effective \d{4}-\d{2}-\d{2}/.test(l)), r.stdout);
    assert.ok(lines.includes('in force at once (narrows the privacy policy): retention.offlineMessages: 30 days → 14 days'), r.stdout);
    const check = await runCli(['policy', 'check', '--config', file]);
    assert.equal(check.code, 0, check.stderr);
    assert.ok(check.stdout.includes(`held back until a change is announced: components: — → ${COMPONENT}`));
  });
});

describe('P22 hold-back rules, fact by fact', () => {
  const base = { dataDir: '/tmp/gatehouse-holdback-rules', hosts: [{ domain: 'example.org' }], admins: ['a@example.org'], s2s: { allow: ['one.example', 'two.example'] } };
  const configOf = (raw: Record<string, unknown> = {}): Config => parseConfig({ ...base, ...raw }, '/tmp');
  const at = new Date(Date.UTC(2026, 2, 1));
  const versionOf = (config: Config): PolicyVersion => {
    const p = policyFromConfig(config);
    return { id: 1, hash: p.hash, document: JSON.stringify({ facts: p.facts, texts: p.texts }), announcedAt: at, effectiveAt: at, technicalReason: null };
  };
  const heldKeys = (inForce: Record<string, unknown>, file: Record<string, unknown>) => holdBack(configOf(file), [versionOf(configOf(inForce))], at).held.map((h) => h.key);

  test('P22 every fact the policy states has a hold-back rule', () => {
    assert.deepEqual(FACT_KEYS.filter((k) => !RULES[k]), []);
  });

  const cases: [string, Record<string, unknown>, Record<string, unknown>, Record<string, unknown>][] = [
    // key, in force, widening, narrowing (or {} where no change is harmless)
    ['hosts', {}, { hosts: [{ domain: 'example.org' }, { domain: 'new.example.org' }] }, {}],
    ['admins', {}, { admins: ['a@example.org', 'b@example.org'] }, { admins: [] }],
    ['auth.hashes', { auth: { hashes: ['SHA-256'] } }, { auth: { hashes: ['SHA-1', 'SHA-256'] } }, {}],
    ['c2s.allowPlain', { c2s: { allowPlain: false } }, { c2s: { allowPlain: true } }, {}],
    ['c2s.requireEncryption', {}, { c2s: { requireEncryption: false } }, {}],
    ['tls.minVersion', { tls: { minVersion: 'TLSv1.3' } }, { tls: { minVersion: 'TLSv1.2' } }, {}],
    ['retention.inactiveAccounts', {}, { retention: { inactiveAccounts: '730d' } }, {}],
    ['retention.inactiveWarning', {}, { retention: { inactiveWarning: '1d' } }, { retention: { inactiveWarning: '30d' } }],
    ['retention.offlineMessages', {}, { retention: { offlineMessages: '60d' } }, { retention: { offlineMessages: '7d' } }],
    ['retention.detailedLogs', {}, { retention: { detailedLogs: '30d' } }, { retention: { detailedLogs: '1d' } }],
    ['retention.uploads', {}, { retention: { uploads: '60d' } }, { retention: { uploads: '7d' } }],
    ['upload.enabled', { upload: { enabled: false } }, { upload: { enabled: true } }, {}],
    ['muc.enabled', { muc: { enabled: false } }, { muc: { enabled: true } }, {}],
    ['muc.historyMaxAge', {}, { muc: { historyMaxAge: '7d' } }, { muc: { historyMaxAge: '1h' } }],
    ['muc.unusedRooms', {}, { muc: { unusedRooms: '730d' } }, { muc: { unusedRooms: '30d' } }],
    ['offline.maxPerUser', {}, { offline: { maxPerUser: 100_000 } }, { offline: { maxPerUser: 0 } }],
    ['backups.schedule', { backups: { schedule: 'off' } }, { backups: { schedule: 'daily' } }, {}],
    ['backups.keep', {}, { backups: { keep: 100 } }, { backups: { keep: 1 } }],
    ['components', {}, { components: [{ domain: 'gw.example.org', secret: 'x' }] }, {}],
    ['listen.s2s', {}, { listen: { s2s: [{ host: '127.0.0.1', port: 5269 }] } }, {}],
    ['s2s.requireValidCertificates', { s2s: { ...base.s2s, requireValidCertificates: true } }, { s2s: { ...base.s2s, requireValidCertificates: false } }, {}],
    ['s2s.requireEncryption', {}, { s2s: { ...base.s2s, requireEncryption: false } }, {}],
    ['s2s.allow', {}, { s2s: { allow: [] } }, { s2s: { allow: ['one.example'] } }],
  ];
  for (const [key, inForce, widening, narrowing] of cases) {
    test(`P22 ${key}: a widening change is held back, a narrowing one is in force at once`, () => {
      const version = versionOf(configOf(inForce));
      assert.deepEqual(heldKeys(inForce, { ...inForce, ...widening }), [key]);
      // The configuration in force keeps the value in force: nothing in it is held back any more.
      const kept = holdBack(configOf({ ...inForce, ...widening }), [version], at).config;
      assert.deepEqual(holdBack(kept, [version], at).held, []);
      if (Object.keys(narrowing).length) assert.deepEqual(heldKeys(inForce, { ...inForce, ...narrowing }), []);
    });
  }

  test('P22 file upload under a policy stored before uploads existed is held back: the service stays off until announced', () => {
    const old = configOf();
    const p = policyFromConfig(old);
    const facts = JSON.parse(JSON.stringify(p.facts)) as Record<string, unknown> & { retention: Record<string, unknown> };
    delete facts.uploads;
    delete facts.retention.uploads;
    const version: PolicyVersion = { id: 1, hash: p.hash, document: JSON.stringify({ facts, texts: p.texts }), announcedAt: at, effectiveAt: at, technicalReason: null };
    const r = holdBack(configOf(), [version], at);
    assert.deepEqual(r.held.map((h) => h.key).sort(), ['retention.uploads', 'upload.enabled']);
    assert.equal(r.config.upload.enabled, false);
    assert.equal(configOf().upload.enabled, true);
  });

  test('P22 group chats under a policy stored before they existed are held back: the service stays off until announced', () => {
    const p = policyFromConfig(configOf());
    const facts = JSON.parse(JSON.stringify(p.facts)) as Record<string, unknown>;
    delete facts.groupChats;
    const version: PolicyVersion = { id: 1, hash: p.hash, document: JSON.stringify({ facts, texts: p.texts }), announcedAt: at, effectiveAt: at, technicalReason: null };
    const r = holdBack(configOf(), [version], at);
    assert.deepEqual(r.held.map((h) => h.key), ['muc.enabled']);
    assert.equal(r.config.muc.enabled, false);
    assert.equal(configOf().muc.enabled, true);
  });

  test('P22 the inactive-account period is held back either way; the contact changes at once', () => {
    assert.deepEqual(heldKeys({}, { retention: { inactiveAccounts: '30d' } }), ['retention.inactiveAccounts']);
    assert.deepEqual(heldKeys({}, { policy: { contact: 'mailto:new@example.org' } }), []);
  });
});
