/*
 * The signer (src/lib/signer.c) against a real, throwaway SoftHSM token:
 * RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and P-384 signatures made in the
 * token and verified with the public key; several threads signing with one
 * key; the signer outliving its key and context; Ed25519 refused.
 *
 * The session pool (p11c_ctx_set_sign_sessions): many threads signing with
 * an EC and an RSA key on several sessions, every signature verified;
 * through tests/helpers/slowp11.c (SoftHSM with a slow C_Sign that counts
 * the signatures in flight) that signatures overlap with n = 4, never with
 * n = 1, never on a module that cannot lock (CKR_CANT_LOCK); a session the
 * module closed leaves the pool.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "internal.h"
#include "softhsm_fixture.h"

#ifndef SLOWP11_PATH
#error "SLOWP11_PATH must be defined (tests/CMakeLists.txt)"
#endif

static struct softhsm_fixture fx;
static char inflight_file[320]; /* slowp11's SLOWP11_MAX_INFLIGHT_FILE */
static p11c_ctx *cur; /* a pool test's ctx, freed after a failed test too:
                       * the next one finds the module finalised */

static int setup(void **state)
{
	(void)state;
	if (softhsm_fixture_create(&fx, "signer") != 0)
		return -1;
	snprintf(inflight_file, sizeof inflight_file, "%s/inflight", fx.dir);
	return 0;
}

static int free_cur(void **state)
{
	(void)state;
	p11c_ctx_free(&cur);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	(void)unlink(inflight_file);
	softhsm_fixture_destroy(&fx);
	return 0;
}

static p11c_ctx *open_ctx(void)
{
	p11c_ctx *ctx = softhsm_fixture_ctx(&fx);

	assert_non_null(ctx);
	return ctx;
}

static p11c_key *make_key(p11c_ctx *ctx, const char *label, p11c_key_type t)
{
	char uri[128];
	p11c_key *key = NULL;

	snprintf(uri, sizeof uri, "pkcs11:token=%s;object=%s", fx.label, label);
	assert_int_equal(p11c_keygen(ctx, uri, t, 0, &key), P11C_OK);
	return key;
}

