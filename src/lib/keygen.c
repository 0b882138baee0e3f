/* Key pair generation inside the token, by direct PKCS#11 calls. */
#include <stdlib.h>
#include <string.h>

#include <openssl/rand.h>

#include "internal.h"
#include "testhook.h"

/* DER OIDs for CKA_EC_PARAMS (PKCS#11 v2.40 s2.3.3: namedCurve) */
static const unsigned char OID_P256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07 };
static const unsigned char OID_P384[] = { 0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22 };
/* RFC 8410 id-Ed25519; PKCS#11 v3.0 s2.3.10 also allows the curve name */
static const unsigned char OID_ED25519[] = { 0x06, 0x03, 0x2b, 0x65, 0x70 };
static const unsigned char STR_ED25519[] = { 0x13, 0x0c, 'e', 'd', 'w', 'a', 'r', 'd', 's',
					     '2', '5', '5', '1', '9' };

static p11c_result check_mechanism(p11c_ctx *ctx, CK_MECHANISM_TYPE mech, const char *mname,
				   p11c_key_type type, CK_ULONG bits)
{
	CK_MECHANISM_INFO mi;
	CK_RV rv;

	rv = ctx->f->C_GetMechanismInfo(ctx->slot_id, mech, &mi);
	if (rv == CKR_MECHANISM_INVALID || (rv == CKR_OK && !(mi.flags & CKF_GENERATE_KEY_PAIR))) {
		p11c_detail(ctx, "token '%s' (%s) cannot generate %s keys: no %s", ctx->token_label,
			    ctx->module_desc, p11c_key_type_name(type), mname);
		return P11C_ERR_MECHANISM;
	}
	if (rv != CKR_OK)
		return p11c_ckr(ctx, "C_GetMechanismInfo", rv);
	if (bits != 0 && mi.ulMaxKeySize != 0 && (bits < mi.ulMinKeySize || bits > mi.ulMaxKeySize)) {
		p11c_detail(ctx, "token '%s' generates RSA keys of %lu to %lu bits, not %lu",
			    ctx->token_label, (unsigned long)mi.ulMinKeySize,
			    (unsigned long)mi.ulMaxKeySize, (unsigned long)bits);
		return P11C_ERR_MECHANISM;
	}
	return P11C_OK;
}

static p11c_result label_free(p11c_ctx *ctx, const char *label)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE t[2] = { { CKA_CLASS, &cls, sizeof cls },
			      { CKA_LABEL, (void *)(uintptr_t)label, strlen(label) } };
	CK_OBJECT_HANDLE h[2];
	CK_ULONG n = 0;
	unsigned char *id = NULL;
	CK_ULONG idlen = 0;
	char *uri;
	p11c_result r;

	r = p11c_find(ctx, t, 2, h, 2, &n);
	if (r != P11C_OK || n == 0)
		return r;
	(void)p11c_attr(ctx, h[0], CKA_ID, &id, &idlen);
	uri = p11c_uri_format(ctx, label, id, idlen, "private");
	p11c_detail(ctx, "a private key labelled '%s' exists on token '%s': %s (use --force to "
		    "create another, or p11cert delete to remove it)", label, ctx->token_label,
		    uri ? uri : "");
	free(uri);
	free(id);
	return P11C_ERR_EXISTS;
}

