/**
 * The multi-user chat service the MUC checks (issue #17) run against. The checks are written to
 * XEP-0045 and the XEPs around it, not to Gatehouse's implementation; to show that a check itself
 * is right, the same file runs against Debian's Prosody MUC component:
 *
 *   GATEHOUSE_MUC_TARGET=prosody node scripts/run-tests.js muc-slixmpp muc-xmppjs muc-prosody-federation muc-restart
 *
 * Default (and in CI) is Gatehouse, whose service is at conference.<host>, enabled by default.
 * Either way the host is "localhost", the service "conference.localhost", and accounts are created
 * through the server's own means (in-band registration for Gatehouse, prosodyctl for Prosody).
 *
 * requireMucService() is called before the checks: while Gatehouse has no MUC service, every check
 * fails with one clear message instead of timing out one by one or being skipped.
 */
import { x, type Element } from '../../shared/xml/element.js';
import { NS } from '../../shared/ns.js';
import { startTestServer, type TestServer } from './server.js';
import { startProsody, type Prosody } from './prosody.js';
import { createTestCa, type TestCa } from './test-ca.js';
import { TestClient } from './xmpp-client.js';

export type MucTargetKind = 'gatehouse' | 'prosody';

export const MUC_TARGET_VARIABLE = 'GATEHOUSE_MUC_TARGET';

export function mucTargetKind(value = process.env[MUC_TARGET_VARIABLE] ?? 'gatehouse'): MucTargetKind {
  if (value !== 'gatehouse' && value !== 'prosody') throw new Error(`${MUC_TARGET_VARIABLE}: "${value}" is neither gatehouse nor prosody`);
  return value;
}

export interface MucTarget {
  kind: MucTargetKind;
  /** The user host ("localhost") and the MUC service ("conference.localhost"). */
  domain: string;
  muc: string;
  c2sPort: number;
  /** The SASL mechanism slixmpp is told to use ("auto": its own choice). */
  mechanism: string;
  /** Creates name@domain with the password pw-<name> (once; later calls return at once). */
  account(name: string): Promise<{ jid: string; password: string }>;
  /** A raw test client logged in as name (the account created if needed). */
  login(name: string, resource?: string): Promise<TestClient>;
  gatehouse?: TestServer;
  prosody?: Prosody;
  /** What the server logged, for failure messages. */
  log(): string;
  stop(): Promise<void>;
}

export interface MucTargetOptions {
  /** Gatehouse configuration merged over the test defaults (e.g. a muc section). */
  gatehouseConfig?: Record<string, unknown>;
  /** Options of Prosody's muc component (Lua values). */
  prosodyMucOptions?: Record<string, string | number | boolean>;
}

export async function startMucTarget(opts: MucTargetOptions = {}, kind = mucTargetKind()): Promise<MucTarget> {
  const domain = 'localhost';
  const muc = `conference.${domain}`;
  const created = new Set<string>();
  const clients: TestClient[] = [];
  if (kind === 'gatehouse') {
    const ts = await startTestServer({ logLevel: 'info', config: opts.gatehouseConfig ?? {} });
    const target: MucTarget = {
      kind,
      domain,
      muc,
      c2sPort: ts.port,
      mechanism: 'auto',
      gatehouse: ts,
      async account(name) {
        const password = `pw-${name}`;
        if (!created.has(name)) {
          // In-band registration: verifiers for every SCRAM variant a client may choose.
          const c = await ts.client();
          const reg = await c.register(name, password);
          c.destroy();
          if (reg.attrs.type !== 'result') throw new Error(`registering ${name}: ${reg}`);
          created.add(name);
        }
        return { jid: `${name}@${domain}`, password };
      },
      async login(name, resource) {
        const { password } = await target.account(name);
        const c = await ts.client();
        await c.login(name, password, { resource, mechanism: 'SCRAM-SHA-1' });
        clients.push(c);
        return c;
      },
      log: () => ts.logLines.slice(-80).join('\n'),
      async stop() {
        for (const c of clients) c.destroy();
        await ts.stop();
      },
    };
    return target;
  }
  const ca: TestCa = createTestCa();
  const prosody = await startProsody({
    domain,
    cert: ca.selfSigned(domain),
    secureAuth: false,
    components: [{ domain: muc, module: 'muc', options: { restrict_room_creation: false, ...(opts.prosodyMucOptions ?? {}) } }],
  });
  const target: MucTarget = {
    kind,
    domain,
    muc,
    c2sPort: prosody.c2sPort,
    // slixmpp's own choice would be a -PLUS variant with tls-unique, which TLS 1.3 lacks.
    mechanism: 'SCRAM-SHA-1',
    prosody,
    async account(name) {
      const password = `pw-${name}`;
      if (!created.has(name)) {
        prosody.register(name, password);
        created.add(name);
      }
      return { jid: `${name}@${domain}`, password };
    },
    async login(name, resource) {
      const { password } = await target.account(name);
      const c = await TestClient.connect({ port: prosody.c2sPort, domain });
      await c.login(name, password, { resource, mechanism: 'SCRAM-SHA-1' });
      clients.push(c);
      return c;
    },
    log: () => prosody.log().split('\n').filter((l) => /muc|conference|error|warn/i.test(l)).slice(-80).join('\n'),
    async stop() {
      for (const c of clients) c.destroy();
      await prosody.stop();
      ca.remove();
    },
  };
  return target;
}

