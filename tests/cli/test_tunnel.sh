#!/usr/bin/env bash
# p11cert tunnel: plain TCP on loopback forwarded over mutual TLS with token
# keys (EC and RSA), against a real nginx (ssl_verify_client on; TLS 1.2 and
# 1.3), openssl s_server -Verify and a Python TLS echo peer: 50 concurrent
# requests, half-close in both directions with close_notify, 64 MiB each way
# with backpressure (bounded memory), --max-connections, peer verification
# (wrong CA, wrong name, IP literal), loopback-only listening, IPv6, -q,
# and a clean exit on SIGTERM.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

NGINX=/usr/sbin/nginx
[ -x "$NGINX" ] || fail "nginx not installed (scripts/setup installs nginx-light)"

# wait_grep ERE FILE [SECONDS]: poll (bounded) until FILE has a line matching ERE
wait_grep() {
	local i
	for i in $(seq $((${3:-10} * 10))); do
		grep -qE -e "$1" -- "$2" 2>/dev/null && return 0
		sleep 0.1
	done
	{ echo "--- $(basename "$2"):"; cat "$2"; } >&2
	fail "'$1' not in $(basename "$2") after ${3:-10} s"
}

# get URL: curl through a tunnel; HTTP_CODE, body in $T/body
get() {
	rm -f "$T/body"
	HTTP_CODE=$(curl -sS --noproxy '*' --max-time 20 -o "$T/body" -w '%{http_code}' "$@" 2>"$T/curl.err") || HTTP_CODE=fail
}

# raw PORT: a Python client that sends stdin, shut_wr, and prints what comes back
raw() {
	timeout -k 5 30 python3 -c '
import socket, sys
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=20)
s.sendall(sys.stdin.buffer.read())
s.shutdown(socket.SHUT_WR)
out = b""
while True:
    b = s.recv(65536)
    if not b:
        break
    out += b
sys.stdout.buffer.write(out)
' "$1"
}

# --- a CA (p11ca), two token keys enrolled with Caramel ----------------------
new_token tunnel
D=$T/ca
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 >/dev/null 2>"$T/init.err" ||
	fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"
mkdir -p "$T/s"
enroll_signed client1 ec:P-256
[ "$(count_objects cert client1)" = 1 ] || fail "no certificate for client1 in the token"
enroll_signed client2 rsa:2048
[ "$(count_objects cert client2)" = 1 ] || fail "no certificate for client2 in the token"
pass "EC (client1) and RSA (client2) token keys enrolled"

# --- nginx: TLS 1.2 only and TLS 1.3 only, client certificates required ------
nginx_mtls "$D"
P12=$NG_P12
P13=$NG_P13
pass "nginx refuses plain curl without a client certificate (400)"

# --- usage: loopback only, required options ---------------------------------
K1="pkcs11:token=$TOKEN;object=client1"
for l in 0.0.0.0:0 '[::]:0' 192.0.2.1:0 '[::ffff:10.0.0.1]:0'; do
	expect_rc 64 p11c tunnel --key "$K1" --listen "$l" --connect "localhost:$P13" --cacert "$D/ca.crt"
	expect_grep 'not a loopback address.*--allow-remote' "$T/err"
done
expect_rc 64 p11c tunnel --key "$K1" --listen localhost:0 --connect "localhost:$P13"
expect_rc 64 p11c tunnel --key "$K1" --listen 127.0.0.1:0
expect_rc 64 p11c tunnel --key "$K1" --listen 127.0.0.1:0 --connect localhost:0
expect_rc 64 p11c tunnel --key "$K1" --listen 127.0.0.1:0 --connect "localhost:$P13" --max-connections 0
expect_rc 64 p11c tunnel --key "$K1" --listen 127.0.0.1:70000 --connect "localhost:$P13"
expect_rc 64 p11c tunnel --key "$K1" --listen 127.0.0.1:0 --connect "localhost:$P13" --bogus
expect_error_line
expect_rc 66 p11c tunnel --key "pkcs11:token=$TOKEN;object=nosuchkey" --listen 127.0.0.1:0 --connect "localhost:$P13" --cacert "$D/ca.crt"
expect_error_line
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=bare" --type ec:P-256
expect_rc 66 p11c tunnel --key "pkcs11:token=$TOKEN;object=bare" --listen 127.0.0.1:0 --connect "localhost:$P13" --cacert "$D/ca.crt"
expect_grep 'no certificate' "$T/err"
expect_rc 77 p11raw --module "$MOD" tunnel --key "$K1" --listen 127.0.0.1:0 --connect "localhost:$P13" --cacert "$D/ca.crt"
expect_error_line
expect_rc 0 p11raw tunnel --help
expect_grep 'allow-remote' "$T/out"
pass "non-loopback listen addresses refused (64); usage errors 64; no key or no certificate 66; no PIN 77"

