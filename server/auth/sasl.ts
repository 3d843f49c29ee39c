/**
 * Server-side SASL negotiation for XMPP (RFC 6120 section 6): SCRAM-SHA-1(-PLUS), SCRAM-SHA-256(-PLUS)
 * (RFC 5802, RFC 7677, channel bindings per RFC 5929 / RFC 9266) and PLAIN (RFC 4616).
 *
 * One SaslSession per <auth/>. The caller decodes base64 and maps steps to <challenge/>, <success/>
 * and <failure/>; it should only accept mechanisms it advertised (availableMechanisms()).
 *
 * Unknown accounts (and accounts without a verifier for the requested hash) get a plausible fake
 * SCRAM challenge, with a salt derived deterministically from the username and the installation's
 * secret (server-secret.ts; it survives restarts, as real salts do), and then the same
 * not-authorized failure as a wrong password (no account enumeration, P17).
 *
 * Failures that test no credentials are marked with a `reason` so that the caller does not count
 * them as failed logins: a channel-binding negotiation that did not work out (the client named a
 * type this connection does not offer, or mixed up -PLUS and flags). A stored verifier with an
 * iteration count outside MIN_ITERATIONS..MAX_ITERATIONS is refused (reason 'unusable-verifier')
 * instead of being computed.
 *
 * A SCRAM mechanism for a hash the account has no verifier for (an account imported with
 * SCRAM-SHA-1 verifiers only, asked for SCRAM-SHA-256) goes the same way as an unknown account: a
 * fake challenge, then not-authorized, indistinguishable from a wrong password. After a PLAIN login
 * the context may add the missing verifiers (`passwordVerified`).
 *
 * Failure texts are fixed strings: they never contain a password, proof or key.
 */
import { randomBytes, timingSafeEqual } from 'node:crypto';
import type { ScramVerifier } from '../../storage/types.js';
import { randomBase64 } from '../../shared/random.js';
import {
  DEFAULT_SALT_BYTES,
  MIN_ITERATIONS,
  h,
  hashLength,
  hmac,
  iterationsUsable,
  unescapeSaslName,
  verifyPlainAsync,
  xor,
  type ScramHash,
} from './scram.js';

export type Mechanism = 'SCRAM-SHA-1' | 'SCRAM-SHA-1-PLUS' | 'SCRAM-SHA-256' | 'SCRAM-SHA-256-PLUS' | 'PLAIN';

export interface ChannelBinding {
  /** types this TLS connection supports, e.g. ['tls-exporter','tls-server-end-point'] */
  types: string[];
  data(type: string): Buffer | null;
}

export interface SaslContext {
  /** connection is TLS */
  secure: boolean;
  /**
   * Channel binding of this connection, or null. When non-null with at least one type (and
   * `secure`), the server is taken to advertise -PLUS mechanisms: a client 'y' flag then fails
   * unless `allowChannelBindingDowngrade`.
   */
  channelBinding: ChannelBinding | null;
  /** Accept the 'y' flag although -PLUS was offered (clients that know none of the offered types). */
  allowChannelBindingDowngrade?: boolean;
  /** The host being authenticated against; a non-empty authzid must equal `${username}@${domain}`. */
  domain: string;
  /** Look up verifiers for a (raw, unnormalised) username; null if no such account. */
  lookup(username: string): Promise<{ verifiers: ScramVerifier[] } | null>;
  /** to fake a plausible challenge for unknown users (no account enumeration, P17) */
  iterationsForUnknownUser: number;
  /**
   * Key of the fake salts of unknown users: the installation's (fakeSaltKey() in server-secret.ts),
   * so that they do not change at a restart. Default: a per-process key (tests).
   */
  fakeSaltKey?: Buffer;
  /**
   * Called after a PLAIN password matched the account's `verifiers`, before the success: the one
   * moment the server sees the password, to add verifiers for hashes the account lacks. Its errors
   * are swallowed (the login succeeds all the same); it must not keep or log the password.
   */
  passwordVerified?(username: string, password: string, verifiers: readonly ScramVerifier[]): Promise<void>;
}

export type FailureCondition =
  | 'not-authorized'
  | 'malformed-request'
  | 'invalid-mechanism'
  | 'encryption-required'
  | 'mechanism-too-weak'
  | 'invalid-authzid'
  | 'aborted'
  | 'incorrect-encoding'
  | 'temporary-auth-failure';

