import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type as osType } from 'node:os';
import type { GatehouseModule } from '../core/context.js';
import { replyError, replyResult } from '../core/iq.js';
import { x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';

/** The version in the project's package.json, found by walking up from this file (source or dist). */
export function packageVersion(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'gatehouse' && typeof pkg.version === 'string') return pkg.version;
    } catch {
      /* no package.json here */
    }
    const parent = dirname(dir);
    if (parent === dir) return 'unknown';
    dir = parent;
  }
}

const VERSION = packageVersion();

/**
 * XEP-0092: the hosts tell their software name (config server.name) and version; the operating
 * system only when server.hideOs is off, and nothing at all (service-unavailable, feature not
 * announced) when server.hideVersion is on. Queries to accounts' bare JIDs are not answered here.
 */
export function createVersionModule(): GatehouseModule {
  return {
    name: 'version',
    specs: [{ id: 'XEP-0092', version: '1.1', status: 'complete', note: 'server.hideVersion and server.hideOs control what is told' }],
    load({ hooks, router, disco, config }) {
      const { name, hideVersion, hideOs } = config.server;
      if (!hideVersion) disco.addServerFeature(NS.version);
      hooks.on(`iq-get/host/${NS.version}:query`, (e) => {
        if (hideVersion) return replyError(router, e, 'service-unavailable');
        return replyResult(
          router,
          e,
          x('query', { xmlns: NS.version }, x('name', {}, name), x('version', {}, VERSION), hideOs ? null : x('os', {}, osType())),
        );
      });
    },
  };
}
