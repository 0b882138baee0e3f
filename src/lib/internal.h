/* Internal to libp11cert: not installed. */
#ifndef P11C_INTERNAL_H
#define P11C_INTERNAL_H

#include <pthread.h>

#include <p11cert/p11cert.h>
#include <p11-kit/pkcs11.h>
#include <p11-kit/uri.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#define P11C_HIDDEN __attribute__((visibility("hidden")))
#define P11C_PRINTF(a, b) __attribute__((format(printf, a, b)))

#define P11C_DETAIL_MAX 1024
#define P11C_PIN_MAX 256
#define P11C_LABEL_MAX 128
#define P11C_ID_MAX 64

struct p11c_ctx {
	char detail[P11C_DETAIL_MAX];

	/* configuration */
	char *module_override;      /* --module */
	char *pin_file;             /* --pin-file */
	int pin_env;                /* consult P11CERT_PIN */
	p11c_pin_cb pin_cb;
	void *pin_cb_data;

	/* module: dlopen'ed and C_Initialize'd by us once; the signer
	 * (signer.c) uses the same function list, session and login */
	char *module_path;
	char module_desc[80];       /* CK_INFO.libraryDescription, trimmed */
	void *dl;                   /* our dlopen handle of the module */
	CK_FUNCTION_LIST_PTR f;
	int we_initialized;         /* C_Initialize returned CKR_OK for us */

	/* token */
	int opened;
	CK_SLOT_ID slot_id;
	char token_label[33];
	char token_serial[17];
	CK_FLAGS token_flags;
	CK_SESSION_HANDLE session;  /* R/W session, 0 when none */
	int logged_in;
	p11c_result login_refused;  /* a refused PIN is never tried again */
	CK_RV sign_rv;              /* signer.c: CKR of the last refused signature
	                             * (reset by http.c before each request) */
	char *pin_source;           /* from the URI of p11c_open */

	/* signer.c: the PIN for CKU_CONTEXT_SPECIFIC logins (keys with
	 * CKA_ALWAYS_AUTHENTICATE), locked memory, wiped at close */
	struct p11c_ctx_pin *ctx_pin;

	/* token.c: 1 the module took CKF_OS_LOCKING_OK, 0 it refused
	 * (CKR_CANT_LOCK) and runs single-threaded, -1 no module yet */
	int threads_ok;
	/* signer.c: the signing sessions (p11c_ctx_set_sign_sessions) */
	struct p11c_sign_pool *sign_pool;

	/* HTTPS (http.c): one libcurl handle kept for the requests of a run,
	 * so they share a connection.  Reused only for the same trust and the
	 * same client certificate; never for the shared-token bootstrap. */
	void *http;                 /* CURL * */
	X509 *http_cert;            /* the client certificate it presents */
	char *http_trust;           /* "F" + ca_file, "P" + ca_pem, or "S" */
	char http_server[64];       /* Server header of the last answer ("" none) */

	struct p11c_tpm *tpm;       /* tpm.c: TPM module facts, the held PIN */
};

struct p11c_key {
	p11c_ctx *ctx;
	char *label;
	unsigned char id[P11C_ID_MAX];
	size_t id_len;
	p11c_key_type type;
	CK_OBJECT_HANDLE priv;      /* handle in ctx->session */
	EVP_PKEY *pub;              /* built from the token's public attributes */
	EVP_PKEY *signer;           /* signer.c: signs in the token */
};

/* tpm.c: TPM 2.0 modules (tpm2-pkcs11) */
P11C_HIDDEN int p11c_tpm_module(p11c_ctx *ctx);
/* keep the PIN of a successful login for p11c_token_release_keys (TPM
 * modules only; wiped by p11c_tpm_free) */
P11C_HIDDEN void p11c_tpm_hold_pin(p11c_ctx *ctx, const char *pin, size_t len);
P11C_HIDDEN void p11c_tpm_free(p11c_ctx *ctx);
/* append the likely cause of rv / of a TLS failure on a TPM to detail */
P11C_HIDDEN void p11c_tpm_ckr_hint(p11c_ctx *ctx, CK_RV rv);
P11C_HIDDEN void p11c_tpm_tls_hint(p11c_ctx *ctx);

/* result.c */
P11C_HIDDEN void p11c_detail(p11c_ctx *ctx, const char *fmt, ...) P11C_PRINTF(2, 3);
/* Set detail "FUNC on token 'T' (module): CKR_X" and map rv to a result. */
P11C_HIDDEN p11c_result p11c_ckr(p11c_ctx *ctx, const char *func, CK_RV rv);
P11C_HIDDEN p11c_result p11c_ckr_result(CK_RV rv);
/* Append OpenSSL's error queue to detail (draining it); returns
 * P11C_ERR_CRYPTO. */
P11C_HIDDEN p11c_result p11c_ossl(p11c_ctx *ctx, const char *what);
/* Same, into a caller buffer. */
P11C_HIDDEN void p11c_ossl_str(char *buf, size_t len);

/* uri.c: our view of a pkcs11: URI */
typedef struct {
	P11KitUri *uri;
	char *object;               /* CKA_LABEL or NULL */
	unsigned char id[P11C_ID_MAX];
	size_t id_len;              /* 0: no id */
	int has_id;
	int has_class;
	CK_OBJECT_CLASS cls;
	int has_slot_id;
	CK_SLOT_ID slot_id;
	const char *module_path;    /* borrowed from uri */
	const char *module_name;
	const char *pin_source;
	int has_pin_value;
} p11c_uri;

