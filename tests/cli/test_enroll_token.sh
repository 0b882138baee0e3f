#!/usr/bin/env bash
# p11cert enroll token (the NiFi TLS toolkit's shared-token protocol,
# docs/enroll.md, docs/protocols.md s2) against p11ca in shared-token mode
# on loopback: success (certificate in the token, nifi-cert.pem = the CA,
# config.json 0600 without secrets), nothing to do on a second run, wrong
# token 77, token from the environment, short token 64, CN mismatch 76,
# and two men in the middle (76, nothing stored): a TLS chain of two
# certificates, and a self-signed CN=localhost relay without the token.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"

D=$T/ca
mkdir -m 700 "$D"
TOKEN_TEXT=tok-$(openssl rand -hex 14)   # 32 bytes
printf '%s\n' "$TOKEN_TEXT" >"$D/token"
chmod 600 "$D/token"
expect_rc 0 p11ca init --dir "$D" --ca-hostname localhost --OU NIFI --token-file "$D/token" --listen 127.0.0.1:0
srv_start token "$D"
PORT=$SRV_PORT
grep -q 'shared-token' "$SRV_LOG" || fail "p11ca does not serve the shared-token protocol on the main listener"
CLIENT_PIN=pin-$(openssl rand -hex 4)

# enroll NAME DIR [options...]: p11cert enroll token for CN=NAME, OU=NIFI
enroll() {
	local name=$1 dir=$2
	shift 2
	p11c enroll token --ca-host localhost --port "$PORT" --dn "CN=$name, OU=NIFI" --dir "$dir" "$@"
}

# nothing_stored NAME DIR: no certificate for NAME in the token, no files
nothing_stored() {
	[ "$(n_objects certificate "$1")" = 0 ] || fail "a certificate for $1 was stored"
	[ "$(count_objects cert "$1")" = 0 ] || fail "pkcs11-tool sees a certificate for $1"
	[ ! -e "$2/config.json" ] || fail "config.json written after a failure"
	[ ! -e "$2/nifi-cert.pem" ] || fail "nifi-cert.pem written after a failure"
}

# no_secret FILE: neither the shared token nor the PIN is in FILE
no_secret() {
	! grep -qF "$TOKEN_TEXT" "$1" || fail "the shared token appears in $(basename "$1")"
	! grep -qF "$CLIENT_PIN" "$1" || fail "the PIN appears in $(basename "$1")"
}

# --- success ------------------------------------------------------------------
new_token enroll-tok --pin "$CLIENT_PIN"
S=$T/s1
mkdir -p "$S"
expect_rc 0 enroll client1 "$S" --token-file "$D/token"
no_secret "$T/err"
no_secret "$T/out"
KID=$(cert_next_to_key client1)
expect_rc 0 p11c export --key "pkcs11:object=client1" -o "$T/client1.crt"
verify_cert "$D/ca.crt" "$T/client1.crt"
subj=$(subject_of "$T/client1.crt")
# the NiFi identity: CSR [CN, OU] as written, issued reversed (docs/enroll.md)
[ "$subj" = "CN=client1,OU=NIFI" ] || fail "subject of the issued certificate: $subj"
openssl x509 -in "$T/client1.crt" -noout -ext subjectAltName | grep -q 'DNS:client1' \
	|| fail "no SAN DNS:client1 in the certificate"
export_pubkey "$KID" "$T/pub.der"
openssl x509 -in "$T/client1.crt" -noout -pubkey | openssl pkey -pubin -outform DER >"$T/certpub.der"
cmp -s "$T/pub.der" "$T/certpub.der" || fail "the certificate is not for the token key"
# the trust store is the CA certificate
[ "$(cert_fp256 "$S/nifi-cert.pem")" = "$(cert_fp256 "$D/ca.crt")" ] || fail "nifi-cert.pem is not the CA certificate"
# config.json: mode 0600, the upstream shape, SunPKCS11 config and PKCS#12 truststore, no secrets
[ "$(stat -c %a "$S/config.json")" = 600 ] || fail "config.json mode $(stat -c %a "$S/config.json"), want 600"
json_assert "$S/config.json" "
want = {'days', 'keySize', 'keyPairAlgorithm', 'signingAlgorithm', 'dn', 'keyStore', 'keyStoreType',
        'keyStorePassword', 'keyPassword', 'token', 'caHostname', 'port', 'dnPrefix', 'dnSuffix',
        'additionalCACertificate', 'domainAlternativeNames', 'trustStore', 'trustStorePassword',
        'trustStoreType'}