# --- EC key over TLS 1.3: one request, the logs --------------------------------
tunnel_start ec13 client1 "localhost:$P13" --cacert "$D/ca.crt"
expect_grep "^p11cert: tunnel listening on 127\\.0\\.0\\.1:$TUN_PORT\$" "$TUN_LOG"
EC13_PID=$TUN_PID EC13_PORT=$TUN_PORT EC13_LOG=$TUN_LOG
# the port is taken now: 69
expect_rc 69 p11c tunnel --key "$K1" --listen "127.0.0.1:$EC13_PORT" --connect "localhost:$P13" --cacert "$D/ca.crt"
expect_grep "cannot listen on 127\.0\.0\.1:$EC13_PORT: Address already in use" "$T/err"
get "http://127.0.0.1:$EC13_PORT/"
[ "$HTTP_CODE" = 200 ] || fail "curl through the tunnel: $HTTP_CODE $(cat "$T/curl.err")"
expect_grep '^hello CN=client1,O=Example,C=SE$' "$T/body"
wait_grep 'TLSv1\.3 200 CN=client1,O=Example,C=SE' "$T/ng/access.log"
wait_grep "^p11cert: tunnel: #1 127\\.0\\.0\\.1:[0-9]+ -> localhost:$P13 \\(.*\\): open, TLSv1\\.3 " "$EC13_LOG"
wait_grep '^p11cert: tunnel: #1 closed: [1-9][0-9]* bytes up, [1-9][0-9]* bytes down, ' "$EC13_LOG"
pass "EC token key through the tunnel to nginx over TLS 1.3; nginx logs CN=client1"

# half-close with nginx: the request, then EOF; the answer still arrives
printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' | raw "$EC13_PORT" >"$T/hc.out" || fail "half-close client failed"
expect_grep '^HTTP/1\.1 200' "$T/hc.out"
expect_grep '^hello CN=client1,O=Example,C=SE' "$T/hc.out"
wait_grep '^p11cert: tunnel: #2 closed: 27 bytes up, [1-9][0-9]* bytes down' "$EC13_LOG"
pass "half-close: request, EOF, close_notify; the response and EOF come back"

# 50 concurrent requests
n0=$(grep -c 'TLSv1.3 200 CN=client1' "$T/ng/access.log")
mkdir -p "$T/par"
pids=()
for i in $(seq 50); do
	curl -s --noproxy '*' --max-time 60 -o "$T/par/$i.body" -w '%{http_code}' "http://127.0.0.1:$EC13_PORT/" \
		>"$T/par/$i.code" 2>/dev/null &
	pids+=("$!")
done
for p in "${pids[@]}"; do wait "$p" || true; done
ok=0
for i in $(seq 50); do
	[ "$(cat "$T/par/$i.code")" = 200 ] && grep -q '^hello CN=client1,' "$T/par/$i.body" && ok=$((ok + 1))
done
[ "$ok" = 50 ] || fail "$ok of 50 concurrent requests through the tunnel succeeded"
n1=$(grep -c 'TLSv1.3 200 CN=client1' "$T/ng/access.log")
[ $((n1 - n0)) -ge 50 ] || fail "nginx logged $((n1 - n0)) of 50 concurrent requests"
wait_grep '^p11cert: tunnel: #52 closed' "$EC13_LOG"
[ "$(grep -c ' closed: ' "$EC13_LOG")" = 52 ] || fail "$(grep -c ' closed: ' "$EC13_LOG") close lines, want 52"
# curl closes, the tunnel sends close_notify, nginx closes without one: no error
expect_nogrep ' closed: .*, (server|client): ' "$EC13_LOG"
pass "50 concurrent requests through one tunnel, all 200"

