#!/usr/bin/env bash
# p11cert enroll acme against a scripted, misbehaving ACME server (python,
# TLS on loopback with a certificate made here): what an untrusted peer can
# make the client spend is bounded.
#  - an answer larger than the 256 KiB bound: a clear error, exit 76, and
#    no leak of the partial answer (the ASan build checks at exit)
#  - the same for the answer to an order poll
#  - an order that stays "pending" forever: the wait ends at --timeout,
#    exit 69, nothing stored
. "$(dirname "$0")/acme_stub_lib.sh"

new_token acme
S=$STUB_DIR
cat >"$S/srv.py" <<'PY'
import json, sys
from acme_stub import Handler, serve
port, mode, d = int(sys.argv[1]), sys.argv[2], sys.argv[3]

class Bad(Handler):
    def do_GET(self):
        if self.path == "/dir":
            self.send(200, json.dumps({"newNonce": self.base + "/nonce", "newAccount": self.base + "/acct",
                                       "newOrder": self.base + "/order"}).encode())
        else:
            self.send(404)

    def do_POST(self):
        self.body()
        base = self.base
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

serve(Bad, port, d)
PY

# srv MODE: (re)start the scripted server
srv() { stub_start "$S/srv.py" "$1"; }
D=$T/state
mkdir -m 700 "$D"
args=(enroll acme --server "$STUB_DIRURL" --cacert "$S/cert.pem" --agree-tos
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
