/*
 * libp11cert: TLS identities whose private key never leaves a PKCS#11 token.
 *
 * One handle (p11c_ctx) owns one loaded PKCS#11 module, one selected token
 * and at most one login.  Keys are referenced by p11c_key handles that carry
 * the token object's CKA_ID and CKA_LABEL; signing goes through an EVP_PKEY
 * whose private operations run in the token over the handle's session, so
 * OpenSSL never sees key material and no ENGINE is involved.
 *
 * Every function returns a p11c_result.  p11c_strerror() names the class of
 * error; p11c_ctx_detail() gives the full sentence for the last failure on a
 * handle ("C_Login on token 'ci' (libsofthsm2.so): CKR_PIN_INCORRECT").
 */
#ifndef P11CERT_P11CERT_H
#define P11CERT_P11CERT_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11cert/version.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(P11C_BUILDING_LIBRARY)
#define P11C_API __attribute__((visibility("default")))
#else
#define P11C_API
#endif

/* Results.  Stable numbers: append only. */
typedef enum {
	P11C_OK = 0,
	P11C_ERR_NOMEM = 1,         /* out of memory */
	P11C_ERR_ARG = 2,           /* invalid argument or option */
	P11C_ERR_URI = 3,           /* malformed or unsupported pkcs11: URI */
	P11C_ERR_MODULE = 4,        /* PKCS#11 module cannot be loaded */
	P11C_ERR_NO_TOKEN = 5,      /* no token matches */
	P11C_ERR_AMBIGUOUS = 6,     /* several tokens or objects match */
	P11C_ERR_NO_PIN = 7,        /* no PIN source available or readable */
	P11C_ERR_PIN_INCORRECT = 8, /* the token refused the PIN */
	P11C_ERR_PIN_LOCKED = 9,    /* the PIN is locked or expired */
	P11C_ERR_NOT_FOUND = 10,    /* no such object on the token */
	P11C_ERR_EXISTS = 11,       /* an object with that label exists */
	P11C_ERR_TOKEN_FULL = 12,   /* the token has no room */
	P11C_ERR_READ_ONLY = 13,    /* the token is write protected */
	P11C_ERR_MECHANISM = 14,    /* key type or mechanism not supported */
	P11C_ERR_PKCS11 = 15,       /* other PKCS#11 failure */
	P11C_ERR_CRYPTO = 16,       /* OpenSSL failure */
	P11C_ERR_SUBJECT = 17,      /* malformed subject / DN string */
	P11C_ERR_SAN = 18,          /* malformed subjectAltName */
	P11C_ERR_PARSE = 19,        /* unparseable certificate, CSR or PEM */
	P11C_ERR_KEY_MISMATCH = 20, /* certificate is not for this key */
	P11C_ERR_IO = 21,           /* file read/write failure */
	P11C_ERR_TOKEN_GONE = 22,   /* token removed / device error */
	P11C_ERR_INTERNAL = 23,     /* a bug: should not happen */
	P11C_ERR_NETWORK = 24,      /* server unreachable, connection failed */
	P11C_ERR_TLS = 25,          /* TLS handshake or peer verification failed */
	P11C_ERR_PROTOCOL = 26,     /* unexpected answer from the server */
	P11C_ERR_REJECTED = 27,     /* the CA rejected the request */
	P11C_ERR_PENDING = 28,      /* not signed yet */
	P11C_ERR_LOCKED = 29,       /* another run holds the lock */
	P11C_ERR_VERIFY = 30,       /* returned certificate fails our checks */
	P11C_RESULT_MAX_
} p11c_result;

/* Static, never NULL. */
P11C_API const char *p11c_strerror(p11c_result r);
/* Name of a PKCS#11 return value ("CKR_PIN_INCORRECT"), never NULL. */
P11C_API const char *p11c_ckr_name(unsigned long rv);

typedef struct p11c_ctx p11c_ctx;
typedef struct p11c_key p11c_key;

/* --- context ----------------------------------------------------------- */

/* PIN callback for interactive use.  Write at most `size-1` bytes plus NUL
 * into buf; return 0 on success, -1 when no PIN can be had.  `prompt` names
 * the token.  The library wipes buf after use. */
typedef int (*p11c_pin_cb)(const char *prompt, char *buf, size_t size,
			   void *userdata);

P11C_API p11c_result p11c_ctx_new(p11c_ctx **out);
/* Logs out, closes sessions, unloads the module, wipes the PIN.  NULL ok.
 * Sets *ctx to NULL. */
