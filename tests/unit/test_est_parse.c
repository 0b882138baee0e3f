/*
 * The EST client's parsers (src/lib/enroll/est_parse.c) and its channel
 * binding (src/lib/http.c): the CSR attributes example of RFC 7030
 * Appendix A.2 as published; certs-only answers (tests/vectors/est/,
 * README there) as base64 with and without line breaks, PKCS#7 PEM and
 * raw DER; malformed and oversized answers refused; fingerprints; the
 * tls-unique / tls-exporter value the client takes equals the one the
 * other end of the connection computes (an in-memory TLS 1.2 and TLS 1.3
 * handshake).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <p11cert/est.h>

#include "http.h"

static char *vec_path(const char *name)
{
	const char *here = __FILE__, *slash = strrchr(here, '/');
	char *p = NULL;

	assert_non_null(slash);
	assert_true(asprintf(&p, "%.*s/../vectors/est/%s", (int)(slash - here), here, name) > 0);
	return p;
}

static unsigned char *vec(const char *name, size_t *len)
{
	char *p = vec_path(name);
	FILE *f = fopen(p, "rb");
	unsigned char *b = malloc(65536);

	assert_non_null(f);
	assert_non_null(b);
	*len = fread(b, 1, 65536, f);
	fclose(f);
	free(p);
	return b;
}

static p11c_result certs_of(const char *name, STACK_OF(X509) **certs, char *err, size_t errlen)
{
	size_t len = 0;
	unsigned char *b = vec(name, &len);
	p11c_result r = p11c_est_certs_parse(b, len, certs, err, errlen);

	free(b);
	return r;
}

/* RFC 7030 Appendix A.2: challengePassword, an id-ecPublicKey attribute
 * with secp384r1, an extensionRequest attribute asking for macAddress
 * (1.3.6.1.1.1.1.22), ecdsa-with-SHA384. */
static void test_csrattrs_rfc7030(void **state)
{
	p11c_est_attrs a;
	unsigned char *b;
	size_t len = 0;
	char err[256] = "";

	(void)state;
	b = vec("csrattrs-rfc7030-a2.b64", &len);
	assert_int_equal(p11c_est_csrattrs_parse(b, len, &a, err, sizeof err), P11C_OK);
	free(b);
	assert_int_equal(a.challenge_password, 1);
	assert_int_equal(a.key_type, EVP_PKEY_EC);
	assert_int_equal(a.curve_nid, NID_secp384r1);
	assert_int_equal(a.md_nid, NID_sha384);
	assert_int_equal(a.n, 4);
	assert_string_equal(a.oid[0], "1.2.840.113549.1.9.7");
	assert_string_equal(a.oid[1], "1.2.840.10045.2.1");
	assert_string_equal(a.oid[2], "1.2.840.113549.1.9.14");
	assert_string_equal(a.oid[3], "1.2.840.10045.4.3.3");
	/* the MAC address extension is one p11cert cannot fill */
	assert_int_equal(a.nunknown, 1);
	assert_string_equal(a.unknown[0], "1.3.6.1.1.1.1.22");
}

