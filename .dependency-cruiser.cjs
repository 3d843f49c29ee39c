/**
 * The layering of docs/architecture.md, checked (npm run lint:deps, run by npm test through
 * test/unit/layers.test.ts). A rule names the layer, an import it must not make, and why.
 *
 * KNOWN lists imports that break a rule today and are being removed by another part of issue #12;
 * each names the part. Once that part is merged its entries go, and the rule holds without them.
 */

/** Imports of the form [from, to] (regular expressions on paths) that a rule tolerates for now; one entry per file. */
const KNOWN = {
  transportsOfServer: [],
  coreOfFeature: [],
  moduleOfModule: [],
  modulesOfNet: [],
  storageOfProtocol: [],
  circular: [],
};

/** The file in which a feature declares its configuration section (see server/config/schema.ts). */
const CONFIG_SECTION_FILE = '^server/(modules/[^/]+-config|(modules/[^/]+|admin|federation|http|cluster)/config)\\.ts$';

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
      '^server/(modules|admin|federation|http|cluster)/',
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
      // Its own files: a folder module's folder, a file module X.ts its section file X-config.ts.
      to: { ...r.to, pathNot: [...[r.to.pathNot ?? []].flat(), '^server/modules/$1(?:\\.ts$|-config\\.ts$|/)'] },
    })),
    {
      name: 'config-reads-only-config-sections-of-features',
      severity: 'error',
      comment:
        'server/config/schema.ts composes the sections the features declare next to their code (X-config.ts beside a module file, config.ts in a feature folder); loading the configuration must not load the features themselves.',
      from: { path: '^server/config/' },
      to: { path: '^server/(modules|admin|federation|http|cluster)/', pathNot: CONFIG_SECTION_FILE },
    },
    {
      name: 'config-sections-are-schema-only',
      severity: 'error',
      comment: 'A config section file is a schema built from shared/ (schema-kit, config-values): what it imports, the configuration loads.',
      from: { path: CONFIG_SECTION_FILE },
      to: { path: '^(server|transports)/' },
    },
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
      'storage-imports-neither-server-nor-transports',
      'storage/ is the database layer (repositories, migrations, dumps) under both the server and the transports, which share one database: it knows records, not streams, stanzas, configuration files or sockets.',
      '^storage/',
      '^(server|transports)/',
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
      from: { path: '^(server|shared|storage|transports)/' },
      to: { dependencyTypes: ['npm-dev'], dependencyTypesNot: ['type-only'] },
    },
    {
      name: 'production-code-not-to-tests',
      severity: 'error',
      comment: 'Tests and scripts use the server, never the other way round.',
      from: { path: '^(server|shared|storage|transports)/' },
      to: { path: '^(test|scripts)/' },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    // TypeScript 7 has no compiler API dependency-cruiser can use: it parses with swc.
    parser: 'swc',
    tsPreCompilationDeps: true,
    // @nats-io/kv 3.4 names a types file that does not exist ("./lib/mod.d.js"); its exports map resolves.
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], mainFields: ['module', 'main'] },
    exclude: { path: '^(dist|node_modules)/' },
    reporterOptions: { text: { highlightFocused: true } },
  },
};
