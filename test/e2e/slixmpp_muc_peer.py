#!/usr/bin/python3
"""A slixmpp client in group chats through slixmpp's own xep_0045 plugin, for the MUC checks (issue #17).

Usage: slixmpp_muc_peer.py HOST PORT JID PASSWORD [MECHANISM]
Like slixmpp_peer.py (login over STARTTLS, JSON events on stdout, JSON commands on stdin).

Every command carries a "tag"; its answer is {"event": "result", "tag": ...} with what came back,
or {"event": "error", "tag": ..., "type": ..., "condition": ..., "text": ...}.
  join          room, nick, [password], [maxstanzas]  xep_0045.join_muc_wait -> codes, subject, occupants, history
  create        room, nick                            the join presence, answered with the self-presence (codes, role, affiliation)
  leave         room, nick                            xep_0045.leave_muc
  nick          room, nick                            presence to room/nick (a nick change); answers at once
  get_config    room                                  xep_0045.get_room_config -> fields {var: {type, value, options}}
  set_config    room, fields {var: value}             xep_0045.set_room_config with FORM_TYPE muc#roomconfig
  instant       room                                  an empty submitted form (XEP-0045 10.1.2, instant room)
  say           room, body                            a groupchat message
  pm            to (room/nick), body                  a private message (type chat) to an occupant
  subject       room, subject                         xep_0045.set_subject
  role          room, nick, role, [reason]            xep_0045.set_role
  affiliation   room, jid, affiliation, [reason]      xep_0045.set_affiliation
  affiliations  room, affiliation                     xep_0045.get_affiliation_list -> jids
  invite        room, jid, [reason]                   xep_0045.invite (mediated)
  decline       room, jid, [reason]                   xep_0045.decline
  destroy       room, [reason], [alt]                 xep_0045.destroy
  voice         room                                  xep_0045.request_voice (participant)
  disco_info    jid, [node]                           xep_0030.get_info -> xml
  disco_items   jid, [node]                           xep_0030.get_items -> items [[jid, node, name]]
  ping                                                a round trip to the own server: what came before has arrived
Events: "raw" for every presence and message stanza (xml: the stanza as received, to assert on
what the wire carried), and what xep_0045 makes of them: "muc_presence" (from, type, nick, jid,
role, affiliation, codes), "groupchat_message" (from, body, delay), "groupchat_subject" (from,
subject), "groupchat_invite" (from, invite_from, reason, password), "groupchat_decline" (from,
decline_from), "message" for private messages (slixmpp_peer.py's).
"""
import asyncio
import sys

from slixmpp.exceptions import IqError, IqTimeout, PresenceError
from slixmpp.plugins.xep_0004.stanza import Form
from slixmpp.xmlstream import tostring
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from slixmpp_peer import Peer, emit, run

ROOMCONFIG = "http://jabber.org/protocol/muc#roomconfig"


def stanza_error(err):
    return {"type": err["type"], "condition": err["condition"], "text": err["text"] or None}


