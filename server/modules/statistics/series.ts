/**
 * The statistics series (P12): their names, how they roll up, and the check that keeps personal
 * data out of a series key. Read by the collector (statistics.ts), `gatehouse stats`, the
 * statistics page and /metrics.
 */
import { isIP } from 'node:net';

export type Rollup = 'sum' | 'avg' | 'max';
export type Labels = Record<string, string>;

export interface SeriesInfo {
  rollup: Rollup;
  labels?: string[];
  doc: string;
}

/** Every series the server knows, with how it rolls up. Unknown names roll up as sums. */
export const SERIES: Record<string, SeriesInfo> = {
  'sessions.online': { rollup: 'avg', doc: 'Client sessions online, sampled each minute (hour/day: average).' },
  'sessions.online.peak': { rollup: 'max', doc: 'Client sessions online, sampled each minute (hour/day: highest sample).' },
  'sessions.closed': { rollup: 'sum', doc: 'Client sessions that ended.' },
  'sessions.seconds': { rollup: 'sum', doc: 'Total length of the sessions that ended, in seconds.' },
  'c2s.stanzas.in': { rollup: 'sum', doc: 'Stanzas received from bound client sessions.' },
  'c2s.stanzas.out': { rollup: 'sum', doc: 'Stanzas sent to bound client sessions.' },
  'c2s.bytes.in': { rollup: 'sum', doc: 'Bytes of stanzas received from bound client sessions.' },
  'c2s.bytes.out': { rollup: 'sum', doc: 'Bytes of stanzas sent to bound client sessions.' },
  logins: { rollup: 'sum', doc: 'Successful logins (resources bound).' },
  'logins.failed': { rollup: 'sum', doc: 'Failed client authentications.' },
  'components.auth.failed': { rollup: 'sum', doc: 'Failed component (XEP-0114) handshakes.' },
  registrations: { rollup: 'sum', doc: 'Accounts created.' },
  'registrations.failed': { rollup: 'sum', doc: 'In-band registrations refused.' },
  'accounts.deleted': { rollup: 'sum', doc: 'Accounts deleted.' },
  'stanzas.routed': { rollup: 'sum', labels: ['kind'], doc: 'Stanzas routed, by kind (message, presence, iq).' },
  'offline.stored': { rollup: 'sum', doc: 'Messages stored for offline users.' },
  'offline.delivered': { rollup: 'sum', doc: 'Stored offline messages delivered.' },
  'delivery.failed': { rollup: 'sum', labels: ['condition'], doc: 'Delivery failures, by error condition.' },
  // Reserved for federation (not built yet): s2s.links is a gauge the s2s module registers.
  's2s.links': { rollup: 'avg', labels: ['direction'], doc: 'Server-to-server links open (in, out), sampled each minute.' },
  's2s.links.opened': { rollup: 'sum', labels: ['direction'], doc: 'Server-to-server links established.' },
  'muc.rooms': { rollup: 'avg', doc: 'Group chat rooms (XEP-0045) in existence, sampled each minute.' },
  'muc.occupants': { rollup: 'avg', doc: 'Occupants of group chat rooms, sampled each minute.' },
  // Reserved for the transports: per network (irc, matrix, discord ...), never per user.
  'transport.connections': { rollup: 'sum', labels: ['network'], doc: 'Connections to a foreign network made by a transport.' },
  'transport.failures': { rollup: 'sum', labels: ['network'], doc: 'Failed connections to a foreign network.' },
  'transport.online': { rollup: 'avg', labels: ['network'], doc: 'Users connected to a foreign network, sampled each minute.' },
};

const NAME = /^[a-z][a-z0-9_.-]{0,63}$/;
const LABEL_VALUE = /^[a-z0-9][a-z0-9_.-]{0,39}$/;

/** The stored series key for a name and labels; throws if either could carry personal data. */
export function seriesKey(name: string, labels?: Labels): string {
  if (!NAME.test(name)) throw new TypeError(`bad statistics series name ${JSON.stringify(name)}`);
  if (!labels) return name;
  const keys = Object.keys(labels).sort();
  if (keys.length === 0) return name;
  const parts: string[] = [];
  for (const k of keys) {
    if (!NAME.test(k)) throw new TypeError(`bad statistics label name ${JSON.stringify(k)}`);
    const v = String(labels[k]).toLowerCase();
    if (!LABEL_VALUE.test(v) || isIP(v) !== 0) throw new TypeError(`statistics label ${k} has a value that is not a plain word`);
    parts.push(`${k}=${v}`);
  }
  return `${name}{${parts.join(',')}}`;
}

/** The series name of a key (`a.b{x=y}` -> `a.b`). */
export function seriesName(key: string): string {
  const brace = key.indexOf('{');
  return brace < 0 ? key : key.slice(0, brace);
}

/** How a stored series rolls up. */
export function rollupOf(key: string, extra?: ReadonlyMap<string, Rollup>): Rollup {
  const name = seriesName(key);
  return extra?.get(name) ?? SERIES[name]?.rollup ?? 'sum';
}
