#!/usr/bin/env bash
# p11cert enroll caramel when the token fails under it, against a real
# p11ca: the token fills up before the certificate is stored; the token
# disappears while the client polls and just before it stores; a wrong
# PIN (exactly one C_Login, counted with OpenSC's pkcs11-spy); a module
# that does not exist.  Each time: a documented exit code, an error line
# naming what failed, and nothing that was there before lost: the enrolled
# identity A (key + certificate) stays in the token, and the state files
# in the folder are byte for byte what they were.  Where the cause goes
# away (space freed, token back), the next run finishes the enrollment.
# test_errors covers keygen on a full and on a read-only token.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"
need_test_hooks

start=$(date +%s)
ca_up token
new_token fault-tok
S=$T/s
mkdir -p "$S"

once() { p11c enroll caramel "$SERVER" "$1" --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --once; }
svc() { p11c enroll caramel "$SERVER" "$1" --dir "$S" --ca-file "$D/ca.crt" --type ec:P-256 --timeout 30; }

# snapshot NAME: the state folder's files (name + sha256) and the token's
# objects (pkcs11-tool: class, label, id)
snapshot() {
	(cd "$S" && sha256sum -- * 2>/dev/null | grep -v '\.lock$' | sort) >"$T/$1.files"
	objects | cut -f1-3 | sort >"$T/$1.objs"
}
# unchanged NAME WHAT: files and token as in snapshot NAME
unchanged() {
	snapshot now
	diff "$T/$1.files" "$T/now.files" >&2 || fail "$2: the state files changed"
	diff "$T/$1.objs" "$T/now.objs" >&2 || fail "$2: the token's objects changed"
}
# signed_pending ID: key made, request posted (69); then signed
signed_pending() {
	expect_rc 69 once "$1"
	expect_rc 0 p11ca sign --dir "$D" "$(ca_sha "$S/$1.csr")"
}

# identity A, enrolled: what must survive everything below
signed_pending A
expect_rc 0 once A
KID_A=$(cert_next_to_key A "$S/A.crt")
pass "setup: identity A enrolled (key id $KID_A)"

# --- wrong PIN: one C_Login, 77, nothing changed ------------------------------------
SPY=
for s in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/pkcs11/pkcs11-spy.so; do
	[ -e "$s" ] && { SPY=$s; break; }
done
echo 'Wr0ng-pin-X9k' >"$T/wrong.pin"
signed_pending B
snapshot before
for mode in svc once; do
	rm -f "$T/spy.log"
	if [ "$mode" = svc ]; then want=77; opt=(--timeout 30); else want=127; opt=(--once); fi
	if [ -n "$SPY" ]; then
		expect_rc "$want" env PKCS11SPY="$MOD" PKCS11SPY_OUTPUT="$T/spy.log" timeout -k 5 120 "$P11CERT" \
			--module "$SPY" --pin-file "$T/wrong.pin" enroll caramel "$SERVER" B --dir "$S" --ca-file "$D/ca.crt" "${opt[@]}"
		n=$(grep -c -E '^[0-9]+: C_Login$' "$T/spy.log" || true)
		[ "$n" = 1 ] || fail_out "wrong PIN ($mode): C_Login called $n times, want exactly 1"
	else
		expect_rc "$want" p11raw --module "$MOD" --pin-file "$T/wrong.pin" enroll caramel "$SERVER" B --dir "$S" \
			--ca-file "$D/ca.crt" "${opt[@]}"
	fi
	expect_error_line
	expect_grep -F 'CKR_PIN_INCORRECT' "$T/err"
	expect_nogrep -F 'Wr0ng-pin-X9k' "$T/err"
	unchanged before "wrong PIN ($mode)"
done
[ -n "$SPY" ] && pass "wrong PIN: 77 (127 with --once), exactly one C_Login (pkcs11-spy), nothing changed" \
	|| skip "pkcs11-spy.so not found: wrong PIN checked without counting C_Login"

