/* ACME client (RFC 8555), in memory.  The account key (a token key) signs
 * every request as a JWS (jws.c); the certificate key signs the CSR.
 * Network code: sees EVP_PKEYs, never a session or a PIN.  Every answer is
 * bounded by http.c (P11C_HTTP_MAX_RESPONSE); counts (identifiers,
 * authorizations, challenges, certificates) and waits are bounded here. */
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include <p11cert/acme.h>

#include "acme_int.h"
#include "http.h"
#include "jws.h"
#include "protocol.h"

#define ACME_MAX_NAMES 100       /* identifiers per order */
#define ACME_MAX_CHAIN 10        /* certificates in a downloaded chain */
#define ACME_NONCE_RETRIES 10    /* badNonce: each rejection carries a fresh nonce */
#define ACME_TOKEN_MAX 256       /* challenge token length */
#define ACME_POLL_FIRST_MS 100
#define ACME_POLL_MAX_MS 2000
#define ACME_RETRY_AFTER_MAX_S 60
#define ACME_MSG_MAX 900

struct p11c_acme {
	p11c_ctx *ctx;
	char *dir_url, *ca_file, *ca_pem;
	long timeout_ms, max_wait_ms;
	char *new_nonce, *new_account, *new_order, *revoke_cert, *terms;
	char *key_change;           /* RFC 8555 s7.3.5 (acme_keychange.c) */
	int eab_required;           /* meta.externalAccountRequired */
	char *eab_kid;              /* External Account Binding */
	unsigned char *eab_key;
	size_t eab_len;
	char nonce[128];
	/* the alternate chains of the last order (RFC 8555 s7.4.2) */
	char *alt[3];
	size_t nalt;
	/* the account: key (borrowed), its signer and URL ("kid") */
	p11c_key *acct;
	EVP_PKEY *acct_signer;
	char *kid;
	char *renewal_info, *replaces; /* RFC 9773 (acme_ari.c) */
};

static void req_init(const p11c_acme *a, struct p11c_http *h, const char *url)
{
	memset(h, 0, sizeof *h);
	h->url = url;
	h->ca_file = a->ca_pem ? NULL : a->ca_file;
	h->ca_pem = a->ca_pem;
	h->timeout_ms = a->timeout_ms;
}

static json_t *parse_json(const struct p11c_http *h)
{
	json_error_t je;

	return json_loadb((const char *)h->resp, h->resp_len, JSON_REJECT_DUPLICATES, &je);
}

static const char *jstr(const json_t *o, const char *k)
{
	return json_string_value(json_object_get(o, k));
}

/* "urn:ietf:params:acme:error:badNonce" -> "badNonce" */
static const char *short_type(const char *t)
{
	static const char pfx[] = "urn:ietf:params:acme:error:";

	if (t == NULL)
		return "(no type)";
	return strncmp(t, pfx, sizeof pfx - 1) == 0 ? t + sizeof pfx - 1 : t;
}

/* A problem document (RFC 7807, RFC 8555 s6.7) as one line per
 * identifier: "TYPE: DETAIL" and, for each subproblem (s6.7.1),
 * "; identifier 'NAME': TYPE: DETAIL".  Bounded by out's size. */
static void problem_text(const json_t *p, char *out, size_t len)
{
	const json_t *subs = json_object_get(p, "subproblems"), *s;
	size_t i, used;

	snprintf(out, len, "%.60s: %.300s", short_type(jstr(p, "type")),
		 jstr(p, "detail") ? jstr(p, "detail") : "(no detail)");
	json_array_foreach(subs, i, s) {
		const json_t *id = json_object_get(s, "identifier");

		used = strlen(out);
		if (i >= 10 || used + 2 >= len)
			break;
		snprintf(out + used, len - used, "; identifier '%.100s': %.60s: %.200s",
			 jstr(id, "value") ? jstr(id, "value") : "?", short_type(jstr(s, "type")),
			 jstr(s, "detail") ? jstr(s, "detail") : "(no detail)");
	}
}

/* A non-success answer: the problem document when there is one */
static p11c_result answer_error(p11c_acme *a, const struct p11c_http *h, const char *what)
{
	json_t *p = parse_json(h);
	char msg[ACME_MSG_MAX];
	const char *t = p ? jstr(p, "type") : NULL;
	p11c_result r = P11C_ERR_PROTOCOL;

	if (t != NULL) {
		problem_text(p, msg, sizeof msg);
		p11c_detail(a->ctx, "%s: the ACME server answered %ld %s", what, h->status, msg);
		t = short_type(t);
		/* what the CA decided, not a broken exchange */
		if (strcmp(t, "badNonce") != 0 && strcmp(t, "malformed") != 0 && strcmp(t, "serverInternal") != 0 &&
		    strcmp(t, "badSignatureAlgorithm") != 0)
			r = P11C_ERR_REJECTED;
	} else {
		p11c_detail(a->ctx, "%s: the ACME server answered %ld (%.200s)", what, h->status,
			    h->resp ? (const char *)h->resp : "");
	}
	json_decref(p);
	return r;
}

static p11c_result do_http(p11c_acme *a, struct p11c_http *h, const char *what)
{
	p11c_result r = p11c_http_do(a->ctx, h);

	if (r != P11C_OK)
		p11c_detail(a->ctx, "%s: %s", what, h->err);
	return r;
}

/* a fresh nonce when none is kept (RFC 8555 s7.2) */
static p11c_result nonce_fill(p11c_acme *a)
{
	struct p11c_http h;
	p11c_result r;

	if (a->nonce[0] != '\0')
		return P11C_OK;
	req_init(a, &h, a->new_nonce);
	h.method = "HEAD";
	r = do_http(a, &h, "newNonce");
	if (r == P11C_OK && (h.status != 200 && h.status != 204))
		r = answer_error(a, &h, "newNonce");
	else if (r == P11C_OK && h.replay_nonce[0] == '\0') {
		p11c_detail(a->ctx, "newNonce: the ACME server sent no Replay-Nonce");
		r = P11C_ERR_PROTOCOL;
	}
	if (r == P11C_OK)
		snprintf(a->nonce, sizeof a->nonce, "%s", h.replay_nonce);
	p11c_http_clear(&h);
	return r;
}

