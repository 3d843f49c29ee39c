/**
 * Every migration, in order. Passed to TypeORM as classes (not globs) so that the compiled
 * dist/storage/migrations/*.js load without any file-system discovery.
 */
import { InitialSchema1732600000000 } from './1732600000000-InitialSchema.js';
import { PrivacyLogs1732600000100 } from './1732600000100-PrivacyLogs.js';
import { Statistics1732600000200 } from './1732600000200-Statistics.js';
import { PolicyVersions1732600000400 } from './1732600000400-PolicyVersions.js';
import { Transports1732600000500 } from './1732600000500-Transports.js';
import { TransportSyncState1732600000600 } from './1732600000600-TransportSyncState.js';
import { TransportSecretState1732600000760 } from './1732600000760-TransportSecretState.js';

export const migrations = [InitialSchema1732600000000, PrivacyLogs1732600000100, Statistics1732600000200, PolicyVersions1732600000400, Transports1732600000500, TransportSyncState1732600000600, TransportSecretState1732600000760];
