# Helpers for the p11ca end-to-end tests; sourced by tests/cli/test_ca_*.sh
# after lib.sh's conventions (this file sources lib.sh itself).
#
#   P11CA        the p11ca binary ($P11C_BUILD_DIR/src/ca/p11ca)
#
# After `ca_start NAME DIR [serve flags...]`:
#   CA_PID  server pid    CA_PORT  main listener port    CA_LOG  its stderr
#   CA_DIR  DIR           CA_URL   https://localhost:PORT
# Every server started is killed by PID at exit (SIGKILL; tests stop them
# with ca_stop to check the graceful path).
#
# HTTP helpers write the response body to $T/body, the headers to $T/hdr,
# curl -v to $T/curl.err and the status to HTTP_CODE.

# shellcheck disable=SC2034
_ca_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$_ca_lib_dir/lib.sh"
# lib.sh names the test after its caller, which is this file
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

: "${P11CA:=$P11C_BUILD_DIR/src/ca/p11ca}"
[ -x "$P11CA" ] || fail "P11CA=$P11CA is not an executable (build the p11ca target)"
command -v curl >/dev/null || fail "curl not installed"

CA_PIDS=()
CA_PID='' CA_PORT='' CA_LOG='' CA_DIR='' CA_URL=''

_ca_cleanup() {
	local rc=$?
	set +e
	if [ "$rc" = 0 ] && [ "$_JSON_N" -gt 0 ]; then
		(json_check_all) || rc=1
	fi
	# no "Killed" notices from bash for servers a failed test left running
	exec 2>/dev/null
	kill_and_reap ${CA_PIDS[@]+"${CA_PIDS[@]}"}
	declare -F pg_destroy >/dev/null && pg_destroy
	_cleanup "$rc"
}
trap _ca_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# fail, with the end of the current server's log
fail() {
	echo "not ok - $TEST_NAME: $*" >&2
	if [ -n "$CA_LOG" ] && [ -f "$CA_LOG" ]; then
		echo "--- $(basename "$CA_LOG") (last lines):" >&2
		tail -n 15 "$CA_LOG" >&2
	fi
	exit 1
}

# P11CA_TEST_DB=pg (the .pg variants in tests/CMakeLists.txt): the same
# tests on PostgreSQL.  A throwaway cluster (pg_lib.sh); each `p11ca init`
# gets a new database (--db, --db-password-file, saved in p11ca.conf, so
# every later command and serve of that CA uses it).
if [ "${P11CA_TEST_DB:-sqlite}" = pg ]; then
	# shellcheck source=pg_lib.sh
	. "$_ca_lib_dir/pg_lib.sh"
	pg_start
fi

# p11ca with a time limit
p11ca() {
	if [ "${P11CA_TEST_DB:-sqlite}" = pg ] && [ "${1:-}" = init ]; then
		pg_newdb
		shift
		set -- init --db "$PG_URI" --db-password-file "$PG_PWFILE" "$@"
	fi
	timeout -k 5 "$P11C_TIMEOUT" "$P11CA" "$@"
}

now_ms() { echo $(($(date +%s%N) / 1000000)); }

# ca_start NAME DIR [serve flags...]: start `p11ca serve` in the background
ca_start() {
	local name=$1 dir=$2 i
	shift 2
	rm -f "$dir/port"
	CA_LOG=$T/$name.log
	"$P11CA" serve --dir "$dir" --port-file "$dir/port" "$@" </dev/null 2>"$CA_LOG" &
	CA_PID=$!
	CA_PIDS+=("$CA_PID")
	for i in $(seq 100); do
		[ -s "$dir/port" ] && break
		if ! kill -0 "$CA_PID" 2>/dev/null; then
			wait "$CA_PID" 2>/dev/null || true
			_ca_forget "$CA_PID"
			fail "p11ca serve ($name) exited at start"
		fi
		sleep 0.1
	done
	[ -s "$dir/port" ] || fail "p11ca serve ($name): no port file after 10 s"
	CA_PORT=$(cat "$dir/port")
	case $CA_PORT in '' | *[!0-9]*) fail "port file holds '$CA_PORT'" ;; esac
	[ "$CA_PORT" -gt 0 ] || fail "port 0 in the port file"
	CA_DIR=$dir
	CA_URL=https://localhost:$CA_PORT
}

