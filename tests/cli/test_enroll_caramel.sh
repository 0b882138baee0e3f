#!/usr/bin/env bash
# p11cert enroll caramel against a real p11ca on loopback (docs/enroll.md):
#   a. service mode: pending, polls, the administrator signs, exit 0
#   b. embedded mode (--once): 69 -> 0 -> 0 unchanged (304) -> mTLS renewal
#      -> lock held (1; 75 in service mode) -> rejected (wipe, 127) -> over
#   c. restart safety: kill -9 after the POST, run again: same CSR, one
#      key, one request; then it completes
#   d. failures name what failed: unreachable, TLS verify, server 400
#   e. EC P-256 key, UUID client id, autosigned at once; CARAMEL_CERT_DIR
# After each success: the certificate is in the token next to its key and
# verifies under the CA.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"

ca_up caramel --autosign uuid


# pending_has CN: p11ca list --pending shows a request for CN
pending_has() {
	p11ca list --dir "$D" --pending 2>/dev/null | grep -qE "[[:space:]]CN=$1,O=Example,C=SE\$"
}

# at_least N ERE: the server log has at least N matching lines
at_least() { [ "$(log_count "$2" "$SRV_LOG")" -ge "$1" ]; }

# state_of SHA: the request's state in the CA
state_of() { ca_request_field "$D" "$1" state; }

# check_enrolled ID DIR: the files, the token and the certificate after a
# success
check_enrolled() {
	local id=$1 S=$2 kid
	[ -s "$S/$id.crt" ] || fail "$S/$id.crt not written"
	verify_cert "$D/ca.crt" "$S/$id.crt"
	[ "$(subject_of "$S/$id.crt")" = "CN=$id,O=Example,C=SE" ] \
		|| fail "subject of $id.crt: $(subject_of "$S/$id.crt"), want CN=$id,O=Example,C=SE"
	[ "$(stat -c %a "$S/$id.crt")" = 644 ] || fail "$id.crt mode $(stat -c %a "$S/$id.crt")"
	[ "$(stat -c %a "$S/$id.csr")" = 644 ] || fail "$id.csr mode $(stat -c %a "$S/$id.csr")"
	# the CSR: canonical PEM, subject = CA subject with CN = id
	[ "$(openssl req -in "$S/$id.csr" -noout -subject -nameopt RFC2253)" = "subject=CN=$id,O=Example,C=SE" ] \
		|| fail "CSR subject: $(openssl req -in "$S/$id.csr" -noout -subject -nameopt RFC2253)"
	openssl req -in "$S/$id.csr" -noout -verify >/dev/null 2>&1 || fail "$id.csr: bad signature"
	# the CA certificate, kept as upstream does
	cmp -s "$S/$SERVER.cacert" "$D/ca.crt" || fail "$SERVER.cacert differs from the CA certificate"
	json_assert "$S/$id.enroll" "
assert j['protocol'] == 'caramel', j
assert j['server'] == '$SERVER', j
assert j['client_id'] == '$id', j
assert j['key'].startswith('pkcs11:'), j
"
	# the token: certificate next to the key, the same as the file
	kid=$(cert_next_to_key "$id" "$S/$id.crt")
	[ "$(count_objects privkey "$id" "$kid")" = 1 ] || fail "pkcs11-tool: no private key $id id $kid"
	[ "$(count_objects cert "$id" "$kid")" = 1 ] || fail "pkcs11-tool: no certificate $id id $kid"
	# and the certificate is for the token's public key (pkcs11-tool's view)
	export_pubkey "$kid" "$T/pub.der"
	openssl x509 -in "$S/$id.crt" -noout -pubkey | openssl pkey -pubin -outform DER >"$T/certpub.der" \
		|| fail "cannot read the public key of $id.crt"
	cmp -s "$T/pub.der" "$T/certpub.der" || fail "$id.crt is not for the token key id $kid"
}

# --- a. service mode, signed by the administrator after a few polls ----------
echo "# a. service mode"
new_token enroll-a
S=$T/sa
mkdir -p "$S"
bg a p11c_direct enroll caramel "$SERVER" host1 --dir "$S" --ca-file "$D/ca.crt" --timeout 60
A=$BG_PID
wait_for 30 "host1 pending in 'p11ca list --pending'" pending_has host1
[ -s "$S/host1.csr" ] || fail "host1.csr not written while pending"
SHA=$(ca_sha "$S/host1.csr")
at_least 1 "\"POST /$SHA\" 202 " || fail "no POST of $SHA in the server log"
wait_for 30 "2 polls of $SHA" at_least 2 "\"GET /$SHA\" 202 "
kill -0 "$A" 2>/dev/null || { cat "$T/a.err" >&2; fail "the client exited while pending"; }
p11ca list --dir "$D" --pending --json >"$T/pending.json" || fail "p11ca list --pending --json"
RID=$(python3 -c "import json,sys; print([r['id'] for r in json.load(open('$T/pending.json')) if r['cn'] == 'host1'][0])") \
	|| fail "no pending request for host1"
