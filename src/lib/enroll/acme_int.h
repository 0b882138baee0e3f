/* What the ACME client makes of a CA's answers, without the network
 * (tests/fuzz/fuzz_acme.c feeds them).  Internal. */
#ifndef P11C_ACME_INT_H
#define P11C_ACME_INT_H

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

#endif
