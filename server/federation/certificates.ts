/**
 * TLS for server-to-server links (RFC 6120 5 and 13.7, XEP-0178):
 * - each local domain presents its own certificate (hosts[].tls, else tls.cert/key, else the
 *   generated self-signed one), as a server on inbound links (chosen by SNI) and as a client
 *   certificate on outbound links, so the peer can offer SASL EXTERNAL;
 * - peers are checked against the trust store: Node's bundled roots, the system bundle
 *   (/etc/ssl/certs/ca-certificates.crt where it exists) and the configured CA file
 *   (`s2s.caFile`, for private federations and tests);
 * - a peer certificate counts as valid for a domain when its chain verifies (OpenSSL, including
 *   dates and purpose) and it names the domain (DNS-ID in subjectAltName, wildcard for one label;
 *   the subject CN only when there is no subjectAltName, RFC 6125 6.4.4).
 * The handshake itself never fails on an untrusted certificate: what it means is decided by the
 * stream (SASL EXTERNAL offered or not, dialback, `s2s.requireValidCertificates`).
 */
import { createSecureContext, rootCertificates, type DetailedPeerCertificate, type SecureContext, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import type { Config } from '../config/index.js';
import { ensureSelfSignedCertificate, type CertificatePaths } from '../net/tls.js';

export const SYSTEM_CA_BUNDLE = '/etc/ssl/certs/ca-certificates.crt';

export interface PeerCertificateStatus {
  /** A certificate was presented. */
  present: boolean;
  /** Its chain verifies against the trust store. */
  chainValid: boolean;
  /** OpenSSL's reason when the chain does not verify. */
  chainError?: string;
  /** The domains checked so far and whether the certificate names them. */
  names(domain: string): boolean;
}

/** The CA file for remote servers: an explicit override (tests), else s2s.caFile. */
export function configuredCaFile(config: Config, override?: string | null): string | null {
  return override || config.s2s.caFile;
}

export class S2sTls {
  private readonly contexts = new Map<string, SecureContext>();
  private readonly byCertPaths = new Map<string, SecureContext>();
  private readonly ca: string[];
  readonly trust: TrustStore;

  private constructor(
    private readonly config: Config,
    private readonly paths: Map<string, CertificatePaths>,
    private readonly fallback: CertificatePaths,
    caFile: string | null,
  ) {
    const ca = [...rootCertificates];
    if (existsSync(SYSTEM_CA_BUNDLE)) {
      try {
        ca.push(readFileSync(SYSTEM_CA_BUNDLE, 'utf8'));
      } catch {
        /* unreadable: the bundled roots remain */
      }
    }
    if (caFile) ca.push(readFileSync(caFile, 'utf8'));
    this.ca = ca;
    this.trust = new TrustStore(ca);
  }

  /** Certificates for every host; component domains use the default certificate. */
  static async create(config: Config, caFile: string | null): Promise<S2sTls> {
    let fallback: CertificatePaths | null = config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : null;
    if (!fallback) fallback = await ensureSelfSignedCertificate(config.dataDir, config.hosts.map((h) => h.domain));
    const paths = new Map<string, CertificatePaths>();
    for (const h of config.hosts) paths.set(h.domain, h.tls ?? fallback);
    return new S2sTls(config, paths, fallback, caFile);
  }

  /**
   * After a reload: the hosts' certificate paths from `config` (the fallback stays) and contexts made
   * anew from the files on first use, so a renewed certificate is presented to the next peer.
   */
  refresh(config: Config): void {
    for (const h of config.hosts) this.paths.set(h.domain, h.tls ?? (config.tls.cert && config.tls.key ? { cert: config.tls.cert, key: config.tls.key } : this.fallback));
    this.contexts.clear();
    this.byCertPaths.clear();
  }

  /** The context for a local domain: its certificate, the trust store, the configured TLS versions. */
  contextFor(domain: string | undefined): SecureContext {
    const key = domain ?? '';
    let ctx = this.contexts.get(key);
    if (ctx) return ctx;
    const paths = (domain && this.paths.get(domain)) || this.fallback;
    const cacheKey = `${paths.cert}\0${paths.key}`;
    ctx = this.byCertPaths.get(cacheKey);
    if (!ctx) {
      ctx = createSecureContext({
        cert: readFileSync(paths.cert),
        key: readFileSync(paths.key),
        ca: this.ca,
        minVersion: this.config.tls.minVersion,
        ciphers: this.config.tls.ciphers,
        sessionTimeout: 3600,
      });
      this.byCertPaths.set(cacheKey, ctx);
    }
    this.contexts.set(key, ctx);
    return ctx;
  }

  get defaultContext(): SecureContext {
    return this.contextFor(this.config.hosts[0]!.domain);
  }

  sniCallback = (servername: string, cb: (err: Error | null, ctx?: SecureContext) => void): void => {
    const name = servername.toLowerCase();
    cb(null, this.paths.has(name) ? this.contextFor(name) : this.defaultContext);
  };
}

/**
 * The trust store as X509 objects, for checking chains where OpenSSL's verdict is not available
 * (a server-side TLSSocket made for STARTTLS never sets `authorized`).
 */
export class TrustStore {
  private bySubject: Map<string, X509Certificate[]> | null = null;
  private fingerprints: Set<string> | null = null;

  constructor(private readonly pems: string[]) {}

  private load(): void {
    if (this.bySubject) return;
    this.bySubject = new Map();
    this.fingerprints = new Set();
    for (const bundle of this.pems) {
      for (const pem of bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? []) {
        try {
          const c = new X509Certificate(pem);
          if (this.fingerprints.has(c.fingerprint256)) continue;
          this.fingerprints.add(c.fingerprint256);
          const list = this.bySubject.get(c.subject) ?? [];
          list.push(c);
          this.bySubject.set(c.subject, list);
        } catch {
          /* not a certificate we can read: skip */
        }
      }
    }
  }

  /**
   * Whether the peer's chain (leaf first, as presented) leads to a trusted CA: every certificate
   * within its validity period, each signed by the next, intermediates marked as CAs.
   */
  verify(chain: X509Certificate[], at = new Date()): { ok: boolean; error?: string } {
    this.load();
    if (chain.length === 0) return { ok: false, error: 'no certificate' };
    for (let i = 0; i < chain.length; i++) {
      const c = chain[i]!;
      if (new Date(c.validFrom) > at || new Date(c.validTo) < at) return { ok: false, error: 'certificate not valid now' };
      if (this.fingerprints!.has(c.fingerprint256)) return { ok: true };
      const trustedIssuer = (this.bySubject!.get(c.issuer) ?? []).find((ca) => c.checkIssued(ca) && c.verify(ca.publicKey));
      if (trustedIssuer) {
        if (new Date(trustedIssuer.validTo) < at) return { ok: false, error: 'issuer expired' };
        return { ok: true };
      }
      const next = chain[i + 1];
      if (!next || !next.ca || !c.checkIssued(next) || !c.verify(next.publicKey)) {
        return { ok: false, error: i === 0 && c.checkIssued(c) ? 'self-signed certificate' : 'unable to get issuer certificate' };
      }
    }
    return { ok: false, error: 'unable to get issuer certificate' };
  }
}

/** The certificates the peer presented, leaf first. */
export function peerChain(socket: TLSSocket): X509Certificate[] {
  const out: X509Certificate[] = [];
  const seen = new Set<string>();
  let c: DetailedPeerCertificate | undefined = socket.getPeerCertificate(true) as DetailedPeerCertificate;
  while (c && c.raw && !seen.has(c.fingerprint256)) {
    seen.add(c.fingerprint256);
    try {
      out.push(new X509Certificate(c.raw));
    } catch {
      break;
    }
    c = c.issuerCertificate;
  }
  return out;
}

/** What the peer's certificate proves, for a TLS socket after its handshake. */
export function peerCertificateStatus(socket: TLSSocket, trust: TrustStore): PeerCertificateStatus {
  const cert = socket.getPeerX509Certificate();
  let chainValid = !!cert && socket.authorized;
  let error: string | Error | null | undefined = socket.authorizationError;
  if (cert && !chainValid) {
    const verdict = trust.verify(peerChain(socket));
    chainValid = verdict.ok;
    error = verdict.error ?? error;
  }
  const cache = new Map<string, boolean>();
  return {
    present: !!cert,
    chainValid,
    chainError: chainValid ? undefined : cert ? String(error ?? 'unknown') : 'no certificate',
    names(domain: string): boolean {
      if (!cert) return false;
      let ok = cache.get(domain);
      if (ok === undefined) {
        ok = cert.checkHost(domain, { subject: 'default', wildcards: true, partialWildcards: false }) !== undefined;
        cache.set(domain, ok);
      }
      return ok;
    },
  };
}

/** Valid for the domain: a trusted chain that names it. */
export function certificateValidFor(status: PeerCertificateStatus | null, domain: string): boolean {
  return !!status && status.chainValid && status.names(domain);
}
