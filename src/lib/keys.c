/* Key handles: lookup by URI, accessors, and the signer EVP_PKEY. */
#include <stdlib.h>
#include <string.h>

#include "internal.h"

static const struct {
	p11c_key_type t;
	const char *name;
	const char *aliases[4];
} key_types[] = {
	{ P11C_KEY_RSA_2048, "rsa:2048", { "rsa", "rsa2048", "rsa-2048", NULL } },
	{ P11C_KEY_RSA_3072, "rsa:3072", { "rsa3072", "rsa-3072", NULL } },
	{ P11C_KEY_RSA_4096, "rsa:4096", { "rsa4096", "rsa-4096", NULL } },
	{ P11C_KEY_EC_P256, "ec:P-256", { "ec", "p256", "p-256", "ec:prime256v1" } },
	{ P11C_KEY_EC_P384, "ec:P-384", { "p384", "p-384", "ec:secp384r1", NULL } },
	{ P11C_KEY_ED25519, "ed25519", { NULL } },
};

p11c_result p11c_key_type_parse(const char *s, p11c_key_type *out)
{
	size_t i, j;

	if (s == NULL || out == NULL)
		return P11C_ERR_ARG;
	for (i = 0; i < sizeof key_types / sizeof key_types[0]; i++) {
		if (strcasecmp(s, key_types[i].name) == 0)
			goto found;
		for (j = 0; j < 4 && key_types[i].aliases[j] != NULL; j++)
			if (strcasecmp(s, key_types[i].aliases[j]) == 0)
				goto found;
	}
	return P11C_ERR_ARG;
found:
	*out = key_types[i].t;
	return P11C_OK;
}

const char *p11c_key_type_name(p11c_key_type t)
{
	size_t i;

	for (i = 0; i < sizeof key_types / sizeof key_types[0]; i++)
		if (key_types[i].t == t)
			return key_types[i].name;
	return "unknown";
}

/* The objects one search by the URI's label / id found: their class and
 * CKA_ID, read in one call each. */
#define KEYFIND_MAX 16

struct found {
	CK_OBJECT_HANDLE h;
	CK_OBJECT_CLASS cls;
	unsigned char id[P11C_ID_MAX];
	CK_ULONG id_len; /* CK_UNAVAILABLE_INFORMATION if unreadable */
};

static p11c_result found_read(p11c_ctx *ctx, struct found *f)
{
	CK_ATTRIBUTE a[2] = { { CKA_CLASS, &f->cls, sizeof f->cls },
			      { CKA_ID, f->id, sizeof f->id } };
	CK_RV rv = ctx->f->C_GetAttributeValue(ctx->session, f->h, a, 2);

	/* these leave the readable attributes filled in (PKCS#11 v2.40
	 * s5.7, C_GetAttributeValue) */
	if (rv != CKR_OK && rv != CKR_BUFFER_TOO_SMALL && rv != CKR_ATTRIBUTE_TYPE_INVALID &&
	    rv != CKR_ATTRIBUTE_SENSITIVE)
		return p11c_ckr(ctx, "C_GetAttributeValue(CKA_CLASS, CKA_ID)", rv);
	if (a[0].ulValueLen != sizeof f->cls)
		f->cls = (CK_OBJECT_CLASS)-1; /* matches nothing below */
	f->id_len = a[1].ulValueLen;
	return P11C_OK;
}

