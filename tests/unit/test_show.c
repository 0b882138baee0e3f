/* Unit tests for show.c: JSON and text descriptions of certificates and
 * CSRs, built in memory with OpenSSL (no token needed). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/asn1.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "show.h"

#define MAX_DN 8
#define MAX_EXT 8

struct ext {
	int nid;            /* 0 ends the list */
	const char *value;  /* X509V3_EXT_conf_nid syntax */
};

typedef struct {
	EVP_PKEY *key;          /* subject key */
	EVP_PKEY *sign_key;     /* NULL: self-signed with key */
	X509 *issuer;           /* NULL: self-issued */
	const char *dn[MAX_DN * 2 + 1]; /* field, value, ...; most general first */
	uint64_t serial;
	const char *not_before; /* fixed time, or NULL: now + nb_days */
	const char *not_after;  /* fixed time, or NULL: now + na_days */
	long nb_days;
	long na_days;
	struct ext exts[MAX_EXT + 1];
	int v1;                 /* version 1 certificate (no extensions) */
} cert_spec;

typedef struct {
	EVP_PKEY *ec_key;
	EVP_PKEY *rsa_key;
	EVP_PKEY *ed_key;
	X509 *ca;
	X509 *leaf;
	X509 *bare;
	X509 *future;
	X509_REQ *req;
	X509_REQ *req_plain;
} fixture;

/* --- helpers ---------------------------------------------------------------- */

static char *colon_hex(const unsigned char *b, size_t n)
{
	char *s = malloc(n * 3 + 1);
	size_t i;

	assert_non_null(s);
	s[0] = '\0';
	for (i = 0; i < n; i++)
		sprintf(s + i * 3, i + 1 < n ? "%02X:" : "%02X", b[i]);
	return s;
}

static void assert_contains(const char *text, const char *needle)
{
	assert_non_null(text);
	if (strstr(text, needle) == NULL) {
		print_error("missing \"%s\" in:\n%s\n", needle, text);
		fail();
	}
}

static void assert_lacks(const char *text, const char *needle)
{
	assert_non_null(text);
	if (strstr(text, needle) != NULL) {
		print_error("unexpected \"%s\" in:\n%s\n", needle, text);
		fail();
	}
}

static const char *jstr(const json_t *o, const char *key)
{
	const json_t *v = json_object_get(o, key);

	if (!json_is_string(v)) {
		print_error("member \"%s\" is not a string\n", key);
		fail();
	}
	return json_string_value(v);
}

/* arr must be a JSON array of exactly the n strings exp. */
static void assert_str_array(const json_t *arr, const char *const *exp,
			     size_t n)
{
	size_t i;

	assert_true(json_is_array(arr));
	assert_int_equal(json_array_size(arr), n);
	for (i = 0; i < n; i++) {
		assert_true(json_is_string(json_array_get(arr, i)));
		assert_string_equal(json_string_value(json_array_get(arr, i)),
				    exp[i]);
	}
}

static void add_dn(X509_NAME *name, const char *const *dn)
{
	size_t i;

	for (i = 0; dn[i] != NULL; i += 2)
		assert_int_equal(X509_NAME_add_entry_by_txt(name, dn[i],
			MBSTRING_ASC, (const unsigned char *)dn[i + 1], -1,
			-1, 0), 1);
}

static const EVP_MD *md_for(EVP_PKEY *k)
{
	int id = EVP_PKEY_get_base_id(k);

	return id == EVP_PKEY_ED25519 || id == EVP_PKEY_ED448 ?
	       NULL : EVP_sha256();
}

/* DER round trip, so tests look at a parsed certificate like the tool. */
static X509 *reparse_cert(X509 *x)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	X509 *ret;
	int n;

	n = i2d_X509(x, &der);
	assert_true(n > 0);
	p = der;
	ret = d2i_X509(NULL, &p, n);
	assert_non_null(ret);
	OPENSSL_free(der);
	X509_free(x);
	return ret;
}

static X509_REQ *reparse_req(X509_REQ *r)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	X509_REQ *ret;
	int n;

	n = i2d_X509_REQ(r, &der);
	assert_true(n > 0);
	p = der;
	ret = d2i_X509_REQ(NULL, &p, n);
	assert_non_null(ret);
	OPENSSL_free(der);
	X509_REQ_free(r);
	return ret;
}

static void set_time(ASN1_TIME *t, const char *fixed, long days)
{
	if (fixed != NULL)
		assert_int_equal(ASN1_TIME_set_string_X509(t, fixed), 1);
	else
		assert_non_null(X509_gmtime_adj(t, days * 86400L));
}

