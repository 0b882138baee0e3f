#!/usr/bin/env bash
# p11ca under load: 200 Caramel enrollments from 20 parallel clients (half
# with UUID CNs, autosigned), each stored exactly once; then SIGTERM in the
# middle of 100 more: the server exits 0 within the grace time, and every
# request it acknowledged (202) is in the database after a restart.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

start=$(date +%s)
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0

# --- 300 CSRs, made beforehand (4 makers in parallel) ---
# 0..199: phase 1, even numbers with a UUID CN; 200..299: phase 2
mkdir "$T/c" "$T/r1" "$T/r2"
make_csrs() { # FIRST LAST
	local i cn
	for i in $(seq "$1" "$2"); do
		if [ $((i % 2)) = 0 ]; then cn=$(cat /proc/sys/kernel/random/uuid); else cn=client-$i; fi
		openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/C=SE/O=Example/CN=$cn" \
			-keyout /dev/null -out "$T/c/$i.csr" 2>/dev/null || return 1
		sha256sum "$T/c/$i.csr" | cut -c1-64 >"$T/c/$i.sha"
	done
}
mk_pids=()
for k in 0 1 2 3; do
	make_csrs $((k * 75)) $((k * 75 + 74)) &
	mk_pids+=($!)
done
for p in "${mk_pids[@]}"; do
	wait "$p" || fail "making CSRs failed"
done
[ "$(find "$T/c" -name '*.csr' -size +100c | wc -l)" = 300 ] || fail "not 300 CSRs"
[ "$(cat "$T"/c/*.sha | sort -u | wc -l)" = 300 ] || fail "CSRs are not distinct"
echo "# 300 CSRs in $(($(date +%s) - start)) s"

# poster FIRST LAST OUTDIR: POST CSRs FIRST..LAST one after another;
# OUTDIR/N.code gets the HTTP status (000 when there was no answer)
poster() {
	local i sha code
	for i in $(seq "$1" "$2"); do
		sha=$(cat "$T/c/$i.sha")
		code=$(curl -sS --noproxy '*' --max-time 20 --cacert "$D/ca.crt" -o "$3/$i.body" \
			-w '%{http_code}' --data-binary @"$T/c/$i.csr" "$CA_URL/$sha" 2>"$3/$i.err") || true
		printf '%s\n' "${code:-000}" >"$3/$i.code"
	done
}

# wait_pids SECONDS PID...: wait for the clients, bounded
wait_pids() {
	local secs=$1 p i busy
	shift
	for i in $(seq $((secs * 10))); do
		busy=0
		for p in "$@"; do
			kill -0 "$p" 2>/dev/null && { busy=1; break; }
		done
		[ "$busy" = 0 ] && break
		sleep 0.1
	done
	for p in "$@"; do
		if kill -0 "$p" 2>/dev/null; then
			kill -KILL "$p" 2>/dev/null || true
			fail "client $p still running after $secs s"
		fi
		wait "$p" || true
	done
}

# db_check OUT: `p11ca list --all --json` as "sha state" lines in OUT,
# after checking that no sha256 is there twice
db_check() {
	p11ca list --dir "$D" --all --json >"$T/list.json" 2>"$T/list.err" || fail "p11ca list: $(cat "$T/list.err")"
	python3 - "$T/list.json" "$1" <<'PY' || fail "database check"
import collections, json, sys
rows = json.load(open(sys.argv[1]))
dup = [s for s, n in collections.Counter(r["sha256"] for r in rows).items() if n > 1]
assert not dup, "sha256 stored twice: %s" % dup
with open(sys.argv[2], "w") as f:
    for r in rows:
        f.write("%s %s %s\n" % (r["sha256"], r["state"], r["cn"]))
PY
}

# ================= phase 1: 200 POSTs from 20 clients =================
ca_start load1 "$D" --autosign uuid
t0=$(date +%s%N)
pids=()
for w in $(seq 0 19); do
	poster $((w * 10)) $((w * 10 + 9)) "$T/r1" &
	pids+=($!)
done
wait_pids 120 "${pids[@]}"
t1=$(date +%s%N)
echo "# phase 1: 200 POSTs in $(((t1 - t0) / 1000000)) ms"

# every client got 202 with its own sha256
for i in $(seq 0 199); do
	[ -f "$T/r1/$i.code" ] || fail "POST $i: no result"
	code=$(cat "$T/r1/$i.code")
	[ "$code" = 202 ] || fail "POST $i: HTTP $code: $(cat "$T/r1/$i.err" "$T/r1/$i.body" 2>/dev/null)"
	grep -qF "\"sha256\": \"$(cat "$T/c/$i.sha")\"" "$T/r1/$i.body" || fail "POST $i: body $(cat "$T/r1/$i.body")"
