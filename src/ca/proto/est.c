/* EST, Enrollment over Secure Transport (RFC 7030): /.well-known/est/ and
 * /.well-known/est/LABEL/ on the main listener, one profile per label
 * from DIR/est.conf (proto/est_config.c, docs/ca.md "EST").
 *
 *   GET  cacerts         s4.1: the CA certificate, certs-only PKCS#7
 *   GET  csrattrs        s4.5: what the profile asks of a CSR
 *   POST simpleenroll    s4.2.1: HTTP Basic or a bootstrap (IDevID) client
 *                        certificate, as the profile says
 *   POST simplereenroll  s4.2.2: mutual TLS with a current certificate of
 *                        this CA; subject and SANs kept unless the profile
 *                        allows a change
 *
 * Requests are stored under an identity that does not depend on the
 * challengePassword (a new TLS connection brings a new channel binding):
 * SHA-256 over a domain label, the subject, the public key and the
 * requested extensions.  A repeated POST of the same request therefore
 * finds the stored one (s4.2.3: "the client ... resubmits the same
 * request"), pending or signed.  Everything is committed to the store
 * before the answer. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "request.h"
#include "est.h"
/* the one internal libp11cert header p11ca uses: the crash tests' hook */
#include "../../lib/testhook.h"

/* est_server.cache: shared by the loop and the signing threads */
static pthread_mutex_t cache_mu = PTHREAD_MUTEX_INITIALIZER;

#define EST_OP_MAX 32
#define EST_CPW_MAX 256
#define EST_DOMAIN "p11ca EST request identity v1"

/* text/plain errors, as RFC 7030 s4.2.3 allows; the access log gets the
 * text too (never a secret) */
static void reply_text(httpd_req *r, int status, const char *const *hdr, const char *msg)
{
	char body[512];
	int n = snprintf(body, sizeof body, "%s\n", msg);

	httpd_req_note(r, "est", msg);
	httpd_reply(r, status, "text/plain; charset=utf-8", hdr, body,
		    n > 0 && (size_t)n < sizeof body ? (size_t)n : sizeof body - 1);
}

/* A store error: 503 + Retry-After while the database is unreachable
 * (PostgreSQL down, issue 13: never a half answer, the client retries),
 * else 500 with what failed */
static void reply_store_error(const struct ca_request *rq, const char *what)
{
	static const char *const hdr[] = { "Retry-After", STORE_RETRY_AFTER, NULL };

	if (ca_store_down(rq->ca))
		reply_text(rq->r, 503, hdr, "the database is unavailable; retry later");
	else
		reply_text(rq->r, 500, NULL, what);
}

/* base64 body with Content-Transfer-Encoding (RFC 7030 s4.1.3) */
static void reply_b64(httpd_req *r, const char *type, const unsigned char *der, size_t len)
{
	static const char *const hdr[] = { "Content-Transfer-Encoding", "base64", NULL };
	size_t n = 0;
	char *b = est_b64_encode(der, len, &n);

	if (b == NULL) {
		reply_text(r, 500, NULL, "out of memory");
		return;
	}
	httpd_reply(r, 200, type, hdr, b, n);
	free(b);
}

static void reply_certs(httpd_req *r, STACK_OF(X509) *certs)
{
	unsigned char *der = NULL;
	size_t len = 0;

	if (est_certs_only_der(certs, &der, &len) != 0) {
		reply_text(r, 500, NULL, "cannot encode the PKCS#7 reply");
		return;
	}
	reply_b64(r, "application/pkcs7-mime; smime-type=certs-only", der, len);
	OPENSSL_free(der);
}

static void reply_cert_pem(httpd_req *r, const char *pem)
{
	BIO *b = BIO_new_mem_buf(pem, -1);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
	STACK_OF(X509) *sk = sk_X509_new_null();

	if (x == NULL || sk == NULL || !sk_X509_push(sk, x)) {
		X509_free(x);
		reply_text(r, 500, NULL, "cannot read the issued certificate");
	} else {
		reply_certs(r, sk);
	}
	sk_X509_pop_free(sk, X509_free);
	BIO_free(b);
}

