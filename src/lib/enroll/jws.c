/* JWS and JWK for ACME: RFC 7515 (flattened JSON), RFC 7518 (ES256,
 * ES384, RS256), RFC 7638 (thumbprint), RFC 8555 s6.2.  The signature is
 * made by the token through the key's signer EVP_PKEY; no private key
 * material is ever here. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <p11cert/acme.h>

#include "jws.h"

char *p11c_b64url(const unsigned char *b, size_t n)
{
	static const char al[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	char *out = malloc(n / 3 * 4 + 5), *o = out;
	size_t i;

	if (out == NULL)
		return NULL;
	for (i = 0; i + 2 < n; i += 3) {
		unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8 | b[i + 2];

		*o++ = al[v >> 18 & 63];
		*o++ = al[v >> 12 & 63];
		*o++ = al[v >> 6 & 63];
		*o++ = al[v & 63];
	}
	if (n - i == 1) {
		unsigned v = (unsigned)b[i] << 16;

		*o++ = al[v >> 18 & 63];
		*o++ = al[v >> 12 & 63];
	} else if (n - i == 2) {
		unsigned v = (unsigned)b[i] << 16 | (unsigned)b[i + 1] << 8;

		*o++ = al[v >> 18 & 63];
		*o++ = al[v >> 12 & 63];
		*o++ = al[v >> 6 & 63];
	}
	*o = '\0';
	return out;
}

p11c_result p11c_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	unsigned char *o = malloc(len / 4 * 3 + 3);
	unsigned acc = 0;
	size_t i, n = 0;
	int bits = 0, v;

	*out = NULL;
	*outlen = 0;
	if (o == NULL)
		return P11C_ERR_NOMEM;
	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r' || s[len - 1] == ' ' || s[len - 1] == '='))
		len--;
	for (i = 0; i < len; i++) {
		char c = s[i];

		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-' || c == '+')
			v = 62;
		else if (c == '_' || c == '/')
			v = 63;
		else {
			p11c_wipe(o, len / 4 * 3 + 3);
			free(o);
			return P11C_ERR_PARSE;
		}
		acc = (acc << 6 | (unsigned)v) & 0xffffff;
		bits += 6;
		if (bits >= 8) {
			bits -= 8;
			o[n++] = (unsigned char)(acc >> bits);
		}
	}
	*out = o;
	*outlen = n;
	return P11C_OK;
}

static json_t *b64url_json(const unsigned char *b, size_t n)
{
	char *s = p11c_b64url(b, n);
	json_t *j = s ? json_string(s) : NULL;

	free(s);
	return j;
}

static json_t *bn_json(const BIGNUM *bn, int width)
{
	unsigned char buf[1024];
	int n = width > 0 ? width : BN_num_bytes(bn);

	if (n <= 0 || n > (int)sizeof buf || BN_bn2binpad(bn, buf, n) != n)
		return NULL;
	return b64url_json(buf, (size_t)n);
}

/* EC width in bytes of P-256 / P-384 (RFC 7518 s3.4, RFC 7638 s3.2: the
 * coordinates at full width) */
static int ec_width(EVP_PKEY *pk, const char **crv, const char **alg)
{
	char name[64] = "";

	if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, name, sizeof name, NULL) != 1)
		return 0;
	if (strcmp(name, "prime256v1") == 0 || strcmp(name, "P-256") == 0) {
		*crv = "P-256";
		*alg = "ES256";
		return 32;
	}
	if (strcmp(name, "secp384r1") == 0 || strcmp(name, "P-384") == 0) {
		*crv = "P-384";
		*alg = "ES384";
		return 48;
	}
	return 0;
}

/* a provider-native copy of pub: keys built from token attributes may be
 * legacy EC_KEY/RSA objects whose parameters are not all readable */
