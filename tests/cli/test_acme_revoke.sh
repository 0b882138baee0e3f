#!/usr/bin/env bash
# p11cert revoke against pebble (RFC 8555 s7.6): with the account key (kid)
# pebble's management port then says Revoked; a second revoke fails with
# "already revoked"; a new certificate revoked with --with-cert-key (jwk)
# and --reason 1; nothing in the token is deleted.
. "$(dirname "$0")/acme_lib.sh"

new_token acme
acme_up
D=$T/state
mkdir -m 700 "$D"

# status SERIAL: pebble's cert-status-by-serial answer (JSON)
status() {
	curl -s --cacert "$ACME_CACERT" "$ACME_MGMT/cert-status-by-serial/$1"
}
serial_hex() {
	openssl x509 -in "$1" -noout -serial | sed 's/^serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//'
}

acme_enroll 0 --key "pkcs11:token=$TOKEN;object=web" -d www.example.test \
	--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
s1=$(serial_hex "$D/web.crt")
status "$s1" >"$T/st1"
grep -q '"Status": *"Valid"' "$T/st1" || fail "before revoke: $(cat "$T/st1")"
n_before=$(token_json >/dev/null; python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/list.json")

# 1. the account key (kid)
expect_rc 0 p11c revoke --id web --dir "$D"
expect_grep "revoked" "$T/err"
status "$s1" >"$T/st1"
grep -q '"Status": *"Revoked"' "$T/st1" || fail "after revoke: $(cat "$T/st1")"
pass "revoke with the account key: pebble says Revoked"

# 2. again: already revoked, exit 77 (the CA refused)
expect_rc 77 p11c revoke --id web --dir "$D"
expect_grep "already revoked" "$T/err"
pass "second revoke: already revoked, exit 77"

# 3. a new certificate, revoked with its own key and reason 1
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=web" -d www.example.test \
	--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
s2=$(serial_hex "$D/web.crt")
[ "$s2" != "$s1" ] || fail "no new certificate"
expect_rc 0 p11c revoke --id web --dir "$D" --with-cert-key --reason 1
status "$s2" >"$T/st2"
grep -q '"Status": *"Revoked"' "$T/st2" || fail "after revoke --with-cert-key: $(cat "$T/st2")"
# pebble shows the reason it was sent (and none when none was)
grep -q '"Reason": *1,' "$T/st2" || fail "reason: $(cat "$T/st2")"
grep -q '"Reason"' "$T/st1" && fail "a reason sent without --reason: $(cat "$T/st1")"
pass "revoke --with-cert-key --reason 1: Revoked"

# 4. nothing in the token deleted
token_json >/dev/null
n_after=$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))))' "$T/list.json")
[ "$n_after" -ge "$n_before" ] || fail "token objects $n_before -> $n_after"
cert_next_to_key web "$D/web.crt" >/dev/null
[ "$(n_objects private-key web-acme-account)" = 1 ] || fail "account key gone"
pass "nothing deleted from the token"

# 5. bad usage
expect_rc 64 p11c revoke --dir "$D"
expect_rc 64 p11c revoke --id web --dir "$D" --reason 11
pass "usage errors: exit 64"
