import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash, createHmac, pbkdf2Sync, randomBytes } from 'node:crypto';
import {
  SaslSession,
  availableMechanisms,
  type ChannelBinding,
  type SaslContext,
  type SaslStep,
} from '../../server/auth/sasl.js';
import { makeVerifier, verifyPlain, verifyPlainAsync } from '../../server/auth/scram.js';
import { tlsChannelBinding } from '../../server/auth/channel-binding.js';
import { SERVER_SECRET_FILE } from '../../server/auth/server-secret.js';
import type { ScramVerifier } from '../../storage/types.js';
import { createServer as createTlsServer } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createTestCa } from '../helpers/test-ca.js';
import { startTestServer } from '../helpers/server.js';

const execFileAsync = promisify(execFile);

type Hash = 'SHA-1' | 'SHA-256';
const nodeHash = (hash: Hash): string => (hash === 'SHA-1' ? 'sha1' : 'sha256');

/** Minimal, independent client side of SCRAM (RFC 5802 section 3), for driving the server. */
class ScramClient {
  private clientFirstBare = '';
  private gs2Header: string;
  private authMessage = '';
  private saltedPassword = Buffer.alloc(0);

  constructor(
    private readonly hash: Hash,
    private readonly username: string,
    private readonly password: string,
    private readonly opts: { nonce?: string; gs2Header?: string; cbData?: Buffer; authzid?: string } = {},
  ) {
    const az = opts.authzid ? `a=${opts.authzid}` : '';
    this.gs2Header = opts.gs2Header ?? `n,${az},`;
  }

  first(): Buffer {
    const nonce = this.opts.nonce ?? randomBytes(18).toString('base64');
    this.clientFirstBare = `n=${this.username.replace(/=/g, '=3D').replace(/,/g, '=2C')},r=${nonce}`;
    return Buffer.from(this.gs2Header + this.clientFirstBare);
  }

  final(serverFirst: Buffer, tamper: { nonce?: string; cbData?: Buffer } = {}): Buffer {
    const sf = serverFirst.toString('utf8');
    const m = /^r=([^,]+),s=([^,]+),i=(\d+)$/.exec(sf);
    assert.ok(m, `bad server-first ${sf}`);
    const [, nonce, salt, iterations] = m;
    this.saltedPassword = pbkdf2Sync(this.password, Buffer.from(salt!, 'base64'), Number(iterations), this.hash === 'SHA-1' ? 20 : 32, nodeHash(this.hash));
    const cbData = tamper.cbData ?? this.opts.cbData ?? Buffer.alloc(0);
    const withoutProof = `c=${Buffer.concat([Buffer.from(this.gs2Header), cbData]).toString('base64')},r=${tamper.nonce ?? nonce}`;
    this.authMessage = `${this.clientFirstBare},${sf},${withoutProof}`;
    const clientKey = this.hmac(this.saltedPassword, 'Client Key');
    const storedKey = createHash(nodeHash(this.hash)).update(clientKey).digest();
    const signature = this.hmac(storedKey, this.authMessage);
    const proof = Buffer.from(clientKey.map((b, i) => b ^ signature[i]!));
    return Buffer.from(`${withoutProof},p=${proof.toString('base64')}`);
  }

  expectedServerFinal(): string {
    const serverKey = this.hmac(this.saltedPassword, 'Server Key');
    return `v=${this.hmac(serverKey, this.authMessage).toString('base64')}`;
  }

  private hmac(key: Buffer, data: string): Buffer {
    return createHmac(nodeHash(this.hash), key).update(data).digest();
  }
}

// Verifiers are computed once: key derivation is the slow part.
const ALICE: ScramVerifier[] = [makeVerifier('pencil', 'SHA-1', 4096), makeVerifier('pencil', 'SHA-256', 4096)];
const ONLY_SHA1: ScramVerifier[] = [makeVerifier('sha1only', 'SHA-1', 4096)];
const SOFT_HYPHEN: ScramVerifier[] = [makeVerifier('I\u00ADX', 'SHA-256', 4096)];

const CB_EXPORTER = Buffer.from('0123456789abcdef0123456789abcdef', 'hex');
const CB_ENDPOINT = Buffer.from('fedcba9876543210fedcba9876543210', 'hex');
const channelBinding: ChannelBinding = {
  types: ['tls-exporter', 'tls-server-end-point'],
  data: (type) => (type === 'tls-exporter' ? CB_EXPORTER : type === 'tls-server-end-point' ? CB_ENDPOINT : null),
};

function ctx(overrides: Partial<SaslContext> & { accounts?: Record<string, ScramVerifier[]> } = {}): SaslContext {
  const accounts = overrides.accounts ?? { alice: ALICE, sha1: ONLY_SHA1, soft: SOFT_HYPHEN };
  return {
    secure: true,
    channelBinding: null,
    domain: 'example.org',
    iterationsForUnknownUser: 4096,
    lookup: async (username) => (Object.hasOwn(accounts, username) ? { verifiers: accounts[username]! } : null),
    ...overrides,
  };
}

function challenge(step: SaslStep): Buffer {
  assert.equal(step.kind, 'challenge', JSON.stringify(step));
  return (step as Extract<SaslStep, { kind: 'challenge' }>).data;
}

