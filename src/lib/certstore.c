/* Certificates in the token, next to their key. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "show.h"
#include "testhook.h"

#define OLD_MAX 16

static p11c_result der_of(p11c_ctx *ctx, int len, unsigned char *buf, const char *what)
{
	if (len <= 0 || buf == NULL) {
		OPENSSL_free(buf);
		return p11c_ossl(ctx, what);
	}
	return P11C_OK;
}

p11c_result p11c_cert_store(p11c_ctx *ctx, p11c_key *key, X509 *cert)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_CERTIFICATE_TYPE ct = CKC_X_509;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	unsigned char *der = NULL, *subj = NULL, *iss = NULL, *ser = NULL, *back = NULL;
	int dlen, slen, ilen, nlen;
	CK_ULONG blen, nold = 0, i;
	CK_OBJECT_HANDLE old[OLD_MAX], h = CK_INVALID_HANDLE;
	CK_ATTRIBUTE find[2];
	CK_RV rv;
	p11c_result r;
	char *name = NULL;

	if (ctx == NULL || key == NULL || cert == NULL)
		return P11C_ERR_ARG;
	if (!p11c_cert_matches(cert, key->pub)) {
		name = p11c_name_str(X509_get_subject_name(cert));
		p11c_detail(ctx, "certificate '%s' is for another public key than key '%s' on token '%s'",
			    name ? name : "?", key->label, ctx->token_label);
		free(name);
		return P11C_ERR_KEY_MISMATCH;
	}
	dlen = i2d_X509(cert, &der);
	if ((r = der_of(ctx, dlen, der, "encode certificate")) != P11C_OK)
		return r;
	slen = i2d_X509_NAME(X509_get_subject_name(cert), &subj);
	ilen = i2d_X509_NAME(X509_get_issuer_name(cert), &iss);
	nlen = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &ser);
	if (slen <= 0 || ilen <= 0 || nlen <= 0) {
		r = p11c_ossl(ctx, "encode certificate fields");
		goto out;
	}
	r = p11c_login(ctx);
	if (r != P11C_OK)
		goto out;

	find[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof cls };
	find[1] = (CK_ATTRIBUTE){ CKA_ID, key->id, key->id_len };
	r = p11c_find(ctx, find, 2, old, OLD_MAX, &nold);
	if (r != P11C_OK)
		goto out;
	/* the same certificate stored already and alone: nothing to do */
	if (nold == 1 && p11c_attr(ctx, old[0], CKA_VALUE, &back, &blen) == P11C_OK &&
	    blen == (CK_ULONG)dlen && memcmp(back, der, blen) == 0) {
		r = P11C_OK;
		goto out;
	}
	free(back);
	back = NULL;
	{
		CK_ATTRIBUTE t[] = {
			{ CKA_CLASS, &cls, sizeof cls },
			{ CKA_CERTIFICATE_TYPE, &ct, sizeof ct },
			{ CKA_TOKEN, &yes, sizeof yes },
			{ CKA_PRIVATE, &no, sizeof no },
			{ CKA_LABEL, key->label, strlen(key->label) },
			{ CKA_ID, key->id, key->id_len },
			{ CKA_SUBJECT, subj, (CK_ULONG)slen },
			{ CKA_ISSUER, iss, (CK_ULONG)ilen },
			{ CKA_SERIAL_NUMBER, ser, (CK_ULONG)nlen },
			{ CKA_VALUE, der, (CK_ULONG)dlen },
		};

		rv = ctx->f->C_CreateObject(ctx->session, t, sizeof t / sizeof t[0], &h);
		if (rv != CKR_OK) {
			h = CK_INVALID_HANDLE;
			r = p11c_ckr(ctx, "C_CreateObject(certificate)", rv);
			goto out;
		}
	}
	p11c_test_stall("cert-created");
	/* read back before the old ones go: a failure here leaves them */
	r = p11c_attr(ctx, h, CKA_VALUE, &back, &blen);
	if (r != P11C_OK)
		goto out;
	if (blen != (CK_ULONG)dlen || memcmp(back, der, blen) != 0) {
		p11c_detail(ctx, "token '%s' stored a different certificate than was written",
			    ctx->token_label);
		r = P11C_ERR_PKCS11;
		goto out;
	}
	for (i = 0; i < nold; i++) {
		rv = ctx->f->C_DestroyObject(ctx->session, old[i]);
		if (rv != CKR_OK) {
			h = CK_INVALID_HANDLE; /* the new one stays */
			r = p11c_ckr(ctx, "C_DestroyObject(old certificate)", rv);
			goto out;
		}
	}
	h = CK_INVALID_HANDLE;
	r = P11C_OK;
