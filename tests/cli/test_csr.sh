#!/usr/bin/env bash
# p11cert csr: subject forms, SANs, digests, output forms, input errors.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

new_token p11c-csr

# keygen LABEL TYPE -> prints the key URI
keygen() {
	expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=$1" --type "$2"
	head -n 1 "$T/out"
}

# csr_sigalg FILE [FORM]
csr_sigalg() {
	openssl req -in "$1" -inform "${2:-PEM}" -noout -text | grep -m1 'Signature Algorithm:' | sed 's/.*Signature Algorithm: *//'
}

csr_subject() {
	openssl req -in "$1" -inform "${2:-PEM}" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'
}

# verify_csr FILE [FORM]
verify_csr() {
	openssl req -in "$1" -inform "${2:-PEM}" -verify -noout >"$T/v.out" 2>&1 \
		|| { cat "$T/v.out" >&2; fail "openssl req -verify rejects $(basename "$1")"; }
	grep -q 'verify OK' "$T/v.out" || { cat "$T/v.out" >&2; fail "openssl req -verify: no 'verify OK' for $(basename "$1")"; }
}

# same_pubkey CSRFILE KEYURI
same_pubkey() {
	local id
	id=$(uri_id_hex "$2")
	export_pubkey "$id" "$T/tok.pub.der"
	openssl req -in "$1" -noout -pubkey | openssl pkey -pubin -outform DER -out "$T/csr.pub.der" \
		|| fail "cannot read the public key of $(basename "$1")"
	cmp -s "$T/tok.pub.der" "$T/csr.pub.der" || fail "public key in $(basename "$1") is not the token key $2"
}

ec=$(keygen c-ec ec:P-256)
rsa=$(keygen c-rsa rsa:2048)
p384=$(keygen c-p384 ec:P-384)
rsa3k=$(keygen c-rsa3k rsa:3072)

