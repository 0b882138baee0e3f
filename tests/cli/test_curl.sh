#!/usr/bin/env bash
# p11cert curl: mutual TLS with token keys (EC and RSA) against a real nginx
# with ssl_verify_client on, over TLS 1.2 and 1.3, and openssl s_server.
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

NGINX=/usr/sbin/nginx
[ -x "$NGINX" ] || fail "nginx not installed (scripts/setup installs nginx-light)"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

new_token curl
D=$T/ca
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 >/dev/null 2>"$T/init.err" ||
	fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"

# enroll an EC and an RSA token key (embedded mode; the administrator signs)
enroll() {
	local id=$1 type=$2 sha
	expect_rc 69 p11c enroll caramel "localhost:$CA_PORT" "$id" --type "$type" --ca-file "$D/ca.crt" --dir "$T/s" --once
	sha=$(sha256sum "$T/s/$id.csr" | cut -d' ' -f1)
	p11ca sign --dir "$D" "$sha" 2>/dev/null || fail "p11ca sign $id"
	expect_rc 0 p11c enroll caramel "localhost:$CA_PORT" "$id" --ca-file "$D/ca.crt" --dir "$T/s" --once
}
mkdir -p "$T/s"
enroll ec-client ec:P-256
enroll rsa-client rsa:2048
pass "EC and RSA token keys enrolled"

# nginx: two servers, TLS 1.2 only and TLS 1.3 only, client certificates required
P12=$(free_port)
P13=$(free_port)
mkdir -p "$T/ng"
user_line=
[ "$(id -u)" = 0 ] && user_line='user root;'
cat >"$T/ng/nginx.conf" <<CONF
$user_line
daemon off;
master_process off;
pid $T/ng/nginx.pid;
error_log $T/ng/error.log;
events { worker_connections 256; }
http {
	client_body_temp_path $T/ng/body;
	proxy_temp_path $T/ng/proxy;
	fastcgi_temp_path $T/ng/fastcgi;
	uwsgi_temp_path $T/ng/uwsgi;
	scgi_temp_path $T/ng/scgi;
	log_format m '\$ssl_protocol \$status \$ssl_client_s_dn';
	access_log $T/ng/access.log m;
	ssl_certificate $D/tls.crt;
	ssl_certificate_key $D/tls.key;
	ssl_client_certificate $D/ca.crt;
	ssl_verify_client on;
	server { listen 127.0.0.1:$P12 ssl; ssl_protocols TLSv1.2;
		location / { return 200 "hello \$ssl_client_s_dn\n"; } }
	server { listen 127.0.0.1:$P13 ssl; ssl_protocols TLSv1.3;
		location / { return 200 "hello \$ssl_client_s_dn\n"; }
		location /missing { return 404; }
		location /echo { client_max_body_size 1m; return 200 "len=\$content_length method=\$request_method\n"; } }
}
CONF
# one process (master_process off): killed by PID at exit, no orphaned
# workers holding the test's output open
"$NGINX" -p "$T/ng" -c "$T/ng/nginx.conf" >/dev/null 2>"$T/ng/start.err" &
CA_PIDS+=("$!")
for _ in $(seq 50); do
	curl -s --cacert "$D/ca.crt" "https://localhost:$P13/" -o /dev/null 2>/dev/null && break
	[ -s "$T/ng/access.log" ] && break
	sleep 0.1
done

# without a client certificate nginx refuses: 400
code=$(curl -s -o /dev/null -w '%{http_code}' --cacert "$D/ca.crt" "https://localhost:$P13/")
[ "$code" = 400 ] || fail "nginx without a client certificate answered $code, not 400"
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
