#!/usr/bin/env bash
# ACME Renewal Information (RFC 9773) against pebble, which has none of its
# own: tests/cli/ari_proxy.py in front of it adds renewalInfo to the
# directory and serves the windows this test writes.  check shows the
# window and follows it over the lifetime threshold, asks the CA again only
# after its Retry-After and keeps the time picked in the window (DIR/ID.ari)
# until the window changes; renew does nothing before that time, and once
# it has come renews with an order whose replaces is the certificate's
# CertID (s4.1, computed here with openssl); a CA that refuses replaces gets
# the order again without it; an answer that is not renewal information
# falls back to the lifetime rule with a warning; renew --rekey goes ahead
# whatever the window.
. "$(dirname "$0")/acme_lib.sh"

new_token acmeari
acme_up
D=$T/state
mkdir -m 700 "$D"
P=$T/proxy
mkdir -p "$P"
PPORT=$(free_port)
UP=${ACME_DIR#https://localhost:}
UP=${UP%/dir}
(exec python3 "$(dirname "$0")/ari_proxy.py" "$PPORT" "$UP" "$T/pebble/cert.pem" "$T/pebble/key.pem" \
	"$ACME_CACERT" "$P") </dev/null >"$T/proxy.log" 2>&1 &
PROXY_PID=$!
_PIDS+=("$PROXY_PID")
ARI_DIR=https://localhost:$PPORT/dir
wait_for 30 "the ARI proxy" curl -sf --cacert "$ACME_CACERT" "$ARI_DIR" -o "$T/dir.json"
json_assert "$T/dir.json" "assert j['renewalInfo'] == 'https://localhost:$PPORT/renewal-info/', j"

# window START_DAYS END_DAYS [JSON fields]: the window the proxy serves,
# in days from now
window() {
	python3 - "$P/window.json" "$1" "$2" "${3:-}" <<'PY'
import datetime, json, sys
now = datetime.datetime.now(datetime.timezone.utc).replace(microsecond=0)
f = lambda d: (now + datetime.timedelta(days=float(d))).strftime("%Y-%m-%dT%H:%M:%SZ")
w = {"start": f(sys.argv[2]), "end": f(sys.argv[3])}
w.update(json.loads(sys.argv[4] or "{}"))
json.dump(w, open(sys.argv[1] + ".tmp", "w"))
PY
	mv "$P/window.json.tmp" "$P/window.json"
}

# cert_id FILE: the RFC 9773 s4.1 CertID of a certificate, from openssl's
# text (base64url of the AKI keyIdentifier "." the serial's DER content)
cert_id() {
	openssl x509 -in "$1" -noout -serial -ext authorityKeyIdentifier | python3 -c '
import base64, re, sys
t = sys.stdin.read()
serial = re.search(r"serial=([0-9A-Fa-f]+)", t).group(1)
serial = "0" * (len(serial) % 2) + serial
ser = bytes.fromhex(serial).lstrip(b"\0") or b"\0"
if ser[0] & 0x80:
    ser = b"\0" + ser
aki = re.search(r"(?:keyid:)?((?:[0-9A-Fa-f]{2}:)+[0-9A-Fa-f]{2})", t.split("Authority Key Identifier")[1]).group(1)
b = lambda x: base64.urlsafe_b64encode(x).decode().rstrip("=")
print(b(bytes.fromhex(aki.replace(":", ""))) + "." + b(ser))'
}

n_lines() { if [ -e "$1" ]; then wc -l <"$1"; else echo 0; fi; }

# 1. enroll through the proxy (a first order: no replaces)
acme_enroll 0 --server "$ARI_DIR" --key "pkcs11:token=$TOKEN;object=web" -d www.example.test \
	--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
json_assert "$D/web.enroll" "assert j['server'] == '$ARI_DIR', j"
[ "$(n_lines "$P/orders.log")" = 1 ] || fail "the proxy saw $(n_lines "$P/orders.log") orders"
tail -n 1 "$P/orders.log" >"$T/order.json"
json_assert "$T/order.json" "assert 'replaces' not in j, j"
ID1=$(cert_id "$D/web.crt")
serial1=$(cert_serial "$D/web.crt")
pass "enrolled through the ARI proxy (CertID $ID1)"

# 2. a window in the future: check says fresh (though the lifetime
# threshold given says renew), shows the window; asked once within the
# Retry-After; the picked time is kept
window 10 11 '{"explanationURL": "https://ca.example/ari-docs", "retry_after": 3600}'
expect_rc 1 p11c check --id web --dir "$D" --threshold 3650d
expect_grep "^fresh: before the CA's renewal time \(ARI\)" "$T/out"
w_start=$(python3 -c 'import json; print(json.load(open("'"$P/window.json"'"))["start"])')
w_end=$(python3 -c 'import json; print(json.load(open("'"$P/window.json"'"))["end"])')
expect_grep -F "ARI window: $w_start to $w_end; https://ca.example/ari-docs" "$T/out"
[ "$(tail -n 1 "$P/ari.log")" = "$ID1" ] || fail "renewalInfo asked for '$(tail -n 1 "$P/ari.log")', not $ID1"
at1=$(sed -n 's/.*renew from \([^ ]*\)$/\1/p' "$T/out")
expect_rc 1 p11c check --id web --dir "$D" --json --threshold 3650d
json_assert "$T/out" "
assert j['needs_renewal'] is False, j
assert j['ari'] == {'window_start': '$w_start', 'window_end': '$w_end', 'explanation_url': 'https://ca.example/ari-docs'}, j
assert j['renew_at'] == '$at1' and '$w_start' <= j['renew_at'] < '$w_end', j
"
[ "$(n_lines "$P/ari.log")" = 1 ] || fail "renewalInfo asked again within its Retry-After"
json_assert "$D/web.ari" "
import time
assert j['cert_id'] == '$ID1', j
assert j['start'] <= j['renew_at'] < j['end'], j
assert 3500 < j['next_check'] - time.time() <= 3600, j
"
[ "$(stat -c %a "$D/web.ari")" = 644 ] || fail "web.ari mode $(stat -c %a "$D/web.ari")"
pass "future window: check fresh, window shown, one request in the Retry-After, the picked time kept"

# 3. renew before the time: nothing renewed, no order
expect_rc 0 p11c renew --id web --dir "$D"
expect_grep "'web' is not due: the CA's renewal window \(ARI\) is $w_start to $w_end, renewal from $at1" "$T/err"
[ "$(cert_serial "$D/web.crt")" = "$serial1" ] || fail "renewed before the window"
[ "$(n_lines "$P/orders.log")" = 1 ] || fail "an order before the window"
pass "future window: renew does nothing"

# 4. the Retry-After passed (next_check moved back) and the window moved
# into the past: a new time is picked in it, check says renew; renew
# orders with replaces = the CertID
window -2 -1 '{"retry_after": 0}'
python3 - "$D/web.ari" <<'PY'
import json, sys
j = json.load(open(sys.argv[1])); j["next_check"] = 0
json.dump(j, open(sys.argv[1], "w"))
PY
expect_rc 0 p11c check --id web --dir "$D"
expect_grep "^renew: in the CA's renewal window \(ARI\)" "$T/out"
w_start=$(python3 -c 'import json; print(json.load(open("'"$P/window.json"'"))["start"])')
w_end=$(python3 -c 'import json; print(json.load(open("'"$P/window.json"'"))["end"])')
expect_grep -F "ARI window: $w_start to $w_end" "$T/out"
json_assert "$D/web.ari" "
import time
assert j['start'] <= j['renew_at'] < j['end'] < time.time(), j
assert 0 < j['next_check'] - time.time() <= 60, j  # Retry-After 0: one minute
"
[ "$(n_lines "$P/ari.log")" = 2 ] || fail "renewalInfo not asked again after its Retry-After"
expect_rc 0 p11c renew --id web --dir "$D"
expect_grep "the order replaces certificate $ID1 \(RFC 9773\)" "$T/err"
expect_grep "renewed 'web'" "$T/err"
tail -n 1 "$P/orders.log" >"$T/order.json"
json_assert "$T/order.json" "assert j.get('replaces') == '$ID1', j"
[ "$(cert_serial "$D/web.crt")" != "$serial1" ] || fail "no new certificate"
cert_next_to_key web "$D/web.crt" >/dev/null
[ -e "$D/web.ari" ] && fail "the renewal information of the replaced certificate is kept"
pass "past window: check says renew, renew orders with replaces = $ID1"

# 5. a CA that refuses replaces (409 alreadyReplaced): the order again
# without it
ID2=$(cert_id "$D/web.crt")
window -2 -1 '{"refuse_replaces": true}'
n=$(n_lines "$P/orders.log")
expect_rc 0 p11c renew --id web --dir "$D"
[ "$(n_lines "$P/orders.log")" = $((n + 2)) ] || fail "$(( $(n_lines "$P/orders.log") - n )) orders, 2 expected"
tail -n 2 "$P/orders.log" | head -n 1 >"$T/order.json"
json_assert "$T/order.json" "assert j.get('replaces') == '$ID2', j"
tail -n 1 "$P/orders.log" >"$T/order.json"
json_assert "$T/order.json" "assert 'replaces' not in j, j"
cert_next_to_key web "$D/web.crt" >/dev/null
pass "replaces refused: ordered again without it"

# 6. an answer that is not renewal information: a warning, the lifetime
# rule (pebble's certificates live five years: fresh at 2/3)
window -2 -1 '{"raw": "{\"suggestedWindow\": {\"start\": \"yesterday\", \"end\": \"today\"}}"}'
expect_rc 1 p11c check --id web --dir "$D"
expect_grep "warning: no renewal information from $ARI_DIR: renewalInfo: the suggestedWindow's start 'yesterday'" "$T/err"
expect_grep "^fresh: valid" "$T/out"
expect_nogrep "ARI window" "$T/out"
pass "bad renewal information: warned, lifetime rule"

# 7. renew --rekey whatever the window
window 10 11
serial=$(cert_serial "$D/web.crt")
expect_rc 0 p11c renew --id web --dir "$D" --rekey
expect_grep "renewed 'web' with a new key" "$T/err"
[ "$(cert_serial "$D/web.crt")" != "$serial" ] || fail "no new certificate"
cert_next_to_key web "$D/web.crt" >/dev/null
pass "renew --rekey goes ahead before the window"