function failure(step: SaslStep): Extract<SaslStep, { kind: 'failure' }> {
  assert.equal(step.kind, 'failure', JSON.stringify(step));
  return step as Extract<SaslStep, { kind: 'failure' }>;
}

/** Runs a whole SCRAM exchange with an initial response; returns the final step. */
async function scram(mech: string, c: SaslContext, client: ScramClient, tamper: { nonce?: string; cbData?: Buffer } = {}): Promise<{ first: Buffer; last: SaslStep; session: SaslSession }> {
  const session = new SaslSession(mech, c);
  const first = challenge(await session.start(client.first()));
  return { first, last: await session.respond(client.final(first, tamper)), session };
}

async function expectSuccess(mech: string, c: SaslContext, client: ScramClient, username: string): Promise<void> {
  const { last } = await scram(mech, c, client);
  assert.equal(last.kind, 'success', JSON.stringify(last));
  const s = last as Extract<SaslStep, { kind: 'success' }>;
  assert.equal(s.username, username);
  assert.equal(s.data?.toString(), client.expectedServerFinal());
}

/** Sends a client-first, then `final`; returns the failure. */
async function finalFails(final: (serverFirst: string) => string, mech = 'SCRAM-SHA-1'): Promise<Extract<SaslStep, { kind: 'failure' }>> {
  const session = new SaslSession(mech, ctx());
  const sf = challenge(await session.start(Buffer.from('n,,n=alice,r=abcdefgh'))).toString();
  return failure(await session.respond(Buffer.from(final(sf))));
}

async function firstFails(first: string | Buffer, mech = 'SCRAM-SHA-256', c = ctx()): Promise<Extract<SaslStep, { kind: 'failure' }>> {
  const session = new SaslSession(mech, c);
  return failure(await session.start(typeof first === 'string' ? Buffer.from(first) : first));
}

const plain = (authzid: string, authcid: string, password: string): Buffer => Buffer.from(`${authzid}\0${authcid}\0${password}`);

// ---------------------------------------------------------------------------------------------

test('availableMechanisms: -PLUS only with channel binding, PLAIN only over TLS when allowed', () => {
  assert.deepEqual(availableMechanisms({ secure: true, channelBindingTypes: ['tls-exporter'], allowPlain: true, hashes: ['SHA-1', 'SHA-256'] }), [
    'SCRAM-SHA-256-PLUS',
    'SCRAM-SHA-1-PLUS',
    'SCRAM-SHA-256',
    'SCRAM-SHA-1',
    'PLAIN',
  ]);
  assert.deepEqual(availableMechanisms({ secure: true, channelBindingTypes: [], allowPlain: false, hashes: ['SHA-256'] }), ['SCRAM-SHA-256']);
  assert.deepEqual(availableMechanisms({ secure: false, channelBindingTypes: ['tls-exporter'], allowPlain: true, hashes: ['SHA-1', 'SHA-256'] }), [
    'SCRAM-SHA-256',
    'SCRAM-SHA-1',
  ]);
  assert.deepEqual(availableMechanisms({ secure: true, channelBindingTypes: ['tls-server-end-point'], allowPlain: true, hashes: [] }), ['PLAIN']);
});

test('RFC 5802 section 5 example: exact server-first and server-final (SCRAM-SHA-1)', async () => {
  const verifier = makeVerifier('pencil', 'SHA-1', 4096, Buffer.from('QSXCR+Q6sek8bf92', 'base64'));
  const session = new SaslSession('SCRAM-SHA-1', ctx({ accounts: { user: [verifier] } }), { nonce: () => '3rfcNHYJY1ZVvWVs7j' });
  const first = await session.start(Buffer.from('n,,n=user,r=fyko+d2lbbFgONRv9qkxdawL'));
  assert.equal(challenge(first).toString(), 'r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,s=QSXCR+Q6sek8bf92,i=4096');
  const last = await session.respond(Buffer.from('c=biws,r=fyko+d2lbbFgONRv9qkxdawL3rfcNHYJY1ZVvWVs7j,p=v0X8v3Bz2T0CJGbJQyF0X+HI4Ts='));
  assert.equal(last.kind, 'success');
  assert.equal((last as { username: string }).username, 'user');
  assert.equal((last as { data: Buffer }).data.toString(), 'v=rmF9pqV8S7suAoZWja4dJRkFsKQ=');
  assert.equal(session.done, true);
});

test('RFC 7677 section 3 example: exact server-first and server-final (SCRAM-SHA-256)', async () => {
  const verifier = makeVerifier('pencil', 'SHA-256', 4096, Buffer.from('W22ZaJ0SNY7soEsUEjb6gQ==', 'base64'));
  const session = new SaslSession('SCRAM-SHA-256', ctx({ accounts: { user: [verifier] } }), { nonce: () => '%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0' });
  // No initial response: the server sends an empty challenge first.
  assert.equal(challenge(await session.start(null)).length, 0);
  const first = await session.respond(Buffer.from('n,,n=user,r=rOprNGfwEbeRWgbNEkqO'));
  assert.equal(challenge(first).toString(), 'r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096');
  const last = await session.respond(
    Buffer.from('c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ='),
  );
  assert.equal(last.kind, 'success');
  assert.equal((last as { data: Buffer }).data.toString(), 'v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=');
});