p11c_result p11c_key_find(p11c_ctx *ctx, const char *uri, p11c_key **out)
{
	p11c_uri u;
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[3];
	CK_ULONG nt = 0, n = 0, i, npriv = 0, nfound = 0;
	CK_OBJECT_HANDLE h[KEYFIND_MAX], pub = CK_INVALID_HANDLE;
	struct found *f = NULL, *priv = NULL;
	p11c_result r;

	if (ctx == NULL || uri == NULL || out == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	r = p11c_uri_parse(ctx, uri, &u);
	if (r != P11C_OK)
		return r;
	if (u.object == NULL && !u.has_id) {
		p11c_detail(ctx, "'%.200s' does not name a key: add object=LABEL or id=", uri);
		r = P11C_ERR_URI;
		goto out;
	}
	if (u.has_class && u.cls != CKO_PRIVATE_KEY && u.cls != CKO_PUBLIC_KEY &&
	    u.cls != CKO_CERTIFICATE) {
		p11c_detail(ctx, "'%.200s' names an object type that is not a key", uri);
		r = P11C_ERR_URI;
		goto out;
	}
	r = p11c_open(ctx, uri);
	if (r != P11C_OK)
		goto out;
	r = p11c_login(ctx);
	if (r != P11C_OK)
		goto out;
	/* One search, without the class: it finds the private key, its public
	 * key (same label / id) and certificates together.  Every
	 * C_FindObjectsInit costs O(objects on the token) in SoftHSM's file
	 * store (each object file is re-checked), so this halves the cost of
	 * finding a key on a big token (docs/benchmarks.md, "Token size"). */
	if (u.object != NULL)
		t[nt++] = (CK_ATTRIBUTE){ CKA_LABEL, u.object, strlen(u.object) };
	if (u.has_id)
		t[nt++] = (CK_ATTRIBUTE){ CKA_ID, u.id, u.id_len };
	r = p11c_find(ctx, t, nt, h, KEYFIND_MAX, &n);
	if (r != P11C_OK)
		goto out;
	if (n < KEYFIND_MAX) {
		f = calloc(n > 0 ? n : 1, sizeof *f);
		if (f == NULL) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
		for (i = 0; i < n; i++) {
			f[i].h = h[i];
			r = found_read(ctx, &f[i]);
			if (r != P11C_OK)
				goto out;
			if (f[i].cls == CKO_PRIVATE_KEY) {
				npriv++;
				priv = &f[i];
			}
		}
		nfound = n;
		n = npriv;
	} else {
		/* many objects share the label (certificates kept over many
		 * renewals): search for the private keys alone */
		memmove(t + 1, t, nt * sizeof t[0]);
		t[0] = (CK_ATTRIBUTE){ CKA_CLASS, &cls, sizeof cls };
		nt++;
		r = p11c_find(ctx, t, nt, h, 8, &n);
		if (r != P11C_OK)
			goto out;
	}
	if (n == 0) {
		p11c_detail(ctx, "no private key matching '%.200s' on token '%s'", uri,
			    ctx->token_label);
		r = P11C_ERR_NOT_FOUND;
		goto out;
	}
	if (n > 1) {
		p11c_detail(ctx, "%lu private keys on token '%s' match '%.200s': add id= to pick one "
			    "(p11cert list shows the ids)", (unsigned long)n, ctx->token_label, uri);
		r = P11C_ERR_AMBIGUOUS;
		goto out;
	}
	if (priv == NULL) {
		r = p11c_key_new(ctx, h[0], out);
		goto out;
	}
	/* the public key object with the private key's CKA_ID, if the
	 * search found it; else p11c_key_new searches by CKA_ID */
	for (i = 0; i < nfound && priv->id_len <= sizeof priv->id; i++) {
		if (f[i].cls == CKO_PUBLIC_KEY && f[i].id_len == priv->id_len &&
		    memcmp(f[i].id, priv->id, priv->id_len) == 0) {
			pub = f[i].h;
			break;
		}
	}
	r = p11c_key_new_pub(ctx, priv->h, pub, out);
out:
	free(f);
	p11c_uri_clear(&u);
	return r;
}

void p11c_key_free(p11c_key **pkey)
{
	p11c_key *k;

	if (pkey == NULL || *pkey == NULL)
		return;
	k = *pkey;
	*pkey = NULL;
	EVP_PKEY_free(k->pub);
	EVP_PKEY_free(k->signer);
	free(k->label);
	free(k);
}

const char *p11c_key_label(const p11c_key *key)
{
	return key != NULL ? key->label : NULL;
}

const unsigned char *p11c_key_id(const p11c_key *key, size_t *len)
{
	if (key == NULL)
		return NULL;
	if (len != NULL)
		*len = key->id_len;
	return key->id;
}

p11c_key_type p11c_key_get_type(const p11c_key *key)
{
	return key != NULL ? key->type : 0;
}

char *p11c_key_uri(const p11c_key *key, const char *type)
{
	if (key == NULL)
		return NULL;
	return p11c_uri_format(key->ctx, key->label, key->id, key->id_len, type);
}

EVP_PKEY *p11c_key_public(p11c_key *key)
{
	return key != NULL ? key->pub : NULL;
}

const EVP_MD *p11c_key_default_md(const p11c_key *key)
{
	if (key == NULL)
		return NULL;
	switch (key->type) {
	case P11C_KEY_RSA_3072:
	case P11C_KEY_RSA_4096:
	case P11C_KEY_EC_P384:
		return EVP_sha384();
	case P11C_KEY_ED25519:
		return NULL;
	default:
		return EVP_sha256();
	}
}

p11c_result p11c_key_signer(p11c_key *key, EVP_PKEY **out)
{
	p11c_result r;

	if (key == NULL || out == NULL)
		return P11C_ERR_ARG;
	if (key->signer == NULL) {
		r = p11c_signer_new(key, &key->signer);
		if (r != P11C_OK)
			return r;
	}
	*out = key->signer;
	return P11C_OK;
}
