/*
 * Token layer against a real, throwaway SoftHSM token: key generation,
 * non-extractability proven by raw C_GetAttributeValue, CKA_ID derivation,
 * CSR signing, certificate store / replace / mismatch.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "internal.h"
#include "softhsm_fixture.h"

static struct softhsm_fixture fx;

static int setup(void **state)
{
	(void)state;
	return softhsm_fixture_create(&fx, "unit");
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

static void key_uri(char *buf, size_t len, const char *label)
{
	snprintf(buf, len, "pkcs11:token=%s;object=%s", fx.label, label);
}

/* The sensitive parts of the private key cannot be read. */
static void assert_unreadable(p11c_ctx *ctx, p11c_key *key)
{
	CK_ATTRIBUTE_TYPE secret[] = { CKA_VALUE, CKA_PRIVATE_EXPONENT, CKA_PRIME_1 };
	CK_BBOOL b;
	CK_ATTRIBUTE a;
	unsigned char buf[1024] = { 0 };
	size_t i;

	for (i = 0; i < sizeof secret / sizeof secret[0]; i++) {
		CK_RV rv;

		a = (CK_ATTRIBUTE){ secret[i], buf, sizeof buf };
		rv = ctx->f->C_GetAttributeValue(ctx->session, key->priv, &a, 1);
		/* RSA keys refuse CKA_PRIVATE_EXPONENT / PRIME as sensitive;
		 * CKA_VALUE is sensitive for EC and invalid for RSA */
		assert_true(rv == CKR_ATTRIBUTE_SENSITIVE || rv == CKR_ATTRIBUTE_TYPE_INVALID);
		assert_int_equal(a.ulValueLen, CK_UNAVAILABLE_INFORMATION);
		if (secret[i] == CKA_VALUE && key->type >= P11C_KEY_EC_P256)
			assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
		if (secret[i] != CKA_VALUE && key->type <= P11C_KEY_RSA_4096)
			assert_int_equal(rv, CKR_ATTRIBUTE_SENSITIVE);
	}
	a = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &b, sizeof b };
	assert_int_equal(ctx->f->C_GetAttributeValue(ctx->session, key->priv, &a, 1), CKR_OK);
	assert_int_equal(b, CK_FALSE);
	a = (CK_ATTRIBUTE){ CKA_SENSITIVE, &b, sizeof b };
	assert_int_equal(ctx->f->C_GetAttributeValue(ctx->session, key->priv, &a, 1), CKR_OK);
	assert_int_equal(b, CK_TRUE);
	a = (CK_ATTRIBUTE){ CKA_TOKEN, &b, sizeof b };
	assert_int_equal(ctx->f->C_GetAttributeValue(ctx->session, key->priv, &a, 1), CKR_OK);
	assert_int_equal(b, CK_TRUE);
	a = (CK_ATTRIBUTE){ CKA_PRIVATE, &b, sizeof b };
	assert_int_equal(ctx->f->C_GetAttributeValue(ctx->session, key->priv, &a, 1), CKR_OK);
	assert_int_equal(b, CK_TRUE);
	/* and the token will not wrap it out either: the flag cannot be
	 * turned back on (PKCS#11 v2.40 s4.9: CKA_EXTRACTABLE may only be
	 * set to false) */
	b = CK_TRUE;
	a = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &b, sizeof b };
	assert_int_not_equal(ctx->f->C_SetAttributeValue(ctx->session, key->priv, &a, 1), CKR_OK);
}

static void test_keygen_types(void **state)
{
	static const p11c_key_type types[] = { P11C_KEY_EC_P256, P11C_KEY_EC_P384,
					       P11C_KEY_RSA_2048, P11C_KEY_RSA_3072 };
	p11c_ctx *ctx = open_ctx();
	char uri[128];
	size_t i;

	(void)state;
	for (i = 0; i < sizeof types / sizeof types[0]; i++) {
		p11c_key *key = NULL, *again = NULL;
		unsigned char kid[20];
		size_t idlen;
		const unsigned char *id;

		snprintf(uri, sizeof uri, "pkcs11:token=%s;object=kg%zu", fx.label, i);
		assert_int_equal(p11c_keygen(ctx, uri, types[i], 0, &key), P11C_OK);
		assert_int_equal(p11c_key_get_type(key), types[i]);
		assert_unreadable(ctx, key);
		/* CKA_ID is the RFC 5280 key identifier of the public key */
		id = p11c_key_id(key, &idlen);
		assert_int_equal(idlen, 20);
		assert_int_equal(p11c_pubkey_keyid(p11c_key_public(key), kid), P11C_OK);
		assert_memory_equal(id, kid, 20);
		/* found again by label, same key */
		assert_int_equal(p11c_key_find(ctx, uri, &again), P11C_OK);
		assert_int_equal(EVP_PKEY_eq(p11c_key_public(key), p11c_key_public(again)), 1);
		/* a second key with the same label is refused */
		p11c_key_free(&again);
		assert_int_equal(p11c_keygen(ctx, uri, types[i], 0, &again), P11C_ERR_EXISTS);
		assert_non_null(strstr(p11c_ctx_detail(ctx), "exists"));
		p11c_key_free(&key);
	}
	p11c_ctx_free(&ctx);
	assert_null(ctx);
}

