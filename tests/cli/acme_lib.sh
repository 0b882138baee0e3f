# shellcheck shell=bash
# Helpers for the ACME end-to-end tests (tests/cli/test_acme_*.sh): p11cert
# enroll acme against Debian's pebble on loopback.  Sources enroll_lib.sh
# (bg, kill by PID at exit, free_port, wait_for, cert_next_to_key).
#
# `acme_up [VAR=value...]` starts pebble-challtestsrv (DNS only: every name
# is 127.0.0.1, TXT records set through its management port) and pebble
# (its HTTPS certificate made here for localhost/127.0.0.1, validation sleep
# off, nonce rejection off unless PEBBLE_WFE_NONCEREJECT=N is given, External
# Account Binding required when ACME_EAB_KEYS='"kid": "base64url key"' is, its
# http-01 port pointing at ACME_HTTP_PORT, where p11cert's responder
# listens) and sets
#   ACME_DIR       the directory URL        ACME_CACERT  trust for its HTTPS
#   ACME_ROOT      pebble's issuing root    ACME_HTTP_PORT
#   ACME_TLS_PORT  where pebble's VA does tls-alpn-01 (RFC 8737)
#   CTS_MGMT       challtestsrv's management URL (http)
#   ACME_MGMT      pebble's management URL (https, ACME_CACERT): /roots/N
#   PEBBLE_LOG     pebble's output          PEBBLE_PID, CTS_PID
# Exits 0 with a skip line when pebble is not installed (scripts/setup
# installs it).

# shellcheck disable=SC2034
_acme_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=enroll_lib.sh
. "$_acme_lib_dir/enroll_lib.sh"
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

if ! command -v pebble >/dev/null || ! command -v pebble-challtestsrv >/dev/null; then
	skip "pebble is not installed (scripts/setup installs the Debian package)"
	exit 0
fi
command -v curl >/dev/null || fail "curl not installed"

acme_up() {
	local d=$T/pebble acme_port mgmt_port dns_port cts_port tls_port
	mkdir -p "$d"
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$d/key.pem" \
		-out "$d/cert.pem" -subj /CN=localhost -days 2 \
		-addext "subjectAltName=DNS:localhost,IP:127.0.0.1" >/dev/null 2>&1 \
		|| fail "cannot make pebble's HTTPS certificate"
	ACME_CACERT=$d/cert.pem
	acme_port=$(free_port) mgmt_port=$(free_port) dns_port=$(free_port) cts_port=$(free_port)
	tls_port=$(free_port)
	ACME_TLS_PORT=$tls_port
	ACME_HTTP_PORT=$(free_port)
	local eab_req=false eab_keys=''
	if [ -n "${ACME_EAB_KEYS:-}" ]; then
		eab_req=true
		eab_keys=",
    \"externalAccountMACKeys\": { $ACME_EAB_KEYS }"
	fi
	cat >"$d/config.json" <<JSON
{
  "pebble": {
    "listenAddress": "127.0.0.1:$acme_port",
    "managementListenAddress": "127.0.0.1:$mgmt_port",
    "certificate": "$d/cert.pem",
    "privateKey": "$d/key.pem",
    "httpPort": $ACME_HTTP_PORT,
    "tlsPort": $tls_port,
    "ocspResponderURL": "",
    "externalAccountBindingRequired": $eab_req$eab_keys
  }
}
JSON
	# DNS only; every A query is 127.0.0.1, no AAAA
	(exec pebble-challtestsrv -defaultIPv4 127.0.0.1 -defaultIPv6 "" -dns01 "127.0.0.1:$dns_port" \
		-http01 "" -https01 "" -tlsalpn01 "" -management "127.0.0.1:$cts_port") \
		</dev/null >"$T/challtestsrv.log" 2>&1 &
	CTS_PID=$!
	_PIDS+=("$CTS_PID")
	CTS_MGMT=http://127.0.0.1:$cts_port
	PEBBLE_LOG=$T/pebble.log
	(cd "$d" && exec env PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT="${PEBBLE_WFE_NONCEREJECT:-0}" \
		"$@" pebble -config "$d/config.json" -dnsserver "127.0.0.1:$dns_port") \
		</dev/null >"$PEBBLE_LOG" 2>&1 &
	PEBBLE_PID=$!
	_PIDS+=("$PEBBLE_PID")
	ACME_DIR=https://localhost:$acme_port/dir
	wait_for 30 "pebble's directory" curl -sf --cacert "$ACME_CACERT" "$ACME_DIR"
	wait_for 30 "challtestsrv" curl -sf -X POST -d '{"host":"_acme-challenge.ready.test."}' "$CTS_MGMT/clear-txt" -o /dev/null
	ACME_MGMT=https://localhost:$mgmt_port
	ACME_ROOT=$d/root.pem
	curl -sf --cacert "$ACME_CACERT" "https://localhost:$mgmt_port/roots/0" -o "$ACME_ROOT" \
		|| fail "cannot fetch pebble's root from its management port"
}

# acme_enroll RC ARGS...: p11cert enroll acme against pebble (--server,
# --cacert and --agree-tos given), expecting exit RC
acme_enroll() {
	local want=$1
	shift
	expect_rc "$want" p11c enroll acme --server "$ACME_DIR" --cacert "$ACME_CACERT" --agree-tos "$@"
}

# acme_chain_ok CHAINFILE: the chain verifies up to pebble's root
acme_chain_ok() {
	openssl verify -CAfile "$ACME_ROOT" -untrusted "$1" "$1" >"$T/verify.out" 2>&1 \
		|| { cat "$T/verify.out" >&2; fail "the chain $1 does not verify to pebble's root"; }
}

# acme_key_attrs LABEL: the private key LABEL is sensitive and not
# extractable (p11cert list --json)
acme_key_attrs() {
	token_json
	json_assert "$T/list.json" "
keys = [o for o in j if o['class'] == 'private-key' and o['label'] == '$1']
assert len(keys) == 1, keys
assert keys[0]['sensitive'] is True and keys[0]['extractable'] is False, keys[0]
"
}

# acme_dns_hook FILE: writes a dns-01 hook (`FILE add|remove`, the record
# in ACME_RECORD_NAME / ACME_RECORD_VALUE) that sets and clears the TXT
# record at challtestsrv ($CTS_MGMT) and writes no file: it prints its
# environment to stderr as "hook-env: NAME=VALUE" lines for the caller's
# checks
acme_dns_hook() {
	cat >"$1" <<SH
#!/bin/sh
tr '\\0' '\\n' </proc/\$\$/environ | sed 's/^/hook-env: /' >&2
case "\$1" in
add) exec curl -sf -X POST -d "{\"host\":\"\$ACME_RECORD_NAME.\",\"value\":\"\$ACME_RECORD_VALUE\"}" "$CTS_MGMT/set-txt" ;;
remove) exec curl -sf -X POST -d "{\"host\":\"\$ACME_RECORD_NAME.\"}" "$CTS_MGMT/clear-txt" ;;
*) exit 2 ;;
esac
SH
	chmod 0755 "$1"
}
