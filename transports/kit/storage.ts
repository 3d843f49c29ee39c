/**
 * The transport's storage: the server's storage layer (openStorage: TypeORM on SQLite, MariaDB/
 * MySQL or PostgreSQL, schema by the same migrations), so a transport may have its own database
 * or share the server's. It only uses `storage.transports` (server/storage/repos/transports.ts).
 */
import { openStorage, type StorageConfig } from '../../storage/datasource.js';
import type { Storage } from '../../storage/types.js';
import type { Logger } from '../../shared/logger.js';

export async function openTransportStorage(config: StorageConfig, log?: Logger): Promise<Storage> {
  return openStorage(config, { migrate: true, logger: (m) => log?.info(m) });
}
