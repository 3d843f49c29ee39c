/**
 * P22: the published privacy policy is generated from the live configuration (German and English,
 * in the seed's structure), stored in versions with effective dates; an unannounced change never
 * stops the start (policy-holdback.test.ts: what widens the policy is held back), an announcement
 * needs four weeks' notice unless technical, and users are told.
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { stringify } from 'yaml';
import { startTestServer, type TestServer } from '../helpers/server.js';
import type { TestClient } from '../helpers/xmpp-client.js';
import { allModules } from '../../server/modules/index.js';
import { createPresenceModule } from '../../server/modules/presence.js';
import { createRosterModule } from '../../server/modules/roster.js';
import type { GatehouseModule } from '../../server/core/context.js';
import { parseConfig, type Config } from '../../server/config/index.js';
import { openStorage } from '../../storage/datasource.js';
import { storageTargets } from '../../storage/test-databases.js';
import type { Storage } from '../../storage/types.js';
import { ManualClock } from '../../shared/clock.js';
import { x, type Element } from '../../shared/xml/element.js';
import { createPolicyModule } from '../../server/modules/policy/module.js';
import { MAX_BOUNCER_HOURS, MAX_BOUNCER_LINES } from '../../shared/bouncer-limits.js';
import { policyFromConfig, renderView, escapeMarkdown, inlineHtml, type PolicyView } from '../../server/modules/policy/render.js';
import { checkPolicyAtStart, inForce, upcoming, viewAt, NOTICE_MS, type PolicyVersion } from '../../server/modules/policy/versions.js';
import { AnnounceError, announcePolicy, announcementToNotify, parseEffective, NOTIFIED_KEY } from '../../server/modules/policy/announce.js';
import { durationDe, durationEn } from '../../server/modules/policy/format.js';
import { runCli } from '../helpers/server-process.js';

const DAY = 86_400_000;
const SEED_HEADINGS = ['Welche Daten werden gespeichert?', 'Was geschieht mit diesen Daten?', 'Wer hat Zugriff auf diese Daten?', 'Anmerkungen'];
const EN_HEADINGS = ['What data is stored?', 'What happens with this data?', 'Who has access to this data?', 'Notes'];

function configOf(raw: Record<string, unknown> = {}): Config {
  return parseConfig({ dataDir: '/tmp/gatehouse-policy-test', hosts: [{ domain: 'example.org' }], ...raw }, '/tmp');
}

function draft(config: Config): PolicyView {
  const now = new Date(Date.UTC(2026, 0, 1));
  return { current: { id: 1, effectiveAt: now, announcedAt: now, technicalReason: null, texts: policyFromConfig(config).texts }, upcoming: [] };
}

function modules(...extra: GatehouseModule[]): GatehouseModule[] {
  const list = [...allModules()];
  for (const m of [createRosterModule(), createPresenceModule()]) if (!list.some((l) => l.name === m.name)) list.push(m);
  return [...list.filter((m) => !extra.some((e) => e.name === m.name)), ...extra];
}

function headings(md: string): string[] {
  return md
    .split('\n')
    .filter((l) => l.startsWith('## '))
    .map((l) => l.slice(3));
}

// ---------------------------------------------------------------------------------------------

describe('P22 rendering the policy from the configuration', () => {
  test('P22 the policy is rendered in German and English, with the sections of the seed policy in its order', () => {
    const config = configOf();
    const de = renderView(draft(config), 'de', 'md');
    const en = renderView(draft(config), 'en', 'md');
    assert.deepEqual(headings(de), SEED_HEADINGS);
    assert.deepEqual(headings(en), EN_HEADINGS);
    assert.match(de, /^# Datenschutzerklärung für example\.org\n/);
    assert.match(en, /^# Privacy policy of example\.org\n/);
    // The seed's own headings, where the seed is at hand (it is beside the checkout, not in it).
    const seedPath = fileURLToPath(new URL('../../../../shared/seed/datenschutz.de.txt', import.meta.url));
    if (existsSync(seedPath)) {
      const seed = readFileSync(seedPath, 'utf8').split('\n');
      const at = SEED_HEADINGS.map((h) => seed.findIndex((l) => l.trim() === h));
      assert.ok(at.every((i) => i >= 0), 'every heading is one of the seed');
      assert.deepEqual([...at].sort((a, b) => a - b), at, 'in the seed order');
    }
    // Same structure in both languages: the same blocks, kind by kind.
    const { texts } = policyFromConfig(config);
    assert.deepEqual(
      texts.de.blocks.map((b) => (b.kind === 'ul' ? `ul${b.items.length}` : b.kind)),
      texts.en.blocks.map((b) => (b.kind === 'ul' ? `ul${b.items.length}` : b.kind)),
    );
  });

  test('P22 every period and number in the policy comes from the configuration', () => {
    const config = configOf({
      hosts: [{ domain: 'chat.example.net' }, { domain: 'example.org' }],
      admins: ['root@example.org', 'ops@example.org'],
      retention: { inactiveAccounts: '400d', inactiveWarning: '9d', offlineMessages: '17d', detailedLogs: '36h', statistics: '730d' },
      backups: { keep: 5 },
      offline: { maxPerUser: 321 },
      components: [{ domain: 'irc.example.org', secret: 'x' }, { domain: 'matrix.example.org', secret: 'y' }],
      policy: { contact: 'mailto:privacy@example.org' },
    });
    const en = renderView(draft(config), 'en', 'md');
    const de = renderView(draft(config), 'de', 'md');
    for (const s of ['chat.example.net and example.org', '400 days', '9 days', '17 days', '36 hours', '730 days', 'kept for 5 days', '321 messages', 'irc.example.org and matrix.example.org', '2 accounts', 'mailto:privacy@example.org'])
      assert.ok(en.includes(s), `en: ${s}`);
    for (const s of ['chat.example.net und example.org', '400 Tage', '9 Tage', '17 Tagen', '36 Stunden', '730 Tage', '5 Tage lang', '321 Nachrichten', 'irc.example.org und matrix.example.org', '2 Konten', 'mailto:privacy@example.org'])
      assert.ok(de.includes(s), `de: ${s}`);
    // The defaults: two days for detailed logs, one week of daily backups, 30 days offline.
    const plain = renderView(draft(configOf()), 'de', 'md');
    for (const s of ['nach 2 Tagen gelöscht', '7 Tage lang aufbewahrt', 'innerhalb von 30 Tagen', '365 Tage']) assert.ok(plain.includes(s), s);
    assert.ok(plain.includes('keine Netzübergänge'));
    // No admin JID is published, only their number.
    assert.ok(!en.includes('root@example.org'));
  });

  test('P11 P22 uploaded files: the policy names what is kept and for how long, in both languages, only while uploads are offered', () => {
    const on = configOf({ retention: { uploads: '45d' } });
    const en = renderView(draft(on), 'en', 'md');
    const de = renderView(draft(on), 'de', 'md');
    assert.match(en, /Files you upload to share them \(HTTP File Upload\).*deleted 45 days after its upload, or earlier together with your account/);
    assert.match(en, /never with the file name/);
    assert.match(de, /Dateien, die Sie hochladen.*wird 45 Tage nach dem Hochladen gelöscht, oder früher zusammen mit Ihrem Konto/);
    const off = configOf({ upload: { enabled: false } });
    assert.ok(!renderView(draft(off), 'en', 'md').includes('HTTP File Upload'));
    assert.ok(!renderView(draft(off), 'de', 'md').includes('HTTP File Upload'));
  });

  test('P19 P23 the place gateways keep in the other network (Matrix: rooms and names, no messages) is named, with its deletion, only with gateways', () => {
    const withGateway = configOf({ components: [{ domain: 'matrix.example.org', secret: 'component-secret-42' }] });
    const en = renderView(draft(withGateway), 'en', 'md');
    const de = renderView(draft(withGateway), 'de', 'md');
    assert.match(en, /your position in it \(for Discord, the last message you saw in each channel and direct chat\) and, where the network needs them for that \(Matrix\), the list of your rooms with their names .*; no messages\. This is deleted when you remove your registration with the gateway\./);
    assert.match(de, /Ihre Position darin \(bei Discord die letzte Nachricht, die Sie in jedem Kanal und Direktchat gesehen haben\) und, wo das System sie dafür braucht \(Matrix\), die Liste Ihrer Räume .*; keine Nachrichten\. Diese Angaben werden gelöscht, wenn Sie Ihre Registrierung beim Netzübergang entfernen\./);
    assert.match(en, /the keys of the gateway's device and the message keys it received.*stored encrypted with the same key as your password, never written to a log, and deleted when you remove your registration/);
    assert.match(de, /die Schlüssel des Geräts des Netzübergangs und die Nachrichtenschlüssel.*gelöscht, wenn Sie Ihre Registrierung beim Netzübergang entfernen/);
    assert.ok(!renderView(draft(configOf({})), 'en', 'md').includes("the keys of the gateway's device"));
    assert.ok(!renderView(draft(configOf({})), 'en', 'md').includes('your position in it'));
    assert.ok(!renderView(draft(configOf({})), 'de', 'md').includes('Ihre Position darin'));
  });

  test('P5 P19 P22 IRC gateways: staying connected keeps lines in memory only, within the stated maximums, lost at a restart; ident and WEBIRC get a derived identifier, never the address or IP', () => {
    const withGateway = configOf({ components: [{ domain: 'irc.example.org', secret: 'component-secret-43' }] });
    const en = renderView(draft(withGateway), 'en', 'md');
    const de = renderView(draft(withGateway), 'de', 'md');
    assert.match(en, new RegExp(`kept in the gateway's memory only, at most ${MAX_BOUNCER_LINES} lines per channel and for at most ${MAX_BOUNCER_HOURS} hours.*never written to disk and do not survive a restart of the gateway`));
    assert.match(de, new RegExp(`nur im Arbeitsspeicher, höchstens ${MAX_BOUNCER_LINES} Zeilen je Kanal und höchstens ${MAX_BOUNCER_HOURS} Stunden lang.*übersteht keinen Neustart des Netzübergangs`));
    assert.match(en, /Private messages reach you through the offline storage/);
    assert.match(en, /\(ident\).*\(WEBIRC\)\. Both are told an identifier the gateway derives from your address with a secret key, never your address and never your IP address\./);
    assert.match(de, /\(Ident\).*\(WEBIRC\)\. Beide erfahren eine Kennung, .* nie Ihre Adresse und nie Ihre IP-Adresse\./);
    assert.ok(!renderView(draft(configOf({})), 'en', 'md').includes('stay connected'));
    assert.ok(!renderView(draft(configOf({})), 'de', 'md').includes('verbunden zu bleiben'));
  });

  test('P22 P11 a gateway writing under the user\'s name (Discord shared bot): the nickname and, with uploads, the vCard picture and its deletion are named, only with gateways', () => {
    const components = [{ domain: 'discord.example.org', secret: 'component-secret-43' }];
    const both = configOf({ retention: { uploads: '45d' }, components });
    const en = renderView(draft(both), 'en', 'md');
    const de = renderView(draft(both), 'de', 'md');
    assert.match(en, /under your own name \(Discord, through the operator's shared bot\), people there see your nickname in the room and your profile picture from your vCard, which is copied to this server's file upload service for that and deleted 45 days after it was copied\./);
    assert.match(de, /unter Ihrem eigenen Namen schreibt \(Discord über den gemeinsamen Bot des Betreibers\), sehen die Personen dort Ihren Spitznamen im Raum und Ihr Profilbild aus Ihrer vCard, das dafür in den Datei-Upload-Dienst dieses Servers kopiert und 45 Tage nach dem Kopieren gelöscht wird\./);
    const noUploads = renderView(draft(configOf({ upload: { enabled: false }, components })), 'en', 'md');
    assert.match(noUploads, /people there see your nickname in the room\./);
    assert.ok(!renderView(draft(configOf({})), 'en', 'md').includes('under your own name'));
    assert.ok(!renderView(draft(configOf({})), 'de', 'md').includes('unter Ihrem eigenen Namen'));
  });

  test('P11 P13 P22 files from other networks that gateways copy to the upload service are named, with their deletion, only with gateways and uploads', () => {
    const components = [{ domain: 'irc.example.org', secret: 'component-secret-41' }];
    const both = configOf({ retention: { uploads: '45d' }, components });
    const en = renderView(draft(both), 'en', 'md');
    const de = renderView(draft(both), 'de', 'md');
    assert.match(en, /Files that people on the other network send you .* belong to no account and are deleted 45 days after they were copied/);
    assert.match(de, /Dateien, die Ihnen Personen aus dem anderen System schicken .* gehören zu keinem Konto und werden 45 Tage nach dem Kopieren gelöscht/);
    for (const other of [configOf({ retention: { uploads: '45d' } }), configOf({ components, upload: { enabled: false } })]) {
      assert.ok(!renderView(draft(other), 'en', 'md').includes('Files that people on the other network'));
      assert.ok(!renderView(draft(other), 'de', 'md').includes('aus dem anderen System schicken'));
    }
  });

  test('P22 each setting the policy states changes its hash; settings it does not state do not', () => {
    const base = policyFromConfig(configOf()).hash;
    const stated: Record<string, unknown>[] = [
      { retention: { offlineMessages: '14d' } },
      { retention: { detailedLogs: '24h' } },
      { retention: { inactiveAccounts: '200d' } },
      { retention: { statistics: '365d' } },
      { backups: { keep: 3 } },
      { backups: { schedule: 'off' } },
      { offline: { maxPerUser: 0 } },
      { components: [{ domain: 'irc.example.org', secret: 's' }] },
      { listen: { s2s: [{ host: '::', port: 5269 }] } },
      { policy: { contact: 'mailto:a@example.org' } },
      { admins: ['a@example.org'] },
      { c2s: { requireEncryption: false } },
      { auth: { hashes: ['SHA-256'] } },
      { retention: { uploads: '7d' } },
      { upload: { enabled: false } },
    ];
    const hashes = new Set([base]);
    for (const raw of stated) {
      const h = policyFromConfig(configOf(raw)).hash;
      assert.notEqual(h, base, JSON.stringify(raw));
      hashes.add(h);
    }
    assert.equal(hashes.size, stated.length + 1);
    for (const raw of [{ server: { name: 'Other' } }, { log: { level: 'debug' } }, { c2s: { maxStanzaBytes: '1MiB' } }, { components: [] }, { upload: { maxFileSize: '1MiB', quotaPerUser: '1GiB' } }]) {
      assert.equal(policyFromConfig(configOf(raw)).hash, base, JSON.stringify(raw));
    }
  });

  test('P22 the policy says truthfully where Gatehouse does better than the seed: no plaintext passwords, TLS to other servers', () => {
    const fed = configOf({ listen: { s2s: [{ host: '::', port: 5269 }] } });
    const de = renderView(draft(fed), 'de', 'md');
    const en = renderView(draft(fed), 'en', 'md');
    assert.ok(!/im Klartext/.test(de), 'no plaintext passwords claimed');
    assert.ok(de.includes('SCRAM-SHA-1 und SCRAM-SHA-256'));
    assert.ok(en.includes('keeps neither the password nor anything it could be recovered from'));
    assert.ok(en.includes('Connections to other servers are always encrypted (TLS)'));
    assert.ok(de.includes('Verbindungen zu anderen Servern sind immer verschlüsselt (TLS)'));
    const opportunistic = renderView(draft(configOf({ listen: { s2s: [{ host: '::', port: 5269 }] }, s2s: { requireEncryption: false } })), 'en', 'md');
    assert.ok(opportunistic.includes('encrypted (TLS) whenever the other server supports it'));
    const off = renderView(draft(configOf()), 'en', 'md');
    assert.ok(off.includes('does not exchange messages with other XMPP servers'));
    assert.ok(off.includes('accepts logins only over an encrypted connection (TLS 1.2 or newer)'));
    const onlyScram = renderView(draft(configOf({ c2s: { allowPlain: false } })), 'en', 'md');
    assert.ok(onlyScram.includes('the password never even reaches the server'));
  });

  test('P22 Markdown and HTML escape configured text', () => {
    const config = configOf({ policy: { contact: '<script>alert(1)</script> *x* [y](z) & "q" https://example.org/privacy?a=1&b=2.' } });
    const html = renderView(draft(config), 'en', 'html');
    assert.ok(!html.includes('<script>'));
    assert.ok(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'));
    assert.ok(html.includes('&amp; &quot;q&quot;'));
    assert.ok(html.includes('<a href="https://example.org/privacy?a=1&amp;b=2">https://example.org/privacy?a=1&amp;b=2</a>.'));
    assert.match(html, /^<!DOCTYPE html>\n<html lang="en">/);
    const md = renderView(draft(config), 'en', 'md');
    assert.ok(md.includes('\\<script\\>alert(1)\\</script\\> \\*x\\* \\[y\\](z)'));
    assert.equal(escapeMarkdown('a_b`c#'), 'a\\_b\\`c\\#');
    assert.equal(inlineHtml('see xmpp:ops@example.org?message, <b>'), 'see <a href="xmpp:ops@example.org?message">xmpp:ops@example.org?message</a>, &lt;b&gt;');
    assert.equal(renderView(draft(configOf({ policy: { contact: 'mailto:a@b' } })), 'de', 'html').includes('<html lang="de">'), true);
  });

  test('durations are written in the largest exact unit, with German case endings', () => {
    assert.equal(durationEn(48 * 3600_000), '2 days');
    assert.equal(durationEn(DAY), '1 day');
    assert.equal(durationEn(90 * 60_000), '90 minutes');
    assert.equal(durationDe(48 * 3600_000, 'dat'), '2 Tagen');
    assert.equal(durationDe(DAY, 'dat'), '1 Tag');
    assert.equal(durationDe(36 * 3600_000), '36 Stunden');
  });
});

// ---------------------------------------------------------------------------------------------

for (const target of storageTargets()) {
  describe(`P22 policy versions on ${target.name}`, () => {
    let storage: Storage;
    let drop: () => Promise<void>;
    before(async () => {
      const made = await target.make();
      drop = made.drop;
      storage = await openStorage(made.config, { migrate: true });
    });
    after(async () => {
      await storage.close();
      await drop();
    });

    test('P22 versions are stored with their effective dates and read back exactly', async () => {
      assert.deepEqual(await storage.policyVersions.list(), []);
      const t = new Date(Date.UTC(2031, 4, 6, 7, 8, 9, 123));
      const { facts, texts, hash } = policyFromConfig(configOf());
      const document = JSON.stringify({ facts, texts });
      const v1 = await storage.policyVersions.add({ hash, document, announcedAt: t, effectiveAt: t, technicalReason: null }, null);
      assert.ok(v1);
      assert.equal(await storage.policyVersions.add({ hash, document, announcedAt: t, effectiveAt: t, technicalReason: null }, null), null, 'a second "first" version is refused');
      const later = new Date(t.getTime() + 30 * DAY);
      const v2 = await storage.policyVersions.add({ hash: 'f'.repeat(64), document: '{"ü":"€ 😀"}', announcedAt: t, effectiveAt: later, technicalReason: 'Sicherheitslücke – ✓' }, v1.id);
      assert.ok(v2);
      assert.equal(await storage.policyVersions.add({ hash: 'e'.repeat(64), document: '{}', announcedAt: t, effectiveAt: later, technicalReason: null }, v1.id), null, 'stale afterId');
      const list = await storage.policyVersions.list();
      assert.deepEqual(
        list.map((v) => [v.id, v.hash, v.announcedAt.getTime(), v.effectiveAt.getTime(), v.technicalReason]),
        [
          [v1.id, hash, t.getTime(), t.getTime(), null],
          [v2.id, 'f'.repeat(64), t.getTime(), later.getTime(), 'Sicherheitslücke – ✓'],
        ],
      );
      assert.equal(list[0]!.document, document);
      assert.equal(list[1]!.document, '{"ü":"€ 😀"}');
      assert.ok(list[0]!.document.includes('Datenschutzerklärung'));
    });
  });
}

// ---------------------------------------------------------------------------------------------

function version(id: number, effectiveDay: number, announcedDay = 0, technicalReason: string | null = null): PolicyVersion {
  return { id, hash: String(id), document: '{}', announcedAt: new Date(announcedDay * DAY), effectiveAt: new Date(effectiveDay * DAY), technicalReason };
}

describe('P22 which version is in force', () => {
  test('P22 the old version stays in force until the announced date; a later announcement supersedes a pending one', () => {
    const at = (day: number) => new Date(day * DAY);
    const vs = [version(1, 0), version(2, 40, 10), version(3, 50, 12)];
    assert.equal(inForce(vs, at(20))!.id, 1);
    assert.deepEqual(upcoming(vs, at(20)).map((v) => v.id), [2, 3]);
    assert.equal(inForce(vs, at(40))!.id, 2);
    assert.equal(inForce(vs, at(55))!.id, 3);
    // A technical version announced later and in force at once: the earlier pending one never comes.
    const tech = [version(1, 0), version(2, 40, 10), version(3, 15, 15, 'security fix')];
    assert.equal(inForce(tech, at(16))!.id, 3);
    assert.deepEqual(upcoming(tech, at(16)), []);
    assert.equal(inForce(tech, at(45))!.id, 3);
    // A later announcement with the same date replaces the pending one.
    const same = [version(1, 0), version(2, 40, 10), version(3, 40, 11)];
    assert.deepEqual(upcoming(same, at(20)).map((v) => v.id), [3]);
  });

  test('P22 users are told about the newest change until it takes effect, and a technical one for four weeks', () => {
    const at = (day: number) => new Date(day * DAY);
    assert.equal(announcementToNotify([version(1, 0)], at(1)), null, 'the first version is no change');
    assert.equal(announcementToNotify([version(1, 0), version(2, 40, 10)], at(39))!.id, 2);
    assert.equal(announcementToNotify([version(1, 0), version(2, 40, 10)], at(40)), null);
    const tech = [version(1, 0), version(2, 15, 15, 'security fix')];
    assert.equal(announcementToNotify(tech, at(42))!.id, 2);
    assert.equal(announcementToNotify(tech, at(43)), null);
  });

  test('P22 an announcement needs at least 28 days of notice unless it names a technical reason', () => {
    const now = new Date(Date.UTC(2026, 0, 10, 15, 30));
    assert.throws(() => parseEffective('2026-02-07', now, null), (e: Error) => e instanceof AnnounceError && /less than 28 days ahead \(2026-02-08 at the earliest\)/.test(e.message) && /--technical REASON/.test(e.message));
    assert.equal(parseEffective('2026-02-08', now, null).toISOString(), '2026-02-08T00:00:00.000Z');
    assert.equal(parseEffective('2026-01-10', now, 'security fix').getTime(), now.getTime(), 'today with a technical reason: now');
    assert.equal(parseEffective('2026-01-12', now, 'security fix').toISOString(), '2026-01-12T00:00:00.000Z');
    assert.throws(() => parseEffective('2026-01-09', now, 'security fix'), /in the past/);
    assert.throws(() => parseEffective('2026-02-30', now, null), /not a valid date/);
    assert.throws(() => parseEffective('next month', now, null), /YYYY-MM-DD/);
    assert.equal(NOTICE_MS, 28 * DAY);
  });
});

// ---------------------------------------------------------------------------------------------

describe('P22 the policy at server start', () => {
  let dir: string;
  let dbPath: string;
  const clock = new ManualClock(Date.UTC(2026, 2, 1, 12));
  before(() => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-policy-'));
    dbPath = join(dir, 'gatehouse.sqlite');
  });
  after(() => rmSync(dir, { recursive: true, force: true }));

  const start = (config: Record<string, unknown> = {}) =>
    startTestServer({ storage: { type: 'sqlite', path: dbPath }, clock, modules: modules(createPolicyModule()), config, logLevel: 'info' });

  test('P22 the first start stores the policy as version 1, in force at once; an unchanged restart is accepted', async () => {
    let ts = await start();
    let versions = await ts.server.ctx.storage.policyVersions.list();
    assert.equal(versions.length, 1);
    assert.equal(versions[0]!.effectiveAt.getTime(), clock.now().getTime());
    assert.equal(versions[0]!.hash, policyFromConfig(ts.config).hash);
    await ts.stop();
    ts = await start({ server: { name: 'Renamed' } });
    versions = await ts.server.ctx.storage.policyVersions.list();
    assert.equal(versions.length, 1, 'a setting the policy does not state needs no announcement');
    await ts.stop();
  });

  test('P22 a configuration that changes the policy without an announcement still starts: a narrowing change is in force at once', async () => {
    const ts = await start({ retention: { offlineMessages: '14d' } });
    try {
      assert.equal(ts.server.ctx.config.retention.offlineMessages, 14 * DAY);
      assert.equal((await ts.server.ctx.storage.policyVersions.list()).length, 1, 'nothing is stored: the published policy stays the version in force');
      assert.ok(ts.logLines.some((l) => l.includes('in force at once') && l.includes('retention.offlineMessages: 30 days → 14 days')));
    } finally {
      await ts.stop();
    }
  });

  test('P22 after an announcement the server runs the new configuration while the old version stays in force until the effective date', async () => {
    const raw = { retention: { offlineMessages: '14d' } };
    const storage = await openStorage({ type: 'sqlite', path: dbPath }, { migrate: true });
    try {
      const newConfig = configFor(dir, dbPath, raw);
      await assert.rejects(announcePolicy(storage, newConfig, { effective: '2026-03-20', now: clock.now() }), /less than 28 days ahead/);
      const r = await announcePolicy(storage, newConfig, { effective: '2026-04-01', now: clock.now() });
      assert.equal(r.first, false);
      assert.deepEqual(r.changes, ['retention.offlineMessages: 30 days → 14 days']);
      await assert.rejects(announcePolicy(storage, newConfig, { effective: '2026-05-01', now: clock.now() }), /nothing to announce: this configuration renders version 2/);
    } finally {
      await storage.close();
    }
    const ts = await start(raw);
    try {
      const versions = await ts.server.ctx.storage.policyVersions.list();
      const view = viewAt(versions, clock.now())!;
      assert.equal(view.current.id, 1, 'the old version is in force');
      assert.deepEqual(view.upcoming.map((u) => u.id), [2]);
      const md = renderView(view, 'en', 'md');
      assert.ok(md.includes('_In force since 2026-03-01 (version 1)._'));
      assert.ok(md.includes('Announced change: a new version of this policy takes effect on 2026-04-01 (announced on 2026-03-01)'));
      const [current, next] = md.split('\n---\n');
      assert.ok(current!.includes('not collected within 30 days'), 'the text in force has the old period');
      assert.ok(next!.includes('New version, in force from 2026-04-01 (version 2)'));
      assert.ok(next!.includes('not collected within 14 days'));
      const de = renderView(view, 'de', 'html');
      assert.ok(de.includes('Angekündigte Änderung: Ab 1.4.2026 gilt eine neue Fassung'));
      clock.set(new Date(Date.UTC(2026, 3, 1)));
      const later = viewAt(versions, clock.now())!;
      assert.equal(later.current.id, 2);
      assert.deepEqual(later.upcoming, []);
    } finally {
      await ts.stop();
    }
  });

  test('P22 a technical change may take effect at once, and names its reason', async () => {
    const raw = { retention: { offlineMessages: '7d' } };
    const storage = await openStorage({ type: 'sqlite', path: dbPath }, { migrate: true });
    try {
      const r = await announcePolicy(storage, configFor(dir, dbPath, raw), { effective: clock.now().toISOString().slice(0, 10), technical: 'disk  full', now: clock.now() });
      assert.equal(r.version.effectiveAt.getTime(), clock.now().getTime());
      assert.equal(r.version.technicalReason, 'disk full');
      assert.equal(inForce(await storage.policyVersions.list(), clock.now())!.id, r.version.id);
      await assert.rejects(announcePolicy(storage, configFor(dir, dbPath, {}), { effective: '2026-04-02', technical: '  ', now: clock.now() }), /--technical needs a reason/);
    } finally {
      await storage.close();
    }
    const ts = await start(raw);
    await ts.stop();
  });
});

/** The configuration the command line would load for the test server's database. */
/** The configuration of start()'s servers as a file would hold it (test servers have no HTTPS listener, so no uploads). */
function configFor(dir: string, dbPath: string, raw: Record<string, unknown>): Config {
  return parseConfig({ dataDir: dir, hosts: [{ domain: 'localhost', registration: 'open' }], storage: { type: 'sqlite', path: dbPath }, listen: { https: [] }, ...raw }, dir);
}