test('SCRAM-SHA-1 and SCRAM-SHA-256 full exchanges succeed', async () => {
  await expectSuccess('SCRAM-SHA-1', ctx(), new ScramClient('SHA-1', 'alice', 'pencil'), 'alice');
  await expectSuccess('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'pencil'), 'alice');
  await expectSuccess('SCRAM-SHA-1', ctx(), new ScramClient('SHA-1', 'sha1', 'sha1only'), 'sha1');
});

test('SCRAM: the server nonce adds at least 18 random bytes and differs per session', async () => {
  const nonces = new Set<string>();
  for (let i = 0; i < 3; i++) {
    const session = new SaslSession('SCRAM-SHA-256', ctx());
    const sf = challenge(await session.start(Buffer.from('n,,n=alice,r=clientnonce'))).toString();
    const serverPart = /^r=clientnonce([^,]+),/.exec(sf)![1]!;
    assert.ok(Buffer.from(serverPart, 'base64').length >= 18);
    nonces.add(serverPart);
  }
  assert.equal(nonces.size, 3);
});

test('SCRAM: optional extensions in the client-first message are ignored', async () => {
  const session = new SaslSession('SCRAM-SHA-256', ctx());
  assert.equal((await session.start(Buffer.from('n,,n=alice,r=abc,x=whatever'))).kind, 'challenge');
});

test('SCRAM: wrong password -> not-authorized with the username for logging', async () => {
  for (const [mech, hash] of [['SCRAM-SHA-1', 'SHA-1'], ['SCRAM-SHA-256', 'SHA-256']] as const) {
    const { last, session } = await scram(mech, ctx(), new ScramClient(hash, 'alice', 'crayon'));
    assert.deepEqual(last, { kind: 'failure', condition: 'not-authorized', username: 'alice' });
    assert.equal(session.done, true);
  }
});

test('SCRAM: unknown user is indistinguishable from a wrong password', async () => {
  const shape = /^r=([\x21-\x2b\x2d-\x7e]+),s=([A-Za-z0-9+/=]+),i=(\d+)$/;
  const known = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'crayon'));
  const unknown = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'mallory', 'crayon'));
  const k = shape.exec(known.first.toString())!;
  const u = shape.exec(unknown.first.toString())!;
  assert.ok(k && u);
  assert.equal(k[1]!.length, u[1]!.length);
  assert.equal(Buffer.from(k[2]!, 'base64').length, Buffer.from(u[2]!, 'base64').length);
  assert.equal(u[3], '4096');
  const strip = (s: SaslStep): unknown => ({ ...s, username: undefined });
  assert.deepEqual(strip(unknown.last), strip(known.last));
  assert.deepEqual(unknown.last, { kind: 'failure', condition: 'not-authorized', username: 'mallory' });

  // The fake salt is stable for a username (a retry does not reveal it as fake) and differs between users.
  const again = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'mallory', 'x'));
  assert.equal(shape.exec(again.first.toString())![2], u[2]);
  const other = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'trudy', 'x'));
  assert.notEqual(shape.exec(other.first.toString())![2], u[2]);
});

test('SCRAM: unknown user gets the configured iteration count', async () => {
  const session = new SaslSession('SCRAM-SHA-1', ctx({ iterationsForUnknownUser: 10000 }));
  assert.match(challenge(await session.start(Buffer.from('n,,n=nobody,r=abc'))).toString(), /,i=10000$/);
});

test('SCRAM: an account without a verifier for the hash behaves like an unknown one', async () => {
  const { first, last } = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'sha1', 'sha1only'));
  assert.match(first.toString(), /,i=4096$/);
  assert.deepEqual(last, { kind: 'failure', condition: 'not-authorized', username: 'sha1' });
});

test('SCRAM-PLUS: matching channel binding succeeds for each supported type', async () => {
  const c = ctx({ channelBinding });
  await expectSuccess('SCRAM-SHA-256-PLUS', c, new ScramClient('SHA-256', 'alice', 'pencil', { gs2Header: 'p=tls-exporter,,', cbData: CB_EXPORTER }), 'alice');
  await expectSuccess('SCRAM-SHA-1-PLUS', c, new ScramClient('SHA-1', 'alice', 'pencil', { gs2Header: 'p=tls-server-end-point,,', cbData: CB_ENDPOINT }), 'alice');
});

test('SCRAM-PLUS: mismatching channel binding data -> not-authorized', async () => {
  const c = ctx({ channelBinding });
  const client = new ScramClient('SHA-256', 'alice', 'pencil', { gs2Header: 'p=tls-exporter,,', cbData: CB_EXPORTER });
  const { last } = await scram('SCRAM-SHA-256-PLUS', c, client, { cbData: CB_ENDPOINT });
  assert.equal(failure(last).condition, 'not-authorized');
  // Binding data of the right type from another connection fails too.
  const { last: last2 } = await scram('SCRAM-SHA-256-PLUS', c, new ScramClient('SHA-256', 'alice', 'pencil', { gs2Header: 'p=tls-exporter,,', cbData: randomBytes(32) }));
  assert.equal(failure(last2).condition, 'not-authorized');
});

