/*
 * Unit tests for the p11ca store: src/ca/store/sqlite.c on a real database
 * file in a temporary directory, or, with P11CA_TEST_PG set (a libpq URI of
 * a cluster's maintenance database, run by tests/cli/store_pg_run.sh on a
 * throwaway cluster), src/ca/store/postgresql.c on a new database per
 * test.  The tests of SQLite's own files and schema skip on PostgreSQL.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "softhsm_fixture.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>

#include "store/store.h"

static const struct store_ops *ops = &store_sqlite_ops;
static const char *pg_admin;   /* P11CA_TEST_PG: PostgreSQL mode */

struct fx {
	char dir[64];
	char path[512];     /* the file, or the PostgreSQL URI */
	char dbname[32];
	store *st;
};

/* one statement on the maintenance database (PostgreSQL mode) */
static void pg_admin_exec(const char *sql)
{
	PGconn *c = PQconnectdb(pg_admin);
	PGresult *res;

	assert_int_equal(PQstatus(c), CONNECTION_OK);
	res = PQexec(c, sql);
	if (PQresultStatus(res) != PGRES_COMMAND_OK)
		fail_msg("%s: %s", sql, PQerrorMessage(c));
	PQclear(res);
	PQfinish(c);
}

/* pg_admin with its database name replaced by db */
static void pg_uri(const char *db, char *out, size_t size)
{
	const char *q = strchr(pg_admin, '?');
	const char *slash = strstr(pg_admin, "://");

	slash = slash != NULL ? strchr(slash + 3, '/') : NULL;
	assert_non_null(slash);
	snprintf(out, size, "%.*s/%s%s", (int)(slash - pg_admin), pg_admin, db, q != NULL ? q : "");
}

/* ---- helpers ---- */

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));

	assert_non_null(f);
	strcpy(f->dir, "/tmp/p11ca-store-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(f->path, sizeof(f->path), "%s/ca.db", f->dir);
	if (pg_admin != NULL) {
		static int n;
		char sql[64];

		snprintf(f->dbname, sizeof(f->dbname), "t%d_%d", (int)getpid(), ++n);
		snprintf(sql, sizeof(sql), "CREATE DATABASE %s", f->dbname);
		pg_admin_exec(sql);
		pg_uri(f->dbname, f->path, sizeof(f->path));
	}
	assert_int_equal(ops->open(&f->st, f->path), STORE_OK);
	assert_non_null(f->st);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	ops->close(&f->st);
	test_rmdir_flat(f->dir);
	if (pg_admin != NULL && f->dbname[0] != '\0') {
		char sql[64];

		snprintf(sql, sizeof(sql), "DROP DATABASE %s WITH (FORCE)", f->dbname);
		pg_admin_exec(sql);
	}
	free(f);
	return 0;
}

/* the tests of SQLite's files and schema */
#define SQLITE_ONLY()                                              \
	do {                                                       \
		if (pg_admin != NULL)                              \
			skip();                                    \
	} while (0)

static void fill_request(struct store_request *r, int n, req_state state)
{
	static char pem[64], subject[64], cn[32];

	memset(r, 0, sizeof(*r));
	snprintf(r->sha256, sizeof(r->sha256), "%064x", n);
	snprintf(pem, sizeof(pem), "-----BEGIN CERTIFICATE REQUEST-----\n%d\n", n);
	snprintf(cn, sizeof(cn), "host%d.example", n);
	snprintf(subject, sizeof(subject), "CN=%s,OU=ops", cn);
	r->pem = pem;
	r->subject = subject;
	r->cn = cn;
	r->ou = n % 2 ? NULL : "ops";
	r->state = state;
	r->lifetime = LIFETIME_SHORT;
	strcpy(r->protocol, "caramel");
	r->created = 1000 + n;
	r->updated = 1000 + n;
}

static int64_t add_req(store *st, int n, req_state state)
{
	struct store_request r;
	int64_t id = -1;

	fill_request(&r, n, state);
	assert_int_equal(ops->req_add(st, &r, &id), STORE_OK);
	assert_true(id > 0);
	return id;
}

static store_result add_cert(store *st, int64_t req, const char *serial,
			     int64_t not_after, int64_t now)
{
	struct store_cert c;

	memset(&c, 0, sizeof(c));
	c.request_id = req;
	snprintf(c.serial, sizeof(c.serial), "%s", serial);
	c.pem = "-----BEGIN CERTIFICATE-----\nx\n";
	c.not_before = not_after - 100;
	c.not_after = not_after;
	/* ignored: a new certificate is not revoked */
	c.revoked = 77;
	c.revoke_reason = 3;
	return ops->cert_add(st, &c, now);
}

static req_state state_of(store *st, int64_t id)
{
	struct store_request r;
	req_state s;

	assert_int_equal(ops->req_by_id(st, id, &r), STORE_OK);
	s = r.state;
	store_request_clear(&r);
	return s;
}

/* sqlite3 directly, beside the store */
static sqlite3 *raw_open(const char *path)
{
	sqlite3 *db = NULL;

	assert_int_equal(sqlite3_open_v2(path, &db, SQLITE_OPEN_READWRITE, NULL), SQLITE_OK);
	sqlite3_busy_timeout(db, 10000);
	return db;
}

/* libpq directly, beside the store (PostgreSQL mode) */
static PGresult *raw_pg(const char *uri, const char *sql, ExecStatusType want, PGconn **c)
{
	PGresult *res;

	*c = PQconnectdb(uri);
	assert_int_equal(PQstatus(*c), CONNECTION_OK);
	res = PQexec(*c, sql);
	if (PQresultStatus(res) != want)
		fail_msg("%s: %s", sql, PQerrorMessage(*c));
	return res;
}

static int64_t raw_int(const char *path, const char *sql)
{
	sqlite3 *db;
	sqlite3_stmt *s = NULL;
	int64_t v;

	if (pg_admin != NULL) {
		PGconn *c = NULL;
		PGresult *res = raw_pg(path, sql, PGRES_TUPLES_OK, &c);

		assert_int_equal(PQntuples(res), 1);
		v = strtoll(PQgetvalue(res, 0, 0), NULL, 10);
		PQclear(res);
		PQfinish(c);
		return v;
	}
	db = raw_open(path);

	assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	v = sqlite3_column_int64(s, 0);
	sqlite3_finalize(s);
	sqlite3_close(db);
	return v;
}

static void raw_exec(const char *path, const char *sql)
{
	sqlite3 *db;

	if (pg_admin != NULL) {
		PGconn *c = NULL;

		PQclear(raw_pg(path, sql, PGRES_COMMAND_OK, &c));
		PQfinish(c);
		return;
	}
	db = raw_open(path);

	assert_int_equal(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK);
	sqlite3_close(db);
}

