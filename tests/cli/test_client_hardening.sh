#!/usr/bin/env bash
# p11cert as a hostile CA, a hostile token and a local user would attack it
# (issue 10, points 16-20):
#   16 the --exec hook gets no PIN or shared token in its environment
#   17 state folders, locks and records another user could write are
#      refused (exit 78); a rejection by a server the key's own enrollment
#      did not trust destroys nothing
#   18 a 304 nobody asked for is not "current"
#   19 labels with terminal escapes and U+202E are printed escaped
#   20 no core dumps unless --allow-core-dumps
# shellcheck source=enroll_lib.sh
. "$(dirname "$0")/enroll_lib.sh"

new_token harden
ca_up ca
S=$T/state
mkdir -p "$S"
KEY="pkcs11:token=$TOKEN;object=web1"
expect_rc 69 p11c enroll caramel "$SERVER" web1 --key "$KEY" --type ec:P-256 --ca-file "$D/ca.crt" --dir "$S" --once
p11ca sign --dir "$D" "$(ca_sha "$S/web1.csr")" >/dev/null 2>&1 || fail "p11ca sign"
expect_rc 0 p11c enroll caramel "$SERVER" web1 --key "$KEY" --ca-file "$D/ca.crt" --dir "$S" --once
KID=$(cert_next_to_key web1)

# --- 16: the hook's environment ----------------------------------------------
SECRET_TOKEN=hook-test-shared-token-0123456789abcdef
expect_rc 0 env P11CERT_PIN="$PIN" P11CERT_CA_TOKEN="$SECRET_TOKEN" HOOK_MARK=seen \
	timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" --pin-file "$PINF" \
	renew --dir "$S" --id web1 --rekey --exec "env > '$T/hook.env'"
[ -s "$T/hook.env" ] || fail_out "the hook did not run"
expect_grep '^HOOK_MARK=seen$' "$T/hook.env"
expect_nogrep '^P11CERT_PIN=' "$T/hook.env"
expect_nogrep '^P11CERT_CA_TOKEN=' "$T/hook.env"
expect_nogrep -F "$SECRET_TOKEN" "$T/hook.env"
KID=$(cert_next_to_key web1)
pass "16: the --exec hook runs without P11CERT_PIN and P11CERT_CA_TOKEN (other variables kept)"

# --- 17: state folders, locks and records --------------------------------------
# a planted lock symlink: nothing created outside the folder
S2=$T/s2
mkdir -p "$S2"
ln -s "$T/outside" "$S2/web2.lock"
expect_rc 78 p11c enroll caramel "$SERVER" web2 --ca-file "$D/ca.crt" --dir "$S2" --timeout 5
expect_grep 'lock file .*web2.lock is a symbolic link' "$T/err"
[ ! -e "$T/outside" ] || fail "enroll created the lock symlink's target"
[ "$(n_objects private-key web2)" = 0 ] || fail "a key was generated despite the refusal"
rm -f "$S2/web2.lock"
pass "17: a lock that is a symlink is refused (78), its target not created"

# folders writable by others or owned by another user
chmod 0777 "$S2"
expect_rc 78 p11c enroll caramel "$SERVER" web2 --ca-file "$D/ca.crt" --dir "$S2" --timeout 5
expect_grep "state folder .*s2 is writable by group or others" "$T/err"
expect_rc 127 p11c enroll caramel "$SERVER" web2 --ca-file "$D/ca.crt" --dir "$S2" --once
chmod 0755 "$S2"
chmod 0775 "$S"
expect_rc 78 p11c renew --dir "$S" --id web1
expect_grep "state folder .* is writable by group or others" "$T/err"
chmod 0755 "$S"
if [ "$(id -u)" = 0 ]; then
	chown nobody "$S2"
	expect_rc 78 p11c enroll caramel "$SERVER" web2 --ca-file "$D/ca.crt" --dir "$S2" --timeout 5
	expect_grep "state folder .*s2 is owned by another user" "$T/err"
	chown 0 "$S2"
fi
[ "$(n_objects private-key web2)" = 0 ] || fail "a key was generated in an unsafe folder"
pass "17: state folders writable by others or owned by another user are refused (78)"

# records writable by others, owned by another user, or symlinks
cp "$S/web1.enroll" "$T/web1.enroll.good"
chmod 0664 "$S/web1.enroll"
expect_rc 78 p11c renew --dir "$S" --id web1
expect_grep "record .*web1.enroll is writable by group or others" "$T/err"
chmod 0644 "$S/web1.enroll"
if [ "$(id -u)" = 0 ]; then
	chown nobody "$S/web1.enroll"
	expect_rc 78 p11c renew --dir "$S" --id web1
	expect_grep "record .*web1.enroll is owned by another user" "$T/err"
	chown 0 "$S/web1.enroll"