static X509 *make_cert(const cert_spec *s)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	EVP_PKEY *signer = s->sign_key != NULL ? s->sign_key : s->key;
	size_t i;

	assert_non_null(x);
	assert_non_null(name);
	assert_int_equal(X509_set_version(x, s->v1 ? X509_VERSION_1 :
					   X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set_uint64(X509_get_serialNumber(x),
						 s->serial), 1);
	set_time(X509_getm_notBefore(x), s->not_before, s->nb_days);
	set_time(X509_getm_notAfter(x), s->not_after, s->na_days);
	add_dn(name, s->dn);
	assert_int_equal(X509_set_subject_name(x, name), 1);
	assert_int_equal(X509_set_issuer_name(x, s->issuer != NULL ?
		X509_get_subject_name(s->issuer) : name), 1);
	X509_NAME_free(name);
	assert_int_equal(X509_set_pubkey(x, s->key), 1);
	X509V3_set_ctx(&v3, s->issuer != NULL ? s->issuer : x, x, NULL, NULL,
		       0);
	for (i = 0; s->exts[i].nid != 0; i++) {
		ext = X509V3_EXT_conf_nid(NULL, &v3, s->exts[i].nid,
					  s->exts[i].value);
		assert_non_null(ext);
		assert_int_equal(X509_add_ext(x, ext, -1), 1);
		X509_EXTENSION_free(ext);
	}
	assert_true(X509_sign(x, signer, md_for(signer)) > 0);
	return reparse_cert(x);
}

static X509_REQ *make_req(EVP_PKEY *key, const char *const *dn,
			  const struct ext *exts)
{
	STACK_OF(X509_EXTENSION) *sk = sk_X509_EXTENSION_new_null();
	X509_EXTENSION *ext;
	X509_REQ *r = X509_REQ_new();
	X509_NAME *name = X509_NAME_new();
	size_t i;

	assert_non_null(sk);
	assert_non_null(r);
	assert_non_null(name);
	assert_int_equal(X509_REQ_set_version(r, X509_REQ_VERSION_1), 1);
	add_dn(name, dn);
	assert_int_equal(X509_REQ_set_subject_name(r, name), 1);
	X509_NAME_free(name);
	assert_int_equal(X509_REQ_set_pubkey(r, key), 1);
	for (i = 0; exts != NULL && exts[i].nid != 0; i++) {
		ext = X509V3_EXT_conf_nid(NULL, NULL, exts[i].nid,
					  exts[i].value);
		assert_non_null(ext);
		assert_true(sk_X509_EXTENSION_push(sk, ext) > 0);
	}
	if (sk_X509_EXTENSION_num(sk) > 0)
		assert_int_equal(X509_REQ_add_extensions(r, sk), 1);
	sk_X509_EXTENSION_pop_free(sk, X509_EXTENSION_free);
	assert_true(X509_REQ_sign(r, key, md_for(key)) > 0);
	return reparse_req(r);
}

/* --- fixture ------------------------------------------------------------------ */

