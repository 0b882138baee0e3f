/* The parsers of the EST client (RFC 7030): base64 bodies, PKCS#7
 * certs-only, CSR attributes.  Untrusted bytes from the network: bounded
 * by the body's length and P11C_EST_MAX_*; tests/fuzz/fuzz_est_client.c
 * feeds them. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11cert/est.h>

#include "internal.h"

#define SETERR(...)                                         \
	do {                                                \
		if (err != NULL && errlen > 0)              \
			snprintf(err, errlen, __VA_ARGS__); \
	} while (0)

static int b64_char(unsigned char c)
{
	return isalnum(c) || c == '+' || c == '/' || c == '=';
}

p11c_result p11c_est_b64_decode(const unsigned char *in, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *clean = NULL, *dec = NULL;
	size_t n = 0, i, pad = 0;
	int d;

	if (in == NULL || out == NULL || outlen == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	*outlen = 0;
	if ((clean = malloc(len + 1)) == NULL)
		return P11C_ERR_NOMEM;
	for (i = 0; i < len; i++) {
		if (in[i] == ' ' || in[i] == '\t' || in[i] == '\r' || in[i] == '\n')
			continue;
		if (!b64_char(in[i]) || (n > 0 && clean[n - 1] == '=' && in[i] != '=')) {
			free(clean);
			return P11C_ERR_PARSE; /* not base64, or data after the padding */
		}
		clean[n++] = in[i];
	}
	if (n == 0 || n % 4 != 0) {
		free(clean);
		return P11C_ERR_PARSE;
	}
	while (pad < 2 && clean[n - 1 - pad] == '=')
		pad++;
	if (clean[n - 1 - pad] == '=') {
		free(clean);
		return P11C_ERR_PARSE;
	}
	if ((dec = malloc(n / 4 * 3 + 1)) == NULL) {
		free(clean);
		return P11C_ERR_NOMEM;
	}
	d = EVP_DecodeBlock(dec, clean, (int)n);
	free(clean);
	if (d < 0 || (size_t)d < pad) {
		free(dec);
		return P11C_ERR_PARSE;
	}
	*out = dec;
	*outlen = (size_t)d - pad; /* EVP_DecodeBlock counts the padding as zeros */
	return P11C_OK;
}

/* The DER of an EST body: raw DER (a SEQUENCE), PEM armour stripped, else
 * base64 (RFC 8951 s3: base64 whatever Content-Transfer-Encoding says). */
static p11c_result body_der(const unsigned char *body, size_t len, unsigned char **der, size_t *dlen)
{
	const unsigned char *p = body, *end = body + len;
	size_t rest;

	while (p < end && isspace(*p))
		p++;
	rest = (size_t)(end - p);
	/* cppcheck-suppress knownConditionTrueFalse ; false only for the all-blank input of one caller */
	if (rest > 0 && *p == 0x30) {
		if ((*der = malloc(rest)) == NULL)
			return P11C_ERR_NOMEM;
		memcpy(*der, p, rest);
		*dlen = rest;
		return P11C_OK;
	}
	/* cppcheck-suppress knownConditionTrueFalse ; as above */
	if (rest > 11 && memcmp(p, "-----BEGIN ", 11) == 0) {
		const unsigned char *nl = memchr(p, '\n', rest), *q;

		if (nl == NULL)
			return P11C_ERR_PARSE;
		p = nl + 1;
		for (q = p; q + 5 <= end; q++)
			if (memcmp(q, "-----", 5) == 0)
				break;
		if (q + 5 > end)
			return P11C_ERR_PARSE;
		end = q;
	}
	return p11c_est_b64_decode(p, (size_t)(end - p), der, dlen);
}

p11c_result p11c_est_certs_parse(const unsigned char *body, size_t len, STACK_OF(X509) **certs, char *err,
				 size_t errlen)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	size_t dlen = 0;
	PKCS7 *p7 = NULL;
	STACK_OF(X509) *in, *out = NULL;
	p11c_result r;
	int i, n;

	if (body == NULL || certs == NULL)
		return P11C_ERR_ARG;
	*certs = NULL;
	if ((r = body_der(body, len, &der, &dlen)) != P11C_OK) {
		SETERR("the answer is not base64 (RFC 7030 s4.1.3)");
		return r;
	}
	p = der;
	/* RFC 7030 s4.1.3: a CMC Simple PKI Response (RFC 5272 s4.1), i.e.
	 * SignedData with certificates and no signers ("certs-only") */
	if (dlen > LONG_MAX || (p7 = d2i_PKCS7(NULL, &p, (long)dlen)) == NULL || p != der + dlen) {
		SETERR("the answer is not a PKCS#7 structure%s", p7 != NULL ? " (trailing bytes)" : "");
		r = P11C_ERR_PARSE;
		goto out;
	}
	if (!PKCS7_type_is_signed(p7) || p7->d.sign == NULL) {
		SETERR("the PKCS#7 answer is not SignedData (certs-only)");
		r = P11C_ERR_PARSE;
		goto out;
	}
	if (sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info) > 0) {
		SETERR("the PKCS#7 answer has signers: not certs-only");
		r = P11C_ERR_PARSE;
		goto out;
	}
	in = p7->d.sign->cert;
	n = in != NULL ? sk_X509_num(in) : 0;
	if (n < 1 || n > P11C_EST_MAX_CERTS) {
		SETERR("the PKCS#7 answer holds %d certificates (1 to %d expected)", n, P11C_EST_MAX_CERTS);
		r = P11C_ERR_PARSE;
		goto out;
	}
	if ((out = sk_X509_new_null()) == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		X509 *x = sk_X509_value(in, i);

		if (!X509_up_ref(x) || !sk_X509_push(out, x)) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
	}
	*certs = out;
	out = NULL;
	r = P11C_OK;