/* list callbacks: collect ids, stop after `stop` rows (0: never) */
struct collect {
	int64_t ids[512];
	size_t n;
	size_t stop;
	store *st;          /* when set, each row is rejected through it */
};

static int collect_req(const struct store_request *r, void *ud)
{
	struct collect *c = ud;

	assert_true(c->n < sizeof(c->ids) / sizeof(c->ids[0]));
	assert_non_null(r->pem);
	assert_non_null(r->cn);
	c->ids[c->n++] = r->id;
	if (c->st != NULL)
		assert_int_equal(ops->req_set_state(c->st, r->id, REQ_REJECTED,
						    LIFETIME_SHORT, 5000), STORE_OK);
	return c->stop != 0 && c->n >= c->stop;
}

static int collect_cert(const struct store_cert *cert, void *ud)
{
	struct collect *c = ud;

	assert_true(c->n < sizeof(c->ids) / sizeof(c->ids[0]));
	assert_non_null(cert->pem);
	c->ids[c->n++] = cert->id;
	return c->stop != 0 && c->n >= c->stop;
}

/* ---- tests ---- */

static void test_schema_created(void **state)
{
	struct fx *f = *state;
	sqlite3 *db = NULL;
	sqlite3_stmt *s = NULL;

	SQLITE_ONLY();
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version"), 3);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_version"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM sqlite_master WHERE name IN"
				 " ('requests', 'certificates', 'access_log',"
				 " 'certificates_request_newest')"), 4);

	db = raw_open(f->path);
	assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), "wal");
	sqlite3_finalize(s);
	sqlite3_close(db);

	/* the CHECK constraints are there */
	db = raw_open(f->path);
	assert_int_equal(sqlite3_exec(db, "INSERT INTO requests(sha256, pem, subject, cn,"
				      " state, protocol, created, updated) VALUES('x', 'p',"
				      " 's', 'c', 'bogus', 'token', 1, 1)", NULL, NULL, NULL),
			 SQLITE_CONSTRAINT);
	sqlite3_close(db);

	/* reopening migrates nothing and adds no row */
	ops->close(&f->st);
	assert_null(f->st);
	assert_int_equal(ops->open(&f->st, f->path), STORE_OK);
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version"), 3);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM schema_version"), 1);
}

static void test_reopen_keeps_data(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	int64_t id;

	id = add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(add_cert(f->st, id, "01", 5000, 2000), STORE_OK);
	ops->close(&f->st);
	assert_int_equal(ops->open(&f->st, f->path), STORE_OK);
	assert_int_equal(ops->req_by_id(f->st, id, &r), STORE_OK);
	assert_string_equal(r.cn, "host1.example");
	assert_int_equal(r.state, REQ_SIGNED);
	assert_int_equal(r.signed_count, 1);
	store_request_clear(&r);
	assert_int_equal(ops->serial_exists(f->st, "01"), 1);
}

static void test_file_mode(void **state)
{
	struct fx *f = *state;
	char path[192], wal[600];
	struct stat sb;
	store *st = NULL;
	mode_t old;
	FILE *fp = NULL;

	SQLITE_ONLY();
	assert_int_equal(stat(f->path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	snprintf(wal, sizeof(wal), "%s-wal", f->path);
	add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(stat(wal, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	snprintf(wal, sizeof(wal), "%s-shm", f->path);
	assert_int_equal(stat(wal, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);

	/* 0600 whatever the umask */
	old = umask(0);
	snprintf(path, sizeof(path), "%s/open.db", f->dir);
	assert_int_equal(ops->open(&st, path), STORE_OK);
	umask(old);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0600);
	ops->close(&st);

	/* an existing file keeps the mode its owner gave it */
	snprintf(path, sizeof(path), "%s/given.db", f->dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fclose(fp);
	assert_int_equal(chmod(path, 0640), 0);
	assert_int_equal(ops->open(&st, path), STORE_OK);
	assert_int_equal(stat(path, &sb), 0);
	assert_int_equal(sb.st_mode & 07777, 0640);
	ops->close(&st);
}

static void test_req_add_duplicate(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	int64_t id, id2, dup = -1;

	id = add_req(f->st, 7, REQ_PENDING);
	id2 = add_req(f->st, 8, REQ_PENDING);
	assert_true(id2 > id);

	fill_request(&r, 7, REQ_PENDING);
	r.cn = "other";
	assert_int_equal(ops->req_add(f->st, &r, &dup), STORE_DUPLICATE);
	assert_int_equal(dup, id);
	assert_non_null(strstr(ops->errmsg(f->st), "exists"));
	assert_int_equal(ops->req_add(f->st, &r, NULL), STORE_DUPLICATE);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"), 2);

	/* id may be NULL on success too */
	fill_request(&r, 9, REQ_PENDING);
	assert_int_equal(ops->req_add(f->st, &r, NULL), STORE_OK);

	/* malformed input is refused before SQL */
	fill_request(&r, 10, REQ_PENDING);
	r.sha256[0] = 'A';
	assert_int_equal(ops->req_add(f->st, &r, NULL), STORE_ERROR);
	fill_request(&r, 10, REQ_PENDING);
	r.sha256[63] = '\0';
	assert_int_equal(ops->req_add(f->st, &r, NULL), STORE_ERROR);
	fill_request(&r, 10, REQ_PENDING);
	r.cn = NULL;
	assert_int_equal(ops->req_add(f->st, &r, NULL), STORE_ERROR);
	fill_request(&r, 10, REQ_PENDING);
	r.state = (req_state)9;
	assert_int_equal(ops->req_add(f->st, &r, NULL), STORE_ERROR);
	assert_int_equal(ops->req_add(f->st, NULL, NULL), STORE_ERROR);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"), 3);
}

static void test_req_lookup(void **state)
{
	struct fx *f = *state;
	struct store_request in, out;
	char sha[65];
	int64_t id = -1;

	fill_request(&in, 2, REQ_PENDING);
	in.lifetime = LIFETIME_LONG;
	strcpy(in.protocol, "token");
	in.updated = 1500;
	assert_int_equal(ops->req_add(f->st, &in, &id), STORE_OK);

	assert_int_equal(ops->req_by_sha256(f->st, in.sha256, &out), STORE_OK);
	assert_int_equal(out.id, id);
	assert_string_equal(out.sha256, in.sha256);
	assert_string_equal(out.pem, in.pem);
	assert_string_equal(out.subject, "CN=host2.example,OU=ops");
	assert_string_equal(out.cn, "host2.example");
	assert_string_equal(out.ou, "ops");
	assert_int_equal(out.state, REQ_PENDING);
	assert_int_equal(out.lifetime, LIFETIME_LONG);
	assert_string_equal(out.protocol, "token");
	assert_int_equal(out.created, 1002);
	assert_int_equal(out.updated, 1500);
	assert_int_equal(out.signed_count, 0);
	/* the strings are the store's copies */
	assert_ptr_not_equal(out.pem, in.pem);
	store_request_clear(&out);
	assert_null(out.pem);
	store_request_clear(&out);
	store_request_clear(NULL);

	id = add_req(f->st, 3, REQ_PENDING);
	assert_int_equal(ops->req_by_id(f->st, id, &out), STORE_OK);
	assert_string_equal(out.cn, "host3.example");
	assert_null(out.ou);
	store_request_clear(&out);

	snprintf(sha, sizeof(sha), "%064x", 99);
	assert_int_equal(ops->req_by_sha256(f->st, sha, &out), STORE_NOT_FOUND);
	assert_null(out.pem);
	assert_int_equal(ops->req_by_id(f->st, 4242, &out), STORE_NOT_FOUND);
	assert_non_null(strstr(ops->errmsg(f->st), "4242"));
	store_request_clear(&out);
	assert_int_equal(ops->req_by_sha256(f->st, NULL, &out), STORE_ERROR);
}

static void test_set_state(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	int64_t id;

	id = add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(ops->req_set_state(f->st, id, REQ_REJECTED, LIFETIME_LONG, 2000),
			 STORE_OK);
	assert_int_equal(ops->req_by_id(f->st, id, &r), STORE_OK);
	assert_int_equal(r.state, REQ_REJECTED);
	assert_int_equal(r.lifetime, LIFETIME_LONG);
	assert_int_equal(r.updated, 2000);
	assert_int_equal(r.created, 1001);
	store_request_clear(&r);

	assert_int_equal(ops->req_set_state(f->st, id, REQ_PENDING, LIFETIME_SHORT, 2001),
			 STORE_OK);
	assert_int_equal(state_of(f->st, id), REQ_PENDING);
	assert_int_equal(ops->req_set_state(f->st, id + 100, REQ_PENDING, LIFETIME_SHORT,
					    2002), STORE_NOT_FOUND);
	assert_int_equal(ops->req_set_state(f->st, id, (req_state)7, LIFETIME_SHORT, 2003),
			 STORE_ERROR);
	assert_int_equal(ops->req_set_state(f->st, id, REQ_PENDING, (req_lifetime)7, 2003),
			 STORE_ERROR);
}

static void test_list_filters(void **state)
{
	struct fx *f = *state;
	struct collect c;
	int64_t id[5];
	int i;

	id[0] = add_req(f->st, 1, REQ_PENDING);
	id[1] = add_req(f->st, 2, REQ_REJECTED);
	id[2] = add_req(f->st, 3, REQ_PENDING);
	id[3] = add_req(f->st, 4, REQ_SIGNED);
	id[4] = add_req(f->st, 5, REQ_PENDING);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, -1, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 5);
	for (i = 0; i < 5; i++)
		assert_int_equal(c.ids[i], id[i]);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, REQ_PENDING, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 3);
	assert_int_equal(c.ids[0], id[0]);
	assert_int_equal(c.ids[1], id[2]);
	assert_int_equal(c.ids[2], id[4]);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, REQ_REJECTED, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ids[0], id[1]);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, REQ_SIGNED, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 1);
	assert_int_equal(c.ids[0], id[3]);

	/* early stop */
	memset(&c, 0, sizeof(c));
	c.stop = 2;
	assert_int_equal(ops->req_list(f->st, REQ_PENDING, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.ids[1], id[2]);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, 3, collect_req, &c), STORE_ERROR);
	assert_int_equal(ops->req_list(f->st, -2, collect_req, &c), STORE_ERROR);
	assert_int_equal(ops->req_list(f->st, -1, NULL, &c), STORE_ERROR);
	assert_int_equal(c.n, 0);
}

