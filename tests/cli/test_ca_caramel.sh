#!/usr/bin/env bash
# p11ca's Caramel endpoint (docs/ca.md, docs/protocols.md s1) with real
# curl on loopback, once with a PEM-file CA key and once with a SoftHSM CA
# key: every status code, every 400 reason, issued certificate contents,
# lifetimes, Last-Modified / 304, refresh (never of a revoked request), revoke + CRL, reject, autosign
# uuid, the admin list, TLS 1.2 and 1.3.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

new_token p11ca-caramel

# list_state SHA: the request's state (p11ca show), or "absent"
list_state() {
	local rc=0
	p11ca show --dir "$CA_DIR" "$1" >"$T/show.out" 2>"$T/show.err" || rc=$?
	case $rc in
	0) sed -n '1s/^request [0-9][0-9]* (\([a-z]*\),.*/\1/p' "$T/show.out" ;;
	66) echo absent ;;
	*) fail "p11ca show $1: exit $rc: $(cat "$T/show.err")" ;;
	esac
}

# n_requests: number of requests in the database (any state)
n_requests() {
	p11ca list --dir "$CA_DIR" --all >"$T/list.out" 2>"$T/list.err" || fail "p11ca list failed"
	echo $(($(wc -l <"$T/list.out") - 1))
}

# get_cert SHA OUT: GET /SHA must be 200 with a certificate
get_cert() {
	req 200 "/$1"
	expect_type application/octet-stream
	cp "$T/body" "$2"
	openssl x509 -in "$2" -noout 2>/dev/null || fail "GET /$1: body is not a PEM certificate"
}

