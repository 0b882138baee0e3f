/*
 * EST client (RFC 7030, Enrollment over Secure Transport) with the key in
 * the token: /cacerts, /csrattrs, /simpleenroll, /simplereenroll, HTTP
 * Basic or mutual TLS with a token key, channel binding (RFC 7030 s3.5)
 * into the CSR's challengePassword.  docs/est.md.  Nothing here reads or
 * writes files: the caller gives trust anchors and the password in memory
 * and stores what comes back.
 */
#ifndef P11CERT_EST_H
#define P11CERT_EST_H

#include <p11cert/p11cert.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Bounds of the parsers (every answer is at most 256 KiB too). */
#define P11C_EST_MAX_CERTS 32 /* certificates in one certs-only answer */
#define P11C_EST_MAX_ATTRS 64 /* entries of a CSR attributes answer */
#define P11C_EST_MAX_EXTS 16  /* extensions with values asked in /csrattrs */
#define P11C_EST_MAX_EXT_DER 2048 /* their DER, at most */

typedef struct {
	const char *url;         /* "https://host[:port][/LABEL]" (RFC 7030 s3.2.2) */
	/* Trust: ca_pem (in memory), else ca_file, else the system store.
	 * Peer verification is always on, except p11c_est_bootstrap. */
	const char *ca_file;
	const char *ca_pem;
	/* HTTP Basic (RFC 7030 s3.2.3): sent only over verified TLS.  The
	 * password is borrowed; the caller wipes it. */
	const char *user;
	const char *password;
	/* Mutual TLS: a token key and its certificate (IDevID, or the current
	 * identity for /simplereenroll), NULL for none. */
	p11c_key *client_key;
	X509 *client_cert;
	int tls_max;             /* 0 any; 12 or 13: at most TLS 1.2 / 1.3 */
	long timeout_ms;         /* per request; 0: 30 s */
} p11c_est_server;

/* What /csrattrs asks for (RFC 7030 s4.5.2), bounded. */
typedef struct {
	int challenge_password;  /* challengePassword: channel binding wanted (s3.5) */
	int key_type;            /* EVP_PKEY_EC or EVP_PKEY_RSA when asked, else 0 */
	int curve_nid;           /* id-ecPublicKey attribute's curve, 0 */
	int rsa_bits;            /* rsaEncryption attribute's INTEGER, 0 */
	int md_nid;              /* digest of a signature-algorithm OID, 0 */
	int n;                   /* every entry as dotted OID (attributes: their type) */
	char oid[P11C_EST_MAX_ATTRS][48];
	int nunknown;            /* entries p11cert cannot honour (the key does), */
	char unknown[P11C_EST_MAX_ATTRS][48]; /* for "cannot do" messages */
	/* An extensionRequest attribute whose value is Extensions with the
	 * values wanted (RFC 7030 s4.5.2, the form RFC 9908 makes explicit):
	 * those p11cert puts into the request before the token signs it
	 * (keyUsage, extendedKeyUsage, subjectAltName (merged with the
	 * request's names), basicConstraints CA:FALSE), as the DER of
	 * Extensions (SEQUENCE OF Extension); the others go to unknown. */
	int next;
	size_t ext_len;
	unsigned char ext[P11C_EST_MAX_EXT_DER];
} p11c_est_attrs;

typedef enum {
	P11C_EST_ISSUED = 0,     /* 200: the certificate */
	P11C_EST_PENDING,        /* 202: retry after retry_after seconds */
} p11c_est_state;

/* --- parsers (no network: the fuzz target and the tests feed them) ------- */

/* An EST certs-only answer (RFC 7030 s4.1.3, s4.2.3; RFC 8951 s3): base64
 * with or without line breaks (Content-Transfer-Encoding or not), PEM
 * "PKCS7" armour, or raw DER; a PKCS#7 SignedData with no signers and
 * 1..P11C_EST_MAX_CERTS certificates.  P11C_ERR_PARSE with why in err. */
P11C_API p11c_result p11c_est_certs_parse(const unsigned char *body, size_t len, STACK_OF(X509) **certs,
					  char *err, size_t errlen);
/* A /csrattrs answer (RFC 7030 s4.5.2): base64 (or DER) of CsrAttrs ::=
 * SEQUENCE OF AttrOrOID; an empty body is an empty sequence. */
P11C_API p11c_result p11c_est_csrattrs_parse(const unsigned char *body, size_t len, p11c_est_attrs *out,
					     char *err, size_t errlen);
/* base64 with line breaks and blanks anywhere (bounded by len).  Caller
 * frees *out. */
P11C_API p11c_result p11c_est_b64_decode(const unsigned char *in, size_t len, unsigned char **out,
					 size_t *outlen);
/* "sha256:HEX" (colons allowed, any case) into 32 bytes: P11C_OK or
 * P11C_ERR_ARG. */
P11C_API p11c_result p11c_est_fingerprint_parse(const char *s, unsigned char out[32]);

/* --- the exchanges -------------------------------------------------------- */

/* GET /cacerts over verified TLS. */
P11C_API p11c_result p11c_est_cacerts(p11c_ctx *ctx, const p11c_est_server *srv, STACK_OF(X509) **cas);
/* Trust bootstrap (RFC 7030 s4.1.1): GET /cacerts WITHOUT verifying the
 * server, accepted only when one of the certificates has the SHA-256
 * fingerprint the user gave (out of band); *ca is that certificate, *cas
 * all of them.  Then go on verified with *ca as trust anchor. */
P11C_API p11c_result p11c_est_bootstrap(p11c_ctx *ctx, const p11c_est_server *srv,
					const unsigned char fingerprint[32], X509 **ca, STACK_OF(X509) **cas);
/* GET /csrattrs; a 404 or 204 is "nothing asked" (s4.5.2). */
P11C_API p11c_result p11c_est_csrattrs(p11c_ctx *ctx, const p11c_est_server *srv, p11c_est_attrs *out);

typedef struct {
	const X509_NAME *subject;           /* required */
	const STACK_OF(GENERAL_NAME) *sans; /* may be NULL */
	int bind;                /* put the channel binding in challengePassword */
	int reenroll;            /* POST /simplereenroll (s4.2.2) instead of /simpleenroll */
	const p11c_est_attrs *attrs; /* from p11c_est_csrattrs, or NULL (then fetched) */
} p11c_est_request;

/* One enrollment round over one TLS connection: GET /csrattrs (unless
 * attrs given; it also opens the connection the binding is taken from),
 * the CSR signed by the token with the binding of that connection when
 * bind or the server asks for challengePassword (tls-unique on TLS 1.2,
 * tls-exporter of RFC 9266 on TLS 1.3), POST /simpleenroll or
 * /simplereenroll over the same connection.  ISSUED: *cert (unchecked:
 * see p11c_est_check); PENDING: *retry_after seconds (>= 1).  401/403:
 * P11C_ERR_REJECTED with the server's text in the detail; other statuses
 * P11C_ERR_PROTOCOL.  csr_pem (may be NULL): the request as sent. */
P11C_API p11c_result p11c_est_enroll(p11c_ctx *ctx, const p11c_est_server *srv, p11c_key *key,
				     const p11c_est_request *req, p11c_est_state *state, X509 **cert,
				     long *retry_after, char **csr_pem);
/* The checks before a certificate is kept: its public key is the token
 * key's, it chains to one of cas and is valid now. */
P11C_API p11c_result p11c_est_check(p11c_ctx *ctx, X509 *cert, p11c_key *key, STACK_OF(X509) *cas);

#ifdef __cplusplus
}
#endif
#endif