# ca_stop [PID [SECONDS]]: SIGTERM, wait (bounded, default 15 s); STOP_RC
ca_stop() {
	local pid=${1:-$CA_PID} secs=${2:-15} i
	kill -TERM "$pid" 2>/dev/null || fail "server $pid is not running"
	for i in $(seq $((secs * 10))); do
		kill -0 "$pid" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$pid" 2>/dev/null && fail "server $pid still running $secs s after SIGTERM"
	STOP_RC=0
	wait "$pid" || STOP_RC=$?
	_ca_forget "$pid"
}

# _ca_forget PID: a reaped server; its PID may be reused, never kill it again
_ca_forget() {
	local p keep=()
	for p in ${CA_PIDS[@]+"${CA_PIDS[@]}"}; do
		[ "$p" = "$1" ] || keep+=("$p")
	done
	CA_PIDS=(${keep[@]+"${keep[@]}"})
}

# ca_token_port LOG: the shared-token listener's port, from the server log
ca_token_port() {
	local i p=''
	for i in $(seq 100); do
		p=$(sed -n 's/^p11ca: serving shared-token on .* (port \([0-9][0-9]*\))$/\1/p' "$1" | tail -n 1)
		[ -n "$p" ] && break
		sleep 0.1
	done
	[ -n "$p" ] || fail "no 'serving shared-token' line in $(basename "$1") after 10 s"
	echo "$p"
}

# --- HTTP --------------------------------------------------------------------

# curl against the CA in $CA_DIR: trusts only its ca.crt, loopback only
cu() {
	curl -sS --noproxy '*' --max-time 10 --cacert "$CA_DIR/ca.crt" "$@"
}

# req WANT PATH [curl args...]: request $CA_URL/PATH, fail unless HTTP WANT
req() {
	local want=$1 path=$2
	shift 2
	req_url "$want" "$CA_URL$path" "$@"
}

req_url() {
	local want=$1 url=$2
	shift 2
	rm -f "$T/body" "$T/hdr"
	LAST_REQ="$* $url"
	HTTP_CODE=$(cu -v -D "$T/hdr" -o "$T/body" -w '%{http_code}' "$@" "$url" 2>"$T/curl.err") \
		|| { cat "$T/curl.err" >&2; fail "curl $* $url failed"; }
	[ -f "$T/body" ] || : >"$T/body"
	if [ "$HTTP_CODE" != "$want" ]; then
		{ echo "--- curl:"; tail -n 30 "$T/curl.err"; echo "--- body:"; cat "$T/body"; echo; } >&2
		fail "$url: HTTP $HTTP_CODE, want $want"
	fi
}

