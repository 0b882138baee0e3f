/*
 * The signer: a token private key as an OpenSSL 3 EVP_PKEY whose private
 * operations run in the token, through the module, session and login the
 * token layer (token.c) already holds.  One module instance, one
 * C_Initialize and one login per process; no second PKCS#11 library
 * (libp11 used to load the module a second time and enumerate the token).
 *
 * The EVP_PKEY carries the token's public key and, per key, an RSA_METHOD
 * or EC_KEY_METHOD whose private operations call C_Sign (no ENGINE).
 * OpenSSL 3 treats such keys as "foreign" legacy keys and signs through
 * its legacy RSA/EC code, which pads (PKCS#1 v1.5 DigestInfo, PSS) and
 * then calls our methods:
 *   RSA PKCS#1 v1.5 (RFC 8017 s8.2): CKM_RSA_PKCS over the DigestInfo
 *   RSA-PSS (RFC 8017 s8.1, TLS 1.3 RFC 8446 s4.2.3): OpenSSL encodes
 *     EMSA-PSS and asks for the raw RSA operation: CKM_RSA_X_509
 *   ECDSA: CKM_ECDSA over the digest; PKCS#11 returns r || s (PKCS#11
 *     v2.40 curr. mech. s2.3.1), converted to ECDSA-Sig-Value DER
 *     (RFC 5480 s2.2 / RFC 3279 s2.2.3) by OpenSSL's ECDSA_do_sign path.
 *
 * Keys with CKA_ALWAYS_AUTHENTICATE need C_Login(CKU_CONTEXT_SPECIFIC)
 * right after each C_SignInit (PKCS#11 v2.40 s5.13 / s10.9).  The PIN
 * comes from the same source as the user login, once, and is kept in
 * mlock'ed memory for the life of the p11c_ctx (wiped at close): a
 * refused PIN is never tried again.
 *
 * Session use is serialized by one process-wide lock: p11ca signs from
 * its worker threads, and a PKCS#11 session is single-threaded.  With
 * p11c_ctx_set_sign_sessions(ctx, n > 1) and a module initialised with
 * CKF_OS_LOCKING_OK (ctx->threads_ok), signatures run instead on a pool of
 * up to n sessions of their own, opened on demand beside ctx->session
 * (logged in already: login state is per application, PKCS#11 v2.40
 * s5.6; object handles are valid in every session of the application),
 * one signature per session at a time, without the lock.  Only what a
 * signature writes into the ctx (detail, sign_rv, login_refused) is still
 * done under the lock.  A session the module calls invalid, closed or
 * removed leaves the pool; the signature is not retried (nothing that
 * involves the PIN is).  A module that cannot lock, or n == 1, keeps the
 * one session and the lock.
 */
#define OPENSSL_SUPPRESS_DEPRECATED 1
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rsa.h>

#include "internal.h"

#define SIG_MAX 1024 /* RSA 8192 bits; r || s of P-521 */

struct p11c_signer {
	p11c_ctx *ctx;
	CK_OBJECT_HANDLE h;
	int always_auth;
	char label[64];
	RSA_METHOD *rsa_meth;       /* per key; freed with the key (finish) */
	EC_KEY_METHOD *ec_meth;
};

static pthread_mutex_t sign_lock = PTHREAD_MUTEX_INITIALIZER;

/* The context-specific PIN, in locked memory, for the ctx's lifetime. */
struct p11c_ctx_pin {
	char pin[P11C_PIN_MAX];
	size_t len;
	int locked;
};

static p11c_result ctx_pin_load(p11c_ctx *ctx)
{
	struct p11c_ctx_pin *cp;
	p11c_result r;

	if (ctx->ctx_pin != NULL)
		return P11C_OK;
	if (ctx->token_flags & CKF_PROTECTED_AUTHENTICATION_PATH)
		return P11C_OK; /* the reader asks */
	cp = calloc(1, sizeof *cp);
	if (cp == NULL)
		return P11C_ERR_NOMEM;
	/* best effort: without RLIMIT_MEMLOCK room it stays in ordinary
	 * memory, wiped at close */
	cp->locked = mlock(cp, sizeof *cp) == 0;
	r = p11c_pin_get(ctx, cp->pin, &cp->len);
	if (r != P11C_OK) {
		p11c_wipe(cp, sizeof *cp);
		if (cp->locked)
			(void)munlock(cp, sizeof *cp);
		free(cp);
		return r;
	}
	ctx->ctx_pin = cp;
	return P11C_OK;
}

