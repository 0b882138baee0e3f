#!/usr/bin/env bash
# p11cert enroll acme with dns-01 through --dns-hook against pebble, with
# pebble rejecting a quarter of all nonces (PEBBLE_WFE_NONCEREJECT=25): the
# badNonce retries carry the order through (at 50 %, eleven rejections in a
# row, past ACME_NONCE_RETRIES, came once in about 2,000 requests: a run in
# a few hundred failed); pebble offers an alternate
# chain (PEBBLE_ALTERNATE_ROOTS=1), written as dns.chain-alt1.pem.  The hook sets the TXT record
# in pebble-challtestsrv and gets the record in its environment, but no
# PIN (its /proc/PID/environ is checked from inside the hook) and no PIN
# in any argv.
. "$(dirname "$0")/acme_lib.sh"

new_token acme
PEBBLE_WFE_NONCEREJECT=25 acme_up PEBBLE_ALTERNATE_ROOTS=1
D=$T/state
mkdir -m 700 "$D"

hook=$T/hook.sh
cat >"$hook" <<SH
#!/bin/sh
# ACME dns-01 hook for the test: add|remove, record in the environment
set -e
echo "\$1 \$ACME_RECORD_NAME \$ACME_RECORD_VALUE \$ACME_IDENTIFIER" >>"$T/hook.log"
tr '\\0' '\\n' </proc/\$\$/environ >"$T/hook-env.\$\$"
# the command lines of the hook and its ancestors up to p11cert
p=\$\$
for i in 1 2 3 4; do
	tr '\\0' ' ' </proc/\$p/cmdline >>"$T/hook-ps.\$\$"; echo >>"$T/hook-ps.\$\$"
	p=\$(awk '/^PPid:/ { print \$2 }' /proc/\$p/status)
	[ "\$p" -gt 1 ] || break
done
case \$1 in
add) curl -sf -X POST -d "{\"host\":\"\$ACME_RECORD_NAME.\",\"value\":\"\$ACME_RECORD_VALUE\"}" "$CTS_MGMT/set-txt" ;;
remove) curl -sf -X POST -d "{\"host\":\"\$ACME_RECORD_NAME.\"}" "$CTS_MGMT/clear-txt" ;;
*) exit 2 ;;
esac
SH
chmod 755 "$hook"

# the PIN in the environment too: it must not reach the hook
export P11CERT_PIN=$PIN
acme_enroll 0 --key "pkcs11:token=$TOKEN;object=dns" -d dns1.example.test -d dns2.example.test \
	--type ec:P-384 --account-type ec:P-384 --challenge dns-01 --dns-hook "$hook" --dir "$D"
unset P11CERT_PIN
cert_next_to_key dns "$D/dns.crt" >/dev/null
acme_chain_ok "$D/dns.chain.pem"
acme_key_attrs dns-acme-account
openssl x509 -in "$D/dns.crt" -noout -text | grep -q "NIST CURVE: P-384" || fail "not a P-384 certificate"
# the alternate chain pebble offers (PEBBLE_ALTERNATE_ROOTS=1), to its root
curl -sf --cacert "$ACME_CACERT" "$ACME_MGMT/roots/1" -o "$T/root1.pem" || fail "no /roots/1"
[ -s "$D/dns.chain-alt1.pem" ] || fail "no alternate chain written"
openssl verify -CAfile "$T/root1.pem" -untrusted "$D/dns.chain-alt1.pem" "$D/dns.chain-alt1.pem" >/dev/null 2>&1 \
	|| fail "the alternate chain does not verify to pebble's second root"
[ -e "$D/dns.chain-alt2.pem" ] && fail "a second alternate chain from one alternate root"
[ "$(grep -c '^add _acme-challenge.dns[12].example.test ' "$T/hook.log")" = 2 ] || fail "hook adds: $(cat "$T/hook.log")"
[ "$(grep -c '^remove _acme-challenge.dns[12].example.test ' "$T/hook.log")" = 2 ] || fail "hook removes: $(cat "$T/hook.log")"
# the value is base64url(SHA-256(keyauth)): 43 characters
awk '{ if (length($3) != 43) exit 1 }' "$T/hook.log" || fail "TXT values: $(cat "$T/hook.log")"
for f in "$T"/hook-env.*; do
	grep -q '^ACME_RECORD_NAME=' "$f" || fail "no ACME_RECORD_NAME in the hook's environment"
	grep -q "^P11CERT_PIN=" "$f" && fail "P11CERT_PIN in the hook's environment"
	grep -qF -- "$PIN" "$f" && fail "the PIN in the hook's environment"
done
for f in "$T"/hook-ps.*; do
	grep -q "enroll acme" "$f" || fail "p11cert is not among the hook's ancestors: $(cat "$f")"
	grep -qF -- "$PIN" "$f" && fail "the PIN in a command line: $(grep -F -- "$PIN" "$f")"
done
grep -q "reject 25% of good nonces" "$PEBBLE_LOG" || fail "pebble does not reject nonces"
pass "dns-01 through the hook, P-384 keys (ES384), a quarter of the nonces rejected, no PIN for the hook"

# a failing hook: clear error naming the identifier, nothing stored
expect_rc 77 p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --agree-tos \
	--key "pkcs11:token=$TOKEN;object=dns2" -d bad.example.test --challenge dns-01 --dns-hook false --dir "$D"
expect_grep "identifier 'bad.example.test'" "$T/err"
expect_grep "dns-hook 'false' add failed" "$T/err"
[ "$(n_objects certificate dns2)" = 0 ] || fail "a certificate was stored for dns2"
pass "a failing hook is named, nothing stored"
