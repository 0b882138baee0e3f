/*
 * The key holder: loads the PKCS#11 module once, selects one token, holds
 * the session and the login.  Nothing outside the library sees a session
 * handle or a PIN.
 *
 * The module is loaded once per handle: we dlopen it and call C_Initialize
 * once; the signer (signer.c) signs through the same function list,
 * session and login (PKCS#11 v2.40 s5.6: login state is per application
 * and token).  Nothing else loads the module, so a module that opens one
 * connection per load (p11-kit-client.so, network HSMs) sees one.
 *
 * C_Initialize asks for CKF_OS_LOCKING_OK: the module may then be called
 * from several threads (the signer's session pool).  A module that cannot
 * lock answers CKR_CANT_LOCK (PKCS#11 v2.40 s5.4); it is initialised again
 * without arguments, to run single-threaded, and ctx->threads_ok = 0 makes
 * the signer keep every signature under its process-wide lock.  The other
 * calls of a ctx were never made from several threads at once by the
 * library; with such a module the application must not either.
 */
#include <dlfcn.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "internal.h"

p11c_result p11c_ctx_new(p11c_ctx **out)
{
	p11c_ctx *ctx;

	if (out == NULL)
		return P11C_ERR_ARG;
	ctx = calloc(1, sizeof *ctx);
	if (ctx == NULL)
		return P11C_ERR_NOMEM;
	ctx->pin_env = 1;
	ctx->threads_ok = -1;
	if (p11c_signer_ctx_init(ctx) != P11C_OK) {
		free(ctx);
		return P11C_ERR_NOMEM;
	}
	*out = ctx;
	return P11C_OK;
}

static p11c_result set_str(char **dst, const char *src)
{
	char *s = NULL;

	if (src != NULL && (s = strdup(src)) == NULL)
		return P11C_ERR_NOMEM;
	free(*dst);
	*dst = s;
	return P11C_OK;
}

p11c_result p11c_ctx_set_module(p11c_ctx *ctx, const char *path)
{
	if (ctx == NULL || ctx->f != NULL)
		return P11C_ERR_ARG;
	return set_str(&ctx->module_override, path);
}

p11c_result p11c_ctx_set_pin_file(p11c_ctx *ctx, const char *path)
{
	if (ctx == NULL)
		return P11C_ERR_ARG;
	return set_str(&ctx->pin_file, path);
}

void p11c_ctx_set_pin_env(p11c_ctx *ctx, int enabled)
{
	if (ctx != NULL)
		ctx->pin_env = enabled;
}

void p11c_ctx_set_pin_callback(p11c_ctx *ctx, p11c_pin_cb cb, void *userdata)
{
	if (ctx != NULL) {
		ctx->pin_cb = cb;
		ctx->pin_cb_data = userdata;
	}
}

const char *p11c_token_label(const p11c_ctx *ctx)
{
	return ctx != NULL && ctx->opened ? ctx->token_label : NULL;
}

const char *p11c_module_name(const p11c_ctx *ctx)
{
	if (ctx == NULL || ctx->f == NULL)
		return NULL;
	return ctx->module_desc[0] ? ctx->module_desc : ctx->module_path;
}

int p11c_ctx_threads_ok(const p11c_ctx *ctx)
{
	if (ctx == NULL || ctx->f == NULL)
		return -1;
	return ctx->threads_ok;
}

/* How the modules this process initialised took CKF_OS_LOCKING_OK, for a
 * ctx that finds one already initialised (CKR_CRYPTOKI_ALREADY_INITIALIZED:
 * another ctx on the same module; dlopen gives the same function list).  A
 * module the application initialised itself is not here and counts as
 * single-threaded: its flags are not ours to know. */
#define LOCKING_SEEN_MAX 16
static struct {
	CK_FUNCTION_LIST_PTR f;
	int threads_ok;
} locking_seen[LOCKING_SEEN_MAX];
static pthread_mutex_t locking_mu = PTHREAD_MUTEX_INITIALIZER;

static void locking_note(CK_FUNCTION_LIST_PTR f, int threads_ok)
{
	size_t i;

	(void)pthread_mutex_lock(&locking_mu);
	for (i = 0; i < LOCKING_SEEN_MAX; i++) {
		if (locking_seen[i].f == f || locking_seen[i].f == NULL) {
			locking_seen[i].f = f;
			locking_seen[i].threads_ok = threads_ok;
			break;
		}
	}
	(void)pthread_mutex_unlock(&locking_mu);
}

