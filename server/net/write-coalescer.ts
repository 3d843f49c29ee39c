/**
 * Coalesces the writes a socket gets during one turn of the event loop into one system call (and,
 * on TLS, one record): the first write corks the socket, and all corked sockets are uncorked together
 * after the I/O callbacks of the turn (setImmediate). A burst of stanzas to one client (a roster push
 * and a presence, a flushed offline queue, many messages arriving at once) then costs one TLS record
 * and one write instead of one per stanza; a lone stanza waits at most until the end of the turn.
 *
 * Never use it on a socket that is about to be handed to a TLSSocket (STARTTLS): the TLS layer writes
 * to the handle directly and would overtake what is still corked. Call flushNow() first.
 */
import type { Writable } from 'node:stream';

const corked = new Set<Writable>();
let scheduled = false;

function uncorkAll(): void {
  scheduled = false;
  for (const sock of corked) {
    if (!sock.destroyed) while (sock.writableCorked > 0) sock.uncork();
  }
  corked.clear();
}

/** Writes data, sending it with everything else written to the socket in this turn. */
export function coalescedWrite(sock: Writable, data: string): void {
  if (!corked.has(sock)) {
    sock.cork();
    corked.add(sock);
    if (!scheduled) {
      scheduled = true;
      setImmediate(uncorkAll);
    }
  }
  sock.write(data);
}

/** Sends what this turn corked on the socket now. */
export function flushNow(sock: Writable): void {
  if (!corked.delete(sock)) return;
  if (!sock.destroyed) while (sock.writableCorked > 0) sock.uncork();
}
