import { createHash } from 'node:crypto';

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

  /** XEP-0115 verification string hash (SHA-1, no extended forms). */
  serverCapsHash(): string {
    const identities = this.serverIdentities.map((i) => `${i.category}/${i.type}//${i.name ?? ''}`).sort();
    const features = [...this.serverFeatures].sort();
    const s = identities.map((i) => i + '<').join('') + features.map((f) => f + '<').join('');
    return createHash('sha1').update(s, 'utf8').digest('base64');
  }
}