assert want <= set(j), ('missing', want - set(j))
assert j['keyStore'] == '$S/pkcs11.cfg' and j['keyStoreType'] == 'PKCS11', j['keyStore']
assert j['token'] is None, j['token']
assert j['keyStorePassword'] is None and j['keyPassword'] is None, j
assert j['caHostname'] == 'localhost', j['caHostname']
assert j['port'] == $PORT, j['port']
assert j['dn'] == 'CN=client1, OU=NIFI', j['dn']
assert j['trustStore'] == '$S/truststore.p12' and j['trustStoreType'] == 'PKCS12', j['trustStore']
assert j['keySize'] == 2048 and j['keyPairAlgorithm'] == 'RSA', j
assert 800 <= j['days'] <= 830, j['days']
"
no_secret "$S/config.json"
no_secret "$S/pkcs11.cfg"
grep -q '^# Token .* key pkcs11:.*object=client1' "$S/pkcs11.cfg" || fail "pkcs11.cfg does not name the key: $(cat "$S/pkcs11.cfg")"
no_secret "$SRV_LOG"
# the token is never stored by the CA either
! grep -qaF "$TOKEN_TEXT" "$D/p11ca.db" || fail "p11ca stored the shared token in its database"
NPOST=$(log_count '"POST /" 200 ' "$SRV_LOG")
[ "$NPOST" = 1 ] || fail "want one 200 POST / in the server log, got $NPOST"
pass "right token: certificate in the token, nifi-cert.pem = CA, config.json 0600 without secrets"

expect_rc 0 enroll client1 "$S" --token-file "$D/token"
expect_grep "nothing to do" "$T/err"
[ "$(log_count '"POST /"' "$SRV_LOG")" = "$NPOST" ] || fail "the second run talked to the CA"
[ "$(n_objects certificate client1)" = 1 ] || fail "more than one certificate for client1"
pass "second run: nothing to do"

# --- token from the environment -------------------------------------------------
S=$T/s3
mkdir -p "$S"
expect_rc 0 env P11CERT_CA_TOKEN="$TOKEN_TEXT" timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" \
	--pin-file "$PINF" enroll token --ca-host localhost --port "$PORT" --dn "CN=client3, OU=NIFI" --dir "$S"
cert_next_to_key client3 >/dev/null
[ -s "$S/config.json" ] || fail "no config.json with the token from the environment"
no_secret "$S/config.json"
pass "token from P11CERT_CA_TOKEN"

# --- refusals --------------------------------------------------------------------
S=$T/s2
mkdir -p "$S"
printf '%s\n' "tok-$(openssl rand -hex 14)" >"$T/wrong.token"
expect_rc 77 enroll client2 "$S" --token-file "$T/wrong.token"
expect_grep "forbidden" "$T/err"
nothing_stored client2 "$S"
[ "$(n_objects private-key client2)" = 1 ] || fail "the key made for the attempt was not kept for the next try"
pass "wrong token: 77, forbidden, nothing stored"

printf '%s' "0123456789abcde" >"$T/short.token"
expect_rc 64 enroll client2 "$S" --token-file "$T/short.token"
expect_grep "at least 16" "$T/err"
nothing_stored client2 "$S"
pass "token shorter than 16 bytes: 64"

expect_rc 76 p11c enroll token --ca-host 127.0.0.1 --port "$PORT" --dn "CN=client2, OU=NIFI" --dir "$S" \
	--token-file "$D/token"
expect_grep "CN=localhost" "$T/err"
expect_grep -F "127.0.0.1" "$T/err"
nothing_stored client2 "$S"
pass "--ca-host 127.0.0.1 against a CN=localhost CA: 76, the CN named"