out:
	if (h != CK_INVALID_HANDLE)
		(void)ctx->f->C_DestroyObject(ctx->session, h);
	OPENSSL_free(der);
	OPENSSL_free(subj);
	OPENSSL_free(iss);
	OPENSSL_free(ser);
	free(back);
	return r;
}

/* The certificate with the latest notAfter among handles h[0..n). */
static p11c_result newest(p11c_ctx *ctx, CK_OBJECT_HANDLE *h, CK_ULONG n, X509 **out)
{
	CK_ULONG i, len;
	X509 *best = NULL, *x;
	unsigned char *v = NULL;
	const unsigned char *p;

	for (i = 0; i < n; i++) {
		if (p11c_attr(ctx, h[i], CKA_VALUE, &v, &len) != P11C_OK)
			continue;
		p = v;
		x = d2i_X509(NULL, &p, (long)len);
		free(v);
		v = NULL;
		if (x == NULL)
			continue;
		if (best == NULL ||
		    ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(best)) > 0) {
			X509_free(best);
			best = x;
		} else {
			X509_free(x);
		}
	}
	ERR_clear_error();
	if (best == NULL)
		return P11C_ERR_NOT_FOUND;
	*out = best;
	return P11C_OK;
}

p11c_result p11c_cert_get(p11c_ctx *ctx, p11c_key *key, X509 **out)
{
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof cls }, { CKA_ID, NULL, 0 } };
	CK_OBJECT_HANDLE h[OLD_MAX];
	CK_ULONG n = 0;
	p11c_result r;

	if (ctx == NULL || key == NULL || out == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	t[1].pValue = key->id;
	t[1].ulValueLen = key->id_len;
	r = p11c_find(ctx, t, 2, h, OLD_MAX, &n);
	if (r != P11C_OK)
		return r;
	r = newest(ctx, h, n, out);
	if (r == P11C_ERR_NOT_FOUND)
		p11c_detail(ctx, "no certificate for key '%s' on token '%s'", key->label,
			    ctx->token_label);
	return r;
}

p11c_result p11c_cert_find(p11c_ctx *ctx, const char *uri, X509 **out)
{
	p11c_uri u;
	CK_OBJECT_CLASS cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE t[3];
	CK_ULONG nt = 0, n = 0;
	CK_OBJECT_HANDLE h[OLD_MAX];
	p11c_result r;

	if (ctx == NULL || uri == NULL || out == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	r = p11c_uri_parse(ctx, uri, &u);
	if (r != P11C_OK)
		return r;
	if (u.object == NULL && !u.has_id) {
		p11c_detail(ctx, "'%.200s' does not name a certificate: add object=LABEL or id=", uri);
		r = P11C_ERR_URI;
		goto out;
	}
	r = p11c_open(ctx, uri);
	if (r != P11C_OK)
		goto out;
	r = p11c_login(ctx);
	if (r == P11C_ERR_NO_PIN) /* certificates are public objects */
		r = p11c_need_session(ctx);
	if (r != P11C_OK)
		goto out;
	t[nt++] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof cls };
	if (u.object != NULL)
		t[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, u.object, strlen(u.object) };
	if (u.has_id)
		t[nt++] = (CK_ATTRIBUTE){ CKA_ID, u.id, u.id_len };
	r = p11c_find(ctx, t, nt, h, OLD_MAX, &n);
	if (r != P11C_OK)
		goto out;
	r = newest(ctx, h, n, out);
	if (r == P11C_ERR_NOT_FOUND)
		p11c_detail(ctx, "no certificate matching '%.200s' on token '%s'", uri,
			    ctx->token_label);
out:
	p11c_uri_clear(&u);
	return r;
}
