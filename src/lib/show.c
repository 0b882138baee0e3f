/*
 * Describing certificates and CSRs for people (text) and programs (JSON),
 * in the spirit of certigo.
 *
 * Everything here parses untrusted input: every field may be missing,
 * malformed or duplicated, and every string that ends up in the output is
 * reduced to printable ASCII (other bytes become \xHH) so that neither the
 * JSON encoder nor a terminal sees anything surprising.
 *
 * The text form is rendered from the JSON form so both always agree.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "show.h"

/* Upper bound for a rendered text description. */
#define SHOW_TEXT_MAX ((size_t)16 * 1024 * 1024)
/* Upper bound for one OID in dotted form. */
#define SHOW_OID_MAX 128

/* --- small string helpers ------------------------------------------------ */

/* Printable ASCII copy of n bytes: 0x20..0x7e stay, everything else (and a
 * backslash when esc_bs) becomes "\xHH".  Caller frees. */
static char *printable(const unsigned char *b, size_t n, int esc_bs)
{
	static const char hexd[] = "0123456789abcdef";
	char *ret = NULL;
	size_t i, o = 0;

	if (b == NULL)
		n = 0;
	if (n > (SIZE_MAX - 1) / 4)
		goto out;
	ret = malloc(n * 4 + 1);
	if (ret == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		unsigned char c = b[i];

		if (c >= 0x20 && c <= 0x7e && !(esc_bs && c == '\\')) {
			ret[o++] = (char)c;
		} else {
			ret[o++] = '\\';
			ret[o++] = 'x';
			ret[o++] = hexd[c >> 4];
			ret[o++] = hexd[c & 0x0f];
		}
	}
	ret[o] = '\0';
out:
	return ret;
}

/* "AB:CD:.." (colons) or "abcd.." (no colons, lowercase).  "" for n == 0.
 * Caller frees. */
static char *hex_str(const unsigned char *b, size_t n, int colons)
{
	const char *hexd = colons ? "0123456789ABCDEF" : "0123456789abcdef";
	char *ret = NULL;
	size_t i, o = 0;

	if (b == NULL)
		n = 0;
	if (n > (SIZE_MAX - 1) / 3)
		goto out;
	ret = malloc(n * 3 + 1);
	if (ret == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		if (colons && i > 0)
			ret[o++] = ':';
		ret[o++] = hexd[b[i] >> 4];
		ret[o++] = hexd[b[i] & 0x0f];
	}
	ret[o] = '\0';
out:
	return ret;
}

/* strdup(), without relying on POSIX feature macros. */
static char *str_dup(const char *s)
{
	char *ret = NULL;
	size_t n;

	if (s == NULL)
		goto out;
	n = strlen(s) + 1;
	ret = malloc(n);
	if (ret != NULL)
		memcpy(ret, s, n);
out:
	return ret;
}

/* prefix + s, taking ownership of s (freed even on failure). */
static char *concat_own(const char *prefix, char *s)
{
	char *ret = NULL;
	size_t a, b;

	if (s == NULL)
		goto out;
	a = strlen(prefix);
	b = strlen(s);
	if (a > SIZE_MAX - 1 - b)
		goto out;
	ret = malloc(a + b + 1);
	if (ret == NULL)
		goto out;
	memcpy(ret, prefix, a);
	memcpy(ret + a, s, b + 1);
out:
	free(s);
	return ret;
}

/* a + b + c.  Caller frees; NULL when any is NULL. */
static char *join3(const char *a, const char *b, const char *c)
{
	char *ret = NULL;
	size_t la, lb, lc;

	if (a == NULL || b == NULL || c == NULL)
		goto out;
	la = strlen(a);
	lb = strlen(b);
	lc = strlen(c);
	if (lb > SIZE_MAX - 1 - lc || la > SIZE_MAX - 1 - lb - lc)
		goto out;
	ret = malloc(la + lb + lc + 1);
	if (ret == NULL)
		goto out;
	memcpy(ret, a, la);
	memcpy(ret + la, b, lb);
	memcpy(ret + la + lb, c, lc + 1);
out:
	return ret;
}

/* Printable copy of an ASN.1 string's bytes.  Caller frees. */
static char *asn1_printable(const ASN1_STRING *s)
{
	const unsigned char *d = NULL;
	int n = 0;

	if (s != NULL) {
		d = ASN1_STRING_get0_data(s);
		n = ASN1_STRING_length(s);
	}
	if (d == NULL || n < 0)
		n = 0;
	return printable(d, (size_t)n, 1);
}

