/**
 * Interactive verification of the gateway's Matrix session (SAS, "compare emoji", spec "Short
 * Authentication String (SAS) verification"), driven from XMPP through a chat with the gateway's
 * JID (the kit's 'gatewayMessage' event and LegacySession.gatewayMessage):
 *
 * - Another session of the user (Element: "Verify this device", or Settings, Sessions, Verify)
 *   asks: the gateway tells the XMPP user which session asks and waits for "yes" (accept) or "no".
 * - The user writes "verify": the gateway asks the user's other sessions (they show a request).
 * - Once both sides are ready, SAS starts (the other side starts it; a request the gateway made
 *   it starts itself when the other side accepted): the gateway shows the 7 emoji with their names
 *   and waits for "yes" (they match: confirm) or "no" (they differ: mismatch, cancelled).
 * - "cancel" ends a verification in progress. Only the user's own sessions are verified here
 *   (requests of other users are left alone); only SAS is offered (the gateway cannot scan or show
 *   a QR code). The Rust crypto does the protocol; the gateway only relays the choices.
 */
import type * as sdk from 'matrix-js-sdk';
import {
  CryptoEvent,
  VerificationPhase,
  VerificationRequestEvent,
  VerifierEvent,
  type CryptoApi,
  type ShowSasCallbacks,
  type VerificationRequest,
  type Verifier,
} from 'matrix-js-sdk/lib/crypto-api/index.js';
import type { AdapterLogger } from '../kit/adapter.js';
import { describe } from './errors.js';

const SAS = 'm.sas.v1';

export interface VerificationHost {
  readonly client: sdk.MatrixClient;
  api(): CryptoApi | null;
  readonly log: AdapterLogger;
  readonly host: string;
  readonly userId: string;
  readonly deviceId: string;
  /** A chat message from the gateway to the user. */
  tell(text: string): void;
}

type Waiting = 'accept' | 'confirm' | null;

const HELP =
  'Matrix verification: write "verify" to verify this gateway\'s session from your other Matrix sessions (Element shows the request), ' +
  '"yes" or "no" to answer a question of the gateway, "cancel" to end a verification. Your recovery key is given with the ad-hoc command "Matrix recovery key".';

export class MatrixVerification {
  private request: VerificationRequest | null = null;
  private sas: ShowSasCallbacks | null = null;
  private waiting: Waiting = null;
  private stopped = false;
  private readonly onRequest = (req: VerificationRequest) => this.received(req);

  constructor(private readonly h: VerificationHost) {
    h.client.on(CryptoEvent.VerificationRequestReceived, this.onRequest);
  }

  stop(): void {
    this.stopped = true;
    this.h.client.off(CryptoEvent.VerificationRequestReceived, this.onRequest);
    if (this.request && this.request.phase !== VerificationPhase.Done && this.request.phase !== VerificationPhase.Cancelled) void this.request.cancel().catch(() => undefined);
    this.request = null;
  }

  /** A chat message from the user to the gateway. */
  async handle(text: string): Promise<void> {
    const word = text.trim().toLowerCase().replace(/[.!]+$/, '');
    if (['yes', 'y', 'ok', 'match', 'they match'].includes(word)) return this.yes();
    if (['no', 'n', "they don't match", 'mismatch'].includes(word)) return this.no();
    if (word === 'cancel') return this.cancel();
    if (word === 'verify') return this.start();
    this.h.tell(HELP);
  }

  private received(req: VerificationRequest): void {
    if (this.stopped || req.otherUserId !== this.h.userId || req.initiatedByMe) return;
    if (this.request && this.active(this.request)) {
      void req.cancel({ reason: 'another verification is in progress', code: 'm.user' }).catch(() => undefined);
      return;
    }
    this.track(req);
    this.waiting = 'accept';
    void this.deviceName(req.otherDeviceId).then((device) =>
      this.h.tell(`Your Matrix session ${device} asks to verify this gateway's session (device ${this.h.deviceId}). Reply "yes" to start comparing emoji, "no" to decline.`),
    );
  }

  private async deviceName(deviceId: string | undefined): Promise<string> {
    if (!deviceId) return 'another session';
    let name: string | undefined;
    try {
      name = (await this.h.api()?.getUserDeviceInfo([this.h.userId]))?.get(this.h.userId)?.get(deviceId)?.displayName;
    } catch {
      name = undefined;
    }
    return name ? `"${name}" (${deviceId})` : deviceId;
  }

  private active(req: VerificationRequest): boolean {
    return req.phase !== VerificationPhase.Done && req.phase !== VerificationPhase.Cancelled;
  }