static int setup(void **state)
{
	fixture *f = calloc(1, sizeof(*f));
	cert_spec ca = {
		.dn = { "CN", "Test CA", NULL },
		.serial = 1,
		.not_before = "20250101000000Z",
		.not_after = "20450101000000Z",
		.exts = {
			{ NID_basic_constraints, "critical,CA:TRUE,pathlen:0" },
			{ NID_key_usage, "critical,keyCertSign,cRLSign" },
			{ NID_subject_key_identifier, "hash" },
			{ 0, NULL },
		},
	};
	cert_spec leaf = {
		.dn = { "C", "SE", "O", "Example", "CN", "host1", NULL },
		.serial = 0xc0ffee0123ULL,
		.nb_days = 0,
		.na_days = 365,
		.exts = {
			{ NID_basic_constraints, "critical,CA:FALSE" },
			{ NID_key_usage,
			  "critical,digitalSignature,keyEncipherment" },
			{ NID_ext_key_usage, "serverAuth,clientAuth" },
			{ NID_subject_alt_name,
			  "DNS:host1.example.com,IP:192.0.2.1" },
			{ NID_subject_key_identifier, "hash" },
			{ NID_authority_key_identifier, "keyid:always" },
			{ 0, NULL },
		},
	};
	cert_spec bare = {
		.dn = { "CN", "bare", NULL },
		.serial = 0,
		.nb_days = -10,
		.na_days = -3,
		.v1 = 1,
	};
	cert_spec future = {
		.dn = { "CN", "future", NULL },
		.serial = 0x80,
		.nb_days = 2,
		.na_days = 30,
	};
	static const char *const req_dn[] = {
		"O", "Example", "CN", "host2", NULL,
	};
	static const struct ext req_exts[] = {
		{ NID_subject_alt_name, "DNS:host2.example.com,IP:2001:db8::1,"
		  "email:admin@example.com,URI:https://example.com/x" },
		{ NID_key_usage, "critical,digitalSignature" },
		{ 0, NULL },
	};
	static const char *const plain_dn[] = { "CN", "plain", NULL };

	assert_non_null(f);
	f->ec_key = EVP_EC_gen("P-256");
	f->rsa_key = EVP_RSA_gen(2048);
	f->ed_key = EVP_PKEY_Q_keygen(NULL, NULL, "ED25519");
	assert_non_null(f->ec_key);
	assert_non_null(f->rsa_key);
	assert_non_null(f->ed_key);

	ca.key = f->ec_key;
	f->ca = make_cert(&ca);
	leaf.key = f->rsa_key;
	leaf.sign_key = f->ec_key;
	leaf.issuer = f->ca;
	f->leaf = make_cert(&leaf);
	bare.key = f->ed_key;
	f->bare = make_cert(&bare);
	future.key = f->ec_key;
	f->future = make_cert(&future);
	f->req = make_req(f->rsa_key, req_dn, req_exts);
	f->req_plain = make_req(f->ec_key, plain_dn, NULL);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	fixture *f = *state;

	if (f == NULL)
		return 0;
	X509_free(f->ca);
	X509_free(f->leaf);
	X509_free(f->bare);
	X509_free(f->future);
	X509_REQ_free(f->req);
	X509_REQ_free(f->req_plain);
	EVP_PKEY_free(f->ec_key);
	EVP_PKEY_free(f->rsa_key);
	EVP_PKEY_free(f->ed_key);
	free(f);
	return 0;
}

/* --- tests ---------------------------------------------------------------------- */

static void test_time_str(void **state)
{
	ASN1_TIME *t = ASN1_TIME_new();
	char buf[32];

	(void)state;
	assert_non_null(t);
	assert_int_equal(ASN1_TIME_set_string(t, "261122213000Z"), 1);
	p11c_asn1_time_str(t, buf, sizeof(buf));
	assert_string_equal(buf, "2026-11-22T21:30:00Z");

	assert_int_equal(ASN1_TIME_set_string(t, "20500102030405Z"), 1);
	p11c_asn1_time_str(t, buf, sizeof(buf));
	assert_string_equal(buf, "2050-01-02T03:04:05Z");

	/* exactly big enough, and one too small */
	p11c_asn1_time_str(t, buf, 21);
	assert_string_equal(buf, "2050-01-02T03:04:05Z");
	p11c_asn1_time_str(t, buf, 20);
	assert_string_equal(buf, "");

	strcpy(buf, "junk");
	p11c_asn1_time_str(NULL, buf, sizeof(buf));
	assert_string_equal(buf, "");
	p11c_asn1_time_str(t, NULL, 0);
	ASN1_TIME_free(t);
}

static void test_name_str(void **state)
{
	static const char *const dn[] = {
		"C", "SE", "O", "Example, Inc", "CN", "host1", NULL,
	};
	X509_NAME *name = X509_NAME_new();
	char *s;

	(void)state;
	assert_non_null(name);
	add_dn(name, dn);
	s = p11c_name_str(name);
	assert_non_null(s);
	assert_string_equal(s, "CN=host1,O=Example\\, Inc,C=SE");
	free(s);
	X509_NAME_free(name);

	s = p11c_name_str(NULL);
	assert_non_null(s);
	assert_string_equal(s, "");
	free(s);
}

