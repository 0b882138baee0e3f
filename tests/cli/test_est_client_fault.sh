#!/usr/bin/env bash
# p11cert enroll est killed with SIGKILL at each stage of an enrollment,
# against a real p11ca (EST, docs/ca.md) on loopback and a SoftHSM token.
# The client is stopped at an exact point by the test hook
# P11CERT_TEST_STALL_AT=STAGE (src/lib/testhook.c, docs/operations.md) and
# killed there.  Stages, in the order an enrollment reaches them:
#   keygen-generated   C_GenerateKeyPair done, CKA_ID still the random one
#   keygen-id-half     the public key has its final CKA_ID, the private not
#   keygen             key pair complete, nothing posted
#   received           POST /simpleenroll answered 200, certificate checked,
#                      nothing stored
#   cert-created       C_CreateObject of the certificate done, not read back
#   stored             certificate in the token, no file written
#   write:ID.cacerts, write:ID.crt, write:ID.enroll   the files, one by one
#   est-pending        (approval = pending) the 202 came back, service mode
#                      waits to ask again
# After each kill: at most one private key carries the label and every file
# with its final name parses; the next run finishes: one certificate next
# to the key (the one in ID.crt), ID.cacerts and ID.enroll there, no temp
# file left, and the CA holds one request for the client with one
# certificate (the rerun posted the same request: p11ca answers it with the
# certificate it issued, or with the 202 of the same pending request).
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"
need_test_hooks
p11ca est-user --help >/dev/null 2>&1 || { skip "p11ca has no EST server (est-user)"; exit 0; }

new_token est-fault
D=$T/ca
expect_rc 0 p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0
printf 'pw of alice\n' >"$T/pw"
chmod 600 "$T/pw"
expect_rc 0 p11ca est-user add alice --dir "$D" --password-file "$T/pw"
cat >"$D/est.conf" <<'EOF'
[default]
auth = basic
users = est-users

[pending]
auth = basic
users = est-users
approval = pending
retry-after = 1
EOF
srv_start est "$D"
SRV=https://localhost:$SRV_PORT

# est_args ID DIR [LABEL]: the enrollment of ID (key label ID)
est_args() {
	printf '%s\n' enroll est --server "$SRV${3:+/$3}" --key "pkcs11:object=$1" --dir "$2" \
		--ca-file "$D/ca.crt" --user alice --password-file "$T/pw" --subject "/C=SE/O=Example/CN=$1" \
		--type ec:P-256
}
once() {
	local id=$1 dir=$2 label=${3:-}
	mapfile -t args < <(est_args "$id" "$dir" "$label")
	p11c "${args[@]}" --once
}

