/*
 * The protocol tables (issue 11, "one protocol table"): libp11cert's
 * enrollment protocols (src/lib/enroll/protocol.h) and p11ca's served
 * protocols (src/ca/request.h) are found by name, carry what the callers
 * use, and name a protocol the same on both sides; ca_peer_current, the one
 * "client certificate is current" check of Caramel's mTLS renewal and the
 * shared-token POST /renew (review D3), on a real SQLite store.
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
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "enroll/protocol.h"
#include "request.h"

/* ---- the library's table ---- */

static void test_lib_find(void **state)
{
	(void)state;
	assert_ptr_equal(p11c_protocol_find("caramel"), &p11c_proto_caramel);
	assert_ptr_equal(p11c_protocol_find("token"), &p11c_proto_sharedtoken);
	/* exact names only: records are written by us */
	assert_null(p11c_protocol_find("Caramel"));
	assert_null(p11c_protocol_find("caramel "));
	assert_null(p11c_protocol_find("car"));
	assert_null(p11c_protocol_find(""));
	assert_null(p11c_protocol_find("ACME"));
	assert_null(p11c_protocol_find("EST"));
	assert_null(p11c_protocol_find("est "));
	assert_null(p11c_protocol_find(NULL));
}

static void test_lib_entries(void **state)
{
	const struct p11c_protocol *p, *q;
	size_t i, k, n = 0;

	(void)state;
	for (i = 0; (p = p11c_protocol_at(i)) != NULL; i++, n++) {
		assert_non_null(p->name);
		assert_true(p->name[0] != '\0');
		assert_non_null(p->description);
		/* a wire renewal round, except ACME (a new order) */
		if (p != &p11c_proto_acme)
			assert_non_null(p->renew);
		/* every entry is found by its name, and names are unique */
		assert_ptr_equal(p11c_protocol_find(p->name), p);
		for (k = 0; k < i; k++) {
			q = p11c_protocol_at(k);
			assert_true(strcmp(p->name, q->name) != 0);
		}
	}
	assert_int_equal(n, 4);
	assert_ptr_equal(p11c_protocol_find("acme"), &p11c_proto_acme);
	assert_ptr_equal(p11c_protocol_find("est"), &p11c_proto_est);
	assert_null(p11c_proto_acme.renew);
	assert_null(p11c_protocol_at(n));
	/* Caramel posts the caller's CSR (kept across runs); the shared-token
	 * renewal makes its own from the current certificate */
	assert_int_equal(p11c_proto_caramel.needs_csr, 1);
	assert_int_equal(p11c_proto_sharedtoken.needs_csr, 0);
	/* EST makes its request from the current certificate (RFC 7030
	 * s4.2.2: same subject and subjectAltName) */
	assert_int_equal(p11c_proto_est.needs_csr, 0);
}

/* An EST re-enrollment without the current certificate is an argument
 * error, found before any network work. */
static void test_est_renew_needs_cert(void **state)
{
	struct p11c_renewal rn;
	p11c_ctx *ctx = NULL;

	(void)state;
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	memset(&rn, 0, sizeof rn);
	rn.server = "https://127.0.0.1:1";
	assert_int_equal(p11c_proto_est.renew(ctx, &rn), P11C_ERR_ARG);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "current certificate"));
	assert_null(rn.cert);
	p11c_ctx_free(&ctx);
}

/* A Caramel renewal without the caller's CSR is an argument error, found
 * before any network work. */
static void test_caramel_renew_needs_csr(void **state)
{
	struct p11c_renewal rn;
	p11c_ctx *ctx = NULL;

	(void)state;
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	memset(&rn, 0, sizeof rn);
	rn.server = "127.0.0.1:1";
	assert_int_equal(p11c_proto_caramel.renew(ctx, &rn), P11C_ERR_ARG);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "no CSR"));
	assert_null(rn.cert);
	assert_null(rn.cert_pem);
	p11c_ctx_free(&ctx);
}

/* ---- p11ca's served protocols ---- */

static void test_served_tables(void **state)
{
	const struct ca_protocol *const served[] = { &ca_proto_sharedtoken, &ca_proto_est, &ca_proto_caramel };
	size_t i, k;

	(void)state;
	for (i = 0; i < sizeof served / sizeof served[0]; i++) {
		assert_non_null(served[i]->name);
		assert_non_null(served[i]->description);
		assert_true(served[i]->nroutes > 0);
		for (k = 0; k < served[i]->nroutes; k++) {
			assert_non_null(served[i]->routes[k].match);
			assert_non_null(served[i]->routes[k].handle);
		}
	}
	/* one name per protocol on both sides (records, access log, store) */
	assert_string_equal(ca_proto_caramel.name, p11c_proto_caramel.name);
	assert_string_equal(ca_proto_sharedtoken.name, p11c_proto_sharedtoken.name);
	assert_string_equal(ca_proto_est.name, p11c_proto_est.name);
}

/* ---- ca_peer_current ---- */

struct fx {
	char dir[64];
	struct ca ca;
};

