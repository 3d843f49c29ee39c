/**
 * Renders docs/features.md from the specs each module declares, so the list of supported RFCs and
 * XEPs cannot drift from the code. Regenerate: `npm run build && node dist/server/modules/features-doc.js --write`.
 */
import { writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { dirname, join } from 'node:path';
import type { SpecRef } from '../core/context.js';
import { allModules } from './index.js';

/** What the streams and core implement themselves, outside any module. */
export const CORE_SPECS: SpecRef[] = [
  { id: 'RFC 6120', status: 'partial', note: 'client streams (STARTTLS, SASL, binding, stream and stanza errors) and server streams (STARTTLS and direct TLS, SASL EXTERNAL)' },
  { id: 'RFC 7622', status: 'partial', note: 'JID normalisation: NFKC and case folding for localpart and domain, NFC for resource (not the full PRECIS profiles)' },
  { id: 'RFC 5802', status: 'complete', note: 'SCRAM-SHA-1 and SCRAM-SHA-1-PLUS; only verifiers are stored' },
  { id: 'RFC 7677', status: 'complete', note: 'SCRAM-SHA-256 and SCRAM-SHA-256-PLUS, offered on a host once its accounts have the verifiers (auth.offerCoverage); accounts imported with SCRAM-SHA-1 only get them at their next PLAIN login or password change' },
  { id: 'RFC 9266', status: 'complete', note: 'tls-exporter channel binding on TLS 1.3, the preferred type' },
  {
    id: 'RFC 5929',
    status: 'complete',
    note:
      'tls-server-end-point and tls-unique channel bindings. tls-unique is also offered on TLS 1.3, where RFC 9266 leaves it undefined and prefers tls-exporter: ' +
      "it is weaker, but the only type clients on Python's ssl module (slixmpp, poezio) know, and without it they fail over to SCRAM without binding at every login " +
      '(see docs/architecture.md, "Authentication")',
  },
  { id: 'RFC 4616', status: 'complete', note: 'PLAIN, only over TLS, checked against the SCRAM verifiers; adds the verifiers an account lacks for auth.hashes' },
  { id: 'XEP-0368', version: '1.1.0', status: 'partial', note: 'direct TLS listener for clients (ALPN xmpp-client); SRV records are the operator\'s' },
  { id: 'XEP-0440', version: '0.4.0', status: 'complete', note: 'channel-binding types advertised in stream features, strongest first: tls-exporter (TLS 1.3), tls-server-end-point, tls-unique' },
  { id: 'XEP-0199', version: '2.0.1', status: 'complete', note: 'idle clients are pinged and closed when silent' },
];

export function renderFeaturesDoc(): string {
  const rows = new Map<string, { spec: SpecRef; modules: string[] }>();
  for (const spec of CORE_SPECS) rows.set(spec.id, { spec, modules: ['core'] });
  for (const m of allModules()) {
    for (const spec of m.specs) {
      const row = rows.get(spec.id);
      if (row) {
        row.modules.push(m.name);
        if (spec.note && !row.spec.note?.includes(spec.note)) row.spec = { ...row.spec, note: [row.spec.note, spec.note].filter(Boolean).join('; ') };
      } else rows.set(spec.id, { spec: { ...spec }, modules: [m.name] });
    }
  }
  const sorted = [...rows.values()].sort((a, b) => order(a.spec.id) - order(b.spec.id) || a.spec.id.localeCompare(b.spec.id));
  const lines = [
    '# Supported specifications',
    '',
    'Generated from the specifications each module declares (`specs` in server/modules/*.ts);',
    'test/unit/features-doc.test.ts fails when this file is out of date.',
    'Regenerate with `npm run build && node dist/server/modules/features-doc.js --write`.',
    '',
    '| Specification | Version | Status | Where | Notes |',
    '|---|---|---|---|---|',
    ...sorted.map(({ spec, modules }) => `| ${link(spec.id)} | ${spec.version ?? ''} | ${spec.status} | ${modules.join(', ')} | ${(spec.note ?? '').replace(/\|/g, '\\|')} |`),
    '',
    '## Not yet supported',
    '',
    ...NOT_YET.map((s) => `- ${s}`),
    '',
  ];
  return lines.join('\n');
}

/** Planned work, each in an open issue; listed so nobody mistakes silence for support. */
const NOT_YET = [
  'XEP-0288 bidirectional server links, DANE, and stream management on server links.',
  'Message archive (XEP-0313: by design, the server keeps no history beyond offline storage and, in memory, the last messages of group chats), hats in rooms (XEP-0317), SASL2/Bind2/FAST (XEP-0388, XEP-0386, XEP-0484).',
  'BOSH (XEP-0124/0206) for web clients (WebSocket, RFC 7395, is served).',
];

function order(id: string): number {
  return id.startsWith('RFC') ? 0 : 1;
}

function link(id: string): string {
  const rfc = /^RFC (\d+)$/.exec(id);
  if (rfc) return `[${id}](https://www.rfc-editor.org/rfc/rfc${rfc[1]})`;
  const xep = /^XEP-(\d{4})$/.exec(id);
  if (xep) return `[${id}](https://xmpp.org/extensions/xep-${xep[1]}.html)`;
  return id;
}

export function featuresDocPath(): string {
  return join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'docs', 'features.md');
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.argv.includes('--write')) {
  writeFileSync(featuresDocPath(), renderFeaturesDoc());
  console.log(`wrote ${featuresDocPath()}`);
}
