/*
 * SQLite backend of the p11ca store (store.h).
 *
 * One connection per handle, opened SQLITE_OPEN_FULLMUTEX.  Each operation
 * also holds the connection's mutex (recursive in that mode) from its first
 * statement to its last, so that threads sharing a handle never interleave
 * one operation's statements, transaction or error text with another's.
 * The database is WAL with synchronous=FULL: what a function committed is on
 * disk when it returns.
 *
 * open: on any failure but STORE_NOMEM, *out still receives a handle whose
 * ops->errmsg() says what went wrong (as with sqlite3_open); the caller
 * closes it.  Every other function fails with STORE_ERROR on such a handle.
 *
 * Lists are read in pages of LIST_PAGE rows by increasing id, and the
 * callback runs with no statement open and no lock held, so it may call into
 * the same handle, writes included.  A list is therefore not one snapshot:
 * each row is seen at most once, in id order.
 *
 * Output structs are zeroed on entry (store_*_clear() is always safe after a
 * call) and filled only on STORE_OK.
 *
 * Statements are kept prepared: prepare() hands out a cached statement for
 * the same SQL text when one is free (parsing and planning were about a
 * seventh of p11ca's CPU per enrollment), and finish() resets it, clears its
 * bindings and puts it back, so that no read transaction stays open.  Past
 * STMT_CACHE statements, or when the cached one is in use, a statement is
 * prepared and finalized as before.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <sqlite3.h>

#include "common.h"

#define BUSY_TIMEOUT_MS 10000
#define LIST_PAGE 64
#define STMT_CACHE 32

struct cached_stmt {
	sqlite3_stmt *s; /* NULL: a free slot */
	int busy;	 /* handed out by prepare(), not yet finish()ed */
};

struct store {
	const struct store_ops *ops; /* first, as every backend's handle */
	sqlite3 *db;
	struct cached_stmt cache[STMT_CACHE];
	char err[256];
};

/*
 * migrations[i] takes the schema from version i to i + 1.  Append only:
 * a released migration is never edited.
 */
static const char *const migrations[] = {
	/* 1 */
	"CREATE TABLE requests("
	"  id INTEGER PRIMARY KEY,"
	"  sha256 TEXT NOT NULL UNIQUE,"
	"  pem TEXT NOT NULL,"
	"  subject TEXT NOT NULL,"
	"  cn TEXT NOT NULL,"
	"  ou TEXT,"
	"  state TEXT NOT NULL CHECK(state IN ('pending','signed','rejected')),"
	"  lifetime TEXT NOT NULL DEFAULT 'short' CHECK(lifetime IN ('short','long')),"
	"  protocol TEXT NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  updated INTEGER NOT NULL);"
	"CREATE TABLE certificates("
	"  id INTEGER PRIMARY KEY,"
	"  request_id INTEGER NOT NULL REFERENCES requests(id) ON DELETE CASCADE,"
	"  serial TEXT NOT NULL UNIQUE,"
	"  pem TEXT NOT NULL,"
	"  not_before INTEGER NOT NULL,"
	"  not_after INTEGER NOT NULL,"
	"  created INTEGER NOT NULL,"
	"  revoked INTEGER NOT NULL DEFAULT 0,"
	"  revoke_reason INTEGER NOT NULL DEFAULT -1);"
	"CREATE INDEX certificates_request_id ON certificates(request_id);"
	"CREATE TABLE access_log("
	"  id INTEGER PRIMARY KEY,"
	"  time INTEGER NOT NULL,"
	"  peer TEXT,"
	"  method TEXT,"
	"  path TEXT,"
	"  status INTEGER,"
	"  bytes INTEGER,"
	"  protocol TEXT,"
	"  detail TEXT);",
	/* 2: revocation that sticks to the key (issue 10 point 2): each
	 * certificate's SPKI SHA-256, whether an administrator signed it
	 * explicitly, revoke_seq (the highest certificate id when it was
 * revoked: orders a revocation against explicit signatures exactly, where
 * seconds would tie), and the CRL number (RFC 5280 s5.2.3).  Existing rows
	 * get their keyid from their PEM (p11ca_pem_keyid, registered in
	 * sq_open), so keys revoked before the upgrade stay revoked. */
	"ALTER TABLE certificates ADD COLUMN keyid TEXT;"
	"ALTER TABLE certificates ADD COLUMN explicit INTEGER NOT NULL DEFAULT 0;"
	"ALTER TABLE certificates ADD COLUMN revoke_seq INTEGER;"
	"UPDATE certificates SET keyid = p11ca_pem_keyid(pem);"
	"UPDATE certificates SET revoke_seq = (SELECT max(id) FROM certificates)"
	"  WHERE revoked != 0;"
	"CREATE INDEX certificates_keyid ON certificates(keyid);"
	"CREATE TABLE crl_number(id INTEGER PRIMARY KEY CHECK(id = 1),"
	"  last INTEGER NOT NULL);",
	/* 3: as PostgreSQL's migration 3 (a request's newest certificate in
	 * one index probe), so both backends have one schema and one version;
	 * here the (request_id) index already ended in the rowid */
	"CREATE INDEX certificates_request_newest ON certificates(request_id, id DESC);"
	"DROP INDEX certificates_request_id;",
};

#define SCHEMA_VERSION ((int64_t)(sizeof(migrations) / sizeof(migrations[0])))


/* ---- strings and errors ---- */





__attribute__((format(printf, 2, 3)))
static void set_err(store *st, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(st->err, sizeof(st->err), fmt, ap);
	va_end(ap);
}

static store_result map_rc(int rc)
{
	switch (rc & 0xff) {
	case SQLITE_BUSY:
	case SQLITE_LOCKED:
		return STORE_BUSY;
	case SQLITE_NOMEM:
		return STORE_NOMEM;
	default:
		return STORE_ERROR;
	}
}

/* Record "what: <sqlite text>" and map rc to a store_result (never OK). */
static store_result db_fail(store *st, int rc, const char *what)
{
	const char *msg = sqlite3_errstr(rc);

	/* sqlite3_errmsg() has the detail only if rc came from the last call */
	if (st->db != NULL && sqlite3_extended_errcode(st->db) == rc)
		msg = sqlite3_errmsg(st->db);
	set_err(st, "%s: %s", what, msg);
	return map_rc(rc);
}

static int ready(store *st)
{
	if (st == NULL)
		return 0;
	if (st->db == NULL) {
		set_err(st, "database is not open");
		return 0;
	}
	return 1;
}

static void lock(store *st)
{
	sqlite3_mutex_enter(sqlite3_db_mutex(st->db));
}

static void unlock(store *st)
{
	sqlite3_mutex_leave(sqlite3_db_mutex(st->db));
}


