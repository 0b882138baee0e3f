#!/usr/bin/env bash
# p11ca soak: 64 concurrent Caramel clients for SOAK_SECONDS (default 24)
# from bench/ca_load (libcurl threads, UUID CSRs, POST then GET): 32 keep
# their connection, 32 open a new TLS connection per enrollment, so that
# both the request path and connection setup/teardown are repeated
# thousands of times.  p11ca's VmRSS is sampled every 0.5 s.
#   - no client error; every enrollment a client completed is in the
#     database, signed, once (no sha256 twice)
#   - memory flat: the largest RSS of the last third of the run is at most
#     the largest of the first third + max(4 MiB, 15 %).  Why that bound:
#     the first third covers most of the warm-up (64 connections' buffers,
#     OpenSSL's caches, malloc arenas reaching their working size); what
#     may still grow legitimately after it is SQLite's page cache, which
#     fills as the database grows and stops at its default cache_size of
#     about 2 MiB (measured: 9.6 MiB at the start, a plateau at 16.4-16.7
#     MiB after ~16 s of a 40 s run).  Beyond that, growth is per-request
#     state that is never freed.  The run completes thousands of
#     enrollments after the first third, so 4 MiB catches a leak of about
#     a kilobyte per enrollment (the bound per enrollment is printed);
#     smaller leaks are LeakSanitizer's job in the ASan pass.
#   - under ASan (build with P11CERT_SANITIZE) RSS grows with ASan's
#     quarantine, not with the program: the RSS bound is skipped there,
#     everything else is checked.
#   - p11ca stops on SIGTERM with exit 0 afterwards
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

LOAD=$P11C_BUILD_DIR/bench/ca_load
if [ ! -x "$LOAD" ]; then
	skip "bench/ca_load not built (P11CERT_BENCH=OFF)"
	exit 0
fi
SECS=${SOAK_SECONDS:-24}
asan=0
if asan_build "$P11CA"; then
	asan=1
fi

D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0
ca_start soak "$D" --autosign uuid

# RSS sampler: "ms kB" lines, bounded by the run length
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status" 2>/dev/null; }
(
	end=$(($(date +%s) + SECS + 30))
	while [ "$(date +%s)" -lt "$end" ] && [ ! -e "$T/stop" ]; do
		r=$(rss_kb "$CA_PID") || break
		[ -n "$r" ] || break
		echo "$(now_ms) $r"
		sleep 0.5
	done
) >"$T/rss" &
SAMPLER=$!
CA_PIDS+=("$SAMPLER")

t0=$(now_ms)
# the subject is p11ca (its checks are unchanged); the load client's own
# exit leak check is off: under ASan it once reported 31 bytes held by
# libcrypto in one of its 32 libcurl threads at exit (it passed on the
# rerun), which failed the soak for a race in the client, not in p11ca
load_env=(env "ASAN_OPTIONS=${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0")
nice "${load_env[@]}" "$LOAD" --url "https://localhost:$CA_PORT" --cacert "$D/ca.crt" --clients 32 --seconds "$SECS" \
	--rate-hint 200 >"$T/load1.out" 2>"$T/load1.err" &
L1=$!
nice "${load_env[@]}" "$LOAD" --url "https://localhost:$CA_PORT" --cacert "$D/ca.crt" --clients 32 --seconds "$SECS" \
	--no-reuse --rate-hint 100 >"$T/load2.out" 2>"$T/load2.err" &
L2=$!
CA_PIDS+=("$L1" "$L2")
for p in "$L1" "$L2"; do
	for i in $(seq $(((SECS + 60) * 10))); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$p" 2>/dev/null && fail "ca_load $p still running $((SECS + 60)) s after its start"
	wait "$p" || { cat "$T/load1.err" "$T/load2.err" >&2; fail "ca_load exited with an error"; }
	_ca_forget "$p"
done
t1=$(now_ms)
touch "$T/stop"
wait "$SAMPLER" || true
_ca_forget "$SAMPLER"
cat "$T/load1.out" "$T/load2.out"