static void test_csrattrs_empty_and_bad(void **state)
{
	static const char *const bad[] = {
		"MAMCAQE=",         /* SEQUENCE { INTEGER 1 } */
		"AgEB",             /* INTEGER 1, not a SEQUENCE */
		"MAIGAA==",         /* an empty OID */
		"MAUwAwYBKg==",     /* an attribute without its SET */
		"MAQwAgUA",         /* an attribute whose type is NULL */
		"MIAGAyoDBAAA",     /* indefinite length: not DER */
		"MAYGAyoDBA==",     /* a length past the end */
		"MAMGASoA",         /* trailing byte after the sequence */
		"not base64!",
		"QQ=",
	};
	p11c_est_attrs a;
	char err[256];
	size_t len = 0, i;
	unsigned char *b;

	(void)state;
	assert_int_equal(p11c_est_csrattrs_parse((const unsigned char *)"", 0, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.n, 0);
	assert_int_equal(p11c_est_csrattrs_parse((const unsigned char *)" \r\n", 3, &a, err, sizeof err), P11C_OK);
	b = vec("csrattrs-empty.b64", &len);
	assert_int_equal(p11c_est_csrattrs_parse(b, len, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.n, 0);
	assert_int_equal(a.challenge_password, 0);
	free(b);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		err[0] = '\0';
		assert_int_equal(
			p11c_est_csrattrs_parse((const unsigned char *)bad[i], strlen(bad[i]), &a, err, sizeof err),
			P11C_ERR_PARSE);
		assert_true(err[0] != '\0');
	}
}

/* More than P11C_EST_MAX_ATTRS entries: refused, not truncated. */
static void test_csrattrs_bound(void **state)
{
	unsigned char der[4 + 5 * (P11C_EST_MAX_ATTRS + 1)], b64[sizeof der * 2];
	size_t n = 4, i;
	p11c_est_attrs a;
	char err[256] = "";
	int blen;

	(void)state;
	for (i = 0; i < P11C_EST_MAX_ATTRS + 1; i++) {
		/* OID 1.2.3 */
		der[n++] = 0x06;
		der[n++] = 0x02;
		der[n++] = 0x2a;
		der[n++] = 0x03;
	}
	der[0] = 0x30;
	der[1] = 0x82;
	der[2] = (unsigned char)((n - 4) >> 8);
	der[3] = (unsigned char)(n - 4);
	blen = EVP_EncodeBlock(b64, der, (int)n);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_ERR_PARSE);
	assert_non_null(strstr(err, "more than"));
	/* one fewer is fine */
	n -= 4;
	der[2] = (unsigned char)((n - 4) >> 8);
	der[3] = (unsigned char)(n - 4);
	blen = EVP_EncodeBlock(b64, der, (int)n);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.n, P11C_EST_MAX_ATTRS);
}

/* The same two certificates however the body is encoded, in order. */
/* CsrAttrs { extensionRequest { SET { Extensions (conf: "name:value" ...) } } },
 * base64, into b64 (at least 4096 bytes); its length */
static int ext_attrs(const char *const *conf, size_t n, unsigned char *b64)
{
	STACK_OF(X509_EXTENSION) *exts = sk_X509_EXTENSION_new_null();
	unsigned char *x = NULL, der[3000];
	size_t i, o = 0;
	int xl;

	assert_non_null(exts);
	for (i = 0; i < n; i++) {
		const char *colon = strchr(conf[i], ':');
		char name[64];
		X509_EXTENSION *e;

		assert_non_null(colon);
		snprintf(name, sizeof name, "%.*s", (int)(colon - conf[i]), conf[i]);
		e = X509V3_EXT_conf_nid(NULL, NULL, OBJ_sn2nid(name), colon + 1);
		assert_non_null(e);
		assert_true(sk_X509_EXTENSION_push(exts, e) > 0);
	}
	xl = i2d_X509_EXTENSIONS(exts, &x);
	assert_true(xl > 0 && xl < 2900);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	/* 30 82 LL LL { 30 82 LL LL { 06 09 <extReq> 31 82 LL LL { x } } } */
#define LEN2(v) (unsigned char)((v) >> 8), (unsigned char)(v)
	{
		const unsigned char hd[] = { 0x30, 0x82, LEN2(xl + 19), 0x30, 0x82, LEN2(xl + 15), 0x06, 0x09, 0x2a, 0x86,
					     0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x0e, 0x31, 0x82, LEN2(xl) };

		memcpy(der, hd, sizeof hd);
		o = sizeof hd;
	}
#undef LEN2
	memcpy(der + o, x, (size_t)xl);
	OPENSSL_free(x);
	return EVP_EncodeBlock(b64, der, (int)(o + (size_t)xl));
}

