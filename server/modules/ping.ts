import type { GatehouseModule } from '../core/context.js';
import { replyResult } from '../core/iq.js';
import { NS } from '../../shared/ns.js';

/** XEP-0199: the server answers pings addressed to it or to the sender's own account. */
export function createPingModule(): GatehouseModule {
  return {
    name: 'ping',
    specs: [{ id: 'XEP-0199', version: '2.0.1', status: 'complete', note: 'server answers pings and pings idle clients' }],
    load({ hooks, router, disco }) {
      disco.addServerFeature(NS.ping);
      hooks.on(`iq-get/host/${NS.ping}:ping`, (e) => replyResult(router, e));
      hooks.on(`iq-get/bare/${NS.ping}:ping`, (e) => (e.from.bare === e.to.bare ? replyResult(router, e) : undefined));
    },
  };
}
