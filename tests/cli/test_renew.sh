#!/usr/bin/env bash
# Renewal against the real p11ca: check's exit codes around the threshold,
# renew replaces the certificate atomically (exactly one afterwards), rekey
# leaves exactly one key, the hook runs once per renewal, a failed renewal
# leaves the old certificate in place.
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

new_token renew
D=$T/ca
S=$T/state
mkdir -p "$S"
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 --short-lifetime 48 \
	>/dev/null 2>"$T/init.err" || fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"
KEY="pkcs11:token=$TOKEN;object=web1"

expect_rc 69 p11c enroll caramel "localhost:$CA_PORT" web1 --key "$KEY" --type ec:P-256 --ca-file "$D/ca.crt" --dir "$S" --once
p11ca sign --dir "$D" 1 2>/dev/null || fail "sign"
expect_rc 0 p11c enroll caramel "localhost:$CA_PORT" web1 --key "$KEY" --ca-file "$D/ca.crt" --dir "$S" --once
[ -s "$S/web1.enroll" ] || fail "no enrollment record"

# check: a 48 h certificate is fresh at 2/3 and at 1 day, due at 3 days
expect_rc 1 p11c check --key "$KEY"
expect_grep '^fresh' "$T/out"
expect_rc 1 p11c check --key "$KEY" --threshold 1
expect_rc 0 p11c check --key "$KEY" --threshold 3d
expect_rc 0 p11c check --key "$KEY" --threshold 3 --json
json_assert "$T/out" 'assert j["needs_renewal"] is True and j["reason"] == "past the renewal threshold" and j["renew_at"] < j["not_before"]'
pass "check: 1 before the threshold, 0 past it (ExecCondition)"

serial_of() { p11c export --key "$KEY" -o "$T/cur.pem" >/dev/null 2>&1 && openssl x509 -in "$T/cur.pem" -noout -serial; }
keyid_of() { p11c list "$KEY;type=private" --json | python3 -c 'import json,sys; a=json.load(sys.stdin); print(len(a), a[0]["id"] if a else "")'; }
certs_of() { p11c list "pkcs11:token=$TOKEN;type=cert" --json | python3 -c 'import json,sys; print(len(json.load(sys.stdin)))'; }

# renew while current: nothing renewed, the hook does not run
s0=$(serial_of)
expect_rc 0 p11c renew --dir "$S" --id web1 --exec "echo ran >> '$T/hook.log'"
[ "$(serial_of)" = "$s0" ] || fail "renew replaced a current certificate"
[ ! -e "$T/hook.log" ] || fail "the hook ran without a renewal"
pass "renew of a current certificate changes nothing, no hook"

# the CA re-signs (refresh): renew downloads it, replaces it in the token, hook once
sleep 1.1 # Last-Modified has one-second resolution
p11ca refresh --dir "$D" 2>/dev/null || fail "refresh"
expect_rc 0 p11c renew --dir "$S" --id web1 --exec "echo ran >> '$T/hook.log'"
s1=$(serial_of)
[ "$s1" != "$s0" ] || fail "renew did not replace the certificate"
[ "$(certs_of)" = 1 ] || fail "not exactly one certificate after renew: $(certs_of)"
[ "$(wc -l <"$T/hook.log")" = 1 ] || fail "the hook ran $(wc -l <"$T/hook.log") times"
cmp -s <(openssl x509 -in "$S/web1.crt" -outform DER) <(openssl x509 -in "$T/cur.pem" -outform DER) ||
	fail "web1.crt differs from the token's certificate"
pass "renew replaces the certificate (one left), the hook runs once"

# rekey: a new key, exactly one key and one certificate afterwards
read -r n0 id0 <<<"$(keyid_of)"
[ "$n0" = 1 ] || fail "expected one key before rekey"
expect_rc 0 p11c renew --dir "$S" --id web1 --rekey --exec "echo ran >> '$T/hook.log'"
read -r n1 id1 <<<"$(keyid_of)"
[ "$n1" = 1 ] || fail "after rekey $n1 keys carry the label"
[ "$id1" != "$id0" ] || fail "rekey kept the old key"
[ "$(certs_of)" = 1 ] || fail "not exactly one certificate after rekey"
p11c list "pkcs11:token=$TOKEN" --json | python3 -c '
import json,sys
a=json.load(sys.stdin)
assert not any("~rekey" in o["label"] for o in a), "a temporary object is left"
assert sum(o["class"]=="private-key" for o in a)==1, "not one private key"' || fail "leftovers after rekey"
expect_grep -F 'autosigned (mTLS renewal)' "$CA_LOG"
[ "$(wc -l <"$T/hook.log")" = 2 ] || fail "the hook did not run once for the rekey"
openssl verify -CAfile "$D/ca.crt" "$S/web1.crt" >/dev/null || fail "renewed certificate does not verify"
expect_rc 1 p11c check --key "$KEY"
pass "rekey: new key in place, old key and certificate gone, signed over mTLS"

# a key label with URI delimiters: the temporary key's URI is encoded
# (LABEL~rekey was pasted raw into "pkcs11:...;object=%s~rekey")
OKEY="pkcs11:token=$TOKEN;object=od%3Bd%25"
expect_rc 69 p11c enroll caramel "localhost:$CA_PORT" odd1 --key "$OKEY" --type ec:P-256 --ca-file "$D/ca.crt" --dir "$S" --once
p11ca sign --dir "$D" "$(sha256sum "$S/odd1.csr" | cut -d' ' -f1)" >/dev/null 2>&1 || fail "sign odd1"
expect_rc 0 p11c enroll caramel "localhost:$CA_PORT" odd1 --key "$OKEY" --ca-file "$D/ca.crt" --dir "$S" --once
expect_rc 0 p11c renew --dir "$S" --id odd1 --rekey
p11c list "pkcs11:token=$TOKEN" --json | python3 -c '
import json,sys
a=json.load(sys.stdin)
assert sum(o["label"]=="od;d%" and o["class"]=="private-key" for o in a)==1, "not one key od;d%"
assert not any("~rekey" in o["label"] for o in a), "a temporary object is left"' || fail "rekey of 'od;d%': $(p11c list "pkcs11:token=$TOKEN" 2>&1)"
pass "rekey of a key whose label holds ';' and '%'"

# a renewal that fails leaves the old certificate in place
s2=$(serial_of)
ca_stop
expect_rc_in "69 74 76 1" p11c renew --dir "$S" --id web1
[ "$(serial_of)" = "$s2" ] || fail "a failed renewal changed the certificate"
expect_rc_in "69 74 76 1" p11c renew --dir "$S" --id web1 --rekey
[ "$(serial_of)" = "$s2" ] || fail "a failed rekey changed the certificate"
read -r n2 id2 <<<"$(keyid_of)"
[ "$n2" = 1 ] && [ "$id2" = "$id1" ] || fail "a failed rekey changed the key"
pass "failed renewals leave the old key and certificate in place"