# --- TLS 1.2; the RSA key over both versions; s_server ---------------------
tunnel_start ec12 client1 "localhost:$P12" --cacert "$D/ca.crt"
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" = 200 ] || fail "TLS 1.2 through the tunnel: $HTTP_CODE"
expect_grep '^hello CN=client1,' "$T/body"
wait_grep 'TLSv1\.2 200 CN=client1,O=Example,C=SE' "$T/ng/access.log"
wait_grep ': open, TLSv1\.2 ' "$TUN_LOG"
tunnel_stop
for port in $P12 $P13; do
	tunnel_start "rsa$port" client2 "localhost:$port" --cacert "$D/ca.crt"
	get "http://127.0.0.1:$TUN_PORT/"
	[ "$HTTP_CODE" = 200 ] || fail "RSA key through the tunnel to $port: $HTTP_CODE"
	expect_grep '^hello CN=client2,O=Example,C=SE$' "$T/body"
	tunnel_stop
done
wait_grep 'TLSv1\.2 200 CN=client2,O=Example,C=SE' "$T/ng/access.log"
wait_grep 'TLSv1\.3 200 CN=client2,O=Example,C=SE' "$T/ng/access.log"
pass "EC over TLS 1.2, RSA over TLS 1.2 and 1.3; nginx logs protocol and subject"

PS=$(free_port)
openssl s_server -Verify 1 -verify_return_error -CAfile "$D/ca.crt" -cert "$D/tls.crt" -key "$D/tls.key" \
	-accept "127.0.0.1:$PS" -www >"$T/ss.log" 2>&1 </dev/null &
SS_PID=$!
CA_PIDS+=("$SS_PID")
wait_grep ACCEPT "$T/ss.log"
tunnel_start ss client2 "localhost:$PS" --cacert "$D/ca.crt"
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" = 200 ] || fail "s_server through the tunnel: $HTTP_CODE $(cat "$T/curl.err")"
expect_grep 'Client certificate' "$T/body"
expect_grep 'CN *= *client2' "$T/body"
wait_grep '^p11cert: tunnel: #1 closed: ' "$TUN_LOG"
tunnel_stop
kill "$SS_PID" 2>/dev/null || true
pass "openssl s_server -Verify sees the RSA token key's certificate (HTTP/1.0, server closes)"

# --- peer verification ------------------------------------------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other -keyout "$T/o.key" \
	-out "$T/other.crt" -days 1 2>/dev/null || fail "openssl req (other CA)"
tunnel_start wrongca client1 "localhost:$P13" --cacert "$T/other.crt"
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" != 200 ] || fail "request succeeded with the wrong --cacert"
wait_grep 'TLS handshake failed: certificate verify failed: unable to get local issuer certificate' "$TUN_LOG"
tunnel_stop
tunnel_start wrongname client1 "localhost:$P13" --cacert "$D/ca.crt" --server-name other.example
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" != 200 ] || fail "request succeeded with a --server-name the certificate lacks"
wait_grep 'TLS handshake failed: certificate verify failed: hostname mismatch' "$TUN_LOG"
tunnel_stop
# an IP literal is checked against iPAddress SANs: tls.crt has DNS:localhost only
tunnel_start ip client1 "127.0.0.1:$P13" --cacert "$D/ca.crt"
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" != 200 ] || fail "request succeeded though tls.crt has no IP SAN"
wait_grep 'TLS handshake failed: certificate verify failed: IP address mismatch' "$TUN_LOG"
tunnel_stop
tunnel_start ipname client1 "127.0.0.1:$P13" --cacert "$D/ca.crt" --server-name localhost
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" = 200 ] || fail "--connect 127.0.0.1 --server-name localhost: $HTTP_CODE"
tunnel_stop
# nothing listening: one clear line, the client is closed
DEAD=$(free_port)
tunnel_start dead client1 "localhost:$DEAD" --cacert "$D/ca.crt"
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" != 200 ] || fail "request succeeded with nothing listening"
wait_grep "localhost:$DEAD: cannot connect: Connection refused" "$TUN_LOG"
tunnel_stop
# a server that does not trust our certificate: with TLS 1.3 its alert comes
# after our side of the handshake, on the first read
PS2=$(free_port)
openssl s_server -Verify 1 -verify_return_error -CAfile "$T/other.crt" -cert "$D/tls.crt" -key "$D/tls.key" \
	-accept "127.0.0.1:$PS2" -www >"$T/ss2.log" 2>&1 </dev/null &
