#!/usr/bin/env bash
# p11ca CA policy (issue 10 points 2, 4, 5, 9, 10, 12, 15; docs/ca.md) on
# the Caramel endpoint with real curl and openssl: revocation sticks to the
# key (refresh, autosign and mTLS renewal never certify it again; an
# administrator's `sign` may), UUID autosign means one CN that is exactly a
# UUID, autosigned requests get no extra names and wildcards need
# san-wildcards, weak keys / hashes / explicit curves are refused, leaves
# never outlive the CA and an expired CA signs nothing, CRLs carry cRLNumber
# and AKI, serials have 126 random bits.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

command -v python3 >/dev/null && python3 -c 'import cryptography' 2>/dev/null \
	|| fail "python3-cryptography not installed (scripts/setup installs it)"

D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 \
	--autosign uuid --san-patterns 'DNS:*.example.com'
ca_start policy "$D"

uuid() { python3 -c 'import uuid; print(uuid.uuid4())'; }

# pycsr OUT CN_PYTHON_LITERAL [extra python]: a CSR (C=SE, O=Example, CN)
# built with python-cryptography, for what openssl req cannot write
pycsr() {
	python3 - "$1" "$2" "${3:-}" <<'PY' || fail "python CSR $1"
import sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives import hashes, serialization
out, cn, extra = sys.argv[1], eval(sys.argv[2]), sys.argv[3]
attrs = [x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example")]
if extra:
    exec(extra)
attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, cn))
k = ec.generate_private_key(ec.SECP256R1())
csr = x509.CertificateSigningRequestBuilder().subject_name(x509.Name(attrs)).sign(k, hashes.SHA256())
open(out, "wb").write(csr.public_bytes(serialization.Encoding.PEM))
PY
}

# state SHA: the request's state
state() {
	p11ca show --dir "$D" "$1" 2>/dev/null | sed -n '1s/^request [0-9]* (\([a-z]*\),.*/\1/p'
}
serial_of() {
	p11ca show --dir "$D" --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["serial"])'
}

# --- point 4: exactly one CN, exactly a UUID; no NUL / control characters ---
U=$(uuid)
pycsr "$T/nul.csr" "'$U\\x00.admin.example.com'"
post 400 "$T/nul.csr"
expect_problem 400 'NUL or control character'
mk_csr "$T/twocn.csr" "/C=SE/O=Example/CN=$(uuid)/CN=admin.example.com"
post 400 "$T/twocn.csr"
expect_problem 400 'the subject has 2 CNs'
mk_csr "$T/twocn2.csr" "/C=SE/O=Example/CN=admin.example.com/CN=$(uuid)"
post 400 "$T/twocn2.csr"
expect_problem 400 'the subject has 2 CNs'
pycsr "$T/ctl.csr" "'$(uuid)'" 'attrs.append(x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "a\x1b[31mb"))'
post 400 "$T/ctl.csr"
expect_problem 400 'entry 3 \(OU\) holds a NUL or control character'
p11ca list --dir "$D" --all >"$T/list.out" 2>&1
[ "$(wc -l <"$T/list.out")" = 1 ] || fail "refused requests were stored: $(cat "$T/list.out")"

# --- point 5: autosigned requests get no extra names; no wildcards ---
U=$(uuid)
mk_csr "$T/www.csr" "/C=SE/O=Example/CN=$U" ec -addext "subjectAltName=DNS:$U,DNS:www.example.com"
post 202 "$T/www.csr"
S=$(sha256_of "$T/www.csr")
req 202 "/$S"
[ "$(state "$S")" = pending ] || fail "UUID request with an extra SAN was autosigned ($(state "$S"))"
grep -q 'pending (UUID CN, but asks for subjectAltNames)' "$CA_LOG" || fail "no log line for the unsigned UUID request"
mk_csr "$T/wild.csr" "/C=SE/O=Example/CN=$(uuid)" ec -addext "subjectAltName=DNS:*.example.com"
post 400 "$T/wild.csr"
expect_problem 400 'DNS:\*\.example\.com is a wildcard name.*san-wildcards = yes'
mk_csr "$T/wildcn.csr" "/C=SE/O=Example/CN=*.example.com"
post 400 "$T/wildcn.csr"
expect_problem 400 'wildcard'
# a plain UUID request is autosigned with DNS:<CN> only
U1=$(uuid)
mk_csr "$T/u1.csr" "/C=SE/O=Example/CN=$U1"
post 202 "$T/u1.csr"
S1=$(sha256_of "$T/u1.csr")
req 200 "/$S1"
cp "$T/body" "$T/u1.crt"
expect_leaf "$T/u1.crt" "$U1" "$T/u1.csr"
sans=$(openssl x509 -in "$T/u1.crt" -noout -ext subjectAltName | tail -n +2 | tr -d ' ')
[ "$sans" = "DNS:$U1" ] || fail "autosigned SANs: '$sans', want only DNS:$U1"