# post WANT FILE [SHA]: POST FILE as the body to /SHA (default its own sha256)
post() {
	local want=$1 file=$2 sha=${3:-}
	shift 2
	[ $# -gt 0 ] && shift
	[ -n "$sha" ] || sha=$(sha256_of "$file")
	req "$want" "/$sha" --data-binary @"$file" "$@"
}

# header NAME: value of the last response header NAME (no CR), or nothing
header() {
	tr -d '\r' <"$T/hdr" | awk -v n="$1" 'BEGIN { n = tolower(n) }
		{ i = index($0, ":"); if (i && tolower(substr($0, 1, i - 1)) == n) { v = substr($0, i + 1); sub(/^[ \t]+/, "", v); r = v } }
		END { print r }'
}

# expect_type TYPE: Content-Type of the last response is TYPE (ignoring parameters)
expect_type() {
	local t
	t=$(header Content-Type)
	[ "${t%%;*}" = "$1" ] || fail "Content-Type '$t', want '$1'"
}

# JSON checks are collected and run in one python3 process (python starts
# slowly): json_later FILE PYTHON [ARG] keeps a copy of FILE; PYTHON runs
# with `j` (the parsed JSON), `raw` (the text), `arg` (ARG) and `re`.
# json_check_all runs them (fails the test on any); the exit trap runs
# what is left, so no check is ever skipped.
_JSON_N=0
json_later() {
	_JSON_N=$((_JSON_N + 1))
	mkdir -p "$T/jl"
	cp "$1" "$T/jl/$_JSON_N.json"
	printf '%s' "$2" >"$T/jl/$_JSON_N.py"
	printf '%s' "${3:-}" >"$T/jl/$_JSON_N.arg"
	printf '%s' "${LAST_REQ:-$1}" >"$T/jl/$_JSON_N.what"
}

json_check_all() {
	local n=$_JSON_N
	_JSON_N=0
	[ "$n" -gt 0 ] || return 0
	python3 - "$T/jl" "$n" >"$T/jl.out" 2>&1 <<'PY' || { cat "$T/jl.out" >&2; fail "JSON checks failed"; }
import json, re, sys
d, n, bad = sys.argv[1], int(sys.argv[2]), 0
for i in range(1, n + 1):
    rd = lambda ext: open("%s/%d.%s" % (d, i, ext), encoding="utf-8", errors="replace").read()
    raw = rd("json")
    try:
        exec(rd("py"), {"j": json.loads(raw), "raw": raw, "arg": rd("arg"), "re": re})
    except Exception as e:
        bad += 1
        print("%s: %s: %s\n  body: %r" % (rd("what"), type(e).__name__, e, raw))
print("%d JSON checks, %d failed" % (n, bad))
sys.exit(1 if bad else 0)
PY
	rm -rf "$T/jl"
}

# expect_problem STATUS DETAIL_ERE: problem+json body (docs/ca.md); the
# detail must match DETAIL_ERE (case-insensitive), or be null for "null"
expect_problem() {
	expect_type application/problem+json
	json_later "$T/body" "
st = $1
titles = {400: 'Bad Request', 403: 'Forbidden', 404: 'Not Found', 405: 'Method Not Allowed',
          411: 'Length Required', 413: 'Payload Too Large', 503: 'Service Unavailable'}
assert set(j) == {'status', 'title', 'detail'}, 'keys'
assert j['status'] == st, 'status'
assert j['title'] == titles[st], 'title'
d = j['detail']
if arg == 'null':
    assert d is None, 'detail not null'
else:
    assert isinstance(d, str) and re.search(arg, d, re.I), 'detail does not match ' + arg
" "$2"
}

# expect_accepted SHA: 202 JSON {"sha256": SHA, "url": "https://HOST/SHA"}
expect_accepted() {
	expect_type application/json
	json_later "$T/body" "
assert set(j) == {'sha256', 'url'}, 'keys'
assert j['sha256'] == arg, 'sha256'
assert j['url'] == 'https://localhost:$CA_PORT/' + arg, 'url'
" "$1"
}

sha256_of() { sha256sum "$1" | cut -c1-64; }

# --- CSRs and certificates -----------------------------------------------------

# mk_csr OUT SUBJ [KEY [openssl req args...]]: a CSR with a new file key
# (OUT.key).  KEY: ec (P-256, default), ec384, ec521, rsa:BITS.
mk_csr() {
	local out=$1 subj=$2 key=${3:-ec} nk
	[ $# -gt 3 ] && shift 3 || shift $#
	case $key in
	ec) nk=(-newkey ec -pkeyopt ec_paramgen_curve:P-256) ;;
	ec384) nk=(-newkey ec -pkeyopt ec_paramgen_curve:P-384) ;;
	ec521) nk=(-newkey ec -pkeyopt ec_paramgen_curve:P-521) ;;
	rsa:*) nk=(-newkey "$key") ;;
	*) fail "mk_csr: unknown key type $key" ;;
	esac
	openssl req -new "${nk[@]}" -nodes -subj "$subj" -keyout "$out.key" -out "$out" "$@" \
		2>"$T/openssl.err" || { cat "$T/openssl.err" >&2; fail "openssl req $subj"; }
}

