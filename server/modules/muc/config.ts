/**
 * The `muc` configuration section (XEP-0045 multi-user chat), read by the MUC module
 * (server/modules/muc/module.ts) and composed into the schema by server/config/schema.ts.
 */
import { anyMapping, bool, duration, enumOf, fail, int, joinKey, object, refine, section, size, str } from '../../../shared/schema-kit.js';

export const mucConfigSection = section(
  'muc',
  object(
    {
      enabled: bool({
        default: true,
        doc: 'Offer a multi-user chat service (XEP-0045) on each host. It is a fact of the privacy policy: turning it on is held back until announced.',
      }),
      domain: refine(
        str({
          default: 'conference.{host}',
          doc: 'The chat service\'s address for each host; `{host}` stands for the host\'s domain. Other servers reach it over federation, so it must resolve to this server.',
        }),
        (v, keyPath) => {
          if (!/^[a-z0-9.{}-]+$/i.test(v) || !v.includes('{host}')) fail(keyPath, 'must be a domain containing {host}, such as conference.{host}');
          return v.toLowerCase();
        },
      ),
      domains: refine(
        anyMapping({
          default: {},
          type: 'mapping of host to domain',
          doc: 'Per host, the chat service\'s address instead of `domain`, e.g. `{ example.org: chat.example.org }`.',
        }),
        (v, keyPath) => {
          const out: Record<string, string> = {};
          for (const [host, d] of Object.entries(v)) {
            if (typeof d !== 'string' || !/^[a-z0-9-]+(\.[a-z0-9-]+)+$/i.test(d)) fail(joinKey(keyPath, host), 'must be a domain such as chat.example.org');
            out[host.toLowerCase()] = d.toLowerCase();
          }
          return out;
        },
      ),
      creation: enumOf(['anyone', 'local', 'admins'] as const, {
        default: 'local',
        doc: 'Who may create rooms: `anyone` (users of other servers too), `local` (users of this server\'s hosts) or `admins` (the server administrators). Others get `not-allowed`.',
      }),
      maxRoomsPerUser: int({ default: 100, min: 0, doc: 'Rooms one user may own at once (temporary and persistent); creating one more is refused with `resource-constraint`. 0: no limit.' }),
      maxOccupants: int({ default: 1000, min: 1, doc: 'Most occupants of one room; the room setting `muc#roomconfig_maxusers` may not be higher. A join beyond it gets `service-unavailable`.' }),
      defaultHistory: int({ default: 20, min: 0, doc: 'Messages a new room keeps for occupants who join later (room setting `muc#maxhistoryfetch`).' }),
      maxHistory: int({ default: 100, min: 0, doc: 'Most messages any room keeps; a room setting above it is lowered to it.' }),
      historyMaxAge: duration({
        default: '2d',
        min: 60_000,
        doc: 'Messages are dropped from a room\'s history after this long. History lives in memory only: nothing of a conversation is written to disk, and a restart forgets it.',
      }),
      maxMessageSize: size({ default: '16KiB', min: 256, doc: 'Largest group chat or private message an occupant may send through a room (the whole stanza); a larger one gets `policy-violation`.' }),
      messagesPerMinute: int({ default: 60, min: 1, doc: 'Messages (group chat, private, subject) one occupant may send per minute on average, with bursts of up to a fifth of it; more get `resource-constraint` (type wait).' }),
      unusedRooms: duration({
        default: '365d',
        min: 86_400_000,
        doc: 'A persistent room nobody has joined for this long is deleted with its configuration and affiliations.',
      }),
    },
    { doc: 'Multi-user chat (XEP-0045): group chats on the service `conference.<host>`. Rooms live in memory; persistent rooms store their configuration and affiliations, never messages.' },
  ),
);