/* "sn" of a known OID, else its dotted form, into buf. */
static void oid_name(const ASN1_OBJECT *obj, int want_long, char *buf,
		     size_t len)
{
	const char *name = NULL;
	int nid;

	if (buf == NULL || len == 0)
		return;
	buf[0] = '\0';
	if (obj == NULL)
		goto out;
	nid = OBJ_obj2nid(obj);
	if (nid != NID_undef)
		name = want_long ? OBJ_nid2ln(nid) : OBJ_nid2sn(nid);
	if (name != NULL) {
		snprintf(buf, len, "%s", name);
		goto out;
	}
	if (len > INT_MAX || OBJ_obj2txt(buf, (int)len, obj, 1) <= 0)
		snprintf(buf, len, "%s", "unknown");
out:
	return;
}

/* Lowercase hex of an INTEGER's magnitude, two digits a byte, without
 * leading zero bytes ("-" in front when negative, "00" for zero, like
 * openssl x509 -serial).  Caller frees. */
static char *serial_hex(const ASN1_INTEGER *serial)
{
	const unsigned char *d = NULL;
	char *ret = NULL;
	int n = 0;

	if (serial != NULL) {
		d = ASN1_STRING_get0_data(serial);
		n = ASN1_STRING_length(serial);
	}
	if (d == NULL || n < 0)
		n = 0;
	while (n > 0 && d[0] == 0) {
		d++;
		n--;
	}
	if (n == 0) {
		ret = str_dup("00");
		goto out;
	}
	ret = hex_str(d, (size_t)n, 0);
	if (ret != NULL && ASN1_STRING_type(serial) == V_ASN1_NEG_INTEGER)
		ret = concat_own("-", ret);
out:
	return ret;
}

/* --- growable text buffer ------------------------------------------------ */

typedef struct {
	char *p;
	size_t len;
	size_t cap;
	int err;
} sbuf;

static void sb_add(sbuf *sb, const char *fmt, ...) P11C_PRINTF(2, 3);

static void sb_add(sbuf *sb, const char *fmt, ...)
{
	va_list ap;
	char *np = NULL;
	size_t need, ncap;
	int n, m;

	if (sb->err)
		goto out;
	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || sb->len >= SHOW_TEXT_MAX ||
	    (size_t)n >= SHOW_TEXT_MAX - sb->len) {
		sb->err = 1;
		goto out;
	}
	need = sb->len + (size_t)n + 1;
	if (need > sb->cap) {
		ncap = sb->cap > 0 ? sb->cap : 512;
		while (ncap < need)
			ncap *= 2;
		if (ncap > SHOW_TEXT_MAX)
			ncap = SHOW_TEXT_MAX;
		np = realloc(sb->p, ncap);
		if (np == NULL) {
			sb->err = 1;
			goto out;
		}
		sb->p = np;
		sb->cap = ncap;
	}
	va_start(ap, fmt);
	m = vsnprintf(sb->p + sb->len, sb->cap - sb->len, fmt, ap);
	va_end(ap);
	if (m != n) {
		sb->err = 1;
		goto out;
	}
	sb->len += (size_t)n;
out:
	return;
}

/* "  Label:          value\n" */
static void sb_line(sbuf *sb, const char *label, const char *value)
{
	sb_add(sb, "  %-16s%s\n", label, value != NULL ? value : "");
}

/* Strings of a JSON array joined by ", ". */
static void sb_join(sbuf *sb, const json_t *arr)
{
	size_t i;
	const char *s;

	for (i = 0; i < json_array_size(arr); i++) {
		s = json_string_value(json_array_get(arr, i));
		sb_add(sb, "%s%s", i > 0 ? ", " : "", s != NULL ? s : "?");
	}
}

/* "  Label:          a, b, c\n"; nothing for a missing or empty array. */
static void sb_list_line(sbuf *sb, const char *label, const json_t *arr)
{
	if (!json_is_array(arr) || json_array_size(arr) == 0)
		return;
	sb_add(sb, "  %-16s", label);
	sb_join(sb, arr);
	sb_add(sb, "\n");
}

