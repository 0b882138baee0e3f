/*
 * Unit tests for ratelimit.c: the shared-token wrong-HMAC limit (issue 10
 * point 14, issue 15 s4).  Times are passed in: no sleeps, no timing.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>

#include "ratelimit.h"

#define T0 1000000 /* any monotonic start */

static ratelimit *mk(unsigned burst, unsigned global)
{
	int oom = 1;
	ratelimit *rl = ratelimit_new(burst, global, &oom);

	assert_int_equal(oom, 0);
	assert_non_null(rl);
	return rl;
}

/* burst wrong guesses from one address, then refused; the others not */
static void test_burst_per_address(void **state)
{
	ratelimit *rl = mk(5, 0);
	int i;

	(void)state;
	for (i = 0; i < 5; i++) {
		assert_int_equal(ratelimit_check(rl, "192.0.2.1", T0), 0);
		ratelimit_fail(rl, "192.0.2.1", T0);
	}
	assert_true(ratelimit_check(rl, "192.0.2.1", T0) > 0);
	assert_int_equal(ratelimit_check(rl, "192.0.2.2", T0), 0);
	ratelimit_free(&rl);
	assert_null(rl);
}

/* a drained address gets one guess back after 60/burst s, not a minute:
 * a correct client behind the same NAT waits seconds */
static void test_refill_not_a_minute(void **state)
{
	ratelimit *rl = mk(5, 0);
	long w;
	int i;

	(void)state;
	for (i = 0; i < 5; i++)
		ratelimit_fail(rl, "192.0.2.1", T0);
	w = ratelimit_check(rl, "192.0.2.1", T0);
	assert_int_equal(w, 12);
	assert_true(ratelimit_check(rl, "192.0.2.1", T0 + 11999) > 0);
	assert_int_equal(ratelimit_check(rl, "192.0.2.1", T0 + 12000), 0);
	/* and one guess only: the next wrong one blocks again */
	ratelimit_fail(rl, "192.0.2.1", T0 + 12000);
	assert_true(ratelimit_check(rl, "192.0.2.1", T0 + 12000) > 0);
	/* a quiet minute gives the whole burst back */
	for (i = 0; i < 5; i++) {
		assert_int_equal(ratelimit_check(rl, "192.0.2.1", T0 + 80000), 0);
		ratelimit_fail(rl, "192.0.2.1", T0 + 80000);
	}
	assert_true(ratelimit_check(rl, "192.0.2.1", T0 + 80000) > 0);
	ratelimit_free(&rl);
}

/* guesses from many addresses stay under the global ceiling */
static void test_global_ceiling(void **state)
{
	ratelimit *rl = mk(5, 20);
	char a[32];
	int i, allowed = 0;

	(void)state;
	for (i = 0; i < 1000; i++) {
		snprintf(a, sizeof a, "10.0.%d.%d", i / 250, i % 250);
		if (ratelimit_check(rl, a, T0) == 0) {
			allowed++;
			ratelimit_fail(rl, a, T0);
		}
	}
	assert_int_equal(allowed, 20);
	/* refilled at 20 per minute: one every 3 s */
	assert_int_equal(ratelimit_check(rl, "10.9.9.9", T0), 3);
	assert_int_equal(ratelimit_check(rl, "10.9.9.9", T0 + 3000), 0);
	ratelimit_free(&rl);
}

/* issue 10 point 14: wrong guesses from many other addresses never evict a
 * blocked address (memory stays bounded: the table does not grow) */
static void test_blocked_stays_blocked(void **state)
{
	ratelimit *rl = mk(5, 0); /* no global ceiling: table pressure only */
	char a[32];
	int i, refused_new = 0;

	(void)state;
	for (i = 0; i < 5; i++)
		ratelimit_fail(rl, "127.0.0.1", T0);
	assert_true(ratelimit_check(rl, "127.0.0.1", T0) > 0);
	for (i = 0; i < 4 * RATELIMIT_MIN_SLOTS; i++) {
		snprintf(a, sizeof a, "127.0.%d.%d", 1 + i / 250, i % 250);
		if (ratelimit_check(rl, a, T0 + 1) == 0)
			ratelimit_fail(rl, a, T0 + 1);
		else
			refused_new++;
	}
	assert_true(ratelimit_check(rl, "127.0.0.1", T0 + 2) > 0);
	/* the table filled up: new addresses were refused (fail closed) */
	assert_true(refused_new > 0);
	/* once buckets refill, slots are taken again */
	assert_int_equal(ratelimit_check(rl, "198.51.100.7", T0 + 60000), 0);
	ratelimit_free(&rl);
}

/* burst 0: off; the clock going back never refills */
static void test_off_and_clock(void **state)
{
	int oom = 1;
	ratelimit *rl = ratelimit_new(0, 10, &oom);

	(void)state;
	assert_null(rl);
	assert_int_equal(oom, 0);
	assert_int_equal(ratelimit_check(NULL, "x", T0), 0);
	ratelimit_fail(NULL, "x", T0);
	rl = mk(1, 0);
	ratelimit_fail(rl, "x", T0);
	assert_true(ratelimit_check(rl, "x", T0 - 50000) > 0);
	assert_true(ratelimit_check(rl, "x", T0) > 0);
	ratelimit_free(&rl);
	ratelimit_free(NULL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_burst_per_address),
		cmocka_unit_test(test_refill_not_a_minute),
		cmocka_unit_test(test_global_ceiling),
		cmocka_unit_test(test_blocked_stays_blocked),
		cmocka_unit_test(test_off_and_clock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
