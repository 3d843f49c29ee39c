import { createSecureContext, type SecureContext } from 'node:tls';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { X509Certificate, createHash } from 'node:crypto';
import { join } from 'node:path';
import type { Config } from '../config/index.js';

export interface CertificatePaths {
  cert: string;
  key: string;
}

export interface TlsSettings {
  minVersion: 'TLSv1.2' | 'TLSv1.3';
  ciphers?: string;
}

/**
 * One secure context per served domain, chosen by SNI; the first is the default. A reload makes a
 * new set from the files and `adopt()`s it: the listeners keep this object, so connections
 * accepted afterwards get the renewed certificates and open ones keep theirs.
 */
export class TlsContexts {
  private readonly byDomain = new Map<string, SecureContext>();
  private defaultCtx: SecureContext;
  private defaultOpts: TlsContexts['defaultOptions'];
  /**
   * The first entry's certificate, key and settings as server options: tls.createServer() builds
   * its own context from these for handshakes without SNI (it ignores a `secureContext` option,
   * and SNICallback only runs when the client sends a server name, e.g. not when it connects to an
   * IP address).
   */
  get defaultOptions(): { cert: Buffer; key: Buffer; minVersion: TlsSettings['minVersion']; ciphers?: string } {
    return this.defaultOpts;
  }

  get defaultContext(): SecureContext {
    return this.defaultCtx;
  }

  constructor(entries: { domain: string; paths: CertificatePaths }[], settings: TlsSettings) {
    if (entries.length === 0) throw new Error('no TLS certificate configured');
    let first: SecureContext | null = null;
    let firstOptions: TlsContexts['defaultOptions'] | null = null;
    const cache = new Map<string, SecureContext>();
    for (const { domain, paths } of entries) {
      const cacheKey = `${paths.cert}\0${paths.key}`;
      let ctx = cache.get(cacheKey);
      if (!ctx) {
        const cert = readFileSync(paths.cert);
        const key = readFileSync(paths.key);
        ctx = createSecureContext({ cert, key, minVersion: settings.minVersion, ciphers: settings.ciphers, sessionTimeout: 3600 });
        cache.set(cacheKey, ctx);
        firstOptions ??= { cert, key, minVersion: settings.minVersion, ...(settings.ciphers ? { ciphers: settings.ciphers } : {}) };
      }
      this.byDomain.set(domain, ctx);
      first ??= ctx;
    }
    this.defaultCtx = first!;
    this.defaultOpts = firstOptions!;
  }

  /** Takes over the contexts of `fresh` (made from the current files). */
  adopt(fresh: TlsContexts): void {
    this.byDomain.clear();
    for (const [domain, ctx] of fresh.byDomain) this.byDomain.set(domain, ctx);
    this.defaultCtx = fresh.defaultCtx;
    this.defaultOpts = fresh.defaultOpts;
  }

  forServername(servername: string | undefined): SecureContext {
    return (servername && this.byDomain.get(servername.toLowerCase())) || this.defaultContext;
  }

  sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const ctx = this.forServername(servername);
    // Handing back the context the socket already has would still make OpenSSL switch to it.
    if (ctx === this.defaultContext) cb(null);
    else cb(null, ctx);
  };

}

declare module '../core/services.js' {
  interface Services {
    /**
     * The server's TLS contexts, which main.ts provides before the modules load and into which
     * every reload adopt()s the renewed certificates (also when no setting changed, so no
     * 'config/in-force' is emitted): a listener that uses this object follows the files.
     */
    'tls-contexts': TlsContexts;
  }
}

/** RFC 5929 tls-server-end-point: hash of the certificate we presented (DER). */
export function tlsServerEndPoint(der: Buffer): Buffer {
  return createHash(endPointHash(der)).update(der).digest();
}

const SIGNATURE_OIDS_384 = [Buffer.from('06092a864886f70d01010c', 'hex'), Buffer.from('06082a8648ce3d040303', 'hex')];
const SIGNATURE_OIDS_512 = [Buffer.from('06092a864886f70d01010d', 'hex'), Buffer.from('06082a8648ce3d040304', 'hex')];

/** SHA-384/512 signatures bind with that hash; everything else (SHA-1, MD5, SHA-256) with SHA-256. */
function endPointHash(der: Buffer): string {
  if (SIGNATURE_OIDS_384.some((oid) => der.includes(oid))) return 'sha384';
  if (SIGNATURE_OIDS_512.some((oid) => der.includes(oid))) return 'sha512';
  return 'sha256';
}

/**
 * Makes (once) a self-signed ECDSA certificate for every served domain under dataDir/certs,
 * so a fresh install speaks TLS at once. Clients must accept it explicitly.
 */
export async function ensureSelfSignedCertificate(dataDir: string, domains: string[]): Promise<CertificatePaths> {
  const dir = join(dataDir, 'certs');
  const paths = { cert: join(dir, 'selfsigned.crt'), key: join(dir, 'selfsigned.key') };
  if (existsSync(paths.cert) && existsSync(paths.key) && coversDomains(paths.cert, domains)) return paths;
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const now = new Date();
  // Loaded only when a certificate is made: the X.509 library it brings costs ~10 MiB of memory.
  const { generate } = await import('selfsigned');
  const pems = await generate([{ name: 'commonName', value: domains[0]! }], {
    keyType: 'ec',
    curve: 'P-256',
    algorithm: 'sha256',
    notBeforeDate: new Date(now.getTime() - 60_000),
    notAfterDate: new Date(now.getTime() + 10 * 365 * 86_400_000),
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: domains.flatMap((d) => [{ type: 2 as const, value: d }, { type: 2 as const, value: `*.${d}` }]) },
    ],
  });
  writeFileSync(paths.key, pems.private, { mode: 0o600 });
  chmodSync(paths.key, 0o600);
  writeFileSync(paths.cert, pems.cert);
  return paths;
}

function coversDomains(certPath: string, domains: string[]): boolean {
  try {
    const cert = new X509Certificate(readFileSync(certPath));
    return domains.every((d) => cert.checkHost(d) !== undefined) && new Date(cert.validTo).getTime() > Date.now() + 86_400_000;
  } catch {
    return false;
  }
}

/**
 * The TLS contexts of the configured hosts: each host's own certificate, else the top-level
 * `tls` certificate, else a self-signed one generated under dataDir/certs (made once). Used by
 * the XMPP listeners (server/main.ts) and the admin HTTP listener (server/admin/http.ts).
 */
export async function loadTlsContexts(config: Config): Promise<TlsContexts> {
  const domains = config.hosts.map((h) => h.domain);
  let fallback: CertificatePaths | null = config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : null;
  const needsSelfSigned = !fallback && config.hosts.some((h) => !h.tls);
  if (needsSelfSigned) fallback = await ensureSelfSignedCertificate(config.dataDir, domains);
  const entries = config.hosts.map((h) => ({ domain: h.domain, paths: h.tls ?? fallback! }));
  return new TlsContexts(entries, { minVersion: config.tls.minVersion, ciphers: config.tls.ciphers });
}
