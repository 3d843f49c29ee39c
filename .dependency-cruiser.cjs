/**
 * The layering of docs/architecture.md, checked (npm run lint:deps, run by npm test through
 * test/unit/layers.test.ts). A rule names the layer, an import it must not make, and why.
 *
 * KNOWN lists imports that break a rule today and are being removed by another part of issue #12;
 * each names the part. Once that part is merged its entries go, and the rule holds without them.
 */

/** Imports of the form [from, to] (regular expressions on paths) that a rule tolerates for now; one entry per file. */
const KNOWN = {
  transportsOfServer: [
    // #12, open: the transports share the server's database through its storage layer
    // (openStorage, StorageConfig, the Storage and TransportRepository interfaces). To go, that
    // layer (or the part the transports use) has to move out of server/.
    ['^transports/kit/config\\.ts$', '^server/storage/datasource\\.ts$'],
    ['^transports/kit/storage\\.ts$', '^server/storage/(datasource|types)\\.ts$'],
    ['^transports/kit/(audit-log|context|gateway|kit-types|vault)\\.ts$', '^server/storage/types\\.ts$'],
  ],
  coreOfFeature: [],
  moduleOfModule: [],
  modulesOfNet: [],
  storageOfProtocol: [],
  circular: [],
};

/**
 * A rule as dependency-cruiser wants it: one rule for all files without known exceptions, and one
 * per file with some, which forbids that file every target of the rule but its known ones.
 */
function rule(name, comment, from, to, known) {
  const byFrom = new Map();
  for (const [kFrom, kTo] of known) byFrom.set(kFrom, [...(byFrom.get(kFrom) ?? []), kTo]);
  const rules = [{ name, severity: 'error', comment, from: { path: from, pathNot: [...byFrom.keys()] }, to: { path: to } }];
  for (const [kFrom, kTos] of byFrom) rules.push({ name, severity: 'error', comment, from: { path: kFrom }, to: { path: to, pathNot: kTos } });
  return rules;
}

module.exports = {
  forbidden: [
    ...rule(
      'core-imports-no-feature',
      'server/core is the router, sessions and hook bus; features plug into it, it never reaches for them (modules/index.ts lists the features).',
      '^server/core/',
      '^server/(modules|admin|federation)/',
      KNOWN.coreOfFeature,
    ),
    ...rule(
      'modules-import-no-other-module',
      'A feature module (a file or a folder of modules/) uses its own files, core, shared and storage; what another feature offers reaches it through services and hooks. modules/index.ts and features-doc.ts list the modules.',
      '^server/modules/([^/]+?)(?:\\.ts$|/)',
      '^server/modules/',
      KNOWN.moduleOfModule,
    ).map((r) => ({
      ...r,
      from: { ...r.from, pathNot: [...[r.from.pathNot ?? []].flat(), '^server/modules/(index|features-doc)\\.ts$'] },
      // A module's config section file (*-config.ts) is schema only: the schema and its module read it.
      to: { ...r.to, pathNot: [...[r.to.pathNot ?? []].flat(), '^server/modules/$1(?:\\.ts$|/)', '^server/modules/[^/]+-config\\.ts$'] },
    })),
    ...rule(
      'modules-import-no-net',
      'A feature module speaks stanzas through the router and hooks, never sockets or the XML parser (shared/xml has what it needs).',
      '^server/modules/',
      '^server/net/',
      KNOWN.modulesOfNet,
    ),
    ...rule(
      'transports-import-nothing-of-server',
      'Transports are components of any XMPP server: what they share with this one lives in shared/.',
      '^transports/',
      '^server/',
      KNOWN.transportsOfServer,
    ),
    {
      name: 'shared-imports-neither-server-nor-transports',
      severity: 'error',
      comment: 'shared/ is the utility layer under both: it must not depend on what depends on it.',
      from: { path: '^shared/' },
      to: { path: '^(server|transports)/' },
    },
    ...rule(
      'storage-imports-no-protocol-code',
      'Storage is repositories and migrations; it knows records, not streams, stanzas or sockets.',
      '^server/storage/',
      '^server/(streams|modules|net|federation)/',
      KNOWN.storageOfProtocol,
    ),
    ...rule(
      'no-circular',
      'Import cycles make the order of initialisation an accident and the layers meaningless.',
      '',
      '',
      KNOWN.circular,
    ).map((r) => ({ ...r, to: { ...r.to, circular: true } })),
    {
      name: 'no-orphans',
      severity: 'error',
      comment: 'A file nobody imports and that imports nothing is dead, unless it is an entry point.',
      from: {
        orphan: true,
        pathNot: ['\\.d\\.ts$', '^server/cli\\.ts$', '^server/cli/transport\\.ts$', '^scripts/', '\\.test\\.ts$'],
      },
      to: {},
    },
    {
      name: 'not-to-unresolvable',
      severity: 'error',
      comment: 'An import the checker cannot resolve is an import it cannot check.',
      from: {},
      to: { couldNotResolve: true, pathNot: '^node:' },
    },
    {
      name: 'production-code-not-to-dev-dependencies',
      severity: 'error',
      comment: 'The server and transports run from an install without devDependencies.',
      from: { path: '^(server|shared|transports|migrations)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'production-code-not-to-tests',
      severity: 'error',
      comment: 'Tests and scripts use the server, never the other way round.',
      from: { path: '^(server|shared|transports|migrations)/' },
      to: { path: '^(test|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // TypeScript 7 has no compiler API dependency-cruiser can use: it parses with swc.
    parser: 'swc',
    tsPreCompilationDeps: true,
    exclude: { path: '^(dist|node_modules)/' },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
