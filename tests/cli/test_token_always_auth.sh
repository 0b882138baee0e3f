#!/usr/bin/env bash
# Keys that need the PIN for each use (CKA_ALWAYS_AUTHENTICATE; issue 17):
# the signer logs in with CKU_CONTEXT_SPECIFIC after each C_SignInit, with
# the PIN from the same source as the user login, never a prompt.
#   a. csr with EC and RSA keys (PIN file and P11CERT_PIN); pkcs11-spy shows
#      one CKU_CONTEXT_SPECIFIC login per C_Sign
#   b. enroll caramel with such a key, then curl with mTLS (TLS 1.2, 1.3)
#   c. p11ca with such a CA key: init, serve autosigning two enrollments
#      (the PIN kept for the process), p11ca sign
# Keys are made by tests/helpers/p11_mkkeys (pkcs11-tool 0.23 cannot set
# CKA_ALWAYS_AUTHENTICATE).
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

SPY=/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so
[ -e "$SPY" ] || fail "$SPY not found (scripts/setup installs opensc)"
MKKEYS=$P11C_BUILD_DIR/tests/p11_mkkeys
[ -x "$MKKEYS" ] || fail "$MKKEYS not built"

new_token aa
"$MKKEYS" "$MOD" "$TOKEN" "$PINF" 1 sig --always-auth >"$T/mk.out" 2>&1 || fail "p11_mkkeys: $(cat "$T/mk.out")"
"$MKKEYS" "$MOD" "$TOKEN" "$PINF" 1 sigr --always-auth --rsa >"$T/mk.out" 2>&1 || fail "p11_mkkeys: $(cat "$T/mk.out")"
"$MKKEYS" "$MOD" "$TOKEN" "$PINF" 1 caaa --always-auth >"$T/mk.out" 2>&1 || fail "p11_mkkeys: $(cat "$T/mk.out")"
tool --list-objects --type privkey >"$T/objs" 2>&1 || true
[ "$(grep -c 'always authenticate' "$T/objs")" = 3 ] || fail "keys not marked always-authenticate: $(cat "$T/objs")"

# --- a. csr ----------------------------------------------------------------------
for k in sig sigr; do
	rm -f "$T/spy.log"
	expect_rc 0 env PKCS11SPY="$MOD" PKCS11SPY_OUTPUT="$T/spy.log" \
		timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$SPY" --pin-file "$PINF" \
		csr --key "pkcs11:token=$TOKEN;object=$k" --subject "/CN=$k" -o "$T/$k.csr"
	openssl req -in "$T/$k.csr" -noout -verify >/dev/null 2>&1 || fail "$k.csr does not verify"
	nctx=$(grep -c 'userType = CKU_CONTEXT_SPECIFIC' "$T/spy.log" || true)
	nsign=$(grep -cE '^[0-9]+: C_Sign$' "$T/spy.log" || true)
	[ "$nctx" = 1 ] && [ "$nsign" = 1 ] || fail "$k: $nctx context-specific logins for $nsign C_Sign, want 1 and 1"
done
expect_rc 0 env P11CERT_PIN="$PIN" timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" \
	csr --key "pkcs11:token=$TOKEN;object=sig" --subject /CN=env -o "$T/env.csr"
expect_nogrep -i "Enter|UI routines" "$T/err"
openssl req -in "$T/env.csr" -noout -verify >/dev/null 2>&1 || fail "env.csr does not verify"
pass "csr with always-authenticate EC and RSA keys: one CKU_CONTEXT_SPECIFIC login per signature"

# --- b. enroll and mTLS -------------------------------------------------------------
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0
ca_start ca "$D"
enroll_signed sig ec:P-256
[ "$(count_objects privkey sig)" = 1 ] || fail "enroll made another key instead of using 'sig'"
nginx_mtls "$D"
for port in $NG_P12 $NG_P13; do
	expect_rc 0 p11c curl "https://localhost:$port/" --key "pkcs11:token=$TOKEN;object=sig" --cacert "$D/ca.crt"
	expect_grep "hello CN=sig,O=Example,C=SE" "$T/out"
done
pass "enroll caramel and curl (TLS 1.2 and 1.3) with an always-authenticate key"

# --- c. the CA key needs the PIN per signature ----------------------------------------
D2=$T/ca2
expect_rc 0 p11ca init --dir "$D2" --C SE --O Example2 --hostname localhost --listen 127.0.0.1:0 \
	--key "pkcs11:token=$TOKEN;object=caaa" --module "$MOD" --pin-file "$PINF"
openssl verify -CAfile "$D2/ca.crt" "$D2/tls.crt" >/dev/null 2>&1 || fail "tls.crt does not chain to ca.crt"
ca_start ca2 "$D2" --autosign uuid --signers 2
mkdir -p "$T/s2"
expect_grep -F "2 signing thread(s)" "$CA_LOG"
# p11ca serve signs these itself: two signatures in one long-running
# process, at once, each on its signing thread's own session (each needs
# its own CKU_CONTEXT_SPECIFIC login)
pids=() us=()
for i in 1 2; do
	u=$(python3 -c 'import uuid; print(uuid.uuid4())')
	us+=("$u")
	mkdir -p "$T/s2$i"
	p11c enroll caramel "localhost:$CA_PORT" "$u" --type ec:P-256 --ca-file "$D2/ca.crt" --dir "$T/s2$i" \
		--once >"$T/e$i.out" 2>&1 &
	pids+=($!)
done
for i in 0 1; do
	wait "${pids[$i]}" || fail "enrollment $((i + 1)) at once: $(cat "$T/e$((i + 1)).out")"
	openssl verify -CAfile "$D2/ca.crt" "$T/s2$((i + 1))/${us[$i]}.crt" >/dev/null 2>&1 ||
		fail "${us[$i]}.crt does not verify under the CA"
done
grep -c "autosigned" "$CA_LOG" | grep -qx 2 || fail "p11ca serve did not autosign both requests"
expect_rc 69 p11c enroll caramel "localhost:$CA_PORT" c2 --type ec:P-256 --ca-file "$D2/ca.crt" --dir "$T/s2" --once
sha=$(sha256sum "$T/s2/c2.csr" | cut -d' ' -f1)
expect_rc 0 p11ca sign --dir "$D2" "$sha"
expect_rc 0 p11c enroll caramel "localhost:$CA_PORT" c2 --ca-file "$D2/ca.crt" --dir "$T/s2" --once
openssl verify -CAfile "$D2/ca.crt" "$T/s2/c2.crt" >/dev/null 2>&1 || fail "c2.crt does not verify under the CA"
pass "p11ca with an always-authenticate CA key: init, serve (two autosigned), sign"