/* The text, or NULL (buffer freed) on any failure. */
static char *sb_finish(sbuf *sb)
{
	char *ret = NULL;

	if (sb->err || sb->p == NULL) {
		free(sb->p);
		goto out;
	}
	ret = sb->p;
out:
	sb->p = NULL;
	sb->len = sb->cap = 0;
	return ret;
}

/* --- JSON helpers -------------------------------------------------------- */

/* JSON string from an owned C string (freed); NULL when s is NULL. */
static json_t *jstr_own(char *s)
{
	json_t *ret = NULL;

	if (s == NULL)
		goto out;
	ret = json_string(s);
out:
	free(s);
	return ret;
}

/* Value of a string member, or dflt. */
static const char *jget_str(const json_t *o, const char *key, const char *dflt)
{
	const char *s = json_string_value(json_object_get(o, key));

	return s != NULL ? s : dflt;
}

/* --- pieces --------------------------------------------------------------- */

void p11c_asn1_time_str(const ASN1_TIME *t, char *buf, size_t len)
{
	struct tm tm;
	int n;

	if (buf == NULL || len == 0)
		return;
	buf[0] = '\0';
	/* ASN1_TIME_to_tm(NULL, ..) would give the current time. */
	if (t == NULL)
		goto out;
	memset(&tm, 0, sizeof(tm));
	if (ASN1_TIME_to_tm(t, &tm) != 1)
		goto out;
	if (tm.tm_year < -1900 || tm.tm_year > 9999 - 1900)
		goto out;
	n = snprintf(buf, len, "%04d-%02d-%02dT%02d:%02d:%02dZ",
		     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday,
		     tm.tm_hour, tm.tm_min, tm.tm_sec);
	if (n < 0 || (size_t)n >= len)
		buf[0] = '\0';
out:
	return;
}

char *p11c_name_str(const X509_NAME *name)
{
	BIO *bio = NULL;
	char *data = NULL;
	char *ret = NULL;
	long n;

	ERR_set_mark();
	if (name == NULL) {
		ret = str_dup("");
		goto out;
	}
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		goto out;
	if (X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253) < 0)
		goto out;
	n = BIO_get_mem_data(bio, &data);
	if (n < 0 || (n > 0 && data == NULL))
		goto out;
	/* RFC 2253 escapes use backslashes: keep them. */
	ret = printable((const unsigned char *)data, (size_t)n, 0);
out:
	BIO_free(bio);
	ERR_pop_to_mark();
	return ret;
}

/* "YYYY-MM-DDTHH:MM:SSZ", or null when the time cannot be read. */
static json_t *time_json(const ASN1_TIME *t)
{
	char buf[32];

	p11c_asn1_time_str(t, buf, sizeof(buf));
	return buf[0] != '\0' ? json_string(buf) : json_null();
}

/* One subjectAltName entry as "TYPE:value".  Caller frees. */
static char *gen_name_str(const GENERAL_NAME *g)
{
	char oid[SHOW_OID_MAX];
	char ip[INET6_ADDRSTRLEN];
	char *ret = NULL;
	char *hex = NULL;
	const unsigned char *d = NULL;
	int n = 0;

	if (g == NULL)
		goto out;
	switch (g->type) {
	case GEN_DNS:
		ret = concat_own("DNS:", asn1_printable(g->d.dNSName));
		break;
	case GEN_EMAIL:
		ret = concat_own("email:", asn1_printable(g->d.rfc822Name));
		break;
	case GEN_URI:
		ret = concat_own("URI:",
				 asn1_printable(g->d.uniformResourceIdentifier));
		break;
	case GEN_IPADD:
		if (g->d.iPAddress != NULL) {
			d = ASN1_STRING_get0_data(g->d.iPAddress);
			n = ASN1_STRING_length(g->d.iPAddress);
		}
		if (d != NULL && (n == 4 || n == 16) &&
		    inet_ntop(n == 4 ? AF_INET : AF_INET6, d, ip, sizeof(ip)) != NULL)
			ret = concat_own("IP:", str_dup(ip));
		else {
			hex = hex_str(d, n > 0 ? (size_t)n : 0, 0);
			ret = join3("IP:<invalid:", hex, ">");
		}
		break;
	case GEN_DIRNAME:
		ret = concat_own("DirName:", p11c_name_str(g->d.directoryName));
		break;
	case GEN_RID:
		oid_name(g->d.registeredID, 0, oid, sizeof(oid));
		ret = concat_own("RID:", str_dup(oid));
		break;
	case GEN_OTHERNAME:
		oid_name(g->d.otherName != NULL ? g->d.otherName->type_id
						: NULL, 0, oid, sizeof(oid));
		ret = concat_own("othername:", str_dup(oid));
		break;
	case GEN_X400:
		ret = str_dup("X400Name");
		break;
	case GEN_EDIPARTY:
		ret = str_dup("EdiPartyName");
		break;
	default:
		ret = str_dup("unknown");
		break;
	}
out:
	free(hex);
	return ret;
}