static X509 *sign_for(EVP_PKEY *ca_key, X509_REQ *req, long serial, int days)
{
	X509 *x = X509_new();
	X509_NAME *ca = X509_NAME_new();

	assert_non_null(x);
	X509_NAME_add_entry_by_txt(ca, "CN", MBSTRING_ASC, (const unsigned char *)"unit CA", -1, -1, 0);
	X509_set_version(x, 2);
	ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
	X509_set_issuer_name(x, ca);
	X509_set_subject_name(x, X509_REQ_get_subject_name(req));
	X509_gmtime_adj(X509_getm_notBefore(x), 0);
	X509_gmtime_adj(X509_getm_notAfter(x), 86400L * days);
	X509_set_pubkey(x, X509_REQ_get0_pubkey(req));
	assert_true(X509_sign(x, ca_key, EVP_sha256()) > 0);
	X509_NAME_free(ca);
	return x;
}

static CK_ULONG count_certs(p11c_ctx *ctx, p11c_key *key)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, key->id, key->id_len } };
	CK_OBJECT_HANDLE h[8];
	CK_ULONG n = 0;

	assert_int_equal(p11c_find(ctx, t, 2, h, 8, &n), P11C_OK);
	return n;
}

static void test_csr_and_certs(void **state)
{
	p11c_ctx *ctx = open_ctx();
	p11c_key *key = NULL, *other = NULL;
	X509_NAME *subj = NULL;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	X509_REQ *req = NULL, *req2 = NULL;
	X509 *c1 = NULL, *c2 = NULL, *c3 = NULL, *got = NULL;
	EVP_PKEY *ca = EVP_EC_gen("P-256");
	char uri[128], uri2[128], err[128];

	(void)state;
	key_uri(uri, sizeof uri, "web");
	key_uri(uri2, sizeof uri2, "other");
	assert_int_equal(p11c_keygen(ctx, uri, P11C_KEY_EC_P256, 0, &key), P11C_OK);
	assert_int_equal(p11c_keygen(ctx, uri2, P11C_KEY_RSA_2048, 0, &other), P11C_OK);
	assert_int_equal(p11c_subject_parse("/O=Example/CN=web1", &subj, err, sizeof err), P11C_OK);
	assert_int_equal(p11c_san_add("DNS:web1.example.com", &sans, err, sizeof err), P11C_OK);
	assert_int_equal(p11c_csr_create(key, subj, sans, NULL, &req), P11C_OK);
	assert_int_equal(X509_REQ_verify(req, p11c_key_public(key)), 1);
	assert_int_equal(X509_REQ_get_signature_nid(req), NID_ecdsa_with_SHA256);
	/* RSA 2048: PKCS#1 v1.5 with SHA-256 */
	assert_int_equal(p11c_csr_create(other, subj, NULL, NULL, &req2), P11C_OK);
	assert_int_equal(X509_REQ_get_signature_nid(req2), NID_sha256WithRSAEncryption);
	assert_int_equal(X509_REQ_verify(req2, p11c_key_public(other)), 1);

	assert_int_equal(p11c_cert_get(ctx, key, &got), P11C_ERR_NOT_FOUND);
	c1 = sign_for(ca, req, 1, 10);
	c2 = sign_for(ca, req, 2, 20);
	c3 = sign_for(ca, req2, 3, 10);
	/* a certificate for another key is refused, nothing stored */
	assert_int_equal(p11c_cert_store(ctx, key, c3), P11C_ERR_KEY_MISMATCH);
	assert_int_equal(count_certs(ctx, key), 0);
	assert_int_equal(p11c_cert_store(ctx, key, c1), P11C_OK);
	assert_int_equal(count_certs(ctx, key), 1);
	/* storing the same one again changes nothing */
	assert_int_equal(p11c_cert_store(ctx, key, c1), P11C_OK);
	assert_int_equal(count_certs(ctx, key), 1);
	/* replacement leaves exactly one: the new one */
	assert_int_equal(p11c_cert_store(ctx, key, c2), P11C_OK);
	assert_int_equal(count_certs(ctx, key), 1);
	assert_int_equal(p11c_cert_get(ctx, key, &got), P11C_OK);
	assert_int_equal(X509_cmp(got, c2), 0);
	X509_free(got);
	got = NULL;
	assert_int_equal(p11c_cert_find(ctx, uri, &got), P11C_OK);
	assert_int_equal(X509_cmp(got, c2), 0);

	/* delete takes key, public key and certificate */
	assert_int_equal(p11c_key_delete(ctx, &key), P11C_OK);
	assert_null(key);
	assert_int_equal(p11c_key_find(ctx, uri, &key), P11C_ERR_NOT_FOUND);

	X509_free(got);
	X509_free(c1);
	X509_free(c2);
	X509_free(c3);
	X509_REQ_free(req);
	X509_REQ_free(req2);
	X509_NAME_free(subj);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	EVP_PKEY_free(ca);
	p11c_key_free(&other);
	p11c_ctx_free(&ctx);
}

