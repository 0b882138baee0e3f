#!/bin/sh
# Independent reference for p11c_token_hmac() (docs/protocols.md s2), using
# only the openssl CLI:
#   HMAC-SHA256(key = token bytes,
#               msg = SHA-1(subjectPublicKey BIT STRING contents))
# printed as standard base64 with padding.
#
# usage: token_hmac_vector.sh PUBKEY.pem [TOKEN]   (TOKEN default testTokenTestToken)
#
# The BIT STRING is located with asn1parse (the second element of the
# SubjectPublicKeyInfo SEQUENCE); its contents are taken after the header
# and the unused-bits octet.  For EC P-256 that is the 65-byte uncompressed
# point (the last 65 bytes of the DER); for RSA it is the DER RSAPublicKey
# (what `openssl rsa -pubin -RSAPublicKey_out -outform DER` prints).
set -eu
pem=${1:?usage: $0 PUBKEY.pem [TOKEN]}
token=${2:-testTokenTestToken}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl pkey -pubin -in "$pem" -outform DER -out "$tmp/spki.der"
# line like "   23:d=1  hl=2 l=  66 prim: BIT STRING"
line=$(openssl asn1parse -inform DER -in "$tmp/spki.der" | grep 'd=1 .*BIT STRING' | head -n 1)
off=$(echo "$line" | sed 's/^ *\([0-9]*\):.*/\1/')
hl=$(echo "$line" | sed 's/.*hl= *\([0-9]*\).*/\1/')
l=$(echo "$line" | sed 's/.*l= *\([0-9]*\) .*/\1/')
# skip tag+length (hl) and the unused-bits octet
dd if="$tmp/spki.der" of="$tmp/bits" bs=1 skip=$((off + hl + 1)) count=$((l - 1)) 2>/dev/null

openssl dgst -sha1 -binary <"$tmp/bits" >"$tmp/keyid"
openssl dgst -sha256 -mac HMAC -macopt "key:$token" -binary <"$tmp/keyid" | base64
