/*
 * What the store backends (store/sqlite.c, store/postgresql.c) share: the
 * names of states and lifetimes as stored, and argument checks.  Not for
 * the store's users (they include store.h).
 */
#ifndef P11CA_STORE_COMMON_H
#define P11CA_STORE_COMMON_H

#include "store.h"

/* as stored in requests.state / requests.lifetime, by enum value */
extern const char *const store_state_names[3];
extern const char *const store_lifetime_names[2];

/* index of s in names[0..n), -1 when absent (or s NULL) */
int store_name_index(const char *s, const char *const *names, size_t n);
/* the stored name of a lifetime, NULL when out of range */
const char *store_lifetime_name(req_lifetime l);
/* lowercase hex, between min and max characters, NUL within size */
int store_hex_ok(const char *s, size_t size, size_t min, size_t max);
/* req_add's argument checks, for the request to be stored in state, and
 * cert_add's: STORE_OK, or STORE_ERROR with the reason in err */
store_result store_req_check(const struct store_request *req, req_state state, char *err, size_t errlen);
store_result store_cert_check(const struct store_cert *c, char *err, size_t errlen);

/* the same schema in both: the columns each backend's read_request() and
 * read_cert() take, in this order */
/* column order read by read_request() */
#define REQ_COLS \
	"r.id, r.sha256, r.pem, r.subject, r.cn, r.ou, r.state, r.lifetime," \
	" r.protocol, r.created, r.updated," \
	" (SELECT count(*) FROM certificates c WHERE c.request_id = r.id)"

/* column order read by read_cert() */
#define CERT_COLS \
	"id, request_id, serial, pem, not_before, not_after, created, revoked," \
	" revoke_reason"

#endif
