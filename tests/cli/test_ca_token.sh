#!/usr/bin/env bash
# p11ca's shared-token endpoint (docs/ca.md, docs/protocols.md s2) with
# requests built like the NiFi TLS toolkit client: the CA certificate is the
# TLS certificate (chain of one), HMACs both ways, missing fields, proof of
# possession, DN / SAN policy, key policy, the rate limit (token buckets per
# address and global; a blocked address stays blocked), and
# the token never written to the log, the database or the settings.
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

VECTOR=$P11C_SOURCE_DIR/tests/vectors/token_hmac_vector.sh
[ -f "$VECTOR" ] || fail "no $VECTOR"
start=$(date +%s)

new_token p11ca-token

D=$T/ca
mkdir -m 700 "$D"
# a fresh random token per run (28 characters)
SECRET=$(head -c 64 /dev/urandom | base64 -w 0 | tr -dc 'A-Za-z0-9' | head -c 28)
[ ${#SECRET} = 28 ] || fail "could not make a token"
WRONG=WrongToken${SECRET:10}
printf '%s\n' "$SECRET" >"$D/token"
chmod 600 "$D/token"

expect_rc 0 p11ca init --dir "$D" --ca-hostname localhost --OU NIFI --token-file "$D/token" \
	--token-listen 127.0.0.1:0 --listen 127.0.0.1:0
expect_grep '^CN=localhost,OU=NIFI$' "$T/out"
openssl x509 -in "$D/ca.crt" -noout -text >"$T/ca.txt"
grep -A1 'Subject Alternative Name' "$T/ca.txt" | grep -q 'DNS:localhost' || fail "CA certificate without SAN DNS:localhost"
grep -A1 'Key Usage: critical' "$T/ca.txt" | grep -q 'Digital Signature' || fail "CA certificate without digitalSignature"
grep -A1 'Basic Constraints: critical' "$T/ca.txt" | grep -q 'CA:TRUE, pathlen:0' || fail "CA basicConstraints"
expect_nogrep -F "$SECRET" "$D/p11ca.conf"

# enroll NAME SUBJ [KEY [openssl req args]]: a CSR with the right HMAC -> 200;
# the certificate in $T/NAME.crt, checked
enroll() {
	local name=$1 subj=$2 key=${3:-ec}
	[ $# -gt 3 ] && shift 3 || shift $#
	mk_csr "$T/$name.csr" "$subj" "$key" "$@"
	enroll_csr "$name"
}

# enroll_csr NAME: POST $T/NAME.csr with the right HMAC, expect 200
enroll_csr() {
	local name=$1 cn
	body "$T/$name.json" "$(hmac_of "$T/$name.csr")" "$T/$name.csr"
	tpost 200 "$T/$name.json"
	expect_type application/json
	cp "$T/body" "$T/$name.resp"
	python3 - "$T/$name.resp" "$T/$name.crt" "$T/$name.rhmac" <<'PY' || { cat "$T/$name.resp" >&2; fail "$name: bad 200 body"; }
import json, sys
j = json.load(open(sys.argv[1]))
assert set(j) == {"hmac", "pemEncodedCertificate", "error"}, j
assert j["error"] is None, j
assert isinstance(j["hmac"], str) and isinstance(j["pemEncodedCertificate"], str), j
assert j["pemEncodedCertificate"].count("BEGIN CERTIFICATE") == 1, "more than the leaf"
open(sys.argv[2], "w").write(j["pemEncodedCertificate"])
open(sys.argv[3], "w").write(j["hmac"] + "\n")
PY
	# response HMAC over the CA certificate's key (what the client checks
	# against the TLS peer's key)
	[ "$(cat "$T/$name.rhmac")" = "$CA_HMAC" ] || fail "$name: response hmac $(cat "$T/$name.rhmac"), want $CA_HMAC"
	openssl verify -CAfile "$D/ca.crt" "$T/$name.crt" >"$T/verify.out" 2>&1 \
		|| { cat "$T/verify.out" >&2; fail "$name: certificate does not chain to the CA"; }
	[ "$(pubkey_of "$T/$name.crt")" = "$(pubkey_of "$T/$name.csr")" ] || fail "$name: not the CSR's key"
	# subject: the CSR's RDNs in reverse order, as the NiFi server issues
	# (a CSR [CN, OU] becomes [OU, CN], printed CN=..,OU=.. last-first)
	[ "$(openssl x509 -in "$T/$name.crt" -noout -subject -nameopt RFC2253)" = \
		"$(openssl req -in "$T/$name.csr" -noout -subject -nameopt RFC2253,-dn_rev)" ] \
		|| fail "$name: subject is not the CSR's in reverse RDN order"
	openssl x509 -in "$T/$name.crt" -noout -text >"$T/$name.txt"
	cn=$(openssl req -in "$T/$name.csr" -noout -subject -nameopt multiline | sed -n 's/^ *commonName *= //p')
	[ -n "$cn" ] || fail "$name: no CN in the CSR"
	grep -A1 'Subject Alternative Name' "$T/$name.txt" | grep -qE "DNS:$cn(,|$)" || fail "$name: no SAN DNS:$cn"
	grep -A1 'Basic Constraints: critical' "$T/$name.txt" | grep -q 'CA:FALSE' || fail "$name: not CA:FALSE"
	grep -A1 'Extended Key Usage: critical' "$T/$name.txt" | grep -q 'TLS Web Client Authentication' || fail "$name: EKU"
	# token-lifetime 825 days, notBefore five minutes back
	expect_near "$(cert_lifetime "$T/$name.crt")" $((825 * 86400 + 300)) 2 "$name: lifetime"
}

CA_HMAC=$(hmac_of "$D/ca.crt")

# a token shorter than 16 bytes: serve refuses to start
printf 'short-token\n' >"$D/short"
chmod 600 "$D/short"
expect_rc 1 p11ca serve --dir "$D" --token-file "$D/short"
expect_grep 'at least 16 bytes' "$T/err"
expect_nogrep 'short-token' "$T/err"

# ============ server 1: no DN policy ============
ca_start serve1 "$D"
TPORT=$(ca_token_port "$CA_LOG")
[ "$TPORT" != "$CA_PORT" ] || fail "token and main listener share port $TPORT"

# --- the TLS certificate of the token listener IS the CA certificate ---
for v in -tls1_2 -tls1_3; do
	openssl s_client -connect "127.0.0.1:$TPORT" -servername localhost -showcerts "$v" \
		-CAfile "$D/ca.crt" -verify_hostname localhost -verify_return_error </dev/null \
		>"$T/sclient.out" 2>"$T/sclient.err" || { cat "$T/sclient.err" >&2; fail "s_client $v to the token port"; }
	[ "$(grep -c 'BEGIN CERTIFICATE' "$T/sclient.out")" = 1 ] || fail "token port ($v): chain of $(grep -c 'BEGIN CERTIFICATE' "$T/sclient.out") certificates"
	sed -n '/BEGIN CERTIFICATE/,/END CERTIFICATE/p' "$T/sclient.out" >"$T/peer.pem"
	cmp -s "$T/peer.pem" "$D/ca.crt" || fail "token port ($v): the certificate is not ca.crt"
	grep -q 'Verify return code: 0 (ok)' "$T/sclient.out" || fail "token port ($v): no verify ok"
	grep -q "^New, TLSv1\.${v#-tls1_}," "$T/sclient.out" || fail "token port ($v): $(grep '^New,' "$T/sclient.out")"
done

# --- correct token: EC P-256 (NiFi default DN, SAN DNS:CN as the Java client sends) ---
enroll ec "/CN=host-ec/OU=NIFI" ec -addext 'subjectAltName=DNS:host-ec'
openssl x509 -in "$T/ec.crt" -noout -issuer -nameopt RFC2253 | grep -qx 'issuer=CN=localhost,OU=NIFI' || fail "issuer"
# RSA 2048, P-384, a CSR without SAN (DNS:CN added), and the p11cert order
enroll rsa "/OU=NIFI/CN=host-rsa" rsa:2048
grep -A1 'Key Usage: critical' "$T/rsa.txt" | grep -q 'Key Encipherment' || fail "RSA leaf without keyEncipherment"
enroll p384 "/CN=host-p384/OU=NIFI" ec384
# a token key (what p11cert enroll does)
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=tok1" --type ec:P-256
expect_rc 0 p11c csr --key "pkcs11:token=$TOKEN;object=tok1" --subject 'CN=tok1, OU=NIFI' --san DNS:tok1 -o "$T/tok1.csr"
enroll_csr tok1
# the same CSR again: signed again (a client retrying)
enroll_csr tok1

# --- missing fields, bad JSON (no rate-limit strike) ---
body "$T/nohmac.json" - "$T/ec.csr"
tpost 400 "$T/nohmac.json"
expect_terror '^hmac field must be set$'
body "$T/nocsr.json" "$(hmac_of "$T/ec.csr")" -
tpost 400 "$T/nocsr.json"
expect_terror '^csr field must be set$'
printf '{"hmac": "x", ' >"$T/trunc.json"
req_url 400 "https://localhost:$TPORT/" --data-binary @"$T/trunc.json"
printf 'garbage' >"$T/garbage.pem"
body "$T/garbage.json" "$(hmac_of "$T/ec.csr")" "$T/garbage.pem"
tpost 400 "$T/garbage.json"
expect_terror 'csr'

# --- wrong token: 403 forbidden (one strike of five) ---
body "$T/wrong.json" "$(hmac_of "$T/ec.csr" "$WRONG")" "$T/ec.csr"
tpost 403 "$T/wrong.json"
expect_terror '^forbidden$'
# the HMAC of another key
body "$T/otherkey.json" "$(hmac_of "$T/rsa.csr")" "$T/ec.csr"
tpost 403 "$T/otherkey.json"
expect_terror '^forbidden$'

# --- proof of possession: right HMAC over the key, signature broken ---
mk_csr "$T/pop.csr" "/CN=host-pop/OU=NIFI" rsa:2048
openssl req -in "$T/pop.csr" -outform DER -out "$T/pop.der"
python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 1; open(sys.argv[1], "wb").write(b)' "$T/pop.der"
pem_csr "$T/pop.der" "$T/popbad.csr"
openssl req -in "$T/popbad.csr" -noout -verify 2>&1 | grep -q 'verify failure' || fail "tampered CSR still verifies"
[ "$(hmac_of "$T/popbad.csr")" = "$(hmac_of "$T/pop.csr")" ] || fail "tampering changed the key"
body "$T/popbad.json" "$(hmac_of "$T/popbad.csr")" "$T/popbad.csr"
tpost 400 "$T/popbad.json"
expect_terror 'signature'

# --- key policy: RSA 1024 ---
mk_csr "$T/k1024.csr" "/CN=host-k1024/OU=NIFI" rsa:1024
body "$T/k1024.json" "$(hmac_of "$T/k1024.csr")" "$T/k1024.csr"
tpost 400 "$T/k1024.json"
expect_terror 'not accepted'

# --- SAN outside policy (no san-patterns): 403 ---
mk_csr "$T/san.csr" "/CN=host-san/OU=NIFI" ec -addext 'subjectAltName=DNS:host-san,DNS:evil.example.org'
body "$T/san.json" "$(hmac_of "$T/san.csr")" "$T/san.csr"
tpost 403 "$T/san.json"
expect_terror 'evil.example.org'

# --- the Caramel listener does not take token requests when token-listen is set ---
req_url 404 "https://localhost:$CA_PORT/" --data-binary @"$T/nohmac.json"

# --- the database: token requests signed, rejected ones absent ---
expect_rc 0 p11ca list --dir "$D" --all --json
json_later "$T/out" "
by = {r['cn']: r for r in j}
for cn in ('host-ec', 'host-rsa', 'host-p384', 'tok1'):
    assert by[cn]['state'] == 'signed' and by[cn]['protocol'] == 'token', by[cn]
assert by['tok1']['certificates'] == 2, by['tok1']
for cn in ('host-pop', 'host-k1024', 'host-san'):
    assert cn not in by, cn
assert len(j) == 4, len(j)
"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve 1 exit $STOP_RC"

# ============ server 2: --token-dn-suffix OU=NIFI ============
ca_start serve2 "$D" --token-dn-suffix OU=NIFI
TPORT=$(ca_token_port "$CA_LOG")
for s in "/CN=bad1/OU=OTHER" "/OU=OTHER/CN=bad2" "/CN=bad3/OU=XNIFI" "/CN=bad4" "/CN=bad5/OU=NIFI/OU=OTHER"; do
	mk_csr "$T/dn.csr" "$s"
	body "$T/dn.json" "$(hmac_of "$T/dn.csr")" "$T/dn.csr"
	tpost 403 "$T/dn.json"
	expect_terror '^DN not allowed'
done
# both readings of "CN=x, OU=NIFI": NiFi's Java client and p11cert encode
# CN first, OpenSSL (and p11cert before issue 15) OU first
enroll dnjava "/CN=dnjava/OU=NIFI"
enroll dnp11c "/OU=NIFI/CN=dnp11c"
enroll dnlower "/CN=dnlower/OU=nifi"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve 2 exit $STOP_RC"

# ============ server 3: the rate limit (fresh counters) ============
ca_start serve3 "$D"
TPORT=$(ca_token_port "$CA_LOG")
enroll rl0 "/CN=rl0/OU=NIFI"
for _ in 1 2 3 4 5; do
	tpost 403 "$T/wrong.json"
	expect_terror '^forbidden$'
done
# the sixth request, with the right token, is refused
mk_csr "$T/rl6.csr" "/CN=rl6/OU=NIFI"
body "$T/rl6.json" "$(hmac_of "$T/rl6.csr")" "$T/rl6.csr"
tpost 429 "$T/rl6.json"
expect_terror 'too many'
ra=$(header Retry-After)
case $ra in '' | *[!0-9]*) fail "429 without a Retry-After in seconds: '$ra'" ;; esac
[ "$ra" -ge 1 ] && [ "$ra" -le 12 ] || fail "Retry-After $ra, want at most 12 s (5 per minute refill)"
tpost 429 "$T/wrong.json"
# per address: 127.0.0.2 is another peer
req_url 200 "https://localhost:$TPORT/" --interface 127.0.0.2 --data-binary @"$T/rl6.json"
grep -q '^[0-9TZ:-]* 127\.0\.0\.2:[0-9]* "POST /" 200 ' "$CA_LOG" || fail "no 200 from 127.0.0.2 in the log"
[ "$(grep -c '^[0-9TZ:-]* 127\.0\.0\.1:[0-9]* "POST /" 429 ' "$CA_LOG")" = 2 ] || fail "429s not logged"
# Caramel on the main listener is not affected
req 200 /root.crt
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve 3 exit $STOP_RC"

# ============ server 3b: a blocked address stays blocked (issue 10 point 14) ============
# one wrong HMAC per address per minute, no global ceiling: wrong HMACs from
# 260 other addresses fill the bounded table; the blocked address keeps its
# block (the old table evicted it after 256) and new ones are refused
ca_start serve3b "$D" --token-rate-limit 1 --token-rate-limit-global 0
TPORT=$(ca_token_port "$CA_LOG")
tpost 403 "$T/wrong.json"
tpost 429 "$T/rl6.json"
n403=0 n429=0
for i in $(seq 260); do
	c=$(cu -o /dev/null -w '%{http_code}' --interface "127.0.$((1 + i / 200)).$((1 + i % 200))" \
		-H 'Content-Type: application/json' --data-binary @"$T/wrong.json" "https://localhost:$TPORT/" 2>>"$T/rl.err") || true
	case $c in 403) n403=$((n403 + 1)) ;; 429) n429=$((n429 + 1)) ;; *) fail "wrong HMAC $i: HTTP $c" ;; esac
