/* Caramel: REST, the CSR addressed by the SHA-256 of its PEM
 * (docs/protocols.md s1; upstream Caramel server 1.9.6 behaviour). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/pem.h>

#include "request.h"
/* the one internal libp11cert header p11ca uses: the crash tests' hook */
#include "../../lib/testhook.h"

#define CARAMEL_MAX_CSR 2048 /* upstream's limit: larger bodies are 413 */

static const char *title_of(int status)
{
	switch (status) {
	case 400:
		return "Bad Request";
	case 403:
		return "Forbidden";
	case 404:
		return "Not Found";
	case 405:
		return "Method Not Allowed";
	case 411:
		return "Length Required";
	case 413:
		return "Payload Too Large";
	case 429:
		return "Too Many Requests";
	case 503:
		return "Service Unavailable";
	default:
		return "Internal Server Error";
	}
}

void reply_problem(httpd_req *r, int status, const char *title, const char *detail)
{
	char *body = p11c_problem_json(status, title ? title : title_of(status), detail);

	httpd_req_note(r, NULL, detail);
	httpd_reply(r, status, "application/problem+json", NULL, body, body ? strlen(body) : 0);
	free(body);
}

int reply_store_down(const struct ca_request *rq, int token_json)
{
	static const char msg[] = "the database is unavailable; retry later";
	const char *hdr[] = { "Retry-After", STORE_RETRY_AFTER, NULL };
	char *body;

	if (!ca_store_down(rq->ca))
		return 0;
	/* never a half answer: nothing this request did is acknowledged */
	httpd_req_note(rq->r, NULL, "database unavailable");
	body = token_json ? p11c_token_response_json(NULL, NULL, msg) : p11c_problem_json(503, title_of(503), msg);
	httpd_reply(rq->r, 503, token_json ? "application/json" : "application/problem+json", hdr, body,
		    body ? strlen(body) : 0);
	free(body);
	return 1;
}

void reply_busy(const struct ca_request *rq, int token_json)
{
	static const char msg[] = "every signer is busy and the signing queue is full; retry later";
	const char *hdr[] = { "Retry-After", BUSY_RETRY_AFTER, NULL };
	char *body;

	httpd_req_note(rq->r, NULL, "signing queue full");
	body = token_json ? p11c_token_response_json(NULL, NULL, msg) : p11c_problem_json(503, title_of(503), msg);
	httpd_reply(rq->r, 503, token_json ? "application/json" : "application/problem+json", hdr, body,
		    body ? strlen(body) : 0);
	free(body);
}

/* A Host header fit for the URL of a 202 body: a host name, an IPv4 or
 * [IPv6] literal, an optional port.  Anything else (control characters,
 * quotes, '/', '@', '#') would break the JSON or send the client elsewhere. */