/* Sign MSG with the signer and verify with the public key; pss: RSA-PSS. */
static int sign_verify(EVP_PKEY *signer, EVP_PKEY *pub, const EVP_MD *md, int pss)
{
	static const unsigned char msg[] = "issue 17: sign through the token layer's session";
	unsigned char sig[1024];
	size_t slen = sizeof sig;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	EVP_PKEY_CTX *pc = NULL;
	int ok = 0;

	if (m == NULL || EVP_DigestSignInit(m, &pc, md, NULL, signer) != 1)
		goto out;
	if (pss && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	if (EVP_DigestSign(m, sig, &slen, msg, sizeof msg) != 1)
		goto out;
	EVP_MD_CTX_free(m);
	m = EVP_MD_CTX_new();
	pc = NULL;
	if (m == NULL || EVP_DigestVerifyInit(m, &pc, md, NULL, pub) != 1)
		goto out;
	if (pss && (EVP_PKEY_CTX_set_rsa_padding(pc, RSA_PKCS1_PSS_PADDING) != 1 ||
		    EVP_PKEY_CTX_set_rsa_pss_saltlen(pc, RSA_PSS_SALTLEN_DIGEST) != 1))
		goto out;
	ok = EVP_DigestVerify(m, sig, slen, msg, sizeof msg) == 1;
out:
	EVP_MD_CTX_free(m);
	return ok;
}

static void test_algorithms(void **state)
{
	p11c_ctx *ctx = open_ctx();
	p11c_key *ec = make_key(ctx, "ec256", P11C_KEY_EC_P256);
	p11c_key *ec384 = make_key(ctx, "ec384", P11C_KEY_EC_P384);
	p11c_key *rsa = make_key(ctx, "rsa", P11C_KEY_RSA_2048);
	EVP_PKEY *s = NULL, *s2 = NULL;

	(void)state;
	assert_int_equal(p11c_key_signer(ec, &s), P11C_OK);
	assert_true(sign_verify(s, p11c_key_public(ec), EVP_sha256(), 0));
	assert_true(sign_verify(s, p11c_key_public(ec), EVP_sha384(), 0)); /* truncated */
	/* the same EVP_PKEY on the second call */
	assert_int_equal(p11c_key_signer(ec, &s2), P11C_OK);
	assert_ptr_equal(s, s2);
	assert_int_equal(p11c_key_signer(ec384, &s), P11C_OK);
	assert_true(sign_verify(s, p11c_key_public(ec384), EVP_sha384(), 0));
	assert_int_equal(p11c_key_signer(rsa, &s), P11C_OK);
	assert_true(sign_verify(s, p11c_key_public(rsa), EVP_sha256(), 0));
	assert_true(sign_verify(s, p11c_key_public(rsa), EVP_sha256(), 1));
	assert_true(sign_verify(s, p11c_key_public(rsa), EVP_sha384(), 1));
	/* a signature by another key does not verify */
	assert_false(sign_verify(s, p11c_key_public(ec), EVP_sha256(), 0));
	ERR_clear_error();
	p11c_key_free(&ec);
	p11c_key_free(&ec384);
	p11c_key_free(&rsa);
	p11c_ctx_free(&ctx);
}

struct worker {
	EVP_PKEY *signer, *pub;
	int ok;
};

static void *work(void *arg)
{
	struct worker *w = arg;
	int i;

	w->ok = 0;
	for (i = 0; i < 200; i++)
		if (!sign_verify(w->signer, w->pub, EVP_sha256(), 0))
			return NULL;
	w->ok = 1;
	return NULL;
}

/* One session, several threads: the signer's lock keeps C_SignInit/C_Sign
 * pairs whole. */
static void test_threads(void **state)
{
	p11c_ctx *ctx = open_ctx();
	p11c_key *ec = make_key(ctx, "thr", P11C_KEY_EC_P256);
	struct worker w[4];
	pthread_t th[4];
	EVP_PKEY *s = NULL;
	int i;

	(void)state;
	assert_int_equal(p11c_key_signer(ec, &s), P11C_OK);
	for (i = 0; i < 4; i++) {
		w[i].signer = s;
		w[i].pub = p11c_key_public(ec);
		assert_int_equal(pthread_create(&th[i], NULL, work, &w[i]), 0);
	}
	for (i = 0; i < 4; i++) {
		assert_int_equal(pthread_join(th[i], NULL), 0);
		assert_true(w[i].ok);
	}
	p11c_key_free(&ec);
	p11c_ctx_free(&ctx);
}

/* A caller holding a reference (p11ca does) frees it after the key and
 * the context: the methods and their data go with the last reference. */
static void test_signer_outlives_key(void **state)
{
	p11c_ctx *ctx = open_ctx();
	p11c_key *ec = make_key(ctx, "ref", P11C_KEY_EC_P256);
	p11c_key *rsa = make_key(ctx, "refr", P11C_KEY_RSA_2048);
	EVP_PKEY *s = NULL, *sr = NULL;

	(void)state;
	assert_int_equal(p11c_key_signer(ec, &s), P11C_OK);
	assert_int_equal(p11c_key_signer(rsa, &sr), P11C_OK);
	assert_int_equal(EVP_PKEY_up_ref(s), 1);
	assert_int_equal(EVP_PKEY_up_ref(sr), 1);
	p11c_key_free(&ec);
	p11c_key_free(&rsa);
	p11c_ctx_free(&ctx);
	EVP_PKEY_free(s);
	EVP_PKEY_free(sr);
}

static void test_ed25519_refused(void **state)
{
	p11c_ctx *ctx = open_ctx();
	p11c_key *ed = NULL;
	EVP_PKEY *s = NULL;
	char uri[128];

	(void)state;
	snprintf(uri, sizeof uri, "pkcs11:token=%s;object=ed", fx.label);
	if (p11c_keygen(ctx, uri, P11C_KEY_ED25519, P11C_KEYGEN_ALLOW_EDDSA, &ed) != P11C_OK) {
		p11c_ctx_free(&ctx);
		skip(); /* a SoftHSM without EdDSA */
	}
	assert_int_equal(p11c_key_signer(ed, &s), P11C_ERR_MECHANISM);
	assert_null(s);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "only RSA and EC keys can sign"));
	p11c_key_free(&ed);
	p11c_ctx_free(&ctx);
}

/* --- the session pool ---------------------------------------------------- */

/* A ctx on SoftHSM itself, or through slowp11 (delay_ms, cant_lock). */
static p11c_ctx *pool_ctx(int slow, int delay_ms, int cant_lock)
{
	p11c_ctx *ctx = NULL;
	char v[16];

	if (!slow) {
		ctx = open_ctx();
		cur = ctx;
		return ctx;
	}
	snprintf(v, sizeof v, "%d", delay_ms);
	assert_int_equal(setenv("SLOWP11_MODULE", fx.module, 1), 0);
	assert_int_equal(setenv("SLOWP11_DELAY_MS", v, 1), 0);
	assert_int_equal(setenv("SLOWP11_CANT_LOCK", cant_lock ? "1" : "0", 1), 0);
	assert_int_equal(setenv("SLOWP11_MAX_INFLIGHT_FILE", inflight_file, 1), 0);
	(void)unlink(inflight_file);
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	cur = ctx;
	assert_int_equal(p11c_ctx_set_module(ctx, SLOWP11_PATH), P11C_OK);
	assert_int_equal(p11c_ctx_set_pin_file(ctx, fx.pin_file), P11C_OK);
	p11c_ctx_set_pin_env(ctx, 0);
	return ctx;
}

