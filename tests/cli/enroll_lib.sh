# shellcheck shell=bash
# Helpers for the enrollment end-to-end tests (tests/cli/test_enroll_*.sh):
# p11cert enroll against a real p11ca on loopback.  Sources lib.sh.
#
#   P11CA        the p11ca binary ($P11C_BUILD_DIR/src/ca/p11ca)
#
# `srv_start NAME DIR [serve flags...]` starts `p11ca serve` and sets
#   SRV_PID  SRV_PORT  SRV_LOG (its stderr: one line per request)
# `bg NAME CMD...` runs CMD in the background (stdout $T/NAME.out, stderr
# $T/NAME.err) and sets BG_PID; `bg_wait PID SECONDS` waits for it, bounded,
# and sets BG_RC.  Every process started here is killed by PID at exit.

# shellcheck disable=SC2034
_enroll_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$_enroll_lib_dir/lib.sh"
# lib.sh names the test after its caller, which is this file
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

: "${P11CA:=$P11C_BUILD_DIR/src/ca/p11ca}"
[ -x "$P11CA" ] || fail "P11CA=$P11CA is not an executable (build the p11ca target)"

_PIDS=()
SRV_PID='' SRV_PORT='' SRV_LOG=''

_enroll_cleanup() {
	local rc=$?
	kill_and_reap ${_PIDS[@]+"${_PIDS[@]}"} 2>/dev/null
	_cleanup "$rc"
}
trap _enroll_cleanup EXIT
trap 'exit 129' HUP
trap 'exit 130' INT
trap 'exit 143' TERM

# fail, with the end of the current server's log
fail() {
	echo "not ok - $TEST_NAME: $*" >&2
	if [ -n "$SRV_LOG" ] && [ -f "$SRV_LOG" ]; then
		echo "--- $(basename "$SRV_LOG") (last lines):" >&2
		tail -n 12 "$SRV_LOG" >&2
	fi
	exit 1
}

fail_out() {
	{
		echo "--- stdout:"; cat "$T/out" 2>/dev/null || true
		echo "--- stderr:"; cat "$T/err" 2>/dev/null || true
		echo "---"
	} >&2
	fail "$*"
}

p11ca() {
	timeout -k 5 "$P11C_TIMEOUT" "$P11CA" "$@"
}

# wait_for SECONDS DESCRIPTION CMD...: poll CMD every 0.1 s until it succeeds
wait_for() {
	local secs=$1 what=$2 i
	shift 2
	for i in $(seq $((secs * 10))); do
		"$@" >/dev/null 2>&1 && return 0
		sleep 0.1
	done
	fail "timed out after $secs s waiting for: $what"
}

# srv_start NAME DIR [serve flags...]
srv_start() {
	local name=$1 dir=$2 i
	shift 2
	rm -f "$dir/port"
	SRV_LOG=$T/$name.log
	"$P11CA" serve --dir "$dir" --port-file "$dir/port" "$@" </dev/null 2>"$SRV_LOG" &
	SRV_PID=$!
	_PIDS+=("$SRV_PID")
	for i in $(seq 100); do
		[ -s "$dir/port" ] && break
		kill -0 "$SRV_PID" 2>/dev/null || fail "p11ca serve ($name) exited at start"
		sleep 0.1
	done
	[ -s "$dir/port" ] || fail "p11ca serve ($name): no port file after 10 s"
	SRV_PORT=$(cat "$dir/port")
	case $SRV_PORT in '' | *[!0-9]*) fail "port file holds '$SRV_PORT'" ;; esac
}

# ca_up NAME [serve flags...]: a new CA in $T/ca (O=Example, C=SE, TLS
# name localhost), served on loopback; sets D (its folder) and SERVER
# (localhost:PORT) besides srv_start's variables
ca_up() {
	local name=$1
	shift
	D=$T/ca
	expect_rc 0 p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0
	srv_start "$name" "$D" "$@"
	SERVER=localhost:$SRV_PORT
}

# ca_sha FILE: the Caramel request address of a CSR file
ca_sha() { sha256sum "$1" | cut -c1-64; }

# need_test_hooks: end the test as skipped in a build without
# P11CERT_TEST_HOOKS (no P11CERT_TEST_STALL_AT to stop a process at a stage)
need_test_hooks() {
	if grep -q '^P11CERT_TEST_HOOKS:BOOL=OFF' "$P11C_BUILD_DIR/CMakeCache.txt" 2>/dev/null; then
		skip "built with -DP11CERT_TEST_HOOKS=OFF: no P11CERT_TEST_STALL_AT to stop the processes at a stage"
		exit 0
	fi
}

