/* Token objects: search, attributes, public keys, listing, deletion. */
#include <stdlib.h>
#include <string.h>

#include <openssl/core_names.h>
#include <openssl/param_build.h>

#include "internal.h"

#define ATTR_MAX (64 * 1024) /* largest attribute we read (certificates) */
#define FIND_MAX 256         /* most objects we look at in one search */
#define ATTR_SMALL 1024      /* read in one call, without a size query */

p11c_result p11c_find(p11c_ctx *ctx, CK_ATTRIBUTE *tmpl, CK_ULONG n, CK_OBJECT_HANDLE *out,
		      CK_ULONG max, CK_ULONG *count)
{
	CK_RV rv;

	*count = 0;
	rv = ctx->f->C_FindObjectsInit(ctx->session, tmpl, n);
	if (rv != CKR_OK)
		return p11c_ckr(ctx, "C_FindObjectsInit", rv);
	rv = ctx->f->C_FindObjects(ctx->session, out, max, count);
	(void)ctx->f->C_FindObjectsFinal(ctx->session);
	if (rv != CKR_OK)
		return p11c_ckr(ctx, "C_FindObjects", rv);
	return P11C_OK;
}

p11c_result p11c_attr(p11c_ctx *ctx, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type,
		      unsigned char **val, CK_ULONG *len)
{
	unsigned char small[ATTR_SMALL];
	CK_ATTRIBUTE a = { type, small, sizeof small };
	CK_RV rv;

	*val = NULL;
	*len = 0;
	/* one call for the usual sizes (labels, ids, EC points, RSA 4096
	 * moduli); the size query only for larger ones (PKCS#11 v2.40
	 * s5.7.5: CKR_BUFFER_TOO_SMALL leaves the length unavailable) */
	rv = ctx->f->C_GetAttributeValue(ctx->session, h, &a, 1);
	if (rv == CKR_OK && a.ulValueLen != CK_UNAVAILABLE_INFORMATION && a.ulValueLen <= sizeof small) {
		*val = malloc(a.ulValueLen + 1); /* +1: labels get a NUL */
		if (*val == NULL)
			return P11C_ERR_NOMEM;
		memcpy(*val, small, a.ulValueLen);
		(*val)[a.ulValueLen] = '\0';
		*len = a.ulValueLen;
		return P11C_OK;
	}
	a.pValue = NULL;
	a.ulValueLen = 0;
	if (rv == CKR_OK || rv == CKR_BUFFER_TOO_SMALL)
		rv = ctx->f->C_GetAttributeValue(ctx->session, h, &a, 1);
	if (rv != CKR_OK)
		return p11c_ckr(ctx, "C_GetAttributeValue", rv);
	if (a.ulValueLen == CK_UNAVAILABLE_INFORMATION || a.ulValueLen > ATTR_MAX) {
		p11c_detail(ctx, "attribute 0x%lx on token '%s' is unavailable or too large",
			    (unsigned long)type, ctx->token_label);
		return P11C_ERR_PKCS11;
	}
	a.pValue = malloc(a.ulValueLen + 1); /* +1: labels get a NUL */
	if (a.pValue == NULL)
		return P11C_ERR_NOMEM;
	rv = ctx->f->C_GetAttributeValue(ctx->session, h, &a, 1);
	if (rv != CKR_OK) {
		free(a.pValue);
		return p11c_ckr(ctx, "C_GetAttributeValue", rv);
	}
	((unsigned char *)a.pValue)[a.ulValueLen] = '\0';
	*val = a.pValue;
	*len = a.ulValueLen;
	return P11C_OK;
}

static int attr_bool(p11c_ctx *ctx, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type)
{
	CK_BBOOL v = CK_FALSE;
	CK_ATTRIBUTE a = { type, &v, sizeof v };

	if (ctx->f->C_GetAttributeValue(ctx->session, h, &a, 1) != CKR_OK)
		return -1;
	return v == CK_TRUE;
}

static int attr_ulong(p11c_ctx *ctx, CK_OBJECT_HANDLE h, CK_ATTRIBUTE_TYPE type, CK_ULONG *v)
{
	CK_ATTRIBUTE a = { type, v, sizeof *v };

	return ctx->f->C_GetAttributeValue(ctx->session, h, &a, 1) == CKR_OK ? 0 : -1;
}

