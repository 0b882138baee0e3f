#!/usr/bin/env bash
# The tls-alpn-01 responder (src/lib/enroll/acme_alpn.c) validated by a real
# ACME server: pebble's VA connects to tests/helpers/alpn_responder on
# loopback for a DNS name (resolved by pebble-challtestsrv to 127.0.0.1) and
# for the IP identifier 127.0.0.1 (RFC 8738 reverse name), driven by a
# minimal python3-acme client (tests/helpers/acme_alpn_pebble.py) until
# p11cert's own ACME client does it.  The order ends with a certificate for
# both names; a wrong key authorization is refused by pebble.
# Skips when pebble or python3-acme is not installed.
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"

AR=$P11C_BUILD_DIR/tests/alpn_responder
CLIENT=$P11C_SOURCE_DIR/tests/helpers/acme_alpn_pebble.py
[ -x "$AR" ] || fail "no $AR (build the alpn_responder target)"
if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
	skip "pebble not installed (Debian package pebble)"
	exit 0
fi
if ! /usr/bin/python3 -c 'import acme, josepy' 2>/dev/null; then
	skip "python3-acme not installed"
	exit 0
fi

PIDS=()
_pebble_cleanup() {
	local rc=$? p
	set +e
	exec 3>&- 2>/dev/null
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		wait "$p" 2>/dev/null || true
	done
	_cleanup "$rc"
}
trap _pebble_cleanup EXIT

# free loopback TCP ports (pebble and challtestsrv take no port 0 that they
# would report back)
free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_port PORT WHAT PID: until something listens on 127.0.0.1:PORT
wait_port() {
	for _ in $(seq 150); do
		(exec 9<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
		kill -0 "$3" 2>/dev/null || fail "$2 died: $(tail -n 20 "$T/$2.log")"
		sleep 0.1
	done
	fail "$2 not listening on $1: $(tail -n 20 "$T/$2.log")"
}

# pebble's HTTPS certificate, made here
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
	-addext 'subjectAltName=DNS:localhost,IP:127.0.0.1' -keyout "$T/pebble.key" -out "$T/pebble.crt" 2>/dev/null

# run ID: a responder reading identifiers from a FIFO, challtestsrv as DNS,
# pebble validating against the responder's port
run() {
	local id=$1
	mkfifo "$T/$id.fifo"
	rm -f "$T/$id.port"
	"$AR" --stdin 127.0.0.1:0 "$T/$id.port" <"$T/$id.fifo" >"$T/$id-responder.log" 2>&1 &
	AR_PID=$!
	PIDS+=("$AR_PID")
	exec 3>"$T/$id.fifo"    # keeps the responder's input open
	for _ in $(seq 100); do
		[ -s "$T/$id.port" ] && break
		sleep 0.1
	done
	[ -s "$T/$id.port" ] || fail "responder wrote no port: $(cat "$T/$id-responder.log")"
	TLS_PORT=$(cat "$T/$id.port")
}

run r1
DNS_PORT=$(free_port)
MGMT_PORT=$(free_port)
pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 '' -dns01 "127.0.0.1:$DNS_PORT" \
	-http01 '' -https01 '' -tlsalpn01 '' -management "127.0.0.1:$MGMT_PORT" \
	>"$T/challtestsrv.log" 2>&1 3>&- &
PIDS+=("$!")
wait_port "$MGMT_PORT" challtestsrv "$!"

ACME_PORT=$(free_port)
PMGMT_PORT=$(free_port)
HTTP_PORT=$(free_port)
cat >"$T/pebble.json" <<EOF
{
  "pebble": {
    "listenAddress": "127.0.0.1:$ACME_PORT",
    "managementListenAddress": "127.0.0.1:$PMGMT_PORT",
    "certificate": "$T/pebble.crt",
    "privateKey": "$T/pebble.key",
    "httpPort": $HTTP_PORT,
    "tlsPort": $TLS_PORT,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": false
  }
}
EOF
PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
	pebble -config "$T/pebble.json" -dnsserver "127.0.0.1:$DNS_PORT" >"$T/pebble.log" 2>&1 3>&- &
PEBBLE_PID=$!
PIDS+=("$PEBBLE_PID")
wait_port "$ACME_PORT" pebble "$PEBBLE_PID"
DIR_URL=https://127.0.0.1:$ACME_PORT/dir

# --- good key authorizations: both identifiers valid, certificate issued ---
rc=0
timeout -k 5 120 /usr/bin/python3 "$CLIENT" "$DIR_URL" "$T/pebble.crt" "$T/r1.fifo" "$T/r1-responder.log" \
	good alpn.example.test 127.0.0.1 >"$T/good.out" 2>"$T/good.err" || rc=$?
[ "$rc" = 0 ] || fail "ACME order failed ($rc): $(cat "$T/good.out" "$T/good.err" | tail -n 20)"
grep -q '^alpn.example.test valid$' "$T/good.out" || fail "DNS identifier not valid: $(cat "$T/good.out")"
grep -q '^127.0.0.1 valid$' "$T/good.out" || fail "IP identifier not valid: $(cat "$T/good.out")"
grep -q '^certificate 127.0.0.1 alpn.example.test$' "$T/good.out" || fail "certificate names: $(cat "$T/good.out")"
pass "pebble validated a DNS and an IP identifier by tls-alpn-01 and issued the certificate"

# --- a wrong key authorization: pebble refuses ---
rc=0
timeout -k 5 120 /usr/bin/python3 "$CLIENT" "$DIR_URL" "$T/pebble.crt" "$T/r1.fifo" "$T/r1-responder.log" \
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