done
db_check "$T/db1"
[ "$(wc -l <"$T/db1")" = 200 ] || fail "$(wc -l <"$T/db1") requests in the database, want 200"
for i in $(seq 0 199); do
	if [ $((i % 2)) = 0 ]; then want=signed; else want=pending; fi
	grep -qx "$(cat "$T/c/$i.sha") $want .*" "$T/db1" || fail "request $i not in the database as $want: $(grep "$(cat "$T/c/$i.sha")" "$T/db1")"
done
[ "$(grep -c ' signed ' "$T/db1")" = 100 ] || fail "signed count"
[ "$(grep -c ' pending ' "$T/db1")" = 100 ] || fail "pending count"
# autosigned ones are served at once, the others wait
for i in 0 2 198; do
	req 200 "/$(cat "$T/c/$i.sha")"
	expect_leaf "$T/body" "$(openssl req -in "$T/c/$i.csr" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p')" "$T/c/$i.csr"
done
req 202 "/$(cat "$T/c/1.sha")"
[ "$(grep -cE '"POST /[0-9a-f]{64}" 202 ' "$CA_LOG")" = 200 ] || fail "access log: $(grep -cE '"POST /[0-9a-f]{64}" 202 ' "$CA_LOG") POST lines, want 200"
# the server is still serving
req 200 /root.crt

# ================= phase 2: SIGTERM in the middle of 100 POSTs =================
t0=$(date +%s%N)
pids=()
for w in $(seq 0 9); do
	poster $((200 + w * 10)) $((200 + w * 10 + 9)) "$T/r2" &
	pids+=($!)
done
# SIGTERM once about half have an answer (bounded)
for i in $(seq 600); do
	[ "$(find "$T/r2" -name '*.code' | wc -l)" -ge 50 ] && break
	sleep 0.05
done
[ "$(find "$T/r2" -name '*.code' | wc -l)" -ge 50 ] || fail "phase 2: not 50 answers after 30 s"
sent=$(find "$T/r2" -name '*.code' | wc -l)
ca_stop "$CA_PID" 15
[ "$STOP_RC" = 0 ] || fail "serve exit $STOP_RC after SIGTERM under load"
grep -q '^p11ca: stopped$' "$CA_LOG" || fail "no 'stopped' line"
wait_pids 60 "${pids[@]}"
t1=$(date +%s%N)
acked=() lost=()
for i in $(seq 200 299); do
	[ -f "$T/r2/$i.code" ] || fail "POST $i: no result"
	code=$(cat "$T/r2/$i.code")
	case $code in
	202) acked+=("$i")
		grep -qF "\"sha256\": \"$(cat "$T/c/$i.sha")\"" "$T/r2/$i.body" || fail "POST $i: body $(cat "$T/r2/$i.body")" ;;
	000) lost+=("$i") ;;
	*) fail "POST $i during shutdown: HTTP $code: $(cat "$T/r2/$i.body" 2>/dev/null)" ;;
	esac
done
echo "# phase 2: SIGTERM after $sent answers; ${#acked[@]} acknowledged, ${#lost[@]} without answer ($(((t1 - t0) / 1000000)) ms)"
[ "${#acked[@]}" -ge 50 ] || fail "only ${#acked[@]} acknowledged before SIGTERM"
[ "${#lost[@]}" -ge 1 ] || fail "SIGTERM came after all 100 POSTs: nothing was cut off"

# restart: every acknowledged request is there, nothing twice
ca_start load2 "$D" --autosign uuid
db_check "$T/db2"
n2=$(wc -l <"$T/db2")
[ "$n2" -ge $((200 + ${#acked[@]})) ] && [ "$n2" -le 300 ] || fail "$n2 requests after restart"
for i in $(seq 0 199) "${acked[@]}"; do
	grep -q "^$(cat "$T/c/$i.sha") " "$T/db2" || fail "acknowledged request $i lost"
done
for i in "${acked[@]}"; do
	if [ $((i % 2)) = 0 ]; then want=signed; else want=pending; fi
	grep -qx "$(cat "$T/c/$i.sha") $want .*" "$T/db2" || fail "request $i is not $want after restart"
done
# the unanswered ones: stored or not, a retry gets a consistent answer
for i in "${lost[@]}"; do
	if grep -q "^$(cat "$T/c/$i.sha") " "$T/db2"; then
		post 400 "$T/c/$i.csr"
		expect_problem 400 duplicate
	else
		post 202 "$T/c/$i.csr"
		expect_accepted "$(cat "$T/c/$i.sha")"
	fi
done
db_check "$T/db3"
[ "$(wc -l <"$T/db3")" = 300 ] || fail "$(wc -l <"$T/db3") requests after the retries, want 300"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve exit $STOP_RC"

json_check_all
pass "load and SIGTERM in $(($(date +%s) - start)) s"
