/**
 * Trust with the user's recovery key (Element's "Recovery key" / "Security Key": the secret
 * storage key, 0x8B 0x01 + 32 bytes + a parity byte in base58, spec "Secret storage"), given through
 * the gateway's ad-hoc command "Matrix recovery key" (RECOVERY_COMMAND):
 *
 * 1. the key is decoded and checked against the account's default secret storage key (its `mac`
 *    of zeroes): a typo or another account's key is a clear error and nothing changes;
 * 2. the cross-signing private keys are read from secret storage (m.cross_signing.master,
 *    .self_signing, .user_signing) into the Rust crypto, which signs this device with the
 *    self-signing key and uploads the signature: the user's other clients show the gateway's
 *    session as verified. The keys are never created here: an account without them in secret
 *    storage is told to set up recovery in Element (a reset would break the user's identity);
 * 3. the key backup decryption key (m.megolm_backup.v1) is read, the backup is enabled (new room
 *    keys are backed up from now on) and restored: room keys of older messages become readable,
 *    and messages still waiting for their keys are delivered.
 *
 * The recovery key is a credential: the session reports it as the `recoveryKey` credential (the kit
 * keeps it in the vault, erased with the registration, scrubbed from audit reasons, never logged).
 * It is used again at a login whose crypto store lacks the keys (a new device after the store was
 * lost). "Forget" removes it from the vault (the keys already imported stay in the crypto store).
 */
import * as sdk from 'matrix-js-sdk';
import { decodeRecoveryKey, type CryptoApi, type CryptoCallbacks } from 'matrix-js-sdk/lib/crypto-api/index.js';
import { CommandFailure, type AdapterCommand, type AdapterLogger } from '../kit/adapter.js';
import { describe, errcodeOf } from './errors.js';

export const RECOVERY_COMMAND: AdapterCommand = {
  node: 'matrix-recovery-key',
  name: 'Matrix recovery key',
  instructions:
    'Your recovery key (Element: Settings, Encryption, "Recovery key"; also called Security Key) lets this gateway verify its own Matrix session with your cross-signing keys and read older encrypted messages from your key backup. ' +
    'It is kept encrypted in the gateway\'s vault and is removed when you unregister or choose "Forget".',
  fields: [
    { name: 'recoveryKey', label: 'Recovery key', type: 'text-private', required: false, secret: true, description: '48 characters in groups of four, e.g. EsTc 1234 ...' },
    { name: 'forget', label: 'Forget the stored recovery key', type: 'boolean', required: false, secret: false, default: 'false' },
  ],
};

const CROSS_SIGNING_SECRETS = ['m.cross_signing.master', 'm.cross_signing.self_signing', 'm.cross_signing.user_signing'] as const;
const BACKUP_SECRET = 'm.megolm_backup.v1';

export interface TrustOutcome {
  crossSigned: boolean;
  backup: { version: string; imported: number; total: number } | null;
}

export interface MatrixTrustHost {
  readonly client: sdk.MatrixClient;
  /** The session's CryptoApi; null without end-to-end encryption. */
  api(): CryptoApi | null;
  /** The callbacks the client was created with (secret storage asks them for its key). */
  readonly callbacks: CryptoCallbacks;
  readonly log: AdapterLogger;
  readonly host: string;
  readonly userId: string;
  readonly deviceId: string;
  /** Stores credentials in the vault ('' removes one). */
  storeCredentials(fields: Record<string, string>): void;
}

export class MatrixTrust {
  /** One use of the recovery key at a time. */
  private running: Promise<unknown> = Promise.resolve();

  constructor(private readonly h: MatrixTrustHost) {}

  /** The ad-hoc command: use the key (and store it), or forget the stored one. */
  async command(values: Record<string, string>): Promise<string> {
    const forget = /^(1|true)$/i.test(values.forget ?? '');
    const given = (values.recoveryKey ?? '').trim();
    if (forget) {
      this.h.callbacks.getSecretStorageKey = undefined;
      this.h.storeCredentials({ recoveryKey: '' });
      this.h.log.info('matrix recovery key forgotten', { homeserver: this.h.host });
      return 'The recovery key is no longer stored. This session stays verified and keeps the room keys it has.';
    }
    if (!given) throw new CommandFailure('give the recovery key, or choose "Forget"');
    const outcome = await this.serial(() => this.use(given));
    this.h.storeCredentials({ recoveryKey: normalise(given) });
    return describeOutcome(outcome, this.h.deviceId);
  }

  /** At login: the stored key, when this device's crypto store lacks what it gives. Never throws. */
  async atLogin(stored: string): Promise<string | null> {
    const api = this.h.api();
    if (!api) return null;
    try {
      // What this device's own store has (secret storage itself is not read: a resumed session has not synced it).
      const local = (await api.getCrossSigningStatus()).privateKeysCachedLocally;
      const needsCrossSigning = !(local.masterKey && local.selfSigningKey && local.userSigningKey);
      const backup = await api.getKeyBackupInfo();
      const needsBackupKey = backup !== null && (await api.getSessionBackupPrivateKey()) === null;
      if (!needsCrossSigning && !needsBackupKey) return null;
      const outcome = await this.serial(() => this.use(stored));
      this.h.log.info('matrix stored recovery key used', { homeserver: this.h.host, crossSigned: outcome.crossSigned, restored: outcome.backup?.imported ?? 0 });
      return null;
    } catch (err) {
      const reason = err instanceof CommandFailure ? err.message : describe(err);
      this.h.log.warn('matrix stored recovery key not usable', { homeserver: this.h.host, reason });
      return `The stored Matrix recovery key could not be used: ${reason}. Give it again with the ad-hoc command "${RECOVERY_COMMAND.name}".`;
    }
  }