# kill_pid PID: SIGKILL and reap (bounded)
kill_pid() {
	local p=$1 i
	{
		kill -KILL "$p" 2>/dev/null || true
		for i in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		wait "$p" 2>/dev/null || true
	} 2>/dev/null
}

# bg NAME CMD...: start CMD (a program, not a shell function; p11c_direct
# is understood) in the background.  BG_PID is the program's own PID (the
# subshell execs it), so that killing it kills the program.
bg() {
	local name=$1
	shift
	if [ "$1" = p11c_direct ]; then
		shift
		set -- "$P11CERT" --module "$MOD" --pin-file "$PINF" "$@"
	fi
	(exec "$@") </dev/null >"$T/$name.out" 2>"$T/$name.err" &
	BG_PID=$!
	_PIDS+=("$BG_PID")
}

# bg_wait PID SECONDS [NAME]: wait (bounded) for a bg process; BG_RC
bg_wait() {
	local p=$1 secs=$2 name=${3:-} i
	for i in $(seq $((secs * 10))); do
		kill -0 "$p" 2>/dev/null || break
		sleep 0.1
	done
	if kill -0 "$p" 2>/dev/null; then
		[ -n "$name" ] && { echo "--- $name stderr:" >&2; tail -n 20 "$T/$name.err" >&2; }
		fail "process $p${name:+ ($name)} still running after $secs s"
	fi
	BG_RC=0
	wait "$p" || BG_RC=$?
}

# p11cert without the timeout wrapper (for background runs whose PID we
# need: killing `timeout` would leave p11cert running)
p11c_direct() {
	"$P11CERT" --module "$MOD" --pin-file "$PINF" "$@"
}

