#!/usr/bin/env bash
# p11cert error handling: PIN sources and failures, URIs, modules, tokens that
# cannot store objects, the default (p11-kit proxy) module.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

# A PIN that cannot turn up in output by accident.
new_token p11c-err --pin 'Zq7-pin-S3cr3t'
[ "$PIN" = 'Zq7-pin-S3cr3t' ] || fail "fixture did not take --pin"
WRONG='Wr0ng-pin-X9k'
printf '%s\n' "$WRONG" >"$T/wrong.pin"

# no_pin_in_output: neither the PIN nor the wrong PIN in $T/out / $T/err
no_pin_in_output() {
	local f
	for f in "$T/out" "$T/err"; do
		if grep -q -F -e "$PIN" -e "$WRONG" "$f"; then
			fail_out "a PIN appears in $(basename "$f")"
		fi
	done
}

key() { printf 'pkcs11:token=%s;object=%s' "$TOKEN" "$1"; }

expect_rc 0 p11c keygen --key "$(key e-first)" --type ec:P-256
pass "setup"

# --- wrong PIN ------------------------------------------------------------------------------
SPY=
for s in /usr/lib/x86_64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/aarch64-linux-gnu/pkcs11/pkcs11-spy.so /usr/lib/pkcs11/pkcs11-spy.so; do
	[ -e "$s" ] && { SPY=$s; break; }
done
if [ -n "$SPY" ]; then
	export PKCS11SPY=$MOD PKCS11SPY_OUTPUT=$T/spy.log
	expect_rc 77 p11raw -v --module "$SPY" --pin-file "$T/wrong.pin" keygen --key "$(key e-wrong)" --type ec:P-256
	unset PKCS11SPY PKCS11SPY_OUTPUT
	n=$(grep -c -E '^[0-9]+: C_Login$' "$T/spy.log" || true)
	[ "$n" = 1 ] || fail_out "wrong PIN: C_Login called $n times (must be exactly once, never retried)"
	pass "wrong PIN: exactly one C_Login (pkcs11-spy)"
else
	skip "pkcs11-spy.so not found: C_Login count not checked"
	expect_rc 77 p11raw -v --module "$MOD" --pin-file "$T/wrong.pin" keygen --key "$(key e-wrong)" --type ec:P-256
fi
expect_error_line
expect_grep -F 'CKR_PIN_INCORRECT' "$T/err"
no_pin_in_output
[ "$(count_objects privkey e-wrong)" = 0 ] || fail "keygen with a wrong PIN created a key"
expect_rc 0 p11c keygen --key "$(key e-after-wrong)" --type ec:P-256
[ "$(count_objects privkey e-after-wrong)" = 1 ] || fail "keygen after a wrong PIN did not create the key"
pass "wrong PIN: 77, CKR_PIN_INCORRECT, token not locked"

# --- URIs -------------------------------------------------------------------------------------
expect_rc 69 p11c keygen --key 'pkcs11:token=nope;object=x' --type ec:P-256
expect_error_line
expect_grep -F 'nope' "$T/err"
expect_rc 69 p11c list 'pkcs11:token=nope'
expect_grep -F 'nope' "$T/err"
pass "unknown token: 69 naming it"

for u in 'http://x' 'pkcs11:token=%zz' 'pkcs11:token=%4' 'pkcs11:token=abc%' 'token=x'; do
	expect_rc 64 p11c list "$u"
	expect_error_line
done
expect_rc 64 p11c keygen --key 'http://x;object=y' --type ec:P-256
expect_error_line
pass "malformed URIs: 64"

expect_rc 64 p11c keygen --key "$(key e-pv)?pin-value=pv-Secret-42" --type ec:P-256
expect_error_line
expect_grep -F 'pin-value' "$T/err"
expect_nogrep -F 'pv-Secret-42' "$T/err"
expect_nogrep -F 'pv-Secret-42' "$T/out"
expect_rc 64 p11c list "pkcs11:token=$TOKEN?pin-value=pv-Secret-42"
expect_nogrep -F 'pv-Secret-42' "$T/err"
[ "$(count_objects privkey e-pv)" = 0 ] || fail "pin-value URI created a key"
pass "pin-value= refused: 64, value not echoed"

