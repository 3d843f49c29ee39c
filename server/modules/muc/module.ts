/**
 * Multi-user chat (XEP-0045) on `conference.<host>` (`muc.domain`), a domain this server answers
 * for itself: the router declares it a service domain (core/router.ts), so local users reach it
 * like the upload service and other servers reach it over federation (s2s treats it as local).
 *
 * - Rooms live in memory (room.ts); persistent ones store their configuration and affiliations
 *   (storage.ts), never a message, subject or occupant. History is the last messages per room,
 *   in memory, for at most `muc.historyMaxAge` (history.ts).
 * - Entering, leaving, nick changes: occupants.ts; messages, subject, PMs, invitations,
 *   moderation: messages.ts; roles, affiliations, the owner form, destruction: admin.ts; disco:
 *   disco.ts; IQs to rooms and occupants, self-ping: iq.ts.
 * - Limits: rooms per owner, occupants per room, message size and rate (config.ts).
 * - Privacy: real JIDs only as the room's `whois` allows; hidden rooms are in no listing; an
 *   account's affiliations go with the account (foreign key) and into its export (account-data.ts);
 *   unused persistent rooms are deleted by the retention class `muc-rooms`.
 * - Cluster mode: each room runs on one node, stanzas for it are forwarded there (cluster.ts).
 */
import type { GatehouseModule } from '../../core/context.js';
import type { StanzaEvent } from '../../core/hooks.js';
import { mucConfigSection } from './config.js';
import { mucStorage } from './storage.js';
import { MucService } from './service.js';
import { onPresence } from './occupants.js';
import { onMessage } from './messages.js';
import { IqHandler } from './iq.js';
import { mucRoomsClass } from './retention.js';
import { mucAccountData } from './account-data.js';
import { mucCommands, mucControl } from './commands.js';
import { mucRoomsPage } from './admin-page.js';
import { MucCluster } from './cluster.js';

declare module '../../core/services.js' {
  interface Services {
    /** The chat service (rooms in memory), for the admin page and commands. */
    muc: MucService;
  }
}