P11C_API void p11c_ctx_free(p11c_ctx **ctx);
/* Detail of the last failure on this handle, "" when none. */
P11C_API const char *p11c_ctx_detail(const p11c_ctx *ctx);

/* Module to load instead of the URI's module-path/module-name and the
 * default p11-kit-proxy.so.  Must be called before p11c_open(). */
P11C_API p11c_result p11c_ctx_set_module(p11c_ctx *ctx, const char *path);
/* PIN sources, consulted in this order: the URI's pin-source, the PIN file,
 * the environment variable P11CERT_PIN (when enabled, default on), the
 * callback.  The PIN is never stored beyond the login. */
P11C_API p11c_result p11c_ctx_set_pin_file(p11c_ctx *ctx, const char *path);
/* For programs that hold a PIN or a shared token: no core dumps for the
 * life of the process (soft RLIMIT_CORE 0, PR_SET_DUMPABLE 0, which also
 * keeps other processes of the user from ptrace and /proc/PID/mem).
 * 0, or -1 with errno set. */
P11C_API int p11c_no_core_dumps(void);
P11C_API void p11c_ctx_set_pin_env(p11c_ctx *ctx, int enabled);
P11C_API void p11c_ctx_set_pin_callback(p11c_ctx *ctx, p11c_pin_cb cb,
					void *userdata);

/* Load the module (once per handle) and select the one token the URI's
 * token attributes match.  Login happens lazily, once, when an operation
 * needs it.  A second call with a URI for the same token is a no-op; for a
 * different token it fails with P11C_ERR_ARG. */
P11C_API p11c_result p11c_open(p11c_ctx *ctx, const char *uri);
/* Log in now (no-op when logged in).  Never retries a refused PIN. */
P11C_API p11c_result p11c_login(p11c_ctx *ctx);
/* Label and module description of the selected token (NULL before open). */
P11C_API const char *p11c_token_label(const p11c_ctx *ctx);
P11C_API const char *p11c_module_name(const p11c_ctx *ctx);

#define P11C_SIGN_SESSIONS_MAX 64
/* Sign with up to n PKCS#11 sessions at once (default 1: the context's one
 * session, serialised by a lock, as today).  n is capped at
 * P11C_SIGN_SESSIONS_MAX (64); 0 is P11C_ERR_ARG.  Extra sessions are
 * opened on demand (after the login, so they are logged in; PKCS#11 login
 * state is per application) and closed with the ctx.  Where the module
 * cannot lock (see p11c_ctx_threads_ok) signing stays serialised whatever
 * n says.  May be called at any time; idle sessions beyond a lowered n are
 * closed at once, busy ones when their signature is done. */
P11C_API p11c_result p11c_ctx_set_sign_sessions(p11c_ctx *ctx, unsigned n);
/* 1 when the module was initialised with CKF_OS_LOCKING_OK (calls from
 * several threads are safe), 0 when it refused that (CKR_CANT_LOCK) and runs
 * single-threaded; -1 before a module is loaded.  At 0 the library
 * serialises its signatures (one process-wide lock, the ctx's session); the
 * application must not call other functions on the ctx while another
 * thread signs.  A module someone else initialised before us (the
 * application, CKR_CRYPTOKI_ALREADY_INITIALIZED) counts as 0 unless an
 * earlier ctx of this process initialised it with CKF_OS_LOCKING_OK. */
P11C_API int p11c_ctx_threads_ok(const p11c_ctx *ctx);

/* --- keys -------------------------------------------------------------- */

typedef enum {
	P11C_KEY_RSA_2048 = 1,
	P11C_KEY_RSA_3072,
	P11C_KEY_RSA_4096,
	P11C_KEY_EC_P256,
	P11C_KEY_EC_P384,
	P11C_KEY_ED25519,
} p11c_key_type;

/* "rsa:2048", "rsa", "ec:P-256", "ec", "p256", "ec:P-384", "ed25519"... */
P11C_API p11c_result p11c_key_type_parse(const char *s, p11c_key_type *out);
P11C_API const char *p11c_key_type_name(p11c_key_type t);

#define P11C_KEYGEN_FORCE 0x1u /* create even when the label exists */
/* Ed25519 keys are refused unless this is set: p11c_key_signer cannot sign
 * with them (an OpenSSL provider would be needed). */
#define P11C_KEYGEN_ALLOW_EDDSA 0x2u

/* Generate a key pair on the token selected by `uri` (which must carry
 * object=LABEL; an id= is used as CKA_ID, else the SHA-1 key identifier of
 * the public key).  Private key: CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE,
 * CKA_SIGN true, CKA_EXTRACTABLE false. */