# --- modules ----------------------------------------------------------------------------------
expect_rc 69 p11raw --module /nonexistent.so --pin-file "$PINF" list "pkcs11:token=$TOKEN"
expect_error_line
expect_grep -F '/nonexistent.so' "$T/err"
pass "missing module: 69 naming the path"

expect_rc 0 p11raw --pin-file "$PINF" list "pkcs11:token=$TOKEN?module-path=$MOD"
expect_grep 'e-first' "$T/out"
pass "module-path= in the URI"
expect_rc 69 p11raw --module /nonexistent.so --pin-file "$PINF" list "pkcs11:token=$TOKEN?module-path=$MOD"
expect_grep -F '/nonexistent.so' "$T/err"
pass "--module wins over module-path="

# --- PIN sources ------------------------------------------------------------------------------
expect_rc 77 p11raw --module "$MOD" keygen --key "$(key e-nopin)" --type ec:P-256
expect_error_line
[ "$(count_objects privkey e-nopin)" = 0 ] || fail "keygen without a PIN created a key"
pass "no PIN source (stdin not a terminal): 77"

export P11CERT_PIN=$PIN
expect_rc 0 p11raw --module "$MOD" keygen --key "$(key e-env)" --type ec:P-256
no_pin_in_output
[ "$(count_objects privkey e-env)" = 1 ] || fail "P11CERT_PIN: key not created"
pass "P11CERT_PIN"

# --pin-file comes before P11CERT_PIN
export P11CERT_PIN=$WRONG
expect_rc 0 p11raw --module "$MOD" --pin-file "$PINF" keygen --key "$(key e-order1)" --type ec:P-256
[ "$(count_objects privkey e-order1)" = 1 ] || fail "--pin-file over P11CERT_PIN: key not created"
expect_rc 77 p11raw --module "$MOD" --pin-file "$T/wrong.pin" keygen --key "$(key e-order2)" --type ec:P-256
unset P11CERT_PIN
pass "--pin-file takes precedence over P11CERT_PIN"

expect_rc 0 p11raw --module "$MOD" keygen --key "$(key e-src1)?pin-source=file:$PINF" --type ec:P-256
[ "$(count_objects privkey e-src1)" = 1 ] || fail "pin-source=file: key not created"
expect_rc 0 p11raw --module "$MOD" keygen --key "$(key e-src2)?pin-source=$PINF" --type ec:P-256
[ "$(count_objects privkey e-src2)" = 1 ] || fail "pin-source=/path: key not created"
# pin-source= comes first: it beats a wrong --pin-file, and a wrong pin-source is not
# rescued by a right --pin-file
expect_rc 0 p11raw --module "$MOD" --pin-file "$T/wrong.pin" keygen --key "$(key e-src3)?pin-source=file:$PINF" --type ec:P-256
[ "$(count_objects privkey e-src3)" = 1 ] || fail "pin-source over --pin-file: key not created"
expect_rc 77 p11raw --module "$MOD" --pin-file "$PINF" keygen --key "$(key e-src4)?pin-source=file:$T/wrong.pin" --type ec:P-256
expect_grep -F 'CKR_PIN_INCORRECT' "$T/err"
pass "pin-source= in the URI (file: and plain path), precedence"

# -v never shows the PIN
expect_rc 0 p11c -v keygen --key "$(key e-verbose)" --type ec:P-256
no_pin_in_output
expect_rc 0 p11c -v list "pkcs11:token=$TOKEN"
no_pin_in_output
expect_rc 0 p11c -v csr --key "$(key e-verbose)" --subject /CN=v -o "$T/v.csr"
no_pin_in_output
export P11CERT_PIN=$PIN
expect_rc 0 p11raw -v --module "$MOD" list "pkcs11:token=$TOKEN"
no_pin_in_output
unset P11CERT_PIN
expect_rc 0 p11raw -v --module "$MOD" list "pkcs11:token=$TOKEN?pin-source=file:$PINF"
no_pin_in_output
pass "-v output never contains the PIN"

