/* p11ca serve: shared state of the request handlers. */
#ifndef P11CA_SERVE_H
#define P11CA_SERVE_H

#include "ca.h"
#include "httpd.h"

#define CARAMEL_MAX_CSR 2048      /* upstream's limit: larger bodies are 413 */
#define SERVE_MAX_BODY (64 * 1024) /* anything larger is refused by httpd */
#define RATE_SLOTS 256

enum { LISTENER_MAIN = 1, LISTENER_TOKEN = 2 };

struct rate_slot {
	char peer[64];   /* address without port */
	time_t window;   /* start of the current minute */
	long failures;
};

struct server {
	struct ca *ca;
	char *ca_pem;                /* CA certificate PEM (root.crt) */
	size_t ca_pem_len;
	unsigned char *token;        /* shared token, wiped at exit */
	size_t token_len;
	int token_on_main;           /* token protocol at POST / of the main listener */
	struct rate_slot rate[RATE_SLOTS];
};

void caramel_handle(struct server *s, httpd_req *r);
void token_handle(struct server *s, httpd_req *r);
/* POST /renew: shared-token identities renewed over mTLS (tokenrenew.c) */
void token_renew_handle(struct server *s, httpd_req *r);
/* application/problem+json reply */
void reply_problem(httpd_req *r, int status, const char *title, const char *detail);

#endif
