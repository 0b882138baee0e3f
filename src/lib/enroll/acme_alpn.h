/* Internal to libp11cert: the ACME tls-alpn-01 responder (RFC 8737, with
 * IP identifiers per RFC 8738 s6).  A TLS 1.2+ server on its own thread
 * that answers only ClientHellos offering ALPN "acme-tls/1" with an SNI
 * naming an added identifier, with a self-signed certificate made for that
 * identifier (throwaway in-memory EC P-256 key, never the token key).
 * docs/acme-tls-alpn.md. */
#ifndef P11C_ACME_ALPN_H
#define P11C_ACME_ALPN_H

#include <stddef.h>

#include "../internal.h"

/* Bounds (docs/acme-tls-alpn.md) */
#define P11C_ALPN_MAX_CONNS 16        /* concurrent handshakes; the oldest
                                       * is dropped for a new one */
#define P11C_ALPN_HANDSHAKE_SEC 10    /* per connection, from accept */
#define P11C_ALPN_MAX_IDS 100         /* identifiers of one responder */
#define P11C_ALPN_KEYAUTH_MAX 512     /* token "." thumbprint */

typedef struct p11c_alpn_responder p11c_alpn_responder;

/* Listen on addr_port ("127.0.0.1:5001", "[::1]:5001", ":5001"; port 0
 * picks a free port, see p11c_alpn_responder_port), serve from its own
 * thread until stopped.  err: why not (address in use, bad address...). */
P11C_HIDDEN p11c_result p11c_alpn_responder_start(const char *addr_port, p11c_alpn_responder **out,
						  char *err, size_t errlen);
/* identifier: a DNS name or an IP address literal; key_authorization:
 * token "." thumbprint.  Adding an identifier again replaces its
 * certificate.  Safe while the thread serves.  P11C_ERR_ARG: malformed
 * identifier or key authorization, or P11C_ALPN_MAX_IDS reached. */
P11C_HIDDEN p11c_result p11c_alpn_responder_add(p11c_alpn_responder *r, const char *identifier,
						const char *key_authorization);
/* The bound TCP port (useful after port 0); 0 when r is NULL. */
P11C_HIDDEN int p11c_alpn_responder_port(const p11c_alpn_responder *r);
/* Joins the thread (promptly, whatever the clients do), frees; NULL ok. */
P11C_HIDDEN void p11c_alpn_responder_stop(p11c_alpn_responder *r);

/* Bounded parsers of the ClientHello extensions, exposed for the unit
 * test and the fuzz target.  ALPN (RFC 7301 s3.1): 1 when the
 * ProtocolNameList is well-formed and offers "acme-tls/1".  SNI (RFC 6066
 * s3): the host_name, copied into name (NUL-terminated, lower case); 0 on
 * success, -1 (name "") when malformed, absent or longer than namelen - 1. */
P11C_HIDDEN int p11c_alpn_offers_acme(const unsigned char *p, size_t len);
P11C_HIDDEN int p11c_alpn_sni_host(const unsigned char *p, size_t len, char *name, size_t namelen);

#endif