fi
mv "$S/web1.enroll" "$T/elsewhere.enroll"
ln -s "$T/elsewhere.enroll" "$S/web1.enroll"
expect_rc 78 p11c renew --dir "$S" --id web1
expect_grep "web1.enroll is a symbolic link" "$T/err"
rm -f "$S/web1.enroll"
cp "$T/web1.enroll.good" "$S/web1.enroll"
expect_rc 0 p11c renew --dir "$S" --id web1
[ "$(cert_next_to_key web1)" = "$KID" ] || fail "the key changed"
pass "17: records writable by others, owned by another user or symlinked are refused (78); a safe one works"

# a record pointing at another CA that rejects: the key certified by our CA
# stays (the forged-record attack, with the folder checks out of the way)
D2=$T/ca2
expect_rc 0 p11ca init --dir "$D2" --C SE --O Other --hostname localhost --listen 127.0.0.1:0
srv_start ca2 "$D2"
S3=$T/s3
mkdir -p "$S3"
python3 - "$S3/web1.enroll" "localhost:$SRV_PORT" "$KEY" "$D2/ca.crt" <<'PY'
import json, sys
json.dump({"protocol": "caramel", "server": sys.argv[2], "client_id": "web1", "key": sys.argv[3],
           "ca_file": sys.argv[4]}, open(sys.argv[1], "w"))
PY
expect_rc 69 p11c renew --dir "$S3" --id web1
p11ca reject --dir "$D2" "$(ca_sha "$S3/web1.csr")" >/dev/null 2>&1 || fail "p11ca reject on the second CA"
expect_rc 1 p11c renew --dir "$S3" --id web1
expect_grep "rejected request .* the token key is kept" "$T/err"
[ "$(cert_next_to_key web1)" = "$KID" ] || fail "the other CA's rejection destroyed the key"
verify_cert "$D/ca.crt" "$S/web1.crt"
pass "17: a rejection by a CA that did not certify the key destroys nothing"

# --- 18: 304 without If-Modified-Since -------------------------------------
# a hostile server (its own CA, given as --ca-file) answering 304 to all
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil-ca.key" \
	-out "$T/evil-ca.crt" -subj /CN=evil-ca -days 2 >/dev/null 2>&1 || fail "evil CA"
openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/evil.key" -out "$T/evil.csr" \
	-subj /CN=localhost >/dev/null 2>&1 || fail "evil CSR"
printf 'subjectAltName=DNS:localhost\n' >"$T/evil.ext"
openssl x509 -req -in "$T/evil.csr" -CA "$T/evil-ca.crt" -CAkey "$T/evil-ca.key" -CAcreateserial \
	-out "$T/evil.crt" -days 2 -extfile "$T/evil.ext" >/dev/null 2>&1 || fail "evil certificate"
EVIL_PORT=$(free_port)
bg evil python3 -c '
import http.server, ssl, sys
class H(http.server.BaseHTTPRequestHandler):
    def answer(self):
        if "(web5)" in self.headers.get("User-Agent", ""):
            # for point 19: an error answer with terminal escapes
            body = b"\x1b]0;pwned\x07\x1b[2J\xe2\x80\xaeevil"
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        self.send_response(304)
        self.send_header("Content-Length", "0")
        self.end_headers()
    do_GET = do_POST = answer
    def log_message(self, *a):
        sys.stderr.write("%s %s\n" % (self.command, self.path)); sys.stderr.flush()
s = http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), H)
c = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
c.load_cert_chain(sys.argv[2], sys.argv[3])
s.socket = c.wrap_socket(s.socket, server_side=True)
s.serve_forever()
' "$EVIL_PORT" "$T/evil.crt" "$T/evil.key"
wait_for 10 "the 304 server" openssl s_client -connect "127.0.0.1:$EVIL_PORT" -CAfile "$T/evil-ca.crt" </dev/null
S4=$T/s4
mkdir -p "$S4"
expect_rc 76 p11c enroll caramel "localhost:$EVIL_PORT" web4 --ca-file "$T/evil-ca.crt" --dir "$S4" --type ec:P-256 --timeout 5
expect_grep "304" "$T/err"
expect_nogrep "is current" "$T/err"
expect_rc 127 p11c enroll caramel "localhost:$EVIL_PORT" web4 --ca-file "$T/evil-ca.crt" --dir "$S4" --once
[ ! -e "$S4/web4.enroll" ] || fail "an enrollment record was written after an unasked 304"
# renew through a record pointing there: no certificate from that CA, no success
python3 - "$S4/web1.enroll" "localhost:$EVIL_PORT" "$KEY" "$T/evil-ca.crt" <<'PY'
import json, sys
json.dump({"protocol": "caramel", "server": sys.argv[2], "client_id": "web1", "key": sys.argv[3],
           "ca_file": sys.argv[4]}, open(sys.argv[1], "w"))