/* An extensionRequest with the values wanted (RFC 9908's template form):
 * keyUsage, extendedKeyUsage, subjectAltName, basicConstraints CA:FALSE
 * kept for the request; nsComment and CA:TRUE named as what
 * p11cert cannot honour; bounded; not Extensions refused. */
static void test_csrattrs_extensions(void **state)
{
	static const char *const ok[] = {
		"keyUsage:critical,digitalSignature", "extendedKeyUsage:clientAuth,serverAuth",
		"subjectAltName:DNS:dev.example", "basicConstraints:CA:FALSE", "nsComment:not for p11cert",
	};
	static const char *const ca[] = { "basicConstraints:critical,CA:TRUE" };
	const char *many[P11C_EST_MAX_EXTS + 1];
	unsigned char b64[4096];
	const unsigned char *q;
	STACK_OF(X509_EXTENSION) *exts;
	p11c_est_attrs a;
	char err[256] = "";
	int blen, i;

	(void)state;
	blen = ext_attrs(ok, 5, b64);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.n, 1);
	assert_string_equal(a.oid[0], "1.2.840.113549.1.9.14");
	assert_int_equal(a.next, 4);
	assert_int_equal(a.nunknown, 1);
	assert_string_equal(a.unknown[0], "2.16.840.1.113730.1.13");
	q = a.ext;
	exts = d2i_X509_EXTENSIONS(NULL, &q, (long)a.ext_len);
	assert_non_null(exts);
	assert_int_equal(sk_X509_EXTENSION_num(exts), 4);
	assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, 0))), NID_key_usage);
	assert_int_equal(X509_EXTENSION_get_critical(sk_X509_EXTENSION_value(exts, 0)), 1);
	assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, 3))),
			 NID_basic_constraints);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	/* CA:TRUE is not for a token key's end-entity request */
	blen = ext_attrs(ca, 1, b64);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.next, 0);
	assert_int_equal(a.ext_len, 0);
	assert_int_equal(a.nunknown, 1);
	assert_string_equal(a.unknown[0], "2.5.29.19 (CA:TRUE)");
	/* more than P11C_EST_MAX_EXTS: refused */
	for (i = 0; i <= P11C_EST_MAX_EXTS; i++)
		many[i] = "keyUsage:digitalSignature";
	blen = ext_attrs(many, P11C_EST_MAX_EXTS + 1, b64);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_ERR_PARSE);
	assert_non_null(strstr(err, "more than"));
	/* the same type twice: the first kept */
	blen = ext_attrs(many, 2, b64);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.next, 1);
	/* SEQUENCE { SEQUENCE { extensionRequest, SET { SEQUENCE { INTEGER 1 } } } }: not Extensions */
	{
		static const char bad[] = "MBYwFAYJKoZIhvcNAQkOMQcwBQIBAQUA";

		err[0] = '\0';
		assert_int_equal(p11c_est_csrattrs_parse((const unsigned char *)bad, strlen(bad), &a, err, sizeof err),
				 P11C_ERR_PARSE);
		assert_non_null(strstr(err, "not DER Extensions"));
	}
}

