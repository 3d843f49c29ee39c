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
 *
 * A component added to the configuration whose privacy-policy change has not taken effect yet (P22)
 * is declared to the router (stanzas to it bounce rather than go out to federation) but not
 * listed in disco, and its connection is refused, until it comes into force ('config/in-force').
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
    load({ config, configInForce, router, disco, hooks }) {
      // Every component the file names is the router's, so nothing for it leaves over federation;
      // one held back (P22) is refused at its handshake, and listed in disco once in force.
      const routed = new Set<string>();
      const route = () => {
        const named = new Set(configInForce.file.components.map((c) => c.domain));
        for (const domain of [...routed]) {
          if (named.has(domain)) continue;
          router.removeComponentDomain(domain);
          routed.delete(domain);
        }
        for (const domain of named) {
          if (routed.has(domain)) continue;
          router.addComponentDomain(domain);
          routed.add(domain);
        }
      };
      const list = (components: readonly { domain: string }[]) => {
        for (const { domain } of components) if (!disco.serverItems.has(domain)) disco.serverItems.set(domain, undefined);
      };
      route();
      list(config.components);
      // A held-back component coming into force, or a reload adding and removing components (the
      // stream of a removed one is closed by its listener).
      off = hooks.on('config/in-force', ({ before, after }) => {
        route();
        const now = new Set(after.components.map((c) => c.domain));
        for (const { domain } of before.components) if (!now.has(domain)) disco.serverItems.delete(domain);
        list(after.components);
      });
    },
    unload() {
      off();
    },
  };
}