  private serial<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.running.then(fn, fn);
    this.running = next.catch(() => undefined);
    return next;
  }

  private async use(text: string): Promise<TrustOutcome> {
    const api = this.h.api();
    if (!api) throw new CommandFailure('end-to-end encryption is not available in this Matrix session', 'service-unavailable');
    let raw: Uint8Array;
    try {
      raw = decodeRecoveryKey(normalise(text).replace(/ /g, ''));
    } catch {
      throw new CommandFailure('this is not a Matrix recovery key (48 characters in groups of four, as Element shows it); check it for typos', 'not-acceptable');
    }
    this.setKey(await this.checked(raw));
    const secrets = this.h.client.secretStorage;
    let crossSigned = false;
    const stored = await Promise.all(CROSS_SIGNING_SECRETS.map((n) => secrets.isStored(n)));
    if (stored.every(Boolean)) {
      try {
        await api.bootstrapCrossSigning({});
        const status = await api.getDeviceVerificationStatus(this.h.userId, this.h.deviceId);
        if (!status?.signedByOwner) await api.crossSignDevice(this.h.deviceId);
        crossSigned = true;
      } catch (err) {
        this.h.log.warn('matrix cross-signing with the recovery key failed', { homeserver: this.h.host, reason: describe(err) });
        throw new CommandFailure(`the cross-signing keys in your secret storage could not be used (${describe(err)}); if you reset them in Element recently, try again in a minute`, 'service-unavailable');
      }
    }
    let backup: TrustOutcome['backup'] = null;
    const info = await api.getKeyBackupInfo();
    if (info?.version && (await secrets.isStored(BACKUP_SECRET))) {
      try {
        await api.loadSessionBackupPrivateKeyFromSecretStorage();
        await api.checkKeyBackupAndEnable();
        const r = await api.restoreKeyBackup();
        backup = { version: info.version, imported: r.imported, total: r.total };
      } catch (err) {
        this.h.log.warn('matrix key backup restore failed', { homeserver: this.h.host, reason: describe(err) });
        throw new CommandFailure(`${crossSigned ? 'this session is verified now, but ' : ''}the key backup could not be restored (${describe(err)})`, 'service-unavailable');
      }
    }
    if (!crossSigned && !backup) throw new CommandFailure('your secret storage holds neither cross-signing keys nor a key backup key; set up recovery in Element first', 'item-not-found');
    this.h.log.info('matrix recovery key used', { homeserver: this.h.host, crossSigned, restored: backup?.imported ?? 0 });
    return { crossSigned, backup };
  }

  /**
   * Secret storage is account data, which the SDK reads from its store once a sync is done; a
   * session resumed from a stored position (session.ts) has not seen it. It is fetched here.
   */
  private async loadSecretStorage(): Promise<void> {
    const { client } = this.h;
    const fetchOne = async (type: string): Promise<Record<string, unknown> | null> => {
      try {
        const content = await client.http.authedRequest<Record<string, unknown>>(sdk.Method.Get, `/user/${encodeURIComponent(this.h.userId)}/account_data/${encodeURIComponent(type)}`);
        client.store.storeAccountDataEvents([new sdk.MatrixEvent({ type, content })]);
        return content;
      } catch (err) {
        if (errcodeOf(err) === 'M_NOT_FOUND') return null;
        throw err;
      }
    };
    const def = await fetchOne('m.secret_storage.default_key');
    const keyId = typeof def?.key === 'string' ? def.key : null;
    await Promise.all([...(keyId ? [`m.secret_storage.key.${keyId}`] : []), ...CROSS_SIGNING_SECRETS, BACKUP_SECRET].map(fetchOne));
  }

  /** The key ID of the default secret storage key that `raw` opens. */
  private async checked(raw: Uint8Array): Promise<{ keyId: string; raw: Uint8Array }> {
    await this.loadSecretStorage();
    const def = await this.h.client.secretStorage.getKey();
    if (!def) throw new CommandFailure('this Matrix account has no secret storage; set up recovery ("Secure Backup") in Element first', 'item-not-found');
    const [keyId, info] = def;
    let ok = false;
    try {
      ok = await this.h.client.secretStorage.checkKey(raw, info);
    } catch {
      ok = false;
    }
    if (!ok) throw new CommandFailure('wrong recovery key: it does not open the secret storage of this Matrix account', 'not-acceptable');
    return { keyId, raw };
  }

  private setKey(k: { keyId: string; raw: Uint8Array }): void {
    this.h.callbacks.getSecretStorageKey = async ({ keys }) => (keys[k.keyId] ? [k.keyId, k.raw] : null);
  }
}

/** Groups of four, as Element shows it (whitespace as the user typed it is not kept). */
function normalise(text: string): string {
  return text
    .replace(/\s+/g, '')
    .replace(/(.{4})(?=.)/g, '$1 ');
}

function describeOutcome(o: TrustOutcome, deviceId: string): string {
  const parts = ['Recovery key accepted.'];
  if (o.crossSigned) parts.push(`This gateway's Matrix session (device ${deviceId}) is signed with your cross-signing keys: your other Matrix clients show it as verified.`);
  if (o.backup) {
    parts.push(`Key backup (version ${o.backup.version}): ${o.backup.imported} of ${o.backup.total} room key${o.backup.total === 1 ? '' : 's'} restored; new room keys are backed up.`);
  } else {
    parts.push('Your account has no key backup to restore.');
  }
  parts.push('The recovery key is kept encrypted in the gateway\'s vault (run this command with "Forget" to remove it).');
  return parts.join(' ');
}
