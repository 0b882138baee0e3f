/* p11ca: the certificate authority. */
#ifndef P11CA_CA_H
#define P11CA_CA_H

#include <stdint.h>

#include <p11cert/p11cert.h>
#include <p11cert/proto.h>

#include "store/store.h"

/* Settings, from DIR/p11ca.conf, then P11CA_* environment, then flags. */
struct ca_config {
	char *key;             /* "pkcs11:..." or a PEM file (relative to dir) */
	char *tls_key;         /* TLS server key: "pkcs11:..." or file */
	char *module;          /* PKCS#11 module for token keys */
	char *pin_file;        /* PIN for token keys */
	long short_hours;      /* 48 */
	long long_hours;       /* 720 */
	long token_days;       /* 825: shared-token protocol certificates */
	char *autosign;        /* "none" | "uuid" */
	int renew_mtls;        /* re-sign a client presenting a valid cert of ours */
	char *listen;          /* Caramel listener, "127.0.0.1:8443" */
	char *token_listen;    /* shared-token listener (TLS cert = CA cert) */
	char *token_file;      /* the shared token (>= 16 bytes) */
	char *url;             /* base URL in 202 answers; default from Host */
	char *san_patterns;    /* allowed extra SANs: "DNS:*.example.com,IP:192.0.2.*" */
	char *token_dn_suffix; /* shared-token DNs must end with this, e.g. "OU=NIFI" */
	long token_rate_limit; /* wrong HMACs per peer address per minute */
	long timeout;          /* seconds per connection */
	long max_connections;
	/* CA policy (issue 10 / issue 15 s4) */
	int san_wildcards;     /* issue names with '*' (no by default) */
	/* resources (issue 10 points 1, 7; issue 15 s4) */
	long max_per_address;  /* connections from one address; 0: max-connections/4 */
	long token_rate_global; /* wrong HMACs per minute from all addresses (0: none) */
	long access_log_rows;  /* newest access_log rows kept in the database (0: none) */
	/* the store (issue 13): NULL is DIR/p11ca.db (SQLite) */
	char *db;              /* "postgresql://..." */
	char *db_password_file; /* its password, first line (else libpq's PGPASSFILE / service) */
	int token_rate_shared; /* wrong HMACs also counted in the database, across instances */
	/* signing off the event loop (issue 13; workers.h) */
	long signers;          /* worker threads; 0: sign on the loop; -1: automatic */
	long sign_queue;       /* requests waiting for a worker; beyond: 503 */
};
#define CA_SIGNERS_MAX 64

#define CA_CONFIG_FILE "p11ca.conf"

void ca_config_defaults(struct ca_config *c);
void ca_config_free(struct ca_config *c);
/* Set one option by name ("short-lifetime", ...).  0 ok, -1 unknown name or
 * bad value (err says which). */
int ca_config_set(struct ca_config *c, const char *name, const char *value, char *err,
		  size_t errlen);
/* Settings from the text of a p11ca.conf ("name = value" lines, '#'
 * comments; at most 64 KiB; name is the file's name for messages). */
int ca_config_parse(struct ca_config *c, const char *text, size_t len, const char *name, char *err,
		    size_t errlen);
/* Read DIR/p11ca.conf (missing file is fine), then P11CA_* variables. */
int ca_config_load(struct ca_config *c, const char *dir, char *err, size_t errlen);
/* Write the non-default settings to DIR/p11ca.conf atomically. */
int ca_config_save(const struct ca_config *c, const char *dir);
/* Every field set in `over` replaces the one in `c`; then unset fields get
 * their defaults. */
void ca_config_merge(struct ca_config *c, const struct ca_config *over);
/* Names of all options, NULL-terminated (for --help and flag parsing). */
extern const char *const ca_config_names[];

enum ca_profile {
	PROFILE_CARAMEL = 0,
	PROFILE_TOKEN,
};

struct ca {
	char *dir;
	struct ca_config cfg;
	X509 *cert;            /* the CA certificate */
	EVP_PKEY *key;         /* signer: a file key, or a token key */
	p11c_ctx *p11;         /* when a key is in a token */
	p11c_key *tkey;
	p11c_key *ttls;
	store *st;
	const struct store_ops *so;
};

/* A new connection to the CA's store (its own handle: one per thread). */
int ca_store_open(const struct ca *ca, store **out);
/* Open the CA in dir: config, certificate, database; with need_key the
 * signing key too (login to the token). */
int ca_open(struct ca *ca, const char *dir, const struct ca_config *flags, int need_key);
void ca_close(struct ca *ca);
/* A key by spec: "pkcs11:..." (through the CA's one PKCS#11 handle) or a
 * PEM file relative to the CA folder.  *tk is set for token keys. */
