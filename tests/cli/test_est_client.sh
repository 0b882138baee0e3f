#!/usr/bin/env bash
# p11cert enroll est against p11ca's EST server (docs/est.md): HTTP Basic
# (right and wrong password, the password never in argv, files or logs),
# the trust bootstrap with --ca-fingerprint (and a wrong fingerprint
# refused before anything is sent), an IDevID in the token -> an LDevID
# next to it (mutual TLS), channel binding on TLS 1.2 and TLS 1.3, pending
# then signed (p11ca sign), renew (/simplereenroll over mTLS) and renew
# --rekey through the protocol table, check --id, and a man in the middle
# with another CA refused with nothing stored.
# Skips (exit 77) while p11ca has no EST server (tests/cli/est_lib.sh).
_here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ ! -f "$_here/est_lib.sh" ]; then
	echo "skip: test_est_client: p11ca has no EST server in this tree (tests/cli/est_lib.sh)"
	exit 77
fi
# shellcheck source=est_lib.sh
. "$_here/est_lib.sh"

p11ca est-user --help >/dev/null 2>&1 || { skip "p11ca has no EST server (est-user)"; exit 77; }

# p11cert enroll --help lists every protocol, est included
p11raw enroll --help >"$T/enroll.help" 2>&1 || fail "p11cert enroll --help failed"
for proto in caramel token est acme; do
	grep -q "^usage: p11cert enroll $proto " "$T/enroll.help" || fail "enroll --help does not list 'enroll $proto'"
done
pass "enroll --help lists enroll est"

new_token ldev
S=$T/state
mkdir -m 700 "$S"

est_ca ca
D=$EST_DIR
est_bootstrap_ca "$D" idevid-ca
est_idevid "$D" idevid-ca "$T/dev" "serial-0001"
PW='correct horse battery'
est_user "$D" alice "$PW"
printf '%s\n' "$PW" >"$T/pw"
chmod 600 "$T/pw"
printf 'wrong horse\n' >"$T/badpw"
est_conf "$D" <<'EOF'
[default]
auth = basic
users = est-users
key-type = ec:P-256

[idevid]
auth = cert
bootstrap-ca = idevid-ca.crt

[bound]
auth = basic
users = est-users
binding = required

[pending]
auth = basic
users = est-users
approval = pending
retry-after = 1

[exts]
auth = basic
users = est-users
csrattrs-extensions = clientAuth, serverAuth, digitalSignature
csrattrs-extensions-required = yes
EOF
est_start est
SRV=https://localhost:$CA_PORT
SUBJ=$EST_SUBJ

# the token's certificate for LABEL, PEM, in $T/LABEL.tok.pem
tok_cert() {
	p11c export --key "pkcs11:object=$1" -o "$T/$1.tok.pem" >/dev/null 2>"$T/export.err" \
		|| fail "no certificate for $1 in the token: $(cat "$T/export.err")"
}
no_tok_cert() {
	if p11c export --key "pkcs11:object=$1" -o "$T/$1.none.pem" >/dev/null 2>&1; then
		fail "a certificate for $1 is in the token"
	fi
}
verify_est() {
	openssl verify -CAfile "$D/ca.crt" "$1" >/dev/null 2>&1 || fail "$1 does not verify against the EST CA"
}
# the public key of the token's certificate for LABEL (after tok_cert)
pub_of_key() { openssl x509 -in "$T/$1.tok.pem" -noout -pubkey | sha256sum; }
enroll() { p11c enroll est --server "$SRV${LABEL:+/$LABEL}" --dir "$S" "$@"; }

# --- 1. HTTP Basic, explicit trust anchor ------------------------------------
LABEL='' expect_rc 0 enroll --key pkcs11:object=web1 --ca-file "$D/ca.crt" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=web1" --san DNS:web1
tok_cert web1
verify_est "$T/web1.tok.pem"
cmp -s <(openssl x509 -in "$T/web1.tok.pem" -outform DER) <(openssl x509 -in "$S/web1.crt" -outform DER) \
	|| fail "web1.crt is not the certificate in the token"
