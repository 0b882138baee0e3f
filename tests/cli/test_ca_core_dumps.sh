#!/usr/bin/env bash
# p11ca holds the CA token's PIN and the shared token: core dumps are off
# (soft RLIMIT_CORE 0, not dumpable) unless --allow-core-dumps (issue 10
# point 20; p11cert's side is in test_client_hardening).
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

[ "$(ulimit -H -c)" = unlimited ] || { skip "the hard core limit is $(ulimit -H -c), cannot tell"; exit 0; }
ulimit -S -c unlimited
# an ASan build sets the limit to 0 by itself
export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0"

p11ca init --dir "$T/ca" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 \
	>/dev/null 2>"$T/init.err" || fail "p11ca init: $(cat "$T/init.err")"
core_of() { awk '/^Max core file size/ { print $5 }' "/proc/$CA_PID/limits"; }

ca_start ca "$T/ca"
[ "$(core_of)" = 0 ] || fail "serve: the soft core limit is $(core_of), not 0"
ca_stop
ca_start ca2 "$T/ca" --allow-core-dumps
[ "$(core_of)" = unlimited ] || fail "--allow-core-dumps: the soft core limit is $(core_of)"
ca_stop
pass "p11ca serve: core dumps off (RLIMIT_CORE 0) unless --allow-core-dumps"
