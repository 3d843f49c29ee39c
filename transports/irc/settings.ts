/**
 * The per-server registration form of the IRC transport and its parsing. Every field is per user
 * and per IRC server (one registration for each `%server` a user talks to).
 */
import { LegacyAuthError, type Credentials, type RegistrationField } from '../kit/adapter.js';

export const IRC_REGISTRATION_FIELDS: RegistrationField[] = [
  { name: 'nick', label: 'Nickname', type: 'text-single', required: true, secret: false, description: 'Your IRC nickname on this server.' },
  { name: 'username', label: 'User name (ident)', type: 'text-single', required: false, secret: false, description: 'The IRC user name; defaults to the nickname.' },
  { name: 'realname', label: 'Real name', type: 'text-single', required: false, secret: false, description: 'Shown in WHOIS; defaults to the nickname.' },
  { name: 'password', label: 'Server password', type: 'text-private', required: false, secret: true, description: 'The connection password (PASS), if the server needs one.' },
  { name: 'saslAccount', label: 'SASL account', type: 'text-single', required: false, secret: false, description: 'Services account for SASL PLAIN; defaults to the nickname.' },
  { name: 'saslPassword', label: 'SASL password', type: 'text-private', required: false, secret: true, description: 'Log in to services with SASL PLAIN while connecting.' },
  {
    name: 'saslExternal',
    label: 'Log in with a client certificate (SASL EXTERNAL)',
    type: 'boolean',
    required: false,
    secret: false,
    default: 'false',
    description: 'The gateway makes a certificate for you on this server and tells you its fingerprint; add it to your services account (e.g. NickServ CERT ADD). Needs TLS.',
  },
  { name: 'nickservPassword', label: 'NickServ password', type: 'text-private', required: false, secret: true, description: 'Sent as "IDENTIFY" to NickServ after connecting (when SASL is not used).' },
  { name: 'port', label: 'Port', type: 'text-single', required: false, secret: false, description: 'One port to use (with "Use TLS"); empty: the TLS ports, then the plain ports.' },
  { name: 'tls', label: 'Use TLS', type: 'boolean', required: false, secret: false, default: 'true' },
  { name: 'tlsPorts', label: 'TLS ports', type: 'text-single', required: false, secret: false, description: 'Tried first, in order (default 6697).' },
  {
    name: 'ports',
    label: 'Plain (unencrypted) ports',
    type: 'text-single',
    required: false,
    secret: false,
    description: 'Tried after every TLS port failed (default: none). Anyone between the gateway and the server can read and change a plain connection.',
  },
  {
    name: 'verifyCertificate',
    label: 'Verify the TLS certificate',
    type: 'boolean',
    required: false,
    secret: false,
    default: 'true',
    description: 'Turning this off lets anyone between the gateway and the server read and change the connection, passwords included.',
  },
  {
    name: 'certificateFingerprint',
    label: 'Trusted certificate fingerprint (SHA-256)',
    type: 'text-single',
    required: false,
    secret: false,
    description: 'Trust exactly this certificate (e.g. a self-signed one) instead of a certificate authority.',
  },
  {
    name: 'afterConnect',
    label: 'IRC commands after connecting',
    type: 'text-multi',
    required: false,
    secret: true,
    description: 'Raw IRC commands sent one by one once connected, e.g. PRIVMSG NickServ :IDENTIFY password (kept like a password: never shown again; leave empty to keep them).',
  },
  { name: 'autojoin', label: 'Channels to join automatically', type: 'text-single', required: false, secret: false, description: 'Comma-separated, e.g. #gatehouse,#help' },
  {
    name: 'stayConnected',
    label: 'Stay connected while I am offline (bouncer)',
    type: 'boolean',
    required: false,
    secret: false,
    default: 'false',
    description:
      'Keeps the connection and your channels when no client of yours is online: private messages wait in your offline storage, channel lines are kept in the gateway\'s memory (limited, lost at a restart) and come as history when you join again. After a restart of the gateway it connects again by itself and joins your automatic channels.',
  },
];