int ca_load_key(struct ca *ca, const char *spec, p11c_key **tk, EVP_PKEY **out);
/* Errors of ca_* functions are printed to stderr with this prefix. */
void ca_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void ca_errp(p11c_ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Key policy for requests: RSA 2048-4096, EC P-256 / P-384.  1 ok. */
int ca_key_ok(EVP_PKEY *pk, char *err, size_t errlen);
/* SAN policy: every requested name must match cfg.san_patterns, except
 * DNS:<CN>, which is always allowed.  1 ok. */
int ca_sans_ok(const struct ca *ca, X509_REQ *req, char *err, size_t errlen);

/* The same, with cn_plain = 0 for the shared-token profile: the DNS:<CN>
 * name p11ca derives must match san-patterns too (when set).  Names with
 * '*' are refused unless san-wildcards; with san-patterns empty, only
 * DNS:<CN> is allowed. */
int ca_sans_policy(const struct ca *ca, X509_REQ *req, int cn_plain, char *err, size_t errlen);
/* 1 when the CSR asks for no subjectAltName other than DNS:<CN> (what
 * autosigned requests may carry) */
int ca_sans_only_cn(X509_REQ *req);
#define CA_MAX_DN_DER 1024
/* DN policy everywhere: DER size, no NUL / control characters, <= 1 CN. */
int ca_subject_ok(const X509_NAME *n, char *err, size_t errlen);
/* CSR policy everywhere: key (ca_key_ok, named curves), signature hash
 * (SHA-2/3 only), subject (ca_subject_ok), not empty without SANs.  1 ok. */
int ca_csr_ok(X509_REQ *req, char *err, size_t errlen);
/* token-dn-suffix (proto/sharedtoken.c): the DN ends with the suffix's parsed RDNs
 * in either reading order.  1 yes, 0 no, -1 the suffix does not parse. */
int ca_dn_suffix_ok(const char *suffix, const X509_NAME *n);
/* The CA certificate's notAfter has passed (nothing is signed then). */
int ca_expired(const struct ca *ca, time_t now);
/* A client certificate (already verified against the CA by httpd) is
 * current: not expired, its serial known to the store, not revoked.  The
 * one check of every endpoint that authenticates by certificate
 * (Caramel's mTLS renewal, the shared-token POST /renew).  1 yes, 0 no. */
int ca_peer_current(struct ca *ca, X509 *peer);
const char *ca_not_after_str(const struct ca *ca);

/* Issue a certificate for req valid for `seconds` from now, with a fresh
 * random serial unique in the store.  Does not store it. */
int ca_issue(struct ca *ca, X509_REQ *req, enum ca_profile prof, long seconds, X509 **out);
/* Issue, then store it (certificate + request state signed, one
 * transaction).  PEM returned when pem != NULL (caller frees).  0 signed,
 * 1 refused because the request was rejected or its key revoked (compare
 * and set in the store; message printed), -1 error. */
int ca_sign_request(struct ca *ca, const struct store_request *r, req_lifetime lt,
		    enum ca_profile prof, char **pem, time_t now);
/* An administrator's explicit `p11ca sign`: may certify a revoked key. */
int ca_sign_request_explicit(struct ca *ca, const struct store_request *r, req_lifetime lt,
			     char **pem, time_t now);
/* Write a CRL of all revoked certificates, signed by the CA key. */
int ca_crl(struct ca *ca, const char *path, long days);
/* Record a new request from a CSR PEM (already validated). */
int ca_add_request(struct ca *ca, const char *pem, size_t len, X509_REQ *req,
		   const char *protocol, req_state state, struct store_request *out);
/* The same, stored under `key` (64 lowercase hex) instead of the SHA-256 of
 * the PEM: EST's request identity, which a new channel binding in the
 * challengePassword does not change (proto/est.c). */
int ca_add_request_keyed(struct ca *ca, const char *pem, size_t len, X509_REQ *req,
			 const char *protocol, req_state state, const char *key, struct store_request *out);

/* A new request signed at once: the certificate is issued first (no
 * database lock held while the token signs), then the request and its
 * certificate are stored in one transaction (store op req_add_signed: one
 * commit; a crash before it leaves nothing, and the client's retry starts
 * again).  req has passed ca_csr_ok (every handler checks it first).  key
 * as for ca_add_request_keyed (NULL: the SHA-256 of pem).  0 signed
 * (out->id: the new request's, the rest of out zero; *pem_out: the
 * certificate when asked), 1 a request with this key exists (nothing
 * stored; out: that one, read from the store), 2 not signed: a
 * certificate for the key was revoked (nothing stored), -1 error
 * (printed). */
int ca_add_request_signed(struct ca *ca, const char *pem, size_t len, X509_REQ *req, const char *protocol,
			  const char *key, req_lifetime lt, enum ca_profile prof, struct store_request *out,
			  char **pem_out, time_t now);
/* The shared-token protocol's enrollment: ca_add_request_signed, and for
 * a CSR stored before, a new certificate for it (ca_sign_request).  0
 * signed, 2 the key revoked, 3 the request rejected, -1 error. */
int ca_enroll_now(struct ca *ca, const char *pem, size_t len, X509_REQ *req, const char *protocol,
		  req_lifetime lt, enum ca_profile prof, struct store_request *out, char **pem_out, time_t now);

/* 1 when the store is unreachable now (PostgreSQL down): answer 503 */
int ca_store_down(const struct ca *ca);
/* Wrong shared-token HMACs across instances (token-rate-limit-shared, a
 * store with ops->guess):
 * seconds until addr may guess (0: now; also when the store has no such
 * count), and counting one.  The in-memory limiter (ratelimit.h) applies
 * as well. */
long ca_guess_wait(struct ca *ca, const char *addr);
void ca_guess_fail(struct ca *ca, const char *addr);

/* Serve until SIGTERM; the main listener's port goes to port_file. */
int ca_serve(struct ca *ca, const char *port_file);

/* Helpers */
char *ca_x509_pem(X509 *x);
/* A DN as one RFC 2253 line (as the store keeps subjects), malloc'ed;
 * NULL when out of memory. */
char *ca_name_rfc2253(const X509_NAME *n);
int ca_name_entry(const X509_NAME *n, int nid, char *buf, size_t len);
time_t ca_asn1_time(const ASN1_TIME *t);
/* RFC 7231 s7.1.1.1 IMF-fixdate */
void ca_http_date(time_t t, char *buf, size_t len);
int ca_parse_http_date(const char *s, time_t *out);
/* Read a whole file into a NUL-terminated buffer (max bytes). */
int ca_read_file(const char *path, size_t max, char **buf, size_t *len);
char *ca_path(const char *dir, const char *name);

#endif
