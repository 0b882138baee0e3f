#!/usr/bin/env bash
# p11cert curl: mutual TLS with token keys (EC and RSA) against a real nginx
# with ssl_verify_client on, over TLS 1.2 and 1.3, and openssl s_server.
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"


new_token curl
D=$T/ca
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 >/dev/null 2>"$T/init.err" ||
	fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"

enroll_signed ec-client ec:P-256
enroll_signed rsa-client rsa:2048
pass "EC and RSA token keys enrolled"

# nginx: TLS 1.2 only and TLS 1.3 only, client certificates required;
# nginx_mtls checks that it answers 400 without one
nginx_mtls "$D"
P12=$NG_P12
P13=$NG_P13
pass "nginx answers 400 without a client certificate"

for id in ec-client rsa-client; do
	for port in $P12 $P13; do
		expect_rc 0 p11c curl "https://localhost:$port/" --key "pkcs11:token=$TOKEN;object=$id" --cacert "$D/ca.crt"
		expect_grep "hello CN=$id,O=Example,C=SE" "$T/out"
	done
done
grep -q "TLSv1.2 200 CN=ec-client" "$T/ng/access.log" || fail "nginx log lacks the TLS 1.2 EC client: $(cat "$T/ng/access.log")"
grep -q "TLSv1.3 200 CN=ec-client" "$T/ng/access.log" || fail "nginx log lacks the TLS 1.3 EC client"
grep -q "TLSv1.2 200 CN=rsa-client" "$T/ng/access.log" || fail "nginx log lacks the TLS 1.2 RSA client"
grep -q "TLSv1.3 200 CN=rsa-client" "$T/ng/access.log" || fail "nginx log lacks the TLS 1.3 RSA client"
pass "curl with EC and RSA token keys over TLS 1.2 and 1.3; nginx logs the client subject"

# everyday options: -X, -H, --data-binary @file, -o, -i, --fail
head -c 1000 /dev/urandom >"$T/payload"
expect_rc 0 p11c curl "https://localhost:$P13/echo" --key "pkcs11:token=$TOKEN;object=ec-client" \
	--cacert "$D/ca.crt" -X PUT -H 'X-Test: 1' --data-binary @"$T/payload" -o "$T/answer" -i
expect_grep '^HTTP/1.1 200' "$T/answer"
expect_grep 'len=1000 method=PUT' "$T/answer"
[ "$(stat -c %a "$T/answer")" = 644 ] || fail "-o file mode $(stat -c %a "$T/answer")"
expect_rc 22 p11c curl "https://localhost:$P13/missing" --key "pkcs11:token=$TOKEN;object=ec-client" \
	--cacert "$D/ca.crt" --fail -X DELETE
pass "-X -H --data-binary -o -i --fail"

# peer verification always on: another CA as --cacert fails with 76; -k refused
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=other -keyout "$T/o.key" \
	-out "$T/other.crt" -days 1 2>/dev/null
expect_rc 76 p11c curl "https://localhost:$P13/" --key "pkcs11:token=$TOKEN;object=ec-client" --cacert "$T/other.crt"
expect_grep -i 'certificate' "$T/err"
expect_rc 64 p11c curl "https://localhost:$P13/" --key "pkcs11:token=$TOKEN;object=ec-client" -k
# a key without a certificate: clear error
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=bare" --type ec:P-256
expect_rc 66 p11c curl "https://localhost:$P13/" --key "pkcs11:token=$TOKEN;object=bare" --cacert "$D/ca.crt"
expect_grep 'no certificate' "$T/err"
# -v never prints the PIN
expect_rc 0 p11c -v curl "https://localhost:$P13/" --key "pkcs11:token=$TOKEN;object=ec-client" --cacert "$D/ca.crt"
grep -qF -- "$PIN" "$T/out" "$T/err" && fail "the PIN appears in -v output"
pass "verification always on; clear errors; no PIN in -v output"

# the library example: an application's own OpenSSL code with the token identity
EX=$P11C_BUILD_DIR/examples/tls_client
[ -x "$EX" ] || fail "examples/tls_client not built"
P11CERT_PIN=$PIN P11CERT_MODULE=$MOD timeout 60 "$EX" localhost "$P13" "$D/ca.crt" "pkcs11:token=$TOKEN;object=rsa-client" \
	>"$T/ex.out" 2>"$T/ex.err" || fail "tls_client failed: $(cat "$T/ex.err")"
grep -q "hello CN=rsa-client" "$T/ex.out" || fail "tls_client: unexpected answer: $(cat "$T/ex.out")"
grep -q "TLSv1.3 with the token key" "$T/ex.err" || fail "tls_client: $(cat "$T/ex.err")"
pass "examples/tls_client (p11c_tls_client_ctx with plain OpenSSL) gets 200 from nginx"

# openssl s_server -Verify as a second peer
PS=$(free_port)
openssl s_server -Verify 1 -verify_return_error -CAfile "$D/ca.crt" -cert "$D/tls.crt" -key "$D/tls.key" \
	-accept "127.0.0.1:$PS" -www >"$T/ss.log" 2>&1 </dev/null &
CA_PIDS+=("$!")
for _ in $(seq 50); do grep -q ACCEPT "$T/ss.log" && break; sleep 0.1; done
expect_rc 0 p11c curl "https://localhost:$PS/" --key "pkcs11:token=$TOKEN;object=rsa-client" --cacert "$D/ca.crt"
expect_grep 'Client certificate' "$T/out"
expect_grep 'CN *= *rsa-client' "$T/out"
pass "openssl s_server -Verify accepts the token key's certificate"
