/**
 * Coalesces the writes a socket gets during one turn of the event loop into one system call (and,
 * on TLS, one record): the first write corks the socket, and all corked sockets are uncorked together
 * after the I/O callbacks of the turn (setImmediate). A burst of stanzas to one client (a roster push
 * and a presence, a flushed offline queue, many messages arriving at once) then costs one TLS record
 * and one write instead of one per stanza; a lone stanza waits at most until the end of the turn.
 *
 * It also tells apart output of this turn from output of earlier turns that is still waiting
 * (unsentFromEarlierTurns): a socket reports this turn's writes as pending until their completion
 * arrives on a later callback (on TLS always), so only the older part shows a peer that does not read.
 *
 * Never use it on a socket that is about to be handed to a TLSSocket (STARTTLS): the TLS layer writes
 * to the handle directly and would overtake what is still corked. Call flushNow() first.
 */
import type { Writable } from 'node:stream';

/**
 * Gathered output is sent once it reaches this much (a full TLS record), without waiting for the
 * end of the turn: the kernel's socket buffer, not this process, should hold a burst.
 */
export const COALESCE_MAX_BYTES = 16 * 1024;

const corked = new Set<Writable>();
/** Characters written to each socket in this turn (what writableLength counts for string writes). */
const writtenThisTurn = new Map<Writable, number>();
let scheduled = false;

function endTurn(): void {
  scheduled = false;
  for (const sock of corked) {
    if (!sock.destroyed) while (sock.writableCorked > 0) sock.uncork();
  }
  corked.clear();
  writtenThisTurn.clear();
}

/** Writes data, sending it with everything else written to the socket in this turn. */
export function coalescedWrite(sock: Writable, data: string): void {
  if (!scheduled) {
    scheduled = true;
    setImmediate(endTurn);
  }
  if (!corked.has(sock)) {
    sock.cork();
    corked.add(sock);
  }
  sock.write(data);
  writtenThisTurn.set(sock, (writtenThisTurn.get(sock) ?? 0) + data.length);
  if (sock.writableLength >= COALESCE_MAX_BYTES) flushNow(sock);
}

/** Sends what this turn corked on the socket now. */
export function flushNow(sock: Writable): void {
  if (!corked.delete(sock)) return;
  if (!sock.destroyed) while (sock.writableCorked > 0) sock.uncork();
}

/** Output written in earlier turns that the socket still holds: what the peer has not taken. */
export function unsentFromEarlierTurns(sock: Writable): number {
  return Math.max(0, sock.writableLength - (writtenThisTurn.get(sock) ?? 0));
}