export type SaslStep =
  | { kind: 'challenge'; data: Buffer }
  /** data: additional data with success (SCRAM server-final) or null */
  | { kind: 'success'; username: string; data: Buffer | null }
  /**
   * username: the authcid, when known, for the caller's logs only (never sent to the client).
   * reason: 'channel-binding' for a channel-binding negotiation failure (no credentials were
   * tested: not a failed login); 'unusable-verifier' for a stored verifier refused unused.
   */
  | { kind: 'failure'; condition: FailureCondition; text?: string; username?: string; reason?: FailureReason };

export type FailureReason = 'channel-binding' | 'unusable-verifier';

export interface SaslSessionOptions {
  /**
   * Generates the server's part of the SCRAM nonce (for tests). Must return printable ASCII
   * without ','. Default: 24 random bytes, base64.
   */
  nonce?: () => string;
}

type MechanismInfo = { kind: 'scram'; hash: ScramHash; plus: boolean } | { kind: 'plain' };

const MECHANISMS: Record<Mechanism, MechanismInfo> = {
  'SCRAM-SHA-256-PLUS': { kind: 'scram', hash: 'SHA-256', plus: true },
  'SCRAM-SHA-1-PLUS': { kind: 'scram', hash: 'SHA-1', plus: true },
  'SCRAM-SHA-256': { kind: 'scram', hash: 'SHA-256', plus: false },
  'SCRAM-SHA-1': { kind: 'scram', hash: 'SHA-1', plus: false },
  PLAIN: { kind: 'plain' },
};

/** Mechanisms to advertise, strongest first. */
export function availableMechanisms(opts: {
  secure: boolean;
  channelBindingTypes: string[];
  allowPlain: boolean;
  hashes: ('SHA-1' | 'SHA-256')[];
}): Mechanism[] {
  const plus = opts.secure && opts.channelBindingTypes.length > 0;
  const out: Mechanism[] = [];
  for (const [name, info] of Object.entries(MECHANISMS) as [Mechanism, MechanismInfo][]) {
    if (info.kind === 'plain') {
      if (opts.secure && opts.allowPlain) out.push(name);
    } else if (opts.hashes.includes(info.hash) && (!info.plus || plus)) {
      out.push(name);
    }
  }
  return out;
}

/** Fake-salt key when the context names none (tests): per process. */
const PROCESS_FAKE_SALT_KEY = randomBytes(32);

function fakeSalt(key: Buffer, hash: ScramHash, username: string): Buffer {
  return hmac('SHA-256', key, `${hash}\0${username}`).subarray(0, DEFAULT_SALT_BYTES);
}

class StepError extends Error {
  constructor(
    readonly condition: FailureCondition,
    readonly text?: string,
    readonly reason?: FailureReason,
  ) {
    super(condition);
  }
}

const malformed = (text: string): StepError => new StepError('malformed-request', text);
const cbFailure = (condition: FailureCondition, text: string): StepError => new StepError(condition, text, 'channel-binding');
const unusableVerifier = (): StepError => new StepError('temporary-auth-failure', undefined, 'unusable-verifier');

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

function decodeUtf8(data: Buffer): string {
  try {
    return utf8.decode(data);
  } catch {
    throw new StepError('incorrect-encoding', 'invalid UTF-8');
  }
}

/** printable = %x21-2B / %x2D-7E (RFC 5802): a nonce. */
const PRINTABLE = /^[\x21-\x2B\x2D-\x7E]+$/;
const BASE64 = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;
/** attr-val for extensions: ALPHA "=" 1*value-char. */
const EXTENSION = /^[A-Za-z]=[^,\0]+$/;
const CB_NAME = /^[A-Za-z0-9.-]+$/;

function base64Attr(attr: string | undefined, name: string, what: string): Buffer {
  if (attr === undefined || !attr.startsWith(`${name}=`)) throw malformed(`missing ${what}`);
  const value = attr.slice(2);
  if (value.length === 0 || !BASE64.test(value)) throw malformed(`invalid ${what}`);
  return Buffer.from(value, 'base64');
}

interface ClientFirst {
  /** gs2-header exactly as sent, including the trailing ','. */
  gs2Header: string;
  cbFlag: 'n' | 'y' | 'p';
  cbType: string | null;
  authzid: string;
  username: string;
  clientNonce: string;
  /** client-first-message-bare exactly as sent. */
  bare: string;
}

