#!/usr/bin/env bash
# p11cert list, show and delete.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

new_token p11c-lsd

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=Test CA' \
	-keyout "$T/ca.key" -out "$T/ca.crt" -days 30 2>/dev/null || fail "cannot make the test CA"
cat >"$T/ext.cnf" <<'EOF'
basicConstraints = CA:FALSE
keyUsage = critical, digitalSignature
extendedKeyUsage = serverAuth
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
EOF

expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=d-web" --type ec:P-256
uri=$(head -n 1 "$T/out")
id=$(uri_id_hex "$uri")
expect_rc 0 p11c csr --key "$uri" --subject '/C=SE/O=Example/CN=web1' --san DNS:web1.example.com -o "$T/web.csr"
openssl x509 -req -in "$T/web.csr" -CA "$T/ca.crt" -CAkey "$T/ca.key" -days 30 -copy_extensions copy \
	-extfile "$T/ext.cnf" -set_serial 0x5001 -out "$T/web.crt" 2>/dev/null || fail "openssl could not sign the CSR"
openssl x509 -in "$T/web.crt" -outform DER -out "$T/web.der"
expect_rc 0 p11c import --key "$uri" "$T/web.crt"

expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=d-keep" --type rsa:2048
keep=$(head -n 1 "$T/out")
keep_id=$(uri_id_hex "$keep")

fp256=$(cert_fp256 "$T/web.crt")
fp1=$(openssl sha1 -r "$T/web.der" | cut -d' ' -f1)

# --- list -------------------------------------------------------------------------------
expect_rc 0 p11c list "pkcs11:token=$TOKEN"
for s in d-web d-keep web1 'Test CA' "$id"; do
	tr -d ':' <"$T/out" | tr 'A-F' 'a-f' | grep -q -i -F -- "$s" || fail_out "list: '$s' missing"
done
pass "list shows keys, certificate subject and issuer, ids in hex"

expect_rc 0 p11c list "pkcs11:token=$TOKEN" --json
cp "$T/out" "$T/list.json"
json_assert "$T/list.json" "
ID = '$id'
assert isinstance(j, list), 'list --json must print an array'
for o in j:
    for f in ('class', 'label', 'id', 'uri'):
        assert f in o, 'field %s missing in %r' % (f, o)
cls = lambda o: str(o['class']).lower()
priv = [o for o in j if 'priv' in cls(o) and o['label'] == 'd-web']
pub = [o for o in j if 'pub' in cls(o) and o['label'] == 'd-web']
cert = [o for o in j if 'cert' in cls(o)]
assert len(priv) == 1, 'private key d-web: %r' % priv
assert len(pub) == 1, 'public key d-web: %r' % pub
assert len(cert) == 1, 'certificate: %r' % cert
p = priv[0]
assert p['sensitive'] is True, 'sensitive: %r' % p.get('sensitive')
assert p['extractable'] is False, 'extractable: %r' % p.get('extractable')
assert hexnorm(p['id']) == ID, 'id %r' % p['id']
assert str(p['uri']).startswith('pkcs11:') and 'object=d-web' in p['uri'], 'uri %r' % p['uri']
assert p.get('key'), 'key field empty: %r' % p
assert 'P-256' in json.dumps(p['key']) or 'prime256v1' in json.dumps(p['key']), 'key %r' % p['key']
c = cert[0]
for f in ('subject', 'issuer', 'serial', 'not_before', 'not_after'):
    assert c.get(f), 'certificate field %s missing: %r' % (f, c)
assert 'web1' in c['subject'] and 'Test CA' in c['issuer'], c
assert hexnorm(c['serial']).endswith('5001') or str(c['serial']) == '20481', 'serial %r' % c['serial']
assert hexnorm(c['id']) == ID, 'certificate id %r' % c['id']
"
pass "list --json: valid, private key sensitive and not extractable, certificate fields"

expect_rc 0 p11c list "pkcs11:token=$TOKEN;object=d-keep" --json
cp "$T/out" "$T/keep.json"
json_assert "$T/keep.json" "
assert len(j) == 2 and all(o['label'] == 'd-keep' for o in j), 'object=d-keep narrowing: %r' % j
"
expect_rc 0 p11c list "pkcs11:token=$TOKEN;type=cert" --json
cp "$T/out" "$T/certs.json"
json_assert "$T/certs.json" "
assert len(j) == 1 and 'cert' in str(j[0]['class']).lower(), 'type=cert narrowing: %r' % j
"
pass "list narrowed by object= and type="

# without any PIN source: public objects only
expect_rc 0 p11raw --module "$MOD" list "pkcs11:token=$TOKEN" --json
cp "$T/out" "$T/pub.json"
json_assert "$T/pub.json" "
assert not any('priv' in str(o['class']).lower() for o in j), 'private keys listed without login: %r' % j
assert any('pub' in str(o['class']).lower() and o['label'] == 'd-web' for o in j), 'public key missing: %r' % j
"
pass "list without a PIN: public objects only"

