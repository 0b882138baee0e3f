#!/usr/bin/env bash
# p11ca against hostile or broken clients: truncated and garbage CSR
# bodies, oversized bodies, paths and headers, idle and slow connections
# (dropped after --timeout 2 while others are served), partial TLS
# handshakes, plaintext and random bytes on the TLS port.  Afterwards the
# server still answers and stops cleanly.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

start=$(date +%s)
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0
ca_start bad "$D" --timeout 2

# alive: the server process runs and GET /root.crt is 200 with ca.crt
alive() {
	kill -0 "$CA_PID" 2>/dev/null || fail "server died ($1)"
	req 200 /root.crt
	cmp -s "$T/body" "$D/ca.crt" || fail "root.crt differs ($1)"
}

# code_of CURL_ARGS...: HTTP status, or 000 when the connection broke
code_of() {
	cu -o "$T/body" -w '%{http_code}' "$@" 2>"$T/curl.err" || true
}

# closed_within FD T0 MIN MAX WHAT: the server closes FD between MIN and
# MAX seconds (fractions allowed) after T0 (now_ms when it was opened)
closed_within() {
	local fd=$1 t0=$2 min=$3 max=$4 what=$5 rc=0 ms
	timeout "$((${max%.*} + 3))" cat <&"$fd" >"$T/closed.out" 2>/dev/null || rc=$?
	ms=$(($(now_ms) - t0))
	[ "$rc" != 124 ] || fail "$what: still open after $ms ms"
	awk -v ms="$ms" -v lo="$min" -v hi="$max" 'BEGIN { exit !(ms >= lo * 1000 && ms <= hi * 1000) }' \
		|| fail "$what: closed after $ms ms, want $min..$max s"
	echo "# $what: closed after $ms ms"
}

# send FD FORMAT: printf to a socket the server may already have closed
# (in a subshell: SIGPIPE ends that, not the test)
send() {
	# shellcheck disable=SC2059
	(printf "$2" >&"$1") 2>/dev/null || true
}

mk_csr "$T/good.csr" "/C=SE/O=Example/CN=good"

# --- truncated and garbage bodies (sha256 matching) ---
head -c 300 "$T/good.csr" >"$T/trunc1"
head -n -1 "$T/good.csr" >"$T/trunc2"        # no END line
sed '2d' "$T/good.csr" >"$T/trunc3"          # a base64 line missing
head -c 500 /dev/urandom >"$T/random"
: >"$T/empty"
openssl req -in "$T/good.csr" -outform DER -out "$T/good.der"
{ echo '-----BEGIN CERTIFICATE REQUEST-----'; echo '!!!! not base64 !!!!'; echo '-----END CERTIFICATE REQUEST-----'; } >"$T/badb64"
{ echo '-----BEGIN CERTIFICATE REQUEST-----'; head -c 300 /dev/urandom | base64 -w 64; echo '-----END CERTIFICATE REQUEST-----'; } >"$T/randder"
printf '{"hmac":"x","csr":"y"}' >"$T/json"
{ printf 'x%.0s' $(seq 100); cat "$T/good.csr"; } >"$T/prefix"
for f in trunc1 trunc2 trunc3 random empty good.der badb64 randder json; do
	post 400 "$T/$f"
	expect_problem 400 'invalid PEM'
done
# text before the PEM: parsed, but not the canonical body
post 400 "$T/prefix"
expect_problem 400 'invalid PEM|not canonical'
# two CSRs in one body
cat "$T/good.csr" "$T/good.csr" >"$T/two"
post 400 "$T/two"
expect_problem 400 'not canonical'
alive "garbage bodies"

# --- oversized bodies: 413 from p11ca or httpd, or the connection closed ---
head -c 102400 /dev/urandom | base64 -w 64 >"$T/100k"
sha=$(sha256_of "$T/100k")
for args in "-H Expect:" "-H Expect:100-continue" "-H Transfer-Encoding:chunked"; do
	# shellcheck disable=SC2086
	code=$(code_of --data-binary @"$T/100k" $args "$CA_URL/$sha")
	case $code in 413 | 000) ;; *) fail "100 KB body ($args): HTTP $code" ;; esac
done
head -c 3000 /dev/zero | tr '\0' a >"$T/3k"
post 413 "$T/3k"
expect_problem 413 '2048'
alive "big bodies"

# --- paths, methods, headers ---
long=$(printf 'a%.0s' $(seq 4000))
for p in /zz /ABC /../etc/passwd /%2e%2e/%2e%2e/etc/passwd /%00 "/$(printf '%064d' 0)%00" \
	"/$(printf '%064d' 0)/../root.crt" "/$long" "//$(printf '%064d' 0)" "/$(printf '%064d' 0)?x=1/../y"; do
	code=$(code_of --path-as-is "$CA_URL$p")
	case $code in 404 | 400) ;; *) fail "GET $p: HTTP $code" ;; esac
	code=$(code_of --path-as-is --data-binary @"$T/good.csr" "$CA_URL$p")
	case $code in 404 | 400) ;; *) fail "POST $p: HTTP $code" ;; esac
