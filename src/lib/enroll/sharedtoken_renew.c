/* Renewal of a shared-token identity without the shared token: p11ca's
 * POST /renew over mutual TLS with the current certificate (docs/ca.md,
 * docs/enroll.md).  Upstream NiFi toolkit servers have no such endpoint:
 * they ignore method and path and answer 400 "hmac field must be set"
 * (docs/protocols.md s2), which is reported as such. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "../http.h"
#include "protocol.h"

/* The answer: 200 with a certificate signed by the CA, for pub, with the
 * current subject. */
static p11c_result renew_answer(p11c_ctx *ctx, const char *url, const struct p11c_http *h, X509 *ca, EVP_PKEY *pub,
				X509 *current, X509 **cert_out)
{
	char *rhmac = NULL, *rcert = NULL, *rerr = NULL;
	X509 *cert = NULL;
	p11c_result r, pr = p11c_token_response_parse((const char *)h->resp, h->resp_len, &rhmac, &rcert, &rerr);

	if (h->status != 200) {
		if (h->status == 400 && rerr != NULL && strstr(rerr, "hmac field must be set") != NULL) {
			p11c_detail(ctx, "the CA at %s has no renewal over mutual TLS (it answered 400 '%s', as "
				    "upstream NiFi toolkit servers do): renew with the shared token", url, rerr);
			r = P11C_ERR_PROTOCOL;
		} else if (h->status == 404) {
			p11c_detail(ctx, "the CA at %s answered 404%s%s: no renewal over mutual TLS there", url,
				    rerr ? ": " : "", rerr ? rerr : "");
			r = P11C_ERR_PROTOCOL;
		} else {
			p11c_detail(ctx, "the CA at %s answered %ld%s%s", url, h->status, rerr ? ": " : "",
				    rerr ? rerr : "");
			r = h->status == 403 ? P11C_ERR_REJECTED : P11C_ERR_PROTOCOL;
		}
		goto out;
	}
	if (pr != P11C_OK || rcert == NULL ||
	    p11c_x509_parse((const unsigned char *)rcert, strlen(rcert), &cert) != P11C_OK) {
		p11c_detail(ctx, "the CA at %s sent a 200 without a PEM pemEncodedCertificate", url);
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	if (X509_verify(cert, X509_get0_pubkey(ca)) != 1) {
		ERR_clear_error();
		p11c_detail(ctx, "the renewed certificate is not signed by the CA; nothing stored");
		r = P11C_ERR_VERIFY;
		goto out;
	}
	if (!p11c_cert_matches(cert, pub)) {
		p11c_detail(ctx, "the renewed certificate is for another public key; nothing stored");
		r = P11C_ERR_VERIFY;
		goto out;
	}
	if (!p11c_name_der_equal(X509_get_subject_name(cert), X509_get_subject_name(current))) {
		p11c_detail(ctx, "the renewed certificate's subject differs from the current one; nothing stored");
		r = P11C_ERR_VERIFY;
		goto out;
	}
	*cert_out = cert;
	cert = NULL;
	r = P11C_OK;
out:
	free(rhmac);
	free(rcert);
	free(rerr);
	X509_free(cert);
	return r;
}

p11c_result p11c_token_renew(p11c_ctx *ctx, p11c_key *key, p11c_key *current, X509 *current_cert,
			     const p11c_token_renew_opts *o, X509 **cert_out)
{
	STACK_OF(GENERAL_NAME) *sans = NULL;
	X509_REQ *req = NULL;
	X509_NAME *written = NULL;
	X509 *ca = NULL;
	EVP_PKEY *signer = NULL;
	struct p11c_http h;
	json_t *j = NULL;
	char url[512], *pem = NULL, *body = NULL;
	size_t len = 0;
	unsigned char *cab = NULL;
	size_t cal = 0;
	p11c_result r;

	memset(&h, 0, sizeof h);
	if (ctx == NULL || key == NULL || current == NULL || current_cert == NULL || o == NULL ||
	    o->ca_host == NULL || o->ca_file == NULL || cert_out == NULL)
		return P11C_ERR_ARG;
	*cert_out = NULL;
	if ((r = p11c_file_read(o->ca_file, 1024 * 1024, &cab, &cal)) != P11C_OK ||
	    (r = p11c_x509_parse(cab, cal, &ca)) != P11C_OK) {
		p11c_detail(ctx, "cannot read the CA certificate %s", o->ca_file);
		goto out;
	}
	/* the current subject and names: the subject in the order written,
	 * as enroll token sends it (the CA reverses the RDNs back, like the
	 * NiFi server; docs/enroll.md) */
	sans = X509_get_ext_d2i(current_cert, NID_subject_alt_name, NULL, NULL);
	if ((r = p11c_name_reverse(X509_get_subject_name(current_cert), &written)) != P11C_OK)
		goto out;
	r = p11c_csr_create(key, written, sans, NULL, &req);
	if (r != P11C_OK)
		goto out;
	if ((r = p11c_caramel_csr_pem(req, &pem, &len)) != P11C_OK)
		goto out;
	j = json_pack("{s:s}", "csr", pem);
	body = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
	if (body == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	if ((r = p11c_key_signer(current, &signer)) != P11C_OK)
		goto out;
	snprintf(url, sizeof url, "https://%s:%d/renew", o->ca_host, o->port > 0 ? o->port : 9443);
	h.url = url;
	h.method = "POST";
	h.content_type = "application/json";
	h.body = body;
	h.body_len = strlen(body);
	h.ca_file = o->ca_file; /* verified TLS: the CA certificate is the server's */
	h.client_key = signer;
	h.client_cert = current_cert;
	h.timeout_ms = o->timeout_ms;
	if ((r = p11c_http_do(ctx, &h)) != P11C_OK)
		goto out;
	r = renew_answer(ctx, url, &h, ca, p11c_key_public(key), current_cert, cert_out);
out:
	p11c_http_clear(&h);
	json_decref(j);
	free(body);
	free(pem);
	free(cab);
	X509_free(ca);
	X509_REQ_free(req);
	X509_NAME_free(written);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	return r;
}

/* --- the protocol table (protocol.h) -------------------------------------- */

/* The table's renewal of a shared-token identity: p11c_token_renew above
 * (p11ca's POST /renew over mTLS; the CSR is made here from the current
 * certificate's names).  Renewal with the shared token itself is
 * p11c_token_enroll (sharedtoken.c), which the CLI calls while the token
 * file is there. */
static p11c_result sharedtoken_renew(p11c_ctx *ctx, struct p11c_renewal *rn)
{
	p11c_token_renew_opts o;
	p11c_result r;

	memset(&o, 0, sizeof o);
	o.ca_host = rn->server;
	o.port = rn->port;
	o.ca_file = rn->ca_file;
	o.timeout_ms = rn->timeout_ms;
	r = p11c_token_renew(ctx, rn->key, rn->current, rn->current_cert, &o, &rn->cert);
	if (r == P11C_OK) {
		rn->state = P11C_RENEWAL_ISSUED;
		rn->checked = 1;
	}
	return r;
}

const struct p11c_protocol p11c_proto_sharedtoken = {
	"token",
	"shared token (NiFi TLS toolkit; docs/protocols.md s2), renewal at p11ca's POST /renew",
	0,
	sharedtoken_renew,
};

