#!/usr/bin/env bash
# p11cert keygen: key types, attributes, CKA_ID derivation, label clashes.
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

new_token p11c-keygen

# check_key LABEL URI KIND SIZE_OR_CURVE
#   KIND rsa: SIZE bits; KIND ec: curve P-256 / P-384
check_key() {
	local label=$1 uri=$2 kind=$3 size=$4 id keyid priv access usage
	case $uri in pkcs11:*) ;; *) fail "$label: stdout is not a pkcs11: URI: '$uri'" ;; esac
	[ "$(uri_attr "$uri" object)" = "$label" ] || fail "$label: URI '$uri' lacks object=$label"
	[ "$(uri_attr "$uri" type)" = private ] || fail "$label: URI '$uri' lacks type=private"
	[ "$(uri_attr "$uri" token)" = "$TOKEN" ] || fail "$label: URI '$uri' lacks token=$TOKEN"
	id=$(uri_id_hex "$uri")
	[ ${#id} -eq 40 ] || fail "$label: id in URI is not 20 bytes: $id"

	# independent view: one private and one public key, same label and id
	[ "$(count_objects privkey "$label" "$id")" = 1 ] || { objects >&2; fail "$label: no private key with id $id"; }
	[ "$(count_objects pubkey "$label" "$id")" = 1 ] || { objects >&2; fail "$label: no public key with id $id"; }
	priv=$(objects | awk -F'\t' -v l="$label" -v i="$id" '$1 == "privkey" && $2 == l && $3 == i')
	# CKA_SENSITIVE true, CKA_EXTRACTABLE false (so never extractable), CKA_SIGN
	access=$(printf '%s\n' "$priv" | cut -f5)
	usage=$(printf '%s\n' "$priv" | cut -f4)
	case ", $access," in *", sensitive,"*) ;; *) fail "$label: private key not sensitive: $access" ;; esac
	case ", $access," in *", never extractable,"*) ;; *) fail "$label: private key not never-extractable: $access" ;; esac
	case ", $access," in *", extractable,"*) fail "$label: private key is extractable: $access" ;; esac
	case ", $usage," in *", sign,"*) ;; *) fail "$label: private key cannot sign: $usage" ;; esac
	# CKA_PRIVATE: invisible without login
	if objects --nologin | awk -F'\t' -v l="$label" '$1 == "privkey" && $2 == l' | grep -q .; then
		fail "$label: private key visible without login (CKA_PRIVATE false)"
	fi
	# CKA_TOKEN: still there in a new session (every objects call is a new process)
	# reading the private key yields nothing (pkcs11-tool exits 0 but writes no file)
	rm -f "$T/priv.out"
	tool --read-object --type privkey --id "$id" -o "$T/priv.out" >/dev/null 2>&1 || true
	[ ! -s "$T/priv.out" ] || fail "$label: the private key could be read out of the token"

	export_pubkey "$id" "$T/$label.pub.der"
	openssl pkey -pubin -inform DER -in "$T/$label.pub.der" -noout -text >"$T/$label.pub.txt"
	case $kind in
	rsa)
		grep -q "^Public-Key: ($size bit)" "$T/$label.pub.txt" || { cat "$T/$label.pub.txt" >&2; fail "$label: not an RSA $size key"; }
		grep -q 'Modulus' "$T/$label.pub.txt" || fail "$label: not an RSA key"
		;;
	ec)
		grep -q "NIST CURVE: $size" "$T/$label.pub.txt" || { cat "$T/$label.pub.txt" >&2; fail "$label: not an EC $size key"; }
		;;
	esac
	# CKA_ID = SHA-1 of the subjectPublicKey BIT STRING contents (RFC 5280 key id)
	keyid=$(spki_keyid "$T/$label.pub.der")
	[ "$keyid" = "$id" ] || fail "$label: CKA_ID $id is not the key identifier $keyid"
}

# --- every key type --------------------------------------------------------
keygen_ok() { # LABEL TYPE|"" KIND SIZE
	local label=$1 type=$2 uri
	if [ -n "$type" ]; then
		expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=$label" --type "$type"
	else
		expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=$label"
	fi
	[ "$(grep -c . "$T/out")" = 1 ] || fail_out "$label: stdout should be exactly one URI line"
	uri=$(head -n 1 "$T/out")
	check_key "$label" "$uri" "$3" "$4"
	pass "keygen ${type:-default (rsa:2048)}: $uri"
}

keygen_ok k-default "" rsa 2048
keygen_ok k-rsa2048 rsa:2048 rsa 2048
keygen_ok k-rsa3072 rsa:3072 rsa 3072
keygen_ok k-rsa4096 rsa:4096 rsa 4096
keygen_ok k-p256 ec:P-256 ec P-256
keygen_ok k-p384 ec:P-384 ec P-384