caramel_suite() {
	local kind=$1 D=$T/$1 s c v n0 id serial serial2 lm lt now nb
	shift
	echo "# $kind CA key"

	# --- init ---
	expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 "$@"
	expect_grep '^CN=p11ca Signing Certificate,O=Example,C=SE$' "$T/out"
	openssl x509 -in "$D/ca.crt" -noout -text >"$T/ca.txt" || fail "ca.crt"
	expect_grep -A1 'Basic Constraints: critical' "$T/ca.txt"
	grep -A1 'Basic Constraints: critical' "$T/ca.txt" | grep -q 'CA:TRUE, pathlen:0' || fail "CA basicConstraints"
	openssl verify -CAfile "$D/ca.crt" "$D/tls.crt" >/dev/null 2>&1 || fail "tls.crt does not chain to ca.crt"
	if [ "$kind" = file ]; then
		[ "$(stat -c %a "$D/ca.key")" = 600 ] || fail "ca.key mode $(stat -c %a "$D/ca.key")"
	else
		[ ! -e "$D/ca.key" ] || fail "ca.key written although the key is in the token"
		[ "$(count_objects privkey ca)" = 1 ] || fail "no private key 'ca' in the token"
		[ "$(count_objects cert ca)" = 1 ] || fail "CA certificate not stored in the token"
	fi
	[ "$(stat -c %a "$D/p11ca.conf")" = 600 ] || fail "p11ca.conf mode $(stat -c %a "$D/p11ca.conf")"
	if [ "${P11CA_TEST_DB:-sqlite}" = pg ]; then
		[ ! -e "$D/p11ca.db" ] || fail "p11ca.db created although the database is PostgreSQL"
	else
		[ "$(stat -c %a "$D/p11ca.db")" = 600 ] || fail "p11ca.db mode $(stat -c %a "$D/p11ca.db")"
	fi
	# init refuses to touch an existing CA
	cp "$D/ca.crt" "$T/ca.before"
	expect_rc 1 p11ca init --dir "$D" --O Other
	cmp -s "$D/ca.crt" "$T/ca.before" || fail "second init changed ca.crt"

	ca_start "serve-$kind" "$D"
	expect_grep '^p11ca: serving Caramel on 127\.0\.0\.1:0 \(port [0-9]+\)$' "$CA_LOG"

	# --- root.crt, bundle.crt; TLS 1.2 and 1.3 ---
	req 200 /root.crt
	expect_type text/plain
	cmp -s "$T/body" "$D/ca.crt" || fail "/root.crt differs from ca.crt"
	req 200 /bundle.crt
	expect_type text/plain
	cmp -s "$T/body" "$D/ca.crt" || fail "/bundle.crt differs from ca.crt"
	req 200 /root.crt --tlsv1.2 --tls-max 1.2
	grep -q 'SSL connection using TLSv1.2' "$T/curl.err" || fail "not TLS 1.2"
	req 200 /root.crt --tlsv1.3
	grep -q 'SSL connection using TLSv1.3' "$T/curl.err" || fail "not TLS 1.3"
	# the system trust store does not know this CA
	if curl -sS --noproxy '*' --max-time 10 -o /dev/null "$CA_URL/root.crt" 2>/dev/null; then
		fail "TLS accepted without trusting ca.crt"
	fi

	# --- 404s ---
	req 404 "/$(printf '%064d' 0)"
	expect_problem 404 null
	req 404 "/$(printf 'ab%.0s' $(seq 32) | tr a-f A-F)"   # upper-case hex
	expect_problem 404 null
	for p in /zz /abc "/$(printf '%063d' 0)" "/$(printf '%065d' 0)" "/$(printf '%063d' 0)g" \
		/ /root.crt/ /root.crtx /../etc/passwd /%2e%2e/etc/passwd "/$(printf '%064d' 0)/x"; do
		req 404 "$p" --path-as-is
		expect_problem 404 null
	done

	# --- POST, duplicate, pending, sign ---
	mk_csr "$T/$kind-a.csr" "/C=SE/O=Example/CN=$kind-a"
	s=$(sha256_of "$T/$kind-a.csr")
	req 404 "/$s"
	post 202 "$T/$kind-a.csr"
	expect_accepted "$s"
	post 400 "$T/$kind-a.csr"
	expect_problem 400 duplicate
	req 202 "/$s"
	expect_accepted "$s"
	[ "$(list_state "$s")" = pending ] || fail "state after POST: $(list_state "$s")"

	expect_rc 0 p11ca sign --dir "$D" "$s"
	expect_grep 'signed request [0-9]+ .* for 48 hours' "$T/err"
	now=$(date +%s)
	get_cert "$s" "$T/$kind-a.crt"
	expect_leaf "$T/$kind-a.crt" "$kind-a" "$T/$kind-a.csr"
	openssl x509 -in "$T/$kind-a.crt" -noout -subject -nameopt RFC2253 | grep -qx "subject=CN=$kind-a,O=Example,C=SE" \
		|| fail "subject not copied from the CSR"
	openssl x509 -in "$T/$kind-a.crt" -noout -issuer -nameopt RFC2253 | grep -qx 'issuer=CN=p11ca Signing Certificate,O=Example,C=SE' \
		|| fail "issuer is not the CA"
	openssl x509 -in "$T/$kind-a.crt" -noout -text | grep -A1 'Key Usage: critical' | grep -qx ' *Digital Signature' \
		|| fail "keyUsage of an EC leaf is not critical digitalSignature alone"
	# short lifetime: 48 h, notBefore five minutes back
	lt=$(cert_lifetime "$T/$kind-a.crt")
	expect_near "$lt" $((48 * 3600 + 300)) 2 "short lifetime"
	nb=$(date -u -d "$(openssl x509 -in "$T/$kind-a.crt" -noout -startdate | sed 's/^notBefore=//')" +%s)
	expect_near "$nb" $((now - 300)) 10 "notBefore"
	[ "$(list_state "$s")" = signed ] || fail "state after sign: $(list_state "$s")"

	# Last-Modified and 304
	lm=$(header Last-Modified)
	[ -n "$lm" ] || fail "no Last-Modified on 200"
	date -u -d "$lm" +%s >/dev/null 2>&1 || fail "Last-Modified '$lm' is not a date"
	expect_near "$(date -u -d "$lm" +%s)" "$now" 10 "Last-Modified"
	req 304 "/$s" -H "If-Modified-Since: $lm"
	[ ! -s "$T/body" ] || fail "304 with a body"
	req 304 "/$s" -H "If-Modified-Since: $(date -u -d '+1 day' '+%a, %d %b %Y %H:%M:%S GMT')"
	req 200 "/$s" -H 'If-Modified-Since: Mon, 01 Jan 2001 00:00:00 GMT'
	cmp -s "$T/body" "$T/$kind-a.crt" || fail "200 after an old If-Modified-Since: another body"
	req 200 "/$s" -H 'If-Modified-Since: not a date'

	# --- reject ---
	mk_csr "$T/$kind-r.csr" "/C=SE/O=Example/CN=$kind-r"
	c=$(sha256_of "$T/$kind-r.csr")
	post 202 "$T/$kind-r.csr"
	expect_rc 0 p11ca reject --dir "$D" "$c"
	req 403 "/$c"
	expect_problem 403 reject
	expect_rc 1 p11ca sign --dir "$D" "$c"
	expect_grep 'rejected' "$T/err"
	[ "$(list_state "$c")" = rejected ] || fail "state after reject"
	post 400 "$T/$kind-r.csr"      # still a duplicate
	expect_problem 400 duplicate
	expect_rc 64 p11ca sign --dir "$D"
	expect_rc 64 p11ca frobnicate --dir "$D"
	expect_rc 64 env -u P11CA_DIR "$P11CA" list
	expect_rc 66 p11ca sign --dir "$D" "$(printf '%064d' 0)"
	expect_rc 66 p11ca reject --dir "$D" 99999

	# --- every 400 reason; none of them stores anything ---
	n0=$(n_requests)
	# hash mismatch
	mk_csr "$T/$kind-h.csr" "/C=SE/O=Example/CN=$kind-h"
	post 400 "$T/$kind-h.csr" "$(printf '%064d' 1)"
	expect_problem 400 'SHA-256 .*does not match'
	post 400 "$T/$kind-h.csr" "$s"
	expect_problem 400 'SHA-256 .*does not match'
	# invalid PEM (garbage with a matching sha)
	printf 'this is not a CSR\n' >"$T/garbage"
	post 400 "$T/garbage"
	expect_problem 400 'invalid PEM'
	# a certificate instead of a CSR
	post 400 "$D/ca.crt"
	expect_problem 400 'invalid PEM'
	# not canonical: CRLF line ends; 76-column base64; no trailing newline;
	# two trailing newlines
	sed 's/$/\r/' "$T/$kind-h.csr" >"$T/crlf.csr"
	post 400 "$T/crlf.csr"
	expect_problem 400 'not canonical'
	openssl req -in "$T/$kind-h.csr" -outform DER -out "$T/h.der"
	pem_csr "$T/h.der" "$T/h.pem"
	cmp -s "$T/h.pem" "$T/$kind-h.csr" || fail "pem_csr does not reproduce openssl's PEM"
	{ echo '-----BEGIN CERTIFICATE REQUEST-----'; base64 -w 76 <"$T/h.der"; echo '-----END CERTIFICATE REQUEST-----'; } >"$T/c76.csr"
	cmp -s "$T/c76.csr" "$T/h.pem" && fail "76-column PEM equals the 64-column one"
	post 400 "$T/c76.csr"
	expect_problem 400 'not canonical'
	head -c -1 "$T/$kind-h.csr" >"$T/nonl.csr"
	post 400 "$T/nonl.csr"
	expect_problem 400 'not canonical'
	{ cat "$T/$kind-h.csr"; echo; } >"$T/twonl.csr"
	post 400 "$T/twonl.csr"
	expect_problem 400 'not canonical'
	# bad signature: flip a bit in the last byte of the DER (inside the
	# signature BIT STRING of an RSA CSR), canonical PEM again
	mk_csr "$T/$kind-sig.csr" "/C=SE/O=Example/CN=$kind-sig" rsa:2048
	openssl req -in "$T/$kind-sig.csr" -outform DER -out "$T/sig.der"
	python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1; open(sys.argv[1], "wb").write(b)' "$T/sig.der"
	pem_csr "$T/sig.der" "$T/badsig.csr"
	openssl req -in "$T/badsig.csr" -noout 2>/dev/null || fail "tampered CSR does not parse"
	openssl req -in "$T/badsig.csr" -noout -verify 2>&1 | grep -q 'verify failure' || fail "tampered CSR still verifies"
	openssl req -in "$T/$kind-sig.csr" -noout -verify 2>&1 | grep -q 'verify OK' || fail "CSR does not verify"
	post 400 "$T/badsig.csr"
	expect_problem 400 'signature'
	post 202 "$T/$kind-sig.csr"        # the untampered one is fine
	# bad subject: other O, wrong order, missing O, no CN, CN over 64
	mk_csr "$T/bs1.csr" "/C=SE/O=Other/CN=$kind-bs1"
	post 400 "$T/bs1.csr"
	expect_problem 400 'bad subject'
	mk_csr "$T/bs2.csr" "/O=Example/C=SE/CN=$kind-bs2"
	post 400 "$T/bs2.csr"
	expect_problem 400 'bad subject'
	mk_csr "$T/bs3.csr" "/C=SE/CN=$kind-bs3"
	post 400 "$T/bs3.csr"
	expect_problem 400 'bad subject'
	mk_csr "$T/bs4.csr" "/C=SE/O=Example/OU=NoCN"
	post 400 "$T/bs4.csr"
	expect_problem 400 'bad subject.*CN'
	# CN of 65 characters: openssl req refuses to make one, python's
	# cryptography can when it is there
	if python3 - "$T/bs5.csr" 2>/dev/null <<'PY'
import sys, warnings
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
warnings.simplefilter("ignore")
k = ec.generate_private_key(ec.SECP256R1())
n = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"),
               x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
               x509.NameAttribute(NameOID.COMMON_NAME, "x" * 65, _validate=False)])
