#!/usr/bin/env bash
# p11cert import / export: certificate matching, replacement, input forms.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

new_token p11c-import

# --- a CA made with openssl, a key and a CSR in the token ----------------------------
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=Test CA' \
	-keyout "$T/ca.key" -out "$T/ca.crt" -days 30 2>/dev/null || fail "cannot make the test CA"
cat >"$T/ext.cnf" <<'EOF'
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

# sign CSR SERIAL OUT
sign() {
	openssl x509 -req -in "$1" -CA "$T/ca.crt" -CAkey "$T/ca.key" -days 30 \
		-copy_extensions copy -extfile "$T/ext.cnf" -set_serial "$2" -out "$3" 2>"$T/sign.err" \
		|| { cat "$T/sign.err" >&2; fail "openssl could not sign $1"; }
}

der_of() { cert_to_der "$1" "$2"; }

expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=i-web" --type ec:P-256
uri=$(head -n 1 "$T/out")
id=$(uri_id_hex "$uri")
expect_rc 0 p11c csr --key "$uri" --subject '/C=SE/O=Example/CN=web1' --san DNS:web1.example.com -o "$T/web.csr"
sign "$T/web.csr" 0x1001 "$T/web.crt"
openssl x509 -in "$T/web.crt" -outform DER -out "$T/web.crt.der"

# the spec promises SKI == CKA_ID
ski=$(openssl x509 -in "$T/web.crt" -noout -ext subjectKeyIdentifier | tail -n 1 | tr -d ' :' | tr 'A-F' 'a-f')
[ "$ski" = "$id" ] || fail "certificate SKI $ski is not the key's CKA_ID $id"
pass "CKA_ID equals OpenSSL's subjectKeyIdentifier"

# another key with its own certificate, which must survive everything below
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=i-other" --type rsa:2048
other=$(head -n 1 "$T/out")
other_id=$(uri_id_hex "$other")
expect_rc 0 p11c csr --key "$other" --subject /CN=other -o "$T/other.csr"
sign "$T/other.csr" 0x3001 "$T/other.crt"
expect_rc 0 p11c import --key "$other" "$T/other.crt"

# cert_line IDHEX: the pkcs11-tool line of the one certificate with that id
cert_line() { objects | awk -F'\t' -v i="$1" '$1 == "cert" && $3 == i'; }

# --- import ---------------------------------------------------------------------------
expect_rc 0 p11c import --key "$uri" "$T/web.crt"
[ "$(count_objects cert "" "$id")" = 1 ] || { objects >&2; fail "expected one certificate with CKA_ID $id"; }
line=$(cert_line "$id")
[ "$(printf '%s\n' "$line" | cut -f2)" = i-web ] || fail "certificate label is not the key's: $line"
case $line in *CN=web1*) ;; *) fail "CKA_SUBJECT of the certificate object lacks CN=web1: $line" ;; esac
case $line in *"serial:"*1001*) ;; *) fail "CKA_SERIAL_NUMBER of the certificate object is not 1001: $line" ;; esac
tool --read-object --type cert --id "$id" -o "$T/value.der" >/dev/null 2>&1 || fail "pkcs11-tool cannot read the certificate"
cmp -s "$T/value.der" "$T/web.crt.der" || fail "CKA_VALUE is not the certificate's DER"
pass "import: one certificate object, key's label and id, CKA_VALUE/SUBJECT/SERIAL"

expect_rc 0 p11c list "pkcs11:token=$TOKEN"
expect_grep 'web1' "$T/out"
expect_grep 'Test CA' "$T/out"
expect_grep 'i-web' "$T/out"
pass "list shows the certificate"

# --- export ---------------------------------------------------------------------------
expect_rc 0 p11c export --key "$uri" -o "$T/out.pem"
head -n 1 "$T/out.pem" | grep -q -- '-----BEGIN CERTIFICATE-----' || fail "export: default output is not PEM"
der_of "$T/out.pem" "$T/out.pem.der"
cmp -s "$T/out.pem.der" "$T/web.crt.der" || fail "export PEM differs from the imported certificate"
expect_rc 0 p11c export --key "$uri" --outform der -o "$T/out.der"
cmp -s "$T/out.der" "$T/web.crt.der" || fail "export --outform der is not byte-identical to the certificate DER"
expect_rc 0 p11c export --key "$uri"
cp "$T/out" "$T/stdout.pem"
der_of "$T/stdout.pem" "$T/stdout.der"
cmp -s "$T/stdout.der" "$T/web.crt.der" || fail "export to stdout differs"
expect_rc 0 p11c export --cert "pkcs11:token=$TOKEN;object=i-web;type=cert" --outform der -o "$T/bycert.der"
cmp -s "$T/bycert.der" "$T/web.crt.der" || fail "export --cert differs"
pass "export PEM, DER (byte-identical), stdout, --cert"