/* Array of "TYPE:value" strings; empty when gens is NULL. */
static json_t *sans_json(const GENERAL_NAMES *gens)
{
	json_t *arr = NULL;
	json_t *ret = NULL;
	int i, n;

	arr = json_array();
	if (arr == NULL)
		goto out;
	n = gens != NULL ? sk_GENERAL_NAME_num(gens) : 0;
	for (i = 0; i < n; i++) {
		if (json_array_append_new(arr,
		    jstr_own(gen_name_str(sk_GENERAL_NAME_value(gens, i)))) != 0)
			goto out;
	}
	ret = arr;
	arr = NULL;
out:
	json_decref(arr);
	return ret;
}

/* Curve name of an EC key, NIST curves as "P-256" etc.; "" if unknown. */
static void ec_curve(const EVP_PKEY *pk, char *buf, size_t len)
{
	char group[80];
	size_t glen = 0;

	buf[0] = '\0';
	if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME,
					   group, sizeof(group), &glen) != 1 ||
	    glen >= sizeof(group))
		goto out;
	group[glen] = '\0';
	if (strcmp(group, "prime256v1") == 0 || strcmp(group, "P-256") == 0 ||
	    strcmp(group, "secp256r1") == 0)
		snprintf(buf, len, "%s", "P-256");
	else if (strcmp(group, "secp384r1") == 0 || strcmp(group, "P-384") == 0)
		snprintf(buf, len, "%s", "P-384");
	else if (strcmp(group, "secp521r1") == 0 || strcmp(group, "P-521") == 0)
		snprintf(buf, len, "%s", "P-521");
	else
		snprintf(buf, len, "%s", group);
out:
	return;
}

/* "RSA", "EC", "Ed25519", ...; never NULL. */
static const char *key_type_name(const EVP_PKEY *pk, int id)
{
	const char *type = NULL;

	switch (id) {
	case EVP_PKEY_RSA:
		type = "RSA";
		break;
	case EVP_PKEY_RSA_PSS:
		type = "RSA-PSS";
		break;
	case EVP_PKEY_EC:
		type = "EC";
		break;
	case EVP_PKEY_ED25519:
		type = "Ed25519";
		break;
	case EVP_PKEY_ED448:
		type = "Ed448";
		break;
	case EVP_PKEY_DSA:
		type = "DSA";
		break;
	default:
		if (id != NID_undef)
			type = OBJ_nid2sn(id);
		if (type == NULL)
			type = EVP_PKEY_get0_type_name(pk);
		break;
	}
	return type != NULL ? type : "unknown";
}

/* {"type", "bits", "curve" (EC only)}.  pk may be NULL (undecodable key):
 * then the type is the algorithm OID of xpk and bits is null. */
static json_t *key_json(EVP_PKEY *pk, const X509_PUBKEY *xpk)
{
	char tbuf[SHOW_OID_MAX];
	char curve[80];
	ASN1_OBJECT *alg = NULL;
	const char *type = NULL;
	json_t *o = NULL;
	json_t *ret = NULL;
	int id, bits = 0;
	char *safe = NULL;

	o = json_object();
	if (o == NULL)
		goto out;
	tbuf[0] = '\0';
	if (pk == NULL) {
		if (xpk != NULL &&
		    X509_PUBKEY_get0_param(&alg, NULL, NULL, NULL, xpk) == 1)
			oid_name(alg, 0, tbuf, sizeof(tbuf));
		type = tbuf[0] != '\0' ? tbuf : "unknown";
		if (json_object_set_new(o, "type", json_string(type)) != 0 ||
		    json_object_set_new(o, "bits", json_null()) != 0)
			goto out;
	} else {
		id = EVP_PKEY_get_base_id(pk);
		type = key_type_name(pk, id);
		/* Provider-supplied names are not ours to trust. */
		if (json_object_set_new(o, "type", jstr_own(printable(
			(const unsigned char *)type, strlen(type), 1))) != 0)
			goto out;
		bits = EVP_PKEY_get_bits(pk);
		if (json_object_set_new(o, "bits", bits > 0 ?
			json_integer(bits) : json_null()) != 0)
			goto out;
		if (id == EVP_PKEY_EC) {
			ec_curve(pk, curve, sizeof(curve));
			safe = printable((const unsigned char *)curve,
					 strlen(curve), 1);
			if (safe == NULL)
				goto out;
			if (json_object_set_new(o, "curve", safe[0] != '\0' ?
				json_string(safe) : json_null()) != 0)
				goto out;
		}
	}
	ret = o;
	o = NULL;
out:
	free(safe);
	json_decref(o);
	return ret;
}

