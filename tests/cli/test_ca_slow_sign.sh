#!/usr/bin/env bash
# p11ca with a slow CA key (issue 13, "signing off the event loop"): the CA
# key is in SoftHSM behind tests/helpers/slowp11.c, which makes every
# C_Sign take SLOWP11_DELAY_MS.  The checks are about order, not speed:
#   1. signers = 2: while two autosigned enrollments are being signed,
#      GET /root.crt and the poll of a pending request are answered (the
#      enrollments are still running when they come back), and the two
#      signatures ran at the same time (slowp11's in-flight maximum is 2);
#      a client that gives up meanwhile leaves a request that is still
#      stored and signed, and p11ca serving;
#   2. signers = 0 (on the loop, as before): root.crt waits for them, which
#      shows that check 1 can fail;
#   3. the bounded queue: 2 signers, sign-queue 2, 6 enrollments at once:
#      the ones beyond get 503 with Retry-After, nothing of theirs stored;
#      retried later, each CSR has exactly one certificate;
#   4. SIGTERM with signatures queued: p11ca exits 0 in its grace time and
#      every 202 it gave is in the database;
#   5. a module that cannot lock (CKR_CANT_LOCK): signers = auto is 1,
#      said in the log, and signatures never overlap;
#   6. a UUID request stored pending (autosign was off) is signed by the
#      next poll on a signing thread: root.crt answers meanwhile.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

SLOW=$P11C_BUILD_DIR/tests/libslowp11.so
[ -f "$SLOW" ] || fail "$SLOW not built (target slowp11)"
new_token p11ca-slow
export SLOWP11_MODULE=$MOD
D=$T/ca
SLOWP11_DELAY_MS=0 expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost \
	--listen 127.0.0.1:0 --key "pkcs11:token=$TOKEN;object=ca" --module "$SLOW" --pin-file "$PINF"

mkdir "$T/c"
# csr N [CN]: $T/c/N.csr with a UUID CN (autosigned) or the CN given
csr() {
	local cn=${2:-$(cat /proc/sys/kernel/random/uuid)}
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/C=SE/O=Example/CN=$cn" \
		-keyout /dev/null -out "$T/c/$1.csr" 2>/dev/null || fail "openssl req failed"
	sha256sum "$T/c/$1.csr" | cut -c1-64 >"$T/c/$1.sha"
}
for i in $(seq 1 17); do csr "$i"; done
csr pend pending-host

# bg_post N OUT: POST CSR N in the background; OUT.code gets the status,
# OUT.hdr the headers; BG_PID its pid
bg_post() {
	(
		code=$(curl -sS --noproxy '*' --max-time 60 --cacert "$D/ca.crt" -D "$2.hdr" -o "$2.body" \
			-w '%{http_code}' --data-binary @"$T/c/$1.csr" "$CA_URL/$(cat "$T/c/$1.sha")" 2>"$2.err") || true
		printf '%s\n' "${code:-000}" >"$2.code"
	) &
	BG_PID=$!
}
# wait_all SECONDS PID...: bounded wait for background clients
wait_all() {
	local secs=$1 p i busy
	shift
	for i in $(seq $((secs * 10))); do
		busy=0
		for p in "$@"; do kill -0 "$p" 2>/dev/null && busy=1; done
		[ "$busy" = 0 ] && break
		sleep 0.1
	done
	[ "$busy" = 0 ] || fail "clients still running after $secs s"
	for p in "$@"; do wait "$p" 2>/dev/null || true; done
}
running() { kill -0 "$1" 2>/dev/null; }
inflight() { cat "$T/inflight" 2>/dev/null || echo 0; }

# --- 1. two signers: the loop keeps answering while the token signs ---
export SLOWP11_DELAY_MS=3000 SLOWP11_MAX_INFLIGHT_FILE=$T/inflight
ca_start s1 "$D" --autosign uuid --signers 2
expect_grep -F "2 signing thread(s), queue" "$CA_LOG"
post 202 "$T/c/pend.csr"
bg_post 1 "$T/p1"
p1=$BG_PID
bg_post 2 "$T/p2"
p2=$BG_PID
sleep 1 # both requests are with the signers (3 s per signature)
running "$p1" && running "$p2" || fail "the enrollments ended within 1 s: the signing delay is not in effect"
t0=$(now_ms)
req 200 /root.crt
req 202 "/$(cat "$T/c/pend.sha")"
t1=$(now_ms)
# judged by time, not by whether the clients have exited yet (a client
# answered a moment earlier may still be exiting): 2 s of each signature
# were left, so an answer within 1.5 s did not wait for one
[ $((t1 - t0)) -lt 1500 ] ||
	fail "root.crt and a poll took $((t1 - t0)) ms: the loop waited for the token"