# --- a certificate for another key ---------------------------------------------------
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/file.key" \
	-subj '/C=SE/O=Example/CN=web1' -out "$T/file.csr" 2>/dev/null || fail "openssl req failed"
sign "$T/file.csr" 0x2001 "$T/wrong.crt"
expect_rc 65 p11c import --key "$uri" "$T/wrong.crt"
expect_error_line
[ "$(count_objects cert "" "$id")" = 1 ] || fail "refused import changed the certificates of the key"
[ "$(count_objects cert)" = 2 ] || { objects >&2; fail "refused import changed the number of certificates"; }
expect_rc 0 p11c export --key "$uri" --outform der -o "$T/after.der"
cmp -s "$T/after.der" "$T/web.crt.der" || fail "refused import replaced the certificate"
expect_rc 65 p11c import --key "$uri" "$T/ca.crt"
[ "$(count_objects cert)" = 2 ] || fail "refused CA import changed the certificates"
pass "import of a certificate for another key: 65, token unchanged"

# --- replacement --------------------------------------------------------------------------
sign "$T/web.csr" 0x1002 "$T/web2.crt"
expect_rc 0 p11c import --key "$uri" "$T/web2.crt"
[ "$(count_objects cert "" "$id")" = 1 ] || { objects >&2; fail "after re-import: not exactly one certificate with CKA_ID $id"; }
expect_rc 0 p11c export --key "$uri" -o "$T/e2.pem"
[ "$(cert_serial "$T/e2.pem")" = 1002 ] || fail "after re-import the stored certificate has serial $(cert_serial "$T/e2.pem")"
pass "re-import replaces: one certificate, the new one"

# DER input
sign "$T/web.csr" 0x1003 "$T/web3.crt"
openssl x509 -in "$T/web3.crt" -outform DER -out "$T/web3.der"
expect_rc 0 p11c import --key "$uri" "$T/web3.der"
[ "$(count_objects cert "" "$id")" = 1 ] || fail "after DER import: not exactly one certificate"
expect_rc 0 p11c export --key "$uri" --outform der -o "$T/e3.der"
cmp -s "$T/e3.der" "$T/web3.der" || fail "DER import: stored certificate differs"
pass "import of a DER file"

# the certificate carries the key's label; export by certificate URI
sign "$T/web.csr" 0x1004 "$T/web4.crt"
expect_rc 0 p11c import --key "$uri" "$T/web4.crt"
[ "$(count_objects cert "" "$id")" = 1 ] || fail "after a second import: not exactly one certificate"
[ "$(count_objects cert i-web "$id")" = 1 ] || { objects >&2; fail "certificate does not carry the key's label"; }
expect_rc 0 p11c export --cert "pkcs11:token=$TOKEN;object=i-web;type=cert" -o "$T/e4.pem"
[ "$(cert_serial "$T/e4.pem")" = 1004 ] || fail "export --cert: wrong certificate"
pass "certificate stored with the key's label, export --cert"

# the other key's certificate was never touched
[ "$(count_objects cert "" "$other_id")" = 1 ] || { objects >&2; fail "the other key's certificate is gone"; }
expect_rc 0 p11c export --key "$other" -o "$T/o.pem"
[ "$(cert_serial "$T/o.pem")" = 3001 ] || fail "the other key's certificate changed"
[ "$(count_objects cert)" = 2 ] || { objects >&2; fail "expected two certificates on the token"; }
pass "replacement leaves other keys' certificates alone"

# --- bad input --------------------------------------------------------------------------
head -c 700 /dev/urandom >"$T/garbage.crt"
expect_rc 65 p11c import --key "$uri" "$T/garbage.crt"
expect_error_line
expect_grep -F 'garbage.crt' "$T/err"
printf -- '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n' >"$T/badpem.crt"
expect_rc 65 p11c import --key "$uri" "$T/badpem.crt"
expect_rc 65 p11c import --key "$uri" "$T/web.csr"
[ "$(count_objects cert "" "$id")" = 1 ] || fail "bad input changed the certificates"
expect_rc 0 p11c export --key "$uri" -o "$T/e5.pem"
[ "$(cert_serial "$T/e5.pem")" = 1004 ] || fail "bad input replaced the certificate"
pass "import of garbage, broken PEM, a CSR: 65"

expect_rc 66 p11c import --key "$uri" "$T/does-not-exist.crt"
expect_error_line
expect_grep -F 'does-not-exist.crt' "$T/err"
pass "import of a missing file: 66"

expect_rc 66 p11c import --key "pkcs11:token=$TOKEN;object=no-such-key" "$T/web4.crt"
expect_error_line
pass "import for a missing key: 66"

expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=i-nocert" --type ec:P-256
nocert=$(head -n 1 "$T/out")
expect_rc 66 p11c export --key "$nocert" -o "$T/none.pem"
[ ! -e "$T/none.pem" ] || fail "export of a key without certificate wrote a file"
pass "export of a key without certificate: 66"