/* s4.1.2: the CA certificate (the current one; no rollover yet) */
static void do_cacerts(const struct ca_request *rq)
{
	STACK_OF(X509) *sk = sk_X509_new_null();

	if (sk == NULL || !sk_X509_push(sk, rq->ca->cert)) {
		reply_text(rq->r, 500, NULL, "out of memory");
	} else {
		httpd_req_note(rq->r, "est", "cacerts");
		reply_certs(rq->r, sk);
	}
	sk_X509_free(sk);
}

/* s4.5.2 */
static void do_csrattrs(const struct ca_request *rq, const struct est_profile *p)
{
	unsigned char *der = NULL;
	size_t len = 0;

	if (est_csrattrs_der(p, &der, &len) != 0) {
		reply_text(rq->r, 500, NULL, "cannot encode csrattrs");
		return;
	}
	httpd_req_note(rq->r, "est", "csrattrs");
	reply_b64(rq->r, "application/csrattrs", der, len);
	free(der);
}

/* The client certificate chains to the profile's bootstrap CA (IDevID,
 * IEEE 802.1AR); the handshake proved possession of its key. */
static int bootstrap_ok(const struct ca_request *rq, const struct est_profile *p)
{
	X509 *leaf = httpd_req_client_cert(rq->r);
	X509_STORE_CTX *ctx;
	int ok = 0;

	if (leaf == NULL || p->bootstrap == NULL || (ctx = X509_STORE_CTX_new()) == NULL)
		return 0;
	if (X509_STORE_CTX_init(ctx, p->bootstrap, leaf, httpd_req_client_chain(rq->r)) == 1)
		ok = X509_verify_cert(ctx) == 1;
	X509_STORE_CTX_free(ctx);
	ERR_clear_error();
	return ok;
}

/* HTTP Basic against the profile's credentials file (read per request:
 * `p11ca est-user` changes apply at once).  1 ok, 0 wrong, -1 no or bad
 * header, -2 the file cannot be read. */
static int basic_ok(const struct ca_request *rq, const struct est_profile *p, char user[EST_USER_MAX + 1])
{
	char pass[EST_PASSWORD_MAX + 1], *path = NULL, *text = NULL;
	size_t len = 0;
	int rc;

	if (est_basic_parse(httpd_req_header(rq->r, "Authorization"), user, pass) != 0)
		return -1;
	path = ca_path(rq->ca->dir, p->users);
	if (path == NULL || ca_read_file(path, EST_USERS_MAX, &text, &len) != 0) {
		ca_err("EST: cannot read the credentials file %s", path ? path : p->users);
		rc = -2;
	} else {
		/* the cache is shared by the loop and the signing threads */
		pthread_mutex_lock(&cache_mu);
		rc = est_user_check(&rq->est->cache, text, len, user, pass, (int64_t)time(NULL));
		pthread_mutex_unlock(&cache_mu);
	}
	OPENSSL_cleanse(pass, sizeof pass);
	free(text);
	free(path);
	return rc;
}

/* Who may enroll (s3.2.3, s3.3.2).  1 authenticated (how, in `who`), 0 a
 * reply was sent. */