SS2_PID=$!
CA_PIDS+=("$SS2_PID")
wait_grep ACCEPT "$T/ss2.log"
tunnel_start distrust client1 "localhost:$PS2" --cacert "$D/ca.crt"
get "http://127.0.0.1:$TUN_PORT/"
[ "$HTTP_CODE" != 200 ] || fail "request succeeded though the server does not trust our CA"
wait_grep '^p11cert: tunnel: #1 (closed: .*, server: .*alert|.*TLS handshake failed: .*alert)' "$TUN_LOG"
tunnel_stop
kill "$SS2_PID" 2>/dev/null || true
pass "wrong CA, wrong name, IP literal, refused connection, distrusted client: request fails, tunnel logs why"

# --- half-close and backpressure with 64 MiB each way (Python TLS echo peer) ---
# The peer waits 1 s, reads until close_notify (a TCP EOF without one is
# reported as "ragged"), then answers "BYTES SHA256 CN clean|ragged" and
# echoes everything back, then closes.
cat >"$T/echo.py" <<'PY'
import hashlib, os, socket, ssl, sys, time
crt, key, ca, portfile = sys.argv[1:5]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(crt, key)
ctx.load_verify_locations(ca)
ctx.verify_mode = ssl.CERT_REQUIRED
ls = socket.socket()
ls.bind(("127.0.0.1", 0))
ls.listen(8)
with open(portfile + ".tmp", "w") as f:
    f.write("%d\n" % ls.getsockname()[1])
os.rename(portfile + ".tmp", portfile)
while True:
    s, _ = ls.accept()
    try:
        s.settimeout(60)
        t = ctx.wrap_socket(s, server_side=True, suppress_ragged_eofs=False)
        cn = dict(x[0] for x in t.getpeercert()["subject"])["commonName"]
        time.sleep(1)
        h, data, how = hashlib.sha256(), bytearray(), "clean"
        while True:
            try:
                b = t.recv(1 << 16)
            except ssl.SSLEOFError:
                how = "ragged"
                break
            if not b:
                break
            h.update(b)
            data += b
        t.sendall(("%d %s %s %s\n" % (len(data), h.hexdigest(), cn, how)).encode())
        t.sendall(data)
        t.unwrap().close()
    except Exception as e:
        print("echo:", repr(e), file=sys.stderr, flush=True)
        s.close()
PY
python3 "$T/echo.py" "$D/tls.crt" "$D/tls.key" "$D/ca.crt" "$T/echo.port" 2>"$T/echo.log" &
CA_PIDS+=("$!")
for _ in $(seq 100); do [ -s "$T/echo.port" ] && break; sleep 0.1; done
[ -s "$T/echo.port" ] || fail "echo peer did not start: $(cat "$T/echo.log")"
tunnel_start echo client1 "localhost:$(cat "$T/echo.port")" --cacert "$D/ca.crt"
hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB$/\1/p' "/proc/$1/status"; }
hwm0=$(hwm "$TUN_PID")
timeout -k 5 120 python3 - "$TUN_PORT" >"$T/big.out" 2>&1 <<'PY' || { cat "$T/big.out" "$T/echo.log" "$TUN_LOG" >&2; fail "64 MiB echo through the tunnel"; }
import hashlib, os, socket, sys, time
data = os.urandom(64 << 20)
s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=60)
s.sendall(data)
s.shutdown(socket.SHUT_WR)       # half-close: the tunnel sends close_notify
time.sleep(1)                    # a slow reader: backpressure on the way back
buf = bytearray()
while True:
    b = s.recv(1 << 20)
    if not b:
        break
    buf += b