out:
	ERR_clear_error();
	sk_X509_pop_free(out, X509_free);
	PKCS7_free(p7);
	free(der);
	return r;
}

/* One DER element at *p (at most end): its tag and contents. */
static int der_next(const unsigned char **p, const unsigned char *end, int *tag, const unsigned char **c,
		    long *clen)
{
	int xclass;
	const unsigned char *q = *p;
	int ret;

	if (q >= end)
		return 0;
	ret = ASN1_get_object(&q, clen, tag, &xclass, end - q);
	if ((ret & 0x80) != 0 || (ret & 0x01) != 0 || xclass != V_ASN1_UNIVERSAL)
		return 0; /* error, indefinite length (not DER), or not universal */
	*c = q;
	*p = q + *clen;
	return 1;
}

/* OID contents (c, clen) as dotted text and NID. */
static int oid_of(const unsigned char *c, long clen, char *txt, size_t tlen, int *nid)
{
	ASN1_OBJECT *o = NULL;
	const unsigned char *q = c;
	unsigned char hdr[2 + 127];
	const unsigned char *hp = hdr;

	if (clen < 1 || clen > 127)
		return 0;
	hdr[0] = V_ASN1_OBJECT;
	hdr[1] = (unsigned char)clen;
	memcpy(hdr + 2, q, (size_t)clen);
	if ((o = d2i_ASN1_OBJECT(NULL, &hp, clen + 2)) == NULL)
		return 0;
	if (OBJ_obj2txt(txt, (int)tlen, o, 1) <= 0) {
		ASN1_OBJECT_free(o);
		return 0;
	}
	*nid = OBJ_obj2nid(o);
	ASN1_OBJECT_free(o);
	return 1;
}

static void note_unknown(p11c_est_attrs *a, const char *oid)
{
	if (a->nunknown < P11C_EST_MAX_ATTRS)
		snprintf(a->unknown[a->nunknown++], sizeof a->unknown[0], "%s", oid);
}

/* An OID alone: challengePassword, a key type, a signature algorithm
 * (RFC 7030 s4.5.2). */
static void attr_oid(p11c_est_attrs *a, int nid, const char *oid)
{
	int md = 0, pk = 0;

	switch (nid) {
	case NID_pkcs9_challengePassword: a->challenge_password = 1; return;
	case NID_rsaEncryption: a->key_type = EVP_PKEY_RSA; return;
	case NID_X9_62_id_ecPublicKey: a->key_type = EVP_PKEY_EC; return;
	case NID_pkcs9_emailAddress: case NID_commonName: case NID_serialNumber: return; /* subject fields */
	default: break;
	}
	if (OBJ_find_sigid_algs(nid, &md, &pk) && md != NID_undef) {
		a->md_nid = md;
		return;
	}
	note_unknown(a, oid);
}

/* Whether p11cert can put extension X as asked into a request: keyUsage,
 * extendedKeyUsage, subjectAltName (merged with the request's names), and
 * basicConstraints when it says CA:FALSE.  The value must decode. */
static int ext_honoured(X509_EXTENSION *x, int nid, char *why, size_t wlen)
{
	void *v;

	if (nid != NID_key_usage && nid != NID_ext_key_usage && nid != NID_subject_alt_name &&
	    nid != NID_basic_constraints)
		return 0;
	if ((v = X509V3_EXT_d2i(x)) == NULL) {
		snprintf(why, wlen, " (bad value)");
		return 0;
	}
	if (nid == NID_basic_constraints) {
		BASIC_CONSTRAINTS *bc = v;
		int ca = bc->ca;

		BASIC_CONSTRAINTS_free(bc);
		if (ca) {
			snprintf(why, wlen, " (CA:TRUE)");
			return 0;
		}
		return 1;
	}
	if (nid == NID_key_usage)
		ASN1_BIT_STRING_free(v);
	else if (nid == NID_ext_key_usage)
		EXTENDED_KEY_USAGE_free(v);
	else
		GENERAL_NAMES_free(v);
	return 1;
}