void p11c_signer_ctx_release(p11c_ctx *ctx)
{
	struct p11c_sign_pool *p;
	struct p11c_ctx_pin *cp;
	unsigned i;
	int locked;

	if (ctx == NULL)
		return;
	p = ctx->sign_pool;
	if (p != NULL) {
		/* no signature runs: the ctx is being freed.  Busy sessions
		 * (a caller signing meanwhile) go with C_Finalize. */
		ctx->sign_pool = NULL;
		for (i = 0; i < p->nfree && ctx->f != NULL; i++)
			(void)ctx->f->C_CloseSession(p->free_s[i]);
		(void)pthread_cond_destroy(&p->cv);
		(void)pthread_mutex_destroy(&p->mu);
		free(p);
	}
	if (ctx->ctx_pin == NULL)
		return;
	cp = ctx->ctx_pin;
	ctx->ctx_pin = NULL;
	locked = cp->locked;
	p11c_wipe(cp, sizeof *cp);
	if (locked)
		(void)munlock(cp, sizeof *cp);
	free(cp);
}

/* Report a PKCS#11 failure both in ctx->detail and on OpenSSL's error
 * queue (the caller only sees the OpenSSL call fail).  locked: sign_lock
 * is held; else it is taken for the ctx fields. */
static void sign_err(struct p11c_signer *s, int locked, const char *func, CK_RV rv)
{
	p11c_result r;

	if (!locked)
		(void)pthread_mutex_lock(&sign_lock);
	r = p11c_ckr(s->ctx, func, rv);
	if (r == P11C_ERR_PIN_INCORRECT || r == P11C_ERR_PIN_LOCKED)
		s->ctx->login_refused = r;
	s->ctx->sign_rv = rv;
	ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "key '%s': %s", s->label,
		       s->ctx->detail);
	if (!locked)
		(void)pthread_mutex_unlock(&sign_lock);
}

/* The PIN was refused earlier in this run: say so, 1. */
static int pin_refused(p11c_ctx *ctx, int locked)
{
	int refused;

	if (!locked)
		(void)pthread_mutex_lock(&sign_lock);
	refused = ctx->login_refused != P11C_OK;
	if (refused) {
		p11c_detail(ctx, "the token '%s' refused the PIN earlier in this run; not trying "
			    "again (tokens lock after a few wrong PINs)", ctx->token_label);
		ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL, "%s", ctx->detail);
	}
	if (!locked)
		(void)pthread_mutex_unlock(&sign_lock);
	return refused;
}

/* The session itself is gone: it leaves the pool. */
static int session_gone(CK_RV rv)
{
	return rv == CKR_SESSION_HANDLE_INVALID || rv == CKR_SESSION_CLOSED ||
	       rv == CKR_DEVICE_REMOVED;
}

/* One signature in the token on session sh: C_SignInit, the
 * context-specific login when the key asks for it, C_Sign.  locked:
 * sign_lock is held (sh is ctx->session); else sh is the caller's alone.
 * *last: the CKR of the call that failed, CKR_OK on success. */
