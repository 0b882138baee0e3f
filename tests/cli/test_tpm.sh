#!/usr/bin/env bash
# TPM 2.0 tokens (swtpm + tpm2-pkcs11): enrollment and rekey against the real
# p11ca on a direct-mode TPM (no resource manager: the module keeps every
# key it used loaded until logout) and behind tpm2-abrmd; the messages for
# TPM resource exhaustion and dictionary-attack lockout; module chatter
# quiet by default and shown with -v.  Skips where the TPM packages are
# missing (scripts/setup installs them).
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

new_tpm_token tpm
D=$T/ca
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 --short-lifetime 48 \
	>/dev/null 2>"$T/init.err" || fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"
KEY="pkcs11:token=$TOKEN;object=web1"

enroll_signed web1 ec:P-256
expect_rc 0 p11c renew --dir "$T/s" --id web1 --rekey
pass "rekey on a direct-mode TPM"