test('SCRAM-PLUS: unsupported type, missing binding, or no channel binding on the connection', async () => {
  const c = ctx({ channelBinding });
  assert.equal((await firstFails('p=tls-unique,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', c)).condition, 'not-authorized');
  assert.equal((await firstFails('n,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', c)).condition, 'malformed-request');
  assert.equal((await firstFails('y,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', c)).condition, 'malformed-request');
  assert.equal((await firstFails('p=tls-exporter,,n=alice,r=abc', 'SCRAM-SHA-256', c)).condition, 'malformed-request');
  assert.equal((await firstFails('p=tls-exporter,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', ctx())).condition, 'invalid-mechanism');
  const noTls = ctx({ channelBinding, secure: false });
  assert.equal(failure(await new SaslSession('SCRAM-SHA-1-PLUS', noTls).start(null)).condition, 'invalid-mechanism');
});

test("SCRAM: 'y' flag fails when the server offers channel binding (downgrade), works otherwise", async () => {
  const downgrade = await firstFails('y,,n=alice,r=abc', 'SCRAM-SHA-256', ctx({ channelBinding }));
  assert.equal(downgrade.condition, 'not-authorized');
  assert.equal(downgrade.username, 'alice');
  await expectSuccess('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'pencil', { gs2Header: 'y,,' }), 'alice');
  // Channel binding object without any usable type: nothing -PLUS is offered.
  await expectSuccess('SCRAM-SHA-1', ctx({ channelBinding: { types: [], data: () => null } }), new ScramClient('SHA-1', 'alice', 'pencil', { gs2Header: 'y,,' }), 'alice');
  // auth.channelBindingDowngrade: allow — for clients that know none of the offered types.
  await expectSuccess('SCRAM-SHA-256', ctx({ channelBinding, allowChannelBindingDowngrade: true }), new ScramClient('SHA-256', 'alice', 'pencil', { gs2Header: 'y,,' }), 'alice');
});

test('SCRAM: the c= attribute must repeat the GS2 header', async () => {
  const client = new ScramClient('SHA-256', 'alice', 'pencil');
  const session = new SaslSession('SCRAM-SHA-256', ctx());
  const sf = challenge(await session.start(client.first()));
  // Client claims 'n' but sends c= for 'y': mismatch.
  const final = client.final(sf).toString().replace(/^c=biws/, 'c=eSws');
  assert.equal(failure(await session.respond(Buffer.from(final))).condition, 'not-authorized');
});

test('SCRAM: authzid must be empty or the user\'s bare JID', async () => {
  await expectSuccess('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'pencil', { authzid: 'alice@example.org' }), 'alice');
  await expectSuccess('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'pencil', { authzid: 'alice@EXAMPLE.org' }), 'alice');
  const bad = await firstFails('n,a=bob@example.org,n=alice,r=abc');
  assert.equal(bad.condition, 'invalid-authzid');
  assert.equal((await firstFails('n,a=alice@example.net,n=alice,r=abc')).condition, 'invalid-authzid');
  assert.equal((await firstFails('n,a=alice,n=alice,r=abc')).condition, 'invalid-authzid');
  assert.equal((await firstFails('n,x=alice,n=alice,r=abc')).condition, 'malformed-request');
});

test('SCRAM: usernames with escaped characters are unescaped', async () => {
  const c = ctx({ accounts: { 'a,b=c': ALICE } });
  await expectSuccess('SCRAM-SHA-256', c, new ScramClient('SHA-256', 'a,b=c', 'pencil'), 'a,b=c');
});

test('SCRAM: malformed client-first messages', async () => {
  const cases: [string, string | Buffer][] = [
    ['empty', Buffer.alloc(0)],
    ['no GS2 header', 'n=alice,r=abc'],
    ['bad flag', 'x,,n=alice,r=abc'],
    ['bad cb-name', 'p=tls exporter,,n=alice,r=abc'],
    ['missing nonce', 'n,,n=alice'],
    ['missing username', 'n,,r=abc'],
    ['empty username', 'n,,n=,r=abc'],
    ['bad order', 'n,,r=abc,n=alice'],
    ['bad saslname escape', 'n,,n=al=2Xice,r=abc'],
    ['empty nonce', 'n,,n=alice,r='],
    ['nonce with non-printable', 'n,,n=alice,r=a b'],
    ['m= extension', 'n,,m=foo,n=alice,r=abc'],
    ['bad extension', 'n,,n=alice,r=abc,extension'],
    ['NUL', 'n,,n=alice\0,r=abc'],
  ];
  for (const [name, msg] of cases) {
    assert.equal((await firstFails(msg)).condition, 'malformed-request', name);
  }
  // Also via an empty response after an empty challenge.
  const session = new SaslSession('SCRAM-SHA-1', ctx());
  challenge(await session.start(null));
  assert.equal(failure(await session.respond(Buffer.alloc(0))).condition, 'malformed-request');
});

test('SCRAM: malformed client-final messages', async () => {
  const nonce = (sf: string): string => /^r=([^,]+)/.exec(sf)![1]!;
  const proof = Buffer.alloc(20, 7).toString('base64');
  const cases: [string, (sf: string) => string][] = [
    ['empty', () => ''],
    ['missing proof', (sf) => `c=biws,r=${nonce(sf)}`],
    ['missing channel binding', (sf) => `r=${nonce(sf)},p=${proof}`],
    ['bad order', (sf) => `r=${nonce(sf)},c=biws,p=${proof}`],
    ['bad base64 proof', (sf) => `c=biws,r=${nonce(sf)},p=not*base64!`],
    ['unpadded base64 proof', (sf) => `c=biws,r=${nonce(sf)},p=${proof.replace(/=+$/, '')}`],
    ['short proof', (sf) => `c=biws,r=${nonce(sf)},p=AAAA`],
    ['bad base64 channel binding', (sf) => `c=bi#s,r=${nonce(sf)},p=${proof}`],
    ['bad extension', (sf) => `c=biws,r=${nonce(sf)},junk,p=${proof}`],
  ];
  for (const [name, final] of cases) {
    assert.equal((await finalFails(final)).condition, 'malformed-request', name);
  }
});

test('SCRAM: nonce mismatch in client-final -> not-authorized', async () => {
  const { last } = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'pencil'), { nonce: 'forged' });
  assert.equal(failure(last).condition, 'not-authorized');
});

test('invalid UTF-8 -> incorrect-encoding', async () => {
  assert.equal((await firstFails(Buffer.from([0x6e, 0x2c, 0x2c, 0x6e, 0x3d, 0xff, 0x2c, 0x72, 0x3d, 0x61]))).condition, 'incorrect-encoding');
  assert.equal((await finalFails(() => '\udc00')).condition, 'malformed-request'); // lone surrogate encodes as U+FFFD: valid UTF-8
  const session = new SaslSession('SCRAM-SHA-1', ctx());
  challenge(await session.start(Buffer.from('n,,n=alice,r=abc')));
  assert.equal(failure(await session.respond(Buffer.from([0xc3, 0x28]))).condition, 'incorrect-encoding');
  const p = new SaslSession('PLAIN', ctx());
  assert.equal(failure(await p.start(Buffer.from([0, 0x61, 0, 0xe2, 0x82]))).condition, 'incorrect-encoding');
});

test('unknown mechanisms -> invalid-mechanism', async () => {
  for (const mech of ['DIGEST-MD5', 'scram-sha-1', 'SCRAM-SHA-512', 'toString', '']) {
    assert.equal(failure(await new SaslSession(mech, ctx()).start(null)).condition, 'invalid-mechanism', mech);
  }
});

test('responses after success or failure, and before start, fail', async () => {
  const ok = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'pencil'));
  assert.equal(ok.last.kind, 'success');
  assert.equal(failure(await ok.session.respond(Buffer.from('x'))).condition, 'malformed-request');
  const bad = await scram('SCRAM-SHA-256', ctx(), new ScramClient('SHA-256', 'alice', 'nope'));
  assert.equal(failure(await bad.session.respond(Buffer.from('x'))).kind, 'failure');
  assert.equal(failure(await bad.session.start(null)).kind, 'failure');
  const fresh = new SaslSession('SCRAM-SHA-1', ctx());
  assert.equal(failure(await fresh.respond(Buffer.from('n,,n=alice,r=abc'))).condition, 'malformed-request');
  assert.equal(failure(await fresh.start(Buffer.from('n,,n=alice,r=abc'))).kind, 'failure');
});

