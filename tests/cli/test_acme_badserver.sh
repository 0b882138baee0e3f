#!/usr/bin/env bash
# p11cert enroll acme against a scripted, misbehaving ACME server (python,
# TLS on loopback with a certificate made here): what an untrusted peer can
# make the client spend is bounded.
#  - an answer larger than the 256 KiB bound: a clear error, exit 76, and
#    no leak of the partial answer (the ASan build checks at exit)
#  - the same for the answer to an order poll
#  - an order that stays "pending" forever: the wait ends at --timeout,
#    exit 69, nothing stored
. "$(dirname "$0")/enroll_lib.sh"

new_token acme
S=$T/srv
mkdir -p "$S"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$S/key.pem" -out "$S/cert.pem" \
	-subj /CN=localhost -days 2 -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
	|| fail "cannot make the server certificate"
PORT=$(free_port)
cat >"$S/srv.py" <<'PY'
import http.server, json, ssl, sys
port, mode, d = int(sys.argv[1]), sys.argv[2], sys.argv[3]
base = "https://localhost:%d" % port
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a):
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
    def do_HEAD(self):
        self.send(200)
    def do_GET(self):
        if self.path == "/dir":
            self.send(200, json.dumps({"newNonce": base + "/nonce", "newAccount": base + "/acct",
                                       "newOrder": base + "/order"}).encode())
        else:
            self.send(404)
    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        self.rfile.read(n)
        if self.path == "/acct":
            if mode == "huge":
                self.send(200, b"x" * (300 * 1024), extra=[("Location", base + "/acct/1")])
            else:
                self.send(200, b"{}", extra=[("Location", base + "/acct/1")])
        elif self.path == "/order":
            self.send(201, json.dumps({"status": "pending", "authorizations": [], "finalize": base + "/fin",
                                       "identifiers": []}).encode(), extra=[("Location", base + "/order/1")])
        elif self.path == "/order/1" and mode == "hugepoll":
            self.send(200, b"x" * (300 * 1024))
        elif self.path == "/order/1":
            self.send(200, json.dumps({"status": "pending", "authorizations": [], "finalize": base + "/fin"}).encode())
        else:
            self.send(404)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(d + "/cert.pem", d + "/key.pem")
srv = http.server.ThreadingHTTPServer(("127.0.0.1", port), H)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
srv.serve_forever()
PY

# srv MODE: (re)start the scripted server
srv() {
	[ -n "${SPID:-}" ] && kill_pid "$SPID"
	python3 "$S/srv.py" "$PORT" "$1" "$S" 2>"$T/srv-$1.log" &
	SPID=$!
	_PIDS+=("$SPID")
	wait_for 20 "the scripted ACME server" curl -sf --cacert "$S/cert.pem" "https://localhost:$PORT/dir"
}
D=$T/state
mkdir -m 700 "$D"
args=(enroll acme --server "https://localhost:$PORT/dir" --cacert "$S/cert.pem" --agree-tos
	--key "pkcs11:token=$TOKEN;object=web" -d www.example.test --webroot "$T" --dir "$D")

srv huge
expect_rc 76 p11c "${args[@]}"
expect_grep "answer larger than 262144 bytes" "$T/err"
[ -e "$D/web.acme-account" ] && fail "an account record from an oversized answer"
pass "an oversized answer: clear error, bounded"

# the same while polling the order (the partial answer is freed: the
# ASan build's leak check at exit fails otherwise)
srv hugepoll
expect_rc 76 p11c "${args[@]}"
expect_grep "order: .*answer larger than 262144 bytes" "$T/err"
pass "an oversized poll answer: clear error, nothing kept"

srv pending
start=$(date +%s)
expect_rc 69 p11c "${args[@]}" --timeout 3
expect_grep "still 'pending' after 3 s" "$T/err"
[ $(($(date +%s) - start)) -lt 60 ] || fail "the bounded wait took $(($(date +%s) - start)) s"
[ "$(n_objects certificate web)" = 0 ] || fail "a certificate was stored"
pass "an order pending forever: the wait ends at --timeout, exit 69"