static int token_sign_on(struct p11c_signer *s, CK_SESSION_HANDLE sh, int locked,
			 CK_MECHANISM_TYPE mt, const unsigned char *in, size_t inlen,
			 unsigned char *out, CK_ULONG *outlen, CK_RV *last)
{
	p11c_ctx *ctx = s->ctx;
	CK_MECHANISM mech = { mt, NULL, 0 };
	struct p11c_ctx_pin *cp = ctx->ctx_pin;
	CK_RV rv;

	*last = CKR_OK;
	if (pin_refused(ctx, locked))
		return 0;
	rv = ctx->f->C_SignInit(sh, &mech, s->h);
	if (rv != CKR_OK) {
		*last = rv;
		sign_err(s, locked, "C_SignInit", rv);
		return 0;
	}
	if (s->always_auth) {
		if (cp != NULL)
			rv = ctx->f->C_Login(sh, CKU_CONTEXT_SPECIFIC, (CK_UTF8CHAR_PTR)cp->pin,
					     cp->len);
		else
			rv = ctx->f->C_Login(sh, CKU_CONTEXT_SPECIFIC, NULL, 0);
		if (rv != CKR_OK) {
			*last = rv;
			sign_err(s, locked, "C_Login(CKU_CONTEXT_SPECIFIC)", rv);
			/* end the signing operation: a C_Sign the token refuses
			 * (CKR_USER_NOT_LOGGED_IN) terminates it (PKCS#11 v2.40
			 * s5.2); a size query would not.  Its result is dropped. */
			(void)ctx->f->C_Sign(sh, (CK_BYTE_PTR)(uintptr_t)in, inlen, out, outlen);
			return 0;
		}
	}
	rv = ctx->f->C_Sign(sh, (CK_BYTE_PTR)(uintptr_t)in, inlen, out, outlen);
	if (rv != CKR_OK) {
		*last = rv;
		sign_err(s, locked, "C_Sign", rv);
		return 0;
	}
	return 1;
}

/* --- signing sessions (p11c_ctx_set_sign_sessions) -------------------------- */

p11c_result p11c_signer_ctx_init(p11c_ctx *ctx)
{
	struct p11c_sign_pool *p;
	p11c_result r = P11C_ERR_NOMEM;
	int mu = 0;

	p = calloc(1, sizeof *p);
	if (p == NULL)
		goto out;
	if (pthread_mutex_init(&p->mu, NULL) != 0)
		goto out;
	mu = 1;
	if (pthread_cond_init(&p->cv, NULL) != 0)
		goto out;
	p->n = 1;
	p->limit = 1;
	ctx->sign_pool = p;
	p = NULL;
	r = P11C_OK;
out:
	if (p != NULL && mu)
		(void)pthread_mutex_destroy(&p->mu);
	free(p);
	return r;
}

/* Sessions the pool may hold open: none while signing is serialised. */
static unsigned pool_target(const struct p11c_sign_pool *p)
{
	return p->n > 1 ? p->limit : 0;
}

p11c_result p11c_ctx_set_sign_sessions(p11c_ctx *ctx, unsigned n)
{
	struct p11c_sign_pool *p;
	CK_SESSION_HANDLE idle[P11C_SIGN_SESSIONS_MAX];
	unsigned nidle = 0, i;

	if (ctx == NULL || ctx->sign_pool == NULL || n == 0)
		return P11C_ERR_ARG;
	if (n > P11C_SIGN_SESSIONS_MAX)
		n = P11C_SIGN_SESSIONS_MAX;
	p = ctx->sign_pool;
	if (pthread_mutex_lock(&p->mu) != 0)
		return P11C_ERR_INTERNAL;
	p->n = n;
	p->limit = n; /* also after C_OpenSession refused one: try again */
	while (p->open > pool_target(p) && p->nfree > 0) {
		idle[nidle++] = p->free_s[--p->nfree];
		p->open--;
	}
	(void)pthread_cond_broadcast(&p->cv);
	(void)pthread_mutex_unlock(&p->mu);
	/* only a module that locks has pool sessions (pool_take) */
	for (i = 0; i < nidle; i++)
		(void)ctx->f->C_CloseSession(idle[i]);
	return P11C_OK;
}

enum { TAKE_SERIAL, TAKE_OK, TAKE_FAIL };

/* A session of the pool for one signature: a free one, a new one while
 * fewer than the limit are open, else wait for one.  TAKE_SERIAL: sign on
 * ctx->session under sign_lock (n == 1, a module that cannot lock, or no
 * session could be opened at all). */