# --- show ---------------------------------------------------------------------------------
# check_show WHAT: common checks on $T/out for the web certificate
check_show_cert() {
	local what=$1
	expect_grep -i '^ *subject' "$T/out"
	expect_grep -i 'sha-?256' "$T/out"
	expect_grep 'web1' "$T/out"
	expect_grep 'Test CA' "$T/out"
	expect_grep 'web1\.example\.com' "$T/out"
	expect_grep -i 'P-256|prime256v1' "$T/out"
	expect_grep -i 'ecdsa' "$T/out"
	expect_grep -i '5001|20481' "$T/out"
	tr -d ': ' <"$T/out" | tr 'A-F' 'a-f' >"$T/out.norm"
	grep -q -F "$fp256" "$T/out.norm" || fail_out "show $what: SHA-256 fingerprint $fp256 missing"
	grep -q -F "$fp1" "$T/out.norm" || fail_out "show $what: SHA-1 fingerprint $fp1 missing"
	grep -q -F "$id" "$T/out.norm" || fail_out "show $what: SKI $id missing"
	pass "show $what"
}

expect_rc 0 p11c show "$T/web.crt"
check_show_cert "PEM certificate file"
expect_grep -i 'serverAuth|server auth' "$T/out"
expect_grep -i 'digital ?signature' "$T/out"
expect_grep -i 'CA: ?(FALSE|no)|not a CA|ca.*false' "$T/out"
pass "show: basic constraints, key usage, extended key usage"

expect_rc 0 p11c show "$T/web.der"
check_show_cert "DER certificate file"

expect_rc 0 p11c show "$uri"
check_show_cert "key URI (its certificate)"

expect_rc 0 p11c show "pkcs11:token=$TOKEN;object=d-web;type=cert"
check_show_cert "certificate URI"

expect_rc 0 p11c show "$T/web.csr"
expect_grep -i '^ *subject' "$T/out"
expect_grep -i 'sha-?256' "$T/out"
expect_grep 'web1' "$T/out"
expect_grep 'web1\.example\.com' "$T/out"
expect_grep -i 'P-256|prime256v1' "$T/out"
pass "show CSR file"

expect_rc 0 p11c show "$T/web.crt" --json
cp "$T/out" "$T/show.json"
json_assert "$T/show.json" "
leaves = list(walk(j))
assert isinstance(j, dict), 'show --json must print an object'
assert any('subject' in p and 'web1' in str(v) for p, v in leaves), 'no subject with web1'
assert any('issuer' in p and 'Test CA' in str(v) for p, v in leaves), 'no issuer with Test CA'
assert any('web1.example.com' in str(v) for p, v in leaves), 'no SAN'
assert any(hexnorm(v) == '$fp256' for p, v in leaves), 'no SHA-256 fingerprint'
assert any(hexnorm(v) == '$fp1' for p, v in leaves), 'no SHA-1 fingerprint'
assert any(hexnorm(v) == '$id' for p, v in leaves), 'no SKI'
assert any('serial' in p for p, v in leaves), 'no serial'
assert any('after' in p for p, v in leaves), 'no validity'
"
pass "show --json"

expect_rc 0 p11c show "$T/web.csr" --json
cp "$T/out" "$T/showcsr.json"
json_assert "$T/showcsr.json" "
assert any('subject' in p and 'web1' in str(v) for p, v in walk(j)), 'no subject with web1'
"
pass "show --json on a CSR"

expect_rc 66 p11c show "$T/nope.crt"
expect_error_line
head -c 300 /dev/urandom >"$T/garbage.bin"
expect_rc 65 p11c show "$T/garbage.bin"
expect_error_line
pass "show: missing file 66, garbage 65"

# --- delete -------------------------------------------------------------------------------
[ "$(count_objects privkey d-web)" = 1 ] && [ "$(count_objects cert "" "$id")" = 1 ] \
	|| { objects >&2; fail "setup: d-web key or certificate missing"; }
expect_rc 0 p11c delete --key "$uri"
expect_rc 0 p11c list "pkcs11:token=$TOKEN"
expect_nogrep 'd-web' "$T/out"
expect_nogrep 'web1' "$T/out"
expect_grep 'd-keep' "$T/out"
expect_rc 0 p11c list "pkcs11:token=$TOKEN" --json
cp "$T/out" "$T/after.json"
json_assert "$T/after.json" "
assert not any(hexnorm(o['id']) == '$id' or o['label'] == 'd-web' for o in j), 'deleted objects still listed: %r' % j
assert len(j) == 2, 'expected only d-keep: %r' % j
"
objects >"$T/objs"
awk -F'\t' -v i="$id" '$3 == i' "$T/objs" | grep -q . && { cat "$T/objs" >&2; fail "pkcs11-tool still shows objects with CKA_ID $id"; }
[ "$(count_objects privkey d-keep "$keep_id")" = 1 ] && [ "$(count_objects pubkey d-keep "$keep_id")" = 1 ] \
	|| { cat "$T/objs" >&2; fail "delete removed another key"; }
[ "$(wc -l <"$T/objs")" = 2 ] || { cat "$T/objs" >&2; fail "unexpected objects left after delete"; }
pass "delete: private key, public key and certificate gone, other key kept"

expect_rc 66 p11c delete --key "$uri"
expect_error_line
expect_rc 66 p11c delete --key "pkcs11:token=$TOKEN;object=never-existed"
expect_error_line
pass "delete of a missing key: 66"

# a URI that selects two private keys is refused
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=d-keep" --type ec:P-256 --force
rc=0
p11c delete --key "pkcs11:token=$TOKEN;object=d-keep" </dev/null >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" != 0 ] || fail_out "delete with an ambiguous URI succeeded"
[ "$(count_objects privkey d-keep)" = 2 ] || fail "ambiguous delete removed a key"
expect_error_line
pass "delete with a URI matching two keys: refused ($rc)"
