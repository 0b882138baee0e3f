/*
 * Unit tests for curlssl.c: p11c_curlssl_check() over the ssl_version
 * strings of libcurl builds (curl_version_info()), p11c_curl_opt(), and the
 * check on the libcurl this test is linked with (OpenSSL: the configure
 * check of cmake/CurlOpenSSL.cmake let the build through).
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "curlssl.h"

#define ERRLEN 512
#define INSTALL "libcurl4-openssl-dev"

static void accepted(const char *ssl_version)
{
	char err[ERRLEN] = "";

	if (p11c_curlssl_check(ssl_version, "7.88.1", 3, err, sizeof err) != 0)
		fail_msg("'%s' refused: %s", ssl_version, err);
}

/* refused, the message naming `backend` and the package to install */
static void refused(const char *ssl_version, const char *backend)
{
	char err[ERRLEN] = "";

	if (p11c_curlssl_check(ssl_version, "7.88.1", 3, err, sizeof err) == 0)
		fail_msg("'%s' accepted", ssl_version ? ssl_version : "(null)");
	if (backend != NULL && strstr(err, backend) == NULL)
		fail_msg("'%s': the message does not name %s: %s", ssl_version, backend, err);
	if (strstr(err, INSTALL) == NULL)
		fail_msg("'%s': the message does not name %s: %s", ssl_version, INSTALL, err);
	if (strstr(err, "libcurl 7.88.1") == NULL)
		fail_msg("'%s': the message does not name the libcurl version: %s", ssl_version, err);
}

static void test_openssl(void **state)
{
	(void)state;
	accepted("OpenSSL/3.0.11");
	accepted("OpenSSL/3.0.15");
	accepted("OpenSSL/3.2.1");
}

static void test_other_backends(void **state)
{
	(void)state;
	refused("GnuTLS/3.7.9", "GnuTLS/3.7.9");
	refused("NSS/3.87.1", "NSS/3.87.1");
	refused("wolfSSL/5.5.4", "wolfSSL/5.5.4");
	refused("mbedTLS/3.4.0", "mbedTLS/3.4.0");
	refused("Schannel", "Schannel");
	refused("SecureTransport", "SecureTransport");
	refused("BearSSL", "BearSSL");
	refused("rustls-ffi/0.10.0/rustls/0.21.0", "rustls-ffi/0.10.0/rustls/0.21.0");
	/* OpenSSL forks have another ABI than the OpenSSL we link */
	refused("BoringSSL", "BoringSSL");
	refused("LibreSSL/3.8.2", "LibreSSL/3.8.2");
	refused("AWS-LC/1.20.0", "AWS-LC/1.20.0");
}

static void test_openssl_other_major(void **state)
{
	char err[ERRLEN] = "";

	(void)state;
	refused("OpenSSL/1.1.1w", "OpenSSL/1.1.1w");
	refused("OpenSSL/30.0.1", "OpenSSL/30.0.1");
	/* a libcurl on OpenSSL 4 is fine for a p11cert built on OpenSSL 4 */
	assert_int_equal(p11c_curlssl_check("OpenSSL/4.0.0", "8.0", 4, err, sizeof err), 0);
	assert_int_equal(p11c_curlssl_check("OpenSSL/3.0.11", "8.0", 4, err, sizeof err), -1);
	assert_non_null(strstr(err, "OpenSSL 4"));
}

/* multi-backend builds: the backend in use has no parentheses
 * (curl lib/vtls/vtls.c multissl_version) */
static void test_multi_backend(void **state)
{
	char err[ERRLEN] = "";

	(void)state;
	accepted("OpenSSL/3.0.11 (GnuTLS/3.7.9)");
	accepted("(GnuTLS/3.7.9) OpenSSL/3.0.11 (wolfSSL/5.5.4)");
	refused("(OpenSSL/3.0.11) GnuTLS/3.7.9", "GnuTLS/3.7.9");
	refused("GnuTLS/3.7.9 (OpenSSL/3.0.11)", "GnuTLS/3.7.9");
	refused("(OpenSSL/3.0.11) NSS/3.87.1 (wolfSSL/5.5.4)", "NSS/3.87.1");
	/* OpenSSL is there, not selected: the message says so */
	assert_int_equal(p11c_curlssl_check("(OpenSSL/3.0.11) GnuTLS/3.7.9", "7.88.1", 3, err, sizeof err), -1);
	assert_non_null(strstr(err, "has OpenSSL too"));
	assert_int_equal(p11c_curlssl_check("(wolfSSL/5.5.4) GnuTLS/3.7.9", "7.88.1", 3, err, sizeof err), -1);
	assert_null(strstr(err, "has OpenSSL too"));
	/* none in use: refused */
	refused("(OpenSSL/3.0.11) (GnuTLS/3.7.9)", "(OpenSSL/3.0.11) (GnuTLS/3.7.9)");
}

static void test_malformed(void **state)
{
	char err[ERRLEN] = "", small[16];
	char *big;

	(void)state;
	refused(NULL, "no TLS backend");
	refused("", "no TLS backend");
	refused("   ", NULL);
	refused("OpenSSL", "OpenSSL");
	refused("OpenSSL/", "OpenSSL/");
	refused("OpenSSL/x.y", "OpenSSL/x.y");
	refused("OpenSSL/3", "OpenSSL/3");
	refused("OpenSSLx/3.0.1", "OpenSSLx/3.0.1");
	refused("openssl/3.0.11", "openssl/3.0.11");
	/* long input: bounded message */
	big = malloc(10000);
	assert_non_null(big);
	memset(big, 'A', 9999);
	big[9999] = '\0';
	assert_int_equal(p11c_curlssl_check(big, "7.88.1", 3, err, sizeof err), -1);
	assert_true(strlen(err) < sizeof err);
	assert_int_equal(p11c_curlssl_check(big, NULL, 3, small, sizeof small), -1);
	assert_int_equal(strlen(small), sizeof small - 1);
	free(big);
}

/* the libcurl this test runs with is the one the build found: OpenSSL */
static void test_this_libcurl(void **state)
{
	const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);
	char err[ERRLEN] = "";

	(void)state;
	assert_non_null(v);
	if (p11c_curlssl_check(v->ssl_version, v->version, (int)OPENSSL_version_major(), err, sizeof err) != 0)
		fail_msg("%s", err);
	if (p11c_curl_ready(err, sizeof err) != 0)
		fail_msg("%s", err);
	assert_int_equal(p11c_curl_ready(err, sizeof err), 0);
}

static void test_setopt_result(void **state)
{
	char err[ERRLEN] = "";

	(void)state;
	assert_int_equal(p11c_curl_opt(CURLE_OK, "CURLOPT_URL", err, sizeof err), CURLE_OK);
	assert_string_equal(err, "");
	assert_int_equal(p11c_curl_opt(CURLE_NOT_BUILT_IN, "CURLOPT_SSL_CTX_FUNCTION", err, sizeof err),
			 CURLE_NOT_BUILT_IN);
	assert_non_null(strstr(err, "refused CURLOPT_SSL_CTX_FUNCTION"));
	assert_non_null(strstr(err, curl_easy_strerror(CURLE_NOT_BUILT_IN)));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_openssl),
		cmocka_unit_test(test_other_backends),
		cmocka_unit_test(test_openssl_other_major),
		cmocka_unit_test(test_multi_backend),
		cmocka_unit_test(test_malformed),
		cmocka_unit_test(test_this_libcurl),
		cmocka_unit_test(test_setopt_result),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
