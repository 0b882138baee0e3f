/*
 * p11ca storage: requests, certificates, access log.  A small table of
 * functions so that a PostgreSQL backend can follow the SQLite one
 * (store/sqlite.c) without #ifdefs (the shape of curl's struct Curl_ssl).
 *
 * Every write is one transaction, committed before the function returns:
 * a caller that acknowledges to a client after a successful call never
 * acknowledges something a crash could lose.  req_add_signed stores a
 * request and its first certificate in one such transaction.
 */
#ifndef P11CA_STORE_H
#define P11CA_STORE_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef enum {
	STORE_OK = 0,
	STORE_NOT_FOUND,
	STORE_DUPLICATE,  /* unique constraint (sha256 or serial) */
	STORE_BUSY,       /* locked longer than the busy timeout */
	STORE_ERROR,      /* anything else; see store_errmsg() */
	STORE_NOMEM,
	/* a compare-and-set state change lost: the request was rejected, or
	 * the key (or the request's last certificate) revoked, meanwhile */
	STORE_CONFLICT,
	/* the database cannot be reached now (PostgreSQL): retry later */
	STORE_UNAVAILABLE,
} store_result;

typedef enum {
	REQ_PENDING = 0,
	REQ_SIGNED,
	REQ_REJECTED,
} req_state;

typedef enum {
	LIFETIME_SHORT = 0,
	LIFETIME_LONG,
} req_lifetime;

struct store_request {
	int64_t id;
	char sha256[65];      /* lowercase hex of the CSR PEM bytes */
	char *pem;            /* CSR PEM exactly as received */
	char *subject;        /* RFC 2253 one-line */
	char *cn;
	char *ou;             /* may be NULL */
	req_state state;
	req_lifetime lifetime;
	char protocol[16];    /* "caramel", "token", "admin" */
	int64_t created;      /* unix seconds */
	int64_t updated;
	int64_t signed_count; /* number of certificates issued for it */
};

struct store_cert {
	int64_t id;
	int64_t request_id;
	char serial[66];      /* lowercase hex, no leading zeros beyond one byte */
	char *pem;
	int64_t not_before;
	int64_t not_after;
	int64_t created;
	int64_t revoked;      /* 0: not revoked, else unix time */
	int revoke_reason;    /* RFC 5280 CRLReason, -1 when none */
	/* issue 10 (revocation sticks): read by cert_add */
	char keyid[65];       /* lowercase hex SHA-256 of the SPKI DER; "" unknown */
	int explicit_sign;    /* an administrator's `p11ca sign`: a revoked key may be certified again */
	int set_lifetime;     /* cert_add also sets the request's lifetime to `lifetime` */
	req_lifetime lifetime;
};

struct store_access {
	int64_t time;
	const char *peer;     /* "127.0.0.1:53122" */
	const char *method;
	const char *path;
	int status;
	int64_t bytes;        /* response body bytes */
	const char *protocol; /* "caramel" / "token" / NULL */
	const char *detail;   /* short reason, may be NULL; never a secret */
};

typedef struct store store;

struct store_ops {
	const char *name;
	store_result (*open)(store **out, const char *location);
	void (*close)(store **st);
	const char *(*errmsg)(store *st);

	/* requests */
	store_result (*req_add)(store *st, const struct store_request *r, int64_t *id);
	store_result (*req_by_sha256)(store *st, const char *sha256, struct store_request *out);
	store_result (*req_by_id)(store *st, int64_t id, struct store_request *out);
	store_result (*req_set_state)(store *st, int64_t id, req_state state,
				      req_lifetime lifetime, int64_t now);
	/* filter: -1 all, else a req_state.  cb returns non-zero to stop. */
	store_result (*req_list)(store *st, int filter,
				 int (*cb)(const struct store_request *r, void *ud), void *ud);
	/* every request that is not rejected and has been signed at least once */
	store_result (*req_list_signed)(store *st,
					int (*cb)(const struct store_request *r, void *ud), void *ud);

