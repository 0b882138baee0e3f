#!/usr/bin/env bash
# p11ca list / show print UTF-8 subjects as UTF-8 ("L=Linköping", not
# "L=Link\C3\B6ping"), in text and JSON, and escape only control characters
# (C0, DEL, C1) as \XX, so a subject cannot drive the terminal (issue 15 s6).
# shellcheck source=ca_lib.sh
. "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/ca_lib.sh"

D=$T/ca
expect_rc 0 p11ca init --dir "$D" --C SE --O Example --hostname localhost --listen 127.0.0.1:0
ca_start ca "$D"

# a UTF-8 locality; a subject with ESC (C0) and U+009B (C1, a one-byte CSI)
# is refused at the door now (request policy), so only requests stored by an
# older p11ca can hold one: the display escapes them all the same
mk_csr "$T/u.csr" "/C=SE/O=Example/L=Linköping/CN=utf8host" ec -utf8
post 202 "$T/u.csr"
esc=$(printf '\033')
c1=$(printf '\302\233')
mk_csr "$T/c.csr" "/C=SE/O=Example/L=a${esc}[31mb${c1}c/CN=ctrlhost" ec -utf8
post 400 "$T/c.csr"

expect_rc 0 p11ca list --dir "$D"
expect_grep 'L=Linköping,O=Example,C=SE' "$T/out"
expect_nogrep -F 'Link\C3\B6ping' "$T/out"
expect_nogrep -F "$esc" "$T/out"
expect_nogrep -F "$c1" "$T/out"
expect_rc 0 p11ca show --dir "$D" "$(sha256_of "$T/u.csr")"
expect_grep 'subject  CN=utf8host,L=Linköping,O=Example,C=SE' "$T/out"
expect_rc 0 p11ca list --dir "$D" --json
json_assert "$T/out" "
s = [r['subject'] for r in j]
assert s == ['CN=utf8host,L=Linköping,O=Example,C=SE'], s
"
pass "p11ca list/show: UTF-8 as UTF-8; control characters never printed raw"
