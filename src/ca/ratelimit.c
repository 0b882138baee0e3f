/* Token buckets for wrong guesses (ratelimit.h; issue 10 point 14, issue 15
 * s4).  A token is MILLI units and a bucket of `cap` tokens refills `cap`
 * units per millisecond (cap tokens per minute), lazily from the time of
 * the last update: integer arithmetic without rounding loss. */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "ratelimit.h"

#define MINUTE_MS 60000
#define MILLI MINUTE_MS

struct bucket {
	int64_t milli;   /* tokens x MILLI */
	int64_t at;      /* time of the last update */
};

struct slot {
	char addr[RATELIMIT_ADDR_MAX];	/* "" when free */
	struct bucket b;
};

/* checked and counted from the loop and from the signing threads
 * (workers.h): every public call holds mu */
struct ratelimit {
	pthread_mutex_t mu;
	unsigned burst, global;
	struct bucket g;
	size_t nslots;
	struct slot *slots;
};

int64_t ratelimit_now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Refill: `cap` tokens per minute, at most `cap`. */
static void refill(struct bucket *b, unsigned cap, int64_t now)
{
	int64_t full = (int64_t)cap * MILLI, dt = now - b->at;

	if (dt > 0) {
		/* dt up to a minute is enough to fill any bucket */
		if (dt > MINUTE_MS)
			dt = MINUTE_MS;
		b->milli += dt * (int64_t)cap;
		b->at = now;
	} else if (dt < 0) {
		b->at = now; /* clock went back: never refill from it */
	}
	if (b->milli > full)
		b->milli = full;
}

/* Milliseconds until the bucket holds one token. */
static int64_t wait_ms(const struct bucket *b, unsigned cap)
{
	int64_t need = MILLI - b->milli;

	if (need <= 0)
		return 0;
	return (need + (int64_t)cap - 1) / (int64_t)cap;
}

ratelimit *ratelimit_new(unsigned burst, unsigned global, int *oom)
{
	ratelimit *rl = NULL;
	size_t n;

	if (oom != NULL)
		*oom = 0;
	if (burst == 0)
		return NULL;
	if (global > RATELIMIT_GLOBAL_MAX)
		global = RATELIMIT_GLOBAL_MAX;
	/* at most 2*global buckets can be partly drained within a minute, so
	 * with a global ceiling a full slot is always there to take */
	n = 2 * (size_t)global + 64;
	if (n < RATELIMIT_MIN_SLOTS)
		n = RATELIMIT_MIN_SLOTS;
	if ((rl = calloc(1, sizeof *rl)) == NULL || (rl->slots = calloc(n, sizeof *rl->slots)) == NULL) {
		free(rl);
		if (oom != NULL)
			*oom = 1;
		return NULL;
	}
	pthread_mutex_init(&rl->mu, NULL);
	rl->burst = burst;
	rl->global = global;
	rl->nslots = n;
	rl->g.milli = (int64_t)global * MILLI;
	return rl;
}

void ratelimit_free(ratelimit **rlp)
{
	if (rlp == NULL || *rlp == NULL)
		return;
	pthread_mutex_destroy(&(*rlp)->mu);
	free((*rlp)->slots);
	free(*rlp);
	*rlp = NULL;
}

/* The slot of addr; when absent and `take`, a free or full slot made its
 * own; NULL when absent (and none to take).  *full_free: whether a slot
 * could be taken. */
static struct slot *find(ratelimit *rl, const char *addr, int64_t now, int take, int *can_take)
{
	struct slot *spare = NULL;
	size_t i;
	char key[RATELIMIT_ADDR_MAX];

	strncpy(key, addr != NULL ? addr : "", sizeof key - 1);
	key[sizeof key - 1] = '\0';
	for (i = 0; i < rl->nslots; i++) {
		struct slot *s = &rl->slots[i];

		if (s->addr[0] != '\0') {
			if (strcmp(s->addr, key) == 0)
				return s;
			refill(&s->b, rl->burst, now);
			if (s->b.milli < (int64_t)rl->burst * MILLI)
				continue; /* holds state: never evicted */
		}
		if (spare == NULL)
			spare = s;
	}
	if (can_take != NULL)
		*can_take = spare != NULL;
	if (spare == NULL || !take)
		return NULL;
	memcpy(spare->addr, key, sizeof key);
	spare->b.milli = (int64_t)rl->burst * MILLI;
	spare->b.at = now;
	return spare;
}

/* The earliest time a slot becomes full again. */
static int64_t first_free_ms(ratelimit *rl)
{
	int64_t best = MINUTE_MS, w;
	size_t i;

	for (i = 0; i < rl->nslots; i++) {
		w = ((int64_t)rl->burst * MILLI - rl->slots[i].b.milli) / (int64_t)rl->burst;
		if (w < best)
			best = w;
	}
	return best;
}

static long to_sec(int64_t ms)
{
	long s = (long)((ms + 999) / 1000);

	return s < 1 ? 1 : s;
}

long ratelimit_check(ratelimit *rl, const char *addr, int64_t now_ms)
{
	struct slot *s;
	int can_take = 0;
	int64_t w = 0, gw = 0;

	if (rl == NULL)
		return 0;
	pthread_mutex_lock(&rl->mu);
	s = find(rl, addr, now_ms, 0, &can_take);
	if (s != NULL) {
		refill(&s->b, rl->burst, now_ms);
		w = wait_ms(&s->b, rl->burst);
	} else if (!can_take) {
		w = first_free_ms(rl); /* table full of drained buckets */
	}
	if (rl->global > 0) {
		refill(&rl->g, rl->global, now_ms);
		gw = wait_ms(&rl->g, rl->global);
	}
	if (gw > w)
		w = gw;
	pthread_mutex_unlock(&rl->mu);
	return w > 0 ? to_sec(w) : 0;
}

void ratelimit_fail(ratelimit *rl, const char *addr, int64_t now_ms)
{
	struct slot *s;

	if (rl == NULL)
		return;
	pthread_mutex_lock(&rl->mu);
	if ((s = find(rl, addr, now_ms, 1, NULL)) != NULL) {
		refill(&s->b, rl->burst, now_ms);
		s->b.milli -= MILLI;
		if (s->b.milli < 0)
			s->b.milli = 0;
	}
	if (rl->global > 0) {
		refill(&rl->g, rl->global, now_ms);
		rl->g.milli -= MILLI;
		if (rl->g.milli < 0)
			rl->g.milli = 0;
	}
	pthread_mutex_unlock(&rl->mu);
}
