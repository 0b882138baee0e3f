/*
 * Wire primitives of the enrollment protocols, shared by p11cert (client)
 * and p11ca (server).  See docs/protocols.md.
 */
#ifndef P11CERT_PROTO_H
#define P11CERT_PROTO_H

#include <p11cert/p11cert.h>

#ifdef __cplusplus
extern "C" {
#endif

/* --- Caramel ------------------------------------------------------------- */

/* Canonical PEM of a CSR: LF line ends, 64-column base64, one trailing
 * newline.  Caller frees *pem with free(). */
P11C_API p11c_result p11c_caramel_csr_pem(X509_REQ *req, char **pem, size_t *len);
/* Lowercase hex SHA-256 of bytes, into out[65]. */
P11C_API void p11c_sha256_hex(const void *data, size_t len, char out[65]);
/* 1 when s is exactly 64 lowercase hex characters. */
P11C_API int p11c_is_sha256_hex(const char *s);
/* Caramel subject rule: subject must begin with the CA subject's C, ST, L,
 * O attributes (only those the CA has), in that order, position by
 * position.  1 ok, 0 not (why in err). */
P11C_API int p11c_caramel_subject_ok(const X509_NAME *ca, const X509_NAME *subject,
				     char *err, size_t errlen);
/* The subject a Caramel client requests: the CA subject with CN replaced by
 * (or, when absent, appended as) client_id.  NULL on error. */
P11C_API X509_NAME *p11c_caramel_subject(const X509_NAME *ca, const char *client_id);

/* --- shared-token (NiFi TLS toolkit) ------------------------------------- */

#define P11C_TOKEN_MIN 16

/* HMAC-SHA256 keyed with the token bytes over the 20-byte SHA-1 of the
 * public key's subjectPublicKey BIT STRING contents; standard base64 with
 * padding into out (at least 45 bytes).  Token shorter than 16 bytes:
 * P11C_ERR_ARG. */
P11C_API p11c_result p11c_token_hmac(const unsigned char *token, size_t token_len,
				     EVP_PKEY *pub, char *out, size_t outlen);
/* Constant-time comparison of two base64 HMAC strings: 1 equal. */
P11C_API int p11c_token_hmac_eq(const char *a, const char *b);
/* Request body {"hmac":"...","csr":"..."} (exactly these keys).  Caller frees. */
P11C_API char *p11c_token_request_json(const char *hmac_b64, const char *csr_pem);
/* Parse a request body (bounded, at most 64 KiB).  Missing fields give
 * P11C_ERR_PARSE with err "hmac field must be set" / "csr field must be set";
 * caller frees the outputs. */
P11C_API p11c_result p11c_token_request_parse(const char *body, size_t len, char **hmac_b64,
					      char **csr_pem, char *err, size_t errlen);
/* Response body {"hmac":..,"pemEncodedCertificate":..,"error":..}; NULLs become
 * JSON null.  Caller frees. */
P11C_API char *p11c_token_response_json(const char *hmac_b64, const char *cert_pem,
					const char *error);
P11C_API p11c_result p11c_token_response_parse(const char *body, size_t len, char **hmac_b64,
					       char **cert_pem, char **error);

/* --- problem+json (RFC 7807) ------------------------------------------------ */

/* {"status":N,"title":"...","detail":null|"..."}; caller frees. */
P11C_API char *p11c_problem_json(int status, const char *title, const char *detail);
/* Extract title/detail from a problem+json body (either may be NULL). */
P11C_API p11c_result p11c_problem_parse(const char *body, size_t len, char **title,
					char **detail);

#ifdef __cplusplus
}
#endif
#endif