/* more rows than one page; callbacks that write through the same handle */
static void test_list_pages(void **state)
{
	struct fx *f = *state;
	struct collect c;
	size_t i;

	for (i = 0; i < 150; i++)
		add_req(f->st, (int)i + 1, REQ_PENDING);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, -1, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 150);
	for (i = 1; i < c.n; i++)
		assert_true(c.ids[i] > c.ids[i - 1]);

	/* stop inside the second page */
	memset(&c, 0, sizeof(c));
	c.stop = 70;
	assert_int_equal(ops->req_list(f->st, REQ_PENDING, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 70);

	/* reject each pending request from inside the list */
	memset(&c, 0, sizeof(c));
	c.st = f->st;
	assert_int_equal(ops->req_list(f->st, REQ_PENDING, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 150);
	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list(f->st, REQ_PENDING, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"
				 " WHERE state = 'rejected' AND updated = 5000"), 150);
}

static void test_cert_add(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	struct store_cert c;
	int64_t r1, r2;

	r1 = add_req(f->st, 1, REQ_PENDING);
	r2 = add_req(f->st, 2, REQ_PENDING);

	assert_int_equal(add_cert(f->st, r1, "0a1b", 9000, 3000), STORE_OK);
	assert_int_equal(ops->req_by_id(f->st, r1, &r), STORE_OK);
	assert_int_equal(r.state, REQ_SIGNED);
	assert_int_equal(r.updated, 3000);
	assert_int_equal(r.signed_count, 1);
	store_request_clear(&r);

	assert_int_equal(ops->cert_by_serial(f->st, "0a1b", &c), STORE_OK);
	assert_int_equal(c.request_id, r1);
	assert_string_equal(c.serial, "0a1b");
	assert_string_equal(c.pem, "-----BEGIN CERTIFICATE-----\nx\n");
	assert_int_equal(c.not_before, 8900);
	assert_int_equal(c.not_after, 9000);
	assert_int_equal(c.created, 3000);
	assert_int_equal(c.revoked, 0);
	assert_int_equal(c.revoke_reason, -1);
	store_cert_clear(&c);
	assert_null(c.pem);
	store_cert_clear(&c);
	store_cert_clear(NULL);

	/* a duplicate serial leaves the other request as it was */
	assert_int_equal(add_cert(f->st, r2, "0a1b", 9500, 3100), STORE_DUPLICATE);
	assert_non_null(strstr(ops->errmsg(f->st), "0a1b"));
	assert_int_equal(ops->req_by_id(f->st, r2, &r), STORE_OK);
	assert_int_equal(r.state, REQ_PENDING);
	assert_int_equal(r.updated, 1002);
	assert_int_equal(r.signed_count, 0);
	store_request_clear(&r);
	assert_int_equal(ops->cert_by_serial(f->st, "0a1b", &c), STORE_OK);
	assert_int_equal(c.request_id, r1);
	assert_int_equal(c.not_after, 9000);
	store_cert_clear(&c);

	/* unknown request: nothing added */
	assert_int_equal(add_cert(f->st, r2 + 100, "0c", 9000, 3200), STORE_NOT_FOUND);
	assert_int_equal(ops->serial_exists(f->st, "0c"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 1);

	/* malformed serials are refused */
	assert_int_equal(add_cert(f->st, r2, "0A", 9000, 3300), STORE_ERROR);
	assert_int_equal(add_cert(f->st, r2, "", 9000, 3300), STORE_ERROR);
	assert_int_equal(add_cert(f->st, r2, "0x1", 9000, 3300), STORE_ERROR);
	assert_int_equal(ops->cert_add(f->st, NULL, 3300), STORE_ERROR);
	assert_int_equal(state_of(f->st, r2), REQ_PENDING);

	assert_int_equal(ops->cert_by_serial(f->st, "ffff", &c), STORE_NOT_FOUND);
	assert_null(c.pem);
	assert_int_equal(ops->cert_by_serial(f->st, NULL, &c), STORE_ERROR);
}

static void test_cert_latest(void **state)
{
	struct fx *f = *state;
	struct store_cert c;
	struct collect col;
	int64_t r1, r2;

	r1 = add_req(f->st, 1, REQ_PENDING);
	r2 = add_req(f->st, 2, REQ_PENDING);
	assert_int_equal(ops->cert_latest(f->st, r1, &c), STORE_NOT_FOUND);
	assert_null(c.pem);

	assert_int_equal(add_cert(f->st, r1, "01", 100, 10), STORE_OK);
	assert_int_equal(add_cert(f->st, r1, "02", 300, 20), STORE_OK);
	assert_int_equal(add_cert(f->st, r1, "03", 300, 30), STORE_OK);
	assert_int_equal(add_cert(f->st, r1, "04", 200, 40), STORE_OK);
	assert_int_equal(add_cert(f->st, r2, "05", 900, 50), STORE_OK);

	/* the one issued last, whatever its not_after (a short
	 * certificate signed after a long one replaces it) */
	assert_int_equal(ops->cert_latest(f->st, r1, &c), STORE_OK);
	assert_string_equal(c.serial, "04");
	assert_int_equal(c.request_id, r1);
	store_cert_clear(&c);
	assert_int_equal(ops->cert_latest(f->st, r2, &c), STORE_OK);
	assert_string_equal(c.serial, "05");
	store_cert_clear(&c);

	memset(&col, 0, sizeof(col));
	assert_int_equal(ops->cert_list(f->st, r1, collect_cert, &col), STORE_OK);
	assert_int_equal(col.n, 4);
	assert_true(col.ids[0] < col.ids[1] && col.ids[1] < col.ids[2] &&
		    col.ids[2] < col.ids[3]);
	memset(&col, 0, sizeof(col));
	col.stop = 1;
	assert_int_equal(ops->cert_list(f->st, r1, collect_cert, &col), STORE_OK);
	assert_int_equal(col.n, 1);
	memset(&col, 0, sizeof(col));
	assert_int_equal(ops->cert_list(f->st, r2 + 1, collect_cert, &col), STORE_OK);
	assert_int_equal(col.n, 0);
}

static void test_signed(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	struct collect c;
	int64_t twice, rejected, pending, marked, back;

	twice = add_req(f->st, 1, REQ_PENDING);
	rejected = add_req(f->st, 2, REQ_PENDING);
	pending = add_req(f->st, 3, REQ_PENDING);
	marked = add_req(f->st, 4, REQ_PENDING);
	back = add_req(f->st, 5, REQ_PENDING);

	assert_int_equal(add_cert(f->st, twice, "11", 100, 10), STORE_OK);
	assert_int_equal(add_cert(f->st, twice, "12", 200, 20), STORE_OK);
	assert_int_equal(add_cert(f->st, rejected, "21", 100, 10), STORE_OK);
	assert_int_equal(ops->req_set_state(f->st, rejected, REQ_REJECTED,
					    LIFETIME_SHORT, 30), STORE_OK);
	/* signed by state but never by certificate */
	assert_int_equal(ops->req_set_state(f->st, marked, REQ_SIGNED,
					    LIFETIME_SHORT, 30), STORE_OK);
	/* signed once, then back to pending for renewal */
	assert_int_equal(add_cert(f->st, back, "51", 100, 10), STORE_OK);
	assert_int_equal(ops->req_set_state(f->st, back, REQ_PENDING,
					    LIFETIME_LONG, 40), STORE_OK);

	assert_int_equal(ops->req_by_id(f->st, twice, &r), STORE_OK);
	assert_int_equal(r.signed_count, 2);
	store_request_clear(&r);
	assert_int_equal(ops->req_by_id(f->st, pending, &r), STORE_OK);
	assert_int_equal(r.signed_count, 0);
	store_request_clear(&r);

	memset(&c, 0, sizeof(c));
	assert_int_equal(ops->req_list_signed(f->st, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 2);
	assert_int_equal(c.ids[0], twice);
	assert_int_equal(c.ids[1], back);

	memset(&c, 0, sizeof(c));
	c.stop = 1;
	assert_int_equal(ops->req_list_signed(f->st, collect_req, &c), STORE_OK);
	assert_int_equal(c.n, 1);
}

static void test_revoke(void **state)
{
	struct fx *f = *state;
	struct store_cert c;
	struct collect col;
	int64_t r1;

	r1 = add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(add_cert(f->st, r1, "01", 100, 10), STORE_OK);
	assert_int_equal(add_cert(f->st, r1, "02", 200, 20), STORE_OK);
	assert_int_equal(add_cert(f->st, r1, "03", 300, 30), STORE_OK);

	memset(&col, 0, sizeof(col));
	assert_int_equal(ops->cert_list_revoked(f->st, collect_cert, &col), STORE_OK);
	assert_int_equal(col.n, 0);

	assert_int_equal(ops->cert_revoke(f->st, "01", 1, 500), STORE_OK);
	assert_int_equal(ops->cert_revoke(f->st, "03", -1, 510), STORE_OK);
	assert_int_equal(ops->cert_by_serial(f->st, "01", &c), STORE_OK);
	assert_int_equal(c.revoked, 500);
	assert_int_equal(c.revoke_reason, 1);
	store_cert_clear(&c);

	/* twice: the first time and reason stay */
	assert_int_equal(ops->cert_revoke(f->st, "01", 4, 600), STORE_OK);
	assert_int_equal(ops->cert_by_serial(f->st, "01", &c), STORE_OK);
	assert_int_equal(c.revoked, 500);
	assert_int_equal(c.revoke_reason, 1);
	store_cert_clear(&c);

	assert_int_equal(ops->cert_by_serial(f->st, "02", &c), STORE_OK);
	assert_int_equal(c.revoked, 0);
	assert_int_equal(c.revoke_reason, -1);
	store_cert_clear(&c);

	assert_int_equal(ops->cert_revoke(f->st, "99", 1, 700), STORE_NOT_FOUND);
	assert_non_null(strstr(ops->errmsg(f->st), "99"));
	assert_int_equal(ops->cert_revoke(f->st, "02", 1, 0), STORE_ERROR);
	assert_int_equal(ops->cert_revoke(f->st, NULL, 1, 700), STORE_ERROR);

	memset(&col, 0, sizeof(col));
	assert_int_equal(ops->cert_list_revoked(f->st, collect_cert, &col), STORE_OK);
	assert_int_equal(col.n, 2);
	assert_true(col.ids[0] < col.ids[1]);
	memset(&col, 0, sizeof(col));
	col.stop = 1;
	assert_int_equal(ops->cert_list_revoked(f->st, collect_cert, &col), STORE_OK);
	assert_int_equal(col.n, 1);
	assert_int_equal(ops->cert_by_serial(f->st, "03", &c), STORE_OK);
	assert_int_equal(c.revoked, 510);
	assert_int_equal(c.revoke_reason, -1);
	store_cert_clear(&c);
}

static void test_serial_exists(void **state)
{
	struct fx *f = *state;
	int64_t r1;

	r1 = add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(ops->serial_exists(f->st, "7f"), 0);
	assert_int_equal(add_cert(f->st, r1, "7f", 100, 10), STORE_OK);
	assert_int_equal(ops->serial_exists(f->st, "7f"), 1);
	assert_int_equal(ops->serial_exists(f->st, "7F"), 0);
	assert_int_equal(ops->serial_exists(f->st, NULL), -1);
}

static void test_log_access(void **state)
{
	struct fx *f = *state;
	struct store_access a = {
		.time = 1700000000,
		.peer = "127.0.0.1:53122",
		.method = "POST",
		.path = "/caramel/ab'cd",
		.status = 202,
		.bytes = 12,
		.protocol = "caramel",
		.detail = "queued; 'quoted'",
	};
	struct store_access bare = { .time = 1700000001, .status = 400 };

	assert_int_equal(ops->log_access(f->st, &a), STORE_OK);
	assert_int_equal(ops->log_access(f->st, &bare), STORE_OK);
	assert_int_equal(ops->log_access(f->st, NULL), STORE_ERROR);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM access_log"), 2);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM access_log WHERE"
				 " time = 1700000000 AND peer = '127.0.0.1:53122' AND"
				 " method = 'POST' AND path = '/caramel/ab''cd' AND"
				 " status = 202 AND bytes = 12 AND protocol = 'caramel'"
				 " AND detail = 'queued; ''quoted'''"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM access_log WHERE"
				 " time = 1700000001 AND peer IS NULL AND method IS NULL"
				 " AND path IS NULL AND protocol IS NULL AND detail IS NULL"
				 " AND status = 400"), 1);
}