static int authenticate(const struct ca_request *rq, const struct est_profile *p, int reenroll, char *who,
			size_t wlen)
{
	httpd_req *r = rq->r;
	char addr[64], user[EST_USER_MAX + 1];
	long wait;
	int rc;

	peer_addr(r, addr, sizeof addr);
	if (rq->est->rl != NULL && (wait = ratelimit_check(rq->est->rl, addr, ratelimit_now_ms())) > 0) {
		char secs[24];
		const char *hdr[] = { "Retry-After", secs, NULL };

		snprintf(secs, sizeof secs, "%ld", wait);
		reply_text(r, 429, hdr, "too many failed authentications from this address; retry later");
		return 0;
	}
	if (reenroll) {
		/* s4.2.2: the certificate being renewed authenticates the client */
		X509 *peer = httpd_req_peer_cert(r);

		if (peer != NULL && ca_peer_current(rq->ca, peer)) {
			snprintf(who, wlen, "mTLS");
			return 1;
		}
		ratelimit_fail(rq->est->rl, addr, ratelimit_now_ms());
		reply_text(r, 403, NULL,
			   "simplereenroll needs mutual TLS with a current (not expired, not revoked) certificate "
			   "of this CA");
		return 0;
	}
	if ((p->auth & EST_AUTH_CERT) && bootstrap_ok(rq, p)) {
		snprintf(who, wlen, "bootstrap certificate");
		return 1;
	}
	if (p->auth & EST_AUTH_BASIC) {
		static const char *const hdr[] = { "WWW-Authenticate", "Basic realm=\"p11ca EST\", charset=\"UTF-8\"",
						   NULL };

		rc = basic_ok(rq, p, user);
		if (rc == 1) {
			snprintf(who, wlen, "user %s", user);
			return 1;
		}
		if (rc == -2) {
			reply_text(r, 500, NULL, "credentials file unreadable");
			return 0;
		}
		if (rc == 0)
			ratelimit_fail(rq->est->rl, addr, ratelimit_now_ms());
		OPENSSL_cleanse(user, sizeof user);
		reply_text(r, 401, hdr, rc == 0 ? "wrong user name or password" : "authentication required");
		return 0;
	}
	if (httpd_req_client_cert(r) != NULL)
		ratelimit_fail(rq->est->rl, addr, ratelimit_now_ms());
	reply_text(r, 403, NULL,
		   httpd_req_client_cert(r) != NULL
			   ? "the client certificate does not chain to this profile's bootstrap CA"
			   : "a client certificate from this profile's bootstrap CA is required");
	return 0;
}

/* s3.5: challengePassword = base64(tls-unique) on TLS 1.2, base64 of the
 * RFC 9266 tls-exporter value on TLS 1.3.  1 ok, 0 a reply was sent. */
static int binding_ok(httpd_req *r, X509_REQ *req)
{
	unsigned char cb[64];
	char cpw[EST_CPW_MAX], *want = NULL;
	int tls13 = 0, ok = 0;
	size_t n = httpd_req_channel_binding(r, cb, sizeof cb, &tls13);

	if (n == 0) {
		reply_text(r, 500, NULL, "no channel binding on this connection");
		return 0;
	}
	want = est_b64_line(cb, n);
	if (est_challenge_password(req, cpw, sizeof cpw) != 0)
		reply_text(r, 403, NULL,
			   "channel binding required: the CSR has no challengePassword (RFC 7030 s3.5)");
	else if (want == NULL || strlen(cpw) != strlen(want) || CRYPTO_memcmp(cpw, want, strlen(want)) != 0)
		reply_text(r, 403, NULL,
			   tls13 ? "channel binding: challengePassword is not the base64 tls-exporter value of "
				   "this TLS 1.3 connection"
				 : "channel binding: challengePassword is not the base64 tls-unique value of this "
				   "TLS 1.2 connection");
	else
		ok = 1;
	free(want);
	return ok;
}

/* Every name in a is in b (GENERAL_NAME_cmp); skip_cn: DNS:<cn> may miss. */
static int names_in(const GENERAL_NAMES *a, const GENERAL_NAMES *b, const char *skip_cn)
{
	int i, k;

	for (i = 0; i < sk_GENERAL_NAME_num(a); i++) {
		GENERAL_NAME *g = sk_GENERAL_NAME_value(a, i);
		int found = 0;

		for (k = 0; !found && k < sk_GENERAL_NAME_num(b); k++)
			found = GENERAL_NAME_cmp(g, sk_GENERAL_NAME_value(b, k)) == 0;
		if (!found && skip_cn != NULL && g->type == GEN_DNS &&
		    (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(skip_cn) &&
		    strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), skip_cn, strlen(skip_cn)) == 0)
			found = 1;
		if (!found)
			return 0;
	}
	return 1;
}

/* s4.2.2: the subject and subjectAltName of a re-enrollment are those of
 * the certificate being renewed (the CA adds DNS:<CN> to every
 * certificate, so the CSR may leave that one out). */
static int same_names(X509 *cert, X509_REQ *req)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *want = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
	GENERAL_NAMES *got = exts ? X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL) : NULL;
	GENERAL_NAMES *empty = sk_GENERAL_NAME_new_null();
	char cn[256];
	int ok = 0;

	if (empty == NULL || X509_NAME_cmp(X509_get_subject_name(cert), X509_REQ_get_subject_name(req)) != 0)
		goto out;
	if (ca_name_entry(X509_get_subject_name(cert), NID_commonName, cn, sizeof cn) != 0)
		cn[0] = '\0';
	ok = names_in(got ? got : empty, want ? want : empty, NULL) &&
	     names_in(want ? want : empty, got ? got : empty, cn[0] ? cn : NULL);
