/*
 * JWS and JWK for ACME (src/lib/enroll/jws.c): signatures made in a real,
 * throwaway SoftHSM token.  ES256 / ES384 are raw r || s of 64 / 96 bytes
 * (RFC 7518 s3.4) that verify with the public key; RS256 verifies; the
 * protected header carries jwk or kid; the RFC 7638 s3.1 example key has
 * the thumbprint the RFC gives; the dns-01 value (RFC 8555 s8.4); the
 * inner JWS of an account key change (RFC 8555 s7.3.5).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jansson.h>
#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/param_build.h>

#include <p11cert/acme.h>

#include "enroll/jws.h"
#include "softhsm_fixture.h"

static struct softhsm_fixture fx;

static int setup(void **state)
{
	(void)state;
	return softhsm_fixture_create(&fx, "jws");
}

static int teardown(void **state)
{
	(void)state;
	softhsm_fixture_destroy(&fx);
	return 0;
}

static p11c_ctx *open_ctx(void)
{
	p11c_ctx *ctx = NULL;

	assert_int_equal(p11c_ctx_new(&ctx), P11C_OK);
	assert_int_equal(p11c_ctx_set_module(ctx, fx.module), P11C_OK);
	assert_int_equal(p11c_ctx_set_pin_file(ctx, fx.pin_file), P11C_OK);
	p11c_ctx_set_pin_env(ctx, 0);
	return ctx;
}

static int b64val(char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '-')
		return 62;
	if (c == '_')
		return 63;
	return -1;
}

/* base64url (no padding) -> bytes; the length */
static size_t b64url_dec(const char *s, unsigned char *out, size_t max)
{
	unsigned acc = 0;
	int bits = 0, v;
	size_t n = 0;

	for (; *s; s++) {
		v = b64val(*s);
		assert_true(v >= 0);
		acc = acc << 6 | (unsigned)v;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			assert_true(n < max);
			out[n++] = (unsigned char)(acc >> bits);
		}
	}
	return n;
}

/* The base64url member NAME of the JWS j, decoded, as JSON */
static json_t *b64url_member_json(const json_t *j, const char *name)
{
	unsigned char b[4096];
	size_t n = b64url_dec(json_string_value(json_object_get(j, name)), b, sizeof b - 1);
	json_t *o;

	b[n] = '\0';
	o = json_loads((const char *)b, 0, NULL);
	assert_non_null(o);
	return o;
}

/* The flattened JWS j: its signature is want_len bytes and verifies with
 * pub (alg ES256, ES384 or RS256) */
static void jws_verify(const json_t *j, const char *want_alg, size_t want_len, EVP_PKEY *pub)
{
	unsigned char sig[600], *der = NULL;
	char *input = NULL;
	size_t siglen;
	EVP_MD_CTX *md;
	int derlen;

	siglen = b64url_dec(json_string_value(json_object_get(j, "signature")), sig, sizeof sig);
	assert_int_equal(siglen, want_len);
	assert_true(asprintf(&input, "%s.%s", json_string_value(json_object_get(j, "protected")),
			     json_string_value(json_object_get(j, "payload"))) > 0);
	/* the raw ECDSA signature back to DER to verify it with OpenSSL */
	if (want_alg[0] == 'E') {
		ECDSA_SIG *es = ECDSA_SIG_new();
		BIGNUM *r = BN_bin2bn(sig, (int)want_len / 2, NULL), *s = BN_bin2bn(sig + want_len / 2, (int)want_len / 2, NULL);

		assert_true(ECDSA_SIG_set0(es, r, s));
		derlen = i2d_ECDSA_SIG(es, &der);
		assert_true(derlen > 0);
		ECDSA_SIG_free(es);
	} else {
		der = OPENSSL_memdup(sig, siglen);
		derlen = (int)siglen;
	}
	md = EVP_MD_CTX_new();
	assert_int_equal(EVP_DigestVerifyInit(md, NULL, strcmp(want_alg, "ES384") == 0 ? EVP_sha384() : EVP_sha256(),
					      NULL, pub),
			 1);
	assert_int_equal(EVP_DigestVerify(md, der, (size_t)derlen, (const unsigned char *)input, strlen(input)), 1);
	EVP_MD_CTX_free(md);
	OPENSSL_free(der);
	free(input);
}