done
echo "# 260 other addresses: $n403 403, $n429 429"
[ "$n403" -ge 200 ] && [ "$n403" -le 256 ] || fail "$n403 wrong HMACs evaluated from 260 addresses (table of 256)"
tpost 429 "$T/rl6.json"
expect_terror 'too many'
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve 3b exit $STOP_RC"

# ============ server 3c: per-address burst and global ceiling (issue 15 s4) ============
# 10 per address (one back every 6 s), 20 in total (one back every 3 s)
ca_start serve3c "$D" --token-rate-limit 10 --token-rate-limit-global 20
TPORT=$(ca_token_port "$CA_LOG")
# wrong_from ADDR N: N wrong HMACs from ADDR; N403 and N429 count the answers
wrong_from() {
	local i c
	for i in $(seq "$2"); do
		c=$(cu -o /dev/null -w '%{http_code}' --interface "$1" -H 'Content-Type: application/json' \
			--data-binary @"$T/wrong.json" "https://localhost:$TPORT/" 2>>"$T/rl.err") || true
		case $c in 403) N403=$((N403 + 1)) ;; 429) N429=$((N429 + 1)) ;; *) fail "wrong HMAC from $1: HTTP $c" ;; esac
	done
}
N403=0 N429=0
wrong_from 127.0.0.1 10
[ "$N403" = 10 ] || fail "the burst of 10: $N403 evaluated"
tpost 429 "$T/rl6.json"
# five more addresses, ten each: the global ceiling stops them, not their bursts
N403=0 N429=0
for a in 3 4 5 6 7; do wrong_from "127.0.0.$a" 10; done
echo "# global ceiling: $N403 of 50 evaluated, $N429 refused"
[ "$N403" -ge 10 ] && [ "$N403" -le 25 ] || fail "$N403 of 50 wrong HMACs from 5 addresses evaluated (global 20, 10 used)"
# a correct client behind the first address: in after Retry-After, not a minute
tpost 429 "$T/rl6.json"
ra=$(header Retry-After)
[ "$ra" -ge 1 ] && [ "$ra" -le 6 ] || fail "Retry-After $ra, want 1..6 s"
sleep $((ra + 1))
mk_csr "$T/rl7.csr" "/CN=rl7/OU=NIFI"
body "$T/rl7.json" "$(hmac_of "$T/rl7.csr")" "$T/rl7.csr"
tpost 200 "$T/rl7.json"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve 3c exit $STOP_RC"

