/* Caramel client (docs/protocols.md s1 and s3). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/pem.h>
#include <openssl/rand.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "../http.h"
#include "../testhook.h"
#include "protocol.h"

static void base_url(const p11c_caramel_server *srv, const char *path, char *buf, size_t len)
{
	snprintf(buf, len, "https://%s/%s", srv->server, path);
}

static void user_agent(const p11c_caramel_server *srv, char *buf, size_t len)
{
	if (srv->client_id != NULL)
		snprintf(buf, len, "p11cert/%s (%.64s)", P11CERT_VERSION, srv->client_id);
	else
		snprintf(buf, len, "p11cert/%s", P11CERT_VERSION);
}

static void setup(struct p11c_http *h, const p11c_caramel_server *srv, const char *url, const char *ua)
{
	memset(h, 0, sizeof *h);
	h->url = url;
	h->ca_file = srv->ca_file;
	h->ca_pem = srv->ca_pem;
	h->user_agent = ua;
	h->timeout_ms = srv->timeout_ms;
}

/* "the server said 400: detail" from a problem+json answer, else the
 * first 200 bytes of the answer (up to a NUL). */
p11c_result p11c_caramel_unexpected(p11c_ctx *ctx, long status, const unsigned char *resp, size_t len,
				    const char *what)
{
	char *title = NULL, *detail = NULL;

	if (p11c_problem_parse((const char *)resp, len, &title, &detail) == P11C_OK &&
	    (title != NULL || detail != NULL))
		p11c_detail(ctx, "%s: the CA answered %ld %s%s%s", what, status, title ? title : "",
			    detail ? ": " : "", detail ? detail : "");
	else
		p11c_detail(ctx, "%s: the CA answered %ld%s%.*s", what, status, len ? ": " : "",
			    (int)(len < 200 ? len : 200), len ? (const char *)resp : "");
	free(title);
	free(detail);
	return P11C_ERR_PROTOCOL;
}

static p11c_result unexpected(p11c_ctx *ctx, struct p11c_http *h, const char *what)
{
	return p11c_caramel_unexpected(ctx, h->status, h->resp, h->resp_len, what);
}

p11c_result p11c_caramel_ca_answer(p11c_ctx *ctx, const char *url, long status, const unsigned char *resp,
				   size_t len, X509 **ca)
{
	if (status != 200)
		return p11c_caramel_unexpected(ctx, status, resp, len, "GET /root.crt");
	if (p11c_x509_parse(resp, len, ca) != P11C_OK) {
		p11c_detail(ctx, "GET %s: the answer is not a PEM certificate", url);
		return P11C_ERR_PROTOCOL;
	}
	return P11C_OK;
}

p11c_result p11c_caramel_fetch_ca(p11c_ctx *ctx, const p11c_caramel_server *srv, X509 **ca)
{
	struct p11c_http h;
	char url[512], ua[128];
	p11c_result r;

	if (ctx == NULL || srv == NULL || srv->server == NULL || ca == NULL)
		return P11C_ERR_ARG;
	base_url(srv, "root.crt", url, sizeof url);
	user_agent(srv, ua, sizeof ua);
	setup(&h, srv, url, ua);
	r = p11c_http_do(ctx, &h);
	if (r == P11C_OK)
		r = p11c_caramel_ca_answer(ctx, url, h.status, h.resp, h.resp_len, ca);
	p11c_http_clear(&h);
	return r;
}

p11c_result p11c_caramel_csr(p11c_key *key, X509 *ca, const char *client_id, char **pem, size_t *len)
{
	X509_NAME *subj = NULL;
	X509_REQ *req = NULL;
	p11c_result r;

	if (key == NULL || ca == NULL || client_id == NULL || pem == NULL || len == NULL)
		return P11C_ERR_ARG;
	subj = p11c_caramel_subject(X509_get_subject_name(ca), client_id);
	if (subj == NULL)
		return P11C_ERR_ARG; /* empty or over 64 characters */
	r = p11c_csr_create(key, subj, NULL, NULL, &req);
	if (r == P11C_OK)
		r = p11c_caramel_csr_pem(req, pem, len);
	X509_REQ_free(req);
	X509_NAME_free(subj);
	return r;
}

