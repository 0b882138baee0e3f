#!/usr/bin/env bash
# p11cert renew reads DIR/ID.enroll through the protocol table
# (src/cli/proto/protocol.h): the common fields, the protocol looked up by
# name (an unknown one is "not renewable yet", 69), then the protocol's own
# fields, all before the token is opened (a broken module is never
# reached), each with a clear message and the documented exit code.
# check --id reads the same record for its key (the systemd renew unit).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

S=$T/state
mkdir -m 0700 "$S"
BAD_MOD=$T/no-such-module.so

# renew ID: with a module that cannot load: nothing here may need it
renew() { p11raw --module "$BAD_MOD" renew --dir "$S" --id "$@"; }

record() { # record ID JSON
	printf '%s\n' "$2" >"$S/$1.enroll"
	chmod 0644 "$S/$1.enroll"
}

# --- common fields ----------------------------------------------------------
record nofields '{"protocol": "caramel", "server": "localhost:1"}'
expect_rc 65 renew nofields
expect_grep "nofields.enroll is not an enrollment record" "$T/err"
record notjson 'protocol=caramel'
expect_rc 65 renew notjson
expect_grep "notjson.enroll is not an enrollment record" "$T/err"

# --- the protocol is looked up by its exact name ------------------------------
for p in scep EST ACME Caramel "caramel " tok est/ ""; do
	record other "{\"protocol\": \"$p\", \"server\": \"localhost:1\", \"client_id\": \"other\", \"key\": \"pkcs11:object=other\"}"
	expect_rc 69 renew other
	expect_grep -F "protocol '$p' cannot be renewed yet" "$T/err"
done
pass "unknown protocols: 69, named"

# --- the shared-token record's own fields ------------------------------------
tok='"protocol": "token", "server": "localhost", "client_id": "t1", "key": "pkcs11:object=t1"'
record t1 "{$tok, \"port\": 9443}"
expect_rc 65 renew t1
expect_grep -F "the record of 't1' lacks a port or ca_file" "$T/err"
expect_nogrep -F "$BAD_MOD" "$T/err"
# 4294967297 would be 1 once cut to an int
for port in 0 -1 65536 4294967297 -4294967295; do
	record t1 "{$tok, \"port\": $port, \"ca_file\": \"$S/nifi-cert.pem\"}"
	expect_rc 65 renew t1
	expect_grep -F "the record of 't1' lacks a port or ca_file" "$T/err"
	expect_nogrep -F "$BAD_MOD" "$T/err"
done
pass "shared-token record without ca_file or with a bad port: 65"

# --- the record's CA file must be safe (common to all protocols) -------------
touch "$S/ca.pem"
chmod 0666 "$S/ca.pem"
record c1 "{\"protocol\": \"caramel\", \"server\": \"localhost:1\", \"client_id\": \"c1\", \"key\": \"pkcs11:object=c1\", \"ca_file\": \"$S/ca.pem\"}"
expect_rc 78 renew c1
pass "a writable CA file: 78"

# --- a valid record gets as far as the token: the module is the error --------
chmod 0644 "$S/ca.pem"
record t2 "{$tok, \"port\": 9443, \"ca_file\": \"$S/ca.pem\"}"
expect_rc 69 renew t2
expect_grep -F "cannot load PKCS#11 module '$BAD_MOD'" "$T/err"
pass "records checked before the token is opened"

# --- check --id: the key of the record, read as renew reads it -------------
new_token rec
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=k-web" --type ec:P-256
record web "{\"protocol\": \"caramel\", \"server\": \"localhost:1\", \"client_id\": \"web\", \"key\": \"pkcs11:token=$TOKEN;object=k-web\"}"
# the key's label is not the id: only the record can name it
expect_rc 255 p11c check --key "pkcs11:token=$TOKEN;object=web"
expect_rc 0 p11c check --id web --dir "$S" --json
json_assert "$T/out" "assert j['key'] == 'pkcs11:token=$TOKEN;object=k-web' and j['needs_renewal'] is True and j['reason'] == 'no certificate'"
CARAMEL_CERT_DIR=$S expect_rc 0 p11c check --id web
expect_grep 'no certificate' "$T/out"
pass "check --id takes the key from DIR/ID.enroll (and \$CARAMEL_CERT_DIR)"

# errors are 255 (systemd fails the unit rather than skipping it)
expect_rc 255 p11c check --id missing --dir "$S"
record t1 "{$tok, \"port\": 9443}"
expect_rc 255 p11c check --id t1 --dir "$S"
expect_grep -F "p11cert: check: the record of 't1' lacks a port or ca_file" "$T/err"
record other '{"protocol": "scep", "server": "localhost:1", "client_id": "other", "key": "pkcs11:object=other"}'
expect_rc 255 p11c check --id other --dir "$S"
expect_grep -F "p11cert: check: protocol 'scep' cannot be renewed yet" "$T/err"
# an EST record's own fields: the CA certificates and the trust anchors
for extra in '' '"ca_file": "/nonexistent/ca.pem",' '"cacerts": "/nonexistent/x.cacerts",'; do
	record other "{\"protocol\": \"est\", $extra \"server\": \"https://localhost:1\", \"client_id\": \"other\", \"key\": \"pkcs11:object=other\"}"
	expect_rc 255 p11c check --id other --dir "$S"
	expect_grep -F "p11cert: check: the EST record of 'other' lacks cacerts or ca_file" "$T/err"
	expect_rc 65 renew other
	expect_grep -F "p11cert: renew: the EST record of 'other' lacks cacerts or ca_file" "$T/err"
done
# an ACME record's own field: its names (checked before the token is touched)
for names in '' '"names": [],' '"names": ["a", 7],' '"names": "a",'; do
	record other "{\"protocol\": \"acme\", $names \"server\": \"https://localhost:1/dir\", \"client_id\": \"other\", \"key\": \"pkcs11:object=other\"}"
	expect_rc 255 p11c check --id other --dir "$S"
	expect_grep -F "p11cert: check: the ACME record of 'other' has" "$T/err"
	expect_rc 65 renew other
	expect_grep -F "p11cert: renew: the ACME record of 'other' has" "$T/err"
done
expect_rc 255 p11c check --id notjson --dir "$S"
expect_grep -F "notjson.enroll is not an enrollment record" "$T/err"
expect_rc 255 p11c check --id web --dir "$S" --key "pkcs11:token=$TOKEN;object=k-web"
expect_grep -F "URI or --id CLIENTID is required (one of them)" "$T/err"
expect_rc 255 p11c check
chmod 0666 "$S/web.enroll"
expect_rc 255 p11c check --id web --dir "$S"
pass "check --id: missing, incomplete, unknown, unsafe records and --key with --id are errors (255)"