static void test_newer_schema(void **state)
{
	struct fx *f = *state;
	store *st = NULL;

	add_req(f->st, 1, REQ_PENDING);
	ops->close(&f->st);
	raw_exec(f->path, "UPDATE schema_version SET version = 999");

	assert_int_equal(ops->open(&st, f->path), STORE_ERROR);
	assert_non_null(st);
	assert_string_equal(ops->errmsg(st),
			    "database schema version 999 is newer than this p11ca"
			    " understands (3)");
	/* a handle that failed to open refuses everything else */
	assert_int_equal(ops->req_set_state(st, 1, REQ_PENDING, LIFETIME_SHORT, 1),
			 STORE_ERROR);
	assert_int_equal(ops->serial_exists(st, "01"), -1);
	assert_string_equal(ops->errmsg(st), "database is not open");
	ops->close(&st);
	assert_null(st);

	/* nothing was touched */
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version"), 999);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"), 1);
}

/* ---- issue 10: compare and set, revocation that sticks, CRL numbers ---- */

static const char KEY_A[] = "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
static const char KEY_B[] = "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

/* a certificate for keyid valid from now - 100 to now + 1000 */
static void fill_cert_key(struct store_cert *c, int64_t req, const char *serial, const char *keyid,
			  int explicit_sign, int64_t now)
{
	memset(c, 0, sizeof(*c));
	c->request_id = req;
	snprintf(c->serial, sizeof(c->serial), "%s", serial);
	snprintf(c->keyid, sizeof(c->keyid), "%s", keyid);
	c->pem = "-----BEGIN CERTIFICATE-----\nx\n";
	c->not_before = now - 100;
	c->not_after = now + 1000;
	c->explicit_sign = explicit_sign;
}