/* ---- statements and transactions ---- */

static store_result prepare(store *st, const char *sql, sqlite3_stmt **s,
			    const char *what)
{
	struct cached_stmt *free_slot = NULL;
	size_t i;
	int rc;

	*s = NULL;
	for (i = 0; i < STMT_CACHE; i++) {
		struct cached_stmt *c = &st->cache[i];

		if (c->s == NULL) {
			if (free_slot == NULL)
				free_slot = c;
		} else if (!c->busy && strcmp(sqlite3_sql(c->s), sql) == 0) {
			c->busy = 1;
			*s = c->s;
			return STORE_OK;
		}
	}
	rc = sqlite3_prepare_v3(st->db, sql, -1, free_slot ? SQLITE_PREPARE_PERSISTENT : 0, s,
				NULL);
	if (rc != SQLITE_OK) {
		*s = NULL;
		return db_fail(st, rc, what);
	}
	if (free_slot != NULL && *s != NULL) {
		free_slot->s = *s;
		free_slot->busy = 1;
	}
	return STORE_OK;
}

/* The end of a statement from prepare(): back to the cache, reset and with
 * its bindings cleared, or finalized if it was not cached.  NULL is a no-op. */
static void finish(store *st, sqlite3_stmt *s)
{
	size_t i;

	if (s == NULL)
		return;
	for (i = 0; i < STMT_CACHE; i++) {
		if (st->cache[i].s == s) {
			sqlite3_reset(s);
			sqlite3_clear_bindings(s);
			st->cache[i].busy = 0;
			return;
		}
	}
	sqlite3_finalize(s);
}

static void cache_free(store *st)
{
	size_t i;

	for (i = 0; i < STMT_CACHE; i++) {
		sqlite3_finalize(st->cache[i].s);
		st->cache[i].s = NULL;
		st->cache[i].busy = 0;
	}
}

/* NULL binds SQL NULL; t must outlive the statement's step */
static int bind_text(sqlite3_stmt *s, int i, const char *t)
{
	return sqlite3_bind_text(s, i, t, -1, SQLITE_STATIC);
}

static store_result step_done(store *st, sqlite3_stmt *s, const char *what)
{
	int rc;

	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE)
		return STORE_OK;
	if (rc == SQLITE_ROW) {
		set_err(st, "%s: unexpected row", what);
		return STORE_ERROR;
	}
	return db_fail(st, rc, what);
}

static store_result exec(store *st, const char *sql, const char *what)
{
	int rc;

	rc = sqlite3_exec(st->db, sql, NULL, NULL, NULL);
	if (rc != SQLITE_OK)
		return db_fail(st, rc, what);
	return STORE_OK;
}

static void tx_rollback(store *st)
{
	if (!sqlite3_get_autocommit(st->db))
		sqlite3_exec(st->db, "ROLLBACK", NULL, NULL, NULL);
}

static store_result tx_commit(store *st)
{
	store_result r;

	r = exec(st, "COMMIT", "commit");
	if (r != STORE_OK)
		tx_rollback(st);
	return r;
}

/* ---- reading rows ---- */

static store_result col_null(store *st, sqlite3_stmt *s, int i)
{
	if (sqlite3_column_type(s, i) == SQLITE_NULL) {
		set_err(st, "column %s is NULL", sqlite3_column_name(s, i));
		return STORE_ERROR;
	}
	set_err(st, "out of memory");
	return STORE_NOMEM;
}

/* malloc'd copy of text column i; NULL stays NULL if nullable */
static store_result col_dup(store *st, sqlite3_stmt *s, int i, int nullable,
			    char **out)
{
	const unsigned char *t;
	size_t n;

	*out = NULL;
	if (nullable && sqlite3_column_type(s, i) == SQLITE_NULL)
		return STORE_OK;
	t = sqlite3_column_text(s, i);
	if (t == NULL)
		return col_null(st, s, i);
	n = (size_t)sqlite3_column_bytes(s, i);
	*out = malloc(n + 1);
	if (*out == NULL) {
		set_err(st, "out of memory");
		return STORE_NOMEM;
	}
	memcpy(*out, t, n);
	(*out)[n] = '\0';
	return STORE_OK;
}

static store_result col_fixed(store *st, sqlite3_stmt *s, int i, char *dst,
			      size_t size)
{
	const unsigned char *t;
	size_t n;

	t = sqlite3_column_text(s, i);
	if (t == NULL)
		return col_null(st, s, i);
	n = (size_t)sqlite3_column_bytes(s, i);
	if (n >= size) {
		set_err(st, "column %s is too long (%zu bytes)",
			sqlite3_column_name(s, i), n);
		return STORE_ERROR;
	}
	memcpy(dst, t, n);
	dst[n] = '\0';
	return STORE_OK;
}

static store_result col_name(store *st, sqlite3_stmt *s, int i,
			     const char *const *names, size_t n, int *out)
{
	const char *t = (const char *)sqlite3_column_text(s, i);

	*out = store_name_index(t, names, n);
	if (*out < 0) {
		set_err(st, "column %s has unknown value '%s'",
			sqlite3_column_name(s, i), t ? t : "NULL");
		return STORE_ERROR;
	}
	return STORE_OK;
}

static store_result read_request(store *st, sqlite3_stmt *s, struct store_request *r)
{
	store_result res;
	int state = 0, lifetime = 0;

	memset(r, 0, sizeof(*r));
	r->id = sqlite3_column_int64(s, 0);
	if ((res = col_fixed(st, s, 1, r->sha256, sizeof(r->sha256))) != STORE_OK ||
	    (res = col_dup(st, s, 2, 0, &r->pem)) != STORE_OK ||
	    (res = col_dup(st, s, 3, 0, &r->subject)) != STORE_OK ||
	    (res = col_dup(st, s, 4, 0, &r->cn)) != STORE_OK ||
	    (res = col_dup(st, s, 5, 1, &r->ou)) != STORE_OK ||
	    (res = col_name(st, s, 6, store_state_names, 3, &state)) != STORE_OK ||
	    (res = col_name(st, s, 7, store_lifetime_names, 2, &lifetime)) != STORE_OK ||
	    (res = col_fixed(st, s, 8, r->protocol, sizeof(r->protocol))) != STORE_OK)
		goto out;
	r->state = (req_state)state;
	r->lifetime = (req_lifetime)lifetime;
	r->created = sqlite3_column_int64(s, 9);
	r->updated = sqlite3_column_int64(s, 10);
	r->signed_count = sqlite3_column_int64(s, 11);
out:
	if (res != STORE_OK)
		store_request_clear(r);
	return res;
}