static int pool_take(p11c_ctx *ctx, CK_SESSION_HANDLE *out)
{
	struct p11c_sign_pool *p = ctx->sign_pool;
	CK_SESSION_HANDLE h;
	CK_RV rv;
	int r;

	if (p == NULL || ctx->threads_ok != 1)
		return TAKE_SERIAL;
	if (pthread_mutex_lock(&p->mu) != 0)
		return TAKE_FAIL;
	for (;;) {
		if (p->n <= 1) {
			r = TAKE_SERIAL;
			break;
		}
		if (p->nfree > 0) {
			*out = p->free_s[--p->nfree];
			r = TAKE_OK;
			break;
		}
		if (p->open < p->limit) {
			p->open++; /* the slot is ours while we open it */
			(void)pthread_mutex_unlock(&p->mu);
			h = CK_INVALID_HANDLE;
			/* read-only is enough to sign; the login covers it */
			rv = ctx->f->C_OpenSession(ctx->slot_id, CKF_SERIAL_SESSION, NULL, NULL, &h);
			if (rv == CKR_OK) {
				*out = h;
				return TAKE_OK;
			}
			if (pthread_mutex_lock(&p->mu) != 0)
				return TAKE_FAIL;
			p->open--;
			(void)pthread_cond_broadcast(&p->cv);
			if (p->open == 0) {
				/* not one: the ctx's session, serialised */
				r = TAKE_SERIAL;
				break;
			}
			/* the token has no more sessions for us (CKR_SESSION_COUNT,
			 * ...): wait for one of those open, until the next
			 * p11c_ctx_set_sign_sessions */
			if (p->open < p->limit)
				p->limit = p->open;
			continue;
		}
		if (pthread_cond_wait(&p->cv, &p->mu) != 0) {
			r = TAKE_FAIL;
			break;
		}
	}
	(void)pthread_mutex_unlock(&p->mu);
	return r;
}

/* Give h back after a signature whose failing call returned last. */
static void pool_give(p11c_ctx *ctx, CK_SESSION_HANDLE h, CK_RV last)
{
	struct p11c_sign_pool *p = ctx->sign_pool;
	int do_close = 0;

	(void)pthread_mutex_lock(&p->mu);
	if (session_gone(last)) {
		p->open--;
		/* an invalid or closed handle is not closed again: the module
		 * may have given its number to a session opened since */
		do_close = last == CKR_DEVICE_REMOVED;
	} else if (p->open > pool_target(p)) {
		p->open--; /* n was lowered meanwhile */
		do_close = 1;
	} else {
		p->free_s[p->nfree++] = h;
	}
	(void)pthread_cond_broadcast(&p->cv);
	(void)pthread_mutex_unlock(&p->mu);
	if (do_close)
		(void)ctx->f->C_CloseSession(h);
}

static int token_sign(struct p11c_signer *s, CK_MECHANISM_TYPE mt, const unsigned char *in,
		      size_t inlen, unsigned char *out, CK_ULONG *outlen)
{
	CK_SESSION_HANDLE h = CK_INVALID_HANDLE;
	CK_RV last;
	int ok;

	switch (pool_take(s->ctx, &h)) {
	case TAKE_OK:
		ok = token_sign_on(s, h, 0, mt, in, inlen, out, outlen, &last);
		pool_give(s->ctx, h, last);
		return ok;
	case TAKE_SERIAL:
		break;
	default:
		ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL,
			       "key '%s': the signing session pool's lock failed", s->label);
		return 0;
	}
	if (pthread_mutex_lock(&sign_lock) != 0)
		return 0;
	ok = token_sign_on(s, s->ctx->session, 1, mt, in, inlen, out, outlen, &last);
	(void)pthread_mutex_unlock(&sign_lock);
	return ok;
}

/* --- RSA ------------------------------------------------------------------ */

static struct p11c_signer *rsa_signer(const RSA *rsa)
{
	return RSA_meth_get0_app_data(RSA_get_method(rsa));
}

