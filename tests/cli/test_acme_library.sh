#!/usr/bin/env bash
# ACME in library mode (docs/library.md "ACME in memory"): examples/acme_mem,
# on the public API and the shared library, against pebble with dns-01
# through a hook (acme_dns_hook: challtestsrv's set-txt/clear-txt).  Like
# test_enroll_library: run as an unprivileged uid in a read-only folder under
# strace, every file-creating system call must be inside the SoftHSM token
# folder.  Checks: exit 0, the chain verifies to pebble's root, the leaf
# in the token next to the key, both keys sensitive and not extractable,
# no PIN in the hook's environment; a second run (as root, traced) reuses
# the account (onlyReturnExisting); a failing hook exits 1 naming the
# identifier.
# shellcheck source=acme_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/acme_lib.sh"

ACME_MEM=$P11C_BUILD_DIR/examples/acme_mem
[ -x "$ACME_MEM" ] || fail "$ACME_MEM is not built (target acme_mem)"
HAVE_STRACE=0
command -v strace >/dev/null && HAVE_STRACE=1
if [ "$HAVE_STRACE" = 1 ]; then
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

acme_up
new_token acme-lib
PIN_VALUE=$PIN
CERT_URI="pkcs11:token=$TOKEN;object=web"
ACCT_URI="pkcs11:token=$TOKEN;object=acct"

APP=$T/app
mkdir -p "$APP/cwd" "$APP/home"
cp "$ACME_CACERT" "$APP/ca.pem"
acme_dns_hook "$APP/hook.sh"
chmod 0644 "$APP/ca.pem"
chmod 0555 "$APP/cwd" "$APP/home"
chmod 0755 "$APP"
chmod 0711 "$T" "$T/pebble"

# check_run OUT ERR [reused]: the chain verifies, the leaf is in the token next to
# the key, the hook ran with the record and without the PIN
check_run() {
	acme_chain_ok "$1"
	openssl x509 -in "$1" -out "$T/leaf.crt" || fail "no leaf in the chain"
	openssl x509 -in "$T/leaf.crt" -noout -ext subjectAltName | grep -q "DNS:lib.example.test" \
		|| fail "the leaf does not name lib.example.test"
	cert_next_to_key web "$T/leaf.crt" >/dev/null
	# a second order may reuse pebble's valid authorization: no hook run
	[ "${3:-}" = reused ] && ! grep -q '^hook-env: ' "$2" && return 0
	grep -q '^hook-env: ACME_RECORD_NAME=_acme-challenge.lib.example.test$' "$2" \
		|| fail_out "the hook did not get ACME_RECORD_NAME"
	grep -q '^hook-env: ACME_RECORD_VALUE=.\{43\}$' "$2" || fail_out "the hook did not get ACME_RECORD_VALUE"
	! grep -q '^hook-env: P11CERT_PIN=' "$2" || fail "P11CERT_PIN in the hook's environment"
	! grep '^hook-env: ' "$2" | grep -qF -- "$PIN_VALUE" || fail "the PIN in the hook's environment"
}

# --- 1. as nobody, read-only folders, traced ------------------------------------
can_nobody=0
if command -v setpriv >/dev/null && chown -R "$NOBODY:$NOBODY" "$TOKDIR" &&
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- test -x "$ACME_MEM" 2>/dev/null &&
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- test -r "$APP/ca.pem" 2>/dev/null &&
	setpriv --reuid=$NOBODY --regid=$NOBODY --clear-groups -- test -w "$TOKDIR/tokens" 2>/dev/null; then
	can_nobody=1
fi
[ "$can_nobody" = 1 ] || [ "$HAVE_STRACE" = 1 ] \
	|| fail "neither setpriv to an unprivileged uid nor strace is available: cannot check that no file is written"