static int locking_seen_for(CK_FUNCTION_LIST_PTR f)
{
	int ok = 0;
	size_t i;

	(void)pthread_mutex_lock(&locking_mu);
	for (i = 0; i < LOCKING_SEEN_MAX && locking_seen[i].f != NULL; i++) {
		if (locking_seen[i].f == f) {
			ok = locking_seen[i].threads_ok;
			break;
		}
	}
	(void)pthread_mutex_unlock(&locking_mu);
	return ok;
}

/* Copy a blank-padded PKCS#11 string field, trimming the padding. */
static void pk11_str(char *dst, size_t dlen, const CK_UTF8CHAR *src, size_t slen)
{
	while (slen > 0 && (src[slen - 1] == ' ' || src[slen - 1] == '\0'))
		slen--;
	if (slen >= dlen)
		slen = dlen - 1;
	memcpy(dst, src, slen);
	dst[slen] = '\0';
}

static p11c_result load_module(p11c_ctx *ctx, const char *path)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = NULL;
	CK_C_INITIALIZE_ARGS args;
	CK_INFO info = { 0 };
	CK_RV rv;
	const char *err;

	/* a second attempt after a failed load (renew looks the key up twice)
	 * replaces the path of the first */
	free(ctx->module_path);
	ctx->module_path = strdup(path);
	if (ctx->module_path == NULL)
		return P11C_ERR_NOMEM;
	/* NODELETE: many modules do not survive being unloaded and reloaded
	 * in one process, and leak reports need their symbols */
	ctx->dl = dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_NODELETE);
	if (ctx->dl == NULL) {
		err = dlerror();
		p11c_detail(ctx, "cannot load PKCS#11 module '%s': %s", path,
			    err ? err : "unknown dlopen error");
		return P11C_ERR_MODULE;
	}
	*(void **)&get_list = dlsym(ctx->dl, "C_GetFunctionList");
	if (get_list == NULL) {
		p11c_detail(ctx, "'%s' is not a PKCS#11 module (no C_GetFunctionList)", path);
		return P11C_ERR_MODULE;
	}
	rv = get_list(&ctx->f);
	if (rv != CKR_OK || ctx->f == NULL) {
		ctx->f = NULL;
		p11c_detail(ctx, "C_GetFunctionList of '%s': %s", path, p11c_ckr_name(rv));
		return P11C_ERR_MODULE;
	}
	memset(&args, 0, sizeof args);
	args.flags = CKF_OS_LOCKING_OK;
	ctx->threads_ok = 1;
	rv = ctx->f->C_Initialize(&args);
	if (rv == CKR_CANT_LOCK) {
		/* single-threaded module (PKCS#11 v2.40 s5.4): NULL args, and
		 * the signer serialises (ctx->threads_ok) */
		ctx->threads_ok = 0;
		rv = ctx->f->C_Initialize(NULL);
	}
	if (rv == CKR_OK) {
		ctx->we_initialized = 1;
		locking_note(ctx->f, ctx->threads_ok);
	} else if (rv == CKR_CRYPTOKI_ALREADY_INITIALIZED) {
		ctx->threads_ok = locking_seen_for(ctx->f);
	} else {
		p11c_detail(ctx, "C_Initialize of module '%s'%s: %s", path,
			    ctx->threads_ok == 0 ? " (without CKF_OS_LOCKING_OK)" : "",
			    p11c_ckr_name(rv));
		ctx->f = NULL;
		ctx->threads_ok = -1;
		return P11C_ERR_MODULE;
	}
	/* name modules by file: "libsofthsm2.so" says more than most
	 * libraryDescription strings ("Implementation of PKCS11") */
	(void)info;
	{
		const char *base = strrchr(path, '/');

		snprintf(ctx->module_desc, sizeof ctx->module_desc, "%s", base ? base + 1 : path);
	}
	return P11C_OK;
}

static void token_desc(char *buf, size_t len, CK_SLOT_ID id, const CK_TOKEN_INFO *ti)
{
	char label[33], serial[17], model[17];

	pk11_str(label, sizeof label, ti->label, sizeof ti->label);
	pk11_str(serial, sizeof serial, ti->serialNumber, sizeof ti->serialNumber);
	pk11_str(model, sizeof model, ti->model, sizeof ti->model);
	snprintf(buf, len, "'%s' (model %s, serial %s, slot %lu)", label, model, serial,
		 (unsigned long)id);
}

