/** The `cluster` section: what an operator gets wrong is refused with the key and the reason. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ConfigError, parseConfig } from '../../server/config/index.js';
import { Logger } from '../../shared/logger.js';

const PG = { type: 'postgres', url: 'postgres://gatehouse@127.0.0.1/gatehouse' };

function refusal(raw: Record<string, unknown>): ConfigError {
  try {
    parseConfig(raw, '/tmp');
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e;
  }
  assert.fail('the configuration was accepted');
}

test('cluster mode is off by default; on, it takes its node name, NATS servers and timings', () => {
  assert.equal(parseConfig({}, '/tmp').cluster.enabled, false);
  const c = parseConfig({ storage: PG, cluster: { enabled: true, node: 'xmpp-a', nats: ['nats://10.0.0.5:4222', 'tls://nats.example.org'], heartbeatInterval: '500ms', failureTimeout: '3s' } }, '/tmp');
  assert.equal(c.cluster.node, 'xmpp-a');
  assert.deepEqual(c.cluster.nats, ['nats://10.0.0.5:4222', 'tls://nats.example.org']);
  assert.equal(c.cluster.heartbeatInterval, 500);
  assert.equal(c.cluster.failureTimeout, 3000);
});

test('a cluster on SQLite is refused: its nodes need one database they all reach', () => {
  const e = refusal({ cluster: { enabled: true } });
  assert.equal(e.keyPath, 'cluster.enabled');
  assert.match(e.message, /mysql.*postgres/);
});

test('a failure timeout shorter than two heartbeats, a node name NATS cannot carry, a URL that is not NATS: refused', () => {
  assert.equal(refusal({ storage: PG, cluster: { enabled: true, heartbeatInterval: '2s', failureTimeout: '3s' } }).keyPath, 'cluster.failureTimeout');
  assert.equal(refusal({ storage: PG, cluster: { enabled: true, node: 'node one' } }).keyPath, 'cluster.node');
  assert.equal(refusal({ storage: PG, cluster: { enabled: true, node: 'a.b' } }).keyPath, 'cluster.node');
  assert.equal(refusal({ storage: PG, cluster: { enabled: true, prefix: 'x>' } }).keyPath, 'cluster.prefix');
  assert.equal(refusal({ storage: PG, cluster: { enabled: true, nats: ['http://127.0.0.1:4222'] } }).keyPath, 'cluster.nats[0]');
  assert.equal(refusal({ storage: PG, cluster: { enabled: true, nats: [] } }).keyPath, 'cluster.nats');
});

test("log lines name the cluster node, in text and in JSON", () => {
  const lines: string[] = [];
  new Logger({ level: 'info', format: 'text', node: 'xmpp-b', sink: (l) => lines.push(l) }).child('router').info('hello');
  new Logger({ level: 'info', format: 'json', node: 'xmpp-b', sink: (l) => lines.push(l) }).info('hello');
  assert.match(lines[0]!, / \[xmpp-b\] router: hello$/);
  assert.equal((JSON.parse(lines[1]!) as { node: string }).node, 'xmpp-b');
});