# --- module missing -----------------------------------------------------------------------
expect_rc 69 p11raw --module /nonexistent/p11-module.so --pin-file "$PINF" enroll caramel "$SERVER" B --dir "$S" \
	--ca-file "$D/ca.crt" --timeout 30
expect_error_line
expect_grep -F '/nonexistent/p11-module.so' "$T/err"
expect_rc 127 p11raw --module /nonexistent/p11-module.so --pin-file "$PINF" enroll caramel "$SERVER" B --dir "$S" \
	--ca-file "$D/ca.crt" --once
expect_grep -F '/nonexistent/p11-module.so' "$T/err"
unchanged before "module missing"
pass "module missing: 69 (127 with --once) naming the path, nothing changed"

# --- token full when the certificate is to be stored ------------------------------------
# (as in test_errors: the token copied onto a tmpfs with few inodes in a
# private mount namespace, the free inodes used up; B's request is signed,
# so the run downloads the certificate and fails to store it)
mkdir "$T/fullmnt"
cat >"$T/full.sh" <<'EOF'
set -u
mnt=$FULL_T/fullmnt
mount -t tmpfs -o size=8m,nr_inodes=256 p11c-full "$mnt" || exit 200
cp -a "$FULL_TOKDIR/tokens" "$mnt/tokens" || exit 201
sed "s|^directories.tokendir = .*|directories.tokendir = $mnt/tokens|" "$FULL_TOKDIR/softhsm2.conf" >"$FULL_T/full.conf"
export SOFTHSM2_CONF=$FULL_T/full.conf
run() { # NAME: enroll B in service mode, exit code to NAME.rc, objects to NAME.objs
	local rc=0
	timeout -k 5 120 "$P11CERT" --module "$FULL_MOD" --pin-file "$FULL_PINF" enroll caramel "$FULL_SERVER" B \
		--dir "$FULL_S" --ca-file "$FULL_CA" --timeout 30 >"$FULL_T/$1.out" 2>"$FULL_T/$1.err" || rc=$?
	echo "$rc" >"$FULL_T/$1.rc"
	pkcs11-tool --module "$FULL_MOD" --token-label fault-tok --login --pin "$FULL_PIN" --list-objects >"$FULL_T/$1.objs" 2>&1
}
mkdir "$mnt/fill"
i=0
while : >"$mnt/fill/$i" 2>/dev/null; do i=$((i + 1)); done
run full1
ls "$FULL_S" >"$FULL_T/full1.ls"
rm -rf "$mnt/fill"
run full2
exit 0
EOF
full_rc=0
u=(unshare -rm)
[ "$(id -u)" = 0 ] && u=(unshare -m)
FULL_T=$T FULL_TOKDIR=$TOKDIR FULL_MOD=$MOD FULL_PINF=$PINF FULL_PIN=$PIN FULL_SERVER=$SERVER FULL_S=$S \
	FULL_CA=$D/ca.crt "${u[@]}" bash "$T/full.sh" >"$T/unshare.log" 2>&1 || full_rc=$?
if [ "$full_rc" != 0 ] || [ ! -f "$T/full1.rc" ]; then
	skip "full token: cannot mount a tmpfs in a private namespace (rc $full_rc: $(head -c 200 "$T/unshare.log"))"
else
	cp "$T/full1.out" "$T/out"
	cp "$T/full1.err" "$T/err"
	rc=$(cat "$T/full1.rc")
	case $rc in 73 | 74) ;; *) fail_out "enroll on a full token: exit $rc, want 73 (token full) or 74" ;; esac
	expect_error_line
	expect_grep 'cannot store the certificate in the token' "$T/err"
	expect_grep 'C_CreateObject' "$T/err"
	grep -qx 'B.crt' "$T/full1.ls" && fail "full token: B.crt written although the token refused the certificate"
	grep -q '^Certificate Object' "$T/full1.objs" || fail "full token: A's certificate gone"
	[ "$(grep -c '^Certificate Object' "$T/full1.objs")" = 1 ] || { cat "$T/full1.objs" >&2; fail "full token: want only A's certificate"; }
	[ "$(grep -c '^Private Key Object' "$T/full1.objs")" = 2 ] || { cat "$T/full1.objs" >&2; fail "full token: want the keys of A and B"; }
	grep -qi "ID: *$KID_A" "$T/full1.objs" || fail "full token: A's key id gone"
	[ "$(cat "$T/full2.rc")" = 0 ] || { cat "$T/full2.err" >&2; fail "space freed: the next run exited $(cat "$T/full2.rc")"; }
	[ "$(grep -c '^Certificate Object' "$T/full2.objs")" = 2 ] || { cat "$T/full2.objs" >&2; fail "space freed: want the certificates of A and B"; }
	verify_cert "$D/ca.crt" "$S/B.crt"
	pass "token full before the certificate is stored: $rc ($(tail -n 1 "$T/err")), A intact; after freeing space the next run finishes"
