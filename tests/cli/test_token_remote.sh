#!/usr/bin/env bash
# A token forwarded with `p11-kit server`, used through p11-kit-client.so
# (issue 17; docs/operations.md): the client module opens one connection
# per C_Initialize, so everything must go through one module instance.
#   a. keygen, list, csr (EC and RSA); import of a certificate for the EC
#      key (signed by a throwaway openssl CA), export reads it back
#   b. p11ca with its CA key behind the remote module: init, serve,
#      enrollments signed with it
#   c. enroll caramel, then curl with mTLS against nginx (TLS 1.2 and 1.3),
#      tunnel, renew --rekey
# No p11-kit assertion message on stderr at any exit.
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

P11KIT_SERVER=$P11C_SOURCE_DIR/softhsm-fixtures/p11kit-server

new_token rem
bash "$P11KIT_SERVER" start "$TOKDIR" "$TOKEN" || fail "cannot start p11-kit server"
_rem_cleanup() {
	local rc=$?
	set +e # a failing status below must not end the trap (lib.sh's _cleanup)
	bash "$P11KIT_SERVER" stop "$TOKDIR" >/dev/null 2>&1
	(exit "$rc")    # _ca_cleanup takes the status from $?
	_ca_cleanup
}
trap _rem_cleanup EXIT
# shellcheck disable=SC1091
. "$TOKDIR/p11kit.env"
DIRECT=$MOD
MOD=$P11KIT_CLIENT_MODULE   # p11c and p11ca use the remote module from here

# clean_err NAME: no p11-kit assertion (a second C_Initialize / fork) in $T/err
clean_err() {
	! grep -qE "not true|assertion" "$T/err" || fail "$1: p11-kit complains on stderr: $(cat "$T/err")"
}

# --- a. keys and CSRs ---------------------------------------------------------
for kt in ec:P-256 rsa:2048; do
	lbl=web-${kt%%:*}
	expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=$lbl" --type "$kt"
	clean_err keygen
	expect_rc 0 p11c list "pkcs11:token=$TOKEN"
	expect_grep -F "$lbl" "$T/out"
	expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=$lbl" --subject "/CN=$lbl" -o "$T/$lbl.csr"
	clean_err csr
	openssl req -in "$T/$lbl.csr" -noout -verify >/dev/null 2>&1 || fail "$lbl.csr does not verify"
done
pass "keygen, list and csr (EC, RSA) through p11-kit-client.so"

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj '/CN=Import CA' \
	-keyout "$T/ica.key" -out "$T/ica.crt" -days 30 2>/dev/null || fail "cannot make the import CA"
openssl x509 -req -in "$T/web-ec.csr" -CA "$T/ica.crt" -CAkey "$T/ica.key" -days 30 -set_serial 0x77 \
	-out "$T/web-ec.crt" 2>"$T/sign.err" || fail "openssl could not sign web-ec.csr: $(cat "$T/sign.err")"
expect_rc 0 p11c import --key "pkcs11:token=$TOKEN;object=web-ec" "$T/web-ec.crt"
clean_err import
expect_rc 0 p11c export --key "pkcs11:token=$TOKEN;object=web-ec" -o "$T/web-ec.out.pem"
clean_err export
cmp -s <(openssl x509 -in "$T/web-ec.crt" -outform DER) <(openssl x509 -in "$T/web-ec.out.pem" -outform DER) \
	|| fail "export through p11-kit-client.so differs from the imported certificate"
pass "import and export through p11-kit-client.so"

# --- b. the CA key behind the remote module --------------------------------------
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 \
	--key "pkcs11:token=$TOKEN;object=ca" --module "$MOD" --pin-file "$PINF"
clean_err "p11ca init"
expect_grep "generated the CA key in the token" "$T/err"
openssl verify -CAfile "$D/ca.crt" "$D/tls.crt" >/dev/null 2>&1 || fail "tls.crt does not chain to ca.crt"
[ ! -e "$D/ca.key" ] || fail "ca.key written although the key is in the token"
ca_start ca "$D"

# --- c. enrollment, import, mTLS ---------------------------------------------------
enroll_signed ec-client ec:P-256
clean_err enroll
openssl verify -CAfile "$D/ca.crt" "$T/s/ec-client.crt" >/dev/null 2>&1 || fail "ec-client.crt does not verify"
! grep -qE "not true|assertion" "$CA_LOG" || fail "p11ca serve: p11-kit complains: $(cat "$CA_LOG")"
pass "p11ca init and serve with the CA key behind p11-kit-client.so; enroll caramel through it"

# the client again: its token key over mTLS to the CA
expect_rc 0 p11c enroll caramel "localhost:$CA_PORT" ec-client --ca-file "$D/ca.crt" --dir "$T/s" --once
clean_err "enroll (renewal over mTLS)"

nginx_mtls "$D"
for port in $NG_P12 $NG_P13; do
	expect_rc 0 p11c curl "https://localhost:$port/" --key "pkcs11:token=$TOKEN;object=ec-client" --cacert "$D/ca.crt"
	expect_grep "hello CN=ec-client,O=Example,C=SE" "$T/out"
	clean_err curl
done
pass "curl with mTLS (TLS 1.2 and 1.3) with a key behind p11-kit-client.so"

# the tunnel: mTLS to nginx with the remote key, for several connections
tunnel_start rem ec-client "localhost:$NG_P13" --cacert "$D/ca.crt"
for i in 1 2 3; do
	code=$(curl -sS --noproxy '*' --max-time 20 -o "$T/body" -w '%{http_code}' "http://127.0.0.1:$TUN_PORT/" 2>"$T/curl.err") || code=fail
	[ "$code" = 200 ] || fail "curl through the tunnel ($i): $code $(cat "$T/curl.err")"
	grep -q "hello CN=ec-client,O=Example,C=SE" "$T/body" || fail "tunnel: nginx saw another client: $(cat "$T/body")"
done
tunnel_stop
! grep -qE "not true|assertion" "$TUN_LOG" || fail "tunnel: p11-kit complains: $(cat "$TUN_LOG")"
pass "tunnel with mTLS (three connections) with a key behind p11-kit-client.so"

# renew --rekey: a new key made and used through the remote module
old_id=$(p11c list "pkcs11:token=$TOKEN;object=ec-client;type=private" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)[0]["id"])')
expect_rc 0 p11c renew --dir "$T/s" --id ec-client --rekey
clean_err "renew --rekey"
new_id=$(p11c list "pkcs11:token=$TOKEN;object=ec-client;type=private" --json | python3 -c 'import json,sys; a=json.load(sys.stdin); assert len(a) == 1, a; print(a[0]["id"])')
[ "$new_id" != "$old_id" ] || fail "renew --rekey kept the old key"
expect_rc 0 p11c curl "https://localhost:$NG_P13/" --key "pkcs11:token=$TOKEN;object=ec-client" --cacert "$D/ca.crt"
expect_grep "hello CN=ec-client,O=Example,C=SE" "$T/out"
pass "renew --rekey through p11-kit-client.so; curl with the new key"

# the direct module sees what the remote one made: one token, one store
MOD=$DIRECT
expect_rc 0 p11c list "pkcs11:token=$TOKEN"
expect_grep -F "ec-client" "$T/out"
expect_grep -F "ca" "$T/out"
pass "the keys made remotely are on the SoftHSM token"
