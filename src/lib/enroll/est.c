/* EST client (RFC 7030) with the key in the token; docs/est.md.  The
 * parsers are in est_parse.c; no file I/O here. */
#include <ctype.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include <p11cert/est.h>
#include <p11cert/proto.h>

#include "../http.h"
#include "protocol.h"

#define EST_RETRY_DEFAULT 60L  /* a 202 without a usable Retry-After */
#define EST_RETRY_MAX 86400L

/* https://host[:port][/LABEL] + "/.well-known/est[/LABEL]/OP" (RFC 7030
 * s3.2.2: the optional label is one path segment). */
static p11c_result est_url(p11c_ctx *ctx, const char *server, const char *op, char *buf, size_t len)
{
	const char *host, *slash, *label = "";
	size_t hl, ll = 0, i;

	if (server == NULL || strncmp(server, "https://", 8) != 0) {
		p11c_detail(ctx, "the EST server must be an https:// URL, not '%s'", server ? server : "");
		return P11C_ERR_ARG;
	}
	host = server + 8;
	slash = strchr(host, '/');
	hl = slash != NULL ? (size_t)(slash - host) : strlen(host);
	if (slash != NULL) {
		label = slash + 1;
		ll = strlen(label);
		if (ll > 0 && label[ll - 1] == '/')
			ll--;
	}
	if (hl == 0 || hl > 255 || ll > 64) {
		p11c_detail(ctx, "bad EST server URL '%s' (https://host[:port][/LABEL])", server);
		return P11C_ERR_ARG;
	}
	for (i = 0; i < hl; i++)
		if (!isalnum((unsigned char)host[i]) && strchr(".-:[]_", host[i]) == NULL) {
			p11c_detail(ctx, "bad host in the EST server URL '%s'", server);
			return P11C_ERR_ARG;
		}
	for (i = 0; i < ll; i++)
		if (!isalnum((unsigned char)label[i]) && strchr("-_.", label[i]) == NULL) {
			p11c_detail(ctx, "bad label in the EST server URL '%s' (letters, digits, - _ .)", server);
			return P11C_ERR_ARG;
		}
	if (snprintf(buf, len, "https://%.*s/.well-known/est%s%.*s/%s", (int)hl, host, ll ? "/" : "", (int)ll, label,
		     op) >= (int)len)
		return P11C_ERR_ARG;
	return P11C_OK;
}

static p11c_result setup(p11c_ctx *ctx, struct p11c_http *h, const p11c_est_server *srv, const char *url)
{
	EVP_PKEY *signer = NULL;
	p11c_result r;

	memset(h, 0, sizeof *h);
	h->url = url;
	h->ca_file = srv->ca_file;
	h->ca_pem = srv->ca_pem;
	h->user = srv->user;
	h->password = srv->password;
	h->tls_max = srv->tls_max;
	h->timeout_ms = srv->timeout_ms;
	if (srv->client_key != NULL && srv->client_cert != NULL) {
		if ((r = p11c_key_signer(srv->client_key, &signer)) != P11C_OK) {
			p11c_detail(ctx, "the TLS client key cannot sign");
			return r;
		}
		h->client_key = signer;
		h->client_cert = srv->client_cert;
	}
	return P11C_OK;
}

/* "WHAT: the EST server answered STATUS: TEXT" with the server's text
 * (its first 200 bytes, control characters as '.'); 401 and 403 are
 * P11C_ERR_REJECTED (RFC 7030 s4.2.3), anything else P11C_ERR_PROTOCOL. */
static p11c_result unexpected(p11c_ctx *ctx, const struct p11c_http *h, const char *what)
{
	char text[201] = "";
	size_t n = 0;

	for (n = 0; h->resp != NULL && n < h->resp_len && n < 200; n++)
		text[n] = isprint(h->resp[n]) ? (char)h->resp[n] : '.';
	while (n > 0 && text[n - 1] == '.')
		n--;
	text[n] = '\0';
	p11c_detail(ctx, "%s: the EST server answered %ld%s%s%s", what, h->status,
		    h->status == 401 ? " (authentication required or refused)" :
		    h->status == 403 ? " (forbidden)" : "",
		    n ? ": " : "", text);
	return h->status == 401 || h->status == 403 ? P11C_ERR_REJECTED : P11C_ERR_PROTOCOL;
}

