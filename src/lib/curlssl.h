/* libcurl must do its TLS with OpenSSL: the token key enters the handshake
 * as an OpenSSL SSL_CTX in CURLOPT_SSL_CTX_FUNCTION, and the shared-token
 * bootstrap check is an OpenSSL verify callback.  Another backend ignores
 * or refuses those options, so every request would run without the token
 * key (and without our checks).  Internal, not installed. */
#ifndef P11C_CURLSSL_H
#define P11C_CURLSSL_H

#include <stddef.h>

#include <curl/curl.h>

#define P11C_CURLSSL_HIDDEN __attribute__((visibility("hidden")))

/* Pure: does the libcurl whose curl_version_info() reports ssl_version
 * (and version, for the message) do its TLS with OpenSSL of major version
 * openssl_major?  Single-backend builds report "OpenSSL/3.0.11",
 * "GnuTLS/3.7.9", "NSS/3.87.1", "wolfSSL/5.5.4", ...; multi-backend builds
 * list every backend with the ones not in use in parentheses, e.g.
 * "(OpenSSL/3.0.11) GnuTLS/3.7.9" (curl lib/vtls/vtls.c, multissl_version).
 * 0 when the backend in use is OpenSSL/<openssl_major>.x; else -1 with a
 * sentence in err naming the backend found and the package to install. */
P11C_CURLSSL_HIDDEN int p11c_curlssl_check(const char *ssl_version, const char *version, int openssl_major,
					   char *err, size_t errlen);

/* Once per process: select OpenSSL where libcurl has several backends
 * (curl_global_sslset, before curl_global_init), check the backend in use
 * with p11c_curlssl_check, then curl_global_init.  0 when libcurl may be
 * used; else -1 with the reason in err (the same every call: nothing is
 * retried).  Every network path calls it before curl_easy_init. */
P11C_CURLSSL_HIDDEN int p11c_curl_ready(char *err, size_t errlen);

/* The result rc of curl_easy_setopt(NAME): CURLE_OK, or rc with
 * "libcurl refused NAME: ..." in err.  With test hooks built in,
 * P11CERT_TEST_SETOPT_FAIL=NAME (e.g. CURLOPT_SSL_CTX_FUNCTION) turns a
 * success into CURLE_UNKNOWN_OPTION, so tests can show that a refused
 * option stops the request. */
P11C_CURLSSL_HIDDEN CURLcode p11c_curl_opt(CURLcode rc, const char *name, char *err, size_t errlen);

/* curl_easy_setopt whose result is checked: true when the option was set;
 * false with err filled (p11c_curl_opt).  Every option that security or
 * the token key depends on goes through it; so does every other one in
 * http.c and cmd_curl.c, for simplicity. */
#define P11C_SETOPT(h, opt, val, err, errlen) \
	(p11c_curl_opt(curl_easy_setopt((h), opt, val), #opt, (err), (errlen)) == CURLE_OK)

#endif
