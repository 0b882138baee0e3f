/*
 * ACME client (RFC 8555) with both keys in the token: the account key signs
 * every JWS, the certificate key signs the CSR (docs/acme.md).  Like the
 * Caramel library mode (enroll.h) everything stays in memory: nothing here
 * reads or writes a file.  Challenges are made answerable by the caller
 * through p11c_acme_challenger (a web root, a hook, a built-in responder:
 * the library does not know which).
 */
#ifndef P11CERT_ACME_H
#define P11CERT_ACME_H

#include <time.h>

#include <p11cert/p11cert.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct p11c_acme p11c_acme;

typedef struct {
	const char *directory_url; /* https://.../directory */
	const char *ca_file;       /* HTTPS trust anchors in a file, or */
	const char *ca_pem;        /* in memory; both NULL: the system store */
	long timeout_ms;           /* per request; 0: 30 s */
	long max_wait_ms;          /* bound on all polling of one order; 0: 300 s */
} p11c_acme_server;

/* The caller's side of the challenges.  present() makes the challenge of
 * TYPE ("http-01", "dns-01", "tls-alpn-01") for IDENTIFIER answerable:
 * http-01 serves KEYAUTH at /.well-known/acme-challenge/TOKEN, dns-01
 * publishes p11c_acme_dns01_value(KEYAUTH) at _acme-challenge.IDENTIFIER,
 * tls-alpn-01 presents a certificate with the acmeIdentifier extension.
 * Returns 0, or -1 with a reason in err.  cleanup() is called for every
 * present() that returned 0, whatever the outcome. */
typedef struct {
	int (*present)(void *userdata, const char *type, const char *identifier, const char *token,
		       const char *keyauth, char *err, size_t errlen);
	void (*cleanup)(void *userdata, const char *type, const char *identifier, const char *token,
			const char *keyauth);
	void *userdata;
} p11c_acme_challenger;

/* Fetch the directory (RFC 8555 s7.1.1) over verified TLS. */
P11C_API p11c_result p11c_acme_new(p11c_ctx *ctx, const p11c_acme_server *srv, p11c_acme **out);
P11C_API void p11c_acme_free(p11c_acme **a);
/* The directory's meta.termsOfService, or NULL. */
P11C_API const char *p11c_acme_terms(const p11c_acme *a);

/* External Account Binding (RFC 8555 s7.3.4) for the account creation of
 * p11c_acme_account: the CA's key identifier and MAC key (the raw bytes,
 * not base64url).  The key is copied and wiped by p11c_acme_free.  A CA
 * whose directory says externalAccountRequired gets no new account
 * without it (P11C_ERR_ARG). */
P11C_API p11c_result p11c_acme_set_eab(p11c_acme *a, const char *kid, const unsigned char *mac_key,
				       size_t mac_len);
/* 1 when the directory says meta.externalAccountRequired */
P11C_API int p11c_acme_eab_required(const p11c_acme *a);
/* base64url (as CAs hand out EAB MAC keys; padding and a trailing newline
 * tolerated) to bytes; caller wipes and frees *out. */
P11C_API p11c_result p11c_acme_b64url_decode(const char *s, size_t len, unsigned char **out, size_t *outlen);

/* The account of account_key (RFC 8555 s7.3): looked up with
 * onlyReturnExisting first; when the CA has none and create is set, made
 * with contacts (e.g. "mailto:a@example.org") and termsOfServiceAgreed =
 * agree_tos.  *account_url (caller frees) is the account's URL, the "kid"
 * of every later request.  *created tells whether a new account was made. */
P11C_API p11c_result p11c_acme_account(p11c_acme *a, p11c_key *account_key, const char *const *contacts,
				       size_t ncontacts, int agree_tos, int create, char **account_url,
				       int *created);

/* One certificate (RFC 8555 s7.4): newOrder for names (DNS names, or IP
 * addresses as RFC 8738 "ip" identifiers), each pending authorization
 * answered with challenge type through ch, polled (Retry-After, bounded by
 * max_wait_ms), finalized with a CSR signed by cert_key, and the chain
 * downloaded (application/pem-certificate-chain).  Checked before it is
 * returned: the leaf's public key is cert_key's, it names every
 * identifier, and each certificate of the chain is signed by the next.
 * A failed authorization gives P11C_ERR_REJECTED with one sentence per
 * identifier in the ctx detail.  *chain_pem: the chain as sent, leaf
 * first (caller frees). */
P11C_API p11c_result p11c_acme_order(p11c_acme *a, p11c_key *cert_key, const char *const *names,
				     size_t nnames, const char *challenge_type,
				     const p11c_acme_challenger *ch, char **chain_pem);

