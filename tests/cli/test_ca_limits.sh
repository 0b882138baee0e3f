#!/usr/bin/env bash
# p11ca's resource bounds (issue 10 points 1, 7; issue 15 s4): the soft
# open-files limit raised to the hard one and the connection caps derived
# from it; idle connections from one address cannot take every slot (per
# address cap); accept() out of descriptors pauses instead of spinning and
# logging without end; a request trickled byte by byte is cut at the
# request deadline; the shared-token endpoint needs a listener presenting
# the CA certificate.  Loopback only (127.0.0.2 is a second client).
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

start=$(date +%s)
FLOOD=$P11C_SOURCE_DIR/tests/helpers/conn_flood.py
REAL_P11CA=$P11CA
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0

# with_nofile SOFT HARD: P11CA runs under these open-files limits
with_nofile() {
	cat >"$T/p11ca-nofile" <<EOW
#!/usr/bin/env bash
ulimit -Sn $1 && ulimit -Hn $2 && exec "$REAL_P11CA" "\$@"
EOW
	chmod 755 "$T/p11ca-nofile"
	P11CA=$T/p11ca-nofile
}

# flood N SECONDS: N idle TCP connections from 127.0.0.2 held SECONDS, in
# the background; waits until they are open; FLOOD_PID, result in $T/flood.out
flood() {
	local i
	rm -f "$T/flood.ready" "$T/flood.out"
	timeout -k 5 $(($2 + 30)) python3 "$FLOOD" hold "$CA_PORT" "$1" "$2" 127.0.0.2 "$T/flood.ready" \
		>"$T/flood.out" 2>"$T/flood.err" &
	FLOOD_PID=$!
	for i in $(seq 200); do
		[ -s "$T/flood.ready" ] && return 0
		sleep 0.1
	done
	fail "the flood helper did not open its connections in 20 s: $(cat "$T/flood.err")"
}
flood_wait() {
	wait "$FLOOD_PID" || fail "flood helper failed: $(cat "$T/flood.err")"
	echo "# flood: $(cat "$T/flood.out")"
}
flood_field() { awk -v k="$1" '{ for (i = 1; i < NF; i++) if ($i == k) print $(i + 1) }' "$T/flood.out"; }

# --- the soft limit is raised to the hard one ---
hard=$(ulimit -Hn)
[ "$hard" = unlimited ] && hard=1000000
[ "$hard" -gt 1000000 ] && hard=1000000
if [ "$hard" -gt 64 ]; then
	with_nofile 64 "$hard"
	ca_start soft "$D"
	expect_grep "^p11ca: at most [0-9]+ connections, [0-9]+ per client address \\(open-files limit $hard\\)$" "$CA_LOG"
	ca_stop
	pass_note="soft limit raised to $hard"
else
	pass_note="hard limit $hard: nothing to raise"
fi

# --- default caps from a 64-file limit: 32 connections, 8 per address ---
with_nofile 64 64
ca_start caps "$D" --timeout 20
expect_grep '^p11ca: at most 32 connections, 8 per client address \(open-files limit 64\)$' "$CA_LOG"
flood 50 6
# while 127.0.0.2 holds its 8, another client is served at once
sleep 1
req 200 /root.crt
flood_wait
[ "$(flood_field opened)" = 50 ] || fail "the helper opened $(flood_field opened) of 50 connections"
[ "$(flood_field closed_early)" -ge 40 ] || fail "$(flood_field closed_early) of 50 connections from one address closed at once (want 42: 8 per address)"
[ "$(flood_field closed_by_server)" -le 42 ] || fail "more than 42 connections closed: $(cat "$T/flood.out")"
expect_grep '^p11ca: 127\.0\.0\.2: over 8 connections from this address: connection closed' "$CA_LOG"
[ "$(grep -c 'over 8 connections' "$CA_LOG")" -le 3 ] || fail "per-address log lines are not rate limited"
ca_stop
[ "$STOP_RC" = 0 ] || fail "caps: exit $STOP_RC"