static store_result read_cert(store *st, sqlite3_stmt *s, struct store_cert *c)
{
	store_result res;

	memset(c, 0, sizeof(*c));
	c->id = sqlite3_column_int64(s, 0);
	c->request_id = sqlite3_column_int64(s, 1);
	if ((res = col_fixed(st, s, 2, c->serial, sizeof(c->serial))) != STORE_OK ||
	    (res = col_dup(st, s, 3, 0, &c->pem)) != STORE_OK)
		goto out;
	c->not_before = sqlite3_column_int64(s, 4);
	c->not_after = sqlite3_column_int64(s, 5);
	c->created = sqlite3_column_int64(s, 6);
	c->revoked = sqlite3_column_int64(s, 7);
	c->revoke_reason = sqlite3_column_int(s, 8);
out:
	if (res != STORE_OK)
		store_cert_clear(c);
	return res;
}

/* ---- open / close ---- */

/* Create the file 0600 unless it exists; an existing file keeps its mode. */
static store_result create_file(store *st, const char *path)
{
	store_result r = STORE_ERROR;
	int fd = -1;

	if (strcmp(path, ":memory:") == 0)
		return STORE_OK;
	fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	if (fd < 0) {
		if (errno == EEXIST) {
			r = STORE_OK;
			goto out;
		}
		set_err(st, "creating %s: %s", path, strerror(errno));
		goto out;
	}
	/* the umask may have taken more than group and other */
	if (fchmod(fd, 0600) != 0) {
		set_err(st, "chmod %s: %s", path, strerror(errno));
		goto out;
	}
	r = STORE_OK;
out:
	if (fd >= 0)
		close(fd);
	return r;
}

static store_result set_wal(store *st, const char *path)
{
	sqlite3_stmt *s = NULL;
	const char *mode;
	store_result r;
	int rc;

	if ((r = prepare(st, "PRAGMA journal_mode=WAL", &s, path)) != STORE_OK)
		goto out;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		r = db_fail(st, rc, path);
		goto out;
	}
	mode = (const char *)sqlite3_column_text(s, 0);
	if (strcmp(path, ":memory:") != 0 &&
	    (mode == NULL || sqlite3_stricmp(mode, "wal") != 0)) {
		set_err(st, "%s: cannot use WAL (journal_mode is %s)", path,
			mode ? mode : "unknown");
		r = STORE_ERROR;
		goto out;
	}
	r = STORE_OK;
out:
	finish(st, s);
	return r;
}

/* Bring the schema to SCHEMA_VERSION, in one write transaction. */
static store_result migrate(store *st)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int64_t have = 0, start;
	int rc, empty = 0, in_tx = 0;

	if ((r = exec(st, "BEGIN IMMEDIATE", "schema")) != STORE_OK)
		goto out;
	in_tx = 1;
	if ((r = exec(st, "CREATE TABLE IF NOT EXISTS schema_version("
		      "version INTEGER NOT NULL)", "schema")) != STORE_OK ||
	    (r = prepare(st, "SELECT max(version) FROM schema_version", &s,
			 "schema")) != STORE_OK)
		goto out;
	rc = sqlite3_step(s);
	if (rc != SQLITE_ROW) {
		r = db_fail(st, rc, "schema");
		goto out;
	}
	empty = sqlite3_column_type(s, 0) == SQLITE_NULL;
	have = sqlite3_column_int64(s, 0);
	finish(st, s);
	s = NULL;
	if (have > SCHEMA_VERSION) {
		set_err(st, "database schema version %lld is newer than this p11ca"
			" understands (%lld)", (long long)have, (long long)SCHEMA_VERSION);
		r = STORE_ERROR;
		goto out;
	}
	if (have < 0) {
		set_err(st, "database schema version %lld is invalid", (long long)have);
		r = STORE_ERROR;
		goto out;
	}
	for (start = have; have < SCHEMA_VERSION; have++) {
		rc = sqlite3_exec(st->db, migrations[have], NULL, NULL, NULL);
		if (rc != SQLITE_OK) {
			char what[64];

			snprintf(what, sizeof(what), "schema migration %lld",
				 (long long)have + 1);
			r = db_fail(st, rc, what);
			goto out;
		}
	}
	if (!empty && have == start) {
		r = exec(st, "COMMIT", "schema");
		in_tx = r != STORE_OK;
		goto out;
	}
	if ((r = prepare(st, empty ?
			 "INSERT INTO schema_version(version) VALUES(?1)" :
			 "UPDATE schema_version SET version = ?1", &s,
			 "schema")) != STORE_OK)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, have)) != SQLITE_OK) {
		r = db_fail(st, rc, "schema");
		goto out;
	}
	if ((r = step_done(st, s, "schema")) != STORE_OK)
		goto out;
	finish(st, s);
	s = NULL;
	in_tx = 0;
	r = tx_commit(st);
out:
	finish(st, s);
	if (in_tx)
		tx_rollback(st);
	return r;
}

/* p11ca_pem_keyid(pem): lowercase hex SHA-256 of the certificate's
 * SubjectPublicKeyInfo DER, NULL when pem is not a certificate.  The same
 * value ca.c puts in store_cert.keyid. */
static void sql_pem_keyid(sqlite3_context *cx, int argc, sqlite3_value **argv)
{
	const unsigned char *pem;
	unsigned char *der = NULL, md[32];
	char hex[65];
	BIO *b = NULL;
	X509 *x = NULL;
	int n, i;

	if (argc != 1 || (pem = sqlite3_value_text(argv[0])) == NULL) {
		sqlite3_result_null(cx);
		return;
	}
	b = BIO_new_mem_buf(pem, sqlite3_value_bytes(argv[0]));
	x = b != NULL ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	n = x != NULL ? i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der) : -1;
	if (n <= 0 || EVP_Digest(der, (size_t)n, md, NULL, EVP_sha256(), NULL) != 1) {
		sqlite3_result_null(cx);
	} else {
		for (i = 0; i < 32; i++)
			snprintf(hex + 2 * i, 3, "%02x", md[i]);
		sqlite3_result_text(cx, hex, 64, SQLITE_TRANSIENT);
	}
	OPENSSL_free(der);
	X509_free(x);
	BIO_free(b);
}