static EVP_PKEY *native(EVP_PKEY *pub)
{
	unsigned char *der = NULL;
	const unsigned char *p;
	int n = i2d_PUBKEY(pub, &der);
	EVP_PKEY *k = NULL;

	if (n > 0) {
		p = der;
		k = d2i_PUBKEY(NULL, &p, n);
	}
	OPENSSL_free(der);
	return k;
}

p11c_result p11c_jwk(EVP_PKEY *pub, json_t **jwk, const char **alg)
{
	EVP_PKEY *k = native(pub);
	BIGNUM *a = NULL, *b = NULL;
	const char *crv = NULL;
	json_t *j = NULL;
	p11c_result r = P11C_ERR_MECHANISM;
	int w;

	*jwk = NULL;
	if (k == NULL) {
		r = P11C_ERR_CRYPTO;
		goto out;
	}
	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC) {
		if ((w = ec_width(k, &crv, alg)) == 0)
			goto out;
		r = P11C_ERR_CRYPTO;
		if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_X, &a) != 1 ||
		    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_EC_PUB_Y, &b) != 1)
			goto out;
		/* RFC 7638 s3.2: required members only, sorted */
		j = json_pack("{s:s, s:s, s:o*, s:o*}", "crv", crv, "kty", "EC", "x", bn_json(a, w), "y",
			      bn_json(b, w));
	} else if (EVP_PKEY_get_base_id(k) == EVP_PKEY_RSA) {
		r = P11C_ERR_CRYPTO;
		if (EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_E, &b) != 1 ||
		    EVP_PKEY_get_bn_param(k, OSSL_PKEY_PARAM_RSA_N, &a) != 1)
			goto out;
		*alg = "RS256";
		j = json_pack("{s:o*, s:s, s:o*}", "e", bn_json(b, 0), "kty", "RSA", "n", bn_json(a, 0));
	} else {
		goto out;
	}
	/* "o*" leaves a member out when its value could not be made */
	if (j == NULL || json_object_size(j) != (crv != NULL ? 4u : 3u)) {
		json_decref(j);
		j = NULL;
		r = P11C_ERR_NOMEM;
		goto out;
	}
	*jwk = j;
	r = P11C_OK;
out:
	BN_free(a);
	BN_free(b);
	EVP_PKEY_free(k);
	return r;
}

static p11c_result sha256_b64url(const void *d, size_t n, char out[44])
{
	unsigned char md[32];
	char *s;

	if (EVP_Digest(d, n, md, NULL, EVP_sha256(), NULL) != 1)
		return P11C_ERR_CRYPTO;
	if ((s = p11c_b64url(md, sizeof md)) == NULL)
		return P11C_ERR_NOMEM;
	memcpy(out, s, 44); /* 43 characters + NUL */
	free(s);
	return P11C_OK;
}

p11c_result p11c_jwk_thumbprint(EVP_PKEY *pub, char out[44])
{
	json_t *jwk = NULL;
	const char *alg = NULL;
	char *s = NULL;
	p11c_result r;

	out[0] = '\0';
	if (pub == NULL)
		return P11C_ERR_ARG;
	if ((r = p11c_jwk(pub, &jwk, &alg)) != P11C_OK)
		return r;
	/* RFC 7638 s3.3: no whitespace, members in lexicographic order */
	s = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS);
	r = s ? sha256_b64url(s, strlen(s), out) : P11C_ERR_NOMEM;
	free(s);
	json_decref(jwk);
	return r;
}

p11c_result p11c_acme_dns01_value(const char *keyauth, char out[44])
{
	out[0] = '\0';
	if (keyauth == NULL)
		return P11C_ERR_ARG;
	return sha256_b64url(keyauth, strlen(keyauth), out); /* RFC 8555 s8.4 */
}

/* RFC 7518 s3.4: the JWS ECDSA signature is r || s, each at the curve's
 * full width; OpenSSL (and our signer) gives DER */