P11C_API p11c_result p11c_keygen(p11c_ctx *ctx, const char *uri,
				 p11c_key_type type, unsigned flags,
				 p11c_key **out);
/* Find exactly one private key matching the URI's object/id. */
P11C_API p11c_result p11c_key_find(p11c_ctx *ctx, const char *uri,
				   p11c_key **out);
P11C_API void p11c_key_free(p11c_key **key);

P11C_API const char *p11c_key_label(const p11c_key *key);
P11C_API const unsigned char *p11c_key_id(const p11c_key *key, size_t *len);
P11C_API p11c_key_type p11c_key_get_type(const p11c_key *key);
/* pkcs11: URI of the key (token, object, id; no pin, no module).
 * Caller frees with free(). */
P11C_API char *p11c_key_uri(const p11c_key *key, const char *type);
/* pkcs11: URI of the object LABEL on the open token, percent-encoded (a
 * label may hold ';', '%', '/').  Caller frees with free(). */
P11C_API char *p11c_label_uri(const p11c_ctx *ctx, const char *label);
/* The public key (owned by the key handle). */
P11C_API EVP_PKEY *p11c_key_public(p11c_key *key);
/* An EVP_PKEY whose private operations run on the token (owned by the key
 * handle; valid while ctx lives).  Logs in if needed. */
P11C_API p11c_result p11c_key_signer(p11c_key *key, EVP_PKEY **out);
/* Digest for signatures by this key: SHA-256 for RSA-2048/EC P-256,
 * SHA-384 for larger; NULL for Ed25519. */
P11C_API const EVP_MD *p11c_key_default_md(const p11c_key *key);

/* Set CKA_LABEL of the key, its public key and its certificates (the
 * objects sharing its CKA_ID).  Used to put a new key in an old one's place
 * after a rekey. */
P11C_API p11c_result p11c_key_relabel(p11c_ctx *ctx, p11c_key *key, const char *label);

/* Let the next signature use a different key on modules that keep every key
 * they used loaded until logout (tpm2-pkcs11 without a resource manager):
 * logs out and back in with the PIN of the first login, kept in memory for
 * this on TPM modules only.  Key handles stay valid; a kept HTTPS connection
 * is closed.  Does nothing on other modules or before a login. */
P11C_API p11c_result p11c_token_release_keys(p11c_ctx *ctx);

/* Delete the private key, public key and certificates sharing its CKA_ID.
 * *key is freed.  On TPM modules the keys are released first
 * (p11c_token_release_keys): tpm2-pkcs11 would leave a loaded key it
 * destroys in the TPM. */
P11C_API p11c_result p11c_key_delete(p11c_ctx *ctx, p11c_key **key);

/* --- names and CSRs ------------------------------------------------------ */

/* Parse "/C=SE/O=Example/CN=host1" or RFC 2253 "CN=host1,O=Example,C=SE".
 * RFC 2253 strings list the most specific RDN first; the result is in
 * X.509 (most general first) order either way. */
P11C_API p11c_result p11c_subject_parse(const char *s, X509_NAME **out,
					char *err, size_t errlen);
/* Parse a DN string in the order written, as the NiFi TLS toolkit's Java
 * client does: "CN=n1, OU=NIFI" gives the DER subject [CN, OU] (RFC 2253
 * strings are NOT reversed; the slash form is read as p11c_subject_parse
 * reads it).  Multi-valued RDNs stay together. */
P11C_API p11c_result p11c_dn_parse_as_written(const char *s, X509_NAME **out,
					      char *err, size_t errlen);
/* A new name with the RDN order reversed (multi-valued RDNs kept
 * together): what the NiFi TLS toolkit server does to a CSR subject. */
P11C_API p11c_result p11c_name_reverse(const X509_NAME *in, X509_NAME **out);
/* 1 when a and b have the same DER encoding, byte for byte (X509_NAME_cmp
 * compares a canonical form, not the bytes); 0 otherwise or on error. */
P11C_API int p11c_name_der_equal(const X509_NAME *a, const X509_NAME *b);
/* Parse "DNS:name", "IP:addr", "email:addr", "URI:uri" into a GENERAL_NAME
 * and push it to *names (created when NULL). */
P11C_API p11c_result p11c_san_add(const char *s, STACK_OF(GENERAL_NAME) **names,
				  char *err, size_t errlen);

