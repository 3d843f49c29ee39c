#!/usr/bin/python3
"""An independent XMPP client (slixmpp) driven by the end-to-end tests.

Usage: slixmpp_peer.py HOST PORT JID PASSWORD PEER_JID [MECHANISM [INTERESTS]]
Logs in over STARTTLS with MECHANISM (default "auto": slixmpp chooses, which on TLS 1.3 is
SCRAM-SHA-256-PLUS with tls-unique), accepts subscriptions, answers each chat message from
PEER_JID with "echo: <body>", and prints one JSON event per line on stdout. Reads commands as JSON
lines on stdin: {"cmd": "message", "to": ..., "body": ...}, {"cmd": "subscribe", "to": ...},
{"cmd": "roster"}, {"cmd": "quit"}.
INTERESTS, comma-separated PEP namespaces, turns on entity capabilities (xep_0115) and announces
NAMESPACE+notify for each (xep_0163), as a client interested in those PEP nodes does.
"""
import asyncio
import json
import ssl
import sys

import slixmpp


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, peer, mechanism="auto", interests=()):
        super().__init__(jid, password, sasl_mech=None if mechanism == "auto" else mechanism)
        self.peer = peer
        self.ssl_context = ssl.create_default_context()
        self.ssl_context.check_hostname = False
        self.ssl_context.verify_mode = ssl.CERT_NONE
        self.auto_authorize = True
        self.auto_subscribe = True
        self.register_plugin("xep_0030")
        self.register_plugin("xep_0199")
        self.register_plugin("xep_0203")
        self.interests = list(interests)
        if self.interests:
            self.register_plugin("xep_0115")
            self.register_plugin("xep_0163")
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("presence_subscribe", lambda p: emit("subscribe", frm=p["from"].bare))
        self.add_event_handler("presence_subscribed", lambda p: emit("subscribed", frm=p["from"].bare))
        self.add_event_handler("failed_auth", lambda _: emit("failed_auth"))
        self.add_event_handler("disconnected", lambda _: emit("disconnected"))

    async def on_start(self, _):
        if self.interests:
            # The +notify features, and the caps 'ver' computed over them before presence goes out.
            self["xep_0163"].add_interest(self.interests)
            await self["xep_0115"].update_caps(broadcast=False)
        self.send_presence()
        await self.get_roster()
        emit("session_start", jid=str(self.boundjid), mechanism=self["feature_mechanisms"].mech.name if self["feature_mechanisms"].mech else None, tls=self.is_connected())
        asyncio.ensure_future(self.read_commands())

    def on_message(self, msg):
        if msg["type"] not in ("chat", "normal"):
            return
        delay = msg["delay"]["stamp"].isoformat() if msg["delay"]["stamp"] else None
        emit("message", frm=msg["from"].bare, body=msg["body"], delay=delay)
        if msg["from"].bare == self.peer and not msg["body"].startswith("echo: "):
            self.send_message(mto=msg["from"], mbody="echo: " + msg["body"], mtype="chat")

    def on_presence(self, pres):
        emit("presence", frm=str(pres["from"]), show=pres["show"] or "available")

    async def read_commands(self):
        loop = asyncio.get_event_loop()
        reader = asyncio.StreamReader()
        await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
        while True:
            line = await reader.readline()
            if not line:
                break
            cmd = json.loads(line)
            if cmd["cmd"] == "message":
                self.send_message(mto=cmd["to"], mbody=cmd["body"], mtype="chat")
                emit("sent", to=cmd["to"])
            elif cmd["cmd"] == "subscribe":
                self.send_presence(pto=cmd["to"], ptype="subscribe")
                emit("sent", to=cmd["to"])
            elif cmd["cmd"] == "roster":
                await self.get_roster()
                items = {j: {"subscription": self.client_roster[j]["subscription"]} for j in self.client_roster}
                emit("roster", items=items)
            elif cmd["cmd"] == "quit":
                self.disconnect()
                break


def main():
    host, port, jid, password, peer = sys.argv[1:6]
    mechanism = sys.argv[6] if len(sys.argv) > 6 else "auto"
    interests = [ns for ns in sys.argv[7].split(",") if ns] if len(sys.argv) > 7 else []
    xmpp = Peer(jid, password, peer, mechanism, interests)
    xmpp.connect(address=(host, int(port)), force_starttls=True, disable_starttls=False, use_ssl=False)
    xmpp.loop.run_until_complete(xmpp.disconnected)


if __name__ == "__main__":
    main()
