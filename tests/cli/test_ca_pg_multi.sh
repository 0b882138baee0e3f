#!/usr/bin/env bash
# Three p11ca instances on one PostgreSQL database with one CA key in one
# SoftHSM token (issue 13, docs/ca.md "Several instances"): the same CSR
# posted to all three at once is stored once (one 202, the others the
# answer of any repeated POST) and every instance then answers GET alike;
# a sign or reject on one instance's folder is what all serve; refresh and
# CRL generation hold advisory locks (a refresh while another runs does
# nothing; a CRL waits; CRL numbers never repeat); serials unique over a
# few thousand certificates.  Skipped (77) without PostgreSQL.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"
# shellcheck source=pg_lib.sh
. "$_ca_lib_dir/pg_lib.sh"

start=$(date +%s)
LOCK_CLASS=1882272099 # 0x70313163, store/postgresql.c
PY=$_ca_lib_dir/pg_post.py
pg_start
pg_newdb multi
new_token p11ca-multi
D1=$T/i1 D2=$T/i2 D3=$T/i3
expect_rc 0 p11ca init --dir "$D1" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 \
	--key "pkcs11:token=$TOKEN;object=ca" --module "$MOD" --pin-file "$PINF" \
	--db "$PG_URI" --db-password-file "$PG_PWFILE"
[ ! -e "$D1/p11ca.db" ] || fail "p11ca.db created with db = postgresql://"
expect_grep "^db = postgresql://p11ca@/multi" "$D1/p11ca.conf"
# the other instances: the same CA (certificate, settings, TLS key), their own folders
cp -a "$D1" "$D2"
cp -a "$D1" "$D3"
ca_start i1 "$D1" --autosign uuid
P1=$CA_PORT
ca_start i2 "$D2" --autosign uuid
P2=$CA_PORT
ca_start i3 "$D3" --autosign uuid
P3=$CA_PORT
PORTS=$P1,$P2,$P3
CA=$D1/ca.crt
n_of() { pg_sql multi "$1"; }

# --- 1. the same CSR to three instances at once ---
openssl ecparam -name prime256v1 -genkey -noout -out "$T/k.pem" 2>/dev/null || fail "openssl ecparam"
mkcsr() { openssl req -new -key "$T/k.pem" -subj "/C=SE/O=Example/CN=$2" -out "$1" 2>/dev/null || fail "openssl req $2"; }
same=()
for i in $(seq 12); do
	if [ $((i % 2)) = 0 ]; then cn=$(cat /proc/sys/kernel/random/uuid); else cn=multi-$i; fi
	mkcsr "$T/same$i.csr" "$cn"
	same+=("$T/same$i.csr")
done
timeout 120 python3 "$PY" same "$CA" "$PORTS" "${same[@]}" >"$T/same.out" || fail "pg_post.py same"
[ "$(wc -l <"$T/same.out")" = 36 ] || fail "want 36 answers: $(cat "$T/same.out")"
for f in "${same[@]}"; do
	sha=$(sha256_of "$f")
	[ "$(grep -c "^$sha [0-9]* 202 " "$T/same.out")" = 1 ] || fail "$f: not exactly one 202: $(grep "^$sha" "$T/same.out")"
	[ "$(grep -c "^$sha [0-9]* 400 duplicate_request$" "$T/same.out")" = 2 ] \
		|| fail "$f: the other two answers are not 'duplicate request': $(grep "^$sha" "$T/same.out")"
done
[ "$(n_of "SELECT count(*) FROM requests")" = 12 ] || fail "requests stored: $(n_of "SELECT count(*) FROM requests"), want 12"
# UUID CNs are signed once, whichever instance took the POST
[ "$(n_of "SELECT count(*) FROM certificates")" = 6 ] || fail "certificates: $(n_of "SELECT count(*) FROM certificates"), want 6"
shas=()
for f in "${same[@]}"; do shas+=("$(sha256_of "$f")"); done
timeout 120 python3 "$PY" get "$CA" "$PORTS" "${shas[@]}" >"$T/get.out" || fail "pg_post.py get"
for s in "${shas[@]}"; do
	# a 202 names the instance it came from (its url): the status is the answer
	[ "$(grep "^$s " "$T/get.out" | awk '{ print $3, ($3 == 202 ? "-" : $4) }' | sort -u | wc -l)" = 1 ] \
		|| fail "GET /$s differs between instances: $(grep "^$s" "$T/get.out")"
