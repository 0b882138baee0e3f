#!/usr/bin/env bash
# p11cert enroll acme with http-01 against pebble: EC P-256 and RSA-2048
# certificate keys end with the certificate in the token next to the key,
# the account key in the token (sensitive, not extractable, private); a
# second run reuses the account; a webroot works; a failing authorization
# names the identifier and leaves the previous certificate and key alone.
. "$(dirname "$0")/acme_lib.sh"

new_token acme
acme_up
D=$T/state
mkdir -m 700 "$D"

# 0. a new account needs the CA's terms agreed to: exit 64 naming them
expect_rc 64 p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" \
	--key "pkcs11:token=$TOKEN;object=web" -d www.example.test --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
expect_grep "terms of service .*must be agreed" "$T/err"
expect_grep "agree-tos" "$T/err"
[ -e "$D/web.acme-account" ] && fail "an account record without an account"
pass "terms of service not agreed: no account"

# 1. EC P-256, built-in responder
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=web" -d www.example.test -d 127.0.0.1 \
	--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D" --contact mailto:ops@example.test
expect_grep "created ACME account" "$T/err"
cert_next_to_key web "$D/web.crt" >/dev/null
acme_chain_ok "$D/web.chain.pem"
openssl x509 -in "$D/web.crt" -noout -ext subjectAltName >"$T/san" 2>&1
grep -q "DNS:www.example.test" "$T/san" && grep -q "IP Address:127.0.0.1" "$T/san" \
	|| fail "SAN of the certificate: $(cat "$T/san")"
acme_key_attrs web
acme_key_attrs web-acme-account
# CKA_PRIVATE: without a login neither private key is visible
objects --nologin | awk -F'\t' '$1 == "privkey"' | grep -q . && fail "private keys visible without login"
[ "$(stat -c %a "$D/web.acme-account")" = 600 ] || fail "account record mode $(stat -c %a "$D/web.acme-account")"
acct1=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$D/web.acme-account")
json_assert "$D/web.enroll" "assert j['protocol'] == 'acme' and j['names'] == ['www.example.test', '127.0.0.1'], j"
pass "http-01, EC P-256, DNS and IP identifiers"

# 2. second run: the same account, a new certificate
serial1=$(cert_serial "$D/web.crt")
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=web" -d www.example.test \
	--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
expect_grep "using ACME account" "$T/err"
acct2=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$D/web.acme-account")
[ "$acct1" = "$acct2" ] || fail "account changed: $acct1 -> $acct2"
[ "$(n_objects private-key web-acme-account)" = 1 ] || fail "a second account key"
[ "$(cert_serial "$D/web.crt")" != "$serial1" ] || fail "no new certificate"
cert_next_to_key web "$D/web.crt" >/dev/null
pass "second run reuses the account"

# 2b. p11cert renew through the record, from another folder
serial2=$(cert_serial "$D/web.crt")
(cd / && expect_rc 0 p11c renew --id web --dir "$D")
expect_grep "renewed 'web'" "$T/err"
[ "$(cert_serial "$D/web.crt")" != "$serial2" ] || fail "renew made no new certificate"
cert_next_to_key web "$D/web.crt" >/dev/null
pass "renew re-runs the recorded order"

# 3. RSA-2048 certificate key, web root
W=$T/www
mkdir "$W"
python3 -m http.server --bind 127.0.0.1 --directory "$W" "$ACME_HTTP_PORT" >"$T/httpd.log" 2>&1 &
_PIDS+=("$!")
wait_for 20 "python http.server" curl -s -o /dev/null "http://127.0.0.1:$ACME_HTTP_PORT/"
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=rsa" --type rsa:2048 --account-type rsa:2048 \
	-d rsa.example.test --webroot "$W" --dir "$D"
cert_next_to_key rsa "$D/rsa.crt" >/dev/null
openssl x509 -in "$D/rsa.crt" -noout -text | grep -q "Public-Key: (2048 bit)" || fail "not an RSA-2048 certificate"
acme_chain_ok "$D/rsa.chain.pem"
grep -q "acme-challenge" "$T/httpd.log" || fail "pebble did not fetch from the web root"
[ -z "$(ls -A "$W/.well-known/acme-challenge")" ] || fail "challenge files left in the web root"
acme_key_attrs rsa-acme-account
token_json
json_assert "$T/list.json" "
k = [o for o in j if o['class'] == 'private-key' and o['label'] == 'rsa-acme-account']
assert 'RSA' in str(k[0]), k"
pass "http-01, RSA-2048 certificate key and RSA account key (RS256), web root"
kill_pid "${_PIDS[-1]}"

# 4. a failing authorization: nobody answers on the http-01 port
cp "$D/web.crt" "$T/before.crt"
keyid=$(cert_next_to_key web "$D/web.crt")
acme_enroll 77 --key "pkcs11:token=$TOKEN;object=web" -d fail.example.test \
	--webroot "$W" --dir "$D"
expect_grep "identifier 'fail.example.test'" "$T/err"
expect_grep "connection" "$T/err"
cmp -s "$D/web.crt" "$T/before.crt" || fail "web.crt changed"
[ "$(cert_next_to_key web "$T/before.crt")" = "$keyid" ] || fail "key or certificate changed"
pass "failed authorization: clear error, nothing changed"

# 5. a name the CA refuses in newOrder: its reason, exit 76, nothing stored
acme_enroll 76 --key "pkcs11:token=$TOKEN;object=web" -d bad_name.example.test --webroot "$W" --dir "$D"
expect_grep "newOrder: the ACME server answered 400 malformed: .*illegal character" "$T/err"
cmp -s "$D/web.crt" "$T/before.crt" || fail "web.crt changed"
pass "a name the CA refuses: its reason, nothing changed"