static p11c_result get_once(p11c_ctx *ctx, const p11c_caramel_server *srv, const char *url,
			    const char *ua, EVP_PKEY *ckey, X509 *ccert, const char *ims,
			    struct p11c_http *h)
{
	setup(h, srv, url, ua);
	h->client_key = ckey;
	h->client_cert = ccert;
	h->if_modified_since = ims;
	return p11c_http_do(ctx, h);
}

p11c_result p11c_caramel_poll(p11c_ctx *ctx, const p11c_caramel_server *srv, const char *csr_pem,
			      size_t csr_len, p11c_key *key, X509 *mtls_cert, const char *ims,
			      p11c_caramel_state *state, char **cert_pem)
{
	struct p11c_http h;
	char sha[65], url[512], ua[128];
	EVP_PKEY *signer = NULL;
	p11c_result r;
	int posted = 0;

	if (ctx == NULL || srv == NULL || csr_pem == NULL || state == NULL || cert_pem == NULL)
		return P11C_ERR_ARG;
	*cert_pem = NULL;
	memset(&h, 0, sizeof h);
	if (mtls_cert != NULL && (key == NULL || p11c_key_signer(key, &signer) != P11C_OK))
		mtls_cert = NULL; /* no usable key: plain TLS */
	p11c_sha256_hex(csr_pem, csr_len, sha);
	base_url(srv, sha, url, sizeof url);
	user_agent(srv, ua, sizeof ua);
	for (;;) {
		r = get_once(ctx, srv, url, ua, signer, mtls_cert, ims, &h);
		if (r != P11C_OK)
			goto out;
		switch (h.status) {
		case 200:
			*state = P11C_CARAMEL_SIGNED;
			*cert_pem = strndup((const char *)h.resp, h.resp_len);
			r = *cert_pem ? P11C_OK : P11C_ERR_NOMEM;
			goto out;
		case 304:
			/* RFC 9110 s15.4.5: only an answer to a conditional
			 * request; unasked, it would pass for "current" */
			if (ims == NULL) {
				r = unexpected(ctx, &h, "GET without If-Modified-Since");
				goto out;
			}
			*state = P11C_CARAMEL_UNCHANGED;
			goto out;
		case 202:
			*state = P11C_CARAMEL_PENDING;
			goto out;
		case 403:
			*state = P11C_CARAMEL_REJECTED;
			goto out;
		case 404:
			if (posted) {
				r = unexpected(ctx, &h, "GET after POST");
				goto out;
			}
			break;
		default:
			r = unexpected(ctx, &h, "GET");
			goto out;
		}
		/* unknown to the CA: post the request */
		p11c_http_clear(&h);
		setup(&h, srv, url, ua);
		h.method = "POST";
		h.content_type = "application/octet-stream";
		h.body = csr_pem;
		h.body_len = csr_len;
		h.client_key = signer;
		h.client_cert = mtls_cert;
		r = p11c_http_do(ctx, &h);
		if (r != P11C_OK)
			goto out;
		if (h.status != 202 && h.status != 200) {
			r = unexpected(ctx, &h, "POST of the request");
			goto out;
		}
		posted = 1;
		p11c_http_clear(&h);
		p11c_test_stall("caramel-posted");
	}
out:
	p11c_http_clear(&h);
	return r;
}

