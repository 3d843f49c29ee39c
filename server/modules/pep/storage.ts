/**
 * The PEP module's own tables (module contract `storage`, storage/module-storage.ts):
 *
 * - pep_nodes: one row per node of an account: account_id (accounts(id) ON DELETE CASCADE, so an
 *   account's nodes go with it, P23), the node name, its configuration as JSON (node-config.ts),
 *   created_at.
 * - pep_items: the persisted items of a node: node_id (pep_nodes(id) ON DELETE CASCADE), the item
 *   id, the payload XML as received, the publisher's bare JID, created_at/updated_at and `seq`, a
 *   per-node counter that orders items by their last publication (for max_items and "the N most
 *   recent"): republishing an item id makes it the newest again (XEP-0060 7.1.2).
 * - pep_subscriptions: explicit subscriptions (XEP-0060 6.1) to a node: node_id (pep_nodes(id) ON
 *   DELETE CASCADE, so they go with the node and the owner's account), the subscribed JID as given
 *   (bare or full), its bare JID (to find a subscriber's subscriptions: roster changes, the
 *   subscriber's own account deleted) and subscribed_at (set again by a new subscribe; remote
 *   subscriptions expire from it, retention class pep-subscriptions).
 *
 * Conventions of /migrations (migrations/kit.ts): BIGINT milliseconds, utf8mb4 with a binary
 * collation on MySQL, MEDIUMTEXT for payloads on MySQL (TEXT holds only 64 KiB there).
 */