static p11c_result certs_answer(p11c_ctx *ctx, const struct p11c_http *h, const char *what, STACK_OF(X509) **certs)
{
	char err[256] = "";

	if (h->status != 200)
		return unexpected(ctx, h, what);
	if (p11c_est_certs_parse(h->resp, h->resp_len, certs, err, sizeof err) != P11C_OK) {
		p11c_detail(ctx, "%s: %s", what, err);
		return P11C_ERR_PROTOCOL;
	}
	return P11C_OK;
}

p11c_result p11c_est_cacerts(p11c_ctx *ctx, const p11c_est_server *srv, STACK_OF(X509) **cas)
{
	struct p11c_http h;
	char url[512];
	p11c_result r;

	if (ctx == NULL || srv == NULL || cas == NULL)
		return P11C_ERR_ARG;
	*cas = NULL;
	memset(&h, 0, sizeof h);
	if ((r = est_url(ctx, srv->url, "cacerts", url, sizeof url)) != P11C_OK ||
	    (r = setup(ctx, &h, srv, url)) != P11C_OK)
		return r;
	/* RFC 7030 s4.1.1: /cacerts needs no authentication */
	h.user = h.password = NULL;
	if ((r = p11c_http_do(ctx, &h)) == P11C_OK)
		r = certs_answer(ctx, &h, "GET /cacerts", cas);
	p11c_http_clear(&h);
	return r;
}

p11c_result p11c_est_bootstrap(p11c_ctx *ctx, const p11c_est_server *srv, const unsigned char fingerprint[32],
			       X509 **ca, STACK_OF(X509) **cas)
{
	struct p11c_http h;
	STACK_OF(X509) *got = NULL;
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdl = 0;
	char url[512];
	p11c_result r;
	int i;

	if (ctx == NULL || srv == NULL || fingerprint == NULL || ca == NULL || cas == NULL)
		return P11C_ERR_ARG;
	*ca = NULL;
	*cas = NULL;
	memset(&h, 0, sizeof h);
	if ((r = est_url(ctx, srv->url, "cacerts", url, sizeof url)) != P11C_OK)
		return r;
	/* RFC 7030 s4.1.1 bootstrap: the answer is taken without checking
	 * the server, and used only when the user's fingerprint is in it.
	 * Nothing of ours goes over this connection: no password, no client
	 * certificate. */
	h.url = url;
	h.unverified = 1;
	h.tls_max = srv->tls_max;
	h.timeout_ms = srv->timeout_ms;
	if ((r = p11c_http_do(ctx, &h)) != P11C_OK || (r = certs_answer(ctx, &h, "GET /cacerts", &got)) != P11C_OK)
		goto out;
	for (i = 0; i < sk_X509_num(got); i++) {
		X509 *x = sk_X509_value(got, i);

		if (X509_digest(x, EVP_sha256(), md, &mdl) == 1 && mdl == 32 && CRYPTO_memcmp(md, fingerprint, 32) == 0) {
			if (!X509_up_ref(x)) {
				r = P11C_ERR_NOMEM;
				goto out;
			}
			*ca = x;
			*cas = got;
			got = NULL;
			r = P11C_OK;
			goto out;
		}
	}
	p11c_detail(ctx, "none of the %d certificates %s sent for /cacerts has the fingerprint given with "
		    "--ca-fingerprint: the server is not trusted, nothing was sent to it", sk_X509_num(got), url);
	r = P11C_ERR_VERIFY;
out:
	ERR_clear_error();
	sk_X509_pop_free(got, X509_free);
	p11c_http_clear(&h);
	return r;
}

/* GET /csrattrs on h (set up by the caller, want_binding as it likes):
 * 200 parsed, 204 and 404 nothing asked (RFC 7030 s4.5.2). */
