/**
 * A throwaway certificate authority for federation tests: a CA certificate and, per domain, a
 * certificate it signed (subjectAltName DNS:<domain> and DNS:*.<domain>, EKU serverAuth and
 * clientAuth, since server-to-server TLS uses the same certificate as client and server); for an
 * IP address, subjectAltName IP:<address> (HTTPS tests that need a second host).
 * Also makes self-signed certificates (untrusted by anyone) for the dialback scenarios.
 * Uses the openssl command line (Debian's openssl package), ECDSA P-256, valid for two days.
 */
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { isIP } from 'node:net';

export interface CertFiles {
  cert: string;
  key: string;
}

export interface TestCa {
  dir: string;
  /** The CA certificate (PEM) to trust. */
  caFile: string;
  /** A certificate for `domain` signed by this CA. */
  issue(domain: string): CertFiles;
  /** A self-signed certificate for `domain` (no CA trusts it). */
  selfSigned(domain: string): CertFiles;
  remove(): void;
}

function openssl(args: string[], cwd: string): void {
  execFileSync('openssl', args, { cwd, stdio: ['ignore', 'ignore', 'pipe'] });
}

function leafExtensions(domain: string): string {
  return [
    'basicConstraints=critical,CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    isIP(domain) ? `subjectAltName=IP:${domain}` : `subjectAltName=DNS:${domain},DNS:*.${domain}`,
    '',
  ].join('\n');
}

export function createTestCa(name = 'Gatehouse Test CA'): TestCa {
  const dir = mkdtempSync(join(tmpdir(), 'gatehouse-ca-'));
  const caKey = join(dir, 'ca.key');
  const caFile = join(dir, 'ca.crt');
  openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', caKey], dir);
  writeFileSync(join(dir, 'ca.ext'), 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n');
  openssl(['req', '-x509', '-new', '-key', caKey, '-sha256', '-days', '2', '-subj', `/CN=${name}`, '-out', caFile, '-extensions', 'v3_ca', '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign'], dir);
  let serial = 1;
  const makeKey = (base: string) => {
    const key = join(dir, `${base}.key`);
    openssl(['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', key], dir);
    // PKCS#8, which every TLS library reads.
    openssl(['pkcs8', '-topk8', '-nocrypt', '-in', key, '-out', key + '.pk8'], dir);
    return key + '.pk8';
  };
  return {
    dir,
    caFile,
    issue(domain) {
      const base = `${domain}-${serial}`;
      const key = makeKey(base);
      const csr = join(dir, `${base}.csr`);
      const cert = join(dir, `${base}.crt`);
      const ext = join(dir, `${base}.ext`);
      writeFileSync(ext, leafExtensions(domain));
      openssl(['req', '-new', '-key', key, '-subj', `/CN=${domain}`, '-out', csr], dir);
      openssl(['x509', '-req', '-in', csr, '-CA', caFile, '-CAkey', caKey, '-set_serial', String(1000 + serial++), '-days', '2', '-sha256', '-extfile', ext, '-out', cert], dir);
      return { cert, key };
    },
    selfSigned(domain) {
      const base = `${domain}-self-${serial++}`;
      const key = makeKey(base);
      const cert = join(dir, `${base}.crt`);
      const ext = join(dir, `${base}.ext`);
      writeFileSync(ext, leafExtensions(domain));
      openssl(['req', '-x509', '-new', '-key', key, '-sha256', '-days', '2', '-subj', `/CN=${domain}`, '-out', cert, '-addext', `subjectAltName=DNS:${domain}`, '-addext', 'extendedKeyUsage=serverAuth,clientAuth'], dir);
      return { cert, key };
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}
