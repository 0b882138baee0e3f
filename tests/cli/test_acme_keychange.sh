#!/usr/bin/env bash
# p11cert acme key-change against pebble (RFC 8555 s7.3.5), both account
# keys in the token: the account moves to a new token key (generated,
# P-384); the records name it; a renewal uses the same account with it; the
# old key has no account any more; a key that is already another account's
# key gives pebble's 409 (exit 77) and changes nothing; --destroy-old
# removes the old key from the token (pkcs11-tool); SIGKILL at each stage
# of a change (the test hook) and the rerun finishes, whether or not pebble
# had switched; enroll refuses to run while a change is unfinished; no PIN
# in the output, the records or pebble's log.
. "$(dirname "$0")/acme_lib.sh"
need_test_hooks

PIN_MARK='kc-Pin-7q3x9'
new_token acme --pin "$PIN_MARK"
acme_up
D=$T/state
mkdir -m 700 "$D"

uri() { printf 'pkcs11:token=%s;object=%s' "$TOKEN" "$1"; }
field() { python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }
# records_name URI: both records of web name URI as the account key
records_name() {
	local f
	[ "$(field "$D/web.acme-account" account_key)" = "$1" ] || fail "web.acme-account: $(cat "$D/web.acme-account")"
	[ "$(field "$D/web.enroll" account_key)" = "$1" ] || fail "web.enroll: $(cat "$D/web.enroll")"
	[ "$(field "$D/web.acme-account" url)" = "$ACCT" ] || fail "web.acme-account: the account URL changed"
	[ ! -e "$D/web.acme-keychange" ] || fail "the marker is left: $(cat "$D/web.acme-keychange")"
	for f in "$D"/*.tmp.*; do [ ! -e "$f" ] || fail "temp file left: $f"; done
}
# renew_same: a renewal through the records uses the account $ACCT
renew_same() {
	expect_rc 0 p11c renew --id web --dir "$D"
	expect_grep -F "using ACME account $ACCT" "$T/err"
	expect_nogrep "created ACME account" "$T/err"
}
kc() { p11c acme key-change --id web --dir "$D" "$@"; }

acme_enroll 0 --key "$(uri web)" -d www.example.test --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
ACCT=$(field "$D/web.acme-account" url)
OLD=$(uri web-acme-account)
records_name "$OLD"

# 1. usage
expect_rc 64 p11c acme
expect_rc 64 p11c acme frobnicate
expect_rc 64 p11c acme key-change --dir "$D" --new-account-key "$(uri a2)"
expect_rc 64 kc
expect_rc 64 kc --new-account-key "$(uri a2)" --type ed25519
expect_rc 64 kc --new-account-key "$OLD"
expect_grep "current" "$T/err"
# another record naming the same account key: refused (it would lose the account)
sed 's/"client_id": "web"/"client_id": "twin"/' "$D/web.enroll" >"$D/twin.enroll"
expect_rc 64 kc --new-account-key "$(uri a2)"
expect_grep -F "also the one of $D/twin.enroll" "$T/err"
rm -f "$D/twin.enroll"
expect_rc 66 p11c acme key-change --id nosuch --dir "$D" --new-account-key "$(uri a2)"
[ "$(n_objects private-key a2)" = 0 ] || fail "a usage error generated a key"
records_name "$OLD"
pass "usage errors: exit 64 / 66, nothing generated or changed"

# 2. the change to a new key, generated in the token (P-384)
expect_rc 0 kc --new-account-key "$(uri a2)" --type ec:P-384
expect_grep "generated ec:P-384" "$T/err"
records_name "$(uri a2)"
acme_key_attrs a2
[ "$(n_objects private-key web-acme-account)" = 1 ] || fail "the old key is gone without --destroy-old"
pass "key-change to a new P-384 token key: both records name it"

# 3. the old key has no account (pebble would make a new one; without
#    --agree-tos it cannot), the new one is the account's
mkdir -m 700 "$T/probe"
expect_rc 64 p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --key "$(uri probe)" \
	--account-key "$OLD" -d probe.example.test --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$T/probe"
expect_grep "terms of service" "$T/err"
renew_same
pass "the old key has no account; a renewal uses the same account with the new key"

# 4. a key that is already an account's key: 409, nothing changed
acme_enroll 0 --key "$(uri other)" -d other.example.test --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
OTHER=$(field "$D/other.acme-account" url)
[ "$OTHER" != "$ACCT" ] || fail "the second enrollment shares the account"
sum_before=$(cat "$D/web.enroll" "$D/web.acme-account" | sha256sum)
expect_rc 77 kc --new-account-key "$(uri other-acme-account)"
expect_grep -F "already the key of the account $OTHER" "$T/err"
[ "$(cat "$D/web.enroll" "$D/web.acme-account" | sha256sum)" = "$sum_before" ] || fail "the records changed"
records_name "$(uri a2)"
renew_same
pass "key-change to another account's key: 409 named, exit 77, nothing changed"

# 5. SIGKILL at each stage; the rerun (same command) finishes
n=2
for stage in acme-keychange-marked acme-keychange-done write:web.acme-account write:web.enroll acme-keychange-recorded; do
	n=$((n + 1))
	prev=$(field "$D/web.enroll" account_key)
	stall_and_kill "kc$n" "$stage" "$P11CERT" --module "$MOD" --pin-file "$PINF" acme key-change --id web \
		--dir "$D" --new-account-key "$(uri "a$n")"
	[ -e "$D/web.acme-keychange" ] || fail "$stage: no marker after the kill"
	json_assert "$D/web.acme-keychange" "assert j['new_account_key'].endswith('object=a$n') and j['url'] == '$ACCT', j"
	# renewing now would use a key the CA may have dropped: refused
	expect_rc 75 p11c renew --id web --dir "$D"
	expect_grep "key-change" "$T/err"
	expect_rc 0 kc --new-account-key "$(uri "a$n")"
	records_name "$(uri "a$n")"
	[ "$(n_objects private-key "${prev##*object=}")" = 1 ] || fail "$stage: the old key is gone"
	renew_same
	pass "killed at $stage, the rerun finishes on the same account"
done

# 6. --destroy-old: the old key object leaves the token (pkcs11-tool)
prev=$(field "$D/web.enroll" account_key)
prev_label=${prev##*object=}
[ "$(count_objects privkey "$prev_label")" = 1 ] || fail "no $prev_label before --destroy-old"
expect_rc 0 kc --new-account-key "$(uri a20)" --destroy-old
records_name "$(uri a20)"
[ "$(count_objects privkey "$prev_label")" = 0 ] || fail "--destroy-old left the old private key"
[ "$(count_objects pubkey "$prev_label")" = 0 ] || fail "--destroy-old left the old public key"
[ "$(count_objects privkey a20)" = 1 ] || fail "the new key is not on the token"
renew_same
pass "--destroy-old: the old key is destroyed after the records name the new one"

# ... and killed after the records, before the destruction: the rerun destroys it
stall_and_kill kc21 acme-keychange-recorded "$P11CERT" --module "$MOD" --pin-file "$PINF" acme key-change \
	--id web --dir "$D" --new-account-key "$(uri a21)" --destroy-old
[ "$(count_objects privkey a20)" = 1 ] || fail "the old key destroyed before the records were final"
expect_rc 0 kc --new-account-key "$(uri a21)" --destroy-old
records_name "$(uri a21)"
[ "$(count_objects privkey a20)" = 0 ] || fail "the rerun left the old key"
renew_same
pass "--destroy-old killed after the records: the rerun destroys the old key"

# 7. no PIN anywhere we wrote or printed
if grep -rlF -- "$PIN_MARK" "$D" "$T"/*.err "$T/err" "$PEBBLE_LOG" 2>/dev/null; then
	fail "the PIN appears in the files above"
fi
pass "no PIN in the records, the output or pebble's log"