static p11c_result csrattrs_on(p11c_ctx *ctx, struct p11c_http *h, p11c_est_attrs *out)
{
	char err[256] = "";
	p11c_result r;

	memset(out, 0, sizeof *out);
	if ((r = p11c_http_do(ctx, h)) != P11C_OK)
		return r;
	if (h->status == 204 || h->status == 404)
		return P11C_OK;
	if (h->status != 200)
		return unexpected(ctx, h, "GET /csrattrs");
	if (p11c_est_csrattrs_parse(h->resp, h->resp_len, out, err, sizeof err) != P11C_OK) {
		p11c_detail(ctx, "GET /csrattrs: %s", err);
		return P11C_ERR_PROTOCOL;
	}
	return P11C_OK;
}

p11c_result p11c_est_csrattrs(p11c_ctx *ctx, const p11c_est_server *srv, p11c_est_attrs *out)
{
	struct p11c_http h;
	char url[512];
	p11c_result r;

	if (ctx == NULL || srv == NULL || out == NULL)
		return P11C_ERR_ARG;
	memset(&h, 0, sizeof h);
	if ((r = est_url(ctx, srv->url, "csrattrs", url, sizeof url)) != P11C_OK ||
	    (r = setup(ctx, &h, srv, url)) != P11C_OK)
		return r;
	r = csrattrs_on(ctx, &h, out);
	p11c_http_clear(&h);
	return r;
}

/* Retry-After (RFC 9110 s10.2.3): seconds or an HTTP-date; clamped. */
static long retry_seconds(const char *v)
{
	struct tm tm;
	char *end;
	long s;

	if (v == NULL || *v == '\0')
		return EST_RETRY_DEFAULT;
	s = strtol(v, &end, 10);
	if (end != v && *end == '\0')
		return s < 1 ? 1 : s > EST_RETRY_MAX ? EST_RETRY_MAX : s;
	memset(&tm, 0, sizeof tm);
	end = strptime(v, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end != NULL && *end == '\0') {
		s = (long)(timegm(&tm) - time(NULL));
		return s < 1 ? 1 : s > EST_RETRY_MAX ? EST_RETRY_MAX : s;
	}
	return EST_RETRY_DEFAULT;
}

/* The digest the server asked for, when the key can sign with it. */
static const EVP_MD *md_for(p11c_key *key, const p11c_est_attrs *a)
{
	const EVP_MD *md = a->md_nid != 0 ? EVP_get_digestbynid(a->md_nid) : NULL;
	int id = EVP_PKEY_get_base_id(p11c_key_public(key));

	if (md == NULL || (id != EVP_PKEY_RSA && id != EVP_PKEY_EC))
		return NULL; /* the key's default */
	return md;
}

/* The extensions /csrattrs asked for with their values (a->ext, parsed by
 * est_parse.c) into *extra, but subjectAltName: its names are merged with
 * the request's into *sans (the request's first, no name twice). */