expect_rc 0 p11ca sign --dir "$D" "$RID"
bg_wait "$A" 60 a
[ "$BG_RC" = 0 ] || { cat "$T/a.err" >&2; fail "service mode exited $BG_RC after signing, want 0"; }
grep -qE "waiting for the CA at $SERVER to sign request $SHA for 'host1' \(attempt 2," "$T/a.err" \
	|| { cat "$T/a.err" >&2; fail "no progress messages for the administrator"; }
grep -q "'host1' enrolled with $SERVER" "$T/a.err" || { cat "$T/a.err" >&2; fail "no success message"; }
at_least 1 "\"GET /$SHA\" 200 " || fail "the signed certificate was never downloaded"
[ "$(log_count "\"POST /$SHA\"" "$SRV_LOG")" = 1 ] || fail "the request was posted more than once"
check_enrolled host1 "$S"
openssl x509 -in "$S/host1.crt" -noout -text | grep -q 'Public-Key: (2048 bit)' \
	|| fail "default key is not RSA 2048"
pass "service mode: polled, signed by the administrator, stored in the token"

# --- b. embedded mode: 69 -> 0 -> 0 (304) -> mTLS -> 1 -> 127 -> over --------
echo "# b. embedded mode"
new_token enroll-b
S=$T/sb
mkdir -p "$S"
once() { p11c enroll caramel "$SERVER" host2 --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --once "$@"; }

expect_rc 69 once
expect_grep "waiting for the CA administrator" "$T/err"
SHA=$(ca_sha "$S/host2.csr")
expect_grep -F "$SHA" "$T/err"
[ "$(state_of "$SHA")" = pending ] || fail "request $SHA not pending in the CA"
[ "$(n_objects private-key host2)" = 1 ] || fail "no token key host2 after the first run"
[ "$(n_objects certificate host2)" = 0 ] || fail "a certificate for host2 before signing"
KID1=$(key_ids host2)
pass "embedded: pending gives 69"

expect_rc 0 p11ca sign --dir "$D" "$SHA"
expect_rc 0 once
check_enrolled host2 "$S"
[ "$(cert_next_to_key host2)" = "$KID1" ] || fail "the key changed between runs"
n200=$(log_count "\"GET /$SHA\" 200 " "$SRV_LOG")
[ "$n200" = 1 ] || fail "want exactly one 200 download of $SHA, got $n200"
cp "$S/host2.crt" "$T/host2.first"
pass "embedded: signed gives 0, certificate in the token"

expect_rc 0 once
expect_grep "is current|unchanged" "$T/err"
[ "$(log_count "\"GET /$SHA\" 200 " "$SRV_LOG")" = 1 ] || fail "the unchanged certificate was downloaded again"
tail -n 1 "$SRV_LOG" | grep -qE "\"GET /$SHA\" 304 " || fail "the second success was not a 304"
cmp -s "$S/host2.crt" "$T/host2.first" || fail "host2.crt changed on an unchanged run"
[ "$(n_objects certificate host2)" = 1 ] || fail "more than one certificate for host2"
pass "embedded: unchanged gives 0 without a download (If-Modified-Since, 304)"

# mTLS: with a valid certificate in the token, the client presents it; a
# new request (ECDSA signatures differ, so a fresh CSR has a new address)
# is then signed at once by p11ca's renewal rule
rm -f "$S/host2.csr"
expect_rc 0 once
SHA2=$(ca_sha "$S/host2.csr")
[ "$SHA2" != "$SHA" ] || fail "a new ECDSA CSR has the same address as the old one"
grep -E "\"POST /$SHA2\" 202 " "$SRV_LOG" | grep -q "autosigned (mTLS renewal)" \
	|| fail "the POST of $SHA2 was not authenticated by the client certificate (no mTLS renewal)"
[ "$(state_of "$SHA2")" = signed ] || fail "request $SHA2 not signed"
[ "$(cert_next_to_key host2)" = "$KID1" ] || fail "the key changed on renewal"
verify_cert "$D/ca.crt" "$S/host2.crt"
pass "embedded: the token certificate is presented over mTLS (renewal signed at once)"

