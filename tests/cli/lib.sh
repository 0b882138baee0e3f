# Helpers for the end-to-end CLI tests; sourced by tests/cli/test_*.sh.
#
# Environment (set by ctest, see tests/CMakeLists.txt; defaults for running
# a script by hand from the source tree):
#   P11CERT        the p11cert binary
#   SOFTHSM_TOKEN  softhsm-fixtures/softhsm-token
#   P11C_SOURCE_DIR, P11C_BUILD_DIR
#
# After `new_token [LABEL [fixture options]]`:
#   TOKEN  token label        TOKDIR  fixture folder   MOD   module path
#   PINF   user PIN file      PIN     user PIN (for pkcs11-tool only)
#
# Conventions: expect_rc captures stdout in $T/out and stderr in $T/err (stdin
# is /dev/null, so p11cert never prompts).  Everything fails loudly via fail.

# shellcheck disable=SC2034,SC2119,SC2120
set -euo pipefail
umask 022

_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${P11C_SOURCE_DIR:=$(cd "$_lib_dir/../.." && pwd)}"
: "${P11C_BUILD_DIR:=$P11C_SOURCE_DIR/build}"
: "${P11CERT:=$P11C_BUILD_DIR/src/cli/p11cert}"
: "${SOFTHSM_TOKEN:=$P11C_SOURCE_DIR/softhsm-fixtures/softhsm-token}"
: "${TPM_TOKEN:=$P11C_SOURCE_DIR/softhsm-fixtures/tpm-token}"
: "${P11C_TIMEOUT:=120}"   # seconds for one p11cert run
export P11CERT SOFTHSM_TOKEN P11C_SOURCE_DIR P11C_BUILD_DIR

TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

# No PIN may leak in from the caller's environment.
unset P11CERT_PIN

T=$(mktemp -d "${TMPDIR:-/tmp}/p11c-$TEST_NAME.XXXXXX")
_TOKENS=()
_TPM_TOKENS=()

# _cleanup [STATUS]: the exit status is STATUS, or $? when none is given.
# Callers that wrap it (enroll_lib.sh, ca_lib.sh) pass theirs explicitly: a
# `(exit "$rc")` before the call would end the trap right there under set -e
# and leave the temp folder behind.
# kill_and_reap PID...: SIGKILL each of our background processes, then
# reap each (at most 5 s per process); for the EXIT traps of the helpers
kill_and_reap() {
	local p
	for p in "$@"; do
		kill -KILL "$p" 2>/dev/null || true
	done
	for p in "$@"; do
		for _ in $(seq 50); do
			kill -0 "$p" 2>/dev/null || break
			sleep 0.1
		done
		wait "$p" 2>/dev/null || true
	done
}

_cleanup() {
	local rc=${1:-$?}
	local d
	for d in ${_TOKENS[@]+"${_TOKENS[@]}"}; do
		"$SOFTHSM_TOKEN" destroy "$d" >/dev/null 2>&1 || true
	done
	for d in ${_TPM_TOKENS[@]+"${_TPM_TOKENS[@]}"}; do
		bash "$TPM_TOKEN" destroy "$d" >/dev/null 2>&1 || true
	done
	rm -rf -- "$T"
	exit "$rc"
}
trap _cleanup EXIT

fail() {
	echo "not ok - $TEST_NAME: $*" >&2
	exit 1
}

# fail, showing what the last expect_rc captured
fail_out() {
	{
		echo "not ok - $TEST_NAME: $*"
		echo "--- stdout:"; cat "$T/out" 2>/dev/null || true
		echo "--- stderr:"; cat "$T/err" 2>/dev/null || true
		echo "---"
	} >&2
	exit 1
}

pass() { echo "ok - $TEST_NAME: $*"; }
# asan_build BINARY: true in a sanitizer build.  (Not `ldd | grep -q` under
# pipefail: grep quits at the first match, ldd may die of SIGPIPE, and the
# pipeline then reads as "no ASan" now and then.)
asan_build() {
	local l
	grep -q '^P11CERT_SANITIZE:BOOL=ON' "$P11C_BUILD_DIR/CMakeCache.txt" 2>/dev/null && return 0
	l=$(ldd "$1" 2>/dev/null) || true
	[[ $l == *libasan* ]]
}
skip() { echo "skip: $TEST_NAME: $*"; }

