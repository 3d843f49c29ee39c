/**
 * Reading an export for `gatehouse import` (server/modules/export/sources.ts, ejabberd.ts): a
 * directory, XInclude, and bad input — a missing include, an include outside the export
 * directory (by path, absolute path or symbolic link), a URL, a loop, a file too large — each
 * refused with a clear error naming the file, before anything is imported.
 */
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, mkdtempSync, rmSync, symlinkSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { stringify } from 'yaml';
import { readExportSource } from '../../server/modules/export/sources.js';
import { fixEjabberdScram } from '../../server/modules/export/ejabberd.js';
import { addVcardTempFromPep, dropEmptyPepConfigFields, pepNodes } from '../../server/modules/export/prosody.js';
import { ExportError, parseExport, MAX_IMPORT_BYTES } from '../../server/modules/export/export.js';
import { makeVerifierAsync } from '../../server/accounts/service.js';
import { runCli } from '../helpers/server-process.js';

const dirs: string[] = [];
after(() => {
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});
function exportDir(files: Record<string, string>): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'gatehouse-sources-'));
  dirs.push(dir);
  for (const [name, text] of Object.entries(files)) {
    mkdirSync(path.dirname(path.join(dir, name)), { recursive: true });
    writeFileSync(path.join(dir, name), text);
  }
  return dir;
}

const PIE = 'urn:xmpp:pie:0';
const XI = 'http://www.w3.org/2001/XInclude';
const main = (...hrefs: string[]) => `<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='${PIE}' xmlns:xi='${XI}'>${hrefs.map((h) => `<xi:include href='${h}'/>`).join('')}</server-data>`;
const hostFile = (jid: string, ...users: string[]) => `<?xml version='1.0' encoding='UTF-8'?><host xmlns='${PIE}' xmlns:xi='${XI}' jid='${jid}'>${users.map((u) => `<user name='${u}' password='pw-${u}'/>`).join('')}</host>`;
const userFile = (user: string, host: string) => `<server-data xmlns='${PIE}'><host jid='${host}'><user name='${user}' password='pw-${user}'/></host></server-data>`;

const accounts = (doc: { document: { toString(): string } }) => parseExport(doc.document.toString(), []).users.map((u) => `${u.username}@${u.host}`).sort();

async function refusal(input: string, limits = {}): Promise<string> {
  try {
    await readExportSource(input, limits);
  } catch (err) {
    assert.ok(err instanceof ExportError, String(err));
    return err.message;
  }
  throw new Error('the export was accepted');
}

test('a file with XInclude brings in the files it names (ejabberd export_piefxis)', async () => {
  const dir = exportDir({ 'main.xml': main('main_a.xml', 'main_b.xml'), 'main_a.xml': hostFile('a.example', 'alice', 'bob'), 'main_b.xml': hostFile('b.example', 'carol') });
  const src = await readExportSource(path.join(dir, 'main.xml'));
  assert.deepEqual(src.files, ['main.xml', 'main_a.xml', 'main_b.xml']);
  assert.deepEqual(accounts(src), ['alice@a.example', 'bob@a.example', 'carol@b.example']);
});

test('a directory: every .xml file once, files included by another only through it (Prosody and ejabberd)', async () => {
  const dir = exportDir({
    'main.xml': main('main_a.xml'),
    'main_a.xml': hostFile('a.example', 'alice'),
    'dave@d.example.xml': userFile('dave', 'd.example'),
    'erin@d.example.xml': userFile('erin', 'd.example'),
    'notes.txt': 'not an export',
    'd%2eexample/accounts/dave.dat': 'return {};',
  });
  const src = await readExportSource(dir);
  assert.deepEqual([...src.files].sort(), ['dave@d.example.xml', 'erin@d.example.xml', 'main.xml', 'main_a.xml']);
  assert.deepEqual(accounts(src), ['alice@a.example', 'dave@d.example', 'erin@d.example']);
});

test('an account in two files of the export is refused, naming both files', async () => {
  const dir = exportDir({ 'one.xml': userFile('alice', 'a.example'), 'two.xml': userFile('alice', 'a.example') });
  assert.match(await refusal(dir), /alice@a\.example is in the export twice \(one\.xml and two\.xml\)/);
});