static int is_bad_nonce(const struct p11c_http *h)
{
	json_t *p;
	int bad;

	if (h->status != 400)
		return 0;
	p = parse_json(h);
	bad = p != NULL && jstr(p, "type") != NULL && strcmp(short_type(jstr(p, "type")), "badNonce") == 0;
	json_decref(p);
	return bad;
}

/* POST a JWS (RFC 8555 s6.2) to url: with the account's kid, or with its
 * jwk (use_jwk: newAccount).  payload "" is POST-as-GET (s6.3).  A
 * badNonce rejection is retried with the nonce it carries (s6.5),
 * ACME_NONCE_RETRIES times at most.  h is filled (caller clears). */
static p11c_result post_as(p11c_acme *a, EVP_PKEY *signer, EVP_PKEY *pub, const char *url, const char *payload,
			   int use_jwk, const char *accept, struct p11c_http *h, const char *what)
{
	char *body = NULL;
	p11c_result r;
	int attempt;

	if (signer == NULL || (!use_jwk && a->kid == NULL)) {
		p11c_detail(a->ctx, "%s: no ACME account yet (p11c_acme_account)", what);
		return P11C_ERR_ARG;
	}
	for (attempt = 0;; attempt++) {
		if ((r = nonce_fill(a)) != P11C_OK)
			return r;
		r = p11c_jws_sign(a->ctx, signer, pub, url, a->nonce, use_jwk ? NULL : a->kid, payload, &body);
		a->nonce[0] = '\0'; /* used */
		if (r != P11C_OK)
			return r;
		req_init(a, h, url);
		h->method = "POST";
		h->content_type = "application/jose+json";
		h->accept = accept;
		h->body = body;
		h->body_len = strlen(body);
		r = do_http(a, h, what);
		free(body);
		body = NULL;
		if (r != P11C_OK) {
			p11c_http_clear(h); /* a partial answer is not the caller's */
			return r;
		}
		snprintf(a->nonce, sizeof a->nonce, "%s", h->replay_nonce);
		if (attempt < ACME_NONCE_RETRIES && is_bad_nonce(h)) {
			p11c_http_clear(h);
			continue;
		}
		return P11C_OK;
	}
}

static p11c_result post(p11c_acme *a, const char *url, const char *payload, int use_jwk, const char *accept,
			struct p11c_http *h, const char *what)
{
	return post_as(a, a->acct_signer, a->acct ? p11c_key_public(a->acct) : NULL, url, payload, use_jwk, accept, h,
		       what);
}

static int status_ok(long s)
{
	return s == 200 || s == 201;
}

static char *dup_str(const char *s)
{
	return s ? strdup(s) : NULL;
}

p11c_result p11c_acme_new(p11c_ctx *ctx, const p11c_acme_server *srv, p11c_acme **out)
{
	p11c_acme *a = NULL;
	struct p11c_http h;
	json_t *d = NULL;
	p11c_result r = P11C_ERR_NOMEM;

	*out = NULL;
	memset(&h, 0, sizeof h);
	if (ctx == NULL || srv == NULL || srv->directory_url == NULL ||
	    strncmp(srv->directory_url, "https://", 8) != 0) {
		p11c_detail(ctx, "the ACME directory must be an https:// URL");
		return P11C_ERR_ARG;
	}
	if ((a = calloc(1, sizeof *a)) == NULL)
		goto out;
	a->ctx = ctx;
	a->timeout_ms = srv->timeout_ms;
	a->max_wait_ms = srv->max_wait_ms > 0 ? srv->max_wait_ms : 300000;
	if ((a->dir_url = strdup(srv->directory_url)) == NULL ||
	    (srv->ca_file && (a->ca_file = strdup(srv->ca_file)) == NULL) ||
	    (srv->ca_pem && (a->ca_pem = strdup(srv->ca_pem)) == NULL))
		goto out;
	/* RFC 8555 s7.1.1 */
	req_init(a, &h, a->dir_url);
	if ((r = do_http(a, &h, "ACME directory")) != P11C_OK)
		goto out;
	if (h.status != 200) {
		r = answer_error(a, &h, "ACME directory");
		goto out;
	}
	r = P11C_ERR_PROTOCOL;
	if ((d = parse_json(&h)) == NULL || !json_is_object(d) || jstr(d, "newNonce") == NULL ||
	    jstr(d, "newAccount") == NULL || jstr(d, "newOrder") == NULL) {
		p11c_detail(ctx, "%s is not an ACME directory (no newNonce, newAccount, newOrder)", a->dir_url);
		goto out;
	}
	r = P11C_ERR_NOMEM;
	if ((a->new_nonce = strdup(jstr(d, "newNonce"))) == NULL ||
	    (a->new_account = strdup(jstr(d, "newAccount"))) == NULL ||
	    (a->new_order = strdup(jstr(d, "newOrder"))) == NULL)
		goto out;
	if (jstr(d, "keyChange") != NULL && (a->key_change = strdup(jstr(d, "keyChange"))) == NULL)
		goto out;
	if (jstr(d, "revokeCert") != NULL && (a->revoke_cert = strdup(jstr(d, "revokeCert"))) == NULL)
		goto out;
	if (jstr(d, "renewalInfo") != NULL && (a->renewal_info = strdup(jstr(d, "renewalInfo"))) == NULL)
		goto out;
	if (jstr(json_object_get(d, "meta"), "termsOfService") != NULL &&
	    (a->terms = dup_str(jstr(json_object_get(d, "meta"), "termsOfService"))) == NULL)
		goto out;
	a->eab_required = json_is_true(json_object_get(json_object_get(d, "meta"), "externalAccountRequired"));
	*out = a;
	a = NULL;
	r = P11C_OK;
out:
	json_decref(d);
	p11c_http_clear(&h);
	p11c_acme_free(&a);
	return r;
}

