#!/usr/bin/env bash
# Issue 16: libcurl must do its TLS with OpenSSL (the token key and our TLS
# checks are OpenSSL callbacks that other backends skip).
# 1. configure: cmake/CurlOpenSSL.cmake stops against Debian's GnuTLS (and
#    NSS) libcurl, naming libcurl4-openssl-dev; passes on the OpenSSL one;
# 2. run time: p11cert linked with libcurl-gnutls.so.4 (tests/p11cert_gnutls,
#    as a build that slipped past configure) refuses curl, enroll caramel,
#    enroll token and renew with that message, before touching the token,
#    and no request reaches p11ca; so does the library in examples/enroll_mem
#    (tests/enroll_mem_gnutls);
# 3. a refused curl_easy_setopt (test hook P11CERT_TEST_SETOPT_FAIL) stops
#    the request: exit 69, the option named, nothing reaches p11ca.
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

# flat FILE: the text on one line, runs of blanks squeezed (cmake wraps)
flat() { tr '\n' ' ' <"$1" | tr -s ' '; }
# expect_flat PATTERN FILE: like expect_grep, across cmake's line breaks
expect_flat() { flat "$2" | grep -qE -- "$1" || fail "no '$1' in $(basename "$2"): $(cat "$2")"; }
# requests the CA has logged so far
ca_requests() { grep -c ' HTTP/' "$CA_LOG" || true; }

libdir=$(pkg-config --variable=libdir libcurl)
GNUTLS_LIB=$libdir/libcurl-gnutls.so.4
NSS_LIB=$libdir/libcurl-nss.so.4
GNUTLS_BIN=$P11C_BUILD_DIR/tests/p11cert_gnutls
ENROLL_MEM_GNUTLS=$P11C_BUILD_DIR/tests/enroll_mem_gnutls
[ -e "$GNUTLS_LIB" ] || fail "$GNUTLS_LIB missing (scripts/setup installs libcurl3-gnutls)"
for b in "$GNUTLS_BIN" "$ENROLL_MEM_GNUTLS"; do
	[ -x "$b" ] || fail "$b not built (tests/CMakeLists.txt builds it when libcurl-gnutls.so.4 is found)"
done

# --- 1. configure ------------------------------------------------------------
CB=$P11C_SOURCE_DIR/tests/cmake/curl_backend
expect_rc 1 cmake -S "$CB" -B "$T/cb-gnutls" -DCURL_LIBRARY="$GNUTLS_LIB"
expect_flat 'libcurl 7?[0-9.]* does its TLS with GnuTLS/[0-9.]+, not OpenSSL' "$T/err"
expect_flat 'install libcurl4-openssl-dev' "$T/err"
expect_flat 'CURLOPT_SSL_CTX_FUNCTION' "$T/err"
if [ -e "$NSS_LIB" ]; then
	expect_rc 1 cmake -S "$CB" -B "$T/cb-nss" -DCURL_LIBRARY="$NSS_LIB"
	expect_flat 'does its TLS with NSS/[0-9.]+, not OpenSSL' "$T/err"
fi
expect_rc 0 cmake -S "$CB" -B "$T/cb-openssl" -DCURL_LIBRARY="$libdir/libcurl.so"
expect_grep 'libcurl TLS backend: libcurl [0-9.]+ with OpenSSL/3' "$T/out"
pass "configure stops on the GnuTLS libcurl naming libcurl4-openssl-dev, passes on the OpenSSL one"

# --- a CA, a token key with a certificate (the OpenSSL build) ------------------
new_token backend
D=$T/ca
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 >/dev/null 2>"$T/init.err" ||
	fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"