fi
# the tmpfs copy is gone; the real token never saw B's certificate
rm -f "$S/B.crt" "$S/B.enroll"
snapshot before

# --- token removed while the client polls, and just before it stores ---------------------
# The token's folder is moved away (as if deleted) and, afterwards, back.
TOKSTORE=$(sed -n 's/^directories.tokendir = //p' "$TOKDIR/softhsm2.conf")
[ -d "$TOKSTORE" ] || fail "no token folder in $TOKDIR/softhsm2.conf"
away() { mv "$TOKSTORE" "$TOKSTORE.away"; }
back() { mv "$TOKSTORE.away" "$TOKSTORE"; }

# a) while polling: C pending, the client in service mode; the token goes;
# the CA signs; the client downloads the certificate and cannot store it
expect_rc 69 once C
SHA_C=$(ca_sha "$S/C.csr")
snapshot before
bg pollc p11c_direct enroll caramel "$SERVER" C --dir "$S" --ca-file "$D/ca.crt" --timeout 60
PC=$BG_PID
wait_for 30 "C polling" grep -q "waiting for the CA" "$T/pollc.err"
away
expect_rc 0 p11ca sign --dir "$D" "$SHA_C"
bg_wait "$PC" 60 pollc
cp "$T/pollc.err" "$T/err"
: >"$T/out"
case $BG_RC in 69 | 74) ;; *) fail_out "token removed while polling: exit $BG_RC, want 69 (token removed) or 74" ;; esac
expect_error_line
expect_grep -i 'token|C_[A-Za-z]+' "$T/err"
back
[ ! -e "$S/C.crt" ] || fail "token removed: C.crt written"
unchanged before "token removed while polling"
pass "token removed while polling: exit $BG_RC: $(tail -n 1 "$T/err")"
expect_rc 0 once C
cert_next_to_key C "$S/C.crt" >/dev/null
pass "token back: the next run stores C's certificate"

# b) just before storing: the test hook stops the client after it checked
# the certificate (stage "received"), the token goes, the client goes on
signed_pending E
snapshot before
bg rece env P11CERT_TEST_STALL_AT=received "$P11CERT" --module "$MOD" --pin-file "$PINF" \
	enroll caramel "$SERVER" E --dir "$S" --ca-file "$D/ca.crt" --timeout 60
PE=$BG_PID
wait_for 30 "E stopped at 'received'" grep -qF "stopping at 'received'" "$T/rece.err"
away
kill -CONT "$PE"
bg_wait "$PE" 60 rece
cp "$T/rece.err" "$T/err"
case $BG_RC in 69 | 74) ;; *) fail_out "token removed before storing: exit $BG_RC, want 69 or 74" ;; esac
expect_error_line
expect_grep 'cannot store the certificate in the token' "$T/err"
errline=$(tail -n 1 "$T/err")
back
[ ! -e "$S/E.crt" ] || fail "token removed: E.crt written"
unchanged before "token removed before storing"
expect_rc 0 once E
cert_next_to_key E "$S/E.crt" >/dev/null
pass "token removed just before storing: exit $BG_RC ($errline), nothing written; token back: the next run finishes"

# A survived all of it
[ "$(cert_next_to_key A "$S/A.crt")" = "$KID_A" ] || fail "identity A changed"
echo "# $(($(date +%s) - start)) s"