/* Long name of a signature algorithm (dotted OID when unknown). */
static json_t *sigalg_json(const X509_ALGOR *alg)
{
	const ASN1_OBJECT *obj = NULL;
	char buf[SHOW_OID_MAX];

	if (alg != NULL)
		X509_ALGOR_get0(&obj, NULL, NULL, alg);
	oid_name(obj, 1, buf, sizeof(buf));
	return json_string(buf[0] != '\0' ? buf : "unknown");
}

/* Colon hex of a digest; null when it could not be computed. */
static json_t *digest_json(int ok, const unsigned char *md, unsigned int n)
{
	if (!ok || n == 0)
		return json_null();
	return jstr_own(hex_str(md, n, 1));
}

static json_t *basic_constraints_json(const BASIC_CONSTRAINTS *bc)
{
	json_t *o = NULL;
	json_t *ret = NULL;
	int64_t pl = 0;

	if (bc == NULL) {
		ret = json_null();
		goto out;
	}
	o = json_object();
	if (o == NULL)
		goto out;
	if (json_object_set_new(o, "ca", json_boolean(bc->ca != 0)) != 0)
		goto out;
	if (json_object_set_new(o, "pathlen",
	    bc->pathlen != NULL && ASN1_INTEGER_get_int64(&pl, bc->pathlen) == 1
	    ? json_integer((json_int_t)pl) : json_null()) != 0)
		goto out;
	ret = o;
	o = NULL;
out:
	json_decref(o);
	return ret;
}

static json_t *key_usage_json(const ASN1_BIT_STRING *ku)
{
	static const char *const names[] = {
		"digitalSignature", "nonRepudiation", "keyEncipherment",
		"dataEncipherment", "keyAgreement", "keyCertSign", "cRLSign",
		"encipherOnly", "decipherOnly",
	};
	json_t *arr = NULL;
	json_t *ret = NULL;
	size_t i;

	arr = json_array();
	if (arr == NULL)
		goto out;
	for (i = 0; ku != NULL && i < sizeof(names) / sizeof(names[0]); i++) {
		if (ASN1_BIT_STRING_get_bit(ku, (int)i) == 1 &&
		    json_array_append_new(arr, json_string(names[i])) != 0)
			goto out;
	}
	ret = arr;
	arr = NULL;
out:
	json_decref(arr);
	return ret;
}

static json_t *eku_json(const EXTENDED_KEY_USAGE *eku)
{
	char buf[SHOW_OID_MAX];
	json_t *arr = NULL;
	json_t *ret = NULL;
	int i, n;

	arr = json_array();
	if (arr == NULL)
		goto out;
	n = eku != NULL ? sk_ASN1_OBJECT_num(eku) : 0;
	for (i = 0; i < n; i++) {
		oid_name(sk_ASN1_OBJECT_value(eku, i), 0, buf, sizeof(buf));
		if (json_array_append_new(arr, json_string(buf)) != 0)
			goto out;
	}
	ret = arr;
	arr = NULL;
out:
	json_decref(arr);
	return ret;
}

/* Colon hex of an OCTET STRING, null when absent. */
static json_t *octets_json(const ASN1_OCTET_STRING *os)
{
	const unsigned char *d = NULL;
	int n;

	if (os == NULL)
		return json_null();
	d = ASN1_STRING_get0_data(os);
	n = ASN1_STRING_length(os);
	if (d == NULL || n < 0)
		return json_null();
	return jstr_own(hex_str(d, (size_t)n, 1));
}

/* --- certificates ---------------------------------------------------------- */