p11c_result p11c_keygen(p11c_ctx *ctx, const char *uri, p11c_key_type type, unsigned flags,
			p11c_key **out)
{
	p11c_uri u;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE;
	CK_ULONG bits = 0;
	CK_BYTE exponent[] = { 0x01, 0x00, 0x01 };
	CK_MECHANISM mech = { 0, NULL, 0 };
	CK_KEY_TYPE kt;
	const unsigned char *params = NULL;
	size_t params_len = 0;
	unsigned char id[P11C_ID_MAX];
	size_t id_len;
	CK_ATTRIBUTE pub[10], priv[10];
	CK_ULONG np = 0, nk = 0;
	CK_OBJECT_HANDLE hpub = CK_INVALID_HANDLE, hpriv = CK_INVALID_HANDLE;
	EVP_PKEY *pk = NULL;
	p11c_key *key = NULL;
	CK_RV rv;
	p11c_result r;

	if (ctx == NULL || uri == NULL || out == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	r = p11c_uri_parse(ctx, uri, &u);
	if (r != P11C_OK)
		return r;
	if (u.object == NULL) {
		p11c_detail(ctx, "'%.200s' has no object=LABEL: name the key to create", uri);
		r = P11C_ERR_URI;
		goto out;
	}
	r = p11c_open(ctx, uri);
	if (r == P11C_OK)
		r = p11c_login(ctx);
	if (r != P11C_OK)
		goto out;

	switch (type) {
	case P11C_KEY_RSA_2048:
	case P11C_KEY_RSA_3072:
	case P11C_KEY_RSA_4096:
		bits = type == P11C_KEY_RSA_2048 ? 2048 : type == P11C_KEY_RSA_3072 ? 3072 : 4096;
		mech.mechanism = CKM_RSA_PKCS_KEY_PAIR_GEN;
		kt = CKK_RSA;
		r = check_mechanism(ctx, mech.mechanism, "CKM_RSA_PKCS_KEY_PAIR_GEN", type, bits);
		break;
	case P11C_KEY_EC_P256:
	case P11C_KEY_EC_P384:
		mech.mechanism = CKM_EC_KEY_PAIR_GEN;
		kt = CKK_EC;
		params = type == P11C_KEY_EC_P256 ? OID_P256 : OID_P384;
		params_len = type == P11C_KEY_EC_P256 ? sizeof OID_P256 : sizeof OID_P384;
		r = check_mechanism(ctx, mech.mechanism, "CKM_EC_KEY_PAIR_GEN", type, 0);
		break;
	case P11C_KEY_ED25519:
		/* the signer (signer.c) cannot sign with EdDSA keys: refuse to
		 * make a key p11cert could not use */
		if (!(flags & P11C_KEYGEN_ALLOW_EDDSA)) {
			p11c_detail(ctx, "Ed25519 keys are not supported: p11cert's signer cannot sign "
				    "with them; use ec:P-256");
			r = P11C_ERR_MECHANISM;
			break;
		}
		mech.mechanism = CKM_EC_EDWARDS_KEY_PAIR_GEN;
		kt = CKK_EC_EDWARDS;
		params = OID_ED25519;
		params_len = sizeof OID_ED25519;
		r = check_mechanism(ctx, mech.mechanism, "CKM_EC_EDWARDS_KEY_PAIR_GEN", type, 0);
		break;
	default:
		p11c_detail(ctx, "unknown key type %d", (int)type);
		r = P11C_ERR_ARG;
		break;
	}
	if (r != P11C_OK)
		goto out;
	if (!(flags & P11C_KEYGEN_FORCE)) {
		r = label_free(ctx, u.object);
		if (r != P11C_OK)
			goto out;
	}
	/* A temporary random CKA_ID; replaced by the key identifier once the
	 * public key is known (unless the URI gave one). */
	if (u.has_id) {
		memcpy(id, u.id, u.id_len);
		id_len = u.id_len;
	} else {
		id_len = 20;
		if (RAND_bytes(id, (int)id_len) != 1) {
			r = p11c_ossl(ctx, "random CKA_ID");
			goto out;
		}
	}

	pub[np++] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof yes };
	pub[np++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &no, sizeof no };
	pub[np++] = (CK_ATTRIBUTE){ CKA_VERIFY, &yes, sizeof yes };
	pub[np++] = (CK_ATTRIBUTE){ CKA_LABEL, u.object, strlen(u.object) };
	pub[np++] = (CK_ATTRIBUTE){ CKA_ID, id, id_len };
	pub[np++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kt, sizeof kt };
	if (bits != 0) {
		pub[np++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof bits };
		pub[np++] = (CK_ATTRIBUTE){ CKA_PUBLIC_EXPONENT, exponent, sizeof exponent };
	} else {
		pub[np++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, (void *)(uintptr_t)params, params_len };
	}
	priv[nk++] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof yes };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &yes, sizeof yes };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &yes, sizeof yes };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &no, sizeof no };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_SIGN, &yes, sizeof yes };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_LABEL, u.object, strlen(u.object) };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_ID, id, id_len };
	priv[nk++] = (CK_ATTRIBUTE){ CKA_KEY_TYPE, &kt, sizeof kt };

	rv = ctx->f->C_GenerateKeyPair(ctx->session, &mech, pub, np, priv, nk, &hpub, &hpriv);
	if (rv == CKR_DOMAIN_PARAMS_INVALID && type == P11C_KEY_ED25519) {
		/* older modules want the curve name, not the OID */
		pub[np - 1].pValue = (void *)(uintptr_t)STR_ED25519;
		pub[np - 1].ulValueLen = sizeof STR_ED25519;
		rv = ctx->f->C_GenerateKeyPair(ctx->session, &mech, pub, np, priv, nk, &hpub, &hpriv);
	}
	if (rv != CKR_OK) {
		hpub = hpriv = CK_INVALID_HANDLE;
		r = p11c_ckr(ctx, "C_GenerateKeyPair", rv);
		goto out;
	}
	p11c_test_stall("keygen-generated");
	if (!u.has_id) {
		/* CKA_ID := RFC 5280 s4.2.1.2 (1) key identifier, so that a
		 * certificate's SKI names its token key */
		CK_ATTRIBUTE a = { CKA_ID, id, 20 };

		r = p11c_pubkey_from_object(ctx, hpub, &pk, NULL);
		if (r != P11C_OK)
			goto out;
		r = p11c_pubkey_keyid(pk, id);
		if (r != P11C_OK) {
			r = p11c_ossl(ctx, "key identifier");
			goto out;
		}
		/* private key first: a crash between the two leaves the
		 * public key with the random id, and p11c_pubkey_for_id finds
		 * it by label and key identifier (and repairs its id) */
		rv = ctx->f->C_SetAttributeValue(ctx->session, hpriv, &a, 1);
		if (rv == CKR_OK) {
			p11c_test_stall("keygen-id-half");
			rv = ctx->f->C_SetAttributeValue(ctx->session, hpub, &a, 1);
		}
		if (rv != CKR_OK) {
			r = p11c_ckr(ctx, "C_SetAttributeValue(CKA_ID)", rv);
			goto out;
		}
	}
	r = p11c_key_new_pub(ctx, hpriv, hpub, &key); /* no search for hpub */
	if (r != P11C_OK)
		goto out;
	*out = key;
	hpub = hpriv = CK_INVALID_HANDLE; /* keep them */
out:
	/* never leave half a key pair behind */
	if (hpriv != CK_INVALID_HANDLE)
		(void)ctx->f->C_DestroyObject(ctx->session, hpriv);
	if (hpub != CK_INVALID_HANDLE)
		(void)ctx->f->C_DestroyObject(ctx->session, hpub);
	EVP_PKEY_free(pk);
	p11c_uri_clear(&u);
	return r;
}
