/**
 * Client certificates for SASL EXTERNAL (CertFP): a self-signed certificate per user and IRC
 * server, made by the gateway when the user turns `saslExternal` on, kept in the vault with the
 * registration (the key is a stored secret, never shown or logged), shown to the user only by its
 * SHA-256 fingerprint, which they add to their services account (e.g. `CERT ADD` at NickServ).
 */
import { X509Certificate } from 'node:crypto';
import { generate } from 'selfsigned';

export interface ClientCertificate {
  cert: string;
  key: string;
}

/** A new EC P-256 certificate, valid for ten years (services compare fingerprints, not dates). */
export async function makeClientCertificate(commonName: string): Promise<ClientCertificate> {
  const now = new Date();
  const pems = await generate([{ name: 'commonName', value: commonName.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || 'gatehouse' }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 3600_000),
    notAfterDate: new Date(now.getTime() + 10 * 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true },
      { name: 'extKeyUsage', clientAuth: true },
    ],
  });
  return { cert: pems.cert, key: pems.private };
}

/** The SHA-256 fingerprint as services show it: lower-case hex without separators. */
export function certificateFingerprint(certPem: string): string {
  return new X509Certificate(certPem).fingerprint256.replace(/:/g, '').toLowerCase();
}