# --- point 15: 16-octet serials, top bits 01: 126 random bits ---
ser=$(openssl x509 -in "$T/u1.crt" -noout -serial | sed 's/^serial=//')
[[ $ser =~ ^[4-7][0-9A-F]{31}$ ]] || fail "serial $ser: not 16 octets with the top bits 01"

# --- point 2: revocation sticks ---
SER1=$(serial_of "$S1")
expect_rc 0 p11ca revoke --dir "$D" --reason 1 "$SER1"
req 202 "/$S1"
expect_rc 0 p11ca refresh --dir "$D"
grep -q 'skipped 1 rejected or revoked' "$T/err" || fail "refresh: $(cat "$T/err")"
req 202 "/$S1"
[ "$(p11ca show --dir "$D" --json "$S1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificates"])')" = 1 ] \
	|| fail "refresh issued a certificate for the revoked request"
# revoked_key_pending KEY NAME: a new request (new UUID) with KEY, as
# $T/NAME.csr, is stored but not autosigned; REQ_SHA is its SHA-256
revoked_key_pending() {
	openssl req -new -key "$1" -subj "/C=SE/O=Example/CN=$(uuid)" -out "$T/$2.csr" 2>/dev/null ||
		fail "openssl req $2"
	post 202 "$T/$2.csr"
	REQ_SHA=$(sha256_of "$T/$2.csr")
	req 202 "/$REQ_SHA"
	[ "$(state "$REQ_SHA")" = pending ] || fail "$2: a request for the revoked key was autosigned"
}
# the same key in a new request is not autosigned
revoked_key_pending "$T/u1.csr.key" u2
S2=$REQ_SHA
grep -q 'was revoked' "$CA_LOG" || fail "no log line for the revoked key"
# ... nor in the other form of its point (RFC 5480 s2.2: compressed), which
# p11ca certifies uncompressed: one key, one form, one keyid
openssl ec -in "$T/u1.csr.key" -conv_form compressed -out "$T/u1c.key" 2>/dev/null || fail "openssl ec compressed"
revoked_key_pending "$T/u1c.key" u4
S4=$REQ_SHA
# ... nor renewed over mTLS with another valid certificate of that subject
# (the revoked one is refused anyway: mtls_same_subject)
# an administrator may certify it again, explicitly
expect_rc 0 p11ca sign --dir "$D" "$S2"
req 200 "/$S2"
# and the revoked request itself stays revoked through refresh
expect_rc 0 p11ca refresh --dir "$D"
grep -q 're-signed [1-9][0-9]* requests*, skipped 1 rejected or revoked' "$T/err" || fail "refresh: $(cat "$T/err")"
req 202 "/$S1"

# --- the certificate's subjectPublicKeyInfo, byte for byte ---
# spki FILE: hex of the SubjectPublicKeyInfo DER exactly as it is in a PEM
# certificate or CSR (openssl and python-cryptography would encode the
# parsed key again, which hides a difference)
spki() {
	python3 - "$1" <<'PY' || fail "spki $1"
import base64, sys
pem = open(sys.argv[1]).read().split("-----")[2]
der = base64.b64decode("".join(pem.split()))
def tlv(b, i):
    n = b[i + 1]; h = 2
    if n & 0x80:
        k = n & 0x7F; n = int.from_bytes(b[i + 2:i + 2 + k], "big"); h = 2 + k
    return i + h, i + h + n  # content start, end
s, _ = tlv(der, 0)       # Certificate / CertificationRequest
s, e = tlv(der, s)       # tbsCertificate / certificationRequestInfo
i, items = s, []
while i < e:
    c, end = tlv(der, i); items.append(der[i:end]); i = end
# certificate: [0] version, serial, signature, issuer, validity, subject, SPKI
# request: version, subject, SPKI
print((items[6] if items[0][0] == 0xA0 else items[2]).hex())
PY
}
# EC P-256 (u1, above) and RSA: copied as sent
[ "$(spki "$T/u1.crt")" = "$(spki "$T/u1.csr")" ] || fail "EC: the certificate's SPKI is not the CSR's"
U3=$(uuid)
mk_csr "$T/rsa.csr" "/C=SE/O=Example/CN=$U3" rsa:2048
post 202 "$T/rsa.csr"
req 200 "/$(sha256_of "$T/rsa.csr")"
cp "$T/body" "$T/rsa.crt"
expect_leaf "$T/rsa.crt" "$U3" "$T/rsa.csr"
[ "$(spki "$T/rsa.crt")" = "$(spki "$T/rsa.csr")" ] || fail "RSA: the certificate's SPKI is not the CSR's"
[ "$(spki "$T/u4.csr")" != "$(spki "$T/u1.csr")" ] || fail "u4.csr does not carry the compressed point"
expect_rc 0 p11ca sign --dir "$D" "$S4"
req 200 "/$S4"
cp "$T/body" "$T/u4.crt"
[ "$(spki "$T/u4.crt")" = "$(spki "$T/u1.csr")" ] || fail "the compressed key was not certified uncompressed"
# an RSA key whose RSAPublicKey uses a longer length form than DER's
# (OpenSSL parses it): revoked, it stays revoked in that encoding too, and
# is certified in DER
expect_rc 0 p11ca revoke --dir "$D" --reason 1 "$(serial_of "$(sha256_of "$T/rsa.csr")")"
python3 - "$T/rsa.csr.key" "$(uuid)" "$T/rsaber.der" <<'PY' || fail "python: the BER-length RSA CSR"
import sys
from cryptography import x509
from cryptography.x509.oid import NameOID
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
def tlv(tag, body):
    n = len(body)
    if n < 0x80: return bytes([tag, n]) + body
    if n < 0x100: return bytes([tag, 0x81, n]) + body
    return bytes([tag, 0x82, n >> 8, n & 0xFF]) + body
