#!/usr/bin/env bash
# Java uses token identities (issue 15 s1 and s2; docs/enroll.md "Java"):
#  - enroll token against p11ca: the CSR subject in the order written
#    ([CN, OU] for "CN=.., OU=NIFI", like the NiFi Java client), the
#    certificate with the order reversed ([OU, CN], like the NiFi server),
#    which openssl -nameopt RFC2253 and Java's getSubjectDN() print as
#    "CN=node1.example.com, OU=NIFI"; a CSR built like the Java client
#    (openssl, slash form) gets the same identity;
#  - config.json points at pkcs11.cfg (SunPKCS11) and truststore.p12
#    (PKCS#12, no password); SAN entries bare names; no secret anywhere;
#  - keytool lists the token entry through pkcs11.cfg (PIN from a file) and
#    the CA as a trusted entry of truststore.p12;
#  - a Java HTTPS client (tests/java/TokenTls.java) loads the key through
#    SunPKCS11 with the PIN from a file or stdin and does mutual TLS with
#    nginx (ssl_verify_client on) over TLS 1.2 and 1.3;
#  - export --java DIR does the same for a Caramel identity; errors.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"
# shellcheck source=java_lib.sh
. "$_ca_lib_dir/java_lib.sh"

if ! java_ready; then
	skip "no JDK (java and javac; scripts/setup installs openjdk-17-jdk-headless)"
	exit 0
fi

new_token java-tok
D=$T/ca
mkdir -m 700 "$D"
TOKEN_TEXT=tok-$(openssl rand -hex 14)
printf '%s\n' "$TOKEN_TEXT" >"$D/token"
chmod 600 "$D/token"
expect_rc 0 p11ca init --dir "$D" --ca-hostname localhost --hostname localhost --OU NIFI \
	--token-file "$D/token" --token-listen 127.0.0.1:0 --listen 127.0.0.1:0 --san-patterns "DNS:*.example.com"
ca_start ca "$D"
TPORT=$(ca_token_port "$CA_LOG")

# --- s1: p11cert + p11ca give the identity CN=node1.example.com, OU=NIFI ---
S=$T/s
mkdir -p "$S"
expect_rc 0 p11c enroll token --ca-host localhost --port "$TPORT" --token-file "$D/token" --type ec:P-256 \
	--dn 'CN=node1.example.com, OU=NIFI' --san DNS:node1.example.com --san DNS:alt.example.com --dir "$S"
expect_rc 0 p11c export --key "pkcs11:object=node1.example.com" -o "$T/node1.crt"
[ "$(openssl x509 -in "$T/node1.crt" -noout -subject -nameopt RFC2253)" = "subject=CN=node1.example.com,OU=NIFI" ] \
	|| fail "issued subject $(openssl x509 -in "$T/node1.crt" -noout -subject -nameopt RFC2253)"
# DER order [OU, CN]: printed first-to-last
[ "$(openssl x509 -in "$T/node1.crt" -noout -subject -nameopt RFC2253,-dn_rev)" = "subject=OU=NIFI,CN=node1.example.com" ] \
	|| fail "issued DER order $(openssl x509 -in "$T/node1.crt" -noout -subject -nameopt RFC2253,-dn_rev)"
# the CSR p11cert sent was [CN, OU], the Java client's order
p11ca list --dir "$D" --all --json >"$T/calist.json" || fail "p11ca list"
sha=$(python3 -c 'import json,sys; print([r["sha256"] for r in json.load(open(sys.argv[1])) if r["cn"] == "node1.example.com"][0])' "$T/calist.json")
p11ca show --dir "$D" "$sha" --json >"$T/show.json" || fail "p11ca show"
python3 -c 'import json,sys; open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["csr"])' "$T/show.json" "$T/node1.csr"
[ "$(openssl req -in "$T/node1.csr" -noout -subject -nameopt RFC2253,-dn_rev)" = "subject=CN=node1.example.com,OU=NIFI" ] \
	|| fail "CSR DER order $(openssl req -in "$T/node1.csr" -noout -subject -nameopt RFC2253,-dn_rev), want [CN, OU]"