  private async start(): Promise<void> {
    const api = this.h.api();
    if (!api) return this.h.tell('End-to-end encryption is not available in this Matrix session, so it cannot be verified.');
    if (this.request && this.active(this.request)) return this.h.tell('A verification is already in progress; write "cancel" to end it.');
    try {
      const req = await api.requestOwnUserVerification();
      this.track(req);
      this.h.tell(`Verification requested: accept it in your other Matrix session (Element shows the request), then compare the emoji that follow here.`);
    } catch (err) {
      this.h.log.info('matrix verification request failed', { homeserver: this.h.host, reason: describe(err) });
      this.h.tell(`The verification could not be requested: ${describe(err)}`);
    }
  }

  private track(req: VerificationRequest): void {
    this.request = req;
    this.sas = null;
    let verifying = false;
    const onChange = () => {
      if (this.request !== req) return req.off(VerificationRequestEvent.Change, onChange);
      if (req.phase === VerificationPhase.Ready && req.initiatedByMe && !req.verifier) {
        // Our request was accepted: start SAS.
        req.startVerification(SAS).catch((err: unknown) => this.failed(req, err));
      }
      const verifier = req.verifier;
      if (verifier && !verifying) {
        verifying = true;
        this.verify(req, verifier);
      }
      if (req.phase === VerificationPhase.Cancelled) {
        req.off(VerificationRequestEvent.Change, onChange);
        this.ended(req, false);
      } else if (req.phase === VerificationPhase.Done) {
        req.off(VerificationRequestEvent.Change, onChange);
        this.ended(req, true);
      }
    };
    req.on(VerificationRequestEvent.Change, onChange);
    onChange();
  }

  private verify(req: VerificationRequest, verifier: Verifier): void {
    verifier.on(VerifierEvent.ShowSas, (sas) => {
      if (this.request !== req) return;
      this.sas = sas;
      this.waiting = 'confirm';
      const emoji = sas.sas.emoji ?? [];
      const shown = emoji.length ? emoji.map(([e, name]) => `${e} ${name}`).join(', ') : (sas.sas.decimal ?? []).join(' ');
      this.h.tell(`Compare these with what your other Matrix session shows: ${shown}. Reply "yes" if they match, "no" if they do not.`);
    });
    verifier.verify().catch((err: unknown) => {
      if (this.request === req && req.phase !== VerificationPhase.Cancelled) this.failed(req, err);
    });
  }

  private failed(req: VerificationRequest, err: unknown): void {
    if (this.request !== req) return;
    this.h.log.info('matrix verification failed', { homeserver: this.h.host, reason: describe(err) });
  }

  private ended(req: VerificationRequest, done: boolean): void {
    if (this.request !== req) return;
    this.request = null;
    this.sas = null;
    this.waiting = null;
    if (this.stopped) return;
    if (done) {
      this.h.log.info('matrix session verified interactively', { homeserver: this.h.host });
      this.h.tell(`Verified: this gateway's Matrix session (device ${this.h.deviceId}) and your other session trust each other now.`);
    } else {
      const by = req.cancellingUserId === this.h.userId && req.cancellationCode === 'm.user' ? '' : req.cancellationCode ? ` (${req.cancellationCode})` : '';
      this.h.tell(`The verification was cancelled${by}.`);
    }
  }

  private async yes(): Promise<void> {
    const req = this.request;
    if (!req || !this.waiting) return this.h.tell(`There is nothing to answer. ${HELP}`);
    if (this.waiting === 'accept') {
      this.waiting = null;
      try {
        await req.accept();
        this.h.tell('Accepted. Choose to compare emoji in your other session; the emoji will appear here.');
      } catch (err) {
        this.h.tell(`The verification could not be accepted: ${describe(err)}`);
      }
      return;
    }
    const sas = this.sas;
    this.waiting = null;
    this.sas = null;
    if (!sas) return;
    try {
      await sas.confirm();
      this.h.tell('Confirmed; waiting for your other session to confirm too.');
    } catch (err) {
      this.h.tell(`The confirmation failed: ${describe(err)}`);
    }
  }

  private async no(): Promise<void> {
    const req = this.request;
    if (!req || !this.waiting) return this.h.tell(`There is nothing to answer. ${HELP}`);
    if (this.waiting === 'accept') {
      this.waiting = null;
      await req.cancel({ reason: 'declined', code: 'm.user' }).catch(() => undefined);
      return;
    }
    const sas = this.sas;
    this.waiting = null;
    this.sas = null;
    sas?.mismatch();
  }

  private async cancel(): Promise<void> {
    const req = this.request;
    if (!req) return this.h.tell('No verification is in progress.');
    await req.cancel({ reason: 'cancelled by the user', code: 'm.user' }).catch(() => undefined);
  }
}