# files_sane DIR: every file with its final name parses; prints the temp files
files_sane() {
	local f
	for f in "$1"/*; do
		[ -e "$f" ] || continue
		case $f in
		*.tmp.*) basename "$f" ;;
		*.crt | *.cacerts) openssl x509 -in "$f" -noout 2>/dev/null || fail "$(basename "$f") does not parse" ;;
		*.enroll) python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" 2>/dev/null \
			|| fail "$(basename "$f") is not JSON" ;;
		*.lock) ;;
		*) fail "unexpected file $(basename "$f")" ;;
		esac
	done
}

# enrolled ID DIR: the end state after the run that finished
enrolled() {
	local id=$1 S=$2 tmp f rid
	tmp=$(files_sane "$S")
	[ -z "$tmp" ] || fail "$id: temp files left: $tmp"
	for f in "$id.crt" "$id.cacerts" "$id.enroll"; do
		[ -s "$S/$f" ] || fail "$id: $f missing after the run that finished"
	done
	verify_cert "$D/ca.crt" "$S/$id.crt"
	cert_next_to_key "$id" "$S/$id.crt" >/dev/null
	[ "$(n_objects private-key "$id")" = 1 ] || fail "$id: $(n_objects private-key "$id") private keys"
	[ "$(n_objects certificate "$id")" = 1 ] || fail "$id: $(n_objects certificate "$id") certificates"
	[ "$(ca_requests "$D" "$id")" = 1 ] || fail "$id: $(ca_requests "$D" "$id") requests at the CA, want 1"
	rid=$(python3 -c 'import json,sys; print([r for r in json.load(open(sys.argv[1])) if r["cn"] == sys.argv[2]][0]["id"])' \
		"$T/calist.json" "$id")
	p11ca show --dir "$D" "$rid" >"$T/show" 2>&1 || fail "p11ca show $rid"
	expect_grep 'certificates 1$' "$T/show"
	json_assert "$S/$id.enroll" "assert j['protocol'] == 'est' and j['client_id'] == '$id'"
	expect_rc_in "0 1" p11c check --id "$id" --dir "$S"
}

# scenario N STAGE: client ef-N killed at STAGE, then run again
scenario() {
	local n=$1 stage=$2 id=ef-$1 S=$T/s$1 tmp
	stage=${stage//ID/$id}
	mkdir -m 700 "$S"
	mapfile -t args < <(est_args "$id" "$S")
	stall_and_kill "k$n" "$stage" "$P11CERT" --module "$MOD" --pin-file "$PINF" "${args[@]}" --once
	tmp=$(files_sane "$S")
	[ "$(n_objects private-key "$id")" -le 1 ] || fail "$stage: more than one key"
	expect_rc 0 once "$id" "$S"
	enrolled "$id" "$S"
	pass "killed at $stage${tmp:+ (left $tmp)}: the rerun finished, one key, one certificate, one request"
}

n=0
for stage in keygen-generated keygen-id-half keygen received cert-created stored write:ID.cacerts write:ID.crt \
	write:ID.enroll; do
	n=$((n + 1))
	scenario "$n" "$stage"
done

# renew (/simplereenroll) killed while writing ID.crt: the next renew
# removes the temp file the killed one left and finishes
id=ef-1 S=$T/s1
stall_and_kill krenew "write:$id.crt" "$P11CERT" --module "$MOD" --pin-file "$PINF" renew --id "$id" --dir "$S"
tmp=$(files_sane "$S")
[ -n "$tmp" ] || fail "renew killed at write:$id.crt left no temp file (the stage moved?)"
expect_rc 0 p11c renew --id "$id" --dir "$S"
tmp=$(files_sane "$S")
[ -z "$tmp" ] || fail "renew: temp files left after the rerun: $tmp"
cert_next_to_key "$id" "$S/$id.crt" >/dev/null
[ "$(n_objects certificate "$id")" = 1 ] || fail "renew: $(n_objects certificate "$id") certificates"
pass "renew killed while writing $id.crt: the rerun removes the temp file and finishes"

# pending approval: killed while waiting after the 202; the rerun polls the
# same request (no second one), which p11ca sign then lets through
id=ef-pend S=$T/spend
mkdir -m 700 "$S"
mapfile -t args < <(est_args "$id" "$S" pending)
stall_and_kill kpend est-pending "$P11CERT" --module "$MOD" --pin-file "$PINF" "${args[@]}" --timeout 60
[ "$(ca_requests "$D" "$id")" = 1 ] || fail "pending: $(ca_requests "$D" "$id") requests before the rerun"
expect_rc 69 once "$id" "$S" pending
[ "$(ca_requests "$D" "$id")" = 1 ] || fail "pending: the rerun made a second request: $(cat "$T/calist.json")"
sha=$(python3 -c 'import json,sys; print([r for r in json.load(open(sys.argv[1])) if r["cn"] == sys.argv[2]][0]["sha256"])' \
	"$T/calist.json" "$id")
expect_rc 0 p11ca sign --dir "$D" "$sha"
expect_rc 0 once "$id" "$S" pending
enrolled "$id" "$S"
pass "pending: killed while waiting, the rerun polls the same request; signed, then stored"
