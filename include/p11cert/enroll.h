/*
 * Enrollment clients: Caramel and the shared-token protocol (NiFi TLS
 * toolkit client mode).  docs/enroll.md; wire facts in docs/protocols.md.
 * The token key signs the CSR and authenticates TLS; it never leaves the
 * token.  Nothing here writes files: the CLI (or the application) stores
 * what comes back.
 */
#ifndef P11CERT_ENROLL_H
#define P11CERT_ENROLL_H

#include <p11cert/p11cert.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- Caramel ------------------------------------------------------------ */

typedef struct {
	const char *server;     /* "host" or "host:port" (https) */
	const char *ca_file;    /* HTTPS trust anchors in a file, or */
	const char *ca_pem;     /* in memory; both NULL: the system store */
	const char *client_id;  /* for the User-Agent "p11cert/VERSION (ID)" */
	long timeout_ms;        /* per request; 0: 30 s */
} p11c_caramel_server;

typedef enum {
	P11C_CARAMEL_SIGNED = 0,    /* a certificate came back */
	P11C_CARAMEL_UNCHANGED,     /* 304: ours is current */
	P11C_CARAMEL_PENDING,       /* 202: waiting for the CA */
	P11C_CARAMEL_REJECTED,      /* 403: rejected by an administrator */
} p11c_caramel_state;

/* GET /root.crt over verified TLS; the CA certificate (caller frees). */
P11C_API p11c_result p11c_caramel_fetch_ca(p11c_ctx *ctx, const p11c_caramel_server *srv,
					   X509 **ca);
/* The request: subject = CA subject with CN = client_id (at most 64
 * characters), token-signed, canonical PEM (caller frees *pem). */
P11C_API p11c_result p11c_caramel_csr(p11c_key *key, X509 *ca, const char *client_id,
				      char **pem, size_t *len);
/* One round: GET /{sha256 of the PEM}; when the CA does not know it (404),
 * POST it and GET again.  mtls_cert (may be NULL) is presented with the
 * token key as TLS client certificate.  if_modified_since (HTTP-date, may
 * be NULL) lets the server answer 304.  On SIGNED *cert_pem is the PEM. */
P11C_API p11c_result p11c_caramel_poll(p11c_ctx *ctx, const p11c_caramel_server *srv,
				       const char *csr_pem, size_t csr_len, p11c_key *key,
				       X509 *mtls_cert, const char *if_modified_since,
				       p11c_caramel_state *state, char **cert_pem);
/* The checks before a certificate is kept: its public key is the token
 * key, it chains to ca, its CN is client_id, it is valid now. */
P11C_API p11c_result p11c_caramel_check(p11c_ctx *ctx, X509 *cert, p11c_key *key, X509 *ca,
					const char *client_id);

/* Library mode (the phone case): a fresh UUID client id (unless given),
 * post, poll an autosigning server until signed or timeout_ms, check.
 * Everything is returned in memory; no file is read or written.
 * trust_pem: the CA certificate the application ships (also the HTTPS
 * trust anchor). */
typedef struct {
	char *client_id;
	char *cert_pem;
	char *ca_pem;
	char *csr_pem;
} p11c_enrollment;

P11C_API p11c_result p11c_caramel_enroll_mem(p11c_ctx *ctx, p11c_key *key, const char *server,
					     const char *trust_pem, const char *client_id,
					     long timeout_ms, p11c_enrollment *out);
P11C_API void p11c_enrollment_clear(p11c_enrollment *e);
/* A random (version 4) UUID, lower case, into out[37]. */
P11C_API p11c_result p11c_uuid4(char out[37]);

/* The Server header of the last HTTP answer this handle received ("" when
 * it had none).  p11ca sends "p11ca"; upstream servers send what their
 * front end sends, if anything. */
P11C_API const char *p11c_ctx_server_software(const p11c_ctx *ctx);

/* Poll backoff of the Caramel clients: 0.87 s * 2^attempt, capped at
 * 23 s, +-15 % jitter.  Milliseconds. */
P11C_API long p11c_caramel_backoff_ms(unsigned attempt);

/* --- shared-token (NiFi TLS toolkit client mode) --------------------------- */

typedef struct {
	const char *ca_host;                 /* must equal the CA certificate's CN */
	int port;                            /* 0: 9443 */
	const unsigned char *token;          /* at least 16 bytes */
	size_t token_len;
	const X509_NAME *dn;                 /* the subject to ask for */
	const STACK_OF(GENERAL_NAME) *sans;  /* extra names; DNS:<CN> is always added */
	long timeout_ms;
} p11c_token_enroll_opts;

/* Make the CSR, POST it with its HMAC, and check in the documented order:
 * one self-signed peer certificate with CN = ca_host; status 200; response
 * HMAC over the peer's public key (constant time); the certificate
 * verifies under the peer's key; its public key is the token key.
 * On success *cert and *ca (the peer's certificate) are set. */
P11C_API p11c_result p11c_token_enroll(p11c_ctx *ctx, p11c_key *key,
				       const p11c_token_enroll_opts *o, X509 **cert, X509 **ca);

/* Renewal without the shared token (p11ca only, docs/ca.md): POST
 * https://HOST:PORT/renew {"csr": PEM} over verified TLS (trust: ca_file,
 * the CA certificate, which is the server's TLS certificate) with the
 * current key and certificate as TLS client identity.  The CSR, signed by
 * key (current itself, or a new key for a rekey), carries the current
 * certificate's subject and subjectAltName unchanged; the answer must be a
 * certificate signed by the CA, for key, with the current subject byte for
 * byte.  Upstream servers have no such endpoint: P11C_ERR_PROTOCOL with a
 * detail that says so. */
typedef struct {
	const char *ca_host;
	int port;              /* 0: 9443 */
	const char *ca_file;   /* the CA certificate (nifi-cert.pem) */
	long timeout_ms;       /* 0: 30 s */
} p11c_token_renew_opts;

P11C_API p11c_result p11c_token_renew(p11c_ctx *ctx, p11c_key *key, p11c_key *current,
				      X509 *current_cert, const p11c_token_renew_opts *o,
				      X509 **cert);

#ifdef __cplusplus
}
#endif
#endif
