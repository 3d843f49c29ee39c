/**
 * What IRC networks see of the gateway, against ngIRCd and InspIRCd from Debian where they differ:
 * flood control during a long paste (nothing lost; InspIRCd ends a client that outruns it with
 * "RecvQ exceeded", ngIRCd throttles), the gateway's identd (RFC 1413) answering the servers' ident
 * lookups with a per-user identifier that is not the JID, and WEBIRC with a pseudonymous per-user
 * address (InspIRCd's m_cgiirc).
 */
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect } from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import { generate } from 'selfsigned';
import { randomBytes } from 'node:crypto';
import { startNgircd, type Ircd } from '../helpers/ircd.js';
import { reservedPort } from '../helpers/ports.js';
import { startInspircd, type Inspircd } from '../helpers/inspircd.js';
import { skipWithout } from '../helpers/requirements.js';
import { RawIrcClient } from '../helpers/irc-client.js';
import { createAdapter, createIrcAdapter, type IrcSession } from '../../transports/irc/index.js';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_FLOOD, parseFlood } from '../../transports/irc/flood.js';
import { IdentServer, identFor } from '../../transports/irc/identd.js';
import { parsePrefix, webircAddress } from '../../transports/irc/webirc.js';
import { certificateFingerprint } from '../../transports/irc/client-certificate.js';
import { Vault, vaultKey } from '../../transports/kit/vault.js';
import { testLog } from './session-recorder.js';

const PASTE_LINES = 32;
/** ~430 bytes of text per line: 32 lines are ~14 KB; after the ten InspIRCd takes at once, more than its 8192-byte receive queue is left. */
const pasteText = () => Array.from({ length: PASTE_LINES }, (_, i) => `paste line ${String(i).padStart(2, '0')} ${'lorem ipsum '.repeat(35).trim()}`).join('\n');