# --- men in the middle -------------------------------------------------------------
# A relay (Python) that passes token requests on to the real CA
cat >"$T/relay.py" <<'PY'
import http.server, os, ssl, sys, urllib.error, urllib.request
cert, key, upstream, portfile, log = sys.argv[1:6]

class Relay(http.server.BaseHTTPRequestHandler):
    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        req = urllib.request.Request(upstream, data=body, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, context=ctx, timeout=10) as r:
                code, data = r.status, r.read()
        except urllib.error.HTTPError as e:
            code, data = e.code, e.read()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        with open(log, "a") as f:
            f.write("relayed %d\n" % code)

    def log_message(self, *a):
        pass

srv = http.server.HTTPServer(("127.0.0.1", 0), Relay)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
ctx.load_cert_chain(cert, key)
srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
with open(portfile + ".tmp", "w") as f:
    f.write(str(srv.server_address[1]))
os.rename(portfile + ".tmp", portfile)
srv.serve_forever()
PY

# 1. another CA's TLS certificate, a leaf under it (chain of two), in front
#    of the real CA: not the CA certificate itself.  (p11ca itself refuses
#    to serve the token protocol there, docs/ca.md.)
D2=$T/ca2
expect_rc 0 p11ca init --dir "$D2" --C SE --O Other --hostname localhost --listen 127.0.0.1:0
cat "$D2/tls.crt" "$D2/ca.crt" >"$T/chain2.crt"
MAIN_LOG=$SRV_LOG
bg relay python3 "$T/relay.py" "$T/chain2.crt" "$D2/tls.key" "https://127.0.0.1:$PORT/" "$T/chain.port" "$T/chain.log"
RELAY=$BG_PID
wait_for 10 "the relay's port file" test -s "$T/chain.port"
MITM_PORT=$(cat "$T/chain.port")
expect_rc 76 p11c enroll token --ca-host localhost --port "$MITM_PORT" --dn "CN=client2, OU=NIFI" --dir "$S" \
	--token-file "$D/token"
expect_grep "chain of 2 certificates" "$T/err"
nothing_stored client2 "$S"
[ ! -s "$T/chain.log" ] || fail "the client sent its request to a server with a chain of two"
kill_pid "$RELAY"
pass "man in the middle with a two-certificate chain: 76, nothing stored"

# 2. a relay with its own self-signed CN=localhost certificate and no
#    token: it passes the request on to the real CA, whose answer carries
#    an HMAC over the real CA's key, not the relay's
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=localhost -days 1 \
	-keyout "$T/relay.key" -out "$T/relay.crt" 2>"$T/openssl.err" || { cat "$T/openssl.err" >&2; fail "relay certificate"; }
SRV_LOG=$MAIN_LOG
bg relay python3 "$T/relay.py" "$T/relay.crt" "$T/relay.key" "https://127.0.0.1:$PORT/" "$T/relay.port" "$T/relay.log"
RELAY=$BG_PID
wait_for 10 "the relay's port file" test -s "$T/relay.port"
RELAY_PORT=$(cat "$T/relay.port")
n_before=$(log_count '"POST /" 200 ' "$SRV_LOG")
expect_rc 76 p11c enroll token --ca-host localhost --port "$RELAY_PORT" --dn "CN=client2, OU=NIFI" --dir "$S" \
	--token-file "$D/token"
expect_grep "man in the middle" "$T/err"
grep -q '^relayed 200$' "$T/relay.log" || fail "the relay did not get a 200 from the real CA (the test is void)"
[ "$(log_count '"POST /" 200 ' "$SRV_LOG")" = $((n_before + 1)) ] || fail "the real CA did not sign through the relay"
nothing_stored client2 "$S"
[ "$(n_objects private-key client2)" = 1 ] || fail "the key for the next try is gone"
kill_pid "$RELAY"
pass "man in the middle relaying to the real CA: HMAC mismatch, 76, nothing stored"

# the key kept from the failed attempts enrolls with the real CA
expect_rc 0 enroll client2 "$S" --token-file "$D/token"
cert_next_to_key client2 >/dev/null
[ -s "$S/config.json" ] || fail "no config.json after the retry"
pass "retry after the failures: enrolled with the key kept from the attempts"