static void test_certs_encodings(void **state)
{
	static const char *const names[] = { "cacerts.b64", "cacerts-oneline.b64", "cacerts.der", "cacerts.p7.pem" };
	unsigned char fp[32], md[32], *h;
	unsigned int mdl = 0;
	size_t i, hl = 0;
	char err[256] = "", hex[80];

	(void)state;
	h = vec("root.sha256", &hl);
	assert_true(hl >= 64);
	snprintf(hex, sizeof hex, "sha256:%.64s", (const char *)h);
	free(h);
	assert_int_equal(p11c_est_fingerprint_parse(hex, fp), P11C_OK);
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		STACK_OF(X509) *c = NULL;
		char cn[64] = "";

		assert_int_equal(certs_of(names[i], &c, err, sizeof err), P11C_OK);
		assert_int_equal(sk_X509_num(c), 2);
		X509_NAME_get_text_by_NID(X509_get_subject_name(sk_X509_value(c, 0)), NID_commonName, cn, sizeof cn);
		assert_string_equal(cn, "EST-vector-root");
		assert_int_equal(X509_digest(sk_X509_value(c, 0), EVP_sha256(), md, &mdl), 1);
		assert_memory_equal(md, fp, 32);
		X509_NAME_get_text_by_NID(X509_get_subject_name(sk_X509_value(c, 1)), NID_commonName, cn, sizeof cn);
		assert_string_equal(cn, "EST-vector-intermediate");
		sk_X509_pop_free(c, X509_free);
	}
	{
		STACK_OF(X509) *c = NULL;

		assert_int_equal(certs_of("cacerts-one.b64", &c, err, sizeof err), P11C_OK);
		assert_int_equal(sk_X509_num(c), 1);
		sk_X509_pop_free(c, X509_free);
	}
}

static void test_certs_malformed(void **state)
{
	static const char *const names[] = { "malformed-signers.b64", "malformed-notb64.b64",
					     "malformed-truncated.b64", "csrattrs-rfc7030-a2.b64" };
	size_t i;
	char err[256];

	(void)state;
	for (i = 0; i < sizeof names / sizeof names[0]; i++) {
		STACK_OF(X509) *c = NULL;

		err[0] = '\0';
		assert_int_equal(certs_of(names[i], &c, err, sizeof err), P11C_ERR_PARSE);
		assert_null(c);
		assert_true(err[0] != '\0');
	}
	{
		STACK_OF(X509) *c = NULL;

		err[0] = '\0';
		assert_int_equal(certs_of("malformed-signers.b64", &c, err, sizeof err), P11C_ERR_PARSE);
		assert_non_null(strstr(err, "signers"));
	}
}

/* A certs-only structure with N copies of the vector root, DER. */
static unsigned char *certs_only(int n, size_t *len)
{
	STACK_OF(X509) *c = NULL;
	PKCS7 *p7 = PKCS7_new();
	unsigned char *der = NULL;
	char err[256];
	int i, l;

	assert_int_equal(certs_of("cacerts-one.b64", &c, err, sizeof err), P11C_OK);
	assert_non_null(p7);
	assert_int_equal(PKCS7_set_type(p7, NID_pkcs7_signed), 1);
	assert_int_equal(PKCS7_content_new(p7, NID_pkcs7_data), 1);
	for (i = 0; i < n; i++)
		assert_int_equal(PKCS7_add_certificate(p7, sk_X509_value(c, 0)), 1);
	l = i2d_PKCS7(p7, &der);
	assert_true(l > 0);
	*len = (size_t)l;
	PKCS7_free(p7);
	sk_X509_pop_free(c, X509_free);
	return der;
}

static void test_certs_bounds(void **state)
{
	STACK_OF(X509) *c = NULL;
	unsigned char *der, *more;
	size_t len = 0;
	char err[256] = "";

	(void)state;
	/* no certificate */
	der = certs_only(0, &len);
	assert_int_equal(p11c_est_certs_parse(der, len, &c, err, sizeof err), P11C_ERR_PARSE);
	assert_non_null(strstr(err, "0 certificates"));
	OPENSSL_free(der);
	/* the most allowed, then one more */
	der = certs_only(P11C_EST_MAX_CERTS, &len);
	assert_int_equal(p11c_est_certs_parse(der, len, &c, err, sizeof err), P11C_OK);
	assert_int_equal(sk_X509_num(c), P11C_EST_MAX_CERTS);
	sk_X509_pop_free(c, X509_free);
	c = NULL;
	/* trailing bytes after the structure */
	more = malloc(len + 2);
	assert_non_null(more);
	memcpy(more, der, len);
	more[len] = 0x05;
	more[len + 1] = 0x00;
	assert_int_equal(p11c_est_certs_parse(more, len + 2, &c, err, sizeof err), P11C_ERR_PARSE);
	free(more);
	OPENSSL_free(der);
	der = certs_only(P11C_EST_MAX_CERTS + 1, &len);
	assert_int_equal(p11c_est_certs_parse(der, len, &c, err, sizeof err), P11C_ERR_PARSE);
	assert_null(c);
	OPENSSL_free(der);
}