# ============ server 4: no token-listen: POST / on the main listener ============
D2=$T/ca2
mkdir -m 700 "$D2"
cp "$D/token" "$D2/token"
expect_rc 0 p11ca init --dir "$D2" --ca-hostname localhost --OU NIFI --token-file "$D2/token" --listen 127.0.0.1:0
ca_start serve4 "$D2"
expect_grep '^p11ca: serving Caramel and shared-token on 127\.0\.0\.1:0 \(port [0-9]+\)$' "$CA_LOG"
D_SAVE=$D D=$D2 CA_HMAC=$(hmac_of "$D2/ca.crt")
TPORT=$CA_PORT
enroll main1 "/CN=main1/OU=NIFI"
D=$D_SAVE
# Caramel still works there; other paths are Caramel's
req 200 /root.crt
cmp -s "$T/body" "$D2/ca.crt" || fail "root.crt of the second CA"
req_url 404 "$CA_URL/x" --data-binary @"$T/main1.json"
ca_stop
[ "$STOP_RC" = 0 ] || fail "serve 4 exit $STOP_RC"

# --- the token is nowhere but in its file ---
for f in "$T"/serve?.log "$T"/*.err "$T/err"; do
	[ "$(grep -c -F "$SECRET" "$f")" = 0 ] || fail "the token is in $(basename "$f")"
done
if [ "${P11CA_TEST_DB:-sqlite}" = pg ]; then
	# every database of the cluster, dumped
	for db in $(pg_sql postgres "SELECT datname FROM pg_database WHERE datname LIKE 'ca%'"); do
		"$PG_BIN/pg_dump" -h "$PG_SOCK" -p "$PG_PORT" -U p11ca "$db" >"$T/dump-$db.sql" \
			|| fail "pg_dump $db"
		grep -q 'CREATE TABLE public.requests' "$T/dump-$db.sql" || fail "pg_dump $db: no requests table"
		[ "$(grep -c -F "$SECRET" "$T/dump-$db.sql")" = 0 ] || fail "the token is in database $db"
	done
else
	for f in "$D"/p11ca.db* "$D2"/p11ca.db*; do
		[ "$(strings -n 8 "$f" | grep -c -F "$SECRET")" = 0 ] || fail "the token is in $(basename "$f")"
	done
fi
# the check can fail: the secret is in its own file
[ "$(strings -n 8 "$D/token" | grep -c -F "$SECRET")" = 1 ] || fail "strings/grep cannot find the token"
expect_nogrep -F "$SECRET" "$D/p11ca.conf"
[ "$(grep -rlF "$SECRET" "$D" | wc -l)" = 1 ] || fail "the token is in $(grep -rlF "$SECRET" "$D" | tr '\n' ' ')"

json_check_all
pass "shared-token endpoint in $(($(date +%s) - start)) s"
