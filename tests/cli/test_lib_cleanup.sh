#!/usr/bin/env bash
# The test libraries clean up after a failing test: the temp folder goes
# and the exit status is kept.  (enroll_lib.sh and ca_lib.sh once ended
# their exit trap early under set -e and left /tmp/p11c-* folders behind.)
. "$(dirname "$0")/lib.sh"

for lib in lib.sh enroll_lib.sh ca_lib.sh; do
	sub=$T/${lib%.sh}
	mkdir "$sub"
	cat >"$T/child.sh" <<EOS
. "$_lib_dir/$lib"
echo "\$T" >"$sub.path"
exit 3
EOS
	set +e
	TMPDIR=$sub bash "$T/child.sh" >"$T/child.out" 2>&1
	rc=$?
	set -e
	[ "$rc" = 3 ] || fail "$lib: a test exiting 3 ended with $rc: $(cat "$T/child.out")"
	[ -s "$sub.path" ] || fail "$lib: the child did not start: $(cat "$T/child.out")"
	left=$(find "$sub" -mindepth 1 | head -5)
	[ -z "$left" ] || fail "$lib: a failing test left its temp folder behind: $left"
done
pass "a failing test leaves no temp folder (lib.sh, enroll_lib.sh, ca_lib.sh)"
