/* Fault-injection hook: stop at a named stage when a test asks for it. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testhook.h"

void p11c_test_stall(const char *stage)
{
#ifdef P11C_TEST_HOOKS
	const char *want = getenv("P11CERT_TEST_STALL_AT");

	if (want == NULL || stage == NULL || strcmp(want, stage) != 0)
		return;
	fprintf(stderr, "p11cert: test hook: stopping at '%s' (P11CERT_TEST_STALL_AT)\n", stage);
	fflush(stderr);
	raise(SIGSTOP);
#else
	(void)stage;
#endif
}

void p11c_test_stall_write(const char *path)
{
#ifdef P11C_TEST_HOOKS
	const char *want = getenv("P11CERT_TEST_STALL_AT"), *base;

	if (want == NULL || path == NULL || strncmp(want, "write:", 6) != 0)
		return;
	base = strrchr(path, '/');
	base = base != NULL ? base + 1 : path;
	if (strcmp(want + 6, base) == 0)
		p11c_test_stall(want);
#else
	(void)path;
#endif
}

int p11c_test_setopt_fails(const char *name)
{
#ifdef P11C_TEST_HOOKS
	const char *want = getenv("P11CERT_TEST_SETOPT_FAIL");

	if (want == NULL || name == NULL || strcmp(want, name) != 0)
		return 0;
	fprintf(stderr, "p11cert: test hook: %s fails (P11CERT_TEST_SETOPT_FAIL)\n", name);
	return 1;
#else
	(void)name;
	return 0;
#endif
}
