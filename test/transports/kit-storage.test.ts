/**
 * The transport repository on every storage target: SQLite always, MariaDB/MySQL with
 * GATEHOUSE_TEST_MYSQL_URL, PostgreSQL with GATEHOUSE_TEST_POSTGRES_URL.
 */
import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { openStorage } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import { asTypeOrmStorage } from '../../storage/typeorm-storage.js';
import type { Storage, VaultRecord } from '../../storage/types.js';
import { Vault, stateServerKey, vaultKey } from '../../transports/kit/vault.js';
import { runRetention } from '../../server/modules/retention/retention.js';
import { retentionClasses } from '../../server/modules/index.js';
import '../../server/modules/transports/supervisor.js';
import { parseConfig } from '../../server/config/index.js';
import { HookBus } from '../../server/core/hooks.js';
import { LocalSessionRegistry } from '../../server/core/session.js';
import { silentLogger } from '../../shared/logger.js';
import { ManualClock } from '../../shared/clock.js';

const T0 = new Date(Date.UTC(2030, 0, 2, 3, 4, 5));

for (const target of storageTargets()) {
  describe(`transport storage on ${target.name}`, () => {
    let storage: Storage;
    let drop: () => Promise<void>;
    const vault = new Vault(vaultKey(randomBytes(32), 'test'));

    before(async () => {
      const made = await target.make();
      drop = made.drop;
      storage = await openStorage(made.config);
    });

    after(async () => {
      await storage.close();
      await drop();
    });

    const record = (user: string, network = 'irc', secret = 'pw'): VaultRecord => vault.seal(user, network, { fields: { username: user, password: secret } }, T0);

    it('P9 saves a registration with its credentials in one go, reads them back, deletes both', async () => {
      const repo = storage.transports;
      const user = `ünï-${randomBytes(3).toString('hex')}@example.org`;
      await repo.saveRegistration({ network: 'irc', userJid: user, settings: { serverMessages: 'false' }, contacts: ['a%s@gw'] }, record(user), T0);
      const reg = await repo.getRegistration('irc', user);
      assert.deepEqual(reg, { network: 'irc', userJid: user, settings: { serverMessages: 'false' }, contacts: ['a%s@gw'], createdAt: T0, updatedAt: T0 });
      const rec = (await repo.getCredentials('irc', user))!;
      assert.equal(vault.open(rec).fields.password, 'pw');
      // Same user on another network: separate.
      await repo.saveRegistration({ network: 'matrix', userJid: user, settings: {}, contacts: [] }, record(user, 'matrix'), T0);
      assert.equal((await repo.listRegistrations('irc')).filter((r) => r.userJid === user).length, 1);
      // Replacing keeps created_at, refreshes the rest.
      const later = new Date(T0.getTime() + 1000);
      await repo.saveRegistration({ network: 'irc', userJid: user, settings: {}, contacts: [] }, record(user, 'irc', 'pw2'), later);
      const again = (await repo.getRegistration('irc', user))!;
      assert.equal(again.createdAt.getTime(), T0.getTime());
      assert.equal(again.updatedAt.getTime(), later.getTime());
      assert.equal(vault.open((await repo.getCredentials('irc', user))!).fields.password, 'pw2');
      assert.equal(await repo.updateState('irc', user, { contacts: ['x@gw', 'y@gw'] }, later), true);
      assert.deepEqual((await repo.getRegistration('irc', user))!.contacts, ['x@gw', 'y@gw']);
      assert.equal(await repo.updateState('irc', 'nobody@example.org', { contacts: [] }, later), false);
      assert.equal(await repo.deleteRegistration('irc', user), true);
      assert.equal(await repo.getRegistration('irc', user), null);
      assert.equal(await repo.getCredentials('irc', user), null);
      assert.equal(await repo.deleteRegistration('irc', user), false);
      assert.ok(await repo.getCredentials('matrix', user), 'the other network is untouched');
      // Credentials of an unknown registration are not stored.
      assert.equal(await repo.updateCredentials(record('ghost@example.org')), false);
    });

    it('P23 sync states: per registration and server, replaced, bounded, deleted with the registration', async () => {
      const repo = storage.transports;
      const user = `sync-${randomBytes(3).toString('hex')}@example.org`;
      assert.equal(await repo.saveSyncState('matrix', user, '', 'pos-0', T0), false, 'no registration, nothing stored');
      assert.equal(await repo.getSyncState('matrix', user, ''), null);
      await repo.saveRegistration({ network: 'matrix', userJid: user, settings: {}, contacts: [] }, record(user, 'matrix'), T0);
      const big = JSON.stringify({ since: 's1', rooms: Array.from({ length: 3000 }, (_, i) => ({ id: `!room${i}:example.org`, m: 'join', name: `Röom ${i}` })) });
      assert.ok(big.length > 65_536, 'more than a MySQL TEXT holds');
      assert.equal(await repo.saveSyncState('matrix', user, '', big, T0), true);
      assert.equal(await repo.getSyncState('matrix', user, ''), big);
      assert.equal(await repo.saveSyncState('matrix', user, '', 'pos-2', T0), true);
      assert.equal(await repo.saveSyncState('matrix', user, 'irc.two', 'other-server', T0), true);
      assert.equal(await repo.getSyncState('matrix', user, ''), 'pos-2');
      assert.equal(await repo.getSyncState('matrix', user, 'irc.two'), 'other-server');
      await assert.rejects(repo.saveSyncState('matrix', user, '', 'x'.repeat(1_000_001), T0), RangeError);
      assert.equal(await repo.deleteRegistration('matrix', user), true);
      assert.equal(await repo.getSyncState('matrix', user, ''), null);
      assert.equal(await repo.getSyncState('matrix', user, 'irc.two'), null);
    });

    it('P9 P23 secret states (Matrix encryption store): sealed, per registration and server, bound to them, large, rotated, deleted with the registration', async () => {
      const repo = storage.transports;
      const user = `secret-${randomBytes(3).toString('hex')}@example.org`;
      const data = randomBytes(3_000_000);
      const sealed = (server: string, bytes: Uint8Array, v = vault) => v.sealBytes(user, 'matrix', stateServerKey(server), bytes, T0);
      assert.equal(await repo.saveSecretState('', sealed('', data)), false, 'no registration, nothing stored');
      await repo.saveRegistration({ network: 'matrix', userJid: user, settings: {}, contacts: [] }, record(user, 'matrix'), T0);
      assert.equal(await repo.saveSecretState('', sealed('', data)), true);
      assert.equal(await repo.saveSecretState('irc.two', sealed('irc.two', Buffer.from('other'))), true);
      const got = (await repo.getSecretState('matrix', user, ''))!;
      assert.ok(vault.openBytes(got, stateServerKey('')).equals(data), 'more than a MySQL TEXT holds, byte for byte');
      assert.equal(vault.openBytes((await repo.getSecretState('matrix', user, 'irc.two'))!, stateServerKey('irc.two')).toString(), 'other');
      // Bound to its place: as another server's state, or as credentials, it does not open.
      assert.throws(() => vault.openBytes(got, stateServerKey('irc.two')));
      assert.throws(() => vault.open(got));
      assert.equal(await repo.saveSecretState('', sealed('', Buffer.from('newer'))), true);
      assert.equal(vault.openBytes((await repo.getSecretState('matrix', user, ''))!, '').toString(), 'newer');
      // Rotation: all or nothing.
      const next = new Vault(vaultKey(randomBytes(32), 'next'));
      const states = (await repo.listSecretStates('matrix')).filter((st) => st.record.userJid === user);
      assert.equal(states.length, 2);
      const updates = states.map(({ serverKey, record: r }) => ({ serverKey, record: next.sealBytes(r.userJid, r.network, serverKey, vault.openBytes(r, serverKey), T0), expectKeyId: r.keyId }));
      await assert.rejects(repo.reencryptSecretStates([...updates, { ...updates[0]!, expectKeyId: 'stale' }]));
      assert.equal((await repo.getSecretState('matrix', user, ''))!.keyId, vault.keyId, 'nothing changed');
      await repo.reencryptSecretStates(updates);
      assert.equal(next.openBytes((await repo.getSecretState('matrix', user, ''))!, '').toString(), 'newer');
      assert.equal(await repo.deleteRegistration('matrix', user), true);
      assert.equal(await repo.getSecretState('matrix', user, ''), null);
      assert.equal(await repo.getSecretState('matrix', user, 'irc.two'), null);
      assert.equal((await repo.listSecretStates('matrix')).filter((st) => st.record.userJid === user).length, 0);
    });

    it('P9 re-encrypts in one transaction, and changes nothing when a record moved on meanwhile', async () => {
      const repo = storage.transports;
      const users = [0, 1, 2].map((i) => `rot${i}-${randomBytes(3).toString('hex')}@example.org`);
      for (const u of users) await repo.saveRegistration({ network: 'rot', userJid: u, settings: {}, contacts: [] }, record(u, 'rot'), T0);
      const next = new Vault(vaultKey(randomBytes(32), 'next'));
      const recs = await repo.listCredentials('rot');
      assert.deepEqual([...(await repo.keyIdCounts('rot')).entries()], [[vault.keyId, 3]]);
      // One expectation is stale: the whole rotation is refused.
      const stale = recs.map((r, i) => ({ record: next.seal(r.userJid, r.network, vault.open(r), T0), expectKeyId: i === 2 ? 'ffffffffffffffff' : r.keyId }));
      await assert.rejects(repo.reencrypt(stale), /changed during the rotation/);
      assert.deepEqual([...(await repo.keyIdCounts('rot')).entries()], [[vault.keyId, 3]]);
      await repo.reencrypt(recs.map((r) => ({ record: next.seal(r.userJid, r.network, vault.open(r), T0), expectKeyId: r.keyId })));
      assert.deepEqual([...(await repo.keyIdCounts('rot')).entries()], [[next.keyId, 3]]);
      for (const r of await repo.listCredentials('rot')) assert.equal(next.open(r).fields.password, 'pw');
    });

    it('P10 P13 the audit log: filters, order, clipping, deletion by age (the retention class too)', async () => {
      const repo = storage.transports;
      const net = `audit-${randomBytes(3).toString('hex')}`;
      const at = (s: number) => new Date(T0.getTime() + s * 1000);
      await repo.appendAudit({ at: at(0), userJid: 'a@x', network: net, account: 'acc', server: 'irc.one', event: 'connecting', reason: null });
      await repo.appendAudit({ at: at(1), userJid: 'a@x', network: net, account: 'acc', server: 'irc.one', event: 'connected', reason: null });
      await repo.appendAudit({ at: at(2), userJid: 'b@x', network: net, account: null, server: null, event: 'error', reason: 'x'.repeat(2000) });
      await repo.appendAudit({ at: at(3), userJid: 'a@x', network: net, account: 'acc', server: 'irc.one', event: 'disconnected', reason: 'bye\nnow' });
      await assert.rejects(repo.appendAudit({ at: at(4), userJid: 'a@x', network: net, account: null, server: null, event: 'bogus' as never, reason: null }), RangeError);
      const all = await repo.queryAudit({ network: net });
      assert.deepEqual(all.map((r) => r.event), ['connecting', 'connected', 'error', 'disconnected']);
      assert.equal(all[2]!.reason!.length, 512);
      assert.equal(all[3]!.reason, 'bye now');
      assert.deepEqual((await repo.queryAudit({ network: net, userJid: 'b@x' })).map((r) => r.event), ['error']);
      assert.deepEqual((await repo.queryAudit({ network: net, since: at(1), until: at(3) })).map((r) => r.event), ['connected', 'error']);
      assert.equal(await repo.countAuditBefore(at(2)), (await repo.queryAudit({ until: at(2) })).length);
      assert.equal(await repo.deleteAuditBefore(at(1), 1), 1);
      assert.deepEqual((await repo.queryAudit({ network: net })).map((r) => r.event), ['connected', 'error', 'disconnected']);
      // The server's retention sweeper deletes rows older than retention.detailedLogs.
      const config = parseConfig({ retention: { detailedLogs: '48h' } }, '/tmp');
      const clock = new ManualClock(new Date(at(2).getTime() + 48 * 3600_000 + 500));
      const cls = retentionClasses().find((c) => c.name === 'transport-connections');
      assert.ok(cls, 'the retention class is registered');
      const dry = await runRetention({ config, storage, log: silentLogger, clock, hooks: new HookBus(), sessions: new LocalSessionRegistry() }, { classes: [cls], dryRun: true });
      assert.ok(dry[0]!.count >= 2);
      await runRetention({ config, storage, log: silentLogger, clock, hooks: new HookBus(), sessions: new LocalSessionRegistry() }, { classes: [cls] });
      assert.deepEqual((await repo.queryAudit({ network: net })).map((r) => r.event), ['disconnected']);
      assert.equal(typeof asTypeOrmStorage(storage).rawQuery, 'function');
    });
  });
}