/* The alternate chains the CA offered for the last successful order
 * (RFC 8555 s7.4.2, at most 3), PEM, each checked as *chain_pem is; owned
 * by a, valid until the next p11c_acme_order or p11c_acme_free. */
P11C_API const char *const *p11c_acme_alternates(const p11c_acme *a, size_t *n);

/* Revoke cert (RFC 8555 s7.6) at the directory's revokeCert: signed by the
 * account key with its kid (after p11c_acme_account), or, when use_jwk, by
 * signer_key (the certificate's own key) with a jwk header.  reason: an
 * RFC 5280 CRLReason code, < 0 to omit it.  An already revoked
 * certificate gives P11C_ERR_REJECTED with "already revoked" in the ctx
 * detail; other refusals as elsewhere (problem document in the detail). */
P11C_API p11c_result p11c_acme_revoke(p11c_acme *a, X509 *cert, int reason, p11c_key *signer_key, int use_jwk);

/* Account key rollover (RFC 8555 s7.3.5), after p11c_acme_account with the
 * account's current key: the directory's keyChange gets an outer JWS
 * signed by the current key (kid) around an inner JWS signed by new_key
 * (jwk header, url: keyChange, no nonce) over {"account": URL, "oldKey":
 * JWK of the current key}; badNonce retried as every request.  On success
 * the CA is asked for the account of new_key (s7.3.1, must be the same
 * URL) and the handle signs with new_key from then on.  new_key: EC P-256,
 * P-384 or RSA, not the current key (P11C_ERR_ARG).  A new key that is
 * already an account's key: P11C_ERR_REJECTED with that account's URL (the
 * 409's Location) in the ctx detail, nothing changed (some CAs answer
 * otherwise, pebble 2.4 with a 500: p11c_acme_account(a, new_key, ...,
 * create 0) then names the account the key belongs to).  No keyChange in
 * the directory: P11C_ERR_PROTOCOL.  An error without the CA's answer
 * leaves the outcome open: the same lookup tells whether the CA switched.
 * After any error, call p11c_acme_account again before other requests. */
P11C_API p11c_result p11c_acme_key_change(p11c_acme *a, p11c_key *new_key);
/* --- ACME Renewal Information (RFC 9773; src/lib/enroll/acme_ari.c) --- */

/* What the CA suggests for one certificate (RFC 9773 s4.2). */
typedef struct {
	time_t start, end;     /* suggestedWindow; end > start */
	char explanation[512]; /* explanationURL (printable, at most 511 bytes), or "" */
	long retry_after;      /* seconds until it may be asked again: the
				* Retry-After header bounded to 60 .. 86400
				* (s4.3.3), 21600 when absent */
} p11c_acme_ari;

/* The certificate's ARI CertID (RFC 9773 s4.1): base64url of its
 * authorityKeyIdentifier keyIdentifier, ".", base64url of its serial
 * number's DER content bytes.  Caller frees *out.  P11C_ERR_ARG for a
 * certificate without an AKI keyIdentifier. */
P11C_API p11c_result p11c_acme_cert_id(X509 *cert, char **out);
/* 1 when the directory has renewalInfo */
P11C_API int p11c_acme_ari_supported(const p11c_acme *a);
/* GET renewalInfo/CertID (RFC 9773 s4.3), answer bounded and checked.
 * P11C_ERR_NOT_FOUND when the directory has no renewalInfo. */
P11C_API p11c_result p11c_acme_renewal_info(p11c_acme *a, X509 *cert, p11c_acme_ari *out);
/* The time to renew: uniformly random in [start, end) given a random
 * number rnd (s4.2). */
P11C_API time_t p11c_acme_ari_pick(const p11c_acme_ari *w, unsigned long long rnd);
/* 1 when it is time to renew at now: now >= at (the picked time) or the
 * window's end has passed. */
P11C_API int p11c_acme_ari_due(const p11c_acme_ari *w, time_t at, time_t now);
/* The next p11c_acme_order carries replaces = cert_id (RFC 9773 s5); a
 * CA that refuses it (alreadyReplaced, or a replaces it does not take) gets
 * the order once more without it.  NULL: none. */
P11C_API p11c_result p11c_acme_set_replaces(p11c_acme *a, const char *cert_id);

/* JWK thumbprint (RFC 7638) of a public key, SHA-256, base64url without
 * padding (43 characters + NUL). */
P11C_API p11c_result p11c_jwk_thumbprint(EVP_PKEY *pub, char out[44]);
/* The TXT record value of a dns-01 challenge: base64url(SHA-256(keyauth))
 * (RFC 8555 s8.4). */
P11C_API p11c_result p11c_acme_dns01_value(const char *keyauth, char out[44]);

#ifdef __cplusplus
}
#endif
#endif