void p11c_acme_free(p11c_acme **ap)
{
	p11c_acme *a;
	size_t i;

	if (ap == NULL || (a = *ap) == NULL)
		return;
	free(a->dir_url);
	free(a->ca_file);
	free(a->ca_pem);
	free(a->new_nonce);
	free(a->new_account);
	free(a->new_order);
	free(a->revoke_cert);
	free(a->key_change);
	free(a->terms);
	free(a->kid);
	free(a->renewal_info);
	free(a->replaces);
	for (i = 0; i < a->nalt; i++)
		free(a->alt[i]);
	free(a->eab_kid);
	if (a->eab_key != NULL)
		p11c_wipe(a->eab_key, a->eab_len);
	free(a->eab_key);
	free(a);
	*ap = NULL;
}

p11c_result p11c_acme_set_eab(p11c_acme *a, const char *kid, const unsigned char *mac_key, size_t mac_len)
{
	if (a == NULL || kid == NULL || *kid == '\0' || mac_key == NULL || mac_len == 0 || mac_len > 1024)
		return P11C_ERR_ARG;
	free(a->eab_kid);
	if (a->eab_key != NULL)
		p11c_wipe(a->eab_key, a->eab_len);
	free(a->eab_key);
	a->eab_len = 0;
	if ((a->eab_kid = strdup(kid)) == NULL || (a->eab_key = malloc(mac_len)) == NULL)
		return P11C_ERR_NOMEM;
	memcpy(a->eab_key, mac_key, mac_len);
	a->eab_len = mac_len;
	return P11C_OK;
}

int p11c_acme_eab_required(const p11c_acme *a)
{
	return a != NULL && a->eab_required;
}

p11c_result p11c_acme_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen)
{
	if (s == NULL || out == NULL || outlen == NULL)
		return P11C_ERR_ARG;
	return p11c_b64url_decode(s, len, out, outlen);
}

const char *const *p11c_acme_alternates(const p11c_acme *a, size_t *n)
{
	*n = a != NULL ? a->nalt : 0;
	return a != NULL ? (const char *const *)a->alt : NULL;
}

const char *p11c_acme_terms(const p11c_acme *a)
{
	return a ? a->terms : NULL;
}

/* --- for acme_keychange.c and acme_ari.c (RFC 9773) (acme_int.h) ---------------------- */

p11c_ctx *p11c_acme_ctx(const p11c_acme *a)
{
	return a->ctx;
}

const char *p11c_acme_key_change_url(const p11c_acme *a)
{
	return a->key_change;
}

const char *p11c_acme_kid(const p11c_acme *a)
{
	return a->kid;
}

p11c_key *p11c_acme_account_key(const p11c_acme *a)
{
	return a->acct;
}

p11c_result p11c_acme_post_kid(p11c_acme *a, const char *url, const char *payload, struct p11c_http *h,
			       const char *what)
{
	return post(a, url, payload, 0, NULL, h, what);
}

p11c_result p11c_acme_answer_error(p11c_acme *a, const struct p11c_http *h, const char *what)
{
	return answer_error(a, h, what);
}

const char *p11c_acme_renewal_url(const p11c_acme *a)
{
	return a != NULL ? a->renewal_info : NULL;
}

p11c_result p11c_acme_get(p11c_acme *a, const char *url, struct p11c_http *h, const char *what)
{
	req_init(a, h, url);
	return do_http(a, h, what);
}

p11c_result p11c_acme_set_replaces(p11c_acme *a, const char *cert_id)
{
	char *c = NULL;

	if (a == NULL || (cert_id != NULL && (*cert_id == '\0' || strlen(cert_id) > 512)))
		return P11C_ERR_ARG;
	if (cert_id != NULL && (c = strdup(cert_id)) == NULL)
		return P11C_ERR_NOMEM;
	free(a->replaces);
	a->replaces = c;
	return P11C_OK;
}

static p11c_result account_answer(p11c_acme *a, struct p11c_http *h, char **url)
{
	if (h->location[0] == '\0' || strncmp(h->location, "https://", 8) != 0) {
		p11c_detail(a->ctx, "newAccount: the ACME server sent no https:// Location for the account");
		return P11C_ERR_PROTOCOL;
	}
	free(a->kid);
	if ((a->kid = strdup(h->location)) == NULL || (*url = strdup(h->location)) == NULL)
		return P11C_ERR_NOMEM;
	return P11C_OK;
}

p11c_result p11c_acme_account(p11c_acme *a, p11c_key *account_key, const char *const *contacts, size_t ncontacts,
			      int agree_tos, int create, char **account_url, int *created)
{
	struct p11c_http h;
	json_t *pl = NULL, *cs = NULL, *p = NULL;
	char *s = NULL;
	size_t i;
	p11c_result r;

	*account_url = NULL;
	*created = 0;
	memset(&h, 0, sizeof h);
	if (a == NULL || account_key == NULL)
		return P11C_ERR_ARG;
	a->acct = account_key;
	if ((r = p11c_key_signer(account_key, &a->acct_signer)) != P11C_OK)
		return r;
	/* RFC 8555 s7.3.1: find the account of this key */
	r = post(a, a->new_account, "{\"onlyReturnExisting\":true}", 1, NULL, &h, "newAccount (lookup)");
	if (r != P11C_OK)
		goto out;
	if (status_ok(h.status)) {
		r = account_answer(a, &h, account_url);
		goto out;
	}
	p = parse_json(&h);
	if (h.status != 400 || p == NULL || jstr(p, "type") == NULL ||
	    strcmp(short_type(jstr(p, "type")), "accountDoesNotExist") != 0) {
		r = answer_error(a, &h, "newAccount (lookup)");
		goto out;
	}
	if (!create) {
		p11c_detail(a->ctx, "the ACME server has no account for key '%s'", p11c_key_label(account_key));
		r = P11C_ERR_NOT_FOUND;
		goto out;
	}
	if (a->terms != NULL && !agree_tos) {
		p11c_detail(a->ctx, "the ACME server's terms of service (%.300s) must be agreed to before an account "
			    "is created", a->terms);
		r = P11C_ERR_ARG;
		goto out;
	}
	if (a->eab_required && a->eab_key == NULL) {
		p11c_detail(a->ctx, "the ACME server requires External Account Binding for a new account (a key "
			    "identifier and MAC key from the CA)");
		r = P11C_ERR_ARG;
		goto out;
	}
	/* RFC 8555 s7.3 */
	r = P11C_ERR_NOMEM;
	if ((cs = json_array()) == NULL)
		goto out;
	for (i = 0; i < ncontacts && i < 16; i++)
		if (json_array_append_new(cs, json_string(contacts[i])) != 0)
			goto out;
	if ((pl = json_pack("{s:b}", "termsOfServiceAgreed", agree_tos ? 1 : 0)) == NULL ||
	    (ncontacts > 0 && json_object_set(pl, "contact", cs) != 0))
		goto out;
	if (a->eab_key != NULL) {
		json_t *eab = NULL;

		/* RFC 8555 s7.3.4 */
		if ((r = p11c_jws_eab(a->ctx, a->eab_key, a->eab_len, a->eab_kid, a->new_account,
				      p11c_key_public(account_key), &eab)) != P11C_OK)
			goto out;
		if (json_object_set_new(pl, "externalAccountBinding", eab) != 0) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
		r = P11C_ERR_NOMEM;
	}
	if ((s = json_dumps(pl, JSON_COMPACT)) == NULL)
		goto out;
	p11c_http_clear(&h);
	if ((r = post(a, a->new_account, s, 1, NULL, &h, "newAccount")) != P11C_OK)
		goto out;
	if (!status_ok(h.status)) {
		r = answer_error(a, &h, "newAccount");
		goto out;
	}
	*created = h.status == 201;
	r = account_answer(a, &h, account_url);
out:
	json_decref(p);
	json_decref(pl);
	json_decref(cs);
	free(s);
	p11c_http_clear(&h);
	return r;
}