static void test_ca_json(void **state)
{
	fixture *f = *state;
	static const char *const ku[] = { "keyCertSign", "cRLSign" };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	json_t *j, *key, *bc, *fp;
	char *hex;

	j = p11c_cert_json(f->ca);
	assert_non_null(j);
	assert_string_equal(jstr(j, "subject"), "CN=Test CA");
	assert_string_equal(jstr(j, "issuer"), "CN=Test CA");
	assert_string_equal(jstr(j, "serial"), "01");
	assert_string_equal(jstr(j, "not_before"), "2025-01-01T00:00:00Z");
	assert_string_equal(jstr(j, "not_after"), "2045-01-01T00:00:00Z");
	assert_str_array(json_object_get(j, "sans"), NULL, 0);

	key = json_object_get(j, "key");
	assert_string_equal(jstr(key, "type"), "EC");
	assert_int_equal(json_integer_value(json_object_get(key, "bits")), 256);
	assert_string_equal(jstr(key, "curve"), "P-256");
	assert_string_equal(jstr(j, "signature_algorithm"), "ecdsa-with-SHA256");

	bc = json_object_get(j, "basic_constraints");
	assert_true(json_is_object(bc));
	assert_true(json_is_true(json_object_get(bc, "ca")));
	assert_true(json_is_integer(json_object_get(bc, "pathlen")));
	assert_int_equal(json_integer_value(json_object_get(bc, "pathlen")), 0);
	assert_str_array(json_object_get(j, "key_usage"), ku, 2);
	assert_str_array(json_object_get(j, "extended_key_usage"), NULL, 0);
	assert_int_equal(strlen(jstr(j, "subject_key_id")), 59);
	assert_true(json_is_null(json_object_get(j, "authority_key_id")));
	assert_true(json_is_true(json_object_get(j, "is_self_signed")));

	fp = json_object_get(j, "fingerprints");
	assert_int_equal(strlen(jstr(fp, "sha256")), 95);
	assert_int_equal(strlen(jstr(fp, "sha1")), 59);
	assert_int_equal(X509_digest(f->ca, EVP_sha256(), md, &n), 1);
	hex = colon_hex(md, n);
	assert_string_equal(jstr(fp, "sha256"), hex);
	free(hex);
	assert_int_equal(X509_digest(f->ca, EVP_sha1(), md, &n), 1);
	hex = colon_hex(md, n);
	assert_string_equal(jstr(fp, "sha1"), hex);
	free(hex);
	json_decref(j);
}

static void test_leaf_json(void **state)
{
	fixture *f = *state;
	static const char *const sans[] = {
		"DNS:host1.example.com", "IP:192.0.2.1",
	};
	static const char *const ku[] = {
		"digitalSignature", "keyEncipherment",
	};
	static const char *const eku[] = { "serverAuth", "clientAuth" };
	json_t *j, *ca, *key, *bc;
	char buf[32];

	j = p11c_cert_json(f->leaf);
	ca = p11c_cert_json(f->ca);
	assert_non_null(j);
	assert_non_null(ca);
	assert_string_equal(jstr(j, "subject"), "CN=host1,O=Example,C=SE");
	assert_string_equal(jstr(j, "issuer"), "CN=Test CA");
	assert_string_equal(jstr(j, "serial"), "c0ffee0123");
	p11c_asn1_time_str(X509_get0_notAfter(f->leaf), buf, sizeof(buf));
	assert_string_equal(jstr(j, "not_after"), buf);
	assert_int_equal(strlen(buf), 20);
	assert_str_array(json_object_get(j, "sans"), sans, 2);

	key = json_object_get(j, "key");
	assert_string_equal(jstr(key, "type"), "RSA");
	assert_int_equal(json_integer_value(json_object_get(key, "bits")), 2048);
	assert_null(json_object_get(key, "curve"));
	assert_string_equal(jstr(j, "signature_algorithm"), "ecdsa-with-SHA256");

	bc = json_object_get(j, "basic_constraints");
	assert_true(json_is_object(bc));
	assert_true(json_is_false(json_object_get(bc, "ca")));
	assert_true(json_is_null(json_object_get(bc, "pathlen")));
	assert_str_array(json_object_get(j, "key_usage"), ku, 2);
	assert_str_array(json_object_get(j, "extended_key_usage"), eku, 2);
	assert_int_equal(strlen(jstr(j, "subject_key_id")), 59);
	assert_string_equal(jstr(j, "authority_key_id"),
			    jstr(ca, "subject_key_id"));
	assert_string_not_equal(jstr(j, "subject_key_id"),
				jstr(ca, "subject_key_id"));
	assert_true(json_is_false(json_object_get(j, "is_self_signed")));
	assert_int_equal(strlen(jstr(json_object_get(j, "fingerprints"),
				     "sha256")), 95);
	json_decref(j);
	json_decref(ca);
}

