/**
 * The English privacy policy. Same sections, in the same order, as the German seed policy
 * (../shared/seed/datenschutz.de.txt) and texts-de.ts; the facts come from the configuration,
 * the sentences are our own. Every claim here is something Gatehouse does (see docs/privacy.md).
 */
import type { PolicyFacts } from './facts.js';
import { MAX_BOUNCER_HOURS as BOUNCER_HOURS, MAX_BOUNCER_LINES as BOUNCER_LINES } from '../../../shared/bouncer-limits.js';
import { count, durationEn as d, h2, list, p, ul, type Block, type PolicyDocument } from './format.js';

export function policyEn(f: PolicyFacts): PolicyDocument {
  const r = f.retention;
  const hosts = list(f.hosts, 'en');
  const logs = d(r.detailedLogs);
  const blocks: Block[] = [];

  // ---- What data is stored? ----
  blocks.push(h2('What data is stored?'));
  blocks.push(p(`The server for ${hosts} stores the following data about its users:`));
  const stored: string[] = [
    'Your XMPP address (Jabber ID, JID), made of user name and domain, which identifies your account. Addresses are compared in one normalised form, so "Alice" and "alice" are the same account.',
    `Not your password itself: the server keeps neither the password nor anything it could be recovered from, only salted and many times hashed check values (SCRAM verifiers, ${list(f.passwordHashes.map((h) => `SCRAM-${h}`), 'en')}) that let it verify a login. ` +
      (f.allowPlain
        ? 'Clients that log in with the older PLAIN method send the password over the encrypted connection only; the server checks it against those values and does not keep it.'
        : 'Only SCRAM logins are accepted, so the password never even reaches the server.'),
    'Your contact list (roster), together with the direction in which each contact may see your online status (subscription). It is kept on the server so that every client you log in with shows the same contacts.',
    `When your account was created and when it was last used, so that unused accounts can be deleted automatically: an account not used for ${d(r.inactiveAccounts)} is deleted with all its data, and ${d(r.inactiveWarning)} before that a warning message is sent to it.`,
    f.offlineMaxPerUser > 0
      ? `While you are not logged in, messages addressed to you are stored together with the time they arrived, so that they can be delivered when you next log in; once delivered they are deleted. Messages not collected within ${d(r.offlineMessages)} are deleted unread, and at most ${count(f.offlineMaxPerUser, 'message is', 'messages are')} kept for each user.`
      : 'Messages sent to you while you are not logged in are not stored; their senders are told that the message could not be delivered.',
    `While you are logged in, the server records when your session started and how many data packets (stanzas) and bytes your client sent and received. This lets the operator watch the load of the server and find the sources of an overload. When the session ends, the numbers only go into anonymous statistics; the record of the session itself is deleted after ${logs} at the latest.`,
    `If a login or registration fails, the IP address it came from, the time and the account name tried are stored, to detect abuse such as password guessing in time and to act against it: an address that keeps failing is blocked for a while. These records are deleted after ${logs}.`,
    `If a message cannot be delivered, the server records when, from whom to whom, and why delivery failed, but never the content of the message. This is needed to find a problem when such errors pile up. These records are deleted after ${logs}.`,
  ];
  if (f.uploads && r.uploads !== undefined) {
    stored.push(
      `Files you upload to share them (HTTP File Upload), together with their name, size, type and upload time and the account that uploaded them. Anyone who has a file's link can download it; the link is long and random and contains neither your address nor the file name. A file is deleted ${d(r.uploads)} after its upload, or earlier together with your account. The server's log records uploads and downloads only by their random number and size, never with the file name.`,
    );
  }
  if (f.groupChats) {
    const g = f.groupChats;
    stored.push(
      `When you are in a group chat (multi-user chat) on this server's chat service, the room holds your nickname there, your address and your online status in memory only, for as long as you are in the room. A room keeps its latest messages in memory only, so that people who join later can read them, for at most ${d(g.historyMaxAge)}; they are never written to disk and are gone when the server restarts. Whether the other people in a room see your address is set by the room: only its moderators, or everyone. A persistent room stores its settings and the list of its owners, administrators, members and banned addresses, until the room is destroyed or nobody has been in it for ${d(g.unusedRooms)}; your place on such lists is deleted together with your account and is part of your data export.`,
    );
  }
  blocks.push(ul(stored));

  if (f.gateways.length > 0) {
    blocks.push(p(`This server runs gateways (transports) to other instant messaging networks: ${list(f.gateways, 'en')}. If you use a gateway, it stores further data:`));
    blocks.push(
      ul([
        'The user name and password of your account on the other network, because the gateway logs in there on your behalf, and for Matrix the recovery key if you give it to the gateway (so that it can verify its own session and read your key backup). They are stored encrypted, with a key that is kept outside the database, never written to a log, and deleted when you remove your registration with the gateway (the recovery key also when you tell the gateway to forget it).',
        `A log of when a connection to the other network was made, ended or failed, and for which XMPP address. It is deleted after ${logs}.`,
        'So that your session on the other network can continue after a restart without missing or repeating anything: your position in it (for Discord, the last message you saw in each channel and direct chat) and, where the network needs them for that (Matrix), the list of your rooms with their names and the names of the people in your direct chats; no messages. This is deleted when you remove your registration with the gateway.',
        `IRC: if you choose to stay connected to an IRC server while you are offline (you switch it on per server), the gateway keeps your connection and your channels. Private messages reach you through the offline storage described above. Lines said in your channels meanwhile are kept in the gateway's memory only, at most ${BOUNCER_LINES} lines per channel and for at most ${BOUNCER_HOURS} hours, and are handed to you when you join the channel again, then forgotten; they are never written to disk and do not survive a restart of the gateway.`,
        "IRC: networks may ask the gateway which of its users a connection belongs to (ident), and where the operator has an agreement with a network the gateway introduces your connections to it (WEBIRC). Both are told an identifier the gateway derives from your address with a secret key, never your address and never your IP address.",
        `If you use a gateway that writes in the other network under your own name (Discord, through the operator's shared bot), people there see your nickname in the room${
          f.uploads && r.uploads !== undefined
            ? ` and your profile picture from your vCard, which is copied to this server's file upload service for that and deleted ${d(r.uploads)} after it was copied`
            : ''
        }.`,
        'Where the other network encrypts messages end to end (Matrix): the keys of the gateway\'s device and the message keys it received, so that it can keep reading and sending your encrypted messages after a restart. They are stored encrypted with the same key as your password, never written to a log, and deleted when you remove your registration with the gateway.',
        ...(f.uploads && r.uploads !== undefined
          ? [
              `Files that people on the other network send you (pictures, documents), and on IRC files they link to in their messages, are copied to this server's file upload service, so that your client can show them; the link is long and random. Everyone who receives the same file or link gets the same copy. These copies belong to no account and are deleted ${d(r.uploads)} after they were copied.`,
            ]
          : []),
      ]),
    );
  } else {
    blocks.push(p('This server runs no gateways (transports) to other instant messaging networks at present, so it stores no data for such gateways.'));
  }

  blocks.push(
    p(
      'Your XMPP client can also store data on the server: either so that other users can fetch it (for example a vCard with contact details, a profile picture, a nickname, or the public keys others need to send you end-to-end encrypted messages), or so that only you can read it again (for example the settings of your client or your bookmarks of group chats). For the data it publishes, your client chooses who may read it and be told when it changes: anyone who knows your address (this is how public encryption keys are found), the contacts you allow to see your online status, only those of them in certain contact groups, or only you; the server keeps to that choice on every request. Which data, how much and for how long is up to your client and to you. All of it is deleted together with your account.',
    ),
  );
  if (f.pepSubscriptions) {
    blocks.push(
      p(
        'Other users whom your choice allows may also subscribe to such published data, so that they are told of every change; your client can see who did and end a subscription. The server stores each subscription: the address of the subscriber and what they subscribed to. ' +
          `A subscription ends when the subscriber ends it, when your choice of who may read the data no longer includes them (for example when you remove them from your contacts), when the data is deleted, and when the account of either of you is deleted; a subscription of an address on another server is also deleted ${d(f.pepSubscriptions.remoteLifetime)} after it was made, unless that person's client subscribes again. ` +
          'Likewise, when you subscribe to data that others publish, the server of that person stores your address.',
      ),
    );
  }

  blocks.push(
    f.backups.schedule === 'daily'
      ? p(`A backup copy of all the data named above is made every day and kept for ${count(f.backups.keep, 'day', 'days')}. Data that has already been deleted can therefore live on in a backup for up to ${count(f.backups.keep, 'day', 'days')}.`)
      : p('The server makes no automatic backup copies of this data.'),
  );

  // ---- What happens with this data? ----
  blocks.push(h2('What happens with this data?'));
  blocks.push(
    p(
      'The data stored about you is not used commercially, not sold and not passed on to anyone. No advertising is sent to the users of this service. The server software contains no tracking or telemetry: it opens no network connections except those its operator configured.',
    ),
  );
  blocks.push(
    p(
      'There is one exception: data that you or your client store in order to publish it (in particular a vCard, a profile picture or public encryption keys) can be fetched by other users, one address at a time and only by those you or your client allowed. There is no search for users and no list of them.',
    ),
  );
  blocks.push(
    p(
      'The XMPP addresses of the users are not published: there is no public directory, and the answers of the server do not reveal whether an account exists. If you make your address public yourself, others may use it to send you unwanted messages. The operator expressly forbids using this service to send unsolicited advertising (spam), but cannot enforce this in every case.',
    ),
  );
  if (f.federation.enabled) {
    const fed = f.federation;
    let tls = fed.requireEncryption
      ? 'Connections to other servers are always encrypted (TLS); a server that does not support encryption is not connected to.'
      : 'Connections to other servers are encrypted (TLS) whenever the other server supports it.';
    tls += fed.requireValidCertificates
      ? ' Other servers have to prove their identity with a valid certificate.'
      : ' Other servers prove their identity with a certificate or, where they have none, with the dialback method.';
    if (fed.allow.length > 0) tls += ` This server exchanges messages only with these domains: ${list(fed.allow, 'en')}.`;
    blocks.push(
      p(
        `Messages you send to users of other servers are delivered to those servers, and the rules of those servers then apply to them, not the promises made here. The same holds for information you intend for other users, such as your online status for the contacts you allowed to see it, and, for technical reasons, for the servers those contacts use. ${tls}`,
      ),
    );
  } else {
    blocks.push(
      p(
        `This server does not exchange messages with other XMPP servers (federation is switched off): messages reach only users of ${hosts}${f.gateways.length > 0 ? ' and, through the gateways, the networks named above' : ''}.`,
      ),
    );
  }
  if (f.gateways.length > 0) {
    blocks.push(
      p(
        'If you use a gateway to another instant messaging network, the protection of your privacy and your data also depends on that network. Some networks, for example, show your online status to others without asking you first.',
      ),
    );
  }
  blocks.push(
    p(
      'The server never passes the IP address of a user on to other users or servers: all XMPP communication goes through the server, and nothing it forwards carries your address. Clients can, however, send each other their IP addresses inside messages, for example to start a file transfer. The server does not inspect or change such content, and does not itself give anybody the address of a user.',
    ),
  );
  blocks.push(
    p(
      'From the data above the server derives statistics about its use and load, shown as charts. They are anonymous: they contain no addresses, account names or message content, and allow no conclusions about individual persons.',
    ),
  );
  blocks.push(
    p(
      `Detailed records that name a user or an IP address (sessions, failed logins, undeliverable messages, gateway connections, log files) are kept for ${logs} and then deleted automatically. The statistics are kept ${r.statistics === null ? 'longer, without a fixed limit' : `for ${d(r.statistics)}`}.`,
    ),
  );

  // ---- Who has access to this data? ----
  blocks.push(h2('Who has access to this data?'));
  blocks.push(
    p(
      (f.adminCount > 0
        ? `The administrators of this server (${count(f.adminCount, 'account', 'accounts')} named in its configuration) can access the data stored on it. When they read records such as the connection logs through the server's administration tools, that access is itself logged.`
        : 'The operator of this server can access the data stored on it; no administrator accounts are configured.') +
        ' Besides that, you can store data that other users can fetch (see above).',
    ),
  );
  blocks.push(
    p(
      'Data sent over the Internet without encryption can be intercepted at many points. ' +
        (f.clientTlsRequired
          ? `This server therefore accepts logins only over an encrypted connection (TLS ${f.tlsMinVersion} or newer).`
          : `An encrypted connection to the server (TLS ${f.tlsMinVersion} or newer) is therefore strongly recommended; this server also accepts connections without it.`) +
        ' This protects the connection between your client and the server. ' +
        (f.federation.enabled
          ? f.federation.requireEncryption
            ? 'Connections from this server to other servers are encrypted as well. '
            : 'Connections to other servers are encrypted whenever they support it. '
          : '') +
        (f.gateways.length > 0 ? 'Once a message has left through a gateway, it may travel unencrypted in the other network. ' : '') +
        'To protect a message all the way to its recipient, use end-to-end encryption such as OMEMO or OpenPGP, which many clients support. The server passes such messages on unchanged and cannot read them.',
    ),
  );

  // ---- Notes ----
  blocks.push(h2('Notes'));
  blocks.push(
    p(
      f.contact
        ? `Questions about this policy and about your data can be put to the operator of the server: ${f.contact}`
        : 'Questions about this policy and about your data can be put to the administrators of the server.',
    ),
  );
  blocks.push(
    p(
      'You can delete your account from your client at any time. This deletes at once all the data named above that belongs to it' +
        (f.backups.schedule === 'daily' ? `, except for the copies in the backups, which disappear within ${count(f.backups.keep, 'day', 'days')}.` : '.'),
    ),
  );
  blocks.push(p('This server is subject to the law and the data protection rules of the Federal Republic of Germany and the European Union.'));
  blocks.push(
    p(
      'This policy may change. A change is announced at least four weeks (28 days) before it takes effect, on this page and by a message to the users who are online or log in before that date, unless technical reasons require a shorter notice. Until the announced date the previous version stays in force.',
    ),
  );

  return { lang: 'en', title: `Privacy policy of ${hosts}`, blocks };
}