p11c_result p11c_caramel_check_pub(p11c_ctx *ctx, X509 *cert, EVP_PKEY *pub, const char *label, X509 *ca,
				   const char *client_id)
{
	X509_STORE *st = NULL;
	X509_STORE_CTX *sc = NULL;
	char cn[256] = "";
	p11c_result r = P11C_ERR_VERIFY;
	int ok;

	if (ctx == NULL || cert == NULL || ca == NULL)
		return P11C_ERR_ARG;
	if (!p11c_cert_matches(cert, pub)) {
		p11c_detail(ctx, "the CA returned a certificate for another key than '%s'", label ? label : "");
		return P11C_ERR_VERIFY;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn);
	if (client_id != NULL && strcmp(cn, client_id) != 0) {
		p11c_detail(ctx, "the certificate's CN is '%s', not the client id '%s'", cn, client_id);
		return P11C_ERR_VERIFY;
	}
	st = X509_STORE_new();
	sc = X509_STORE_CTX_new();
	if (st == NULL || sc == NULL || X509_STORE_add_cert(st, ca) != 1 ||
	    X509_STORE_CTX_init(sc, st, cert, NULL) != 1) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	/* chains to the CA and is valid now (X509_verify_cert checks times) */
	ok = X509_verify_cert(sc);
	if (ok != 1) {
		p11c_detail(ctx, "the certificate from the CA does not verify: %s",
			    X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
		goto out;
	}
	r = P11C_OK;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(sc);
	X509_STORE_free(st);
	return r;
}

p11c_result p11c_caramel_check(p11c_ctx *ctx, X509 *cert, p11c_key *key, X509 *ca, const char *client_id)
{
	if (ctx == NULL || cert == NULL || key == NULL || ca == NULL)
		return P11C_ERR_ARG;
	return p11c_caramel_check_pub(ctx, cert, p11c_key_public(key), p11c_key_label(key), ca, client_id);
}

p11c_result p11c_uuid4(char out[37])
{
	unsigned char b[16];

	if (RAND_bytes(b, sizeof b) != 1)
		return P11C_ERR_CRYPTO;
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40); /* RFC 4122 s4.4 */
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	snprintf(out, 37, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0],
		 b[1], b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
		 b[15]);
	return P11C_OK;
}

long p11c_caramel_backoff_ms(unsigned attempt)
{
	double ms = 870.0;
	unsigned char r[2];
	double jitter;

	while (attempt-- > 0 && ms < 23000.0)
		ms *= 2;
	if (ms > 23000.0)
		ms = 23000.0;
	if (RAND_bytes(r, sizeof r) != 1)
		r[0] = r[1] = 0x80;
	jitter = ((double)((r[0] << 8) | r[1]) / 65535.0) * 0.30 - 0.15;
	return (long)(ms * (1.0 + jitter));
}

