/* POST /renew on the shared-token listener: a holder of a valid, unrevoked
 * certificate of this CA renews it, or moves it to a new key, without the
 * shared token (p11ca's own endpoint; upstream NiFi toolkit servers have
 * none, docs/ca.md).  Authentication is the TLS client certificate
 * (verified by httpd against the CA); the CSR proves possession of the
 * (possibly new) key; its subject is the client certificate's in the
 * order written (RDNs reversed, as enroll token sends it) and is issued,
 * like the token endpoint's, with the RDNs reversed back: the renewed
 * subject is the current one byte for byte. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/pem.h>

#include "request.h"

static void reply(httpd_req *r, int status, const char *cert, const char *error)
{
	char *body = p11c_token_response_json(NULL, cert, error);

	httpd_req_note(r, "token-renew", error != NULL ? error : "renewed over mTLS");
	httpd_reply(r, status, "application/json", NULL, body, body ? strlen(body) : 0);
	free(body);
}

void token_renew_handle(const struct ca_request *rq)
{
	httpd_req *r = rq->r;
	const unsigned char *body;
	size_t len;
	const char *csr;
	char err[256], *cert = NULL;
	json_t *j = NULL;
	json_error_t je;
	X509 *peer = httpd_req_peer_cert(r);
	X509_REQ *req = NULL;
	X509_NAME *rev = NULL;
	BIO *b = NULL;
	EVP_PKEY *pk;
	struct store_request q;
	int rc;

	memset(&q, 0, sizeof q);
	httpd_req_note(r, "token-renew", NULL);
	if (rq->token == NULL) {
		reply(r, 404, NULL, "shared-token enrollment is not enabled");
		goto out;
	}
	if (strcmp(httpd_req_method(r), "POST") != 0) {
		reply(r, 405, NULL, "POST a {\"csr\": PEM} body");
		goto out;
	}
	/* ca_peer_current reads the store: a 403 only when it answered */
	if (reply_store_down(rq, 1))
		goto out;
	if (peer == NULL || !ca_peer_current(rq->ca, peer)) {
		if (peer != NULL && reply_store_down(rq, 1))
			goto out;
		reply(r, 403, NULL, "renewal needs a valid, unrevoked certificate of this CA as TLS client "
				    "certificate");
		goto out;
	}
	/* httpd bounds the body (SERVE_MAX_BODY, request.h) */
	body = httpd_req_body(r, &len);
	j = json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES, &je);
	csr = j != NULL && json_is_object(j) && json_object_size(j) == 1 ?
		      json_string_value(json_object_get(j, "csr")) : NULL;
	if (csr == NULL) {
		reply(r, 400, NULL, "the body must be {\"csr\": \"<PEM CSR>\"}");
		goto out;
	}
	b = BIO_new_mem_buf(csr, -1);
	req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	pk = req ? X509_REQ_get0_pubkey(req) : NULL;
	if (pk == NULL) {
		reply(r, 400, NULL, "csr is not a PEM certificate request");
		goto out;
	}
	if (X509_REQ_verify(req, pk) != 1) {
		reply(r, 400, NULL, "csr signature does not verify");
		goto out;
	}
	/* the policy of every endpoint: key, signature hash, DN */
	if (!ca_csr_ok(req, err, sizeof err)) {
		reply(r, 400, NULL, err);
		goto out;
	}
	/* the token endpoint's rule (docs/ca.md): the CSR carries the RDNs in
	 * the order written and the CA reverses them, as the NiFi server does;
	 * so the renewed certificate keeps the current subject byte for byte */
	if (p11c_name_reverse(X509_REQ_get_subject_name(req), &rev) != P11C_OK ||
	    !p11c_name_der_equal(rev, X509_get_subject_name(peer))) {
		reply(r, 403, NULL, "the csr subject must be the client certificate's subject, in the order "
				    "written (its RDNs reversed, as for the token endpoint)");
		goto out;
	}
	/* names as the token endpoint checks them */
	if (!ca_sans_policy(rq->ca, req, 0, err, sizeof err)) {
		reply(r, 403, NULL, err);
		goto out;
	}
	/* the request and its certificate in one transaction (ca.h) */
	rc = ca_enroll_now(rq->ca, csr, strlen(csr), req, "token", LIFETIME_SHORT, PROFILE_TOKEN, &q, &cert,
			   time(NULL));
	if (rc != 0) {
		if (rc > 0 || !reply_store_down(rq, 1))
			reply(r, rc > 0 ? 403 : 500, NULL,
			      rc == 3 ? "request rejected" : rc == 2 ? "key revoked" : "signing failed");
		goto out;
	}
	reply(r, 200, cert, NULL);
out:
	store_request_clear(&q);
	free(cert);
	json_decref(j);
	X509_REQ_free(req);
	X509_NAME_free(rev);
	BIO_free(b);
}
