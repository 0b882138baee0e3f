#!/usr/bin/env bash
# TPM 2.0 tokens (swtpm + tpm2-pkcs11, softhsm-fixtures/tpm-token):
# - renew --rekey against the real p11ca on a direct-mode TPM (no resource
#   manager: the module keeps every key it used loaded until logout, and the
#   TPM has three object slots) and behind tpm2-abrmd;
# - TPM object slots filled by leaked handles (a killed client): the error
#   names the cause and the cure, and the documented flush recovers;
# - refused PINs: each run tries the PIN once (the TPM's lockout counter
#   moves by one), CKR_PIN_INCORRECT / CKR_PIN_LOCKED name the TPM's
#   dictionary-attack lockout, and the documented clear recovers;
# - module chatter (TSS2_LOG) quiet by default, shown with -v, a TSS2_LOG
#   the user set is kept.
# Skips where the TPM packages are missing (scripts/setup installs them).
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

# tpm2-pkcs11 leaks in C_SignInit (suppressed in tests/lsan.supp); the
# suppression needs full stacks: the module and libcrypto have no frame
# pointers, so the fast unwinder stops before reaching the module (12
# frames reach it in C_SignInit and keep the slow unwinder affordable)
if [ -n "${ASAN_OPTIONS:-}" ]; then export ASAN_OPTIONS="$ASAN_OPTIONS:fast_unwind_on_malloc=0:malloc_context_size=12"; fi

for c in swtpm tpm2_getcap tpm2_flushcontext tpm2_createprimary tpm2_dictionarylockout; do
	command -v "$c" >/dev/null || { skip "$c not installed (scripts/setup installs swtpm and tpm2-tools)"; exit 0; }
done

new_tpm_token tpm
D=$T/ca
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 \
	>/dev/null 2>"$T/init.err" || fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"

keyid_of() { p11c list "pkcs11:token=$TOKEN;object=$1;type=private" --json | python3 -c 'import json,sys; a=json.load(sys.stdin); print(len(a), a[0]["id"] if a else "")'; }
tpm_prop() { tpm2_getcap properties-variable | sed -n "s/^$1: *//p"; }

# --- rekey on a direct-mode TPM --------------------------------------------
enroll_signed web1 ec:P-256
read -r n0 id0 <<<"$(keyid_of web1)"
[ "$n0" = 1 ] || fail "expected one key after enrollment"
expect_rc 0 p11c renew --dir "$T/s" --id web1 --rekey
read -r n1 id1 <<<"$(keyid_of web1)"
[ "$n1" = 1 ] || fail "after rekey $n1 keys carry the label"
[ "$id1" != "$id0" ] || fail "rekey kept the old key"
[ "$(keyid_of 'web1~rekey')" = "0 " ] || fail "a ~rekey key is left"
# nothing stays loaded in the TPM (tpm2-pkcs11 does not flush a loaded key
# it destroys; without a resource manager nothing else would)
[ -z "$(tpm2_getcap handles-transient)" ] || fail "rekey left TPM objects loaded: $(tpm2_getcap handles-transient | tr '\n' ' ')"
# the new key signs a TLS handshake: a second and third rekey work as well
expect_rc 0 p11c renew --dir "$T/s" --id web1 --rekey
expect_rc 0 p11c renew --dir "$T/s" --id web1 --rekey
[ -z "$(tpm2_getcap handles-transient)" ] || fail "rekeys left TPM objects loaded"
pass "renew --rekey on a direct-mode TPM (new key signs the CSR, old key the handshake), nothing left loaded"

# --- TPM object slots full ------------------------------------------------
# leaked transient objects, as a client killed mid-run leaves them
# without a resource manager
tpm2_flushcontext -t >/dev/null 2>&1 || true
for i in 1 2 3; do
	tpm2_createprimary -Q -C o -G ecc -c "$T/leak$i.ctx" >/dev/null 2>&1 || true