# pem_csr DER OUT: canonical Caramel PEM (64 columns, LF, one newline)
pem_csr() {
	{
		echo '-----BEGIN CERTIFICATE REQUEST-----'
		base64 -w 64 <"$1"
		echo '-----END CERTIFICATE REQUEST-----'
	} >"$2"
}

# pubkey_of FILE: the public key (PEM) of a certificate or CSR
pubkey_of() {
	if grep -q 'BEGIN CERTIFICATE REQUEST' "$1"; then
		openssl req -in "$1" -pubkey -noout
	else
		openssl x509 -in "$1" -pubkey -noout
	fi
}

# cert_lifetime CERT: notAfter - notBefore in seconds
cert_lifetime() {
	local nb na
	nb=$(openssl x509 -in "$1" -noout -startdate | sed 's/^notBefore=//')
	na=$(openssl x509 -in "$1" -noout -enddate | sed 's/^notAfter=//')
	echo $(($(date -u -d "$na" +%s) - $(date -u -d "$nb" +%s)))
}

# expect_near VALUE WANT SLACK WHAT
expect_near() {
	local d=$(($1 - $2))
	[ "${d#-}" -le "$3" ] || fail "$4: $1, want $2 +- $3"
}

# expect_leaf CERT CN CSR: a Caramel leaf of the CA in $CA_DIR for CSR
expect_leaf() {
	local c=$1 cn=$2 csr=$3 txt
	openssl verify -CAfile "$CA_DIR/ca.crt" "$c" >"$T/verify.out" 2>&1 \
		|| { cat "$T/verify.out" >&2; fail "$c does not verify under ca.crt"; }
	txt=$(openssl x509 -in "$c" -noout -text) || fail "$c is not a certificate"
	openssl x509 -in "$c" -noout -subject -nameopt RFC2253 | grep -qE "^subject=CN=$cn(,|$)" \
		|| fail "subject of $c: $(openssl x509 -in "$c" -noout -subject -nameopt RFC2253), want CN=$cn first"
	grep -A1 'X509v3 Basic Constraints: critical' <<<"$txt" | grep -q 'CA:FALSE' \
		|| fail "$c: no critical basicConstraints CA:FALSE"
	grep -A1 'X509v3 Extended Key Usage: critical' <<<"$txt" \
		| grep -qE 'TLS Web Client Authentication, TLS Web Server Authentication|TLS Web Server Authentication, TLS Web Client Authentication' \
		|| fail "$c: EKU not critical clientAuth+serverAuth: $(grep -A1 'Extended Key Usage' <<<"$txt")"
	grep -A1 'X509v3 Subject Alternative Name' <<<"$txt" | grep -qE "DNS:$cn(,|$)" \
		|| fail "$c: no SAN DNS:$cn"
	grep -q 'X509v3 Subject Key Identifier' <<<"$txt" || fail "$c: no SKI"
	grep -q 'X509v3 Authority Key Identifier' <<<"$txt" || fail "$c: no AKI"
	[ "$(pubkey_of "$c")" = "$(pubkey_of "$csr")" ] || fail "$c: public key is not the CSR's"
}

# --- p11cert tunnel (test_tunnel.sh, test_token_remote.sh) -----------------------

