/*
 * fuzz_acme: what the ACME client (src/lib/enroll/acme.c) makes of a CA's
 * answers, without the network (acme_int.h).
 *
 * Input: a line "KIND\n", then the answer body (an exact-size buffer, no
 * NUL after it):
 *   chain    the downloaded certificate chain: p11c_acme_chain_check for
 *            the fixture client key, no identifiers
 *   chainid  the same, the leaf must name "host1" and "127.0.0.1"
 *   (else)   a problem document or an authorization:
 *            p11c_acme_authz_text
 * P11CERT_FUZZ_VERBOSE=1 prints the verdict.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "enroll/acme_int.h"
#include "fixtures.h"
#include "fuzz.h"

static p11c_ctx *ctx;
static EVP_PKEY *client_pub;

static void setup(void)
{
	BIO *b = BIO_new_mem_buf(fixture_client_key, -1);

	if (p11c_ctx_new(&ctx) != P11C_OK || b == NULL)
		abort();
	client_pub = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
	BIO_free(b);
	if (client_pub == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static const char *const names[] = { "host1", "127.0.0.1" };
	const uint8_t *nl = memchr(data, '\n', size);
	size_t kl = nl ? (size_t)(nl - data) : size, n = nl ? size - kl - 1 : 0;
	unsigned char *body = malloc(n ? n : 1);
	char msg[900];
	p11c_result r = P11C_OK;

	if (ctx == NULL)
		setup();
	if (body == NULL)
		return 0;
	if (n)
		memcpy(body, nl + 1, n);
	msg[0] = '\0';
	if (kl == 5 && memcmp(data, "chain", 5) == 0)
		r = p11c_acme_chain_check(ctx, client_pub, "fuzz", NULL, 0, body, n);
	else if (kl == 7 && memcmp(data, "chainid", 7) == 0)
		r = p11c_acme_chain_check(ctx, client_pub, "fuzz", names, 2, body, n);
	else
		p11c_acme_authz_text(body, n, msg, sizeof msg);
	if (getenv("P11CERT_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%.*s: %s %s\n", (int)kl, (const char *)data, p11c_strerror(r),
			msg[0] ? msg : p11c_ctx_detail(ctx));
	ERR_clear_error();
	free(body);
	return 0;
}
