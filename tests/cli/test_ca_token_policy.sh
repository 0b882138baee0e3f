#!/usr/bin/env bash
# p11ca's shared-token policy (issue 10 point 6, issue 15 section 4 bullets
# 1-2; docs/ca.md): token-dn-suffix compares parsed RDNs (an escaped comma
# or a DN cut to a buffer does not pass; oversized DNs are refused), the
# DNS:<CN> name p11ca derives passes the same san-patterns as requested
# names, wildcard names only with san-wildcards = yes, and with san-patterns
# empty only DNS:<CN> is allowed (the refusal says how to allow more).
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

[ -f "$VECTOR" ] || fail "no $VECTOR"
D=$T/ca
mkdir -m 700 "$D"
SECRET=$(head -c 64 /dev/urandom | base64 -w 0 | tr -dc 'A-Za-z0-9' | head -c 28)
printf '%s\n' "$SECRET" >"$D/token"
chmod 600 "$D/token"
expect_rc 0 p11ca init --dir "$D" --ca-hostname localhost --OU NIFI --token-file "$D/token" \
	--token-listen 127.0.0.1:0 --listen 127.0.0.1:0 --token-dn-suffix 'OU=NIFI'

# try WANT NAME SUBJ [openssl req args]: a CSR with the right HMAC
try() {
	local want=$1 name=$2 subj=$3
	shift 3
	mk_csr "$T/$name.csr" "$subj" ec "$@"
	body "$T/$name.json" "$(hmac_of "$T/$name.csr")" "$T/$name.csr"
	tpost "$want" "$T/$name.json"
}

# ============ san-patterns empty ============
ca_start empty "$D"
TPORT=$(ca_token_port "$CA_LOG")
# the default: DNS:<CN> (what the Java client sends with --subjectAlternativeNames CN)
try 200 cn "/CN=node1.example.com/OU=NIFI" -addext "subjectAltName=DNS:node1.example.com"
try 403 other "/CN=node1.example.com/OU=NIFI" -addext "subjectAltName=DNS:node2.example.com"
expect_terror 'DNS:node2\.example\.com is not allowed: with san-patterns empty only DNS:<CN> is; set san-patterns'
# point 6: an escaped comma inside one value is not an RDN boundary
try 403 comma "/CN=a/OU=x,OU=NIFI"
expect_terror 'DN not allowed: it must end with OU=NIFI'
try 403 comma2 "/OU=x,OU=NIFI/CN=a"
expect_terror 'DN not allowed'
# the suffix must be a whole RDN of its own type, not a value
try 403 cnnifi "/CN=OU=NIFI"
expect_terror 'DN not allowed'
# an oversized DN is refused, not cut before the check
long=/CN=a
for _ in $(seq 20); do long=$long/OU=$(head -c 60 /dev/zero | tr '\0' 'x'); done
try 400 long "$long/OU=NIFI"
expect_terror 'subject is [0-9]* bytes of DER, more than 1024'
# two CNs / control characters, as on the Caramel endpoint
try 400 twocn "/CN=a/CN=b.example.com/OU=NIFI"
expect_terror 'the subject has 2 CNs'
# both readings of the suffix still pass (p11cert and the Java client)
try 200 rev "/OU=NIFI/CN=node3.example.com"
try 200 fwd "/CN=node4.example.com/OU=NIFI"
ca_stop

# ============ san-patterns DNS:*.example.com ============
ca_start patterns "$D" --san-patterns 'DNS:*.example.com'
TPORT=$(ca_token_port "$CA_LOG")
try 200 www "/CN=node5.example.com/OU=NIFI" -addext "subjectAltName=DNS:www.example.com"
# point 6: the name derived from the CN passes the same patterns
try 403 cnout "/CN=evil.other.org/OU=NIFI"
expect_terror 'DNS:evil\.other\.org is not allowed by the CA.s san-patterns'
# issue 15 s4: a pattern never hands out a wildcard
try 403 wild "/CN=node6.example.com/OU=NIFI" -addext "subjectAltName=DNS:*.example.com"
expect_terror 'DNS:\*\.example\.com is a wildcard name; p11ca issues none unless the setting san-wildcards = yes'
try 403 wildcn "/CN=*.example.com/OU=NIFI"
expect_terror 'wildcard'
ca_stop

# ============ san-wildcards = yes: explicit ============
ca_start wildcards "$D" --san-patterns 'DNS:*.example.com' --san-wildcards yes
TPORT=$(ca_token_port "$CA_LOG")
try 200 wildok "/CN=node7.example.com/OU=NIFI" -addext "subjectAltName=DNS:*.example.com"
openssl x509 -in <(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["pemEncodedCertificate"])' "$T/body") \
	-noout -ext subjectAltName | grep -q 'DNS:\*\.example\.com' || fail "wildcard not issued with san-wildcards = yes"
ca_stop

pass "parsed DN suffix, CN name under san-patterns, wildcards only when allowed, default DNS:<CN>"
