#!/usr/bin/python3
"""A slixmpp client using personal eventing (PEP) through slixmpp's own plugins, for the PEP tests.

Usage: slixmpp_pep_peer.py HOST PORT JID PASSWORD [INTERESTS [PLUGINS]]
Like slixmpp_peer.py (login over STARTTLS, JSON events on stdout, JSON commands on stdin), with
INTERESTS (comma-separated nodes announced as NODE+notify, xep_0115 + xep_0163) and PLUGINS
(comma-separated slixmpp plugins to load besides xep_0060, xep_0163, xep_0223: xep_0084 adds
urn:xmpp:avatar:metadata+notify by itself, xep_0048 storage:bookmarks+notify, xep_0172, xep_0118,
xep_0107 and xep_0108 the nick, tune, mood and activity nodes).

Every command carries a "tag"; its answer is {"event": "result", "tag": ...} with what the server
returned, or {"event": "error", "tag": ..., "condition": ..., "app": ...} (app: the
pubsub#errors condition, such as precondition-not-met). Payloads are XML text both ways.
  publish      node, [payload], [id], [options {field: value}], [to]      xep_0060.publish
  retract      node, id, [notify]                                        xep_0060.retract
  delete       node                                                      xep_0060.delete_node
  get_items    jid, node, [ids], [max]                                   xep_0060.get_items -> items [[id, xml]]
  get_config   node                                                      xep_0060.get_node_config -> fields
  configure    node, fields {field: value}                               xep_0060.set_node_config
  interest     nodes                                                     more +notify (xep_0163), the new caps sent in presence
  disco_info   jid, [node]                                               xep_0030.get_info -> xml
  disco_items  jid, [node]                                               xep_0030.get_items -> xml
  avatar       data (base64), type                                       xep_0084 data then metadata -> id
  stop_avatar                                                            xep_0084.stop (empty metadata)
  get_avatar   jid, id                                                   xep_0084.retrieve_avatar -> data (base64)
  vcard_avatar data (base64), type                                       xep_0153.set_avatar (a vCard PHOTO)
  get_vcard    jid                                                       xep_0054.get_vcard -> the PHOTO type and data
  nick         nick                                                      xep_0172.publish_nick
  tune         artist, title, [length]                                   xep_0118.publish_tune
  mood         value, [text]                                             xep_0107.publish_mood
  activity     general, [specific], [text]                               xep_0108.publish_activity
  bookmarks    conferences [{jid, nick, name, autojoin}]                 xep_0048 in PEP through xep_0223 (whitelist)
  get_bookmarks                                                          the same, read back -> conferences
  subscribe    jid, node, [full]                                          xep_0060.subscribe (bare JID unless full) -> subscription, subjid
  unsubscribe  jid, node, [full]                                          xep_0060.unsubscribe
  get_subscriptions jid, [node]                                           xep_0060.get_subscriptions -> subscriptions [[node, jid, state]]
  node_subscriptions node                                                 xep_0060.get_node_subscriptions (own node) -> subscriptions [[jid, state]]
  end_subscriptions node, jids                                            xep_0060.modify_subscriptions with state none
  block        jids                                                      xep_0191.block
  ping                                                                   a round trip: what the server sent before has arrived
Events: "items" for every PEP notification (node, from, items, retracts, delay), "delete" and
"purge" (node, from), "subscription" (XEP-0060 8.8.4: from, node, jid, subscription), and what slixmpp's plugins make of them: "avatar_metadata" (xep_0084),
"user_nick" (xep_0172), "user_tune" (xep_0118), "user_mood" (xep_0107), "user_activity" (xep_0108).
"""
import base64
import sys
import xml.etree.ElementTree as ET

from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.plugins.xep_0004.stanza import Form
from slixmpp.xmlstream import tostring
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath, StanzaPath

from slixmpp_peer import Peer, emit, run

PUBSUB = "http://jabber.org/protocol/pubsub"
PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
BASE_PLUGINS = ["xep_0004", "xep_0060", "xep_0163", "xep_0223"]


def form(form_type, fields):
    f = Form()
    f["type"] = "submit"
    if form_type:
        f.add_field(var="FORM_TYPE", ftype="hidden", value=form_type)
    for name, value in fields.items():
        f.add_field(var=name, value=value)
    return f


def items_of(element):
    return [[item.get("id"), tostring(item[0]) if len(item) else None] for item in element]