json_t *p11c_cert_json(X509 *cert)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const X509_ALGOR *sigalg = NULL;
	GENERAL_NAMES *gens = NULL;
	BASIC_CONSTRAINTS *bc = NULL;
	ASN1_BIT_STRING *ku = NULL;
	EXTENDED_KEY_USAGE *eku = NULL;
	ASN1_OCTET_STRING *ski = NULL;
	AUTHORITY_KEYID *aki = NULL;
	json_t *o = NULL;
	json_t *fp = NULL;
	json_t *ret = NULL;
	int ok;

	ERR_set_mark();
	if (cert == NULL)
		goto out;
	o = json_object();
	if (o == NULL)
		goto out;

	if (json_object_set_new(o, "subject",
		jstr_own(p11c_name_str(X509_get_subject_name(cert)))) != 0 ||
	    json_object_set_new(o, "issuer",
		jstr_own(p11c_name_str(X509_get_issuer_name(cert)))) != 0 ||
	    json_object_set_new(o, "serial",
		jstr_own(serial_hex(X509_get0_serialNumber(cert)))) != 0 ||
	    json_object_set_new(o, "not_before",
		time_json(X509_get0_notBefore(cert))) != 0 ||
	    json_object_set_new(o, "not_after",
		time_json(X509_get0_notAfter(cert))) != 0)
		goto out;

	/* A duplicated or malformed extension reads as absent. */
	gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	if (json_object_set_new(o, "sans", sans_json(gens)) != 0)
		goto out;

	if (json_object_set_new(o, "key", key_json(X509_get0_pubkey(cert),
				X509_get_X509_PUBKEY(cert))) != 0)
		goto out;

	X509_get0_signature(NULL, &sigalg, cert);
	if (json_object_set_new(o, "signature_algorithm",
				sigalg_json(sigalg)) != 0)
		goto out;

	fp = json_object();
	if (json_object_set_new(o, "fingerprints", fp) != 0)
		goto out;
	ok = X509_digest(cert, EVP_sha256(), md, &mdlen) == 1;
	if (json_object_set_new(fp, "sha256", digest_json(ok, md, mdlen)) != 0)
		goto out;
	mdlen = 0;
	ok = X509_digest(cert, EVP_sha1(), md, &mdlen) == 1;
	if (json_object_set_new(fp, "sha1", digest_json(ok, md, mdlen)) != 0)
		goto out;

	bc = X509_get_ext_d2i(cert, NID_basic_constraints, NULL, NULL);
	if (json_object_set_new(o, "basic_constraints",
				basic_constraints_json(bc)) != 0)
		goto out;
	ku = X509_get_ext_d2i(cert, NID_key_usage, NULL, NULL);
	if (json_object_set_new(o, "key_usage", key_usage_json(ku)) != 0)
		goto out;
	eku = X509_get_ext_d2i(cert, NID_ext_key_usage, NULL, NULL);
	if (json_object_set_new(o, "extended_key_usage", eku_json(eku)) != 0)
		goto out;
	ski = X509_get_ext_d2i(cert, NID_subject_key_identifier, NULL, NULL);
	if (json_object_set_new(o, "subject_key_id", octets_json(ski)) != 0)
		goto out;
	aki = X509_get_ext_d2i(cert, NID_authority_key_identifier, NULL, NULL);
	if (json_object_set_new(o, "authority_key_id",
				octets_json(aki != NULL ? aki->keyid : NULL)) != 0)
		goto out;

	if (json_object_set_new(o, "is_self_signed",
		json_boolean(X509_check_issued(cert, cert) == X509_V_OK)) != 0)
		goto out;

	ret = o;
	o = NULL;
out:
	GENERAL_NAMES_free(gens);
	BASIC_CONSTRAINTS_free(bc);
	ASN1_BIT_STRING_free(ku);
	EXTENDED_KEY_USAGE_free(eku);
	ASN1_OCTET_STRING_free(ski);
	AUTHORITY_KEYID_free(aki);
	json_decref(o);
	ERR_pop_to_mark();
	return ret;
}

