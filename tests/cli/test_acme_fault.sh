#!/usr/bin/env bash
# p11cert enroll acme killed with SIGKILL at each stage (the test hook
# P11CERT_TEST_STALL_AT, docs/operations.md), against pebble:
#   acme-presented        a challenge is being answered (responder or web root)
#   received              chain downloaded and checked, nothing stored
#   stored                certificate in the token, no file written
#   write:LABEL.crt, write:LABEL.chain.pem, write:LABEL.enroll
# After each kill at most one key (and one account key) carries the label
# and every file with its final name parses; the next run finishes: the
# certificate next to the key, the chain, the record, the same account, no
# temp file left.
. "$(dirname "$0")/acme_lib.sh"
need_test_hooks

new_token acme
acme_up
D=$T/state
mkdir -m 700 "$D"

# acme_args LABEL: the enrollment of LABEL with the built-in responder
acme_args() {
	printf '%s\n' enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --agree-tos \
		--key "pkcs11:token=$TOKEN;object=$1" -d "$1.example.test" \
		--http-listen "127.0.0.1:$ACME_HTTP_PORT" --dir "$D"
}

# sane LABEL: at most one key and one account key; final-name files parse
sane() {
	local f
	[ "$(n_objects private-key "$1")" -le 1 ] || fail "$1: more than one key"
	[ "$(n_objects private-key "$1-acme-account")" -le 1 ] || fail "$1: more than one account key"
	for f in "$D/$1".*; do
		[ -e "$f" ] || continue
		case $f in
		*.tmp.*) ;;
		*.crt | *.chain.pem) openssl x509 -in "$f" -noout 2>/dev/null || fail "$(basename "$f") does not parse" ;;
		*.enroll | *.acme-account) python3 -c 'import json,sys; json.load(open(sys.argv[1]))' "$f" \
			|| fail "$(basename "$f") is not JSON" ;;
		esac
	done
}

# finished LABEL: the end state
finished() {
	cert_next_to_key "$1" "$D/$1.crt" >/dev/null
	acme_chain_ok "$D/$1.chain.pem"
	json_assert "$D/$1.enroll" "assert j['protocol'] == 'acme', j"
	ls "$D" | grep -q '\.tmp\.' && fail "temp files left: $(ls "$D")"
	return 0
}

n=0
for stage in acme-presented received stored write:LABEL.crt write:LABEL.chain.pem write:LABEL.enroll; do
	n=$((n + 1))
	label=k$n
	st=${stage/LABEL/$label}
	mapfile -t args < <(acme_args "$label")
	stall_and_kill "$label" "$st" "$P11CERT" --module "$MOD" --pin-file "$PINF" "${args[@]}"
	sane "$label"
	acct=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$D/$label.acme-account" 2>/dev/null || true)
	expect_rc 0 p11c "${args[@]}"
	sane "$label"
	finished "$label"
	if [ -n "$acct" ]; then
		[ "$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["url"])' "$D/$label.acme-account")" = "$acct" ] \
			|| fail "$st: the rerun changed the account"
	fi
	pass "killed at $st, the rerun finishes"
done
