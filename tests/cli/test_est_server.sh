#!/usr/bin/env bash
# p11ca's EST server (RFC 7030, docs/ca.md "EST") driven by clients that are
# not ours: curl and openssl, plus tests/helpers/est_bind.c (OpenSSL alone)
# for the channel binding.  cacerts and csrattrs, HTTP Basic (right, wrong,
# none; p11ca est-user add/list/remove), IDevID client certificates (and
# one from another CA refused), channel binding on TLS 1.2 and TLS 1.3
# (right, wrong, missing), pending approval then p11ca sign / reject,
# simplereenroll over mTLS (subject kept, rekey, a changed subject
# refused), bounded bodies, content types, unknown labels and operations,
# the access log and the rate limit on failed authentications.
# shellcheck source=est_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/est_lib.sh"

EST_BIND=$P11C_BUILD_DIR/tests/est_bind
[ -x "$EST_BIND" ] || fail "EST_BIND=$EST_BIND is not built (target est_bind)"

est_ca ca
D=$EST_DIR
est_bootstrap_ca "$D" idevid-ca
est_bootstrap_ca "$T" other-ca
est_idevid "$D" idevid-ca "$T/dev" "serial-0001"
est_idevid "$T" other-ca "$T/rogue" "serial-6666"

# --- est-user: the password never in argv, a salted hash in a 0600 file ---
printf '%s\n' 'correct horse' | p11ca est-user add alice --dir "$D" 2>"$T/err" || fail "est-user add from stdin: $(cat "$T/err")"
est_user "$D" bob 'bob pw'
[ "$(stat -c %a "$D/est-users")" = 600 ] || fail "est-users mode $(stat -c %a "$D/est-users")"
grep -q 'correct horse' "$D/est-users" && fail "the password is in est-users"
grep -qE '^alice:pbkdf2-sha256:[0-9]+:[0-9a-f]{32}:[0-9a-f]{64}$' "$D/est-users" || fail "est-users line: $(cat "$D/est-users")"
expect_rc 0 p11ca est-user list --dir "$D"
[ "$(cat "$T/out")" = "$(printf 'alice\nbob')" ] || fail "est-user list: $(cat "$T/out")"
expect_rc 64 p11ca est-user add 'bad:name' --dir "$D"
expect_rc 66 p11ca est-user remove nobody --dir "$D"

est_conf "$D" <<'EOF'
rate-limit = 50
[default]
auth = basic
users = est-users
key-type = ec:P-256

[idevid]
auth = cert
bootstrap-ca = idevid-ca.crt

[bound]
auth = basic
users = est-users
binding = required
key-type = rsa:3072

[pending]
auth = basic,cert
users = est-users
bootstrap-ca = idevid-ca.crt
approval = pending
retry-after = 7
EOF
est_start est

# the CertificateRequest names the bootstrap CA beside the CA: clients that
# pick a certificate by CA name offer their IDevID
timeout 10 openssl s_client -connect "127.0.0.1:$CA_PORT" -servername localhost -CAfile "$D/ca.crt" \
	</dev/null >"$T/sclient.out" 2>&1 || true
sed -n '/Acceptable client certificate CA names/,/Signature Algorithms/p' "$T/sclient.out" >"$T/canames"
grep -q 'CN = idevid-ca' "$T/canames" || fail "bootstrap CA not among the client CA names: $(cat "$T/canames")"
grep -q 'CN = p11ca Signing Certificate' "$T/canames" || fail "the CA not among the client CA names"

# --- cacerts (s4.1.3): certs-only PKCS#7, base64 ---
est_get 200 cacerts
expect_type application/pkcs7-mime
[ "$(header Content-Transfer-Encoding)" = base64 ] || fail "cacerts: Content-Transfer-Encoding '$(header Content-Transfer-Encoding)'"
est_certs "$T/body" "$T/cacerts.pem"
[ "$(openssl x509 -in "$T/cacerts.pem" -outform DER | sha256sum)" = "$(openssl x509 -in "$D/ca.crt" -outform DER | sha256sum)" ] \
	|| fail "cacerts is not ca.crt"
est_get 200 cacerts idevid
est_get 404 cacerts nosuchlabel
est_get 405 cacerts "" -X POST -d x