static store_result sq_open(store **out, const char *path)
{
	store *st = NULL;
	store_result r = STORE_ERROR;
	int rc;

	if (out == NULL)
		return STORE_ERROR;
	*out = NULL;
	st = calloc(1, sizeof(*st));
	if (st == NULL) {
		r = STORE_NOMEM;
		goto out;
	}
	st->ops = &store_sqlite_ops;
	*out = st;
	if (path == NULL || *path == '\0') {
		set_err(st, "no database path");
		goto out;
	}
	if ((r = create_file(st, path)) != STORE_OK)
		goto out;
	rc = sqlite3_open_v2(path, &st->db, SQLITE_OPEN_READWRITE |
			     SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
	if (rc != SQLITE_OK) {
		set_err(st, "opening %s: %s", path,
			st->db ? sqlite3_errmsg(st->db) : sqlite3_errstr(rc));
		r = map_rc(rc);
		goto out;
	}
	sqlite3_extended_result_codes(st->db, 1);
	sqlite3_busy_timeout(st->db, BUSY_TIMEOUT_MS);
	rc = sqlite3_create_function_v2(st->db, "p11ca_pem_keyid", 1,
					SQLITE_UTF8 | SQLITE_DETERMINISTIC, NULL,
					sql_pem_keyid, NULL, NULL, NULL);
	if (rc != SQLITE_OK) {
		r = db_fail(st, rc, "registering p11ca_pem_keyid");
		goto out;
	}
	if ((r = set_wal(st, path)) != STORE_OK ||
	    (r = exec(st, "PRAGMA synchronous=FULL", "synchronous")) != STORE_OK ||
	    (r = exec(st, "PRAGMA foreign_keys=ON", "foreign_keys")) != STORE_OK ||
	    (r = migrate(st)) != STORE_OK)
		goto out;
	r = STORE_OK;
out:
	if (r != STORE_OK && st != NULL && st->db != NULL) {
		cache_free(st);
		sqlite3_close_v2(st->db);
		st->db = NULL;
	}
	return r;
}

static void sq_close(store **st)
{
	if (st == NULL || *st == NULL)
		return;
	cache_free(*st);
	sqlite3_close_v2((*st)->db);
	free(*st);
	*st = NULL;
}

static const char *sq_errmsg(store *st)
{
	if (st == NULL)
		return "out of memory";
	return st->err;
}

/* ---- requests ---- */

static store_result find_request_id(store *st, const char *sha256, int64_t *id)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	if ((r = prepare(st, "SELECT id FROM requests WHERE sha256 = ?1", &s,
			 "finding request")) != STORE_OK)
		goto out;
	if ((rc = bind_text(s, 1, sha256)) != SQLITE_OK) {
		r = db_fail(st, rc, "finding request");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		set_err(st, "no request with sha256 %s", sha256);
		r = STORE_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = db_fail(st, rc, "finding request");
		goto out;
	}
	*id = sqlite3_column_int64(s, 0);
	r = STORE_OK;
out:
	finish(st, s);
	return r;
}

/* req_add's INSERT, req checked, in state; with the handle locked and in
 * the caller's transaction if any.  STORE_DUPLICATE with *id the existing
 * request's when the sha256 is there already. */
static store_result req_insert(store *st, const struct store_request *req, req_state state,
			       int64_t *id)
{
	static const char sql[] =
		"INSERT INTO requests(sha256, pem, subject, cn, ou, state, lifetime,"
		" protocol, created, updated)"
		" VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)";
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	if ((r = prepare(st, sql, &s, "adding request")) != STORE_OK)
		goto out;
	if ((rc = bind_text(s, 1, req->sha256)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, req->pem)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, req->subject)) != SQLITE_OK ||
	    (rc = bind_text(s, 4, req->cn)) != SQLITE_OK ||
	    (rc = bind_text(s, 5, req->ou)) != SQLITE_OK ||
	    (rc = bind_text(s, 6, store_state_name(state))) != SQLITE_OK ||
	    (rc = bind_text(s, 7, store_lifetime_name(req->lifetime))) != SQLITE_OK ||
	    (rc = bind_text(s, 8, req->protocol)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 9, req->created)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 10, req->updated)) != SQLITE_OK) {
		r = db_fail(st, rc, "adding request");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_CONSTRAINT_UNIQUE) {
		set_err(st, "a request with sha256 %s exists", req->sha256);
		r = STORE_DUPLICATE;
		if (id != NULL && find_request_id(st, req->sha256, id) != STORE_OK)
			r = STORE_ERROR;
		goto out;
	}
	if (rc != SQLITE_DONE) {
		r = db_fail(st, rc, "adding request");
		goto out;
	}
	if (id != NULL)
		*id = sqlite3_last_insert_rowid(st->db);
	r = STORE_OK;
out:
	finish(st, s);
	return r;
}

static store_result sq_req_add(store *st, const struct store_request *req, int64_t *id)
{
	store_result r;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (req == NULL) /* refused, with its message */
		r = store_req_check(NULL, REQ_PENDING, st->err, sizeof st->err);
	else if ((r = store_req_check(req, req->state, st->err, sizeof st->err)) == STORE_OK)
		r = req_insert(st, req, req->state, id);
	unlock(st);
	return r;
}

/* One request by a text or integer key; NOT_FOUND when none. */
static store_result req_get(store *st, const char *sql, const char *key_text,
			    int64_t key_num, struct store_request *out)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (out == NULL) {
		set_err(st, "reading request: no output");
		r = STORE_ERROR;
		goto out;
	}
	if ((r = prepare(st, sql, &s, "reading request")) != STORE_OK)
		goto out;
	rc = key_text ? bind_text(s, 1, key_text) : sqlite3_bind_int64(s, 1, key_num);
	if (rc != SQLITE_OK) {
		r = db_fail(st, rc, "reading request");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		if (key_text)
			set_err(st, "no request with sha256 %s", key_text);
		else
			set_err(st, "no request with id %lld", (long long)key_num);
		r = STORE_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = db_fail(st, rc, "reading request");
		goto out;
	}
	r = read_request(st, s, out);
out:
	finish(st, s);
	unlock(st);
	return r;
}

static store_result sq_req_by_sha256(store *st, const char *sha256,
				     struct store_request *out)
{
	if (sha256 == NULL) {
		if (out != NULL)
			memset(out, 0, sizeof(*out));
		if (st != NULL)
			set_err(st, "reading request: no sha256");
		return STORE_ERROR;
	}
	return req_get(st, "SELECT " REQ_COLS " FROM requests r WHERE r.sha256 = ?1",
		       sha256, 0, out);
}

static store_result sq_req_by_id(store *st, int64_t id, struct store_request *out)
{
	return req_get(st, "SELECT " REQ_COLS " FROM requests r WHERE r.id = ?1",
		       NULL, id, out);
}

