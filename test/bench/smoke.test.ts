/**
 * Keeps `npm run bench` working: a short smoke run against Gatehouse alone. It checks that the
 * benchmark runs, that no message is lost and that the PEP scenario sets up and reports what a
 * client sees; it asserts nothing about speed (figures belong in docs/benchmarks.md, measured by
 * `npm run bench`).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { BenchResults } from '../../scripts/bench/report.js';
import { storageTargets } from '../../storage/test-databases.js';

const RUN = fileURLToPath(new URL('../../scripts/bench/run.js', import.meta.url));

test('the benchmark smoke run completes, loses no message and runs the PEP scenario', async () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-smoke-'));
  try {
    const json = path.join(dir, 'results.json');
    const proc = spawn(process.execPath, [RUN, '--smoke', '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    proc.stdout.on('data', (d) => (out += d));
    proc.stderr.on('data', (d) => (out += d));
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => proc.kill('SIGKILL'), 150_000);
      proc.on('exit', (c) => (clearTimeout(timer), resolve(c)));
    });
    assert.equal(code, 0, out.slice(-3000));
    const lost = [...out.matchAll(/\| messages lost \|([^\n]*)/g)].flatMap((m) => m[1]!.split('|').map((c) => c.trim()).filter(Boolean));
    assert.ok(lost.length > 0, 'the smoke run printed no result table');
    assert.ok(lost.every((v) => v === '0' || v === '–'), `messages were lost: ${lost.join(', ')}`);
    assert.match(out, /\| messages delivered \| 100 \|/);

    const results = JSON.parse(readFileSync(json, 'utf8')) as BenchResults;
    const pep = results.servers.find((s) => s.kind === 'gatehouse')?.scenarios.pep;
    assert.ok(pep, 'no PEP result for Gatehouse');
    const contacts = results.parameters.pepContacts!;
    assert.equal(pep.contactsOnline, contacts);
    // Subscriptions are ordinary roster work: every contact must end up mutual.
    assert.equal(pep.mutualSubscriptions, contacts);
    if (pep.advertisesPep) {
      // The account says it has PEP (XEP-0163 §6): every contact gets every item.
      assert.equal(pep.supported, true, pep.unsupportedReason);
      assert.equal(pep.warmupNotified, contacts);
      assert.equal(pep.rates.length, results.parameters.pepRates!.length);
      for (const r of pep.rates) {
        assert.equal(r.publishErrors, 0, r.firstPublishError);
        assert.equal(r.expected, r.items * contacts);
        assert.equal(r.received, r.expected);
        assert.equal(r.lost, 0);
        assert.equal(r.duplicates, 0);
      }
      assert.match(out, /\| PEP publish \| accepted \|/);
    } else {
      // Without PEP the publish gets a stanza error, reported as such, and no figures.
      assert.equal(pep.supported, false);
      assert.match(pep.unsupportedReason ?? '', /^publish answered with (cancel|modify|auth|wait)\/[a-z-]+/);
      assert.deepEqual(pep.rates, []);
      assert.match(out, /\| PEP publish \| \*\*not supported\*\* \(publish answered with /);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * A database of its own for the cluster scenario (postgres:// or mysql:// URL), not the one the
 * other tests use: the scenario announces its configuration's privacy policy (domain bench.local)
 * there, which a later test expecting its own domain in force would trip over. Without
 * GATEHOUSE_TEST_BENCH_CLUSTER_DB, a fresh database is made on the PostgreSQL or MariaDB server of
 * the storage tests (as CI runs them) and dropped afterwards.
 */
const CLUSTER_DB = process.env.GATEHOUSE_TEST_BENCH_CLUSTER_DB;
const SERVER_TARGET = storageTargets().find((t) => t.name !== 'sqlite');

test(
  'the cluster scenario runs two nodes on the shared database and NATS, and every message arrives within a node and across nodes',
  { skip: !CLUSTER_DB && !SERVER_TARGET ? 'the cluster scenario needs PostgreSQL or MariaDB: set GATEHOUSE_TEST_POSTGRES_URL, GATEHOUSE_TEST_MYSQL_URL or GATEHOUSE_TEST_BENCH_CLUSTER_DB (and NATS at 127.0.0.1:4222)' : false },
  async () => {
    const own = CLUSTER_DB ? null : await SERVER_TARGET!.make();
    const clusterDb = CLUSTER_DB ?? own!.config.url!;
    const dir = mkdtempSync(path.join(os.tmpdir(), 'gatehouse-bench-cluster-smoke-'));
    try {
      const json = path.join(dir, 'results.json');
      const proc = spawn(process.execPath, [RUN, '--smoke', '--scenarios', 'cluster', '--cluster-db', clusterDb, '--json', json], { stdio: ['ignore', 'pipe', 'pipe'] });
      let out = '';
      proc.stdout.on('data', (d) => (out += d));
      proc.stderr.on('data', (d) => (out += d));
      const code = await new Promise<number | null>((resolve) => {
        const timer = setTimeout(() => proc.kill('SIGKILL'), 150_000);
        proc.on('exit', (c) => (clearTimeout(timer), resolve(c)));
      });
      assert.equal(code, 0, out.slice(-3000));
      const cluster = (JSON.parse(readFileSync(json, 'utf8')) as BenchResults).cluster;
      assert.ok(cluster, 'no cluster result');
      assert.deepEqual(cluster.errors, []);
      const expected = cluster.parameters.messages * cluster.parameters.rounds;
      for (const phase of [cluster.within, cluster.across]) {
        assert.equal(phase.messages, expected);
        assert.equal(phase.delivered, expected);
        assert.equal(phase.lost, 0);
      }
      // Across nodes, the recipients' node (B) does work of its own; within node A it only idles.
      assert.ok(cluster.across.nodeCpuSec[1]! > 0);
      assert.deepEqual(cluster.throughput.map((t) => t.nodes), [2, 1]);
      for (const t of cluster.throughput) {
        assert.ok(t.steps.length > 0);
        assert.equal(t.steps[0]!.lost, 0);
        assert.equal(t.steps[0]!.delivered, t.steps[0]!.sent);
      }
      // The report names the machine's core count beside the throughput.
      assert.match(out, new RegExp(`Max sustained: 2 nodes \\d+/s, 1 node \\d+/s \\(${cluster.cores} cores\\)`));
    } finally {
      rmSync(dir, { recursive: true, force: true });
      await own?.drop();
    }
  },
);
