/*
 * Wire primitives of the enrollment protocols: Caramel (canonical CSR PEM,
 * SHA-256 addressing, subject rule), the shared-token protocol of the NiFi
 * TLS toolkit (HMAC and JSON bodies) and RFC 7807 problem+json.  Nothing
 * here touches a token or a socket.  See docs/protocols.md.
 */
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/asn1.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include <p11cert/proto.h>

#include "internal.h"

/* Bound on every JSON body we parse (request, response, problem). */
#define P11C_JSON_MAX 65536
/* Caramel: the CN (ub-common-name) and thus the client id. */
#define P11C_CLIENT_ID_MAX 64
/* Length of the base64 of a 32-byte HMAC, without NUL. */
#define P11C_HMAC_B64_LEN 44

#define PEM_REQ_BEGIN "-----BEGIN CERTIFICATE REQUEST-----\n"
#define PEM_REQ_END "-----END CERTIFICATE REQUEST-----\n"

static void set_err(char *err, size_t errlen, const char *fmt, ...) P11C_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* --- Caramel ------------------------------------------------------------- */

static int is_b64_char(char c)
{
	return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
	       c == '+' || c == '/' || c == '=';
}

/* Caramel compares the POST body byte for byte with a re-encoding of the
 * parsed CSR (docs/protocols.md s1): header line, 64-column base64 lines
 * (the last one 1..64), footer, exactly one LF at the end, no CR. */
static int pem_is_canonical(const char *p, size_t len)
{
	size_t hl = sizeof(PEM_REQ_BEGIN) - 1, fl = sizeof(PEM_REQ_END) - 1;
	size_t i, col = 0, lines = 0;
	int short_line = 0;

	if (len < hl + fl + 2 || memcmp(p, PEM_REQ_BEGIN, hl) != 0 ||
	    memcmp(p + len - fl, PEM_REQ_END, fl) != 0 || p[len - fl - 1] != '\n')
		return 0;
	for (i = hl; i < len - fl; i++) {
		if (p[i] == '\n') {
			/* no empty line, no line after a short one */
			if (col == 0 || short_line)
				return 0;
			if (col < 64)
				short_line = 1;
			col = 0;
			lines++;
			continue;
		}
		if (!is_b64_char(p[i]) || ++col > 64)
			return 0;
	}
	return lines > 0 && col == 0;
}

P11C_API p11c_result p11c_caramel_csr_pem(X509_REQ *req, char **pem, size_t *len)
{
	BIO *bio = NULL;
	BUF_MEM *bm = NULL;
	char *copy = NULL;
	p11c_result r = P11C_ERR_CRYPTO;

	if (pem != NULL)
		*pem = NULL;
	if (len != NULL)
		*len = 0;
	if (req == NULL || pem == NULL || len == NULL)
		return P11C_ERR_ARG;
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL)
		goto out;
	if (!PEM_write_bio_X509_REQ(bio, req))
		goto out;
	BIO_get_mem_ptr(bio, &bm);
	if (bm == NULL || bm->length == 0)
		goto out;
	if (!pem_is_canonical(bm->data, bm->length)) {
		/* OpenSSL changed its PEM writer: a bug for us */
		r = P11C_ERR_INTERNAL;
		goto out;
	}
	copy = malloc(bm->length + 1);
	if (copy == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	memcpy(copy, bm->data, bm->length);
	copy[bm->length] = '\0';
	*pem = copy;
	*len = bm->length;
	r = P11C_OK;
out:
	BIO_free(bio);
	return r;
}

P11C_API void p11c_sha256_hex(const void *data, size_t len, char out[65])
{
	static const char hexd[] = "0123456789abcdef";
	static const unsigned char empty[1] = { 0 };
	unsigned char md[SHA256_DIGEST_LENGTH];
	size_t i;

	if (data == NULL)
		data = empty, len = 0;
	if (SHA256(data, len, md) == NULL) {
		out[0] = '\0';
		return;
	}
	for (i = 0; i < sizeof md; i++) {
		out[2 * i] = hexd[md[i] >> 4];
		out[2 * i + 1] = hexd[md[i] & 15];
	}
	out[64] = '\0';
}

