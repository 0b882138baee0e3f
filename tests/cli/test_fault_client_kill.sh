#!/usr/bin/env bash
# p11cert enroll caramel killed with SIGKILL at each stage of an enrollment,
# against a real p11ca on loopback and a real SoftHSM token.
#
# The client is stopped at an exact point by the test hook
# P11CERT_TEST_STALL_AT=STAGE (src/lib/testhook.c, docs/operations.md): it
# raises SIGSTOP there; the test sees the process stopped and SIGKILLs it.
# Stages, in the order an enrollment reaches them:
#   keygen-generated   C_GenerateKeyPair done, CKA_ID still the random one
#   keygen-id-half     the public key has its final CKA_ID, the private not
#   keygen             key pair complete, no CSR yet
#   write:ID.csr       CSR in a synced temp file, not renamed
#   caramel-posted     the CA answered 202 to the POST
#   poll-wait          service mode sleeping between polls
#   received           certificate downloaded and checked, not stored
#   cert-created       C_CreateObject of the certificate done, not read back
#                      (also as a renewal: the old certificate still there)
#   stored             certificate in the token, no file written
#   write:ID.crt, write:SERVER.cacert, write:ID.enroll   the files, one by one
# After each kill: every file in the state folder that has its final name
# parses, at most one private key carries the label; then the next runs
# finish the job: the certificate in the token is next to the key and for
# it, the files and the enrollment record are there (p11cert renew reads
# it), no temp file is left, the CA holds one request for the client, and
# that request was posted once.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"
need_test_hooks

start=$(date +%s)
ca_up fault
new_token fault-kill

command -v jq >/dev/null || fail "jq not installed (scripts/setup installs it)"

# once ID DIR [env...]: p11cert enroll caramel --once (bounded)
once() {
	local id=$1 dir=$2
	shift 2
	env "$@" timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" --pin-file "$PINF" \
		enroll caramel "$SERVER" "$id" --dir "$dir" --ca-file "$D/ca.crt" --type ec:P-256 --once
}

