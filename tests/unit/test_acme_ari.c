/*
 * ACME Renewal Information (RFC 9773; src/lib/enroll/acme_ari.c), no
 * network: the CertID of the RFC's s4.1 example, the suggestedWindow and
 * Retry-After of an answer (bounded; bad dates, windows and documents
 * refused), the renewal time picked in the window and the decision at a
 * fixed "now", and which newOrder answers refuse replaces.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/x509v3.h>

#include <p11cert/acme.h>

#include "enroll/acme_int.h"

/* A signed certificate with serial SERIAL (hex) and, when aki_hex is
 * not NULL, an authorityKeyIdentifier keyIdentifier of those bytes */
static X509 *make_cert(const char *serial, const char *aki_hex)
{
	X509 *x = X509_new();
	EVP_PKEY *k = EVP_EC_gen("P-256");
	BIGNUM *bn = NULL;
	ASN1_INTEGER *sn = NULL;

	assert_non_null(x);
	assert_non_null(k);
	assert_true(BN_hex2bn(&bn, serial) > 0);
	assert_non_null(sn = BN_to_ASN1_INTEGER(bn, NULL));
	assert_int_equal(X509_set_serialNumber(x, sn), 1);
	assert_int_equal(X509_set_version(x, X509_VERSION_3), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 86400));
	assert_int_equal(X509_set_pubkey(x, k), 1);
	if (aki_hex != NULL) {
		AUTHORITY_KEYID *akid = AUTHORITY_KEYID_new();
		long n = 0;
		unsigned char *b = OPENSSL_hexstr2buf(aki_hex, &n);

		assert_non_null(akid);
		assert_non_null(b);
		assert_non_null(akid->keyid = ASN1_OCTET_STRING_new());
		assert_int_equal(ASN1_OCTET_STRING_set(akid->keyid, b, (int)n), 1);
		assert_int_equal(X509_add1_ext_i2d(x, NID_authority_key_identifier, akid, 0, 0), 1);
		AUTHORITY_KEYID_free(akid);
		OPENSSL_free(b);
	}
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	ASN1_INTEGER_free(sn);
	BN_free(bn);
	EVP_PKEY_free(k);
	return x;
}

/* RFC 9773 s4.1: keyid 69:88:5B:..., serial 00:87:65:43:21 */
static void test_cert_id_rfc_example(void **state)
{
	X509 *x = make_cert("87654321", "69:88:5B:6B:87:46:40:41:E1:B3:7B:84:7B:A0:AE:2C:DE:01:C8:D4");
	char *id = NULL;

	(void)state;
	assert_int_equal(p11c_acme_cert_id(x, &id), P11C_OK);
	assert_string_equal(id, "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE");
	free(id);
	X509_free(x);
	/* a serial without the top bit set has no leading zero byte */
	x = make_cert("0102", "0A0B");
	assert_int_equal(p11c_acme_cert_id(x, &id), P11C_OK);
	assert_string_equal(id, "Cgs.AQI");
	free(id);
	X509_free(x);
}

static void test_cert_id_no_aki(void **state)
{
	X509 *x = make_cert("01", NULL);
	char *id = (char *)"x";

	(void)state;
	assert_int_equal(p11c_acme_cert_id(x, &id), P11C_ERR_ARG);
	assert_null(id);
	assert_int_equal(p11c_acme_cert_id(NULL, &id), P11C_ERR_ARG);
	X509_free(x);
}

static p11c_result parse(const char *doc, const char *ra, p11c_acme_ari *w)
{
	return p11c_acme_ari_parse(NULL, (const unsigned char *)doc, strlen(doc), ra, w);
}

static void test_window(void **state)
{
	p11c_acme_ari w;

	(void)state;
	assert_int_equal(parse("{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": "
			       "\"2025-01-03T04:00:00Z\"}, \"explanationURL\": \"https://acme.example.com/docs/ari\"}",
			       "21600", &w),
			 P11C_OK);
	assert_int_equal(w.start, 1735790400);
	assert_int_equal(w.end, 1735876800);
	assert_string_equal(w.explanation, "https://acme.example.com/docs/ari");
	assert_int_equal(w.retry_after, 21600);
	/* fractions and offsets (RFC 3339 s5.6); no explanationURL */
	assert_int_equal(parse("{\"suggestedWindow\": {\"start\": \"2025-01-02T05:00:00.123456+01:00\", \"end\": "
			       "\"2025-01-02T23:00:00-05:00\"}}",
			       NULL, &w),
			 P11C_OK);
	assert_int_equal(w.start, 1735790400);
	assert_int_equal(w.end, 1735876800);
	assert_string_equal(w.explanation, "");
	assert_int_equal(w.retry_after, 21600); /* no Retry-After: six hours */
}

static void test_retry_after_bounded(void **state)
{
	static const char doc[] = "{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": "
				  "\"2025-01-03T04:00:00Z\"}}";
	p11c_acme_ari w;

	(void)state;
	assert_int_equal(parse(doc, "0", &w), P11C_OK);
	assert_int_equal(w.retry_after, 60);
	assert_int_equal(parse(doc, "999999999", &w), P11C_OK);
	assert_int_equal(w.retry_after, 86400);
	assert_int_equal(parse(doc, "3600", &w), P11C_OK);
	assert_int_equal(w.retry_after, 3600);
	/* an HTTP-date or junk: the default */
	assert_int_equal(parse(doc, "Wed, 21 Oct 2015 07:28:00 GMT", &w), P11C_OK);
	assert_int_equal(w.retry_after, 21600);
	assert_int_equal(parse(doc, "-5", &w), P11C_OK);
	assert_int_equal(w.retry_after, 21600);
}