/* The Caramel URL path: [0-9a-f]{64}, nothing else. */
P11C_API int p11c_is_sha256_hex(const char *s)
{
	size_t i;

	if (s == NULL)
		return 0;
	for (i = 0; i < 64; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0; /* also stops at a NUL before 64 */
	return s[64] == '\0';
}

static int is_caramel_prefix_nid(int nid)
{
	return nid == NID_countryName || nid == NID_stateOrProvinceName ||
	       nid == NID_localityName || nid == NID_organizationName;
}

/* "TYPE=value" of a name entry for messages: short name (or dotted OID),
 * UTF-8 value with control characters replaced, bounded. */
static void entry_str(const X509_NAME_ENTRY *e, char *buf, size_t len)
{
	char type[80], val[160];
	unsigned char *u = NULL;
	int ul, nid;
	size_t i;

	nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));
	if (nid != NID_undef && OBJ_nid2sn(nid) != NULL)
		snprintf(type, sizeof type, "%s", OBJ_nid2sn(nid));
	else if (OBJ_obj2txt(type, sizeof type, X509_NAME_ENTRY_get_object(e), 1) <= 0)
		snprintf(type, sizeof type, "?");
	ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
	if (ul < 0)
		ul = 0;
	for (i = 0; i < (size_t)ul && i + 1 < sizeof val; i++)
		val[i] = (char)((u[i] < 0x20 || u[i] == 0x7f) ? '?' : u[i]);
	val[i] = '\0';
	OPENSSL_free(u);
	snprintf(buf, len, "%s=%s", type, val);
}

/* Same type and same UTF-8 value. */
static int entries_equal(const X509_NAME_ENTRY *a, const X509_NAME_ENTRY *b)
{
	unsigned char *ua = NULL, *ub = NULL;
	int la, lb, eq;

	if (OBJ_cmp(X509_NAME_ENTRY_get_object(a), X509_NAME_ENTRY_get_object(b)) != 0)
		return 0;
	la = ASN1_STRING_to_UTF8(&ua, X509_NAME_ENTRY_get_data(a));
	lb = ASN1_STRING_to_UTF8(&ub, X509_NAME_ENTRY_get_data(b));
	eq = la >= 0 && lb >= 0 && la == lb && memcmp(ua, ub, (size_t)la) == 0;
	OPENSSL_free(ua);
	OPENSSL_free(ub);
	return eq;
}

/* Caramel subject rule (docs/protocols.md s1): the subject begins with the
 * CA subject's C, ST, L, O entries, in the CA's order, position by
 * position.  OU, CN and further RDNs are free. */
P11C_API int p11c_caramel_subject_ok(const X509_NAME *ca, const X509_NAME *subject, char *err,
				     size_t errlen)
{
	const X509_NAME_ENTRY *req[64];
	char want[512], types[128], got[256];
	size_t k = 0, i, wl = 0, tl = 0;
	int n, ns;

	set_err(err, errlen, "%s", "");
	if (ca == NULL || subject == NULL) {
		set_err(err, errlen, "no subject");
		return 0;
	}
	want[0] = types[0] = '\0';
	n = X509_NAME_entry_count(ca);
	for (int j = 0; j < n; j++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(ca, j);
		char one[256];

		if (!is_caramel_prefix_nid(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e))))
			continue;
		if (k == sizeof req / sizeof req[0]) {
			set_err(err, errlen, "CA subject has too many attributes");
			return 0;
		}
		req[k++] = e;
		entry_str(e, one, sizeof one);
		if (wl < sizeof want)
			wl += (size_t)snprintf(want + wl, sizeof want - wl, "%s%s",
					       k > 1 ? ", " : "", one);
		if (tl < sizeof types)
			tl += (size_t)snprintf(
				types + tl, sizeof types - tl, "%s%s", k > 1 ? ", " : "",
				OBJ_nid2sn(OBJ_obj2nid(X509_NAME_ENTRY_get_object(e))));
	}
	if (k == 0)
		return 1;
	ns = X509_NAME_entry_count(subject);
	if (ns < 0 || (size_t)ns < k) {
		set_err(err, errlen,
			"subject has %d attributes, the CA requires %zu leading ones (%s)",
			ns < 0 ? 0 : ns, k, types);
		return 0;
	}
	for (i = 0; i < k; i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(subject, (int)i);

		if (!entries_equal(req[i], e)) {
			entry_str(e, got, sizeof got);
			set_err(err, errlen,
				"subject must start with %s (the CA's), found %s at position %zu",
				want, got, i + 1);
			return 0;
		}
	}
	return 1;
}

