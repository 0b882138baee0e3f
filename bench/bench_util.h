/*
 * bench_util.h: the clock and argument helpers the bench/ load generators
 * share (ca_load, p11sign).  Header-only: each tool is one C file.
 */
#ifndef P11C_BENCH_UTIL_H
#define P11C_BENCH_UTIL_H

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

static inline double now_s(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static inline int past(const struct timespec *d)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return t.tv_sec > d->tv_sec || (t.tv_sec == d->tv_sec && t.tv_nsec >= d->tv_nsec);
}

/* *d = now + seconds (CLOCK_MONOTONIC); returns now in seconds */
static inline double deadline_in(double seconds, struct timespec *d)
{
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	d->tv_sec = start.tv_sec + (time_t)seconds;
	d->tv_nsec = start.tv_nsec + (long)((seconds - floor(seconds)) * 1e9);
	if (d->tv_nsec >= 1000000000L) {
		d->tv_sec++;
		d->tv_nsec -= 1000000000L;
	}
	return (double)start.tv_sec + (double)start.tv_nsec / 1e9;
}

/* a number in [lo, hi] from option name's value v, else exit 64 */
static inline double num_arg(const char *prog, const char *name, const char *v, double lo, double hi)
{
	char *end = NULL;
	double d;

	errno = 0;
	d = strtod(v, &end);
	if (errno != 0 || end == v || *end != '\0' || !(d >= lo && d <= hi)) {
		fprintf(stderr, "%s: %s: expected a number in [%g, %g], got '%s'\n", prog, name, lo, hi, v);
		exit(64);
	}
	return d;
}

#endif