field() { sed -n "s/.* $2=\([0-9.]*\).*/\1/p" "$1"; }
e1=$(field "$T/load1.out" enrollments) e2=$(field "$T/load2.out" enrollments)
x1=$(field "$T/load1.out" errors) x2=$(field "$T/load2.out" errors)
[ -n "$e1" ] && [ -n "$e2" ] || fail "no result line from ca_load"
ENR=$((e1 + e2))
[ "$x1" = 0 ] && [ "$x2" = 0 ] || { cat "$T/load1.err" "$T/load2.err" >&2; fail "client errors: $x1 + $x2"; }
[ "$ENR" -ge 64 ] || fail "only $ENR enrollments in $SECS s"
kill -0 "$CA_PID" 2>/dev/null || fail "p11ca died under the soak"

# the database: every completed enrollment signed, nothing twice.  A POST
# in flight when the clients stopped may have no GET: at most one a client.
p11ca list --dir "$D" --all --json >"$T/db.json" 2>"$T/db.err" || fail "p11ca list: $(cat "$T/db.err")"
python3 - "$T/db.json" "$ENR" 64 <<'PY' || fail "database check"
import collections, json, sys
rows = json.load(open(sys.argv[1]))
enr, clients = int(sys.argv[2]), int(sys.argv[3])
dup = [s for s, n in collections.Counter(r["sha256"] for r in rows).items() if n > 1]
assert not dup, "stored twice: %s" % dup[:5]
signed = [r for r in rows if r["state"] == "signed" and r["certificates"] == 1]
assert len(signed) == len(rows), "not all signed once: %s" % [r for r in rows if r not in signed][:3]
assert enr <= len(rows) <= enr + clients, "%d requests in the database for %d enrollments" % (len(rows), enr)
print("# database: %d requests, each signed once, for %d enrollments" % (len(rows), enr))
PY

# memory
python3 - "$T/rss" "$t0" "$t1" "$ENR" "$asan" <<'PY' >"$T/rss.out" || { cat "$T/rss.out" >&2; fail "p11ca's memory grew under a constant load"; }
import sys
path, t0, t1, enr, asan = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5] == "1"
s = [tuple(map(int, l.split())) for l in open(path) if len(l.split()) == 2]
s = [(t, kb) for t, kb in s if t0 <= t <= t1]
assert len(s) >= 9, "only %d RSS samples" % len(s)
third = (t1 - t0) / 3
first = [kb for t, kb in s if t < t0 + third]
last = [kb for t, kb in s if t >= t1 - third]
assert first and last, "no samples in the first or last third"
a, b = max(first), max(last)
limit = a + max(4096, a * 15 // 100)
per = (limit - a) * 1024 * 1.5 / max(enr, 1)   # the last two thirds hold ~2/3 of the enrollments
print("# RSS kB: first third max %d, last third max %d, limit %d (%d samples); a leak of %.0f bytes"
      " per enrollment would cross it" % (a, b, limit, len(s), per))
if asan:
    print("# ASan build: RSS bound not asserted (the quarantine grows RSS)")
else:
    assert b <= limit, "RSS rose from %d kB to %d kB (limit %d kB)" % (a, b, limit)
PY
cat "$T/rss.out"

echo "# RSS kB every 2 s: $(awk 'NR % 4 == 1 { printf "%s ", $2 }' "$T/rss")"
ca_stop "$CA_PID" 20
[ "$STOP_RC" = 0 ] || fail "p11ca exited $STOP_RC on SIGTERM after the soak"
rate=$((ENR * 1000 / (t1 - t0)))
if [ "$asan" = 1 ]; then
	pass "soak: 64 clients, $SECS s, $ENR enrollments ($rate/s), no error, all in the database (RSS bound skipped under ASan)"
else
	pass "soak: 64 clients, $SECS s, $ENR enrollments ($rate/s), no error, all in the database, RSS flat"
fi