test('abort() ends the exchange', async () => {
  const session = new SaslSession('SCRAM-SHA-1', ctx());
  challenge(await session.start(Buffer.from('n,,n=alice,r=abc')));
  assert.deepEqual(session.abort(), { kind: 'failure', condition: 'aborted', username: 'alice' });
  assert.equal(session.done, true);
  assert.equal((await session.respond(Buffer.from('c=biws'))).kind, 'failure');
});

test('a failing account lookup -> temporary-auth-failure without details', async () => {
  const c = ctx({
    lookup: async () => {
      throw new Error('database is down: password=hunter2');
    },
  });
  const scramFail = failure(await new SaslSession('SCRAM-SHA-256', c).start(Buffer.from('n,,n=alice,r=abc')));
  assert.equal(scramFail.condition, 'temporary-auth-failure');
  assert.equal(scramFail.text, undefined);
  const plainFail = failure(await new SaslSession('PLAIN', c).start(plain('', 'alice', 'pencil')));
  assert.equal(plainFail.condition, 'temporary-auth-failure');
  assert.ok(!JSON.stringify(plainFail).includes('hunter2'));
});

test('PLAIN: success, wrong password, unknown user', async () => {
  assert.deepEqual(await new SaslSession('PLAIN', ctx()).start(plain('', 'alice', 'pencil')), { kind: 'success', username: 'alice', data: null });
  assert.deepEqual(await new SaslSession('PLAIN', ctx()).start(plain('alice@example.org', 'alice', 'pencil')), {
    kind: 'success',
    username: 'alice',
    data: null,
  });
  assert.deepEqual(await new SaslSession('PLAIN', ctx()).start(plain('', 'alice', 'crayon')), {
    kind: 'failure',
    condition: 'not-authorized',
    username: 'alice',
  });
  assert.deepEqual(await new SaslSession('PLAIN', ctx()).start(plain('', 'mallory', 'pencil')), {
    kind: 'failure',
    condition: 'not-authorized',
    username: 'mallory',
  });
});