export interface IrcServerSettings {
  host: string;
  /** The first of `attempts`. */
  port: number;
  tls: boolean;
  /** Where to connect, in order: the TLS ports first, plain ones only where the settings name them. */
  attempts: { port: number; tls: boolean }[];
  verifyCertificate: boolean;
  /** Normalised: upper-case hex pairs joined by ':' (as Node's X509 fingerprint256). */
  certificateFingerprint: string | null;
  nick: string;
  username: string;
  realname: string;
  password: string | null;
  sasl: { account: string; password: string } | null;
  nickservPassword: string | null;
  autojoin: string[];
  /** SASL EXTERNAL with this client certificate (stored in the vault with the registration). */
  clientCertificate: { cert: string; key: string } | null;
  saslExternal: boolean;
  /** Raw commands sent once connected (Biboumi's after-connect commands). */
  afterConnect: string[];
  /** What identd answers for this connection (from the kit's pseudonym; never the JID). */
  ident?: string | null;
  /** WEBIRC for operators with an agreement with the network: a per-user pseudonymous host and address, never the user's IP. */
  webirc?: { password: string; gateway: string; hostname: string; address: string } | null;
}

/** Parses an XEP-0004 boolean ("1", "true", "0", "false"); undefined/empty gives the default. */
export function parseBoolean(value: string | undefined, def: boolean): boolean {
  if (value === undefined || value.trim() === '') return def;
  const v = value.trim().toLowerCase();
  if (v === '1' || v === 'true' || v === 'yes' || v === 'on') return true;
  if (v === '0' || v === 'false' || v === 'no' || v === 'off') return false;
  throw new LegacyAuthError(`not a boolean: ${value}`);
}

/** "ab:cd…", "ABCD…" or "sha256/ABCD…" → "AB:CD:…" (32 bytes). */
export function normaliseFingerprint(value: string): string {
  const hex = value.trim().replace(/^sha-?256[:/ ]?/i, '').replace(/[\s:]/g, '').toUpperCase();
  if (!/^[0-9A-F]{64}$/.test(hex)) throw new LegacyAuthError('the certificate fingerprint must be a SHA-256 fingerprint (64 hex digits)');
  return hex.match(/../g)!.join(':');
}

function parsePort(value: string): number {
  const port = Number(value.trim());
  if (!Number.isInteger(port) || port < 1 || port > 65535) throw new LegacyAuthError('a port must be a number from 1 to 65535');
  return port;
}

/** "6697, 7000" → [6697, 7000]; empty or missing → null (the default). */
function parsePorts(value: string | undefined): number[] | null {
  const parts = (value ?? '').split(/[\s,;]+/).filter((p) => p !== '');
  if (!parts.length) return null;
  if (parts.length > 8) throw new LegacyAuthError('at most 8 ports');
  return [...new Set(parts.map(parsePort))];
}

/** Commands that would confuse the connection's state if sent raw (registration, capability negotiation, quitting). */
const REFUSED_RAW = new Set(['PASS', 'USER', 'CAP', 'AUTHENTICATE', 'QUIT', 'WEBIRC', 'SERVER']);

/** Why a raw IRC command cannot be sent (in words for the user, never echoing the line), or null. */
export function rawLineProblem(line: string, maxBytes: number): string | null {
  if (/[\r\n\0]/.test(line)) return 'a raw command is one line';
  if (Buffer.byteLength(line, 'utf8') > maxBytes) return `a raw command is at most ${maxBytes} bytes`;
  const command = /^([A-Za-z]+|\d{3})(?: |$)/.exec(line)?.[1]?.toUpperCase();
  if (!command) return 'a raw command starts with an IRC command, e.g. WHOIS nick';
  if (REFUSED_RAW.has(command)) return `${command} cannot be sent as a raw command through the gateway`;
  return null;
}

function parseAfterConnect(value: string | undefined): string[] {
  const lines = (value ?? '').split(/\r?\n/).map((l) => l.trim()).filter((l) => l !== '');
  if (lines.length > 20) throw new LegacyAuthError('at most 20 commands after connecting');
  for (const [i, l] of lines.entries()) {
    const problem = rawLineProblem(l, 510);
    if (problem) throw new LegacyAuthError(`command ${i + 1} after connecting: ${problem}`);
  }
  return lines;
}

