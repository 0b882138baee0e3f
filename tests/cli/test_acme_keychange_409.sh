#!/usr/bin/env bash
# p11cert acme key-change against a scripted ACME server (python, TLS on
# loopback) that answers as RFC 8555 s7.3.5 says and pebble 2.4 does not:
#  - it checks the wire shape: the outer JWS has kid = the account URL and
#    no jwk; the inner JWS (its payload) has jwk, the same url, no nonce,
#    no kid, and {"account", "oldKey"} with oldKey the outer signer's JWK
#  - its first keyChange answer is badNonce (retried with the fresh nonce)
#  - then 409 with the other account in Location: the message names it,
#    exit 77, records unchanged, no marker left
#  - a directory without keyChange: exit 76, no marker or record change left
. "$(dirname "$0")/acme_stub_lib.sh"

new_token acme
S=$STUB_DIR
PORT=$STUB_PORT
cat >"$S/srv.py" <<'PY'
import json, sys
from acme_stub import Handler, jws_parts, serve
port, mode, d = int(sys.argv[1]), sys.argv[2], sys.argv[3]
state = {"keychange": 0, "changed_409": False}

class KeyChange(Handler):
    def do_GET(self):
        if self.path != "/dir":
            return self.send(404)
        dr = {"newNonce": self.base + "/nonce", "newAccount": self.base + "/acct", "newOrder": self.base + "/order"}
        if mode != "nokeychange":
            dr["keyChange"] = self.base + "/key-change"
        self.send(200, json.dumps(dr).encode())

    def do_POST(self):
        prot, payload = jws_parts(self.body())
        if self.path == "/acct":
            # the first key looked up is the account's (/acct/1); another
            # key has none until the keyChange, then it is /acct/2's
            k = json.dumps(prot.get("jwk"), sort_keys=True)
            state.setdefault("old", k)
            if k == state["old"]:
                self.send(200, b"{}", extra=[("Location", self.base + "/acct/1")])
            elif state["changed_409"]:
                self.send(200, b"{}", extra=[("Location", self.base + "/acct/2")])
            else:
                self.problem(400, "accountDoesNotExist", "no account for this key")
        elif self.path == "/key-change":
            state["keychange"] += 1
            if state["keychange"] == 1:
                return self.problem(400, "badNonce", "try again")
            ih, inner_payload = jws_parts(payload.encode())
            pl = json.loads(inner_payload)
            url, acct, errs = self.base + "/key-change", self.base + "/acct/1", []
            if prot.get("kid") != acct or "jwk" in prot or prot.get("url") != url:
                errs.append("outer header %r" % prot)
            if "jwk" not in ih or "nonce" in ih or "kid" in ih or ih.get("url") != url:
                errs.append("inner header %r" % ih)
            if sorted(pl) != ["account", "oldKey"] or pl["account"] != acct:
                errs.append("inner payload %r" % pl)
            if pl.get("oldKey") == ih.get("jwk") or json.dumps(pl.get("oldKey"), sort_keys=True) != state["old"]:
                errs.append("oldKey is not the account's key")
            if errs:
                return self.problem(400, "malformed", "; ".join(errs))
            state["changed_409"] = True
            self.send(409, b"", extra=[("Location", self.base + "/acct/2")])
        else:
            self.send(404)

serve(KeyChange, port, d)
PY

D=$T/state
mkdir -m 700 "$D"
uri() { printf 'pkcs11:token=%s;object=%s' "$TOKEN" "$1"; }
# the records of an enrollment of key web with account key web-acme-account
expect_rc 0 p11c keygen --key "$(uri web)" --type ec:P-256
expect_rc 0 p11c keygen --key "$(uri web-acme-account)" --type ec:P-256
cat >"$D/web.enroll" <<JSON
{"protocol": "acme", "server": "https://localhost:$PORT/dir", "client_id": "web", "key": "$(uri web)",
 "account_key": "$(uri web-acme-account)", "names": ["www.example.test"], "challenge": "http-01",
 "agree_tos": true, "webroot": "$T", "ca_file": "$S/cert.pem"}
JSON
cat >"$D/web.acme-account" <<JSON
{"server": "https://localhost:$PORT/dir", "account_key": "$(uri web-acme-account)", "url": "https://localhost:$PORT/acct/1"}
JSON
chmod 0600 "$D/web.acme-account"
sum_before=$(cat "$D/web.enroll" "$D/web.acme-account" | sha256sum)

stub_start "$S/srv.py" conflict
expect_rc 77 p11c acme key-change --id web --dir "$D" --new-account-key "$(uri a2)"
expect_grep -F "answered 409: the new key is already the key of the account https://localhost:$PORT/acct/2" "$T/err"
expect_nogrep "malformed" "$T/err"
[ "$(grep -c 'POST /key-change' "$SRV_LOG")" = 2 ] || fail "badNonce not retried once: $(cat "$SRV_LOG")"
[ "$(cat "$D/web.enroll" "$D/web.acme-account" | sha256sum)" = "$sum_before" ] || fail "the records changed"
[ ! -e "$D/web.acme-keychange" ] || fail "the marker is left"
pass "409 with Location: the account named, exit 77, records unchanged; the JWS shape checked; badNonce retried"

stub_start "$S/srv.py" nokeychange
expect_rc 76 p11c acme key-change --id web --dir "$D" --new-account-key "$(uri a3)"
expect_grep "no keyChange" "$T/err"
[ ! -e "$D/web.acme-keychange" ] || fail "a marker without a keyChange"
[ "$(cat "$D/web.enroll" "$D/web.acme-account" | sha256sum)" = "$sum_before" ] || fail "the records changed"
pass "a directory without keyChange: exit 76, nothing written"
