#!/usr/bin/env bash
# Numeric options are whole numbers in a documented range: anything else
# (trailing garbage, empty, out of range, negative) is a usage error (64)
# that names the option and the value, before anything is touched.  Found
# by static analysis (atoi / strtol without an end check silently turned
# "9443x" into 9443 and "abc" into 0).
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

# bad_num WHAT VALUE CMD...: exit 64, the option and the value named
bad_num() {
	local what=$1 val=$2
	shift 2
	expect_rc 64 "$@"
	expect_grep -F "$what '$val'" "$T/err"
	[ ! -s "$T/out" ] || fail_out "stdout not empty: $*"
}

# p11cert: each option with a few bad values
for v in 9443x '' 0 65536 -1 abc; do
	bad_num --port "$v" p11raw enroll token --ca-host 127.0.0.1 --port "$v"
done
for v in 5s -1 x; do
	bad_num --timeout "$v" p11raw enroll caramel --timeout "$v" 127.0.0.1 client1
done
for v in 0 abc 10x; do
	bad_num --max-time "$v" p11raw curl --max-time "$v" https://127.0.0.1/
	bad_num --connect-timeout "$v" p11raw curl --connect-timeout "$v" https://127.0.0.1/
done
for v in -1 1h 99999999999999999999; do
	bad_num --jitter "$v" p11raw renew --id x --jitter "$v"
done
# nothing was written where the commands ran
[ -z "$(ls -A "$T" | grep -vE '^(out|err)$' || true)" ] || fail "files appeared in $T: $(ls -A "$T")"
pass "p11cert numeric options refuse bad values with exit 64"

# good values still work (parsed, then the command goes on to its next
# check): --port 1 and 65535 pass parsing, then the missing token file
expect_rc_in "64 65 66 69 70 74 1" p11raw enroll token --ca-host 127.0.0.1 --port 65535 --token-file "$T/none"
expect_nogrep -F "--port" "$T/err"
pass "in-range values are accepted"

# p11ca: --days for init, --reason for revoke
D=$T/ca
for v in 0 36501 x 30d; do
	bad_num --days "$v" "$P11CA" init --dir "$D" --CN t --days "$v"
	[ ! -e "$D" ] || fail "init with --days $v created $D"
done
expect_rc 0 "$P11CA" init --dir "$D" --CN t --hostname localhost --days 30
cp "$D/ca.crt" "$T/ca.before"
for v in 7 11 -1 keyCompromise 1x; do
	expect_rc 64 "$P11CA" revoke --dir "$D" --reason "$v" 01
	expect_grep -F "--reason '$v'" "$T/err"
done
cmp -s "$D/ca.crt" "$T/ca.before" || fail "ca.crt changed"
# a good reason gets past parsing (no such serial: 66)
expect_rc 66 "$P11CA" revoke --dir "$D" --reason 1 01
pass "p11ca --days and --reason refuse bad values with exit 64"