if [ "$can_nobody" = 1 ]; then
	touch "$T/marker"
	sleep 1
	run=(env -i PATH=/usr/bin:/bin HOME="$APP/home" SOFTHSM2_CONF="$SOFTHSM2_CONF"
		P11CERT_MODULE="$MOD" P11CERT_PIN="$PIN_VALUE" ASAN_OPTIONS="${ASAN_OPTIONS:-}"
		LSAN_OPTIONS="${LSAN_OPTIONS:-}" UBSAN_OPTIONS="${UBSAN_OPTIONS:-}"
		setpriv --reuid="$NOBODY" --regid="$NOBODY" --clear-groups --
		"$ACME_MEM" "$ACME_DIR" "$APP/ca.pem" "$CERT_URI" "$ACCT_URI" "$APP/hook.sh" lib.example.test)
	[ "$HAVE_STRACE" = 1 ] && run=(strace -f -qq -o "$T/trace1.txt" "${run[@]}")
	LAST_RC=0
	(cd "$APP/cwd" && exec timeout -k 5 "$P11C_TIMEOUT" "${run[@]}") </dev/null >"$T/out" 2>"$T/err" || LAST_RC=$?
	[ "$LAST_RC" = 0 ] || fail_out "acme_mem as uid $NOBODY exited $LAST_RC"
	grep -q "(created)" "$T/err" || fail_out "no new account on the first run"
	check_run "$T/out" "$T/err"
	find /tmp /var/tmp /dev/shm "$APP" -xdev -user $NOBODY -newer "$T/marker" \
		-not -path "$TOKDIR" -not -path "$TOKDIR/*" >"$T/new-files" 2>/dev/null || true
	[ ! -s "$T/new-files" ] || { cat "$T/new-files" >&2; fail "acme_mem created files outside the token"; }
	[ "$HAVE_STRACE" = 1 ] && check_trace "$T/trace1.txt"
	acme_key_attrs web
	acme_key_attrs acct
	pass "as an unprivileged user (uid $NOBODY) in read-only folders: dns-01 order, chain stored, no file written outside the token, no PIN for the hook"
else
	skip "setpriv to an unprivileged uid unavailable; the strace run below covers file writes"
fi

# --- 2. as root, traced: the account is reused ------------------------------------
if [ "$HAVE_STRACE" = 1 ]; then
	LAST_RC=0
	(cd "$APP/cwd" && HOME=$APP/home P11CERT_MODULE=$MOD P11CERT_PIN=$PIN_VALUE \
		exec timeout -k 5 "$P11C_TIMEOUT" strace -f -qq -o "$T/trace2.txt" \
		"$ACME_MEM" "$ACME_DIR" "$APP/ca.pem" "$CERT_URI" "$ACCT_URI" "$APP/hook.sh" lib.example.test) \
		</dev/null >"$T/out" 2>"$T/err" || LAST_RC=$?
	[ "$LAST_RC" = 0 ] || fail_out "acme_mem as root exited $LAST_RC"
	if [ "$can_nobody" = 1 ]; then
		grep -q "(existing)" "$T/err" || fail_out "the account was not reused"
	fi
	check_run "$T/out" "$T/err" reused
	check_trace "$T/trace2.txt"
	[ "$(n_objects private-key web)" = 1 ] || fail "more than one key 'web'"
	[ "$(n_objects private-key acct)" = 1 ] || fail "more than one key 'acct'"
	acme_key_attrs web
	acme_key_attrs acct
	pass "as root, traced: account reused (onlyReturnExisting), no file written outside the token"
fi

# --- 3. failures -------------------------------------------------------------------
expect_rc 64 "$ACME_MEM" "$ACME_DIR"
expect_grep "usage" "$T/err"
expect_rc 1 env P11CERT_MODULE="$MOD" P11CERT_PIN="$PIN_VALUE" timeout -k 5 "$P11C_TIMEOUT" \
	"$ACME_MEM" "$ACME_DIR" "$APP/ca.pem" "$CERT_URI" "$ACCT_URI" /bin/false bad.example.test
expect_grep "bad.example.test" "$T/err"
expect_grep "ACME order: " "$T/err"
[ ! -s "$T/out" ] || fail_out "output on a failed order"
pass "a failing hook: exit 1 naming the identifier; usage: 64"