/* --- orders ------------------------------------------------------------------------------ */

static void authz_failure(const json_t *az, char *msg, size_t len);

struct presented {
	char *type, *id, *token, *keyauth;
};

struct order_state {
	p11c_acme *a;
	const p11c_acme_challenger *ch;
	struct presented pres[ACME_MAX_NAMES];
	size_t npres;
	struct timespec start;
};

static long elapsed_ms(const struct timespec *t0)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (t.tv_sec - t0->tv_sec) * 1000 + (t.tv_nsec - t0->tv_nsec) / 1000000;
}

static void sleep_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (nanosleep(&ts, &ts) != 0)
		;
}

/* How long to wait before polling again (RFC 8555 s7.4, s8.2): the
 * server's Retry-After in seconds when given (capped), else our own
 * backoff; 0 when the order's time is up. */
static long next_wait(struct order_state *o, const struct p11c_http *h, long *backoff)
{
	long w = *backoff, left = o->a->max_wait_ms - elapsed_ms(&o->start);
	char *end = NULL;
	long ra;

	if (h->retry_after[0] != '\0') {
		ra = strtol(h->retry_after, &end, 10);
		if (end != h->retry_after && *end == '\0' && ra >= 0)
			w = (ra > ACME_RETRY_AFTER_MAX_S ? ACME_RETRY_AFTER_MAX_S : ra) * 1000;
	}
	*backoff = *backoff * 2 > ACME_POLL_MAX_MS ? ACME_POLL_MAX_MS : *backoff * 2;
	if (left <= 0)
		return 0;
	if (w > left)
		w = left;
	return w > 0 ? w : 1;
}

/* POST-as-GET url until its "status" is not one of the waiting states
 * (comma-separated), bounded by max_wait_ms.  *obj: the last object. */
static p11c_result poll_status(struct order_state *o, const char *url, const char *waiting, const char *what,
			       json_t **obj)
{
	struct p11c_http h;
	long backoff = ACME_POLL_FIRST_MS, w;
	p11c_result r;
	const char *st;
	char pat[40];

	*obj = NULL;
	for (;;) {
		if ((r = post(o->a, url, "", 0, NULL, &h, what)) != P11C_OK)
			return r;
		if (!status_ok(h.status)) {
			r = answer_error(o->a, &h, what);
			p11c_http_clear(&h);
			return r;
		}
		*obj = parse_json(&h);
		if (*obj == NULL || (st = jstr(*obj, "status")) == NULL) {
			p11c_detail(o->a->ctx, "%s: the ACME server's answer has no status", what);
			p11c_http_clear(&h);
			json_decref(*obj);
			*obj = NULL;
			return P11C_ERR_PROTOCOL;
		}
		snprintf(pat, sizeof pat, ",%.30s,", st);
		if (strstr(waiting, pat) == NULL) {
			p11c_http_clear(&h);
			return P11C_OK;
		}
		w = next_wait(o, &h, &backoff);
		p11c_http_clear(&h);
		if (w == 0) {
			p11c_detail(o->a->ctx, "%s: still '%s' after %ld s (the wait is bounded)", what, st,
				    o->a->max_wait_ms / 1000);
			json_decref(*obj);
			*obj = NULL;
			return P11C_ERR_PENDING;
		}
		json_decref(*obj);
		*obj = NULL;
		sleep_ms(w);
	}
}

/* base64url characters only (RFC 8555 s8.1: the token is used in paths
 * and file names) */
