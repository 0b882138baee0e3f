/*
 * fuzz_est_client: what an EST server sends the client (RFC 7030), through
 * the client's parsers (src/lib/enroll/est_parse.c): the certs-only answer
 * of /cacerts, /simpleenroll, /simplereenroll (base64, PEM or DER PKCS#7),
 * the /csrattrs answer, the base64 decoder, and the fingerprint syntax of
 * --ca-fingerprint.  Input: the body.  (fuzz_est_server is the server's.)
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/x509.h>

#include <p11cert/est.h>

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	STACK_OF(X509) *certs = NULL;
	p11c_est_attrs a;
	unsigned char *dec = NULL, fp[32];
	size_t dlen = 0;
	char err[256], *s;
	int i;

	if (p11c_est_certs_parse(data, size, &certs, err, sizeof err) == P11C_OK) {
		/* what the client does with them next */
		if (sk_X509_num(certs) < 1 || sk_X509_num(certs) > P11C_EST_MAX_CERTS)
			abort();
		for (i = 0; i < sk_X509_num(certs); i++) {
			unsigned char md[EVP_MAX_MD_SIZE];
			unsigned int mdl = 0;

			(void)X509_digest(sk_X509_value(certs, i), EVP_sha256(), md, &mdl);
		}
	}
	sk_X509_pop_free(certs, X509_free);
	if (p11c_est_csrattrs_parse(data, size, &a, err, sizeof err) == P11C_OK) {
		if (a.n < 0 || a.n > P11C_EST_MAX_ATTRS || a.nunknown < 0 || a.nunknown > P11C_EST_MAX_ATTRS)
			abort();
		for (i = 0; i < a.n; i++)
			if (memchr(a.oid[i], '\0', sizeof a.oid[i]) == NULL)
				abort();
	}
	if (p11c_est_b64_decode(data, size, &dec, &dlen) == P11C_OK && dlen > size)
		abort();
	free(dec);
	if ((s = malloc(size + 1)) != NULL) {
		memcpy(s, data, size);
		s[size] = '\0';
		(void)p11c_est_fingerprint_parse(s, fp);
		free(s);
	}
	ERR_clear_error();
	return 0;
}