function parseClientFirst(msg: string): ClientFirst {
  if (msg.length === 0) throw malformed('empty message');
  if (msg.includes('\0')) throw malformed('NUL in message');
  const c1 = msg.indexOf(',');
  const c2 = c1 < 0 ? -1 : msg.indexOf(',', c1 + 1);
  if (c2 < 0) throw malformed('missing GS2 header');
  const flag = msg.slice(0, c1);
  const az = msg.slice(c1 + 1, c2);
  let cbFlag: ClientFirst['cbFlag'];
  let cbType: string | null = null;
  if (flag === 'n' || flag === 'y') {
    cbFlag = flag;
  } else if (flag.startsWith('p=') && CB_NAME.test(flag.slice(2))) {
    cbFlag = 'p';
    cbType = flag.slice(2);
  } else {
    throw malformed('invalid channel binding flag');
  }
  let authzid = '';
  if (az !== '') {
    const value = az.startsWith('a=') ? unescapeSaslName(az.slice(2)) : null;
    if (!value) throw malformed('invalid authzid');
    authzid = value;
  }
  const bare = msg.slice(c2 + 1);
  const attrs = bare.split(',');
  if (attrs[0]!.startsWith('m=')) throw malformed('mandatory extensions are not supported');
  const username = attrs[0]!.startsWith('n=') ? unescapeSaslName(attrs[0]!.slice(2)) : null;
  if (!username) throw malformed('missing or invalid username');
  const nonceAttr = attrs[1];
  if (nonceAttr === undefined || !nonceAttr.startsWith('r=')) throw malformed('missing nonce');
  const clientNonce = nonceAttr.slice(2);
  if (!PRINTABLE.test(clientNonce)) throw malformed('invalid nonce');
  for (const ext of attrs.slice(2)) if (!EXTENSION.test(ext)) throw malformed('invalid attribute');
  return { gs2Header: msg.slice(0, c2 + 1), cbFlag, cbType, authzid, username, clientNonce, bare };
}

interface ClientFinal {
  channelBinding: Buffer;
  nonce: string;
  proof: Buffer;
  /** client-final-message-without-proof exactly as sent. */
  withoutProof: string;
}

function parseClientFinal(msg: string, hash: ScramHash): ClientFinal {
  if (msg.length === 0) throw malformed('empty message');
  if (msg.includes('\0')) throw malformed('NUL in message');
  const attrs = msg.split(',');
  const channelBinding = base64Attr(attrs[0], 'c', 'channel binding');
  const nonceAttr = attrs[1];
  if (nonceAttr === undefined || !nonceAttr.startsWith('r=')) throw malformed('missing nonce');
  const nonce = nonceAttr.slice(2);
  if (!PRINTABLE.test(nonce)) throw malformed('invalid nonce');
  if (attrs.length < 3) throw malformed('missing proof');
  const proof = base64Attr(attrs[attrs.length - 1], 'p', 'proof');
  if (proof.length !== hashLength(hash)) throw malformed('invalid proof');
  for (const ext of attrs.slice(2, -1)) if (!EXTENSION.test(ext) || ext.startsWith('p=')) throw malformed('invalid attribute');
  return { channelBinding, nonce, proof, withoutProof: msg.slice(0, msg.lastIndexOf(',')) };
}

interface ScramExchange {
  hash: ScramHash;
  username: string;
  gs2Header: string;
  cbData: Buffer | null;
  clientFirstBare: string;
  serverFirst: string;
  nonce: string;
  /** null for an unknown account (or one without a verifier for this hash). */
  verifier: ScramVerifier | null;
}

type State = 'initial' | 'await-initial' | 'await-final' | 'busy' | 'done';

function defaultNonce(): string {
  return randomBase64(24);
}

export class SaslSession {
  private state: State = 'initial';
  private readonly info: MechanismInfo | null;
  private readonly nonceGen: () => string;
  private scram: ScramExchange | null = null;
  /** The authcid once parsed, for failure reports. */
  private authcid: string | undefined;

  constructor(
    readonly mechanism: string,
    private readonly ctx: SaslContext,
    options: SaslSessionOptions = {},
  ) {
    this.info = Object.hasOwn(MECHANISMS, mechanism) ? MECHANISMS[mechanism as Mechanism] : null;
    this.nonceGen = options.nonce ?? defaultNonce;
  }