static p11c_result rsa_pub(p11c_ctx *ctx, CK_OBJECT_HANDLE h, EVP_PKEY **out)
{
	unsigned char *mod = NULL, *exp = NULL;
	CK_ULONG mlen, elen;
	BIGNUM *n = NULL, *e = NULL;
	OSSL_PARAM_BLD *bld = NULL;
	OSSL_PARAM *params = NULL;
	EVP_PKEY_CTX *pctx = NULL;
	p11c_result r;

	r = p11c_attr(ctx, h, CKA_MODULUS, &mod, &mlen);
	if (r != P11C_OK)
		goto out;
	r = p11c_attr(ctx, h, CKA_PUBLIC_EXPONENT, &exp, &elen);
	if (r != P11C_OK)
		goto out;
	n = BN_bin2bn(mod, (int)mlen, NULL);
	e = BN_bin2bn(exp, (int)elen, NULL);
	bld = OSSL_PARAM_BLD_new();
	if (n == NULL || e == NULL || bld == NULL ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_N, n) ||
	    !OSSL_PARAM_BLD_push_BN(bld, OSSL_PKEY_PARAM_RSA_E, e) ||
	    (params = OSSL_PARAM_BLD_to_param(bld)) == NULL ||
	    (pctx = EVP_PKEY_CTX_new_from_name(NULL, "RSA", NULL)) == NULL ||
	    EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, params) <= 0) {
		r = p11c_ossl(ctx, "cannot build RSA public key from token attributes");
		goto out;
	}
	r = P11C_OK;
out:
	free(mod);
	free(exp);
	BN_free(n);
	BN_free(e);
	OSSL_PARAM_free(params);
	OSSL_PARAM_BLD_free(bld);
	EVP_PKEY_CTX_free(pctx);
	return r;
}

/* CKA_EC_POINT is a DER OCTET STRING (PKCS#11 v2.40 s2.3.3); some modules
 * return the raw point.  Unwrap when it parses as one. */
static const unsigned char *ec_point(const unsigned char *v, CK_ULONG len, size_t *plen)
{
	const unsigned char *p = v;
	ASN1_OCTET_STRING *os = d2i_ASN1_OCTET_STRING(NULL, &p, (long)len);

	if (os != NULL && p == v + len) {
		size_t off = len - (size_t)ASN1_STRING_length(os);

		*plen = (size_t)ASN1_STRING_length(os);
		ASN1_OCTET_STRING_free(os);
		return v + off;
	}
	ASN1_OCTET_STRING_free(os);
	*plen = len;
	return v;
}

static p11c_result ec_pub(p11c_ctx *ctx, CK_OBJECT_HANDLE h, int edwards, EVP_PKEY **out)
{
	unsigned char *params = NULL, *point = NULL;
	CK_ULONG plen, qlen;
	const unsigned char *q, *pp;
	size_t rawlen;
	ASN1_OBJECT *oid = NULL;
	const char *group;
	OSSL_PARAM op[3];
	EVP_PKEY_CTX *pctx = NULL;
	p11c_result r;

	r = p11c_attr(ctx, h, CKA_EC_PARAMS, &params, &plen);
	if (r != P11C_OK)
		goto out;
	r = p11c_attr(ctx, h, CKA_EC_POINT, &point, &qlen);
	if (r != P11C_OK)
		goto out;
	q = ec_point(point, qlen, &rawlen);
	if (edwards) {
		/* CKA_EC_PARAMS: OID 1.3.101.112 or PrintableString "edwards25519" */
		*out = EVP_PKEY_new_raw_public_key(EVP_PKEY_ED25519, NULL, q, rawlen);
		if (*out == NULL) {
			r = p11c_ossl(ctx, "cannot build Ed25519 public key from token attributes");
			goto out;
		}
		r = P11C_OK;
		goto out;
	}
	pp = params;
	oid = d2i_ASN1_OBJECT(NULL, &pp, (long)plen);
	if (oid == NULL || (group = OBJ_nid2sn(OBJ_obj2nid(oid))) == NULL ||
	    OBJ_obj2nid(oid) == NID_undef) {
		p11c_detail(ctx, "EC key on token '%s' uses a curve OpenSSL does not know",
			    ctx->token_label);
		r = P11C_ERR_MECHANISM;
		goto out;
	}
	op[0] = OSSL_PARAM_construct_utf8_string(OSSL_PKEY_PARAM_GROUP_NAME, (char *)(uintptr_t)group, 0);
	op[1] = OSSL_PARAM_construct_octet_string(OSSL_PKEY_PARAM_PUB_KEY, (void *)(uintptr_t)q, rawlen);
	op[2] = OSSL_PARAM_construct_end();
	pctx = EVP_PKEY_CTX_new_from_name(NULL, "EC", NULL);
	if (pctx == NULL || EVP_PKEY_fromdata_init(pctx) <= 0 ||
	    EVP_PKEY_fromdata(pctx, out, EVP_PKEY_PUBLIC_KEY, op) <= 0) {
		r = p11c_ossl(ctx, "cannot build EC public key from token attributes");
		goto out;
	}
	r = P11C_OK;
out:
	free(params);
	free(point);
	ASN1_OBJECT_free(oid);
	EVP_PKEY_CTX_free(pctx);
	return r;
}