def integer(v):
    b = v.to_bytes((v.bit_length() + 8) // 8, "big")
    return tlv(0x02, b)
key = serialization.load_pem_private_key(open(sys.argv[1], "rb").read(), None)
pub = key.public_key().public_numbers()
e = pub.e.to_bytes((pub.e.bit_length() + 8) // 8, "big")
rsapub = tlv(0x30, integer(pub.n) + bytes([0x02, 0x81, len(e)]) + e)  # 0x81: BER, not DER
rsa_alg = tlv(0x30, bytes.fromhex("06092a864886f70d010101") + b"\x05\x00")
spki = tlv(0x30, rsa_alg + tlv(0x03, b"\x00" + rsapub))
name = x509.Name([x509.NameAttribute(NameOID.COUNTRY_NAME, "SE"), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Example"),
                  x509.NameAttribute(NameOID.COMMON_NAME, sys.argv[2])]).public_bytes()
cri = tlv(0x30, integer(0) + name + spki + b"\xa0\x00")
sig = key.sign(cri, padding.PKCS1v15(), hashes.SHA256())
sig_alg = tlv(0x30, bytes.fromhex("06092a864886f70d01010b") + b"\x05\x00")
open(sys.argv[3], "wb").write(tlv(0x30, cri + sig_alg + tlv(0x03, b"\x00" + sig)))
PY
pem_csr "$T/rsaber.der" "$T/rsaber.csr"
openssl req -in "$T/rsaber.csr" -noout -verify 2>/dev/null || fail "openssl does not take the BER-length RSA CSR"
post 202 "$T/rsaber.csr"
SB=$(sha256_of "$T/rsaber.csr")
req 202 "/$SB"
[ "$(state "$SB")" = pending ] || fail "the revoked RSA key in a BER length form was autosigned ($(state "$SB"))"
expect_rc 0 p11ca sign --dir "$D" "$SB"
req 200 "/$SB"
[ "$(spki "$T/body")" = "$(spki "$T/rsa.csr")" ] || fail "the BER-length RSA key was not certified in DER"
pass "SPKI: EC and RSA keys certified as sent, a compressed point uncompressed, a BER length in DER; both still known as revoked"

# --- point 9: weak RSA exponents, SHA-1 / MD5, explicit EC parameters ---
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -pkeyopt rsa_keygen_pubexp:3 -out "$T/e3.key" 2>/dev/null \
	|| fail "openssl genpkey e=3"
openssl req -new -key "$T/e3.key" -subj "/C=SE/O=Example/CN=$(uuid)" -out "$T/e3.csr" 2>/dev/null || fail "req e3"
post 400 "$T/e3.csr"
expect_problem 400 'exponent must be odd and at least 65537'
mk_csr "$T/sha1.csr" "/C=SE/O=Example/CN=$(uuid)" ec -sha1
post 400 "$T/sha1.csr"
expect_problem 400 'signature algorithm .*SHA1.* not accepted'
openssl ecparam -name prime256v1 -param_enc explicit -genkey -noout -out "$T/expl.key" 2>/dev/null || fail "ecparam explicit"
openssl req -new -key "$T/expl.key" -subj "/C=SE/O=Example/CN=$(uuid)" -out "$T/expl.csr" 2>/dev/null || fail "req explicit"
post 400 "$T/expl.csr"
expect_problem 400 'explicit curve parameters'

# --- point 12: cRLNumber (stored, monotonic) and AKI; openssl checks ---
expect_rc 0 p11ca crl --dir "$D"
openssl crl -in "$D/crl.pem" -noout -text >"$T/crl1.txt" || fail "crl 1"
grep -A1 'X509v3 CRL Number' "$T/crl1.txt" | grep -qE '^ +1$' || fail "first CRL number is not 1: $(cat "$T/crl1.txt")"
grep -q 'X509v3 Authority Key Identifier' "$T/crl1.txt" || fail "CRL without AKI"
expect_rc 0 p11ca crl --dir "$D"
openssl crl -in "$D/crl.pem" -noout -text | grep -A1 'X509v3 CRL Number' | grep -qE '^ +2$' || fail "second CRL number is not 2"
openssl crl -in "$D/crl.pem" -noout -CAfile "$D/ca.crt" -verify 2>&1 | grep -q 'verify OK' || fail "openssl crl -verify"
req 200 "/$S2"
cp "$T/body" "$T/u2.crt"
openssl verify -crl_check -x509_strict -CRLfile "$D/crl.pem" -CAfile "$D/ca.crt" "$T/u2.crt" >"$T/v.out" 2>&1 \
	|| fail "verify -crl_check -x509_strict of a good leaf: $(cat "$T/v.out")"
if openssl verify -crl_check -x509_strict -CRLfile "$D/crl.pem" -CAfile "$D/ca.crt" "$T/u1.crt" >"$T/v.out" 2>&1; then
	fail "the revoked leaf verifies with the CRL"
fi
grep -q 'certificate revoked' "$T/v.out" || fail "revoked leaf: $(cat "$T/v.out")"
ca_stop

# --- point 10: leaves never outlive the CA; an expired CA signs nothing ---
D2=$T/ca2
expect_rc 0 p11ca init --dir "$D2" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 --days 1 \
	--autosign uuid
ca_start short "$D2"
U=$(uuid)
mk_csr "$T/cap.csr" "/C=SE/O=Example/CN=$U"
post 202 "$T/cap.csr"
req 200 "/$(sha256_of "$T/cap.csr")"
cp "$T/body" "$T/cap.crt"
[ "$(openssl x509 -in "$T/cap.crt" -noout -enddate)" = "$(openssl x509 -in "$D2/ca.crt" -noout -enddate)" ] \
	|| fail "leaf notAfter $(openssl x509 -in "$T/cap.crt" -noout -enddate) is not the CA's $(openssl x509 -in "$D2/ca.crt" -noout -enddate)"
grep -q "capped at the CA certificate's notAfter" "$CA_LOG" || fail "no log line for the capped lifetime"
openssl verify -x509_strict -CAfile "$D2/ca.crt" "$T/cap.crt" >/dev/null 2>&1 || fail "capped leaf does not verify"
# a request for the administrator, signed after the CA expired (below)
mk_csr "$T/late.csr" "/C=SE/O=Example/CN=late.example.com"
post 202 "$T/late.csr"
ca_stop
# the same CA, its certificate re-issued as expired an hour ago
python3 - "$D2/ca.crt" "$D2/ca.key" <<'PY' || fail "cannot make an expired CA certificate"
import sys, datetime
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
crt = x509.load_pem_x509_certificate(open(sys.argv[1], "rb").read())
key = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
now = datetime.datetime.now(datetime.timezone.utc)
b = (x509.CertificateBuilder().subject_name(crt.subject).issuer_name(crt.issuer)
     .public_key(crt.public_key()).serial_number(crt.serial_number)
     .not_valid_before(now - datetime.timedelta(days=2)).not_valid_after(now - datetime.timedelta(hours=1)))
for e in crt.extensions:
    b = b.add_extension(e.value, e.critical)
open(sys.argv[1], "wb").write(b.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM))
PY
expect_rc 0 p11ca show --dir "$D2" 1
expect_grep 'warning: the CA certificate expired .*nothing will be signed' "$T/err"
ca_start expired "$D2"
grep -q 'warning: the CA certificate expired' "$CA_LOG" || fail "serve did not warn about the expired CA"
ca_stop
expect_rc 1 p11ca sign --dir "$D2" "$(sha256_of "$T/late.csr")"
expect_grep 'the CA certificate expired \(notAfter .*p11ca signs nothing until the CA is renewed' "$T/err"
[ "$(p11ca show --dir "$D2" --json "$(sha256_of "$T/late.csr")" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificates"])')" = 0 ] \
	|| fail "the expired CA issued a certificate"

pass "revocation sticks, exact UUID autosign, no extra names, key and hash policy, validity cap, CRL number"