# --- csrattrs (s4.5.2) ---
est_get 200 csrattrs
expect_type application/csrattrs
base64 -d <"$T/body" | openssl asn1parse -inform DER >"$T/attrs.txt" 2>&1 || fail "csrattrs: not DER: $(cat "$T/attrs.txt")"
expect_grep ':id-ecPublicKey' "$T/attrs.txt"
expect_grep ':prime256v1' "$T/attrs.txt"
expect_nogrep 'challengePassword' "$T/attrs.txt"
est_get 200 csrattrs bound
base64 -d <"$T/body" | openssl asn1parse -inform DER >"$T/attrs.txt" 2>&1 || fail "csrattrs bound: not DER"
expect_grep ':challengePassword' "$T/attrs.txt"
expect_grep ':rsaEncryption' "$T/attrs.txt"
expect_grep 'INTEGER *:0C00' "$T/attrs.txt"

# --- simpleenroll with HTTP Basic ---
est_csr "$T/d1.csr" "$EST_SUBJ/CN=dev1"
est_post 401 simpleenroll "$T/d1.csr.b64"
case $(header WWW-Authenticate) in Basic\ realm=*) ;; *) fail "401 without WWW-Authenticate Basic: '$(header WWW-Authenticate)'" ;; esac
est_post 401 simpleenroll "$T/d1.csr.b64" "" -u 'alice:wrong password'
expect_grep 'wrong user name or password' "$T/body"
est_post 401 simpleenroll "$T/d1.csr.b64" "" -u 'mallory:correct horse'
est_post 200 simpleenroll "$T/d1.csr.b64" "" -u 'alice:correct horse'
expect_type application/pkcs7-mime
est_certs "$T/body" "$T/d1.crt"
expect_leaf "$T/d1.crt" dev1 "$T/d1.csr"
# the same request again: the same certificate (s4.2.3)
est_post 200 simpleenroll "$T/d1.csr.b64" "" -u 'bob:bob pw'
est_certs "$T/body" "$T/d1b.crt"
[ "$(cert_serial "$T/d1.crt")" = "$(cert_serial "$T/d1b.crt")" ] || fail "repeated request got another certificate"
p11ca list --dir "$D" --all >"$T/list" 2>&1 || fail "p11ca list"
grep -E '^1 +signed +short +est ' "$T/list" >/dev/null || fail "list: no signed est request: $(cat "$T/list")"
grep -q '"POST /.well-known/est/simpleenroll" 200 [0-9]* est simpleenroll: request 1 signed (user alice)' "$CA_LOG" \
	|| fail "access log: no EST line for the enrollment"
# policy shared with Caramel: the subject must start with the CA's C, O
est_csr "$T/bad.csr" "/O=Else/CN=dev2"
est_post 400 simpleenroll "$T/bad.csr.b64" "" -u 'alice:correct horse'
expect_grep 'bad subject' "$T/body"
# bodies: not base64, not a CSR, a wrong type, too large (ours, then httpd's)
printf 'not base64 !!!' >"$T/junk"
est_post 400 simpleenroll "$T/junk" "" -u 'alice:correct horse'
printf 'aGVsbG8gd29ybGQ=\n' >"$T/junk"
est_post 400 simpleenroll "$T/junk" "" -u 'alice:correct horse'
req_url 415 "$EST_URL/simpleenroll" -u 'alice:correct horse' -H 'Content-Type: text/plain' --data-binary @"$T/d1.csr.b64"
head -c 20000 /dev/zero | tr '\0' 'A' >"$T/big"
est_post 413 simpleenroll "$T/big" "" -u 'alice:correct horse'
head -c 70000 /dev/zero | tr '\0' 'A' >"$T/huge"
# over httpd's 64 KiB: 413 before the body is sent (Expect: 100-continue;
# without it the server may close while curl still sends)
est_post 413 simpleenroll "$T/huge" "" -u 'alice:correct horse' -H 'Expect: 100-continue'
est_get 405 simpleenroll
est_post 501 serverkeygen "$T/d1.csr.b64" "" -u 'alice:correct horse'
est_get 404 nosuchop

# --- IDevID: a client certificate chaining to the bootstrap CA ---
est_csr "$T/l1.csr" "$EST_SUBJ/CN=ldev1"
est_post 403 simpleenroll "$T/l1.csr.b64" idevid
est_post 200 simpleenroll "$T/l1.csr.b64" idevid --cert "$T/dev.crt" --key "$T/dev.key"
est_certs "$T/body" "$T/l1.crt"
expect_leaf "$T/l1.crt" ldev1 "$T/l1.csr"
grep -q 'simpleenroll: request [0-9]* signed (bootstrap certificate)' "$CA_LOG" || fail "access log: no bootstrap line"
# a device of another maker (another bootstrap CA) is refused
est_csr "$T/r1.csr" "$EST_SUBJ/CN=rogue1"
est_post 403 simpleenroll "$T/r1.csr.b64" idevid --cert "$T/rogue.crt" --key "$T/rogue.key"
expect_grep 'does not chain' "$T/body"
# a password does not open a cert-only profile
est_post 403 simpleenroll "$T/r1.csr.b64" idevid -u 'alice:correct horse'

