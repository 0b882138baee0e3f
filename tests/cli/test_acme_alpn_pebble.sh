#!/usr/bin/env bash
# The tls-alpn-01 responder (src/lib/enroll/acme_alpn.c) validated by a real
# ACME server: pebble's VA connects to tests/helpers/alpn_responder on
# loopback for a DNS name (resolved by pebble-challtestsrv to 127.0.0.1) and
# for the IP identifier 127.0.0.1 (RFC 8738 reverse name), driven by a
# minimal python3-acme client (tests/helpers/acme_alpn_pebble.py) until
# p11cert's own ACME client does it.  The order ends with a certificate for
# both names; a wrong key authorization is refused by pebble.
# Skips when pebble or python3-acme is not installed.  pebble and
# challtestsrv come up through acme_lib.sh (acme_up).
# shellcheck source=tests/cli/acme_lib.sh
source "$(dirname "$0")/acme_lib.sh"   # skips when pebble is not installed

AR=$P11C_BUILD_DIR/tests/alpn_responder
CLIENT=$P11C_SOURCE_DIR/tests/helpers/acme_alpn_pebble.py
[ -x "$AR" ] || fail "no $AR (build the alpn_responder target)"
if ! /usr/bin/python3 -c 'import acme, josepy' 2>/dev/null; then
	skip "python3-acme not installed"
	exit 0
fi

# shellcheck disable=SC2119
acme_up
# the responder on pebble's tlsPort, reading identifiers from a FIFO
TLS_PORT=$(/usr/bin/python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["pebble"]["tlsPort"])' \
	"$T/pebble/config.json")
mkfifo "$T/r1.fifo"
"$AR" --stdin "127.0.0.1:$TLS_PORT" "$T/r1.port" <"$T/r1.fifo" >"$T/r1-responder.log" 2>&1 &
AR_PID=$!
_PIDS+=("$AR_PID")
exec 3>"$T/r1.fifo"    # keeps the responder's input open
wait_for 10 "the responder's port file" test -s "$T/r1.port"
[ "$(cat "$T/r1.port")" = "$TLS_PORT" ] || fail "responder not on pebble's tlsPort"
DIR_URL=$ACME_DIR

# --- good key authorizations: both identifiers valid, certificate issued ---
rc=0
timeout -k 5 120 /usr/bin/python3 "$CLIENT" "$DIR_URL" "$ACME_CACERT" "$T/r1.fifo" "$T/r1-responder.log" \
	good alpn.example.test 127.0.0.1 >"$T/good.out" 2>"$T/good.err" || rc=$?
[ "$rc" = 0 ] || fail "ACME order failed ($rc): $(cat "$T/good.out" "$T/good.err" | tail -n 20)"
grep -q '^alpn.example.test valid$' "$T/good.out" || fail "DNS identifier not valid: $(cat "$T/good.out")"
grep -q '^127.0.0.1 valid$' "$T/good.out" || fail "IP identifier not valid: $(cat "$T/good.out")"
grep -q '^certificate 127.0.0.1 alpn.example.test$' "$T/good.out" || fail "certificate names: $(cat "$T/good.out")"
pass "pebble validated a DNS and an IP identifier by tls-alpn-01 and issued the certificate"

# --- a wrong key authorization: pebble refuses ---
rc=0
timeout -k 5 120 /usr/bin/python3 "$CLIENT" "$DIR_URL" "$ACME_CACERT" "$T/r1.fifo" "$T/r1-responder.log" \
	bad wrong.example.test >"$T/bad.out" 2>"$T/bad.err" || rc=$?
[ "$rc" = 1 ] || fail "wrong key authorization: exit $rc: $(cat "$T/bad.out" "$T/bad.err" | tail -n 20)"
grep -q '^wrong.example.test invalid: .*' "$T/bad.out" || fail "wrong key authorization not refused: $(cat "$T/bad.out")"
pass "pebble refused a wrong key authorization: $(cut -d: -f2- "$T/bad.out" | head -n 1)"

# end of input stops the responder
exec 3>&-
for _ in $(seq 100); do
	kill -0 "$AR_PID" 2>/dev/null || break
	sleep 0.1
done
kill -0 "$AR_PID" 2>/dev/null && fail "responder did not stop at end of input"
wait "$AR_PID" || fail "responder exited $?: $(cat "$T/r1-responder.log")"
grep -q '^stopped$' "$T/r1-responder.log" || fail "responder did not report its stop"
