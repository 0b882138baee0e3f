/* PKCS#10 requests built by OpenSSL and signed by the token (RFC 2986). */
#include <string.h>

#include "internal.h"

#include <openssl/x509v3.h>

p11c_result p11c_csr_create(p11c_key *key, const X509_NAME *subject,
			    const STACK_OF(GENERAL_NAME) *sans, const EVP_MD *md, X509_REQ **out)
{
	return p11c_csr_build(key, subject, sans, NULL, md, NULL, out);
}

p11c_result p11c_csr_build(p11c_key *key, const X509_NAME *subject, const STACK_OF(GENERAL_NAME) *sans,
			   const STACK_OF(X509_EXTENSION) *extra, const EVP_MD *md, const char *challenge,
			   X509_REQ **out)
{
	p11c_ctx *ctx;
	X509_REQ *req = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	X509_EXTENSION *ext = NULL;
	EVP_PKEY *signer = NULL;
	p11c_result r;
	int i;

	if (key == NULL || subject == NULL || out == NULL)
		return P11C_ERR_ARG;
	ctx = key->ctx;
	*out = NULL;
	if (md == NULL)
		md = p11c_key_default_md(key);
	req = X509_REQ_new();
	if (req == NULL)
		return P11C_ERR_NOMEM;
	if (!X509_REQ_set_version(req, 0) || /* v1, the only version (RFC 2986 s4.1) */
	    !X509_REQ_set_subject_name(req, subject) || !X509_REQ_set_pubkey(req, key->pub)) {
		r = p11c_ossl(ctx, "build CSR");
		goto out;
	}
	/* RFC 2985 s5.4.2 extensionRequest: subjectAltName, then extra */
	if ((exts = sk_X509_EXTENSION_new_null()) == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	if (sans != NULL && sk_GENERAL_NAME_num(sans) > 0) {
		ext = X509V3_EXT_i2d(NID_subject_alt_name, 0, (void *)(uintptr_t)sans);
		if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
			r = p11c_ossl(ctx, "encode subjectAltName");
			goto out;
		}
		ext = NULL;
	}
	for (i = 0; extra != NULL && i < sk_X509_EXTENSION_num(extra); i++) {
		ext = X509_EXTENSION_dup(sk_X509_EXTENSION_value(extra, i));
		if (ext == NULL || !sk_X509_EXTENSION_push(exts, ext)) {
			r = p11c_ossl(ctx, "copy an extension into the CSR");
			goto out;
		}
		ext = NULL;
	}
	if (sk_X509_EXTENSION_num(exts) > 0) {
		if (!X509_REQ_add_extensions(req, exts)) {
			r = p11c_ossl(ctx, "add extensionRequest");
			goto out;
		}
	}
	/* RFC 2985 s5.4.1 challengePassword (EST channel binding, RFC 7030
	 * s3.5: base64, so a PrintableString) */
	if (challenge != NULL &&
	    !X509_REQ_add1_attr_by_NID(req, NID_pkcs9_challengePassword, MBSTRING_ASC,
				       (const unsigned char *)challenge, (int)strlen(challenge))) {
		r = p11c_ossl(ctx, "add challengePassword");
		goto out;
	}
	r = p11c_key_signer(key, &signer);
	if (r != P11C_OK)
		goto out;
	if (X509_REQ_sign(req, signer, md) <= 0) {
		r = p11c_ossl(ctx, "token signature of the CSR failed");
		goto out;
	}
	/* the token signed with the key we think it did */
	if (X509_REQ_verify(req, key->pub) != 1) {
		r = p11c_ossl(ctx, "CSR signature from the token does not verify");
		goto out;
	}
	*out = req;
	req = NULL;
	r = P11C_OK;
out:
	X509_EXTENSION_free(ext);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	X509_REQ_free(req);
	return r;
}