static int token_ok(const char *t)
{
	size_t n = t ? strlen(t) : 0, i;

	if (n < 16 || n > ACME_TOKEN_MAX)
		return 0;
	for (i = 0; i < n; i++)
		if (!((t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z') || (t[i] >= '0' && t[i] <= '9') ||
		      t[i] == '-' || t[i] == '_'))
			return 0;
	return 1;
}

/* Make one pending authorization answerable and tell the server to
 * validate it (RFC 8555 s7.5.1). */
static p11c_result answer_authz(struct order_state *o, const json_t *az, const char *type, const char *thumb,
				const char *what)
{
	const json_t *chs = json_object_get(az, "challenges"), *c, *found = NULL;
	const char *idv = jstr(json_object_get(az, "identifier"), "value");
	char offered[200] = "", err[300] = "";
	struct presented *p;
	struct p11c_http h;
	size_t i, n;
	p11c_result r;

	json_array_foreach(chs, i, c) {
		if (i >= 16)
			break;
		if (jstr(c, "type") != NULL && strcmp(jstr(c, "type"), type) == 0)
			found = c;
		n = strlen(offered);
		if (jstr(c, "type") != NULL && n + 40 < sizeof offered)
			snprintf(offered + n, sizeof offered - n, "%s%.30s", n ? ", " : "", jstr(c, "type"));
	}
	if (found == NULL) {
		p11c_detail(o->a->ctx, "identifier '%.100s': the ACME server offers no %s challenge (it offers: %s)",
			    idv, type, offered[0] ? offered : "none");
		return P11C_ERR_REJECTED;
	}
	if (!token_ok(jstr(found, "token")) || jstr(found, "url") == NULL) {
		p11c_detail(o->a->ctx, "%s: the %s challenge has no URL or a malformed token", what, type);
		return P11C_ERR_PROTOCOL;
	}
	if (o->npres == ACME_MAX_NAMES)
		return P11C_ERR_PROTOCOL;
	p = &o->pres[o->npres];
	/* RFC 8555 s8.1: keyAuthorization = token || '.' || thumbprint */
	if ((p->type = strdup(type)) == NULL || (p->id = strdup(idv)) == NULL ||
	    (p->token = strdup(jstr(found, "token"))) == NULL ||
	    asprintf(&p->keyauth, "%s.%s", p->token, thumb) < 0) {
		p->keyauth = NULL;
		free(p->type);
		free(p->id);
		free(p->token);
		memset(p, 0, sizeof *p);
		return P11C_ERR_NOMEM;
	}
	if (o->ch->present(o->ch->userdata, p->type, p->id, p->token, p->keyauth, err, sizeof err) != 0) {
		p11c_detail(o->a->ctx, "identifier '%.100s': the %s challenge could not be set up: %.300s", idv, type,
			    err[0] ? err : "(no reason given)");
		free(p->type);
		free(p->id);
		free(p->token);
		free(p->keyauth);
		memset(p, 0, sizeof *p);
		return P11C_ERR_REJECTED;
	}
	o->npres++;
	/* RFC 8555 s7.1.6: a challenge already answered (a run killed after
	 * answering it, in an authorization the CA reuses) is not answered
	 * again; the polling waits for its outcome */
	if (jstr(found, "status") != NULL && strcmp(jstr(found, "status"), "pending") != 0)
		return P11C_OK;
	/* RFC 8555 s7.5.1: the client responds with an empty object */
	if ((r = post(o->a, jstr(found, "url"), "{}", 0, NULL, &h, what)) != P11C_OK)
		return r;
	if (!status_ok(h.status))
		r = answer_error(o->a, &h, what);
	p11c_http_clear(&h);
	return r;
}

/* The reason an authorization is invalid: the error of its failed
 * challenge (RFC 8555 s7.1.4, s8) */
void p11c_acme_authz_text(const unsigned char *buf, size_t len, char *msg, size_t msglen)
{
	json_error_t je;
	json_t *az = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);

	if (az == NULL || !json_is_object(az))
		snprintf(msg, msglen, "(not a JSON object)");
	else if (jstr(az, "type") != NULL)
		problem_text(az, msg, msglen);
	else
		authz_failure(az, msg, msglen);
	json_decref(az);
}

static void authz_failure(const json_t *az, char *msg, size_t len)
{
	const json_t *chs = json_object_get(az, "challenges"), *c;
	size_t i;

	snprintf(msg, len, "authorization %.30s", jstr(az, "status") ? jstr(az, "status") : "?");
	json_array_foreach(chs, i, c) {
		if (json_is_object(json_object_get(c, "error"))) {
			problem_text(json_object_get(c, "error"), msg, len);
			return;
		}
	}
}

static void append(char *buf, size_t len, const char *fmt, ...) P11C_PRINTF(3, 4);
static void append(char *buf, size_t len, const char *fmt, ...)
{
	size_t n = strlen(buf);
	va_list ap;

	if (n + 1 >= len)
		return;
	va_start(ap, fmt);
	vsnprintf(buf + n, len - n, fmt, ap);
	va_end(ap);
}

/* RFC 8738 s3: IP addresses as "ip" identifiers, in their textual form */
static json_t *identifier(const char *name)
{
	unsigned char b[16];
	char txt[INET6_ADDRSTRLEN];

	if (inet_pton(AF_INET, name, b) == 1 && inet_ntop(AF_INET, b, txt, sizeof txt) != NULL)
		return json_pack("{s:s, s:s}", "type", "ip", "value", txt);
	if (inet_pton(AF_INET6, name, b) == 1 && inet_ntop(AF_INET6, b, txt, sizeof txt) != NULL)
		return json_pack("{s:s, s:s}", "type", "ip", "value", txt);
	return json_pack("{s:s, s:s}", "type", "dns", "value", name);
}

/* The leaf names identifier NAME in its subjectAltName */
static int leaf_names(X509 *leaf, const char *name)
{
	STACK_OF(GENERAL_NAME) *gens = X509_get_ext_d2i(leaf, NID_subject_alt_name, NULL, NULL);
	unsigned char b[16];
	int i, found = 0, blen = 0;

	if (inet_pton(AF_INET, name, b) == 1)
		blen = 4;
	else if (inet_pton(AF_INET6, name, b) == 1)
		blen = 16;
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens) && !found; i++) {
		const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

		if (blen == 0 && g->type == GEN_DNS)
			found = (size_t)ASN1_STRING_length(g->d.dNSName) == strlen(name) &&
				strncasecmp((const char *)ASN1_STRING_get0_data(g->d.dNSName), name, strlen(name)) == 0;
		else if (blen > 0 && g->type == GEN_IPADD)
			found = ASN1_STRING_length(g->d.iPAddress) == blen &&
				memcmp(ASN1_STRING_get0_data(g->d.iPAddress), b, (size_t)blen) == 0;
	}
	sk_GENERAL_NAME_pop_free(gens, GENERAL_NAME_free);
	return found;
}

/* The downloaded chain: PEM certificates, leaf first; the leaf is for
 * key and names every identifier; each certificate is signed by the next
 * (the last one given is the anchor: the issuer the CA named). */