static void test_leaf_text(void **state)
{
	fixture *f = *state;
	json_t *j = p11c_cert_json(f->leaf);
	json_t *ca = p11c_cert_json(f->ca);
	char *t = p11c_cert_text(f->leaf);
	char line[256];

	assert_non_null(j);
	assert_non_null(ca);
	assert_non_null(t);
	assert_true(strncmp(t, "Certificate\n", 12) == 0);
	assert_contains(t, "\n  Subject:        CN=host1,O=Example,C=SE\n");
	assert_contains(t, "\n  Issuer:         CN=Test CA\n");
	assert_contains(t, "\n  Serial:         c0ffee0123\n");
	snprintf(line, sizeof(line), "\n  Not Before:     %s\n",
		 jstr(j, "not_before"));
	assert_contains(t, line);
	snprintf(line, sizeof(line),
		 "\n  Not After:      %s (expires in 365 days)\n",
		 jstr(j, "not_after"));
	assert_contains(t, line);
	assert_contains(t, "\n  Key:            RSA 2048\n");
	assert_contains(t, "\n  Signature:      ecdsa-with-SHA256\n");
	assert_contains(t,
		"\n  SANs:           DNS:host1.example.com, IP:192.0.2.1\n");
	assert_contains(t, "\n  Basic Constr.:  CA:FALSE\n");
	assert_contains(t,
		"\n  Key Usage:      digitalSignature, keyEncipherment\n");
	assert_contains(t, "\n  Ext. Key Usage: serverAuth, clientAuth\n");
	snprintf(line, sizeof(line), "\n  Subject Key ID: %s\n",
		 jstr(j, "subject_key_id"));
	assert_contains(t, line);
	snprintf(line, sizeof(line), "\n  Authority KID:  %s\n",
		 jstr(ca, "subject_key_id"));
	assert_contains(t, line);
	snprintf(line, sizeof(line), "\n  SHA-256:        %s\n",
		 jstr(json_object_get(j, "fingerprints"), "sha256"));
	assert_contains(t, line);
	snprintf(line, sizeof(line), "\n  SHA-1:          %s\n",
		 jstr(json_object_get(j, "fingerprints"), "sha1"));
	assert_contains(t, line);
	assert_int_equal(t[strlen(t) - 1], '\n');
	free(t);
	json_decref(j);
	json_decref(ca);
}

static void test_ca_text(void **state)
{
	fixture *f = *state;
	char *t = p11c_cert_text(f->ca);

	assert_non_null(t);
	assert_contains(t, "\n  Not Before:     2025-01-01T00:00:00Z\n");
	assert_contains(t, "\n  Not After:      2045-01-01T00:00:00Z "
			   "(expires in ");
	assert_contains(t, "\n  Key:            EC P-256\n");
	assert_contains(t, "\n  Basic Constr.:  CA:TRUE, pathlen:0\n");
	assert_contains(t, "\n  Key Usage:      keyCertSign, cRLSign\n");
	assert_lacks(t, "SANs:");
	assert_lacks(t, "Ext. Key Usage:");
	assert_lacks(t, "Authority KID:");
	free(t);
}

/* Version 1, no extensions at all, Ed25519, expired, serial 0. */
static void test_bare_cert(void **state)
{
	fixture *f = *state;
	json_t *j = p11c_cert_json(f->bare);
	json_t *key;
	char *t;

	assert_non_null(j);
	assert_string_equal(jstr(j, "subject"), "CN=bare");
	assert_string_equal(jstr(j, "serial"), "00");
	assert_true(json_is_null(json_object_get(j, "basic_constraints")));
	assert_str_array(json_object_get(j, "sans"), NULL, 0);
	assert_str_array(json_object_get(j, "key_usage"), NULL, 0);
	assert_str_array(json_object_get(j, "extended_key_usage"), NULL, 0);
	assert_true(json_is_null(json_object_get(j, "subject_key_id")));
	assert_true(json_is_null(json_object_get(j, "authority_key_id")));
	assert_true(json_is_true(json_object_get(j, "is_self_signed")));
	key = json_object_get(j, "key");
	assert_string_equal(jstr(key, "type"), "Ed25519");
	assert_null(json_object_get(key, "curve"));
	assert_string_equal(jstr(j, "signature_algorithm"), "ED25519");
	json_decref(j);

	t = p11c_cert_text(f->bare);
	assert_non_null(t);
	assert_contains(t, "\n  Subject:        CN=bare\n");
	assert_contains(t, "\n  Serial:         00\n");
	assert_contains(t, " (EXPIRED 3 days ago)\n");
	assert_contains(t, "\n  Key:            Ed25519\n");
	assert_lacks(t, "Basic Constr.");
	assert_lacks(t, "SANs:");
	assert_lacks(t, "Key Usage:");
	assert_lacks(t, "Subject Key ID:");
	assert_contains(t, "\n  SHA-256:        ");
	free(t);
}

