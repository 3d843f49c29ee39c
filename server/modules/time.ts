import type { GatehouseModule } from '../core/context.js';
import { replyResult } from '../core/iq.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { utcDateTime } from '../../shared/datetime.js';

/** XEP-0202: the hosts tell their time, always in UTC (the server's zone is nobody's business). */
export function createTimeModule(): GatehouseModule {
  return {
    name: 'time',
    specs: [{ id: 'XEP-0202', version: '2.0', status: 'complete', note: 'hosts only; always UTC' }],
    load({ hooks, router, disco, clock }) {
      disco.addServerFeature(NS.time);
      hooks.on(`iq-get/host/${NS.time}:time`, (e) =>
        replyResult(router, e, x('time', { xmlns: NS.time }, x('tzo', {}, '+00:00'), x('utc', {}, utcDateTime(clock.now())))),
      );
    },
  };
}