# Java names the node as NiFi does
jrun SubjectOf "$T/node1.crt" >"$T/jsubj" 2>"$T/jsubj.err" || fail "java SubjectOf: $(cat "$T/jsubj.err")"
[ "$(sed -n 1p "$T/jsubj")" = "CN=node1.example.com, OU=NIFI" ] || fail "Java getSubjectDN: $(sed -n 1p "$T/jsubj")"
[ "$(sed -n 2p "$T/jsubj")" = "CN=node1.example.com,OU=NIFI" ] || fail "Java RFC 2253: $(sed -n 2p "$T/jsubj")"

# a CSR built like the Java client (DER [CN, OU]) posted by curl: same identity
openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/j.key" \
	-subj "/CN=node2.example.com/OU=NIFI" -addext subjectAltName=DNS:node2.example.com -out "$T/j.csr" 2>/dev/null \
	|| fail "openssl req"
hm=$(pubkey_of "$T/j.csr" >"$T/j.pub" && sh "$P11C_SOURCE_DIR/tests/vectors/token_hmac_vector.sh" "$T/j.pub" "$TOKEN_TEXT") \
	|| fail "HMAC of the CSR"
python3 -c 'import json,sys; print(json.dumps({"hmac": sys.argv[1], "csr": open(sys.argv[2]).read()}))' "$hm" "$T/j.csr" >"$T/j.json"
req_url 200 "https://localhost:$TPORT/" -H 'Content-Type: application/json' --data-binary @"$T/j.json"
python3 -c 'import json,sys; open(sys.argv[2], "w").write(json.load(open(sys.argv[1]))["pemEncodedCertificate"])' "$T/body" "$T/node2.crt"
jrun SubjectOf "$T/node2.crt" >"$T/jsubj" 2>"$T/jsubj.err" || fail "java SubjectOf: $(cat "$T/jsubj.err")"
[ "$(sed -n 1p "$T/jsubj")" = "CN=node2.example.com, OU=NIFI" ] || fail "Java getSubjectDN (Java-client CSR): $(sed -n 1p "$T/jsubj")"
pass "p11cert and a Java-client-order CSR both yield CN=..., OU=NIFI in openssl and Java"

# --- s2: the files next to config.json ---
[ "$(stat -c %a "$S/config.json")" = 600 ] || fail "config.json mode"
json_assert "$S/config.json" "
assert j['keyStore'] == '$S/pkcs11.cfg', j['keyStore']
assert j['keyStoreType'] == 'PKCS11', j['keyStoreType']
assert j['trustStore'] == '$S/truststore.p12', j['trustStore']
assert j['trustStoreType'] == 'PKCS12', j['trustStoreType']
assert j['trustStorePassword'] is None and j['keyStorePassword'] is None, j
assert j['domainAlternativeNames'] == ['node1.example.com', 'alt.example.com'], j['domainAlternativeNames']
assert j['dn'] == 'CN=node1.example.com, OU=NIFI', j['dn']
"
for f in config.json pkcs11.cfg truststore.p12 nifi-cert.pem; do
	! grep -qF "$TOKEN_TEXT" "$S/$f" || fail "the shared token is in $f"
	! grep -qF "$PIN" "$S/$f" || fail "the PIN is in $f"
done
expect_grep '^library = /' "$S/pkcs11.cfg"
expect_grep '^slot = [0-9]' "$S/pkcs11.cfg"
[ "$(stat -c %a "$S/truststore.p12")" = 644 ] || fail "truststore.p12 mode $(stat -c %a "$S/truststore.p12")"
# keytool: the token entry through the SunPKCS11 configuration, PIN from a file
timeout -k 5 120 keytool -list -storetype PKCS11 -providerclass sun.security.pkcs11.SunPKCS11 \
	-providerArg "$S/pkcs11.cfg" -storepass:file "$PINF" >"$T/kt.out" 2>&1 || fail "keytool -list PKCS11: $(cat "$T/kt.out")"
