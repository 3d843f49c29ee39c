/**
 * State a transport's session must keep across restarts that is as sensitive as a credential
 * (Matrix: the end-to-end encryption store with the gateway device's private keys and the room
 * keys it received), per registration and server: sealed with the vault's key like the
 * credentials (key id, nonce, tag; the ciphertext as base64). Deleted with the registration
 * (foreign key, ON DELETE CASCADE, and explicitly by deleteRegistration).
 */
import { Table, type MigrationInterface, type QueryRunner } from 'typeorm';
import { columnKit } from './kit.js';

export class TransportSecretState1732600000760 implements MigrationInterface {
  name = 'TransportSecretState1732600000760';

  async up(queryRunner: QueryRunner): Promise<void> {
    const c = await columnKit(queryRunner);
    await queryRunner.createTable(
      new Table({
        name: 'transport_secret_state',
        columns: [
          c.varchar('network', 64, { isPrimary: true }),
          c.varchar('user_jid', 640, { isPrimary: true }),
          // As in transport_sync_state: '' or the SHA-256 (base64url) of the server name.
          c.varchar('server_key', 43, { isPrimary: true }),
          c.varchar('key_id', 16),
          c.varchar('nonce', 32),
          c.varchar('tag', 32),
          c.largeText('ciphertext'),
          c.millis('updated_at'),
        ],
        foreignKeys: [
          {
            name: 'fk_transport_secret_state_registration',
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
    await queryRunner.dropTable('transport_secret_state', true);
  }
}