out:
	GENERAL_NAMES_free(want);
	GENERAL_NAMES_free(got);
	sk_GENERAL_NAME_free(empty);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ERR_clear_error();
	return ok;
}

/* The request identity (see the top of the file), lowercase hex. */
static int request_identity(X509_REQ *req, char hex[65])
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	unsigned char *a = NULL, *b = NULL, *c = NULL, md[32];
	int na, nb, nc = 0, rc = -1;
	EVP_MD_CTX *m = EVP_MD_CTX_new();
	unsigned mdlen = 0, i;

	na = i2d_X509_NAME(X509_REQ_get_subject_name(req), &a);
	nb = i2d_PUBKEY(X509_REQ_get0_pubkey(req), &b);
	if (exts != NULL)
		nc = i2d_X509_EXTENSIONS(exts, &c);
	if (m == NULL || na <= 0 || nb <= 0 || nc < 0 || EVP_DigestInit_ex(m, EVP_sha256(), NULL) != 1 ||
	    EVP_DigestUpdate(m, EST_DOMAIN, sizeof EST_DOMAIN) != 1 || EVP_DigestUpdate(m, a, (size_t)na) != 1 ||
	    EVP_DigestUpdate(m, b, (size_t)nb) != 1 || (nc > 0 && EVP_DigestUpdate(m, c, (size_t)nc) != 1) ||
	    EVP_DigestFinal_ex(m, md, &mdlen) != 1 || mdlen != 32)
		goto out;
	for (i = 0; i < 32; i++)
		snprintf(hex + 2 * i, 3, "%02x", md[i]);
	rc = 0;
out:
	EVP_MD_CTX_free(m);
	OPENSSL_free(a);
	OPENSSL_free(b);
	OPENSSL_free(c);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ERR_clear_error();
	return rc;
}

/* The CSR from a base64 body (s4.2.1): DER PKCS#10, nothing after it. */
static X509_REQ *body_csr(httpd_req *r)
{
	size_t len = 0, dlen = 0;
	const unsigned char *body = httpd_req_body(r, &len);
	unsigned char *der = NULL;
	const unsigned char *p;
	X509_REQ *req = NULL;

	if (est_b64_decode(body, len, EST_MAX_BODY, &der, &dlen) != 0)
		return NULL;
	p = der;
	req = d2i_X509_REQ(NULL, &p, (long)dlen);
	if (req != NULL && p != der + dlen) {
		X509_REQ_free(req);
		req = NULL;
	}
	free(der);
	ERR_clear_error();
	return req;
}

static char *csr_pem(X509_REQ *req, size_t *len)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *out = NULL;
	long n;

	if (b != NULL && PEM_write_bio_X509_REQ(b, req) == 1 && (n = BIO_get_mem_data(b, &data)) > 0 &&
	    (out = malloc((size_t)n + 1)) != NULL) {
		memcpy(out, data, (size_t)n);
		out[n] = '\0';
		*len = (size_t)n;
	}
	BIO_free(b);
	return out;
}

/* The CSR policy shared with Caramel: key, hash, DN, subject prefix, CN,
 * subjectAltNames (san-patterns).  1 ok, 0 a reply was sent. */
static int csr_policy_ok(const struct ca_request *rq, X509_REQ *req)
{
	httpd_req *r = rq->r;
	EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
	char err[256], msg[320], cn[256];

	/* proof of possession (s3.4): the CSR's signature */
	if (pk == NULL || X509_REQ_verify(req, pk) != 1) {
		ERR_clear_error();
		reply_text(r, 400, NULL, "bad CSR signature");
		return 0;
	}
	if (!ca_csr_ok(req, err, sizeof err)) {
		reply_text(r, 400, NULL, err);
		return 0;
	}
	if (!p11c_caramel_subject_ok(X509_get_subject_name(rq->ca->cert), X509_REQ_get_subject_name(req), err,
				     sizeof err)) {
		snprintf(msg, sizeof msg, "bad subject: %s", err);
		reply_text(r, 400, NULL, msg);
		return 0;
	}
	if (ca_name_entry(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn) != 0 || cn[0] == '\0' ||
	    strlen(cn) > 64) {
		reply_text(r, 400, NULL, "bad subject: CN missing or longer than 64 characters");
		return 0;
	}
	if (!ca_sans_ok(rq->ca, req, err, sizeof err)) {
		reply_text(r, 400, NULL, err);
		return 0;
	}
	return 1;
}