/* An extensionRequest value that is Extensions (RFC 2985 s5.4.2; RFC 7030
 * s4.5.2 lets the server send the values it wants, RFC 9908 spells that
 * template out): the TLV at (tlv, tlen).  The ones ext_honoured takes are
 * kept in a->ext (the first of each type; at most P11C_EST_MAX_EXTS and
 * P11C_EST_MAX_EXT_DER bytes), the others go to unknown. */
static int ext_values(p11c_est_attrs *a, const unsigned char *tlv, long tlen, char *err, size_t errlen)
{
	const unsigned char *q = tlv;
	STACK_OF(X509_EXTENSION) *got = NULL, *keep = NULL;
	unsigned char *der = NULL;
	int i, j, n, ok = 0;

	if ((got = d2i_X509_EXTENSIONS(NULL, &q, tlen)) == NULL || q != tlv + tlen) {
		SETERR("the extensionRequest value is not DER Extensions");
		goto out;
	}
	if (sk_X509_EXTENSION_num(got) > P11C_EST_MAX_EXTS) {
		SETERR("more than %d extensions asked for", P11C_EST_MAX_EXTS);
		goto out;
	}
	q = a->ext;
	keep = a->ext_len > 0 ? d2i_X509_EXTENSIONS(NULL, &q, (long)a->ext_len) : sk_X509_EXTENSION_new_null();
	if (keep == NULL) {
		SETERR("out of memory");
		goto out;
	}
	for (i = 0; i < sk_X509_EXTENSION_num(got); i++) {
		X509_EXTENSION *x = sk_X509_EXTENSION_value(got, i);
		int nid = OBJ_obj2nid(X509_EXTENSION_get_object(x)), dup = 0;
		char oid[48] = "?", why[24] = "";

		(void)OBJ_obj2txt(oid, sizeof oid, X509_EXTENSION_get_object(x), 1);
		for (j = 0; j < sk_X509_EXTENSION_num(keep); j++)
			dup |= OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(keep, j))) == nid;
		if (dup)
			continue;
		if (!ext_honoured(x, nid, why, sizeof why)) {
			char note[48];

			snprintf(note, sizeof note, "%.*s%s", (int)(sizeof note - 1 - strlen(why)), oid, why);
			note_unknown(a, note);
			continue;
		}
		if (sk_X509_EXTENSION_num(keep) >= P11C_EST_MAX_EXTS || !sk_X509_EXTENSION_push(keep, x)) {
			SETERR("more than %d extensions asked for", P11C_EST_MAX_EXTS);
			goto out;
		}
		(void)sk_X509_EXTENSION_set(got, i, NULL); /* keep owns it now */
	}
	if (sk_X509_EXTENSION_num(keep) == 0) {
		a->ext_len = 0;
		a->next = 0;
		ok = 1;
		goto out;
	}
	n = i2d_X509_EXTENSIONS(keep, &der);
	if (n <= 0 || (size_t)n > sizeof a->ext) {
		SETERR("the extensions asked for take more than %d bytes", P11C_EST_MAX_EXT_DER);
		goto out;
	}
	memcpy(a->ext, der, (size_t)n);
	a->ext_len = (size_t)n;
	a->next = sk_X509_EXTENSION_num(keep);
	ok = 1;
out:
	OPENSSL_free(der);
	sk_X509_EXTENSION_pop_free(got, X509_EXTENSION_free);
	sk_X509_EXTENSION_pop_free(keep, X509_EXTENSION_free);
	return ok;
}

