/**
 * The Matrix user on the other side, as Element would be: an independent matrix-js-sdk client with
 * its own Rust crypto (in-memory store) on the fake homeserver, in the test process. It encrypts
 * what it sends into encrypted rooms and decrypts what it receives, so a test sees what a real
 * Matrix user would see of the gateway's messages.
 */
import * as sdk from 'matrix-js-sdk';
import type { FakeHomeserver } from '../fakes/matrix-homeserver.js';
import { quiet, stopClient, timedFetch, withoutSdkTimers } from '../../transports/matrix/sdk.js';
import { unrefLiveEventTimers, withoutRustLogs } from '../../transports/matrix/crypto.js';

type Json = Record<string, unknown>;

/** Starts the client as Element does (lazy-loaded members) and resolves after its first sync. */
export function startSyncing(client: sdk.MatrixClient, userId: string): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const onSync = (state: sdk.SyncState) => {
      if (state === sdk.SyncState.Prepared || state === sdk.SyncState.Syncing) {
        client.off(sdk.ClientEvent.Sync, onSync);
        resolve();
      } else if (state === sdk.SyncState.Error) {
        client.off(sdk.ClientEvent.Sync, onSync);
        reject(new Error(`the peer ${userId} could not sync`));
      }
    };
    client.on(sdk.ClientEvent.Sync, onSync);
    void client.startClient({ lazyLoadMembers: true, initialSyncLimit: 20, pollTimeout: 2000 });
  });
}

export class ElementPeer {
  private constructor(
    readonly client: sdk.MatrixClient,
    readonly userId: string,
    readonly deviceId: string,
  ) {}

  /** Logs in as `userId` (a new device unless one is named), starts its crypto and syncs. */
  static async start(hs: FakeHomeserver, userId: string, deviceId?: string): Promise<ElementPeer> {
    const { accessToken, deviceId: device } = hs.issueToken(userId, deviceId);
    return ElementPeer.connect(hs.url, userId, accessToken, device);
  }

  /** A logged-in device on any homeserver (the real-service suite). */
  static async connect(baseUrl: string, userId: string, accessToken: string, device: string): Promise<ElementPeer> {
    // Bounded requests without the SDK's own (never cleared) timers, so the test process can end.
    const client = sdk.createClient({ baseUrl, userId, deviceId: device, accessToken, logger: quiet, fetchFn: timedFetch(10_000, 15_000) });
    withoutSdkTimers(client);
    await withoutRustLogs(() => client.initRustCrypto({ useIndexedDB: false }));
    unrefLiveEventTimers(client);
    await startSyncing(client, userId);
    return new ElementPeer(client, userId, device);
  }

  /** Sends a text message (encrypted in an encrypted room); its event ID. */
  async sendText(roomId: string, body: string, extra: Json = {}): Promise<string> {
    const res = await this.client.sendEvent(roomId, 'm.room.message' as never, { msgtype: 'm.text', body, ...extra } as never);
    return res.event_id;
  }

  /**
   * The first message in the room's timeline (decrypted when encrypted) whose content matches,
   * waiting for it up to `timeoutMs`.
   */
  async waitForMessage(roomId: string, match: (content: Json) => boolean, timeoutMs = 15_000): Promise<sdk.MatrixEvent> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (const ev of this.client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []) {
        if (ev.isEncrypted()) await this.client.decryptEventIfNeeded(ev).catch(() => undefined);
        if (ev.getType() === 'm.room.message' && match(ev.getContent() as Json)) return ev;
      }
      if (Date.now() > deadline) {
        const seen = (this.client.getRoom(roomId)?.getLiveTimeline().getEvents() ?? []).map((e) => `${e.getType()}${e.isDecryptionFailure() ? ' (undecryptable)' : ''}`);
        throw new Error(`${this.userId}/${this.deviceId}: no such message in ${roomId} within ${timeoutMs} ms; timeline: ${seen.join(', ')}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  stop(): void {
    stopClient(this.client);
    this.client.removeAllListeners();
  }
}