static void test_bad_answers(void **state)
{
	static const char *const bad[] = {
		"",
		"not json",
		"[]",
		"{}",
		"{\"suggestedWindow\": \"2025-01-02T04:00:00Z\"}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": 1735790400, \"end\": 1735876800}}",
		/* end not after start */
		"{\"suggestedWindow\": {\"start\": \"2025-01-03T04:00:00Z\", \"end\": \"2025-01-02T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": \"2025-01-02T04:00:00Z\"}}",
		/* dates that are not RFC 3339 */
		"{\"suggestedWindow\": {\"start\": \"2025-01-02 04:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-13-02T04:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-02-29T04:00:00Z\", \"end\": \"2025-03-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T24:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Zjunk\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"1969-12-31T23:59:59Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00.Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00+1:00\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		/* a date over 64 bytes */
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00.0000000000000000000000000000000000000000000000000000000Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
		/* duplicate keys */
		"{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}, \"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}}",
	};
	p11c_acme_ari w;
	size_t i, n = P11C_ACME_ARI_MAX + 100;
	char *big;

	(void)state;
	for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		if (parse(bad[i], NULL, &w) != P11C_ERR_PROTOCOL)
			fail_msg("accepted: %s", bad[i]);
		assert_int_equal(w.start, 0);
		assert_int_equal(w.end, 0);
	}
	/* too big, though well formed */
	big = malloc(n + 1);
	assert_non_null(big);
	memset(big, ' ', n);
	memcpy(big, "{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}",
	       strlen("{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": \"2025-01-03T04:00:00Z\"}"));
	big[n - 1] = '}';
	big[n] = '\0';
	assert_int_equal(parse(big, NULL, &w), P11C_ERR_PROTOCOL);
	free(big);
	/* an explanationURL that is not printable is dropped, the window kept */
	assert_int_equal(parse("{\"suggestedWindow\": {\"start\": \"2025-01-02T04:00:00Z\", \"end\": "
			       "\"2025-01-03T04:00:00Z\"}, \"explanationURL\": \"https://x/\\u001b[31m\"}",
			       NULL, &w),
			 P11C_OK);
	assert_string_equal(w.explanation, "");
}

/* the renewal time is in [start, end); due from it, or once the window
 * has ended */
static void test_pick_and_due(void **state)
{
	p11c_acme_ari w;
	time_t at;

	(void)state;
	memset(&w, 0, sizeof w);
	w.start = 1735790400;
	w.end = 1735876800;
	assert_int_equal(p11c_acme_ari_pick(&w, 0), w.start);
	assert_int_equal(p11c_acme_ari_pick(&w, 86399), w.end - 1);
	assert_int_equal(p11c_acme_ari_pick(&w, 86400), w.start);
	at = p11c_acme_ari_pick(&w, 0xffffffffffffffffULL);
	assert_true(at >= w.start && at < w.end);
	at = p11c_acme_ari_pick(&w, 43200);
	assert_int_equal(at, w.start + 43200);
	assert_false(p11c_acme_ari_due(&w, at, w.start - 1));
	assert_false(p11c_acme_ari_due(&w, at, at - 1));
	assert_true(p11c_acme_ari_due(&w, at, at));
	assert_true(p11c_acme_ari_due(&w, at, w.end + 1000));
	/* a picked time past the end (a window that shrank): due at the end */
	assert_true(p11c_acme_ari_due(&w, w.end + 500, w.end));
	assert_false(p11c_acme_ari_due(NULL, at, at));
}

static void test_replaces_refused(void **state)
{
	static const char already[] = "{\"type\": \"urn:ietf:params:acme:error:alreadyReplaced\", \"detail\": \"x\"}";
	static const char malformed[] = "{\"type\": \"urn:ietf:params:acme:error:malformed\"}";
	static const char nonce[] = "{\"type\": \"urn:ietf:params:acme:error:badNonce\"}";
	static const char limit[] = "{\"type\": \"urn:ietf:params:acme:error:rateLimited\"}";

	(void)state;
	assert_true(p11c_acme_replaces_refused(409, NULL, 0));
	assert_true(p11c_acme_replaces_refused(400, (const unsigned char *)already, strlen(already)));
	assert_true(p11c_acme_replaces_refused(403, (const unsigned char *)already, strlen(already)));
	assert_true(p11c_acme_replaces_refused(400, (const unsigned char *)malformed, strlen(malformed)));
	assert_false(p11c_acme_replaces_refused(400, (const unsigned char *)nonce, strlen(nonce)));
	assert_false(p11c_acme_replaces_refused(429, (const unsigned char *)limit, strlen(limit)));
	assert_false(p11c_acme_replaces_refused(500, (const unsigned char *)already, strlen(already)));
	assert_false(p11c_acme_replaces_refused(400, (const unsigned char *)"junk", 4));
	assert_false(p11c_acme_replaces_refused(201, NULL, 0));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_cert_id_rfc_example), cmocka_unit_test(test_cert_id_no_aki),
		cmocka_unit_test(test_window),		    cmocka_unit_test(test_retry_after_bounded),
		cmocka_unit_test(test_bad_answers),	    cmocka_unit_test(test_pick_and_due),
		cmocka_unit_test(test_replaces_refused),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