done
[ "$(grep -c ' 200 ' "$T/get.out")" = 18 ] || fail "want 6 certificates served by 3 instances: $(cat "$T/get.out")"
[ "$(grep -c ' 202 ' "$T/get.out")" = 18 ] || fail "want 6 pending requests on 3 instances"
pass "the same CSR posted to 3 instances at once: stored once, one 202, GET alike everywhere"

# --- 2. sign on one instance's folder, served by all; reject likewise ---
s1=$(sha256_of "$T/same1.csr") s3=$(sha256_of "$T/same3.csr")
expect_rc 0 p11ca sign --dir "$D2" "$s1"
expect_rc 0 p11ca reject --dir "$D3" "$s3"
for p in $P1 $P2 $P3; do
	req_url 200 "https://localhost:$p/$s1"
	cp "$T/body" "$T/s1-$p.pem"
	req_url 403 "https://localhost:$p/$s3"
done
cmp -s "$T/s1-$P1.pem" "$T/s1-$P3.pem" && cmp -s "$T/s1-$P1.pem" "$T/s1-$P2.pem" \
	|| fail "the instances serve different certificates for $s1"
expect_rc 0 p11ca list --dir "$D1" --all
expect_grep "rejected .*multi-3" "$T/out"
pass "sign in i2's folder and reject in i3's: every instance serves them"

# --- 3. refresh and CRL under advisory locks ---
# hold_lock N: a psql session holding advisory lock N (HOLD_PID)
hold_lock() {
	psql -X -q -h "$PG_SOCK" -p "$PG_PORT" -U p11ca -d multi \
		-c "SELECT pg_advisory_lock($LOCK_CLASS, $1)" -c "SELECT pg_sleep(60)" >/dev/null 2>&1 &
	HOLD_PID=$!
	CA_PIDS+=("$HOLD_PID")
	for _ in $(seq 100); do
		[ "$(n_of "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND classid = $LOCK_CLASS AND objid = $1 AND granted")" = 1 ] && return 0
		sleep 0.1
	done
	fail "psql did not take advisory lock $1"
}
# release_lock N: end the session holding it (its backend sleeps on)
release_lock() {
	n_of "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = $LOCK_CLASS AND objid = $1" >/dev/null
	kill "$HOLD_PID" 2>/dev/null || true
	wait "$HOLD_PID" 2>/dev/null || true
	_ca_forget "$HOLD_PID"
}
c0=$(n_of "SELECT count(*) FROM certificates")
hold_lock 3
expect_rc 0 p11ca refresh --dir "$D1"
expect_grep "another p11ca instance is running refresh; nothing to do here" "$T/err"
[ "$(n_of "SELECT count(*) FROM certificates")" = "$c0" ] || fail "a refresh ran beside another"
release_lock 3
hold_lock 4
p11ca crl --dir "$D2" -o "$T/crl-wait.pem" >/dev/null 2>"$T/crl-wait.err" &
crl_pid=$!
sleep 1
kill -0 "$crl_pid" 2>/dev/null || fail "p11ca crl did not wait for the CRL lock: $(cat "$T/crl-wait.err")"
[ ! -e "$T/crl-wait.pem" ] || fail "a CRL was written while another was being made"
release_lock 4
wait "$crl_pid" || fail "p11ca crl after the lock: $(cat "$T/crl-wait.err")"
[ -s "$T/crl-wait.pem" ] || fail "no CRL after the lock was released"
# racing: three CRLs and two refreshes at once.  SoftHSM's file store now
# and then shows a process no token, or fails its C_Login with
# CKR_GENERAL_ERROR, while other processes open the same token (its own
# race on the token's files, not p11ca's; seen under ASan's slower starts):
# such a run is repeated, at most twice, later than the others
p11ca_tok() {
	local err=$1 try
	shift
	for try in 1 2; do
		p11ca "$@" >/dev/null 2>"$err" && return 0
		grep -q -e "tokens present: none" -e "C_Login on token .*CKR_GENERAL_ERROR" "$err" || return 1
		sleep "0.$((try * 4))"
	done
	p11ca "$@" >/dev/null 2>"$err"
}
pids=()
for i in 1 2 3; do
	p11ca_tok "$T/crl$i.err" crl --dir "$T/i$i" -o "$T/crl$i.pem" &
	pids+=($!)