# tunnel_start NAME KEYLABEL HOST:PORT [tunnel options...]: run the tunnel in
# the background (listening on $TUN_LISTEN, default 127.0.0.1:0); sets
# TUN_PID, TUN_PORT, TUN_LOG
tunnel_start() {
	local name=$1 label=$2 conn=$3 i
	shift 3
	TUN_LOG=$T/tun-$name.log
	rm -f "$T/tun-$name.port"
	"$P11CERT" --module "$MOD" --pin-file "$PINF" tunnel --key "pkcs11:token=$TOKEN;object=$label" \
		--listen "${TUN_LISTEN:-127.0.0.1:0}" --port-file "$T/tun-$name.port" --connect "$conn" "$@" \
		</dev/null 2>"$TUN_LOG" &
	TUN_PID=$!
	CA_PIDS+=("$TUN_PID")
	for i in $(seq 150); do
		[ -s "$T/tun-$name.port" ] && break
		kill -0 "$TUN_PID" 2>/dev/null || { cat "$TUN_LOG" >&2; fail "tunnel $name exited at start"; }
		sleep 0.1
	done
	[ -s "$T/tun-$name.port" ] || fail "tunnel $name: no port file after 15 s"
	TUN_PORT=$(cat "$T/tun-$name.port")
	case $TUN_PORT in '' | *[!0-9]* | 0) fail "tunnel $name: port file holds '$TUN_PORT'" ;; esac
}

# tunnel_stop [PID]: SIGTERM must end it with exit 0 within 5 s
tunnel_stop() {
	ca_stop "${1:-$TUN_PID}" 5
	[ "$STOP_RC" = 0 ] || fail "tunnel exited $STOP_RC after SIGTERM"
}

# --- peers for the mTLS tests ----------------------------------------------------

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# enroll_signed ID TYPE: a token key with a certificate from the running CA
# (CA_PORT, CA_DIR): embedded mode (69), the administrator signs, again (0).
# State goes to $T/s.
enroll_signed() {
	local id=$1 type=$2 sha
	mkdir -p "$T/s"
	expect_rc 69 p11c enroll caramel "localhost:$CA_PORT" "$id" --type "$type" --ca-file "$CA_DIR/ca.crt" --dir "$T/s" --once
	sha=$(sha256sum "$T/s/$id.csr" | cut -d' ' -f1)
	p11ca sign --dir "$CA_DIR" "$sha" >/dev/null 2>&1 || fail "p11ca sign $id"
	expect_rc 0 p11c enroll caramel "localhost:$CA_PORT" "$id" --ca-file "$CA_DIR/ca.crt" --dir "$T/s" --once
}

# nginx_run CA URL WANT BODY: nginx (foreground, no master process, its PID
# in CA_PIDS) with the common preamble and BODY inside http { }, once URL
# (checked against CA) answers; fails unless the first answer is WANT.  The
# answer's headers are in $T/ng/probe.hdr.
nginx_run() {
	local ca=$1 url=$2 want=$3 body=$4 user_line= code=000
	command -v /usr/sbin/nginx >/dev/null || fail "nginx not installed (scripts/setup installs nginx-light)"
	mkdir -p "$T/ng"
	[ "$(id -u)" = 0 ] && user_line='user root;'
	cat >"$T/ng/nginx.conf" <<CONF
$user_line
daemon off;
master_process off;
pid $T/ng/nginx.pid;
error_log $T/ng/error.log;
events { worker_connections 512; }
http {
	client_body_temp_path $T/ng/body;
	proxy_temp_path $T/ng/proxy;
	fastcgi_temp_path $T/ng/fastcgi;
	uwsgi_temp_path $T/ng/uwsgi;
	scgi_temp_path $T/ng/scgi;
$body
}
CONF
	/usr/sbin/nginx -p "$T/ng" -c "$T/ng/nginx.conf" >/dev/null 2>"$T/ng/start.err" </dev/null &
	CA_PIDS+=("$!")
	for _ in $(seq 100); do
		code=$(curl -s --noproxy '*' --max-time 5 -o /dev/null -D "$T/ng/probe.hdr" -w '%{http_code}' \
			--cacert "$ca" "$url" 2>/dev/null) || true
		[ "$code" != 000 ] && break
		sleep 0.1
	done
	[ "$code" = "$want" ] || fail "nginx at $url answered '$code', not $want: $(cat "$T/ng/start.err" "$T/ng/error.log" 2>/dev/null)"
}

