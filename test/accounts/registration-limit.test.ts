/** The throttle on successful in-band registrations (XEP-0077; config `registrationLimit`), over real sockets. */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startTestServer, type TestServer } from '../helpers/server.js';
import { RegistrationThrottle, type RegistrationFailure } from '../../server/modules/register.js';
import { addressGroup } from '../../shared/ip-addresses.js';
import { errorCondition } from '../../shared/xml/stanza-errors.js';
import { ManualClock } from '../../shared/clock.js';
import { NS } from '../../shared/ns.js';
import type { Element } from '../../shared/xml/element.js';

async function register(ts: TestServer, name: string): Promise<Element> {
  const c = await ts.client();
  const reply = await c.register(name, 'pw-' + name + '-long-enough');
  await c.close();
  return reply;
}

describe('registration throttle per address', () => {
  const clock = new ManualClock(Date.UTC(2026, 5, 1, 12, 0, 0));
  let ts: TestServer;
  const failures: RegistrationFailure[] = [];
  before(async () => {
    ts = await startTestServer({ clock, logLevel: 'info', config: { registrationLimit: { maxPerAddress: 3, window: '1h' } } });
    ts.server.ctx.hooks.on('register/failed', (f) => void failures.push(f));
  });
  after(() => ts.stop());

  test('P7 the 4th registration from one address within an hour is refused with policy-violation (wait) and recorded; an hour later it succeeds', async () => {
    for (const name of ['one', 'two']) assert.equal((await register(ts, name)).attrs.type, 'result', name);
    // A failed attempt (name taken) gives its slot back: the third still fits.
    assert.equal(errorCondition(await register(ts, 'one')), 'conflict');
    clock.advance(10 * 60_000);
    assert.equal((await register(ts, 'three')).attrs.type, 'result');

    const fourth = await register(ts, 'four');
    assert.equal(fourth.attrs.type, 'error');
    assert.equal(errorCondition(fourth), 'policy-violation');
    const error = fourth.getChild('error')!;
    assert.equal(error.attrs.type, 'wait');
    assert.match(error.getChildText('text', NS.stanzas) ?? '', /too many accounts were registered from your address recently; try again in 50 minutes/);
    assert.equal(await ts.server.ctx.storage.accounts.get('four', 'localhost'), null, 'no account');
    assert.ok(failures.some((f) => f.username === 'four' && f.condition === 'policy-violation' && f.ip === '127.0.0.1'), 'P7 failed registration record');
    assert.ok(!ts.logLines.join('\n').includes('pw-four'), 'no password in any log line');

    clock.advance(50 * 60_000);
    assert.equal((await register(ts, 'four')).attrs.type, 'result');
    assert.ok(await ts.server.ctx.storage.accounts.get('four', 'localhost'));
  });
});

describe('registration throttle units', () => {
  test('IPv6 addresses are grouped by /64, IPv4 (also IPv4-mapped) by address', () => {
    assert.equal(addressGroup('2001:db8:1:2::1'), addressGroup('2001:db8:1:2:ffff::9'));
    assert.notEqual(addressGroup('2001:db8:1:2::1'), addressGroup('2001:db8:1:3::1'));
    assert.equal(addressGroup('::ffff:192.0.2.1'), '192.0.2.1');
    assert.equal(addressGroup('192.0.2.1'), '192.0.2.1');
    assert.notEqual(addressGroup('192.0.2.1'), addressGroup('192.0.2.2'));
  });

  test('one /64 shares the limit; exempt ranges and 0 are unlimited; a released slot is free again', () => {
    let now = 0;
    const limits = { maxPerAddress: 2, window: 1000, exempt: ['10.0.0.0/8'] };
    const t = new RegistrationThrottle(() => limits, () => now);
    assert.ok('release' in t.take('2001:db8::1'));
    const second = t.take('2001:db8::2');
    assert.ok('release' in second);
    assert.deepEqual(t.take('2001:db8::3'), { retryAt: 1000 });
    assert.ok('release' in t.take('2001:db8:0:1::1'), 'another /64');
    second.release();
    assert.ok('release' in t.take('2001:db8::3'), 'released slot');
    for (let i = 0; i < 5; i++) assert.ok('release' in t.take('10.1.2.3'), 'exempt');
    now = 1000;
    assert.ok('release' in t.take('2001:db8::4'), 'window over');
    limits.maxPerAddress = 0;
    for (let i = 0; i < 5; i++) assert.ok('release' in t.take('192.0.2.7'), 'no limit');
  });
});
