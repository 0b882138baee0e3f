/* HTTPS requests for the enrollment clients, on libcurl with OpenSSL.
 * Peer verification is always on; the shared-token bootstrap replaces it
 * with its own check (one self-signed certificate, CN = host) and the
 * caller then authenticates the peer by the HMAC. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <p11cert/enroll.h>

#include "curlssl.h"
#include "http.h"

/* every option set here is checked: a libcurl that ignores one (another
 * TLS backend has no CURLOPT_SSL_CTX_FUNCTION) must not send a request
 * without the token key, the peer check or the limits */
#define SET(opt, val)                                                  \
	do {                                                           \
		if (!P11C_SETOPT(c, opt, val, h->err, sizeof h->err)) \
			goto refused;                                  \
	} while (0)

struct xfer {
	struct p11c_http *h;
	CURL *curl;
	char binding_err[256];
	size_t cap;
	int too_big;
	char bootstrap_err[256];
};

static size_t on_body(char *data, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	struct p11c_http *h = x->h;
	size_t len = size * n;
	unsigned char *p;

	if (len > P11C_HTTP_MAX_RESPONSE - h->resp_len) {
		x->too_big = 1;
		return 0; /* aborts the transfer */
	}
	if (h->resp_len + len + 1 > x->cap) {
		size_t cap = x->cap ? x->cap : 4096;

		while (cap < h->resp_len + len + 1)
			cap *= 2;
		p = realloc(h->resp, cap);
		if (p == NULL)
			return 0;
		h->resp = p;
		x->cap = cap;
	}
	memcpy(h->resp + h->resp_len, data, len);
	h->resp_len += len;
	h->resp[h->resp_len] = '\0';
	return len;
}

/* A header's value without surrounding blanks and line end; dropped when
 * it does not fit (bounded by the caller's buffer). */
static void header_value(const char *v, size_t vl, char *out, size_t outlen)
{
	while (vl > 0 && (*v == ' ' || *v == '\t')) {
		v++;
		vl--;
	}
	while (vl > 0 && (v[vl - 1] == '\r' || v[vl - 1] == '\n' || v[vl - 1] == ' '))
		vl--;
	if (vl < outlen) {
		memcpy(out, v, vl);
		out[vl] = '\0';
	}
}

/* Link: <URL>;rel="alternate" (RFC 8288; RFC 8555 s7.4.2): the URL kept,
 * up to the size of link_alt; other relations and longer URLs dropped */
static void link_alternate(struct p11c_http *h, const char *v, size_t vl)
{
	char line[1024], *lt, *gt;

	line[0] = '\0';
	header_value(v, vl, line, sizeof line);
	lt = strchr(line, '<');
	gt = lt ? strchr(lt, '>') : NULL;
	if (lt == NULL || gt == NULL || h->nlink_alt >= (int)(sizeof h->link_alt / sizeof h->link_alt[0]))
		return;
	if (strstr(gt, "rel=\"alternate\"") == NULL && strstr(gt, "rel=alternate") == NULL)
		return;
	*gt = '\0';
	if ((size_t)(gt - lt - 1) >= sizeof h->link_alt[0])
		return;
	memcpy(h->link_alt[h->nlink_alt], lt + 1, (size_t)(gt - lt));
	h->nlink_alt++;
}

static size_t on_header(char *data, size_t size, size_t n, void *ud)
{
	struct xfer *x = ud;
	size_t len = size * n;

	if (len > 14 && strncasecmp(data, "Last-Modified:", 14) == 0)
		header_value(data + 14, len - 14, x->h->last_modified, sizeof x->h->last_modified);
	else if (len > 7 && strncasecmp(data, "Server:", 7) == 0)
		header_value(data + 7, len - 7, x->h->server, sizeof x->h->server);
	else if (len > 13 && strncasecmp(data, "Replay-Nonce:", 13) == 0)
		header_value(data + 13, len - 13, x->h->replay_nonce, sizeof x->h->replay_nonce);
	else if (len > 9 && strncasecmp(data, "Location:", 9) == 0)
		header_value(data + 9, len - 9, x->h->location, sizeof x->h->location);
	else if (len > 12 && strncasecmp(data, "Retry-After:", 12) == 0)
		header_value(data + 12, len - 12, x->h->retry_after, sizeof x->h->retry_after);
	else if (len > 5 && strncasecmp(data, "Link:", 5) == 0)
		link_alternate(x->h, data + 5, len - 5);
	return len;
}

