#!/usr/bin/env bash
# Library mode (docs/enroll.md "Library mode"): examples/enroll_mem, built
# on the public API and the shared library, against p11ca with autosign
# uuid.  The program must enroll without writing any file: it runs as
# an unprivileged uid (setpriv) in a read-only working folder with a read-only empty
# HOME, the only writable place it could reach on purpose being the SoftHSM
# token folder; strace (when installed) records every file-creating system
# call, which must all be inside the token folder.  A second run as root,
# traced, reuses the key.  Checks: exit 0, a v4 UUID and a PEM certificate
# on stdout that verifies under the CA with CN = that UUID, the certificate
# in the token next to the key; failures exit 1 with the library's detail.
# shellcheck source=enroll_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/enroll_lib.sh"

ENROLL_MEM=$P11C_BUILD_DIR/examples/enroll_mem
[ -x "$ENROLL_MEM" ] || fail "$ENROLL_MEM is not built (target enroll_mem)"
HAVE_STRACE=0
command -v strace >/dev/null && HAVE_STRACE=1
# LeakSanitizer cannot run under ptrace: in a sanitizer build, leak checks
# stay on for every run but the traced ones
if [ "${HAVE_STRACE:-0}" = 1 ]; then
	export ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0"
fi
# The application's user: an unprivileged uid of its own, not nobody
# (65534), whose files in /tmp could come from anyone (the PostgreSQL
# clusters of the .pg tests run as nobody, so may other sessions): every
# file this uid owns after the run is the library's.
NOBODY=64977
if getent passwd "$NOBODY" >/dev/null || getent group "$NOBODY" >/dev/null; then
	fail "uid/gid $NOBODY belongs to an account here: the test needs it unused"
fi

D=$T/ca
expect_rc 0 p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0
srv_start lib "$D" --autosign uuid
SERVER=localhost:$SRV_PORT
new_token enroll-lib
PIN_VALUE=$PIN
KEY_URI="pkcs11:token=$TOKEN;object=phone"

# The application's folders: the CA certificate it ships, a read-only
# working folder and a read-only empty HOME, all root's
APP=$T/app
mkdir -p "$APP/cwd" "$APP/home"
cp "$D/ca.crt" "$APP/ca.pem"
chmod 0644 "$APP/ca.pem"
chmod 0555 "$APP/cwd" "$APP/home"
chmod 0755 "$APP"
chmod 0711 "$T"

# snapshot: every path, size and mtime under the application's folders
snapshot() {
	find "$APP" -printf '%p %s %T@ %m\n' | sort
}

# check_output OUT: "UUID\nPEM" on stdout, the certificate valid for the
# CA with CN = UUID; sets UUID and writes $T/got.crt
check_output() {
	local out=$1
	UUID=$(head -n 1 "$out")
	[[ $UUID =~ ^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$ ]] \
		|| fail "first line of stdout is not a v4 UUID: '$UUID'"
	tail -n +2 "$out" >"$T/got.crt"
	[ "$(head -n 1 "$T/got.crt")" = "-----BEGIN CERTIFICATE-----" ] || fail "no PEM certificate after the client id"
	[ "$(tail -n 1 "$T/got.crt")" = "-----END CERTIFICATE-----" ] || fail "stdout does not end with the certificate"
	[ "$(grep -c 'BEGIN CERTIFICATE' "$T/got.crt")" = 1 ] || fail "want exactly one certificate on stdout"
	verify_cert "$D/ca.crt" "$T/got.crt"
	[ "$(subject_of "$T/got.crt")" = "CN=$UUID,O=Example,C=SE" ] \
		|| fail "subject $(subject_of "$T/got.crt"), want CN=$UUID,O=Example,C=SE"
	openssl x509 -in "$T/got.crt" -noout -text | grep -q 'ASN1 OID: prime256v1' \
		|| fail "the certificate is not for an EC P-256 key"
	grep -E "\"POST /[0-9a-f]{64}\" 202 " "$SRV_LOG" | grep -q "autosigned (UUID CN)" \
		|| fail "no autosigned POST in the server log"
	[ "$(ca_requests "$D" "$UUID")" = 1 ] || fail "the CA has no single request for $UUID"
}

# --- 1. as an unprivileged uid, read-only folders, traced ------------------------------------
can_nobody=0
if command -v setpriv >/dev/null &&
	chown -R "$NOBODY:$NOBODY" "$TOKDIR" &&
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- test -x "$ENROLL_MEM" 2>/dev/null &&
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- test -r "$APP/ca.pem" 2>/dev/null &&
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- test -w "$TOKDIR/tokens" 2>/dev/null; then
	can_nobody=1
fi
[ "$can_nobody" = 1 ] || [ "$HAVE_STRACE" = 1 ] \
	|| fail "neither setpriv to an unprivileged uid nor strace is available: cannot check that no file is written"