static void test_b64(void **state)
{
	static const char *const bad[] = { "QQ=", "QQ==QQ==", "Q===", "====", "QUJ*", "", "  \n" };
	unsigned char *out = NULL;
	size_t len = 0, i;

	(void)state;
	assert_int_equal(p11c_est_b64_decode((const unsigned char *)"QU\r\nJD\n", 7, &out, &len), P11C_OK);
	assert_int_equal(len, 3);
	assert_memory_equal(out, "ABC", 3);
	free(out);
	assert_int_equal(p11c_est_b64_decode((const unsigned char *)" QQ = = ", 7, &out, &len), P11C_OK);
	assert_int_equal(len, 1);
	assert_int_equal(out[0], 'A');
	free(out);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		out = NULL;
		assert_int_equal(p11c_est_b64_decode((const unsigned char *)bad[i], strlen(bad[i]), &out, &len),
				 P11C_ERR_PARSE);
		assert_null(out);
	}
}

static void test_fingerprint(void **state)
{
	unsigned char fp[32];
	char s[200];
	int i;

	(void)state;
	strcpy(s, "sha256:");
	for (i = 0; i < 32; i++)
		sprintf(s + strlen(s), "%02X%s", i, i < 31 ? ":" : "");
	assert_int_equal(p11c_est_fingerprint_parse(s, fp), P11C_OK);
	for (i = 0; i < 32; i++)
		assert_int_equal(fp[i], i);
	assert_int_equal(p11c_est_fingerprint_parse("SHA256:000102030405060708090a0b0c0d0e0f"
						    "101112131415161718191a1b1c1d1e1f", fp), P11C_OK);
	assert_int_equal(fp[31], 0x1f);
	assert_int_equal(p11c_est_fingerprint_parse("sha1:0001", fp), P11C_ERR_ARG);
	assert_int_equal(p11c_est_fingerprint_parse("sha256:0001", fp), P11C_ERR_ARG);
	assert_int_equal(p11c_est_fingerprint_parse("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
						    fp), P11C_ERR_ARG);
	assert_int_equal(p11c_est_fingerprint_parse("sha256:000102030405060708090a0b0c0d0e0f"
						    "101112131415161718191a1b1c1d1e1f00", fp), P11C_ERR_ARG);
	assert_int_equal(p11c_est_fingerprint_parse("sha256:000102030405060708090a0b0c0d0e0f"
						    "101112131415161718191a1b1c1d1e1", fp), P11C_ERR_ARG);
	assert_int_equal(p11c_est_fingerprint_parse("sha256:0g0102030405060708090a0b0c0d0e0f"
						    "101112131415161718191a1b1c1d1e1f", fp), P11C_ERR_ARG);
}

/* An in-memory handshake at VERSION; the client's p11c_tls_binding equals
 * what the server side computes as RFC 5929 / RFC 9266 define it. */