p11c_result p11c_pubkey_from_object(p11c_ctx *ctx, CK_OBJECT_HANDLE h, EVP_PKEY **out,
				    p11c_key_type *type)
{
	CK_ULONG kt;
	p11c_result r;

	*out = NULL;
	if (attr_ulong(ctx, h, CKA_KEY_TYPE, &kt) != 0) {
		p11c_detail(ctx, "object on token '%s' has no CKA_KEY_TYPE", ctx->token_label);
		return P11C_ERR_PKCS11;
	}
	switch (kt) {
	case CKK_RSA:
		r = rsa_pub(ctx, h, out);
		break;
	case CKK_EC:
		r = ec_pub(ctx, h, 0, out);
		break;
	case CKK_EC_EDWARDS:
		r = ec_pub(ctx, h, 1, out);
		break;
	default:
		p11c_detail(ctx, "key type 0x%lx on token '%s' is not supported (RSA, EC, Ed25519 are)",
			    (unsigned long)kt, ctx->token_label);
		return P11C_ERR_MECHANISM;
	}
	if (r == P11C_OK && type != NULL && p11c_key_type_of(*out, type) != P11C_OK)
		*type = 0;
	return r;
}

/* A public key object with the private key's label whose RFC 5280 key
 * identifier is ID: what p11c_keygen leaves when it dies after giving the
 * private key its final CKA_ID and before the public key.  The public
 * key's CKA_ID is set to ID on the way (best effort), so the pair is whole
 * again. */
static p11c_result pubkey_by_label_keyid(p11c_ctx *ctx, CK_OBJECT_HANDLE priv, const unsigned char *id,
					 size_t id_len, EVP_PKEY **out, p11c_key_type *type)
{
	CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &pub_cls, sizeof pub_cls }, { CKA_LABEL, NULL, 0 } };
	CK_OBJECT_HANDLE h[8];
	CK_ULONG n = 0, i, llen = 0;
	unsigned char *label = NULL, kid[20];
	EVP_PKEY *pk = NULL;
	p11c_result r = P11C_ERR_NOT_FOUND;

	if (id_len != sizeof kid || p11c_attr(ctx, priv, CKA_LABEL, &label, &llen) != P11C_OK)
		return P11C_ERR_NOT_FOUND;
	t[1].pValue = label;
	t[1].ulValueLen = llen;
	if (p11c_find(ctx, t, 2, h, 8, &n) != P11C_OK)
		n = 0;
	for (i = 0; i < n; i++) {
		if (p11c_pubkey_from_object(ctx, h[i], &pk, type) != P11C_OK)
			continue;
		if (p11c_pubkey_keyid(pk, kid) == P11C_OK && memcmp(kid, id, sizeof kid) == 0) {
			CK_ATTRIBUTE a = { CKA_ID, (void *)(uintptr_t)id, id_len };

			(void)ctx->f->C_SetAttributeValue(ctx->session, h[i], &a, 1);
			*out = pk;
			r = P11C_OK;
			break;
		}
		EVP_PKEY_free(pk);
		pk = NULL;
	}
	ERR_clear_error();
	free(label);
	return r;
}

