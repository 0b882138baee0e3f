/* Shared-token enrollment, client side (NiFi TLS toolkit client mode,
 * docs/protocols.md s2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "../http.h"

/* SAN DNS:<CN> first, then the extra names (upstream 1.24+ servers fail on
 * a CSR without SAN). */
static STACK_OF(GENERAL_NAME) *names_for(const X509_NAME *dn, const STACK_OF(GENERAL_NAME) *extra)
{
	STACK_OF(GENERAL_NAME) *all = sk_GENERAL_NAME_new_null();
	char cn[256] = "";
	int i;

	if (all == NULL)
		return NULL;
	if (X509_NAME_get_text_by_NID((X509_NAME *)(uintptr_t)dn, NID_commonName, cn, sizeof cn) > 0) {
		GENERAL_NAME *g = GENERAL_NAME_new();
		ASN1_IA5STRING *s = ASN1_IA5STRING_new();

		if (g == NULL || s == NULL || !ASN1_STRING_set(s, cn, (int)strlen(cn))) {
			GENERAL_NAME_free(g);
			ASN1_IA5STRING_free(s);
			goto fail;
		}
		GENERAL_NAME_set0_value(g, GEN_DNS, s);
		if (!sk_GENERAL_NAME_push(all, g)) {
			GENERAL_NAME_free(g);
			goto fail;
		}
	}
	for (i = 0; extra != NULL && i < sk_GENERAL_NAME_num(extra); i++) {
		GENERAL_NAME *g = GENERAL_NAME_dup(sk_GENERAL_NAME_value(extra, i));

		if (g == NULL || !sk_GENERAL_NAME_push(all, g)) {
			GENERAL_NAME_free(g);
			goto fail;
		}
	}
	return all;
fail:
	sk_GENERAL_NAME_pop_free(all, GENERAL_NAME_free);
	return NULL;
}

/*
 * The answer to the enrollment POST, checks 3 to 5 (docs/protocols.md s2):
 * status 200, the response HMAC over the TLS peer's public key, a
 * certificate signed by the peer's key and for pub.  No network: the
 * bytes, the peer's certificate and the token come from the caller.
 */
