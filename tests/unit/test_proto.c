/*
 * Unit tests for proto.c: Caramel CSR PEM / SHA-256 / subject rule, the
 * shared-token HMAC and JSON bodies, problem+json.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include <p11cert/proto.h>

#define ERRLEN 256
#define TOKEN "testTokenTestToken"

/*
 * THE TEST VECTORS.  Expected values computed independently with the
 * openssl CLI by tests/vectors/token_hmac_vector.sh:
 *   openssl pkey -pubin -in pub.pem -outform DER
 *   -> BIT STRING contents (located with asn1parse; for P-256 the last 65
 *      bytes, for RSA the DER RSAPublicKey = -RSAPublicKey_out -outform DER)
 *   -> openssl dgst -sha1 -binary
 *   -> openssl dgst -sha256 -mac HMAC -macopt key:testTokenTestToken -binary
 *   -> base64
 * The P-256 key is tests/vectors/token_hmac_pub.pem; its key identifier
 * 4ff05cadd519112721534bfbacb8b875254a5d01 also equals the
 * subjectKeyIdentifier=hash openssl puts in a certificate for it.
 */
static const char EC_PUB_PEM[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAERjtZCjOPg41ahAXTpY+JQXPgtUDV\n"
	"b1SW7pWwPSSj4HMwNXfJoprT46x1mytkivOdKdPTTf4ORGKk/3jc1VwOtA==\n"
	"-----END PUBLIC KEY-----\n";
static const char EC_HMAC[] = "d7olDrrj6chxNxa1oC0++25W5FidC+sqDVwUL2ID8gU=";
static const unsigned char EC_KEYID[20] = {
	0x4f, 0xf0, 0x5c, 0xad, 0xd5, 0x19, 0x11, 0x27, 0x21, 0x53,
	0x4b, 0xfb, 0xac, 0xb8, 0xb8, 0x75, 0x25, 0x4a, 0x5d, 0x01,
};

static const char RSA_PUB_PEM[] =
	"-----BEGIN PUBLIC KEY-----\n"
	"MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEApHx0RLJxaUNwOWdrGxJ/\n"
	"GN0N0e2lWLDtrQjhftV5ouMiJQaOlEV62QH7qZDWna8g1yAELTqmXE78KV5bIIXN\n"
	"HTRjjV5HtkSe5YaIjcXlf4crhXtQyQ089ANW8YEUFrk8qmdrSeXBAs3lI9PrBVt6\n"
	"AhJNnhL+S0SqmJxMcC0C/vgcObP7EdpaTTLQjQJTSRWfRSbVLqMXiaJBJZeaYhQa\n"
	"VhHrrVUCq0+a6oqosf1AzDBjfICZDuHAV9wdEfQ49N22Vr+D8Kz7d20fACvSnmgY\n"
	"BPV7tlDzjzpSfCWqloYH6qOVUvgD34YC34MUCQuVK9NRhmYCHZyzuigW5STtPiEm\n"
	"fQIDAQAB\n"
	"-----END PUBLIC KEY-----\n";
static const char RSA_HMAC[] = "eGZ2jNYzY/ppLar+1tASOPJ/BoY0f18E1VqWSZ63vKY=";

static EVP_PKEY *load_pub(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	EVP_PKEY *pk;

	assert_non_null(b);
	pk = PEM_read_bio_PUBKEY(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(pk);
	return pk;
}

/* "/C=SE/O=Example/CN=x" -> X509_NAME (test helper; no escaping). */
static X509_NAME *name_of(const char *s)
{
	X509_NAME *n = X509_NAME_new();
	char *dup = strdup(s), *save = NULL, *tok;

	assert_non_null(n);
	assert_non_null(dup);
	for (tok = strtok_r(dup, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
		char *eq = strchr(tok, '=');

		assert_non_null(eq);
		*eq = '\0';
		assert_int_equal(X509_NAME_add_entry_by_txt(n, tok, MBSTRING_UTF8,
							    (unsigned char *)eq + 1, -1, -1, 0),
				 1);
	}
	free(dup);
	return n;
}

static void assert_name(const X509_NAME *n, const char *want)
{
	char buf[512];

	assert_non_null(X509_NAME_oneline(n, buf, sizeof buf));
	assert_string_equal(buf, want);
}

/* --- shared-token HMAC --------------------------------------------------- */

static void copy_str(char *dst, size_t size, const char *src)
{
	size_t n = strlen(src);

	assert_true(n < size);
	memcpy(dst, src, n + 1);
}

static void check_vector(const char *pem, const char *want)
{
	EVP_PKEY *pk = load_pub(pem);
	char out[45], bad[64];

	memset(out, 'x', sizeof out);
	assert_int_equal(p11c_token_hmac((const unsigned char *)TOKEN, strlen(TOKEN), pk, out,
					 sizeof out),
			 P11C_OK);
	assert_string_equal(out, want);
	assert_int_equal(strlen(out), 44);

	/* the comparison accepts the vector ... */
	assert_true(p11c_token_hmac_eq(out, want));
	assert_true(p11c_token_hmac_eq(want, out));
	/* ... and rejects a one-character change anywhere */
	for (size_t i = 0; i < strlen(want); i++) {
		copy_str(bad, sizeof bad, want);
		bad[i] = bad[i] == 'A' ? 'B' : 'A';
		assert_false(p11c_token_hmac_eq(out, bad));
	}
	/* ... and a different length */
	copy_str(bad, sizeof bad, want);
	bad[43] = '\0';
	assert_false(p11c_token_hmac_eq(out, bad));
	assert_true(strlen(want) + 2 <= sizeof bad);
	memcpy(bad, want, strlen(want));
	bad[strlen(want)] = 'A';
	bad[strlen(want) + 1] = '\0';
	assert_false(p11c_token_hmac_eq(out, bad));
	assert_false(p11c_token_hmac_eq(out, ""));
	assert_false(p11c_token_hmac_eq(out, NULL));
	assert_false(p11c_token_hmac_eq(NULL, out));
	EVP_PKEY_free(pk);
}

static void test_token_hmac_vector_ec(void **state)
{
	EVP_PKEY *pk = load_pub(EC_PUB_PEM);
	unsigned char kid[20];

	(void)state;
	/* the key identifier step on its own */
	assert_int_equal(p11c_pubkey_keyid(pk, kid), P11C_OK);
	assert_memory_equal(kid, EC_KEYID, sizeof kid);
	EVP_PKEY_free(pk);
	check_vector(EC_PUB_PEM, EC_HMAC);
}

static void test_token_hmac_vector_rsa(void **state)
{
	(void)state;
	check_vector(RSA_PUB_PEM, RSA_HMAC);
}

static void test_token_hmac_args(void **state)
{
	EVP_PKEY *pk = load_pub(EC_PUB_PEM);
	const unsigned char *tok15 = (const unsigned char *)"0123456789abcde";
	const unsigned char *tok16 = (const unsigned char *)"0123456789abcdef";
	char out[64];

	(void)state;
	/* both sides refuse tokens shorter than 16 bytes */
	assert_int_equal(p11c_token_hmac(tok15, 15, pk, out, sizeof out), P11C_ERR_ARG);
	assert_int_equal(p11c_token_hmac(tok16, 16, pk, out, sizeof out), P11C_OK);
	assert_int_equal(strlen(out), 44);
	assert_int_equal(p11c_token_hmac(NULL, 16, pk, out, sizeof out), P11C_ERR_ARG);
	assert_int_equal(p11c_token_hmac(tok16, 16, NULL, out, sizeof out), P11C_ERR_ARG);
	/* output buffer: 44 characters + NUL */
	assert_int_equal(p11c_token_hmac(tok16, 16, pk, out, 44), P11C_ERR_ARG);
	assert_int_equal(p11c_token_hmac(tok16, 16, pk, out, 45), P11C_OK);
	/* a different token gives a different HMAC */
	assert_int_equal(p11c_token_hmac((const unsigned char *)TOKEN "x", strlen(TOKEN) + 1,
					 pk, out, sizeof out),
			 P11C_OK);
	assert_false(p11c_token_hmac_eq(out, EC_HMAC));
	EVP_PKEY_free(pk);
}

/* --- shared-token JSON --------------------------------------------------- */

static void test_token_request_json(void **state)
{
	char *s;

	(void)state;
	s = p11c_token_request_json(EC_HMAC, "-----BEGIN CERTIFICATE REQUEST-----\nAB/C\n"
					     "-----END CERTIFICATE REQUEST-----\n");
	assert_non_null(s);
	assert_string_equal(s, "{\"hmac\":\"d7olDrrj6chxNxa1oC0++25W5FidC+sqDVwUL2ID8gU=\","
			       "\"csr\":\"-----BEGIN CERTIFICATE REQUEST-----\\nAB/C\\n"
			       "-----END CERTIFICATE REQUEST-----\\n\"}");
	free(s);
	assert_null(p11c_token_request_json(NULL, "x"));
	assert_null(p11c_token_request_json("x", NULL));
}

static void parse_req_fails(const char *body, size_t len, const char *want)
{
	char *h = (char *)&h, *c = (char *)&c, err[ERRLEN];

	assert_int_equal(p11c_token_request_parse(body, len, &h, &c, err, sizeof err),
			 P11C_ERR_PARSE);
	assert_null(h);
	assert_null(c);
	assert_string_equal(err, want);
}

#define REQ_FAILS(body, want) parse_req_fails(body, strlen(body), want)

static void test_token_request_parse(void **state)
{
	char *h = NULL, *c = NULL, err[ERRLEN], *s, *big;
	size_t i;

	(void)state;
	s = p11c_token_request_json(EC_HMAC, "PEM\nlines\n");
	assert_non_null(s);
	assert_int_equal(p11c_token_request_parse(s, strlen(s), &h, &c, err, sizeof err),
			 P11C_OK);
	assert_string_equal(err, "");
	assert_string_equal(h, EC_HMAC);
	assert_string_equal(c, "PEM\nlines\n");
	free(h);
	free(c);
	free(s);

	/* upstream's 400 messages; hmac is checked first */
	REQ_FAILS("{\"csr\":\"x\"}", "hmac field must be set");
	REQ_FAILS("{}", "hmac field must be set");
	REQ_FAILS("{\"hmac\":null,\"csr\":\"x\"}", "hmac field must be set");
	REQ_FAILS("{\"hmac\":5,\"csr\":\"x\"}", "hmac field must be set");
	REQ_FAILS("{\"hmac\":\"x\"}", "csr field must be set");
	REQ_FAILS("{\"hmac\":\"x\",\"csr\":null}", "csr field must be set");
	REQ_FAILS("{\"hmac\":\"x\",\"csr\":[]}", "csr field must be set");
	REQ_FAILS("[\"x\",\"y\"]", "request must be a JSON object");
	REQ_FAILS("{\"hmac\":\"a\",\"hmac\":\"b\",\"csr\":\"c\"}",
		  "invalid JSON: duplicate object key near '\"hmac\"'");
	/* jansson's message follows the prefix */
	parse_req_fails("not json", 8, "invalid JSON: '[' or '{' expected near 'not'");
	REQ_FAILS("", "invalid JSON: '[' or '{' expected near end of file");
	h = (char *)&h;
	assert_int_equal(p11c_token_request_parse("{\"hmac\":", 8, &h, &c, err, sizeof err),
			 P11C_ERR_PARSE);
	assert_null(h);
	assert_non_null(strstr(err, "invalid JSON: "));
	/* the length bounds the parse, not a NUL */
	assert_int_equal(p11c_token_request_parse("{\"hmac\":\"a\",\"csr\":\"b\"}garbage", 22,
						  &h, &c, err, sizeof err),
			 P11C_OK);
	assert_string_equal(h, "a");
	assert_string_equal(c, "b");
	free(h);
	free(c);

	/* too large: 65537 bytes refused unread; 65536 accepted */
	big = malloc(65537 + 1);
	assert_non_null(big);
	s = "{\"hmac\":\"a\",\"csr\":\"b\"}";
	memcpy(big, s, strlen(s));
	for (i = strlen(s); i < 65537; i++)
		big[i] = ' ';
	big[65537] = '\0';
	parse_req_fails(big, 65537, "request too large");
	assert_int_equal(p11c_token_request_parse(big, 65536, &h, &c, err, sizeof err),
			 P11C_OK);
	free(h);
	free(c);
	free(big);
}

static void test_token_response(void **state)
{
	char *s, *h = NULL, *c = NULL, *e = NULL;

	(void)state;
	s = p11c_token_response_json(NULL, NULL, "hmac field must be set");
	assert_non_null(s);
	assert_string_equal(s, "{\"hmac\":null,\"pemEncodedCertificate\":null,"
			       "\"error\":\"hmac field must be set\"}");
	assert_int_equal(p11c_token_response_parse(s, strlen(s), &h, &c, &e), P11C_OK);
	assert_null(h);
	assert_null(c);
	assert_string_equal(e, "hmac field must be set");
	free(e);
	free(s);

	s = p11c_token_response_json(EC_HMAC, "CERT\n", NULL);
	assert_non_null(s);
	assert_string_equal(s, "{\"hmac\":\"d7olDrrj6chxNxa1oC0++25W5FidC+sqDVwUL2ID8gU=\","
			       "\"pemEncodedCertificate\":\"CERT\\n\",\"error\":null}");
	assert_int_equal(p11c_token_response_parse(s, strlen(s), &h, &c, &e), P11C_OK);
	assert_string_equal(h, EC_HMAC);
	assert_string_equal(c, "CERT\n");
	assert_null(e);
	free(h);
	free(c);
	free(s);

	s = p11c_token_response_json(NULL, NULL, NULL);
	assert_string_equal(s, "{\"hmac\":null,\"pemEncodedCertificate\":null,\"error\":null}");
	free(s);

	/* missing keys are NULL */
	h = c = e = (char *)&s;
	assert_int_equal(p11c_token_response_parse("{\"error\":\"forbidden\"}", 21, &h, &c, &e),
			 P11C_OK);
	assert_null(h);
	assert_null(c);
	assert_string_equal(e, "forbidden");
	free(e);

	/* not an object, not JSON, wrong type */
	h = (char *)&s;
	assert_int_equal(p11c_token_response_parse("[]", 2, &h, &c, &e), P11C_ERR_PARSE);
	assert_null(h);
	assert_int_equal(p11c_token_response_parse("<html>", 6, &h, &c, &e), P11C_ERR_PARSE);
	assert_int_equal(p11c_token_response_parse("{\"hmac\":1}", 10, &h, &c, &e),
			 P11C_ERR_PARSE);
	assert_null(h);
	assert_null(c);
	assert_null(e);
}

/* --- problem+json -------------------------------------------------------- */

static void test_problem(void **state)
{
	char *s, *t = NULL, *d = NULL;

	(void)state;
	s = p11c_problem_json(404, "Not Found", NULL);
	assert_non_null(s);
	assert_string_equal(s, "{\"status\":404,\"title\":\"Not Found\",\"detail\":null}");
	assert_int_equal(p11c_problem_parse(s, strlen(s), &t, &d), P11C_OK);
	assert_string_equal(t, "Not Found");
	assert_null(d);
	free(t);
	free(s);

	s = p11c_problem_json(400, "Bad Request", "hash \"mismatch\"");
	assert_string_equal(s, "{\"status\":400,\"title\":\"Bad Request\","
			       "\"detail\":\"hash \\\"mismatch\\\"\"}");
	assert_int_equal(p11c_problem_parse(s, strlen(s), &t, &d), P11C_OK);
	assert_string_equal(t, "Bad Request");
	assert_string_equal(d, "hash \"mismatch\"");
	free(t);
	free(d);
	free(s);

	assert_int_equal(p11c_problem_parse("{\"status\":500}", 14, &t, &d), P11C_OK);
	assert_null(t);
	assert_null(d);
	assert_int_equal(p11c_problem_parse("Internal error", 14, &t, &d), P11C_ERR_PARSE);
	assert_int_equal(p11c_problem_parse("[1]", 3, &t, &d), P11C_ERR_PARSE);
	assert_null(t);
	assert_null(d);
}

/* --- Caramel ------------------------------------------------------------- */

static X509_REQ *make_csr(void)
{
	EVP_PKEY *pk = EVP_PKEY_Q_keygen(NULL, NULL, "EC", "P-256");
	X509_REQ *req = X509_REQ_new();
	X509_NAME *n = name_of("/C=SE/O=Example/CN=host1");

	assert_non_null(pk);
	assert_non_null(req);
	assert_int_equal(X509_REQ_set_version(req, 0), 1);
	assert_int_equal(X509_REQ_set_subject_name(req, n), 1);
	assert_int_equal(X509_REQ_set_pubkey(req, pk), 1);
	assert_true(X509_REQ_sign(req, pk, EVP_sha256()) > 0);
	X509_NAME_free(n);
	EVP_PKEY_free(pk);
	return req;
}

static void test_caramel_csr_pem(void **state)
{
	X509_REQ *req = make_csr(), *back;
	char *pem = NULL, *pem2 = NULL;
	const char *p, *nl, *begin = "-----BEGIN CERTIFICATE REQUEST-----\n",
			    *end = "-----END CERTIFICATE REQUEST-----\n";
	size_t len = 0, len2 = 0, lines = 0;
	BIO *b;

	(void)state;
	assert_int_equal(p11c_caramel_csr_pem(req, &pem, &len), P11C_OK);
	assert_non_null(pem);
	assert_int_equal(strlen(pem), len);
	assert_null(strchr(pem, '\r'));
	assert_memory_equal(pem, begin, strlen(begin));
	assert_true(len > strlen(begin) + strlen(end));
	assert_string_equal(pem + len - strlen(end), end);
	/* exactly one trailing newline */
	assert_int_equal(pem[len - 1], '\n');
	assert_int_not_equal(pem[len - 2], '\n');
	/* base64 lines: 64 columns, the last one 1..64 */
	for (p = pem + strlen(begin); p < pem + len - strlen(end); p = nl + 1) {
		nl = strchr(p, '\n');
		assert_non_null(nl);
		if (nl + 1 < pem + len - strlen(end))
			assert_int_equal(nl - p, 64);
		else
			assert_true(nl - p >= 1 && nl - p <= 64);
		lines++;
	}
	assert_true(lines >= 2);

	/* parse and re-encode: byte-identical (what Caramel checks) */
	b = BIO_new_mem_buf(pem, (int)len);
	back = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
	BIO_free(b);
	assert_non_null(back);
	assert_int_equal(p11c_caramel_csr_pem(back, &pem2, &len2), P11C_OK);
	assert_int_equal(len2, len);
	assert_memory_equal(pem2, pem, len);

	free(pem);
	free(pem2);
	assert_int_equal(p11c_caramel_csr_pem(NULL, &pem2, &len2), P11C_ERR_ARG);
	assert_null(pem2);
	X509_REQ_free(back);
	X509_REQ_free(req);
}

static void test_sha256_hex(void **state)
{
	char out[65];
	char s[80];

	(void)state;
	p11c_sha256_hex("abc", 3, out);
	assert_string_equal(out,
			    "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
	assert_true(p11c_is_sha256_hex(out));
	p11c_sha256_hex("", 0, out);
	assert_string_equal(out,
			    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");

	memset(s, 'a', 64);
	s[64] = '\0';
	assert_true(p11c_is_sha256_hex(s));
	s[63] = '\0'; /* 63 */
	assert_false(p11c_is_sha256_hex(s));
	s[63] = 'a';
	s[64] = '0';
	s[65] = '\0'; /* 65 */
	assert_false(p11c_is_sha256_hex(s));
	s[64] = '\0';
	s[10] = 'A'; /* uppercase */
	assert_false(p11c_is_sha256_hex(s));
	s[10] = 'g';
	assert_false(p11c_is_sha256_hex(s));
	s[10] = '/';
	assert_false(p11c_is_sha256_hex(s));
	assert_false(p11c_is_sha256_hex(""));
	assert_false(p11c_is_sha256_hex(NULL));
}

static void subject_ok(const char *ca_s, const char *subj_s)
{
	X509_NAME *ca = name_of(ca_s), *subj = name_of(subj_s);
	char err[ERRLEN];

	if (!p11c_caramel_subject_ok(ca, subj, err, sizeof err))
		print_error("CA %s, subject %s: %s\n", ca_s, subj_s, err);
	assert_true(p11c_caramel_subject_ok(ca, subj, err, sizeof err));
	assert_string_equal(err, "");
	X509_NAME_free(ca);
	X509_NAME_free(subj);
}

static void subject_refused(const char *ca_s, const char *subj_s, const char *want)
{
	X509_NAME *ca = name_of(ca_s), *subj = name_of(subj_s);
	char err[ERRLEN];

	assert_false(p11c_caramel_subject_ok(ca, subj, err, sizeof err));
	assert_string_equal(err, want);
	X509_NAME_free(ca);
	X509_NAME_free(subj);
}

static void test_caramel_subject_ok(void **state)
{
	const char *ca = "/C=SE/O=Example/CN=CA";

	(void)state;
	subject_ok(ca, "/C=SE/O=Example/CN=host");
	subject_ok(ca, "/C=SE/O=Example/OU=Ops/CN=host");
	subject_ok(ca, "/C=SE/O=Example");
	subject_ok(ca, "/C=SE/O=Example/CN=host/O=More");
	subject_refused(ca, "/O=Example/C=SE/CN=x",
			"subject must start with C=SE, O=Example (the CA's), "
			"found O=Example at position 1");
	subject_refused(ca, "/C=SE/CN=x",
			"subject must start with C=SE, O=Example (the CA's), "
			"found CN=x at position 2");
	subject_refused(ca, "/C=FI/O=Example/CN=x",
			"subject must start with C=SE, O=Example (the CA's), "
			"found C=FI at position 1");
	subject_refused(ca, "/C=SE/O=example/CN=x",
			"subject must start with C=SE, O=Example (the CA's), "
			"found O=example at position 2");
	subject_refused(ca, "/C=SE/OU=Ops/O=Example/CN=x",
			"subject must start with C=SE, O=Example (the CA's), "
			"found OU=Ops at position 2");
	subject_refused(ca, "/C=SE",
			"subject has 1 attributes, the CA requires 2 leading ones (C, O)");
	subject_refused("/C=SE/CN=CA", "/O=x/C=SE",
			"subject must start with C=SE (the CA's), found O=x at position 1");
	/* all four, in the CA's order, OU between them in the CA ignored */
	subject_ok("/C=SE/ST=Skane/L=Lund/OU=IT/O=Example/CN=CA",
		   "/C=SE/ST=Skane/L=Lund/O=Example/OU=IT/CN=h");
	subject_refused("/C=SE/ST=Skane/L=Lund/O=Example/CN=CA", "/C=SE/L=Lund/ST=Skane/O=Example",
			"subject must start with C=SE, ST=Skane, L=Lund, O=Example (the CA's), "
			"found L=Lund at position 2");
	/* CA without C/ST/L/O: anything goes */
	subject_ok("/CN=CA", "/CN=x");
	subject_ok("/OU=NIFI/CN=CA", "/O=Whatever/CN=x");
	/* UTF-8 contents compared, not the string type */
	{
		X509_NAME *cn = X509_NAME_new(), *sn = name_of("/C=SE/O=\xc3\x85sa AB/CN=x");
		char err[ERRLEN];

		assert_int_equal(X509_NAME_add_entry_by_txt(cn, "C", V_ASN1_PRINTABLESTRING,
							    (const unsigned char *)"SE", -1, -1,
							    0),
				 1);
		assert_int_equal(X509_NAME_add_entry_by_txt(cn, "O", MBSTRING_UTF8,
							    (const unsigned char *)"\xc3\x85sa AB",
							    -1, -1, 0),
				 1);
		assert_true(p11c_caramel_subject_ok(cn, sn, err, sizeof err));
		X509_NAME_free(cn);
		X509_NAME_free(sn);
	}
}

static void test_caramel_subject(void **state)
{
	X509_NAME *ca, *n;
	char id65[66];
	char err[ERRLEN];

	(void)state;
	ca = name_of("/C=SE/O=Example/CN=CA");
	n = p11c_caramel_subject(ca, "client-01");
	assert_non_null(n);
	assert_name(n, "/C=SE/O=Example/CN=client-01");
	/* the CSR we build passes the server's rule */
	assert_true(p11c_caramel_subject_ok(ca, n, err, sizeof err));
	X509_NAME_free(n);

	/* CN in the middle stays in place */
	X509_NAME_free(ca);
	ca = name_of("/C=SE/CN=CA/OU=Ops");
	n = p11c_caramel_subject(ca, "c");
	assert_name(n, "/C=SE/CN=c/OU=Ops");
	X509_NAME_free(n);

	/* CA without CN: appended */
	X509_NAME_free(ca);
	ca = name_of("/C=SE/O=Example/OU=CA");
	n = p11c_caramel_subject(ca, "client-01");
	assert_name(n, "/C=SE/O=Example/OU=CA/CN=client-01");
	assert_int_equal(X509_NAME_entry_count(n), 4);
	X509_NAME_free(n);

	/* client id bounds: 64 bytes ok, 65 and empty refused */
	memset(id65, 'a', 65);
	id65[65] = '\0';
	assert_null(p11c_caramel_subject(ca, id65));
	id65[64] = '\0';
	n = p11c_caramel_subject(ca, id65);
	assert_non_null(n);
	X509_NAME_free(n);
	assert_null(p11c_caramel_subject(ca, ""));
	assert_null(p11c_caramel_subject(ca, NULL));
	assert_null(p11c_caramel_subject(NULL, "x"));
	/* invalid UTF-8 refused */
	assert_null(p11c_caramel_subject(ca, "\xff\xfe"));
	X509_NAME_free(ca);

	/* the result is a fresh name: its DER matches a name built directly */
	ca = name_of("/C=SE/O=Example/CN=CA");
	n = p11c_caramel_subject(ca, "h");
	{
		X509_NAME *want = name_of("/C=SE/O=Example/CN=h");

		assert_int_equal(X509_NAME_cmp(n, want), 0);
		X509_NAME_free(want);
	}
	X509_NAME_free(n);
	X509_NAME_free(ca);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_token_hmac_vector_ec),
		cmocka_unit_test(test_token_hmac_vector_rsa),
		cmocka_unit_test(test_token_hmac_args),
		cmocka_unit_test(test_token_request_json),
		cmocka_unit_test(test_token_request_parse),
		cmocka_unit_test(test_token_response),
		cmocka_unit_test(test_problem),
		cmocka_unit_test(test_caramel_csr_pem),
		cmocka_unit_test(test_sha256_hex),
		cmocka_unit_test(test_caramel_subject_ok),
		cmocka_unit_test(test_caramel_subject),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
