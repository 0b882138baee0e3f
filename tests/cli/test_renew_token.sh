#!/usr/bin/env bash
# p11cert renew for shared-token identities against p11ca: enroll token
# writes DIR/CN.enroll (no secret); renew uses the shared token while its
# file exists, and p11ca's POST /renew over mutual TLS once it is gone;
# --rekey works both ways; the renewed subject is the old one byte for byte
# (DER), whatever RDN order the token endpoint uses; check is unchanged;
# /renew refuses clients without a valid, unrevoked certificate of the CA.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"

D=$T/ca
mkdir -m 700 "$D"
TOKEN_TEXT=tok-$(openssl rand -hex 14)
printf '%s\n' "$TOKEN_TEXT" >"$D/token"
chmod 600 "$D/token"
expect_rc 0 p11ca init --dir "$D" --ca-hostname localhost --OU NIFI --token-file "$D/token" --listen 127.0.0.1:0
srv_start token "$D"
PORT=$SRV_PORT
new_token renew-tok
S=$T/s
mkdir -p "$S"
TF=$T/client-token
cp "$D/token" "$TF"
KEY=pkcs11:object=node1

# subject_der CERT: hex of the subject Name's DER bytes, as encoded
subject_der() {
	openssl x509 -in "$1" -outform DER | python3 -c '
import sys
d = sys.stdin.buffer.read()
def tlv(b, i):
    n = b[i + 1]; h = 2
    if n & 0x80:
        k = n & 0x7f; n = int.from_bytes(b[i + 2:i + 2 + k], "big"); h = 2 + k
    return i + h, i + h + n          # start of contents, end
s, _ = tlv(d, 0)                     # Certificate
s, e = tlv(d, s)                     # TBSCertificate contents
i = s
fields = []
while i < e:
    cs, ce = tlv(d, i); fields.append((i, ce)); i = ce
off = 1 if d[fields[0][0]] == 0xa0 else 0   # [0] version
a, b = fields[off + 4]               # serial, sig, issuer, validity, subject
print(d[a:b].hex())'
}
cur() { p11c export --key "$KEY" -o "$T/$1.pem" >/dev/null 2>&1 || fail "export $1"; }
serial() { openssl x509 -in "$T/$1.pem" -noout -serial; }

expect_rc 0 p11c enroll token --ca-host localhost --port "$PORT" --dn "CN=node1, OU=NIFI" --dir "$S" --token-file "$TF"
[ -s "$S/node1.enroll" ] || fail "enroll token wrote no node1.enroll"
! grep -qF "$TOKEN_TEXT" "$S/node1.enroll" || fail "the shared token is in node1.enroll"
json_assert "$S/node1.enroll" "assert j['protocol'] == 'token' and j['port'] == $PORT and j['token_file'] == '$TF', j"
cur c0
SUBJ=$(subject_der "$T/c0.pem")
KID0=$(cert_next_to_key node1)
pass "enroll token records the identity for renew (token file path, no secret)"

# 1. the token file is there: renewed with the shared token, same key
expect_rc 0 p11c renew --dir "$S" --id node1
expect_grep 'renewed with the shared token' "$T/err"
cur c1
[ "$(serial c1)" != "$(serial c0)" ] || fail "not renewed"
[ "$(subject_der "$T/c1.pem")" = "$SUBJ" ] || fail "subject changed: $(subject_of "$T/c0.pem") -> $(subject_of "$T/c1.pem")"
[ "$(cert_next_to_key node1)" = "$KID0" ] || fail "the key changed without --rekey"
verify_cert "$D/ca.crt" "$T/c1.pem"
pass "renew with the shared token: new certificate, same key, same subject bytes"

# 2. the token is gone: renewed over mTLS at p11ca's /renew
rm -f "$TF"
expect_rc 0 p11c renew --dir "$S" --id node1
expect_grep 'renewed over mutual TLS' "$T/err"
expect_grep -F 'renewed over mTLS' "$SRV_LOG"
cur c2
[ "$(serial c2)" != "$(serial c1)" ] || fail "not renewed over mTLS"
[ "$(subject_der "$T/c2.pem")" = "$SUBJ" ] || fail "subject changed over mTLS: $(subject_of "$T/c2.pem")"
[ "$(cert_next_to_key node1)" = "$KID0" ] || fail "the key changed without --rekey"
openssl x509 -in "$T/c2.pem" -noout -ext subjectAltName | grep -q 'DNS:node1' || fail "SAN lost over mTLS"
verify_cert "$D/ca.crt" "$T/c2.pem"
pass "renew without the token: over mTLS, same key, same subject bytes and SAN"

# 3. rekey over mTLS, then with the token again
expect_rc 0 p11c renew --dir "$S" --id node1 --rekey
expect_grep 'renewed over mutual TLS' "$T/err"
cur c3
KID3=$(cert_next_to_key node1)
[ "$KID3" != "$KID0" ] || fail "rekey over mTLS kept the key"
[ "$(subject_der "$T/c3.pem")" = "$SUBJ" ] || fail "subject changed by the rekey"
[ "$(n_objects private-key node1~rekey)" = 0 ] || fail "a ~rekey key is left"
[ "$(key_ids node1 | wc -l)" = 1 ] || fail "not one key node1 after the rekey"
cp "$D/token" "$TF"
expect_rc 0 p11c renew --dir "$S" --id node1 --rekey
expect_grep 'renewed with the shared token' "$T/err"
cur c4
KID4=$(cert_next_to_key node1)
[ "$KID4" != "$KID3" ] || fail "rekey with the token kept the key"
[ "$(subject_der "$T/c4.pem")" = "$SUBJ" ] || fail "subject changed by the rekey with the token"
expect_rc 1 p11c check --key "$KEY"
pass "renew --rekey over mTLS and with the token: one new key, same subject; check unchanged"

# 4. /renew refuses a client without a certificate of the CA, and a revoked one
code=$(curl -s --noproxy '*' --max-time 10 -o "$T/body" -w '%{http_code}' --cacert "$D/ca.crt" \
	-H 'Content-Type: application/json' --data '{"csr":"x"}' "https://localhost:$PORT/renew") || true
[ "$code" = 403 ] || fail "/renew without a client certificate answered $code"
rm -f "$TF"
p11ca revoke --dir "$D" "$(serial c4 | sed 's/^serial=//' | tr 'A-F' 'a-f' | sed 's/^0*//')" >/dev/null 2>&1 ||
	fail "p11ca revoke"
expect_rc 77 p11c renew --dir "$S" --id node1
expect_grep 'valid, unrevoked certificate' "$T/err"
cur c5
[ "$(serial c5)" = "$(serial c4)" ] || fail "a refused renewal changed the certificate"
pass "/renew: 403 without a client certificate and for a revoked one; nothing changed"
