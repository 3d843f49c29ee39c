import type { GatehouseModule } from '../core/context.js';
import { retentionClassesOf } from '../core/module.js';
import type { RetentionClass } from '../core/retention-class.js';
import { createPingModule } from './ping.js';
import { createDiscoModule } from './disco.js';
import { createCapsModule } from './caps/caps.js';
import { createPepModule } from './pep/pep.js';
import { createVersionModule } from './version.js';
import { createTimeModule } from './time.js';
import { createLastActivityModule } from './last-activity.js';
import { createVcardModule } from './vcard.js';
import { createPrivateStorageModule } from './private-storage.js';
import { createRegisterModule } from './register.js';
import { createAccountActivityModule } from './account-activity.js';
import { createRosterModule } from './roster.js';
import { createPresenceModule } from './presence.js';
import { createMessageModule } from './message.js';
import { createOfflineModule } from './offline.js';
import { createCarbonsModule } from './carbons.js';
import { createBlockingModule } from './blocking.js';
import { createStreamManagementModule } from './stream-management.js';
import { createCsiModule } from './csi.js';
import { createS2sModule } from './s2s.js';
import { createComponentsModule } from './components.js';
import { createTransportsSupervisor } from './transports/supervisor.js';
import { createPolicyModule } from './policy/module.js';
import { createRetentionModule } from './retention/retention.js';
import { createFailedLoginGuardModule } from './login-guard/failed-login-guard.js';
import { createDeliveryFailureModule } from './delivery-failures/delivery-failures.js';
import { createBackupModule } from './backup/schedule.js';
import { createControlModule } from '../admin/control.js';
import { createOperatorModule } from './operator/module.js';
import { createAdminHttpModule } from '../admin/http.js';
import { createHttpsModule } from '../http/module.js';
import { createStatisticsModule } from './statistics/statistics.js';
import { createSessionStatsModule } from './statistics/session-stats.js';
import { createLogFilesModule } from './log-files/log-files.js';
import { createExportModule } from './export/module.js';
import { createUploadModule } from './upload/module.js';
import { createMucModule } from './muc/module.js';

/**
 * Every feature module, in load order: fresh instances on every call, so each server gets its own
 * and no state is shared between servers in one process. The core never imports a feature directly.
 * A module that needs a service comes after the module that provides it (main.ts checks).
 */
export function allModules(): GatehouseModule[] {
  return [
    createControlModule(),
    createOperatorModule(),
    createFailedLoginGuardModule(),
    createDeliveryFailureModule(),
    createRetentionModule(),
    createRegisterModule(),
    createAccountActivityModule(),
    createRosterModule(),
    createPresenceModule(),
    createMessageModule(),
    createOfflineModule(),
    createCarbonsModule(),
    createBlockingModule(),
    createStreamManagementModule(),
    createCsiModule(),
    createPingModule(),
    createVersionModule(),
    createTimeModule(),
    createLastActivityModule(),
    createVcardModule(),
    createPrivateStorageModule(),
    createComponentsModule(),
    createTransportsSupervisor(),
    createCapsModule(),
    createDiscoModule(),
    createPepModule(),
    createPolicyModule(),
    createBackupModule(),
    createExportModule(),
    createStatisticsModule(),
    createSessionStatsModule(),
    createAdminHttpModule(),
    createHttpsModule(),
    createUploadModule(),
    createMucModule(),
    createS2sModule(),
    createLogFilesModule(),
  ];
}

/** Every retention class of every module (what `gatehouse retention run` sweeps, handed these modules). */
export function retentionClasses(): RetentionClass[] {
  return retentionClassesOf(allModules());
}
