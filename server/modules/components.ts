import type { GatehouseModule } from '../core/context.js';

/**
 * External components (XEP-0114), the server's side of the bookkeeping: every domain in
 * config.components is declared to the router, so stanzas to it and its subdomains go to the
 * component's link while it is connected and bounce with service-unavailable (and a P8
 * delivery-failure record for local senders) while it is not; and it is listed in the hosts'
 * disco#items (XEP-0030), which is how clients find transports and other services. The config has
 * no display name for a component, so items carry just the JID; the component answers disco#info
 * itself (the router hands it every stanza to its domain).
 *
 * The streams themselves are server/streams/component.ts, opened by main.ts.
 */
export function createComponentsModule(): GatehouseModule {
  let off = (): void => {};
  return {
    name: 'components',
    specs: [
      {
        id: 'XEP-0114',
        version: '1.6',
        status: 'complete',
        note: 'accept side (jabber:component:accept); one live connection per component domain, a second one gets a conflict stream error',
      },
    ],
    load({ config, router, disco, hooks }) {
      for (const { domain } of config.components) {
        router.addComponentDomain(domain);
        disco.serverItems.set(domain, undefined);
      }
      // A reload adds and removes components (the stream of a removed one is closed by its listener).
      off = hooks.on('config/reloaded', ({ before, after }) => {
        const now = new Set(after.components.map((c) => c.domain));
        for (const { domain } of before.components) {
          if (now.has(domain)) continue;
          router.removeComponentDomain(domain);
          disco.serverItems.delete(domain);
        }
        for (const domain of now) {
          router.addComponentDomain(domain);
          disco.serverItems.set(domain, undefined);
        }
      });
    },
    unload() {
      off();
    },
  };
}
