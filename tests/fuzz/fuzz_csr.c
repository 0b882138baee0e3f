/*
 * fuzz_csr: a certificate request as p11ca and the CLI read one: PEM or DER
 * (p11c_req_parse), then the checks p11ca's handlers make (canonical
 * Caramel PEM, signature, key policy ca_key_ok, Caramel subject rule
 * against the fixture CA, CN, SAN policy ca_sans_ok / ca_sans_policy, the
 * request policy ca_csr_ok / ca_subject_ok, autosign's ca_sans_only_cn,
 * the shared-token DN suffix ca_dn_suffix_ok) and the CLI's
 * descriptions of it (show.c, text and JSON).  Input: the CSR bytes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "ca.h"
#include "fixtures.h"
#include "fuzz.h"
#include "show.h"

static X509 *ca_cert;
static struct ca policy;	/* only cfg.san_patterns is read */

static void setup(void)
{
	BIO *b = BIO_new_mem_buf(fixture_ca_crt, -1);

	ca_cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (ca_cert == NULL)
		abort();
	ca_config_defaults(&policy.cfg);
	policy.cfg.san_patterns = strdup("DNS:*.example.com, IP:192.0.2.*, email:*@example.com");
	if (policy.cfg.san_patterns == NULL)
		abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	X509_REQ *req = NULL;
	EVP_PKEY *pk;
	char err[256], cn[256], *canon = NULL, *text = NULL, *js = NULL;
	size_t clen = 0;
	json_t *j = NULL;

	if (ca_cert == NULL)
		setup();
	if (p11c_req_parse(data, size, &req) != P11C_OK)
		goto out;
	/* caramel.c: the body must be the canonical PEM of what it parsed */
	if (p11c_caramel_csr_pem(req, &canon, &clen) == P11C_OK && canon[clen] != '\0')
		abort();
	pk = X509_REQ_get0_pubkey(req);
	if (pk != NULL) {
		(void)X509_REQ_verify(req, pk);
		(void)ca_key_ok(pk, err, sizeof err);
	}
	(void)p11c_caramel_subject_ok(X509_get_subject_name(ca_cert), X509_REQ_get_subject_name(req), err,
				      sizeof err);
	(void)ca_name_entry(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn);
	(void)ca_sans_ok(&policy, req, err, sizeof err);
	(void)ca_sans_policy(&policy, req, 0, err, sizeof err);
	(void)ca_sans_only_cn(req);
	(void)ca_csr_ok(req, err, sizeof err);
	(void)ca_subject_ok(X509_REQ_get_subject_name(req), err, sizeof err);
	if (ca_dn_suffix_ok("CN=a, OU=NIFI", X509_REQ_get_subject_name(req)) < 0 ||
	    ca_dn_suffix_ok("OU=x\\,OU=NIFI", X509_REQ_get_subject_name(req)) < 0)
		abort(); /* the fixed suffixes parse */
	/* p11cert show */
	text = p11c_req_text(req);
	j = p11c_req_json(req);
	js = j != NULL ? json_dumps(j, JSON_COMPACT) : NULL;
out:
	free(js);
	json_decref(j);
	free(text);
	free(canon);
	X509_REQ_free(req);
	ERR_clear_error();
	return 0;
}
