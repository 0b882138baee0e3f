#!/usr/bin/env bash
# scripts/setup with libcurl4-gnutls-dev installed (issue 16): before apt
# replaces it with libcurl4-openssl-dev, setup says what apt would remove and
# what depends on it; it goes on under CI=true or -y, and stops without a
# terminal to ask on.  apt, dpkg-query and sudo are stand-ins on PATH that
# record what they were asked: nothing is installed or removed here.
# shellcheck source=lib.sh
. "$(dirname "$0")/lib.sh"

SETUP=$P11C_SOURCE_DIR/scripts/setup
F=$T/bin
mkdir -p "$F"
# every package installed except libcurl4-openssl-dev (libcurl4-gnutls-dev is)
cat >"$F/dpkg-query" <<'SH'
#!/bin/bash
case ${*: -1} in libcurl4-openssl-dev) exit 1 ;; *) printf 'install ok installed' ;; esac
SH
cat >"$F/apt-get" <<'SH'
#!/bin/bash
if [ "$1" = -s ]; then
	printf 'Remv librust-curl-sys-dev [0.4.59]\nRemv libcurl4-gnutls-dev [7.88.1]\nInst libcurl4-openssl-dev (7.88.1)\n'
	exit 0
fi
echo "apt-get $*" >>"$APT_LOG"
SH
cat >"$F/apt-cache" <<'SH'
#!/bin/bash
printf 'libcurl4-gnutls-dev\nReverse Depends:\n  librust-curl-sys-dev\n'
SH
printf '#!/bin/bash\nexec "$@"\n' >"$F/sudo"
chmod +x "$F"/*
export APT_LOG=$T/apt.log

# run_setup ENV... -- ARGS...: setup with the stand-ins first on PATH
run_setup() {
	local envs=()
	while [ "$1" != -- ]; do envs+=("$1"); shift; done
	shift
	rm -f "$APT_LOG"
	env PATH="$F:$PATH" "${envs[@]}" bash "$SETUP" "$@"
}

expect_rc 1 run_setup CI= --
expect_grep 'libcurl4-gnutls-dev is installed' "$T/err"
expect_grep 'Remv librust-curl-sys-dev' "$T/err"
expect_grep 'depend on libcurl4-gnutls-dev' "$T/err"
expect_grep 'setup:   librust-curl-sys-dev' "$T/err"
expect_grep 'stopped; nothing installed' "$T/err"
[ ! -e "$APT_LOG" ] || fail "setup installed without asking: $(cat "$APT_LOG")"
pass "no terminal, no -y: the removal is announced and nothing is installed"

expect_rc 0 run_setup CI=true --
expect_grep 'Remv libcurl4-gnutls-dev' "$T/err"
expect_grep 'install -y .*libcurl4-openssl-dev' "$APT_LOG"
expect_rc 0 run_setup CI= -- -y
expect_grep 'Remv libcurl4-gnutls-dev' "$T/err"
expect_grep 'install -y .*libcurl4-openssl-dev' "$APT_LOG"
pass "CI=true and -y: announced, then installed"

expect_rc 64 run_setup CI= -- --bogus
pass "unknown argument: usage, exit 64"