test('a missing include target is refused, naming the including file and the href', async () => {
  const dir = exportDir({ 'main.xml': main('main_a.xml', 'main_gone.xml'), 'main_a.xml': hostFile('a.example', 'alice') });
  assert.match(await refusal(path.join(dir, 'main.xml')), /main\.xml: <xi:include href='main_gone\.xml'\/>: no such file in the export directory/);
});

test('an include outside the export directory is refused: relative path, absolute path, symbolic link', async () => {
  const outside = exportDir({ 'secret.xml': hostFile('a.example', 'mallory') });
  const dir = exportDir({ 'up.xml': main(`../${path.basename(outside)}/secret.xml`) });
  assert.match(await refusal(path.join(dir, 'up.xml')), /up\.xml: <xi:include href='\.\.\/[^']+\/secret\.xml'\/>: the file is outside the export directory/);
  writeFileSync(path.join(dir, 'abs.xml'), main(path.join(outside, 'secret.xml')));
  assert.match(await refusal(path.join(dir, 'abs.xml')), /abs\.xml: .*outside the export directory/);
  writeFileSync(path.join(dir, 'passwd.xml'), main('/etc/passwd'));
  assert.match(await refusal(path.join(dir, 'passwd.xml')), /passwd\.xml: .*outside the export directory/);
  symlinkSync(path.join(outside, 'secret.xml'), path.join(dir, 'link_a.xml'));
  writeFileSync(path.join(dir, 'link.xml'), main('link_a.xml'));
  assert.match(await refusal(path.join(dir, 'link.xml')), /link\.xml: <xi:include href='link_a\.xml'\/>: the file is a link to outside the export directory/);
  // In a directory, a linked file outside is refused as well.
  const linked = exportDir({});
  symlinkSync(path.join(outside, 'secret.xml'), path.join(linked, 'x.xml'));
  assert.match(await refusal(linked), /x\.xml: a link to outside the export directory/);
});

test('URLs, XPointer, parse=text and include loops are refused', async () => {
  const dir = exportDir({
    'url.xml': main('http://example.org/a.xml'),
    'file.xml': main('file:///etc/passwd'),
    'frag.xml': main('a.xml#xpointer(/)'),
    'text.xml': `<server-data xmlns='${PIE}' xmlns:xi='${XI}'><xi:include href='a.xml' parse='text'/></server-data>`,
    'loop.xml': main('loop_b.xml'),
    'loop_b.xml': `<host xmlns='${PIE}' xmlns:xi='${XI}' jid='a.example'><xi:include href='loop.xml'/></host>`,
  });
  assert.match(await refusal(path.join(dir, 'url.xml')), /only relative file names are supported, not URLs/);
  assert.match(await refusal(path.join(dir, 'file.xml')), /not URLs/);
  assert.match(await refusal(path.join(dir, 'frag.xml')), /XPointer fragments are not supported/);
  assert.match(await refusal(path.join(dir, 'text.xml')), /parse='text' is not supported/);
  assert.match(await refusal(path.join(dir, 'loop.xml')), /loop_b\.xml: <xi:include href='loop\.xml'\/> includes a file that includes it \(a loop\)/);
});