static void test_not_yet_valid(void **state)
{
	fixture *f = *state;
	json_t *j = p11c_cert_json(f->future);
	char *t = p11c_cert_text(f->future);

	assert_non_null(j);
	assert_non_null(t);
	assert_string_equal(jstr(j, "serial"), "80");
	assert_contains(t, " (not yet valid)\n");
	assert_lacks(t, "expires in");
	free(t);
	json_decref(j);
}

/* SAN types beyond the common ones, hostile bytes, duplicated and
 * malformed extensions: described, never fatal. */
static void test_odd_cert(void **state)
{
	fixture *f = *state;
	GENERAL_NAMES *gens = GENERAL_NAMES_new();
	GENERAL_NAME *g;
	ASN1_OCTET_STRING *os;
	ASN1_IA5STRING *ia5;
	X509_EXTENSION *ext;
	X509_NAME *dir;
	ASN1_OBJECT *obj;
	X509 *x = X509_new();
	X509_NAME *name = X509_NAME_new();
	json_t *j, *sans;
	char *t;
	static const unsigned char bad_ip[5] = { 1, 2, 3, 4, 5 };
	static const unsigned char v6[16] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1,
	};
	static const unsigned char garbage[3] = { 0x04, 0x05, 0x00 };
	static const char *const dn[] = { "CN", "odd\x01", NULL };

	assert_non_null(gens);
	assert_non_null(x);
	assert_non_null(name);

	/* DNS name with a control byte, a high byte and a backslash */
	g = GENERAL_NAME_new();
	ia5 = ASN1_IA5STRING_new();
	assert_int_equal(ASN1_STRING_set(ia5, "a\x01z\xff\\", 5), 1);
	GENERAL_NAME_set0_value(g, GEN_DNS, ia5);
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	/* IP address of an impossible length */
	g = GENERAL_NAME_new();
	os = ASN1_OCTET_STRING_new();
	assert_int_equal(ASN1_OCTET_STRING_set(os, bad_ip, 5), 1);
	GENERAL_NAME_set0_value(g, GEN_IPADD, os);
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	/* IPv6 */
	g = GENERAL_NAME_new();
	os = ASN1_OCTET_STRING_new();
	assert_int_equal(ASN1_OCTET_STRING_set(os, v6, 16), 1);
	GENERAL_NAME_set0_value(g, GEN_IPADD, os);
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	/* registeredID */
	g = GENERAL_NAME_new();
	GENERAL_NAME_set0_value(g, GEN_RID, OBJ_txt2obj("1.2.3.4", 1));
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	/* directoryName */
	g = GENERAL_NAME_new();
	dir = X509_NAME_new();
	assert_int_equal(X509_NAME_add_entry_by_txt(dir, "CN", MBSTRING_ASC,
		(const unsigned char *)"dir", -1, -1, 0), 1);
	GENERAL_NAME_set0_value(g, GEN_DIRNAME, dir);
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);
	/* otherName: Microsoft UPN */
	g = GENERAL_NAME_new();
	assert_non_null(g);
	{
		ASN1_TYPE *val = ASN1_TYPE_new();
		ASN1_UTF8STRING *u = ASN1_UTF8STRING_new();

		assert_int_equal(ASN1_STRING_set(u, "user@example", -1), 1);
		ASN1_TYPE_set(val, V_ASN1_UTF8STRING, u);
		assert_int_equal(GENERAL_NAME_set0_othername(g,
			OBJ_nid2obj(NID_ms_upn), val), 1);
	}
	assert_true(sk_GENERAL_NAME_push(gens, g) > 0);

	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 7), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400L));
	add_dn(name, dn);
	assert_int_equal(X509_set_subject_name(x, name), 1);
	assert_int_equal(X509_set_issuer_name(x, name), 1);
	X509_NAME_free(name);
	assert_int_equal(X509_set_pubkey(x, f->ec_key), 1);
	assert_int_equal(X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0,
					   X509V3_ADD_DEFAULT), 1);
	GENERAL_NAMES_free(gens);

	/* basicConstraints twice */
	ext = X509V3_EXT_conf_nid(NULL, NULL, NID_basic_constraints, "CA:TRUE");
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	/* keyUsage whose contents are not a BIT STRING */
	os = ASN1_OCTET_STRING_new();
	assert_int_equal(ASN1_OCTET_STRING_set(os, garbage, 3), 1);
	ext = X509_EXTENSION_create_by_NID(NULL, NID_key_usage, 0, os);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	ASN1_OCTET_STRING_free(os);
	/* an extension nobody knows */
	os = ASN1_OCTET_STRING_new();
	assert_int_equal(ASN1_OCTET_STRING_set(os, garbage, 2), 1);
	obj = OBJ_txt2obj("1.2.3.4.5", 1);
	assert_non_null(obj);
	ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 0, os);
	assert_non_null(ext);
	assert_int_equal(X509_add_ext(x, ext, -1), 1);
	X509_EXTENSION_free(ext);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(os);
	assert_true(X509_sign(x, f->ec_key, EVP_sha384()) > 0);
	x = reparse_cert(x);

	j = p11c_cert_json(x);
	assert_non_null(j);
	assert_string_equal(jstr(j, "subject"), "CN=odd\\01");
	sans = json_object_get(j, "sans");
	assert_int_equal(json_array_size(sans), 6);
	assert_string_equal(json_string_value(json_array_get(sans, 0)),
			    "DNS:a\\x01z\\xff\\x5c");
	assert_string_equal(json_string_value(json_array_get(sans, 1)),
			    "IP:<invalid:0102030405>");
	assert_string_equal(json_string_value(json_array_get(sans, 2)),
			    "IP:2001:db8::1");
	assert_string_equal(json_string_value(json_array_get(sans, 3)),
			    "RID:1.2.3.4");
	assert_string_equal(json_string_value(json_array_get(sans, 4)),
			    "DirName:CN=dir");
	assert_string_equal(json_string_value(json_array_get(sans, 5)),
			    "othername:msUPN");
	assert_true(json_is_null(json_object_get(j, "basic_constraints")));
	assert_str_array(json_object_get(j, "key_usage"), NULL, 0);
	assert_string_equal(jstr(j, "signature_algorithm"), "ecdsa-with-SHA384");
	json_decref(j);

	t = p11c_cert_text(x);
	assert_non_null(t);
	assert_contains(t, "IP:2001:db8::1, RID:1.2.3.4");
	assert_contains(t, " (expires in 1 day)\n");
	assert_lacks(t, "Basic Constr.");
	free(t);
	X509_free(x);
}