async function pasteThrough(port: number, floodless: boolean): Promise<{ received: number; quit: string | null }> {
  const listener = await RawIrcClient.connect({ port, nick: `lsn${randomBytes(2).toString('hex')}` });
  const channel = `#paste${randomBytes(2).toString('hex')}`;
  await listener.join(channel);
  const adapter = createIrcAdapter({ commandTimeoutMs: 5000, joinTimeoutMs: 5000, ...(floodless ? { flood: { burst: 1000, intervalMs: 0 } } : {}) });
  const nick = `pst${randomBytes(2).toString('hex')}`;
  const session = await adapter.login({ userJid: 'paster@localhost', server: '127.0.0.1', credentials: { nick, tls: 'false', port: String(port) }, log: testLog().log });
  try {
    await session.joinRoom({ id: channel, server: '127.0.0.1' }, nick);
    let received = 0;
    let quit: string | null = null;
    listener.onLine((l) => {
      if (l.command === 'PRIVMSG' && l.nick === nick) received++;
      if (l.command === 'QUIT' && l.nick === nick) quit = l.trailing ?? '';
    });
    await session.sendRoomMessage({ id: channel, server: '127.0.0.1' }, { text: pasteText() }).catch(() => undefined);
    // Everything is handed to the socket once sendRoomMessage resolved; wait for the server to relay it all (or end us).
    const deadline = Date.now() + 60_000;
    while (received < PASTE_LINES && quit === null && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    return { received, quit };
  } finally {
    await session.logout().catch(() => undefined);
    listener.destroy();
  }
}

describe('flood control settings', () => {
  test('the defaults are ten lines at once, then one a second; bad settings get a clear error', () => {
    assert.deepEqual(DEFAULT_FLOOD, { burst: 10, intervalMs: 1000 });
    assert.deepEqual(parseFlood({ burst: 5, linesPerSecond: 2 }, 'network.flood'), { burst: 5, intervalMs: 500 });
    assert.throws(() => parseFlood({ burst: 0 }, 'network.flood'), /network\.flood\.burst/);
    assert.throws(() => parseFlood({ rate: 1 }, 'network.flood'), /network\.flood\.rate: unknown/);
  });
});

describe('a long paste through InspIRCd (Debian defaults: 1 command/s after 10, 8 KB receive queue)', { skip: skipWithout('inspircd') }, () => {
  let ircd: Inspircd;
  before(async () => {
    ircd = await startInspircd();
  });
  after(async () => {
    await ircd?.stop();
  });

  test('with the default flood control every line arrives, in order, and the connection stays', async () => {
    const { received, quit } = await pasteThrough(ircd.port, false);
    assert.equal(quit, null, `disconnected: ${quit}`);
    assert.equal(received, PASTE_LINES);
  });

  test('without flood control the same paste ends the connection (RecvQ exceeded): the limit is real', async () => {
    const { received, quit } = await pasteThrough(ircd.port, true);
    assert.match(quit ?? '', /RecvQ exceeded|Excess Flood/i, `quit: ${quit}, ${received} lines`);
    assert.ok(received < PASTE_LINES, `${received} lines`);
  });
});

describe('a long paste through ngIRCd', { skip: skipWithout('ngircd') }, () => {
  let ircd: Ircd;
  before(async () => {
    // ngIRCd's own default penalty (MaxPenaltyTime unlimited): it slows a fast client down rather than ending it.
    ircd = await startNgircd({ maxPenaltyTime: -1 });
  });
  after(async () => {
    await ircd?.stop();
  });

  test('with the default flood control every line arrives and the connection stays', async () => {
    const { received, quit } = await pasteThrough(ircd.port, false);
    assert.equal(quit, null, `disconnected: ${quit}`);
    assert.equal(received, PASTE_LINES);
  });
});

describe('identd (RFC 1413)', () => {
  test('answers for registered connections only, with the ident; malformed queries get an error', async () => {
    const identd = new IdentServer({ port: 0, host: '127.0.0.1' });
    await identd.start();
    try {
      const release = identd.register(40000, 6667, 'gabc123def');
      const ask = (q: string) =>
        new Promise<string>((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port: identd.port }, () => s.write(q + '\r\n'));
          let buf = '';
          s.on('data', (d) => {
            buf += d.toString();
            if (buf.includes('\n')) (s.destroy(), resolve(buf.trim()));
          });
          s.on('error', reject);
        });
      assert.equal(await ask('40000 , 6667'), '40000 , 6667 : USERID : UNIX : gabc123def');
      assert.equal(await ask('40000,6668'), '40000 , 6668 : ERROR : NO-USER');
      assert.match(await ask('hello'), /ERROR : INVALID-PORT/);
      release();
      assert.equal(await ask('40000 , 6667'), '40000 , 6667 : ERROR : NO-USER');
    } finally {
      await identd.stop();
    }
  });

  test('the ident is the same for a user every time, differs between users and does not show the JID', () => {
    const vault = new Vault(vaultKey(randomBytes(32), 'test'));
    const a = identFor(vault.pseudonym('alice@example.org', 'irc'));
    assert.equal(a, identFor(vault.pseudonym('alice@example.org', 'irc')));
    assert.notEqual(a, identFor(vault.pseudonym('bob@example.org', 'irc')));
    assert.match(a, /^g[0-9a-f]{9}$/);
    assert.ok(!a.includes('alice'));
    // Another vault key (another gateway): another ident.
    assert.notEqual(a, identFor(new Vault(vaultKey(randomBytes(32), 'other')).pseudonym('alice@example.org', 'irc')));
  });
});

/** Port 113 is where IRC servers ask; tests that need it run as root (or skip, saying why). */
async function identdOn113(): Promise<IdentServer | string> {
  const identd = new IdentServer({ port: 113, host: '127.0.0.1' });
  try {
    await identd.start();
    return identd;
  } catch (err) {
    return `cannot listen on 127.0.0.1 port 113 (${(err as Error).message})`;
  }
}