class PepPeer(Peer):
    def __init__(self, jid, password, interests, plugins):
        super().__init__(jid, password, "", "auto", interests, BASE_PLUGINS + plugins)
        self.register_handler(Callback("PEP peer: items", StanzaPath("message/pubsub_event/items"), self.on_items))
        self.register_handler(Callback("PEP peer: subscription state", MatchXPath("{jabber:client}message/{%s}pubsub" % PUBSUB), self.on_subscription_state))
        self.add_event_handler("pubsub_delete", lambda msg: emit("delete", frm=str(msg["from"]), node=msg["pubsub_event"]["delete"]["node"]))
        self.add_event_handler("pubsub_purge", lambda msg: emit("purge", frm=str(msg["from"]), node=msg["pubsub_event"]["purge"]["node"]))
        self.add_event_handler("avatar_metadata_publish", self.on_avatar_metadata)
        self.add_event_handler("user_nick_publish", self.on_nick)
        self.add_event_handler("user_tune_publish", self.on_tune)
        self.add_event_handler("user_mood_publish", self.on_mood)
        self.add_event_handler("user_activity_publish", self.on_activity)

    def on_items(self, msg):
        items = msg["pubsub_event"]["items"]
        emit(
            "items",
            frm=str(msg["from"]),
            node=items["node"],
            items=[[i["id"], tostring(i["payload"]) if i["payload"] is not None else None] for i in items if i.name == "item"],
            retracts=[i["id"] for i in items if i.name == "retract"],
            delay=msg["delay"]["stamp"].isoformat() if msg["delay"]["stamp"] else None,
        )

    def on_subscription_state(self, msg):
        sub = msg.xml.find("{%s}pubsub/{%s}subscription" % (PUBSUB, PUBSUB))
        if sub is not None:
            emit("subscription", frm=str(msg["from"]), node=sub.get("node"), jid=sub.get("jid"), subscription=sub.get("subscription"))

    def on_avatar_metadata(self, msg):
        metadata = msg["pubsub_event"]["items"]["item"]["avatar_metadata"]
        info = [{"id": i["id"], "type": i["type"], "bytes": i["bytes"]} for i in metadata["items"]]
        emit("avatar_metadata", frm=str(msg["from"]), info=info)

    def on_nick(self, msg):
        emit("user_nick", frm=str(msg["from"]), nick=msg["pubsub_event"]["items"]["item"]["nick"]["nick"])

    def on_tune(self, msg):
        tune = msg["pubsub_event"]["items"]["item"]["tune"]
        emit("user_tune", frm=str(msg["from"]), artist=tune["artist"], title=tune["title"], length=tune["length"])

    def on_mood(self, msg):
        mood = msg["pubsub_event"]["items"]["item"]["mood"]
        emit("user_mood", frm=str(msg["from"]), value=mood["value"], text=mood["text"])

    def on_activity(self, msg):
        activity = msg["pubsub_event"]["items"]["item"]["activity"]
        emit("user_activity", frm=str(msg["from"]), value=list(activity["value"]), text=activity["text"])

    async def handle(self, cmd):
        name = cmd["cmd"]
        run_pep = getattr(self, "pep_" + name, None)
        if run_pep is None:
            return await super().handle(cmd)
        tag = cmd.get("tag")
        try:
            emit("result", tag=tag, **(await run_pep(cmd)))
        except IqError as e:
            err = e.iq["error"]
            app = next((c.tag.split("}")[1] for c in err.xml if c.tag.startswith("{%s}" % PUBSUB_ERRORS)), None)
            emit("error", tag=tag, type=err["type"], condition=err["condition"], app=app, text=err["text"] or None)
        except IqTimeout:
            emit("error", tag=tag, condition="timeout")
        except Exception as e:  # a failure in the peer itself: said, so the test fails with it
            emit("error", tag=tag, condition="peer-exception", text=repr(e))
        return True

    async def pep_publish(self, cmd):
        options = form("http://jabber.org/protocol/pubsub#publish-options", cmd["options"]) if "options" in cmd else None
        result = await self["xep_0060"].publish(cmd.get("to"), cmd["node"], id=cmd.get("id"), payload=ET.fromstring(cmd["payload"]) if "payload" in cmd else None, options=options)
        return {"id": result["pubsub"]["publish"]["item"]["id"] or None}

    async def pep_retract(self, cmd):
        await self["xep_0060"].retract(None, cmd["node"], cmd["id"], notify=cmd.get("notify"))
        return {}

    async def pep_delete(self, cmd):
        await self["xep_0060"].delete_node(None, cmd["node"])
        return {}

    async def pep_get_items(self, cmd):
        result = await self["xep_0060"].get_items(cmd.get("jid"), cmd["node"], item_ids=cmd.get("ids"), max_items=cmd.get("max"))
        return {"items": items_of(result["pubsub"]["items"].xml)}

    async def pep_get_config(self, cmd):
        result = await self["xep_0060"].get_node_config(None, cmd["node"])
        fields = result["pubsub_owner"]["configure"]["form"].get_fields()
        return {"fields": {name: f.get_value(convert=False) for name, f in fields.items()}}

    async def pep_configure(self, cmd):
        await self["xep_0060"].set_node_config(None, cmd["node"], form("http://jabber.org/protocol/pubsub#node_config", cmd["fields"]))
        return {}

    async def pep_interest(self, cmd):
        self["xep_0163"].add_interest(cmd["nodes"])
        await self["xep_0115"].update_caps(broadcast=True)
        return {}

    async def pep_disco_info(self, cmd):
        result = await self["xep_0030"].get_info(cmd["jid"], node=cmd.get("node"), cached=False)
        return {"xml": tostring(result["disco_info"].xml)}

    async def pep_disco_items(self, cmd):
        result = await self["xep_0030"].get_items(cmd["jid"], node=cmd.get("node"))
        return {"xml": tostring(result["disco_items"].xml)}

    async def pep_avatar(self, cmd):
        data = base64.b64decode(cmd["data"])
        avatar_id = self["xep_0084"].generate_id(data)
        await self["xep_0084"].publish_avatar(data)
        await self["xep_0084"].publish_avatar_metadata({"id": avatar_id, "type": cmd["type"], "bytes": len(data)})
        return {"id": avatar_id}

    async def pep_stop_avatar(self, cmd):
        await self["xep_0084"].stop()
        return {}

    async def pep_get_avatar(self, cmd):
        result = await self["xep_0084"].retrieve_avatar(cmd["jid"], cmd["id"])
        item = result["pubsub"]["items"]["item"]
        return {"id": item["id"], "data": base64.b64encode(item["avatar_data"]["value"]).decode()}

    async def pep_vcard_avatar(self, cmd):
        await self["xep_0153"].set_avatar(avatar=base64.b64decode(cmd["data"]), mtype=cmd["type"])
        return {}

    async def pep_get_vcard(self, cmd):
        result = await self["xep_0054"].get_vcard(cmd["jid"], cached=False)
        photo = result["vcard_temp"]["PHOTO"]
        return {"type": photo["TYPE"] or None, "data": base64.b64encode(photo["BINVAL"]).decode() if photo["BINVAL"] else None}

    async def pep_nick(self, cmd):
        await self["xep_0172"].publish_nick(cmd["nick"])
        return {}

    async def pep_tune(self, cmd):
        await self["xep_0118"].publish_tune(artist=cmd["artist"], title=cmd["title"], length=cmd.get("length"))
        return {}

    async def pep_mood(self, cmd):
        await self["xep_0107"].publish_mood(cmd["value"], cmd.get("text"))
        return {}

    async def pep_activity(self, cmd):
        await self["xep_0108"].publish_activity(cmd["general"], cmd.get("specific"), cmd.get("text"))
        return {}

    async def pep_bookmarks(self, cmd):
        bookmarks = self["xep_0048"].stanza.Bookmarks()
        for room in cmd["conferences"]:
            bookmarks.add_conference(room["jid"], room["nick"], name=room.get("name"), autojoin=room.get("autojoin"))
        await self["xep_0048"].set_bookmarks(bookmarks, method="xep_0223")
        return {}

    async def pep_get_bookmarks(self, cmd):
        result = await self["xep_0048"].get_bookmarks(method="xep_0223")
        bookmarks = result["pubsub"]["items"]["item"]["bookmarks"]
        return {"conferences": [{"jid": str(c["jid"]), "nick": c["nick"], "name": c["name"], "autojoin": c["autojoin"]} for c in bookmarks["conferences"]]}

    async def pep_subscribe(self, cmd):
        result = await self["xep_0060"].subscribe(cmd["jid"], cmd["node"], bare=not cmd.get("full"))
        sub = result["pubsub"]["subscription"]
        return {"subscription": sub["subscription"], "subjid": str(sub["jid"])}

    async def pep_unsubscribe(self, cmd):
        await self["xep_0060"].unsubscribe(cmd["jid"], cmd["node"], bare=not cmd.get("full"))
        return {}

    async def pep_get_subscriptions(self, cmd):
        result = await self["xep_0060"].get_subscriptions(cmd["jid"], node=cmd.get("node"))
        return {"subscriptions": [[s["node"], str(s["jid"]), s["subscription"]] for s in result["pubsub"]["subscriptions"]]}

    async def pep_node_subscriptions(self, cmd):
        result = await self["xep_0060"].get_node_subscriptions(None, cmd["node"])
        return {"subscriptions": [[str(s["jid"]), s["subscription"]] for s in result["pubsub_owner"]["subscriptions"]]}

    async def pep_end_subscriptions(self, cmd):
        await self["xep_0060"].modify_subscriptions(None, cmd["node"], subscriptions=[(jid, "none") for jid in cmd["jids"]])
        return {}

    async def pep_block(self, cmd):
        await self["xep_0191"].block(cmd["jids"])
        return {}

    async def pep_ping(self, cmd):
        await self["xep_0199"].ping(self.boundjid.domain)
        return {}

def main():
    host, port, jid, password = sys.argv[1:5]
    interests = [ns for ns in sys.argv[5].split(",") if ns] if len(sys.argv) > 5 else []
    plugins = [p for p in sys.argv[6].split(",") if p] if len(sys.argv) > 6 else []
    run(PepPeer(jid, password, interests, plugins), host, port)


if __name__ == "__main__":
    main()
