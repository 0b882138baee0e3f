#!/usr/bin/env bash
# External Account Binding (RFC 8555 s7.3.4) against pebble configured to
# require it: no EAB is refused before any account is made, a wrong MAC
# key fails cleanly (no account record, no certificate), the right one
# succeeds.  The MAC key comes from a file, never argv.
. "$(dirname "$0")/acme_lib.sh"

good=zWNDZM6eQGHWpSRTPal5eIUYFTu7EajVIoguysqZ9wG44nMEtx3MUAsUDkMTQ12W
bad=b10lLJs8l1GPIzsLP0s6pMt8O0XVGnfTaCeROxQM0BIt2XrJMDHJZBM5NuQmQJQH
new_token acme
ACME_EAB_KEYS="\"kid-1\": \"$good\"" acme_up
D=$T/state
mkdir -m 700 "$D"
printf '%s\n' "$good" >"$T/good.key"
printf '%s\n' "$bad" >"$T/bad.key"
chmod 600 "$T/good.key" "$T/bad.key"
args=(--key "pkcs11:token=$TOKEN;object=eab" -d eab.example.test --http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D")

acme_enroll 64 "${args[@]}"
expect_grep "External Account Binding" "$T/err"
expect_grep "eab-kid" "$T/err"
[ -e "$D/eab.acme-account" ] && fail "an account record without an account"
pass "EAB required and not given: usage error"

acme_enroll 77 "${args[@]}" --eab-kid kid-1 --eab-hmac-file "$T/bad.key"
expect_grep "newAccount" "$T/err"
[ -e "$D/eab.acme-account" ] && fail "an account record after a refused EAB"
[ "$(n_objects certificate eab)" = 0 ] || fail "a certificate after a refused EAB"
pass "wrong EAB MAC key: refused cleanly"

acme_enroll 0 "${args[@]}" --eab-kid kid-1 --eab-hmac-file "$T/good.key"
expect_grep "created ACME account" "$T/err"
cert_next_to_key eab "$D/eab.crt" >/dev/null
acme_chain_ok "$D/eab.chain.pem"
for f in "$D"/*; do grep -qF "$good" "$f" && fail "the MAC key in $f"; done
pass "EAB with the right MAC key"