static void reply_pending(httpd_req *r, const struct est_profile *p, int64_t id, const char *who)
{
	char secs[24], msg[160];
	const char *hdr[] = { "Retry-After", secs, NULL };

	snprintf(secs, sizeof secs, "%ld", p->retry_after);
	snprintf(msg, sizeof msg, "request %lld pending approval (%s)", (long long)id, who);
	reply_text(r, 202, hdr, msg);
}

static void do_enroll(const struct ca_request *rq, const struct est_profile *p, int reenroll)
{
	httpd_req *r = rq->r;
	const char *ct = httpd_req_header(r, "Content-Type");
	const char *op = reenroll ? "simplereenroll" : "simpleenroll";
	char who[EST_USER_MAX + 32], key[65], note[320], why[160];
	size_t blen = 0, plen = 0;
	X509_REQ *req = NULL;
	char *pem = NULL, *issued = NULL;
	struct store_request q;
	struct store_cert c;
	store_result sr;
	req_lifetime lt = p->lifetime_long ? LIFETIME_LONG : LIFETIME_SHORT;
	time_t now = time(NULL);
	int rc;

	memset(&q, 0, sizeof q);
	memset(&c, 0, sizeof c);
	(void)httpd_req_body(r, &blen);
	if (blen > EST_MAX_BODY) {
		reply_text(r, 413, NULL, "body larger than 16384 bytes");
		goto out;
	}
	/* s4.2.1: application/pkcs10 (parameters allowed) */
	if (ct != NULL && (strncasecmp(ct, "application/pkcs10", 18) != 0 || (ct[18] != '\0' && ct[18] != ';'))) {
		reply_text(r, 415, NULL, "Content-Type must be application/pkcs10");
		goto out;
	}
	if (!authenticate(rq, p, reenroll, who, sizeof who))
		goto out;
	if ((req = body_csr(r)) == NULL) {
		reply_text(r, 400, NULL, "body is not a base64 DER PKCS#10 request");
		goto out;
	}
	if (!csr_policy_ok(rq, req))
		goto out;
	if (p->binding && !binding_ok(r, req))
		goto out;
	/* what /csrattrs asked for, when the profile insists (s4.5.2) */
	if (p->ext_required && !est_exts_ok(p, req, why, sizeof why)) {
		reply_text(r, 400, NULL, why);
		goto out;
	}
	if (reenroll && !p->subject_change && !same_names(httpd_req_peer_cert(r), req)) {
		reply_text(r, 403, NULL,
			   "simplereenroll: subject and subjectAltName must be those of the current certificate");
		goto out;
	}
	if (request_identity(req, key) != 0 || (pem = csr_pem(req, &plen)) == NULL) {
		reply_text(r, 500, NULL, "out of memory");
		goto out;
	}
	sr = rq->ca->so->req_by_sha256(rq->ca->st, key, &q);
	if (sr == STORE_NOT_FOUND && (reenroll || !p->pending)) {
		/* signed at once: the request and its certificate in one
		 * transaction (ca.h); a crash before it leaves nothing, and the
		 * client's retry starts again (test_est_fault) */
		rc = ca_add_request_signed(rq->ca, pem, plen, req, "est", key, lt, PROFILE_CARAMEL, &q, &issued, now);
		if (rc != 1)
			goto answer; /* signed, refused (2) or failed */
		sr = STORE_OK; /* stored meanwhile (the same request twice at once): q is that one */
	}
	if (sr == STORE_NOT_FOUND) {
		rc = ca_add_request_keyed(rq->ca, pem, plen, req, "est", REQ_PENDING, key, &q);
		if (rc != 0) {
			reply_store_error(rq, "database error");
			goto out;
		}
		/* committed; a crash from here to the answer leaves it pending,
		 * and the client's retry finds it (test_est_fault) */
		p11c_test_stall("est-request-stored");
	} else if (sr != STORE_OK) {
		reply_store_error(rq, "database error");
		goto out;
	}
	if (q.state == REQ_REJECTED) {
		reply_text(r, 403, NULL, "request rejected by the CA administrator");
		goto out;
	}
	sr = rq->ca->so->cert_latest(rq->ca->st, q.id, &c);
	if (sr != STORE_OK && sr != STORE_NOT_FOUND) {
		reply_store_error(rq, "database error");
		goto out;
	}
	/* signed meanwhile (pending, then `p11ca sign`): the same request
	 * gets its certificate; a re-enrollment always gets a new one */
	if (!reenroll && sr == STORE_OK && c.revoked == 0 && c.not_after > now) {
		snprintf(note, sizeof note, "%s: request %lld, certificate %s (%s)", op, (long long)q.id, c.serial, who);
		httpd_req_note(r, "est", note);
		reply_cert_pem(r, c.pem);
		goto out;
	}
	if (!reenroll && p->pending) {
		reply_pending(r, p, q.id, who);
		goto out;
	}
	rc = ca_sign_request(rq->ca, &q, lt, PROFILE_CARAMEL, &issued, now);
	if (rc == 1)
		rc = 2; /* refused, as ca_add_request_signed says it */
answer:
	if (rc == 2) {
		reply_text(r, 403, NULL, "not signed: the request was rejected or its key revoked");
		goto out;
	}
	if (rc != 0 || issued == NULL) {
		reply_store_error(rq, "signing failed");
		goto out;
	}
	snprintf(note, sizeof note, "%s: request %lld signed (%s)", op, (long long)q.id, who);
	httpd_req_note(r, "est", note);
	reply_cert_pem(r, issued);
out:
	store_request_clear(&q);
	store_cert_clear(&c);
	free(issued);
	free(pem);
	X509_REQ_free(req);
}