  /** True once the exchange has ended in success or failure. */
  get done(): boolean {
    return this.state === 'done';
  }

  /** initialResponse null = none sent; Buffer.alloc(0) = '=' (empty). */
  async start(initialResponse: Buffer | null): Promise<SaslStep> {
    if (this.state !== 'initial') return this.fail('malformed-request', 'exchange already started');
    const info = this.info;
    if (!info) return this.fail('invalid-mechanism');
    if (info.kind === 'plain' && !this.ctx.secure) return this.fail('encryption-required');
    if (info.kind === 'scram' && info.plus && !this.channelBindingOffered()) return this.fail('invalid-mechanism', undefined, 'channel-binding');
    if (initialResponse === null) {
      this.state = 'await-initial';
      return { kind: 'challenge', data: Buffer.alloc(0) };
    }
    return this.run(() => this.initial(initialResponse));
  }

  async respond(data: Buffer): Promise<SaslStep> {
    switch (this.state) {
      case 'await-initial':
        return this.run(() => this.initial(data));
      case 'await-final':
        return this.run(() => this.scramFinal(data));
      default:
        return this.fail('malformed-request', 'no authentication exchange in progress');
    }
  }

  /** The client sent <abort/>. */
  abort(): SaslStep {
    return this.fail('aborted');
  }

  private channelBindingOffered(): boolean {
    const cb = this.ctx.channelBinding;
    return this.ctx.secure && cb !== null && cb.types.length > 0;
  }

  private fail(condition: FailureCondition, text?: string, reason?: FailureReason): SaslStep {
    this.state = 'done';
    this.scram = null;
    const step: Extract<SaslStep, { kind: 'failure' }> = { kind: 'failure', condition };
    if (text !== undefined) step.text = text;
    if (this.authcid !== undefined) step.username = this.authcid;
    if (reason !== undefined) step.reason = reason;
    return step;
  }

  /** Runs one step; exceptions other than StepError become temporary-auth-failure (no details). */
  private async run(step: () => Promise<SaslStep>): Promise<SaslStep> {
    this.state = 'busy';
    let result: SaslStep;
    try {
      result = await step();
    } catch (err) {
      if (this.state !== 'busy') return this.fail('aborted');
      return err instanceof StepError ? this.fail(err.condition, err.text, err.reason) : this.fail('temporary-auth-failure');
    }
    if (this.state !== 'busy') return this.fail('aborted');
    if (result.kind === 'challenge') {
      this.state = 'await-final';
    } else {
      this.state = 'done';
      this.scram = null;
    }
    return result;
  }

  private initial(data: Buffer): Promise<SaslStep> {
    const info = this.info!;
    return info.kind === 'plain' ? this.plain(data) : this.scramFirst(data, info.hash, info.plus);
  }

  private checkAuthzid(authzid: string, username: string): void {
    if (authzid === '') return;
    const prefix = `${username}@`;
    const ok = authzid.startsWith(prefix) && authzid.slice(prefix.length).toLowerCase() === this.ctx.domain.toLowerCase();
    if (!ok) throw new StepError('invalid-authzid');
  }

  private fakeSalt(hash: ScramHash, username: string): Buffer {
    return fakeSalt(this.ctx.fakeSaltKey ?? PROCESS_FAKE_SALT_KEY, hash, username);
  }

  private unknownUserIterations(): number {
    const n = this.ctx.iterationsForUnknownUser;
    return Number.isSafeInteger(n) && n >= 1 ? n : MIN_ITERATIONS;
  }