# nginx_mtls CA_DIR: a real nginx (one process: master_process off, so
# killing its PID leaves no worker behind) with the CA's tls.crt, requiring
# client certificates from the CA, on two loopback ports: NG_P12 (TLS 1.2
# only) and NG_P13 (TLS 1.3 only).  "/" answers "hello <client DN>",
# /missing 404, /echo "len=<Content-Length> method=<M>".  Access log
# $T/ng/access.log: "$ssl_protocol $status $ssl_client_s_dn".
nginx_mtls() {
	local d=$1
	NG_P12=$(free_port)
	NG_P13=$(free_port)
	# 400 without a client certificate
	nginx_run "$d/ca.crt" "https://localhost:$NG_P13/" 400 "\
	log_format m '\$ssl_protocol \$status \$ssl_client_s_dn';
	access_log $T/ng/access.log m;
	ssl_certificate $d/tls.crt;
	ssl_certificate_key $d/tls.key;
	ssl_client_certificate $d/ca.crt;
	ssl_verify_client on;
	server { listen 127.0.0.1:$NG_P12 ssl; ssl_protocols TLSv1.2;
		location / { return 200 \"hello \$ssl_client_s_dn\\n\"; } }
	server { listen 127.0.0.1:$NG_P13 ssl; ssl_protocols TLSv1.3;
		location / { return 200 \"hello \$ssl_client_s_dn\\n\"; }
		location /missing { return 404; }
		location /echo { client_max_body_size 1m; return 200 \"len=\$content_length method=\$request_method\\n\"; } }"
}

# nginx_front D: nginx on $NG (TLS with D's server certificate) as a
# reverse proxy in front of p11ca on $CA_PORT, as an upstream Caramel
# server's TLS front end (Server: nginx)
nginx_front() {
	local d=$1
	NG=$(free_port)
	nginx_run "$d/ca.crt" "https://localhost:$NG/root.crt" 200 "\
	access_log off;
	server { listen 127.0.0.1:$NG ssl;
		ssl_certificate $d/tls.crt; ssl_certificate_key $d/tls.key;
		location / { proxy_pass https://127.0.0.1:$CA_PORT; proxy_ssl_verify on;
			proxy_ssl_trusted_certificate $d/ca.crt; proxy_ssl_name localhost; proxy_ssl_server_name on;
			proxy_ssl_session_reuse off; } }  # p11ca fails resumed handshakes (no session id context)"
}

# --- the shared-token endpoint ---------------------------------------------------
# (SECRET: the token; TPORT: the token listener's port)

VECTOR=$P11C_SOURCE_DIR/tests/vectors/token_hmac_vector.sh

# hmac_of PEM [TOKEN]: the reference HMAC over the key of a CSR or certificate
hmac_of() {
	pubkey_of "$1" >"$T/hm.pub" || fail "no public key in $1"
	sh "$VECTOR" "$T/hm.pub" "${2:-$SECRET}" || fail "token_hmac_vector.sh failed"
}

# body OUT HMAC CSRFILE: {"hmac": HMAC, "csr": PEM}; "-" leaves a field out
body() {
	python3 - "$@" <<'PY' || fail "cannot build a JSON body"
import json, sys
out, hmac, csr = sys.argv[1:4]
j = {}
if hmac != "-":
    j["hmac"] = hmac
if csr != "-":
    j["csr"] = open(csr).read()
open(out, "w").write(json.dumps(j))
PY
}

# tpost WANT BODY [curl args]: POST BODY to the token listener
tpost() {
	local want=$1 b=$2
	shift 2
	req_url "$want" "https://localhost:$TPORT/" -H 'Content-Type: application/json' --data-binary @"$b" "$@"
}

# expect_terror ERE: a token error body {"hmac":null,"pemEncodedCertificate":null,"error":...}
expect_terror() {
	json_later "$T/body" "
assert set(j) == {'hmac', 'pemEncodedCertificate', 'error'}, 'keys'
assert j['hmac'] is None and j['pemEncodedCertificate'] is None, 'not null'
assert isinstance(j['error'], str) and re.search(arg, j['error']), 'error does not match ' + arg
" "$1"
}