csr = x509.CertificateSigningRequestBuilder().subject_name(n).sign(k, hashes.SHA256())
open(sys.argv[1], "wb").write(csr.public_bytes(serialization.Encoding.PEM))
PY
	then
		post 400 "$T/bs5.csr"
		expect_problem 400 'bad subject.*CN'
	else
		skip "CN over 64 characters (no python3 cryptography)"
	fi
	# OU and further RDNs after C, O are free
	mk_csr "$T/ok-ou.csr" "/C=SE/O=Example/OU=Lab/CN=$kind-ou"
	post 202 "$T/ok-ou.csr"
	# bad key: RSA 1024, EC P-521
	mk_csr "$T/k1024.csr" "/C=SE/O=Example/CN=$kind-k1024" rsa:1024
	post 400 "$T/k1024.csr"
	expect_problem 400 'RSA keys of 1024 bits are not accepted'
	mk_csr "$T/k521.csr" "/C=SE/O=Example/CN=$kind-k521" ec521
	post 400 "$T/k521.csr"
	expect_problem 400 'not accepted'
	# SAN not allowed (no san-patterns); DNS:<CN> is
	mk_csr "$T/san.csr" "/C=SE/O=Example/CN=$kind-san" ec -addext 'subjectAltName=DNS:evil.example.org'
	post 400 "$T/san.csr"
	expect_problem 400 'subjectAltName DNS:evil.example.org is not allowed'
	mk_csr "$T/sanip.csr" "/C=SE/O=Example/CN=$kind-sanip" ec -addext "subjectAltName=DNS:$kind-sanip,IP:10.1.2.3"
	post 400 "$T/sanip.csr"
	expect_problem 400 'IP:10.1.2.3 is not allowed'
	mk_csr "$T/sancn.csr" "/C=SE/O=Example/CN=$kind-sancn" ec -addext "subjectAltName=DNS:$kind-sancn"
	post 202 "$T/sancn.csr"
	# 411: no Content-Length (a chunked body)
	req 411 "/$(sha256_of "$T/$kind-h.csr")" --data-binary @"$T/$kind-h.csr" \
		-H 'Content-Length:' -H 'Transfer-Encoding: chunked'
	expect_problem 411 'Content-Length'
	grep -qi '^> Transfer-Encoding: chunked' "$T/curl.err" || fail "curl did not send chunked"
	# 413: over 2048 bytes, sha matching
	{ echo '-----BEGIN CERTIFICATE REQUEST-----'; head -c 2200 /dev/zero | base64 -w 64; echo '-----END CERTIFICATE REQUEST-----'; } >"$T/big.csr"
	[ "$(stat -c %s "$T/big.csr")" -gt 2900 ] || fail "big.csr too small"
	post 413 "$T/big.csr"
	expect_problem 413 '2048'
	head -c 2048 /dev/zero | tr '\0' a >"$T/b2048"   # at the limit: parsed, not 413
	post 400 "$T/b2048"
	expect_problem 400 'invalid PEM'
	head -c 2049 /dev/zero | tr '\0' a >"$T/b2049"
	post 413 "$T/b2049"
	expect_problem 413 '2048'
	# the accepted ones (sig, ok-ou, sancn) are the only new rows
	[ "$(n_requests)" = $((n0 + 3)) ] || fail "rejected POSTs stored requests: $(n_requests), want $((n0 + 3))"
	for c in "$T/$kind-h.csr" "$T/bs1.csr" "$T/k1024.csr" "$T/san.csr" "$T/badsig.csr"; do
		[ "$(list_state "$(sha256_of "$c")")" = absent ] || fail "$(basename "$c") was stored"
	done
	# a 400'd CSR may come back right: the hash-mismatch one is not a duplicate
	post 202 "$T/$kind-h.csr"

	# --- Expect: 100-continue ---
	mk_csr "$T/$kind-exp.csr" "/C=SE/O=Example/CN=$kind-exp" rsa:4096
	post 202 "$T/$kind-exp.csr" "" -H 'Expect: 100-continue'
	grep -q '< HTTP/1.1 100 Continue' "$T/curl.err" || fail "no 100 Continue"

	# --- token CSRs: EC P-256 and RSA 2048 ---
	for kt in ec:P-256 rsa:2048; do
		local lbl=$kind-${kt%%:*}
		expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=$lbl" --type "$kt"
		expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=$lbl" --subject "/C=SE/O=Example/CN=$lbl" -o "$T/$lbl.csr"
		c=$(sha256_of "$T/$lbl.csr")
		post 202 "$T/$lbl.csr"
		expect_accepted "$c"
		req 202 "/$c"
		expect_rc 0 p11ca sign --dir "$D" "$c"
		get_cert "$c" "$T/$lbl.crt"
		expect_leaf "$T/$lbl.crt" "$lbl" "$T/$lbl.csr"
	done
	openssl x509 -in "$T/$kind-rsa.crt" -noout -text | grep -A1 'Key Usage: critical' \
		| grep -q 'Digital Signature, Key Encipherment' || fail "RSA leaf without keyEncipherment"

	# --- sign by ID, --long ---
	mk_csr "$T/$kind-l.csr" "/C=SE/O=Example/CN=$kind-l"
	c=$(sha256_of "$T/$kind-l.csr")
	post 202 "$T/$kind-l.csr"
	expect_rc 0 p11ca show --dir "$D" "$c" --json
	id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["id"])' "$T/out")
	expect_rc 0 p11ca sign --dir "$D" --long "$id"
	expect_grep 'for 720 hours' "$T/err"
	get_cert "$c" "$T/$kind-l.crt"
	expect_leaf "$T/$kind-l.crt" "$kind-l" "$T/$kind-l.csr"
	expect_near "$(cert_lifetime "$T/$kind-l.crt")" $((720 * 3600 + 300)) 2 "long lifetime"
	# settings: P11CA_SHORT_LIFETIME overrides the file, a flag the variable
	mk_csr "$T/$kind-e.csr" "/C=SE/O=Example/CN=$kind-e"
	post 202 "$T/$kind-e.csr"
	expect_rc 0 env P11CA_SHORT_LIFETIME=12 "$P11CA" sign --dir "$D" "$(sha256_of "$T/$kind-e.csr")"
	get_cert "$(sha256_of "$T/$kind-e.csr")" "$T/$kind-e.crt"
	expect_near "$(cert_lifetime "$T/$kind-e.crt")" $((12 * 3600 + 300)) 2 "P11CA_SHORT_LIFETIME=12"
	expect_rc 0 env P11CA_SHORT_LIFETIME=12 "$P11CA" sign --dir "$D" --short-lifetime 3 "$(sha256_of "$T/$kind-e.csr")"
	get_cert "$(sha256_of "$T/$kind-e.csr")" "$T/$kind-e2.crt"
	# the newest certificate is served, even when an older one lives longer
	expect_near "$(cert_lifetime "$T/$kind-e2.crt")" $((3 * 3600 + 300)) 2 "newest certificate served"
	expect_rc 0 p11ca show --dir "$D" "$(sha256_of "$T/$kind-e.csr")" --json
	json_later "$T/out" "
