#!/usr/bin/env bash
# renew --rekey against a Caramel CA that does not sign at once (p11ca with
# renew-mtls = no: like upstream, an administrator signs between runs).
# The first run makes the new key and request and exits 69 (pending, not
# 75); reruns poll the same request with the same new key; 75 only when
# the lock is held; once signed, a rerun swaps the keys.  The pending
# message names the request and p11ca's command only as an example, and a
# warning about upstream's RSA-only signing appears exactly when the
# server does not identify itself as p11ca and the key is not RSA
# 1024/2048/4096 (nginx in front of p11ca plays the upstream front end).
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

new_token rekeyp
D=$T/ca
S=$T/state
mkdir -p "$S"
p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 --short-lifetime 48 \
	--renew-mtls no >/dev/null 2>"$T/init.err" || fail "p11ca init: $(cat "$T/init.err")"
ca_start ca "$D"
KEY="pkcs11:token=$TOKEN;object=web1"
once() { p11c enroll caramel "localhost:$CA_PORT" web1 --key "$KEY" --ca-file "$D/ca.crt" --dir "$S" --once "$@"; }

curl -s --noproxy '*' --max-time 10 -o /dev/null -D "$T/hdr" --cacert "$D/ca.crt" "$CA_URL/root.crt" || fail "GET /root.crt"
expect_grep -i '^server: p11ca' "$T/hdr"
pass "p11ca identifies itself (Server: p11ca)"

expect_rc 69 once --type ec:P-256
SHA=$(sha256sum "$S/web1.csr" | cut -c1-64)
expect_grep -F "request $SHA for 'web1' is waiting for the CA administrator at localhost:$CA_PORT" "$T/err"
expect_grep -F "for example 'p11ca sign $SHA' on p11ca" "$T/err"
expect_nogrep 'does not identify itself as p11ca' "$T/err"
p11ca sign --dir "$D" "$SHA" >/dev/null 2>&1 || fail "p11ca sign"
expect_rc 0 once
pass "pending message for any Caramel server; no upstream warning from p11ca"

keys_of() {
	p11c list "pkcs11:token=$TOKEN;type=private" --json | python3 -c '
import json,sys
for o in json.load(sys.stdin): print(o["label"], o["id"])' | sort
}
serial_of() { p11c export --key "$KEY" -o "$T/cur.pem" >/dev/null 2>&1 && openssl x509 -in "$T/cur.pem" -noout -serial; }
s0=$(serial_of)
read -r _ id0 <<<"$(keys_of | grep '^web1 ')"

# first run: new key and request, pending -> 69; the old identity untouched
expect_rc 69 p11c renew --dir "$S" --id web1 --rekey
[ -s "$S/web1.rekey.csr" ] || fail "no web1.rekey.csr after a pending rekey"
RSHA=$(sha256sum "$S/web1.rekey.csr" | cut -c1-64)
expect_grep -F "request $RSHA for 'web1' is waiting for the CA administrator" "$T/err"
expect_grep -F "run renew --rekey again" "$T/err"
read -r _ nid1 <<<"$(keys_of | grep '^web1~rekey ')"
[ -n "$nid1" ] || fail "no web1~rekey key kept after a pending rekey: $(keys_of)"
[ "$(serial_of)" = "$s0" ] || fail "a pending rekey changed the certificate"
[ "$(keys_of | grep -c '^web1 ')" = 1 ] && keys_of | grep -q "^web1 $id0\$" || fail "a pending rekey changed the old key"
pass "pending rekey exits 69, keeps its new key and request, old identity in use"