[ -x "$P11CERT" ] || fail "P11CERT=$P11CERT is not an executable"
[ -x "$SOFTHSM_TOKEN" ] || [ -f "$SOFTHSM_TOKEN" ] || fail "SOFTHSM_TOKEN=$SOFTHSM_TOKEN not found"
command -v pkcs11-tool >/dev/null || fail "pkcs11-tool (OpenSC) not installed"
command -v openssl >/dev/null || fail "openssl not installed"
command -v python3 >/dev/null || fail "python3 not installed"

# new_token [LABEL [softhsm-token create options...]]
new_token() {
	local label=${1:-p11c-$TEST_NAME}
	[ $# -gt 0 ] && shift
	local dir=$T/tok-$label
	bash "$SOFTHSM_TOKEN" create "$dir" --label "$label" "$@" >/dev/null \
		|| fail "cannot create SoftHSM token $label"
	_TOKENS+=("$dir")
	# shellcheck disable=SC1091
	. "$dir/env"
	MOD=$P11CERT_TEST_MODULE
	PINF=$P11CERT_TEST_PIN_FILE
	TOKEN=$label
	TOKDIR=$dir
	PIN=$(head -n 1 "$PINF")
}

# new_tpm_token [LABEL [tpm-token create options...]]: like new_token, on a
# software TPM (swtpm + tpm2-pkcs11; --abrmd puts tpm2-abrmd in front).
# Exports the fixture's TCTI/store variables.  Exits 0 with a skip line when
# the TPM packages are missing.
new_tpm_token() {
	local label=${1:-p11c-$TEST_NAME}
	[ $# -gt 0 ] && shift
	local dir=$T/tpm-$label rc=0
	_TPM_TOKENS+=("$dir")
	bash "$TPM_TOKEN" create "$dir" --label "$label" "$@" >/dev/null 2>"$T/tpm-token.err" || rc=$?
	if [ "$rc" = 69 ]; then
		skip "$(cat "$T/tpm-token.err") (scripts/setup installs the TPM packages)"
		exit 0
	fi
	[ "$rc" = 0 ] || fail "cannot create TPM token $label: $(cat "$T/tpm-token.err")"
	# shellcheck disable=SC1091
	. "$dir/env"
	MOD=$P11CERT_TEST_MODULE
	PINF=$P11CERT_TEST_PIN_FILE
	TOKEN=$label
	TOKDIR=$dir
	PIN=$(head -n 1 "$PINF")
}

# p11cert with the fixture's module and PIN file
p11c() {
	timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" --module "$MOD" --pin-file "$PINF" "$@"
}

# p11cert with only the arguments given (no module, no PIN file)
p11raw() {
	timeout -k 5 "$P11C_TIMEOUT" "$P11CERT" "$@"
}

# expect_rc N CMD...: run CMD (stdin /dev/null), stdout -> $T/out,
# stderr -> $T/err; fail unless it exits with N.  Sets LAST_RC.
expect_rc() {
	local want=$1
	shift
	LAST_RC=0
	"$@" </dev/null >"$T/out" 2>"$T/err" || LAST_RC=$?
	[ "$LAST_RC" = "$want" ] || fail_out "expected exit $want, got $LAST_RC: $*"
}

# expect_rc_in "N M ..." CMD...: like expect_rc, any of the listed codes.
expect_rc_in() {
	local want=$1 w
	shift
	LAST_RC=0
	"$@" </dev/null >"$T/out" 2>"$T/err" || LAST_RC=$?
	for w in $want; do
		[ "$LAST_RC" = "$w" ] && return 0
	done
	fail_out "expected exit in {$want}, got $LAST_RC: $*"
}

# expect_grep [GREP OPTIONS] PATTERN FILE   (extended regexps unless -F)
expect_grep() {
	local opts=() m=-E
	while [ $# -gt 2 ]; do [ "$1" = -F ] && m=-F || opts+=("$1"); shift; done
	opts+=("$m")
	grep -q "${opts[@]}" -e "$1" -- "$2" \
		|| fail_out "'$1' not found in $(basename "$2")"
}

# expect_nogrep [GREP OPTIONS] PATTERN FILE
expect_nogrep() {
	local opts=() m=-E
	while [ $# -gt 2 ]; do [ "$1" = -F ] && m=-F || opts+=("$1"); shift; done
	opts+=("$m")
	if grep -q "${opts[@]}" -e "$1" -- "$2"; then
		fail_out "'$1' unexpectedly found in $(basename "$2")"
	fi
}

# The error line the spec promises: "p11cert: WHAT: DETAIL" on stderr.
expect_error_line() {
	expect_grep '^p11cert: [^:]+: .+' "$T/err"
}

# --- URIs -----------------------------------------------------------------

# uri_attr URI NAME: raw value of a path attribute of a pkcs11: URI
uri_attr() {
	local path=${1#pkcs11:} a
	path=${path%%\?*}
	local IFS=';'
	for a in $path; do
		case $a in "$2="*) printf '%s\n' "${a#*=}"; return 0 ;; esac
	done
	return 1
}

# pct_hex STRING: percent-encoded bytes -> lowercase hex
pct_hex() {
	local s=$1 out='' c
	while [ -n "$s" ]; do
		if [ "${s:0:1}" = % ]; then
			out+=${s:1:2}; s=${s:3}
		else
			printf -v c '%02x' "'${s:0:1}"; out+=$c; s=${s:1}
		fi
	done
	printf '%s\n' "${out,,}"
}

# uri_id_hex URI: the id= of URI as lowercase hex
uri_id_hex() {
	local v
	v=$(uri_attr "$1" id) || fail "no id= in URI '$1'"
	pct_hex "$v"
}

# hex_pct HEX: lowercase hex -> %xx%xx...
hex_pct() { printf '%s' "$1" | sed 's/../%&/g'; }

# --- independent view of the token (pkcs11-tool) ---------------------------

tool() {
	pkcs11-tool --module "$MOD" --token-label "$TOKEN" --login --pin "$PIN" "$@"
}

# objects [--nologin]: one line per object on the token, tab separated:
#   CLASS LABEL IDHEX USAGE ACCESS INFO   (CLASS: privkey pubkey cert data other)
# pkcs11-tool --list-objects does not filter by --id/--label, so filter here.
objects() {
	local out
	if [ "${1:-}" = --nologin ]; then
		out=$(pkcs11-tool --module "$MOD" --token-label "$TOKEN" --list-objects 2>/dev/null) \
			|| fail "pkcs11-tool --list-objects failed"
	else
		out=$(tool --list-objects 2>/dev/null) || fail "pkcs11-tool --login --list-objects failed"
	fi
	printf '%s\n' "$out" | awk -F'\n' '
		function flush() { if (cls != "") printf "%s\t%s\t%s\t%s\t%s\t%s\n", cls, label, id, usage, access, info }
		/^[^ \t]/ {
			flush()
			label = ""; id = ""; usage = ""; access = ""; info = $0
			if ($0 ~ /^Private Key Object/) cls = "privkey"
			else if ($0 ~ /^Public Key Object/) cls = "pubkey"
			else if ($0 ~ /^Certificate Object/) cls = "cert"
			else if ($0 ~ /^Data object/) cls = "data"
			else if ($0 ~ /Object/) cls = "other"
			else cls = ""
			next
		}
		function val(s) { sub(/^[ \t]*[^:]*:[ \t]*/, "", s); return s }
		/^[ \t]+label:/ { label = val($0); next }
		/^[ \t]+ID:/ { id = tolower(val($0)); next }
		/^[ \t]+Usage:/ { usage = val($0); next }
		/^[ \t]+Access:/ { access = val($0); next }
		{ info = info " | " $0 }
		END { flush() }'
}

# count_objects CLASS [LABEL [IDHEX]]  (empty LABEL = any label)
count_objects() {
	local cls=$1 label=${2:-} id=${3:-}
	objects | awk -F'\t' -v c="$cls" -v l="$label" -v i="$id" \
		'$1 == c && (l == "" || $2 == l) && (i == "" || $3 == i) { n++ } END { print n + 0 }'
}

# export_pubkey IDHEX FILE: the token public key as DER SubjectPublicKeyInfo.
# RSA: pkcs11-tool --read-object.  EC and EdDSA: built here from the
# CKA_EC_POINT / CKA_EC_PARAMS that pkcs11-tool lists, because OpenSC 0.23's
# --read-object fails on P-384 ("cannot create EVP_PKEY") and writes garbage
# for Edwards keys.
export_pubkey() {
	local id=$1 file=$2 line
	line=$(objects | awk -F'\t' -v i="$id" '$1 == "pubkey" && $3 == i' | head -n 1)
	[ -n "$line" ] || fail "no public key with id $id on the token"
	case $line in
	*EC_POINT:*)
		python3 - "$line" "$file" <<'PY' || fail "cannot build SPKI for public key id $id"
import re, sys
line, out = sys.argv[1], sys.argv[2]
point = bytes.fromhex(re.search(r"EC_POINT:\s*([0-9a-fA-F]+)", line).group(1))
params = bytes.fromhex(re.search(r"EC_PARAMS:\s*([0-9a-fA-F]+)", line).group(1))

def der_len(n):
    if n < 0x80:
        return bytes([n])
    b = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(b)]) + b

def tlv(tag, body):
    return bytes([tag]) + der_len(len(body)) + body

def parse_len(b, i):
    n = b[i]
    if n < 0x80:
        return n, i + 1
    k = n & 0x7F
    return int.from_bytes(b[i + 1:i + 1 + k], "big"), i + 1 + k

# CKA_EC_POINT is normally a DER OCTET STRING around the point
if point[0] == 0x04 and len(point) > 2:
    n, i = parse_len(point, 1)
    if i + n == len(point):
        point = point[i:]
ED25519 = bytes.fromhex("06032b6570")
ED448 = bytes.fromhex("06032b6571")
if params in (ED25519,) or b"edwards25519" in params:
    alg = tlv(0x30, ED25519)
elif params in (ED448,) or b"edwards448" in params:
    alg = tlv(0x30, ED448)
else:
    alg = tlv(0x30, bytes.fromhex("06072a8648ce3d0201") + params)
spki = tlv(0x30, alg + tlv(0x03, b"\x00" + point))
open(out, "wb").write(spki)
PY
		;;
	*)
		tool --read-object --type pubkey --id "$id" -o "$file" >/dev/null 2>&1 \
			|| fail "pkcs11-tool could not read public key id $id"
		;;
	esac
	[ -s "$file" ] || fail "no public key written for id $id"
	openssl pkey -pubin -inform DER -in "$file" -noout 2>/dev/null \
		|| fail "public key id $id is not a valid SubjectPublicKeyInfo"
}

