#!/usr/bin/python3
"""An independent XMPP client (slixmpp) driven by the end-to-end tests.

Usage: slixmpp_peer.py HOST PORT JID PASSWORD PEER_JID [MECHANISM [INTERESTS]]
Logs in over STARTTLS with MECHANISM (default "auto": slixmpp chooses, which on TLS 1.3 is
SCRAM-SHA-256-PLUS with tls-unique), accepts subscriptions, answers each chat message from
PEER_JID with "echo: <body>", and prints one JSON event per line on stdout. Reads commands as JSON
lines on stdin: {"cmd": "message", "to": ..., "body": ...}, {"cmd": "subscribe", "to": ...},
{"cmd": "roster"}, {"cmd": "quit"},
{"cmd": "upload", "path": ..., "content_type": ..., "to": ...} (XEP-0363 through slixmpp's xep_0363
plugin, which finds the service in the host's disco#items; the URL is sent to "to" if given) and
{"cmd": "download", "url": ...} (prints the status, SHA-256 and headers). HTTPS certificates are
checked against the system's CAs or SSL_CERT_FILE.
INTERESTS, comma-separated PEP namespaces, turns on entity capabilities (xep_0115) and announces
NAMESPACE+notify for each (xep_0163), as a client interested in those PEP nodes does.
slixmpp_pep_peer.py builds on this one: more plugins, and more commands through handle().
"""
import asyncio
import hashlib
import json
import ssl
import sys

import slixmpp


def emit(event, **fields):
    print(json.dumps({"event": event, **fields}), flush=True)


class Peer(slixmpp.ClientXMPP):
    def __init__(self, jid, password, peer, mechanism="auto", interests=(), plugins=()):
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
        # Caps are on with interests, and with plugins (such as xep_0084) that add their own +notify.
        self.caps = bool(self.interests or plugins)
        if self.caps:
            self.register_plugin("xep_0115")
            self.register_plugin("xep_0163")
        for plugin in plugins:
            self.register_plugin(plugin)
        self.add_event_handler("session_start", self.on_start)
        self.add_event_handler("message", self.on_message)
        self.add_event_handler("presence_available", self.on_presence)
        self.add_event_handler("presence_subscribe", lambda p: emit("subscribe", frm=p["from"].bare))
        self.add_event_handler("presence_subscribed", lambda p: emit("subscribed", frm=p["from"].bare))
        self.add_event_handler("failed_auth", lambda _: emit("failed_auth"))
        self.add_event_handler("disconnected", lambda _: emit("disconnected"))

    async def on_start(self, _):
        if self.interests:
            self["xep_0163"].add_interest(self.interests)
        if self.caps:
            # The caps 'ver' computed over every +notify feature before presence goes out.
            await self["xep_0115"].update_caps(broadcast=False)
        self.send_presence()
        await self.get_roster()
        emit("session_start", jid=str(self.boundjid), mechanism=self["feature_mechanisms"].mech.name if self["feature_mechanisms"].mech else None, tls=self.is_connected())
        # Kept: the event loop holds tasks weakly, and an unreferenced one may be collected mid-await.
        self.commands = asyncio.ensure_future(self.read_commands())

    def on_message(self, msg):
        if msg["type"] not in ("chat", "normal"):
            return
        delay = msg["delay"]["stamp"].isoformat() if msg["delay"]["stamp"] else None
        emit("message", frm=msg["from"].bare, body=msg["body"], delay=delay)
        if msg["from"].bare == self.peer and not msg["body"].startswith("echo: "):
            self.send_message(mto=msg["from"], mbody="echo: " + msg["body"], mtype="chat")

    async def find_upload_service(self):
        """The discovery of the xep_0363 plugin, done here: Debian's slixmpp 1.8.3 passes coroutines
        to asyncio.wait in xep_0030's get_info_from_domain, which Python 3.11 refuses. The same
        steps: the host's disco#items, then each item's disco#info for store/file and the feature."""
        if "xep_0363" not in self.plugin:
            self.register_plugin("xep_0363")
        plugin = self["xep_0363"]
        if plugin.upload_service is not None:
            return
        items = await self["xep_0030"].get_items(self.boundjid.domain, timeout=10)
        for jid, _node, _name in items["disco_items"]["items"]:
            info = await self["xep_0030"].get_info(jid, timeout=10)
            disco = info["disco_info"]
            if ("store", "file") in [(i[0], i[1]) for i in disco["identities"]] and "urn:xmpp:http:upload:0" in disco["features"]:
                plugin.upload_service = info["from"]
                for form in disco.iterables:
                    values = form["values"]
                    if values.get("FORM_TYPE") == ["urn:xmpp:http:upload:0"]:
                        plugin.max_file_size = int(values["max-file-size"])
                emit("upload_service", jid=str(info["from"]), max_file_size=plugin.max_file_size)
                return

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
            if cmd["cmd"] == "quit":
                self.disconnect()
                break
            if not await self.handle(cmd):
                emit("unknown_command", cmd=cmd["cmd"])

    async def handle(self, cmd):
        """Runs one command; False if it is not one of this peer's (subclasses add theirs)."""
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
        elif cmd["cmd"] == "upload":
            try:
                await self.find_upload_service()
                url = await self["xep_0363"].upload_file(cmd["path"], content_type=cmd.get("content_type"), timeout=10)
            except Exception as e:  # reported to the test, which decides
                emit("upload_failed", error=type(e).__name__, detail=str(e)[:300])
                return True
            emit("uploaded", url=url)
            if cmd.get("to"):
                self.send_message(mto=cmd["to"], mbody=url, mtype="chat")
        elif cmd["cmd"] == "download":
            import aiohttp
            async with aiohttp.ClientSession() as session:
                async with session.get(cmd["url"]) as resp:
                    body = await resp.read()
                    emit("downloaded", status=resp.status, sha256=hashlib.sha256(body).hexdigest(), size=len(body),
                         content_type=resp.headers.get("Content-Type"), disposition=resp.headers.get("Content-Disposition"))
        else:
            return False
        return True


def run(xmpp, host, port):
    """Connects over STARTTLS and runs until the stream ends."""
    xmpp.connect(address=(host, int(port)), force_starttls=True, disable_starttls=False, use_ssl=False)
    xmpp.loop.run_until_complete(xmpp.disconnected)


def main():
    host, port, jid, password, peer = sys.argv[1:6]
    mechanism = sys.argv[6] if len(sys.argv) > 6 else "auto"
    interests = [ns for ns in sys.argv[7].split(",") if ns] if len(sys.argv) > 7 else []
    run(Peer(jid, password, peer, mechanism, interests), host, port)


if __name__ == "__main__":
    main()