// ---------------------------------------------------------------------------------------------
// The command line, as an operator runs it (a separate process on the same database).


const gatehouse = runCli;

function isHeadline(el: Element): boolean {
  return el.name === 'message' && el.attrs.type === 'headline' && el.attrs.from === 'localhost';
}

describe('P22 announcing a change to a running server', () => {
  let ts: TestServer;
  let dir: string;
  let dbPath: string;
  let newConfigFile: string;
  let alice: TestClient;
  let bob: TestClient;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'gatehouse-policy-cli-'));
    dbPath = join(dir, 'gatehouse.sqlite');
    newConfigFile = join(dir, 'gatehouse.yaml');
    writeFileSync(
      newConfigFile,
      stringify({ dataDir: dir, hosts: [{ domain: 'localhost', registration: 'open' }], storage: { type: 'sqlite', path: dbPath }, listen: { https: [] }, retention: { offlineMessages: '14d' }, policy: { language: 'de' } }),
    );
    ts = await startTestServer({ storage: { type: 'sqlite', path: dbPath }, modules: modules(createPolicyModule({ checkIntervalMs: 150 })), config: { policy: { language: 'de' } }, logLevel: 'info' });
    alice = await ts.user('alice');
    bob = await ts.user('bob');
    await ts.user('carol').then((c) => c.close());
    for (const c of [alice, bob]) c.send(x('presence'));
    await new Promise((r) => setTimeout(r, 100));
  });
  after(async () => {
    await ts.stop();
    rmSync(dir, { recursive: true, force: true });
  });

  test('P22 gatehouse policy render prints the version in force, in German or English, as Markdown or HTML', async () => {
    const md = await gatehouse(['policy', 'render', '--config', newConfigFile, '--lang', 'en']);
    assert.equal(md.code, 0, md.stderr);
    assert.match(md.stdout, /^# Privacy policy of localhost\n\n_In force since \d{4}-\d{2}-\d{2} \(version 1\)\._/);
    assert.ok(md.stdout.includes('not collected within 30 days'), 'the stored version, not the changed configuration');
    assert.ok(md.stderr.includes('policy.contact is not set'));
    const html = await gatehouse(['policy', 'render', '--config', newConfigFile, '--format', 'html']);
    assert.equal(html.code, 0, html.stderr);
    assert.match(html.stdout, /^<!DOCTYPE html>\n<html lang="de">/, 'the configured language by default');
    const drafted = await gatehouse(['policy', 'render', '--config', newConfigFile, '--draft', '--lang=en']);
    assert.ok(drafted.stdout.includes('not collected within 14 days'));
    assert.ok(drafted.stdout.includes('Draft generated from the server configuration; not announced.'));
    const check = await gatehouse(['policy', 'check', '--config', newConfigFile]);
    assert.equal(check.code, 0, check.stderr);
    assert.ok(check.stdout.includes('in force at once (narrows the privacy policy): retention.offlineMessages: 30 days → 14 days'), check.stdout);
    const bad = await gatehouse(['policy', 'render', '--config', newConfigFile, '--lang', 'fr']);
    assert.equal(bad.code, 2);
  });

  test('P22 online users get a headline message when a change is announced; users who come online later get it once', async () => {
    const tooSoon = await gatehouse(['policy', 'announce', '--config', newConfigFile, '--effective', new Date(Date.now() + 7 * DAY).toISOString().slice(0, 10)]);
    assert.equal(tooSoon.code, 1);
    assert.match(tooSoon.stderr, /less than 28 days ahead/);
    assert.equal((await ts.server.ctx.storage.policyVersions.list()).length, 1);

    const effective = new Date(Date.now() + 35 * DAY).toISOString().slice(0, 10);
    const announced = await gatehouse(['policy', 'announce', '--config', newConfigFile, '--effective', effective]);
    assert.equal(announced.code, 0, announced.stderr);
    assert.match(announced.stdout, /announced privacy policy version 2, in force from/);

    const germanDate = (() => {
      const d = new Date(`${effective}T00:00:00Z`);
      return `${d.getUTCDate()}.${d.getUTCMonth() + 1}.${d.getUTCFullYear()}`;
    })();
    for (const c of [alice, bob]) {
      const msg = await c.expect(isHeadline, 3000);
      assert.equal(msg.attrs['xml:lang'], 'de');
      assert.equal(msg.getChildText('subject'), 'Änderung der Datenschutzerklärung');
      const body = msg.getChildText('body')!;
      assert.ok(body.includes(`ändert sich am ${germanDate}`), body);
      assert.ok(body.includes('Offline-Nachrichten aufbewahrt: 30 Tage → 14 Tage'), body);
      const en = msg.getChildren('body').find((b) => b.attrs['xml:lang'] === 'en')!;
      assert.ok(en.text().includes(`changes on ${effective}`));
    }
    // Once per account: nothing more for alice on the next checks or when she comes back.
    assert.ok(await alice.expectNothing(isHeadline, 400));
    await alice.close();
    const again = await ts.client();
    await again.login('alice', 'secret-alice');
    again.send(x('presence'));
    assert.ok(await again.expectNothing(isHeadline, 500));
    // carol was offline: she is told when she comes online.
    const carol = await ts.client();
    await carol.login('carol', 'secret-carol');
    carol.send(x('presence'));
    const msg = await carol.expect(isHeadline, 3000);
    assert.ok(msg.getChildText('body')!.includes(germanDate));
    const account = (await ts.server.ctx.storage.accounts.get('carol', 'localhost'))!;
    assert.match((await ts.server.ctx.storage.accountState.get(account.id, NOTIFIED_KEY))!, /version="2"|version='2'/);

    // The running server's page: the old version in force, the change announced.
    const rendered = await gatehouse(['policy', 'render', '--config', newConfigFile, '--lang', 'de']);
    assert.ok(rendered.stdout.includes('(Version 1)'));
    assert.ok(rendered.stdout.includes(`Angekündigte Änderung: Ab ${germanDate} gilt eine neue Fassung`));
    const list = await gatehouse(['policy', 'list', '--config', newConfigFile]);
    assert.match(list.stdout, /^1\tin force\t/m);
    assert.match(list.stdout, /^2\tannounced\t.*matches this configuration/m);
    // And the server restarts with the announced configuration.
    const status = await checkPolicyAtStart(ts.server.ctx.storage, configFor(dir, dbPath, { retention: { offlineMessages: '14d' }, policy: { language: 'de' } }), new Date());
    assert.equal(status.status, 'unchanged');
  });
});