done
code=$(code_of --path-as-is "$CA_URL/$(printf 'a%.0s' $(seq 20000))")
case $code in 4?? | 000) ;; *) fail "20 KB path: HTTP $code" ;; esac
code=$(code_of -H "X-Big: $(printf 'b%.0s' $(seq 20000))" "$CA_URL/root.crt")
case $code in 4?? | 000) ;; *) fail "20 KB header: HTTP $code" ;; esac
code=$(code_of -X DELETE "$CA_URL/$(sha256_of "$T/good.csr")")
case $code in 405 | 404) ;; *) fail "DELETE: HTTP $code" ;; esac
code=$(code_of -X BREW "$CA_URL/root.crt")
case $code in 4?? | 501) ;; *) fail "BREW: HTTP $code" ;; esac
code=$(code_of -X POST "$CA_URL/root.crt" --data-binary @"$T/good.csr")
[ "$code" = 405 ] || fail "POST /root.crt: HTTP $code"
# a body that is not what Content-Length says (shorter): the server waits,
# then drops the connection after the timeout; nothing is stored
code=$(code_of -H 'Content-Length: 1500' --data-binary @"$T/trunc1" "$CA_URL/$(sha256_of "$T/good.csr")")
case $code in 4?? | 000) ;; *) fail "short body: HTTP $code" ;; esac
p11ca show --dir "$D" "$(sha256_of "$T/good.csr")" >/dev/null 2>&1 && fail "short body stored a request"
# hostile Host headers never reach the 202 body's URL (it must stay JSON
# and point at a host, not elsewhere)
mk_csr "$T/host.csr" "/C=SE/O=Example/CN=host-header"
hs=$(sha256_of "$T/host.csr")
post 202 "$T/host.csr" "" -H $'Host: localhost\x01x'
json_later "$T/body" "assert j['url'] == 'https://localhost/' + arg, j" "$hs"
for h in $'a\tb' 'a"b' 'a\b' 'evil.example/x?' 'evil.example#' 'user@evil.example' 'a b' "$(printf 'h%.0s' $(seq 300))"; do
	req 202 "/$hs" -H "Host: $h"
	json_later "$T/body" "assert j['url'] == 'https://localhost/' + arg, j" "$hs"
done
req 202 "/$hs" -H 'Host: [::1]:8443'
json_later "$T/body" "assert j['url'] == 'https://[::1]:8443/' + arg, j" "$hs"
# request-targets libevent's first pass accepts but evhttp_uri_parse
# refuses: 400, and the server lives on (it used to free a NULL URI and
# die; found while writing the fuzz target; seed server/target_nonconformant)
for tgt in '/a{b' '/a|b' '/a^b' '/%zz' '/a"b' '/a`b'; do
	printf 'GET %s HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n' "$tgt" |
		timeout 10 openssl s_client -quiet -connect "127.0.0.1:$CA_PORT" -servername localhost \
			-CAfile "$D/ca.crt" >"$T/raw.out" 2>"$T/raw.err" || true
	head -n 1 "$T/raw.out" | grep -q '^HTTP/1.1 400' || fail "GET $tgt: $(head -n 1 "$T/raw.out")"
	kill -0 "$CA_PID" 2>/dev/null || fail "server died on GET $tgt"
done
alive "paths and headers"

# --- an idle TCP connection (no ClientHello): dropped after ~2 s, while
# others are served ---
t0=$(now_ms)
exec 3<>"/dev/tcp/127.0.0.1/$CA_PORT" || fail "cannot connect"
for i in 1 2 3; do
	req 200 /root.crt
done
[ $(($(now_ms) - t0)) -lt 1500 ] || fail "requests waited for the idle connection ($(($(now_ms) - t0)) ms)"
closed_within 3 "$t0" 1.8 5 "idle TCP connection"
exec 3<&-

# --- 20 idle connections at once; one with a partial ClientHello ---
fds=()
t0=$(now_ms)
for i in $(seq 20); do
	exec {fd}<>"/dev/tcp/127.0.0.1/$CA_PORT" || fail "cannot connect ($i)"
	fds+=("$fd")