nb_na = sorted(c['not_after'] - c['not_before'] for c in j['certificate_list'])
assert nb_na == [3 * 3600 + 300, 12 * 3600 + 300], nb_na
"
	# a revoked long certificate does not hide the short one signed after it
	mk_csr "$T/$kind-v.csr" "/C=SE/O=Example/CN=$kind-v"
	v=$(sha256_of "$T/$kind-v.csr")
	post 202 "$T/$kind-v.csr"
	expect_rc 0 p11ca sign --dir "$D" --long "$v"
	get_cert "$v" "$T/$kind-v1.crt"
	expect_rc 0 p11ca revoke --dir "$D" "$(cert_serial "$T/$kind-v1.crt")"
	req 202 "/$v"
	expect_rc 0 p11ca sign --dir "$D" "$v"
	get_cert "$v" "$T/$kind-v2.crt"
	[ "$(cert_serial "$T/$kind-v2.crt")" != "$(cert_serial "$T/$kind-v1.crt")" ] || fail "revoked long certificate served after sign"
	expect_near "$(cert_lifetime "$T/$kind-v2.crt")" $((48 * 3600 + 300)) 2 "short certificate after the revoked long one"
	# a bad value: usage error as a flag, configuration error as a variable
	expect_rc 64 p11ca sign --dir "$D" --short-lifetime zero "$(sha256_of "$T/$kind-e.csr")"
	expect_grep 'short-lifetime must be a number' "$T/err"
	expect_rc 1 env P11CA_SHORT_LIFETIME=zero "$P11CA" sign --dir "$D" "$(sha256_of "$T/$kind-e.csr")"
	expect_grep 'P11CA_SHORT_LIFETIME: short-lifetime must be a number' "$T/err"

	# --- list --json ---
	expect_rc 0 p11ca list --dir "$D" --json
	json_assert "$T/out" "