openssl x509 -in "$S/web1.crt" -noout -ext subjectAltName | grep -q "DNS:web1" || fail "SAN lost"
grep -q 'BEGIN CERTIFICATE' "$S/web1.cacerts" || fail "no CA certificates in web1.cacerts"
json_assert "$S/web1.enroll" 'assert j["protocol"] == "est" and j["user"] == "alice" and "password" not in j'
pass "Basic: enrolled, certificate in the token and web1.crt, CA in web1.cacerts"

# the password is in no file we wrote, no message, no log
grep -rqF "$PW" "$S" && fail "the password is in the state folder"
grep -qF "$PW" "$T/err" && fail "the password is in the messages"
grep -qF "$PW" "$CA_LOG" && fail "the password is in the CA log"
pass "the password is in no file, message or log"

# --- 2. wrong password: 77, the server's text, nothing stored -----------------
LABEL='' expect_rc 77 enroll --key pkcs11:object=web2 --ca-file "$D/ca.crt" --user alice --password-file "$T/badpw" \
	--subject "$SUBJ/CN=web2"
expect_grep -F "401" "$T/err"
no_tok_cert web2
[ -e "$S/web2.crt" ] && fail "web2.crt written after a refusal"
[ -e "$S/web2.enroll" ] && fail "web2.enroll written after a refusal"
pass "wrong password: exit 77 with the server's answer, nothing stored"

# --- 3. bootstrap with the CA fingerprint ------------------------------------
FP=sha256:$(openssl x509 -in "$D/ca.crt" -outform DER | sha256sum | cut -d' ' -f1)
BADFP=sha256:$(printf '%064d' 7)
n_before=$(grep -c simpleenroll "$CA_LOG" || true)
LABEL='' expect_rc 65 enroll --key pkcs11:object=boot --ca-fingerprint "$BADFP" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=boot"
expect_grep -F "fingerprint" "$T/err"
[ "$(grep -c simpleenroll "$CA_LOG" || true)" = "$n_before" ] || fail "a request went out after a wrong fingerprint"
grep -qF "$PW" "$CA_LOG" && fail "the password went to an unverified server"
no_tok_cert boot
pass "a wrong fingerprint: exit 65, nothing sent, nothing stored"
LABEL='' expect_rc 0 enroll --key pkcs11:object=boot --ca-fingerprint "$FP" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=boot"
tok_cert boot
verify_est "$T/boot.tok.pem"
json_assert "$S/boot.enroll" 'assert j["ca_file"].endswith("/boot.cacerts")'
pass "bootstrap with the right fingerprint, then verified: enrolled"

# --- 4. channel binding on TLS 1.2 and TLS 1.3 -------------------------------
for v in 1.2 1.3; do
	LABEL=bound expect_rc 0 enroll --key "pkcs11:object=bound${v/./}" --ca-file "$D/ca.crt" --user alice \
		--password-file "$T/pw" --subject "$SUBJ/CN=bound${v/./}" --tls-max "$v"
	expect_grep -F "asks for channel binding" "$T/err"
	tok_cert "bound${v/./}"
done
# --bind where the server does not ask: the binding goes in anyway
LABEL='' expect_rc 0 enroll --key pkcs11:object=vol --ca-file "$D/ca.crt" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=vol" --bind
pass "channel binding: TLS 1.2 (tls-unique) and TLS 1.3 (tls-exporter) accepted"