test('a file or an export larger than the limit is refused before it is read', async () => {
  const dir = exportDir({ 'main.xml': main('main_a.xml'), 'main_a.xml': hostFile('a.example', 'alice', 'bob') });
  assert.match(await refusal(path.join(dir, 'main_a.xml'), { maxBytes: 50 }), /main_a\.xml is \d+ bytes, more than an import may read \(50 bytes\)/);
  assert.match(await refusal(path.join(dir, 'main.xml'), { maxBytes: 300 }), /the export's files are together more than an import may read \(300 bytes; at main_a\.xml\)/);
  assert.match(await refusal(dir, { maxFiles: 1 }), /has more than 1 \.xml files/);
  assert.match(await refusal(path.join(dir, 'main.xml'), { maxFiles: 1 }), /the export has more than 1 files/);
  // One file included many times counts as many copies.
  const fanOut = exportDir({ 'main.xml': main(...Array<string>(50).fill('main_a.xml')), 'main_a.xml': hostFile('a.example') });
  assert.match(await refusal(path.join(fanOut, 'main.xml'), { maxBytes: 4000 }), /together more than an import may read \(4000 bytes; at main_a\.xml, included again\)/);
  const broken = exportDir({ 'cut.xml': main('x.xml').slice(0, -5) });
  assert.match(await refusal(broken), /cut\.xml: the file is truncated/);
});

test('gatehouse import refuses a huge file with a clear error, without reading it', async () => {
  const dir = exportDir({});
  const big = path.join(dir, 'huge.xml');
  writeFileSync(big, '');
  truncateSync(big, MAX_IMPORT_BYTES + 1); // sparse: nothing is written
  const cfgFile = path.join(dir, 'gatehouse.yaml');
  writeFileSync(cfgFile, stringify({ dataDir: path.join(dir, 'data'), hosts: [{ domain: 'localhost' }] }));
  const r = await runCli(['import', big, '--config', cfgFile, '--dry-run']);
  assert.equal(r.code, 1, r.out);
  assert.match(r.stderr, new RegExp(`gatehouse import: huge\\.xml is ${MAX_IMPORT_BYTES + 1} bytes, more than an import may read \\(${MAX_IMPORT_BYTES} bytes\\)`));
  const missing = await runCli(['import', path.join(dir, 'nothing-here'), '--config', cfgFile]);
  assert.equal(missing.code, 1);
  assert.match(missing.stderr, /cannot read .*nothing-here: ENOENT/);
});

test("ejabberd's doubly base64-encoded SCRAM values are decoded; correctly encoded ones are left alone", async () => {
  const v = await makeVerifierAsync('pw', 'SHA-1', 4096);
  const twice = (b: Buffer) => Buffer.from(b.toString('base64')).toString('base64');
  const cred = (enc: (b: Buffer) => string) =>
    `<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'><iter-count>4096</iter-count><salt>${enc(v.salt)}</salt><server-key>${enc(v.serverKey)}</server-key><stored-key>${enc(v.storedKey)}</stored-key></scram-credentials>`;
  const doc = `<server-data xmlns='${PIE}'><host jid='a.example'><user name='ej'>${cred(twice)}</user><user name='ok'>${cred((b) => b.toString('base64'))}</user></host></server-data>`;
  const dir = exportDir({ 'x.xml': doc });
  const src = await readExportSource(path.join(dir, 'x.xml'));
  assert.equal(fixEjabberdScram(src.document), 1);
  for (const u of parseExport(src.document.toString(), []).users) {
    const got = u.verifiers[0]!;
    assert.deepEqual([got.salt, got.serverKey, got.storedKey], [v.salt, v.serverKey, v.storedKey], u.username);
  }
});

test("Prosody's PEP data: nodes and items are counted, empty node_config fields dropped, the rest kept as exported", async () => {
  // As Prosody 0.12's prosody-migrator writes a node published with the defaults.
  const form =
    "<x type='submit' xmlns='jabber:x:data'><field type='hidden' var='FORM_TYPE'><value>http://jabber.org/protocol/pubsub#node_config</value></field>" +
    "<field type='text-single' var='pubsub#max_items'/><field type='boolean' var='pubsub#persist_items'/><field type='list-single' var='pubsub#access_model'/>" +
    "<field type='boolean' var='pubsub#deliver_payloads'><value>1</value></field></x>";
  const user =
    `<user name='alice'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='tune'>${form}</configure><configure node='empty'>${form}</configure></pubsub>` +
    "<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='tune'><item id='current'><tune xmlns='http://jabber.org/protocol/tune'><artist>Yes</artist></tune></item></items></pubsub></user>";
  const dir = exportDir({ 'alice@a.example.xml': `<server-data xmlns='${PIE}'><host jid='a.example'>${user}</host></server-data>` });
  const src = await readExportSource(dir);
  const alice = src.document.getChild('host')!.getChild('user')!;
  assert.deepEqual(pepNodes(alice), [
    { node: 'tune', configured: true, items: 1 },
    { node: 'empty', configured: true, items: 0 },
  ]);
  assert.equal(dropEmptyPepConfigFields(src.document), 6);
  const fields = alice.getChild('pubsub', 'http://jabber.org/protocol/pubsub#owner')!.getChild('configure')!.getChild('x', 'jabber:x:data')!.getChildren('field');
  assert.deepEqual(fields.map((f) => f.attrs.var), ['FORM_TYPE', 'pubsub#deliver_payloads']);
  assert.match(alice.toString(), /<item id=['"]current['"]><tune xmlns=['"]http:\/\/jabber\.org\/protocol\/tune['"]><artist>Yes<\/artist><\/tune><\/item>/);
});

test("a vcard-temp vCard is made from PEP's vCard 4 and avatar when the export has none (Prosody's vcard_legacy); an existing one is kept", async () => {
  const card =
    "<vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Alice A</text></fn><n><surname>A</surname><given>Alice</given><additional/><prefix/><suffix/></n>" +
    '<nickname><text>ali</text></nickname><bday><date>1990-02-03</date></bday>' +
    '<adr><parameters><type><text>home</text></type></parameters><street>1 Road</street><locality>Town</locality><code>12345</code><country>Nowhere</country></adr>' +
    '<tel><parameters><type><text>cell</text></type></parameters><uri>tel:+49123</uri></tel>' +
    '<email><parameters><type><text>work</text></type></parameters><text>alice@work.example</text></email>' +
    '<impp><uri>xmpp:alice@old.example</uri></impp><title><text>Boss</text></title><org><text>Acme</text></org>' +
    '<url><uri>https://alice.example</uri></url><note><text>Hello</text></note></vcard>';
  const pep =
    `<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:vcard4'><item id='current'>${card}</item></items>` +
    "<items node='urn:xmpp:avatar:metadata'><item id='abc'><metadata xmlns='urn:xmpp:avatar:metadata'><info id='abc' type='image/jpeg' bytes='3'/></metadata></item></items>" +
    "<items node='urn:xmpp:avatar:data'><item id='abc'><data xmlns='urn:xmpp:avatar:data'>AQID</data></item></items></pubsub>";
  const doc = `<server-data xmlns='${PIE}'><host jid='a.example'><user name='alice'>${pep}</user><user name='bob'><vCard xmlns='vcard-temp'><FN>Bob</FN></vCard>${pep}</user><user name='carol'/></host></server-data>`;
  const src = await readExportSource(exportDir({ 'x.xml': doc }));
  assert.equal(addVcardTempFromPep(src.document), 1);
  const users = parseExport(src.document.toString(), []).users;
  assert.equal(
    users.find((u) => u.username === 'alice')!.vcard,
    '<vCard xmlns="vcard-temp"><FN>Alice A</FN><N><FAMILY>A</FAMILY><GIVEN>Alice</GIVEN></N><NICKNAME>ali</NICKNAME><PHOTO><TYPE>image/jpeg</TYPE><BINVAL>AQID</BINVAL></PHOTO>' +
      '<BDAY>1990-02-03</BDAY><ADR><HOME/><STREET>1 Road</STREET><LOCALITY>Town</LOCALITY><PCODE>12345</PCODE><CTRY>Nowhere</CTRY></ADR><TEL><CELL/><VOICE/><NUMBER>+49123</NUMBER></TEL>' +
      '<EMAIL><WORK/><INTERNET/><USERID>alice@work.example</USERID></EMAIL><JABBERID>alice@old.example</JABBERID><TITLE>Boss</TITLE><ORG><ORGNAME>Acme</ORGNAME></ORG><URL>https://alice.example</URL><DESC>Hello</DESC></vCard>',
  );
  assert.equal(users.find((u) => u.username === 'bob')!.vcard, '<vCard xmlns="vcard-temp"><FN>Bob</FN></vCard>');
  assert.equal(users.find((u) => u.username === 'carol')!.vcard, null);
});