test('PLAIN: passwordVerified sees the password only after it matched, and its failure does not fail the login', async () => {
  const seen: [string, string, string[]][] = [];
  const c = ctx({ passwordVerified: async (u, p, vs) => void seen.push([u, p, vs.map((v) => v.hash)]) });
  assert.equal((await new SaslSession('PLAIN', c).start(plain('', 'sha1', 'sha1only'))).kind, 'success');
  assert.deepEqual(seen, [['sha1', 'sha1only', ['SHA-1']]]);
  assert.equal((await new SaslSession('PLAIN', c).start(plain('', 'sha1', 'wrong'))).kind, 'failure');
  assert.equal((await new SaslSession('PLAIN', c).start(plain('', 'nobody', 'sha1only'))).kind, 'failure');
  assert.equal(seen.length, 1, 'not called for a wrong password or an unknown account');
  const broken = ctx({ passwordVerified: () => Promise.reject(new Error('database down')) });
  assert.deepEqual(await new SaslSession('PLAIN', broken).start(plain('', 'sha1', 'sha1only')), { kind: 'success', username: 'sha1', data: null });
});

test('PLAIN: uses the SHA-1 verifier when no SHA-256 one exists; SASLprep on the password', async () => {
  assert.equal((await new SaslSession('PLAIN', ctx()).start(plain('', 'sha1', 'sha1only'))).kind, 'success');
  assert.equal((await new SaslSession('PLAIN', ctx()).start(plain('', 'soft', 'IX'))).kind, 'success');
  assert.equal((await new SaslSession('PLAIN', ctx()).start(plain('', 'soft', '\u2168'))).kind, 'success');
  assert.equal((await new SaslSession('PLAIN', ctx()).start(plain('', 'soft', 'I-X'))).kind, 'failure');
});

test('PLAIN: with an empty challenge first', async () => {
  const session = new SaslSession('PLAIN', ctx());
  assert.equal(challenge(await session.start(null)).length, 0);
  assert.equal((await session.respond(plain('', 'alice', 'pencil'))).kind, 'success');
});

test('PLAIN: requires TLS', async () => {
  const session = new SaslSession('PLAIN', ctx({ secure: false }));
  assert.deepEqual(await session.start(plain('', 'alice', 'pencil')), { kind: 'failure', condition: 'encryption-required' });
  assert.equal(failure(await new SaslSession('PLAIN', ctx({ secure: false })).start(null)).condition, 'encryption-required');
});

test('PLAIN: malformed messages and bad authzid', async () => {
  for (const msg of [Buffer.alloc(0), Buffer.from('alice\0pencil'), Buffer.from('\0\0pencil'), Buffer.from('\0alice\0'), Buffer.from('\0alice\0pen\0cil')]) {
    assert.equal(failure(await new SaslSession('PLAIN', ctx()).start(msg)).condition, 'malformed-request', JSON.stringify(msg.toString()));
  }
  assert.equal(failure(await new SaslSession('PLAIN', ctx()).start(plain('bob@example.org', 'alice', 'pencil'))).condition, 'invalid-authzid');
});

test('no secret appears in any step', async () => {
  const steps: SaslStep[] = [];
  for (const password of ['pencil', 'crayon-secret']) {
    const client = new ScramClient('SHA-256', 'alice', password);
    const { first, last } = await scram('SCRAM-SHA-256', ctx(), client);
    steps.push({ kind: 'challenge', data: first }, last);
    steps.push(await new SaslSession('PLAIN', ctx()).start(plain('', 'alice', password)));
    steps.push(await new SaslSession('PLAIN', ctx()).start(plain('', 'nobody', password)));
  }
  const text = JSON.stringify(steps.map((s) => ({ ...s, data: 'data' in s && s.data ? s.data.toString() : null })));
  assert.ok(!text.includes('pencil'));
  assert.ok(!text.includes('crayon-secret'));
});

// ---- channel binding: tls-unique (slixmpp and other clients on Python's ssl module) ----------