if [ "$can_nobody" = 1 ]; then
	snapshot >"$T/before"
	touch "$T/marker"
	sleep 1
	run=(env -i PATH=/usr/bin:/bin HOME="$APP/home" SOFTHSM2_CONF="$SOFTHSM2_CONF"
		P11CERT_MODULE="$MOD" P11CERT_PIN="$PIN_VALUE" ASAN_OPTIONS="${ASAN_OPTIONS:-}"
		LSAN_OPTIONS="${LSAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}"
		setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups --
		"$ENROLL_MEM" "$SERVER" "$APP/ca.pem" "$KEY_URI")
	[ "$HAVE_STRACE" = 1 ] && run=(strace -f -qq -o "$T/trace1.txt" "${run[@]}")
	LAST_RC=0
	(cd "$APP/cwd" && exec timeout -k 5 "$P11C_TIMEOUT" "${run[@]}") </dev/null >"$T/out" 2>"$T/err" || LAST_RC=$?
	[ "$LAST_RC" = 0 ] || fail_out "enroll_mem as uid $NOBODY exited $LAST_RC"
	check_output "$T/out"
	UUID1=$UUID
	cp "$T/got.crt" "$T/first.crt"
	snapshot >"$T/after"
	diff "$T/before" "$T/after" >&2 || fail "the application's folders changed"
	find /tmp /var/tmp /dev/shm "$APP" -xdev -user $NOBODY -newer "$T/marker" \
		-not -path "$TOKDIR" -not -path "$TOKDIR/*" >"$T/new-files" 2>/dev/null || true
	[ ! -s "$T/new-files" ] || { cat "$T/new-files" >&2; fail "enroll_mem created files outside the token"; }
	[ "$HAVE_STRACE" = 1 ] && check_trace "$T/trace1.txt"
	pass "as an unprivileged user (uid $NOBODY) in read-only folders: enrolled (UUID $UUID1), no file written outside the token"
else
	skip "setpriv to an unprivileged uid unavailable; the strace run below covers file writes"
fi

# the certificate is in the token next to the key
if [ "$can_nobody" = 1 ]; then
	KID1=$(cert_next_to_key phone "$T/first.crt")
	token_json
	json_assert "$T/list.json" "
k = [o for o in j if o['class'] == 'private-key' and o['label'] == 'phone']
assert len(k) == 1 and k[0]['key'] == 'EC P-256', k
c = [o for o in j if o['class'] == 'certificate' and o['label'] == 'phone']
assert len(c) == 1 and c[0]['subject'].startswith('CN=$UUID1,'), c
"
	pass "certificate stored in the token next to the key (EC P-256)"
fi

# --- 2. as root, traced: the key is reused, a new id and certificate -------------
if [ "$HAVE_STRACE" = 1 ]; then
	snapshot >"$T/before"
	LAST_RC=0
	(cd "$APP/cwd" && HOME=$APP/home P11CERT_MODULE=$MOD P11CERT_PIN=$PIN_VALUE \
		exec timeout -k 5 "$P11C_TIMEOUT" strace -f -qq -o "$T/trace2.txt" \
		"$ENROLL_MEM" "$SERVER" "$APP/ca.pem" "$KEY_URI") </dev/null >"$T/out" 2>"$T/err" || LAST_RC=$?
	[ "$LAST_RC" = 0 ] || fail_out "enroll_mem as root exited $LAST_RC"
	check_output "$T/out"
	[ "${UUID1:-}" != "$UUID" ] || fail "the same client id twice"
	snapshot >"$T/after"
	diff "$T/before" "$T/after" >&2 || fail "the application's folders changed"
	check_trace "$T/trace2.txt"
	grep -qF "$APP/ca.pem" "$T/trace2.txt" || fail "the trace does not show the CA file being read (trace void?)"
	KID2=$(cert_next_to_key phone "$T/got.crt")
	[ -z "${KID1:-}" ] || [ "$KID2" = "$KID1" ] || fail "the key was not reused (id $KID1 then $KID2)"
	[ "$(n_objects private-key phone)" = 1 ] || fail "more than one key 'phone'"
	[ "$(n_objects certificate phone)" = 1 ] || fail "the older certificate was not replaced"
	pass "as root, traced: key reused, new id $UUID, no file written outside the token"
fi

# --- 3. failures: exit 1 with the library's detail --------------------------------
expect_rc 64 "$ENROLL_MEM" "$SERVER" "$APP/ca.pem"
expect_grep "usage" "$T/err"

expect_rc 1 env P11CERT_MODULE="$MOD" P11CERT_PIN="$PIN_VALUE" "$ENROLL_MEM" "$SERVER" "$T/missing.pem" "$KEY_URI"
expect_grep "cannot read the CA certificate" "$T/err"

D2=$T/ca2
p11ca init --dir "$D2" --C SE --O Other >/dev/null 2>&1 || fail "p11ca init of a second CA"
n_req=$(log_count '"POST /' "$SRV_LOG")
expect_rc 1 env P11CERT_MODULE="$MOD" P11CERT_PIN="$PIN_VALUE" timeout -k 5 "$P11C_TIMEOUT" \
	"$ENROLL_MEM" "$SERVER" "$D2/ca.crt" "$KEY_URI"
expect_grep "enrollment: " "$T/err"
expect_grep -i "TLS" "$T/err"
[ ! -s "$T/out" ] || fail_out "output on a failed enrollment"
[ "$(log_count '"POST /' "$SRV_LOG")" = "$n_req" ] || fail "a request was posted to an unverified server"

expect_rc 1 env P11CERT_MODULE="$MOD" P11CERT_PIN=000000 timeout -k 5 "$P11C_TIMEOUT" \
	"$ENROLL_MEM" "$SERVER" "$APP/ca.pem" "$KEY_URI"
expect_grep "CKR_PIN_INCORRECT" "$T/err"
pass "failures: 64 usage, 1 with the library's detail (no CA file, untrusted server, wrong PIN)"
