/**
 * Pieces shared by the inbound (s2s-in.ts) and outbound (s2s-out.ts) server-to-server streams
 * (RFC 6120 4-6, XEP-0220, XEP-0178).
 *
 * Namespaces. The parser does not resolve prefixes: a top-level `<db:result>` arrives named
 * 'db:result' with the stream's default namespace filled in. `qualify` resolves the prefix
 * against the element's own declarations and the stream header's, so `<db:result>` (Prosody,
 * ejabberd) and `<result xmlns='jabber:server:dialback'>` are the same thing here.
 * Stanzas are jabber:server on the wire; inside the server they are jabber:client, like every
 * routed stanza (`fromServerWire`); on the way out the stanza namespace is left to the stream's
 * default (`forServerWire`, the same shallow substitution component links use).
 */
import { Element, x } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { forComponentWire } from '../streams/component.js';

export const NS_DIALBACK = 'jabber:server:dialback';
export const NS_DIALBACK_FEATURE = 'urn:xmpp:features:dialback';

export type S2sDirection = 'in' | 'out';
export type S2sMechanism = 'EXTERNAL' | 'dialback' | 'dialback+certificate';

declare module '../core/hooks.js' {
  interface HookEvents {
    /**
     * A server-to-server link proved a domain pair: on an inbound link the remote `domain` may now
     * send to `local`; on an outbound link `local` may now send to `domain`.
     */
    's2s/authenticated': { direction: S2sDirection; domain: string; local: string; mechanism: S2sMechanism; secure: boolean; at: Date };
    /** A link that had proved at least one pair is gone. */
    's2s/closed': { direction: S2sDirection; domain: string; condition?: string; at: Date };
  }
}

export const STANZA_NAMES = new Set(['message', 'presence', 'iq']);

export interface QualifiedName {
  local: string;
  ns: string | undefined;
}

/** The local name and namespace of a top-level element, resolving a prefix. */
export function qualify(el: Element, streamDecls: Record<string, string>): QualifiedName {
  const colon = el.name.indexOf(':');
  if (colon < 0) return { local: el.name, ns: el.attrs.xmlns };
  const prefix = el.name.slice(0, colon);
  return { local: el.name.slice(colon + 1), ns: el.attrs[`xmlns:${prefix}`] ?? streamDecls[prefix] };
}

/** The xmlns:* declarations of a stream header, by prefix. */
export function prefixDeclarations(attrs: Record<string, string>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(attrs)) if (k.startsWith('xmlns:')) out[k.slice(6)] = v;
  return out;
}

export interface ParsedHeader {
  ok: boolean;
  /** Why the header is unacceptable: a stream error condition. */
  condition?: 'invalid-namespace' | 'unsupported-version' | 'bad-format';
  from?: string;
  to?: string;
  id?: string;
  version?: string;
  /** The stream declares the dialback namespace (old servers signal support this way). */
  dialback: boolean;
  decls: Record<string, string>;
}

/** Checks a server stream header: stream:stream in the streams namespace, jabber:server content. */
export function parseServerHeader(name: string, attrs: Record<string, string>): ParsedHeader {
  const decls = prefixDeclarations(attrs);
  const colon = name.indexOf(':');
  const prefix = colon < 0 ? '' : name.slice(0, colon);
  const local = colon < 0 ? name : name.slice(colon + 1);
  const streamNs = prefix ? decls[prefix] : attrs.xmlns;
  const base = {
    from: attrs.from?.toLowerCase(),
    to: attrs.to?.toLowerCase(),
    id: attrs.id,
    version: attrs.version,
    dialback: Object.values(decls).includes(NS_DIALBACK),
    decls,
  };
  if (local !== 'stream' || streamNs !== NS.stream || attrs.xmlns !== NS.server) return { ok: false, condition: 'invalid-namespace', ...base };
  if (attrs.version !== undefined && !/^1\.\d+$/.test(attrs.version)) return { ok: false, condition: 'unsupported-version', ...base };
  return { ok: true, ...base };
}

export function streamHeaderXml(opts: { from?: string; to?: string; id?: string; version?: boolean }): string {
  const attrs = [
    `xmlns='${NS.server}'`,
    `xmlns:stream='${NS.stream}'`,
    `xmlns:db='${NS_DIALBACK}'`,
    opts.id ? `id='${opts.id}'` : '',
    opts.from ? `from='${escapeAttrValue(opts.from)}'` : '',
    opts.to ? `to='${escapeAttrValue(opts.to)}'` : '',
    opts.version === false ? '' : "version='1.0'",
  ].filter(Boolean);
  return `<?xml version='1.0'?><stream:stream ${attrs.join(' ')}>`;
}

function escapeAttrValue(s: string): string {
  return s.replace(/[&<>'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** A shallow stand-in for a routed stanza that takes the stream's jabber:server namespace. */
export function forServerWire(stanza: Element): Element {
  return forComponentWire(stanza);
}

/**
 * Turns a stanza received on a server stream into what local delivery expects: jabber:client on
 * the stanza, children that repeated jabber:server inherit it instead. Changes `el` in place.
 */
export function fromServerWire(el: Element): Element {
  el.attrs.xmlns = NS.client;
  for (const child of el.children) if (typeof child !== 'string' && child.attrs.xmlns === NS.server) delete child.attrs.xmlns;
  return el;
}

export function dialbackElement(name: 'result' | 'verify', attrs: Record<string, string | undefined>, key?: string): string {
  const el = x(`db:${name}`, attrs, key ?? null);
  return el.toString();
}

/** `<db:result type='error'>` / `<db:verify type='error'>` with a stanza error (XEP-0220 2.4). */
export function dialbackError(name: 'result' | 'verify', attrs: Record<string, string | undefined>, condition: string, text?: string): string {
  const err = x('error', { type: condition === 'remote-server-timeout' ? 'wait' : 'cancel' }, x(condition, { xmlns: NS.stanzas }));
  if (text) err.append(x('text', { xmlns: NS.stanzas, 'xml:lang': 'en' }, text));
  return x(`db:${name}`, { ...attrs, type: 'error' }, err).toString();
}

/** The condition of a received `<stream:error>`, for logs. */
export function streamErrorCondition(el: Element): string {
  for (const c of el.elements) if (c.name !== 'text' && c.xmlns === NS.streams) return c.name;
  return 'undefined-condition';
}

export function isValidIq(iq: Element): boolean {
  const type = iq.attrs.type;
  if (!iq.attrs.id) return false;
  if (type === 'get' || type === 'set') return iq.elements.length === 1;
  return type === 'result' || type === 'error';
}

/** A server stream may keep this many times a client's send buffer waiting before it is dropped. */
export const S2S_SEND_BUFFER_FACTOR = 8;

/** One server-to-server link as `gatehouse sessions --kind s2s` lists it (no user data). */
export interface S2sLinkInfo {
  direction: 'in' | 'out';
  /** The remote domains proved on the link. */
  remote: string[];
  since: Date;
  secure: boolean;
}