# spki_keyid DERFILE: SHA-1 of the subjectPublicKey BIT STRING contents
# (RFC 5280 method 1), lowercase hex.
spki_keyid() {
	local line off hl len
	line=$(openssl asn1parse -inform DER -in "$1" | grep -m1 -E 'd=1 +hl= *[0-9]+ +l= *[0-9]+ +prim: +BIT STRING') \
		|| fail "no BIT STRING in $1"
	read -r off hl len <<<"$(printf '%s\n' "$line" | sed -E 's/^ *([0-9]+):d=1 +hl= *([0-9]+) +l= *([0-9]+).*/\1 \2 \3/')"
	# skip the unused-bits octet
	tail -c +"$((off + hl + 2))" "$1" | head -c "$((len - 1))" | openssl sha1 -r | cut -d' ' -f1
}

# pem_or_der_to_der IN OUT (certificates)
cert_to_der() {
	if openssl x509 -in "$1" -outform DER -out "$2" 2>/dev/null; then return 0; fi
	openssl x509 -inform DER -in "$1" -outform DER -out "$2" 2>/dev/null || fail "$1 is not a certificate"
}

# sha256 fingerprint of a certificate file, lowercase hex without colons
cert_fp256() {
	local der=$T/.fp.der
	cert_to_der "$1" "$der"
	openssl dgst -sha256 -r "$der" | cut -d' ' -f1
}

