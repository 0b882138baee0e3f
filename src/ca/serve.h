/* p11ca serve: shared state of the request handlers. */
#ifndef P11CA_SERVE_H
#define P11CA_SERVE_H

#include "ca.h"
#include "httpd.h"
#include "ratelimit.h"

#define CARAMEL_MAX_CSR 2048      /* upstream's limit: larger bodies are 413 */
#define SERVE_MAX_BODY (64 * 1024) /* anything larger is refused by httpd */

enum { LISTENER_MAIN = 1, LISTENER_TOKEN = 2 };

/* Access-log rows wait here and go to the database in one transaction
 * per ALOG_BATCH rows or per second (issue 10 point 8). */
#define ALOG_BATCH 64
struct alog_row {
	int64_t time, bytes;
	int status;
	char peer[64], method[16], path[256], protocol[32], detail[256];
};
struct alog {
	struct alog_row rows[ALOG_BATCH];
	size_t n;
	time_t last_flush;
};

struct server {
	struct ca *ca;
	char *ca_pem;                /* CA certificate PEM (root.crt) */
	size_t ca_pem_len;
	unsigned char *token;        /* shared token, wiped at exit */
	size_t token_len;
	int token_on_main;           /* token protocol at POST / of the main listener */
	ratelimit *rl;               /* wrong HMACs (NULL: no limit) */
	struct alog *alog;           /* NULL: access log not stored */
};

void caramel_handle(struct server *s, httpd_req *r);
void token_handle(struct server *s, httpd_req *r);
/* POST /renew: shared-token identities renewed over mTLS (tokenrenew.c) */
void token_renew_handle(struct server *s, httpd_req *r);
/* application/problem+json reply */
void reply_problem(httpd_req *r, int status, const char *title, const char *detail);

#endif