# --- channel binding (s3.5) on TLS 1.2 and TLS 1.3 ---
openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out "$T/b.key" 2>/dev/null || fail "rsa key"
for v in 1.2 1.3; do
	code=$("$EST_BIND" 127.0.0.1 "$CA_PORT" "$D/ca.crt" "$v" /.well-known/est/bound/simpleenroll "$T/b.key" \
		"$EST_SUBJ/CN=bound-$v" "$T/b.out" 'alice:correct horse' - - good) || fail "est_bind TLS $v"
	[ "$code" = 200 ] || fail "binding on TLS $v: HTTP $code: $(cat "$T/b.out")"
	est_certs "$T/b.out" "$T/b$v.crt"
	openssl x509 -in "$T/b$v.crt" -noout -subject | grep -q "CN = bound-$v" || fail "TLS $v: wrong subject"
	code=$("$EST_BIND" 127.0.0.1 "$CA_PORT" "$D/ca.crt" "$v" /.well-known/est/bound/simpleenroll "$T/b.key" \
		"$EST_SUBJ/CN=wrong-$v" "$T/b.out" 'alice:correct horse' - - wrong) || fail "est_bind TLS $v"
	[ "$code" = 403 ] || fail "wrong binding on TLS $v: HTTP $code"
	want=tls-unique
	[ "$v" = 1.3 ] && want=tls-exporter
	grep -q "$want" "$T/b.out" || fail "TLS $v: the 403 does not name $want: $(cat "$T/b.out")"
	code=$("$EST_BIND" 127.0.0.1 "$CA_PORT" "$D/ca.crt" "$v" /.well-known/est/bound/simpleenroll "$T/b.key" \
		"$EST_SUBJ/CN=none-$v" "$T/b.out" 'alice:correct horse' - - none) || fail "est_bind TLS $v"
	[ "$code" = 403 ] || fail "no binding on TLS $v: HTTP $code"
done
# the binding of a connection is not valid on another one: the CSR est_bind
# made for its own connection, replayed by curl
est_csr "$T/nb.csr" "$EST_SUBJ/CN=nobind" rsa:2048
est_post 403 simpleenroll "$T/nb.csr.b64" bound -u 'alice:correct horse'
expect_grep 'no challengePassword' "$T/body"
# not bound where the profile does not ask: the binding test helper on the default profile
code=$("$EST_BIND" 127.0.0.1 "$CA_PORT" "$D/ca.crt" 1.3 /.well-known/est/simpleenroll "$T/b.key" \
	"$EST_SUBJ/CN=free" "$T/b.out" 'alice:correct horse' - - none) || fail "est_bind default"
[ "$code" = 200 ] || fail "default profile without binding: HTTP $code"

# --- pending approval: 202 + Retry-After, p11ca sign, then the certificate ---
est_csr "$T/p1.csr" "$EST_SUBJ/CN=pend1"
est_post 202 simpleenroll "$T/p1.csr.b64" pending -u 'alice:correct horse'
[ "$(header Retry-After)" = 7 ] || fail "202 Retry-After '$(header Retry-After)'"
est_post 202 simpleenroll "$T/p1.csr.b64" pending -u 'alice:correct horse'
p11ca list --dir "$D" --pending >"$T/list" 2>&1 || fail "p11ca list --pending"
id=$(awk '$4 == "est" && /CN=pend1/ { print $1 }' "$T/list")
[ -n "$id" ] || fail "pending EST request not listed: $(cat "$T/list")"
[ "$(grep -c 'CN=pend1' "$T/list")" = 1 ] || fail "the repeated POST stored a second request"
expect_rc 0 p11ca sign --dir "$D" "$id"
# fetched by an identical POST, here authenticated by the IDevID instead
est_post 200 simpleenroll "$T/p1.csr.b64" pending --cert "$T/dev.crt" --key "$T/dev.key"
est_certs "$T/body" "$T/p1.crt"
expect_leaf "$T/p1.crt" pend1 "$T/p1.csr"
est_csr "$T/p2.csr" "$EST_SUBJ/CN=pend2"
est_post 202 simpleenroll "$T/p2.csr.b64" pending -u 'alice:correct horse'
p11ca list --dir "$D" --pending >"$T/list" 2>&1 || fail "p11ca list --pending"
id=$(awk '$4 == "est" && /CN=pend2/ { print $1 }' "$T/list")
expect_rc 0 p11ca reject --dir "$D" "$id"
est_post 403 simpleenroll "$T/p2.csr.b64" pending -u 'alice:correct horse'
expect_grep rejected "$T/body"