/* The subject a Caramel client asks for: the CA subject with every CN
 * value replaced by client_id (or CN=client_id appended when the CA has
 * none).  Entries are copied one by one so the RDN structure is kept and
 * the result is encoded afresh. */
P11C_API X509_NAME *p11c_caramel_subject(const X509_NAME *ca, const char *client_id)
{
	X509_NAME *out = NULL;
	X509_NAME_ENTRY *ne = NULL;
	size_t idlen;
	int n, i, prev_set = -1, have_cn = 0;

	if (ca == NULL || client_id == NULL)
		return NULL;
	idlen = strlen(client_id);
	if (idlen == 0 || idlen > P11C_CLIENT_ID_MAX)
		return NULL;
	out = X509_NAME_new();
	if (out == NULL)
		goto fail;
	n = X509_NAME_entry_count(ca);
	for (i = 0; i < n; i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(ca, i);
		int set = X509_NAME_ENTRY_set(e);

		if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) == NID_commonName) {
			ne = X509_NAME_ENTRY_create_by_NID(NULL, NID_commonName, MBSTRING_UTF8,
							   (const unsigned char *)client_id,
							   (int)idlen);
			have_cn = 1;
		} else {
			ne = X509_NAME_ENTRY_dup(e);
		}
		if (ne == NULL)
			goto fail;
		/* -1: same RDN as the previous entry (multi-valued RDN) */
		if (!X509_NAME_add_entry(out, ne, -1, i > 0 && set == prev_set ? -1 : 0))
			goto fail;
		X509_NAME_ENTRY_free(ne);
		ne = NULL;
		prev_set = set;
	}
	if (!have_cn &&
	    !X509_NAME_add_entry_by_NID(out, NID_commonName, MBSTRING_UTF8,
					(const unsigned char *)client_id, (int)idlen, -1, 0))
		goto fail;
	return out;
fail:
	X509_NAME_ENTRY_free(ne);
	X509_NAME_free(out);
	return NULL;
}

/* --- shared-token (NiFi TLS toolkit) ------------------------------------- */

/* docs/protocols.md s2: HMAC-SHA256, key = token bytes, message = the
 * RFC 5280 s4.2.1.2 method (1) key identifier; standard padded base64. */
P11C_API p11c_result p11c_token_hmac(const unsigned char *token, size_t token_len,
				     EVP_PKEY *pub, char *out, size_t outlen)
{
	unsigned char keyid[20], mac[EVP_MAX_MD_SIZE];
	unsigned int maclen = 0;
	p11c_result r;

	if (out != NULL && outlen > 0)
		out[0] = '\0';
	if (token == NULL || token_len < P11C_TOKEN_MIN || token_len > INT_MAX || pub == NULL ||
	    out == NULL || outlen < P11C_HMAC_B64_LEN + 1)
		return P11C_ERR_ARG;
	r = p11c_pubkey_keyid(pub, keyid);
	if (r != P11C_OK)
		goto out;
	r = P11C_ERR_CRYPTO;
	if (HMAC(EVP_sha256(), token, (int)token_len, keyid, sizeof keyid, mac, &maclen) ==
		    NULL ||
	    maclen != 32)
		goto out;
	/* one block: 44 characters plus NUL, no newline */
	if (EVP_EncodeBlock((unsigned char *)out, mac, (int)maclen) != P11C_HMAC_B64_LEN)
		goto out;
	r = P11C_OK;
out:
	if (r != P11C_OK)
		OPENSSL_cleanse(out, outlen);
	OPENSSL_cleanse(keyid, sizeof keyid);
	OPENSSL_cleanse(mac, sizeof mac);
	return r;
}

