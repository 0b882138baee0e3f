/*
 * fuzz_answers: what the enrollment clients make of a CA's answers, without
 * the network (the functions p11c_caramel_fetch_ca, _poll and
 * p11c_token_enroll call on the bytes libcurl returned; http.h).
 *
 * Input: a line "KIND STATUS\n", then the answer body (given to the parsers
 * as an exact-size buffer, no NUL after it):
 *   root     GET /root.crt: p11c_caramel_ca_answer (status, PEM or DER)
 *   cert     Caramel GET: a 200 is the certificate PEM, parsed and checked
 *            (p11c_caramel_check_pub: key, CN, chain to the fixture CA,
 *            validity) and described (show.c); other statuses go to
 *            p11c_caramel_unexpected
 *   token    shared-token POST answer: p11c_token_answer with the fixture
 *            CA as TLS peer; "@HMAC@" in the body becomes the correct
 *            response HMAC (FUZZ_TOKEN over the CA's key)
 *   problem  (or anything else) p11c_caramel_unexpected, p11c_problem_parse,
 *            p11c_token_response_parse
 * P11CERT_FUZZ_VERBOSE=1 prints the client's verdict (the ctx detail).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/proto.h>

#include "fixtures.h"
#include "fuzz.h"
#include "http.h"
#include "show.h"

static p11c_ctx *ctx;
static X509 *ca_cert;
static EVP_PKEY *client_key;
static char ca_hmac[64];

static void setup(void)
{
	BIO *b;

	if (p11c_ctx_new(&ctx) != P11C_OK)
		abort();
	b = BIO_new_mem_buf(fixture_ca_crt, -1);
	ca_cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	b = BIO_new_mem_buf(fixture_client_key, -1);
	client_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (ca_cert == NULL || client_key == NULL ||
	    p11c_token_hmac((const unsigned char *)FUZZ_TOKEN, strlen(FUZZ_TOKEN), X509_get0_pubkey(ca_cert),
			    ca_hmac, sizeof ca_hmac) != P11C_OK)
		abort();
}

static void show(X509 *x)
{
	json_t *j = p11c_cert_json(x);
	char *s = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL, *t = p11c_cert_text(x);

	free(s);
	free(t);
	json_decref(j);
}

static void answer_root(long status, const unsigned char *b, size_t n)
{
	X509 *x = NULL;
	char *pem;

	if (p11c_caramel_ca_answer(ctx, "https://ca.example.com/root.crt", status, b, n, &x) == P11C_OK) {
		pem = p11c_x509_pem(x);	/* what enroll stores as SERVER.cacert */
		free(pem);
		show(x);
	}
	X509_free(x);
}

static void answer_cert(long status, const unsigned char *b, size_t n)
{
	char *pem;
	X509 *x = NULL;

	if (status != 200) {
		(void)p11c_caramel_unexpected(ctx, status, b, n, "GET");
		return;
	}
	/* p11c_caramel_poll keeps the bytes up to a NUL; enroll parses them */
	if ((pem = strndup((const char *)b, n)) == NULL)
		return;
	if (p11c_x509_parse((const unsigned char *)pem, strlen(pem), &x) == P11C_OK) {
		(void)p11c_caramel_check_pub(ctx, x, client_key, "fuzz", ca_cert, FIXTURE_UUID);
		show(x);
	}
	X509_free(x);
	free(pem);
}

static void answer_token(long status, const unsigned char *b, size_t n)
{
	X509 *x = NULL;
	unsigned char *sub = NULL, *exact;
	const unsigned char *q;
	size_t o;

	/* the HMAC placeholder, once */
	q = memmem(b, n, "@HMAC@", 6);
	if (q != NULL && (sub = malloc(n - 6 + 44)) != NULL) {
		o = (size_t)(q - b);
		memcpy(sub, b, o);
		memcpy(sub + o, ca_hmac, 44);
		memcpy(sub + o + 44, q + 6, n - o - 6);
		n = n - 6 + 44;
		b = sub;
	}
	exact = malloc(n > 0 ? n : 1);
	if (exact != NULL) {
		memcpy(exact, b, n);
		(void)p11c_token_answer(ctx, "https://ca.example.com:9443/", status, exact, n,
					(const unsigned char *)FUZZ_TOKEN, strlen(FUZZ_TOKEN), ca_cert,
					client_key, "fuzz", &x);
	}
	free(exact);
	free(sub);
	X509_free(x);
}

static void answer_problem(long status, const unsigned char *b, size_t n)
{
	char *t = NULL, *d = NULL, *h = NULL, *c = NULL, *e = NULL;

	(void)p11c_caramel_unexpected(ctx, status, b, n, "POST of the request");
	(void)p11c_problem_parse((const char *)b, n, &t, &d);
	(void)p11c_token_response_parse((const char *)b, n, &h, &c, &e);
	free(t);
	free(d);
	free(h);
	free(c);
	free(e);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const unsigned char *nl = memchr(data, '\n', size), *body;
	char line[64];
	unsigned char *copy;
	size_t l, n;
	long status = 0;
	char kind[16] = "";

	if (ctx == NULL)
		setup();
	l = nl != NULL ? (size_t)(nl - data) : size;
	snprintf(line, sizeof line, "%.*s", (int)(l < sizeof line - 1 ? l : sizeof line - 1), (const char *)data);
	(void)sscanf(line, "%15s %ld", kind, &status); // NOLINT(cert-err34-c): any status will do, the fuzzer picks it
	body = nl != NULL ? nl + 1 : data + size;
	n = (size_t)(data + size - body);
	/* an exact-size copy: a read past the answer is an ASan error */
	if ((copy = malloc(n > 0 ? n : 1)) == NULL)
		return 0;
	memcpy(copy, body, n);
	if (strcmp(kind, "root") == 0)
		answer_root(status, copy, n);
	else if (strcmp(kind, "cert") == 0)
		answer_cert(status, copy, n);
	else if (strcmp(kind, "token") == 0)
		answer_token(status, copy, n);
	else
		answer_problem(status, copy, n);
	free(copy);
	if (getenv("P11CERT_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "fuzz_answers: %s %ld: %s\n", kind, status, p11c_ctx_detail(ctx));
	ERR_clear_error();
	return 0;
}
