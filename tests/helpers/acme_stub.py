"""A scripted ACME server for the CLI tests (tests/cli/test_acme_*.sh):
HTTPS on 127.0.0.1 with the test's certificate, a fresh Replay-Nonce on
every answer, one log line per request on stderr.  A test subclasses
Handler (do_GET / do_POST) and calls serve()."""
import base64
import http.server
import json
import ssl


def b64d(s):
    """base64url without padding -> bytes"""
    return base64.urlsafe_b64decode(s + "=" * (-len(s) % 4))


def jws_parts(body):
    """a flattened JWS (bytes) -> (protected header, payload text)"""
    j = json.loads(body)
    return json.loads(b64d(j["protected"])), b64d(j["payload"]).decode()


class Handler(http.server.BaseHTTPRequestHandler):
    base = ""

    def log_message(self, *a):
        import sys
        sys.stderr.write("%s %s\n" % (self.command, self.path))

    def send(self, code, body=b"", ctype="application/json", extra=()):
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Replay-Nonce", "nonce-%d" % id(self))
        for k, v in extra:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def problem(self, code, typ, detail):
        body = {"type": "urn:ietf:params:acme:error:" + typ, "detail": detail}
        self.send(code, json.dumps(body).encode(), ctype="application/problem+json")

    def body(self):
        return self.rfile.read(int(self.headers.get("Content-Length", "0")))

    def do_HEAD(self):
        self.send(200)


def serve(handler, port, certdir):
    """serve handler on 127.0.0.1:port with certdir/cert.pem, key.pem"""
    handler.base = "https://localhost:%d" % port
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certdir + "/cert.pem", certdir + "/key.pem")
    srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
    srv.serve_forever()