# cert_serial FILE: serial in lowercase hex as openssl prints it
cert_serial() {
	local der=$T/.serial.der
	cert_to_der "$1" "$der"
	openssl x509 -inform DER -in "$der" -noout -serial | sed 's/^serial=//' | tr 'A-F' 'a-f'
}

# json_assert FILE PYTHON: load FILE as JSON into `j`, then run PYTHON
# (assert statements).  Fails the test with the Python message otherwise.
json_assert() {
	local file=$1 code=$2
	python3 - "$file" "$code" >"$T/py.out" 2>&1 <<'PY' || { cat "$T/py.out" >&2; echo "--- json:" >&2; cat "$file" >&2; fail "JSON check failed"; }
import json, re, sys
with open(sys.argv[1]) as f:
    j = json.load(f)

def walk(o, path=""):
    """yield (path, value) for every leaf; path is lowercased keys joined by /"""
    if isinstance(o, dict):
        for k, v in o.items():
            yield from walk(v, path + "/" + str(k).lower())
    elif isinstance(o, list):
        for i, v in enumerate(o):
            yield from walk(v, path + "/" + str(i))
    else:
        yield path, o

def hexnorm(v):
    return re.sub(r"[^0-9a-f]", "", str(v).lower())

exec(sys.argv[2])
PY
}
