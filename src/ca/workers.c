/* p11ca: the signing threads (workers.h). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include "workers.h"

struct job {
	httpd_req *d;
	const struct ca_route *route;
	int token_json;
};

struct worker {
	pthread_t thread;
	int started;
	struct ca ca;                /* shallow copy of sv->ca but for st */
	struct ca_workers *w;
};

struct ca_workers {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	struct job *q;               /* ring of cap */
	size_t cap, head, n;
	int stopping;
	const struct ca_served *sv;
	struct worker *wk;
	long nwk;
};

long ca_workers_auto(const struct ca *ca)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);

	if (ca->p11 != NULL && p11c_ctx_threads_ok(ca->p11) == 0)
		return 1;
	if (n < 2)
		n = 2;
	return n > 8 ? 8 : n;
}

static void run(struct worker *wk, const struct job *j)
{
	struct ca_request rq;

	ca_request_init(&rq, wk->w->sv, &wk->ca, j->d);
	j->route->handle(&rq);
	ERR_clear_error();
	httpd_req_done(j->d);
}

static void *worker_main(void *arg)
{
	struct worker *wk = arg;
	struct ca_workers *w = wk->w;
	struct job j;

	pthread_mutex_lock(&w->mu);
	for (;;) {
		while (w->n == 0 && !w->stopping)
			pthread_cond_wait(&w->cv, &w->mu);
		if (w->n == 0)
			break;
		j = w->q[w->head];
		w->head = (w->head + 1) % w->cap;
		w->n--;
		if (w->stopping) {
			/* stopping: nothing new is signed; the client retries
			 * with an instance that serves */
			struct ca_request rq;

			pthread_mutex_unlock(&w->mu);
			ca_request_init(&rq, w->sv, &wk->ca, j.d);
			reply_busy(&rq, j.token_json);
			httpd_req_done(j.d);
			pthread_mutex_lock(&w->mu);
			continue;
		}
		pthread_mutex_unlock(&w->mu);
		run(wk, &j);
		pthread_mutex_lock(&w->mu);
	}
	pthread_mutex_unlock(&w->mu);
	return NULL;
}

int ca_workers_start(struct ca_workers **out, const struct ca_served *sv, long n, long queue)
{
	struct ca_workers *w;
	long i;

	*out = NULL;
	if (n < 1 || n > CA_SIGNERS_MAX || queue < 1)
		return -1;
	if ((w = calloc(1, sizeof *w)) == NULL || (w->q = calloc((size_t)queue, sizeof *w->q)) == NULL ||
	    (w->wk = calloc((size_t)n, sizeof *w->wk)) == NULL) {
		ca_err("out of memory");
		if (w != NULL)
			free(w->q);
		free(w);
		return -1;
	}
	pthread_mutex_init(&w->mu, NULL);
	pthread_cond_init(&w->cv, NULL);
	w->cap = (size_t)queue;
	w->sv = sv;
	w->nwk = n;
	*out = w;
	for (i = 0; i < n; i++) {
		struct worker *wk = &w->wk[i];

		wk->w = w;
		wk->ca = *sv->ca;
		wk->ca.st = NULL;
		if (ca_store_open(sv->ca, &wk->ca.st) != 0)
			goto fail;
		if (pthread_create(&wk->thread, NULL, worker_main, wk) != 0) {
			ca_err("cannot start signing thread %ld of %ld", i + 1, n);
			goto fail;
		}
		wk->started = 1;
	}
	return 0;
fail:
	ca_workers_stop(out);
	return -1;
}

int ca_workers_full(struct ca_workers *w)
{
	int full;

	pthread_mutex_lock(&w->mu);
	full = w->n >= w->cap;
	pthread_mutex_unlock(&w->mu);
	return full;
}

void ca_workers_submit(struct ca_workers *w, httpd_req *d, const struct ca_route *route, int token_json)
{
	struct job *j;

	pthread_mutex_lock(&w->mu);
	/* ca_workers_full said there is room, and only this thread adds */
	j = &w->q[(w->head + w->n) % w->cap];
	j->d = d;
	j->route = route;
	j->token_json = token_json;
	w->n++;
	pthread_cond_signal(&w->cv);
	pthread_mutex_unlock(&w->mu);
}

void ca_workers_stop(struct ca_workers **wp)
{
	struct ca_workers *w;
	long i;

	if (wp == NULL || (w = *wp) == NULL)
		return;
	*wp = NULL;
	pthread_mutex_lock(&w->mu);
	w->stopping = 1;
	pthread_cond_broadcast(&w->cv);
	pthread_mutex_unlock(&w->mu);
	for (i = 0; i < w->nwk; i++) {
		struct worker *wk = &w->wk[i];

		if (wk->started)
			pthread_join(wk->thread, NULL);
		if (wk->ca.st != NULL)
			wk->ca.so->close(&wk->ca.st);
	}
	pthread_cond_destroy(&w->cv);
	pthread_mutex_destroy(&w->mu);
	free(w->wk);
	free(w->q);
	free(w);
}