static store_result add_cert_key(store *st, int64_t req, const char *serial, const char *keyid,
				 int explicit_sign, int64_t now)
{
	struct store_cert c;

	fill_cert_key(&c, req, serial, keyid, explicit_sign, now);
	return ops->cert_add(st, &c, now);
}

static void test_cert_add_cas(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	struct store_cert c;
	int64_t r1, r2, r3;
	int rev = -1;

	r1 = add_req(f->st, 1, REQ_PENDING);
	r2 = add_req(f->st, 2, REQ_PENDING);
	r3 = add_req(f->st, 3, REQ_PENDING);

	/* a rejected request is never signed, not even explicitly */
	assert_int_equal(ops->req_set_state(f->st, r1, REQ_REJECTED, LIFETIME_SHORT, 1500), STORE_OK);
	assert_int_equal(add_cert_key(f->st, r1, "01", KEY_A, 0, 2000), STORE_CONFLICT);
	assert_int_equal(add_cert_key(f->st, r1, "01", KEY_A, 1, 2000), STORE_CONFLICT);
	assert_non_null(strstr(ops->errmsg(f->st), "rejected"));
	assert_int_equal(state_of(f->st, r1), REQ_REJECTED);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 0);

	/* r2 signed with key A, then revoked: neither r2 nor another request
	 * for key A is signed again without an administrator */
	assert_int_equal(add_cert_key(f->st, r2, "02", KEY_A, 0, 2000), STORE_OK);
	assert_int_equal(ops->key_revoked(f->st, KEY_A, &rev), STORE_OK);
	assert_int_equal(rev, 0);
	assert_int_equal(ops->cert_revoke(f->st, "02", 1, 2100), STORE_OK);
	assert_int_equal(ops->key_revoked(f->st, KEY_A, &rev), STORE_OK);
	assert_int_equal(rev, 1);
	assert_int_equal(add_cert_key(f->st, r2, "03", KEY_B, 0, 2200), STORE_CONFLICT);
	assert_non_null(strstr(ops->errmsg(f->st), "revoked"));
	assert_int_equal(add_cert_key(f->st, r3, "03", KEY_A, 0, 2200), STORE_CONFLICT);
	assert_non_null(strstr(ops->errmsg(f->st), "revoked"));
	assert_int_equal(state_of(f->st, r3), REQ_PENDING);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 1);
	/* another key is fine */
	assert_int_equal(add_cert_key(f->st, r3, "04", KEY_B, 0, 2200), STORE_OK);

	/* an administrator's explicit signature certifies key A again, and
	 * sets the lifetime in the same transaction */
	memset(&c, 0, sizeof(c));
	c.request_id = r2;
	snprintf(c.serial, sizeof(c.serial), "05");
	snprintf(c.keyid, sizeof(c.keyid), "%s", KEY_A);
	c.pem = "-----BEGIN CERTIFICATE-----\nx\n";
	c.explicit_sign = 1;
	c.set_lifetime = 1;
	c.lifetime = LIFETIME_LONG;
	assert_int_equal(ops->cert_add(f->st, &c, 2300), STORE_OK);
	assert_int_equal(ops->req_by_id(f->st, r2, &r), STORE_OK);
	assert_int_equal(r.lifetime, LIFETIME_LONG);
	assert_int_equal(r.state, REQ_SIGNED);
	store_request_clear(&r);
	assert_int_equal(ops->key_revoked(f->st, KEY_A, &rev), STORE_OK);
	assert_int_equal(rev, 0);
	assert_int_equal(add_cert_key(f->st, r2, "06", KEY_A, 0, 2400), STORE_OK);
	/* ...until it is revoked again, in the same second even */
	assert_int_equal(ops->cert_revoke(f->st, "06", 1, 2400), STORE_OK);
	assert_int_equal(add_cert_key(f->st, r3, "07", KEY_A, 0, 2400), STORE_CONFLICT);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates WHERE keyid = '"
				 "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"), 3);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates WHERE explicit = 1"), 1);
	assert_int_equal(ops->key_revoked(f->st, NULL, &rev), STORE_ERROR);
}

