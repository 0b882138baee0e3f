#!/usr/bin/env bash
# A CA made without --hostname or --ca-hostname has no certificate TLS
# clients accept: serve refuses to start with a message naming the fix,
# instead of a server every client rejects.
# shellcheck source=ca_lib.sh
. "$(dirname "$0")/ca_lib.sh"

p11ca init --dir "$T/plain" --C SE --O Example --listen 127.0.0.1:0 >/dev/null 2>&1 || fail "init"
rc=0
timeout 20 "$P11CA" serve --dir "$T/plain" --port-file "$T/plain/port" </dev/null >"$T/out" 2>"$T/err" || rc=$?
[ "$rc" = 1 ] || fail "serve of a CA without a TLS certificate exited $rc, not 1"
grep -q -- '--hostname' "$T/err" || fail "the message does not name --hostname: $(cat "$T/err")"
[ ! -s "$T/plain/port" ] || fail "it listened anyway"
pass "serve refuses a CA certificate that cannot serve TLS, naming the fix"

# the two ways that work: a TLS certificate, or the CA certificate serving TLS
p11ca init --dir "$T/host" --C SE --O Example --hostname localhost --listen 127.0.0.1:0 >/dev/null 2>&1 || fail "init --hostname"
ca_start host "$T/host"
curl -sf --cacert "$T/host/ca.crt" "https://localhost:$CA_PORT/root.crt" -o /dev/null || fail "--hostname CA: TLS failed"
p11ca init --dir "$T/self" --ca-hostname localhost --listen 127.0.0.1:0 >/dev/null 2>&1 || fail "init --ca-hostname"
ca_start self "$T/self"
curl -sf --cacert "$T/self/ca.crt" "https://localhost:$CA_PORT/root.crt" -o /dev/null || fail "--ca-hostname CA: TLS failed"
pass "--hostname and --ca-hostname CAs serve TLS that curl accepts"