p11c_result p11c_caramel_enroll_mem(p11c_ctx *ctx, p11c_key *key, const char *server,
				    const char *trust_pem, const char *client_id, long timeout_ms,
				    p11c_enrollment *out)
{
	p11c_caramel_server srv;
	p11c_caramel_state st = P11C_CARAMEL_PENDING;
	X509 *ca = NULL, *cert = NULL;
	char id[37], *pem = NULL, *cpem = NULL;
	size_t len = 0;
	struct timespec t0, now;
	unsigned attempt = 0;
	p11c_result r;

	if (ctx == NULL || key == NULL || server == NULL || trust_pem == NULL || out == NULL)
		return P11C_ERR_ARG;
	memset(out, 0, sizeof *out);
	if (client_id == NULL) {
		if ((r = p11c_uuid4(id)) != P11C_OK)
			return r;
	} else if (snprintf(id, sizeof id, "%s", client_id) >= (int)sizeof id) {
		p11c_detail(ctx, "client id longer than 36 characters");
		return P11C_ERR_ARG;
	}
	memset(&srv, 0, sizeof srv);
	srv.server = server;
	srv.ca_pem = trust_pem;
	srv.client_id = id;
	srv.timeout_ms = timeout_ms > 0 && timeout_ms < 30000 ? timeout_ms : 30000;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	/* the CA certificate as the server has it, over TLS verified with the
	 * one the application ships */
	r = p11c_caramel_fetch_ca(ctx, &srv, &ca);
	if (r != P11C_OK)
		goto out;
	r = p11c_caramel_csr(key, ca, id, &pem, &len);
	if (r != P11C_OK)
		goto out;
	for (;;) {
		long left;

		free(cpem);
		cpem = NULL;
		r = p11c_caramel_poll(ctx, &srv, pem, len, key, NULL, NULL, &st, &cpem);
		if (r != P11C_OK)
			goto out;
		if (st == P11C_CARAMEL_SIGNED)
			break;
		if (st == P11C_CARAMEL_REJECTED) {
			p11c_detail(ctx, "the CA at %s rejected client id %s", server, id);
			r = P11C_ERR_REJECTED;
			goto out;
		}
		clock_gettime(CLOCK_MONOTONIC, &now);
		left = timeout_ms - ((now.tv_sec - t0.tv_sec) * 1000L + (now.tv_nsec - t0.tv_nsec) / 1000000L);
		if (left <= 0) {
			p11c_detail(ctx, "client id %s still pending at %s after %ld ms", id, server, timeout_ms);
			r = P11C_ERR_PENDING;
			goto out;
		}
		{
			long ms = p11c_caramel_backoff_ms(attempt++);
			struct timespec ts;

			if (ms > left)
				ms = left;
			ts.tv_sec = ms / 1000;
			ts.tv_nsec = (ms % 1000) * 1000000L;
			nanosleep(&ts, NULL);
		}
	}
	r = p11c_x509_parse((const unsigned char *)cpem, strlen(cpem), &cert);
	if (r != P11C_OK) {
		p11c_detail(ctx, "the CA's answer is not a PEM certificate");
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	r = p11c_caramel_check(ctx, cert, key, ca, id);
	if (r != P11C_OK)
		goto out;
	out->client_id = strdup(id);
	out->cert_pem = cpem;
	out->ca_pem = p11c_x509_pem(ca);
	out->csr_pem = pem;
	cpem = pem = NULL;
	if (out->client_id == NULL || out->ca_pem == NULL) {
		p11c_enrollment_clear(out);
		r = P11C_ERR_NOMEM;
	}
out:
	free(pem);
	free(cpem);
	X509_free(ca);
	X509_free(cert);
	return r;
}

void p11c_enrollment_clear(p11c_enrollment *e)
{
	if (e == NULL)
		return;
	free(e->client_id);
	free(e->cert_pem);
	free(e->ca_pem);
	free(e->csr_pem);
	memset(e, 0, sizeof *e);
}

/* --- the protocol table (protocol.h) -------------------------------------- */

/* A renewal (or rekey) round: the caller's CSR (kept in DIR/ID.rekey.csr,
 * so a rerun polls the very same request) polled with the current key and
 * certificate as TLS client identity (p11ca signs it at once when
 * renew-mtls is on; upstream waits for caramel_tool).  The certificate is
 * returned unchecked: the caller runs p11c_caramel_check with the CA. */
static p11c_result caramel_renew(p11c_ctx *ctx, struct p11c_renewal *rn)
{
	p11c_caramel_server srv;
	p11c_caramel_state st = P11C_CARAMEL_PENDING;
	p11c_result r;

	if (rn->csr == NULL) {
		p11c_detail(ctx, "a Caramel renewal posts the caller's request: no CSR given");
		return P11C_ERR_ARG;
	}
	memset(&srv, 0, sizeof srv);
	srv.server = rn->server;
	srv.ca_file = rn->ca_file;
	srv.client_id = rn->client_id;
	srv.timeout_ms = rn->timeout_ms;
	r = p11c_caramel_poll(ctx, &srv, rn->csr, rn->csr_len, rn->current, rn->current_cert, NULL, &st,
			      &rn->cert_pem);
	if (r != P11C_OK)
		return r;
	rn->checked = 0;
	if (st == P11C_CARAMEL_REJECTED) {
		rn->state = P11C_RENEWAL_REJECTED;
	} else if (st != P11C_CARAMEL_SIGNED) {
		rn->state = P11C_RENEWAL_PENDING; /* a 304 is no certificate either */
	} else {
		rn->state = P11C_RENEWAL_ISSUED;
		if (p11c_x509_parse((const unsigned char *)rn->cert_pem, strlen(rn->cert_pem), &rn->cert) != P11C_OK)
			rn->cert = NULL;
	}
	return P11C_OK;
}

const struct p11c_protocol p11c_proto_caramel = {
	"caramel",
	"Caramel (REST, the CSR addressed by its SHA-256; docs/protocols.md s1)",
	1,
	caramel_renew,
};