/* Build and sign a CSR with the token key.  sans may be NULL.  md NULL means
 * p11c_key_default_md(). */
P11C_API p11c_result p11c_csr_create(p11c_key *key, const X509_NAME *subject,
				     const STACK_OF(GENERAL_NAME) *sans,
				     const EVP_MD *md, X509_REQ **out);

/* --- certificates ---------------------------------------------------------- */

/* Store `cert` next to `key` (same CKA_ID and CKA_LABEL).  Fails with
 * P11C_ERR_KEY_MISMATCH unless its public key is the key's.  Existing
 * certificates with that CKA_ID are destroyed only after the new object was
 * created and read back. */
P11C_API p11c_result p11c_cert_store(p11c_ctx *ctx, p11c_key *key, X509 *cert);
/* The certificate stored for `key`; P11C_ERR_NOT_FOUND when none.  With
 * several, the one with the latest notAfter.  Caller frees. */
P11C_API p11c_result p11c_cert_get(p11c_ctx *ctx, p11c_key *key, X509 **out);
/* Find one certificate object by URI (object/id). */
P11C_API p11c_result p11c_cert_find(p11c_ctx *ctx, const char *uri, X509 **out);

/* 1 when the certificate's public key equals pub, 0 otherwise. */
P11C_API int p11c_cert_matches(X509 *cert, EVP_PKEY *pub);
/* RFC 5280 s4.2.1.2 method (1) key identifier: SHA-1 of the
 * subjectPublicKey BIT STRING contents.  out must hold 20 bytes. */
P11C_API p11c_result p11c_pubkey_keyid(EVP_PKEY *pub, unsigned char out[20]);

/* --- Java ---------------------------------------------------------------- */

/* A SunPKCS11 provider configuration for the token of ctx (absolute module
 * path, slot id) naming key's label as the KeyStore alias; no PIN.  Caller
 * frees *out with free(). */
P11C_API p11c_result p11c_java_pkcs11_config(p11c_ctx *ctx, p11c_key *key, char **out);
/* A PKCS#12 truststore (DER) holding cas as Java trusted-certificate
 * entries (aliases ca, ca2, ...): no encryption, no MAC, so it loads with
 * any or no password; it holds nothing secret.  Caller frees *der with
 * free(). */
P11C_API p11c_result p11c_java_truststore(STACK_OF(X509) *cas, unsigned char **der, size_t *len);

/* --- listing ------------------------------------------------------------- */

typedef enum {
	P11C_OBJ_PRIVATE_KEY = 1,
	P11C_OBJ_PUBLIC_KEY,
	P11C_OBJ_CERTIFICATE,
	P11C_OBJ_OTHER,
} p11c_obj_class;

typedef struct {
	p11c_obj_class cls;
	char *label;          /* may be "" */
	unsigned char *id;
	size_t id_len;
	char *key_desc;       /* "RSA 2048", "EC P-256", "Ed25519", or NULL */
	X509 *cert;           /* for certificates, else NULL */
	int sensitive;        /* private keys: CKA_SENSITIVE */
	int extractable;      /* private keys: CKA_EXTRACTABLE */
	char *uri;            /* pkcs11: URI of the object */
} p11c_object;

/* Objects on the selected token matching the URI's object/id/type filters,
 * sorted by id then class.  Logs in when a PIN is available so private keys
 * are visible. */
P11C_API p11c_result p11c_list(p11c_ctx *ctx, const char *uri,
			       p11c_object **out, size_t *n);
P11C_API void p11c_objects_free(p11c_object **objs, size_t n);

/* --- files ---------------------------------------------------------------- */

/* Write atomically: temp file in the same folder, fsync, rename, fsync of
 * the folder.  mode e.g. 0600 or 0644. */
P11C_API p11c_result p11c_file_write_atomic(const char *path, const void *data,
					    size_t len, unsigned mode);
/* Read a whole file of at most maxlen bytes.  Caller frees *out. */
P11C_API p11c_result p11c_file_read(const char *path, size_t maxlen,
				    unsigned char **out, size_t *len);

/* PEM text of a certificate (NUL-terminated, caller frees with free()),
 * or NULL on allocation failure. */
P11C_API char *p11c_x509_pem(X509 *cert);

/* PEM or DER certificate / CSR from memory. */
P11C_API p11c_result p11c_x509_parse(const unsigned char *buf, size_t len,
				     X509 **out);
P11C_API p11c_result p11c_req_parse(const unsigned char *buf, size_t len,
				    X509_REQ **out);

#ifdef __cplusplus
}
#endif
#endif
