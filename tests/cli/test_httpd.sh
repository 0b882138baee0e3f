#!/usr/bin/env bash
# src/ca/httpd.c through tests/helpers/httpd_echo against real curl on
# loopback: TLS 1.2 and 1.3, Expect: 100-continue, body limit, client
# certificates, a handler that does not reply, path decoding, 50 concurrent
# requests, slow and garbage clients, max_connections, IPv6, and the
# graceful stop on SIGTERM with a request in flight.
#
# Environment: P11C_BUILD_DIR (set by ctest), the CMake build directory
# holding tests/httpd_echo.
set -euo pipefail
umask 077

TEST_NAME=test_httpd
_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${P11C_SOURCE_DIR:=$(cd "$_dir/../.." && pwd)}"
: "${P11C_BUILD_DIR:=$P11C_SOURCE_DIR/build}"
ECHO_BIN=$P11C_BUILD_DIR/tests/httpd_echo

T=
PIDS=()

fail() {
	local f
	echo "not ok - $TEST_NAME: $*" >&2
	for f in ${T:+"$T"/*.log}; do
		[ -f "$f" ] || continue
		echo "--- $(basename "$f") (last lines):" >&2
		tail -n 20 "$f" >&2
	done
	exit 1
}

_cleanup() {
	local rc=$? p i
	exec 3>&- 4>&- 5>&- 6>&- 2>/dev/null || true
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in ${PIDS[@]+"${PIDS[@]}"}; do
		for i in $(seq 20); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
	done
	[ -n "$T" ] && rm -rf -- "$T"
	exit "$rc"
}
trap _cleanup EXIT

[ -x "$ECHO_BIN" ] || fail "no $ECHO_BIN (build the httpd_echo target)"
command -v curl >/dev/null || fail "curl not installed"
command -v openssl >/dev/null || fail "openssl not installed"

T=$(mktemp -d "${TMPDIR:-/tmp}/p11c-$TEST_NAME.XXXXXX")

now_ms() { echo $(( $(date +%s%N) / 1000000 )); }

# --- a throwaway CA, server and client certificates ---
mkcert() { # NAME CN SIGNER EXT
	openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
		-keyout "$T/$1.key" -out "$T/$1.csr" 2>"$T/openssl.err" || fail "openssl req $1"
	printf '%s\n' "$4" >"$T/$1.ext"
	openssl x509 -req -in "$T/$1.csr" -CA "$T/$3.pem" -CAkey "$T/$3.key" -CAcreateserial \
		-days 1 -extfile "$T/$1.ext" -out "$T/$1.pem" 2>"$T/openssl.err" || fail "openssl x509 $1"
}
mkca() { # NAME CN
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=$2" \
		-days 1 -keyout "$T/$1.key" -out "$T/$1.pem" 2>"$T/openssl.err" || fail "openssl ca $1"
}
mkca ca "httpd test CA"
mkca rogue "rogue CA"
mkcert server localhost ca "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost
extendedKeyUsage=serverAuth"
mkcert client "httpd test client" ca "extendedKeyUsage=clientAuth"
mkcert rclient "rogue client" rogue "extendedKeyUsage=clientAuth"

# start_server NAME [VAR=value...]: sets PORT and PID; stderr in $T/NAME.log
start_server() {
	local name=$1 i
	shift
	rm -f "$T/$name.port"
	env "$@" "$ECHO_BIN" "$T/server.pem" "$T/server.key" "$T/$name.port" "$T/ca.pem" \
		2>"$T/$name.log" &
	PID=$!
	PIDS+=("$PID")
	for i in $(seq 50); do
		[ -s "$T/$name.port" ] && break
		kill -0 "$PID" 2>/dev/null || return 1
		sleep 0.1
	done
	[ -s "$T/$name.port" ] || fail "$name: no port file after 5 s"
	PORT=$(cat "$T/$name.port")
}

# wait_exit PID: RC = the server's exit status; fails after 5 s
wait_exit() {
	local i
	for i in $(seq 50); do
		kill -0 "$1" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$1" 2>/dev/null && fail "server $1 still running 5 s after SIGTERM"
	RC=0
	wait "$1" || RC=$?
}

cu() {
	curl -sS --noproxy '*' --max-time 10 --cacert "$T/ca.pem" "$@"
}

# req CODE URL [curl args...]: response body in $T/body, curl -v in $T/curl.err
req() {
	local want=$1 url=$2 code
	shift 2
	code=$(cu -v -o "$T/body" -w '%{http_code}' "$@" "$url" 2>"$T/curl.err") \
		|| { cat "$T/curl.err" >&2; fail "curl $* $url failed"; }
	[ "$code" = "$want" ] || { cat "$T/curl.err" "$T/body" >&2; fail "$url: HTTP $code, want $want"; }
}

body_is() {
	[ "$(cat "$T/body")" = "$1" ] || fail "body '$(cat "$T/body")', want '$1'"
}

start_server main
MAIN_PID=$PID
MAIN_PORT=$PORT
U=https://127.0.0.1:$MAIN_PORT

# --- TLS versions ---
req 200 "$U/hello" --tlsv1.2 --tls-max 1.2
grep -q 'SSL connection using TLSv1.2' "$T/curl.err" || fail "not TLS 1.2"
body_is "GET /hello bodylen=0 peercert=none host=127.0.0.1:$PORT"
req 200 "$U/hello13" --tlsv1.3
grep -q 'SSL connection using TLSv1.3' "$T/curl.err" || fail "not TLS 1.3"
body_is "GET /hello13 bodylen=0 peercert=none host=127.0.0.1:$PORT"
if cu --tlsv1.1 --tls-max 1.1 -o /dev/null "$U/old" 2>/dev/null; then
	fail "TLS 1.1 accepted"
fi

# --- bodies: Expect: 100-continue, none, over the limit ---
head -c 2000 /dev/zero | tr '\0' a >"$T/b2000"
head -c 3000 /dev/zero | tr '\0' b >"$T/b3000"
head -c 5000 /dev/zero | tr '\0' c >"$T/b5000"
req 200 "$U/post" -H 'Expect: 100-continue' --data-binary @"$T/b2000"
grep -q '< HTTP/1.1 100 Continue' "$T/curl.err" || fail "no 100 Continue"
body_is "POST /post bodylen=2000 peercert=none host=127.0.0.1:$PORT"
req 200 "$U/post" -H 'Expect:' --data-binary @"$T/b3000"
body_is "POST /post bodylen=3000 peercert=none host=127.0.0.1:$PORT"
req 200 "$U/put" -X PUT --data-binary @"$T/b3000"
body_is "PUT /put bodylen=3000 peercert=none host=127.0.0.1:$PORT"
req 413 "$U/big" -H 'Expect: 100-continue' --data-binary @"$T/b5000"
grep -q '< HTTP/1.1 100 Continue' "$T/curl.err" && fail "100 Continue for an over-limit body"
req 413 "$U/big" -H 'Expect:' --data-binary @"$T/b5000"
# a chunked body over the limit
req 413 "$U/big" -H 'Transfer-Encoding: chunked' --data-binary @"$T/b5000"
req 200 "$U/after413"

# --- client certificates ---
req 200 "$U/who" --cert "$T/client.pem" --key "$T/client.key"
body_is "GET /who bodylen=0 peercert=CN=httpd test client host=127.0.0.1:$PORT"
# one from another CA: the handshake fails, or at least it is not reported
if cu -o "$T/body" --cert "$T/rclient.pem" --key "$T/rclient.key" "$U/who" 2>/dev/null; then
	grep -q 'peercert=none' "$T/body" || fail "unverified client certificate reported: $(cat "$T/body")"
fi
req 200 "$U/who"
body_is "GET /who bodylen=0 peercert=none host=127.0.0.1:$PORT"

# --- handler without reply, paths, the access log ---
req 500 "$U/noreply"
grep -q '"GET /noreply" 500 0 echo noreply on purpose' "$T/main.log" || fail "no log line for /noreply"
req 200 "$U/a%20b/c?x=1&y=%2F"
body_is "GET /a b/c bodylen=0 peercert=none host=127.0.0.1:$PORT"
grep -q '"GET /a\\x20b/c" 200 ' "$T/main.log" || fail "no escaped log line for /a b/c"
req 400 "$U/nul%00byte" --path-as-is
# HEAD: headers with GET's Content-Length, no body (a keep-alive second
# request would read a stray body as its status line)
cu -sS -X HEAD -i -o "$T/body1" "$U/head" --next -sS --max-time 10 --cacert "$T/ca.pem" \
	-o "$T/body2" "$U/afterhead" 2>"$T/curl.err" || { cat "$T/curl.err" >&2; fail "HEAD curl"; }
hbody="HEAD /head bodylen=0 peercert=none host=127.0.0.1:$PORT"
grep -q "^Content-Length: $(( ${#hbody} + 1 ))" "$T/body1" || fail "HEAD without GET's Content-Length: $(cat "$T/body1")"
grep -q 'bodylen' "$T/body1" && fail "HEAD reply with a body"
[ "$(cat "$T/body2")" = "GET /afterhead bodylen=0 peercert=none host=127.0.0.1:$PORT" ] \
	|| fail "request after HEAD: $(cat "$T/body2")"
# no Content-Type unless the handler gives one (no evhttp text/html default)
req 500 "$U/noreply"
grep -qi '< Content-Type' "$T/curl.err" && fail "Content-Type on a reply without one"
# unknown method: evhttp's 501 (RFC 9110 s9.1)
req 501 "$U/x" -X BREW
# two requests on one connection (--next resets the options)
cu -v -o "$T/body1" "$U/keepalive1" --next -sS --max-time 10 --cacert "$T/ca.pem" \
	-o "$T/body2" "$U/keepalive2" 2>"$T/curl.err" || { cat "$T/curl.err" >&2; fail "keep-alive curl"; }
grep -q 'Re-using existing connection' "$T/curl.err" || fail "no keep-alive"
for i in 1 2; do
	[ "$(cat "$T/body$i")" = "GET /keepalive$i bodylen=0 peercert=none host=127.0.0.1:$PORT" ] \
		|| fail "keep-alive request $i: $(cat "$T/body$i")"
done
grep -qE "^p11ca: 127\.0\.0\.1:[0-9]+ \"GET /hello\" 200 [0-9]+ echo -$" "$T/main.log" \
	|| fail "access log line format"

# --- 50 concurrent requests ---
cpids=()
for i in $(seq 50); do
	cu -o "$T/c$i.body" -w '%{http_code}' "$U/c$i" >"$T/c$i.code" 2>"$T/c$i.err" &
	cpids+=("$!")
done
for p in "${cpids[@]}"; do
	wait "$p" || true
done
for i in $(seq 50); do
	[ "$(cat "$T/c$i.code")" = 200 ] || fail "concurrent request $i: $(cat "$T/c$i.code" "$T/c$i.err")"
	[ "$(cat "$T/c$i.body")" = "GET /c$i bodylen=0 peercert=none host=127.0.0.1:$PORT" ] \
		|| fail "concurrent request $i: body $(cat "$T/c$i.body")"
done

# --- a client that sends nothing is dropped after the 2 s timeout ---
t0=$(now_ms)
exec 3<>"/dev/tcp/127.0.0.1/$PORT"
req 200 "$U/while-slow"
timeout 8 cat <&3 >/dev/null 2>&1 || true
dt=$(( $(now_ms) - t0 ))
exec 3>&-
if [ "$dt" -lt 1500 ] || [ "$dt" -gt 5000 ]; then
	fail "silent client dropped after $dt ms, want ~2000"
fi

# --- garbage, a truncated ClientHello, then normal service ---
# Each write in a subshell: bash's stdout is line-buffered, so printf
# writes line by line, and the server may already have dropped the
# connection (RST) after the first line; the SIGPIPE of the next write
# must end the subshell, not the test.
(printf 'garbage\r\n\r\n' >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || true
(printf 'GET / HTTP/1.1\r\nHost: x\r\n\r\n' >"/dev/tcp/127.0.0.1/$PORT") 2>/dev/null || true
exec 4<>"/dev/tcp/127.0.0.1/$PORT"
(printf '\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03' >&4) 2>/dev/null || true
exec 4>&-
head -c 3000 /dev/urandom >"/dev/tcp/127.0.0.1/$PORT" 2>/dev/null || true
kill -0 "$MAIN_PID" 2>/dev/null || fail "server died on garbage"
req 200 "$U/after-garbage"
body_is "GET /after-garbage bodylen=0 peercert=none host=127.0.0.1:$PORT"

# --- max_connections: at the limit, accept waits until one closes ---
start_server maxc HTTPD_ECHO_MAX_CONNECTIONS=2
MAXC_PID=$PID
exec 5<>"/dev/tcp/127.0.0.1/$PORT"
exec 6<>"/dev/tcp/127.0.0.1/$PORT"
sleep 0.3
t0=$(now_ms)
req 200 "https://127.0.0.1:$PORT/waited"
dt=$(( $(now_ms) - t0 ))
exec 5>&- 6>&-
[ "$dt" -ge 1200 ] || fail "request served after $dt ms while 2 of 2 connections were taken"
req 200 "https://127.0.0.1:$PORT/again"
# httpd_stop from a handler: the reply goes out, then the server exits 0
req 202 "https://127.0.0.1:$PORT/stop"
body_is stopping
wait_exit "$MAXC_PID"
[ "$RC" = 0 ] || fail "server stopped by httpd_stop exited $RC"

# --- IPv6 listener, when the host has ::1 ---
if start_server v6 'HTTPD_ECHO_ADDR=[::1]:0'; then
	V6_PID=$PID
	req 200 "https://[::1]:$PORT/six"
	body_is "GET /six bodylen=0 peercert=none host=[::1]:$PORT"
	grep -qE '^p11ca: \[::1\]:[0-9]+ "GET /six" 200' "$T/v6.log" || fail "IPv6 peer in the log"
	kill -TERM "$V6_PID"
	wait_exit "$V6_PID"
	[ "$RC" = 0 ] || fail "IPv6 server exited $RC"
else
	grep -q 'cannot bind' "$T/v6.log" || fail "IPv6 server: $(cat "$T/v6.log")"
	echo "# $TEST_NAME: no IPv6 loopback, skipped the [::1] listener"
fi

# --- SIGTERM with a request in flight: it completes, then exit 0 ---
{ printf 'part1'; sleep 2; printf 'part2'; } |
	cu -T - -X POST -o "$T/inflight.body" -w '%{http_code}' "$U/inflight" \
		>"$T/inflight.code" 2>"$T/inflight.err" &
IPID=$!
sleep 1
kill -TERM "$MAIN_PID"
sleep 0.3
if cu -o /dev/null "$U/late" 2>/dev/null; then
	fail "new connection accepted after SIGTERM"
fi
wait "$IPID" || true
[ "$(cat "$T/inflight.code")" = 200 ] || fail "in-flight request: $(cat "$T/inflight.code" "$T/inflight.err")"
[ "$(cat "$T/inflight.body")" = "POST /inflight bodylen=10 peercert=none host=127.0.0.1:$MAIN_PORT" ] \
	|| fail "in-flight request body: $(cat "$T/inflight.body")"
wait_exit "$MAIN_PID"
[ "$RC" = 0 ] || fail "server exited $RC after SIGTERM"
grep -q 'signal 15: stopping' "$T/main.log" || fail "no stop message"

if grep -qE 'AddressSanitizer|LeakSanitizer|runtime error' "$T"/*.log; then
	fail "sanitizer report"
fi
echo "ok - $TEST_NAME"
