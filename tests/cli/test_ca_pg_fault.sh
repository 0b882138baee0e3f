#!/usr/bin/env bash
# p11ca on PostgreSQL when things fail (issue 13, docs/ca.md "Several
# instances"): the database stopped and restarted under load (503 with
# Retry-After meanwhile, never a 500 or a half answer, /root.crt still
# served, the instances reconnect by themselves, nothing acknowledged is
# lost, nothing signed twice); one instance SIGKILLed under load while the
# other keeps serving.  Skipped (77) without PostgreSQL.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"
# shellcheck source=pg_lib.sh
. "$_ca_lib_dir/pg_lib.sh"

start=$(date +%s)
PY=$_ca_lib_dir/pg_post.py
pg_start
pg_newdb fault
D1=$T/i1 D2=$T/i2
expect_rc 0 p11ca init --dir "$D1" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 \
	--db "$PG_URI" --db-password-file "$PG_PWFILE"
cp -a "$D1" "$D2"
# instance 2 serves EST too (HTTP Basic, automatic approval): its store
# errors are 503 + Retry-After as well
printf '%s\n' 'est pw' | p11ca est-user add dev --dir "$D2" 2>"$T/err" || fail "est-user add: $(cat "$T/err")"
printf '[default]\nauth = basic\nusers = est-users\n' >"$D2/est.conf"
ca_start i1 "$D1" --autosign uuid
P1=$CA_PORT PID1=$CA_PID
ca_start i2 "$D2" --autosign uuid
P2=$CA_PORT
CA=$D1/ca.crt
n_of() { pg_sql fault "$1"; }

openssl ecparam -name prime256v1 -genkey -noout -out "$T/k.pem" 2>/dev/null || fail "openssl ecparam"
csrs=()
for i in $(seq 160); do
	openssl req -new -key "$T/k.pem" -subj "/C=SE/O=Example/CN=$(cat /proc/sys/kernel/random/uuid)" \
		-out "$T/c$i.csr" 2>/dev/null || fail "openssl req"
	csrs+=("$T/c$i.csr")
done

# check_acknowledged OUT: every 202 POST and every 200 GET of a load run is
# in the database, certified once
check_acknowledged() {
	local sha n
	awk '($1 == "POST" && $4 == 202) || ($1 == "GET" && $4 == 200) { print $2 }' "$1" | sort -u >"$T/acked"
	[ -s "$T/acked" ] || fail "$(basename "$1"): nothing was acknowledged"
	n_of "SELECT r.sha256 || ' ' || count(c.id) FROM requests r LEFT JOIN certificates c ON c.request_id = r.id GROUP BY r.sha256" \
		>"$T/stored"
	while read -r sha; do
		n=$(sed -n "s/^$sha //p" "$T/stored")
		[ "$n" = 1 ] || fail "acknowledged request $sha: ${n:-no} certificate(s) in the database, want 1"
	done <"$T/acked"
	! awk '$2 != 1' "$T/stored" | grep -q . || fail "a request was certified twice: $(awk '$2 != 1' "$T/stored" | head -3)"
}

# --- 1. PostgreSQL stopped and restarted under load ---
timeout 120 python3 "$PY" load "$CA" "$P1,$P2" 14 "${csrs[@]:0:100}" >"$T/load1.out" &
load=$!
sleep 3
pg_stop
sleep 1
# the CA certificate needs no database
req_url 200 "https://localhost:$P1/root.crt"
req_url 200 "https://localhost:$P2/root.crt"
sha=$(sha256_of "$T/c150.csr")
req_url 503 "https://localhost:$P2/$sha" --data-binary @"$T/c150.csr"
[ "$(header Retry-After)" = 5 ] || fail "503 without Retry-After: 5"
expect_problem 503 "database is unavailable"
# EST: /cacerts needs no database, an enrollment gets 503 + Retry-After
req_url 200 "https://localhost:$P2/.well-known/est/cacerts"
openssl req -in "$T/c151.csr" -outform DER | base64 -w 64 >"$T/c151.b64"
req_url 503 "https://localhost:$P2/.well-known/est/simpleenroll" -u 'dev:est pw' \
	-H 'Content-Type: application/pkcs10' --data-binary @"$T/c151.b64"
[ "$(header Retry-After)" = 5 ] || fail "EST 503 without Retry-After: 5"
grep -q 'database is unavailable' "$T/body" || fail "EST 503 body: $(cat "$T/body")"
sleep 3
pg_restart
wait "$load" || fail "pg_post.py load"
grep -q . "$T/load1.out" || fail "no answers under load"
for s in 500 502 504; do
	! grep -q "^[A-Z]* [0-9a-f]* [0-9]* $s " "$T/load1.out" || fail "HTTP $s under load: $(grep " $s " "$T/load1.out" | head -3)"