/* Bootstrap check in the handshake (docs/protocols.md s2, client checks 1
 * and 2): the peer chain is one self-signed certificate whose CN is the
 * host asked for.  Records the certificate for the HMAC check. */
static int bootstrap_verify(X509_STORE_CTX *sctx, void *arg)
{
	struct xfer *x = arg;
	X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
	STACK_OF(X509) *chain = X509_STORE_CTX_get0_untrusted(sctx);
	char cn[256] = "";
	int n = chain ? sk_X509_num(chain) : 0;

	if (leaf == NULL || n > 1) {
		snprintf(x->bootstrap_err, sizeof x->bootstrap_err,
			 "the server sent a chain of %d certificates; the shared-token protocol needs "
			 "exactly one, the CA's own", n);
		return 0;
	}
	if (X509_check_issued(leaf, leaf) != X509_V_OK) {
		snprintf(x->bootstrap_err, sizeof x->bootstrap_err,
			 "the server's certificate is not self-signed: it is not the CA certificate");
		return 0;
	}
	X509_NAME_get_text_by_NID(X509_get_subject_name(leaf), NID_commonName, cn, sizeof cn);
	if (x->h->expect_cn != NULL && strcmp(cn, x->h->expect_cn) != 0) {
		snprintf(x->bootstrap_err, sizeof x->bootstrap_err,
			 "the server's certificate is for CN=%.100s, not the CA host '%.100s'", cn,
			 x->h->expect_cn);
		return 0;
	}
	if (!X509_up_ref(leaf))
		return 0;
	X509_free(x->h->peer_cert);
	x->h->peer_cert = leaf;
	return 1;
}

static CURLcode on_ssl_ctx(CURL *curl, void *sslctx, void *ud)
{
	struct xfer *x = ud;
	struct p11c_http *h = x->h;
	SSL_CTX *ctx = sslctx;

	(void)curl;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (h->tls_max == 12)
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	else if (h->tls_max == 13)
		SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	if (h->bootstrap) {
		/* curl set SSL_VERIFY_NONE (its own check would refuse the
		 * self-signed CA); ours must abort the handshake when it fails */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
		SSL_CTX_set_cert_verify_callback(ctx, bootstrap_verify, x);
	}
	if (h->client_key != NULL && h->client_cert != NULL) {
		/* the token key: signing happens in the token (signer.c's
		 * EVP_PKEY), never an ENGINE */
		if (SSL_CTX_use_certificate(ctx, h->client_cert) != 1 ||
		    SSL_CTX_use_PrivateKey(ctx, h->client_key) != 1)
			return CURLE_SSL_CERTPROBLEM;
	}
	return CURLE_OK;
}

size_t p11c_tls_binding(SSL *ssl, unsigned char *out, size_t cap)
{
	static const char label[] = "EXPORTER-Channel-Binding";
	size_t n;

	if (ssl == NULL || cap < 32)
		return 0;
	if (SSL_version(ssl) >= TLS1_3_VERSION) {
		/* RFC 9266 s2 (an empty context is no context in TLS 1.3: RFC 8446 s7.5) */
		if (SSL_export_keying_material(ssl, out, 32, label, sizeof label - 1, NULL, 0, 0) != 1)
			return 0;
		return 32;
	}
	/* RFC 5929 s3.1: the first Finished of the latest handshake: the
	 * client's in a full handshake, the server's in a resumption */
	n = SSL_session_reused(ssl) ? SSL_get_peer_finished(ssl, out, cap) : SSL_get_finished(ssl, out, cap);
	return n <= cap ? n : 0;
}

/* Before the request goes out on its connection (libcurl's
 * CURLOPT_PREREQFUNCTION): the connection's channel binding, recorded or
 * compared with the one the request was bound to. */