for (const kind of ['ngircd', 'inspircd'] as const) {
  describe(`identd answered: ${kind} shows the gateway's ident as the user name`, { skip: skipWithout(kind) }, () => {
    let identd: IdentServer | string;
    let server: { port: number; stop(): Promise<void> };
    before(async () => {
      identd = await identdOn113();
      // ngIRCd asks identd only together with its DNS lookups.
      server = kind === 'ngircd' ? await startNgircd({ ident: true, dns: true }) : await startInspircd({ ident: true });
    });
    after(async () => {
      if (typeof identd !== 'string') await identd.stop();
      await server?.stop();
    });

    test('WHOIS of the user shows the ident, without the "~" of an unverified user name', async (t) => {
      if (typeof identd === 'string') return t.skip(identd);
      const vault = new Vault(vaultKey(randomBytes(32), 'test'));
      const pseudonym = vault.pseudonym('ident-user@localhost', 'irc');
      const adapter = createIrcAdapter({ identd, commandTimeoutMs: 5000 });
      const nick = `idn${randomBytes(2).toString('hex')}`;
      const session: IrcSession = await adapter.login({ userJid: 'ident-user@localhost', pseudonym, server: '127.0.0.1', credentials: { nick, tls: 'false', port: String(server.port) }, log: testLog().log });
      const watcher = await RawIrcClient.connect({ port: server.port, nick: `wtc${randomBytes(2).toString('hex')}` });
      try {
        watcher.send(`WHOIS ${nick}`);
        const whois = await watcher.expect((l) => l.command === '311');
        assert.equal(whois.params[2], identFor(pseudonym), `user name of ${nick}: ${whois.params[2]}`);
      } finally {
        watcher.destroy();
        await session.logout();
      }
    });
  });
}

describe('WEBIRC', () => {
  test('the address is the operator\'s prefix and the user\'s pseudonym, never anything else', () => {
    const prefix = parsePrefix('2001:db8:1:2::/64', 'p');
    const server = { password: 'x', gateway: 'gatehouse', prefix, hostSuffix: null };
    const a = webircAddress(server, 'ab'.repeat(32));
    assert.equal(a, '2001:db8:1:2:abab:abab:abab:abab');
    assert.throws(() => parsePrefix('10.0.0.0/8', 'network.webirc.x.prefix'), /network\.webirc\.x\.prefix: an IPv6 prefix/);
    assert.throws(() => parsePrefix('2001:db8::/8', 'p'), /from 16 to 112/);
  });
});

describe('WEBIRC through InspIRCd (m_cgiirc)', { skip: skipWithout('inspircd') }, () => {
  let ircd: Inspircd;
  before(async () => {
    ircd = await startInspircd({ webircPassword: 'webirc-test-secret' });
  });
  after(async () => {
    await ircd?.stop();
  });

  test('the network shows the pseudonymous address (and host) instead of the gateway\'s', async () => {
    const vault = new Vault(vaultKey(randomBytes(32), 'test'));
    const pseudonym = vault.pseudonym('webirc-user@localhost', 'irc');
    const adapterWebirc = { password: 'webirc-test-secret', gateway: 'gatehouse', prefix: parsePrefix('2001:db8:77:1::/64', 'p'), hostSuffix: 'users.gw.example' };
    const adapter = createIrcAdapter({ commandTimeoutMs: 5000, webirc: { '127.0.0.1': adapterWebirc } });
    const nick = `web${randomBytes(2).toString('hex')}`;
    const tl = testLog();
    const session = await adapter.login({ userJid: 'webirc-user@localhost', pseudonym, server: '127.0.0.1', credentials: { nick, tls: 'false', port: String(ircd.port) }, log: tl.log });
    const watcher = await RawIrcClient.connect({ port: ircd.port, nick: `wtc${randomBytes(2).toString('hex')}` });
    try {
      watcher.send(`WHOIS ${nick}`);
      const whois = await watcher.expect((l) => l.command === '311');
      // InspIRCd 3 shows the address it was given (it resolves host names itself, here not at all); others take the host name.
      assert.equal(whois.params[3], webircAddress(adapterWebirc, pseudonym));
      assert.match(whois.params[3] ?? '', /^2001:db8:77:1:/);
      assert.ok(!ircd.log().includes('webirc-test-secret'), 'the password is in no log');
      assert.ok(!tl.lines.join('\n').includes('webirc-test-secret'), 'nor in the adapter log');
    } finally {
      watcher.destroy();
      await session.logout();
    }
  });
});