# files_sane DIR: every file with its final name parses; prints the temp files
files_sane() {
	local f
	for f in "$1"/*; do
		[ -e "$f" ] || continue
		case $f in
		*.tmp.*) basename "$f" ;;
		*.csr) openssl req -in "$f" -noout -verify >/dev/null 2>&1 || fail "$(basename "$f") does not parse" ;;
		*.crt | *.cacert) openssl x509 -in "$f" -noout 2>/dev/null || fail "$(basename "$f") does not parse" ;;
		*.enroll) jq -e . "$f" >/dev/null 2>&1 || fail "$(basename "$f") is not JSON" ;;
		*.lock) ;;
		*) fail "unexpected file $(basename "$f")" ;;
		esac
	done
}

# tool_count CLASS LABEL [IDHEX]: objects in $T/objs (an `objects` listing)
tool_count() {
	awk -F'\t' -v c="$1" -v l="$2" -v i="${3:-}" '$1 == c && $2 == l && (i == "" || $3 == i) { n++ } END { print n + 0 }' "$T/objs"
}

# one_key_at_most ID: p11cert's and pkcs11-tool's view
one_key_at_most() {
	local a b
	p11c list >"$T/list.txt" 2>&1 || { cat "$T/list.txt" >&2; fail "p11cert list failed"; }
	a=$(grep -cE "^private-key +$1 " "$T/list.txt" || true)
	b=$(count_objects privkey "$1")
	[ "$a" -le 1 ] && [ "$b" -le 1 ] || fail "$1: $a private keys (pkcs11-tool: $b), want at most 1"
}

# finish ID DIR: run again until enrolled (signing a pending request once)
finish() {
	local id=$1 S=$2 sha
	expect_rc_in "0 69" once "$id" "$S"
	if [ "$LAST_RC" = 69 ]; then
		sha=$(ca_sha "$S/$id.csr")
		expect_rc 0 p11ca sign --dir "$D" "$sha"
		expect_rc 0 once "$id" "$S"
	fi
}

# enrolled ID DIR: the end state after a finished enrollment.  The token
# is seen twice: through `p11cert list --json` and through pkcs11-tool.
enrolled() {
	local id=$1 S=$2 sha tmp f
	tmp=$(files_sane "$S")
	[ -z "$tmp" ] || fail "$id: temp files left: $tmp"
	for f in "$id.csr" "$id.crt" "$SERVER.cacert" "$id.enroll"; do
		[ -s "$S/$f" ] || fail "$id: $f missing after the run that finished"
	done
	verify_cert "$D/ca.crt" "$S/$id.crt"
	cmp -s "$S/$SERVER.cacert" "$D/ca.crt" || fail "$id: $SERVER.cacert is not the CA certificate"
	openssl x509 -in "$S/$id.crt" -noout -pubkey | openssl pkey -pubin -outform DER >"$T/certpub.der" \
		|| fail "$id: no public key in $id.crt"
	token_json
	objects >"$T/objs"
	p11ca list --dir "$D" --all --json >"$T/calist.json" 2>"$T/calist.err" || fail "p11ca list: $(cat "$T/calist.err")"
	sha=$(ca_sha "$S/$id.csr")
	json_assert "$S/$id.enroll" "
import hashlib
ident, serial, sha = '$id', '$(cert_serial "$S/$id.crt")', '$sha'
assert j['protocol'] == 'caramel' and j['client_id'] == ident and j['server'] == '$SERVER', j
lst = json.load(open('$T/list.json'))
keys = [o for o in lst if o['class'] == 'private-key' and o['label'] == ident]
assert len(keys) == 1, ('private keys', keys)
kid = keys[0]['id']
certs = [o for o in lst if o['class'] == 'certificate' and o['label'] == ident]
assert len(certs) == 1 and certs[0]['id'] == kid, ('certificates', certs, kid)
assert hexnorm(certs[0]['serial']).lstrip('0') == hexnorm(serial).lstrip('0'), (certs, serial)
pubs = [o for o in lst if o['class'] == 'public-key' and o['label'] == ident]
assert len(pubs) == 1 and pubs[0]['id'] == kid, ('public keys', pubs, kid)
# pkcs11-tool: the same three objects, and the certificate is for the
# token's public key (SPKI rebuilt from CKA_EC_POINT, P-256)
tool = [l.split('\t') for l in open('$T/objs').read().splitlines() if l.split('\t')[1:2] == [ident]]
cls = sorted(t[0] for t in tool)
assert cls == ['cert', 'privkey', 'pubkey'], ('pkcs11-tool objects', tool)
assert all(hexnorm(t[2]) == hexnorm(kid) for t in tool), ('pkcs11-tool ids', tool, kid)
pub = [t for t in tool if t[0] == 'pubkey'][0]
pt = bytes.fromhex(re.search(r'EC_POINT:\s*([0-9a-fA-F]+)', pub[5]).group(1))
if pt[0] == 4 and pt[1] == len(pt) - 2:
    pt = pt[2:]
spki = bytes.fromhex('3059301306072a8648ce3d020106082a8648ce3d030107034200') + pt
assert spki == open('$T/certpub.der', 'rb').read(), 'the certificate is not for the token key'
reqs = [r for r in json.load(open('$T/calist.json')) if r['cn'] == ident]
assert len(reqs) == 1 and reqs[0]['sha256'] == sha, ('CA requests', reqs)
"
	[ "$(log_count "\"POST /$sha\" 202 " "$SRV_LOG")" = 1 ] || fail "$id: request $sha posted $(log_count "\"POST /$sha\" 202 " "$SRV_LOG") times"
	# the record works: renew reads it (current: nothing to do, exit 0)
	expect_rc 0 p11c renew --id "$id" --dir "$S"
}

# scenario N STAGE SIGNED_FIRST: client fk-N killed at STAGE.  SIGNED_FIRST=1:
# the request is posted and signed beforehand, so that the killed run
# downloads the certificate; 0: the killed run is the first one.
scenario() {
	local n=$1 stage=$2 signed=$3 id=fk-$1 S=$T/s$1 tmp
	stage=${stage//ID/$id}
	stage=${stage//SERVER/$SERVER}
	mkdir -p "$S"
	if [ "$signed" = 1 ]; then
		expect_rc 69 once "$id" "$S"
		expect_rc 0 p11ca sign --dir "$D" "$(ca_sha "$S/$id.csr")"
	fi
	if [ "$stage" = poll-wait ]; then
		stall_and_kill "k$n" "$stage" "$P11CERT" --module "$MOD" --pin-file "$PINF" \
			enroll caramel "$SERVER" "$id" --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --timeout 60
	else
		stall_and_kill "k$n" "$stage" "$P11CERT" --module "$MOD" --pin-file "$PINF" \
			enroll caramel "$SERVER" "$id" --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --once
	fi
	tmp=$(files_sane "$S")
	one_key_at_most "$id"
	# a temp file of the shared SERVER.cacert is removed only when an hour
	# old (another client id may be writing it): age it
	for f in "$S/$SERVER".cacert.tmp.*; do
		[ -e "$f" ] && touch -d '2 hours ago' "$f"
	done
	finish "$id" "$S"
	enrolled "$id" "$S"
	pass "killed at $stage${tmp:+ (left $tmp)}: next run finished, one key, one request"
}

n=0
for stage in keygen-generated keygen-id-half keygen write:ID.csr caramel-posted poll-wait; do
	n=$((n + 1))
	scenario "$n" "$stage" 0
done
for stage in received cert-created stored write:ID.crt write:SERVER.cacert write:ID.enroll; do
	n=$((n + 1))
	scenario "$n" "$stage" 1
done

# cert-created during a renewal: the old certificate is still in the token
# next to the new one when the client dies
n=$((n + 1))
id=fk-$n S=$T/s$n
mkdir -p "$S"
expect_rc 69 once "$id" "$S"
expect_rc 0 p11ca sign --dir "$D" "$(ca_sha "$S/$id.csr")"
expect_rc 0 once "$id" "$S"
old_serial=$(cert_serial "$S/$id.crt")
# a new request, posted over mTLS with the valid certificate: p11ca signs
# it at once (renewal), the killed run has created the new object
rm -f "$S/$id.csr"
stall_and_kill "k$n" cert-created "$P11CERT" --module "$MOD" --pin-file "$PINF" \
	enroll caramel "$SERVER" "$id" --dir "$S" --ca-file "$D/ca.crt" --once
[ "$(count_objects cert "$id")" = 2 ] || fail "renewal killed after C_CreateObject: $(count_objects cert "$id") certificates, want old + new"
files_sane "$S" >/dev/null
one_key_at_most "$id"
expect_rc 0 once "$id" "$S"
[ "$(count_objects cert "$id")" = 1 ] || fail "after the renewal finished: $(count_objects cert "$id") certificates, want 1"
[ "$(cert_serial "$S/$id.crt")" != "$old_serial" ] || fail "the renewal kept the old certificate"
cert_next_to_key "$id" "$S/$id.crt" >/dev/null
verify_cert "$D/ca.crt" "$S/$id.crt"
pass "killed at cert-created during a renewal (two certificates): next run leaves the new one only"

echo "# $(($(date +%s) - start)) s"
