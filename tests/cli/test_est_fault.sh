#!/usr/bin/env bash
# p11ca's EST killed with SIGKILL before it answers an enrollment (test
# hooks, P11CERT_TEST_STALL_AT): with automatic approval, after the
# certificate is issued and before the request and the certificate are
# stored together (ca-issued-not-stored): nothing is stored, and the
# client's retry after the restart gets exactly one certificate; with
# pending approval, right after the request is committed
# (est-request-stored): the retry finds it and gets the 202.  Nothing is
# stored twice.
# shellcheck source=est_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/est_lib.sh"
if grep -q '^P11CERT_TEST_HOOKS:BOOL=OFF' "$P11C_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
	skip "built with -DP11CERT_TEST_HOOKS=OFF: no P11CERT_TEST_STALL_AT"
	exit 0
fi

est_ca ca
D=$EST_DIR
est_user "$D" alice 'pw of alice'
est_conf "$D" <<'CONF'
[default]
auth = basic
users = est-users
[pending]
auth = basic
users = est-users
approval = pending
CONF

# crash LABEL CSR AT: start p11ca stopping at AT, POST (no answer), SIGKILL
# it, start it again
crash() {
	local label=$1 csr=$2 at=$3 code i
	P11CERT_TEST_STALL_AT=$at est_start "stall-$label"
	code=$(curl -s --noproxy '*' --max-time 3 --cacert "$D/ca.crt" -o /dev/null -w '%{http_code}' \
		-u 'alice:pw of alice' -H 'Content-Type: application/pkcs10' --data-binary @"$csr" \
		"$EST_URL/${label:+$label/}simpleenroll" 2>/dev/null) || true
	[ "${code:-000}" = 000 ] || fail "POST answered $code although p11ca was to stop first"
	for i in $(seq 100); do
		grep -qF "stopping at '$at'" "$CA_LOG" && break
		sleep 0.1
	done
	grep -qF "stopping at '$at'" "$CA_LOG" || fail "p11ca did not stop at $at"
	kill -KILL "$CA_PID"
	wait "$CA_PID" 2>/dev/null || true
	_ca_forget "$CA_PID"
	est_start "restart-$label"
}

# n_est STATE: EST requests in that state
n_est() { p11ca list --dir "$D" --all 2>/dev/null | awk -v s="$1" '$2 == s && $4 == "est"' | wc -l; }

# automatic approval: issued, nothing stored by the crash, signed on the retry
est_csr "$T/a.csr" "$EST_SUBJ/CN=crash-auto"
crash "" "$T/a.csr.b64" ca-issued-not-stored
[ "$(n_est pending)" = 0 ] && [ "$(n_est signed)" = 0 ] ||
	fail "something was stored before the request and its certificate were committed together: $(p11ca list --dir "$D" --all 2>&1)"
est_post 200 simpleenroll "$T/a.csr.b64" "" -u 'alice:pw of alice'
est_certs "$T/body" "$T/a.crt"
expect_leaf "$T/a.crt" crash-auto "$T/a.csr"
[ "$(n_est pending)" = 0 ] && [ "$(n_est signed)" = 1 ] || fail "after the retry: $(p11ca list --dir "$D" --all 2>&1)"
id=$(p11ca list --dir "$D" --all 2>/dev/null | awk '$4 == "est" { print $1 }')
p11ca show --dir "$D" "$id" >"$T/show" 2>&1 || fail "p11ca show $id"
expect_grep 'certificates 1$' "$T/show"
ca_stop
[ "$STOP_RC" = 0 ] || fail "p11ca exited $STOP_RC after SIGTERM"

# pending approval: the retry gets the 202, still one request
est_csr "$T/p.csr" "$EST_SUBJ/CN=crash-pending"
crash pending "$T/p.csr.b64" est-request-stored
est_post 202 simpleenroll "$T/p.csr.b64" pending -u 'alice:pw of alice'
[ "$(n_est pending)" = 1 ] || fail "pending after the retry: $(p11ca list --dir "$D" --all 2>&1)"
pass "EST killed before answering: an issued certificate left nothing stored, a pending request is found by the retry, nothing twice"
