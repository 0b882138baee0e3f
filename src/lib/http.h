/* HTTPS for the enrollment clients, on libcurl.  Internal.
 * The network code never sees a PIN or a session: it gets an EVP_PKEY
 * whose private operations the key holder performs. */
#ifndef P11C_HTTP_H
#define P11C_HTTP_H

#include <openssl/ssl.h>

#include "internal.h"

#define P11C_HTTP_MAX_RESPONSE (256 * 1024)

struct p11c_http {
	/* request */
	const char *url;
	const char *method;               /* "GET" (default), "POST" or "HEAD" */
	const char *content_type;         /* for POST bodies */
	const char *if_modified_since;    /* HTTP-date or NULL */
	const char *accept;               /* Accept header or NULL (ACME certificate download) */
	const char *extra_header;         /* one more "Name: value" or NULL (EST's Content-Transfer-Encoding) */
	const void *body;
	size_t body_len;
	const char *user_agent;
	long timeout_ms;                  /* whole request; 0: 30 s */
	/* trust: a file, PEM in memory, or the system store (neither set).
	 * Peer verification is always on, except... */
	const char *ca_file;
	const char *ca_pem;
	/* ...the shared-token bootstrap: the server must present exactly one
	 * self-signed certificate whose CN is expect_cn; the HMAC then
	 * authenticates it (docs/protocols.md s2) */
	int bootstrap;
	const char *expect_cn;
	/* ...and the EST trust bootstrap (RFC 7030 s4.1.1): no peer check at
	 * all; the caller accepts the answer only when it holds the CA
	 * certificate whose fingerprint the user gave.  No credentials go
	 * over such a connection (user/password and client_key are refused). */
	int unverified;
	/* HTTP Basic (RFC 7617), over verified TLS only; borrowed */
	const char *user;
	const char *password;
	int tls_max;                      /* 0: any; 12: TLS 1.2 at most; 13 */
	/* channel binding (RFC 7030 s3.5): want_binding records the binding of
	 * the connection the request goes over; expect_binding aborts the
	 * request before a byte is sent unless its connection has exactly that
	 * binding (the connection a CSR was bound to) */
	int want_binding;
	const unsigned char *expect_binding;
	size_t expect_binding_len;
	unsigned char binding[64];        /* out: tls-unique or tls-exporter */
	size_t binding_len;
	int tls_version;                  /* out with the binding: TLS1_2_VERSION... */
	int binding_refused;              /* out: expect_binding stopped the request */
	/* client certificate (mTLS with the token key) */
	EVP_PKEY *client_key;
	X509 *client_cert;
	/* response */
	long status;
	unsigned char *resp;              /* NUL-terminated */
	size_t resp_len;
	char content_type_out[128];
	char last_modified[64];
	char server[64];                  /* Server header, "" when none */
	X509 *peer_cert;                  /* bootstrap: the server's certificate */
	/* ACME (RFC 8555 s6.5, s7.3, s7.4): "" when absent or too long */
	char replay_nonce[128];
	char location[1024];
	char retry_after[64];
	/* RFC 8555 s7.4.2: Link: <URL>;rel="alternate", at most 3 kept */
	char link_alt[3][512];
	int nlink_alt;
	char err[512];
};

/* Perform the request.  HTTP statuses are not errors: look at h->status.
 * P11C_ERR_NETWORK / P11C_ERR_TLS / P11C_ERR_PROTOCOL with h->err and the
 * ctx detail set otherwise. */
P11C_HIDDEN p11c_result p11c_http_do(p11c_ctx *ctx, struct p11c_http *h);
/* The channel binding of a TLS connection (RFC 7030 s3.5): tls-unique
 * (RFC 5929 s3: the first Finished message of the handshake) on TLS 1.2,
 * tls-exporter (RFC 9266: the 32-byte exporter "EXPORTER-Channel-Binding"
 * with an empty context) on TLS 1.3.  The length, 0 when there is none. */
P11C_HIDDEN size_t p11c_tls_binding(SSL *ssl, unsigned char *out, size_t cap);
/* Close the connection kept for the next request (p11c_ctx_free does). */
P11C_HIDDEN void p11c_http_release(p11c_ctx *ctx);
/* Free the response fields; the request fields are borrowed. */
P11C_HIDDEN void p11c_http_clear(struct p11c_http *h);

/* What the enrollment clients make of an answer, without the network
 * (tests/fuzz/fuzz_answers.c feeds them).  resp may lack a NUL. */
/* "WHAT: the CA answered STATUS TITLE: DETAIL" from problem+json, else the
 * first 200 bytes; returns P11C_ERR_PROTOCOL. */
P11C_HIDDEN p11c_result p11c_caramel_unexpected(p11c_ctx *ctx, long status, const unsigned char *resp,
						size_t len, const char *what);
/* The answer to GET /root.crt: status 200 and a PEM or DER certificate. */
P11C_HIDDEN p11c_result p11c_caramel_ca_answer(p11c_ctx *ctx, const char *url, long status,
					       const unsigned char *resp, size_t len, X509 **ca);
/* p11c_caramel_check with the key's public key and label. */
P11C_HIDDEN p11c_result p11c_caramel_check_pub(p11c_ctx *ctx, X509 *cert, EVP_PKEY *pub, const char *label,
					       X509 *ca, const char *client_id);
/* The shared-token answer: status, JSON, response HMAC over the TLS
 * peer's key, certificate signed by the peer and for pub. */
P11C_HIDDEN p11c_result p11c_token_answer(p11c_ctx *ctx, const char *url, long status,
					  const unsigned char *resp, size_t resp_len,
					  const unsigned char *token, size_t token_len, X509 *peer,
					  EVP_PKEY *pub, const char *label, X509 **cert_out);

#endif
