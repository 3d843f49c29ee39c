/**
 * Account export and import (P23, XEP-0227): commands, which work on the database (cli-export.ts).
 * Inside the server only the control command `accounts.recount`, which an import asks of a running
 * server so that it counts the SCRAM verifiers per host again (auth/scram-offer.ts) at once rather
 * than within a minute: imported SCRAM-SHA-1-only accounts take SCRAM-SHA-256 off their host's offer.
 */
import type { GatehouseModule, ServerContext } from '../../core/context.js';
import { exportCommands } from './cli-export.js';

export function createExportModule(): GatehouseModule {
  let ctx: ServerContext | null = null;
  return {
    name: 'export',
    specs: [],
    clauses: ['P23'],
    commands: {
      cli: Object.values(exportCommands),
      control: {
        'accounts.recount': {
          summary: 'count the SCRAM verifiers per host again (after accounts were written outside the server)',
          available: () => ctx !== null,
          handler: async () => {
            await ctx?.services.get('scram-offer')?.refresh();
            return { recounted: true };
          },
        },
      },
    },
    load(c) {
      ctx = c;
    },
    unload() {
      ctx = null;
    },
  };
}