/* "EC P-256", "RSA 2048", "Ed25519" from a key object of key_json(). */
static void key_desc(const json_t *key, char *buf, size_t len)
{
	const char *type = jget_str(key, "type", "unknown");
	const char *curve = jget_str(key, "curve", NULL);
	json_int_t bits = json_integer_value(json_object_get(key, "bits"));

	if (strcmp(type, "EC") == 0 && curve != NULL)
		snprintf(buf, len, "%s %s", type, curve);
	else if (strcmp(type, "Ed25519") == 0 || strcmp(type, "Ed448") == 0 ||
		 bits <= 0)
		snprintf(buf, len, "%s", type);
	else
		snprintf(buf, len, "%s %lld", type, (long long)bits);
}

/* " (expires in N days)", " (EXPIRED N days ago)", " (not yet valid)",
 * or "" when the times cannot be read. */
static void validity_note(const X509 *cert, char *buf, size_t len)
{
	const ASN1_TIME *nb = X509_get0_notBefore(cert);
	const ASN1_TIME *na = X509_get0_notAfter(cert);
	long long total, days;
	int pday = 0, psec = 0;

	buf[0] = '\0';
	if (nb != NULL && ASN1_TIME_diff(&pday, &psec, NULL, nb) == 1 &&
	    (pday > 0 || psec > 0)) {
		snprintf(buf, len, "%s", " (not yet valid)");
		goto out;
	}
	if (na == NULL || ASN1_TIME_diff(&pday, &psec, NULL, na) != 1)
		goto out;
	total = (long long)pday * 86400 + psec;
	/* Round to the nearest day: a certificate issued for 365 days a
	 * second ago still "expires in 365 days". */
	days = ((total < 0 ? -total : total) + 43200) / 86400;
	if (total > 0 && days == 0)
		snprintf(buf, len, "%s", " (expires in less than a day)");
	else if (total > 0)
		snprintf(buf, len, " (expires in %lld day%s)", days,
			 days == 1 ? "" : "s");
	else if (days == 0)
		snprintf(buf, len, "%s", " (EXPIRED less than a day ago)");
	else
		snprintf(buf, len, " (EXPIRED %lld day%s ago)", days,
			 days == 1 ? "" : "s");
out:
	return;
}

char *p11c_cert_text(X509 *cert)
{
	char note[64];
	char kd[128];
	sbuf sb = { NULL, 0, 0, 0 };
	json_t *j = NULL;
	const json_t *bc = NULL;
	const json_t *pl = NULL;
	const json_t *fp = NULL;
	char *ret = NULL;

	if (cert == NULL)
		goto out;
	j = p11c_cert_json(cert);
	if (j == NULL)
		goto out;
	ERR_set_mark();
	validity_note(cert, note, sizeof(note));
	ERR_pop_to_mark();

	sb_add(&sb, "Certificate\n");
	sb_line(&sb, "Subject:", jget_str(j, "subject", ""));
	sb_line(&sb, "Issuer:", jget_str(j, "issuer", ""));
	sb_line(&sb, "Serial:", jget_str(j, "serial", ""));
	sb_line(&sb, "Not Before:", jget_str(j, "not_before", "(invalid)"));
	sb_add(&sb, "  %-16s%s%s\n", "Not After:",
	       jget_str(j, "not_after", "(invalid)"), note);
	key_desc(json_object_get(j, "key"), kd, sizeof(kd));
	sb_line(&sb, "Key:", kd);
	sb_line(&sb, "Signature:", jget_str(j, "signature_algorithm", ""));
	sb_list_line(&sb, "SANs:", json_object_get(j, "sans"));
	bc = json_object_get(j, "basic_constraints");
	if (json_is_object(bc)) {
		pl = json_object_get(bc, "pathlen");
		if (json_is_integer(pl))
			sb_add(&sb, "  %-16sCA:%s, pathlen:%lld\n",
			       "Basic Constr.:",
			       json_is_true(json_object_get(bc, "ca")) ?
			       "TRUE" : "FALSE",
			       (long long)json_integer_value(pl));
		else
			sb_add(&sb, "  %-16sCA:%s\n", "Basic Constr.:",
			       json_is_true(json_object_get(bc, "ca")) ?
			       "TRUE" : "FALSE");
	}
	sb_list_line(&sb, "Key Usage:", json_object_get(j, "key_usage"));
	sb_list_line(&sb, "Ext. Key Usage:",
		     json_object_get(j, "extended_key_usage"));
	if (jget_str(j, "subject_key_id", NULL) != NULL)
		sb_line(&sb, "Subject Key ID:", jget_str(j, "subject_key_id", ""));
	if (jget_str(j, "authority_key_id", NULL) != NULL)
		sb_line(&sb, "Authority KID:",
			jget_str(j, "authority_key_id", ""));
	fp = json_object_get(j, "fingerprints");
	sb_line(&sb, "SHA-256:", jget_str(fp, "sha256", "(unavailable)"));
	sb_line(&sb, "SHA-1:", jget_str(fp, "sha1", "(unavailable)"));
	ret = sb_finish(&sb);
out:
	free(sb.p);
	json_decref(j);
	return ret;
}