# lock held by another process: 1 (embedded), 75 (service mode)
(exec 9>>"$S/host2.lock" && flock 9 && exec sleep 30) &
LOCKER=$!
_PIDS+=("$LOCKER")
wait_for 10 "the lock to be held" bash -c "! flock -n '$S/host2.lock' true"
expect_rc 1 once
expect_grep "another run holds the lock" "$T/err"
expect_rc 75 p11c enroll caramel "$SERVER" host2 --dir "$S" --ca-file "$D/ca.crt" --timeout 5
expect_grep "another run holds the lock" "$T/err"
kill_pid "$LOCKER"
[ -s "$S/host2.csr" ] || fail "CSR gone after the locked runs"
pass "embedded: lock held gives 1 (service mode 75)"

# rejected: key, certificate and CSR are destroyed, 127
expect_rc 0 p11ca reject --dir "$D" "$SHA2"
expect_rc 127 once
expect_grep "rejected" "$T/err"
expect_grep "destroyed" "$T/err"
[ "$(n_objects private-key host2)" = 0 ] || fail "the token key survived the rejection"
[ "$(n_objects public-key host2)" = 0 ] || fail "the public key survived the rejection"
[ "$(n_objects certificate host2)" = 0 ] || fail "the certificate survived the rejection"
[ "$(count_objects privkey host2)" = 0 ] || fail "pkcs11-tool still sees a private key host2"
[ ! -e "$S/host2.csr" ] || fail "host2.csr survived the rejection"
pass "embedded: rejected gives 127, key, certificate and CSR destroyed"

NREQ=$(ca_requests "$D" host2)
expect_rc 69 once
expect_grep "generated" "$T/err"
KID2=$(key_ids host2)
[ -n "$KID2" ] && [ "$(printf '%s\n' "$KID2" | wc -l)" = 1 ] || fail "want one new key host2, got '$KID2'"
[ "$KID2" != "$KID1" ] || fail "the new key has the old id"
SHA3=$(ca_sha "$S/host2.csr")
[ "$SHA3" != "$SHA" ] && [ "$SHA3" != "$SHA2" ] || fail "the new request has an old address"
[ "$(ca_requests "$D" host2)" = $((NREQ + 1)) ] || fail "no new request in the CA"
[ "$(state_of "$SHA3")" = pending ] || fail "new request not pending"
pass "embedded: after a rejection the next run starts over (new key, new request, 69)"

# --- c. restart safety ---------------------------------------------------------
echo "# c. restart safety"
new_token enroll-c
S=$T/sc
mkdir -p "$S"
SVC=(p11c_direct enroll caramel "$SERVER" host3 --dir "$S" --ca-file "$D/ca.crt" --timeout 60)
bg c1 "${SVC[@]}"
C1=$BG_PID
wait_for 30 "host3.csr" test -s "$S/host3.csr"
SHA=$(ca_sha "$S/host3.csr")
wait_for 30 "the POST of $SHA" at_least 1 "\"POST /$SHA\" 202 "
kill_pid "$C1"
cp "$S/host3.csr" "$T/host3.csr.first"
n_get=$(log_count "\"GET /$SHA\" 202 " "$SRV_LOG")
bg c2 "${SVC[@]}"
C2=$BG_PID
wait_for 30 "the second run to poll $SHA" at_least $((n_get + 1)) "\"GET /$SHA\" 202 "
kill -0 "$C2" 2>/dev/null || { cat "$T/c2.err" >&2; fail "the second run exited while pending"; }
cmp -s "$S/host3.csr" "$T/host3.csr.first" || fail "the CSR changed on restart"
[ "$(ca_sha "$S/host3.csr")" = "$SHA" ] || fail "the CSR's sha256 changed on restart"
[ "$(n_objects private-key host3)" = 1 ] || fail "want one private key host3, got $(n_objects private-key host3)"
[ "$(count_objects privkey host3)" = 1 ] || fail "pkcs11-tool: want one private key host3"
[ "$(ca_requests "$D" host3)" = 1 ] || fail "the CA has $(ca_requests "$D" host3) requests for host3, want 1"
[ "$(log_count "\"POST /$SHA\"" "$SRV_LOG")" = 1 ] || fail "the request was posted again after the restart"
grep -q generated "$T/c2.err" && fail "the second run generated a key"
expect_rc 0 p11ca sign --dir "$D" "$SHA"
bg_wait "$C2" 60 c2
[ "$BG_RC" = 0 ] || { cat "$T/c2.err" >&2; fail "restarted run exited $BG_RC after signing"; }
check_enrolled host3 "$S"
pass "restart safety: kill -9 after the POST, same CSR, one key, one request, completes"

# --- d. failures name what failed -------------------------------------------------
echo "# d. failures"
new_token enroll-d
S=$T/sd
mkdir -p "$S"
PORT0=$(free_port)
expect_rc 69 p11c enroll caramel "localhost:$PORT0" host4 --dir "$S" --ca-file "$D/ca.crt"
expect_grep -F "https://localhost:$PORT0/" "$T/err"
expect_grep -i "connect" "$T/err"
expect_error_line
expect_rc 127 p11c enroll caramel "localhost:$PORT0" host4 --dir "$S" --ca-file "$D/ca.crt" --once
expect_grep -F "https://localhost:$PORT0/" "$T/err"
expect_grep -i "connect" "$T/err"
pass "unreachable server: 69 (127 with --once), the URL and 'connect' named"