static int setup(void **state)
{
	struct fx *f = calloc(1, sizeof(*f));
	char path[128];

	assert_non_null(f);
	strcpy(f->dir, "/tmp/p11ca-proto-XXXXXX");
	assert_non_null(mkdtemp(f->dir));
	snprintf(path, sizeof(path), "%s/ca.db", f->dir);
	f->ca.so = &store_sqlite_ops;
	assert_int_equal(f->ca.so->open(&f->ca.st, path), STORE_OK);
	*state = f;
	return 0;
}

static int teardown(void **state)
{
	struct fx *f = *state;

	f->ca.so->close(&f->ca.st);
	test_rmdir_flat(f->dir);
	free(f);
	return 0;
}

/* A self-signed certificate with serial SERIAL (hex) valid from
 * now + FROM to now + TO seconds. */
static X509 *make_cert(const char *serial, long from, long to)
{
	EVP_PKEY *k = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ai = NULL;

	assert_non_null(k);
	assert_non_null(x);
	assert_true(BN_hex2bn(&bn, serial) > 0);
	assert_non_null(ai = BN_to_ASN1_INTEGER(bn, NULL));
	assert_int_equal(X509_set_serialNumber(x, ai), 1);
	assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), from));
	assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), to));
	assert_int_equal(X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
						    (const unsigned char *)"peer", -1, -1, 0), 1);
	assert_int_equal(X509_set_issuer_name(x, X509_get_subject_name(x)), 1);
	assert_int_equal(X509_set_pubkey(x, k), 1);
	assert_true(X509_sign(x, k, EVP_sha256()) > 0);
	ASN1_INTEGER_free(ai);
	BN_free(bn);
	EVP_PKEY_free(k);
	return x;
}

/* The store's record of a certificate with serial SERIAL (lowercase hex,
 * as ca_issue stores it). */
static void store_cert(struct fx *f, int n, const char *serial)
{
	struct store_request r;
	struct store_cert c;
	char sha[65], subject[32];
	int64_t id = -1, now = (int64_t)time(NULL);

	memset(&r, 0, sizeof(r));
	snprintf(sha, sizeof(sha), "%064x", n);
	snprintf(subject, sizeof(subject), "CN=peer%d", n);
	memcpy(r.sha256, sha, sizeof(r.sha256));
	r.pem = (char *)"-----BEGIN CERTIFICATE REQUEST-----\nx\n";
	r.subject = subject;
	r.cn = subject + 3;
	r.state = REQ_PENDING;
	r.lifetime = LIFETIME_SHORT;
	strcpy(r.protocol, "token");
	r.created = r.updated = now;
	assert_int_equal(f->ca.so->req_add(f->ca.st, &r, &id), STORE_OK);
	memset(&c, 0, sizeof(c));
	c.request_id = id;
	snprintf(c.serial, sizeof(c.serial), "%s", serial);
	c.pem = (char *)"-----BEGIN CERTIFICATE-----\nx\n";
	c.not_before = now - 60;
	c.not_after = now + 86400;
	assert_int_equal(f->ca.so->cert_add(f->ca.st, &c, now), STORE_OK);
}

static void test_peer_current(void **state)
{
	struct fx *f = *state;
	X509 *cur = make_cert("ABCDEF12", -60, 86400);
	X509 *unknown = make_cert("0ABCDEF13", -60, 86400);
	X509 *expired = make_cert("ABCDEF14", -86400, -60);
	X509 *revoked = make_cert("ABCDEF15", -60, 86400);

	assert_int_equal(ca_peer_current(&f->ca, NULL), 0);
	/* unknown to the store (another CA's, or a forged serial) */
	assert_int_equal(ca_peer_current(&f->ca, cur), 0);
	assert_int_equal(ca_peer_current(&f->ca, unknown), 0);
	/* known: the serial is looked up in lowercase hex (BN_bn2hex
	 * writes uppercase) */
	store_cert(f, 1, "abcdef12");
	assert_int_equal(ca_peer_current(&f->ca, cur), 1);
	/* known but expired (the certificate's own notAfter) */
	store_cert(f, 2, "abcdef14");
	assert_int_equal(ca_peer_current(&f->ca, expired), 0);
	/* known, then revoked */
	store_cert(f, 3, "abcdef15");
	assert_int_equal(ca_peer_current(&f->ca, revoked), 1);
	assert_int_equal(f->ca.so->cert_revoke(f->ca.st, "abcdef15", 1, (int64_t)time(NULL)), STORE_OK);
	assert_int_equal(ca_peer_current(&f->ca, revoked), 0);
	/* the others are untouched */
	assert_int_equal(ca_peer_current(&f->ca, cur), 1);
	X509_free(cur);
	X509_free(unknown);
	X509_free(expired);
	X509_free(revoked);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_lib_find),
		cmocka_unit_test(test_lib_entries),
		cmocka_unit_test(test_caramel_renew_needs_csr),
		cmocka_unit_test(test_est_renew_needs_cert),
		cmocka_unit_test(test_served_tables),
		cmocka_unit_test_setup_teardown(test_peer_current, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