# --- simplereenroll over mTLS with the certificate from this CA ---
est_post 403 simplereenroll "$T/d1.csr.b64" "" -u 'alice:correct horse'
est_post 403 simplereenroll "$T/d1.csr.b64" "" --cert "$T/dev.crt" --key "$T/dev.key"
est_post 200 simplereenroll "$T/d1.csr.b64" "" --cert "$T/d1.crt" --key "$T/d1.csr.key"
est_certs "$T/body" "$T/d1r.crt"
expect_leaf "$T/d1r.crt" dev1 "$T/d1.csr"
[ "$(cert_serial "$T/d1r.crt")" != "$(cert_serial "$T/d1.crt")" ] || fail "reenroll returned the old certificate"
[ "$(openssl x509 -in "$T/d1r.crt" -noout -subject)" = "$(openssl x509 -in "$T/d1.crt" -noout -subject)" ] \
	|| fail "reenroll changed the subject"
# rekey: a new key, the same subject
est_csr "$T/d1k.csr" "$EST_SUBJ/CN=dev1"
est_post 200 simplereenroll "$T/d1k.csr.b64" "" --cert "$T/d1r.crt" --key "$T/d1.csr.key"
est_certs "$T/body" "$T/d1k.crt"
expect_leaf "$T/d1k.crt" dev1 "$T/d1k.csr"
# another subject, or another SAN, is refused
est_csr "$T/d1x.csr" "$EST_SUBJ/CN=dev9"
est_post 403 simplereenroll "$T/d1x.csr.b64" "" --cert "$T/d1r.crt" --key "$T/d1.csr.key"
expect_grep 'subject and subjectAltName' "$T/body"
# a revoked certificate renews nothing
expect_rc 0 p11ca revoke --dir "$D" "$(cert_serial "$T/d1r.crt" | tr 'A-F' 'a-f')"
est_post 403 simplereenroll "$T/d1.csr.b64" "" --cert "$T/d1r.crt" --key "$T/d1.csr.key"

# --- est-user remove: alice is refused at once (no restart) ---
expect_rc 0 p11ca est-user remove alice --dir "$D"
est_csr "$T/a2.csr" "$EST_SUBJ/CN=dev3"
est_post 401 simpleenroll "$T/a2.csr.b64" "" -u 'alice:correct horse'
est_post 200 simpleenroll "$T/a2.csr.b64" "" -u 'bob:bob pw'

# --- rate limit: failed authentications per address ---
ca_stop
[ "$STOP_RC" = 0 ] || fail "p11ca serve exited $STOP_RC after SIGTERM"
sed -i 's/^rate-limit = 50$/rate-limit = 2/' "$D/est.conf"
est_start est2
est_post 401 simpleenroll "$T/a2.csr.b64" "" -u 'bob:nope'
est_post 401 simpleenroll "$T/a2.csr.b64" "" -u 'bob:nope'
est_post 429 simpleenroll "$T/a2.csr.b64" "" -u 'bob:bob pw'
[ -n "$(header Retry-After)" ] || fail "429 without Retry-After"
est_get 200 cacerts
# an EST configuration error stops the server at start with its line
ca_stop
[ "$STOP_RC" = 0 ] || fail "p11ca serve exited $STOP_RC after SIGTERM"
printf '[default]\nauth = basic\n' >"$D/est.conf"
expect_rc 1 p11ca serve --dir "$D"
expect_grep 'est.conf: profile \[default\]: auth basic needs users' "$T/err"
printf '[default]\nauthx = basic\n' >"$D/est.conf"
expect_rc 1 p11ca serve --dir "$D"
expect_grep 'est.conf:2: unknown setting' "$T/err"
pass "EST server: cacerts, csrattrs, Basic, IDevID, binding TLS 1.2/1.3, pending, reenroll, limits"