export function createMucModule(): GatehouseModule {
  const cleanup: (() => void)[] = [];
  let service: MucService | null = null;
  return {
    name: 'muc',
    specs: [
      {
        id: 'XEP-0045',
        version: '1.35.1',
        status: 'partial',
        note: 'service at conference.<host>; temporary and persistent rooms, instant and reserved creation, roles and affiliations with their lists, kick, ban, voice, mediated invitations, nick changes, private messages, destruction; room registration (7.10) reserves a nick; muc#roomconfig_presencebroadcast (roles whose presence the others see; not in muc#roominfo, which has no such field); status 104 only for non-privacy configuration changes, 172/173 for anonymity, none for a form that changed nothing; 101 by message to a user whose affiliation changed while not in the room; 332 to every occupant, local or remote, when the server stops; no logging (170/171 never sent); unavailable members are never shown (102/103 never sent); in cluster mode each room runs on one node, reachable from all',
      },
      { id: 'XEP-0307', version: '0.1', status: 'complete', note: 'unique room names from the service' },
      { id: 'XEP-0359', version: '0.7.0', status: 'complete', note: 'stanza ids on group chat messages, by the room' },
      { id: 'XEP-0421', version: '0.2.0', status: 'complete', note: 'occupant ids in room presence and messages, stable across restarts' },
      { id: 'XEP-0410', version: '1.1.0', status: 'complete', note: 'self-ping answered by the room (muc#self-ping-optimization)' },
      { id: 'XEP-0425', version: '0.3.0', status: 'complete', note: 'urn:xmpp:message-moderate:1; the retraction replaces the message in the room history' },
      { id: 'XEP-0249', version: '1.2', status: 'complete', note: 'direct invitations pass between users untouched; rooms send jabber:x:conference with mediated ones' },
      { id: 'XEP-0486', version: '0.1.0', status: 'partial', note: 'room avatar through vCard-temp on the room JID, hash in muc#roominfo_avatarhash' },
    ],
    clauses: ['P11', 'P12', 'P23'],
    provides: ['muc'],
    config: mucConfigSection,
    storage: mucStorage,
    retention: [mucRoomsClass],
    accountData: mucAccountData,
    commands: { cli: Object.values(mucCommands), control: mucControl(() => service) },
    admin: { pages: [mucRoomsPage] },
    async load(ctx) {
      const s = new MucService(ctx, ctx.storage.repository(mucStorage));
      service = s;
      const iq = new IqHandler(s);
      const { hooks } = ctx;
      const handlers: Record<string, (e: StanzaEvent) => Promise<void>> = {
        presence: (e) => onPresence(s, e),
        message: (e) => onMessage(s, e),
        iq: (e) => iq.handle(e),
      };
      // Error stanzas may be bounces of the room's own sends, and a room may write to another
      // room (an invitation): those wait their turn without holding up the sender, which may be
      // a room in the middle of its own turn.
      const later = (e: StanzaEvent) => {
        const handler = handlers[e.stanza.name];
        if (handler) void s.serial.run(e.to.bare, () => handler(e)).catch((err) => ctx.log.error('muc handler failed', { error: String(err).slice(0, 200) }));
      };
      const cluster = ctx.services.get('cluster');
      // Stanzas other nodes forwarded to the rooms this node runs.
      const mucCluster = cluster ? new MucCluster(s, cluster, later) : null;
      s.cluster = mucCluster;
      if (mucCluster) {
        for (const [name, h] of Object.entries(handlers)) {
          handlers[name] = async (e) => {
            // The room moved while the stanza waited its turn: its new node takes it.
            if (mucCluster.forwarded(e)) return;
            if (e.to.local) await s.loadIfStored(e.to.bare);
            return h(e);
          };
        }
      }
      await s.loadSecret();
      await s.refresh();
      cleanup.push(ctx.services.provide('muc', s));
      cleanup.push(hooks.on('config/in-force', () => s.refresh()));
      // Occupants, also those of other servers (before the links close), leave with 332; in a
      // cluster the rooms are handed over when this node leaves (cluster.ts) instead.
      if (!mucCluster) cleanup.push(hooks.on('server/stopping', () => s.shutDownAll()));
      // P23: the rows went with the account (foreign key); the rooms in memory forget it too.
      cleanup.push(hooks.on('account/deleted', ({ jid }) => s.forgetAccount(jid.bare)));
      cleanup.push(
        hooks.on('muc/rooms-expired', ({ roomIds }) => {
          mucCluster?.expired(roomIds);
          return s.forgetExpired(roomIds);
        }),
      );
      const take = (e: StanzaEvent) => {
        if (!s.handles(e)) return undefined;
        if (mucCluster?.forwarded(e)) return true;
        const handler = handlers[e.stanza.name]!;
        if (e.stanza.attrs.type === 'error' || s.domains.has(e.from.domain)) {
          later(e);
          return true;
        }
        return s.serial.run(e.to.bare, () => handler(e)).then(() => true as const);
      };
      cleanup.push(hooks.on('presence/remote', take, 'handle'));
      cleanup.push(hooks.on('message/remote', take, 'handle'));
      cleanup.push(hooks.on('iq/remote', take, 'handle'));
      if (mucCluster) {
        const c = mucCluster;
        cleanup.push(() => c.stop());
        // The cluster's totals for the statistics, looked at a little before each sample.
        const look = setInterval(() => void c.allRooms().catch(() => {}), 30_000);
        look.unref();
        void c.allRooms().catch(() => {});
        cleanup.push(() => clearInterval(look));
      }
      // P12: how many rooms and occupants, nothing about which.
      const stats = ctx.services.get('statistics');
      if (stats) {
        // In a cluster the series are shared: every node samples the cluster's totals.
        const counts = () => (mucCluster ? mucCluster.counts() : s.counts());
        cleanup.push(stats.gauge('muc.rooms', () => counts().rooms, { rollup: 'avg' }));
        cleanup.push(stats.gauge('muc.occupants', () => counts().occupants, { rollup: 'avg' }));
      }
      // Rooms' history older than the maximum age goes even when nobody joins.
      const timer = setInterval(() => {
        const now = ctx.clock.now().getTime();
        for (const r of s.rooms.values()) r.history.prune(now);
      }, 60_000);
      timer.unref();
      cleanup.push(() => clearInterval(timer));
    },
    unload() {
      for (const f of cleanup.splice(0)) f();
      service = null;
    },
  };
}