static store_result sq_req_set_state(store *st, int64_t id, req_state state,
				     req_lifetime lifetime, int64_t now)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (store_name_index(store_state_name(state), store_state_names, 3) < 0 ||
	    store_lifetime_name(lifetime) == NULL) {
		set_err(st, "setting request state: invalid state or lifetime");
		r = STORE_ERROR;
		goto out;
	}
	if ((r = prepare(st, "UPDATE requests SET state = ?1, lifetime = ?2,"
			 " updated = ?3 WHERE id = ?4", &s,
			 "setting request state")) != STORE_OK)
		goto out;
	if ((rc = bind_text(s, 1, store_state_name(state))) != SQLITE_OK ||
	    (rc = bind_text(s, 2, store_lifetime_name(lifetime))) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 3, now)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, id)) != SQLITE_OK) {
		r = db_fail(st, rc, "setting request state");
		goto out;
	}
	if ((r = step_done(st, s, "setting request state")) != STORE_OK)
		goto out;
	if (sqlite3_changes(st->db) == 0) {
		set_err(st, "no request with id %lld", (long long)id);
		r = STORE_NOT_FOUND;
		goto out;
	}
	r = STORE_OK;
out:
	finish(st, s);
	unlock(st);
	return r;
}

/* ---- lists ---- */

/* the optional ?3 of a list statement */
struct list_arg {
	int kind; /* 0 none, 1 text, 2 integer */
	const char *text;
	int64_t num;
};

typedef store_result (*row_reader)(store *st, sqlite3_stmt *s, void *row);

static store_result read_request_row(store *st, sqlite3_stmt *s, void *row)
{
	return read_request(st, s, row);
}

static store_result read_cert_row(store *st, sqlite3_stmt *s, void *row)
{
	return read_cert(st, s, row);
}

/*
 * Read up to LIST_PAGE rows with id > after into rows (elements of size
 * bytes).  sql binds ?1 after, ?2 the page size, ?3 arg if any.  On failure
 * the rows read so far are in *n for the caller to clear.
 */
static store_result fetch_page(store *st, const char *sql, int64_t after,
			       const struct list_arg *arg, row_reader read,
			       void *rows, size_t size, size_t *n)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	*n = 0;
	lock(st);
	if ((r = prepare(st, sql, &s, "listing")) != STORE_OK)
		goto out;
	rc = sqlite3_bind_int64(s, 1, after);
	if (rc == SQLITE_OK)
		rc = sqlite3_bind_int(s, 2, LIST_PAGE);
	if (rc == SQLITE_OK && arg->kind == 1)
		rc = bind_text(s, 3, arg->text);
	if (rc == SQLITE_OK && arg->kind == 2)
		rc = sqlite3_bind_int64(s, 3, arg->num);
	if (rc != SQLITE_OK) {
		r = db_fail(st, rc, "listing");
		goto out;
	}
	while (*n < LIST_PAGE && (rc = sqlite3_step(s)) == SQLITE_ROW) {
		if ((r = read(st, s, (char *)rows + *n * size)) != STORE_OK)
			goto out;
		(*n)++;
	}
	if (*n < LIST_PAGE && rc != SQLITE_DONE) {
		r = db_fail(st, rc, "listing");
		goto out;
	}
	r = STORE_OK;
out:
	finish(st, s);
	unlock(st);
	return r;
}

static store_result req_iterate(store *st, const char *sql, const struct list_arg *arg,
				int (*cb)(const struct store_request *r, void *ud),
				void *ud)
{
	struct store_request *page = NULL;
	store_result r = STORE_ERROR;
	int64_t after = INT64_MIN;
	size_t i, n = 0;
	int stop = 0;

	if (!ready(st))
		return STORE_ERROR;
	if (cb == NULL) {
		set_err(st, "listing: no callback");
		goto out;
	}
	page = calloc(LIST_PAGE, sizeof(*page));
	if (page == NULL) {
		set_err(st, "out of memory");
		r = STORE_NOMEM;
		goto out;
	}
	for (;;) {
		r = fetch_page(st, sql, after, arg, read_request_row, page,
			       sizeof(*page), &n);
		if (r != STORE_OK)
			goto out;
		for (i = 0; i < n && !stop; i++)
			stop = cb(&page[i], ud);
		if (n > 0)
			after = page[n - 1].id;
		for (i = 0; i < n; i++)
			store_request_clear(&page[i]);
		if (stop || n < LIST_PAGE)
			break;
	}
	r = STORE_OK;
out:
	for (i = 0; page != NULL && i < n; i++)
		store_request_clear(&page[i]);
	free(page);
	return r;
}

static store_result cert_iterate(store *st, const char *sql, const struct list_arg *arg,
				 int (*cb)(const struct store_cert *c, void *ud),
				 void *ud)
{
	struct store_cert *page = NULL;
	store_result r = STORE_ERROR;
	int64_t after = INT64_MIN;
	size_t i, n = 0;
	int stop = 0;

	if (!ready(st))
		return STORE_ERROR;
	if (cb == NULL) {
		set_err(st, "listing: no callback");
		goto out;
	}
	page = calloc(LIST_PAGE, sizeof(*page));
	if (page == NULL) {
		set_err(st, "out of memory");
		r = STORE_NOMEM;
		goto out;
	}
	for (;;) {
		r = fetch_page(st, sql, after, arg, read_cert_row, page,
			       sizeof(*page), &n);
		if (r != STORE_OK)
			goto out;
		for (i = 0; i < n && !stop; i++)
			stop = cb(&page[i], ud);
		if (n > 0)
			after = page[n - 1].id;
		for (i = 0; i < n; i++)
			store_cert_clear(&page[i]);
		if (stop || n < LIST_PAGE)
			break;
	}
	r = STORE_OK;
out:
	for (i = 0; page != NULL && i < n; i++)
		store_cert_clear(&page[i]);
	free(page);
	return r;
}

static store_result sq_req_list(store *st, int filter,
				int (*cb)(const struct store_request *r, void *ud),
				void *ud)
{
	struct list_arg arg = { 0, NULL, 0 };

	if (filter == -1)
		return req_iterate(st, "SELECT " REQ_COLS " FROM requests r"
				   " WHERE r.id > ?1 ORDER BY r.id LIMIT ?2",
				   &arg, cb, ud);
	if (filter < 0 || filter > REQ_REJECTED) {
		if (st != NULL)
			set_err(st, "listing requests: invalid filter %d", filter);
		return STORE_ERROR;
	}
	arg.kind = 1;
	arg.text = store_state_name((req_state)filter);
	return req_iterate(st, "SELECT " REQ_COLS " FROM requests r"
			   " WHERE r.id > ?1 AND r.state = ?3 ORDER BY r.id LIMIT ?2",
			   &arg, cb, ud);
}

