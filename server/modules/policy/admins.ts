/**
 * Administrators (P21): named in the configuration (`admins`, bare JIDs). Only they may reach
 * admin features; every read of audit data (connection logs, failed logins, delivery failures,
 * session records) by an admin is itself recorded with auditRead().
 *
 * Today the server offers no admin feature over XMPP at all (no XEP-0050 ad-hoc commands, no
 * XEP-0133): administration happens on the command line and, later, on the admin HTTP interface,
 * both guarded by the operating system. auditRead() is what those audit commands call.
 */
import { userInfo } from 'node:os';
import type { Config } from '../../config/index.js';
import type { HookBus } from '../../core/hooks.js';
import type { Clock } from '../../../shared/clock.js';
import { Logger } from '../../../shared/logger.js';
import { Jid } from '../../../shared/jid.js';

declare module '../../core/hooks.js' {
  interface HookEvents {
    /** An administrator read audit data (P21); a persistent audit store may listen. */
    'audit/read': AuditRead;
  }
}

export interface AuditRead {
  at: Date;
  /** 'xmpp:admin@example.org' or 'os:username'. */
  reader: string;
  /** What was read, e.g. 'transport connection log (irc.example.org, last 48 hours)'. */
  what: string;
}

export type Reader = { jid: string } | { osUser: string };

/** Whether `jid` (any form) is one of the configured admins. */
export function isAdmin(config: Pick<Config, 'admins'>, jid: string | Jid): boolean {
  const parsed = typeof jid === 'string' ? Jid.tryParse(jid) : jid;
  if (!parsed || !parsed.local) return false;
  return config.admins.includes(parsed.bare);
}

/** The operating-system user running a command, for audit lines of CLI reads. */
export function osReader(): Reader {
  let name = process.env.SUDO_USER || process.env.USER || process.env.LOGNAME || '';
  try {
    name ||= userInfo().username;
  } catch {
    // no passwd entry (containers): keep what the environment says
  }
  return { osUser: name || `uid ${process.getuid?.() ?? '?'}` };
}

function readerName(reader: Reader): string {
  return 'jid' in reader ? `xmpp:${reader.jid}` : `os:${reader.osUser}`;
}

/**
 * Records that an admin read audit data: one log line ('audit data read', component 'audit') and
 * the 'audit/read' hook event. An XMPP reader that is not a configured admin is refused (throws):
 * callers check isAdmin() first, this is the last line of defence.
 */
export function auditRead(
  ctx: { log: Logger; clock: Clock; config?: Pick<Config, 'admins'>; hooks?: HookBus },
  reader: Reader,
  what: string,
): AuditRead {
  if ('jid' in reader && ctx.config && !isAdmin(ctx.config, reader.jid)) throw new Error(`${reader.jid} is not an administrator`);
  const record: AuditRead = { at: ctx.clock.now(), reader: readerName(reader), what: what.replace(/\s+/g, ' ').slice(0, 500) };
  ctx.log.child('audit').info('audit data read', { reader: record.reader, what: record.what, at: record.at.toISOString() });
  if (ctx.hooks) void ctx.hooks.emit('audit/read', record);
  return record;
}