/* Sign with the token key LABEL of TYPE; check length, header, verify */
static void jws_case(p11c_key_type t, const char *label, const char *want_alg, size_t want_len, const char *kid)
{
	p11c_ctx *ctx = open_ctx();
	p11c_key *key = NULL;
	EVP_PKEY *signer = NULL, *pub;
	char uri[128], *out = NULL;
	json_t *j, *h;

	snprintf(uri, sizeof uri, "pkcs11:token=%s;object=%s", fx.label, label);
	assert_int_equal(p11c_keygen(ctx, uri, t, 0, &key), P11C_OK);
	assert_int_equal(p11c_key_signer(key, &signer), P11C_OK);
	pub = p11c_key_public(key);
	assert_int_equal(p11c_jws_sign(ctx, signer, pub, "https://ca.test/new-order", "nonce-1", kid,
				       "{\"a\":1}", &out),
			 P11C_OK);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	h = b64url_member_json(j, "protected");
	assert_string_equal(json_string_value(json_object_get(h, "alg")), want_alg);
	assert_string_equal(json_string_value(json_object_get(h, "nonce")), "nonce-1");
	assert_string_equal(json_string_value(json_object_get(h, "url")), "https://ca.test/new-order");
	if (kid != NULL) {
		assert_string_equal(json_string_value(json_object_get(h, "kid")), kid);
		assert_null(json_object_get(h, "jwk"));
	} else {
		assert_non_null(json_object_get(h, "jwk"));
		assert_null(json_object_get(h, "kid"));
	}
	jws_verify(j, want_alg, want_len, pub);
	free(out);
	json_decref(h);
	json_decref(j);
	p11c_key_free(&key);
	p11c_ctx_free(&ctx);
}

static void test_es256(void **state)
{
	(void)state;
	jws_case(P11C_KEY_EC_P256, "jws-p256", "ES256", 64, NULL);
}

static void test_es384_kid(void **state)
{
	(void)state;
	jws_case(P11C_KEY_EC_P384, "jws-p384", "ES384", 96, "https://ca.test/acct/1");
}

static void test_rs256(void **state)
{
	(void)state;
	jws_case(P11C_KEY_RSA_2048, "jws-rsa", "RS256", 256, "https://ca.test/acct/2");
}

/* RFC 8555 s7.3.5: the inner JWS of a key change is signed by the new key
 * (ES384 here), its protected header is {alg, jwk: the new key, url} with
 * no nonce and no kid, its payload {"account", "oldKey": the old key's
 * JWK}; it verifies with the new key */
static void test_keychange_inner(void **state)
{
	static const char url[] = "https://ca.test/key-change", acct[] = "https://ca.test/acct/7";
	p11c_ctx *ctx = open_ctx();
	p11c_key *old = NULL, *nk = NULL;
	EVP_PKEY *signer = NULL;
	json_t *j, *h, *pl, *jwk_new = NULL, *jwk_old = NULL;
	const char *alg;
	char uri[128], *out = NULL;

	(void)state;
	snprintf(uri, sizeof uri, "pkcs11:token=%s;object=kc-old", fx.label);
	assert_int_equal(p11c_keygen(ctx, uri, P11C_KEY_EC_P256, 0, &old), P11C_OK);
	snprintf(uri, sizeof uri, "pkcs11:token=%s;object=kc-new", fx.label);
	assert_int_equal(p11c_keygen(ctx, uri, P11C_KEY_EC_P384, 0, &nk), P11C_OK);
	assert_int_equal(p11c_key_signer(nk, &signer), P11C_OK);
	assert_int_equal(p11c_jws_keychange(ctx, signer, p11c_key_public(nk), url, acct, p11c_key_public(old), &out),
			 P11C_OK);
	assert_int_equal(p11c_jwk(p11c_key_public(nk), &jwk_new, &alg), P11C_OK);
	assert_int_equal(p11c_jwk(p11c_key_public(old), &jwk_old, &alg), P11C_OK);
	j = json_loads(out, 0, NULL);
	assert_non_null(j);
	h = b64url_member_json(j, "protected");
	assert_int_equal(json_object_size(h), 3);
	assert_string_equal(json_string_value(json_object_get(h, "alg")), "ES384");
	assert_string_equal(json_string_value(json_object_get(h, "url")), url);
	assert_true(json_equal(json_object_get(h, "jwk"), jwk_new));
	assert_null(json_object_get(h, "nonce"));
	assert_null(json_object_get(h, "kid"));
	pl = b64url_member_json(j, "payload");
	assert_int_equal(json_object_size(pl), 2);
	assert_string_equal(json_string_value(json_object_get(pl, "account")), acct);
	assert_true(json_equal(json_object_get(pl, "oldKey"), jwk_old));
	jws_verify(j, "ES384", 96, p11c_key_public(nk));
	json_decref(pl);
	json_decref(h);
	json_decref(j);
	json_decref(jwk_new);
	json_decref(jwk_old);
	free(out);
	p11c_key_free(&old);
	p11c_key_free(&nk);
	p11c_ctx_free(&ctx);
}