static store_result sq_req_list_signed(store *st,
				       int (*cb)(const struct store_request *r, void *ud),
				       void *ud)
{
	const struct list_arg arg = { 0, NULL, 0 };

	return req_iterate(st, "SELECT " REQ_COLS " FROM requests r"
			   " WHERE r.id > ?1 AND r.state != 'rejected'"
			   " AND EXISTS (SELECT 1 FROM certificates c"
			   " WHERE c.request_id = r.id)"
			   " ORDER BY r.id LIMIT ?2", &arg, cb, ud);
}

static store_result sq_cert_list_revoked(store *st,
					 int (*cb)(const struct store_cert *c, void *ud),
					 void *ud)
{
	const struct list_arg arg = { 0, NULL, 0 };

	return cert_iterate(st, "SELECT " CERT_COLS " FROM certificates"
			    " WHERE id > ?1 AND revoked != 0 ORDER BY id LIMIT ?2",
			    &arg, cb, ud);
}

static store_result sq_cert_list(store *st, int64_t request_id,
				 int (*cb)(const struct store_cert *c, void *ud),
				 void *ud)
{
	const struct list_arg arg = { 2, NULL, request_id };

	return cert_iterate(st, "SELECT " CERT_COLS " FROM certificates"
			    " WHERE id > ?1 AND request_id = ?3 ORDER BY id LIMIT ?2",
			    &arg, cb, ud);
}

/* ---- certificates ---- */

/* One integer from sql with ?1 bound to text t or number n; *out = 0 when
 * there is no row (or a NULL).  With the handle locked. */
static store_result query_int(store *st, const char *sql, const char *t, int64_t n,
			      int64_t *out, const char *what)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	*out = 0;
	if ((r = prepare(st, sql, &s, what)) != STORE_OK)
		goto out;
	rc = t != NULL ? bind_text(s, 1, t) : sqlite3_bind_int64(s, 1, n);
	if (rc != SQLITE_OK) {
		r = db_fail(st, rc, what);
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		*out = sqlite3_column_int64(s, 0);
	else if (rc != SQLITE_DONE) {
		r = db_fail(st, rc, what);
		goto out;
	}
	r = STORE_OK;
out:
	finish(st, s);
	return r;
}

/* a certificate for keyid revoked after the last explicit signature of
 * that key was stored (revoke_seq: the highest certificate id then) */
#define KEY_REVOKED_SQL \
	"SELECT EXISTS(SELECT 1 FROM certificates WHERE keyid = ?1 AND revoked != 0" \
	" AND coalesce(revoke_seq, 0) >= coalesce((SELECT max(id) FROM certificates" \
	" WHERE keyid = ?1 AND explicit = 1), 0))"

/* cert_add's compare-and-set conditions, inside its transaction */
static store_result cas_check(store *st, const struct store_cert *c)
{
	store_result r;
	int64_t v = 0;

	if ((r = query_int(st, "SELECT CASE state WHEN 'rejected' THEN 2 ELSE 1 END"
			   " FROM requests WHERE id = ?1", NULL, c->request_id, &v,
			   "adding certificate")) != STORE_OK)
		return r;
	if (v == 0) {
		set_err(st, "no request with id %lld", (long long)c->request_id);
		return STORE_NOT_FOUND;
	}
	if (v == 2) {
		set_err(st, "request %lld was rejected", (long long)c->request_id);
		return STORE_CONFLICT;
	}
	if (c->explicit_sign)
		return STORE_OK;
	if ((r = query_int(st, "SELECT revoked FROM certificates WHERE request_id = ?1"
			   " ORDER BY id DESC LIMIT 1", NULL, c->request_id, &v,
			   "adding certificate")) != STORE_OK)
		return r;
	if (v != 0) {
		set_err(st, "the last certificate of request %lld is revoked",
			(long long)c->request_id);
		return STORE_CONFLICT;
	}
	if (c->keyid[0] == '\0')
		return STORE_OK;
	if ((r = query_int(st, KEY_REVOKED_SQL, c->keyid, 0, &v,
			   "adding certificate")) != STORE_OK)
		return r;
	if (v != 0) {
		set_err(st, "a certificate for this key (SPKI SHA-256 %.16s...) was revoked",
			c->keyid);
		return STORE_CONFLICT;
	}
	return STORE_OK;
}

/* cert_add's writes, c checked, inside the caller's write transaction
 * (BEGIN IMMEDIATE) with the handle locked: the compare and set, the
 * request marked signed, the certificate.  The caller rolls back on
 * failure. */
static store_result cert_insert(store *st, const struct store_cert *c, int64_t now)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	/* compare and set: read the request's state in this transaction */
	if ((r = cas_check(st, c)) != STORE_OK)
		goto out;
	if ((r = prepare(st, c->set_lifetime ?
			 "UPDATE requests SET state = 'signed', updated = ?1, lifetime = ?3"
			 " WHERE id = ?2 AND state != 'rejected'" :
			 "UPDATE requests SET state = 'signed', updated = ?1"
			 " WHERE id = ?2 AND state != 'rejected'", &s, "adding certificate")) != STORE_OK)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, now)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 2, c->request_id)) != SQLITE_OK ||
	    (c->set_lifetime && store_lifetime_name(c->lifetime) != NULL &&
	     (rc = bind_text(s, 3, store_lifetime_name(c->lifetime))) != SQLITE_OK)) {
		r = db_fail(st, rc, "adding certificate");
		goto out;
	}
	if ((r = step_done(st, s, "adding certificate")) != STORE_OK)
		goto out;
	if (sqlite3_changes(st->db) == 0) {
		set_err(st, "request %lld changed meanwhile", (long long)c->request_id);
		r = STORE_CONFLICT;
		goto out;
	}
	finish(st, s);
	s = NULL;

	/* a new certificate is never revoked: that is cert_revoke()'s */
	if ((r = prepare(st, "INSERT INTO certificates(request_id, serial, pem,"
			 " not_before, not_after, created, keyid, explicit)"
			 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
			 &s, "adding certificate")) != STORE_OK)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, c->request_id)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, c->serial)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, c->pem)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 4, c->not_before)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 5, c->not_after)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 6, now)) != SQLITE_OK ||
	    (rc = bind_text(s, 7, c->keyid[0] ? c->keyid : NULL)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 8, c->explicit_sign ? 1 : 0)) != SQLITE_OK) {
		r = db_fail(st, rc, "adding certificate");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_CONSTRAINT_UNIQUE) {
		set_err(st, "a certificate with serial %s exists", c->serial);
		r = STORE_DUPLICATE;
		goto out;
	}
	if (rc != SQLITE_DONE) {
		r = db_fail(st, rc, "adding certificate");
		goto out;
	}
	r = STORE_OK;
out:
	finish(st, s);
	return r;
}