/** Connects Python's ssl module to a Node TLS server; returns what each side takes as tls-unique. */
async function pythonTlsUnique(maxVersion: 'TLSv1.2' | 'TLSv1.3', resume = false): Promise<{ python: string; server: string; protocol: string; types: string[] }> {
  const ca = createTestCa();
  const files = ca.selfSigned('localhost');
  const seen: { unique: string; types: string[]; protocol: string }[] = [];
  const server = createTlsServer({ key: readFileSync(files.key), cert: readFileSync(files.cert), maxVersion }, (sock) => {
    const binding = tlsChannelBinding(sock);
    seen.push({ unique: binding.data('tls-unique')?.toString('hex') ?? '', types: binding.types, protocol: sock.getProtocol() ?? '' });
    sock.on('data', () => sock.end('bye'));
    sock.on('error', () => {});
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  // With `resume`, a second connection resumes the first one's session (an abbreviated handshake).
  const py = [
    'import ssl, socket',
    'c = ssl.create_default_context(); c.check_hostname = False; c.verify_mode = ssl.CERT_NONE',
    `s = c.wrap_socket(socket.create_connection(('127.0.0.1', ${port})))`,
    's.sendall(b"x"); s.recv(10)',
    resume ? `s2 = c.wrap_socket(socket.create_connection(('127.0.0.1', ${port})), session=s.session); assert s2.session_reused; s2.sendall(b"x"); s2.recv(10); s = s2` : '',
    'print(s.get_channel_binding("tls-unique").hex())',
  ].join('\n');
  try {
    const { stdout } = await execFileAsync('/usr/bin/python3', ['-c', py]);
    const last = seen.at(-1)!;
    return { python: stdout.trim(), server: last.unique, protocol: last.protocol, types: last.types };
  } finally {
    server.close();
    ca.remove();
  }
}

test("tls-unique: the server's binding data equals what Python's ssl computes, on TLS 1.3, TLS 1.2 and a resumed TLS 1.2 session", async () => {
  const v13 = await pythonTlsUnique('TLSv1.3');
  assert.equal(v13.protocol, 'TLSv1.3');
  assert.match(v13.python, /^[0-9a-f]{24,}$/);
  assert.equal(v13.server, v13.python);
  assert.deepEqual(v13.types, ['tls-exporter', 'tls-server-end-point', 'tls-unique']);
  const v12 = await pythonTlsUnique('TLSv1.2');
  assert.equal(v12.protocol, 'TLSv1.2');
  assert.equal(v12.server, v12.python);
  assert.deepEqual(v12.types, ['tls-server-end-point', 'tls-unique']);
  const resumed = await pythonTlsUnique('TLSv1.2', true);
  assert.equal(resumed.server, resumed.python);
});

test('SCRAM-PLUS over a real stream: tls-unique, tls-exporter and tls-server-end-point all succeed; XEP-0440 lists all three', async () => {
  const ts = await startTestServer();
  try {
    await ts.server.ctx.storage.accounts.create('uniq', 'localhost', [makeVerifier('pw-uniq', 'SHA-1', 4096), makeVerifier('pw-uniq', 'SHA-256', 4096)], new Date());
    const client = await ts.client();
    const cbTypes = client.streamFeatures?.getChild('sasl-channel-binding', 'urn:xmpp:sasl-cb:0')?.getChildren('channel-binding').map((c) => c.attrs.type);
    assert.deepEqual(cbTypes, ['tls-exporter', 'tls-server-end-point', 'tls-unique']);
    assert.ok(client.mechanisms().includes('SCRAM-SHA-256-PLUS'));
    const sock = client.tlsSocket!;
    const cert = sock.getPeerCertificate();
    const bindings: Record<string, Buffer> = {
      // RFC 5929: the first Finished of the latest handshake, the client's in a full handshake.
      'tls-unique': sock.getFinished()!,
      'tls-exporter': sock.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)),
      'tls-server-end-point': createHash('sha256').update(cert.raw).digest(),
    };
    for (const [type, cbData] of Object.entries(bindings)) {
      for (const [mech, hash] of [['SCRAM-SHA-256-PLUS', 'SHA-256'], ['SCRAM-SHA-1-PLUS', 'SHA-1']] as const) {
        const c = await ts.client();
        const scramClient = new ScramClient(hash, 'uniq', 'pw-uniq', { gs2Header: `p=${type},,`, cbData: type === 'tls-unique' ? c.tlsSocket!.getFinished()! : type === 'tls-exporter' ? c.tlsSocket!.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) : cbData });
        c.writeRaw(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='${mech}'>${scramClient.first().toString('base64')}</auth>`);
        const ch = await c.expect((el) => el.name === 'challenge' || el.name === 'failure');
        assert.equal(ch.name, 'challenge', `${mech} ${type}: ${ch}`);
        c.writeRaw(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${scramClient.final(Buffer.from(ch.text(), 'base64')).toString('base64')}</response>`);
        const outcome = await c.expect((el) => el.name === 'success' || el.name === 'failure');
        assert.equal(outcome.name, 'success', `${mech} ${type}: ${outcome}`);
        assert.equal(Buffer.from(outcome.text(), 'base64').toString(), scramClient.expectedServerFinal());
        await c.close();
      }
    }
    // Another connection's tls-unique does not bind this one.
    const c = await ts.client();
    const stolen = new ScramClient('SHA-256', 'uniq', 'pw-uniq', { gs2Header: 'p=tls-unique,,', cbData: bindings['tls-unique'] });
    c.writeRaw(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256-PLUS'>${stolen.first().toString('base64')}</auth>`);
    const ch = await c.expect('challenge');
    c.writeRaw(`<response xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>${stolen.final(Buffer.from(ch.text(), 'base64')).toString('base64')}</response>`);
    const outcome = await c.expect((el) => el.name === 'success' || el.name === 'failure');
    assert.equal(outcome.name, 'failure');
    await client.close();
  } finally {
    await ts.stop();
  }
});

