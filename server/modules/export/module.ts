/**
 * Account export and import (P23, XEP-0227): only commands, which work on the database
 * (cli-export.ts); nothing runs inside the server.
 */
import type { GatehouseModule } from '../../core/context.js';
import { exportCommands } from './cli-export.js';

export function createExportModule(): GatehouseModule {
  return {
    name: 'export',
    specs: [],
    clauses: ['P23'],
    commands: { cli: Object.values(exportCommands) },
    load() {},
  };
}