static void test_errors(void **state)
{
	p11c_ctx *ctx = NULL;
	p11c_key *key = NULL;
	char uri[128];

	(void)state;
	/* module that does not exist */
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	assert_int_equal(p11c_ctx_set_module(ctx, "/nonexistent/module.so"), P11C_OK);
	assert_int_equal(p11c_open(ctx, "pkcs11:token=x"), P11C_ERR_MODULE);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "/nonexistent/module.so"));
	p11c_ctx_free(&ctx);

	/* unknown token, bad URIs */
	ctx = open_ctx();
	assert_int_equal(p11c_open(ctx, "pkcs11:token=nope"), P11C_ERR_NO_TOKEN);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "nope"));
	assert_int_equal(p11c_open(ctx, "http://example.com"), P11C_ERR_URI);
	assert_int_equal(p11c_open(ctx, "pkcs11:token=a?pin-value=1234"), P11C_ERR_URI);
	assert_null(strstr(p11c_ctx_detail(ctx), "1234"));
	/* a key URI without object or id */
	snprintf(uri, sizeof uri, "pkcs11:token=%s", fx.label);
	assert_int_equal(p11c_key_find(ctx, uri, &key), P11C_ERR_URI);
	p11c_ctx_free(&ctx);

	/* no PIN source at all */
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	assert_int_equal(p11c_ctx_set_module(ctx, fx.module), P11C_OK);
	p11c_ctx_set_pin_env(ctx, 0);
	key_uri(uri, sizeof uri, "x");
	assert_int_equal(p11c_key_find(ctx, uri, &key), P11C_ERR_NO_PIN);
	p11c_ctx_free(&ctx);

	assert_string_equal(p11c_ckr_name(CKR_PIN_INCORRECT), "CKR_PIN_INCORRECT");
	assert_string_equal(p11c_strerror(P11C_ERR_PIN_INCORRECT), "PIN incorrect");
	assert_string_equal(p11c_strerror((p11c_result)999), "unknown error");
}

static void test_wrong_pin_not_retried(void **state)
{
	char path[400], uri[128];
	FILE *fp;
	p11c_ctx *ctx = NULL;
	p11c_key *key = NULL;
	CK_TOKEN_INFO ti;

	(void)state;
	snprintf(path, sizeof path, "%s/wrong.pin", fx.dir);
	fp = fopen(path, "w");
	assert_non_null(fp);
	fputs("000000\n", fp);
	fclose(fp);
	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	assert_int_equal(p11c_ctx_set_module(ctx, fx.module), P11C_OK);
	assert_int_equal(p11c_ctx_set_pin_file(ctx, path), P11C_OK);
	key_uri(uri, sizeof uri, "x");
	assert_int_equal(p11c_key_find(ctx, uri, &key), P11C_ERR_PIN_INCORRECT);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "CKR_PIN_INCORRECT"));
	assert_null(strstr(p11c_ctx_detail(ctx), "000000"));
	/* a second operation on the same handle must not try the PIN again */
	assert_int_equal(p11c_login(ctx), P11C_ERR_PIN_INCORRECT);
	assert_non_null(strstr(p11c_ctx_detail(ctx), "refused the PIN earlier"));
	assert_int_equal(ctx->f->C_GetTokenInfo(ctx->slot_id, &ti), CKR_OK);
	assert_false(ti.flags & CKF_USER_PIN_LOCKED);
	p11c_ctx_free(&ctx);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_keygen_types),
		cmocka_unit_test(test_csr_and_certs),
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_wrong_pin_not_retried),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