/* req_add_signed of request n (fill_request, as pending: stored signed
 * all the same) with a certificate for keyid */
static store_result add_signed(store *st, int n, const char *serial, const char *keyid, int explicit_sign,
			       int64_t now, int64_t *id, int *exists)
{
	struct store_request r;
	struct store_cert c;

	fill_request(&r, n, REQ_PENDING);
	/* request_id ignored: the new request's id is used */
	fill_cert_key(&c, 999, serial, keyid, explicit_sign, now);
	c.set_lifetime = 1;
	c.lifetime = LIFETIME_LONG;
	return ops->req_add_signed(st, &r, &c, now, id, exists);
}

static void test_req_add_signed(void **state)
{
	struct fx *f = *state;
	struct store_request r, req;
	struct store_cert c;
	char sha[65], sql[256];
	int64_t id = -1, id2 = -1, r3;
	int exists = -1;

	/* the request, signed, and its certificate */
	assert_int_equal(add_signed(f->st, 1, "0a", KEY_A, 0, 3000, &id, &exists), STORE_OK);
	assert_true(id > 0);
	assert_int_equal(exists, 0);
	fill_request(&req, 1, REQ_PENDING);
	assert_int_equal(ops->req_by_sha256(f->st, req.sha256, &r), STORE_OK);
	assert_int_equal(r.id, id);
	assert_int_equal(r.state, REQ_SIGNED);
	assert_int_equal(r.signed_count, 1);
	assert_int_equal(r.lifetime, LIFETIME_LONG);
	assert_int_equal(r.created, 1001);
	assert_int_equal(r.updated, 3000);
	assert_string_equal(r.cn, "host1.example");
	store_request_clear(&r);
	assert_int_equal(ops->cert_latest(f->st, id, &c), STORE_OK);
	assert_int_equal(c.request_id, id);
	assert_string_equal(c.serial, "0a");
	assert_string_equal(c.pem, "-----BEGIN CERTIFICATE-----\nx\n");
	assert_int_equal(c.not_after, 4000);
	assert_int_equal(c.created, 3000);
	assert_int_equal(c.revoked, 0);
	store_cert_clear(&c);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificates WHERE request_id = %lld"
		 " AND keyid = '%s' AND explicit = 0", (long long)id, KEY_A);
	assert_int_equal(raw_int(f->path, sql), 1);

	/* the same CSR again: the first request, and no second certificate */
	assert_int_equal(add_signed(f->st, 1, "0b", KEY_A, 0, 3100, &id2, &exists), STORE_DUPLICATE);
	assert_int_equal(exists, 1);
	assert_int_equal(id2, id);
	assert_int_equal(ops->serial_exists(f->st, "0b"), 0);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"), 1);

	/* a serial taken: another one is drawn, and nothing is stored */
	id2 = -1;
	assert_int_equal(add_signed(f->st, 2, "0a", KEY_B, 0, 3200, &id2, &exists), STORE_DUPLICATE);
	assert_int_equal(exists, 0);
	assert_int_equal(id2, -1);
	assert_non_null(strstr(ops->errmsg(f->st), "0a"));
	fill_request(&req, 2, REQ_PENDING);
	snprintf(sha, sizeof(sha), "%s", req.sha256);
	assert_int_equal(ops->req_by_sha256(f->st, sha, &r), STORE_NOT_FOUND);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"), 1);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates"), 1);
	/* ...and the same CSR with a free serial is stored then */
	assert_int_equal(add_signed(f->st, 2, "0c", KEY_B, 0, 3300, &id2, &exists), STORE_OK);
	assert_true(id2 > id);
	assert_int_equal(exists, 0);

	/* a revoked key: refused without an administrator, and nothing stored */
	r3 = add_req(f->st, 3, REQ_PENDING);
	assert_int_equal(add_cert_key(f->st, r3, "03", KEY_A, 0, 3400), STORE_OK);
	assert_int_equal(ops->cert_revoke(f->st, "03", 1, 3500), STORE_OK);
	id2 = -1;
	assert_int_equal(add_signed(f->st, 4, "04", KEY_A, 0, 3600, &id2, &exists), STORE_CONFLICT);
	assert_non_null(strstr(ops->errmsg(f->st), "revoked"));
	assert_int_equal(exists, 0);
	assert_int_equal(id2, -1);
	fill_request(&req, 4, REQ_PENDING);
	snprintf(sha, sizeof(sha), "%s", req.sha256);
	assert_int_equal(ops->req_by_sha256(f->st, sha, &r), STORE_NOT_FOUND);
	assert_int_equal(ops->serial_exists(f->st, "04"), 0);
	/* an explicit signature certifies it again */
	assert_int_equal(add_signed(f->st, 4, "04", KEY_A, 1, 3700, &id2, &exists), STORE_OK);
	assert_int_equal(exists, 0);
	assert_int_equal(ops->req_by_sha256(f->st, sha, &r), STORE_OK);
	assert_int_equal(r.id, id2);
	assert_int_equal(r.state, REQ_SIGNED);
	assert_int_equal(r.signed_count, 1);
	store_request_clear(&r);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM certificates WHERE explicit = 1"), 1);

	/* what req_add and cert_add refuse */
	assert_int_equal(ops->req_add_signed(f->st, NULL, NULL, 3800, &id2, &exists), STORE_ERROR);
	fill_request(&req, 5, REQ_PENDING);
	memset(&c, 0, sizeof(c));
	c.pem = "-----BEGIN CERTIFICATE-----\nx\n";
	snprintf(c.serial, sizeof(c.serial), "0X");
	assert_int_equal(ops->req_add_signed(f->st, &req, &c, 3800, &id2, &exists), STORE_ERROR);
	assert_int_equal(ops->req_add_signed(f->st, &req, NULL, 3800, &id2, &exists), STORE_ERROR);
	assert_int_equal(raw_int(f->path, "SELECT count(*) FROM requests"), 4);
}

