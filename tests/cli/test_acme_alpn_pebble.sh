#!/usr/bin/env bash
# p11cert enroll acme --challenge tls-alpn-01 against pebble: pebble's VA
# connects to the built-in responder (src/lib/enroll/acme_alpn.c, RFC 8737)
# on --tls-listen for a DNS name (resolved by pebble-challtestsrv to
# 127.0.0.1) and for the IP identifier 127.0.0.1 (RFC 8738 reverse name).
# EC P-256 and RSA-2048 certificate keys end with the certificate in the
# token next to the key; renew re-runs the order with the recorded
# --tls-listen; a responder on the wrong port fails naming the identifier
# and leaves the certificate in place; usage errors are caught before the
# token or the CA is asked anything.
. "$(dirname "$0")/acme_lib.sh"   # skips when pebble is not installed

new_token alpn
acme_up
D=$T/state
mkdir -m 700 "$D"

# 0. usage: tls-alpn-01 needs --tls-listen, and takes no http-01/dns-01 options
expect_rc 64 p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --agree-tos \
	--key "pkcs11:token=$TOKEN;object=web" -d a.example.test --challenge tls-alpn-01 --dir "$D"
expect_grep "tls-alpn-01 needs --tls-listen" "$T/err"
expect_rc 64 p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --agree-tos \
	--key "pkcs11:token=$TOKEN;object=web" -d a.example.test --challenge tls-alpn-01 \
	--tls-listen "127.0.0.1:$ACME_TLS_PORT" --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
expect_grep "do not go with tls-alpn-01" "$T/err"
expect_rc 64 p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --agree-tos \
	--key "pkcs11:token=$TOKEN;object=web" -d a.example.test --tls-listen "127.0.0.1:$ACME_TLS_PORT" \
	--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
expect_grep "tls-listen goes with --challenge tls-alpn-01" "$T/err"
[ -z "$(ls -A "$D")" ] || fail "a usage error left files: $(ls -A "$D")"
[ "$(n_objects private-key web)" = 0 ] || fail "a usage error made a key"
pass "usage errors: exit 64 before any key or file"

# 1. EC P-256, a DNS and an IP identifier
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=web" -d alpn.example.test -d 127.0.0.1 \
	--challenge tls-alpn-01 --tls-listen "127.0.0.1:$ACME_TLS_PORT" --dir "$D"
cert_next_to_key web "$D/web.crt" >/dev/null
acme_chain_ok "$D/web.chain.pem"
openssl x509 -in "$D/web.crt" -noout -ext subjectAltName >"$T/san" 2>&1
grep -q "DNS:alpn.example.test" "$T/san" && grep -q "IP Address:127.0.0.1" "$T/san" \
	|| fail "SAN of the certificate: $(cat "$T/san")"
acme_key_attrs web
acme_key_attrs web-acme-account
json_assert "$D/web.enroll" "assert j['challenge'] == 'tls-alpn-01' and j['tls_listen'] == '127.0.0.1:$ACME_TLS_PORT', j"
pass "tls-alpn-01, EC P-256, DNS and IP identifiers"

# 2. renew through the record: the same challenge and listener
serial1=$(cert_serial "$D/web.crt")
(cd / && expect_rc 0 p11c renew --id web --dir "$D")
[ "$(cert_serial "$D/web.crt")" != "$serial1" ] || fail "renew made no new certificate"
cert_next_to_key web "$D/web.crt" >/dev/null
pass "renew re-runs the tls-alpn-01 order"

# 3. RSA-2048 certificate key
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=rsa" --type rsa:2048 -d rsa.example.test \
	--challenge tls-alpn-01 --tls-listen "127.0.0.1:$ACME_TLS_PORT" --dir "$D"
cert_next_to_key rsa "$D/rsa.crt" >/dev/null
openssl x509 -in "$D/rsa.crt" -noout -text | grep -q "Public-Key: (2048 bit)" || fail "not an RSA-2048 certificate"
pass "tls-alpn-01, RSA-2048 certificate key"

# 4. the responder where pebble does not look: a clear failure, nothing lost
#    (also the proof that pebble validated through --tls-listen above)
other=$(free_port)
serial2=$(cert_serial "$D/web.crt")
cp "$D/web.crt" "$T/web.crt.before"
acme_enroll 77 --key "pkcs11:token=$TOKEN;object=web" -d alpn-fail.example.test \
	--challenge tls-alpn-01 --tls-listen "127.0.0.1:$other" --dir "$D" --timeout 60
expect_grep "identifier 'alpn-fail.example.test'" "$T/err"
cmp -s "$D/web.crt" "$T/web.crt.before" || fail "the failed order changed web.crt"
[ "$(cert_serial "$D/web.crt")" = "$serial2" ] || fail "the failed order changed the certificate"
cert_next_to_key web "$D/web.crt" >/dev/null
pass "a responder pebble cannot reach: error names the identifier, certificate kept"
