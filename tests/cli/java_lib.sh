# shellcheck shell=bash
# Java peers for the end-to-end tests: the small programs of tests/java/,
# compiled at test time with javac into $T/java.  Source after lib.sh (or
# ca_lib.sh / enroll_lib.sh).
#
# `java_ready` returns 1 when no JDK is installed (scripts/setup installs
# openjdk-17-jdk-headless); the caller skips with a message.
# `jrun CLASS ARGS...` runs one of them (bounded, 120 s).

java_ready() {
	command -v javac >/dev/null 2>&1 && command -v java >/dev/null 2>&1 || return 1
	[ -f "$T/java/TokenTls.class" ] && return 0
	mkdir -p "$T/java"
	timeout -k 5 180 javac -d "$T/java" "$P11C_SOURCE_DIR"/tests/java/*.java >"$T/javac.err" 2>&1 \
		|| fail "javac tests/java: $(cat "$T/javac.err")"
}

jrun() {
	timeout -k 5 120 java -cp "$T/java" "$@"
}
