/* The shared-token protocol, server side (NiFi TLS toolkit server mode,
 * docs/protocols.md s2), with what upstream lacks: proof of possession, a
 * DN/SAN policy, a rate limit on wrong HMACs, the token never logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <openssl/pem.h>

#include "request.h"

static void reply_json_h(httpd_req *r, int status, const char *const *headers, const char *hmac,
			 const char *cert, const char *error)
{
	char *body = p11c_token_response_json(hmac, cert, error);

	httpd_req_note(r, "token", error);
	httpd_reply(r, status, "application/json", headers, body, body ? strlen(body) : 0);
	free(body);
}

static void reply_json(httpd_req *r, int status, const char *hmac, const char *cert, const char *error)
{
	reply_json_h(r, status, NULL, hmac, cert, error);
}

/* Peer address without the port (request.h). */
void peer_addr(httpd_req *r, char *buf, size_t len)
{
	const char *p = httpd_req_peer(r);
	const char *colon = p ? strrchr(p, ':') : NULL;
	size_t n = colon ? (size_t)(colon - p) : (p ? strlen(p) : 0);

	if (n >= len)
		n = len - 1;
	memcpy(buf, p ? p : "", n);
	buf[n] = '\0';
}

/* token-dn-suffix as parsed RDNs (RFC 4514 s3 string syntax): compared
 * with the request's DN entry by entry, type and value, never as text (a
 * DN cut to a buffer, or an escaped comma "OU=x\,OU=NIFI" inside one
 * value, must not pass). */
#define SUFFIX_MAX_RDNS 16

struct rdn {
	int nid;
	size_t len;
	char val[256];
};

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* "CN=a, OU=NIFI" -> [{CN,"a"}, {OU,"NIFI"}] in written order; -1 when
 * malformed (multi-valued RDNs with '+' included). */
static int parse_suffix(const char *in, struct rdn *out, size_t max, size_t *n)
{
	const char *p = in;

	*n = 0;
	while (*p != '\0') {
		struct rdn *r;
		char type[64];
		size_t tl = 0, trail = 0;

		if (*n == max)
			return -1;
		r = &out[(*n)++];
		memset(r, 0, sizeof *r);
		while (*p == ' ')
			p++;
		while (*p != '\0' && *p != '=' && *p != ' ' && tl + 1 < sizeof type)
			type[tl++] = *p++;
		type[tl] = '\0';
		while (*p == ' ')
			p++;
		if (*p++ != '=' || (r->nid = OBJ_txt2nid(type)) == NID_undef)
			return -1;
		while (*p == ' ')
			p++;
		/* value: up to an unescaped ',' */
		while (*p != '\0' && *p != ',') {
			char c = *p++;

			if (c == '+' || c == '"' || c == ';' || c == '<' || c == '>')
				return -1;
			if (c == '\\') {
				int h1 = hexval(p[0]), h2 = h1 >= 0 ? hexval(p[1]) : -1;

				if (h1 >= 0 && h2 >= 0) {
					c = (char)(h1 * 16 + h2);
					p += 2;
				} else if (*p != '\0' && strchr(" \"#+,;<=>\\", *p) != NULL) {
					c = *p++;
				} else {
					return -1;
				}
				trail = 0;
			} else {
				trail = c == ' ' ? trail + 1 : 0;
			}
			if (r->len + 1 >= sizeof r->val)
				return -1;
			r->val[r->len++] = c;
		}
		r->len -= trail; /* unescaped trailing spaces */
		if (r->len == 0)
			return -1;
		if (*p == ',')
			p++;
	}
	return *n > 0 ? 0 : -1;
}

/* entry i of n equals r: same type, same value (ASCII case folded), and
 * a single-valued RDN of its own */
