/* libFuzzer entry points of tests/fuzz/fuzz_*.c, and helpers they share. */
#ifndef P11C_FUZZ_H
#define P11C_FUZZ_H

#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The shared-token secret of the fuzzers' CA and client. */
#define FUZZ_TOKEN "fuzz-shared-token-0123456789"

#endif