/* Attribute ::= SEQUENCE { type OID, values SET OF ANY } */
static int attr_seq(p11c_est_attrs *a, const unsigned char *c, long clen, char *err, size_t errlen)
{
	const unsigned char *p = c, *end = c + clen, *v, *set, *send;
	long vl, sl;
	int tag, nid = NID_undef, n = 0;
	char oid[48];

	if (!der_next(&p, end, &tag, &v, &vl) || tag != V_ASN1_OBJECT || !oid_of(v, vl, oid, sizeof oid, &nid)) {
		SETERR("a CSR attribute has no OID type");
		return 0;
	}
	if (a->n < P11C_EST_MAX_ATTRS)
		snprintf(a->oid[a->n++], sizeof a->oid[0], "%s", oid);
	if (!der_next(&p, end, &tag, &set, &sl) || tag != V_ASN1_SET || p != end) {
		SETERR("the CSR attribute %s has no SET of values", oid);
		return 0;
	}
	send = set + sl;
	while (set < send) {
		const unsigned char *elem = set;
		char vo[48];
		int vnid = NID_undef;

		if (++n > P11C_EST_MAX_ATTRS || !der_next(&set, send, &tag, &v, &vl)) {
			SETERR("the values of CSR attribute %s do not parse", oid);
			return 0;
		}
		if (nid == NID_X9_62_id_ecPublicKey && tag == V_ASN1_OBJECT && oid_of(v, vl, vo, sizeof vo, &vnid)) {
			a->key_type = EVP_PKEY_EC;
			a->curve_nid = vnid;
		} else if (nid == NID_rsaEncryption && tag == V_ASN1_INTEGER && vl >= 1 && vl <= 3) {
			long bits = 0, i;

			for (i = 0; i < vl; i++)
				bits = bits << 8 | v[i];
			a->key_type = EVP_PKEY_RSA;
			a->rsa_bits = (int)bits;
		} else if (nid == NID_ext_req && tag == V_ASN1_OBJECT && oid_of(v, vl, vo, sizeof vo, &vnid)) {
			/* an extension the server wants filled: p11cert
			 * fills subjectAltName only (--san) */
			if (vnid != NID_subject_alt_name)
				note_unknown(a, vo);
		} else if (nid == NID_ext_req && tag == V_ASN1_SEQUENCE) {
			/* Extensions with the values wanted */
			if (!ext_values(a, elem, (long)(set - elem), err, errlen))
				return 0;
		} else if (nid != NID_ext_req && nid != NID_X9_62_id_ecPublicKey && nid != NID_rsaEncryption) {
			note_unknown(a, oid);
			break;
		}
	}
	if (nid == NID_pkcs9_challengePassword)
		a->challenge_password = 1;
	return 1;
}

p11c_result p11c_est_csrattrs_parse(const unsigned char *body, size_t len, p11c_est_attrs *out, char *err,
				    size_t errlen)
{
	unsigned char *der = NULL;
	const unsigned char *p, *end, *c;
	size_t dlen = 0, k;
	long clen;
	int tag, nid, count = 0;
	char oid[48];
	p11c_result r = P11C_ERR_PARSE;

	if (body == NULL || out == NULL)
		return P11C_ERR_ARG;
	memset(out, 0, sizeof *out);
	for (k = 0; k < len && isspace(body[k]); k++)
		;
	if (k == len)
		return P11C_OK; /* no attributes */
	if ((r = body_der(body, len, &der, &dlen)) != P11C_OK) {
		SETERR("the CSR attributes are not base64 (RFC 7030 s4.5.2)");
		return r;
	}
	r = P11C_ERR_PARSE;
	p = der;
	end = der + dlen;
	if (!der_next(&p, end, &tag, &c, &clen) || tag != V_ASN1_SEQUENCE || p != end) {
		SETERR("the CSR attributes are not one DER SEQUENCE");
		goto out;
	}
	end = c + clen;
	while (c < end) {
		const unsigned char *v;
		long vl;

		if (++count > P11C_EST_MAX_ATTRS) {
			SETERR("more than %d CSR attributes", P11C_EST_MAX_ATTRS);
			goto out;
		}
		if (!der_next(&c, end, &tag, &v, &vl)) {
			SETERR("CSR attribute %d does not parse", count);
			goto out;
		}
		if (tag == V_ASN1_OBJECT) {
			if (!oid_of(v, vl, oid, sizeof oid, &nid)) {
				SETERR("CSR attribute %d is a bad OID", count);
				goto out;
			}
			if (out->n < P11C_EST_MAX_ATTRS)
				snprintf(out->oid[out->n++], sizeof out->oid[0], "%s", oid);
			attr_oid(out, nid, oid);
		} else if (tag == V_ASN1_SEQUENCE) {
			if (!attr_seq(out, v, vl, err, errlen))
				goto out;
		} else {
			SETERR("CSR attribute %d is neither an OID nor an attribute", count);
			goto out;
		}
	}
	r = P11C_OK;
out:
	ERR_clear_error();
	free(der);
	return r;
}

p11c_result p11c_est_fingerprint_parse(const char *s, unsigned char out[32])
{
	size_t n = 0;
	int hi = -1;

	if (s == NULL || out == NULL || strncasecmp(s, "sha256:", 7) != 0)
		return P11C_ERR_ARG;
	for (s += 7; *s != '\0'; s++) {
		int v;

		if (*s == ':' && hi < 0)
			continue;
		if (!isxdigit((unsigned char)*s))
			return P11C_ERR_ARG;
		v = isdigit((unsigned char)*s) ? *s - '0' : (tolower((unsigned char)*s) - 'a' + 10);
		if (hi < 0) {
			hi = v;
			continue;
		}
		if (n == 32)
			return P11C_ERR_ARG;
		out[n++] = (unsigned char)(hi << 4 | v);
		hi = -1;
	}
	return n == 32 && hi < 0 ? P11C_OK : P11C_ERR_ARG;
}
