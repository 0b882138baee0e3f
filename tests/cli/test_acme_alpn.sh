#!/usr/bin/env bash
# The ACME tls-alpn-01 responder (src/lib/enroll/acme_alpn.c, RFC 8737 and
# RFC 8738 s6) through tests/helpers/alpn_responder, with real
# `openssl s_client` as the validator on loopback: the certificate served
# for a DNS name and for IPv4 / IPv6 identifiers (reverse names in the SNI),
# its one subjectAltName and critical acmeIdentifier with SHA-256 of the key
# authorization; no / wrong ALPN, unknown / missing SNI fail with no
# certificate; bad arguments and a busy port; 50 idle connections do not
# lock a validator out; validators hanging up mid-handshake do not kill
# it (SIGPIPE); an idle connection is dropped after the handshake
# timeout; stop is prompt with idle clients connected.
# shellcheck source=tests/cli/lib.sh
source "$(dirname "$0")/lib.sh"

AR=$P11C_BUILD_DIR/tests/alpn_responder
FLOOD=$P11C_SOURCE_DIR/tests/helpers/conn_flood.py
[ -x "$AR" ] || fail "no $AR (build the alpn_responder target)"
command -v openssl >/dev/null || fail "openssl not installed"
command -v python3 >/dev/null || fail "python3 not installed"

PIDS=()
_alpn_cleanup() {
	local rc=$?
	set +e
	exec 2>/dev/null
	kill_and_reap ${PIDS[@]+"${PIDS[@]}"}
	_cleanup "$rc"
}
trap _alpn_cleanup EXIT

KA1=evaGxfADs6pSRb2LAv9IZf17Dt3juxGJ-PCt92wr-oA.9jg46WB3rR_AHD-EBXdN7cBkH1WOu0tA3M9fm21mqTI
KA2=tok2.thumb2
KA3=tok3.thumb3
KA4=tok4.thumb4

# ar_start NAME ADDR [ID KA]...: the responder in the background; sets
# AR_PID, AR_PORT (log in $T/NAME.log)
ar_start() {
	local name=$1 i
	shift
	rm -f "$T/$name.port"
	"$AR" "$1" "$T/$name.port" "${@:2}" >"$T/$name.log" 2>&1 &
	AR_PID=$!
	PIDS+=("$AR_PID")
	for i in $(seq 100); do
		[ -s "$T/$name.port" ] && break
		kill -0 "$AR_PID" 2>/dev/null || fail "alpn_responder $name died: $(cat "$T/$name.log")"
		sleep 0.1
	done
	[ -s "$T/$name.port" ] || fail "alpn_responder $name wrote no port"
	AR_PORT=$(cat "$T/$name.port")
}

# ar_stop: SIGTERM, then it must have said "stopped" and exited 0 within
# LIMIT tenths of a second (default 100)
ar_stop() {
	local limit=${1:-100} i rc=0
	kill -TERM "$AR_PID"
	for i in $(seq "$limit"); do
		kill -0 "$AR_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$AR_PID" 2>/dev/null && fail "alpn_responder did not stop within $((limit / 10)) s"
	wait "$AR_PID" || rc=$?
	[ "$rc" = 0 ] || fail "alpn_responder exited $rc: $(cat "$T"/*.log)"
}

# sc OUT [s_client options]: one handshake against the responder, the
# s_client report in $T/OUT.txt, the served certificate (if any) in
# $T/OUT.pem
sc() {
	local out=$1
	shift
	timeout -k 2 20 openssl s_client -connect "127.0.0.1:$AR_PORT" "$@" \
		</dev/null >"$T/$out.txt" 2>&1 || true
	rm -f "$T/$out.pem"
	openssl x509 -in "$T/$out.txt" -out "$T/$out.pem" 2>/dev/null || rm -f "$T/$out.pem"
}

# expect_challenge OUT SAN KEYAUTH: the handshake negotiated acme-tls/1 and
# served a self-signed certificate with exactly the subjectAltName SAN and
# the critical id-pe-acmeIdentifier holding OCTET STRING SHA-256(KEYAUTH)
expect_challenge() {
	local out=$1 san=$2 ka=$3 h got
	[ -f "$T/$out.pem" ] || fail "$out: no certificate served: $(tail -n 5 "$T/$out.txt")"
	grep -q '^ALPN protocol: acme-tls/1$' "$T/$out.txt" || fail "$out: acme-tls/1 not negotiated"
	openssl x509 -in "$T/$out.pem" -noout -ext subjectAltName >"$T/$out.san"
	got=$(sed -n '2,$p' "$T/$out.san" | tr -d ' ')
	[ "$got" = "$san" ] || fail "$out: subjectAltName '$got', want exactly '$san'"
	h=$(printf '%s' "$ka" | openssl dgst -sha256 -r | cut -d' ' -f1 | tr a-f A-F)
	openssl asn1parse -in "$T/$out.pem" >"$T/$out.asn1"
	# OBJECT, BOOLEAN critical, OCTET STRING holding 04 20 <hash>
	grep -A2 ':1.3.6.1.5.5.7.1.31$' "$T/$out.asn1" >"$T/$out.ext" || fail "$out: no acmeIdentifier extension"
	grep -q 'BOOLEAN *:255$' "$T/$out.ext" || fail "$out: acmeIdentifier not critical"
	grep -q "OCTET STRING *\[HEX DUMP\]:0420$h\$" "$T/$out.ext" \
		|| fail "$out: acmeIdentifier is not SHA-256 of the key authorization: $(cat "$T/$out.ext")"
	[ "$(grep -c ':1.3.6.1.5.5.7.1.31$' "$T/$out.asn1")" = 1 ] || fail "$out: acmeIdentifier twice"
	openssl verify -check_ss_sig -partial_chain -trusted "$T/$out.pem" -ignore_critical "$T/$out.pem" \
		>/dev/null 2>&1 || fail "$out: not a valid self-signed certificate"
}