PY
expect_rc 1 p11c renew --dir "$S4" --id web1
expect_nogrep "is current" "$T/err"
pass "18: a 304 to a request without If-Modified-Since is a protocol error, never success"

# --- 19: terminal escapes from a server and from the token ----------------------
expect_rc 76 p11c enroll caramel "localhost:$EVIL_PORT" web5 --ca-file "$T/evil-ca.crt" --dir "$S4" --type ec:P-256 --timeout 5
python3 - "$T/err" <<'PY' || fail_out "a server's answer reached the terminal raw"
import sys
b = open(sys.argv[1], "rb").read()
assert all(c == 10 or 0x20 <= c <= 0x7e for c in b), b
assert b"answered 500: \\x1b]0;pwned\\x07\\x1b[2J\\xe2\\x80\\xaeevil" in b, b
PY
kill_pid "$BG_PID"

EVIL_LABEL='%1B%5D0%3Bpwned%07%1B%5B31mred%E2%80%AEgpj.exe'
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=$EVIL_LABEL" --type ec:P-256
python3 - "$T/err" <<'PY' || fail_out "keygen printed a raw escape"
import sys
b = open(sys.argv[1], "rb").read()
assert b"\x1b" not in b and b"\x07" not in b and "\u202e".encode() not in b, b
assert b"\\x1b]0;pwned\\x07\\x1b[31mred\\xe2\\x80\\xaegpj.exe" in b, b
PY
expect_rc 0 p11c list
python3 - "$T/out" <<'PY' || fail_out "list printed a raw escape"
import sys
b = open(sys.argv[1], "rb").read()
assert all(c == 10 or 0x20 <= c <= 0x7e for c in b), [c for c in b if not (c == 10 or 0x20 <= c <= 0x7e)]
assert b"\\x1b]0;pwned\\x07\\x1b[31mred\\xe2\\x80\\xaegpj.exe" in b, b
PY
expect_rc 0 p11c list --json
python3 - "$T/out" <<'PY' || fail_out "list --json printed a raw escape or lost the label"
import json, sys
b = open(sys.argv[1], "rb").read()
assert all(c == 10 or 0x20 <= c <= 0x7e for c in b), "not pure printable ASCII"
labels = [o["label"] for o in json.loads(b)]
assert "\x1b]0;pwned\x07\x1b[31mred\u202egpj.exe" in labels, labels
PY
pass "19: server answers and labels with ESC sequences, BEL and U+202E are escaped (error lines, keygen, list, list --json)"

# --- 20: core dumps -----------------------------------------------------------
need_test_hooks
# core_limit NAME [GLOBAL OPTIONS]: soft core limit of a p11cert stopped in
# its CSR write, started with an unlimited soft limit
core_limit() {
	local name=$1 i st=''
	shift
	# disable_coredump=0: an ASan build would otherwise set the limit to 0 itself
	bg "$name" bash -c 'ulimit -S -c unlimited && exec "$@"' _ env P11CERT_TEST_STALL_AT=write:"$name.csr" \
		ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}disable_coredump=0" \
		"$P11CERT" --module "$MOD" --pin-file "$PINF" "$@" csr --key "$KEY" --subject /CN=core -o "$T/$name.csr"
	for i in $(seq 600); do
		st=$({ sed 's/.*) //' "/proc/$BG_PID/stat" 2>/dev/null || true; } | cut -d' ' -f1)
		[ "$st" = T ] && break
		[ -n "$st" ] && [ "$st" != Z ] || { cat "$T/$name.err" >&2; fail "$name: exited before the stage"; }
		sleep 0.1
	done
	[ "$st" = T ] || fail "$name: not stopped after 60 s"
	awk '/^Max core file size/ { print $5 }' "/proc/$BG_PID/limits"
	kill_pid "$BG_PID"
}
[ "$(core_limit core1)" = 0 ] || fail "the soft core limit is not 0 in a process that holds a PIN"
[ "$(core_limit core2 --allow-core-dumps)" = unlimited ] || fail "--allow-core-dumps did not keep core dumps"
pass "20: core dumps off (RLIMIT_CORE 0) unless --allow-core-dumps"