// ------------------------------------------------------------------ SASL EXTERNAL

/**
 * A scripted TLS IRC server offering SASL EXTERNAL and asking for a client certificate: it logs in
 * whoever shows a certificate whose SHA-256 fingerprint is on its list (as services' CertFP does).
 * Neither ngIRCd (no SASL) nor InspIRCd alone (m_sasl hands SASL to a services server, and Debian
 * ships none) can check it.
 */
async function fakeCertFpServer(): Promise<{ port: number; known: Set<string>; seen: string[]; close(): Promise<void> }> {
  const pems = await generate([{ name: 'commonName', value: 'localhost' }], { keyType: 'ec', curve: 'P-256', algorithm: 'sha256' });
  const known = new Set<string>();
  const seen: string[] = [];
  const sockets = new Set<TLSSocket>();
  const srv = createTlsServer({ cert: pems.cert, key: pems.private, requestCert: true, rejectUnauthorized: false }, (sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.on('error', () => undefined);
    const peer = sock.getPeerCertificate();
    const fp = peer?.fingerprint256 ? peer.fingerprint256.replace(/:/g, '').toLowerCase() : '';
    let buf = '';
    let nick = '*';
    const send = (l: string) => sock.write(l + '\r\n');
    sock.on('data', (d) => {
      buf += d.toString('utf8');
      for (let i = buf.indexOf('\n'); i !== -1; i = buf.indexOf('\n')) {
        const line = buf.slice(0, i).replace(/\r$/, '');
        buf = buf.slice(i + 1);
        const [cmd, ...args] = line.split(' ');
        if (cmd === 'CAP' && args[0] === 'LS') send(':cert.server CAP * LS :sasl=EXTERNAL');
        else if (cmd === 'CAP' && args[0] === 'REQ') send(`:cert.server CAP * ACK :${line.split(':')[1]}`);
        else if (cmd === 'CAP' && args[0] === 'END') {
          send(`:cert.server 001 ${nick} :Welcome ${nick}!u@h`);
          send(`:cert.server 422 ${nick} :No MOTD`);
        } else if (cmd === 'NICK') nick = args[0]!;
        else if (cmd === 'AUTHENTICATE' && args[0] === 'EXTERNAL') send('AUTHENTICATE +');
        else if (cmd === 'AUTHENTICATE' && args[0] === '+') {
          seen.push(fp);
          if (fp && known.has(fp)) {
            send(`:cert.server 900 ${nick} ${nick}!u@h acct :You are now logged in as acct`);
            send(`:cert.server 903 ${nick} :SASL authentication successful`);
          } else send(`:cert.server 904 ${nick} :SASL authentication failed`);
        } else if (cmd === 'QUIT') {
          send('ERROR :Closing link');
          sock.end();
        }
      }
    });
  });
  await new Promise<void>((resolve) => srv.listen(0, '127.0.0.1', resolve));
  return {
    port: (srv.address() as { port: number }).port,
    known,
    seen,
    close: () => new Promise<void>((resolve) => (sockets.forEach((s) => s.destroy()), srv.close(() => resolve()))),
  };
}