enroll_signed web ec:P-256
KEY="pkcs11:token=$TOKEN;object=web"
expect_rc 0 p11c curl "$CA_URL/root.crt" --key "$KEY" --cacert "$D/ca.crt"
expect_grep 'BEGIN CERTIFICATE' "$T/out"
TD=$T/tca
mkdir -m 700 "$TD"
printf 'tok-%s\n' "$(openssl rand -hex 14)" >"$TD/token"
chmod 600 "$TD/token"
expect_rc 0 p11ca init --dir "$TD" --ca-hostname localhost --OU NIFI --token-file "$TD/token" --listen 127.0.0.1:0
MAIN_LOG=$CA_LOG MAIN_PORT=$CA_PORT
ca_start tca "$TD"
TOK_LOG=$CA_LOG TOK_PORT=$CA_PORT
CA_LOG=$MAIN_LOG CA_PORT=$MAIN_PORT CA_DIR=$D CA_URL=https://localhost:$MAIN_PORT
objects >"$T/objects.before"

# --- 2. run time, the GnuTLS libcurl ------------------------------------------
# gnutls CMD...: the GnuTLS build; exit 69 and the message naming the backend
gnutls() {
	local want=$1
	shift
	P11CERT=$GNUTLS_BIN expect_rc "$want" p11c "$@"
	expect_grep 'does its TLS with GnuTLS/[0-9.]+, not OpenSSL' "$T/err"
	expect_grep 'install libcurl4-openssl-dev' "$T/err"
}
n_main=$(ca_requests)
n_tok=$(grep -c ' HTTP/' "$TOK_LOG" || true)
gnutls 69 curl "$CA_URL/root.crt" --key "$KEY" --cacert "$D/ca.crt"
expect_grep '^p11cert: curl: libcurl' "$T/err"
[ ! -s "$T/out" ] || fail "curl with the GnuTLS libcurl printed an answer: $(cat "$T/out")"
mkdir -p "$T/s2"
gnutls 69 enroll caramel "localhost:$CA_PORT" fresh --type ec:P-256 --ca-file "$D/ca.crt" --dir "$T/s2"
gnutls 127 enroll caramel "localhost:$CA_PORT" fresh --type ec:P-256 --ca-file "$D/ca.crt" --dir "$T/s2" --once
gnutls 69 enroll caramel "localhost:$CA_PORT" fresh --type ec:P-256 --dir "$T/s2"
[ -z "$(ls -A "$T/s2")" ] || fail "enroll caramel with the GnuTLS libcurl wrote files: $(ls -A "$T/s2")"
mkdir -p "$T/s3"
gnutls 69 enroll token --ca-host localhost --port "$TOK_PORT" --dn "CN=node1, OU=NIFI" --dir "$T/s3" --token-file "$TD/token"
[ -z "$(ls -A "$T/s3")" ] || fail "enroll token with the GnuTLS libcurl wrote files: $(ls -A "$T/s3")"
gnutls 1 renew --dir "$T/s" --id web
gnutls 69 renew --dir "$T/s" --id web --rekey
objects >"$T/objects.after"
cmp -s "$T/objects.before" "$T/objects.after" ||
	fail "the token changed: $(diff "$T/objects.before" "$T/objects.after")"
[ "$(ca_requests)" = "$n_main" ] || fail "a request reached p11ca: $(tail -n 3 "$CA_LOG")"
[ "$(grep -c ' HTTP/' "$TOK_LOG" || true)" = "$n_tok" ] || fail "a request reached the token CA: $(tail -n 3 "$TOK_LOG")"
# the library itself (no CLI check first): examples/enroll_mem with the
# existing key; p11c_http_do refuses, naming the backend
P11CERT_MODULE=$MOD P11CERT_PIN=$PIN expect_rc 1 "$ENROLL_MEM_GNUTLS" "localhost:$CA_PORT" "$D/ca.crt" "$KEY"
expect_grep 'does its TLS with GnuTLS/[0-9.]+, not OpenSSL' "$T/err"
objects >"$T/objects.after"
cmp -s "$T/objects.before" "$T/objects.after" ||
	fail "enroll_mem changed the token: $(diff "$T/objects.before" "$T/objects.after")"