p11c_result p11c_token_answer(p11c_ctx *ctx, const char *url, long status, const unsigned char *resp,
			      size_t resp_len, const unsigned char *token, size_t token_len, X509 *peer,
			      EVP_PKEY *pub, const char *label, X509 **cert_out)
{
	char want[64], *rhmac = NULL, *rcert = NULL, *rerr = NULL;
	X509 *cert = NULL;
	p11c_result r;

	if (ctx == NULL || url == NULL || peer == NULL || cert_out == NULL)
		return P11C_ERR_ARG;
	*cert_out = NULL;
	/* check 3: status 200 */
	if (status != 200) {
		if (p11c_token_response_parse((const char *)resp, resp_len, &rhmac, &rcert, &rerr) == P11C_OK &&
		    rerr != NULL)
			p11c_detail(ctx, "the CA at %s answered %ld: %s", url, status, rerr);
		else
			p11c_detail(ctx, "the CA at %s answered %ld", url, status);
		r = status == 403 ? P11C_ERR_REJECTED : P11C_ERR_PROTOCOL;
		goto out;
	}
	r = p11c_token_response_parse((const char *)resp, resp_len, &rhmac, &rcert, &rerr);
	if (r != P11C_OK || rhmac == NULL || rcert == NULL) {
		p11c_detail(ctx, "the CA at %s sent a 200 without hmac and pemEncodedCertificate", url);
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	/* check 4: the response HMAC is over the public key of the peer we
	 * talked to; anyone without the token cannot make it */
	r = p11c_token_hmac(token, token_len, X509_get0_pubkey(peer), want, sizeof want);
	if (r != P11C_OK)
		goto out;
	if (!p11c_token_hmac_eq(rhmac, want)) {
		p11c_detail(ctx, "the response HMAC does not match the TLS peer's key: possible man in "
			    "the middle at %s; nothing stored", url);
		/* the peer failed authentication: a TLS failure (exit 76 in
		 * docs/enroll.md), not a certificate that fails our checks */
		r = P11C_ERR_TLS;
		goto out;
	}
	/* check 5: the certificate is signed by the peer's key */
	if (p11c_x509_parse((const unsigned char *)rcert, strlen(rcert), &cert) != P11C_OK) {
		p11c_detail(ctx, "pemEncodedCertificate is not a PEM certificate");
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	if (X509_verify(cert, X509_get0_pubkey(peer)) != 1) {
		ERR_clear_error();
		p11c_detail(ctx, "the certificate is not signed by the CA we talked to; nothing stored");
		r = P11C_ERR_VERIFY;
		goto out;
	}
	/* and ours: it is for the token key */
	if (!p11c_cert_matches(cert, pub)) {
		p11c_detail(ctx, "the certificate is for another public key than the token key '%s'",
			    label ? label : "");
		r = P11C_ERR_VERIFY;
		goto out;
	}
	*cert_out = cert;
	cert = NULL;
	r = P11C_OK;
out:
	OPENSSL_cleanse(want, sizeof want);
	free(rhmac);
	free(rcert);
	free(rerr);
	X509_free(cert);
	return r;
}

p11c_result p11c_token_enroll(p11c_ctx *ctx, p11c_key *key, const p11c_token_enroll_opts *o, X509 **cert_out,
			      X509 **ca_out)
{
	STACK_OF(GENERAL_NAME) *sans = NULL;
	X509_REQ *req = NULL;
	X509 *cert = NULL;
	struct p11c_http h;
	char hmac[64], url[512], *pem = NULL, *body = NULL;
	size_t len = 0;
	p11c_result r;

	memset(&h, 0, sizeof h);
	if (ctx == NULL || key == NULL || o == NULL || o->ca_host == NULL || o->dn == NULL ||
	    cert_out == NULL || ca_out == NULL)
		return P11C_ERR_ARG;
	if (o->token == NULL || o->token_len < P11C_TOKEN_MIN) {
		p11c_detail(ctx, "the shared token must be at least %d bytes", P11C_TOKEN_MIN);
		return P11C_ERR_ARG;
	}
	sans = names_for(o->dn, o->sans);
	if (sans == NULL)
		return P11C_ERR_NOMEM;
	r = p11c_csr_create(key, o->dn, sans, NULL, &req);
	if (r != P11C_OK)
		goto out;
	r = p11c_caramel_csr_pem(req, &pem, &len);
	if (r != P11C_OK)
		goto out;
	/* request HMAC over the CSR's (the token key's) public key */
	r = p11c_token_hmac(o->token, o->token_len, p11c_key_public(key), hmac, sizeof hmac);
	if (r != P11C_OK)
		goto out;
	body = p11c_token_request_json(hmac, pem);
	if (body == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	snprintf(url, sizeof url, "https://%s:%d/", o->ca_host, o->port > 0 ? o->port : 9443);
	h.url = url;
	h.method = "POST";
	h.content_type = "application/json";
	h.body = body;
	h.body_len = strlen(body);
	h.bootstrap = 1;           /* checks 1 and 2 happen in the handshake */
	h.expect_cn = o->ca_host;
	h.timeout_ms = o->timeout_ms;
	r = p11c_http_do(ctx, &h);
	if (r != P11C_OK)
		goto out;
	if (h.peer_cert == NULL) {
		p11c_detail(ctx, "no certificate from the TLS peer %s", url);
		r = P11C_ERR_TLS;
		goto out;
	}
	r = p11c_token_answer(ctx, url, h.status, h.resp, h.resp_len, o->token, o->token_len, h.peer_cert,
			      p11c_key_public(key), p11c_key_label(key), &cert);
	if (r != P11C_OK)
		goto out;
	*cert_out = cert;
	*ca_out = h.peer_cert;
	cert = NULL;
	h.peer_cert = NULL;
	r = P11C_OK;
out:
	OPENSSL_cleanse(hmac, sizeof hmac);
	p11c_http_clear(&h);
	free(body);
	free(pem);
	X509_free(cert);
	X509_REQ_free(req);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	return r;
}
