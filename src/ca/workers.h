/*
 * p11ca: signing off the event loop (issue 13).  Requests whose route may
 * sign (struct ca_route.offload) are detached from the loop
 * (httpd_req_detach) and queued here; N threads take them in order, each
 * with its own struct ca: the shared configuration, CA certificate and
 * signing key, and its own store connection.  The CA key signs from all of
 * them at once where the PKCS#11 module allows it (p11c_ctx_threads_ok;
 * one session per signer, p11c_ctx_set_sign_sessions), else one at a
 * time; the loop meanwhile answers root.crt, polls and handshakes.  A
 * full queue is answered 503 with Retry-After at once.
 */
#ifndef P11CA_WORKERS_H
#define P11CA_WORKERS_H

#include <stddef.h>

#include "request.h"

struct ca_workers;

/* How many signers `signers = auto` means for this CA: 1 when the key is in
 * a module that cannot run threads (serialised), else the CPUs online,
 * from 2 to 8. */
long ca_workers_auto(const struct ca *ca);
/* Start n threads (1..CA_SIGNERS_MAX) serving sv with a queue of `queue`
 * waiting requests; sv must outlive them.  0 or -1 (message printed). */
int ca_workers_start(struct ca_workers **out, const struct ca_served *sv, long n, long queue);
/* 1 when a request would have to wait beyond the queue (answer 503). */
int ca_workers_full(struct ca_workers *w);
/* Queue a detached request for route->handle (never refused after
 * ca_workers_full said 0: only the loop's thread submits); token_json:
 * the shared-token protocol's JSON for a 503 at stop (reply_busy). */
void ca_workers_submit(struct ca_workers *w, httpd_req *d, const struct ca_route *route, int token_json);
/* Stop: the running requests finish, those still queued are answered 503
 * (nothing of theirs was stored), the threads are joined and their store
 * connections closed.  Before httpd_free. */
void ca_workers_stop(struct ca_workers **w);

#endif