describe('SASL EXTERNAL with a client certificate the gateway makes (scripted TLS server)', () => {
  test('the first login shows a new certificate and tells its fingerprint; once the account knows it, the stored one logs in', async () => {
    const fake = await fakeCertFpServer();
    try {
      const adapter = createIrcAdapter({ commandTimeoutMs: 5000 });
      const given = { nick: 'certuser', saslExternal: 'true', port: String(fake.port), tls: 'true', verifyCertificate: 'false' };
      const tl = testLog();
      const first = await adapter.login({ userJid: 'cert@localhost', server: '127.0.0.1', credentials: given, log: tl.log });
      const notices: string[] = [];
      first.on('serverMessage', (_s, m) => notices.push(m.text));
      await new Promise((r) => setTimeout(r, 50));
      const stored = adapter.credentialsToStore(first, given);
      assert.ok(stored.clientCertificate?.includes('BEGIN CERTIFICATE'));
      assert.ok(stored.clientKey?.includes('PRIVATE KEY'));
      const fp = certificateFingerprint(stored.clientCertificate!);
      assert.deepEqual(fake.seen, [fp], 'the certificate was shown in the TLS handshake');
      assert.ok(notices.some((n) => n.includes(`SHA-256 fingerprint: ${fp}`)), notices.join(' | '));
      await first.logout();
      for (const line of tl.lines) assert.ok(!line.includes('PRIVATE KEY') && !line.includes(stored.clientKey!.slice(40, 80)), line);

      // The user adds the fingerprint to the account; the next login shows the same certificate and is logged in.
      fake.known.add(fp);
      const second = await adapter.login({ userJid: 'cert@localhost', server: '127.0.0.1', credentials: stored, log: tl.log });
      const later: string[] = [];
      second.on('serverMessage', (_s, m) => later.push(m.text));
      await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(fake.seen, [fp, fp]);
      assert.ok(!later.some((n) => n.includes('fingerprint')), 'no fingerprint notice once logged in');
      assert.equal(adapter.credentialsToStore(second, stored), stored, 'nothing new to store');
      await second.logout();
      // Without TLS there is no certificate to show: refused before connecting.
      await assert.rejects(adapter.login({ userJid: 'cert@localhost', server: '127.0.0.1', credentials: { ...stored, tls: 'false' }, log: tl.log }), /needs TLS/);
    } finally {
      await fake.close();
    }
  });
});

describe('network settings of the IRC transport', () => {
  test('flood, servers, identd and webirc are checked with errors naming the key; the WEBIRC password file must be private', async () => {
    const log = testLog().log;
    await assert.rejects(async () => createAdapter({ flood: { burst: 0 } }, log), /network\.flood\.burst/);
    await assert.rejects(async () => createAdapter({ servers: { 'irc.example.net': { tlsPort: 6697 } } }, log), /network\.servers\.irc\.example\.net\.tlsPort: unknown/);
    await assert.rejects(async () => createAdapter({ identd: { port: 70000 } }, log), /network\.identd\.port/);
    const dir = mkdtempSync(join(tmpdir(), 'gatehouse-webirc-'));
    try {
      const file = join(dir, 'webirc');
      writeFileSync(file, 'webirc-file-secret\n', { mode: 0o644 });
      chmodSync(file, 0o644);
      await assert.rejects(async () => createAdapter({ webirc: { 'irc.example.net': { passwordFile: file, prefix: '2001:db8:1:2::/64' } } }, log), /chmod 600/);
      chmodSync(file, 0o600);
      await assert.rejects(async () => createAdapter({ webirc: { 'irc.example.net': { passwordFile: file, prefix: '10.0.0.0/8' } } }, log), (e: Error) => /prefix/.test(e.message) && !e.message.includes('webirc-file-secret'));
      const adapter = await createAdapter({ webirc: { 'irc.example.net': { passwordFile: file, prefix: '2001:db8:1:2::/64' } }, servers: { 'irc.example.net': { tlsPorts: [6697, 7000], flood: { burst: 5, linesPerSecond: 2 } } } }, log);
      assert.equal(adapter.network, 'irc');
      const identd = await createAdapter({ identd: { port: await reservedPort(), host: '127.0.0.1' } }, log);
      assert.equal(identd.network, 'irc');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