static p11c_result asked_exts(p11c_ctx *ctx, const p11c_est_request *rq, const p11c_est_attrs *a,
			      STACK_OF(X509_EXTENSION) **extra, STACK_OF(GENERAL_NAME) **sans)
{
	const unsigned char *q = a->ext;
	X509_EXTENSION *x;
	GENERAL_NAMES *asked = NULL;
	GENERAL_NAME *g;
	int i, j, have;

	*extra = NULL;
	*sans = NULL;
	if (a->ext_len == 0 || a->ext_len > sizeof a->ext)
		return P11C_OK;
	if ((*extra = d2i_X509_EXTENSIONS(NULL, &q, (long)a->ext_len)) == NULL)
		goto bad;
	for (i = 0; i < sk_X509_EXTENSION_num(*extra); i++) {
		x = sk_X509_EXTENSION_value(*extra, i);
		if (OBJ_obj2nid(X509_EXTENSION_get_object(x)) != NID_subject_alt_name)
			continue;
		if ((asked = X509V3_EXT_d2i(x)) == NULL)
			goto bad;
		(void)sk_X509_EXTENSION_delete(*extra, i);
		X509_EXTENSION_free(x);
		break;
	}
	if (asked == NULL)
		return P11C_OK;
	if ((*sans = sk_GENERAL_NAME_new_null()) == NULL)
		goto nomem;
	for (i = 0; rq->sans != NULL && i < sk_GENERAL_NAME_num(rq->sans); i++)
		if ((g = GENERAL_NAME_dup(sk_GENERAL_NAME_value(rq->sans, i))) == NULL ||
		    !sk_GENERAL_NAME_push(*sans, g)) {
			GENERAL_NAME_free(g);
			goto nomem;
		}
	for (i = 0; i < sk_GENERAL_NAME_num(asked); i++) {
		for (have = 0, j = 0; j < sk_GENERAL_NAME_num(*sans); j++)
			have |= GENERAL_NAME_cmp(sk_GENERAL_NAME_value(asked, i), sk_GENERAL_NAME_value(*sans, j)) == 0;
		if (!have && ((g = GENERAL_NAME_dup(sk_GENERAL_NAME_value(asked, i))) == NULL ||
			      !sk_GENERAL_NAME_push(*sans, g))) {
			GENERAL_NAME_free(g);
			goto nomem;
		}
	}
	GENERAL_NAMES_free(asked);
	return P11C_OK;
bad:
	p11c_detail(ctx, "the extensions /csrattrs asked for do not decode");
	GENERAL_NAMES_free(asked);
	sk_X509_EXTENSION_pop_free(*extra, X509_EXTENSION_free);
	*extra = NULL;
	return P11C_ERR_PROTOCOL;
nomem:
	GENERAL_NAMES_free(asked);
	sk_X509_EXTENSION_pop_free(*extra, X509_EXTENSION_free);
	sk_GENERAL_NAME_pop_free(*sans, GENERAL_NAME_free);
	*extra = NULL;
	*sans = NULL;
	return P11C_ERR_NOMEM;
}

/* The token-signed request, base64 of its DER (RFC 7030 s4.2.1), with the
 * extensions /csrattrs asked for and the challengePassword binding when
 * bind. */