# expect_refused OUT: the handshake failed and no certificate was sent
expect_refused() {
	[ ! -f "$T/$1.pem" ] || fail "$1: a certificate was served"
	grep -qE 'alert|handshake failure|errno|no peer certificate' "$T/$1.txt" \
		|| fail "$1: no handshake failure: $(tail -n 5 "$T/$1.txt")"
	grep -q '^ALPN protocol: acme-tls/1' "$T/$1.txt" && fail "$1: acme-tls/1 negotiated"
	return 0
}

REV6=1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa

ar_start main 127.0.0.1:0 example.test "$KA1" 127.0.0.1 "$KA2" 2001:db8::1 "$KA3" Sub.Example.TEST "$KA4"

# --- the challenge certificate (RFC 8737 s3) ---
sc dns -alpn acme-tls/1 -servername example.test
expect_challenge dns DNS:example.test "$KA1"
sc dns12 -tls1_2 -alpn acme-tls/1 -servername example.test
expect_challenge dns12 DNS:example.test "$KA1"
grep -q 'Protocol *: TLSv1.2' "$T/dns12.txt" || fail "TLS 1.2 not used"
sc dnscase -alpn acme-tls/1 -servername EXAMPLE.Test
expect_challenge dnscase DNS:example.test "$KA1"
sc sub -alpn acme-tls/1 -servername sub.example.test
expect_challenge sub DNS:sub.example.test "$KA4"
# other protocols offered beside acme-tls/1: acme-tls/1 is chosen
sc multi -alpn h2,acme-tls/1,http/1.1 -servername example.test
expect_challenge multi DNS:example.test "$KA1"
pass "DNS identifier: one dNSName SAN and the critical acmeIdentifier with SHA-256(key authorization), TLS 1.2 and 1.3"

# --- IP identifiers by reverse name (RFC 8738 s6) ---
sc ip4 -alpn acme-tls/1 -servername 1.0.0.127.in-addr.arpa
expect_challenge ip4 "IPAddress:127.0.0.1" "$KA2"
sc ip6 -alpn acme-tls/1 -servername "$REV6"
expect_challenge ip6 "IPAddress:2001:DB8:0:0:0:0:0:1" "$KA3"
sc ip4lit -alpn acme-tls/1 -servername 127.0.0.1
expect_refused ip4lit
pass "IP identifiers: reverse-DNS SNI, one iPAddress SAN"

# --- refusals: no certificate served ---
sc noalpn -servername example.test
expect_refused noalpn
grep -q 'no application protocol' "$T/noalpn.txt" || fail "no ALPN: not the no_application_protocol alert"
sc wrongalpn -alpn h2,http/1.1 -servername example.test
expect_refused wrongalpn
grep -q 'no application protocol' "$T/wrongalpn.txt" || fail "other ALPN: not the no_application_protocol alert"
sc nearalpn -alpn acme-tls/10 -servername example.test
expect_refused nearalpn
sc unknown -alpn acme-tls/1 -servername other.test
expect_refused unknown
grep -q 'unrecognized name' "$T/unknown.txt" || fail "unknown SNI: not the unrecognized_name alert"
sc nosni -alpn acme-tls/1 -noservername
expect_refused nosni
sc tls11 -tls1_1 -alpn acme-tls/1 -servername example.test
expect_refused tls11
grep -q 'protocol version' "$T/tls11.txt" || fail "TLS 1.1: not the protocol_version alert"
pass "no ALPN, other ALPN, unknown or missing SNI, TLS 1.1: handshake fails, no certificate"

# the responder still serves after all that
sc again -alpn acme-tls/1 -servername example.test
expect_challenge again DNS:example.test "$KA1"

# --- 50 idle connections do not lock a validator out ---
# (the responder handles 16 handshakes; the oldest gives way to a new one.
# Without that the validator would wait for the 10 s handshake timeout.)
python3 "$FLOOD" hold "$AR_PORT" 50 20 127.0.0.1 "$T/flood.ready" >"$T/flood.out" 2>&1 &
FPID=$!
PIDS+=("$FPID")
for i in $(seq 100); do
	[ -e "$T/flood.ready" ] && break
	sleep 0.1