static int on_prereq(void *ud, char *pip, char *lip, int pport, int lport)
{
	struct xfer *x = ud;
	struct p11c_http *h = x->h;
	const struct curl_tlssessioninfo *ti = NULL;
	unsigned char b[64];
	size_t n = 0;

	(void)pip;
	(void)lip;
	(void)pport;
	(void)lport;
	if (curl_easy_getinfo(x->curl, CURLINFO_TLS_SSL_PTR, &ti) == CURLE_OK && ti != NULL &&
	    ti->backend == CURLSSLBACKEND_OPENSSL && ti->internals != NULL)
		n = p11c_tls_binding(ti->internals, b, sizeof b);
	if (n == 0 && h->expect_binding == NULL)
		return CURL_PREREQFUNC_OK; /* nothing to record: the caller sees binding_len 0 */
	if (n == 0) {
		snprintf(x->binding_err, sizeof x->binding_err,
			 "the TLS connection to %s has no channel binding value; not sent", h->url);
		return CURL_PREREQFUNC_ABORT;
	}
	if (h->expect_binding != NULL &&
	    (n != h->expect_binding_len || CRYPTO_memcmp(b, h->expect_binding, n) != 0)) {
		snprintf(x->binding_err, sizeof x->binding_err,
			 "the request would go over another TLS connection than the one its channel binding "
			 "was taken from; not sent");
		h->binding_refused = 1;
		return CURL_PREREQFUNC_ABORT;
	}
	memcpy(h->binding, b, n);
	h->binding_len = n;
	h->tls_version = SSL_version(ti->internals);
	return CURL_PREREQFUNC_OK;
}

void p11c_http_release(p11c_ctx *ctx)
{
	if (ctx->http != NULL)
		curl_easy_cleanup(ctx->http);
	ctx->http = NULL;
	X509_free(ctx->http_cert);
	ctx->http_cert = NULL;
	free(ctx->http_trust);
	ctx->http_trust = NULL;
}

/* The handle for this request: the kept one when its connections were
 * made with the same trust and client certificate (curl_easy_reset keeps
 * live connections), else a new one, kept for the next request.  The
 * bootstrap gets a handle of its own every time: its check runs in the
 * handshake and reports the peer's certificate. */
static CURL *handle_for(p11c_ctx *ctx, const struct p11c_http *h, int *owned)
{
	X509 *cert = h->client_key != NULL ? h->client_cert : NULL;
	char *trust = NULL;
	CURL *c;

	*owned = 1;
	if (h->bootstrap || h->unverified)
		return curl_easy_init();
	if (asprintf(&trust, "%d%s%s", h->tls_max, h->ca_pem != NULL ? "P" : h->ca_file != NULL ? "F" : "S",
		     h->ca_pem != NULL ? h->ca_pem : h->ca_file != NULL ? h->ca_file : "") < 0)
		return NULL;
	if (ctx->http != NULL && strcmp(ctx->http_trust, trust) == 0 &&
	    ((cert == NULL && ctx->http_cert == NULL) ||
	     (cert != NULL && ctx->http_cert != NULL && X509_cmp(cert, ctx->http_cert) == 0))) {
		free(trust);
		curl_easy_reset(ctx->http);
		*owned = 0;
		return ctx->http;
	}
	p11c_http_release(ctx);
	if ((c = curl_easy_init()) == NULL) {
		free(trust);
		return NULL;
	}
	if (cert != NULL && !X509_up_ref(cert)) {
		curl_easy_cleanup(c);
		free(trust);
		return NULL;
	}
	ctx->http = c;
	ctx->http_cert = cert;
	ctx->http_trust = trust;
	*owned = 0;
	return c;
}

static int add_header(struct curl_slist **l, const char *line)
{
	struct curl_slist *n = curl_slist_append(*l, line);

	if (n == NULL)
		return -1;
	*l = n;
	return 0;
}