# --- accept() out of descriptors: pause, a few log lines, then serve ---
# max-connections set above what 64 files allow: accept() fails with EMFILE
# (libevent alone logged "Error from accept() call" in a busy loop)
ca_start emfile "$D" --timeout 3 --max-connections 1000 --max-connections-per-address 1000
expect_grep '^p11ca: warning: max-connections 1000 is over what the open-files limit 64 allows' "$CA_LOG"
flood 200 5
# the idle connections are dropped at the deadline, then a client is served
req 200 /root.crt --max-time 60
flood_wait
expect_grep '^p11ca: accept: Too many open files \([0-9]+ connections open\): not accepting for 250 ms' "$CA_LOG"
expect_nogrep -i 'error from accept' "$CA_LOG"
n=$(wc -l <"$CA_LOG")
[ "$n" -le 40 ] || fail "$n log lines under fd exhaustion (rate limit broken?)"
[ "$(grep -c '^p11ca: accept:' "$CA_LOG")" -le 3 ] || fail "accept errors are not rate limited"
kill -0 "$CA_PID" || fail "p11ca died under fd exhaustion"
ca_stop
[ "$STOP_RC" = 0 ] || fail "emfile: exit $STOP_RC"
P11CA=$REAL_P11CA

# --- slow headers: one byte a second is cut at the request deadline ---
ca_start slow "$D" --timeout 4
out=$(timeout -k 5 60 python3 "$FLOOD" trickle "$CA_PORT" 1 20) || fail "trickle helper failed"
echo "# trickle: $out"
case $out in
"closed after "*) s=${out#closed after }; s=${s% s}
	[ "$s" -ge 3 ] && [ "$s" -le 12 ] || fail "trickled request: $out, want the 4 s deadline" ;;
*) fail "trickled request: $out (the deadline did not cut it)" ;;
esac
expect_grep '^p11ca: 127\.0\.0\.1: request not complete within 4 s: connection closed$' "$CA_LOG"
req 200 /root.crt
ca_stop

# --- the access log: batched (not one flush per request) and bounded ---
ca_start alog "$D" --access-log-rows 50
strace_ok=0
if command -v strace >/dev/null; then
	strace -qq -f -c -e trace=fsync,fdatasync -o "$T/strace.out" -p "$CA_PID" 2>"$T/strace.err" &
	STRACE_PID=$!
	sleep 1
	kill -0 "$STRACE_PID" 2>/dev/null && strace_ok=1
fi
urls=()
for i in $(seq 120); do urls+=(-o /dev/null "$CA_URL/nope$i"); done
cu -w '%{http_code}\n' "${urls[@]}" >"$T/codes" 2>"$T/curl.err" || fail "120 requests: $(cat "$T/curl.err")"
[ "$(grep -c '^404$' "$T/codes")" = 120 ] || fail "not 120 answers 404: $(sort "$T/codes" | uniq -c)"
if [ "$strace_ok" = 1 ]; then
	sleep 1
	kill -INT "$STRACE_PID" 2>/dev/null || true
	wait "$STRACE_PID" 2>/dev/null || true
	syncs=$(awk '$NF == "fsync" || $NF == "fdatasync" { n += $4 } END { print n + 0 }' "$T/strace.out")
	echo "# 120 requests: $syncs fsync/fdatasync calls"
	[ "$syncs" -le 12 ] || fail "$syncs flushes for 120 unauthenticated requests (one per request?)"
	alog_note="$syncs flushes for 120 requests"
else
	alog_note="flushes not counted (strace cannot attach: $(head -c 200 "$T/strace.err" 2>/dev/null))"
fi
ca_stop
[ "$STOP_RC" = 0 ] || fail "alog: exit $STOP_RC"
rows=$(sqlite3 "$D/p11ca.db" 'SELECT COUNT(*) FROM access_log') || fail "sqlite3 on the database"
maxid=$(sqlite3 "$D/p11ca.db" 'SELECT MAX(id) FROM access_log')
[ "$rows" = 50 ] || fail "$rows access-log rows, want the newest 50"
[ "$maxid" -ge 120 ] || fail "access-log ids up to $maxid: the 120 requests were not logged"
sqlite3 "$D/p11ca.db" "SELECT path FROM access_log WHERE id = $maxid" | grep -q '^/nope120$' || fail "the newest row is not the last request"

# --- shared token on a listener without the CA certificate: refused ---
printf '%s\n' "abcdefghijklmnopqrstuvwxyz0123456789" >"$D/token"
chmod 600 "$D/token"
expect_rc 1 p11ca serve --dir "$D" --token-file "$D/token"
expect_grep 'shared-token enrollment \(token-file\) needs a listener that presents the CA certificate.*set token-listen' "$T/err"

pass "resource limits ($pass_note; $alog_note) in $(($(date +%s) - start)) s"