line, rest = bytes(buf).split(b"\n", 1)
n, sha, cn, how = line.decode().split()
assert int(n) == len(data), "peer got %s bytes" % n
assert sha == hashlib.sha256(data).hexdigest(), "peer got other bytes"
assert cn == "client1", cn
assert how == "clean", "the peer saw no close_notify: " + how
assert rest == data, "echo differs (%d bytes back)" % len(rest)
print("ok")
PY
hwm1=$(hwm "$TUN_PID")
# (ASan's quarantine keeps freed buffers: no bound to check there)
if ! asan_build "$P11CERT"; then
	[ $((hwm1 - hwm0)) -lt 16384 ] || fail "tunnel peak memory grew by $((hwm1 - hwm0)) kB moving 64 MiB each way (no backpressure?)"
fi
# down: the 88-byte answer line, then the echo
wait_grep "^p11cert: tunnel: #1 closed: $((64 << 20)) bytes up, $(((64 << 20) + 88)) bytes down, " "$TUN_LOG" 20
pass "64 MiB each way: close_notify after the client's EOF, the answer after it, peak memory +$((hwm1 - hwm0)) kB"

# --- --max-connections: the listener pauses at the limit ----------------------
tunnel_start max client1 "localhost:$P13" --cacert "$D/ca.crt" --max-connections 2
# two idle connections, held open by sleeping clients
python3 -c 'import socket,sys,time; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); time.sleep(30)' "$TUN_PORT" &
H1=$!
python3 -c 'import socket,sys,time; s=socket.create_connection(("127.0.0.1",int(sys.argv[1]))); time.sleep(30)' "$TUN_PORT" &
H2=$!
CA_PIDS+=("$H1" "$H2")
wait_grep '^p11cert: tunnel: #2 .*: open' "$TUN_LOG"
printf 'GET / HTTP/1.0\r\nHost: x\r\n\r\n' | raw "$TUN_PORT" >"$T/third.out" &
R3=$!
sleep 1
kill -0 "$R3" 2>/dev/null || fail "a third connection was served at --max-connections 2"
grep -q '#3' "$TUN_LOG" && fail "a third connection was accepted at --max-connections 2"
kill "$H1"
wait "$R3" || fail "the third connection failed after a slot freed up"
expect_grep '^hello CN=client1,' "$T/third.out"
pass "--max-connections 2: the third waits until one closes"

# --- SIGTERM with connections open: exit 0 within 5 s -----------------------------
tunnel_stop
wait_grep '^p11cert: tunnel: SIGTERM: stopping, closing 1 connection$' "$TUN_LOG"
kill "$H2" 2>/dev/null || true
tunnel_stop "$EC13_PID"
pass "SIGTERM with open connections: exit 0 within 5 s"

# --- -q and IPv6 ----------------------------------------------------------------------
"$P11CERT" -q --module "$MOD" --pin-file "$PINF" tunnel --key "$K1" --listen 127.0.0.1:0 \
	--port-file "$T/q.port" --connect "localhost:$P13" --cacert "$D/ca.crt" </dev/null 2>"$T/q.log" &
TUN_PID=$!
CA_PIDS+=("$TUN_PID")
for _ in $(seq 150); do [ -s "$T/q.port" ] && break; sleep 0.1; done
[ -s "$T/q.port" ] || fail "quiet tunnel: no port file"
get "http://127.0.0.1:$(cat "$T/q.port")/"
[ "$HTTP_CODE" = 200 ] || fail "quiet tunnel: $HTTP_CODE"
sleep 0.3
tunnel_stop
[ ! -s "$T/q.log" ] || fail "-q tunnel wrote: $(cat "$T/q.log")"
if python3 -c 'import socket; s=socket.socket(socket.AF_INET6); s.bind(("::1",0))' 2>/dev/null; then
	TUN_LISTEN='[::1]:0' tunnel_start v6 client2 "localhost:$P13" --cacert "$D/ca.crt"
	expect_grep "^p11cert: tunnel listening on \\[::1\\]:$TUN_PORT\$" "$TUN_LOG"
	get -g "http://[::1]:$TUN_PORT/"
	[ "$HTTP_CODE" = 200 ] || fail "IPv6 listener: $HTTP_CODE"
	expect_grep '^hello CN=client2,' "$T/body"
	tunnel_stop
	pass "-q is silent; [::1] listener"
else
	pass "-q is silent"
	skip "no IPv6 loopback"
fi