/* The most C_Sign calls slowp11 saw at once; -1 without its file. */
static int inflight_max(void)
{
	FILE *fp = fopen(inflight_file, "r");
	char line[32], *end = NULL;
	long n = -1;

	if (fp == NULL)
		return -1;
	if (fgets(line, sizeof line, fp) != NULL) {
		n = strtol(line, &end, 10);
		if (end == line || (*end != '\n' && *end != '\0') || n < 0 || n > 1000)
			n = -1;
	}
	fclose(fp);
	return (int)n;
}

#define THREADS 8

struct pool_worker {
	EVP_PKEY *ec, *ec_pub;     /* ec: every signature when rsa is NULL */
	EVP_PKEY *rsa, *rsa_pub;   /* else EC and RSA (PKCS#1 v1.5, PSS) in turn */
	unsigned count;
	unsigned done;             /* signatures made and verified */
};

static void *pool_work(void *arg)
{
	struct pool_worker *w = arg;
	unsigned i;
	int ok;

	for (i = 0; i < w->count; i++) {
		if (w->rsa == NULL || i % 2 == 0)
			ok = sign_verify(w->ec, w->ec_pub, EVP_sha256(), 0);
		else
			ok = sign_verify(w->rsa, w->rsa_pub, EVP_sha256(), i % 4 == 3);
		if (!ok)
			break;
		w->done++;
	}
	return NULL;
}

/* THREADS threads, count signatures each; all made and verified. */
static void run_threads(EVP_PKEY *ec, EVP_PKEY *ec_pub, EVP_PKEY *rsa, EVP_PKEY *rsa_pub,
			unsigned count)
{
	struct pool_worker w[THREADS];
	pthread_t th[THREADS];
	int i;

	memset(w, 0, sizeof w);
	for (i = 0; i < THREADS; i++) {
		w[i].ec = ec;
		w[i].ec_pub = ec_pub;
		w[i].rsa = rsa;
		w[i].rsa_pub = rsa_pub;
		w[i].count = count;
		assert_int_equal(pthread_create(&th[i], NULL, pool_work, &w[i]), 0);
	}
	for (i = 0; i < THREADS; i++)
		assert_int_equal(pthread_join(th[i], NULL), 0);
	for (i = 0; i < THREADS; i++)
		assert_int_equal(w[i].done, count);
}

static unsigned pool_open(p11c_ctx *ctx)
{
	unsigned n;

	assert_int_equal(pthread_mutex_lock(&ctx->sign_pool->mu), 0);
	n = ctx->sign_pool->open;
	assert_int_equal(ctx->sign_pool->nfree, n); /* none busy between signatures */
	(void)pthread_mutex_unlock(&ctx->sign_pool->mu);
	return n;
}

static void test_pool_api(void **state)
{
	p11c_ctx *ctx = NULL;
	p11c_key *ec;

	(void)state;
	assert_int_equal(p11c_ctx_threads_ok(NULL), -1);
	assert_int_equal(p11c_ctx_set_sign_sessions(NULL, 4), P11C_ERR_ARG);
	ctx = pool_ctx(0, 0, 0);
	assert_int_equal(p11c_ctx_threads_ok(ctx), -1); /* no module yet */
	assert_int_equal(ctx->sign_pool->n, 1);        /* the default */
	assert_int_equal(p11c_ctx_set_sign_sessions(ctx, 0), P11C_ERR_ARG);
	assert_int_equal(ctx->sign_pool->n, 1);
	assert_int_equal(p11c_ctx_set_sign_sessions(ctx, 1000), P11C_OK);
	assert_int_equal(ctx->sign_pool->n, P11C_SIGN_SESSIONS_MAX);
	ec = make_key(ctx, "api", P11C_KEY_EC_P256);
	assert_int_equal(p11c_ctx_threads_ok(ctx), 1); /* SoftHSM locks */
	p11c_key_free(&ec);
	p11c_ctx_free(&ctx);
	cur = NULL;
}

/* 8 threads x 100 signatures with each key (EC P-256, RSA 2048 PKCS#1
 * v1.5 and PSS) in turn, 4 sessions. */