p11c_result p11c_acme_chain_check(p11c_ctx *ctx, EVP_PKEY *pub, const char *label, const char *const *names,
				  size_t n, const unsigned char *buf, size_t len)
{
	BIO *bio = len <= P11C_HTTP_MAX_RESPONSE ? BIO_new_mem_buf(buf, (int)len) : NULL;
	STACK_OF(X509) *certs = sk_X509_new_null(), *untrusted = NULL;
	X509_STORE *st = NULL;
	X509_STORE_CTX *sc = NULL;
	X509 *x;
	p11c_result r = P11C_ERR_NOMEM;
	size_t i;
	int k;

	if (bio == NULL || certs == NULL)
		goto out;
	while (sk_X509_num(certs) <= ACME_MAX_CHAIN && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(certs, x)) {
			X509_free(x);
			goto out;
		}
	ERR_clear_error();
	r = P11C_ERR_VERIFY;
	if (sk_X509_num(certs) < 2 || sk_X509_num(certs) > ACME_MAX_CHAIN) {
		p11c_detail(ctx, "the ACME server's certificate chain holds %d PEM certificates (2 to %d expected: "
			    "the leaf and its issuer)", sk_X509_num(certs), ACME_MAX_CHAIN);
		goto out;
	}
	x = sk_X509_value(certs, 0);
	if (!p11c_cert_matches(x, pub)) {
		p11c_detail(ctx, "the ACME server's certificate is not for the token key '%s'", label);
		r = P11C_ERR_KEY_MISMATCH;
		goto out;
	}
	for (i = 0; i < n; i++)
		if (!leaf_names(x, names[i])) {
			p11c_detail(ctx, "the ACME server's certificate does not name '%.100s'", names[i]);
			goto out;
		}
	r = P11C_ERR_NOMEM;
	if ((st = X509_STORE_new()) == NULL || (sc = X509_STORE_CTX_new()) == NULL ||
	    (untrusted = sk_X509_new_null()) == NULL)
		goto out;
	for (k = 1; k < sk_X509_num(certs) - 1; k++)
		if (!sk_X509_push(untrusted, sk_X509_value(certs, k)))
			goto out;
	if (!X509_STORE_add_cert(st, sk_X509_value(certs, sk_X509_num(certs) - 1)))
		goto out;
	X509_STORE_set_flags(st, X509_V_FLAG_PARTIAL_CHAIN);
	if (!X509_STORE_CTX_init(sc, st, x, untrusted))
		goto out;
	if (X509_verify_cert(sc) != 1) {
		p11c_detail(ctx, "the ACME server's certificate chain does not verify: %s",
			    X509_verify_cert_error_string(X509_STORE_CTX_get_error(sc)));
		r = P11C_ERR_VERIFY;
		goto out;
	}
	r = P11C_OK;
out:
	ERR_clear_error();
	X509_STORE_CTX_free(sc);
	X509_STORE_free(st);
	sk_X509_free(untrusted);
	sk_X509_pop_free(certs, X509_free);
	BIO_free(bio);
	return r;
}

/* CSR (RFC 8555 s7.4): every identifier in subjectAltName, the first DNS
 * name (when short enough) as CN; base64url DER */
static p11c_result make_csr(p11c_acme *a, p11c_key *key, const char *const *names, size_t n, char **b64)
{
	STACK_OF(GENERAL_NAME) *sans = NULL;
	X509_NAME *subj = X509_NAME_new();
	X509_REQ *req = NULL;
	unsigned char *der = NULL, b[16];
	char san[300], err[200];
	const char *cn = NULL;
	p11c_result r = P11C_ERR_NOMEM;
	size_t i;
	int len;

	*b64 = NULL;
	if (subj == NULL)
		goto out;
	for (i = 0; i < n; i++) {
		int ip = inet_pton(AF_INET, names[i], b) == 1 || inet_pton(AF_INET6, names[i], b) == 1;

		snprintf(san, sizeof san, "%s:%s", ip ? "IP" : "DNS", names[i]);
		if ((r = p11c_san_add(san, &sans, err, sizeof err)) != P11C_OK) {
			p11c_detail(a->ctx, "identifier '%.100s': %s", names[i], err);
			goto out;
		}
		if (cn == NULL && !ip && strlen(names[i]) <= 64)
			cn = names[i];
	}
	if (cn != NULL &&
	    !X509_NAME_add_entry_by_NID(subj, NID_commonName, MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0)) {
		r = p11c_ossl(a->ctx, "CSR subject");
		goto out;
	}
	if ((r = p11c_csr_create(key, subj, sans, NULL, &req)) != P11C_OK)
		goto out;
	r = P11C_ERR_NOMEM;
	if ((len = i2d_X509_REQ(req, &der)) <= 0 || (*b64 = p11c_b64url(der, (size_t)len)) == NULL)
		goto out;
	r = P11C_OK;
out:
	OPENSSL_free(der);
	X509_REQ_free(req);
	X509_NAME_free(subj);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	return r;
}

/* newOrder (RFC 8555 s7.4) for ids, with replaces (RFC 9773 s5) when
 * set; once more without it when the CA refuses it.  h is filled. */
static p11c_result new_order(p11c_acme *a, const json_t *ids, struct p11c_http *h)
{
	json_t *pl = NULL;
	char *s = NULL;
	p11c_result r;
	int with = a->replaces != NULL;

	for (;;) {
		r = P11C_ERR_NOMEM;
		if ((pl = json_pack("{s:O}", "identifiers", ids)) == NULL ||
		    (with && json_object_set_new(pl, "replaces", json_string(a->replaces)) != 0) ||
		    (s = json_dumps(pl, JSON_COMPACT)) == NULL)
			break;
		r = post(a, a->new_order, s, 0, NULL, h, "newOrder");
		json_decref(pl);
		free(s);
		pl = NULL;
		s = NULL;
		if (r != P11C_OK || h->status == 201 || !with || !p11c_acme_replaces_refused(h->status, h->resp, h->resp_len))
			break;
		with = 0;
		p11c_http_clear(h);
	}
	json_decref(pl);
	free(s);
	return r;
}