static p11c_result select_token(p11c_ctx *ctx, const p11c_uri *u, const char *uri)
{
	CK_SLOT_ID *slots = NULL, chosen = 0;
	CK_ULONG n = 0, i, matches = 0;
	CK_TOKEN_INFO ti, chosen_ti;
	CK_SLOT_INFO si;
	char all[600] = "", one[128];
	size_t used = 0;
	CK_RV rv;
	p11c_result r;

	rv = ctx->f->C_GetSlotList(CK_TRUE, NULL, &n);
	if (rv != CKR_OK)
		return p11c_ckr(ctx, "C_GetSlotList", rv);
	if (n > 0) {
		slots = calloc(n, sizeof *slots);
		if (slots == NULL)
			return P11C_ERR_NOMEM;
		rv = ctx->f->C_GetSlotList(CK_TRUE, slots, &n);
		if (rv != CKR_OK) {
			r = p11c_ckr(ctx, "C_GetSlotList", rv);
			goto out;
		}
	}
	for (i = 0; i < n; i++) {
		if (ctx->f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		token_desc(one, sizeof one, slots[i], &ti);
		if (used < sizeof all - 1 && (ti.flags & CKF_TOKEN_INITIALIZED)) {
			int k = snprintf(all + used, sizeof all - used, "%s%s", used ? ", " : "", one);
			used = k > 0 ? used + (size_t)k : used;
		}
		if (u->has_slot_id && u->slot_id != slots[i])
			continue;
		/* an empty slot (e.g. SoftHSM's spare) is only chosen by slot-id */
		if (!u->has_slot_id && !(ti.flags & CKF_TOKEN_INITIALIZED))
			continue;
		if (ctx->f->C_GetSlotInfo(slots[i], &si) != CKR_OK ||
		    !p11_kit_uri_match_slot_info(u->uri, &si))
			continue;
		if (!p11_kit_uri_match_token_info(u->uri, &ti))
			continue;
		if (matches++ == 0) {
			chosen = slots[i];
			chosen_ti = ti;
		}
	}
	if (matches == 0) {
		p11c_detail(ctx, "no token matches '%.200s' in module %s; tokens present: %s", uri,
			    ctx->module_desc[0] ? ctx->module_desc : ctx->module_path,
			    used ? all : "none");
		r = P11C_ERR_NO_TOKEN;
		goto out;
	}
	if (matches > 1) {
		p11c_detail(ctx, "%lu tokens match '%.200s'; add token=, serial= or slot-id= to pick one: %s",
			    (unsigned long)matches, uri, all);
		r = P11C_ERR_AMBIGUOUS;
		goto out;
	}
	ctx->slot_id = chosen;
	pk11_str(ctx->token_label, sizeof ctx->token_label, chosen_ti.label, sizeof chosen_ti.label);
	pk11_str(ctx->token_serial, sizeof ctx->token_serial, chosen_ti.serialNumber,
		 sizeof chosen_ti.serialNumber);
	ctx->token_flags = chosen_ti.flags;
	r = P11C_OK;
out:
	free(slots);
	return r;
}

p11c_result p11c_open(p11c_ctx *ctx, const char *uri)
{
	p11c_uri u;
	char *named = NULL;
	const char *path;
	p11c_result r;

	if (ctx == NULL || uri == NULL)
		return P11C_ERR_ARG;
	r = p11c_uri_parse(ctx, uri, &u);
	if (r != P11C_OK)
		return r;
	if (ctx->opened) {
		CK_TOKEN_INFO ti;

		if (ctx->f->C_GetTokenInfo(ctx->slot_id, &ti) == CKR_OK &&
		    p11_kit_uri_match_token_info(u.uri, &ti) &&
		    (!u.has_slot_id || u.slot_id == ctx->slot_id)) {
			r = P11C_OK;
		} else {
			p11c_detail(ctx, "'%.200s' names another token than '%s', opened before", uri,
				    ctx->token_label);
			r = P11C_ERR_ARG;
		}
		goto out;
	}
	if (ctx->module_override != NULL) {
		path = ctx->module_override;
	} else if (u.module_path != NULL) {
		path = u.module_path;
	} else if (u.module_name != NULL) {
		r = p11c_module_by_name(ctx, u.module_name, &named);
		if (r != P11C_OK)
			goto out;
		path = named;
	} else {
		path = P11C_DEFAULT_MODULE;
	}
	if (ctx->f == NULL) {
		r = load_module(ctx, path);
		if (r != P11C_OK)
			goto out;
	}
	r = select_token(ctx, &u, uri);
	if (r != P11C_OK)
		goto out;
	if (u.pin_source != NULL && (ctx->pin_source = strdup(u.pin_source)) == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	ctx->opened = 1;
out:
	free(named);
	p11c_uri_clear(&u);
	return r;
}

p11c_result p11c_need_session(p11c_ctx *ctx)
{
	CK_RV rv;

	if (!ctx->opened) {
		p11c_detail(ctx, "no token selected (p11c_open not called)");
		return P11C_ERR_ARG;
	}
	if (ctx->session != CK_INVALID_HANDLE)
		return P11C_OK;
	rv = ctx->f->C_OpenSession(ctx->slot_id, CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL,
				   &ctx->session);
	if (rv == CKR_TOKEN_WRITE_PROTECTED)
		rv = ctx->f->C_OpenSession(ctx->slot_id, CKF_SERIAL_SESSION, NULL, NULL,
					   &ctx->session);
	if (rv != CKR_OK) {
		ctx->session = CK_INVALID_HANDLE;
		return p11c_ckr(ctx, "C_OpenSession", rv);
	}
	return P11C_OK;
}

static void pin_flags(p11c_ctx *ctx)
{
	CK_TOKEN_INFO ti;
	size_t n = strlen(ctx->detail);

	if (ctx->f->C_GetTokenInfo(ctx->slot_id, &ti) != CKR_OK)
		return;
	if (ti.flags & CKF_USER_PIN_LOCKED)
		snprintf(ctx->detail + n, sizeof ctx->detail - n, " (the user PIN is now locked)");
	else if (ti.flags & CKF_USER_PIN_FINAL_TRY)
		snprintf(ctx->detail + n, sizeof ctx->detail - n,
			 " (one try left before the PIN locks; not retried)");
	else if (ti.flags & CKF_USER_PIN_COUNT_LOW)
		snprintf(ctx->detail + n, sizeof ctx->detail - n,
			 " (few tries left before the PIN locks; not retried)");
	else
		snprintf(ctx->detail + n, sizeof ctx->detail - n, " (not retried)");
}

p11c_result p11c_login(p11c_ctx *ctx)
{
	char pin[P11C_PIN_MAX];
	size_t len = 0;
	CK_RV rv;
	p11c_result r;

	if (ctx == NULL)
		return P11C_ERR_ARG;
	r = p11c_need_session(ctx);
	if (r != P11C_OK)
		return r;
	if (ctx->logged_in)
		return P11C_OK;
	if (ctx->login_refused != P11C_OK) {
		p11c_detail(ctx, "the token '%s' refused the PIN earlier in this run; not trying "
			    "again (tokens lock after a few wrong PINs)", ctx->token_label);
		return ctx->login_refused;
	}
	if (!(ctx->token_flags & CKF_LOGIN_REQUIRED)) {
		ctx->logged_in = 1;
		return P11C_OK;
	}
	if (ctx->token_flags & CKF_USER_PIN_LOCKED) {
		p11c_detail(ctx, "the user PIN of token '%s' is locked; unlock it with the SO PIN",
			    ctx->token_label);
		return P11C_ERR_PIN_LOCKED;
	}
	if (ctx->token_flags & CKF_PROTECTED_AUTHENTICATION_PATH) {
		rv = ctx->f->C_Login(ctx->session, CKU_USER, NULL, 0);
	} else {
		r = p11c_pin_get(ctx, pin, &len);
		if (r != P11C_OK)
			return r;
		rv = ctx->f->C_Login(ctx->session, CKU_USER, (CK_UTF8CHAR_PTR)pin, len);
		if (rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN)
			p11c_tpm_hold_pin(ctx, pin, len);
		p11c_wipe(pin, sizeof pin);
	}
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	if (rv != CKR_OK) {
		r = p11c_ckr(ctx, "C_Login", rv);
		if (r == P11C_ERR_PIN_INCORRECT || r == P11C_ERR_PIN_LOCKED) {
			pin_flags(ctx);
			ctx->login_refused = r;
		}
		return r;
	}
	ctx->logged_in = 1;
	return P11C_OK;
}

void p11c_ctx_free(p11c_ctx **pctx)
{
	p11c_ctx *ctx;

	if (pctx == NULL || *pctx == NULL)
		return;
	ctx = *pctx;
	*pctx = NULL;
	/* first: a kept TLS connection may hold the token key */
	p11c_http_release(ctx);
	/* the signing sessions first, then the one that logged in */
	p11c_signer_ctx_release(ctx);
	if (ctx->f != NULL && ctx->session != CK_INVALID_HANDLE) {
		if (ctx->logged_in)
			(void)ctx->f->C_Logout(ctx->session);
		(void)ctx->f->C_CloseSession(ctx->session);
	}
	if (ctx->f != NULL && ctx->we_initialized)
		(void)ctx->f->C_Finalize(NULL);
	if (ctx->dl != NULL)
		dlclose(ctx->dl);
	p11c_tpm_free(ctx);
	free(ctx->module_override);
	free(ctx->module_path);
	free(ctx->pin_file);
	free(ctx->pin_source);
	p11c_wipe(ctx, sizeof *ctx);
	free(ctx);
}