  private async scramFirst(data: Buffer, hash: ScramHash, plus: boolean): Promise<SaslStep> {
    const cf = parseClientFirst(decodeUtf8(data));
    this.authcid = cf.username;
    let cbData: Buffer | null = null;
    if (plus) {
      if (cf.cbFlag !== 'p') throw cbFailure('malformed-request', 'channel binding is required with this mechanism');
      const cb = this.ctx.channelBinding!;
      cbData = cb.types.includes(cf.cbType!) ? cb.data(cf.cbType!) : null;
      if (!cbData) throw cbFailure('not-authorized', 'unsupported channel binding type');
    } else if (cf.cbFlag === 'p') {
      throw cbFailure('malformed-request', 'channel binding requires a -PLUS mechanism');
    } else if (cf.cbFlag === 'y' && this.channelBindingOffered() && !this.ctx.allowChannelBindingDowngrade) {
      throw cbFailure('not-authorized', 'channel binding downgrade detected');
    }
    this.checkAuthzid(cf.authzid, cf.username);

    const account = await this.ctx.lookup(cf.username);
    const verifier = account?.verifiers.find((v) => v.hash === hash) ?? null;
    // The client would have to compute it (and the same verifier would stall PLAIN here).
    if (verifier && !iterationsUsable(verifier.iterations)) throw unusableVerifier();
    const salt = verifier ? verifier.salt : this.fakeSalt(hash, cf.username);
    const iterations = verifier ? verifier.iterations : this.unknownUserIterations();

    const serverNonce = this.nonceGen();
    if (!PRINTABLE.test(serverNonce)) throw new Error('invalid server nonce');
    const nonce = cf.clientNonce + serverNonce;
    const serverFirst = `r=${nonce},s=${salt.toString('base64')},i=${iterations}`;
    this.scram = {
      hash,
      username: cf.username,
      gs2Header: cf.gs2Header,
      cbData,
      clientFirstBare: cf.bare,
      serverFirst,
      nonce,
      verifier,
    };
    return { kind: 'challenge', data: Buffer.from(serverFirst, 'utf8') };
  }

  private async scramFinal(data: Buffer): Promise<SaslStep> {
    const ex = this.scram!;
    const cf = parseClientFinal(decodeUtf8(data), ex.hash);

    const expectedCb = Buffer.concat([Buffer.from(ex.gs2Header, 'utf8'), ex.cbData ?? Buffer.alloc(0)]);
    if (cf.channelBinding.length !== expectedCb.length || !timingSafeEqual(cf.channelBinding, expectedCb)) {
      throw new StepError('not-authorized', 'channel binding mismatch');
    }
    if (cf.nonce !== ex.nonce) throw new StepError('not-authorized', 'nonce mismatch');

    const authMessage = `${ex.clientFirstBare},${ex.serverFirst},${cf.withoutProof}`;
    const len = hashLength(ex.hash);
    const verifier = ex.verifier && ex.verifier.storedKey.length === len ? ex.verifier : null;
    // An unknown account goes through the same computation against a random key.
    const storedKey = verifier ? verifier.storedKey : randomBytes(len);
    const clientSignature = hmac(ex.hash, storedKey, authMessage);
    const clientKey = xor(cf.proof, clientSignature);
    const candidate = h(ex.hash, clientKey);
    clientKey.fill(0);
    const match = timingSafeEqual(candidate, storedKey);
    if (!verifier || !match) throw new StepError('not-authorized');

    const serverSignature = hmac(ex.hash, verifier.serverKey, authMessage);
    return { kind: 'success', username: ex.username, data: Buffer.from(`v=${serverSignature.toString('base64')}`, 'utf8') };
  }

  private async plain(data: Buffer): Promise<SaslStep> {
    const parts = decodeUtf8(data).split('\0');
    if (parts.length !== 3) throw malformed('expected authzid NUL authcid NUL password');
    const [authzid, authcid, password] = parts as [string, string, string];
    if (authcid === '' || password === '') throw malformed('empty authcid or password');
    this.authcid = authcid;
    this.checkAuthzid(authzid, authcid);

    const account = await this.ctx.lookup(authcid);
    const verifiers = account?.verifiers ?? [];
    const verifier = verifiers.find((v) => v.hash === 'SHA-256') ?? verifiers.find((v) => v.hash === 'SHA-1') ?? null;
    if (verifier && !iterationsUsable(verifier.iterations)) throw unusableVerifier();
    // An unknown account goes through the same key derivation against a fake verifier.
    const checked: ScramVerifier = verifier ?? {
      hash: 'SHA-256',
      salt: this.fakeSalt('SHA-256', authcid),
      iterations: this.unknownUserIterations(),
      storedKey: randomBytes(32),
      serverKey: randomBytes(32),
    };
    const match = await verifyPlainAsync(password, checked);
    if (!verifier || !match) throw new StepError('not-authorized');
    if (this.ctx.passwordVerified) {
      try {
        await this.ctx.passwordVerified(authcid, password, verifiers);
      } catch {
        // Completing the verifiers is a bonus; the login stands.
      }
    }
    return { kind: 'success', username: authcid, data: null };
  }
}