/** Characters a nick may not contain anywhere (wire syntax and target lists). */
const BAD_NICK = /[\s\x00-\x1f,*?!@:]/;

export function isValidNick(nick: string): boolean {
  return nick.length > 0 && nick.length <= 64 && !BAD_NICK.test(nick) && !/^[#&+!$~%:0-9-]/.test(nick);
}

export function isValidChannel(name: string): boolean {
  return /^[#&+!][^\s\x00-\x1f,:]{1,199}$/u.test(name) && !name.includes('\x07');
}

const USERNAME_BAD = /[\s\x00-\x1f@:]/g;

/** Builds the settings of one server from the registration values; throws LegacyAuthError on bad values (never echoing a secret). */
export function parseServerSettings(server: string | undefined, creds: Credentials): IrcServerSettings {
  const host = (server ?? '').trim();
  if (!host || /[\s/]/.test(host)) throw new LegacyAuthError('an IRC server host name is required');
  const nick = (creds.nick ?? '').trim();
  if (!isValidNick(nick)) throw new LegacyAuthError('a valid IRC nickname is required');
  const tls = parseBoolean(creds.tls, true);
  const verifyCertificate = parseBoolean(creds.verifyCertificate, true);
  let attempts: { port: number; tls: boolean }[];
  if (creds.port !== undefined && creds.port.trim() !== '') {
    attempts = [{ port: parsePort(creds.port), tls }];
  } else {
    const tlsPorts = parsePorts(creds.tlsPorts) ?? [6697];
    const plainPorts = parsePorts(creds.ports) ?? [];
    attempts = [...(tls ? tlsPorts.map((p) => ({ port: p, tls: true })) : []), ...plainPorts.filter((p) => !tls || !tlsPorts.includes(p)).map((p) => ({ port: p, tls: false }))];
    if (!attempts.length) attempts = [{ port: 6667, tls: false }];
  }
  const { port } = attempts[0]!;
  const username = ((creds.username ?? '').trim() || nick).replace(USERNAME_BAD, '').slice(0, 32) || 'gatehouse';
  const realname = ((creds.realname ?? '').replace(/[\r\n\x00]/g, ' ').trim() || nick).slice(0, 200);
  const secret = (v: string | undefined) => (v !== undefined && v !== '' ? v : null);
  const password = secret(creds.password);
  const saslPassword = secret(creds.saslPassword);
  const nickservPassword = secret(creds.nickservPassword);
  for (const s of [password, saslPassword, nickservPassword]) {
    if (s !== null && /[\r\n\x00]/.test(s)) throw new LegacyAuthError('a password contains a line break or NUL character');
  }
  if (password !== null && (/\s/.test(password) || password.startsWith(':'))) {
    // PASS takes one middle parameter on many servers: spaces and a leading colon do not survive.
    throw new LegacyAuthError('the server password must not contain spaces or begin with ":"');
  }
  const saslAccount = (creds.saslAccount ?? '').trim() || nick;
  const autojoin = (creds.autojoin ?? '')
    .split(/[\s,]+/)
    .map((c) => c.trim())
    .filter((c) => c.length > 0);
  for (const c of autojoin) if (!isValidChannel(c)) throw new LegacyAuthError(`not a channel name: ${c}`);
  return {
    host,
    port,
    tls: attempts[0]!.tls,
    attempts,
    verifyCertificate,
    certificateFingerprint: creds.certificateFingerprint?.trim() ? normaliseFingerprint(creds.certificateFingerprint) : null,
    nick,
    username,
    realname,
    password,
    sasl: saslPassword !== null ? { account: saslAccount, password: saslPassword } : null,
    saslExternal: parseBoolean(creds.saslExternal, false),
    afterConnect: parseAfterConnect(creds.afterConnect),
    clientCertificate: creds.clientCertificate && creds.clientKey ? { cert: creds.clientCertificate, key: creds.clientKey } : null,
    nickservPassword,
    autojoin,
  };
}