# --- 4b. extensions /csrattrs asks for with their values ---------------------
LABEL=exts expect_rc 0 enroll --key pkcs11:object=ext1 --ca-file "$D/ca.crt" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=ext1" --san DNS:ext1
expect_grep -F "asks for extensions; the request carries them: keyUsage extendedKeyUsage" "$T/err"
tok_cert ext1
verify_est "$T/ext1.tok.pem"
p11ca list --dir "$D" --json >"$T/all.json" 2>/dev/null || fail "p11ca list"
RID=$(python3 -c 'import json,sys; print(max(r["id"] for r in json.load(open(sys.argv[1]))))' "$T/all.json")
p11ca show --dir "$D" --json "$RID" >"$T/ext1.json" 2>/dev/null || fail "p11ca show $RID"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csr"])' "$T/ext1.json" >"$T/ext1.csr"
openssl req -in "$T/ext1.csr" -noout -text >"$T/ext1.txt" 2>&1 || fail "the stored request does not parse"
grep -q "CN *= *ext1" "$T/ext1.txt" || fail "the last request is not ext1's"
grep -A1 "X509v3 Key Usage: critical" "$T/ext1.txt" | grep -q "Digital Signature" || fail "no keyUsage in the request"
grep -A1 "X509v3 Extended Key Usage" "$T/ext1.txt" | grep -q "TLS Web Server Authentication, TLS Web Client Authentication" \
	|| fail "no extendedKeyUsage serverAuth, clientAuth in the request"
grep -A1 "Subject Alternative Name" "$T/ext1.txt" | grep -q "DNS:ext1" || fail "--san lost next to the extensions"
openssl x509 -in "$T/ext1.tok.pem" -noout -ext extendedKeyUsage | grep -q "Client Authentication" \
	|| fail "the certificate has no clientAuth"
pass "csrattrs extensionRequest: keyUsage and extendedKeyUsage in the token-signed request, --san kept"

# --- 5. pending, then p11ca sign ---------------------------------------------
LABEL=pending expect_rc 69 enroll --key pkcs11:object=pend --ca-file "$D/ca.crt" --user alice \
	--password-file "$T/pw" --subject "$SUBJ/CN=pend" --once
expect_grep -F "is pending at" "$T/err"
no_tok_cert pend
p11ca list --dir "$D" --pending --json >"$T/pending.json" 2>/dev/null || fail "p11ca list --pending"
SHA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["sha256"])' "$T/pending.json")
p11ca sign --dir "$D" "$SHA" >/dev/null 2>&1 || fail "p11ca sign $SHA"
LABEL=pending expect_rc 0 enroll --key pkcs11:object=pend --ca-file "$D/ca.crt" --user alice \
	--password-file "$T/pw" --subject "$SUBJ/CN=pend" --once
tok_cert pend
pass "pending: exit 69 with --once, then signed by p11ca sign and stored"
# service mode: bounded waiting (Retry-After 1 s), then exit 69
LABEL=pending expect_rc 69 enroll --key pkcs11:object=pend2 --ca-file "$D/ca.crt" --user alice \
	--password-file "$T/pw" --subject "$SUBJ/CN=pend2" --timeout 2
expect_grep -F "still pending" "$T/err"
# ...and signed while it waits
LABEL=pending p11c enroll est --server "$SRV/pending" --dir "$S" --key pkcs11:object=pend2 --ca-file "$D/ca.crt" \
	--user alice --password-file "$T/pw" --subject "$SUBJ/CN=pend2" --timeout 60 </dev/null >"$T/bg.out" 2>"$T/bg.err" &
BG=$!
for _ in $(seq 100); do
	grep -q 'asking again' "$T/bg.err" && break
	sleep 0.1
done
grep -q 'asking again' "$T/bg.err" || { kill "$BG"; fail "service mode: no wait message: $(cat "$T/bg.err")"; }
# no process has the password in its command line (it came from a file)
for f in /proc/[0-9]*/cmdline; do
	if tr '\0' ' ' <"$f" 2>/dev/null | grep -qF "$PW"; then
		kill "$BG"
		fail "the password is in the command line of $f"
	fi
