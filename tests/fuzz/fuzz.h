/* libFuzzer entry points of tests/fuzz/fuzz_*.c, and helpers they share. */
#ifndef P11C_FUZZ_H
#define P11C_FUZZ_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The shared-token secret of the fuzzers' CA and client. */
#define FUZZ_TOKEN "fuzz-shared-token-0123456789"

/* one(piece, len) for each of at most max pieces of data separated by sep
 * (the multi-request inputs of fuzz_server and fuzz_est_server) */
static inline void fuzz_each(const uint8_t *data, size_t size, int max, const char *sep,
			     void (*one)(const unsigned char *d, size_t n))
{
	const unsigned char *p = data, *end = data + size, *s;
	int n;

	for (n = 0; n < max && p <= end; n++) {
		s = memmem(p, (size_t)(end - p), sep, strlen(sep));
		one(p, s != NULL ? (size_t)(s - p) : (size_t)(end - p));
		if (s == NULL)
			break;
		p = s + strlen(sep);
	}
}

#endif