p11c_result p11c_acme_order(p11c_acme *a, p11c_key *cert_key, const char *const *names, size_t nnames,
			    const char *challenge_type, const p11c_acme_challenger *ch, char **chain_pem)
{
	struct order_state *o = NULL;
	struct p11c_http h;
	json_t *ids = NULL, *pl = NULL, *ord = NULL, *az = NULL, *azs = NULL, *v;
	char *s = NULL, *order_url = NULL, *finalize = NULL, *csr64 = NULL, *cert_url = NULL;
	char thumb[44], msg[P11C_DETAIL_MAX - 100] = "", one[ACME_MSG_MAX];
	const char *st;
	size_t i, nauthz;
	p11c_result r = P11C_ERR_ARG;
	int failed = 0;

	memset(&h, 0, sizeof h);
	if (chain_pem != NULL)
		*chain_pem = NULL;
	if (a == NULL || cert_key == NULL || names == NULL || nnames == 0 || nnames > ACME_MAX_NAMES ||
	    challenge_type == NULL || ch == NULL || ch->present == NULL || chain_pem == NULL) {
		if (a != NULL)
			p11c_detail(a->ctx, "p11c_acme_order: 1 to %d names, a challenge type and a challenger",
				    ACME_MAX_NAMES);
		return P11C_ERR_ARG;
	}
	while (a->nalt > 0)
		free(a->alt[--a->nalt]);
	if ((o = calloc(1, sizeof *o)) == NULL)
		return P11C_ERR_NOMEM;
	o->a = a;
	o->ch = ch;
	clock_gettime(CLOCK_MONOTONIC, &o->start);
	if ((r = p11c_jwk_thumbprint(p11c_key_public(a->acct), thumb)) != P11C_OK) {
		p11c_detail(a->ctx, "the ACME account key has no JWK thumbprint (EC P-256/P-384 or RSA needed)");
		goto out;
	}
	/* RFC 8555 s7.4 */
	r = P11C_ERR_NOMEM;
	if ((ids = json_array()) == NULL)
		goto out;
	for (i = 0; i < nnames; i++)
		if (names[i] == NULL || json_array_append_new(ids, identifier(names[i])) != 0)
			goto out;
	if ((r = new_order(a, ids, &h)) != P11C_OK)
		goto out;
	if (h.status != 201) {
		r = answer_error(a, &h, "newOrder");
		goto out;
	}
	r = P11C_ERR_PROTOCOL;
	if ((ord = parse_json(&h)) == NULL || h.location[0] == '\0' || jstr(ord, "finalize") == NULL ||
	    !json_is_array(json_object_get(ord, "authorizations"))) {
		p11c_detail(a->ctx, "newOrder: the ACME server's order has no Location, finalize or authorizations");
		goto out;
	}
	r = P11C_ERR_NOMEM;
	if ((order_url = strdup(h.location)) == NULL || (finalize = strdup(jstr(ord, "finalize"))) == NULL)
		goto out;
	p11c_http_clear(&h);
	azs = json_incref(json_object_get(ord, "authorizations"));
	nauthz = json_array_size(azs);
	if (nauthz > ACME_MAX_NAMES) {
		p11c_detail(a->ctx, "newOrder: %zu authorizations (at most %d)", nauthz, ACME_MAX_NAMES);
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	/* RFC 8555 s7.5: answer every pending authorization first, then wait
	 * for them all, so the validations run side by side */
	json_array_foreach(azs, i, v) {
		const char *url = json_string_value(v);

		if (url == NULL) {
			r = P11C_ERR_PROTOCOL;
			goto out;
		}
		if ((r = post(a, url, "", 0, NULL, &h, "authorization")) != P11C_OK)
			goto out;
		if (!status_ok(h.status)) {
			r = answer_error(a, &h, "authorization");
			goto out;
		}
		json_decref(az);
		if ((az = parse_json(&h)) == NULL || (st = jstr(az, "status")) == NULL ||
		    jstr(json_object_get(az, "identifier"), "value") == NULL) {
			p11c_detail(a->ctx, "authorization %.200s: no status or identifier", url);
			r = P11C_ERR_PROTOCOL;
			goto out;
		}
		p11c_http_clear(&h);
		/* RFC 8555 s7.1.3: valid ones are reused; final ones are
		 * reported by the polling below, once per identifier */
		if (strcmp(st, "pending") != 0)
			continue;
		if ((r = answer_authz(o, az, challenge_type, thumb, "challenge")) != P11C_OK)
			goto out;
	}
	json_array_foreach(azs, i, v) {
		json_decref(az);
		r = poll_status(o, json_string_value(v), ",pending,processing,", "authorization", &az);
		if (r != P11C_OK)
			goto out;
		if (strcmp(jstr(az, "status"), "valid") != 0) {
			const char *idv = jstr(json_object_get(az, "identifier"), "value");

			authz_failure(az, one, sizeof one);
			append(msg, sizeof msg, "%sidentifier '%.100s': %s", failed ? "; " : "", idv ? idv : "?", one);
			failed++;
		}
	}
	if (failed) {
		p11c_detail(a->ctx, "the ACME server refused %d authorization%s: %s", failed, failed > 1 ? "s" : "",
			    msg);
		r = P11C_ERR_REJECTED;
		goto out;
	}
	/* RFC 8555 s7.1.6: pending -> ready once every authorization is valid */
	json_decref(ord);
	if ((r = poll_status(o, order_url, ",pending,", "order", &ord)) != P11C_OK)
		goto out;
	if (strcmp(jstr(ord, "status"), "ready") != 0 && strcmp(jstr(ord, "status"), "valid") != 0) {
		if (json_is_object(json_object_get(ord, "error")))
			problem_text(json_object_get(ord, "error"), one, sizeof one);
		else
			snprintf(one, sizeof one, "status %.30s", jstr(ord, "status"));
		p11c_detail(a->ctx, "the ACME order failed: %s", one);
		r = P11C_ERR_REJECTED;
		goto out;
	}
	if (strcmp(jstr(ord, "status"), "ready") == 0) {
		/* RFC 8555 s7.4: finalize with the token-signed CSR */
		if ((r = make_csr(a, cert_key, names, nnames, &csr64)) != P11C_OK)
			goto out;
		free(s);
		s = NULL;
		json_decref(pl);
		r = P11C_ERR_NOMEM;
		if ((pl = json_pack("{s:s}", "csr", csr64)) == NULL || (s = json_dumps(pl, JSON_COMPACT)) == NULL)
			goto out;
		if ((r = post(a, finalize, s, 0, NULL, &h, "finalize")) != P11C_OK)
			goto out;
		if (!status_ok(h.status)) {
			r = answer_error(a, &h, "finalize");
			goto out;
		}
		p11c_http_clear(&h);
		json_decref(ord);
		if ((r = poll_status(o, order_url, ",ready,processing,", "order", &ord)) != P11C_OK)
			goto out;
	}
	if (strcmp(jstr(ord, "status"), "valid") != 0 || jstr(ord, "certificate") == NULL) {
		if (json_is_object(json_object_get(ord, "error")))
			problem_text(json_object_get(ord, "error"), one, sizeof one);
		else
			snprintf(one, sizeof one, "status %.30s, no certificate", jstr(ord, "status"));
		p11c_detail(a->ctx, "the ACME order failed after finalize: %s", one);
		r = P11C_ERR_REJECTED;
		goto out;
	}
	r = P11C_ERR_NOMEM;
	if ((cert_url = strdup(jstr(ord, "certificate"))) == NULL)
		goto out;
	/* RFC 8555 s7.4.2 */
	if ((r = post(a, cert_url, "", 0, "application/pem-certificate-chain", &h, "certificate")) != P11C_OK)
		goto out;
	if (h.status != 200) {
		r = answer_error(a, &h, "certificate");
		goto out;
	}
	if ((r = p11c_acme_chain_check(a->ctx, p11c_key_public(cert_key), p11c_key_label(cert_key), names, nnames,
					h.resp, h.resp_len)) != P11C_OK)
		goto out;
	*chain_pem = (char *)h.resp; /* NUL-terminated by http.c */
	h.resp = NULL;
	/* RFC 8555 s7.4.2: alternate chains, each checked like the first;
	 * one that fails is left out (the first chain stands) */
	{
		char alts[3][512];
		int k, nl = h.nlink_alt;

		for (k = 0; k < nl; k++)
			memcpy(alts[k], h.link_alt[k], sizeof alts[k]);
		p11c_http_clear(&h);
		for (k = 0; k < nl; k++) {
			if (post(a, alts[k], "", 0, "application/pem-certificate-chain", &h, "alternate chain") == P11C_OK &&
			    h.status == 200 &&
			    p11c_acme_chain_check(a->ctx, p11c_key_public(cert_key), p11c_key_label(cert_key), names,
						  nnames, h.resp, h.resp_len) == P11C_OK) {
				a->alt[a->nalt++] = (char *)h.resp;
				h.resp = NULL;
			}
			p11c_http_clear(&h);
		}
		p11c_detail(a->ctx, "%s", "");
	}
	r = P11C_OK;
out:
	for (i = 0; o != NULL && i < o->npres; i++) {
		struct presented *p = &o->pres[i];

		if (ch != NULL && ch->cleanup != NULL)
			ch->cleanup(ch->userdata, p->type, p->id, p->token, p->keyauth);
		free(p->type);
		free(p->id);
		free(p->token);
		free(p->keyauth);
	}
	free(o);
	json_decref(ids);
	json_decref(pl);
	json_decref(ord);
	json_decref(az);
	json_decref(azs);
	free(s);
	free(order_url);
	free(finalize);
	free(csr64);
	free(cert_url);
	p11c_http_clear(&h);
	return r;
}

/* Its line in the protocol table (protocol.h): records of enroll acme say
 * "acme"; renewal is a new order (RFC 8555 s7.4), driven by the CLI. */
const struct p11c_protocol p11c_proto_acme = {
	"acme",
	"ACME (RFC 8555; docs/acme.md)",
	0,
	NULL,
};

/* --- revocation (RFC 8555 s7.6) ---------------------------------------------------------- */

p11c_result p11c_acme_revoke(p11c_acme *a, X509 *cert, int reason, p11c_key *signer_key, int use_jwk)
{
	struct p11c_http h;
	json_t *pl = NULL, *p = NULL;
	EVP_PKEY *signer = NULL;
	unsigned char *der = NULL;
	char *b64 = NULL, *s = NULL;
	p11c_result r = P11C_ERR_ARG;
	int len;

	memset(&h, 0, sizeof h);
	if (a == NULL || cert == NULL || reason > 10)
		return P11C_ERR_ARG;
	if (a->revoke_cert == NULL) {
		p11c_detail(a->ctx, "the ACME directory %s has no revokeCert", a->dir_url);
		return P11C_ERR_PROTOCOL;
	}
	if (use_jwk) {
		/* s7.6: signed by the certificate's key, with a jwk header */
		if (signer_key == NULL)
			return P11C_ERR_ARG;
		if ((r = p11c_key_signer(signer_key, &signer)) != P11C_OK)
			return r;
	} else if (a->kid == NULL) {
		p11c_detail(a->ctx, "revokeCert: no ACME account yet (p11c_acme_account)");
		return P11C_ERR_ARG;
	}
	r = P11C_ERR_NOMEM;
	if ((len = i2d_X509(cert, &der)) <= 0 || (b64 = p11c_b64url(der, (size_t)len)) == NULL)
		goto out;
	if ((pl = json_pack("{s:s}", "certificate", b64)) == NULL ||
	    (reason >= 0 && json_object_set_new(pl, "reason", json_integer(reason)) != 0) ||
	    (s = json_dumps(pl, JSON_COMPACT)) == NULL)
		goto out;
	if (use_jwk)
		r = post_as(a, signer, p11c_key_public(signer_key), a->revoke_cert, s, 1, NULL, &h, "revokeCert");
	else
		r = post(a, a->revoke_cert, s, 0, NULL, &h, "revokeCert");
	if (r != P11C_OK)
		goto out;
	if (h.status == 200) {
		r = P11C_OK;
		goto out;
	}
	p = parse_json(&h);
	if (p != NULL && jstr(p, "type") != NULL && strcmp(short_type(jstr(p, "type")), "alreadyRevoked") == 0) {
		p11c_detail(a->ctx, "revokeCert: the certificate is already revoked (%.300s)",
			    jstr(p, "detail") ? jstr(p, "detail") : "alreadyRevoked");
		r = P11C_ERR_REJECTED;
		goto out;
	}
	r = answer_error(a, &h, "revokeCert");
out:
	json_decref(p);
	json_decref(pl);
	free(s);
	free(b64);
	OPENSSL_free(der);
	p11c_http_clear(&h);
	return r;
}
