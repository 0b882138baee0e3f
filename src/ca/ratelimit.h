/*
 * Limit on wrong guesses (the shared-token HMAC, docs/ca.md): a token
 * bucket per client address plus one global bucket.
 *
 * Each address may make `burst` wrong guesses at once; its bucket refills
 * at `burst` per minute, so a correct client sharing the address (a NAT)
 * waits seconds, not a minute, after someone else's mistakes.  Every wrong
 * guess also takes from the global bucket (`global` at once, refilled at
 * `global` per minute), so guesses from many addresses stay bounded too.
 * A request is evaluated only while both buckets hold a token: a refused
 * one learns nothing about the secret.
 *
 * Memory is bounded: a fixed table of addresses.  Only an address whose
 * bucket is full again (it carries no state) is ever replaced; when every
 * slot holds a partly drained bucket, a new address is refused too (fail
 * closed).  So a blocked address stays blocked whatever the table pressure.
 *
 * Times are milliseconds of a monotonic clock, passed in (unit tests need
 * no sleeps).
 */
#ifndef P11CA_RATELIMIT_H
#define P11CA_RATELIMIT_H

#include <stddef.h>
#include <stdint.h>

typedef struct ratelimit ratelimit;

#define RATELIMIT_ADDR_MAX 64      /* longer addresses are cut */
#define RATELIMIT_MIN_SLOTS 256
#define RATELIMIT_GLOBAL_MAX 100000

/* burst 0: no limit at all (NULL is returned and every call allows);
 * global 0: no global ceiling.  The table holds max(256, 2*global+64)
 * addresses.  Sets *oom on allocation failure. */
ratelimit *ratelimit_new(unsigned burst, unsigned global, int *oom);
void ratelimit_free(ratelimit **rl);

/* 0: the address may make a guess now; else the seconds (>= 1) until it
 * may (for Retry-After).  rl NULL: 0. */
long ratelimit_check(ratelimit *rl, const char *addr, int64_t now_ms);
/* A wrong guess from addr: one token from its bucket and the global one. */
void ratelimit_fail(ratelimit *rl, const char *addr, int64_t now_ms);
/* The current monotonic clock in milliseconds. */
int64_t ratelimit_now_ms(void);

#endif