st = {r['sha256']: r for r in j}
assert st['$s']['state'] == 'signed' and st['$s']['lifetime'] == 'short', st['$s']
assert st['$c']['state'] == 'signed' and st['$c']['lifetime'] == 'long', st['$c']
assert st['$(sha256_of "$T/ok-ou.csr")']['state'] == 'pending'
assert st['$(sha256_of "$T/ok-ou.csr")']['ou'] == 'Lab'
assert '$(sha256_of "$T/$kind-r.csr")' not in st, 'rejected request in the default list'
assert all(r['protocol'] == 'caramel' for r in j)
assert st['$s']['cn'] == '$kind-a' and st['$s']['subject'] == 'CN=$kind-a,O=Example,C=SE'
"
	expect_rc 0 p11ca list --dir "$D" --all --json
	json_assert "$T/out" "
st = {r['sha256']: r['state'] for r in j}
assert st['$(sha256_of "$T/$kind-r.csr")'] == 'rejected'
assert len(st) == len(j)
"
	expect_rc 0 p11ca list --dir "$D" --pending --json
	json_assert "$T/out" "
assert j and all(r['state'] == 'pending' for r in j), j
assert '$(sha256_of "$T/ok-ou.csr")' in [r['sha256'] for r in j]
"

	# --- revoke + CRL; GET answers 202 until refreshed ---
	serial=$(cert_serial "$T/$kind-a.crt")
	expect_rc 66 p11ca revoke --dir "$D" 7fffffffffffffffffffffffffffffff
	expect_rc 0 p11ca revoke --dir "$D" "$serial" --reason 1
	req 202 "/$s"
	expect_accepted "$s"
	expect_rc 0 p11ca crl --dir "$D"
	openssl crl -in "$D/crl.pem" -CAfile "$D/ca.crt" -noout >"$T/crl.out" 2>&1 \
		|| { cat "$T/crl.out" >&2; fail "CRL does not verify under ca.crt"; }
	grep -q 'verify OK' "$T/crl.out" || fail "openssl crl: no 'verify OK'"
	openssl crl -in "$D/crl.pem" -noout -text >"$T/crl.txt"
	grep -qi "Serial Number: $serial\$" "$T/crl.txt" || fail "CRL does not list $serial"
	grep -q 'Key Compromise' "$T/crl.txt" || fail "CRL without reason keyCompromise"
	expect_near "$(date -u -d "$(openssl crl -in "$D/crl.pem" -noout -nextupdate | sed 's/^nextUpdate=//')" +%s)" \
		$(($(date +%s) + 7 * 86400)) 60 "CRL nextUpdate"
	grep -qi "Serial Number: $(cert_serial "$T/$kind-v1.crt")\$" "$T/crl.txt" || fail "CRL does not list the revoked long certificate"
	[ "$(grep -c 'Serial Number:' "$T/crl.txt")" = 2 ] || fail "CRL lists more than the revoked certificates"

	# --- a signed request rejected afterwards: 403, never refreshed ---
	c=$(sha256_of "$T/$kind-rsa.csr")
	expect_rc 0 p11ca reject --dir "$D" "$c"
	req 403 "/$c"

	# --- refresh: new serials; classes kept; the revoked one is never
	# re-signed (issue 10 point 2), only an administrator's sign does ---
	expect_rc 0 p11ca refresh --dir "$D"
	# signed and not rejected: a (revoked: skipped), ec, l, e, v
	expect_grep 're-signed 4 requests, skipped 1 rejected or revoked' "$T/err"
	req 202 "/$s"
	expect_rc 0 p11ca sign --dir "$D" "$s"
	get_cert "$s" "$T/$kind-a2.crt"
	serial2=$(cert_serial "$T/$kind-a2.crt")
	[ "$serial2" != "$serial" ] || fail "refresh kept the serial"
	expect_leaf "$T/$kind-a2.crt" "$kind-a" "$T/$kind-a.csr"
	expect_near "$(cert_lifetime "$T/$kind-a2.crt")" $((48 * 3600 + 300)) 2 "short lifetime after refresh"
	get_cert "$(sha256_of "$T/$kind-l.csr")" "$T/$kind-l2.crt"
	[ "$(cert_serial "$T/$kind-l2.crt")" != "$(cert_serial "$T/$kind-l.crt")" ] || fail "refresh kept the long serial"
	expect_near "$(cert_lifetime "$T/$kind-l2.crt")" $((720 * 3600 + 300)) 2 "long lifetime after refresh"
	get_cert "$(sha256_of "$T/$kind-v.csr")" "$T/$kind-v3.crt"
	[ "$(cert_serial "$T/$kind-v3.crt")" != "$(cert_serial "$T/$kind-v2.crt")" ] || fail "refreshed certificate not served"
	expect_near "$(cert_lifetime "$T/$kind-v3.crt")" $((48 * 3600 + 300)) 2 "refreshed after class change"
	expect_rc 0 p11ca show --dir "$D" "$c" --json
	json_assert "$T/out" "assert j['state'] == 'rejected' and len(j['certificate_list']) == 1, j"
	expect_rc 0 p11ca show --dir "$D" "$s" --json
	json_assert "$T/out" "
