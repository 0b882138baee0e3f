#!/usr/bin/env bash
# Concurrent p11cert runs on one token and one state folder.
#   a. a run holds CLIENTID.lock (stopped by the test hook while it writes
#      a new CSR for an enrolled id): 3 embedded-mode runs exit 1, 2
#      service-mode runs 75, renew and renew --rekey 75 (docs/enroll.md,
#      docs/operations.md),
#      all at once and without touching the token; the holder then finishes
#   b. 6 embedded-mode runs started together on a fresh client id: each
#      exits 0/69 (it had the lock) or 1 (it did not), at least one had it;
#      one key, one CSR, one request at the CA
#   c. 4 'enroll token' runs started together for one DN and folder: every
#      run exits 0 or with the documented lock code 75; one key, one
#      certificate for the label
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"
need_test_hooks

start=$(date +%s)
ca_up conc
new_token fault-conc
S=$T/s
mkdir -p "$S"
stopped() { [ "$({ sed 's/.*) //' "/proc/$1/stat" 2>/dev/null || true; } | cut -d' ' -f1)" = T ]; }
ENR=(enroll caramel "$SERVER")
OPT=(--dir "$S" --ca-file "$D/ca.crt" --type ec:P-256)

# --- a. the lock is held ----------------------------------------------------------
# h1 enrolled; then a new request (its CSR removed), and the run that makes
# it is stopped while it writes h1.csr, holding the lock
expect_rc 69 p11c "${ENR[@]}" h1 "${OPT[@]}" --once
expect_rc 0 p11ca sign --dir "$D" "$(ca_sha "$S/h1.csr")"
expect_rc 0 p11c "${ENR[@]}" h1 "${OPT[@]}" --once
rm "$S/h1.csr"
bg holder env P11CERT_TEST_STALL_AT=write:h1.csr "$P11CERT" --module "$MOD" --pin-file "$PINF" "${ENR[@]}" h1 "${OPT[@]}" --once
H=$BG_PID
wait_for 30 "the holder stopped at 'write:h1.csr'" stopped "$H"
objects | cut -f1-3 | sort >"$T/objs.before"
pids=() names=()
for k in 1 2 3; do
	bg "once$k" p11c_direct "${ENR[@]}" h1 "${OPT[@]}" --once
	pids+=("$BG_PID") names+=("once$k")
done
for k in 1 2; do
	bg "svc$k" p11c_direct "${ENR[@]}" h1 "${OPT[@]}" --timeout 30
	pids+=("$BG_PID") names+=("svc$k")
done
bg renew p11c_direct renew --id h1 --dir "$S"
pids+=("$BG_PID") names+=(renew)
bg rekey p11c_direct renew --id h1 --dir "$S" --rekey
pids+=("$BG_PID") names+=(rekey)
for k in "${!pids[@]}"; do
	bg_wait "${pids[$k]}" 30 "${names[$k]}"
	case ${names[$k]} in once*) want=1 ;; *) want=75 ;; esac
	[ "$BG_RC" = "$want" ] || { cat "$T/${names[$k]}.err" >&2; fail "${names[$k]} exited $BG_RC while the lock was held, want $want"; }
	grep -q "another run holds the lock" "$T/${names[$k]}.err" || { cat "$T/${names[$k]}.err" >&2; fail "${names[$k]}: no lock message"; }
done
objects | cut -f1-3 | sort >"$T/objs.after"
diff "$T/objs.before" "$T/objs.after" >&2 || fail "a run that did not get the lock changed the token"
kill -CONT "$H"
bg_wait "$H" 30 holder
[ "$BG_RC" = 0 ] || { cat "$T/holder.err" >&2; fail "the holder exited $BG_RC, want 0 (renewed over mTLS)"; }
cert_next_to_key h1 "$S/h1.crt" >/dev/null
[ "$(ca_requests "$D" h1)" = 2 ] || fail "h1: $(ca_requests "$D" h1) requests, want 2 (enrollment, renewal)"
pass "lock held: 3x --once exit 1, 2x service 75, renew and renew --rekey 75; token untouched; the holder finished"

# --- b. a free race on a fresh client id ---------------------------------------------
pids=()
for k in 1 2 3 4 5 6; do
	bg "race$k" p11c_direct "${ENR[@]}" r1 "${OPT[@]}" --once
	pids+=("$BG_PID")
done
had=0 lost=0
for k in 1 2 3 4 5 6; do
	bg_wait "${pids[$((k - 1))]}" 60 "race$k"
	case $BG_RC in
	0 | 69) had=$((had + 1)) ;;
	1) lost=$((lost + 1)); grep -q "another run holds the lock" "$T/race$k.err" || fail "race$k: 1 without the lock message" ;;
	*) cat "$T/race$k.err" >&2; fail "race$k exited $BG_RC, want 69 or 1" ;;
	esac
done
[ "$had" -ge 1 ] || fail "no run got the lock"
[ "$(n_objects private-key r1)" = 1 ] && [ "$(count_objects privkey r1)" = 1 ] || fail "r1: $(n_objects private-key r1) keys after the race"
[ "$(count_objects pubkey r1)" = 1 ] || fail "r1: $(count_objects pubkey r1) public keys after the race"
[ "$(ca_requests "$D" r1)" = 1 ] || fail "r1: $(ca_requests "$D" r1) requests at the CA after the race"
openssl req -in "$S/r1.csr" -noout -verify >/dev/null 2>&1 || fail "r1.csr does not parse"
pass "6 runs at once: $had had the lock (69), $lost exited 1; one key, one request"

# --- c. enroll token, 4 runs at once -----------------------------------------------------
D2=$T/ca2
mkdir -m 700 "$D2"
printf 'tok-%s\n' "$(openssl rand -hex 14)" >"$D2/token"
chmod 600 "$D2/token"
expect_rc 0 p11ca init --dir "$D2" --ca-hostname localhost --OU NIFI --token-file "$D2/token" --listen 127.0.0.1:0
srv_start conc2 "$D2"
S2=$T/s2
mkdir -p "$S2"
pids=()
for k in 1 2 3 4; do
	bg "tok$k" p11c_direct enroll token --ca-host localhost --port "$SRV_PORT" --dn "CN=t1, OU=NIFI" --dir "$S2" \
		--token-file "$D2/token" --type ec:P-256
	pids+=("$BG_PID")
done
ok=0 locked=0
for k in 1 2 3 4; do
	bg_wait "${pids[$((k - 1))]}" 60 "tok$k"
	case $BG_RC in
	0) ok=$((ok + 1)) ;;
	75) locked=$((locked + 1)); grep -q "another run holds the lock" "$T/tok$k.err" || fail "tok$k: 75 without the lock message" ;;
	*) cat "$T/tok$k.err" >&2; fail "enroll token run $k exited $BG_RC, want 0 or 75" ;;
	esac
done
[ "$ok" -ge 1 ] || fail "no enroll token run succeeded"
cert_next_to_key t1 >/dev/null
[ "$(count_objects privkey t1)" = 1 ] && [ "$(count_objects pubkey t1)" = 1 ] || fail "t1: want one key pair"
jq -e . "$S2/config.json" >/dev/null || fail "config.json does not parse"
openssl x509 -in "$S2/nifi-cert.pem" -noout || fail "nifi-cert.pem does not parse"
pass "enroll token, 4 runs at once: $ok succeeded, $locked locked out (75); one key, one certificate"
echo "# $(($(date +%s) - start)) s"
