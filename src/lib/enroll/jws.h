/* JWS for ACME (RFC 7515 flattened JSON serialization, RFC 8555 s6.2),
 * signed by a token key through its signer EVP_PKEY.  Internal. */
#ifndef P11C_JWS_H
#define P11C_JWS_H

#include "internal.h"

#include <jansson.h>

/* base64url without padding (RFC 7515 s2); caller frees; NULL: no memory */
P11C_HIDDEN char *p11c_b64url(const unsigned char *b, size_t n);

/* base64url (padding and surrounding blanks tolerated) -> bytes; caller
 * wipes and frees; P11C_ERR_PARSE on other characters */
P11C_HIDDEN p11c_result p11c_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* The JWK of pub with only the required members (RFC 7638 s3.2): EC
 * {crv,kty,x,y}, RSA {e,kty,n}; the JWS "alg" that goes with it (ES256 for
 * P-256, ES384 for P-384, RS256 for RSA).  P11C_ERR_MECHANISM for other
 * keys. */
P11C_HIDDEN p11c_result p11c_jwk(EVP_PKEY *pub, json_t **jwk, const char **alg);

/* Flattened JWS over payload ("" for POST-as-GET, RFC 8555 s6.3) with the
 * protected header {alg, nonce, url} plus jwk (kid NULL) or kid; nonce
 * NULL leaves it out (the inner JWS of a key change).  ECDSA
 * signatures are turned from DER into the fixed-width r || s of RFC 7518
 * s3.4.  *out: the JSON text, caller frees. */
P11C_HIDDEN p11c_result p11c_jws_sign(p11c_ctx *ctx, EVP_PKEY *signer, EVP_PKEY *pub, const char *url,
				      const char *nonce, const char *kid, const char *payload, char **out);

/* The inner JWS of an account key change (RFC 8555 s7.3.5): signed by the
 * new key (new_signer, new_pub), protected header {alg, jwk: the new key,
 * url: the keyChange URL} without nonce or kid, payload {"account":
 * account_url, "oldKey": the JWK of old_pub}.  *out: the JSON text, the
 * payload of the outer JWS; caller frees. */
P11C_HIDDEN p11c_result p11c_jws_keychange(p11c_ctx *ctx, EVP_PKEY *new_signer, EVP_PKEY *new_pub, const char *url,
					   const char *account_url, EVP_PKEY *old_pub, char **out);

/* External Account Binding (RFC 8555 s7.3.4): a flattened JWS, HS256 with
 * the CA's MAC key, over the account key's JWK, protected header {alg,
 * kid: the CA's key identifier, url: newAccount}.  *out: new reference. */
P11C_HIDDEN p11c_result p11c_jws_eab(p11c_ctx *ctx, const unsigned char *mac_key, size_t mac_len,
				     const char *eab_kid, const char *url, EVP_PKEY *account_pub, json_t **out);

#endif
