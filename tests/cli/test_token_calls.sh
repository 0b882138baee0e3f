#!/usr/bin/env bash
# One module instance per process and a cost independent of the token's
# size (issue 17), counted with OpenSC's pkcs11-spy between p11cert and
# SoftHSM (a count of PKCS#11 calls, not a timing):
#   a. keygen, csr, enroll: one C_GetFunctionList, one C_Initialize, one
#      C_Login, one C_Finalize; no p11-kit assertion on stderr
#   b. csr and enroll caramel make the same calls, function by function,
#      with 1 key on the token and with 300 more (made in one session)
#   c. searches, the one call whose cost grows with the token in SoftHSM's
#      file store (docs/benchmarks.md): csr makes one C_FindObjectsInit
#      (private and public key together), enroll two (keygen's label check,
#      the certificate store's look for old certificates)
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"

SPY=/usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so
[ -e "$SPY" ] || fail "$SPY not found (scripts/setup installs opensc)"
MKKEYS=$P11C_BUILD_DIR/tests/p11_mkkeys
[ -x "$MKKEYS" ] || fail "$MKKEYS not built"

new_token calls
ca_up calls --autosign uuid

# spied NAME ARGS...: p11cert through pkcs11-spy (log $T/NAME.spy), expect 0
spied() {
	local name=$1
	shift
	rm -f "$T/$name.spy"
	# leak checks off for spied runs (ASan build): pkcs11-spy unloads
	# SoftHSM at C_Finalize, so SoftHSM's own leaks lose their module name
	# and tests/lsan.supp cannot match them
	expect_rc 0 env PKCS11SPY="$MOD" PKCS11SPY_OUTPUT="$T/$name.spy" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
		timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$SPY" --pin-file "$PINF" "$@"
	cp "$T/err" "$T/$name.err"
}

# calls NAME: "count function" per PKCS#11 function of a spied run
calls() { grep -oE '^[0-9]+: C_[A-Za-z]+' "$T/$1.spy" | awk '{print $2}' | sort | uniq -c; }
ncalls() { grep -cE '^[0-9]+: C_[A-Za-z]+' "$T/$1.spy"; }
nfunc() { grep -cE "^[0-9]+: $2\$" "$T/$1.spy" || true; }

# once_only NAME: one module instance, one login
once_only() {
	local fn
	for fn in C_GetFunctionList C_Initialize C_Login C_Finalize; do
		[ "$(nfunc "$1" "$fn")" = 1 ] || { calls "$1" >&2; fail "$1: $fn called $(nfunc "$1" "$fn") times, want 1"; }
	done
	! grep -q "not true" "$T/$1.err" || fail "$1: p11-kit assertion on stderr: $(cat "$T/$1.err")"
}

# --- a. one module instance ---------------------------------------------------
spied keygen keygen --key "pkcs11:token=$TOKEN;object=web" --type ec:P-256
once_only keygen
spied csr1 csr --key "pkcs11:token=$TOKEN;object=web" --subject /CN=web -o "$T/web1.csr"
once_only csr1
openssl req -in "$T/web1.csr" -noout -verify >/dev/null 2>&1 || fail "csr through pkcs11-spy does not verify"
S=$T/s
mkdir -p "$S"
U1=$(python3 -c 'import uuid; print(uuid.uuid4())')
spied enroll1 enroll caramel "$SERVER" "$U1" --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --once
once_only enroll1
verify_cert "$D/ca.crt" "$S/$U1.crt"
pass "keygen, csr, enroll: one C_Initialize, one C_Login; csr $(ncalls csr1) calls, enroll $(ncalls enroll1)"
[ "$(ncalls csr1)" -le 40 ] || { calls csr1 >&2; fail "csr made $(ncalls csr1) PKCS#11 calls"; }

# --- c. searches ------------------------------------------------------------------
[ "$(nfunc csr1 C_FindObjectsInit)" = 1 ] || { calls csr1 >&2; fail "csr made $(nfunc csr1 C_FindObjectsInit) searches, want 1"; }
[ "$(nfunc enroll1 C_FindObjectsInit)" -le 2 ] || { calls enroll1 >&2; fail "enroll made $(nfunc enroll1 C_FindObjectsInit) searches, want 2 at most"; }
pass "searches: csr $(nfunc csr1 C_FindObjectsInit), enroll $(nfunc enroll1 C_FindObjectsInit)"

# --- b. the same calls with 300 more keys ---------------------------------------
"$MKKEYS" "$MOD" "$TOKEN" "$PINF" 300 filler >"$T/mk.out" 2>&1 || fail "p11_mkkeys: $(cat "$T/mk.out")"
[ "$(count_objects privkey)" -ge 301 ] || fail "the token holds $(count_objects privkey) private keys, want 301 or more"
spied csr300 csr --key "pkcs11:token=$TOKEN;object=web" --subject /CN=web -o "$T/web300.csr"
once_only csr300
if ! diff <(calls csr1) <(calls csr300) >"$T/diff.out"; then
	cat "$T/diff.out" >&2
	fail "csr: the PKCS#11 calls differ with 300 more keys on the token"
fi
U2=$(python3 -c 'import uuid; print(uuid.uuid4())')
spied enroll300 enroll caramel "$SERVER" "$U2" --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --once
once_only enroll300
verify_cert "$D/ca.crt" "$S/$U2.crt"
if ! diff <(calls enroll1) <(calls enroll300) >"$T/diff.out"; then
	cat "$T/diff.out" >&2
	fail "enroll: the PKCS#11 calls differ with 300 more keys on the token"
fi
pass "csr ($(ncalls csr300) calls) and enroll ($(ncalls enroll300)) make the same calls with 1 and 301 keys on the token"