# --- misc usage ----------------------------------------------------------------------------
expect_rc 0 p11raw version
expect_grep '^p11cert ' "$T/out"
expect_grep -i 'openssl' "$T/out"
expect_grep '^signer: built-in' "$T/out"
expect_grep -i 'p11-kit' "$T/out"
pass "version"
expect_rc 64 p11raw no-such-command
expect_grep '^p11cert: .*no-such-command' "$T/err"
expect_rc 64 p11raw
pass "unknown or missing command: 64"
expect_rc 0 p11raw keygen --help
expect_grep '[-]-type' "$T/out"
pass "keygen --help"

# --- several tokens match ------------------------------------------------------------------
new_token p11c-amb --tokens 2
expect_rc_in "64 69" p11c list 'pkcs11:model=SoftHSM%20v2'
expect_error_line
expect_grep -F 'p11c-amb' "$T/err"
expect_grep -F 'p11c-amb-2' "$T/err"
pass "URI matching two tokens: refused ($LAST_RC), candidates listed"
expect_rc 0 p11c keygen --key 'pkcs11:token=p11c-amb-2;object=on-second' --type ec:P-256
pass "token= picks one of several tokens"

# --- a full token ----------------------------------------------------------------------------
# SoftHSM ignores failed writes of object files (ulimit -f / SIGXFSZ yields CKR_OK and a
# truncated file), so fill the file system instead: the token is copied onto a tmpfs
# with few inodes, in a private mount namespace, and the remaining inodes are used up.
new_token p11c-full
expect_rc 0 p11c keygen --key 'pkcs11:token=p11c-full;object=f-before' --type ec:P-256
before_id=$(uri_id_hex "$(head -n 1 "$T/out")")
mkdir "$T/fullmnt"
cat >"$T/full.sh" <<'EOF'
set -u
mnt=$FULL_T/fullmnt
mount -t tmpfs -o size=8m,nr_inodes=128 p11c-full "$mnt" || exit 200
cp -a "$FULL_TOKDIR/tokens" "$mnt/tokens" || exit 201
sed "s|^directories.tokendir = .*|directories.tokendir = $mnt/tokens|" "$FULL_TOKDIR/softhsm2.conf" >"$FULL_T/full.conf"
export SOFTHSM2_CONF=$FULL_T/full.conf
mkdir "$mnt/fill"
i=0
while : >"$mnt/fill/$i" 2>/dev/null; do i=$((i + 1)); done
rc=0
timeout -k 5 120 "$P11CERT" --module "$FULL_MOD" --pin-file "$FULL_PINF" keygen \
	--key 'pkcs11:token=p11c-full;object=f-new' --type rsa:2048 >"$FULL_T/full.out" 2>"$FULL_T/full.err" || rc=$?
echo "$rc" >"$FULL_T/full.rc"
rm -rf "$mnt/fill"
pkcs11-tool --module "$FULL_MOD" --token-label p11c-full --login --pin "$FULL_PIN" --list-objects >"$FULL_T/full.objs" 2>&1
timeout -k 5 120 "$P11CERT" --module "$FULL_MOD" --pin-file "$FULL_PINF" list 'pkcs11:token=p11c-full' >"$FULL_T/full.list" 2>&1
echo "$?" >"$FULL_T/full.listrc"
exit 0
EOF
full_rc=0
if [ "$(id -u)" = 0 ]; then
	FULL_T=$T FULL_TOKDIR=$TOKDIR FULL_MOD=$MOD FULL_PINF=$PINF FULL_PIN=$PIN \
		unshare -m bash "$T/full.sh" >"$T/unshare.log" 2>&1 || full_rc=$?
else
	FULL_T=$T FULL_TOKDIR=$TOKDIR FULL_MOD=$MOD FULL_PINF=$PINF FULL_PIN=$PIN \
		unshare -rm bash "$T/full.sh" >"$T/unshare.log" 2>&1 || full_rc=$?
fi
if [ "$full_rc" != 0 ] || [ ! -f "$T/full.rc" ]; then
	skip "full token: cannot mount a tmpfs in a private namespace (rc $full_rc: $(head -c 200 "$T/unshare.log"))"