static store_result sq_cert_add(store *st, const struct store_cert *c, int64_t now)
{
	store_result r;
	int in_tx = 0;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if ((r = store_cert_check(c, st->err, sizeof st->err)) != STORE_OK)
		goto out;
	if ((r = exec(st, "BEGIN IMMEDIATE", "adding certificate")) != STORE_OK)
		goto out;
	in_tx = 1;
	if ((r = cert_insert(st, c, now)) != STORE_OK)
		goto out;
	in_tx = 0;
	r = tx_commit(st);
out:
	if (in_tx)
		tx_rollback(st);
	unlock(st);
	return r;
}

/* req_add then cert_add, in one transaction (store.h) */
static store_result sq_req_add_signed(store *st, const struct store_request *req,
				      const struct store_cert *c, int64_t now, int64_t *id,
				      int *exists)
{
	struct store_cert cc;
	store_result r;
	int64_t rid = 0;
	int in_tx = 0;

	if (exists != NULL)
		*exists = 0;
	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if ((r = store_req_check(req, REQ_SIGNED, st->err, sizeof st->err)) != STORE_OK ||
	    (r = store_cert_check(c, st->err, sizeof st->err)) != STORE_OK)
		goto out;
	if ((r = exec(st, "BEGIN IMMEDIATE", "adding signed request")) != STORE_OK)
		goto out;
	in_tx = 1;
	if ((r = req_insert(st, req, REQ_SIGNED, &rid)) != STORE_OK) {
		/* rid is the request already there: the caller serves it */
		if (r == STORE_DUPLICATE) {
			if (exists != NULL)
				*exists = 1;
			if (id != NULL)
				*id = rid;
		}
		goto out;
	}
	/* the certificate is the new request's; cas_check then finds it
	 * signed and without a certificate, so only the key rule can refuse */
	cc = *c;
	cc.request_id = rid;
	if ((r = cert_insert(st, &cc, now)) != STORE_OK)
		goto out;
	in_tx = 0;
	if ((r = tx_commit(st)) != STORE_OK)
		goto out;
	if (id != NULL)
		*id = rid;
out:
	if (in_tx)
		tx_rollback(st);
	unlock(st);
	return r;
}

/* One certificate; sql binds ?1 to key_text or key_num.  NOT_FOUND if none. */
static store_result cert_get(store *st, const char *sql, const char *key_text,
			     int64_t key_num, struct store_cert *out)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	if (out != NULL)
		memset(out, 0, sizeof(*out));
	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (out == NULL) {
		set_err(st, "reading certificate: no output");
		r = STORE_ERROR;
		goto out;
	}
	if ((r = prepare(st, sql, &s, "reading certificate")) != STORE_OK)
		goto out;
	rc = key_text ? bind_text(s, 1, key_text) : sqlite3_bind_int64(s, 1, key_num);
	if (rc != SQLITE_OK) {
		r = db_fail(st, rc, "reading certificate");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_DONE) {
		if (key_text)
			set_err(st, "no certificate with serial %s", key_text);
		else
			set_err(st, "no certificate for request %lld", (long long)key_num);
		r = STORE_NOT_FOUND;
		goto out;
	}
	if (rc != SQLITE_ROW) {
		r = db_fail(st, rc, "reading certificate");
		goto out;
	}
	r = read_cert(st, s, out);
out:
	finish(st, s);
	unlock(st);
	return r;
}

static store_result sq_cert_latest(store *st, int64_t request_id, struct store_cert *out)
{
	return cert_get(st, "SELECT " CERT_COLS " FROM certificates"
			" WHERE request_id = ?1 ORDER BY id DESC LIMIT 1",
			NULL, request_id, out);
}

static store_result sq_cert_by_serial(store *st, const char *serial,
				      struct store_cert *out)
{
	if (serial == NULL) {
		if (out != NULL)
			memset(out, 0, sizeof(*out));
		if (st != NULL)
			set_err(st, "reading certificate: no serial");
		return STORE_ERROR;
	}
	return cert_get(st, "SELECT " CERT_COLS " FROM certificates WHERE serial = ?1",
			serial, 0, out);
}

/* 1 yes, 0 no, -1 error; with the handle locked */
static int serial_exists_locked(store *st, const char *serial)
{
	sqlite3_stmt *s = NULL;
	int rc, ret = -1;

	if (prepare(st, "SELECT 1 FROM certificates WHERE serial = ?1", &s,
		    "finding certificate") != STORE_OK)
		goto out;
	if ((rc = bind_text(s, 1, serial)) != SQLITE_OK) {
		db_fail(st, rc, "finding certificate");
		goto out;
	}
	rc = sqlite3_step(s);
	if (rc == SQLITE_ROW)
		ret = 1;
	else if (rc == SQLITE_DONE)
		ret = 0;
	else
		db_fail(st, rc, "finding certificate");
out:
	finish(st, s);
	return ret;
}

static store_result sq_cert_revoke(store *st, const char *serial, int reason,
				   int64_t when)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc, in_tx = 0;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (serial == NULL || when <= 0 || reason < -1) {
		set_err(st, "revoking: no serial, or invalid time or reason");
		r = STORE_ERROR;
		goto out;
	}
	if ((r = exec(st, "BEGIN IMMEDIATE", "revoking")) != STORE_OK)
		goto out;
	in_tx = 1;
	/* a second revocation keeps the first time and reason */
	if ((r = prepare(st, "UPDATE certificates SET revoked = ?1, revoke_reason = ?2,"
			 " revoke_seq = (SELECT max(id) FROM certificates)"
			 " WHERE serial = ?3 AND revoked = 0", &s,
			 "revoking")) != STORE_OK)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, when)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 2, reason)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, serial)) != SQLITE_OK) {
		r = db_fail(st, rc, "revoking");
		goto out;
	}
	if ((r = step_done(st, s, "revoking")) != STORE_OK)
		goto out;
	if (sqlite3_changes(st->db) == 0) {
		switch (serial_exists_locked(st, serial)) {
		case 1:
			break;
		case 0:
			set_err(st, "no certificate with serial %s", serial);
			r = STORE_NOT_FOUND;
			goto out;
		default:
			r = STORE_ERROR;
			goto out;
		}
	}
	finish(st, s);
	s = NULL;
	in_tx = 0;
	r = tx_commit(st);
out:
	finish(st, s);
	if (in_tx)
		tx_rollback(st);
	unlock(st);
	return r;
}

static int sq_serial_exists(store *st, const char *serial)
{
	int ret;

	if (!ready(st))
		return -1;
	if (serial == NULL) {
		set_err(st, "finding certificate: no serial");
		return -1;
	}
	lock(st);
	ret = serial_exists_locked(st, serial);
	unlock(st);
	return ret;
}

/* ---- access log ---- */