p11c_result p11c_pubkey_for_id(p11c_ctx *ctx, CK_OBJECT_HANDLE priv, const unsigned char *id,
			       size_t id_len, EVP_PKEY **out, p11c_key_type *type)
{
	CK_OBJECT_CLASS pub_cls = CKO_PUBLIC_KEY, cert_cls = CKO_CERTIFICATE;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &pub_cls, sizeof pub_cls },
			      { CKA_ID, (void *)(uintptr_t)id, id_len } };
	CK_OBJECT_HANDLE h[4];
	CK_ULONG n = 0, kt = 0;
	unsigned char *der = NULL;
	CK_ULONG dlen;
	X509 *x = NULL;
	p11c_result r;

	r = p11c_find(ctx, t, 2, h, 4, &n);
	if (r != P11C_OK)
		return r;
	if (n > 0)
		return p11c_pubkey_from_object(ctx, h[0], out, type);
	/* p11c_keygen interrupted between its two CKA_ID updates */
	r = pubkey_by_label_keyid(ctx, priv, id, id_len, out, type);
	if (r != P11C_ERR_NOT_FOUND)
		return r;
	/* RSA private keys carry the public components */
	if (attr_ulong(ctx, priv, CKA_KEY_TYPE, &kt) == 0 && kt == CKK_RSA)
		return p11c_pubkey_from_object(ctx, priv, out, type);
	/* last resort: a certificate with the same id */
	t[0].pValue = &cert_cls;
	r = p11c_find(ctx, t, 2, h, 4, &n);
	if (r != P11C_OK)
		return r;
	if (n > 0 && p11c_attr(ctx, h[0], CKA_VALUE, &der, &dlen) == P11C_OK) {
		const unsigned char *p = der;

		x = d2i_X509(NULL, &p, (long)dlen);
		free(der);
		if (x != NULL && (*out = X509_get_pubkey(x)) != NULL) {
			X509_free(x);
			if (type != NULL && p11c_key_type_of(*out, type) != P11C_OK)
				*type = 0;
			return P11C_OK;
		}
		X509_free(x);
	}
	p11c_detail(ctx, "key on token '%s' has no public key object or certificate with its CKA_ID",
		    ctx->token_label);
	return P11C_ERR_NOT_FOUND;
}

p11c_result p11c_key_new(p11c_ctx *ctx, CK_OBJECT_HANDLE priv, p11c_key **out)
{
	return p11c_key_new_pub(ctx, priv, CK_INVALID_HANDLE, out);
}

/* PUB, when valid, is the public key object of the pair, already known to
 * the caller (keygen, or p11c_key_find's one search): no second search,
 * which costs O(objects on the token) in SoftHSM's file store. */
p11c_result p11c_key_new_pub(p11c_ctx *ctx, CK_OBJECT_HANDLE priv, CK_OBJECT_HANDLE pub,
			     p11c_key **out)
{
	p11c_key *k = NULL;
	unsigned char *v = NULL;
	CK_ULONG len;
	p11c_result r;

	k = calloc(1, sizeof *k);
	if (k == NULL)
		return P11C_ERR_NOMEM;
	k->ctx = ctx;
	k->priv = priv;
	r = p11c_attr(ctx, priv, CKA_LABEL, &v, &len);
	if (r != P11C_OK)
		goto out;
	k->label = (char *)v; /* NUL-terminated by p11c_attr */
	v = NULL;
	r = p11c_attr(ctx, priv, CKA_ID, &v, &len);
	if (r != P11C_OK)
		goto out;
	if (len > P11C_ID_MAX) {
		p11c_detail(ctx, "key '%s' has a CKA_ID longer than %d bytes", k->label, P11C_ID_MAX);
		r = P11C_ERR_PKCS11;
		goto out;
	}
	if (len > 0)
		memcpy(k->id, v, len);
	k->id_len = len;
	if (pub != CK_INVALID_HANDLE)
		r = p11c_pubkey_from_object(ctx, pub, &k->pub, &k->type);
	else
		r = p11c_pubkey_for_id(ctx, priv, k->id, k->id_len, &k->pub, &k->type);
	if (r != P11C_OK)
		goto out;
	*out = k;
	k = NULL;
out:
	free(v);
	p11c_key_free(&k);
	return r;
}

/* --- listing --------------------------------------------------------------- */

static int obj_cmp(const void *a, const void *b)
{
	const p11c_object *x = a, *y = b;
	size_t n = x->id_len < y->id_len ? x->id_len : y->id_len;
	int c = n ? memcmp(x->id, y->id, n) : 0;

	if (c != 0)
		return c;
	if (x->id_len != y->id_len)
		return x->id_len < y->id_len ? -1 : 1;
	return (int)x->cls - (int)y->cls;
}

