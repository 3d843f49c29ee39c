import { capsVer } from '../../shared/xml/caps-hash.js';

export interface DiscoIdentity {
  category: string;
  type: string;
  name?: string;
}

/**
 * Features and identities that modules announce, for the server (host JID) and for accounts
 * (bare JIDs). The disco module answers from here; caps hashes are computed from it.
 */
export class DiscoRegistry {
  readonly serverFeatures = new Set<string>();
  readonly accountFeatures = new Set<string>();
  readonly serverIdentities: DiscoIdentity[] = [];
  readonly accountIdentities: DiscoIdentity[] = [{ category: 'account', type: 'registered' }];
  /** Items (components, services) listed in the server's disco#items. */
  readonly serverItems = new Map<string, string | undefined>();

  addServerFeature(...features: string[]): void {
    for (const f of features) this.serverFeatures.add(f);
  }

  addAccountFeature(...features: string[]): void {
    for (const f of features) this.accountFeatures.add(f);
  }

  /** The server's XEP-0115 'ver' (SHA-1; the server announces no extended forms). */
  serverCapsHash(): string {
    return capsVer({ identities: this.serverIdentities, features: [...this.serverFeatures], forms: [] }, 'sha-1')!;
  }
}