static int entry_is(const X509_NAME *n, int i, const struct rdn *r)
{
	const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
	int cnt = X509_NAME_entry_count(n), set = X509_NAME_ENTRY_set(e);
	unsigned char *u = NULL;
	int ul, ok;

	if (OBJ_obj2nid(X509_NAME_ENTRY_get_object(e)) != r->nid)
		return 0;
	if ((i > 0 && X509_NAME_ENTRY_set(X509_NAME_get_entry(n, i - 1)) == set) ||
	    (i + 1 < cnt && X509_NAME_ENTRY_set(X509_NAME_get_entry(n, i + 1)) == set))
		return 0;
	ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
	ok = ul >= 0 && (size_t)ul == r->len && strncasecmp((const char *)u, r->val, r->len) == 0;
	OPENSSL_free(u);
	return ok;
}

/* The suffix is written the way clients write their DN string, "CN=a,
 * OU=NIFI".  p11cert and OpenSSL read that as RFC 4514 (last RDN first, so
 * OU=NIFI is encoded first); the NiFi Java client builds its CSR with
 * BouncyCastle's X500Name, which encodes the RDNs in string order (CN=a
 * first; docs/protocols.md s2).  Accept the suffix in either reading.
 * 1 ok, 0 not, -1 the suffix setting does not parse. */
int ca_dn_suffix_ok(const char *suffix, const X509_NAME *n)
{
	struct rdn want[SUFFIX_MAX_RDNS];
	size_t k = 0, j;
	int cnt = X509_NAME_entry_count(n), fwd = 1, rev = 1;

	if (suffix == NULL || *suffix == '\0')
		return 1;
	if (parse_suffix(suffix, want, SUFFIX_MAX_RDNS, &k) != 0)
		return -1;
	if ((size_t)cnt < k)
		return 0;
	for (j = 0; j < k; j++) {
		/* RFC 4514 reading: printed last-first, so the first k DER entries */
		rev = rev && entry_is(n, (int)(k - 1 - j), &want[j]);
		/* string-order reading: the last k DER entries */
		fwd = fwd && entry_is(n, cnt - (int)k + (int)j, &want[j]);
	}
	return rev || fwd;
}

