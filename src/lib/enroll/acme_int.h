/* What the ACME client makes of a CA's answers, without the network
 * (tests/fuzz/fuzz_acme.c feeds them).  Internal. */
#ifndef P11C_ACME_INT_H
#define P11C_ACME_INT_H

#include <p11cert/acme.h>

#include "internal.h"

/* The downloaded chain (PEM, leaf first, at most P11C_HTTP_MAX_RESPONSE
 * bytes, no NUL needed): the leaf is for pub and names every identifier,
 * each certificate is signed by the next.  P11C_ERR_VERIFY,
 * P11C_ERR_KEY_MISMATCH with the ctx detail otherwise. */
P11C_HIDDEN p11c_result p11c_acme_chain_check(p11c_ctx *ctx, EVP_PKEY *pub, const char *label,
					      const char *const *names, size_t n, const unsigned char *buf,
					      size_t len);
/* One line for an answer: a problem document (RFC 8555 s6.7, with its
 * subproblems) or an authorization object (the error of its failed
 * challenge).  msg is always NUL-terminated. */
P11C_HIDDEN void p11c_acme_authz_text(const unsigned char *buf, size_t len, char *msg, size_t msglen);

/* What acme_keychange.c uses of the client in acme.c: the handle's ctx,
 * the directory's keyChange URL (NULL when none), the account's URL and
 * key (NULL before p11c_acme_account), a POST signed by the account key
 * with its kid (badNonce retried as every request; h filled, caller
 * clears), and the error of a non-success answer (problem document in the
 * ctx detail). */
struct p11c_http;
P11C_HIDDEN p11c_ctx *p11c_acme_ctx(const p11c_acme *a);
P11C_HIDDEN const char *p11c_acme_key_change_url(const p11c_acme *a);
P11C_HIDDEN const char *p11c_acme_kid(const p11c_acme *a);
P11C_HIDDEN p11c_key *p11c_acme_account_key(const p11c_acme *a);
P11C_HIDDEN p11c_result p11c_acme_post_kid(p11c_acme *a, const char *url, const char *payload,
					   struct p11c_http *h, const char *what);
P11C_HIDDEN p11c_result p11c_acme_answer_error(p11c_acme *a, const struct p11c_http *h, const char *what);

#endif
