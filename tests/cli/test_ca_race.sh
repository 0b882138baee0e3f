#!/usr/bin/env bash
# issue 10 point 3: a rejection or revocation made while a signature is in
# flight always wins.  `p11ca refresh` is stopped (P11CERT_TEST_STALL_AT,
# src/lib/testhook.c) between issuing a certificate and storing it; the
# administrator rejects (or revokes) meanwhile; refresh then goes on.  The
# store's compare-and-set must refuse the certificate: the request stays
# rejected (GET 403) or revoked (GET 202), and no certificate is added.
# Deterministic: the pause is a SIGSTOP at a named stage, not timing luck.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"

need_test_hooks
ca_up race
CAFILE=$D/ca.crt

# get SHA: HTTP status of GET /SHA
get() {
	curl -sS --noproxy '*' --max-time 10 --cacert "$CAFILE" -o "$T/get.body" -w '%{http_code}' \
		"https://localhost:$SRV_PORT/$1" 2>"$T/get.err" || fail "GET /$1: $(cat "$T/get.err")"
}

# signed_request NAME: a Caramel request signed by the administrator; SHA
signed_request() {
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/C=SE/O=Example/CN=$1" \
		-keyout "$T/$1.key" -out "$T/$1.csr" 2>/dev/null || fail "openssl req $1"
	SHA=$(ca_sha "$T/$1.csr")
	code=$(curl -sS --noproxy '*' --max-time 10 --cacert "$CAFILE" -o /dev/null -w '%{http_code}' \
		--data-binary @"$T/$1.csr" "https://localhost:$SRV_PORT/$SHA") || fail "POST $1"
	[ "$code" = 202 ] || fail "POST $1: HTTP $code"
	expect_rc 0 p11ca sign --dir "$D" "$SHA"
	[ "$(get "$SHA")" = 200 ] || fail "GET $1 after sign: not 200"
}

# n_certs SHA: certificates of the request
n_certs() {
	p11ca show --dir "$D" --json "$1" | python3 -c 'import json,sys; print(json.load(sys.stdin)["certificates"])'
}

# refresh_stalled: `p11ca refresh` stopped after issuing, before storing
refresh_stalled() {
	bg refresh env P11CERT_TEST_STALL_AT=ca-issued-not-stored "$P11CA" refresh --dir "$D"
	wait_for 20 "refresh stopped at ca-issued-not-stored" \
		grep -qF "stopping at 'ca-issued-not-stored'" "$T/refresh.err"
	wait_for 10 "refresh in state T" sh -c "ps -o stat= -p $BG_PID | grep -q '^T'"
}

# --- reject during refresh ------------------------------------------------------
signed_request race-reject
SHA1=$SHA
before=$(n_certs "$SHA1")
refresh_stalled
# the administrator rejects while the certificate is in flight
expect_rc 0 p11ca reject --dir "$D" "$SHA1"
kill -CONT "$BG_PID"
bg_wait "$BG_PID" 30 refresh
[ "$BG_RC" = 0 ] || { cat "$T/refresh.err" >&2; fail "refresh exited $BG_RC"; }
grep -q "request [0-9]* not signed: request [0-9]* was rejected" "$T/refresh.err" \
	|| { cat "$T/refresh.err" >&2; fail "refresh did not say the request was rejected meanwhile"; }
grep -q "skipped 1 rejected or revoked" "$T/refresh.err" || fail "refresh summary: $(cat "$T/refresh.err")"
p11ca show --dir "$D" "$SHA1" >"$T/show.out" 2>&1 || fail "show"
grep -q '^request [0-9]* (rejected,' "$T/show.out" || fail "request not rejected after the race: $(head -1 "$T/show.out")"
[ "$(n_certs "$SHA1")" = "$before" ] || fail "a certificate was stored for the rejected request"
[ "$(get "$SHA1")" = 403 ] || fail "GET of the rejected request: not 403"

# --- revoke during refresh -------------------------------------------------------
signed_request race-revoke
SHA2=$SHA
serial=$(p11ca show --dir "$D" --json "$SHA2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["serial"])')
before=$(n_certs "$SHA2")
refresh_stalled
expect_rc 0 p11ca revoke --dir "$D" --reason 1 "$serial"
kill -CONT "$BG_PID"
bg_wait "$BG_PID" 30 refresh
[ "$BG_RC" = 0 ] || { cat "$T/refresh.err" >&2; fail "refresh exited $BG_RC"; }
grep -q "not signed: the last certificate of request [0-9]* is revoked" "$T/refresh.err" \
	|| { cat "$T/refresh.err" >&2; fail "refresh did not refuse the revoked request"; }
[ "$(n_certs "$SHA2")" = "$before" ] || fail "a certificate was stored for the revoked request"
[ "$(get "$SHA2")" = 202 ] || fail "GET of the revoked request: not 202"

pass "reject and revoke win over a refresh in flight"