# a CA we do not trust for HTTPS
D2=$T/ca2
p11ca init --dir "$D2" --C SE --O Other >/dev/null 2>&1 || fail "p11ca init of a second CA"
expect_rc 76 p11c enroll caramel "$SERVER" host5 --dir "$S" --ca-file "$D2/ca.crt"
expect_grep -i "TLS" "$T/err"
expect_grep -i "certificate" "$T/err"
expect_rc 127 p11c enroll caramel "$SERVER" host5 --dir "$S" --ca-file "$D2/ca.crt" --once
expect_grep -i "TLS" "$T/err"
[ "$(n_objects certificate host5)" = 0 ] || fail "a certificate stored after a TLS failure"
[ "$(ca_requests "$D" host5)" = 0 ] || fail "a request for host5 reached the CA despite the TLS failure"
[ ! -e "$S/host5.crt" ] || fail "host5.crt written after a TLS failure"
pass "TLS verification failure: 76 (127 with --once), named"

# no --ca-file: the CA is fetched over TLS verified by the system store,
# which does not know this CA
expect_rc 76 p11c enroll caramel "$SERVER" host6 --dir "$S"
expect_grep "cannot fetch the CA certificate" "$T/err"
expect_grep "give --ca-file" "$T/err"
pass "no --ca-file and an untrusted server: 76 with a hint"

# the server's 400 detail reaches the user: trust both CAs for HTTPS, but
# build the CSR from the other CA's subject (the first certificate of the
# file), which p11ca's subject rule refuses
cat "$D2/ca.crt" "$D/ca.crt" >"$T/bundle.pem"
expect_rc 76 p11c enroll caramel "$SERVER" host7 --dir "$S" --ca-file "$T/bundle.pem"
expect_grep "400" "$T/err"
expect_grep "bad subject" "$T/err"
expect_grep "POST" "$T/err"
pass "server 400: the CA's detail is shown (76)"

expect_rc 64 p11c enroll caramel "$SERVER" "$(printf 'x%.0s' $(seq 65))" --dir "$S" --ca-file "$D/ca.crt"
expect_grep "64" "$T/err"
[ "$(ca_requests "$D" "$(printf 'x%.0s' $(seq 65))")" = 0 ] || fail "a 65-character id reached the CA"
pass "65-character client id refused locally (64)"

# --- e. EC P-256, UUID client id, autosigned ----------------------------------------
echo "# e. EC key, autosign uuid"
new_token enroll-e
S=$T/se
mkdir -p "$S"
UUID=$(python3 -c 'import uuid; print(uuid.uuid4())')
expect_rc 0 env CARAMEL_CERT_DIR="$S" timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" --pin-file "$PINF" \
	enroll caramel "$SERVER" "$UUID" --ca-file "$D/ca.crt" --type ec:P-256 --once
SHA=$(ca_sha "$S/$UUID.csr")
grep -E "\"POST /$SHA\" 202 " "$SRV_LOG" | grep -q "autosigned (UUID CN)" || fail "not autosigned"
check_enrolled "$UUID" "$S"
openssl x509 -in "$S/$UUID.crt" -noout -text >"$T/e.txt"
grep -q 'id-ecPublicKey' "$T/e.txt" && grep -qE 'prime256v1|P-256' "$T/e.txt" || fail "certificate is not for an EC P-256 key"
token_json
json_assert "$T/list.json" "
k = [o for o in j if o['class'] == 'private-key' and o['label'] == '$UUID']
assert len(k) == 1 and k[0]['key'] == 'EC P-256', k
assert k[0]['sensitive'] is True and k[0]['extractable'] is False, k
"
pass "EC P-256 key with a UUID id: autosigned, exit 0 with --once (CARAMEL_CERT_DIR honoured)"
# one run, one TLS connection: the requests for this CSR all came from the
# same client port (p11ca logs the peer address of each request)
grep -E "\"(GET|POST) /$SHA\" " "$SRV_LOG" | awk '{print $2}' >"$T/e.peers"
[ "$(wc -l <"$T/e.peers")" -ge 2 ] || fail "fewer than 2 requests for $SHA: $(cat "$T/e.peers")"
[ "$(sort -u "$T/e.peers" | wc -l)" = 1 ] || fail "requests of one run used several connections: $(tr '\n' ' ' <"$T/e.peers")"
pass "the run's $(wc -l <"$T/e.peers") requests shared one TLS connection"