done
p11ca_tok "$T/ref1.err" refresh --dir "$D1" &
pids+=($!)
p11ca_tok "$T/ref3.err" refresh --dir "$D3" &
pids+=($!)
for p in "${pids[@]}"; do wait "$p" || fail "a racing crl or refresh failed: $(cat "$T"/crl?.err "$T"/ref?.err)"; done
for i in 1 2 3; do
	openssl crl -in "$T/crl$i.pem" -noout -text 2>/dev/null | sed -n '/CRL Number/{n;s/ //gp}' >>"$T/crlnums"
	openssl crl -in "$T/crl$i.pem" -CAfile "$CA" -noout 2>/dev/null || fail "crl$i.pem does not verify"
done
[ "$(sort -u "$T/crlnums" | wc -l)" = 3 ] || fail "CRL numbers repeat: $(tr '\n' ' ' <"$T/crlnums")"
resigned=$(cat "$T/ref1.err" "$T/ref3.err" | sed -n 's/^p11ca: re-signed \([0-9]*\) request.*/\1/p' | awk '{s += $1} END {print s + 0}')
signed=$(n_of "SELECT count(*) FROM requests r WHERE state != 'rejected' AND EXISTS (SELECT 1 FROM certificates c WHERE c.request_id = r.id)")
[ $(($(n_of "SELECT count(*) FROM certificates") - c0)) = "$resigned" ] \
	|| fail "new certificates $(($(n_of "SELECT count(*) FROM certificates") - c0)) != re-signed $resigned"
[ "$resigned" -ge "$signed" ] || fail "the racing refreshes re-signed $resigned of $signed requests"
pass "refresh skips while another runs, a CRL waits for the one being made; racing CRLs numbered $(sort -n "$T/crlnums" | tr '\n' ' ')"

# --- 4. instances starting together on a new database migrate it once ---
URI_MULTI=$PG_URI
pg_newdb fresh
pids=()
for i in 1 2 3; do
	p11ca list --dir "$T/i$i" --db "$PG_URI" >/dev/null 2>"$T/mig$i.err" &
	pids+=($!)
done
for p in "${pids[@]}"; do wait "$p" || fail "a racing first open failed: $(cat "$T"/mig?.err)"; done
[ "$(pg_sql fresh "SELECT count(*) || ' ' || max(version) FROM schema_version")" = "1 3" ] \
	|| fail "schema_version after racing opens: $(pg_sql fresh "SELECT * FROM schema_version")"
[ "$(pg_sql fresh "SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")" = 6 ] \
	|| fail "tables after racing opens: $(pg_sql fresh "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public'")"
PG_URI=$URI_MULTI
pass "three first opens of a new database at once: migrated once"

# --- 5. the shared-token guess limit counts every instance's wrong HMACs ---
pg_newdb tok
DT1=$T/t1 DT2=$T/t2
SECRET=SharedTokenForTheRateLimit1234
mkdir -m 700 "$DT1"
(umask 077 && printf '%s\n' "$SECRET" >"$DT1/token")
expect_rc 0 p11ca init --dir "$DT1" --ca-hostname localhost --OU NIFI --token-file token --listen 127.0.0.1:0 \
	--token-rate-limit 3 --token-rate-limit-shared yes --db "$PG_URI" --db-password-file "$PG_PWFILE"