wait_all 30 "$p1" "$p2"
for k in 1 2; do
	[ "$(cat "$T/p$k.code")" = 202 ] || fail "enrollment $k: HTTP $(cat "$T/p$k.code")"
done
# a client that gives up while its request is being signed: p11ca finishes
# the request (stored and signed, the reply goes nowhere, nothing leaks:
# the ASan pass checks) and keeps serving
sha4=$(cat "$T/c/4.sha")
code=$(curl -sS --noproxy '*' --max-time 1 --cacert "$D/ca.crt" -o /dev/null -w '%{http_code}' \
	--data-binary @"$T/c/4.csr" "$CA_URL/$sha4" 2>/dev/null) || true
[ "$code" = 000 ] || fail "the impatient client got HTTP $code within 1 s"
for i in $(seq 100); do
	grep -qF "\"POST /$sha4\" 202" "$CA_LOG" && break
	sleep 0.1
done
expect_grep -F "\"POST /$sha4\" 202" "$CA_LOG"
req 200 "/$sha4"
ca_stop
[ "$STOP_RC" = 0 ] || fail "p11ca exited $STOP_RC"
[ "$(inflight)" = 2 ] || fail "slowp11 saw $(inflight) signature(s) in flight at most, want 2 (one session per signer)"
pass "signers = 2: root.crt and a poll answered in $((t1 - t0)) ms while two 3 s signatures ran side by side"

# --- 2. signers = 0: the same requests wait for the token ---
rm -f "$T/inflight"
ca_start s0 "$D" --autosign uuid --signers 0
expect_grep -F "signing on the event loop (signers = 0)" "$CA_LOG"
bg_post 3 "$T/p3"
p3=$BG_PID
sleep 1
running "$p3" || fail "the enrollment ended within 1 s"
t0=$(now_ms)
req 200 /root.crt
t1=$(now_ms)
# about 2 s of the signature were left when root.crt was asked for
[ $((t1 - t0)) -ge 1000 ] ||
	fail "signers = 0: root.crt was answered in $((t1 - t0)) ms while the loop signed (check 1 could not fail)"
wait_all 30 "$p3"
[ "$(cat "$T/p3.code")" = 202 ] || fail "enrollment 3: HTTP $(cat "$T/p3.code")"
ca_stop
pass "signers = 0: root.crt waited $((t1 - t0)) ms for the signature on the loop"

# --- 3. bounded queue: 2 signers + 2 waiting, 6 at once ---
ca_start q "$D" --autosign uuid --signers 2 --sign-queue 2
pids=()
for i in 5 6 7 8 9 10; do
	bg_post "$i" "$T/q$i"
	pids+=("$BG_PID")
	sleep 0.1 # in order: the first four take the signers and the queue
done
wait_all 60 "${pids[@]}"
n202=0 n503=0 busy=()
for i in 5 6 7 8 9 10; do
	case $(cat "$T/q$i.code") in
	202) n202=$((n202 + 1)) ;;
	503)
		n503=$((n503 + 1))
		busy+=("$i")
		tr -d '\r' <"$T/q$i.hdr" | grep -qi '^retry-after: 2$' || fail "503 without Retry-After: 2 (CSR $i)"
		grep -q 'signing queue is full' "$T/q$i.body" || fail "503 body does not say why: $(cat "$T/q$i.body")"
		;;
	*) fail "CSR $i: HTTP $(cat "$T/q$i.code")" ;;
	esac
done
[ "$n202" = 4 ] && [ "$n503" = 2 ] || fail "want 4 accepted and 2 refused, got $n202 and $n503"
expect_grep "signing queue full" "$CA_LOG"
# nothing of a refused request was stored
for i in "${busy[@]}"; do
	req 404 "/$(cat "$T/c/$i.sha")"