static p11c_result make_csr(p11c_ctx *ctx, p11c_key *key, const p11c_est_request *rq, const p11c_est_attrs *a,
			    const unsigned char *bind, size_t bind_len, char **b64, char **pem)
{
	X509_REQ *req = NULL;
	STACK_OF(X509_EXTENSION) *extra = NULL;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	unsigned char *der = NULL;
	char cp[128];
	int len;
	p11c_result r;

	if (bind != NULL && EVP_EncodeBlock((unsigned char *)cp, bind, (int)bind_len) <= 0) {
		p11c_detail(ctx, "cannot encode the channel binding");
		return P11C_ERR_CRYPTO;
	}
	if ((r = asked_exts(ctx, rq, a, &extra, &sans)) != P11C_OK)
		return r;
	r = p11c_csr_build(key, rq->subject, sans != NULL ? sans : rq->sans, extra, md_for(key, a),
			   bind != NULL ? cp : NULL, &req);
	if (r != P11C_OK)
		goto out;
	if ((len = i2d_X509_REQ(req, &der)) <= 0 || (*b64 = malloc((size_t)len / 3 * 4 + 8)) == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	EVP_EncodeBlock((unsigned char *)*b64, der, len);
	if (pem != NULL)
		r = p11c_caramel_csr_pem(req, pem, &(size_t){ 0 });
out:
	OPENSSL_free(der);
	X509_REQ_free(req);
	sk_X509_EXTENSION_pop_free(extra, X509_EXTENSION_free);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	return r;
}

/* The certificate for key among those of the answer (the leaf), or the
 * first. */
static X509 *leaf_of(STACK_OF(X509) *certs, p11c_key *key)
{
	int i;

	for (i = 0; i < sk_X509_num(certs); i++)
		if (p11c_cert_matches(sk_X509_value(certs, i), p11c_key_public(key)))
			return sk_X509_value(certs, i);
	return sk_X509_value(certs, 0);
}

p11c_result p11c_est_enroll(p11c_ctx *ctx, const p11c_est_server *srv, p11c_key *key, const p11c_est_request *rq,
			    p11c_est_state *state, X509 **cert, long *retry_after, char **csr_pem)
{
	struct p11c_http h;
	p11c_est_attrs got;
	const p11c_est_attrs *a;
	STACK_OF(X509) *certs = NULL;
	char url[512], curl_[512], *b64 = NULL;
	unsigned char bind[64];
	size_t bind_len = 0;
	int attempt, bound = 0;
	p11c_result r;

	if (ctx == NULL || srv == NULL || key == NULL || rq == NULL || rq->subject == NULL || state == NULL ||
	    cert == NULL || retry_after == NULL)
		return P11C_ERR_ARG;
	*cert = NULL;
	*retry_after = 0;
	if (csr_pem != NULL)
		*csr_pem = NULL;
	memset(&h, 0, sizeof h);
	if ((r = est_url(ctx, srv->url, rq->reenroll ? "simplereenroll" : "simpleenroll", url, sizeof url)) != P11C_OK ||
	    (r = est_url(ctx, srv->url, "csrattrs", curl_, sizeof curl_)) != P11C_OK)
		return r;
	/* a second round when the server closed the connection the first CSR
	 * was bound to (the request is refused before it is sent) */
	for (attempt = 0; attempt < 2; attempt++) {
		/* /csrattrs first: what to put in the request, and the TLS
		 * connection whose binding goes into it (RFC 7030 s3.5) */
		if ((r = setup(ctx, &h, srv, curl_)) != P11C_OK)
			goto out;
		h.want_binding = 1;
		r = csrattrs_on(ctx, &h, &got);
		if (r != P11C_OK)
			goto out;
		a = rq->attrs != NULL ? rq->attrs : &got;
		bound = rq->bind || a->challenge_password;
		bind_len = h.binding_len;
		memcpy(bind, h.binding, bind_len);
		if (bound && bind_len == 0) {
			p11c_detail(ctx, "the TLS connection has no channel binding value");
			r = P11C_ERR_TLS;
			goto out;
		}
		p11c_http_clear(&h);
		free(b64);
		b64 = NULL;
		if (csr_pem != NULL) {
			free(*csr_pem);
			*csr_pem = NULL;
		}
		r = make_csr(ctx, key, rq, a, bound ? bind : NULL, bind_len, &b64, csr_pem);
		if (r != P11C_OK)
			goto out;
		/* RFC 7030 s4.2.1: base64 of the DER PKCS#10 */
		if ((r = setup(ctx, &h, srv, url)) != P11C_OK)
			goto out;
		h.method = "POST";
		h.content_type = "application/pkcs10";
		h.extra_header = "Content-Transfer-Encoding: base64";
		h.body = b64;
		h.body_len = strlen(b64);
		if (bound) {
			h.expect_binding = bind;
			h.expect_binding_len = bind_len;
		}
		r = p11c_http_do(ctx, &h);
		if (r == P11C_OK || !h.binding_refused)
			break;
		p11c_http_clear(&h);
	}
	if (r != P11C_OK)
		goto out;
	switch (h.status) {
	case 200:
		if ((r = certs_answer(ctx, &h, rq->reenroll ? "POST /simplereenroll" : "POST /simpleenroll", &certs)) !=
		    P11C_OK)
			goto out;
		*cert = leaf_of(certs, key);
		if (!X509_up_ref(*cert)) {
			*cert = NULL;
			r = P11C_ERR_NOMEM;
			goto out;
		}
		*state = P11C_EST_ISSUED;
		break;
	case 202: /* RFC 7030 s4.2.3: accepted, pending; poll again later */
		*state = P11C_EST_PENDING;
		*retry_after = retry_seconds(h.retry_after);
		break;
	default:
		r = unexpected(ctx, &h, rq->reenroll ? "POST /simplereenroll" : "POST /simpleenroll");
		goto out;
	}
	r = P11C_OK;
out:
	if (r != P11C_OK && csr_pem != NULL) {
		free(*csr_pem);
		*csr_pem = NULL;
	}
	OPENSSL_cleanse(bind, sizeof bind);
	sk_X509_pop_free(certs, X509_free);
	free(b64);
	p11c_http_clear(&h);
	return r;
}

p11c_result p11c_est_check(p11c_ctx *ctx, X509 *cert, p11c_key *key, STACK_OF(X509) *cas)
{
	X509_STORE *st = NULL;
	X509_STORE_CTX *sc = NULL;
	p11c_result r = P11C_ERR_VERIFY;
	int i;

	if (ctx == NULL || cert == NULL || key == NULL || cas == NULL)
		return P11C_ERR_ARG;
	if (!p11c_cert_matches(cert, p11c_key_public(key))) {
		p11c_detail(ctx, "the EST server returned a certificate for another key than '%s'; nothing stored",
			    p11c_key_label(key));
		return P11C_ERR_VERIFY;
	}
	if ((st = X509_STORE_new()) == NULL || (sc = X509_STORE_CTX_new()) == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	for (i = 0; i < sk_X509_num(cas); i++)
		if (X509_STORE_add_cert(st, sk_X509_value(cas, i)) != 1) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
	/* the EST CA certificates are anchors, intermediates included */
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	if (X509_STORE_CTX_init(sc, st, cert, NULL) != 1) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	if (X509_verify_cert(sc) != 1) {
		p11c_detail(ctx, "the certificate from the EST server does not verify against its CA "
			    "certificates: %s; nothing stored",
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

/* --- the protocol table (protocol.h) -------------------------------------- */

/* Re-enrollment (RFC 7030 s4.2.2): POST /simplereenroll over mutual TLS
 * with the current key and certificate, for rn->key (the current key or
 * the new one of a rekey), with the current subject and subjectAltName
 * (s4.2.2: they must be identical).  The certificate is returned
 * unchecked: the caller runs p11c_est_check with the CA certificates it
 * kept.  The channel binding goes in when the server asks for it or the
 * record says so (rn->bind, enroll est --bind); rn->tls_max as enrolled. */
static p11c_result est_renew(p11c_ctx *ctx, struct p11c_renewal *rn)
{
	p11c_est_server srv;
	p11c_est_request rq;
	p11c_est_state st = P11C_EST_PENDING;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	long retry = 0;
	p11c_result r;

	if (rn->current_cert == NULL || rn->current == NULL) {
		p11c_detail(ctx, "an EST re-enrollment needs the current certificate");
		return P11C_ERR_ARG;
	}
	memset(&srv, 0, sizeof srv);
	srv.url = rn->server;
	srv.ca_file = rn->ca_file;
	srv.client_key = rn->current;
	srv.client_cert = rn->current_cert;
	srv.timeout_ms = rn->timeout_ms;
	srv.tls_max = rn->tls_max;
	memset(&rq, 0, sizeof rq);
	rq.bind = rn->bind;
	rq.subject = X509_get_subject_name(rn->current_cert);
	sans = X509_get_ext_d2i(rn->current_cert, NID_subject_alt_name, NULL, NULL);
	rq.sans = sans;
	rq.reenroll = 1;
	r = p11c_est_enroll(ctx, &srv, rn->key, &rq, &st, &rn->cert, &retry, NULL);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	ERR_clear_error();
	if (r != P11C_OK)
		return r;
	rn->checked = 0;
	rn->state = st == P11C_EST_ISSUED ? P11C_RENEWAL_ISSUED : P11C_RENEWAL_PENDING;
	return P11C_OK;
}

const struct p11c_protocol p11c_proto_est = {
	.name = "est",
	.description = "EST (RFC 7030; docs/est.md), re-enrollment at /simplereenroll over mutual TLS",
	.needs_csr = 0,
	.renew = est_renew,
};