static p11c_result ecdsa_raw(const unsigned char *der, size_t len, int w, unsigned char *out)
{
	const unsigned char *p = der;
	ECDSA_SIG *sig = d2i_ECDSA_SIG(NULL, &p, (long)len);
	const BIGNUM *r = NULL, *s = NULL;
	p11c_result res = P11C_ERR_CRYPTO;

	if (sig == NULL || p != der + len)
		goto out;
	ECDSA_SIG_get0(sig, &r, &s);
	if (BN_bn2binpad(r, out, w) != w || BN_bn2binpad(s, out + w, w) != w)
		goto out;
	res = P11C_OK;
out:
	ECDSA_SIG_free(sig);
	return res;
}

p11c_result p11c_jws_sign(p11c_ctx *ctx, EVP_PKEY *signer, EVP_PKEY *pub, const char *url, const char *nonce,
			  const char *kid, const char *payload, char **out)
{
	json_t *jwk = NULL, *prot = NULL, *jws = NULL;
	const char *alg = NULL, *crv = NULL;
	char *ph = NULL, *pl = NULL, *input = NULL, *sig64 = NULL, *ps = NULL;
	unsigned char *sig = NULL, raw[132];
	size_t siglen = 0;
	EVP_MD_CTX *md = NULL;
	EVP_PKEY *k = NULL;
	const EVP_MD *dg;
	p11c_result r;
	int w = 0;

	*out = NULL;
	if ((r = p11c_jwk(pub, &jwk, &alg)) != P11C_OK) {
		p11c_detail(ctx, "the ACME account key must be EC P-256, EC P-384 or RSA (RFC 7518 s3.1)");
		goto out;
	}
	r = P11C_ERR_NOMEM;
	/* RFC 8555 s6.2: alg, nonce, url, and exactly one of jwk / kid; no
	 * nonce in the inner JWS of a key change (s7.3.5) */
	prot = kid ? json_pack("{s:s, s:s, s:s*, s:s}", "alg", alg, "kid", kid, "nonce", nonce, "url", url)
		   : json_pack("{s:s, s:O, s:s*, s:s}", "alg", alg, "jwk", jwk, "nonce", nonce, "url", url);
	if (prot == NULL || (ps = json_dumps(prot, JSON_COMPACT | JSON_SORT_KEYS)) == NULL)
		goto out;
	if ((ph = p11c_b64url((const unsigned char *)ps, strlen(ps))) == NULL ||
	    (pl = p11c_b64url((const unsigned char *)payload, strlen(payload))) == NULL ||
	    asprintf(&input, "%s.%s", ph, pl) < 0) {
		input = NULL;
		goto out;
	}
	dg = strcmp(alg, "ES384") == 0 ? EVP_sha384() : EVP_sha256();
	if (strncmp(alg, "ES", 2) == 0) {
		if ((k = native(pub)) == NULL || (w = ec_width(k, &crv, &alg)) == 0) {
			r = p11c_ossl(ctx, "reading the account key's curve");
			goto out;
		}
	}
	if ((md = EVP_MD_CTX_new()) == NULL)
		goto out;
	if (EVP_DigestSignInit(md, NULL, dg, NULL, signer) != 1 ||
	    EVP_DigestSign(md, NULL, &siglen, (const unsigned char *)input, strlen(input)) != 1 ||
	    (sig = OPENSSL_malloc(siglen)) == NULL ||
	    EVP_DigestSign(md, sig, &siglen, (const unsigned char *)input, strlen(input)) != 1) {
		r = p11c_ossl(ctx, "the token could not sign the ACME request");
		goto out;
	}
	if (w > 0) {
		if ((r = ecdsa_raw(sig, siglen, w, raw)) != P11C_OK) {
			p11c_detail(ctx, "the token's ECDSA signature is not a DER ECDSA-Sig-Value");
			goto out;
		}
		sig64 = p11c_b64url(raw, (size_t)w * 2);
	} else {
		sig64 = p11c_b64url(sig, siglen);
	}
	r = P11C_ERR_NOMEM;
	if (sig64 == NULL)
		goto out;
	jws = json_pack("{s:s, s:s, s:s}", "protected", ph, "payload", pl, "signature", sig64);
	if (jws == NULL || (*out = json_dumps(jws, JSON_COMPACT)) == NULL)
		goto out;
	r = P11C_OK;
out:
	json_decref(jwk);
	json_decref(prot);
	json_decref(jws);
	free(ps);
	free(ph);
	free(pl);
	free(input);
	free(sig64);
	OPENSSL_free(sig);
	EVP_MD_CTX_free(md);
	EVP_PKEY_free(k);
	return r;
}