/**
 * Why `muc` is no text conference service (XEP-0045 6.1: disco#info with identity conference/text
 * and feature http://jabber.org/protocol/muc), or null when it is one. The checks run it once in
 * before() and fail each test with the reason in beforeEach(): every check fails, clearly and fast.
 */
export async function mucServiceMissing(target: MucTarget, client: TestClient): Promise<string | null> {
  try {
    await requireMucService(target, client);
    return null;
  } catch (err) {
    return err instanceof Error ? err.message : String(err);
  }
}

async function requireMucService(target: MucTarget, client: TestClient): Promise<Element> {
  const reply = await client.iq(x('iq', { type: 'get', to: target.muc }, x('query', { xmlns: NS.discoInfo })), 15_000).catch((e: Error) => e);
  const missing = `${target.kind}: no multi-user chat service at ${target.muc} (issue #17: the MUC module is not there yet, or not enabled by default)`;
  if (reply instanceof Error) throw new Error(`${missing}; disco#info was not answered: ${reply.message.slice(0, 300)}`);
  const query = reply.getChild('query', NS.discoInfo);
  const conference = query?.getChildren('identity').some((i) => i.attrs.category === 'conference' && i.attrs.type === 'text');
  const feature = query?.getChildren('feature').some((f) => f.attrs.var === MUC.base);
  if (reply.attrs.type !== 'result' || !conference || !feature) throw new Error(`${missing}; disco#info answered: ${reply.toString().slice(0, 500)}`);
  return reply;
}

/** The MUC namespaces (XEP-0045 and the XEPs the checks use). */
export const MUC = {
  base: 'http://jabber.org/protocol/muc',
  user: 'http://jabber.org/protocol/muc#user',
  admin: 'http://jabber.org/protocol/muc#admin',
  owner: 'http://jabber.org/protocol/muc#owner',
  roomconfig: 'http://jabber.org/protocol/muc#roomconfig',
  roominfo: 'http://jabber.org/protocol/muc#roominfo',
  conference: 'jabber:x:conference',
  occupantId: 'urn:xmpp:occupant-id:0',
  stanzaId: 'urn:xmpp:sid:0',
  moderate: 'urn:xmpp:message-moderate:1',
  retract: 'urn:xmpp:message-retract:1',
} as const;

/** The status codes of a MUC presence or message (<x xmlns=muc#user><status code/>), as numbers, sorted. */
export function statusCodes(el: Element): number[] {
  const xEl = el.getChild('x', MUC.user);
  return (xEl?.getChildren('status') ?? []).map((s) => Number(s.attrs.code)).sort((a, b) => a - b);
}

/** The <item/> of a MUC presence (affiliation, role, jid, nick). */
export function mucItem(el: Element): Record<string, string | undefined> | undefined {
  return el.getChild('x', MUC.user)?.getChild('item')?.attrs;
}
