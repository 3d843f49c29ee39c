/**
 * Where a transport's session stopped in the foreign network's event stream (the adapter's
 * 'syncState', e.g. Matrix's sync token with the few room facts needed to resume without a full
 * initial sync), per registration and server. Formerly a `_state:` key in the registration's
 * settings, which was too small for an account in hundreds of rooms. Deleted with the
 * registration (foreign key, ON DELETE CASCADE, and explicitly by deleteRegistration).
 */
import { Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columnKit } from './kit.js';

export class TransportSyncState1732600000600 implements MigrationInterface {
  name = 'TransportSyncState1732600000600';

  async up(queryRunner: QueryRunner): Promise<void> {
    const c = await columnKit(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'transport_sync_state',
        columns: [
          c.varchar('network', 64, { isPrimary: true }),
          c.varchar('user_jid', 640, { isPrimary: true }),
          // '' for networks with one server per registration, else the SHA-256 (base64url) of the
          // server name: MySQL's 3072-byte key limit leaves no room for the name itself.
          c.varchar('server_key', 43, { isPrimary: true }),
          c.largeText('state'),
          c.millis('updated_at'),
        ],
        foreignKeys: [
          {
            name: 'fk_transport_sync_state_registration',
            columnNames: ['network', 'user_jid'],
            referencedTableName: 'transport_registrations',
            referencedColumnNames: ['network', 'user_jid'],
            onDelete: 'CASCADE',
          },
        ],
      }),
    );
  }

  async down(queryRunner: QueryRunner): Promise<void> {
    await queryRunner.dropTable('transport_sync_state', true);
  }
}
