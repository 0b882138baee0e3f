/* p11ca EST (RFC 7030): profiles (DIR/est.conf), credentials (the
 * est-user file), and the bounded parsers and encoders of proto/est.c.
 * docs/ca.md "EST" describes the settings. */
#ifndef P11CA_EST_H
#define P11CA_EST_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "ratelimit.h"

#define EST_CONF_FILE "est.conf"
#define EST_CONF_MAX (64 * 1024)
#define EST_USERS_MAX (1024 * 1024)   /* credentials file */
#define EST_MAX_PROFILES 16
#define EST_LABEL_MAX 32              /* RFC 7030 s3.2.2: a label segment */
#define EST_USER_MAX 64
#define EST_PASSWORD_MAX 256
#define EST_MAX_BODY (16 * 1024)      /* base64 PKCS#10 body; larger: 413 */
#define EST_PBKDF2_ITER 100000
#define EST_SALT_LEN 16
#define EST_HASH_LEN 32

/* who may simpleenroll */
enum { EST_AUTH_BASIC = 1, EST_AUTH_CERT = 2 };

struct est_profile {
	char label[EST_LABEL_MAX + 1]; /* "" for /.well-known/est/ ("[default]") */
	int auth;                      /* EST_AUTH_* bits */
	char *users;                   /* credentials file (relative to DIR) */
	char *bootstrap_ca;            /* PEM file of the IDevID CA certificates */
	X509_STORE *bootstrap;         /* loaded by est_server_load */
	int pending;                   /* approval: 0 automatic, 1 `p11ca sign` */
	int binding;                   /* challengePassword must carry the channel binding */
	int subject_change;            /* simplereenroll may change subject / SANs */
	int key_nid;                   /* csrattrs: EVP_PKEY_EC or EVP_PKEY_RSA (0: none) */
	int key_param;                 /* curve NID, or RSA bits */
	int lifetime_long;             /* certificates get long-lifetime */
	unsigned ext_ku;               /* csrattrs-extensions: keyUsage bits (KU_*) */
	unsigned ext_eku;              /* ... and extendedKeyUsage (EST_EKU_* bits) */
	int ext_required;              /* csrattrs-extensions-required: the CSR must carry them */
	long retry_after;              /* seconds, in 202 answers */
};

/* Passwords verified recently (HTTP Basic): PBKDF2 costs tens of ms on
 * the one event loop, so a user's next requests with the same password are
 * checked against HMAC-SHA256(a random per-process key, password) instead,
 * for EST_CACHE_SECONDS, and only while the user's line in the file is the
 * same.  A fixed table; the oldest entry is replaced. */
#define EST_CACHE_SLOTS 64
#define EST_CACHE_SECONDS 300
struct est_cred_entry {
	char user[EST_USER_MAX + 1];
	unsigned char line[32];        /* SHA-256 of the user's line */
	unsigned char mac[32];
	int64_t until;                 /* 0: empty */
};
struct est_cred_cache {
	unsigned char key[32];
	int ready;
	struct est_cred_entry e[EST_CACHE_SLOTS];
};
int est_cred_cache_init(struct est_cred_cache *c);

struct est_server {
	struct est_profile prof[EST_MAX_PROFILES];
	size_t nprof;
	long rate_limit;               /* wrong credentials per address per minute */
	ratelimit *rl;
	struct est_cred_cache cache;   /* wiped by est_server_free */
};

/* Parse est.conf text into s (profiles without their bootstrap stores).
 * 0 ok, -1 with err naming the line. */
int est_conf_parse(struct est_server *s, const char *text, size_t len, const char *name, char *err,
		   size_t errlen);
/* DIR/est.conf (absent: *out = NULL, EST off), bootstrap CA files loaded,
 * rate limiter made.  0 ok, -1 error (printed). */
int est_server_load(const char *dir, struct est_server **out);
void est_server_free(struct est_server **s);
/* Name every profile's bootstrap CA in the listener's CertificateRequest
 * (beside the CA), so that clients choosing a certificate by the CA names
 * offer their IDevID.  0 ok, -1 error. */
int est_client_ca_names(const struct est_server *s, SSL_CTX *ctx);
/* The profile for a label ("" the default), or NULL. */
const struct est_profile *est_profile_find(const struct est_server *s, const char *label);

/* A request path below /.well-known/est/: "OP" or "LABEL/OP".  1 when it
 * is an EST path (label and op copied), 0 when not. */
int est_path_parse(const char *path, char *label, size_t llen, char *op, size_t oplen);

/* Standard base64 (RFC 4648 s4), whitespace (CR LF SP TAB) ignored, padding
 * optional only at the very end.  *out malloc'ed.  0 ok, -1 malformed or
 * more than max decoded bytes. */
int est_b64_decode(const unsigned char *in, size_t len, size_t max, unsigned char **out, size_t *outlen);
/* Base64 with an LF every 64 characters and at the end (RFC 7030 s4.1.3,
 * Content-Transfer-Encoding: base64).  NUL-terminated, malloc'ed. */
char *est_b64_encode(const unsigned char *in, size_t len, size_t *outlen);
/* Plain base64 without line breaks (the channel binding's encoding). */
char *est_b64_line(const unsigned char *in, size_t len);

/* "Basic BASE64(user:password)" (RFC 7617).  0 ok, -1 malformed. */
int est_basic_parse(const char *header, char user[EST_USER_MAX + 1], char pass[EST_PASSWORD_MAX + 1]);

/* One line of the credentials file:
 * "NAME:pbkdf2-sha256:ITERATIONS:SALT_HEX:HASH_HEX".  0 ok, -1 not. */
int est_user_line(const char *line, size_t len, char name[EST_USER_MAX + 1], unsigned *iter,
		  unsigned char salt[EST_SALT_LEN], unsigned char hash[EST_HASH_LEN]);
/* The line for a new password (fresh salt), NUL-terminated, with LF. */
int est_user_make(const char *name, const char *pass, size_t plen, char *line, size_t linelen);
/* Check name/password against the credentials text (cache: NULL or the
 * server's, see above; now in seconds).  1 match, 0 not. */
int est_user_check(struct est_cred_cache *cache, const char *text, size_t len, const char *name,
		   const char *pass, int64_t now);
/* A user name: 1-64 of [A-Za-z0-9._@-]. */
int est_user_name_ok(const char *name);

/* The extensions of csrattrs-extensions as one would have them (keyUsage
 * critical, then extendedKeyUsage), or NULL (none asked, or no memory:
 * then *err is set). */
STACK_OF(X509_EXTENSION) *est_profile_exts(const struct est_profile *p, int *err);
/* 1 when req's extensionRequest has every keyUsage bit and extendedKeyUsage
 * purpose of the profile's csrattrs-extensions; else 0 and what lacks in
 * why. */
int est_exts_ok(const struct est_profile *p, X509_REQ *req, char *why, size_t wlen);
/* csrattrs (RFC 7030 s4.5.2) DER for a profile.  malloc'ed. */
int est_csrattrs_der(const struct est_profile *p, unsigned char **der, size_t *len);
/* certs-only PKCS#7 SignedData DER (RFC 5652 s5, RFC 7030 s4.1.3). */
int est_certs_only_der(STACK_OF(X509) *certs, unsigned char **der, size_t *len);
/* The CSR's challengePassword (PKCS#9) as text, or -1 when it has none. */
int est_challenge_password(X509_REQ *req, char *out, size_t outlen);

/* p11ca est-user add|remove|list (est_user.c) */
int est_user_main(int argc, char **argv);

#endif