/* Constant time in the contents; the lengths are public. */
P11C_API int p11c_token_hmac_eq(const char *a, const char *b)
{
	size_t la, lb;

	if (a == NULL || b == NULL)
		return 0;
	la = strlen(a);
	lb = strlen(b);
	if (la != lb || la == 0)
		return 0;
	return CRYPTO_memcmp(a, b, la) == 0;
}

static char *dump(json_t *obj)
{
	char *s = NULL;

	if (obj != NULL)
		s = json_dumps(obj, JSON_COMPACT | JSON_PRESERVE_ORDER);
	json_decref(obj);
	return s;
}

/* A JSON string or null. */
static json_t *str_or_null(const char *s)
{
	return s != NULL ? json_string(s) : json_null();
}

/* Build an object from key/value pairs in order; values are stolen (also
 * on failure; a NULL value means an earlier allocation failed). */
static json_t *object_of(size_t n, const char *const *keys, json_t **vals)
{
	json_t *o = json_object();
	size_t i;

	for (i = 0; i < n; i++) {
		if (o == NULL || vals[i] == NULL) {
			json_decref(vals[i]);
			json_decref(o);
			o = NULL;
			continue;
		}
		/* json_object_set_new() drops the value when it fails */
		if (json_object_set_new(o, keys[i], vals[i]) != 0) {
			json_decref(o);
			o = NULL;
		}
	}
	return o;
}

/* Upstream's JSON reader rejects unknown properties: send exactly these
 * two keys, in this order. */
P11C_API char *p11c_token_request_json(const char *hmac_b64, const char *csr_pem)
{
	static const char *const keys[] = { "hmac", "csr" };
	json_t *vals[2];

	if (hmac_b64 == NULL || csr_pem == NULL)
		return NULL;
	vals[0] = json_string(hmac_b64);
	vals[1] = json_string(csr_pem);
	return dump(object_of(2, keys, vals));
}

/* Load a bounded JSON body that must be an object. */
static json_t *load_object(const char *body, size_t len, const char *what, char *err,
			   size_t errlen, p11c_result *r)
{
	json_error_t jerr;
	json_t *root;

	if (body == NULL) {
		set_err(err, errlen, "no %s", what);
		*r = P11C_ERR_ARG;
		return NULL;
	}
	if (len > P11C_JSON_MAX) {
		set_err(err, errlen, "%s too large", what);
		*r = P11C_ERR_PARSE;
		return NULL;
	}
	/* duplicate keys would make the meaning depend on the parser */
	root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &jerr);
	if (root == NULL) {
		set_err(err, errlen, "invalid JSON: %s", jerr.text);
		*r = P11C_ERR_PARSE;
		return NULL;
	}
	if (!json_is_object(root)) {
		set_err(err, errlen, "%s must be a JSON object", what);
		json_decref(root);
		*r = P11C_ERR_PARSE;
		return NULL;
	}
	*r = P11C_OK;
	return root;
}

/* Copy of a string member; NULL into *out for null or missing.  0 when the
 * member has another type, -1 out of memory, 1 ok. */
static int get_opt_string(json_t *o, const char *key, char **out)
{
	json_t *v = json_object_get(o, key);

	*out = NULL;
	if (v == NULL || json_is_null(v))
		return 1;
	if (!json_is_string(v))
		return 0;
	*out = strdup(json_string_value(v));
	return *out != NULL ? 1 : -1;
}