import { EntitySchema, Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import type { EntityManager } from 'typeorm';
import { columnKit } from '../../../storage/migrations/kit.js';
import { bigintNumber, ID_CHUNK, checkId, checkText, isUniqueViolation, type Db } from '../../../storage/db.js';
import type { ModuleStorage } from '../../../storage/module-storage.js';

/**
 * Longest node name, item id and JIDs stored (characters); most subscriptions one bare JID holds on
 * one node (its resources), so that one subscriber cannot take a node's pep.maxSubscriptionsPerNode.
 */
export const PEP_LIMITS = { node: 255, itemId: 255, publisher: 640, subscriber: 640, subscriptionsPerBareJid: 8 } as const;

interface NodeEntityRow {
  id: number;
  accountId: number;
  node: string;
  config: string;
  createdAt: number;
}

interface ItemEntityRow {
  nodeId: number;
  itemId: string;
  payload: string;
  publisher: string | null;
  createdAt: number;
  updatedAt: number;
  seq: number;
}

const PepNodeEntity = new EntitySchema<NodeEntityRow>({
  name: 'PepNode',
  tableName: 'pep_nodes',
  columns: {
    id: { type: 'integer', primary: true, generated: 'increment' },
    accountId: { name: 'account_id', type: 'integer' },
    node: { type: 'varchar', length: PEP_LIMITS.node },
    config: { type: 'text' },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
  },
});

const PepItemEntity = new EntitySchema<ItemEntityRow>({
  name: 'PepItem',
  tableName: 'pep_items',
  columns: {
    nodeId: { name: 'node_id', type: 'integer', primary: true },
    itemId: { name: 'item_id', type: 'varchar', length: PEP_LIMITS.itemId, primary: true },
    payload: { type: 'text' },
    publisher: { type: 'varchar', length: PEP_LIMITS.publisher, nullable: true },
    createdAt: { name: 'created_at', type: 'bigint', transformer: bigintNumber },
    updatedAt: { name: 'updated_at', type: 'bigint', transformer: bigintNumber },
    seq: { type: 'bigint', transformer: bigintNumber },
  },
});

interface SubscriptionEntityRow {
  nodeId: number;
  jid: string;
  bare: string;
  subscribedAt: number;
}

const PepSubscriptionEntity = new EntitySchema<SubscriptionEntityRow>({
  name: 'PepSubscription',
  tableName: 'pep_subscriptions',
  columns: {
    nodeId: { name: 'node_id', type: 'integer', primary: true },
    jid: { type: 'varchar', length: PEP_LIMITS.subscriber, primary: true },
    bare: { type: 'varchar', length: PEP_LIMITS.subscriber },
    subscribedAt: { name: 'subscribed_at', type: 'bigint', transformer: bigintNumber },
  },
});

export class PepNodes1765000000000 implements MigrationInterface {
  name = 'PepNodes1765000000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const { text, varchar, largeText, millis } = await columnKit(queryRunner);

    await queryRunner.createTable(
      new Table({
        name: 'pep_nodes',
        columns: [
          { name: 'id', type: 'integer', isPrimary: true, isGenerated: true, generationStrategy: 'increment' },
          { name: 'account_id', type: 'integer' },
          varchar('node', PEP_LIMITS.node),
          text('config'),
          millis('created_at'),
        ],
        indices: [{ name: 'uq_pep_nodes_account_node', columnNames: ['account_id', 'node'], isUnique: true }],
        foreignKeys: [{ name: 'fk_pep_nodes_account', columnNames: ['account_id'], referencedTableName: 'accounts', referencedColumnNames: ['id'], onDelete: 'CASCADE' }],
      }),
    );
    await queryRunner.createTable(
      new Table({
        name: 'pep_items',
        columns: [
          { name: 'node_id', type: 'integer', isPrimary: true },
          varchar('item_id', PEP_LIMITS.itemId, { isPrimary: true }),
          largeText('payload'),
          varchar('publisher', PEP_LIMITS.publisher, { isNullable: true }),
          millis('created_at'),
          millis('updated_at'),
          { name: 'seq', type: 'bigint' },
        ],
        indices: [{ name: 'ix_pep_items_node_seq', columnNames: ['node_id', 'seq'] }],
        foreignKeys: [{ name: 'fk_pep_items_node', columnNames: ['node_id'], referencedTableName: 'pep_nodes', referencedColumnNames: ['id'], onDelete: 'CASCADE' }],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('pep_items', true);
    await queryRunner.dropTable('pep_nodes', true);
  }
}

export class PepSubscriptions1765300000000 implements MigrationInterface {
  name = 'PepSubscriptions1765300000000';

  async up(queryRunner: QueryRunner): Promise<void> {
    const { varchar, millis } = await columnKit(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'pep_subscriptions',
        columns: [{ name: 'node_id', type: 'integer', isPrimary: true }, varchar('jid', PEP_LIMITS.subscriber, { isPrimary: true }), varchar('bare', PEP_LIMITS.subscriber), millis('subscribed_at')],
        indices: [
          { name: 'ix_pep_subscriptions_bare', columnNames: ['bare'] },
          { name: 'ix_pep_subscriptions_at', columnNames: ['subscribed_at'] },
        ],
        foreignKeys: [{ name: 'fk_pep_subscriptions_node', columnNames: ['node_id'], referencedTableName: 'pep_nodes', referencedColumnNames: ['id'], onDelete: 'CASCADE' }],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('pep_subscriptions', true);
  }
}

export interface PepNodeRow {
  id: number;
  accountId: number;
  node: string;
  /** The node configuration as stored (JSON, node-config.ts). */
  config: string;
  createdAt: Date;
}

export interface PepItemRow {
  itemId: string;
  payload: string;
  publisher: string | null;
  createdAt: Date;
  updatedAt: Date;
}

/** An explicit subscription: the subscribed JID (bare or full) and its bare JID. */
export interface PepSubscriptionRow {
  nodeId: number;
  jid: string;
  bare: string;
  subscribedAt: Date;
}

type Raw = Record<string, unknown>;

function subscriptionRow(r: Raw): PepSubscriptionRow {
  return { nodeId: Number(r.node_id), jid: String(r.jid), bare: String(r.bare), subscribedAt: new Date(Number(r.subscribed_at)) };
}

function nodeRow(r: Raw): PepNodeRow {
  return { id: Number(r.id), accountId: Number(r.account_id), node: String(r.node), config: String(r.config), createdAt: new Date(Number(r.created_at)) };
}

function itemRow(r: Raw): PepItemRow {
  return {
    itemId: String(r.item_id),
    payload: String(r.payload),
    publisher: r.publisher === null || r.publisher === undefined ? null : String(r.publisher),
    createdAt: new Date(Number(r.created_at)),
    updatedAt: new Date(Number(r.updated_at)),
  };
}

const NODE_COLUMNS = '"id", "account_id", "node", "config", "created_at"';
const ITEM_COLUMNS = '"item_id", "payload", "publisher", "created_at", "updated_at"';

/** The repository of the PEP tables. Writes of one account are serialised by the module (KeyedSerial). */
export class PepRepository {
  constructor(private readonly db: Db) {}

  private q(m: EntityManager, text: string, params: unknown[]): Promise<Raw[]> {
    return m.query(this.db.dialect(text), params) as Promise<Raw[]>;
  }

  async node(accountId: number, node: string): Promise<PepNodeRow | null> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<Raw>(`SELECT ${NODE_COLUMNS} FROM "pep_nodes" WHERE "account_id" = ? AND "node" = ?`, [accountId, node]);
    return rows[0] ? nodeRow(rows[0]) : null;
  }

  async nodes(accountId: number): Promise<PepNodeRow[]> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<Raw>(`SELECT ${NODE_COLUMNS} FROM "pep_nodes" WHERE "account_id" = ? ORDER BY "node"`, [accountId]);
    return rows.map(nodeRow);
  }

  async countNodes(accountId: number): Promise<number> {
    const rows = await this.db.sql<{ n: number | string }>('SELECT COUNT(*) AS "n" FROM "pep_nodes" WHERE "account_id" = ?', [accountId]);
    return Number(rows[0]?.n ?? 0);
  }

  /** Creates a node; null when the account already has one of that name. */
  async createNode(accountId: number, node: string, config: string, now: Date): Promise<PepNodeRow | null> {
    checkId('accountId', accountId);
    checkText('node', node, PEP_LIMITS.node);
    try {
      await this.db.tx((m) => this.q(m, 'INSERT INTO "pep_nodes" ("account_id", "node", "config", "created_at") VALUES (?, ?, ?, ?)', [accountId, node, config, now.getTime()]));
    } catch (err) {
      if (isUniqueViolation(err)) return null;
      throw err;
    }
    return this.node(accountId, node);
  }

  async setConfig(nodeId: number, config: string): Promise<void> {
    await this.db.sql('UPDATE "pep_nodes" SET "config" = ? WHERE "id" = ?', [config, nodeId]);
  }

  /** Deletes a node with its items (foreign key cascade). */
  async deleteNode(nodeId: number): Promise<void> {
    await this.db.sql('DELETE FROM "pep_nodes" WHERE "id" = ?', [nodeId]);
  }

  /**
   * Stores an item as the node's newest (replacing one with the same id) and keeps only the
   * `keep` newest items; returns the ids of the items that made room.
   */
  async publish(nodeId: number, item: { itemId: string; payload: string; publisher: string | null }, now: Date, keep: number): Promise<string[]> {
    checkText('item id', item.itemId, PEP_LIMITS.itemId);
    if (item.publisher !== null) checkText('publisher', item.publisher, PEP_LIMITS.publisher);
    return this.db.tx(async (m) => {
      const top = await this.q(m, 'SELECT MAX("seq") AS "s" FROM "pep_items" WHERE "node_id" = ?', [nodeId]);
      const seq = Number(top[0]?.s ?? 0) + 1;
      const existing = await this.q(m, 'SELECT "created_at" FROM "pep_items" WHERE "node_id" = ? AND "item_id" = ?', [nodeId, item.itemId]);
      if (existing.length > 0) {
        await this.q(m, 'UPDATE "pep_items" SET "payload" = ?, "publisher" = ?, "updated_at" = ?, "seq" = ? WHERE "node_id" = ? AND "item_id" = ?', [
          item.payload,
          item.publisher,
          now.getTime(),
          seq,
          nodeId,
          item.itemId,
        ]);
      } else {
        await this.q(m, 'INSERT INTO "pep_items" ("node_id", "item_id", "payload", "publisher", "created_at", "updated_at", "seq") VALUES (?, ?, ?, ?, ?, ?, ?)', [
          nodeId,
          item.itemId,
          item.payload,
          item.publisher,
          now.getTime(),
          now.getTime(),
          seq,
        ]);
      }
      return this.trimIn(m, nodeId, keep);
    });
  }

  private async trimIn(m: EntityManager, nodeId: number, keep: number): Promise<string[]> {
    const rows = await this.q(m, 'SELECT "item_id" FROM "pep_items" WHERE "node_id" = ? ORDER BY "seq" DESC', [nodeId]);
    const gone = rows.slice(Math.max(0, keep)).map((r) => String(r.item_id));
    for (const id of gone) await this.q(m, 'DELETE FROM "pep_items" WHERE "node_id" = ? AND "item_id" = ?', [nodeId, id]);
    return gone;
  }

  /** Keeps only the `keep` newest items of a node; returns the ids deleted. */
  trim(nodeId: number, keep: number): Promise<string[]> {
    return this.db.tx((m) => this.trimIn(m, nodeId, keep));
  }

  /** The `max` newest items (all when undefined), oldest first. */
  async items(nodeId: number, max?: number): Promise<PepItemRow[]> {
    const rows = await this.db.sql<Raw>(`SELECT ${ITEM_COLUMNS} FROM "pep_items" WHERE "node_id" = ? ORDER BY "seq" DESC`, [nodeId]);
    const newest = max === undefined ? rows : rows.slice(0, Math.max(0, max));
    return newest.reverse().map(itemRow);
  }

  async item(nodeId: number, itemId: string): Promise<PepItemRow | null> {
    const rows = await this.db.sql<Raw>(`SELECT ${ITEM_COLUMNS} FROM "pep_items" WHERE "node_id" = ? AND "item_id" = ?`, [nodeId, itemId]);
    return rows[0] ? itemRow(rows[0]) : null;
  }

  async retract(nodeId: number, itemId: string): Promise<boolean> {
    return this.db.tx(async (m) => {
      const found = await this.q(m, 'SELECT "item_id" FROM "pep_items" WHERE "node_id" = ? AND "item_id" = ?', [nodeId, itemId]);
      if (found.length === 0) return false;
      await this.q(m, 'DELETE FROM "pep_items" WHERE "node_id" = ? AND "item_id" = ?', [nodeId, itemId]);
      return true;
    });
  }

  async purge(nodeId: number): Promise<void> {
    await this.db.sql('DELETE FROM "pep_items" WHERE "node_id" = ?', [nodeId]);
  }

  /**
   * What the account's PEP data takes: items (count) and UTF-8 bytes of node names, configurations,
   * item ids and payloads; `except` leaves out one item (the one a publish replaces).
   */
  async usage(accountId: number, except?: { nodeId: number; itemId: string }): Promise<{ items: number; bytes: number }> {
    checkId('accountId', accountId);
    const nodes = await this.db.sql<{ b: number | string | null }>('SELECT SUM(OCTET_LENGTH("node") + OCTET_LENGTH("config")) AS "b" FROM "pep_nodes" WHERE "account_id" = ?', [accountId]);
    const items = await this.db.sql<{ n: number | string; b: number | string | null }>(
      'SELECT COUNT(*) AS "n", SUM(OCTET_LENGTH("i"."item_id") + OCTET_LENGTH("i"."payload")) AS "b" FROM "pep_items" "i" JOIN "pep_nodes" "n" ON "n"."id" = "i"."node_id" WHERE "n"."account_id" = ?',
      [accountId],
    );
    const total = { items: Number(items[0]?.n ?? 0), bytes: Number(nodes[0]?.b ?? 0) + Number(items[0]?.b ?? 0) };
    if (except) {
      const own = await this.db.sql<{ b: number | string | null }>('SELECT OCTET_LENGTH("item_id") + OCTET_LENGTH("payload") AS "b" FROM "pep_items" WHERE "node_id" = ? AND "item_id" = ?', [except.nodeId, except.itemId]);
      if (own[0]) {
        total.items -= 1;
        total.bytes -= Number(own[0].b ?? 0);
      }
    }
    return total;
  }

  /**
   * The nodes named in `nodes` of the accounts `usernames` on `host`, with each account's user name
   * (the last items of a user's local contacts, in a few queries however long the roster).
   */
  async nodesOfAccounts(host: string, usernames: readonly string[], nodes: readonly string[]): Promise<(PepNodeRow & { username: string })[]> {
    const names = [...new Set(nodes)].slice(0, ID_CHUNK);
    const out: (PepNodeRow & { username: string })[] = [];
    if (names.length === 0) return out;
    for (let i = 0; i < usernames.length; i += ID_CHUNK) {
      const chunk = usernames.slice(i, i + ID_CHUNK);
      const rows = await this.db.sql<Raw>(
        `SELECT "n"."id", "n"."account_id", "n"."node", "n"."config", "n"."created_at", "a"."username" FROM "pep_nodes" "n" JOIN "accounts" "a" ON "a"."id" = "n"."account_id" WHERE "a"."host" = ? AND "a"."username" IN (${chunk.map(() => '?').join(', ')}) AND "n"."node" IN (${names.map(() => '?').join(', ')})`,
        [host, ...chunk, ...names],
      );
      for (const r of rows) out.push({ ...nodeRow(r), username: String(r.username) });
    }
    return out;
  }

  // -------------------------------------------------------------------------------------------
  // Explicit subscriptions

  /**
   * Subscribes `jid` (its bare JID `bare`) to a node, or renews its subscription (subscribed_at
   * becomes `now`). Returns false, storing nothing, when the node already has `max` other
   * subscriptions or `bare` PEP_LIMITS.subscriptionsPerBareJid.
   */
  async subscribe(nodeId: number, jid: string, bare: string, now: Date, max: number): Promise<boolean> {
    checkText('subscriber', jid, PEP_LIMITS.subscriber);
    return this.db.tx(async (m) => {
      const found = await this.q(m, 'SELECT "jid" FROM "pep_subscriptions" WHERE "node_id" = ? AND "jid" = ?', [nodeId, jid]);
      if (found.length > 0) {
        await this.q(m, 'UPDATE "pep_subscriptions" SET "subscribed_at" = ? WHERE "node_id" = ? AND "jid" = ?', [now.getTime(), nodeId, jid]);
        return true;
      }
      const count = await this.q(m, 'SELECT COUNT(*) AS "n" FROM "pep_subscriptions" WHERE "node_id" = ?', [nodeId]);
      if (Number(count[0]?.n ?? 0) >= max) return false;
      const own = await this.q(m, 'SELECT COUNT(*) AS "n" FROM "pep_subscriptions" WHERE "node_id" = ? AND "bare" = ?', [nodeId, bare]);
      if (Number(own[0]?.n ?? 0) >= PEP_LIMITS.subscriptionsPerBareJid) return false;
      await this.q(m, 'INSERT INTO "pep_subscriptions" ("node_id", "jid", "bare", "subscribed_at") VALUES (?, ?, ?, ?)', [nodeId, jid, bare, now.getTime()]);
      return true;
    });
  }

  /** Ends a subscription; false when there was none. */
  async unsubscribe(nodeId: number, jid: string): Promise<boolean> {
    return this.db.tx(async (m) => {
      const found = await this.q(m, 'SELECT "jid" FROM "pep_subscriptions" WHERE "node_id" = ? AND "jid" = ?', [nodeId, jid]);
      if (found.length === 0) return false;
      await this.q(m, 'DELETE FROM "pep_subscriptions" WHERE "node_id" = ? AND "jid" = ?', [nodeId, jid]);
      return true;
    });
  }

  /** The subscriptions of one node, in the order they were made. */
  async subscriptions(nodeId: number): Promise<PepSubscriptionRow[]> {
    const rows = await this.db.sql<Raw>('SELECT "node_id", "jid", "bare", "subscribed_at" FROM "pep_subscriptions" WHERE "node_id" = ? ORDER BY "subscribed_at", "jid"', [nodeId]);
    return rows.map(subscriptionRow);
  }

  /** The subscriptions of one account's node, found by its name (a notification's recipients in one query). */
  async nodeSubscriptions(accountId: number, node: string): Promise<PepSubscriptionRow[]> {
    const rows = await this.db.sql<Raw>(
      'SELECT "s"."node_id", "s"."jid", "s"."bare", "s"."subscribed_at" FROM "pep_subscriptions" "s" JOIN "pep_nodes" "n" ON "n"."id" = "s"."node_id" WHERE "n"."account_id" = ? AND "n"."node" = ? ORDER BY "s"."subscribed_at", "s"."jid"',
      [accountId, node],
    );
    return rows.map(subscriptionRow);
  }

  /** The subscriptions of `bare` (any of its JIDs) to the nodes of one account, with each node's name and configuration. */
  async subscriptionsOf(accountId: number, bare: string): Promise<(PepSubscriptionRow & { node: string; config: string })[]> {
    checkId('accountId', accountId);
    const rows = await this.db.sql<Raw>(
      'SELECT "s"."node_id", "s"."jid", "s"."bare", "s"."subscribed_at", "n"."node", "n"."config" FROM "pep_subscriptions" "s" JOIN "pep_nodes" "n" ON "n"."id" = "s"."node_id" WHERE "n"."account_id" = ? AND "s"."bare" = ? ORDER BY "n"."node", "s"."jid"',
      [accountId, bare],
    );
    return rows.map((r) => ({ ...subscriptionRow(r), node: String(r.node), config: String(r.config) }));
  }

  /**
   * The subscriptions `bare` (any of its JIDs) holds on the nodes of this server's accounts, with
   * each node's owner (for the subscriber's own export, P23).
   */
  async subscriptionsHeldBy(bare: string): Promise<{ owner: string; node: string; jid: string }[]> {
    const rows = await this.db.sql<Raw>(
      'SELECT "s"."jid", "n"."node", "a"."username", "a"."host" FROM "pep_subscriptions" "s" JOIN "pep_nodes" "n" ON "n"."id" = "s"."node_id" JOIN "accounts" "a" ON "a"."id" = "n"."account_id" WHERE "s"."bare" = ? ORDER BY "a"."host", "a"."username", "n"."node", "s"."jid"',
      [bare],
    );
    return rows.map((r) => ({ owner: `${String(r.username)}@${String(r.host)}`, node: String(r.node), jid: String(r.jid) }));
  }

  /** Deletes every subscription held by `bare` (its account is deleted, P23); returns how many. */
  async deleteSubscriber(bare: string): Promise<number> {
    return this.db.tx(async (m) => {
      const rows = await this.q(m, 'SELECT COUNT(*) AS "n" FROM "pep_subscriptions" WHERE "bare" = ?', [bare]);
      await this.q(m, 'DELETE FROM "pep_subscriptions" WHERE "bare" = ?', [bare]);
      return Number(rows[0]?.n ?? 0);
    });
  }

  /**
   * Subscriptions of JIDs on other servers (not at one of `localHosts`) made or renewed before
   * `before`, oldest first, at most `limit`: those the retention sweep deletes.
   */
  async remoteSubscriptionsBefore(before: Date, localHosts: readonly string[], limit: number): Promise<PepSubscriptionRow[]> {
    const notLocal = localHosts.map(() => 'AND "bare" NOT LIKE ? AND "bare" <> ?').join(' ');
    const rows = await this.db.sql<Raw>(
      `SELECT "node_id", "jid", "bare", "subscribed_at" FROM "pep_subscriptions" WHERE "subscribed_at" < ? ${notLocal} ORDER BY "subscribed_at" LIMIT ${Math.max(1, Math.floor(limit))}`,
      [before.getTime(), ...localHosts.flatMap((h) => [`%@${h}`, h])],
    );
    return rows.map(subscriptionRow);
  }

  /**
   * Bare JIDs at `host` that hold subscriptions but have no account there any more (deleted while
   * the PEP module did not run, e.g. `gatehouse user del` without a running server).
   */
  async subscribersWithoutAccount(host: string): Promise<string[]> {
    const rows = await this.db.sql<{ bare: string }>('SELECT DISTINCT "bare" FROM "pep_subscriptions" WHERE "bare" LIKE ?', [`%@${host}`]);
    const byName = new Map<string, string>();
    for (const r of rows) {
      const bare = String(r.bare);
      if (bare.slice(bare.lastIndexOf('@') + 1) === host) byName.set(bare.slice(0, bare.lastIndexOf('@')), bare);
    }
    const names = [...byName.keys()];
    for (let i = 0; i < names.length; i += ID_CHUNK) {
      const chunk = names.slice(i, i + ID_CHUNK);
      const found = await this.db.sql<{ username: string }>(`SELECT "username" FROM "accounts" WHERE "host" = ? AND "username" IN (${chunk.map(() => '?').join(', ')})`, [host, ...chunk]);
      for (const f of found) byName.delete(String(f.username));
    }
    return [...byName.values()];
  }

  /** Deletes every explicit subscription (the feature is turned off); returns how many. */
  async deleteAllSubscriptions(): Promise<number> {
    return this.db.tx(async (m) => {
      const rows = await this.q(m, 'SELECT COUNT(*) AS "n" FROM "pep_subscriptions"', []);
      await this.q(m, 'DELETE FROM "pep_subscriptions"', []);
      return Number(rows[0]?.n ?? 0);
    });
  }

  /** Nodes (of every account) holding more than `max` items, for the retention sweep. */
  async nodesOver(max: number): Promise<number[]> {
    const rows = await this.db.sql<{ node_id: number | string }>('SELECT "node_id" FROM "pep_items" GROUP BY "node_id" HAVING COUNT(*) > ?', [max]);
    return rows.map((r) => Number(r.node_id));
  }
}

/** The PEP tables as the module contract declares them. */
export const pepStorage: ModuleStorage<PepRepository> = {
  name: 'pep',
  entities: [PepNodeEntity, PepItemEntity, PepSubscriptionEntity],
  migrations: [PepNodes1765000000000, PepSubscriptions1765300000000],
  repository: (db) => new PepRepository(db),
};
