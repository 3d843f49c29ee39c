/**
 * The user's own Element session for trust tests: an independent matrix-js-sdk client with its own
 * Rust crypto (in-memory store) on the fake homeserver, which sets up what Element's "Set up
 * recovery" does (cross-signing keys, secret storage with a recovery key, server-side key backup),
 * and verifies other sessions with emoji (SAS) as Element's dialog would, answering for its user.
 */
import * as sdk from 'matrix-js-sdk';
import {
  OnlySignedDevicesIsolationMode,
  VerificationPhase,
  VerificationRequestEvent,
  VerifierEvent,
  CryptoEvent,
  type CryptoApi,
  type CryptoCallbacks,
  type GeneratedSecretStorageKey,
  type ShowSasCallbacks,
  type VerificationRequest,
} from 'matrix-js-sdk/lib/crypto-api/index.js';
import type { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { quiet } from '../../transports/matrix/sdk.js';
import { startSyncing } from './matrix-element-peer.js';

/** The Rust crypto logs to the console at debug level when it starts; tests keep their output clean. */
function quietRustConsole(): void {
  const c = console as unknown as Record<string, ((...args: unknown[]) => void) & { trustQuiet?: true }>;
  for (const level of ['trace', 'debug', 'info', 'log', 'warn', 'error']) {
    const original = c[level]!;
    if (original.trustQuiet) continue;
    c[level] = Object.assign((...args: unknown[]) => {
      if (typeof args[0] === 'string' && /^(TRACE|DEBUG|INFO|WARN|ERROR) [a-z0-9_]+(::[a-z0-9_]+)*: /.test(args[0])) return;
      original.apply(console, args);
    }, { trustQuiet: true as const });
  }
}

export class TrustPeer {
  private recovery: GeneratedSecretStorageKey | null = null;
  /** Verification requests other sessions sent to this one. */
  readonly incoming: VerificationRequest[] = [];

  private constructor(
    readonly client: sdk.MatrixClient,
    readonly userId: string,
    readonly deviceId: string,
    private readonly callbacks: CryptoCallbacks,
  ) {
    client.on(CryptoEvent.VerificationRequestReceived, (req) => this.incoming.push(req));
  }

  get crypto(): CryptoApi {
    return this.client.getCrypto()!;
  }

  static async start(hs: FakeHomeserver, userId: string): Promise<TrustPeer> {
    quietRustConsole();
    const { accessToken, deviceId } = hs.issueToken(userId);
    const callbacks: CryptoCallbacks = {};
    const client = sdk.createClient({ baseUrl: hs.url, userId, deviceId, accessToken, logger: quiet, cryptoCallbacks: callbacks, verificationMethods: ['m.sas.v1'] });
    await client.initRustCrypto({ useIndexedDB: false });
    await startSyncing(client, userId);
    return new TrustPeer(client, userId, deviceId, callbacks);
  }

  /**
   * Element's "Set up recovery": new cross-signing keys (the upload authenticated with the
   * password), secret storage under a new recovery key holding them, and a new key backup whose
   * key is in secret storage too. Returns the recovery key as Element shows it.
   */
  async setUpRecovery(password: string): Promise<string> {
    const crypto = this.crypto;
    this.recovery = await crypto.createRecoveryKeyFromPassphrase();
    this.callbacks.getSecretStorageKey = async ({ keys }) => {
      const id = Object.keys(keys)[0]!;
      return [id, this.recovery!.privateKey];
    };
    await crypto.bootstrapCrossSigning({
      authUploadDeviceSigningKeys: async (makeRequest) => {
        await makeRequest({ type: 'm.login.password', identifier: { type: 'm.id.user', user: this.userId }, password } as never);
      },
    });
    await crypto.bootstrapSecretStorage({ createSecretStorageKey: async () => this.recovery!, setupNewSecretStorage: true, setupNewKeyBackup: true });
    return this.recovery.encodedPrivateKey!;
  }

  /** Element's "exclude insecure devices": room keys go only to devices their owner cross-signed. */
  onlySignedDevices(): void {
    this.crypto.setDeviceIsolationMode(new OnlySignedDevicesIsolationMode());
  }

  async sendText(roomId: string, body: string): Promise<string> {
    const res = await this.client.sendEvent(roomId, 'm.room.message' as never, { msgtype: 'm.text', body } as never);
    return res.event_id;
  }

  /**
   * Runs SAS on a request as Element's dialog does: (accepts it when it came from elsewhere,)
   * starts SAS when asked to, reports the emoji, and confirms when `confirm` resolves true.
   */
  async sas(req: VerificationRequest, startIt: boolean, onEmoji: (emoji: [string, string][]) => Promise<boolean>): Promise<void> {
    if (!req.initiatedByMe && req.phase === VerificationPhase.Requested) await req.accept();
    await waitFor(() => req.phase >= VerificationPhase.Ready, req, 'the request to be ready');
    let verifier = req.verifier;
    if (!verifier && startIt) verifier = await req.startVerification('m.sas.v1');
    if (!verifier) {
      await waitFor(() => req.verifier !== undefined, req, 'the other side to start SAS');
      verifier = req.verifier!;
    }
    const shown = new Promise<ShowSasCallbacks>((resolve) => {
      const cb = verifier!.getShowSasCallbacks();
      if (cb) resolve(cb);
      else verifier!.once(VerifierEvent.ShowSas, resolve);
    });
    const done = verifier.verify();
    const sas = await shown;
    if (await onEmoji(sas.sas.emoji ?? [])) await sas.confirm();
    else sas.mismatch();
    await done;
  }

  stop(): void {
    this.client.stopClient();
    this.client.removeAllListeners();
  }
}

function waitFor(cond: () => boolean, req: VerificationRequest, what: string, timeoutMs = 20_000): Promise<void> {
  if (cond()) return Promise.resolve();
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      req.off(VerificationRequestEvent.Change, check);
      reject(new Error(`timed out waiting for ${what} (phase ${req.phase})`));
    }, timeoutMs);
    const check = () => {
      if (req.phase === VerificationPhase.Cancelled) {
        clearTimeout(timer);
        req.off(VerificationRequestEvent.Change, check);
        reject(new Error(`the verification was cancelled (${req.cancellationCode})`));
      } else if (cond()) {
        clearTimeout(timer);
        req.off(VerificationRequestEvent.Change, check);
        resolve();
      }
    };
    req.on(VerificationRequestEvent.Change, check);
  });
}