done
p11ca list --dir "$D" --pending --json >"$T/pending.json" 2>/dev/null || fail "p11ca list --pending"
SHA=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[0]["sha256"])' "$T/pending.json")
p11ca sign --dir "$D" "$SHA" >/dev/null 2>&1 || fail "p11ca sign $SHA"
rc=0
wait "$BG" || rc=$?
[ "$rc" = 0 ] || fail "service mode: exit $rc after p11ca sign: $(cat "$T/bg.err")"
tok_cert pend2
pass "service mode: waits as Retry-After says, bounded by --timeout; collects the certificate once signed"

# --- 6. IDevID in the token -> LDevID next to it (mutual TLS) ----------------
openssl pkcs8 -topk8 -nocrypt -in "$T/dev.key" -outform DER -out "$T/dev.p8" 2>/dev/null || fail "pkcs8"
openssl pkey -in "$T/dev.key" -pubout -outform DER -out "$T/dev.pub" 2>/dev/null || fail "IDevID public key"
tool --write-object "$T/dev.p8" --type privkey --id 0d0d --label idevid --usage-sign >/dev/null 2>&1 \
	|| fail "IDevID key import"
tool --write-object "$T/dev.pub" --type pubkey --id 0d0d --label idevid >/dev/null 2>&1 || fail "IDevID public key import"
p11c import --key pkcs11:object=idevid "$T/dev.crt" >/dev/null 2>"$T/imp.err" || fail "IDevID import: $(cat "$T/imp.err")"
LABEL=idevid expect_rc 0 enroll --key pkcs11:object=ldevid --ca-file "$D/ca.crt" \
	--client-cert-key pkcs11:object=idevid --subject "$SUBJ/CN=serial-0001"
tok_cert ldevid
verify_est "$T/ldevid.tok.pem"
tok_cert idevid
cmp -s <(openssl x509 -in "$T/idevid.tok.pem" -outform DER) <(openssl x509 -in "$T/dev.crt" -outform DER) \
	|| fail "the IDevID certificate changed"
# without the IDevID: refused
LABEL=idevid expect_rc 77 enroll --key pkcs11:object=ldev2 --ca-file "$D/ca.crt" --subject "$SUBJ/CN=serial-0002"
expect_grep -F "the EST server answered 403 (forbidden): a client certificate" "$T/err"
pass "IDevID -> LDevID in the same token over mutual TLS; none without it"

# --- 7. renew (/simplereenroll) and renew --rekey, check ----------------------
expect_rc_in "0 1" p11c check --id web1 --dir "$S"
S1=$(openssl x509 -in "$S/web1.crt" -noout -serial)
P1=$(pub_of_key web1)
expect_rc 0 p11c renew --dir "$S" --id web1
tok_cert web1
verify_est "$T/web1.tok.pem"
[ "$(openssl x509 -in "$T/web1.tok.pem" -noout -serial)" != "$S1" ] || fail "renew: same certificate"
[ "$(pub_of_key web1)" = "$P1" ] || fail "renew changed the key"
openssl x509 -in "$T/web1.tok.pem" -noout -ext subjectAltName | grep -q "DNS:web1" || fail "renew: SAN lost"
S2=$(openssl x509 -in "$T/web1.tok.pem" -noout -serial)
expect_rc 0 p11c renew --dir "$S" --id web1 --rekey
tok_cert web1
verify_est "$T/web1.tok.pem"
[ "$(openssl x509 -in "$T/web1.tok.pem" -noout -serial)" != "$S2" ] || fail "rekey: same certificate"
[ "$(pub_of_key web1)" != "$P1" ] || fail "rekey kept the key"
p11c show 'pkcs11:object=web1~rekey' >/dev/null 2>&1 && fail "the rekey key is left under its temporary label"
pass "renew over /simplereenroll keeps key and names; --rekey replaces the key"