p11c_result p11c_jws_eab(p11c_ctx *ctx, const unsigned char *mac_key, size_t mac_len, const char *eab_kid,
			 const char *url, EVP_PKEY *account_pub, json_t **out)
{
	json_t *jwk = NULL, *prot = NULL;
	const char *alg = NULL;
	char *ps = NULL, *js = NULL, *ph = NULL, *pl = NULL, *input = NULL, *sig64 = NULL;
	unsigned char mac[EVP_MAX_MD_SIZE];
	unsigned maclen = 0;
	p11c_result r;

	*out = NULL;
	if ((r = p11c_jwk(account_pub, &jwk, &alg)) != P11C_OK)
		goto out;
	r = P11C_ERR_NOMEM;
	prot = json_pack("{s:s, s:s, s:s}", "alg", "HS256", "kid", eab_kid, "url", url);
	if (prot == NULL || (ps = json_dumps(prot, JSON_COMPACT | JSON_SORT_KEYS)) == NULL ||
	    (js = json_dumps(jwk, JSON_COMPACT | JSON_SORT_KEYS)) == NULL ||
	    (ph = p11c_b64url((const unsigned char *)ps, strlen(ps))) == NULL ||
	    (pl = p11c_b64url((const unsigned char *)js, strlen(js))) == NULL || asprintf(&input, "%s.%s", ph, pl) < 0) {
		input = NULL;
		goto out;
	}
	if (HMAC(EVP_sha256(), mac_key, (int)mac_len, (const unsigned char *)input, strlen(input), mac, &maclen) ==
	    NULL) {
		r = p11c_ossl(ctx, "External Account Binding HMAC");
		goto out;
	}
	if ((sig64 = p11c_b64url(mac, maclen)) == NULL)
		goto out;
	if ((*out = json_pack("{s:s, s:s, s:s}", "protected", ph, "payload", pl, "signature", sig64)) == NULL)
		goto out;
	r = P11C_OK;
out:
	OPENSSL_cleanse(mac, sizeof mac);
	json_decref(jwk);
	json_decref(prot);
	free(ps);
	free(js);
	free(ph);
	free(pl);
	free(input);
	free(sig64);
	return r;
}

p11c_result p11c_jws_keychange(p11c_ctx *ctx, EVP_PKEY *new_signer, EVP_PKEY *new_pub, const char *url,
			       const char *account_url, EVP_PKEY *old_pub, char **out)
{
	json_t *old = NULL, *pl = NULL;
	const char *alg = NULL;
	char *s = NULL;
	p11c_result r;

	*out = NULL;
	if ((r = p11c_jwk(old_pub, &old, &alg)) != P11C_OK) {
		p11c_detail(ctx, "the old ACME account key must be EC P-256, EC P-384 or RSA (RFC 7518 s3.1)");
		return r;
	}
	r = P11C_ERR_NOMEM;
	/* RFC 8555 s7.3.5: {"account": the account URL, "oldKey": its JWK} */
	if ((pl = json_pack("{s:s, s:O}", "account", account_url, "oldKey", old)) == NULL ||
	    (s = json_dumps(pl, JSON_COMPACT)) == NULL)
		goto out;
	/* signed by the new key, jwk header, no nonce */
	r = p11c_jws_sign(ctx, new_signer, new_pub, url, NULL, NULL, s, out);
out:
	json_decref(old);
	json_decref(pl);
	free(s);
	return r;
}
