/**
 * P8: the delivery-failure log. Every bounce of a local user's stanza goes through
 * Router.bounce(), which fires 'delivery/failed' with the time, the sender, the recipient, the
 * stanza kind and the error condition; this module writes exactly those five facts. The table has
 * no column that could hold content (see migrations/1732600000100-PrivacyLogs.ts), and nothing
 * here ever sees the stanza: the event carries none.
 *
 * Both addresses are stored as bare JIDs: "who sent to whom" needs no resource, and a resource
 * often names a device or a person's location (data minimisation).
 *
 * Expired offline messages become records too (retention.ts, class offline-messages, P5).
 * Records are deleted after retention.detailedLogs (P13, class delivery-failures below).
 */
import type { GatehouseModule } from '../../core/context.js';
import type { DeliveryFailure } from '../../core/router.js';
import { Jid } from '../../../shared/jid.js';
import { formatDurationWords } from '../../../shared/format.js';
import { inBatches, type RetentionClass } from '../../core/retention-class.js';

/** A bare JID when the address parses, else the text as given (never more than an address). */
export function bareAddress(address: string): string {
  const jid = Jid.tryParse(address);
  return jid ? jid.bare : address;
}

export function createDeliveryFailureModule(): GatehouseModule {
  const pending = new Set<Promise<unknown>>();
  return {
    name: 'delivery-failures',
    clauses: ['P8'],
    specs: [],
    retention: [deliveryFailuresClass],
    load({ hooks, storage, log }) {
      hooks.on('delivery/failed', (f: DeliveryFailure) => {
        const work = storage.privacyLogs
          .addDeliveryFailure({ at: f.at, from: bareAddress(f.from), to: bareAddress(f.to), kind: f.kind, condition: f.condition })
          .catch((err) => log.warn('could not record a delivery failure', { error: err instanceof Error ? err.message : String(err) }));
        pending.add(work);
        void work.finally(() => pending.delete(work));
      });
    },
    /** Lets the last records be written before storage closes. */
    async unload() {
      await Promise.allSettled([...pending]);
    },
  };
}


const deliveryFailuresClass: RetentionClass = {
  name: 'delivery-failures',
  clause: 'P13',
  describe: (config) => `delivery-failure records (P8) older than ${formatDurationWords(config.retention.detailedLogs)}`,
  async run(env, now, { dryRun, batch }) {
    const before = new Date(now.getTime() - env.config.retention.detailedLogs);
    if (dryRun) return env.storage.privacyLogs.countDeliveryFailuresBefore(before);
    return inBatches(batch, (limit) => env.storage.privacyLogs.deleteDeliveryFailuresBefore(before, limit));
  },
};