static void test_req_json(void **state)
{
	fixture *f = *state;
	static const char *const sans[] = {
		"DNS:host2.example.com", "IP:2001:db8::1",
		"email:admin@example.com", "URI:https://example.com/x",
	};
	static const char *const exts[] = { "subjectAltName", "keyUsage" };
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int n = 0;
	json_t *j, *key, *fp;
	char *hex;

	j = p11c_req_json(f->req);
	assert_non_null(j);
	assert_string_equal(jstr(j, "subject"), "CN=host2,O=Example");
	assert_str_array(json_object_get(j, "sans"), sans, 4);
	key = json_object_get(j, "key");
	assert_string_equal(jstr(key, "type"), "RSA");
	assert_int_equal(json_integer_value(json_object_get(key, "bits")), 2048);
	assert_string_equal(jstr(j, "signature_algorithm"),
			    "sha256WithRSAEncryption");
	assert_true(json_is_true(json_object_get(j, "signature_valid")));
	fp = json_object_get(j, "fingerprints");
	assert_int_equal(strlen(jstr(fp, "sha256")), 95);
	assert_int_equal(X509_REQ_digest(f->req, EVP_sha256(), md, &n), 1);
	hex = colon_hex(md, n);
	assert_string_equal(jstr(fp, "sha256"), hex);
	free(hex);
	assert_str_array(json_object_get(j, "extensions"), exts, 2);
	json_decref(j);

	j = p11c_req_json(f->req_plain);
	assert_non_null(j);
	assert_string_equal(jstr(j, "subject"), "CN=plain");
	assert_str_array(json_object_get(j, "sans"), NULL, 0);
	assert_str_array(json_object_get(j, "extensions"), NULL, 0);
	key = json_object_get(j, "key");
	assert_string_equal(jstr(key, "type"), "EC");
	assert_string_equal(jstr(key, "curve"), "P-256");
	assert_string_equal(jstr(j, "signature_algorithm"), "ecdsa-with-SHA256");
	assert_true(json_is_true(json_object_get(j, "signature_valid")));
	json_decref(j);
}