static int host_ok(const char *host)
{
	static const char allowed[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-:[]";
	size_t n = host != NULL ? strlen(host) : 0;

	return n > 0 && n < 256 && strspn(host, allowed) == n;
}

static void reply_accepted(const struct ca_request *rq, httpd_req *r, const char *sha)
{
	char url[512], body[700];
	const char *host = httpd_req_host(r);

	if (rq->ca->cfg.url != NULL)
		snprintf(url, sizeof url, "%s/%s", rq->ca->cfg.url, sha);
	else
		snprintf(url, sizeof url, "https://%s/%s", host_ok(host) ? host : "localhost", sha);
	snprintf(body, sizeof body, "{\"sha256\": \"%s\", \"url\": \"%s\"}", sha, url);
	httpd_reply(r, 202, "application/json", NULL, body, strlen(body));
}

static int is_uuid(const char *s)
{
	static const char shape[] = "xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx";
	size_t i;

	if (strlen(s) != sizeof shape - 1)
		return 0;
	for (i = 0; shape[i]; i++) {
		if (shape[i] == '-' ? s[i] != '-' : strchr("0123456789abcdefABCDEF", s[i]) == NULL || !s[i])
			return 0;
	}
	return 1;
}

/* ca_sans_only_cn() for a stored CSR PEM */
static int pem_sans_only_cn(const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509_REQ *req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	int ok = req != NULL && ca_sans_only_cn(req);

	X509_REQ_free(req);
	BIO_free(b);
	return ok;
}

/* A client presenting a valid certificate of ours for the same subject
 * may be re-signed at once (renewal).  Revoked or expired ones may not
 * (ca_peer_current). */
static int mtls_same_subject(const struct ca_request *rq, httpd_req *r, const char *subject_rfc2253)
{
	X509 *peer = httpd_req_peer_cert(r);
	char *ps = NULL;
	int ok = 0;

	if (!rq->ca->cfg.renew_mtls || peer == NULL || subject_rfc2253 == NULL)
		return 0;
	ps = ca_name_rfc2253(X509_get_subject_name(peer));
	if (ps != NULL && strcmp(ps, subject_rfc2253) == 0)
		ok = ca_peer_current(rq->ca, peer);
	free(ps);
	return ok;
}

static void do_get(const struct ca_request *rq, httpd_req *r, const char *sha)
{
	struct store_request q;
	struct store_cert c;
	char date[64];
	const char *ims;
	time_t now = time(NULL), since;
	store_result sr;

	memset(&q, 0, sizeof q);
	memset(&c, 0, sizeof c);
	sr = rq->ca->so->req_by_sha256(rq->ca->st, sha, &q);
	if (sr == STORE_NOT_FOUND) {
		reply_problem(r, 404, NULL, NULL);
		goto out;
	}
	if (sr != STORE_OK) {
		if (!reply_store_down(rq, 0))
			reply_problem(r, 500, NULL, "database error");
		goto out;
	}
	if (q.state == REQ_REJECTED) {
		reply_problem(r, 403, NULL, "request rejected by the CA administrator");
		goto out;
	}
	sr = rq->ca->so->cert_latest(rq->ca->st, q.id, &c);
	if (sr != STORE_OK && sr != STORE_NOT_FOUND) {
		if (!reply_store_down(rq, 0))
			reply_problem(r, 500, NULL, "database error");
		goto out;
	}
	/* autosign = uuid: a pending UUID request without a certificate is
	 * signed now.  do_post stores an autosigned request together with its
	 * certificate (one transaction), but one stored pending (autosign
	 * turned on later, or by a p11ca that stored and signed in two
	 * transactions) must not leave the client polling a request nobody
	 * will sign. */
	if (sr == STORE_NOT_FOUND && q.state == REQ_PENDING && strcmp(rq->ca->cfg.autosign, "uuid") == 0 &&
	    q.cn != NULL && is_uuid(q.cn) && pem_sans_only_cn(q.pem)) {
		if (rq->defer != NULL) {
			/* on the loop: sign on a signing thread (request.h) */
			*rq->defer = 1;
			goto out;
		}
		if (ca_sign_request(rq->ca, &q, LIFETIME_SHORT, PROFILE_CARAMEL, NULL, now) == 0) {
			httpd_req_note(r, "caramel", "autosigned (UUID CN, on GET)");
			sr = rq->ca->so->cert_latest(rq->ca->st, q.id, &c);
		}
	}
	/* renewal: a valid client certificate for this subject, and the
	 * newest certificate is past half its lifetime (or missing) */
	if (mtls_same_subject(rq, r, q.subject) &&
	    (sr != STORE_OK || now >= c.not_before + (c.not_after - c.not_before) / 2)) {
		if (ca_sign_request(rq->ca, &q, q.lifetime, PROFILE_CARAMEL, NULL, now) == 0) {
			httpd_req_note(r, "caramel", "renewed over mTLS");
			store_cert_clear(&c);
			sr = rq->ca->so->cert_latest(rq->ca->st, q.id, &c);
		}
	}
	if (sr != STORE_OK && reply_store_down(rq, 0))
		goto out; /* a signature or a read above failed with the database */
	if (sr != STORE_OK || c.not_after <= now || c.revoked != 0) {
		/* never signed, or expired / revoked until refreshed */
		reply_accepted(rq, r, sha);
		goto out;
	}
	ca_http_date((time_t)c.created, date, sizeof date);
	ims = httpd_req_header(r, "If-Modified-Since");
	if (ims != NULL && ca_parse_http_date(ims, &since) == 0 && (time_t)c.created <= since) {
		const char *h[] = { "Last-Modified", date, NULL };

		httpd_reply(r, 304, NULL, h, NULL, 0);
		goto out;
	}
	{
		const char *h[] = { "Last-Modified", date, NULL };

		httpd_reply(r, 200, "application/octet-stream", h, c.pem, strlen(c.pem));
	}
out:
	store_request_clear(&q);
	store_cert_clear(&c);
}

static void do_post(const struct ca_request *rq, httpd_req *r, const char *sha)
{
	const unsigned char *body;
	size_t len;
	char hex[65], err[256], *canon = NULL, cn[256];
	size_t clen = 0;
	X509_REQ *req = NULL;
	BIO *b = NULL;
	EVP_PKEY *pk;
	struct store_request q;
	char *subject = NULL;
	int rc, sign_now = 0;

	memset(&q, 0, sizeof q);
	if (httpd_req_header(r, "Content-Length") == NULL) {
		reply_problem(r, 411, NULL, "Content-Length required");
		goto out;
	}
	body = httpd_req_body(r, &len);
	if (len > CARAMEL_MAX_CSR) {
		reply_problem(r, 413, NULL, "CSR larger than 2048 bytes");
		goto out;
	}
	p11c_sha256_hex(body, len, hex);
	if (strcmp(hex, sha) != 0) {
		reply_problem(r, 400, NULL, "SHA-256 of the body does not match the URL");
		goto out;
	}
	b = BIO_new_mem_buf(body, (int)len);
	req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	if (req == NULL) {
		reply_problem(r, 400, NULL, "invalid PEM: not a certificate request");
		goto out;
	}
	if (p11c_caramel_csr_pem(req, &canon, &clen) != P11C_OK || clen != len ||
	    memcmp(canon, body, len) != 0) {
		reply_problem(r, 400, NULL,
			      "CSR PEM is not canonical (LF line ends, 64 columns, one trailing newline)");
		goto out;
	}
	pk = X509_REQ_get0_pubkey(req);
	if (pk == NULL || X509_REQ_verify(req, pk) != 1) {
		reply_problem(r, 400, NULL, "bad CSR signature");
		goto out;
	}
	/* key, signature hash, DN (one CN, no NUL or control characters) */
	if (!ca_csr_ok(req, err, sizeof err)) {
		reply_problem(r, 400, NULL, err);
		goto out;
	}
	if (!p11c_caramel_subject_ok(X509_get_subject_name(rq->ca->cert), X509_REQ_get_subject_name(req),
				     err, sizeof err)) {
		char d[300];

		snprintf(d, sizeof d, "bad subject: %s", err);
		reply_problem(r, 400, NULL, d);
		goto out;
	}
	if (ca_name_entry(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn) != 0 ||
	    cn[0] == '\0' || strlen(cn) > 64) {
		reply_problem(r, 400, NULL, "bad subject: CN missing or longer than 64 characters");
		goto out;
	}
	if (!ca_sans_ok(rq->ca, req, err, sizeof err)) {
		reply_problem(r, 400, NULL, err);
		goto out;
	}
	/* the subject as the store keeps it, for an mTLS renewal only */
	if (rq->ca->cfg.renew_mtls && httpd_req_peer_cert(r) != NULL)
		subject = ca_name_rfc2253(X509_REQ_get_subject_name(req));
	if (strcmp(rq->ca->cfg.autosign, "uuid") == 0 && is_uuid(cn) && !ca_sans_only_cn(req)) {
		/* anonymous requests get no names beyond DNS:<CN>: an
		 * administrator decides on the others */
		httpd_req_note(r, "caramel", "pending (UUID CN, but asks for subjectAltNames)");
	} else if (strcmp(rq->ca->cfg.autosign, "uuid") == 0 && is_uuid(cn)) {
		sign_now = 1;
		httpd_req_note(r, "caramel", "autosigned (UUID CN)");
	} else if (mtls_same_subject(rq, r, subject)) {
		sign_now = 1;
		httpd_req_note(r, "caramel", "autosigned (mTLS renewal)");
	} else {
		httpd_req_note(r, "caramel", "pending");
	}
	if (sign_now) {
		/* the request and its certificate in one transaction (ca.h) */
		rc = ca_add_request_signed(rq->ca, (const char *)body, len, req, "caramel", NULL, LIFETIME_SHORT,
					   PROFILE_CARAMEL, &q, NULL, time(NULL));
		if (rc == 0)
			goto accepted;
		if (rc == 1) {
			reply_problem(r, 400, NULL, "duplicate request");
			goto out;
		}
		if (rc < 0) {
			if (!reply_store_down(rq, 0))
				reply_problem(r, 500, NULL, "signing failed");
			goto out;
		}
		/* a certificate for this key was revoked: stored, pending, for
		 * an administrator */
		httpd_req_note(r, "caramel", "not signed: key revoked");
	}
	rc = ca_add_request(rq->ca, (const char *)body, len, req, "caramel", REQ_PENDING, &q);
	if (rc < 0) {
		if (!reply_store_down(rq, 0))
			reply_problem(r, 500, NULL, "database error");
		goto out;
	}
	if (rc == 1) {
		reply_problem(r, 400, NULL, "duplicate request");
		goto out;
	}
	p11c_test_stall("ca-request-stored");
accepted:
	reply_accepted(rq, r, sha);
out:
	store_request_clear(&q);
	free(subject);
	free(canon);
	X509_REQ_free(req);
	BIO_free(b);
}

static void caramel_handle(const struct ca_request *rq)
{
	httpd_req *r = rq->r;
	const char *path = httpd_req_path(r), *m = httpd_req_method(r);

	httpd_req_note(r, "caramel", NULL);
	if (strcmp(path, "/root.crt") == 0 || strcmp(path, "/bundle.crt") == 0) {
		if (strcmp(m, "GET") != 0 && strcmp(m, "HEAD") != 0) {
			reply_problem(r, 405, NULL, NULL);
			return;
		}
		httpd_reply(r, 200, "text/plain", NULL, rq->ca_pem, rq->ca_pem_len);
		return;
	}
	if (path[0] != '/' || !p11c_is_sha256_hex(path + 1)) {
		reply_problem(r, 404, NULL, NULL);
		return;
	}
	/* everything below reads or writes the store */
	if (reply_store_down(rq, 0))
		return;
	if (strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0)
		do_get(rq, r, path + 1);
	else if (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0)
		do_post(rq, r, path + 1);
	else
		reply_problem(r, 405, NULL, NULL);
}

/* Everything on the main listener the shared-token routes left: root.crt,
 * bundle.crt and /SHA256 (docs/protocols.md s1). */
static int caramel_match(const struct ca_request *rq)
{
	(void)rq;
	return 1;
}

/* What may sign: a CSR posted (autosign), and a poll with a client
 * certificate (renewal over mTLS).  Plain polls and root.crt stay on the
 * loop, fast while signers work. */
static int caramel_offload(const struct ca_request *rq)
{
	const char *path = httpd_req_path(rq->r), *m = httpd_req_method(rq->r);

	if (path[0] != '/' || !p11c_is_sha256_hex(path + 1))
		return 0;
	if (strcmp(m, "POST") == 0 || strcmp(m, "PUT") == 0)
		return 1;
	return rq->ca->cfg.renew_mtls && httpd_req_peer_cert(rq->r) != NULL;
}

static const struct ca_route caramel_routes[] = {
	{ caramel_match, caramel_handle, caramel_offload },
};

const struct ca_protocol ca_proto_caramel = {
	"caramel", "Caramel (REST, CSR addressed by its SHA-256)", caramel_routes,
	sizeof caramel_routes / sizeof caramel_routes[0],
};