done
[ "$(tpm_prop TPM2_PT_HR_TRANSIENT_AVAIL)" = 0x0 ] || fail "could not fill the TPM's object slots"
expect_rc_in "74 76" p11c csr --key "pkcs11:token=$TOKEN;object=web1" --subject /CN=web1 -o "$T/x.csr"
expect_grep -F 'CKR_GENERAL_ERROR' "$T/err"
expect_grep 'object or session slots are full' "$T/err"
expect_grep -F 'tpm2-abrmd or /dev/tpmrm0' "$T/err"
expect_grep -F "tpm2_flushcontext -t -l -s" "$T/err"
tpm2_flushcontext -t -l -s || fail "tpm2_flushcontext"
expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=web1" --subject /CN=web1 -o "$T/x.csr"
pass "full TPM object slots: the error names them, tpm2-abrmd and the flush; the flush recovers"

# --- refused PINs and the dictionary-attack lockout -----------------------
printf '999999\n' >"$T/bad.pin"
chmod 600 "$T/bad.pin"
[ "$(tpm_prop TPM2_PT_LOCKOUT_COUNTER)" = 0x0 ] || fail "lockout counter not 0 at start"
max=$(tpm_prop TPM2_PT_MAX_AUTH_FAIL)
bad() { timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" --pin-file "$T/bad.pin" csr --key "pkcs11:token=$TOKEN;object=web1" --subject /CN=web1 -o "$T/x.csr"; }
expect_rc 77 bad
expect_grep -F 'CKR_PIN_INCORRECT' "$T/err"
expect_grep 'dictionary-attack lockout' "$T/err"
expect_grep -F 'not retried' "$T/err"
[ "$(tpm_prop TPM2_PT_LOCKOUT_COUNTER)" = 0x1 ] || fail "one run moved the lockout counter to $(tpm_prop TPM2_PT_LOCKOUT_COUNTER)"
for i in $(seq 2 $((max))); do
	expect_rc 77 bad
done
expect_rc 77 bad
expect_grep -F 'CKR_PIN_LOCKED' "$T/err"
expect_grep 'dictionary-attack lockout' "$T/err"
expect_grep -F 'whole TPM' "$T/err"
expect_grep -F 'tpm2_dictionarylockout --clear-lockout' "$T/err"
# the right PIN is locked out too, until the owner clears the lockout
expect_rc 77 p11c csr --key "pkcs11:token=$TOKEN;object=web1" --subject /CN=web1 -o "$T/x.csr"
expect_grep -F 'CKR_PIN_LOCKED' "$T/err"
tpm2_dictionarylockout --clear-lockout || fail "tpm2_dictionarylockout --clear-lockout"
expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=web1" --subject /CN=web1 -o "$T/x.csr"
pass "refused PINs: tried once per run, messages name the TPM's lockout, the clear recovers"

# --- module chatter -------------------------------------------------------
# a module that cannot reach its TPM (closed port) prints TSS errors
mkdir -p "$T/nostore"
chatter() {
	env -u TSS2_LOG -u TPM2_PKCS11_LOG_LEVEL HOME="$T" TPM2_PKCS11_STORE="$T/nostore" \
		TPM2_PKCS11_TCTI="swtpm:host=127.0.0.1,port=$(free_port)" "$@"
}
expect_rc 69 chatter "$P11CERT" --module "$MOD" list
expect_error_line
expect_nogrep -E '^(ERROR|WARNING):(tcti|esys)' "$T/err"
expect_rc 69 chatter "$P11CERT" -q --module "$MOD" list
expect_nogrep -E '^(ERROR|WARNING):(tcti|esys)' "$T/err"
expect_rc 69 chatter "$P11CERT" -v --module "$MOD" list
expect_grep '^ERROR:tcti' "$T/err"
expect_rc 69 chatter env TSS2_LOG=tcti+error "$P11CERT" --module "$MOD" list
expect_grep '^ERROR:tcti' "$T/err"
pass "TSS chatter off by default and with -q, on with -v, a set TSS2_LOG kept"

# --- behind tpm2-abrmd ----------------------------------------------------
new_tpm_token tpmrm --abrmd
rm -rf "$T/s"
enroll_signed web2 ec:P-256
expect_rc 0 p11c renew --dir "$T/s" --id web2 --rekey
read -r n2 _ <<<"$(keyid_of web2)"
[ "$n2" = 1 ] || fail "after rekey $n2 keys carry the label"
pass "renew --rekey on a TPM behind tpm2-abrmd"
