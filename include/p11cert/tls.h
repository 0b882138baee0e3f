/*
 * TLS with the token key: hand an application's OpenSSL SSL_CTX the token
 * key (an EVP_PKEY whose private operations happen in the token, no
 * ENGINE) and the certificate stored next to it.  docs/library.md,
 * examples/tls_client.c.
 *
 * Concurrency: the key's PKCS#11 operations go through the one loaded
 * module, session and login of the p11c_ctx, serialized by a process-wide
 * lock.  Use one p11c_ctx per process; the SSL_CTX may be shared by threads.
 */
#ifndef P11CERT_TLS_H
#define P11CERT_TLS_H

#include <openssl/ssl.h>

#include <p11cert/p11cert.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Put the token key and its certificate (p11c_cert_get) into ssl_ctx, plus
 * the certificates of chain_file (PEM, may be NULL) as the chain sent to
 * the peer.  Works for client and server contexts. */
P11C_API p11c_result p11c_tls_use_key(p11c_key *key, SSL_CTX *ssl_ctx, const char *chain_file);

/* A client SSL_CTX: TLS 1.2 and 1.3, peer verification on against ca_file
 * (PEM; NULL: the system trust store), the token key and certificate as
 * client identity (p11c_tls_use_key).  Caller frees with SSL_CTX_free. */
P11C_API p11c_result p11c_tls_client_ctx(p11c_key *key, const char *ca_file, const char *chain_file,
					 SSL_CTX **out);

#ifdef __cplusplus
}
#endif
#endif
