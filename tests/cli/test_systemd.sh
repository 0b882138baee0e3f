#!/usr/bin/env bash
# contrib/systemd units pass systemd-analyze verify (instances of the
# templates), and the check proves it can fail (a broken copy is refused).
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

command -v systemd-analyze >/dev/null || fail "systemd-analyze not installed (apt-get install systemd)"
U=$T/units
mkdir -p "$U"
for f in "$P11C_SOURCE_DIR"/contrib/systemd/*; do
	# the built binary stands in for /usr/bin/p11cert
	sed "s#/usr/bin/p11cert#$P11CERT#g" "$f" >"$U/$(basename "$f")"
done
verify() {
	(cd "$U" && SYSTEMD_LOG_LEVEL=warning systemd-analyze verify --man=no "$@") >"$T/out" 2>&1
}
verify ./p11cert-enroll@host1.service ./p11cert-renew@host1.service ./p11cert-renew@host1.timer ||
	fail "systemd-analyze verify failed: $(cat "$T/out")"
grep -qiE 'error|invalid|unknown|not executable|failed' "$T/out" && fail "systemd-analyze complained: $(cat "$T/out")"
pass "systemd-analyze verify accepts the enroll, renew and timer units"

grep -q '^ExecCondition=.*check --id %i --dir /var/lib/p11cert ' "$U/p11cert-renew@.service" ||
	fail "renew unit has no ExecCondition on check of the enrollment record"
grep -q '^ExecStart=.*renew --id %i --dir /var/lib/p11cert ' "$U/p11cert-renew@.service" ||
	fail "renew unit does not renew the enrollment record that check read"
grep -q '^RandomizedDelaySec=' "$U/p11cert-renew@.timer" || fail "timer has no RandomizedDelaySec"
grep -q 'enroll caramel ${CARAMEL_CA} %i' "$U/p11cert-enroll@.service" || fail "enroll unit is not the Caramel unit"
pass "renew uses ExecCondition and a randomized timer; enroll is the Caramel unit"

# negative control: the same check refuses a broken unit
sed 's#^ExecStart=.*#ExecStart=relative/p11cert enroll#' "$U/p11cert-enroll@.service" >"$U/broken@.service"
if verify ./broken@x.service && ! grep -qiE 'absolute|not executable|invalid' "$T/out"; then
	fail "systemd-analyze accepted a unit with a relative ExecStart: the check cannot fail"
fi
pass "a broken unit is refused (the check can fail)"

# the ExecCondition contract: exit 0 means renew, 1 fresh, 255 error
new_token sd
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=host1" --type ec:P-256
expect_rc 0 p11c check --key "pkcs11:token=$TOKEN;object=host1"
expect_grep 'no certificate' "$T/out"
expect_rc 255 p11c check --key "pkcs11:token=$TOKEN;object=missing"
expect_rc 255 p11c check --key "pkcs11:token=$TOKEN;object=host1" --threshold 5/3
pass "check exits 0 without a certificate, 255 on errors"
