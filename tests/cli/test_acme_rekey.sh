#!/usr/bin/env bash
# p11cert renew --rekey for an ACME identity against pebble: the new key is
# generated in the token (sensitive, not extractable), gets its own order,
# its certificate is stored next to it and it takes the old label; the old
# key and certificate are gone.  A run killed after the certificate came,
# after it was stored, or after the old key was destroyed leaves a usable
# identity (or one the next run renames) and the rerun finishes (the
# rekey steps of src/cli/rekey.c).
. "$(dirname "$0")/acme_lib.sh"
need_test_hooks

new_token acmerk
acme_up
D=$T/state
mkdir -m 700 "$D"
KEY="pkcs11:token=$TOKEN;object=web"

acme_enroll 0 --key "$KEY" -d www.example.test --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
old_id=$(cert_next_to_key web "$D/web.crt")
old_serial=$(cert_serial "$D/web.crt")

# rekey_done OLD_ID: one key 'web' with another id, its certificate (the
# one in DIR/web.crt) next to it, sensitive and not extractable; no key of
# the old id; no web~rekey left, nor the kept chain
rekey_done() {
	local nid
	nid=$(cert_next_to_key web "$D/web.crt")
	[ "$nid" != "$1" ] || fail "the key id did not change ($nid)"
	acme_key_attrs web
	token_json
	json_assert "$T/list.json" "
assert not [o for o in j if o['id'] == '$1'], ('objects of the old key left', [o for o in j if o['id'] == '$1'])
assert not [o for o in j if o['label'].startswith('web~')], [o for o in j if o['label'].startswith('web~')]
"
	acme_chain_ok "$D/web.chain.pem"
	openssl x509 -in "$D/web.crt" -noout -pubkey >"$T/crt.pub"
	openssl x509 -in "$D/web.chain.pem" -noout -pubkey >"$T/chain.pub"
	cmp -s "$T/crt.pub" "$T/chain.pub" || fail "web.crt and web.chain.pem are for different keys"
	[ -e "$D/web.rekey.chain.pem" ] && fail "the kept chain of the rekey is left"
	[ "$(n_objects private-key web-acme-account)" = 1 ] || fail "the account key changed"
	echo "$nid"
}

# 1. renew --rekey
expect_rc 0 p11c renew --id web --dir "$D" --rekey
expect_grep "renewed 'web' with a new key" "$T/err"
id1=$(rekey_done "$old_id")
[ "$(cert_serial "$D/web.crt")" != "$old_serial" ] || fail "no new certificate"
pass "renew --rekey: new key in the token, its certificate next to it, the old key gone"

# 2. killed once the certificate came (not stored yet): the old identity
# stays usable; the rerun stores the kept chain without a new order
serial=$(cert_serial "$D/web.crt")
stall_and_kill rk1 received "$P11CERT" --module "$MOD" --pin-file "$PINF" renew --id web --dir "$D" --rekey
[ "$(cert_next_to_key web "$D/web.crt")" = "$id1" ] || fail "the identity changed before the rekey finished"
[ -s "$D/web.rekey.chain.pem" ] || fail "no chain kept for the new key"
[ "$(n_objects private-key 'web~rekey')" = 1 ] || fail "no new key web~rekey"
orders=$(log_count "POST /order-plz" "$PEBBLE_LOG")
expect_rc 0 p11c renew --id web --dir "$D" --rekey
expect_grep "resuming the rekey" "$T/err"
expect_grep "came in an earlier run" "$T/err"
[ "$(log_count 'POST /order-plz' "$PEBBLE_LOG")" = "$orders" ] || fail "the rerun ordered again"
id2=$(rekey_done "$id1")
[ "$(cert_serial "$D/web.crt")" != "$serial" ] || fail "no new certificate"
pass "killed before the certificate was stored: old identity intact, the rerun finishes with the kept chain"

# 3. killed after the certificate was stored next to the new key, before
# the old key went
stall_and_kill rk2 stored "$P11CERT" --module "$MOD" --pin-file "$PINF" renew --id web --dir "$D" --rekey
[ "$(cert_next_to_key web "$D/web.crt")" = "$id2" ] || fail "the identity changed before the rekey finished"
cert_next_to_key 'web~rekey' >/dev/null
expect_rc 0 p11c renew --id web --dir "$D" --rekey
expect_grep "resuming the rekey" "$T/err"
id3=$(rekey_done "$id2")
pass "killed after the new certificate was stored: the rerun finishes"

# 4. killed between destroying the old key and renaming the new one: a
# plain renew (the systemd timer's) finishes the rekey, then renews
stall_and_kill rk3 rekey-deleted "$P11CERT" --module "$MOD" --pin-file "$PINF" renew --id web --dir "$D" --rekey
[ "$(n_objects private-key web)" = 0 ] || fail "the old key is still there"
new_id=$(cert_next_to_key 'web~rekey')
# the systemd unit's ExecCondition lets renew run (no error, 255)
expect_rc 0 p11c check --id web --dir "$D"
expect_grep "a rekey stopped half-way" "$T/out"
[ "$(n_objects private-key web)" = 0 ] || fail "check changed the token"
expect_rc 0 p11c renew --id web --dir "$D"
expect_grep "finished the rekey of 'web'" "$T/err"
[ "$(cert_next_to_key web "$D/web.crt")" = "$new_id" ] || fail "the renamed key is not the new one"
[ "$new_id" != "$id3" ] || fail "no new key"
rekey_done "$id3" >/dev/null
pass "killed between destroying the old key and renaming the new one: the next renew finishes"