done
[ -e "$T/flood.ready" ] || fail "conn_flood did not open its connections"
t0=$(date +%s%N)
timeout -k 1 8 openssl s_client -connect "127.0.0.1:$AR_PORT" -alpn acme-tls/1 -servername example.test \
	</dev/null >"$T/flood.txt" 2>&1 || true
openssl x509 -in "$T/flood.txt" -out "$T/flood.pem" 2>/dev/null || rm -f "$T/flood.pem"
expect_challenge flood DNS:example.test "$KA1"
t1=$(date +%s%N)
kill -TERM "$FPID" 2>/dev/null || true
wait "$FPID" 2>/dev/null || true
pass "validator served in $(((t1 - t0) / 1000000)) ms with 50 idle connections open"

# --- validators that hang up right after their ClientHello: the responder
# writes to closed sockets, which must not kill the process (SIGPIPE) ---
python3 - "$AR_PORT" >"$T/hangup.out" 2>&1 <<'EOF_PY' || true
import socket, ssl, sys
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE  # a hostile client: no verification needed
ctx.set_alpn_protocols(["acme-tls/1"])
for _ in range(200):
    try:
        s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=5)
        s.setblocking(False)
        t = ctx.wrap_socket(s, server_hostname="example.test", do_handshake_on_connect=False)
        try:
            t.do_handshake()
        except ssl.SSLWantReadError:
            pass
        t.close()
    except OSError as e:
        print("connection failed: %s" % e)
        break
EOF_PY
kill -0 "$AR_PID" 2>/dev/null || fail "responder died when validators hung up: $(cat "$T/main.log")"
sc hangup -alpn acme-tls/1 -servername example.test
expect_challenge hangup DNS:example.test "$KA1"
pass "200 validators hanging up after their ClientHello: the responder lives on"

# --- an idle connection is dropped after the handshake timeout (10 s) ---
python3 "$FLOOD" hold "$AR_PORT" 1 16 127.0.0.1 "$T/idle.ready" >"$T/idle.out" 2>&1 &
FPID=$!
PIDS+=("$FPID")
wait "$FPID" || fail "conn_flood: $(cat "$T/idle.out")"
grep -q '^opened 1 failed 0 closed_by_server 1 ' "$T/idle.out" \
	|| fail "idle connection not closed by the responder: $(cat "$T/idle.out")"
pass "an idle connection is closed after the handshake timeout"

# --- stop is prompt with idle clients connected ---
python3 "$FLOOD" hold "$AR_PORT" 5 30 127.0.0.1 "$T/stop.ready" >"$T/stop.out" 2>&1 &
FPID=$!
PIDS+=("$FPID")
for i in $(seq 100); do
	[ -e "$T/stop.ready" ] && break
	sleep 0.1
done
[ -e "$T/stop.ready" ] || fail "conn_flood did not open its connections"
# well under the 10 s handshake timeout
ar_stop 50
grep -q '^stopped$' "$T/main.log" || fail "responder did not report its stop"
kill -TERM "$FPID" 2>/dev/null || true
wait "$FPID" 2>/dev/null || true
pass "stop within 5 s while idle clients are connected"

# --- bad arguments ---
for a in 127.0.0.1 127.0.0.1:99999 127.0.0.1:x ::1:5001 "[::1:5001" 300.1.1.1:5001 host.example:5001 :; do
	expect_rc 2 "$AR" "$a" "$T/bad.port"
	expect_grep "alpn_responder: '.*'" "$T/err"
done
for id in '*.example.test' 'a b.test' '' -lead.test trail-.test 'x..test' "$(printf 'a%.0s' $(seq 64)).test" \
	'[::1]' 'example.test.'; do
	expect_rc 2 "$AR" 127.0.0.1:0 "$T/bad.port" "$id" "$KA1"
	expect_grep "add '.*': invalid argument" "$T/err"
done
for ka in '' tok tok. .thumb 'tok.th.umb' 'tok en.thumb' "tok.$(printf 'a%.0s' $(seq 600))"; do
	expect_rc 2 "$AR" 127.0.0.1:0 "$T/bad.port" example.test "$ka"
	expect_grep "add 'example.test': invalid argument" "$T/err"
done
[ ! -e "$T/bad.port" ] || fail "a refused responder wrote a port"
# the most identifiers of one responder: 100
ids=()
for i in $(seq 100); do ids+=("n$i.test" "$KA2"); done
ar_start many 127.0.0.1:0 "${ids[@]}"
sc many -alpn acme-tls/1 -servername n100.test
expect_challenge many DNS:n100.test "$KA2"
# a second responder on the same port: address in use
expect_rc 2 "$AR" "127.0.0.1:$AR_PORT" "$T/busy.port"
expect_grep "cannot listen on 127.0.0.1:$AR_PORT: Address already in use" "$T/err"
ar_stop
expect_rc 2 "$AR" 127.0.0.1:0 "$T/bad.port" "${ids[@]}" n101.test "$KA2"
expect_grep "add 'n101.test': invalid argument" "$T/err"
pass "bad addresses, identifiers and key authorizations, 101 identifiers and a busy port are refused"