/* --- certificate requests ---------------------------------------------------- */

/* Short names (or dotted OIDs) of the requested extensions. */
static json_t *ext_names_json(const STACK_OF(X509_EXTENSION) *exts)
{
	char buf[SHOW_OID_MAX];
	json_t *arr = NULL;
	json_t *ret = NULL;
	int i, n;

	arr = json_array();
	if (arr == NULL)
		goto out;
	n = exts != NULL ? sk_X509_EXTENSION_num(exts) : 0;
	for (i = 0; i < n; i++) {
		oid_name(X509_EXTENSION_get_object(
				sk_X509_EXTENSION_value(exts, i)),
			 0, buf, sizeof(buf));
		if (json_array_append_new(arr, json_string(buf)) != 0)
			goto out;
	}
	ret = arr;
	arr = NULL;
out:
	json_decref(arr);
	return ret;
}

json_t *p11c_req_json(X509_REQ *req)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	const X509_ALGOR *sigalg = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	EVP_PKEY *pk = NULL;
	json_t *o = NULL;
	json_t *fp = NULL;
	json_t *ret = NULL;
	int ok, valid = 0;

	ERR_set_mark();
	if (req == NULL)
		goto out;
	o = json_object();
	if (o == NULL)
		goto out;

	if (json_object_set_new(o, "subject",
		jstr_own(p11c_name_str(X509_REQ_get_subject_name(req)))) != 0)
		goto out;

	exts = X509_REQ_get_extensions(req);
	if (exts != NULL)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	if (json_object_set_new(o, "sans", sans_json(gens)) != 0)
		goto out;

	pk = X509_REQ_get0_pubkey(req);
	if (json_object_set_new(o, "key",
		key_json(pk, X509_REQ_get_X509_PUBKEY(req))) != 0)
		goto out;

	X509_REQ_get0_signature(req, NULL, &sigalg);
	if (json_object_set_new(o, "signature_algorithm",
				sigalg_json(sigalg)) != 0)
		goto out;
	if (pk != NULL)
		valid = X509_REQ_verify(req, pk) == 1;
	if (json_object_set_new(o, "signature_valid", json_boolean(valid)) != 0)
		goto out;

	fp = json_object();
	if (json_object_set_new(o, "fingerprints", fp) != 0)
		goto out;
	ok = X509_REQ_digest(req, EVP_sha256(), md, &mdlen) == 1;
	if (json_object_set_new(fp, "sha256", digest_json(ok, md, mdlen)) != 0)
		goto out;

	if (json_object_set_new(o, "extensions", ext_names_json(exts)) != 0)
		goto out;

	ret = o;
	o = NULL;
out:
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	json_decref(o);
	ERR_pop_to_mark();
	return ret;
}

char *p11c_req_text(X509_REQ *req)
{
	char kd[128];
	sbuf sb = { NULL, 0, 0, 0 };
	json_t *j = NULL;
	char *ret = NULL;

	if (req == NULL)
		goto out;
	j = p11c_req_json(req);
	if (j == NULL)
		goto out;
	sb_add(&sb, "Certificate Request\n");
	sb_line(&sb, "Subject:", jget_str(j, "subject", ""));
	key_desc(json_object_get(j, "key"), kd, sizeof(kd));
	sb_line(&sb, "Key:", kd);
	sb_add(&sb, "  %-16s%s%s\n", "Signature:",
	       jget_str(j, "signature_algorithm", ""),
	       json_is_true(json_object_get(j, "signature_valid")) ?
	       " (valid)" : " (INVALID)");
	sb_list_line(&sb, "SANs:", json_object_get(j, "sans"));
	sb_line(&sb, "SHA-256:",
		jget_str(json_object_get(j, "fingerprints"), "sha256",
			 "(unavailable)"));
	ret = sb_finish(&sb);
out:
	free(sb.p);
	json_decref(j);
	return ret;
}