# free_port: a loopback TCP port nothing listens on (just released)
free_port() {
	python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

# log_count ERE FILE: number of matching lines (0 when none)
log_count() {
	grep -cE -e "$1" -- "$2" 2>/dev/null || true
}

# verify_cert CAFILE CERT: openssl accepts CERT under CAFILE
verify_cert() {
	openssl verify -CAfile "$1" "$2" >"$T/verify.out" 2>&1 \
		|| { cat "$T/verify.out" >&2; fail "openssl verify -CAfile $1 $2 failed"; }
	grep -q ': OK$' "$T/verify.out" || fail "openssl verify did not say OK: $(cat "$T/verify.out")"
}

# subject_of CERT: subject in RFC 2253 form ("CN=host1,O=Example,C=SE")
subject_of() {
	openssl x509 -in "$1" -noout -subject -nameopt RFC2253 | sed 's/^subject=//'
}

# token_json: `p11cert list --json` of the current token into $T/list.json
token_json() {
	p11c list --json >"$T/list.json" 2>"$T/list.err" \
		|| { cat "$T/list.err" >&2; fail "p11cert list --json failed"; }
}

# cert_next_to_key LABEL [CERTFILE]: exactly one private key labelled LABEL
# on the token, and a certificate with the same id and label (equal to
# CERTFILE when given).  Prints the key id (hex).  Also checks that the
# human listing shows a certificate line for LABEL.
cert_next_to_key() {
	local label=$1 file=${2:-} serial=''
	[ -n "$file" ] && serial=$(cert_serial "$file")
	token_json
	json_assert "$T/list.json" "
label, serial = '$label', '$serial'
keys = [o for o in j if o['class'] == 'private-key' and o['label'] == label]
assert len(keys) == 1, ('private keys labelled', label, keys)
kid = keys[0]['id']
certs = [o for o in j if o['class'] == 'certificate' and o['id'] == kid]
assert len(certs) == 1, ('certificates with the key id', kid, certs)
assert certs[0]['label'] == label, certs[0]
if serial:
    assert hexnorm(certs[0]['serial']).lstrip('0') == hexnorm(serial).lstrip('0'), (certs[0]['serial'], serial)
open('$T/keyid', 'w').write(kid)
"
	p11c list >"$T/list.txt" 2>&1 || fail "p11cert list failed"
	grep -qE "^certificate +$label " "$T/list.txt" || { cat "$T/list.txt" >&2; fail "p11cert list shows no certificate '$label'"; }
	grep -qE "^private-key +$label " "$T/list.txt" || { cat "$T/list.txt" >&2; fail "p11cert list shows no key '$label'"; }
	cat "$T/keyid"
}

# key_ids LABEL: ids (hex) of the private keys labelled LABEL, one a line
key_ids() {
	token_json
	python3 - "$T/list.json" "$1" <<'PY'
import json, sys
for o in json.load(open(sys.argv[1])):
    if o["class"] == "private-key" and o["label"] == sys.argv[2]:
        print(o["id"])
PY
}

# n_objects CLASS LABEL: objects of CLASS (private-key, public-key,
# certificate) labelled LABEL on the token
n_objects() {
	token_json
	python3 - "$T/list.json" "$1" "$2" <<'PY'
import json, sys
print(sum(1 for o in json.load(open(sys.argv[1])) if o["class"] == sys.argv[2] and o["label"] == sys.argv[3]))
PY
}

# ca_requests DIR CN: number of requests (any state) for CN in the CA
ca_requests() {
	p11ca list --dir "$1" --all --json >"$T/calist.json" 2>"$T/calist.err" \
		|| { cat "$T/calist.err" >&2; fail "p11ca list --all --json failed"; }
	python3 - "$T/calist.json" "$2" <<'PY'
import json, sys
print(sum(1 for r in json.load(open(sys.argv[1])) if r["cn"] == sys.argv[2]))
PY
}

# ca_request_field DIR SHA256 FIELD: a field of one request (p11ca show --json)
ca_request_field() {
	p11ca show --dir "$1" "$2" --json >"$T/cashow.json" 2>"$T/cashow.err" \
		|| { cat "$T/cashow.err" >&2; fail "p11ca show $2 failed"; }
	python3 - "$T/cashow.json" "$3" <<'PY'
import json, sys
j = json.load(open(sys.argv[1]))
v = j.get(sys.argv[2])
print("" if v is None else v)
PY
}

# proc_state PID: the one-letter state of a process (T: stopped), or empty
proc_state() { { sed 's/.*) //' "/proc/$1/stat" 2>/dev/null || true; } | cut -d' ' -f1; }

# stall_and_kill NAME STAGE CMD...: run CMD (a program) with
# P11CERT_TEST_STALL_AT=STAGE, wait until it has stopped itself there (the
# test hook, src/lib/testhook.c), SIGKILL it
stall_and_kill() {
	local name=$1 stage=$2 i st=''
	shift 2
	bg "$name" env P11CERT_TEST_STALL_AT="$stage" "$@"
	for i in $(seq 600); do
		st=$(proc_state "$BG_PID")
		[ "$st" = T ] && break
		if [ -z "$st" ] || [ "$st" = Z ]; then
			wait "$BG_PID" 2>/dev/null || true
			cat "$T/$name.err" >&2
			fail "$stage: the client exited before reaching the stage"
		fi
		sleep 0.1
	done
	[ "$st" = T ] || { cat "$T/$name.err" >&2; fail "$stage: not stopped after 60 s"; }
	grep -qF "stopping at '$stage'" "$T/$name.err" || { cat "$T/$name.err" >&2; fail "$stage: stopped elsewhere"; }
	kill_pid "$BG_PID"
}

# check_trace FILE: every file-creating or -changing system call in the
# strace log (strace -f -o FILE) is inside the token folder $TOKDIR
# (library-mode tests: test_enroll_library, test_acme_library)
check_trace() {
	python3 - "$1" "$TOKDIR" >"$T/trace.bad" <<'PY' || { cat "$T/trace.bad" >&2; fail "file writes outside the token folder (strace)"; }
import re, sys
log, tokdir = sys.argv[1], sys.argv[2].rstrip("/") + "/"
bad = []
for line in open(log):
    m = re.search(r'\b(openat2?|open|creat|rename(?:at2?)?|mkdir(?:at)?|unlink(?:at)?|link(?:at)?|symlink(?:at)?|truncate|mknod(?:at)?)\((.*)', line)
    if not m:
        continue
    call, args = m.group(1), m.group(2)
    if call.startswith("open"):
        flags = re.search(r'O_[A-Z_|]+', args)
        if not flags or not re.search(r'O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_TMPFILE', flags.group(0)):
            continue
    paths = re.findall(r'"((?:[^"\\]|\\.)*)"', args)
    if not paths or any(not p.startswith(tokdir) for p in paths):
        bad.append(line.rstrip())
for b in bad:
    print(b)
sys.exit(1 if bad else 0)
PY
}