done
exec 4<>"/dev/tcp/127.0.0.1/$CA_PORT" || fail "cannot connect"
# TLS record header announcing 512 bytes, handshake type ClientHello, then nothing
send 4 '\026\003\001\002\000\001\000\001\374\003\003'
req 200 /root.crt
mk_csr "$T/during.csr" "/C=SE/O=Example/CN=during-idle"
post 202 "$T/during.csr"
# Watch the 20 idle connections at once (one reader each, stamping the
# time it saw EOF), so that checking one does not delay the next check.
wpids=()
for fd in "${fds[@]}"; do
	(timeout 8 cat <&"$fd" >/dev/null 2>&1; echo "$? $(now_ms)" >"$T/closed.$fd") &
	wpids+=($!)
done
closed_within 4 "$t0" 1.8 5 "partial ClientHello"
exec 4<&-
wait "${wpids[@]}" || true
for fd in "${fds[@]}"; do
	read -r wrc wms <"$T/closed.$fd" || fail "idle connection fd $fd: no reader result"
	[ "$wrc" != 124 ] || fail "idle connection fd $fd: still open after 8 s"
	ms=$((wms - t0))
	[ "$ms" -ge 1800 ] && [ "$ms" -le 5000 ] || fail "idle connection fd $fd: closed after $ms ms, want 1.8..5 s"
	exec {fd}<&-
done
echo "# 20 idle connections: closed by the server within 1.8..5 s"

# --- slow HTTP request after the handshake: partial headers, then silence ---
mkfifo "$T/slow.in"
exec 5<>"$T/slow.in"
t0=$(now_ms)
timeout 15 openssl s_client -quiet -connect "127.0.0.1:$CA_PORT" -servername localhost \
	-CAfile "$D/ca.crt" <"$T/slow.in" >"$T/slow.out" 2>"$T/slow.err" &
spid=$!
printf 'GET /root.crt HTTP/1.1\r\nHost: localhost\r\n' >&5
req 200 /root.crt
for i in $(seq 100); do
	kill -0 "$spid" 2>/dev/null || break
	sleep 0.1
done
ms=$(($(now_ms) - t0))
if kill -0 "$spid" 2>/dev/null; then
	kill "$spid" 2>/dev/null || true
	fail "slow request: connection still open after 10 s"
fi
wait "$spid" || true
exec 5>&-
[ "$ms" -ge 1200 ] && [ "$ms" -le 6000 ] || fail "slow request: closed after $ms ms"
grep -q 'BEGIN CERTIFICATE' "$T/slow.out" && fail "slow request got an answer"
echo "# slow request: closed after $ms ms"
alive "slow clients"

# --- not TLS on the TLS port ---
exec 6<>"/dev/tcp/127.0.0.1/$CA_PORT" || fail "cannot connect"
t0=$(now_ms)
send 6 'GET /root.crt HTTP/1.1\r\nHost: localhost\r\n\r\n'
closed_within 6 "$t0" 0 1.5 "plaintext HTTP"
exec 6<&-
grep -q 'HTTP/1' "$T/closed.out" && fail "plaintext request answered in plaintext"
if curl -sS --noproxy '*' --max-time 5 -o /dev/null "http://127.0.0.1:$CA_PORT/root.crt" 2>/dev/null; then
	fail "curl over http:// succeeded"
fi
exec 6<>"/dev/tcp/127.0.0.1/$CA_PORT" || fail "cannot connect"
t0=$(now_ms)
(head -c 4096 /dev/urandom >&6) 2>/dev/null || true
closed_within 6 "$t0" 0 1.5 "random bytes"
exec 6<&-
# a TLS record claiming to be huge
exec 6<>"/dev/tcp/127.0.0.1/$CA_PORT" || fail "cannot connect"
t0=$(now_ms)
send 6 '\026\003\003\377\377'
(head -c 2000 /dev/zero >&6) 2>/dev/null || true
closed_within 6 "$t0" 0 3 "oversized TLS record"
exec 6<&-
# TLS 1.1 and below are refused by the server (seclevel 0 on the client side)
if openssl s_client -connect "127.0.0.1:$CA_PORT" -tls1_1 -cipher 'DEFAULT:@SECLEVEL=0' </dev/null >"$T/s11.out" 2>&1; then
	grep -q 'Protocol  *: TLSv1.1' "$T/s11.out" && fail "TLS 1.1 accepted"
fi

# --- after all that: still serving, still accepting, clean stop ---
alive "the end"
mk_csr "$T/after.csr" "/C=SE/O=Example/CN=after"
post 202 "$T/after.csr"
expect_accepted "$(sha256_of "$T/after.csr")"
expect_rc 0 p11ca list --dir "$D" --all --json
json_later "$T/out" "
assert sorted(r['cn'] for r in j) == ['after', 'during-idle', 'host-header'], [r['cn'] for r in j]
"
grep -qiE 'sanitizer|runtime error|assert' "$CA_LOG" && fail "sanitizer or assertion output in the log"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve exit $STOP_RC"
json_check_all
pass "bad input in $(($(date +%s) - start)) s"