SANS=(--san DNS:web1.example.com --san IP:192.0.2.10 --san email:ops@example.com --san URI:https://example.com/)

# --- full CSR, EC and RSA ---------------------------------------------------------
for kind in ec rsa; do
	uri=${!kind}
	out=$T/web-$kind.csr
	expect_rc 0 p11c csr --key "$uri" --subject '/C=SE/O=Example/CN=web1' "${SANS[@]}" -o "$out"
	[ -s "$out" ] || fail "$kind: -o $out not written"
	[ "$(stat -c %a "$out")" = 644 ] || fail "$kind: $out has mode $(stat -c %a "$out"), spec says 0644"
	head -n 1 "$out" | grep -q -- '-----BEGIN CERTIFICATE REQUEST-----' || fail "$kind: default output is not PEM"
	verify_csr "$out"
	subj=$(csr_subject "$out")
	[ "$subj" = 'CN=web1,O=Example,C=SE' ] || fail "$kind: subject is '$subj'"
	openssl req -in "$out" -noout -text >"$T/csr.txt"
	for s in 'DNS:web1.example.com' 'IP Address:192.0.2.10' 'email:ops@example.com' 'URI:https://example.com/'; do
		grep -q -F "$s" "$T/csr.txt" || { cat "$T/csr.txt" >&2; fail "$kind: SAN '$s' missing"; }
	done
	grep -q 'X509v3 Subject Alternative Name' "$T/csr.txt" || fail "$kind: no subjectAltName extension"
	same_pubkey "$out" "$uri"
	pass "csr $kind: verifies, subject, 4 SANs, token public key"
done

[ "$(csr_sigalg "$T/web-ec.csr")" = ecdsa-with-SHA256 ] || fail "P-256 CSR not signed with ecdsa-with-SHA256: $(csr_sigalg "$T/web-ec.csr")"
[ "$(csr_sigalg "$T/web-rsa.csr")" = sha256WithRSAEncryption ] || fail "RSA-2048 CSR not sha256WithRSAEncryption: $(csr_sigalg "$T/web-rsa.csr")"
pass "default digest SHA-256 for P-256 and RSA-2048 (PKCS#1 v1.5)"

# --- larger keys: SHA-384 by default ---------------------------------------------
expect_rc 0 p11c csr --key "$p384" --subject /CN=big -o "$T/p384.csr"
verify_csr "$T/p384.csr"
same_pubkey "$T/p384.csr" "$p384"
[ "$(csr_sigalg "$T/p384.csr")" = ecdsa-with-SHA384 ] || fail "P-384 CSR: $(csr_sigalg "$T/p384.csr")"
expect_rc 0 p11c csr --key "$rsa3k" --subject /CN=big -o "$T/rsa3k.csr"
verify_csr "$T/rsa3k.csr"
same_pubkey "$T/rsa3k.csr" "$rsa3k"
[ "$(csr_sigalg "$T/rsa3k.csr")" = sha384WithRSAEncryption ] || fail "RSA-3072 CSR: $(csr_sigalg "$T/rsa3k.csr")"
pass "default digest SHA-384 for P-384 and RSA-3072"

# --- --md --------------------------------------------------------------------------
expect_rc 0 p11c csr --key "$ec" --subject /CN=md --md sha512 -o "$T/md512.csr"
verify_csr "$T/md512.csr"
[ "$(csr_sigalg "$T/md512.csr")" = ecdsa-with-SHA512 ] || fail "--md sha512 on P-256: $(csr_sigalg "$T/md512.csr")"
expect_rc 0 p11c csr --key "$rsa" --subject /CN=md --md sha384 -o "$T/md384.csr"
verify_csr "$T/md384.csr"
[ "$(csr_sigalg "$T/md384.csr")" = sha384WithRSAEncryption ] || fail "--md sha384 on RSA: $(csr_sigalg "$T/md384.csr")"
expect_rc 0 p11c csr --key "$p384" --subject /CN=md --md sha256 -o "$T/md256.csr"
[ "$(csr_sigalg "$T/md256.csr")" = ecdsa-with-SHA256 ] || fail "--md sha256 on P-384: $(csr_sigalg "$T/md256.csr")"
pass "--md overrides the digest"

# --- RFC 2253 subject form, escapes ------------------------------------------------
expect_rc 0 p11c csr --key "$ec" --subject 'CN=web1,O=Example,C=SE' "${SANS[@]}" -o "$T/rfc.csr"
verify_csr "$T/rfc.csr"
[ "$(csr_subject "$T/rfc.csr")" = "$(csr_subject "$T/web-ec.csr")" ] \
	|| fail "RFC 2253 subject '$(csr_subject "$T/rfc.csr")' differs from slash form '$(csr_subject "$T/web-ec.csr")'"
# same DER encoding of the name, not just the same text
openssl req -in "$T/rfc.csr" -noout -subject -nameopt RFC2253,dump_all,dump_der >"$T/s1"
openssl req -in "$T/web-ec.csr" -noout -subject -nameopt RFC2253,dump_all,dump_der >"$T/s2"
cmp -s "$T/s1" "$T/s2" || { cat "$T/s1" "$T/s2" >&2; fail "RFC 2253 and slash subjects encode differently"; }
pass "RFC 2253 subject equals the slash form"

expect_rc 0 p11c csr --key "$ec" --subject '/C=SE/O=Foo\/Bar\, Inc/CN=a\\b' -o "$T/esc1.csr"
s=$(csr_subject "$T/esc1.csr")
[ "$s" = 'CN=a\\b,O=Foo/Bar\, Inc,C=SE' ] || fail "slash form escapes: subject is '$s'"
expect_rc 0 p11c csr --key "$ec" --subject 'CN=a\\b,O=Foo/Bar\, Inc,C=SE' -o "$T/esc2.csr"
s=$(csr_subject "$T/esc2.csr")
[ "$s" = 'CN=a\\b,O=Foo/Bar\, Inc,C=SE' ] || fail "RFC 2253 escapes: subject is '$s'"
pass "subject escapes \\/ \\, \\\\"

# IPv6 SAN
expect_rc 0 p11c csr --key "$ec" --subject /CN=v6 --san IP:2001:db8::1 --san DNS:v6.example.com -o "$T/v6.csr"
openssl req -in "$T/v6.csr" -noout -text >"$T/v6.txt"
grep -q -F 'IP Address:2001:DB8:0:0:0:0:0:1' "$T/v6.txt" || { cat "$T/v6.txt" >&2; fail "IPv6 SAN missing"; }
pass "IPv6 SAN"

# key selected by label only
expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=c-rsa" --subject /CN=bylabel -o "$T/bylabel.csr"
verify_csr "$T/bylabel.csr"
same_pubkey "$T/bylabel.csr" "$rsa"
pass "csr --key with object= only"

# --- DER and stdout ----------------------------------------------------------------
expect_rc 0 p11c csr --key "$ec" --subject '/C=SE/O=Example/CN=web1' "${SANS[@]}" --outform der -o "$T/web.der"
[ "$(head -c 1 "$T/web.der" | od -An -tx1 | tr -d ' ')" = 30 ] || fail "--outform der: not DER"
verify_csr "$T/web.der" DER
[ "$(csr_subject "$T/web.der" DER)" = 'CN=web1,O=Example,C=SE' ] || fail "--outform der: wrong subject"
pass "--outform der"

expect_rc 0 p11c csr --key "$ec" --subject '/C=SE/O=Example/CN=web1' "${SANS[@]}"
cp "$T/out" "$T/stdout.csr"
head -n 1 "$T/stdout.csr" | grep -q -- '-----BEGIN CERTIFICATE REQUEST-----' || fail_out "stdout CSR is not PEM"
verify_csr "$T/stdout.csr"
[ "$(csr_subject "$T/stdout.csr")" = 'CN=web1,O=Example,C=SE' ] || fail "stdout CSR: wrong subject"
pass "CSR on stdout without -o"

expect_rc 0 p11c csr --key "$rsa" --subject /CN=derout --outform der
cp "$T/out" "$T/stdout.der"
verify_csr "$T/stdout.der" DER
pass "DER CSR on stdout"

# --- errors --------------------------------------------------------------------------
echo keep >"$T/keep.csr"
check_bad() { # WHAT OFFENDING ARGS...
	local what=$1 text=$2
	shift 2
	expect_rc 64 p11c csr --key "$ec" "$@" -o "$T/keep.csr"
	expect_error_line
	expect_grep -F "$text" "$T/err"
	[ "$(cat "$T/keep.csr")" = keep ] || fail "$what: output file touched on error"
	pass "csr $what: 64 naming '$text'"
}
check_bad "subject /CN" "/CN" --subject /CN
check_bad "subject without =" "CN" --subject 'CN'
check_bad "SAN FOO:x" "FOO:x" --subject /CN=x --san FOO:x
check_bad "SAN IP:300.1.1.1" "300.1.1.1" --subject /CN=x --san IP:300.1.1.1
check_bad "SAN without type" "nocolon" --subject /CN=x --san nocolon
check_bad "--md md5" "md5" --subject /CN=x --md md5
check_bad "--outform xml" "xml" --subject /CN=x --outform xml

expect_rc 64 p11c csr --key "$ec" -o "$T/nosubj.csr"
[ ! -e "$T/nosubj.csr" ] || fail "csr without --subject wrote a file"
pass "csr without --subject: 64"

expect_rc 66 p11c csr --key "pkcs11:token=$TOKEN;object=no-such-key" --subject /CN=x -o "$T/nokey.csr"
expect_error_line
expect_grep -F 'no-such-key' "$T/err"
[ ! -e "$T/nokey.csr" ] || fail "csr for a missing key wrote a file"
pass "csr for a missing key: 66"

expect_rc 73 p11c csr --key "$ec" --subject /CN=x -o "$T/no/such/dir/x.csr"
expect_error_line
expect_grep -F "$T/no/such/dir" "$T/err"
pass "csr to an unwritable path: 73"

# An Ed25519 key made by another tool: the signer cannot sign with EdDSA
# (docs/architecture.md, "Limits"): a clear refusal, 69, no file, no crash
if tool --keypairgen --key-type EC:edwards25519 --label c-ed --id 0e0e >"$T/ed.out" 2>&1; then
	expect_rc 69 p11c csr --key "pkcs11:token=$TOKEN;object=c-ed" --subject /CN=ed -o "$T/ed.csr"
	expect_error_line
	expect_grep -F "key 'c-ed' on token '$TOKEN' is ED25519: only RSA and EC keys can sign" "$T/err"
	[ ! -e "$T/ed.csr" ] || fail "csr with an Ed25519 key wrote a file"
	pass "csr with an Ed25519 key: refused (69), naming the key and token"
else
	skip "pkcs11-tool cannot make an Ed25519 key here: $(tail -n 1 "$T/ed.out")"
fi

# A label shared by more objects than p11c_key_find's one class-less search
# looks at (16): the private key is still found (a second search by class),
# by label alone and with id=
keygen c-crowd ec:P-256 >"$T/crowd.uri"
echo crowd >"$T/crowd.dat"
for i in $(seq 20); do
	tool --write-object "$T/crowd.dat" --type data --label c-crowd --application-label "crowd-$i" >/dev/null 2>&1 \
		|| fail "pkcs11-tool could not write data object $i"
done
expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=c-crowd" --subject /CN=crowd -o "$T/crowd.csr"
openssl req -in "$T/crowd.csr" -noout -verify >/dev/null 2>&1 || fail "crowd.csr does not verify"
expect_rc 0 p11c csr --key "$(cat "$T/crowd.uri")" --subject /CN=crowd -o "$T/crowd2.csr"
pass "csr with a label shared by 20 data objects (more than one search looks at)"
