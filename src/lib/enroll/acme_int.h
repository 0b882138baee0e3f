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
/* RFC 9773 (acme_ari.c).  An ARI answer: JSON of at most
 * P11C_ACME_ARI_MAX bytes with suggestedWindow {start, end} (RFC 3339,
 * end after start) and an optional explanationURL; retry_after is the
 * Retry-After header or NULL.  P11C_ERR_PROTOCOL with the ctx detail. */
#define P11C_ACME_ARI_MAX 16384
P11C_HIDDEN p11c_result p11c_acme_ari_parse(p11c_ctx *ctx, const unsigned char *buf, size_t len,
					    const char *retry_after, p11c_acme_ari *out);
/* An RFC 3339 date-time (s5.6: "2025-01-02T04:00:00Z", fractions, an
 * offset), at most 64 bytes, years 1970 to 9999: 0 with *t, else -1. */
P11C_HIDDEN int p11c_acme_rfc3339(const char *s, time_t *t);
/* 1 when a newOrder answer refuses its replaces (RFC 9773 s5: 409
 * alreadyReplaced; or a 400/403 problem of type alreadyReplaced,
 * malformed or conflict). */
P11C_HIDDEN int p11c_acme_replaces_refused(long status, const unsigned char *buf, size_t len);

/* What acme_ari.c needs of acme.c's handle (and p11c_acme_ctx above) */
P11C_HIDDEN const char *p11c_acme_renewal_url(const p11c_acme *a);
/* a plain GET of url (RFC 9773 s4.3: renewalInfo is not POST-as-GET) with
 * the handle's trust and timeout; h is filled (caller clears) */
P11C_HIDDEN p11c_result p11c_acme_get(p11c_acme *a, const char *url, struct p11c_http *h, const char *what);

#endif