cp -a "$DT1" "$DT2"
ca_start t1 "$DT1"
TP1=$CA_PORT
ca_start t2 "$DT2"
TP2=$CA_PORT
mk_csr "$T/g.csr" "/OU=NIFI/CN=guesser"
body "$T/wrong.json" "$(hmac_of "$T/g.csr" "WrongToken$SECRET")" "$T/g.csr"
TPORT=$TP1 tpost 403 "$T/wrong.json"
TPORT=$TP2 tpost 403 "$T/wrong.json"
TPORT=$TP1 tpost 403 "$T/wrong.json"
# t2 saw one wrong HMAC of its own: the shared count (3) refuses the next
TPORT=$TP2 tpost 429 "$T/wrong.json"
[ "$(header Retry-After)" -ge 1 ] && [ "$(header Retry-After)" -le 60 ] || fail "429 Retry-After '$(header Retry-After)'"
body "$T/right.json" "$(hmac_of "$T/g.csr")" "$T/g.csr"
TPORT=$TP1 tpost 429 "$T/right.json"   # refused before the HMAC is looked at
[ "$(pg_sql tok "SELECT n FROM token_guesses WHERE addr = '127.0.0.1'")" = 3 ] || fail "wrong HMACs counted: $(pg_sql tok "SELECT * FROM token_guesses")"
PG_URI=$URI_MULTI CA_DIR=$D1 CA_LOG=$T/i3.log
pass "wrong shared-token HMACs counted across instances: the 4th (the 2nd on t2) is 429"

# --- 6. serials unique over a few thousand certificates ---
csrs=()
for i in $(seq 200); do
	mkcsr "$T/bulk$i.csr" "$(cat /proc/sys/kernel/random/uuid)"
	csrs+=("$T/bulk$i.csr")
done
timeout 120 python3 "$PY" load "$CA" "$PORTS" 8 "${csrs[@]}" >"$T/bulk.out" || fail "pg_post.py load"
[ "$(grep -c '^POST .* 202 ' "$T/bulk.out")" = 200 ] || fail "bulk POSTs: $(grep -c '^POST .* 202 ' "$T/bulk.out") of 200 accepted"
for _ in $(seq 12); do
	[ "$(n_of "SELECT count(*) FROM certificates")" -ge 2000 ] && break
	expect_rc 0 p11ca refresh --dir "$T/i$((RANDOM % 3 + 1))"
done
total=$(n_of "SELECT count(*) FROM certificates")
[ "$total" -ge 2000 ] || fail "only $total certificates"
[ "$(n_of "SELECT count(DISTINCT serial) FROM certificates")" = "$total" ] || fail "serials repeat"
# the stored serial is the certificate's
n_of "SELECT serial || ' ' || replace(pem, E'\n', '|') FROM certificates ORDER BY random() LIMIT 5" >"$T/sample"
while read -r serial pem; do
	printf '%s\n' "$pem" | tr '|' '\n' >"$T/one.pem"
	got=$(openssl x509 -in "$T/one.pem" -noout -serial | sed 's/^serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//')
	[ "$got" = "${serial#0}" ] || [ "$got" = "$serial" ] || fail "stored serial $serial, certificate says $got"
done <"$T/sample"
# a request's newest certificate is one index probe, whatever the planner
# knows of the table yet (migration 3; without it a new connection walked
# the primary key backwards through every certificate)
plan=$(n_of "EXPLAIN SELECT revoked FROM certificates WHERE request_id = 1 ORDER BY id DESC LIMIT 1")
grep -q 'certificates_request_newest' <<<"$plan" || fail "the newest-certificate lookup does not use its index: $plan"
pass "$total certificates from 3 instances, serials unique"

for p in $P1 $P2 $P3; do
	req_url 200 "https://localhost:$p/root.crt"
done
for pid in ${CA_PIDS[@]+"${CA_PIDS[@]}"}; do
	ca_stop "$pid"
	[ "$STOP_RC" = 0 ] || fail "an instance exited $STOP_RC after SIGTERM"
done
expect_nogrep -F "$(cat "$PG_PWFILE")" "$T"/i?.log "$T"/t?.log "$D1/p11ca.conf"
pass "three instances on one database in $(($(date +%s) - start)) s"