else
	cp "$T/full.out" "$T/out"
	cp "$T/full.err" "$T/err"
	rc=$(cat "$T/full.rc")
	case $rc in 73 | 74) ;; *) fail_out "keygen on a full token: exit $rc, expected 73 or 74" ;; esac
	expect_error_line
	grep -q -F 'f-before' "$T/full.objs" || { cat "$T/full.objs" >&2; fail "full token: earlier key gone"; }
	grep -q -i -F "$before_id" "$T/full.objs" || { cat "$T/full.objs" >&2; fail "full token: earlier key id gone"; }
	[ "$(grep -c '^Private Key Object' "$T/full.objs")" = 1 ] || { cat "$T/full.objs" >&2; fail "full token: private key count changed"; }
	[ "$(cat "$T/full.listrc")" = 0 ] || { cat "$T/full.list" >&2; fail "full token: list afterwards failed"; }
	grep -q 'f-before' "$T/full.list" || { cat "$T/full.list" >&2; fail "full token: list does not show the earlier key"; }
	pass "full token: keygen $rc with a message, earlier objects intact"
fi

# --- a read-only token -----------------------------------------------------------------------
new_token p11c-ro
expect_rc 0 p11c keygen --key 'pkcs11:token=p11c-ro;object=r-before' --type ec:P-256
ro_skip=
if [ "$(id -u)" != 0 ]; then
	ro_skip="not root"
elif ! command -v setpriv >/dev/null; then
	ro_skip="setpriv not installed"
else
	chmod a+x "$T"
	chmod -R a+rX "$TOKDIR"
	chown -R root:root "$TOKDIR"
	nobody=(setpriv --reuid=65534 --regid=65534 --clear-groups env HOME=/ SOFTHSM2_CONF="$SOFTHSM2_CONF")
	if ! "${nobody[@]}" test -x "$P11CERT" 2>/dev/null; then
		ro_skip="user nobody cannot run $P11CERT"
	elif ! "${nobody[@]}" test -r "$PINF" 2>/dev/null; then
		ro_skip="user nobody cannot read the token"
	elif "${nobody[@]}" touch "$TOKDIR/tokens/probe" 2>/dev/null; then
		ro_skip="token folder writable for nobody"
	fi
fi
if [ -n "$ro_skip" ]; then
	skip "read-only token: $ro_skip"
else
	# nobody can read the token: list works
	expect_rc 0 "${nobody[@]}" timeout -k 5 120 "$P11CERT" --module "$MOD" --pin-file "$PINF" list 'pkcs11:token=p11c-ro'
	expect_grep 'r-before' "$T/out"
	expect_rc_in "73 74" "${nobody[@]}" timeout -k 5 120 "$P11CERT" --module "$MOD" --pin-file "$PINF" \
		keygen --key 'pkcs11:token=p11c-ro;object=r-new' --type ec:P-256
	expect_error_line
	expect_grep -i 'CKR_|C_Generate|read-only|write' "$T/err"
	[ "$(count_objects privkey r-new)" = 0 ] || fail "read-only token: key created"
	[ "$(count_objects privkey r-before)" = 1 ] || fail "read-only token: earlier key gone"
	pass "read-only token: keygen $LAST_RC with a message"
fi

# --- the default module: p11-kit's proxy -------------------------------------------------
new_token p11c-proxy
expect_rc 0 p11c keygen --key 'pkcs11:token=p11c-proxy;object=x-key' --type ec:P-256
if ! p11-kit list-modules 2>/dev/null | grep -q 'token: p11c-proxy'; then
	skip "default module: softhsm2 is not registered with p11-kit"
else
	expect_rc 0 p11raw --pin-file "$PINF" list 'pkcs11:token=p11c-proxy'
	expect_grep 'x-key' "$T/out"
	pass "default module (p11-kit proxy)"
	expect_rc 0 p11raw --pin-file "$PINF" list 'pkcs11:token=p11c-proxy?module-name=softhsm2'
	expect_grep 'x-key' "$T/out"
	pass "module-name=softhsm2"
	expect_rc 69 p11raw --pin-file "$PINF" list 'pkcs11:token=p11c-proxy?module-name=no-such-module'
	expect_error_line
	expect_grep -F 'no-such-module' "$T/err"
	pass "module-name= of an unknown module: 69"
	expect_rc 0 p11raw --pin-file "$PINF" keygen --key 'pkcs11:token=p11c-proxy;object=x-proxy' --type ec:P-256
	[ "$(count_objects privkey x-proxy)" = 1 ] || fail "keygen through the proxy: no key"
	pass "keygen through the proxy"
fi