/* RSA_private_encrypt: OpenSSL has built the block to sign. */
static int rsa_priv_enc(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
			int padding)
{
	struct p11c_signer *s = rsa_signer(rsa);
	CK_MECHANISM_TYPE mt;
	CK_ULONG outlen = (CK_ULONG)RSA_size(rsa);

	if (s == NULL || flen < 0)
		return -1;
	switch (padding) {
	case RSA_PKCS1_PADDING:
		mt = CKM_RSA_PKCS; /* the token adds EMSA-PKCS1-v1_5 padding */
		break;
	case RSA_NO_PADDING:
		mt = CKM_RSA_X_509; /* raw: PSS encoded by OpenSSL */
		break;
	default:
		ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED, "RSA padding %d with token key '%s'",
			       padding, s->label);
		return -1;
	}
	if (!token_sign(s, mt, from, (size_t)flen, to, &outlen))
		return -1;
	return (int)outlen;
}

/* TLS 1.2 RSA key transport would decrypt; we never offer it (ECDHE
 * suites only for token keys), and refuse instead of guessing. */
static int rsa_priv_dec(int flen, const unsigned char *from, unsigned char *to, RSA *rsa,
			int padding)
{
	struct p11c_signer *s = rsa_signer(rsa);

	(void)flen;
	(void)from;
	(void)to;
	(void)padding;
	ERR_raise_data(ERR_LIB_USER, ERR_R_UNSUPPORTED, "decryption with token key '%s'",
		       s != NULL ? s->label : "?");
	return -1;
}

static int rsa_finish(RSA *rsa)
{
	struct p11c_signer *s = rsa_signer(rsa);
	int (*ossl_finish)(RSA *) = RSA_meth_get_finish(RSA_PKCS1_OpenSSL());

	if (ossl_finish != NULL)
		(void)ossl_finish(rsa); /* OpenSSL's Montgomery caches */
	/* RSA_free no longer reads the method after finish */
	if (s != NULL) {
		RSA_meth_free(s->rsa_meth);
		free(s);
	}
	return 1;
}

static p11c_result rsa_signer_key(p11c_ctx *ctx, struct p11c_signer *s, EVP_PKEY *pub,
				  EVP_PKEY **out)
{
	const RSA *src;
	RSA *rsa = NULL;
	EVP_PKEY *pk = NULL;
	RSA_METHOD *m;

	m = RSA_meth_dup(RSA_get_default_method());
	if (m == NULL) {
		free(s);
		return P11C_ERR_NOMEM;
	}
	RSA_meth_set1_name(m, "p11cert token RSA");
	RSA_meth_set_priv_enc(m, rsa_priv_enc);
	RSA_meth_set_priv_dec(m, rsa_priv_dec);
	RSA_meth_set_finish(m, rsa_finish);
	RSA_meth_set_init(m, NULL);
	RSA_meth_set0_app_data(m, s);
	s->rsa_meth = m;
	src = EVP_PKEY_get0_RSA(pub);
	if (src == NULL || (rsa = RSAPublicKey_dup(src)) == NULL) {
		RSA_meth_free(m);
		free(s);
		return p11c_ossl(ctx, "cannot copy the RSA public key");
	}
	/* from here rsa owns s and m (rsa_finish) */
	if (!RSA_set_method(rsa, m)) {
		RSA_free(rsa);
		return p11c_ossl(ctx, "RSA_set_method");
	}
	pk = EVP_PKEY_new();
	if (pk == NULL || !EVP_PKEY_assign_RSA(pk, rsa)) {
		EVP_PKEY_free(pk);
		RSA_free(rsa);
		return p11c_ossl(ctx, "cannot make the RSA signer key");
	}
	*out = pk;
	return P11C_OK;
}

/* --- EC ------------------------------------------------------------------- */

static int ec_idx = -1;
static pthread_once_t ec_idx_once = PTHREAD_ONCE_INIT;