P11C_HIDDEN p11c_result p11c_uri_parse(p11c_ctx *ctx, const char *s, p11c_uri *out);
P11C_HIDDEN void p11c_uri_clear(p11c_uri *u);
/* Format a URI for the selected token plus optional label/id/type. */
P11C_HIDDEN char *p11c_uri_format(const p11c_ctx *ctx, const char *label,
				  const unsigned char *id, size_t id_len,
				  const char *type);
/* Resolve module-name= through p11-kit's module configuration. */
P11C_HIDDEN p11c_result p11c_module_by_name(p11c_ctx *ctx, const char *name,
					    char **path);

/* pin.c: PIN acquisition; buf holds P11C_PIN_MAX bytes.  Caller wipes. */
P11C_HIDDEN p11c_result p11c_pin_get(p11c_ctx *ctx, char *buf, size_t *len);
/* Read "file:PATH" or "PATH" pin sources; first line, no newline. */
P11C_HIDDEN p11c_result p11c_pin_from_file(p11c_ctx *ctx, const char *path,
					   char *buf, size_t *len);

/* token.c */
P11C_HIDDEN p11c_result p11c_need_session(p11c_ctx *ctx);

/* signer.c: an EVP_PKEY whose private operations run in the token through
 * ctx's session; the key's public key with our RSA / EC_KEY methods. */
P11C_HIDDEN p11c_result p11c_signer_new(p11c_key *key, EVP_PKEY **out);
/* Signing sessions of a ctx beyond ctx->session: used when n > 1 and the
 * module can lock.  Free ones wait in free_s; every field under mu, cv
 * signalled when a session comes back or a slot opens. */
struct p11c_sign_pool {
	pthread_mutex_t mu;
	pthread_cond_t cv;
	unsigned n;                 /* p11c_ctx_set_sign_sessions, 1..64 */
	unsigned limit;             /* at most this many open: n, or fewer
	                             * after C_OpenSession refused one */
	unsigned open;              /* open or being opened (slot reserved) */
	unsigned nfree;
	CK_SESSION_HANDLE free_s[P11C_SIGN_SESSIONS_MAX];
};

/* The pool of a new ctx (p11c_ctx_new); P11C_ERR_NOMEM or P11C_OK. */
P11C_HIDDEN p11c_result p11c_signer_ctx_init(p11c_ctx *ctx);
/* Close the signing sessions, destroy the pool, wipe and free the
 * context-specific PIN (p11c_ctx_free, before C_Finalize). */
P11C_HIDDEN void p11c_signer_ctx_release(p11c_ctx *ctx);

/* objects.c: find objects in ctx->session. */
P11C_HIDDEN p11c_result p11c_find(p11c_ctx *ctx, CK_ATTRIBUTE *tmpl,
				  CK_ULONG n, CK_OBJECT_HANDLE *out,
				  CK_ULONG max, CK_ULONG *count);
/* Read one variable-length attribute (allocated, caller frees). */
P11C_HIDDEN p11c_result p11c_attr(p11c_ctx *ctx, CK_OBJECT_HANDLE h,
				  CK_ATTRIBUTE_TYPE type, unsigned char **val,
				  CK_ULONG *len);
/* Public key of a key object (private or public) as EVP_PKEY: looks for
 * the matching public key object or certificate by CKA_ID, and for RSA
 * private keys reads modulus / public exponent. */
P11C_HIDDEN p11c_result p11c_pubkey_for_id(p11c_ctx *ctx, CK_OBJECT_HANDLE priv,
					   const unsigned char *id, size_t id_len,
					   EVP_PKEY **out, p11c_key_type *type);
P11C_HIDDEN p11c_result p11c_pubkey_from_object(p11c_ctx *ctx, CK_OBJECT_HANDLE h,
						EVP_PKEY **out, p11c_key_type *type);
P11C_HIDDEN p11c_result p11c_key_new(p11c_ctx *ctx, CK_OBJECT_HANDLE priv,
				     p11c_key **out);
/* The same with the pair's public key object already known (pub), or
 * CK_INVALID_HANDLE to search for it by CKA_ID. */
P11C_HIDDEN p11c_result p11c_key_new_pub(p11c_ctx *ctx, CK_OBJECT_HANDLE priv,
					 CK_OBJECT_HANDLE pub, p11c_key **out);

/* x509util.c */
P11C_HIDDEN char *p11c_hex(const unsigned char *b, size_t n, int colons);
P11C_HIDDEN p11c_result p11c_key_type_of(EVP_PKEY *pk, p11c_key_type *t);
P11C_HIDDEN void p11c_key_desc(EVP_PKEY *pk, char *buf, size_t len);

/* wipe */
P11C_HIDDEN void p11c_wipe(void *p, size_t n);
/* p11c_csr_create with more extensions in the extensionRequest (extra,
 * may be NULL; copied after subjectAltName, which must not be among them)
 * and a challengePassword attribute (challenge, may be NULL) signed in
 * with the rest (csr.c; EST csrattrs and channel binding) */
P11C_HIDDEN p11c_result p11c_csr_build(p11c_key *key, const X509_NAME *subject,
				       const STACK_OF(GENERAL_NAME) *sans,
				       const STACK_OF(X509_EXTENSION) *extra, const EVP_MD *md,
				       const char *challenge, X509_REQ **out);

#endif
