# shellcheck shell=bash
# A scripted ACME server for the tests that need answers pebble does not
# give (tests/cli/test_acme_badserver.sh, test_acme_keychange_409.sh):
# python on 127.0.0.1 with a certificate made here, the handler base class
# in tests/helpers/acme_stub.py.  Sources enroll_lib.sh (kill by PID at
# exit, free_port, wait_for).  Sets
#   STUB_DIR   the server's folder: its certificate STUB_DIR/cert.pem
#   STUB_PORT  its port;  STUB_DIRURL  https://localhost:STUB_PORT/dir
# `stub_start SCRIPT MODE` (re)starts `python3 SCRIPT PORT MODE STUB_DIR`
# (stderr in SRV_LOG, one line per request) and waits for its /dir.

# shellcheck disable=SC2034
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

STUB_DIR=$T/stub
mkdir -p "$STUB_DIR"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$STUB_DIR/key.pem" \
	-out "$STUB_DIR/cert.pem" -subj /CN=localhost -days 2 -addext "subjectAltName=DNS:localhost,IP:127.0.0.1" \
	>/dev/null 2>&1 || fail "cannot make the scripted server's certificate"
STUB_PORT=$(free_port)
STUB_DIRURL=https://localhost:$STUB_PORT/dir
STUB_PID=''

stub_start() {
	[ -n "$STUB_PID" ] && kill_pid "$STUB_PID"
	SRV_LOG=$T/stub-$2.log
	PYTHONDONTWRITEBYTECODE=1 PYTHONPATH="$P11C_SOURCE_DIR/tests/helpers" python3 "$1" "$STUB_PORT" "$2" "$STUB_DIR" 2>"$SRV_LOG" &
	STUB_PID=$!
	_PIDS+=("$STUB_PID")
	wait_for 20 "the scripted ACME server" curl -sf --cacert "$STUB_DIR/cert.pem" "$STUB_DIRURL"
}
