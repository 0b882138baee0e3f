/* The shared-token protocol, server side (NiFi TLS toolkit server mode,
 * docs/protocols.md s2), with what upstream lacks: proof of possession, a
 * DN/SAN policy, a rate limit on wrong HMACs, the token never logged. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "serve.h"

static void reply_json(httpd_req *r, int status, const char *hmac, const char *cert, const char *error)
{
	char *body = p11c_token_response_json(hmac, cert, error);

	httpd_req_note(r, "token", error);
	httpd_reply(r, status, "application/json", NULL, body, body ? strlen(body) : 0);
	free(body);
}

/* Peer address without the port. */
static void peer_addr(httpd_req *r, char *buf, size_t len)
{
	const char *p = httpd_req_peer(r);
	const char *colon = p ? strrchr(p, ':') : NULL;
	size_t n = colon ? (size_t)(colon - p) : (p ? strlen(p) : 0);

	if (n >= len)
		n = len - 1;
	memcpy(buf, p ? p : "", n);
	buf[n] = '\0';
}

static struct rate_slot *rate_slot(struct server *s, const char *addr, time_t now)
{
	struct rate_slot *oldest = &s->rate[0];
	size_t i;

	for (i = 0; i < RATE_SLOTS; i++) {
		if (strcmp(s->rate[i].peer, addr) == 0) {
			if (now - s->rate[i].window >= 60) {
				s->rate[i].window = now;
				s->rate[i].failures = 0;
			}
			return &s->rate[i];
		}
		if (s->rate[i].window < oldest->window)
			oldest = &s->rate[i];
	}
	snprintf(oldest->peer, sizeof oldest->peer, "%s", addr);
	oldest->window = now;
	oldest->failures = 0;
	return oldest;
}

/* "CN=a, OU=NIFI" and "CN=a,OU=NIFI" compare equal. */
static void squeeze(const char *in, char *out, size_t len)
{
	size_t j = 0;

	for (; *in && j + 1 < len; in++) {
		if (*in == ' ' && j > 0 && (out[j - 1] == ',' || out[j - 1] == '='))
			continue;
		if (*in == ' ' && (in[1] == ',' || in[1] == '='))
			continue;
		out[j++] = *in;
	}
	out[j] = '\0';
}

/* Whether the DN, printed with `flags`, ends with the RDNs in `want`
 * (already squeezed). */
static int dn_ends_with(const X509_NAME *n, unsigned long flags, const char *want)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, dn[1024];
	long len;
	size_t dl, wl = strlen(want);
	int ok = 0;

	if (b == NULL || X509_NAME_print_ex(b, n, 0, flags) < 0)
		goto out;
	len = BIO_get_mem_data(b, &data);
	snprintf(dn, sizeof dn, "%.*s", (int)len, data);
	squeeze(dn, dn, sizeof dn);
	dl = strlen(dn);
	/* whole RDNs only: "OU=NIFI" matches "CN=a,OU=NIFI", not "CN=a,OU=XNIFI" */
	ok = dl >= wl && strcasecmp(dn + dl - wl, want) == 0 && (dl == wl || dn[dl - wl - 1] == ',');
out:
	BIO_free(b);
	return ok;
}

/* The suffix is written the way clients write their DN string, "CN=a,
 * OU=NIFI".  p11cert and OpenSSL read that as RFC 2253 (last RDN first, so
 * OU=NIFI is encoded first); the NiFi Java client builds its CSR with
 * BouncyCastle's X500Name, which encodes the RDNs in string order (CN=a
 * first; docs/protocols.md s2).  Accept the suffix in either reading. */
static int dn_ok(const char *suffix, const X509_NAME *n)
{
	char want[512];

	if (suffix == NULL || *suffix == '\0')
		return 1;
	squeeze(suffix, want, sizeof want);
	return dn_ends_with(n, XN_FLAG_RFC2253, want) ||
	       dn_ends_with(n, XN_FLAG_RFC2253 & ~XN_FLAG_DN_REV, want);
}

void token_handle(struct server *s, httpd_req *r)
{
	const unsigned char *body;
	size_t len;
	char *hmac = NULL, *csr = NULL, *cert = NULL, err[256], want[64], resp[64], addr[64];
	X509_REQ *req = NULL;
	BIO *b = NULL;
	EVP_PKEY *pk;
	struct store_request q;
	struct rate_slot *slot;
	time_t now = time(NULL);
	int rc;

	memset(&q, 0, sizeof q);
	httpd_req_note(r, "token", NULL);
	if (s->token == NULL) {
		reply_json(r, 404, NULL, NULL, "shared-token enrollment is not enabled");
		goto out;
	}
	peer_addr(r, addr, sizeof addr);
	slot = rate_slot(s, addr, now);
	if (s->ca->cfg.token_rate_limit > 0 && slot->failures >= s->ca->cfg.token_rate_limit) {
		reply_json(r, 429, NULL, NULL, "too many wrong HMACs from this address; wait a minute");
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
	if (p11c_token_hmac(s->token, s->token_len, pk, want, sizeof want) != P11C_OK) {
		reply_json(r, 500, NULL, NULL, "internal error");
		goto out;
	}
	if (!p11c_token_hmac_eq(hmac, want)) {
		slot->failures++;
		reply_json(r, 403, NULL, NULL, "forbidden");
		goto out;
	}
	/* proof of possession: upstream never checks this */
	if (X509_REQ_verify(req, pk) != 1) {
		reply_json(r, 400, NULL, NULL, "csr signature does not verify");
		goto out;
	}
	if (!ca_key_ok(pk, err, sizeof err)) {
		reply_json(r, 400, NULL, NULL, err);
		goto out;
	}
	if (!dn_ok(s->ca->cfg.token_dn_suffix, X509_REQ_get_subject_name(req))) {
		snprintf(err, sizeof err, "DN not allowed: it must end with %s", s->ca->cfg.token_dn_suffix);
		reply_json(r, 403, NULL, NULL, err);
		goto out;
	}
	if (!ca_sans_ok(s->ca, req, err, sizeof err)) {
		reply_json(r, 403, NULL, NULL, err);
		goto out;
	}
	rc = ca_add_request(s->ca, csr, strlen(csr), req, "token", REQ_PENDING, &q);
	if (rc < 0 || (q.state == REQ_REJECTED)) {
		reply_json(r, rc < 0 ? 500 : 403, NULL, NULL, rc < 0 ? "database error" : "request rejected");
		goto out;
	}
	if (ca_sign_request(s->ca, &q, LIFETIME_SHORT, PROFILE_TOKEN, &cert, now) != 0) {
		reply_json(r, 500, NULL, NULL, "signing failed");
		goto out;
	}
	/* response HMAC over the CA's public key: the client recomputes it
	 * over the key of the TLS peer it talked to */
	if (p11c_token_hmac(s->token, s->token_len, X509_get0_pubkey(s->ca->cert), resp, sizeof resp) !=
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
