import type { GatehouseModule } from '../core/context.js';
import { pingModule } from './ping.js';
import { discoModule } from './disco.js';
import { versionModule } from './version.js';
import { timeModule } from './time.js';
import { lastActivityModule } from './last-activity.js';
import { vcardModule } from './vcard.js';
import { privateStorageModule } from './private-storage.js';
import { registerModule } from './register.js';
import { createAccountActivityModule } from './account-activity.js';
import { rosterModule } from './roster.js';
import { presenceModule } from './presence.js';
import { messageModule } from './message.js';
import { offlineModule } from './offline.js';
import { carbonsModule } from './carbons.js';
import { blockingModule } from './blocking.js';
import { streamManagementModule } from './stream-management.js';
import { csiModule } from './csi.js';
import { createS2sModule } from './s2s.js';
import { componentsModule } from './components.js';
import { transportsSupervisorModule } from './transports-supervisor.js';
import { policyModule } from '../privacy/policy/module.js';
import { retentionModule } from '../privacy/retention.js';
import { failedLoginGuardModule } from '../privacy/failed-login-guard.js';
import { deliveryFailureModule } from '../privacy/delivery-failures.js';
import { backupModule } from '../privacy/backup.js';
import { createControlModule } from '../admin/control.js';
import { createAdminHttpModule } from '../admin/http.js';
import { createStatisticsModule } from '../privacy/statistics.js';
import { createSessionStatsModule } from '../privacy/session-stats.js';
// Registers the 'log-files' retention class (P13), so the CLI sweeper also prunes old log files.
import '../privacy/log-files.js';

/** Every feature module, in load order. The core never imports a feature directly. */
export function allModules(): GatehouseModule[] {
  return [createControlModule(), failedLoginGuardModule, deliveryFailureModule, retentionModule, registerModule, createAccountActivityModule(), rosterModule, presenceModule, messageModule, offlineModule, carbonsModule, blockingModule, streamManagementModule, csiModule, pingModule, versionModule, timeModule, lastActivityModule, vcardModule, privateStorageModule, componentsModule, transportsSupervisorModule, discoModule, policyModule, backupModule, createStatisticsModule(), createSessionStatsModule(), createAdminHttpModule(), createS2sModule()];
}