	/* certificates */
	/* Adds the certificate and sets the request's state to signed, in one
	 * transaction.  STORE_DUPLICATE when the serial exists.  Compare and
	 * set: STORE_CONFLICT (nothing stored) when the request is rejected,
	 * or, unless c->explicit_sign, when its last certificate is revoked or
	 * a certificate for the same c->keyid was revoked after the last
	 * explicit signature for that key.  A rejection or revocation that
	 * commits first therefore always wins over a signature in flight. */
	store_result (*cert_add)(store *st, const struct store_cert *c, int64_t now);
	/* the certificate issued last for a request (what Caramel GET serves) */
	store_result (*cert_latest)(store *st, int64_t request_id, struct store_cert *out);
	store_result (*cert_by_serial)(store *st, const char *serial, struct store_cert *out);
	store_result (*cert_revoke)(store *st, const char *serial, int reason, int64_t when);
	store_result (*cert_list_revoked)(store *st,
					  int (*cb)(const struct store_cert *c, void *ud), void *ud);
	store_result (*cert_list)(store *st, int64_t request_id,
				  int (*cb)(const struct store_cert *c, void *ud), void *ud);
	int (*serial_exists)(store *st, const char *serial); /* 1 yes, 0 no, -1 error */

	/* access log */
	store_result (*log_access)(store *st, const struct store_access *a);

	/* --- CA policy (issue 10 points 2, 12); new ops go at the end --- */
	/* The next CRL number (RFC 5280 s5.2.3): 1, 2, ... stored, never reused. */
	store_result (*crl_next_number)(store *st, int64_t *out);
	/* *revoked = 1 when a certificate for keyid was revoked after the last
	 * explicit signature for that key (the rule of cert_add). */
	store_result (*key_revoked)(store *st, const char *keyid, int *revoked);

	/* state folder checks (statedir.c): STORE_OK when a write could be
	 * made now */
	store_result (*writable)(store *st);
	/* n access-log rows in one transaction (one flush), then only the
	 * newest `keep` rows stay (keep 0: none are stored) */
	store_result (*log_access_batch)(store *st, const struct store_access *a, size_t n, int64_t keep);

	/* --- several instances on one database (issue 13); NULL in SQLite --- */
	/* 1 when the database is unreachable (the last call failed with
	 * STORE_UNAVAILABLE and a reconnection, tried when due, failed) */
	int (*down)(store *st);
	/* take (1) or release (0) the database-wide lock `name`: "refresh"
	 * (STORE_BUSY at once when another instance holds it) or "crl" (waits) */
	store_result (*exclusive)(store *st, const char *name, int take);
	/* wrong shared-token HMACs counted by every instance: at most burst
	 * per address and global (0: no ceiling) in all per wall-clock minute;
	 * fail 0: *wait_s = seconds until addr may guess (0: now); fail 1:
	 * count one */
	store_result (*guess)(store *st, const char *addr, unsigned burst, unsigned global, int fail,
			      int64_t now_s, long *wait_s);

	/* --- one transaction per request (issue 13) --- */
	/* A new request stored already signed, with its first certificate, in
	 * one transaction: one commit where req_add + cert_add make two.  r as
	 * for req_add (stored in state REQ_SIGNED whatever r->state says); c as
	 * for cert_add, its request_id ignored (the new request's id is used).
	 * *id: the new request's id.  STORE_DUPLICATE, nothing stored: with
	 * *exists = 1 when a request with r->sha256 is there already (*id is
	 * that one's), with *exists = 0 when c->serial is taken (draw another
	 * serial).  STORE_CONFLICT, nothing stored: a certificate for c->keyid
	 * was revoked (the rule of cert_add; c->explicit_sign lifts it). */
	store_result (*req_add_signed)(store *st, const struct store_request *r, const struct store_cert *c,
				       int64_t now, int64_t *id, int *exists);
};

/* The SQLite backend: location is the database file path. */
extern const struct store_ops store_sqlite_ops;

/* The PostgreSQL backend (store/postgresql.c): location is a
 * postgresql:// URI; store_pg_open also takes the password file
 * (db-password-file, may be NULL: libpq's PGPASSFILE / service file). */
extern const struct store_ops store_pg_ops;
store_result store_pg_open(store **out, const char *uri, const char *password_file);
/* 1 when location is a postgresql:// (or postgres://) URI */
int store_is_pg(const char *location);
/* uri for messages: a password (user:PASSWORD@, password=) shown as *** */
void store_pg_redact(const char *uri, char *out, size_t size);

/* Free the strings inside (not the struct itself); NULL-safe, idempotent. */
void store_request_clear(struct store_request *r);
void store_cert_clear(struct store_cert *c);
const char *store_state_name(req_state s);

#endif