static p11c_result describe(p11c_ctx *ctx, CK_OBJECT_HANDLE h, p11c_object *o)
{
	CK_ULONG cls = 0, len;
	unsigned char *v = NULL;
	const char *type = NULL;
	EVP_PKEY *pk = NULL;
	char desc[64];
	p11c_result r;

	if (attr_ulong(ctx, h, CKA_CLASS, &cls) != 0)
		cls = CKO_DATA;
	switch (cls) {
	case CKO_PRIVATE_KEY:
		o->cls = P11C_OBJ_PRIVATE_KEY;
		type = "private";
		break;
	case CKO_PUBLIC_KEY:
		o->cls = P11C_OBJ_PUBLIC_KEY;
		type = "public";
		break;
	case CKO_CERTIFICATE:
		o->cls = P11C_OBJ_CERTIFICATE;
		type = "cert";
		break;
	default:
		o->cls = P11C_OBJ_OTHER;
		break;
	}
	r = p11c_attr(ctx, h, CKA_LABEL, &v, &len);
	o->label = r == P11C_OK ? (char *)v : strdup("");
	v = NULL;
	if (p11c_attr(ctx, h, CKA_ID, &v, &len) == P11C_OK && len > 0) {
		o->id = v;
		o->id_len = len;
		v = NULL;
	}
	free(v);
	v = NULL;
	if (o->cls == P11C_OBJ_PRIVATE_KEY) {
		o->sensitive = attr_bool(ctx, h, CKA_SENSITIVE);
		o->extractable = attr_bool(ctx, h, CKA_EXTRACTABLE);
		if (p11c_pubkey_for_id(ctx, h, o->id, o->id_len, &pk, NULL) != P11C_OK)
			pk = NULL;
	} else if (o->cls == P11C_OBJ_PUBLIC_KEY) {
		if (p11c_pubkey_from_object(ctx, h, &pk, NULL) != P11C_OK)
			pk = NULL;
	} else if (o->cls == P11C_OBJ_CERTIFICATE) {
		if (p11c_attr(ctx, h, CKA_VALUE, &v, &len) == P11C_OK) {
			const unsigned char *p = v;

			o->cert = d2i_X509(NULL, &p, (long)len);
			if (o->cert != NULL)
				pk = X509_get_pubkey(o->cert);
		}
	}
	if (pk != NULL) {
		p11c_key_desc(pk, desc, sizeof desc);
		o->key_desc = strdup(desc);
	}
	ERR_clear_error();
	ctx->detail[0] = '\0';
	if (type != NULL)
		o->uri = p11c_uri_format(ctx, o->label, o->id, o->id_len, type);
	free(v);
	EVP_PKEY_free(pk);
	return o->label == NULL ? P11C_ERR_NOMEM : P11C_OK;
}