cl = j['certificate_list']
assert len(cl) == 2, cl
assert sorted(c['serial'] for c in cl) == sorted(['$serial', '$serial2']), cl
assert [c['revoked'] != 0 for c in cl if c['serial'] == '$serial'] == [True]
"

	# --- renewal over mTLS (renew-mtls yes): a valid certificate of this CA
	# for the same subject gets a new CSR signed at once ---
	mk_csr "$T/$kind-rn.csr" "/C=SE/O=Example/CN=$kind-a"
	c=$(sha256_of "$T/$kind-rn.csr")
	post 202 "$T/$kind-rn.csr" "" --cert "$T/$kind-a2.crt" --key "$T/$kind-a.csr.key"
	expect_grep "\"POST /$c\" 202 .*autosigned \(mTLS renewal\)" "$CA_LOG"
	get_cert "$c" "$T/$kind-rn.crt"
	expect_leaf "$T/$kind-rn.crt" "$kind-a" "$T/$kind-rn.csr"
	# not with a revoked certificate, nor one for another subject
	mk_csr "$T/$kind-rn2.csr" "/C=SE/O=Example/CN=$kind-a"
	post 202 "$T/$kind-rn2.csr" "" --cert "$T/$kind-a.crt" --key "$T/$kind-a.csr.key"
	req 202 "/$(sha256_of "$T/$kind-rn2.csr")"
	mk_csr "$T/$kind-rn3.csr" "/C=SE/O=Example/CN=$kind-a"
	post 202 "$T/$kind-rn3.csr" "" --cert "$T/$kind-l2.crt" --key "$T/$kind-l.csr.key"
	req 202 "/$(sha256_of "$T/$kind-rn3.csr")"

	# --- restart with --autosign uuid; state survives ---
	ca_stop
	[ "$STOP_RC" = 0 ] || fail "serve exit $STOP_RC after SIGTERM"
	grep -q '^p11ca: stopped$' "$CA_LOG" || fail "no 'stopped' line"
	ca_start "serve-$kind-auto" "$D" --autosign uuid
	get_cert "$s" "$T/$kind-a3.crt"
	cmp -s "$T/$kind-a3.crt" "$T/$kind-a2.crt" || fail "another certificate after restart"
	local u
	u=$(cat /proc/sys/kernel/random/uuid)
	mk_csr "$T/$kind-u.csr" "/C=SE/O=Example/CN=$u"
	c=$(sha256_of "$T/$kind-u.csr")
	post 202 "$T/$kind-u.csr"
	expect_accepted "$c"
	get_cert "$c" "$T/$kind-u.crt"
	expect_leaf "$T/$kind-u.crt" "$u" "$T/$kind-u.csr"
	expect_near "$(cert_lifetime "$T/$kind-u.crt")" $((48 * 3600 + 300)) 2 "autosigned lifetime"
	# not UUIDs: pending
	mk_csr "$T/$kind-nu.csr" "/C=SE/O=Example/CN=${u:1}"
	post 202 "$T/$kind-nu.csr"
	req 202 "/$(sha256_of "$T/$kind-nu.csr")"
	mk_csr "$T/$kind-nu2.csr" "/C=SE/O=Example/CN=${u//-/}"
	post 202 "$T/$kind-nu2.csr"
	req 202 "/$(sha256_of "$T/$kind-nu2.csr")"
	[ "$(list_state "$c")" = signed ] || fail "autosigned request not signed in the DB"

	# the access log names requests, not secrets; one line per request
	grep -qE '^[0-9TZ:-]+ 127\.0\.0\.1:[0-9]+ "POST /[0-9a-f]{64}" 202 ' "$CA_LOG" || fail "no access log line for the POST"
	ca_stop
	[ "$STOP_RC" = 0 ] || fail "serve exit $STOP_RC after SIGTERM"
	json_check_all
	pass "Caramel with a $kind CA key"
}

start=$(date +%s)
caramel_suite file
caramel_suite token --key "pkcs11:token=$TOKEN;object=ca" --module "$MOD" --pin-file "$PINF"
# a server of one CA is not trusted with the other's ca.crt; CRLs do not cross
openssl crl -in "$T/file/crl.pem" -CAfile "$T/token/ca.crt" -noout 2>&1 | grep -q 'verify failure' \
	|| fail "the file CA's CRL verifies under the token CA"
pass "all in $(($(date +%s) - start)) s"