class MucPeer(Peer):
    def __init__(self, jid, password, mechanism):
        super().__init__(jid, password, "", mechanism, (), ["xep_0004", "xep_0045", "xep_0082"])
        # Every stanza as received, ahead of slixmpp's own handling (its "presence" event skips MUC presences).
        self.register_handler(Callback("MUC peer: raw presence", StanzaPath("presence"), self.on_raw_presence))
        self.register_handler(Callback("MUC peer: raw message", StanzaPath("message"), lambda m: emit("raw", xml=tostring(m.xml))))
        self.add_event_handler("groupchat_presence", self.on_muc_presence)
        self.add_event_handler("groupchat_message", self.on_groupchat_message)
        self.add_event_handler("groupchat_subject", lambda m: emit("groupchat_subject", frm=str(m["from"]), subject=m["subject"]))
        self.add_event_handler("groupchat_invite", self.on_invite)
        self.add_event_handler("groupchat_decline", lambda m: emit("groupchat_decline", frm=str(m["from"]), decline_from=str(m["muc"]["decline"]["from"])))

    def on_raw_presence(self, pres):
        emit("raw", xml=tostring(pres.xml))
        # Its own event: slixmpp's presence_error passes through the roster, which ignores occupant JIDs.
        if pres["type"] == "error":
            self.event("muc_peer_presence_error", pres)

    def on_muc_presence(self, pres):
        muc = pres["muc"]
        emit(
            "muc_presence",
            frm=str(pres["from"]),
            type=pres["type"],
            nick=muc["nick"],
            jid=str(muc["jid"]) if muc["jid"] else None,
            role=muc["role"],
            affiliation=muc["affiliation"],
            codes=sorted(muc["status_codes"]),
        )

    def on_groupchat_message(self, msg):
        # Read without msg["delay"], which would add an empty <delay/> to the stanza the "raw" event shows.
        delay = msg.xml.find("{urn:xmpp:delay}delay")
        emit("groupchat_message", frm=str(msg["from"]), body=msg["body"], delay=delay.get("stamp") if delay is not None else None)

    def on_invite(self, msg):
        invite = msg["muc"]["invite"]
        emit("groupchat_invite", frm=str(msg["from"]), invite_from=str(invite["from"]), reason=invite["reason"] or None, password=msg["muc"]["password"] or None)

    def on_message(self, msg):
        # Group chat messages are reported by the plugin's events; private ones (chat) as slixmpp_peer does.
        if msg["type"] == "chat":
            emit("message", frm=str(msg["from"]), body=msg["body"], delay=None)

    async def handle(self, cmd):
        run_muc = getattr(self, "muc_" + cmd["cmd"], None)
        if run_muc is None:
            return await super().handle(cmd)
        tag = cmd.get("tag")
        try:
            emit("result", tag=tag, **(await run_muc(cmd)))
        except IqError as e:
            emit("error", tag=tag, **stanza_error(e.iq["error"]))
        except PresenceError as e:
            emit("error", tag=tag, **stanza_error(e.presence["error"]))
        except (IqTimeout, asyncio.TimeoutError):
            emit("error", tag=tag, condition="timeout")
        except Exception as e:  # a failure in the peer itself: said, so the test fails with it
            emit("error", tag=tag, condition="peer-exception", text=repr(e))
        return True

    async def muc_join(self, cmd):
        room = cmd["room"]
        # xep_0045 sees a join error only when the error presence repeats <x xmlns=muc/> (the XEP's
        # examples do, servers need not): any error presence from the room ends the wait as well.
        refused = asyncio.get_event_loop().create_future()
        def on_error(pres):
            if pres["type"] == "error" and pres["from"].bare == room and not refused.done():
                refused.set_result(pres)
        self.add_event_handler("muc_peer_presence_error", on_error)
        joining = asyncio.ensure_future(self["xep_0045"].join_muc_wait(
            room, cmd["nick"], password=cmd.get("password"), maxstanzas=cmd.get("maxstanzas"), timeout=12
        ))
        try:
            await asyncio.wait([joining, refused], return_when=asyncio.FIRST_COMPLETED, timeout=13)
        finally:
            self.del_event_handler("muc_peer_presence_error", on_error)
        if not joining.done():
            joining.cancel()
            self["xep_0045"].rooms.pop(room, None)
            if refused.done():
                raise PresenceError(refused.result())
            raise asyncio.TimeoutError()
        if joining.exception() is not None:
            # A client forgets a room it could not enter (xep_0045 keeps it, and then ignores the room's invitations).
            self["xep_0045"].rooms.pop(room, None)
        pres, subject, occupants, history = joining.result()
        return {
            "jid": str(pres["from"]),
            "codes": sorted(pres["muc"]["status_codes"]),
            "role": pres["muc"]["role"],
            "affiliation": pres["muc"]["affiliation"],
            "subject": subject["subject"],
            "occupants": [str(p["from"]) for p in occupants],
            "history": [m["body"] for m in history],
        }

    async def muc_create(self, cmd):
        """The join presence without waiting for a subject: a new room is locked until configured
        (XEP-0045 10.1.1), and only the self-presence (201, 110) is sure to come."""
        room = cmd["room"]
        done = asyncio.get_event_loop().create_future()
        finish = lambda pres: done.done() or done.set_result(pres)
        self.add_event_handler("muc::%s::self-presence" % room, finish)
        self.add_event_handler("muc::%s::presence-error" % room, finish)
        on_error = lambda pres: pres["from"].bare == room and finish(pres)
        self.add_event_handler("muc_peer_presence_error", on_error)
        try:
            stanza = self.make_presence(pto="%s/%s" % (room, cmd["nick"]))
            stanza.enable("muc_join")
            self["xep_0045"].rooms[room] = {}
            self["xep_0045"].our_nicks[room] = cmd["nick"]
            stanza.send()
            pres = await asyncio.wait_for(done, 12)
        finally:
            self.del_event_handler("muc::%s::self-presence" % room, finish)
            self.del_event_handler("muc::%s::presence-error" % room, finish)
            self.del_event_handler("muc_peer_presence_error", on_error)
        if pres["type"] == "error":
            raise PresenceError(pres)
        return {"jid": str(pres["from"]), "codes": sorted(pres["muc"]["status_codes"]), "role": pres["muc"]["role"], "affiliation": pres["muc"]["affiliation"]}

    async def muc_leave(self, cmd):
        self["xep_0045"].leave_muc(cmd["room"], cmd["nick"])
        return {}

    async def muc_nick(self, cmd):
        self.send_presence(pto="%s/%s" % (cmd["room"], cmd["nick"]))
        return {}

    async def muc_get_config(self, cmd):
        form = await self["xep_0045"].get_room_config(cmd["room"], timeout=15)
        fields = {}
        for var, field in form.get_fields().items():
            fields[var] = {"type": field["type"], "value": field.get_value(convert=False), "options": [o["value"] for o in field.get_options()]}
        return {"fields": fields}

    async def muc_set_config(self, cmd):
        form = Form()
        form["type"] = "submit"
        form.add_field(var="FORM_TYPE", ftype="hidden", value=ROOMCONFIG)
        for var, value in cmd["fields"].items():
            form.add_field(var=var, value=value)
        await self["xep_0045"].set_room_config(cmd["room"], form, timeout=15)
        return {}

    async def muc_instant(self, cmd):
        form = Form()
        await self["xep_0045"].set_room_config(cmd["room"], form, timeout=15)
        return {}

    async def muc_say(self, cmd):
        self.send_message(mto=cmd["room"], mbody=cmd["body"], mtype="groupchat")
        return {}

    async def muc_pm(self, cmd):
        self.send_message(mto=cmd["to"], mbody=cmd["body"], mtype="chat")
        return {}

    async def muc_subject(self, cmd):
        self["xep_0045"].set_subject(cmd["room"], cmd["subject"])
        return {}

    async def muc_role(self, cmd):
        await self["xep_0045"].set_role(cmd["room"], cmd["nick"], cmd["role"], reason=cmd.get("reason", ""), timeout=15)
        return {}

    async def muc_affiliation(self, cmd):
        await self["xep_0045"].set_affiliation(cmd["room"], cmd["affiliation"], jid=cmd["jid"], reason=cmd.get("reason", ""), timeout=15)
        return {}

    async def muc_affiliations(self, cmd):
        jids = await self["xep_0045"].get_affiliation_list(cmd["room"], cmd["affiliation"], timeout=15)
        return {"jids": sorted(str(j) for j in jids)}

    async def muc_invite(self, cmd):
        self["xep_0045"].invite(cmd["room"], cmd["jid"], reason=cmd.get("reason", ""))
        return {}

    async def muc_decline(self, cmd):
        self["xep_0045"].decline(cmd["room"], cmd["jid"], reason=cmd.get("reason", ""))
        return {}

    async def muc_destroy(self, cmd):
        await self["xep_0045"].destroy(cmd["room"], reason=cmd.get("reason", ""), altroom=cmd.get("alt"), timeout=15)
        return {}

    async def muc_voice(self, cmd):
        self["xep_0045"].request_voice(cmd["room"], "participant")
        return {}

    async def muc_disco_info(self, cmd):
        result = await self["xep_0030"].get_info(cmd["jid"], node=cmd.get("node"), cached=False, timeout=15)
        return {"xml": tostring(result["disco_info"].xml)}

    async def muc_disco_items(self, cmd):
        result = await self["xep_0030"].get_items(cmd["jid"], node=cmd.get("node"), timeout=15)
        return {"items": [[str(j), n, name] for j, n, name in result["disco_items"]["items"]]}

    async def muc_ping(self, cmd):
        await self["xep_0199"].ping(self.boundjid.domain, timeout=15)
        return {}


def main():
    host, port, jid, password = sys.argv[1:5]
    mechanism = sys.argv[5] if len(sys.argv) > 5 else "auto"
    run(MucPeer(jid, password, mechanism), host, port)


if __name__ == "__main__":
    main()
