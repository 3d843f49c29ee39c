/**
 * Homeserver discovery (client-server API, "Server Discovery", well-known URI): users name their
 * server (`matrix.org`, or nothing: the server name of their user ID), and the client API's base
 * URL comes from https://<server name>/.well-known/matrix/client (`m.homeserver.base_url`),
 * checked with GET /_matrix/client/versions. An explicit URL (with a scheme) is used as given.
 *
 * Following the spec: a 404 for the well-known file means "none": the server name itself is tried
 * as the base URL; any other failure, a body that is not JSON or has no `m.homeserver.base_url`,
 * a base URL that is not one, or one where /versions does not answer is a clear error naming the
 * server (never a silent fallback to a different server).
 *
 * Loopback server names (localhost, 127.x, ::1) are fetched over plain HTTP: traffic that does not
 * leave the machine (local test homeservers); every other name over HTTPS only.
 */
import { LegacyAuthError, LegacyNetworkError } from '../kit/adapter.js';
import { homeserverString, isLoopback } from './settings.js';

/** Outcome of a discovery: the base URL, and whether a well-known file named it. */
export interface Discovered {
  baseUrl: string;
  viaWellKnown: boolean;
}

const SERVER_NAME = /^(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+)(?::\d{1,5})?$/;

/** Whether the text names a server (host[:port]) rather than giving a URL. */
export function isServerName(text: string): boolean {
  return SERVER_NAME.test(text) && !/^[a-z][a-z0-9+.-]*:\/\//i.test(text);
}

function originFor(serverName: string): URL {
  const probe = new URL(`https://${serverName}`);
  if (isLoopback(probe)) probe.protocol = 'http:';
  return probe;
}

async function getJson(fetchFn: typeof fetch, url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetchFn(url, { headers: { Accept: 'application/json' }, redirect: 'follow' });
  const text = await res.text();
  let body: unknown = undefined;
  try {
    body = text ? JSON.parse(text) : undefined;
  } catch {
    body = undefined;
  }
  return { status: res.status, body };
}

function reachError(what: string, err: unknown): LegacyNetworkError {
  const name = (err as { name?: string } | null)?.name;
  const why = name === 'TimeoutError' || name === 'AbortError' ? 'no answer in time' : 'cannot connect';
  return new LegacyNetworkError(`${what}: ${why}`);
}

/** Checks that `baseUrl` answers GET /_matrix/client/versions like a homeserver. */
export async function checkVersions(fetchFn: typeof fetch, baseUrl: string): Promise<void> {
  const host = new URL(baseUrl).host;
  let got: { status: number; body: unknown };
  try {
    got = await getJson(fetchFn, `${baseUrl}/_matrix/client/versions`);
  } catch (err) {
    throw reachError(`cannot reach ${host}`, err);
  }
  const versions = (got.body as { versions?: unknown } | undefined)?.versions;
  if (got.status !== 200 || !Array.isArray(versions)) {
    throw new LegacyNetworkError(`${host} is not a Matrix homeserver (GET /_matrix/client/versions answered ${got.status === 200 ? 'without a list of versions' : `HTTP ${got.status}`})`);
  }
}

/** Resolves a server name to its client API base URL through the well-known file, and checks it. */
export async function discoverHomeserver(serverName: string, fetchFn: typeof fetch): Promise<Discovered> {
  if (!isServerName(serverName)) throw new LegacyAuthError(`not a Matrix server name: ${serverName.slice(0, 100)}`);
  const origin = originFor(serverName);
  const wellKnown = `${origin.protocol}//${origin.host}/.well-known/matrix/client`;
  let got: { status: number; body: unknown };
  try {
    got = await getJson(fetchFn, wellKnown);
  } catch (err) {
    throw reachError(`cannot look up the homeserver of ${serverName} (${wellKnown})`, err);
  }
  if (got.status === 404) {
    const baseUrl = homeserverString(origin);
    await checkVersions(fetchFn, baseUrl).catch((err: Error) => {
      throw new LegacyNetworkError(`${serverName} has no /.well-known/matrix/client and is not a homeserver itself (${err.message}); give the homeserver URL`);
    });
    return { baseUrl, viaWellKnown: false };
  }
  if (got.status !== 200) throw new LegacyNetworkError(`the homeserver lookup for ${serverName} failed: ${wellKnown} answered HTTP ${got.status}`);
  if (!got.body || typeof got.body !== 'object' || Array.isArray(got.body)) {
    throw new LegacyNetworkError(`the homeserver lookup for ${serverName} failed: ${wellKnown} is not a JSON object`);
  }
  const hs = (got.body as Record<string, unknown>)['m.homeserver'];
  const raw = hs && typeof hs === 'object' ? (hs as Record<string, unknown>).base_url : undefined;
  if (typeof raw !== 'string' || !raw.trim()) {
    throw new LegacyNetworkError(`the homeserver lookup for ${serverName} failed: ${wellKnown} has no m.homeserver.base_url`);
  }
  let url: URL;
  try {
    url = new URL(raw.trim());
  } catch {
    throw new LegacyNetworkError(`the homeserver lookup for ${serverName} failed: m.homeserver.base_url is not a URL`);
  }
  if ((url.protocol !== 'https:' && url.protocol !== 'http:') || url.username || url.password) {
    throw new LegacyNetworkError(`the homeserver lookup for ${serverName} failed: m.homeserver.base_url is not an http(s) URL`);
  }
  url.search = '';
  url.hash = '';
  const baseUrl = homeserverString(url);
  await checkVersions(fetchFn, baseUrl).catch((err: Error) => {
    throw new LegacyNetworkError(`${serverName} names ${url.host} as its homeserver, but ${err.message}`);
  });
  return { baseUrl, viaWellKnown: true };
}