# explicit id= in the URI is used as CKA_ID
expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=k-withid;id=%01%a2" --type ec:P-256
uri=$(head -n 1 "$T/out")
[ "$(uri_id_hex "$uri")" = 01a2 ] || fail_out "explicit id=%01%a2 not kept: $uri"
[ "$(count_objects privkey k-withid 01a2)" = 1 ] || fail "no private key with CKA_ID 01a2"
[ "$(count_objects pubkey k-withid 01a2)" = 1 ] || fail "no public key with CKA_ID 01a2"
pass "keygen with explicit id="

# global options after the command name, -q keeps stderr empty
expect_rc 0 p11raw keygen --key "pkcs11:token=$TOKEN;object=k-late" --type ec:P-256 -q --module "$MOD" --pin-file "$PINF"
[ ! -s "$T/err" ] || fail_out "-q: stderr not empty"
case $(head -n 1 "$T/out") in pkcs11:*object=k-late*) ;; *) fail_out "-q: URI missing on stdout" ;; esac
[ "$(count_objects privkey k-late)" = 1 ] || fail "k-late not created"
pass "global options after the command, -q"

# --- same label again ----------------------------------------------------------
first_id=$(objects | awk -F'\t' '$1 == "privkey" && $2 == "k-p256" { print $3 }')
expect_rc 73 p11c keygen --key "pkcs11:token=$TOKEN;object=k-p256" --type ec:P-256
expect_error_line
expect_grep -F 'object=k-p256' "$T/err"
expect_grep -i -F "$(hex_pct "$first_id")" "$T/err"
[ "$(count_objects privkey k-p256)" = 1 ] || fail "refused keygen still created a key"
[ "$(count_objects pubkey k-p256)" = 1 ] || fail "refused keygen still created a public key"
pass "keygen on an existing label: 73, names the existing object"

expect_rc 0 p11c keygen --key "pkcs11:token=$TOKEN;object=k-p256" --type ec:P-256 --force
uri2=$(head -n 1 "$T/out")
id2=$(uri_id_hex "$uri2")
[ "$id2" != "$first_id" ] || fail "--force: second key has the same CKA_ID $id2"
[ "$(count_objects privkey k-p256)" = 2 ] || { objects >&2; fail "--force: expected two private keys labelled k-p256"; }
[ "$(count_objects pubkey k-p256)" = 2 ] || fail "--force: expected two public keys labelled k-p256"
[ "$(count_objects privkey k-p256 "$first_id")" = 1 ] || fail "--force: the first key is gone"
export_pubkey "$id2" "$T/k2.pub.der"
[ "$(spki_keyid "$T/k2.pub.der")" = "$id2" ] || fail "--force: CKA_ID of the second key is not its key id"
pass "keygen --force: two keys, distinct CKA_IDs"

expect_rc 73 p11c keygen --key "pkcs11:token=$TOKEN;object=k-p256" --type ec:P-256
[ "$(count_objects privkey k-p256)" = 2 ] || fail "refused keygen changed the key count"
pass "keygen without --force still refused with two keys"

# --- ed25519 ---------------------------------------------------------------------
# refused before the token is asked: p11cert's signer cannot sign with EdDSA
# keys (docs/cli.md, keygen), so it does not make keys it could not use
expect_rc 69 p11c keygen --key "pkcs11:token=$TOKEN;object=k-ed" --type ed25519
expect_error_line
expect_grep -F "Ed25519 keys are not supported: p11cert's signer cannot sign with them" "$T/err"
[ "$(count_objects privkey k-ed)" = 0 ] || fail "ed25519 refused but a key was created"
pass "keygen ed25519: refused (69) with a clear message"

# --- usage errors ------------------------------------------------------------------
nkeys=$(count_objects privkey)
expect_rc 64 p11c keygen --key "pkcs11:token=$TOKEN" --type ec:P-256
expect_error_line
pass "keygen without object= in the URI: 64"
expect_rc 64 p11c keygen --key "pkcs11:token=$TOKEN;object=k-bad" --type dsa:2048
expect_error_line
expect_grep -F 'dsa:2048' "$T/err"
expect_rc 64 p11c keygen --key "pkcs11:token=$TOKEN;object=k-bad" --type rsa:abc
expect_grep -F 'rsa:abc' "$T/err"
expect_rc 64 p11c keygen --key "pkcs11:token=$TOKEN;object=k-bad" --type ec:P-999
expect_grep -F 'P-999' "$T/err"
pass "keygen with a bad --type: 64 naming it"
expect_rc 64 p11c keygen --key "pkcs11:token=$TOKEN;object=k-bad" --no-such-option
pass "keygen with an unknown option: 64"
[ "$(count_objects privkey)" = "$nkeys" ] || fail "a refused keygen created a key"
[ "$(count_objects privkey k-bad)" = 0 ] || fail "k-bad exists"
pass "refused keygens created nothing"