static void test_req_text(void **state)
{
	fixture *f = *state;
	json_t *j = p11c_req_json(f->req);
	char *t = p11c_req_text(f->req);
	char line[256];

	assert_non_null(j);
	assert_non_null(t);
	assert_true(strncmp(t, "Certificate Request\n", 20) == 0);
	assert_contains(t, "\n  Subject:        CN=host2,O=Example\n");
	assert_contains(t, "\n  Key:            RSA 2048\n");
	assert_contains(t,
		"\n  Signature:      sha256WithRSAEncryption (valid)\n");
	assert_contains(t, "\n  SANs:           DNS:host2.example.com, "
			   "IP:2001:db8::1, email:admin@example.com, "
			   "URI:https://example.com/x\n");
	snprintf(line, sizeof(line), "\n  SHA-256:        %s\n",
		 jstr(json_object_get(j, "fingerprints"), "sha256"));
	assert_contains(t, line);
	free(t);
	json_decref(j);

	t = p11c_req_text(f->req_plain);
	assert_non_null(t);
	assert_contains(t, "\n  Key:            EC P-256\n");
	assert_lacks(t, "SANs:");
	free(t);
}

/* A CSR whose signature does not verify. */
static void test_req_tampered(void **state)
{
	fixture *f = *state;
	unsigned char *der = NULL;
	const unsigned char *p;
	X509_REQ *r;
	json_t *j;
	char *t;
	int n;

	n = i2d_X509_REQ(f->req, &der);
	assert_true(n > 0);
	der[n - 1] ^= 0x01; /* last byte of the RSA signature */
	p = der;
	r = d2i_X509_REQ(NULL, &p, n);
	OPENSSL_free(der);
	assert_non_null(r);

	j = p11c_req_json(r);
	assert_non_null(j);
	assert_true(json_is_false(json_object_get(j, "signature_valid")));
	json_decref(j);
	t = p11c_req_text(r);
	assert_non_null(t);
	assert_contains(t,
		"\n  Signature:      sha256WithRSAEncryption (INVALID)\n");
	free(t);
	X509_REQ_free(r);
}

/* The JSON serializes and keeps the documented member order. */
static void test_json_dump(void **state)
{
	fixture *f = *state;
	json_t *j = p11c_cert_json(f->leaf);
	char *s;

	assert_non_null(j);
	s = json_dumps(j, JSON_COMPACT);
	assert_non_null(s);
	assert_true(strncmp(s, "{\"subject\":\"CN=host1,O=Example,C=SE\","
			       "\"issuer\":\"CN=Test CA\",", 57) == 0);
	assert_contains(s, "\"sans\":[\"DNS:host1.example.com\","
			   "\"IP:192.0.2.1\"]");
	assert_contains(s, "\"key\":{\"type\":\"RSA\",\"bits\":2048}");
	assert_contains(s, "\"basic_constraints\":{\"ca\":false,"
			   "\"pathlen\":null}");
	free(s);
	json_decref(j);
}

static void test_null_inputs(void **state)
{
	(void)state;
	assert_null(p11c_cert_json(NULL));
	assert_null(p11c_req_json(NULL));
	assert_null(p11c_cert_text(NULL));
	assert_null(p11c_req_text(NULL));
}

/* An empty X509 object: no names, no times, no key, no signature. */
static void test_empty_objects(void **state)
{
	X509 *x = X509_new();
	X509_REQ *r = X509_REQ_new();
	json_t *j;
	char *t;

	(void)state;
	assert_non_null(x);
	assert_non_null(r);
	j = p11c_cert_json(x);
	if (j != NULL) {
		assert_true(json_is_null(json_object_get(j,
							 "basic_constraints")));
		json_decref(j);
	}
	t = p11c_cert_text(x);
	free(t);
	j = p11c_req_json(r);
	if (j != NULL) {
		assert_true(json_is_false(json_object_get(j,
							  "signature_valid")));
		json_decref(j);
	}
	t = p11c_req_text(r);
	free(t);
	X509_free(x);
	X509_REQ_free(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_time_str),
		cmocka_unit_test(test_name_str),
		cmocka_unit_test(test_ca_json),
		cmocka_unit_test(test_leaf_json),
		cmocka_unit_test(test_leaf_text),
		cmocka_unit_test(test_ca_text),
		cmocka_unit_test(test_bare_cert),
		cmocka_unit_test(test_not_yet_valid),
		cmocka_unit_test(test_odd_cert),
		cmocka_unit_test(test_req_json),
		cmocka_unit_test(test_req_text),
		cmocka_unit_test(test_req_tampered),
		cmocka_unit_test(test_json_dump),
		cmocka_unit_test(test_null_inputs),
		cmocka_unit_test(test_empty_objects),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
