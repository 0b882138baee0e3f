# EST (RFC 7030) fixtures for the tests of p11ca's EST server and of
# clients against it; sourced by tests/cli/test_est_*.sh.  Sources
# ca_lib.sh (and so lib.sh): ca_start, ca_stop, cu, req, header, fail...
#
#   est_ca NAME [p11ca init args...]   a CA with a PEM-file key in $T/NAME
#       (--O Example --C SE --hostname localhost, listening on 127.0.0.1:0);
#       sets EST_DIR.  CSR subjects must start with $EST_SUBJ
#       ("/C=SE/O=Example"), the CA's Caramel subject rule.
#   est_bootstrap_ca DIR [NAME]        an IDevID (bootstrap) CA made with
#       openssl: DIR/NAME.crt, DIR/NAME.key (NAME default idevid-ca)
#   est_idevid DIR CANAME OUT CN       a device certificate OUT.crt/OUT.key
#       issued by DIR/CANAME (an EC P-256 key in a file)
#   est_user DIR NAME PASSWORD         `p11ca est-user add` (password given
#       through a file, never argv) into DIR/est-users
#   est_conf DIR <<'EOF' ... EOF       writes DIR/est.conf from stdin
#   est_start NAME [serve flags...]    ca_start on $EST_DIR; sets CA_PORT,
#       CA_URL, EST_URL=https://localhost:PORT/.well-known/est
#   est_csr OUT SUBJ [mk_csr args...]  a CSR (OUT, PEM; OUT.key) and its
#       EST body OUT.b64 (base64 of the DER)
#   est_post WANT OP FILE [LABEL [curl args...]]  POST FILE (base64 body,
#       Content-Type application/pkcs10) to EST_URL[/LABEL]/OP; the
#       answer in $T/body, headers $T/hdr (ca_lib.sh's req_url)
#   est_get WANT OP [LABEL [curl args...]]
#   est_certs IN OUT                   a base64 certs-only PKCS#7 answer to
#       PEM certificates (openssl pkcs7 -print_certs); fails if none
#
# est.conf (docs/ca.md "EST"): "[default]" is /.well-known/est/, "[LABEL]"
# is /.well-known/est/LABEL/; settings auth = basic|cert|basic,cert,
# users = FILE, bootstrap-ca = FILE, approval = auto|pending,
# binding = required|off, subject-change = yes|no, key-type =
# ec:P-256|ec:P-384|rsa:BITS|none, lifetime = short|long, retry-after = N,
# csrattrs-extensions = NAMES (keyUsage bits, extendedKeyUsage purposes),
# csrattrs-extensions-required = yes|no;
# before any section: rate-limit = N (failed authentications per address
# per minute, 0 none).
#
# Channel binding (RFC 7030 s3.5): the CSR's challengePassword is the
# standard base64 (with padding, no line breaks) of tls-unique (RFC 5929,
# TLS 1.2: the first Finished message of the handshake) or of the RFC 9266
# tls-exporter value (TLS 1.3: SSL_export_keying_material, label
# "EXPORTER-Channel-Binding", no context, 32 bytes).

# shellcheck disable=SC2034
_est_lib_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=ca_lib.sh
. "$_est_lib_dir/ca_lib.sh"
TEST_NAME=$(basename "${BASH_SOURCE[1]:-$0}" .sh)

EST_SUBJ=/C=SE/O=Example
EST_DIR='' EST_URL=''

est_ca() {
	local name=$1
	shift
	EST_DIR=$T/$name
	p11ca init --dir "$EST_DIR" --O Example --C SE --hostname localhost --listen 127.0.0.1:0 "$@" \
		>"$T/init.out" 2>"$T/init.err" || { cat "$T/init.err" >&2; fail "p11ca init $name"; }
	CA_DIR=$EST_DIR
}

est_bootstrap_ca() {
	local d=$1 n=${2:-idevid-ca}
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
		-subj "/O=Device Maker/CN=$n" -keyout "$d/$n.key" -out "$d/$n.crt" \
		-addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign \
		>/dev/null 2>"$T/openssl.err" || { cat "$T/openssl.err" >&2; fail "bootstrap CA $n"; }
}

est_idevid() {
	local d=$1 ca=$2 out=$3 cn=$4
	openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/O=Device Maker/CN=$cn" \
		-keyout "$out.key" -out "$out.csr" 2>"$T/openssl.err" || { cat "$T/openssl.err" >&2; fail "idevid csr"; }
	printf 'basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n' >"$out.ext"
	openssl x509 -req -in "$out.csr" -CA "$d/$ca.crt" -CAkey "$d/$ca.key" -CAcreateserial -days 30 \
		-extfile "$out.ext" -out "$out.crt" 2>"$T/openssl.err" || { cat "$T/openssl.err" >&2; fail "idevid cert"; }
}

est_user() {
	local d=$1 n=$2 pw=$3
	printf '%s\n' "$pw" >"$T/estpw"
	p11ca est-user add "$n" --dir "$d" --password-file "$T/estpw" >/dev/null 2>"$T/estuser.err" \
		|| { cat "$T/estuser.err" >&2; fail "p11ca est-user add $n"; }
	rm -f "$T/estpw"
}

est_conf() { cat >"$1/est.conf"; }

est_start() {
	local name=$1
	shift
	ca_start "$name" "$EST_DIR" "$@"
	EST_URL=$CA_URL/.well-known/est
}

est_csr() {
	local out=$1 subj=$2
	shift 2
	mk_csr "$out" "$subj" "$@"
	openssl req -in "$out" -outform DER | base64 -w 64 >"$out.b64"
}

_est_url() { if [ -n "${1:-}" ]; then echo "$EST_URL/$1/$2"; else echo "$EST_URL/$2"; fi; }

est_post() {
	local want=$1 op=$2 f=$3 label=${4:-}
	shift 3
	[ $# -gt 0 ] && shift
	req_url "$want" "$(_est_url "$label" "$op")" -H 'Content-Type: application/pkcs10' --data-binary @"$f" "$@"
}

est_get() {
	local want=$1 op=$2 label=${3:-}
	shift 2
	[ $# -gt 0 ] && shift
	req_url "$want" "$(_est_url "$label" "$op")" "$@"
}

est_certs() {
	base64 -d <"$1" >"$T/p7.der" 2>/dev/null || fail "$1: not base64"
	openssl pkcs7 -inform DER -in "$T/p7.der" -print_certs -out "$2" 2>"$T/openssl.err" \
		|| { cat "$T/openssl.err" >&2; fail "$1: not a PKCS#7 certs-only structure"; }
	grep -q 'BEGIN CERTIFICATE' "$2" || fail "$1: no certificate in the PKCS#7"
}