static store_result sq_log_access(store *st, const struct store_access *a)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	int rc;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (a == NULL) {
		set_err(st, "logging access: no entry");
		r = STORE_ERROR;
		goto out;
	}
	if ((r = prepare(st, "INSERT INTO access_log(time, peer, method, path,"
			 " status, bytes, protocol, detail)"
			 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &s,
			 "logging access")) != STORE_OK)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, a->time)) != SQLITE_OK ||
	    (rc = bind_text(s, 2, a->peer)) != SQLITE_OK ||
	    (rc = bind_text(s, 3, a->method)) != SQLITE_OK ||
	    (rc = bind_text(s, 4, a->path)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int(s, 5, a->status)) != SQLITE_OK ||
	    (rc = sqlite3_bind_int64(s, 6, a->bytes)) != SQLITE_OK ||
	    (rc = bind_text(s, 7, a->protocol)) != SQLITE_OK ||
	    (rc = bind_text(s, 8, a->detail)) != SQLITE_OK) {
		r = db_fail(st, rc, "logging access");
		goto out;
	}
	r = step_done(st, s, "logging access");
out:
	finish(st, s);
	unlock(st);
	return r;
}

/* ---- CA policy ---- */

static store_result sq_crl_next_number(store *st, int64_t *out)
{
	store_result r;
	int in_tx = 0;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if (out == NULL) {
		set_err(st, "CRL number: no output");
		r = STORE_ERROR;
		goto out;
	}
	if ((r = exec(st, "BEGIN IMMEDIATE", "CRL number")) != STORE_OK)
		goto out;
	in_tx = 1;
	if ((r = exec(st, "INSERT INTO crl_number(id, last) VALUES(1, 1)"
		      " ON CONFLICT(id) DO UPDATE SET last = last + 1",
		      "CRL number")) != STORE_OK ||
	    (r = query_int(st, "SELECT last FROM crl_number WHERE id = ?1", NULL, 1, out,
			   "CRL number")) != STORE_OK)
		goto out;
	in_tx = 0;
	r = tx_commit(st);
out:
	if (in_tx)
		tx_rollback(st);
	unlock(st);
	return r;
}

static store_result sq_key_revoked(store *st, const char *keyid, int *revoked)
{
	store_result r;
	int64_t v = 0;

	if (!ready(st))
		return STORE_ERROR;
	if (keyid == NULL || revoked == NULL) {
		set_err(st, "key revoked: no keyid");
		return STORE_ERROR;
	}
	lock(st);
	r = query_int(st, KEY_REVOKED_SQL, keyid, 0, &v, "reading key revocation");
	*revoked = v != 0;
	unlock(st);
	return r;
}

/* Access-log rows in one transaction, then the oldest beyond `keep` go
 * (issue 10 point 8: one flush per batch, bounded size). */
static store_result sq_log_access_batch(store *st, const struct store_access *a, size_t n, int64_t keep)
{
	sqlite3_stmt *s = NULL;
	store_result r;
	size_t i;
	int rc;

	if (!ready(st))
		return STORE_ERROR;
	lock(st);
	if ((r = exec(st, "BEGIN IMMEDIATE", "logging access")) != STORE_OK)
		goto out;
	if (keep > 0 && n > 0 &&
	    (r = prepare(st, "INSERT INTO access_log(time, peer, method, path,"
			 " status, bytes, protocol, detail)"
			 " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)", &s,
			 "logging access")) != STORE_OK)
		goto out;
	for (i = 0; keep > 0 && i < n; i++) {
		sqlite3_reset(s);
		if ((rc = sqlite3_bind_int64(s, 1, a[i].time)) != SQLITE_OK ||
		    (rc = bind_text(s, 2, a[i].peer)) != SQLITE_OK ||
		    (rc = bind_text(s, 3, a[i].method)) != SQLITE_OK ||
		    (rc = bind_text(s, 4, a[i].path)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int(s, 5, a[i].status)) != SQLITE_OK ||
		    (rc = sqlite3_bind_int64(s, 6, a[i].bytes)) != SQLITE_OK ||
		    (rc = bind_text(s, 7, a[i].protocol)) != SQLITE_OK ||
		    (rc = bind_text(s, 8, a[i].detail)) != SQLITE_OK) {
			r = db_fail(st, rc, "logging access");
			goto out;
		}
		if ((r = step_done(st, s, "logging access")) != STORE_OK)
			goto out;
	}
	finish(st, s);
	s = NULL;
	/* ids only grow (INTEGER PRIMARY KEY, max + 1): keep the newest */
	if ((r = prepare(st, "DELETE FROM access_log WHERE id <= (SELECT MAX(id) FROM access_log) - ?1", &s,
			 "pruning the access log")) != STORE_OK)
		goto out;
	if ((rc = sqlite3_bind_int64(s, 1, keep)) != SQLITE_OK) {
		r = db_fail(st, rc, "pruning the access log");
		goto out;
	}
	if ((r = step_done(st, s, "pruning the access log")) != STORE_OK)
		goto out;
	r = tx_commit(st);
out:
	finish(st, s);
	if (r != STORE_OK)
		tx_rollback(st);
	unlock(st);
	return r;
}

/* The database can take a write: opened read-write and a write
 * transaction can begin (issue 10 point 13: refuse at start, not at the
 * first POST). */
static store_result sq_writable(store *st)
{
	store_result r;

	lock(st);
	if (sqlite3_db_readonly(st->db, "main") != 0) {
		set_err(st, "the database file is read-only for this user");
		r = STORE_ERROR;
		goto out;
	}
	r = exec(st, "BEGIN IMMEDIATE", "begin a write transaction");
	tx_rollback(st);
out:
	unlock(st);
	return r;
}

const struct store_ops store_sqlite_ops = {
	.name = "sqlite",
	.open = sq_open,
	.close = sq_close,
	.errmsg = sq_errmsg,
	.req_add = sq_req_add,
	.req_by_sha256 = sq_req_by_sha256,
	.req_by_id = sq_req_by_id,
	.req_set_state = sq_req_set_state,
	.req_list = sq_req_list,
	.req_list_signed = sq_req_list_signed,
	.cert_add = sq_cert_add,
	.cert_latest = sq_cert_latest,
	.cert_by_serial = sq_cert_by_serial,
	.cert_revoke = sq_cert_revoke,
	.cert_list_revoked = sq_cert_list_revoked,
	.cert_list = sq_cert_list,
	.serial_exists = sq_serial_exists,
	.log_access = sq_log_access,
	.crl_next_number = sq_crl_next_number,
	.key_revoked = sq_key_revoked,
	/* state folder checks */
	.writable = sq_writable,
	.log_access_batch = sq_log_access_batch,
	.req_add_signed = sq_req_add_signed,
};