done
# retried: signed
for i in "${busy[@]}"; do
	post 202 "$T/c/$i.csr"
done
for i in 5 6 7 8 9 10; do
	req 200 "/$(cat "$T/c/$i.sha")"
done
ca_stop
pass "sign-queue: 2 of 6 refused with 503 + Retry-After, nothing stored, signed when retried"

# --- 4. SIGTERM with signatures running and queued ---
export SLOWP11_DELAY_MS=1500
ca_start t "$D" --autosign uuid --signers 2 --sign-queue 8
pids=()
for i in 11 12 13 14; do
	bg_post "$i" "$T/t$i"
	pids+=("$BG_PID")
done
sleep 0.5
kill -TERM "$CA_PID"
wait_all 30 "${pids[@]}"
STOP_RC=0
for i in $(seq 200); do kill -0 "$CA_PID" 2>/dev/null || break; sleep 0.1; done
kill -0 "$CA_PID" 2>/dev/null && fail "p11ca still running 20 s after SIGTERM"
wait "$CA_PID" || STOP_RC=$?
_ca_forget "$CA_PID"
[ "$STOP_RC" = 0 ] || fail "p11ca exited $STOP_RC after SIGTERM"
export SLOWP11_DELAY_MS=0
ca_start t2 "$D" --autosign uuid
for i in 11 12 13 14; do
	code=$(cat "$T/t$i.code")
	case $code in
	202) req 200 "/$(cat "$T/c/$i.sha")" ;; # acknowledged: stored and signed
	503 | 000) ;;                            # refused or cut: the client retries
	*) fail "CSR $i during the stop: HTTP $code" ;;
	esac
done
ca_stop
pass "SIGTERM with signatures queued: exit 0, every 202 stored"

# --- 5. a module that cannot lock: one signer, never two signatures at once ---
rm -f "$T/inflight"
export SLOWP11_DELAY_MS=500 SLOWP11_CANT_LOCK=1
ca_start nolock "$D" --autosign uuid
expect_grep -F "1 signing thread(s) (the module cannot run threads" "$CA_LOG"
pids=()
for i in 15 16; do
	bg_post "$i" "$T/n$i"
	pids+=("$BG_PID")
done
wait_all 30 "${pids[@]}"
for i in 15 16; do [ "$(cat "$T/n$i.code")" = 202 ] || fail "CSR $i: HTTP $(cat "$T/n$i.code")"; done
ca_stop
[ "$(inflight)" = 1 ] || fail "CKR_CANT_LOCK module: $(inflight) signatures in flight at once, want 1"
unset SLOWP11_CANT_LOCK
pass "CKR_CANT_LOCK: one signing thread, signatures one at a time"

# --- 6. a poll that finds a UUID request pending signs it off the loop ---
export SLOWP11_DELAY_MS=0
ca_start off "$D" --signers 2 # autosign off: stored pending
post 202 "$T/c/17.csr"
ca_stop
export SLOWP11_DELAY_MS=3000
ca_start poll "$D" --autosign uuid --signers 2
sha17=$(cat "$T/c/17.sha")
(
	code=$(curl -sS --noproxy '*' --max-time 60 --cacert "$D/ca.crt" -o "$T/g17.body" -w '%{http_code}' \
		"$CA_URL/$sha17" 2>"$T/g17.err") || true
	printf '%s\n' "${code:-000}" >"$T/g17.code"
) &
g17=$!
sleep 1
running "$g17" || fail "the poll ended within 1 s: it did not sign"
t0=$(now_ms)
req 200 /root.crt
t1=$(now_ms)
[ $((t1 - t0)) -lt 1500 ] || fail "root.crt took $((t1 - t0)) ms while a poll signed: the poll signed on the loop"
wait_all 30 "$g17"
[ "$(cat "$T/g17.code")" = 200 ] || fail "the poll of the pending UUID request: HTTP $(cat "$T/g17.code")"
openssl x509 -in "$T/g17.body" -noout 2>/dev/null || fail "the poll did not answer a certificate"
expect_grep -F "\"GET /$sha17\" 200" "$CA_LOG"
expect_grep -F "autosigned (UUID CN, on GET)" "$CA_LOG"
ca_stop
pass "a poll that signs a pending UUID request runs on a signing thread: root.crt answered in $((t1 - t0)) ms"