static void ec_idx_init(void)
{
	ec_idx = EC_KEY_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static struct p11c_signer *ec_signer(const EC_KEY *ec)
{
	return ec_idx >= 0 ? EC_KEY_get_ex_data(ec, ec_idx) : NULL;
}

/* ECDSA_do_sign: the digest in, (r, s) out. */
static ECDSA_SIG *ec_sign_sig(const unsigned char *dgst, int dlen, const BIGNUM *kinv,
			      const BIGNUM *rp, EC_KEY *ec)
{
	struct p11c_signer *s = ec_signer(ec);
	unsigned char sig[SIG_MAX];
	CK_ULONG siglen = sizeof sig;
	const EC_GROUP *g = EC_KEY_get0_group(ec);
	int olen;
	ECDSA_SIG *es = NULL;
	BIGNUM *r = NULL, *sv = NULL;

	(void)kinv;
	(void)rp;
	if (s == NULL || g == NULL || dlen < 0)
		return NULL;
	/* ECDSA uses the leftmost bits of the hash (SEC 1 s4.1.3 step 5;
	 * byte-exact for P-256 and P-384) */
	olen = (EC_GROUP_order_bits(g) + 7) / 8;
	if (dlen > olen)
		dlen = olen;
	if (!token_sign(s, CKM_ECDSA, dgst, (size_t)dlen, sig, &siglen))
		return NULL;
	if (siglen == 0 || siglen % 2 != 0 || siglen > sizeof sig) {
		ERR_raise_data(ERR_LIB_USER, ERR_R_OPERATION_FAIL,
			       "token key '%s': ECDSA signature of %lu bytes", s->label,
			       (unsigned long)siglen);
		return NULL;
	}
	r = BN_bin2bn(sig, (int)(siglen / 2), NULL);
	sv = BN_bin2bn(sig + siglen / 2, (int)(siglen / 2), NULL);
	es = ECDSA_SIG_new();
	if (r == NULL || sv == NULL || es == NULL || !ECDSA_SIG_set0(es, r, sv)) {
		BN_free(r);
		BN_free(sv);
		ECDSA_SIG_free(es);
		return NULL;
	}
	return es;
}

/* ECDSA_sign: DER ECDSA-Sig-Value (RFC 3279 s2.2.3). */
static int ec_sign(int type, const unsigned char *dgst, int dlen, unsigned char *sig,
		   unsigned int *siglen, const BIGNUM *kinv, const BIGNUM *r, EC_KEY *ec)
{
	ECDSA_SIG *es;
	int n;

	(void)type;
	es = ec_sign_sig(dgst, dlen, kinv, r, ec);
	if (es == NULL)
		return 0;
	n = i2d_ECDSA_SIG(es, &sig);
	ECDSA_SIG_free(es);
	if (n <= 0)
		return 0;
	*siglen = (unsigned int)n;
	return 1;
}

static void ec_finish(EC_KEY *ec)
{
	struct p11c_signer *s = ec_signer(ec);

	/* EC_KEY_free no longer reads the method after finish */
	if (s != NULL) {
		(void)EC_KEY_set_ex_data(ec, ec_idx, NULL);
		EC_KEY_METHOD_free(s->ec_meth);
		free(s);
	}
}

static p11c_result ec_signer_key(p11c_ctx *ctx, struct p11c_signer *s, EVP_PKEY *pub,
				 EVP_PKEY **out)
{
	const EC_KEY *src;
	EC_KEY *ec = NULL;
	EVP_PKEY *pk = NULL;
	EC_KEY_METHOD *m;
	int (*psign)(int, const unsigned char *, int, unsigned char *, unsigned int *,
		     const BIGNUM *, const BIGNUM *, EC_KEY *) = NULL;
	int (*psetup)(EC_KEY *, BN_CTX *, BIGNUM **, BIGNUM **) = NULL;
	ECDSA_SIG *(*psig)(const unsigned char *, int, const BIGNUM *, const BIGNUM *,
			   EC_KEY *) = NULL;

	(void)pthread_once(&ec_idx_once, ec_idx_init);
	if (ec_idx < 0) {
		free(s);
		return p11c_ossl(ctx, "EC_KEY_get_ex_new_index");
	}
	src = EVP_PKEY_get0_EC_KEY(pub);
	if (src == NULL || (ec = EC_KEY_dup(src)) == NULL) {
		free(s);
		return p11c_ossl(ctx, "cannot copy the EC public key");
	}
	m = EC_KEY_METHOD_new(EC_KEY_OpenSSL());
	if (m == NULL) {
		EC_KEY_free(ec);
		free(s);
		return P11C_ERR_NOMEM;
	}
	EC_KEY_METHOD_get_sign(m, &psign, &psetup, &psig);
	EC_KEY_METHOD_set_sign(m, ec_sign, psetup, ec_sign_sig);
	{
		int (*pinit)(EC_KEY *) = NULL;
		void (*pfinish)(EC_KEY *) = NULL;
		int (*pcopy)(EC_KEY *, const EC_KEY *) = NULL;
		int (*pgroup)(EC_KEY *, const EC_GROUP *) = NULL;
		int (*ppriv)(EC_KEY *, const BIGNUM *) = NULL;
		int (*ppub)(EC_KEY *, const EC_POINT *) = NULL;

		EC_KEY_METHOD_get_init(m, &pinit, &pfinish, &pcopy, &pgroup, &ppriv, &ppub);
		EC_KEY_METHOD_set_init(m, NULL, ec_finish, pcopy, pgroup, ppriv, ppub);
	}
	s->ec_meth = m;
	if (!EC_KEY_set_method(ec, m)) {
		EC_KEY_free(ec);
		EC_KEY_METHOD_free(m);
		free(s);
		return p11c_ossl(ctx, "EC_KEY_set_method");
	}
	if (!EC_KEY_set_ex_data(ec, ec_idx, s)) {
		EC_KEY_free(ec);
		EC_KEY_METHOD_free(m);
		free(s);
		return p11c_ossl(ctx, "EC_KEY_set_ex_data");
	}
	/* from here ec owns s and m (ec_finish) */
	pk = EVP_PKEY_new();
	if (pk == NULL || !EVP_PKEY_assign_EC_KEY(pk, ec)) {
		EVP_PKEY_free(pk);
		EC_KEY_free(ec);
		return p11c_ossl(ctx, "cannot make the EC signer key");
	}
	*out = pk;
	return P11C_OK;
}

/* --- the key ---------------------------------------------------------------- */

p11c_result p11c_signer_new(p11c_key *key, EVP_PKEY **out)
{
	p11c_ctx *ctx = key->ctx;
	struct p11c_signer *s;
	CK_BBOOL aa = CK_FALSE;
	CK_ATTRIBUTE a = { CKA_ALWAYS_AUTHENTICATE, &aa, sizeof aa };
	p11c_result r;
	CK_RV rv;
	int base;

	*out = NULL;
	r = p11c_login(ctx);
	if (r != P11C_OK)
		return r;
	base = EVP_PKEY_get_base_id(key->pub);
	if (base != EVP_PKEY_RSA && base != EVP_PKEY_EC) {
		p11c_detail(ctx, "key '%s' on token '%s' is %s: only RSA and EC keys can sign "
			    "(Ed25519 needs a provider OpenSSL 3 legacy keys cannot express)",
			    key->label, ctx->token_label, OBJ_nid2sn(base));
		return P11C_ERR_MECHANISM;
	}
	/* one read; a token without the attribute (v2.20) has none such keys */
	rv = ctx->f->C_GetAttributeValue(ctx->session, key->priv, &a, 1);
	if (rv != CKR_OK && rv != CKR_ATTRIBUTE_TYPE_INVALID)
		return p11c_ckr(ctx, "C_GetAttributeValue(CKA_ALWAYS_AUTHENTICATE)", rv);
	if (rv == CKR_OK && aa == CK_TRUE) {
		r = ctx_pin_load(ctx);
		if (r != P11C_OK)
			return r;
	}
	s = calloc(1, sizeof *s);
	if (s == NULL)
		return P11C_ERR_NOMEM;
	s->ctx = ctx;
	s->h = key->priv;
	s->always_auth = rv == CKR_OK && aa == CK_TRUE;
	snprintf(s->label, sizeof s->label, "%s", key->label != NULL ? key->label : "");
	/* the helpers own s from here */
	if (base == EVP_PKEY_RSA)
		return rsa_signer_key(ctx, s, key->pub, out);
	return ec_signer_key(ctx, s, key->pub, out);
}