grep -q '^node1.example.com, PrivateKeyEntry' "$T/kt.out" || fail "keytool does not list the token entry: $(cat "$T/kt.out")"
# keytool: the CA is a trusted entry of the truststore (no password needed)
timeout -k 5 120 keytool -list -keystore "$S/truststore.p12" -storetype PKCS12 -storepass ignored -v \
	>"$T/kts.out" 2>&1 || fail "keytool -list truststore: $(cat "$T/kts.out")"
grep -q 'Entry type: trustedCertEntry' "$T/kts.out" || fail "truststore without a trusted entry: $(cat "$T/kts.out")"
[ "$(grep -c 'Entry type' "$T/kts.out")" = 1 ] || fail "truststore entries: $(grep -c 'Entry type' "$T/kts.out")"
grep -q 'Owner: CN=localhost, OU=NIFI' "$T/kts.out" || fail "truststore entry is not the CA: $(grep Owner "$T/kts.out")"
pass "config.json points at pkcs11.cfg and truststore.p12; keytool reads both"

# --- s2: a Java HTTPS client with the token key, against nginx requiring client certificates ---
nginx_mtls "$D"
jrun TokenTls "$S/pkcs11.cfg" "$S/truststore.p12" "https://localhost:$NG_P13/" "$PINF" >"$T/j13" 2>"$T/j13.err" \
	|| fail "Java TLS 1.3 with the token key: $(cat "$T/j13" "$T/j13.err")"
grep -q '^alias node1.example.com CN=node1.example.com,OU=NIFI$' "$T/j13" || fail "Java KeyStore entry: $(cat "$T/j13")"
grep -q '^status 200$' "$T/j13" || fail "Java TLS 1.3: $(cat "$T/j13")"
grep -q '^hello CN=node1.example.com,OU=NIFI$' "$T/j13" || fail "nginx did not see the token identity: $(cat "$T/j13")"
# the PIN from stdin, TLS 1.2
jrun TokenTls "$S/pkcs11.cfg" "$S/truststore.p12" "https://localhost:$NG_P12/" - <"$PINF" >"$T/j12" 2>"$T/j12.err" \
	|| fail "Java TLS 1.2 with the token key: $(cat "$T/j12" "$T/j12.err")"
grep -q '^hello CN=node1.example.com,OU=NIFI$' "$T/j12" || fail "Java TLS 1.2: $(cat "$T/j12")"
grep -q "TLSv1.3 200 CN=node1.example.com,OU=NIFI" "$T/ng/access.log" || fail "nginx log: $(cat "$T/ng/access.log")"
grep -q "TLSv1.2 200 CN=node1.example.com,OU=NIFI" "$T/ng/access.log" || fail "nginx log: $(cat "$T/ng/access.log")"
pass "Java mTLS with the token key through SunPKCS11 (PIN from a file and from stdin), TLS 1.2 and 1.3"

# --- s2: export --java for a Caramel identity ---
enroll_signed car1 ec:P-256
J=$T/jx
mkdir -p "$J"
expect_rc 0 p11c export --java "$J" --key "pkcs11:object=car1" --ca-file "$D/ca.crt"
jrun TokenTls "$J/pkcs11.cfg" "$J/truststore.p12" "https://localhost:$NG_P13/" "$PINF" >"$T/jc" 2>"$T/jc.err" \
	|| fail "Java with the Caramel identity: $(cat "$T/jc" "$T/jc.err")"
grep -q '^hello CN=car1' "$T/jc" || fail "Java with the Caramel identity: $(cat "$T/jc")"
# errors: no certificate (66), a CA file that did not sign it (65), usage (64)
expect_rc 0 p11c keygen --key "pkcs11:object=bare" --type ec:P-256
expect_rc 66 p11c export --java "$J" --key "pkcs11:object=bare" --ca-file "$D/ca.crt"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other -keyout "$T/o.key" \
	-out "$T/other.crt" -days 1 2>/dev/null
expect_rc 65 p11c export --java "$J" --key "pkcs11:object=car1" --ca-file "$T/other.crt"
expect_grep 'not signed by a certificate in' "$T/err"
expect_rc 64 p11c export --java "$J" --key "pkcs11:object=car1"
expect_rc 64 p11c export --key "pkcs11:object=car1" --ca-file "$D/ca.crt"
pass "export --java for a Caramel identity; errors 66, 65, 64"