test('channel-binding negotiation failures are marked as such (they test no credentials); a binding mismatch is not', async () => {
  const c = ctx({ channelBinding });
  const cases: [string, string, SaslContext][] = [
    ['p=tls-bogus,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', c],
    ['n,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', c],
    ['p=tls-exporter,,n=alice,r=abc', 'SCRAM-SHA-256', c],
    ['y,,n=alice,r=abc', 'SCRAM-SHA-256', c],
    ['p=tls-exporter,,n=alice,r=abc', 'SCRAM-SHA-256-PLUS', ctx()],
  ];
  for (const [first, mech, context] of cases) assert.equal((await firstFails(first, mech, context)).reason, 'channel-binding', `${mech} ${first}`);
  const { last } = await scram('SCRAM-SHA-256-PLUS', c, new ScramClient('SHA-256', 'alice', 'pencil', { gs2Header: 'p=tls-exporter,,', cbData: randomBytes(32) }));
  assert.equal(failure(last).condition, 'not-authorized');
  assert.equal(failure(last).reason, undefined);
  const wrong = await scram('SCRAM-SHA-256', c, new ScramClient('SHA-256', 'alice', 'crayon'));
  assert.equal(failure(wrong.last).reason, undefined);
});

// ---- stored iteration counts out of bounds (imports) ------------------------------------------

test('a stored verifier with an iteration count outside 4096..10,000,000 is refused at login without computing it', async () => {
  const withIterations = (n: number): ScramVerifier[] => ALICE.map((v) => ({ ...v, iterations: n }));
  for (const n of [10_000_001, 2 ** 40, 1, 4095]) {
    const c = ctx({ accounts: { alice: withIterations(n) } });
    const viaPlain = failure(await new SaslSession('PLAIN', c).start(plain('', 'alice', 'pencil')));
    assert.equal(viaPlain.condition, 'temporary-auth-failure', `PLAIN, i=${n}`);
    assert.equal(viaPlain.reason, 'unusable-verifier');
    assert.equal(viaPlain.username, 'alice');
    const viaScram = failure(await new SaslSession('SCRAM-SHA-256', c).start(Buffer.from('n,,n=alice,r=abc')));
    assert.equal(viaScram.condition, 'temporary-auth-failure', `SCRAM, i=${n}`);
    assert.equal(viaScram.reason, 'unusable-verifier');
    // What the admin console and password changes call: false, and no key derivation.
    assert.equal(await verifyPlainAsync('pencil', withIterations(n)[1]!), false);
    assert.equal(verifyPlain('pencil', withIterations(n)[1]!), false);
  }
  // The bounds themselves are usable.
  assert.equal((await new SaslSession('PLAIN', ctx()).start(plain('', 'alice', 'pencil'))).kind, 'success');
});

test('over a real stream: PLAIN against a verifier with 20,000,000 iterations is refused and logged without secrets', async () => {
  const ts = await startTestServer();
  try {
    const v = makeVerifier('Pa55-imported', 'SHA-256', 4096);
    await ts.server.ctx.storage.accounts.create('imported', 'localhost', [{ ...v, iterations: 20_000_000 }], new Date());
    const c = await ts.client();
    const outcome = await c.authenticate('imported', 'Pa55-imported', 'PLAIN');
    assert.equal(outcome.name, 'failure');
    assert.ok(outcome.getChild('temporary-auth-failure'), String(outcome));
    const line = ts.logLines.find((l) => l.includes('iteration count outside'));
    assert.ok(line, 'the refusal is logged');
    assert.match(line, /imported@localhost/);
    assert.ok(!ts.logLines.join('\n').includes('Pa55-imported'));
  } finally {
    await ts.stop();
  }
});

// ---- the fake salt of unknown accounts survives a restart (P17) -------------------------------

test('P17 an unknown account gets the same fake salt after a server restart, and another installation a different one', async () => {
  const dataDir = mkdtempSync(join(tmpdir(), 'gatehouse-salt-'));
  const otherDir = mkdtempSync(join(tmpdir(), 'gatehouse-salt-'));
  const saltOf = async (dir: string, user: string): Promise<string> => {
    const ts = await startTestServer({ config: { dataDir: dir, storage: { type: 'sqlite', path: join(dir, 'db.sqlite') } } });
    try {
      const c = await ts.client();
      c.writeRaw(`<auth xmlns='urn:ietf:params:xml:ns:xmpp-sasl' mechanism='SCRAM-SHA-256'>${Buffer.from(`n,,n=${user},r=abcdef`).toString('base64')}</auth>`);
      const ch = await c.expect('challenge');
      return /,s=([^,]+),/.exec(Buffer.from(ch.text(), 'base64').toString())![1]!;
    } finally {
      await ts.stop();
    }
  };
  try {
    const before = await saltOf(dataDir, 'nosuchuser');
    const after = await saltOf(dataDir, 'nosuchuser');
    assert.equal(after, before);
    assert.notEqual(await saltOf(otherDir, 'nosuchuser'), before);
    const secretFile = join(dataDir, SERVER_SECRET_FILE);
    assert.equal(statSync(secretFile).mode & 0o777, 0o600);
  } finally {
    rmSync(dataDir, { recursive: true, force: true });
    rmSync(otherDir, { recursive: true, force: true });
  }
});