p11c_result p11c_http_do(p11c_ctx *ctx, struct p11c_http *h)
{
	CURL *c = NULL;
	struct curl_slist *hdrs = NULL;
	struct curl_blob blob;
	struct xfer x;
	char errbuf[CURL_ERROR_SIZE] = "", line[256];
	CURLcode cc;
	p11c_result r = P11C_ERR_NETWORK;
	char *ct = NULL;
	int owned = 1;

	memset(&x, 0, sizeof x);
	x.h = h;
	h->status = 0;
	h->err[0] = '\0';
	h->server[0] = '\0';
	h->replay_nonce[0] = h->location[0] = h->retry_after[0] = '\0';
	h->nlink_alt = 0;
	h->binding_len = 0;
	h->binding_refused = 0;
	ctx->http_server[0] = '\0';
	if (p11c_curl_ready(h->err, sizeof h->err) != 0) {
		p11c_detail(ctx, "%s", h->err);
		r = P11C_ERR_NETWORK;
		goto out;
	}
	if (h->unverified && (h->user != NULL || h->password != NULL || h->client_key != NULL)) {
		/* a peer nobody checked gets no credential */
		snprintf(h->err, sizeof h->err, "no credentials over an unverified connection");
		p11c_detail(ctx, "%s", h->err);
		r = P11C_ERR_ARG;
		goto out;
	}
	if ((c = handle_for(ctx, h, &owned)) == NULL) {
		snprintf(h->err, sizeof h->err, "libcurl could not start");
		r = P11C_ERR_NOMEM;
		goto out;
	}
	SET(CURLOPT_URL, h->url);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, errbuf);
	SET(CURLOPT_TIMEOUT_MS, h->timeout_ms > 0 ? h->timeout_ms : 30000L);
	SET(CURLOPT_CONNECTTIMEOUT_MS, 10000L);
	SET(CURLOPT_WRITEFUNCTION, on_body);
	SET(CURLOPT_WRITEDATA, &x);
	SET(CURLOPT_HEADERFUNCTION, on_header);
	SET(CURLOPT_HEADERDATA, &x);
	SET(CURLOPT_SSL_CTX_FUNCTION, on_ssl_ctx);
	SET(CURLOPT_SSL_CTX_DATA, &x);
	SET(CURLOPT_USERAGENT, h->user_agent ? h->user_agent : "p11cert/" P11CERT_VERSION);
	SET(CURLOPT_SSL_SESSIONID_CACHE, 0L);
	x.curl = c;
	if (h->want_binding || h->expect_binding != NULL) {
		/* libcurl 7.80+: called once the connection is up, before the
		 * request is sent (EST channel binding) */
		SET(CURLOPT_PREREQFUNCTION, on_prereq);
		SET(CURLOPT_PREREQDATA, &x);
	}
	if (h->user != NULL && h->password != NULL) {
		SET(CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		SET(CURLOPT_USERNAME, h->user);
		SET(CURLOPT_PASSWORD, h->password);
	}
	if (h->bootstrap || h->unverified) {
		/* shared token: verification is done by bootstrap_verify in the
		 * handshake (curl's own check would reject the self-signed CA);
		 * EST bootstrap: the caller checks the CA fingerprint in the
		 * answer, and no credential goes over this connection */
		SET(CURLOPT_SSL_VERIFYPEER, 0L);
		SET(CURLOPT_SSL_VERIFYHOST, 0L);
	} else {
		SET(CURLOPT_SSL_VERIFYPEER, 1L);
		SET(CURLOPT_SSL_VERIFYHOST, 2L);
		if (h->ca_pem != NULL) {
			blob.data = (void *)(uintptr_t)h->ca_pem;
			blob.len = strlen(h->ca_pem);
			blob.flags = CURL_BLOB_COPY;
			SET(CURLOPT_CAINFO_BLOB, &blob);
			SET(CURLOPT_CAINFO, NULL);
			SET(CURLOPT_CAPATH, NULL);
		} else if (h->ca_file != NULL) {
			SET(CURLOPT_CAINFO, h->ca_file);
			SET(CURLOPT_CAPATH, NULL);
		}
	}
	if (h->if_modified_since != NULL) {
		snprintf(line, sizeof line, "If-Modified-Since: %s", h->if_modified_since);
		if (add_header(&hdrs, line) != 0)
			goto nomem;
	}
	if (h->accept != NULL) {
		snprintf(line, sizeof line, "Accept: %s", h->accept);
		if (add_header(&hdrs, line) != 0)
			goto nomem;
	}
	if (h->extra_header != NULL && add_header(&hdrs, h->extra_header) != 0)
		goto nomem;
	if (h->method != NULL && strcmp(h->method, "HEAD") == 0)
		SET(CURLOPT_NOBODY, 1L);
	if (h->method != NULL && strcmp(h->method, "POST") == 0) {
		snprintf(line, sizeof line, "Content-Type: %s",
			 h->content_type ? h->content_type : "application/octet-stream");
		if (add_header(&hdrs, line) != 0 || add_header(&hdrs, "Expect:") != 0)
			goto nomem;
		SET(CURLOPT_POST, 1L);
		SET(CURLOPT_POSTFIELDS, h->body);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)h->body_len);
	}
	if (hdrs != NULL)
		SET(CURLOPT_HTTPHEADER, hdrs);

	ctx->sign_rv = CKR_OK;
	cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		if (x.bootstrap_err[0] != '\0') {
			snprintf(h->err, sizeof h->err, "%s", x.bootstrap_err);
			r = P11C_ERR_TLS;
		} else if (x.binding_err[0] != '\0') {
			snprintf(h->err, sizeof h->err, "%s", x.binding_err);
			r = P11C_ERR_TLS;
		} else if (x.too_big) {
			snprintf(h->err, sizeof h->err, "answer larger than %d bytes", P11C_HTTP_MAX_RESPONSE);
			r = P11C_ERR_PROTOCOL;
		} else if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CONNECT_ERROR ||
			   cc == CURLE_SSL_CERTPROBLEM || cc == CURLE_SSL_CACERT_BADFILE) {
			snprintf(h->err, sizeof h->err, "TLS with %s failed: %s", h->url,
				 errbuf[0] ? errbuf : curl_easy_strerror(cc));
			r = P11C_ERR_TLS;
		} else {
			snprintf(h->err, sizeof h->err, "%s: %s", h->url,
				 errbuf[0] ? errbuf : curl_easy_strerror(cc));
			r = P11C_ERR_NETWORK;
		}
		if (ctx->sign_rv != CKR_OK)
			p11c_detail(ctx, "%s (the token key could not sign the handshake: %s)", h->err,
				    p11c_ckr_name(ctx->sign_rv));
		else
			p11c_detail(ctx, "%s", h->err);
		p11c_tpm_tls_hint(ctx);
		ERR_clear_error();
		if (!owned) {
			p11c_http_release(ctx); /* nothing of a failed connection is kept */
			c = NULL;
		}
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &h->status);
	snprintf(ctx->http_server, sizeof ctx->http_server, "%s", h->server);
	if (curl_easy_getinfo(c, CURLINFO_CONTENT_TYPE, &ct) == CURLE_OK && ct != NULL)
		snprintf(h->content_type_out, sizeof h->content_type_out, "%s", ct);
	if (h->resp == NULL) {
		h->resp = calloc(1, 1);
		if (h->resp == NULL) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
	}
	r = P11C_OK;
	goto out;
nomem:
	snprintf(h->err, sizeof h->err, "out of memory for the request headers");
	p11c_detail(ctx, "%s", h->err);
	r = P11C_ERR_NOMEM;
	goto drop;
refused:
	/* h->err names the option (p11c_curl_opt); nothing was sent */
	p11c_detail(ctx, "%s", h->err);
	r = P11C_ERR_NETWORK;
drop:
	if (!owned) {
		p11c_http_release(ctx); /* a half-configured handle is not kept */
		c = NULL;
	}
out:
	curl_slist_free_all(hdrs);
	if (c != NULL && owned)
		curl_easy_cleanup(c);
	else if (c != NULL)
		curl_easy_reset(c); /* drop pointers to this call's buffers; connections stay */
	return r;
}

void p11c_http_clear(struct p11c_http *h)
{
	if (h == NULL)
		return;
	free(h->resp);
	h->resp = NULL;
	h->resp_len = 0;
	X509_free(h->peer_cert);
	h->peer_cert = NULL;
}

const char *p11c_ctx_server_software(const p11c_ctx *ctx)
{
	return ctx != NULL ? ctx->http_server : "";
}