static void binding_at(int version)
{
	STACK_OF(X509) *c = NULL;
	EVP_PKEY *pk = NULL;
	EVP_PKEY_CTX *kc = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	X509 *x = X509_new();
	SSL_CTX *sc = SSL_CTX_new(TLS_server_method()), *cc = SSL_CTX_new(TLS_client_method());
	SSL *s, *cl;
	BIO *b1 = NULL, *b2 = NULL;
	unsigned char cb[64], sb[64];
	size_t cn, sn;
	int i, rs = -1, rc = -1;

	(void)c;
	assert_non_null(kc);
	assert_int_equal(EVP_PKEY_keygen_init(kc), 1);
	assert_int_equal(EVP_PKEY_CTX_set_group_name(kc, "P-256"), 1);
	assert_int_equal(EVP_PKEY_keygen(kc, &pk), 1);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 3600);
	X509_set_pubkey(x, pk);
	X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, (const unsigned char *)"t", -1, -1,
				   0);
	X509_set_issuer_name(x, X509_get_subject_name(x));
	assert_true(X509_sign(x, pk, EVP_sha256()) > 0);
	assert_int_equal(SSL_CTX_use_certificate(sc, x), 1);
	assert_int_equal(SSL_CTX_use_PrivateKey(sc, pk), 1);
	SSL_CTX_set_min_proto_version(sc, version);
	SSL_CTX_set_max_proto_version(sc, version);
	s = SSL_new(sc);
	cl = SSL_new(cc);
	assert_int_equal(BIO_new_bio_pair(&b1, 0, &b2, 0), 1);
	SSL_set_bio(s, b1, b1);
	SSL_set_bio(cl, b2, b2);
	SSL_set_accept_state(s);
	SSL_set_connect_state(cl);
	for (i = 0; i < 100 && (rs != 1 || rc != 1); i++) {
		if (rc != 1)
			rc = SSL_do_handshake(cl);
		if (rs != 1)
			rs = SSL_do_handshake(s);
	}
	assert_int_equal(rc, 1);
	assert_int_equal(rs, 1);
	assert_int_equal(SSL_version(cl), version);
	cn = p11c_tls_binding(cl, cb, sizeof cb);
	if (version == TLS1_3_VERSION) {
		assert_int_equal(cn, 32);
		assert_int_equal(SSL_export_keying_material(s, sb, 32, "EXPORTER-Channel-Binding", 24, NULL, 0, 0), 1);
		sn = 32;
	} else {
		/* a full handshake: the client's Finished comes first */
		assert_int_equal(cn, 12);
		sn = SSL_get_peer_finished(s, sb, sizeof sb);
	}
	assert_int_equal(cn, sn);
	assert_memory_equal(cb, sb, cn);
	SSL_free(s);
	SSL_free(cl);
	SSL_CTX_free(sc);
	SSL_CTX_free(cc);
	X509_free(x);
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(kc);
}

static void test_binding(void **state)
{
	unsigned char b[64];

	(void)state;
	binding_at(TLS1_2_VERSION);
	binding_at(TLS1_3_VERSION);
	assert_int_equal(p11c_tls_binding(NULL, b, sizeof b), 0);
}

/* Bad server URLs are refused before any network work (RFC 7030 s3.2.2:
 * https, an optional one-segment label). */
static void test_bad_urls(void **state)
{
	static const char *const bad[] = {
		"http://127.0.0.1:1",	     "127.0.0.1:1",	      "https://",
		"https://h/a/b",	     "https://h/la bel",      "https://h o/",
		"https://127.0.0.1:1/x?y=1", "ftp://127.0.0.1/x",
	};
	p11c_est_server srv;
	p11c_ctx *ctx = NULL;
	STACK_OF(X509) *cas = NULL;
	size_t i;

	(void)state;
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		memset(&srv, 0, sizeof srv);
		srv.url = bad[i];
		assert_int_equal(p11c_est_cacerts(ctx, &srv, &cas), P11C_ERR_ARG);
		assert_null(cas);
		assert_non_null(strstr(p11c_ctx_detail(ctx), "EST server"));
	}
	p11c_ctx_free(&ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_csrattrs_rfc7030), cmocka_unit_test(test_csrattrs_empty_and_bad),
		cmocka_unit_test(test_csrattrs_bound),	 cmocka_unit_test(test_certs_encodings),
		cmocka_unit_test(test_certs_malformed),	 cmocka_unit_test(test_certs_bounds),
		cmocka_unit_test(test_b64),		 cmocka_unit_test(test_fingerprint),
		cmocka_unit_test(test_binding),		 cmocka_unit_test(test_bad_urls),
		cmocka_unit_test(test_csrattrs_extensions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