[ "$(ca_requests)" = "$n_main" ] || fail "a request reached p11ca: $(tail -n 3 "$CA_LOG")"
# the token commands still work: the refusal is about the network only
P11CERT=$GNUTLS_BIN expect_rc 0 p11c show "$KEY"
pass "the GnuTLS libcurl build refuses curl, enroll caramel/token, renew; token and CA untouched"

# --- 3. a refused curl_easy_setopt stops the request --------------------------
if grep -q '^P11CERT_TEST_HOOKS:BOOL=OFF' "$P11C_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
	skip "built with -DP11CERT_TEST_HOOKS=OFF: no P11CERT_TEST_SETOPT_FAIL"
	exit 0
fi
# refused OPTION WANT CMD...: with OPTION failing, CMD exits WANT naming it;
# no request reaches either CA
refused() {
	local opt=$1 want=$2 n1 n2
	shift 2
	n1=$(ca_requests)
	n2=$(grep -c ' HTTP/' "$TOK_LOG" || true)
	P11CERT_TEST_SETOPT_FAIL=$opt expect_rc "$want" "$@"
	expect_grep "refused $opt: .*nothing was sent" "$T/err"
	[ "$(ca_requests)" = "$n1" ] || fail "$opt refused, yet a request reached p11ca: $(tail -n 2 "$CA_LOG")"
	[ "$(grep -c ' HTTP/' "$TOK_LOG" || true)" = "$n2" ] || fail "$opt refused, yet a request reached the token CA"
}
for opt in CURLOPT_SSL_CTX_FUNCTION CURLOPT_SSL_CTX_DATA CURLOPT_SSL_VERIFYPEER CURLOPT_SSL_VERIFYHOST \
	CURLOPT_CAINFO CURLOPT_PROTOCOLS_STR CURLOPT_SSLVERSION CURLOPT_WRITEFUNCTION; do
	refused "$opt" 69 p11c curl "$CA_URL/root.crt" --key "$KEY" --cacert "$D/ca.crt"
	[ ! -s "$T/out" ] || fail "$opt refused, yet curl printed: $(cat "$T/out")"
done
pass "p11cert curl: each refused security option stops the request (exit 69, option named)"
mkdir -p "$T/s4"
for opt in CURLOPT_SSL_CTX_FUNCTION CURLOPT_SSL_VERIFYPEER CURLOPT_SSL_VERIFYHOST CURLOPT_CAINFO \
	CURLOPT_PROTOCOLS_STR CURLOPT_TIMEOUT_MS; do
	refused "$opt" 69 p11c enroll caramel "localhost:$CA_PORT" web4 --type ec:P-256 --ca-file "$D/ca.crt" --dir "$T/s4"
done
# no --ca-file: the CA certificate is fetched first, trusted from the system store
refused CURLOPT_SSL_VERIFYPEER 69 p11c enroll caramel "localhost:$CA_PORT" web4 --dir "$T/s4"
# renewal over mTLS with the token key
refused CURLOPT_SSL_CTX_DATA 1 p11c renew --dir "$T/s" --id web
refused CURLOPT_SSL_CTX_FUNCTION 69 p11c renew --dir "$T/s" --id web --rekey
pass "enroll caramel and renew: each refused option stops the request"
mkdir -p "$T/s5"
for opt in CURLOPT_SSL_CTX_FUNCTION CURLOPT_SSL_CTX_DATA CURLOPT_SSL_VERIFYPEER CURLOPT_POSTFIELDS; do
	refused "$opt" 69 p11c enroll token --ca-host localhost --port "$TOK_PORT" --dn "CN=node5, OU=NIFI" \
		--dir "$T/s5" --token-file "$TD/token"
done
[ ! -e "$T/s5/nifi-cert.pem" ] || fail "enroll token wrote a certificate though an option was refused"
pass "enroll token (bootstrap): each refused option stops the request"