/* a real certificate PEM, for the keyid backfill */
static char *make_cert_pem(char keyid[65])
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIO *b = BIO_new(BIO_s_mem());
	unsigned char *der = NULL, md[32];
	char *data, *pem;
	long n;
	int dl, i;

	assert_non_null(k);
	assert_non_null(x);
	assert_true(X509_set_pubkey(x, k));
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 60));
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	assert_true(PEM_write_bio_X509(b, x));
	n = BIO_get_mem_data(b, &data);
	pem = strndup(data, (size_t)n);
	dl = i2d_PUBKEY(k, &der);
	assert_true(dl > 0);
	assert_int_equal(EVP_Digest(der, (size_t)dl, md, NULL, EVP_sha256(), NULL), 1);
	for (i = 0; i < 32; i++)
		snprintf(keyid + 2 * i, 3, "%02x", md[i]);
	OPENSSL_free(der);
	BIO_free(b);
	X509_free(x);
	EVP_PKEY_free(k);
	return pem;
}

static void test_migration_v2(void **state)
{
	struct fx *f = *state;
	char keyid[65], sql[512];
	char *pem = NULL;
	struct store_cert c;
	int64_t r1, r2;
	int rev = -1;
	sqlite3 *db;
	sqlite3_stmt *s = NULL;

	SQLITE_ONLY();
	pem = make_cert_pem(keyid);
	/* a version 1 database holding a revoked certificate */
	r1 = add_req(f->st, 1, REQ_PENDING);
	r2 = add_req(f->st, 2, REQ_PENDING);
	memset(&c, 0, sizeof(c));
	c.request_id = r1;
	snprintf(c.serial, sizeof(c.serial), "0a");
	c.pem = pem;
	assert_int_equal(ops->cert_add(f->st, &c, 100), STORE_OK);
	assert_int_equal(ops->cert_revoke(f->st, "0a", 1, 200), STORE_OK);
	ops->close(&f->st);
	raw_exec(f->path, "DROP INDEX certificates_request_newest;"
		 " CREATE INDEX certificates_request_id ON certificates(request_id);"
		 " DROP INDEX certificates_keyid;"
		 " ALTER TABLE certificates DROP COLUMN keyid;"
		 " ALTER TABLE certificates DROP COLUMN explicit;"
		 " ALTER TABLE certificates DROP COLUMN revoke_seq;"
		 " DROP TABLE crl_number; UPDATE schema_version SET version = 1");

	/* the upgrade fills keyid from the PEM: the key stays revoked */
	assert_int_equal(ops->open(&f->st, f->path), STORE_OK);
	assert_int_equal(raw_int(f->path, "SELECT version FROM schema_version"), 3);
	db = raw_open(f->path);
	assert_int_equal(sqlite3_prepare_v2(db, "SELECT keyid FROM certificates WHERE serial = '0a'",
					    -1, &s, NULL), SQLITE_OK);
	assert_int_equal(sqlite3_step(s), SQLITE_ROW);
	assert_string_equal((const char *)sqlite3_column_text(s, 0), keyid);
	sqlite3_finalize(s);
	sqlite3_close(db);
	snprintf(sql, sizeof(sql), "SELECT count(*) FROM certificates WHERE keyid = '%s'", keyid);
	assert_int_equal(raw_int(f->path, sql), 1);
	assert_int_equal(ops->key_revoked(f->st, keyid, &rev), STORE_OK);
	assert_int_equal(rev, 1);
	assert_int_equal(add_cert_key(f->st, r2, "0b", keyid, 0, 300), STORE_CONFLICT);
	free(pem);
}

static void test_crl_number(void **state)
{
	struct fx *f = *state;
	int64_t n = 0;

	assert_int_equal(ops->crl_next_number(f->st, &n), STORE_OK);
	assert_int_equal(n, 1);
	assert_int_equal(ops->crl_next_number(f->st, &n), STORE_OK);
	assert_int_equal(n, 2);
	ops->close(&f->st);
	assert_int_equal(ops->open(&f->st, f->path), STORE_OK);
	assert_int_equal(ops->crl_next_number(f->st, &n), STORE_OK);
	assert_int_equal(n, 3);
	assert_int_equal(ops->crl_next_number(f->st, NULL), STORE_ERROR);
}

static void test_two_handles(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	struct store_cert c;
	store *b = NULL;
	int64_t ra, rb;

	ra = add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(ops->open(&b, f->path), STORE_OK);
	assert_int_equal(ops->req_by_id(b, ra, &r), STORE_OK);
	assert_string_equal(r.cn, "host1.example");
	store_request_clear(&r);

	rb = add_req(b, 2, REQ_PENDING);
	assert_int_equal(ops->req_by_id(f->st, rb, &r), STORE_OK);
	store_request_clear(&r);

	assert_int_equal(add_cert(f->st, rb, "0b", 100, 10), STORE_OK);
	assert_int_equal(state_of(b, rb), REQ_SIGNED);
	assert_int_equal(ops->cert_latest(b, rb, &c), STORE_OK);
	assert_string_equal(c.serial, "0b");
	store_cert_clear(&c);
	assert_int_equal(add_cert(b, ra, "0b", 100, 10), STORE_DUPLICATE);
	assert_int_equal(add_cert(b, ra, "0a", 100, 10), STORE_OK);
	assert_int_equal(ops->serial_exists(f->st, "0a"), 1);
	ops->close(&b);
	assert_null(b);
	assert_int_equal(state_of(f->st, ra), REQ_SIGNED);
}

/*
 * Statements are reused (sqlite.c keeps them prepared): every read must
 * still see what another handle committed since.  A statement put back
 * without a reset would keep its read transaction, and this handle would go
 * on reading the old snapshot (or fail to bind again).
 */