static void test_pool_threads(void **state)
{
	p11c_ctx *ctx = pool_ctx(0, 0, 0);
	p11c_key *ec = make_key(ctx, "pool-ec", P11C_KEY_EC_P256);
	p11c_key *rsa = make_key(ctx, "pool-rsa", P11C_KEY_RSA_2048);
	EVP_PKEY *se = NULL, *sr = NULL;
	unsigned open;

	(void)state;
	assert_int_equal(p11c_ctx_set_sign_sessions(ctx, 4), P11C_OK);
	assert_int_equal(p11c_key_signer(ec, &se), P11C_OK);
	assert_int_equal(p11c_key_signer(rsa, &sr), P11C_OK);
	run_threads(se, p11c_key_public(ec), sr, p11c_key_public(rsa), 200);
	open = pool_open(ctx);
	assert_true(open >= 1 && open <= 4);
	/* back to one: the idle sessions close, signing on ctx->session */
	assert_int_equal(p11c_ctx_set_sign_sessions(ctx, 1), P11C_OK);
	assert_int_equal(pool_open(ctx), 0);
	run_threads(se, p11c_key_public(ec), sr, p11c_key_public(rsa), 4);
	assert_int_equal(pool_open(ctx), 0);
	p11c_key_free(&ec);
	p11c_key_free(&rsa);
	p11c_ctx_free(&ctx);
	cur = NULL;
}

/* Through slowp11 (50 ms per C_Sign): the most signatures in flight with
 * n sessions; cant_lock: a module that refuses CKF_OS_LOCKING_OK. */
static int slow_inflight(unsigned n, int cant_lock, const char *label)
{
	p11c_ctx *ctx = pool_ctx(1, 50, cant_lock);
	p11c_key *ec = make_key(ctx, label, P11C_KEY_EC_P256);
	EVP_PKEY *se = NULL;
	int max;

	assert_int_equal(p11c_ctx_threads_ok(ctx), cant_lock ? 0 : 1);
	assert_int_equal(p11c_ctx_set_sign_sessions(ctx, n), P11C_OK);
	assert_int_equal(p11c_key_signer(ec, &se), P11C_OK);
	run_threads(se, p11c_key_public(ec), NULL, NULL, 3);
	if (cant_lock)
		assert_int_equal(pool_open(ctx), 0);
	p11c_key_free(&ec);
	p11c_ctx_free(&ctx); /* slowp11 writes the count at C_Finalize too */
	cur = NULL;
	max = inflight_max();
	print_message("sessions %u%s: at most %d signatures in flight\n", n,
		      cant_lock ? ", CKR_CANT_LOCK" : "", max);
	return max;
}

static void test_pool_slow_parallel(void **state)
{
	int max;

	(void)state;
	max = slow_inflight(4, 0, "slow4");
	assert_true(max > 1);
	assert_true(max <= 4);
}

static void test_pool_slow_serial(void **state)
{
	(void)state;
	assert_int_equal(slow_inflight(1, 0, "slow1"), 1);
}

static void test_pool_slow_cant_lock(void **state)
{
	(void)state;
	assert_int_equal(slow_inflight(4, 1, "slowcl"), 1);
}

/* A pool session the module no longer knows (closed behind our back):
 * that signature fails naming CKR_SESSION_HANDLE_INVALID, the session
 * leaves the pool, the next signature opens a new one. */
static void test_pool_session_gone(void **state)
{
	p11c_ctx *ctx = pool_ctx(0, 0, 0);
	p11c_key *ec = make_key(ctx, "gone", P11C_KEY_EC_P256);
	EVP_PKEY *se = NULL;

	(void)state;
	assert_int_equal(p11c_ctx_set_sign_sessions(ctx, 2), P11C_OK);
	assert_int_equal(p11c_key_signer(ec, &se), P11C_OK);
	assert_true(sign_verify(se, p11c_key_public(ec), EVP_sha256(), 0));
	assert_int_equal(pool_open(ctx), 1);
	assert_int_equal(ctx->f->C_CloseSession(ctx->sign_pool->free_s[0]), CKR_OK);
	assert_false(sign_verify(se, p11c_key_public(ec), EVP_sha256(), 0));
	assert_non_null(strstr(p11c_ctx_detail(ctx), "CKR_SESSION_HANDLE_INVALID"));
	ERR_clear_error();
	assert_int_equal(pool_open(ctx), 0);
	assert_true(sign_verify(se, p11c_key_public(ec), EVP_sha256(), 0));
	assert_int_equal(pool_open(ctx), 1);
	p11c_key_free(&ec);
	p11c_ctx_free(&ctx);
	cur = NULL;
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_algorithms),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_signer_outlives_key),
		cmocka_unit_test(test_ed25519_refused),
		cmocka_unit_test_teardown(test_pool_api, free_cur),
		cmocka_unit_test_teardown(test_pool_threads, free_cur),
		cmocka_unit_test_teardown(test_pool_slow_parallel, free_cur),
		cmocka_unit_test_teardown(test_pool_slow_serial, free_cur),
		cmocka_unit_test_teardown(test_pool_slow_cant_lock, free_cur),
		cmocka_unit_test_teardown(test_pool_session_gone, free_cur),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
