/**
 * The channel bindings (RFC 5056) a TLS connection offers to SCRAM-*-PLUS:
 *
 * - tls-exporter (RFC 9266), TLS 1.3 only: the preferred one, listed first.
 * - tls-server-end-point (RFC 5929): a hash of the server certificate; works on every version but
 *   binds the certificate only, not the connection.
 * - tls-unique (RFC 5929): the first Finished message of the latest handshake (the client's in a
 *   full handshake, the server's in an abbreviated one). RFC 9266 leaves it undefined for TLS 1.3
 *   and it is the weakest of the three (on TLS 1.2 it relies on the extended master secret,
 *   RFC 7627, against the triple-handshake attack). It is offered anyway because clients built on
 *   Python's ssl module (slixmpp, poezio) know no other type: they compute it from OpenSSL's
 *   Finished messages on TLS 1.3 too, and Node's socket gives the same bytes. Without it such
 *   clients fall back through failed -PLUS attempts to SCRAM without binding on every login.
 */
import type { TLSSocket } from 'node:tls';
import type { ChannelBinding } from './sasl.js';
import { tlsServerEndPoint } from '../net/tls.js';

/** The binding types this TLS connection supports, strongest first, and their data. */
export function tlsChannelBinding(sock: TLSSocket): ChannelBinding {
  const tls13 = sock.getProtocol() === 'TLSv1.3';
  // Every server context has a certificate, so tls-server-end-point is always offered; the
  // certificate is only decoded (getCertificate parses it into an object) when a client uses it.
  const types = tls13 ? ['tls-exporter', 'tls-server-end-point', 'tls-unique'] : ['tls-server-end-point', 'tls-unique'];
  return {
    types,
    data: (type) => {
      switch (type) {
        case 'tls-exporter':
          return tls13 ? sock.exportKeyingMaterial(32, 'EXPORTER-Channel-Binding', Buffer.alloc(0)) : null;
        case 'tls-server-end-point': {
          const cert = sock.getCertificate();
          return cert && 'raw' in cert && cert.raw ? tlsServerEndPoint(cert.raw) : null;
        }
        case 'tls-unique':
          // The server sees the client's Finished as the peer's; in a resumed session it sent first.
          return (sock.isSessionReused() ? sock.getFinished() : sock.getPeerFinished()) ?? null;
        default:
          return null;
      }
    },
  };
}
