/* Small X.509 and key helpers. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/pem.h>
#include <openssl/sha.h>

#include "internal.h"

#define X509_INPUT_MAX (1024 * 1024)

int p11c_cert_matches(X509 *cert, EVP_PKEY *pub)
{
	EVP_PKEY *cp;

	if (cert == NULL || pub == NULL)
		return 0;
	cp = X509_get0_pubkey(cert);
	return cp != NULL && EVP_PKEY_eq(cp, pub) == 1;
}

p11c_result p11c_pubkey_keyid(EVP_PKEY *pub, unsigned char out[20])
{
	X509_PUBKEY *xp = NULL;
	const unsigned char *bits = NULL;
	int len = 0;
	p11c_result r = P11C_ERR_CRYPTO;

	/* RFC 5280 s4.2.1.2 (1): SHA-1 of the subjectPublicKey BIT STRING
	 * value, excluding tag, length and unused-bits octet */
	if (pub == NULL || !X509_PUBKEY_set(&xp, pub) ||
	    !X509_PUBKEY_get0_param(NULL, &bits, &len, NULL, xp) || len <= 0)
		goto out;
	if (SHA1(bits, (size_t)len, out) == NULL)
		goto out;
	r = P11C_OK;
out:
	X509_PUBKEY_free(xp);
	return r;
}

char *p11c_hex(const unsigned char *b, size_t n, int colons)
{
	static const char hexd[] = "0123456789abcdef";
	size_t i, j = 0, sz = n * 3 + 1;
	char *s = malloc(sz);

	if (s == NULL)
		return NULL;
	for (i = 0; i < n; i++) {
		if (colons && i > 0)
			s[j++] = ':';
		s[j++] = hexd[b[i] >> 4];
		s[j++] = hexd[b[i] & 15];
	}
	s[j] = '\0';
	return s;
}

p11c_result p11c_key_type_of(EVP_PKEY *pk, p11c_key_type *t)
{
	char group[64];
	size_t glen = 0;

	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		switch (EVP_PKEY_get_bits(pk)) {
		case 2048:
			*t = P11C_KEY_RSA_2048;
			return P11C_OK;
		case 3072:
			*t = P11C_KEY_RSA_3072;
			return P11C_OK;
		case 4096:
			*t = P11C_KEY_RSA_4096;
			return P11C_OK;
		}
		break;
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
						    sizeof group, &glen))
			break;
		if (strcmp(group, "prime256v1") == 0) {
			*t = P11C_KEY_EC_P256;
			return P11C_OK;
		}
		if (strcmp(group, "secp384r1") == 0) {
			*t = P11C_KEY_EC_P384;
			return P11C_OK;
		}
		break;
	case EVP_PKEY_ED25519:
		*t = P11C_KEY_ED25519;
		return P11C_OK;
	}
	return P11C_ERR_MECHANISM;
}

void p11c_key_desc(EVP_PKEY *pk, char *buf, size_t len)
{
	char group[64];
	size_t glen = 0;

	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA:
		snprintf(buf, len, "RSA %d", EVP_PKEY_get_bits(pk));
		break;
	case EVP_PKEY_EC:
		if (!EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group,
						    sizeof group, &glen))
			snprintf(group, sizeof group, "?");
		snprintf(buf, len, "EC %s",
			 strcmp(group, "prime256v1") == 0  ? "P-256"
			 : strcmp(group, "secp384r1") == 0 ? "P-384"
			 : strcmp(group, "secp521r1") == 0 ? "P-521"
							   : group);
		break;
	case EVP_PKEY_ED25519:
		snprintf(buf, len, "Ed25519");
		break;
	default:
		snprintf(buf, len, "%s", OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
		break;
	}
}

static int is_pem(const unsigned char *buf, size_t len)
{
	size_t i = 0;

	while (i < len && (buf[i] == ' ' || buf[i] == '\t' || buf[i] == '\r' || buf[i] == '\n'))
		i++;
	/* cppcheck-suppress knownConditionTrueFalse ; false only for the all-blank input of one caller */
	return len - i >= 11 && memcmp(buf + i, "-----BEGIN ", 11) == 0;
}

p11c_result p11c_x509_parse(const unsigned char *buf, size_t len, X509 **out)
{
	BIO *b = NULL;
	const unsigned char *p = buf;
	X509 *x = NULL;

	if (buf == NULL || out == NULL || len == 0 || len > X509_INPUT_MAX)
		return P11C_ERR_PARSE;
	if (is_pem(buf, len)) {
		b = BIO_new_mem_buf(buf, (int)len);
		if (b == NULL)
			return P11C_ERR_NOMEM;
		x = PEM_read_bio_X509(b, NULL, NULL, NULL);
		BIO_free(b);
	} else {
		x = d2i_X509(NULL, &p, (long)len);
		if (x != NULL && p != buf + len) { /* trailing bytes */
			X509_free(x);
			x = NULL;
		}
	}
	if (x == NULL)
		return P11C_ERR_PARSE;
	*out = x;
	return P11C_OK;
}

p11c_result p11c_req_parse(const unsigned char *buf, size_t len, X509_REQ **out)
{
	BIO *b = NULL;
	const unsigned char *p = buf;
	X509_REQ *x = NULL;

	if (buf == NULL || out == NULL || len == 0 || len > X509_INPUT_MAX)
		return P11C_ERR_PARSE;
	if (is_pem(buf, len)) {
		b = BIO_new_mem_buf(buf, (int)len);
		if (b == NULL)
			return P11C_ERR_NOMEM;
		x = PEM_read_bio_X509_REQ(b, NULL, NULL, NULL);
		BIO_free(b);
	} else {
		x = d2i_X509_REQ(NULL, &p, (long)len);
		if (x != NULL && p != buf + len) {
			X509_REQ_free(x);
			x = NULL;
		}
	}
	if (x == NULL)
		return P11C_ERR_PARSE;
	*out = x;
	return P11C_OK;
}

char *p11c_x509_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s = NULL;
	long n;

	if (b != NULL && x != NULL && PEM_write_bio_X509(b, x) && (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (s = malloc((size_t)n + 1)) != NULL) {
		memcpy(s, data, (size_t)n);
		s[n] = '\0';
	}
	BIO_free(b);
	return s;
}