# rerun while still pending: the same key polls the same request
cp "$S/web1.rekey.csr" "$T/rk1.csr"
expect_rc 69 p11c renew --dir "$S" --id web1 --rekey
cmp -s "$T/rk1.csr" "$S/web1.rekey.csr" || fail "the rerun made another request"
read -r _ nid2 <<<"$(keys_of | grep '^web1~rekey ')"
[ "$nid2" = "$nid1" ] || fail "the rerun replaced the new key ($nid1 -> $nid2)"
[ "$(keys_of | wc -l)" = 2 ] || fail "keys after the rerun: $(keys_of)"
expect_grep -F 'resuming the rekey' "$T/err"
pass "rerun of a pending rekey polls the same request with the same key"

# another run holds the lock: 75, nothing touched
exec 9>"$S/web1.lock"
flock -n 9 || fail "cannot take the lock for the test"
expect_rc 75 p11c renew --dir "$S" --id web1 --rekey
expect_grep 'another run holds the lock' "$T/err"
exec 9>&-
pass "lock held: 75 (one meaning per code)"

# the administrator signs; the rerun finishes by swapping the keys
p11ca sign --dir "$D" "$RSHA" >/dev/null 2>&1 || fail "p11ca sign $RSHA"
expect_rc 0 p11c renew --dir "$S" --id web1 --rekey --exec "echo ran >> '$T/hook.log'"
[ "$(keys_of | wc -l)" = 1 ] || fail "keys after the rekey: $(keys_of)"
keys_of | grep -q "^web1 $nid1\$" || fail "the signed new key did not take the label: $(keys_of)"
[ ! -e "$S/web1.rekey.csr" ] || fail "web1.rekey.csr left after the rekey"
cmp -s "$T/rk1.csr" "$S/web1.csr" || fail "web1.csr is not the rekey request"
s1=$(serial_of)
[ "$s1" != "$s0" ] || fail "the certificate was not replaced"
cmp -s <(openssl x509 -in "$S/web1.crt" -outform DER) <(openssl x509 -in "$T/cur.pem" -outform DER) ||
	fail "web1.crt differs from the token's certificate"
[ "$(openssl x509 -in "$T/cur.pem" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" = \
	"$(openssl req -in "$T/rk1.csr" -noout -pubkey | openssl pkey -pubin -outform DER | sha256sum)" ] ||
	fail "the certificate is not for the new key"
openssl verify -CAfile "$D/ca.crt" "$S/web1.crt" >/dev/null || fail "renewed certificate does not verify"
[ "$(wc -l <"$T/hook.log")" = 1 ] || fail "the hook did not run once"
p11c list "pkcs11:token=$TOKEN" --json | python3 -c '
import json,sys
a=json.load(sys.stdin)
assert not any("~rekey" in o["label"] for o in a), "a temporary object is left"
assert sum(o["class"]=="certificate" for o in a)==1, "not one certificate"' || fail "leftovers after rekey"
expect_rc 0 p11c renew --dir "$S" --id web1
[ "$(serial_of)" = "$s1" ] || fail "a plain renew after the rekey changed the certificate"
pass "signed: the rerun stores the certificate, swaps the keys, one key and certificate left"

# nginx in front (Server: nginx, as an upstream Caramel server behind its
# TLS front end): EC and RSA 3072 get the warning, RSA 2048 does not
nginx_front "$D"
expect_nogrep -i '^server: p11ca' "$T/ng/probe.hdr"
front() { p11c enroll caramel "localhost:$NG" "$1" --ca-file "$D/ca.crt" --dir "$S" --once --type "$2"; }
for t in ec:P-256 rsa:3072; do
	expect_rc 69 front "up-${t%%:*}" "$t"
	expect_grep -F "does not identify itself as p11ca" "$T/err"
	expect_grep -F "upstream Caramel servers sign only RSA keys of 1024, 2048 or 4096 bits" "$T/err"
done
expect_rc 69 front up-rsa2048 rsa:2048
expect_nogrep 'does not identify itself as p11ca' "$T/err"
expect_grep 'waiting for the CA administrator' "$T/err"
pass "warning about upstream's RSA-only signing without a p11ca Server header, not for RSA 2048"