static void token_handle(const struct ca_request *rq)
{
	httpd_req *r = rq->r;
	const unsigned char *body;
	size_t len;
	char *hmac = NULL, *csr = NULL, *cert = NULL, err[256], want[64], resp[64], addr[64];
	X509_REQ *req = NULL;
	BIO *b = NULL;
	EVP_PKEY *pk;
	struct store_request q;
	time_t now = time(NULL);
	long wait;
	int rc;

	memset(&q, 0, sizeof q);
	httpd_req_note(r, "token", NULL);
	if (rq->token == NULL) {
		reply_json(r, 404, NULL, NULL, "shared-token enrollment is not enabled");
		goto out;
	}
	/* every answer below needs the store */
	if (reply_store_down(rq, 1))
		goto out;
	peer_addr(r, addr, sizeof addr);
	/* evaluated only while the address and the server may guess: a
	 * refused request learns nothing about the token (ratelimit.h) */
	if ((wait = ratelimit_check(rq->rl, addr, ratelimit_now_ms())) > 0 ||
	    (wait = ca_guess_wait(rq->ca, addr)) > 0) { /* this instance, then all (PostgreSQL) */
		char secs[24], msg[128];
		const char *hdr[] = { "Retry-After", secs, NULL };

		snprintf(secs, sizeof secs, "%ld", wait);
		snprintf(msg, sizeof msg, "too many wrong HMACs from this address or in total; retry in %ld s",
			 wait);
		reply_json_h(r, 429, hdr, NULL, NULL, msg);
		goto out;
	}
	body = httpd_req_body(r, &len);
	if (p11c_token_request_parse((const char *)body, len, &hmac, &csr, err, sizeof err) != P11C_OK) {
		reply_json(r, 400, NULL, NULL, err);
		goto out;
	}
	b = BIO_new_mem_buf(csr, -1);
	req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	pk = req ? X509_REQ_get0_pubkey(req) : NULL;
	if (pk == NULL) {
		reply_json(r, 400, NULL, NULL, "csr is not a PEM certificate request");
		goto out;
	}
	if (p11c_token_hmac(rq->token, rq->token_len, pk, want, sizeof want) != P11C_OK) {
		reply_json(r, 500, NULL, NULL, "internal error");
		goto out;
	}
	if (!p11c_token_hmac_eq(hmac, want)) {
		ratelimit_fail(rq->rl, addr, ratelimit_now_ms());
		ca_guess_fail(rq->ca, addr);
		reply_json(r, 403, NULL, NULL, "forbidden");
		goto out;
	}
	/* proof of possession: upstream never checks this */
	if (X509_REQ_verify(req, pk) != 1) {
		reply_json(r, 400, NULL, NULL, "csr signature does not verify");
		goto out;
	}
	/* key, signature hash, DN (size, one CN, no NUL or control characters) */
	if (!ca_csr_ok(req, err, sizeof err)) {
		reply_json(r, 400, NULL, NULL, err);
		goto out;
	}
	rc = ca_dn_suffix_ok(rq->ca->cfg.token_dn_suffix, X509_REQ_get_subject_name(req));
	if (rc < 0) {
		ca_err("token-dn-suffix '%s' is not a DN (RFC 4514: TYPE=value, comma separated)",
		       rq->ca->cfg.token_dn_suffix);
		reply_json(r, 500, NULL, NULL, "internal error");
		goto out;
	}
	if (rc == 0) {
		snprintf(err, sizeof err, "DN not allowed: it must end with %s", rq->ca->cfg.token_dn_suffix);
		reply_json(r, 403, NULL, NULL, err);
		goto out;
	}
	/* DNS:<CN> must match san-patterns too here: a token holder names itself */
	if (!ca_sans_policy(rq->ca, req, 0, err, sizeof err)) {
		reply_json(r, 403, NULL, NULL, err);
		goto out;
	}
	/* the request and its certificate in one transaction (ca.h) */
	rc = ca_enroll_now(rq->ca, csr, strlen(csr), req, "token", LIFETIME_SHORT, PROFILE_TOKEN, &q, &cert, now);
	if (rc != 0) {
		if (rc > 0 || !reply_store_down(rq, 1))
			reply_json(r, rc > 0 ? 403 : 500, NULL, NULL,
				   rc == 3 ? "request rejected" : rc == 2 ? "key revoked" : "signing failed");
		goto out;
	}
	/* response HMAC over the CA's public key: the client recomputes it
	 * over the key of the TLS peer it talked to */
	if (p11c_token_hmac(rq->token, rq->token_len, X509_get0_pubkey(rq->ca->cert), resp, sizeof resp) !=
	    P11C_OK) {
		reply_json(r, 500, NULL, NULL, "internal error");
		goto out;
	}
	reply_json(r, 200, resp, cert, NULL);
	httpd_req_note(r, "token", "signed");
out:
	OPENSSL_cleanse(want, sizeof want);
	OPENSSL_cleanse(resp, sizeof resp);
	store_request_clear(&q);
	free(hmac);
	free(csr);
	free(cert);
	X509_REQ_free(req);
	BIO_free(b);
}

/* p11ca's renewal over mTLS, next to the token protocol (docs/ca.md) */
static int renew_match(const struct ca_request *rq)
{
	return strcmp(httpd_req_path(rq->r), "/renew") == 0 &&
	       (rq->listener == LISTENER_TOKEN || rq->token_on_main);
}

/* upstream ignores method and path on its token port; on the main
 * listener the protocol has POST / */
static int token_match(const struct ca_request *rq)
{
	return rq->listener == LISTENER_TOKEN ||
	       (rq->token_on_main && strcmp(httpd_req_path(rq->r), "/") == 0 &&
		strcmp(httpd_req_method(rq->r), "POST") == 0);
}

/* both sign: the CSR of a request with the right HMAC (whatever the
 * method, as upstream), and /renew */
static int token_offload(const struct ca_request *rq)
{
	(void)rq;
	return 1;
}

static const struct ca_route sharedtoken_routes[] = {
	{ renew_match, token_renew_handle, token_offload },
	{ token_match, token_handle, token_offload },
};

const struct ca_protocol ca_proto_sharedtoken = {
	"token", "shared token (NiFi TLS toolkit), with p11ca's POST /renew", sharedtoken_routes,
	sizeof sharedtoken_routes / sizeof sharedtoken_routes[0],
};