/* RFC 7638 s3.1: the example RSA key and its thumbprint */
static void test_thumbprint_rfc7638(void **state)
{
	static const char n64[] =
		"0vx7agoebGcQSuuPiLJXZptN9nndrQmbXEps2aiAFbWhM78LhWx4cbbfAAtVT86zwu1RK7aPFFxuhDR1L6tSoc_BJECPebWKRXjBZCiFV4n3oknjhMstn64tZ_2W-5JsGY4Hc5n9yBXArwl93lqt7_RN5w6Cf0h4QyQ5v-65YGjQR0_FDW2QvzqY368QQMicAtaSqzs8KJZgnYb9c7d0zgdAZHzu6qMQvRL5hajrn1n91CbOpbISD08qNLyrdkt-bFTWhAI4vMQFh6WeZu0fM4lFd2NcRwr3XPksINHaQ-G_xBniIqbw0Ls1jF44-csFCur-kEgU8awapJzKnqDKgw";
	unsigned char nb[512], eb[3] = { 1, 0, 1 };
	size_t nl = b64url_dec(n64, nb, sizeof nb);
	OSSL_PARAM_BLD *bld = OSSL_PARAM_BLD_new();
	BIGNUM *n = BN_bin2bn(nb, (int)nl, NULL), *e = BN_bin2bn(eb, 3, NULL);
	OSSL_PARAM *params;
	EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL);
	EVP_PKEY *pk = NULL;
	char tp[44];

	(void)state;
	assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n));
	assert_true(OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e));
	params = OSSL_PARAM_BLD_to_param(bld);
	assert_int_equal(EVP_PKEY_fromdata_init(pc), 1);
	assert_int_equal(EVP_PKEY_fromdata(pc, &pk, EVP_PKEY_PUBLIC_KEY, params), 1);
	assert_int_equal(p11c_jwk_thumbprint(pk, tp), P11C_OK);
	assert_string_equal(tp, "NzbLsXh8uDCcd-6MNwXF4W_7noWXFZAfHkxZsRGC9Xs");
	EVP_PKEY_free(pk);
	EVP_PKEY_CTX_free(pc);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	BN_free(n);
	BN_free(e);
}

static void test_b64url_dns01(void **state)
{
	char v[44], *s;

	(void)state;
	s = p11c_b64url((const unsigned char *)"\xfb\xff", 2);
	assert_string_equal(s, "-_8");
	free(s);
	s = p11c_b64url((const unsigned char *)"", 0);
	assert_string_equal(s, "");
	free(s);
	/* RFC 8555 s8.4: base64url(SHA-256("abc")) */
	assert_int_equal(p11c_acme_dns01_value("abc", v), P11C_OK);
	assert_string_equal(v, "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_es256),
		cmocka_unit_test(test_es384_kid),
		cmocka_unit_test(test_rs256),
		cmocka_unit_test(test_thumbprint_rfc7638),
		cmocka_unit_test(test_b64url_dns01),
		cmocka_unit_test(test_keychange_inner),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
