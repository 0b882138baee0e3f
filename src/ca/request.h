/* p11ca: what a served protocol sees of the server (the request context)
 * and the table of served protocols (docs/architecture.md, "Served
 * protocols").  A protocol file in src/ca/proto/ includes this header
 * only: never serve.c's struct server, the access log or the listeners. */
#ifndef P11CA_REQUEST_H
#define P11CA_REQUEST_H

#include <stddef.h>

#include "ca.h"
#include "httpd.h"
#include "ratelimit.h"

#define SERVE_MAX_BODY (64 * 1024) /* anything larger is refused by httpd */

/* httpd_req_listener(): the main listener, or the second one presenting
 * the CA certificate (token-listen) */
enum { LISTENER_MAIN = 1, LISTENER_TOKEN = 2 };

/* Built once by ca_serve (or a test harness) and shared by every request. */
struct ca_served {
	struct ca *ca;               /* configuration, store (ca->so, ca->st), signing */
	char *ca_pem;                /* CA certificate PEM (root.crt) */
	size_t ca_pem_len;
	unsigned char *token;        /* shared token (NULL: off), wiped at exit */
	size_t token_len;
	int token_on_main;           /* token protocol at POST / of the main listener */
	ratelimit *rl;               /* wrong HMACs (NULL: no limit) */
	struct est_server *est;      /* DIR/est.conf (NULL: EST off), proto/est.h */
	struct ca_workers *workers;  /* signing threads (NULL: handlers sign on the loop) */
};

/* One request as a handler gets it: the HTTP exchange (method, path,
 * headers, body bounded by httpd, peer address and verified client
 * certificate, the reply), the CA with its store, the limiter. */
struct ca_request {
	httpd_req *r;
	int listener;                /* LISTENER_MAIN or LISTENER_TOKEN */
	struct ca *ca;
	const char *ca_pem;
	size_t ca_pem_len;
	const unsigned char *token;  /* NULL: shared-token enrollment off */
	size_t token_len;
	int token_on_main;
	ratelimit *rl;
	struct est_server *est;
	/* non-NULL only on the event loop of a server with signing threads: a
	 * handler that finds it must sign after all (offload() could not
	 * tell) sets *defer to 1 and returns without replying; ca_dispatch
	 * then hands the request to a signing thread, where handle() runs
	 * again from the start */
	int *defer;
};

/* One route of a served protocol: match() says whether it takes the
 * request (method, path, listener); handle() replies to it.  offload()
 * (NULL: never) says whether handle() may sign (or wait on the store's
 * locks) for this request: then, when the server has signing threads
 * (workers.h), handle() runs on one of them, with that thread's own
 * struct ca (its own store connection) in rq->ca and a detached copy of
 * the request in rq->r; everything else stays on the event loop. */
struct ca_route {
	int (*match)(const struct ca_request *rq);
	void (*handle)(const struct ca_request *rq);
	int (*offload)(const struct ca_request *rq);
};

/* The request context of R for a handler using CA (serve.c). */
void ca_request_init(struct ca_request *rq, const struct ca_served *sv, struct ca *ca, httpd_req *r);

/* A served protocol: one file in src/ca/proto/ defines one of these.
 * serve.c tries the protocols in the order of its table and, within one,
 * the routes in order; the first match handles the request. */
struct ca_protocol {
	const char *name;            /* as in the access log and ca.md */
	const char *description;
	const struct ca_route *routes;
	size_t nroutes;
};

extern const struct ca_protocol ca_proto_sharedtoken; /* proto/sharedtoken.c */
extern const struct ca_protocol ca_proto_est;         /* proto/est.c: /.well-known/est/ */
extern const struct ca_protocol ca_proto_caramel;     /* proto/caramel.c: the main listener's catch-all */

/* Hand R to the first served protocol whose route matches (serve.c). */
void ca_dispatch(const struct ca_served *sv, httpd_req *r);

/* POST /renew of the shared-token protocol (proto/sharedtoken_renew.c) */
void token_renew_handle(const struct ca_request *rq);
/* The client's address without the port (proto/sharedtoken.c) */
void peer_addr(httpd_req *r, char *buf, size_t len);
/* application/problem+json reply (proto/caramel.c) */
void reply_problem(httpd_req *r, int status, const char *title, const char *detail);
/* When the store is unreachable (ca_store_down): 503 with Retry-After
 * (problem+json, or the token protocol's JSON), and 1; else 0, nothing
 * sent (proto/caramel.c; issue 13) */
#define STORE_RETRY_AFTER "5"
int reply_store_down(const struct ca_request *rq, int token_json);
/* 503 with Retry-After: every signing thread busy and the queue full
 * (workers.h); the same shapes as reply_store_down */
#define BUSY_RETRY_AFTER "2"
void reply_busy(const struct ca_request *rq, int token_json);

#endif
