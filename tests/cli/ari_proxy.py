#!/usr/bin/env python3
"""An HTTPS proxy in front of pebble that adds RFC 9773 renewal information
(tests/cli/test_acme_ari.sh; pebble 2.4 has no renewalInfo).  Standard
library only, loopback only, stopped by PID.

    ari_proxy.py PORT UPSTREAM_PORT CERT KEY UPSTREAM_CA STATE_DIR

Every request goes on to pebble at localhost:UPSTREAM_PORT with its Host
header kept (pebble builds its URLs and checks the JWS "url" from it), except:
  GET /dir               pebble's directory plus "renewalInfo"
  GET /renewal-info/ID   ID appended to STATE_DIR/ari.log; the answer is
                         STATE_DIR/window.json: {"start", "end",
                         "explanationURL", "retry_after"} (404 when missing;
                         "raw": a body sent as is)
  POST /order-plz        the JWS payload appended to STATE_DIR/orders.log (one
                         JSON a line); with "refuse_replaces" in window.json,
                         an order carrying replaces gets 409 alreadyReplaced
"""
import base64
import http.client
import http.server
import json
import os
import ssl
import sys

PORT, UP_PORT = int(sys.argv[1]), int(sys.argv[2])
CERT, KEY, UP_CA, STATE = sys.argv[3:7]
BODY_MAX = 1 << 20
HOP = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


def b64d(s):
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def window():
    try:
        with open(os.path.join(STATE, "window.json")) as f:
            return json.load(f)
    except FileNotFoundError:
        return None


def log(name, line):
    with open(os.path.join(STATE, name), "a") as f:
        f.write(line + "\n")


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    timeout = 30

    def log_message(self, fmt, *args):
        sys.stderr.write("ari_proxy: " + (fmt % args) + "\n")

    def send(self, status, body, headers=()):
        self.send_response(status)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def upstream(self, body):
        ctx = ssl.create_default_context(cafile=UP_CA)
        conn = http.client.HTTPSConnection("localhost", UP_PORT, context=ctx, timeout=30)
        hdrs = {k: v for k, v in self.headers.items() if k.lower() not in HOP}
        conn.request(self.command, self.path, body=body, headers=hdrs)
        r = conn.getresponse()
        data = r.read(BODY_MAX + 1)[:BODY_MAX]
        out = [(k, v) for k, v in r.getheaders() if k.lower() not in HOP]
        conn.close()
        return r.status, out, data

    def handle_any(self):
        n = int(self.headers.get("Content-Length") or 0)
        if n < 0 or n > BODY_MAX:
            self.send(413, b"")
            return
        body = self.rfile.read(n) if n else None
        if self.command == "GET" and self.path.startswith("/renewal-info/"):
            log("ari.log", self.path[len("/renewal-info/"):])
            w = window()
            if w is None:
                self.send(404, b"")
            elif "raw" in w:
                self.send(200, w["raw"].encode(), [("Content-Type", "application/json")])
            else:
                doc = {"suggestedWindow": {"start": w["start"], "end": w["end"]}}
                if w.get("explanationURL"):
                    doc["explanationURL"] = w["explanationURL"]
                hdrs = [("Content-Type", "application/json")]
                if "retry_after" in w:
                    hdrs.append(("Retry-After", str(w["retry_after"])))
                self.send(200, json.dumps(doc).encode(), hdrs)
            return
        if self.command == "POST" and self.path == "/order-plz" and body:
            payload = json.loads(b64d(json.loads(body)["payload"]))
            log("orders.log", json.dumps(payload))
            w = window() or {}
            if w.get("refuse_replaces") and "replaces" in payload:
                prob = {"type": "urn:ietf:params:acme:error:alreadyReplaced", "detail": "replaced already"}
                # a fresh nonce from pebble, as every ACME answer carries one
                ctx = ssl.create_default_context(cafile=UP_CA)
                conn = http.client.HTTPSConnection("localhost", UP_PORT, context=ctx, timeout=30)
                conn.request("HEAD", "/nonce-plz", headers={"Host": self.headers.get("Host")})
                nonce = conn.getresponse().getheader("Replay-Nonce")
                conn.close()
                self.send(409, json.dumps(prob).encode(),
                          [("Content-Type", "application/problem+json"), ("Replay-Nonce", nonce)])
                return
        status, hdrs, data = self.upstream(body)
        if self.command == "GET" and self.path == "/dir" and status == 200:
            d = json.loads(data)
            d["renewalInfo"] = "https://%s/renewal-info/" % self.headers.get("Host")
            data = json.dumps(d).encode()
        self.send(status, data, hdrs)

    do_GET = do_POST = do_HEAD = handle_any


srv = http.server.ThreadingHTTPServer(("127.0.0.1", PORT), Handler)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(CERT, KEY)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