static void test_reused_statements_see_writes(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	char sha[65];
	store *b = NULL;
	int64_t id;
	int n;

	add_req(f->st, 1, REQ_PENDING);
	assert_int_equal(ops->open(&b, f->path), STORE_OK);
	for (n = 2; n < 60; n++) {
		/* a lookup that stops at its one row */
		snprintf(sha, sizeof(sha), "%064x", 1);
		assert_int_equal(ops->req_by_sha256(f->st, sha, &r), STORE_OK);
		store_request_clear(&r);
		id = add_req(b, n, REQ_PENDING);
		/* another statement, then the same one again */
		assert_int_equal(ops->req_by_id(f->st, id, &r), STORE_OK);
		store_request_clear(&r);
		snprintf(sha, sizeof(sha), "%064x", n);
		assert_int_equal(ops->req_by_sha256(f->st, sha, &r), STORE_OK);
		assert_int_equal(r.id, id);
		store_request_clear(&r);
		assert_int_equal(add_cert(b, id, sha + 56, 100, 10), STORE_OK);
		assert_int_equal(state_of(f->st, id), REQ_SIGNED);
	}
	ops->close(&b);
}

static void test_open_errors(void **state)
{
	struct fx *f = *state;
	char path[192];
	store *st = NULL;

	SQLITE_ONLY();
	snprintf(path, sizeof(path), "%s/missing/ca.db", f->dir);
	assert_int_equal(ops->open(&st, path), STORE_ERROR);
	assert_non_null(st);
	assert_non_null(strstr(ops->errmsg(st), "missing/ca.db"));
	ops->close(&st);

	assert_int_equal(ops->open(&st, NULL), STORE_ERROR);
	ops->close(&st);
	assert_int_equal(ops->open(&st, ""), STORE_ERROR);
	ops->close(&st);
	assert_int_equal(ops->open(NULL, f->path), STORE_ERROR);

	/* not a database */
	snprintf(path, sizeof(path), "%s/junk.db", f->dir);
	{
		FILE *fp = fopen(path, "w");

		assert_non_null(fp);
		fputs("this is not an SQLite database, not even close to one\n", fp);
		fclose(fp);
	}
	assert_int_equal(ops->open(&st, path), STORE_ERROR);
	assert_non_null(strstr(ops->errmsg(st), "junk.db: file is not a database"));
	ops->close(&st);

	ops->close(&st);
	ops->close(NULL);
	assert_string_equal(ops->errmsg(NULL), "out of memory");
	assert_string_equal(ops->name, "sqlite");
	assert_string_equal(store_state_name(REQ_PENDING), "pending");
	assert_string_equal(store_state_name(REQ_SIGNED), "signed");
	assert_string_equal(store_state_name(REQ_REJECTED), "rejected");
	assert_string_equal(store_state_name((req_state)42), "unknown");
}

/* ---- issue 13: PostgreSQL ---- */

/* the connection string in messages: no password */
static void test_pg_redact(void **state)
{
	char out[256];

	(void)state;
	store_pg_redact("postgresql://ca:s3cret@db.example/p11ca?sslmode=verify-full", out, sizeof(out));
	assert_string_equal(out, "postgresql://ca:***@db.example/p11ca?sslmode=verify-full");
	store_pg_redact("postgresql:///p11ca?host=/run/pg&password=s3cret&user=ca", out, sizeof(out));
	assert_string_equal(out, "postgresql:///p11ca?host=/run/pg&password=***&user=ca");
	store_pg_redact("postgresql://ca@db:5432/p11ca", out, sizeof(out));
	assert_string_equal(out, "postgresql://ca@db:5432/p11ca");
	store_pg_redact("postgresql://ca:a@b@db/x", out, 12);
	assert_null(strstr(out, "a@b"));
	assert_true(store_is_pg("postgres://x") && store_is_pg("postgresql://x") && !store_is_pg("/var/ca.db") &&
		    !store_is_pg(NULL));
}

/* the server ends our session (a restart, a failover): the next call
 * reconnects and succeeds, nothing of the operation having run before */
static void test_pg_reconnect(void **state)
{
	struct fx *f = *state;
	struct store_request r;
	struct store_cert cert;
	char sql[160];
	int64_t id;

	if (pg_admin == NULL)
		skip();
	id = add_req(f->st, 1, REQ_PENDING);
	/* the statements below prepared on the connection that goes away:
	 * the new one prepares them again */
	assert_int_equal(ops->req_by_id(f->st, id, &r), STORE_OK);
	store_request_clear(&r);
	assert_int_equal(add_cert(f->st, id, "0b", 100, 10), STORE_OK);
	snprintf(sql, sizeof(sql), "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '%s'"
		 " AND pid != pg_backend_pid()", f->dbname);
	{
		PGconn *c = NULL;

		PQclear(raw_pg(f->path, sql, PGRES_TUPLES_OK, &c));
		PQfinish(c);
	}
	assert_int_equal(ops->req_by_id(f->st, id, &r), STORE_OK);
	assert_string_equal(r.cn, "host1.example");
	store_request_clear(&r);
	assert_int_equal(ops->down(f->st), 0);
	/* and a write after it */
	assert_int_equal(add_cert(f->st, id, "0c", 100, 10), STORE_OK);
	assert_int_equal(ops->cert_latest(f->st, id, &cert), STORE_OK);
	assert_string_equal(cert.serial, "0c");
	store_cert_clear(&cert);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_schema_created, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reopen_keeps_data, setup, teardown),
		cmocka_unit_test_setup_teardown(test_file_mode, setup, teardown),
		cmocka_unit_test_setup_teardown(test_req_add_duplicate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_req_lookup, setup, teardown),
		cmocka_unit_test_setup_teardown(test_set_state, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_filters, setup, teardown),
		cmocka_unit_test_setup_teardown(test_list_pages, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_add, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_latest, setup, teardown),
		cmocka_unit_test_setup_teardown(test_signed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_revoke, setup, teardown),
		cmocka_unit_test_setup_teardown(test_serial_exists, setup, teardown),
		cmocka_unit_test_setup_teardown(test_log_access, setup, teardown),
		cmocka_unit_test_setup_teardown(test_newer_schema, setup, teardown),
		cmocka_unit_test_setup_teardown(test_two_handles, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reused_statements_see_writes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_open_errors, setup, teardown),
		cmocka_unit_test_setup_teardown(test_cert_add_cas, setup, teardown),
		cmocka_unit_test_setup_teardown(test_req_add_signed, setup, teardown),
		cmocka_unit_test_setup_teardown(test_migration_v2, setup, teardown),
		cmocka_unit_test_setup_teardown(test_crl_number, setup, teardown),
		cmocka_unit_test(test_pg_redact),
		cmocka_unit_test_setup_teardown(test_pg_reconnect, setup, teardown),
	};

	pg_admin = getenv("P11CA_TEST_PG");
	if (pg_admin != NULL)
		ops = &store_pg_ops;
	return cmocka_run_group_tests(tests, NULL, NULL);
}
