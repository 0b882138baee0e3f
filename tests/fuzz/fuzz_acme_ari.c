/*
 * fuzz_acme_ari: what the ACME client makes of a CA's renewal information
 * (RFC 9773; src/lib/enroll/acme_ari.c, acme_int.h), without the network.
 *
 * Input: a first line, the Retry-After header (at most 63 bytes, as
 * http.c keeps it), then the answer body (an exact-size buffer, no NUL
 * after it): p11c_acme_ari_parse; the body as a newOrder refusal
 * (p11c_acme_replaces_refused); its first 80 bytes as an RFC 3339 date.
 * A window accepted must have end > start, a bounded Retry-After and a
 * printable explanation.  P11CERT_FUZZ_VERBOSE=1 prints the verdict.
 */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/acme_int.h"
#include "fuzz.h"

static p11c_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nl = memchr(data, '\n', size);
	size_t kl = nl ? (size_t)(nl - data) : 0, n = nl ? size - kl - 1 : size, i;
	unsigned char *body = malloc(n ? n : 1);
	char ra[64] = "", date[81];
	p11c_acme_ari w;
	p11c_result r;
	time_t t = 0;

	if (ctx == NULL && p11c_ctx_new(&ctx) != P11C_OK)
		abort();
	if (body == NULL)
		return 0;
	if (nl != NULL && kl < sizeof ra) {
		memcpy(ra, data, kl);
		ra[kl] = '\0';
	}
	if (n)
		memcpy(body, nl ? nl + 1 : data, n);
	r = p11c_acme_ari_parse(ctx, body, n, ra, &w);
	if (r == P11C_OK) {
		if (w.end <= w.start || w.retry_after < 60 || w.retry_after > 86400)
			abort();
		for (i = 0; w.explanation[i] != '\0'; i++)
			if (!isprint((unsigned char)w.explanation[i]))
				abort();
		if (p11c_acme_ari_pick(&w, (unsigned long long)n * 2654435761ULL) < w.start ||
		    p11c_acme_ari_pick(&w, (unsigned long long)n * 2654435761ULL) >= w.end)
			abort();
	}
	(void)p11c_acme_replaces_refused(400, body, n);
	memcpy(date, body, n < 80 ? n : 80);
	date[n < 80 ? n : 80] = '\0';
	if (p11c_acme_rfc3339(date, &t) == 0 && t < 0)
		abort();
	if (getenv("P11CERT_FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%s %s\n", p11c_strerror(r), r == P11C_OK ? "" : p11c_ctx_detail(ctx));
	free(body);
	return 0;
}