P11C_API p11c_result p11c_token_request_parse(const char *body, size_t len, char **hmac_b64,
					      char **csr_pem, char *err, size_t errlen)
{
	static const char *const fields[] = { "hmac", "csr" };
	char **outs[2];
	json_t *root = NULL;
	p11c_result r;
	size_t i;

	set_err(err, errlen, "%s", "");
	if (hmac_b64 != NULL)
		*hmac_b64 = NULL;
	if (csr_pem != NULL)
		*csr_pem = NULL;
	if (hmac_b64 == NULL || csr_pem == NULL)
		return P11C_ERR_ARG;
	outs[0] = hmac_b64;
	outs[1] = csr_pem;
	root = load_object(body, len, "request", err, errlen, &r);
	if (root == NULL)
		return r;
	/* upstream's messages (400), hmac checked first */
	for (i = 0; i < 2; i++) {
		int g = get_opt_string(root, fields[i], outs[i]);

		if (g < 0) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
		if (g == 0 || *outs[i] == NULL) {
			set_err(err, errlen, "%s field must be set", fields[i]);
			r = P11C_ERR_PARSE;
			goto out;
		}
	}
	r = P11C_OK;
out:
	if (r != P11C_OK) {
		free(*hmac_b64);
		*hmac_b64 = NULL;
		free(*csr_pem);
		*csr_pem = NULL;
	}
	json_decref(root);
	return r;
}

P11C_API char *p11c_token_response_json(const char *hmac_b64, const char *cert_pem,
					const char *error)
{
	static const char *const keys[] = { "hmac", "pemEncodedCertificate", "error" };
	json_t *vals[3];

	vals[0] = str_or_null(hmac_b64);
	vals[1] = str_or_null(cert_pem);
	vals[2] = str_or_null(error);
	return dump(object_of(3, keys, vals));
}

P11C_API p11c_result p11c_token_response_parse(const char *body, size_t len, char **hmac_b64,
					       char **cert_pem, char **error)
{
	static const char *const fields[] = { "hmac", "pemEncodedCertificate", "error" };
	char *vals[3] = { NULL, NULL, NULL };
	char **outs[3];
	json_t *root;
	p11c_result r;
	size_t i;

	outs[0] = hmac_b64;
	outs[1] = cert_pem;
	outs[2] = error;
	for (i = 0; i < 3; i++)
		if (outs[i] != NULL)
			*outs[i] = NULL;
	root = load_object(body, len, "response", NULL, 0, &r);
	if (root == NULL)
		return r;
	for (i = 0; i < 3; i++) {
		int g = get_opt_string(root, fields[i], &vals[i]);

		if (g <= 0) {
			r = g < 0 ? P11C_ERR_NOMEM : P11C_ERR_PARSE;
			goto out;
		}
	}
	for (i = 0; i < 3; i++) {
		if (outs[i] != NULL) {
			*outs[i] = vals[i];
			vals[i] = NULL;
		}
	}
	r = P11C_OK;
out:
	for (i = 0; i < 3; i++)
		free(vals[i]);
	json_decref(root);
	return r;
}

/* --- problem+json (RFC 7807 s3.1) ------------------------------------------ */

P11C_API char *p11c_problem_json(int status, const char *title, const char *detail)
{
	static const char *const keys[] = { "status", "title", "detail" };
	json_t *vals[3];

	vals[0] = json_integer(status);
	vals[1] = str_or_null(title);
	vals[2] = str_or_null(detail);
	return dump(object_of(3, keys, vals));
}

P11C_API p11c_result p11c_problem_parse(const char *body, size_t len, char **title,
					char **detail)
{
	char *t = NULL, *d = NULL;
	json_t *root;
	p11c_result r;
	int g;

	if (title != NULL)
		*title = NULL;
	if (detail != NULL)
		*detail = NULL;
	root = load_object(body, len, "problem", NULL, 0, &r);
	if (root == NULL)
		return r;
	r = P11C_ERR_PARSE;
	g = get_opt_string(root, "title", &t);
	if (g > 0)
		g = get_opt_string(root, "detail", &d);
	if (g <= 0) {
		if (g < 0)
			r = P11C_ERR_NOMEM;
		goto out;
	}
	if (title != NULL) {
		*title = t;
		t = NULL;
	}
	if (detail != NULL) {
		*detail = d;
		d = NULL;
	}
	r = P11C_OK;
out:
	free(t);
	free(d);
	json_decref(root);
	return r;
}