done
n503=$(awk '$4 == 503' "$T/load1.out" | wc -l)
[ "$n503" -gt 0 ] || fail "no 503 while the database was down"
[ "$(awk '$4 == 503 && $5 != 5' "$T/load1.out" | wc -l)" = 0 ] || fail "a 503 without Retry-After: 5"
[ "$(awk '$4 == 0' "$T/load1.out" | wc -l)" = 0 ] || fail "connections failed: $(awk '$4 == 0' "$T/load1.out" | head -3)"
# both instances reconnect by themselves (within 20 s, however loaded the machine)
for p in $P1 $P2; do
	code=000
	for _ in $(seq 100); do
		code=$(cu -o /dev/null -w '%{http_code}' "https://localhost:$p/$sha" 2>/dev/null) || true
		[ "$code" = 503 ] || break
		sleep 0.2
	done
	[ "$code" = 200 ] || [ "$code" = 202 ] || [ "$code" = 404 ] || fail "instance on port $p after the restart: HTTP $code"
done
# every CSR is taken and certified
timeout 120 python3 "$PY" same "$CA" "$P1,$P2" "${csrs[@]:0:100}" >"$T/again.out" || fail "pg_post.py same"
! awk '$3 != 202 && $3 != 400' "$T/again.out" | grep -q . || fail "after the restart: $(awk '$3 != 202 && $3 != 400' "$T/again.out" | head -3)"
shas=()
for f in "${csrs[@]:0:100}"; do shas+=("$(sha256_of "$f")"); done
timeout 120 python3 "$PY" get "$CA" "$P1,$P2" "${shas[@]}" >"$T/get1.out" || fail "pg_post.py get"
[ "$(awk '$3 == 200' "$T/get1.out" | wc -l)" = 200 ] || fail "after the restart, not every request is served: $(awk '$3 != 200' "$T/get1.out" | head -3)"
check_acknowledged "$T/load1.out"
[ "$(n_of "SELECT count(*) FROM requests")" = 100 ] || fail "requests: $(n_of "SELECT count(*) FROM requests"), want 100"
# the EST enrollment refused meanwhile goes through now
openssl req -in "$T/c151.csr" -outform DER | base64 -w 64 >"$T/c151.b64"
req_url 200 "https://localhost:$P2/.well-known/est/simpleenroll" -u 'dev:est pw' \
	-H 'Content-Type: application/pkcs10' --data-binary @"$T/c151.b64"
pass "database stopped and restarted under load: $n503 answers 503 + Retry-After, no 5xx else, root.crt served, reconnected, nothing acknowledged lost or signed twice"

# --- 2. one instance SIGKILLed under load ---
timeout 120 python3 "$PY" load "$CA" "$P1,$P2" 6 "${csrs[@]:100:50}" >"$T/load2.out" &
load=$!
sleep 2
kill -KILL "$PID1"
wait "$PID1" 2>/dev/null || true
_ca_forget "$PID1"
wait "$load" || fail "pg_post.py load"
! awk -v p="$P2" '$3 == p && $4 != 202 && $4 != 200 && $4 != 400' "$T/load2.out" | grep -q . \
	|| fail "i2 failed while i1 was killed: $(awk -v p="$P2" '$3 == p && $4 != 202 && $4 != 200 && $4 != 400' "$T/load2.out" | head -3)"
[ "$(awk -v p="$P2" '$3 == p && $4 == 200' "$T/load2.out" | wc -l)" -gt 0 ] || fail "i2 served no certificate"
# i1 is gone
! curl -sS --noproxy '*' --max-time 5 --cacert "$CA" -o /dev/null "https://localhost:$P1/root.crt" 2>/dev/null \
	|| fail "i1 still answers after SIGKILL"
check_acknowledged "$T/load2.out"
CA_LOG=$T/i2.log
req_url 200 "https://localhost:$P2/root.crt"
pass "i1 SIGKILLed under load: i2 kept serving, nothing acknowledged lost"

ca_stop "${CA_PIDS[0]}"
[ "$STOP_RC" = 0 ] || fail "i2 exited $STOP_RC after SIGTERM"
expect_nogrep -F "$(cat "$PG_PWFILE")" "$T"/i?.log
pass "faults in $(($(date +%s) - start)) s"