# renew keeps --bind and --tls-max of the enrollment, though the profile
# does not ask for binding: the stored re-enrollment request carries
# challengePassword = base64 of tls-unique (TLS 1.2: 12 bytes, 16 characters;
# tls-exporter on TLS 1.3 would be 32 bytes, 44 characters)
LABEL='' expect_rc 0 enroll --key pkcs11:object=vol12 --ca-file "$D/ca.crt" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=vol12" --bind --tls-max 1.2
json_assert "$S/vol12.enroll" 'assert j["bind"] is True and j["tls_max"] == 12'
expect_rc 0 p11c renew --dir "$S" --id vol12
p11ca list --dir "$D" --json >"$T/all.json" 2>/dev/null || fail "p11ca list"
RID=$(python3 -c 'import json,sys; print(max(r["id"] for r in json.load(open(sys.argv[1]))))' "$T/all.json")
p11ca show --dir "$D" --json "$RID" >"$T/renewed.json" 2>/dev/null || fail "p11ca show $RID"
python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["csr"])' "$T/renewed.json" >"$T/renewed.csr"
openssl req -in "$T/renewed.csr" -noout -subject | grep -q "CN *= *vol12" || fail "the last request is not vol12's renewal"
CPW=$(openssl req -in "$T/renewed.csr" -noout -text | sed -n 's/^ *challengePassword *: *//p')
[ -n "$CPW" ] || fail "renew of a --bind enrollment sent no channel binding"
[ "${#CPW}" = 16 ] || fail "renew of a --tls-max 1.2 enrollment: binding '$CPW' is not tls-unique (TLS 1.2)"
pass "renew keeps the enrollment's --bind and --tls-max 1.2 (tls-unique in the request)"

# --- 8. a man in the middle with another CA ----------------------------------
SRV_EST=$SRV
est_ca evil
EV=$EST_DIR
est_user "$EV" alice "$PW"
est_conf "$EV" <<'EOF'
[default]
auth = basic
users = est-users
EOF
ca_start evil "$EV"
SRV=https://localhost:$CA_PORT
LABEL='' expect_rc 76 enroll --key pkcs11:object=mitm --ca-file "$D/ca.crt" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=mitm"
no_tok_cert mitm
LABEL='' expect_rc 65 enroll --key pkcs11:object=mitm --ca-fingerprint "$FP" --user alice --password-file "$T/pw" \
	--subject "$SUBJ/CN=mitm"
no_tok_cert mitm
grep -qF "$PW" "$T/evil.log" 2>/dev/null && fail "the password reached the other CA"
for f in mitm.crt mitm.enroll mitm.cacerts; do [ -e "$S/$f" ] && fail "$f written for the other CA"; done
pass "another CA in the middle: refused (trust anchor and fingerprint), nothing stored"

# --- 9. the IDevID in another token than the LDevID ---------------------------
new_token dev --tokens 2
tok2() { pkcs11-tool --module "$MOD" --token-label dev-2 --login --pin "$PIN" "$@"; }
tok2 --write-object "$T/dev.p8" --type privkey --id 0d0d --label idevid --usage-sign >/dev/null 2>&1 || fail "IDevID key import"
tok2 --write-object "$T/dev.pub" --type pubkey --id 0d0d --label idevid >/dev/null 2>&1 || fail "IDevID public key import"
p11c import --key 'pkcs11:token=dev-2;object=idevid' "$T/dev.crt" >/dev/null 2>"$T/imp.err" \
	|| fail "IDevID import: $(cat "$T/imp.err")"
expect_rc 0 p11c enroll est --server "$SRV_EST/idevid" --dir "$S" --key 'pkcs11:token=dev;object=ldevid' --id ldev-x \
	--ca-file "$D/ca.crt" --client-cert-key 'pkcs11:token=dev-2;object=idevid' --subject "$SUBJ/CN=serial-0001"
p11c export --key 'pkcs11:token=dev;object=ldevid' -o "$T/ldev-x.pem" >/dev/null 2>&1 || fail "no LDevID in token dev"
verify_est "$T/ldev-x.pem"
if p11c export --key 'pkcs11:token=dev-2;object=ldevid' -o "$T/none.pem" >/dev/null 2>&1; then
	fail "an LDevID in the IDevID's token"
fi
pass "IDevID in one token -> LDevID in another"