p11c_result p11c_list(p11c_ctx *ctx, const char *uri, p11c_object **out, size_t *nout)
{
	p11c_uri u;
	CK_ATTRIBUTE t[3];
	CK_ULONG nt = 0, n = 0, i;
	CK_OBJECT_HANDLE *h = NULL;
	p11c_object *objs = NULL;
	p11c_result r;

	*out = NULL;
	*nout = 0;
	r = p11c_uri_parse(ctx, uri, &u);
	if (r != P11C_OK)
		return r;
	r = p11c_open(ctx, uri);
	if (r != P11C_OK)
		goto out;
	/* log in when we can, so private keys show; without a PIN list the
	 * public objects only */
	r = p11c_login(ctx);
	if (r == P11C_ERR_NO_PIN) {
		r = p11c_need_session(ctx);
		ctx->detail[0] = '\0';
	}
	if (r != P11C_OK)
		goto out;
	if (u.object != NULL)
		t[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, u.object, strlen(u.object) };
	if (u.has_id)
		t[nt++] = (CK_ATTRIBUTE){ CKA_ID, u.id, u.id_len };
	if (u.has_class)
		t[nt++] = (CK_ATTRIBUTE){ CKA_CLASS, &u.cls, sizeof u.cls };
	h = calloc(FIND_MAX, sizeof *h);
	if (h == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	r = p11c_find(ctx, t, nt, h, FIND_MAX, &n);
	if (r != P11C_OK)
		goto out;
	objs = calloc(n ? n : 1, sizeof *objs);
	if (objs == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < n; i++) {
		r = describe(ctx, h[i], &objs[i]);
		if (r != P11C_OK) {
			p11c_objects_free(&objs, i + 1);
			goto out;
		}
	}
	qsort(objs, n, sizeof *objs, obj_cmp);
	*out = objs;
	*nout = n;
	r = P11C_OK;
out:
	free(h);
	p11c_uri_clear(&u);
	return r;
}

void p11c_objects_free(p11c_object **objs, size_t n)
{
	size_t i;

	if (objs == NULL || *objs == NULL)
		return;
	for (i = 0; i < n; i++) {
		free((*objs)[i].label);
		free((*objs)[i].id);
		free((*objs)[i].key_desc);
		free((*objs)[i].uri);
		X509_free((*objs)[i].cert);
	}
	free(*objs);
	*objs = NULL;
}

/* --- relabel --------------------------------------------------------------- */

p11c_result p11c_key_relabel(p11c_ctx *ctx, p11c_key *k, const char *label)
{
	CK_OBJECT_CLASS classes[] = { CKO_PUBLIC_KEY, CKO_CERTIFICATE, CKO_PRIVATE_KEY };
	CK_OBJECT_HANDLE h[16];
	CK_ULONG n, i, c;
	CK_ATTRIBUTE a;
	CK_RV rv;
	char *copy;
	p11c_result r;

	if (ctx == NULL || k == NULL || label == NULL || *label == '\0' || strlen(label) > P11C_LABEL_MAX)
		return P11C_ERR_ARG;
	a = (CK_ATTRIBUTE){ CKA_LABEL, (void *)(uintptr_t)label, strlen(label) };
	/* the private key last: until then a search by the new label finds no
	 * second private key */
	for (c = 0; c < sizeof classes / sizeof classes[0]; c++) {
		CK_ATTRIBUTE t[2] = { { CKA_CLASS, &classes[c], sizeof classes[c] }, { CKA_ID, k->id, k->id_len } };

		r = p11c_find(ctx, t, 2, h, 16, &n);
		if (r != P11C_OK)
			return r;
		for (i = 0; i < n; i++) {
			rv = ctx->f->C_SetAttributeValue(ctx->session, h[i], &a, 1);
			if (rv != CKR_OK)
				return p11c_ckr(ctx, "C_SetAttributeValue(CKA_LABEL)", rv);
		}
	}
	copy = strdup(label);
	if (copy == NULL)
		return P11C_ERR_NOMEM;
	free(k->label);
	k->label = copy;
	return P11C_OK;
}

/* --- deletion ------------------------------------------------------------- */

p11c_result p11c_key_delete(p11c_ctx *ctx, p11c_key **pkey)
{
	p11c_key *k;
	CK_OBJECT_CLASS classes[] = { CKO_CERTIFICATE, CKO_PUBLIC_KEY, CKO_PRIVATE_KEY };
	CK_OBJECT_HANDLE h[16];
	CK_ULONG n, i, c;
	CK_RV rv;
	p11c_result r = P11C_OK;

	if (ctx == NULL || pkey == NULL || *pkey == NULL)
		return P11C_ERR_ARG;
	k = *pkey;
	/* tpm2-pkcs11 forgets a loaded key it destroys without flushing it
	 * from the TPM: without a resource manager its object slot stays
	 * taken until reboot.  Unload the keys first (a no-op elsewhere). */
	r = p11c_token_release_keys(ctx);
	if (r != P11C_OK)
		goto out;
	/* certificates first, the private key last: an interrupted delete
	 * never leaves a certificate without its key */
	for (c = 0; c < sizeof classes / sizeof classes[0]; c++) {
		CK_ATTRIBUTE t[2] = { { CKA_CLASS, &classes[c], sizeof classes[c] },
				      { CKA_ID, k->id, k->id_len } };

		r = p11c_find(ctx, t, 2, h, 16, &n);
		if (r != P11C_OK)
			goto out;
		for (i = 0; i < n; i++) {
			rv = ctx->f->C_DestroyObject(ctx->session, h[i]);
			if (rv != CKR_OK) {
				r = p11c_ckr(ctx, "C_DestroyObject", rv);
				goto out;
			}
		}
	}
out:
	p11c_key_free(pkey);
	return r;
}