static int est_match(const struct ca_request *rq)
{
	char label[EST_LABEL_MAX + 1], op[EST_OP_MAX];

	return rq->est != NULL && rq->listener == LISTENER_MAIN &&
	       est_path_parse(httpd_req_path(rq->r), label, sizeof label, op, sizeof op);
}

static void est_handle(const struct ca_request *rq)
{
	httpd_req *r = rq->r;
	const char *m = httpd_req_method(r);
	char label[EST_LABEL_MAX + 1], op[EST_OP_MAX];
	const struct est_profile *p;
	int get = strcmp(m, "GET") == 0 || strcmp(m, "HEAD") == 0;

	httpd_req_note(r, "est", NULL);
	if (!est_path_parse(httpd_req_path(r), label, sizeof label, op, sizeof op) ||
	    (p = est_profile_find(rq->est, label)) == NULL) {
		reply_text(r, 404, NULL, "no such EST profile");
		return;
	}
	if (strcmp(op, "cacerts") == 0 || strcmp(op, "csrattrs") == 0) {
		if (!get) {
			reply_text(r, 405, NULL, "use GET");
			return;
		}
		if (op[1] == 'a')
			do_cacerts(rq);
		else
			do_csrattrs(rq, p);
	} else if (strcmp(op, "simpleenroll") == 0 || strcmp(op, "simplereenroll") == 0) {
		if (strcmp(m, "POST") != 0) {
			reply_text(r, 405, NULL, "use POST");
			return;
		}
		do_enroll(rq, p, op[6] == 'r');
	} else if (strcmp(op, "serverkeygen") == 0 || strcmp(op, "fullcmc") == 0) {
		/* s4.3, s4.4: optional; keys are made in the client's token */
		reply_text(r, 501, NULL, "not implemented: keys are generated by the client");
	} else {
		reply_text(r, 404, NULL, "no such EST operation");
	}
}

/* simpleenroll, simplereenroll and serverkeygen sign (RFC 7030 s4.2,
 * s4.4); cacerts and csrattrs stay on the loop */
static int est_offload(const struct ca_request *rq)
{
	return strcmp(httpd_req_method(rq->r), "POST") == 0;
}

static const struct ca_route est_routes[] = {
	{ est_match, est_handle, est_offload },
};

const struct ca_protocol ca_proto_est = {
	"est", "EST (RFC 7030) under /.well-known/est/", est_routes, sizeof est_routes / sizeof est_routes[0],
};
