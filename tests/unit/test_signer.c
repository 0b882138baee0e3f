/*
 * The signer (src/lib/signer.c) against a real, throwaway SoftHSM token:
 * RSA PKCS#1 v1.5 and PSS, ECDSA P-256 and P-384 signatures made in the
 * token and verified with the public key; several threads signing with one
 * key; the signer outliving its key and context; Ed25519 refused.
 */
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "internal.h"
#include "softhsm_fixture.h"

static struct softhsm_fixture fx;

static int setup(void **state)
{
	(void)state;
	return softhsm_fixture_create(&fx, "signer");
}

static int teardown(void **state)
{
	(void)state;
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

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_algorithms),
		cmocka_unit_test(test_threads),
		cmocka_unit_test(test_signer_outlives_key),
		cmocka_unit_test(test_ed25519_refused),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
