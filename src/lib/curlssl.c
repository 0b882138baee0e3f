/* libcurl's TLS backend must be OpenSSL (curlssl.h), checked once per
 * process before any request; and curl_easy_setopt results checked. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <curl/curl.h>
#include <openssl/crypto.h>

#include "curlssl.h"
#include "testhook.h"

#define WANT "OpenSSL/"
#define INSTALL "install libcurl4-openssl-dev (Debian, Ubuntu; it replaces libcurl4-gnutls-dev) " \
	"or your system's libcurl built on OpenSSL, and rebuild"

int p11c_curlssl_check(const char *ssl_version, const char *version, int openssl_major, char *err, size_t errlen)
{
	const char *p, *used = NULL;
	size_t used_len = 0;
	int openssl_aside = 0;

	if (version == NULL)
		version = "?";
	if (ssl_version == NULL || ssl_version[0] == '\0') {
		snprintf(err, errlen, "libcurl %.40s has no TLS backend; p11cert needs libcurl built on OpenSSL %d: %s",
			 version, openssl_major, INSTALL);
		return -1;
	}
	/* tokens separated by spaces; "(NAME/VER)" is available, not in use */
	for (p = ssl_version; *p != '\0';) {
		size_t n;

		while (*p == ' ')
			p++;
		n = strcspn(p, " ");
		if (n == 0)
			break;
		if (p[0] == '(') {
			if (n > 1 + strlen(WANT) && strncmp(p + 1, WANT, strlen(WANT)) == 0)
				openssl_aside = 1;
		} else if (used == NULL) {
			used = p;
			used_len = n;
		}
		p += n;
	}
	if (used == NULL) {
		snprintf(err, errlen,
			 "libcurl %.40s uses none of its TLS backends (%.120s); p11cert needs libcurl built on "
			 "OpenSSL %d: %s", version, ssl_version, openssl_major, INSTALL);
		return -1;
	}
	if (used_len > strlen(WANT) && strncmp(used, WANT, strlen(WANT)) == 0) {
		const char *v = used + strlen(WANT);
		char *end = NULL;
		long major = strtol(v, &end, 10);

		if (end != v && *end == '.' && major == openssl_major)
			return 0;
		snprintf(err, errlen,
			 "libcurl %.40s does its TLS with %.*s, but p11cert is built on OpenSSL %d: the token key "
			 "would be handed to another OpenSSL; %s", version, (int)(used_len > 60 ? 60 : used_len),
			 used, openssl_major, INSTALL);
		return -1;
	}
	snprintf(err, errlen,
		 "libcurl %.40s does its TLS with %.*s, not OpenSSL%s: p11cert needs libcurl built on OpenSSL %d "
		 "(the token key and the TLS checks are OpenSSL callbacks, which other backends skip); %s",
		 version, (int)(used_len > 60 ? 60 : used_len), used,
		 openssl_aside ? " (it has OpenSSL too, but another backend was selected first)" : "",
		 openssl_major, INSTALL);
	return -1;
}

static pthread_once_t ready_once = PTHREAD_ONCE_INIT;
static int ready_rc;
static char ready_err[512];

static void ready_init(void)
{
	const curl_version_info_data *v;
	CURLcode cc;

	/* where libcurl has several backends, OpenSSL; the result does not
	 * matter: the backend in use, checked below, does (too late when the
	 * application called curl_global_init first) */
	(void)curl_global_sslset(CURLSSLBACKEND_OPENSSL, NULL, NULL);
	v = curl_version_info(CURLVERSION_NOW);
	if (v == NULL) {
		snprintf(ready_err, sizeof ready_err, "libcurl reports no version information");
		ready_rc = -1;
		return;
	}
	if (p11c_curlssl_check(v->ssl_version, v->version, (int)OPENSSL_version_major(), ready_err,
			       sizeof ready_err) != 0) {
		ready_rc = -1;
		return;
	}
	cc = curl_global_init(CURL_GLOBAL_DEFAULT);
	if (cc != CURLE_OK) {
		snprintf(ready_err, sizeof ready_err, "libcurl could not start: %s", curl_easy_strerror(cc));
		ready_rc = -1;
	}
}

int p11c_curl_ready(char *err, size_t errlen)
{
	pthread_once(&ready_once, ready_init);
	if (ready_rc != 0)
		snprintf(err, errlen, "%s", ready_err);
	return ready_rc;
}

CURLcode p11c_curl_opt(CURLcode rc, const char *name, char *err, size_t errlen)
{
	if (rc == CURLE_OK && p11c_test_setopt_fails(name))
		rc = CURLE_UNKNOWN_OPTION;
	if (rc != CURLE_OK) {
		const curl_version_info_data *v = curl_version_info(CURLVERSION_NOW);

		snprintf(err, errlen, "libcurl %.40s (%.60s) refused %s: %s; nothing was sent",
			 v != NULL && v->version != NULL ? v->version : "?",
			 v != NULL && v->ssl_version != NULL ? v->ssl_version : "no TLS", name,
			 curl_easy_strerror(rc));
	}
	return rc;
}
