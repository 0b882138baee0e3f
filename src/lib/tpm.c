/*
 * TPM 2.0 tokens (tpm2-pkcs11): what a TPM behind PKCS#11 needs beyond any
 * other token.
 *
 * - Without a resource manager (direct TCTI, /dev/tpm0) tpm2-pkcs11 keeps
 *   every key it used loaded in the TPM until logout, and a TPM has only a
 *   few transient object slots (TPM 2.0 Part 2, TPM_PT_HR_TRANSIENT_MIN: 3
 *   on swtpm and the PC Client profile's minimum; the module's primary key
 *   and its sessions take some).  A run that signs with two
 *   keys (rekey: the new key signs the CSR, the old one the TLS handshake)
 *   therefore gets CKR_GENERAL_ERROR (TPM_RC_OBJECT_MEMORY) on the second.
 *   p11c_token_release_keys() logs out (the module flushes its objects) and
 *   back in with the PIN read for the first login, kept in memory for that
 *   only on TPM modules; a PIN the token refused is never kept nor retried.
 * - A refused PIN counts towards the TPM's dictionary-attack lockout, which
 *   locks every key of the TPM for a while (tpm2-pkcs11 reports no
 *   low-tries flags): the messages say so.
 */
#include <stdlib.h>
#include <string.h>

#include "http.h"
#include "internal.h"

struct p11c_tpm {
	int probed;
	int is_tpm;
	char pin[P11C_PIN_MAX];
	size_t pin_len;
	int have_pin;
};

static struct p11c_tpm *tpm_state(p11c_ctx *ctx)
{
	if (ctx->tpm == NULL)
		ctx->tpm = calloc(1, sizeof *ctx->tpm);
	return ctx->tpm;
}

static int has(const CK_UTF8CHAR *s, size_t n, const char *what)
{
	char buf[80];
	size_t i, k = strlen(what);

	if (n >= sizeof buf)
		n = sizeof buf - 1;
	memcpy(buf, s, n);
	buf[n] = '\0';
	for (i = 0; i + k <= n; i++)
		if (strncmp(buf + i, what, k) == 0)
			return 1;
	return 0;
}

int p11c_tpm_module(p11c_ctx *ctx)
{
	struct p11c_tpm *t;
	CK_INFO info;
	CK_SLOT_INFO si;

	if (ctx == NULL || ctx->f == NULL || (t = tpm_state(ctx)) == NULL)
		return 0;
	if (t->probed)
		return t->is_tpm;
	t->probed = 1;
	/* tpm2-pkcs11 names itself in C_GetInfo; through the p11-kit proxy
	 * only its slot says so */
	t->is_tpm = (ctx->f->C_GetInfo(&info) == CKR_OK &&
		     (has(info.manufacturerID, sizeof info.manufacturerID, "tpm2-software") ||
		      has(info.libraryDescription, sizeof info.libraryDescription, "TPM2"))) ||
		    (ctx->opened && ctx->f->C_GetSlotInfo(ctx->slot_id, &si) == CKR_OK &&
		     (has(si.manufacturerID, sizeof si.manufacturerID, "tpm2-software") ||
		      has(si.slotDescription, sizeof si.slotDescription, "TPM2")));
	return t->is_tpm;
}

void p11c_tpm_hold_pin(p11c_ctx *ctx, const char *pin, size_t len)
{
	struct p11c_tpm *t;

	if (!p11c_tpm_module(ctx) || (t = tpm_state(ctx)) == NULL || len > sizeof t->pin)
		return;
	memcpy(t->pin, pin, len);
	t->pin_len = len;
	t->have_pin = 1;
}

void p11c_tpm_free(p11c_ctx *ctx)
{
	if (ctx->tpm != NULL) {
		p11c_wipe(ctx->tpm, sizeof *ctx->tpm);
		free(ctx->tpm);
		ctx->tpm = NULL;
	}
}

static void append(p11c_ctx *ctx, const char *s)
{
	size_t n = strlen(ctx->detail);

	if (strstr(ctx->detail, s) == NULL)
		snprintf(ctx->detail + n, sizeof ctx->detail - n, "%s", s);
}

static const char hint_resources[] =
	" (on a TPM this most likely means its object or session slots are full: "
	"without a resource manager the module keeps every key it used loaded; use "
	"tpm2-abrmd or /dev/tpmrm0 (TCTI \"tabrmd\" or \"device:/dev/tpmrm0\"), and flush "
	"handles leaked by a killed client with 'tpm2_flushcontext -t -l -s')";
static const char hint_locked[] =
	" (on a TPM this is its dictionary-attack lockout after refused PINs or other failed "
	"authorizations: every key of the whole TPM is locked until the lockout recovery time "
	"passes (tpm2_getcap properties-variable: TPM2_PT_LOCKOUT_INTERVAL) or the owner runs "
	"'tpm2_dictionarylockout --clear-lockout'; the SO PIN does not unlock it)";
static const char hint_incorrect[] =
	" (on a TPM every refused PIN counts towards its dictionary-attack lockout, which locks "
	"the whole TPM; tpm2-pkcs11 gives no warning before it)";

void p11c_tpm_ckr_hint(p11c_ctx *ctx, CK_RV rv)
{
	if (!p11c_tpm_module(ctx))
		return;
	if (rv == CKR_GENERAL_ERROR || rv == CKR_DEVICE_MEMORY || rv == CKR_DEVICE_ERROR)
		append(ctx, hint_resources);
	else if (rv == CKR_PIN_LOCKED)
		append(ctx, hint_locked);
	else if (rv == CKR_PIN_INCORRECT)
		append(ctx, hint_incorrect);
}

void p11c_tpm_tls_hint(p11c_ctx *ctx)
{
	/* the signer keeps the CKR of a refused signature (signer.c) */
	if (p11c_tpm_module(ctx) && (ctx->sign_rv == CKR_GENERAL_ERROR ||
				     ctx->sign_rv == CKR_DEVICE_MEMORY || ctx->sign_rv == CKR_DEVICE_ERROR))
		append(ctx, hint_resources);
}

p11c_result p11c_token_release_keys(p11c_ctx *ctx)
{
	struct p11c_tpm *t;
	CK_RV rv;
	p11c_result r;

	if (ctx == NULL)
		return P11C_ERR_ARG;
	if (!ctx->logged_in || ctx->session == CK_INVALID_HANDLE || !p11c_tpm_module(ctx) ||
	    (t = tpm_state(ctx)) == NULL || !t->have_pin)
		return P11C_OK;
	/* a kept TLS connection may hold the key */
	p11c_http_release(ctx);
	rv = ctx->f->C_Logout(ctx->session);
	if (rv != CKR_OK && rv != CKR_USER_NOT_LOGGED_IN)
		return p11c_ckr(ctx, "C_Logout", rv);
	ctx->logged_in = 0;
	rv = ctx->f->C_Login(ctx->session, CKU_USER, (CK_UTF8CHAR_PTR)t->pin, t->pin_len);
	if (rv == CKR_USER_ALREADY_LOGGED_IN)
		rv = CKR_OK;
	if (rv != CKR_OK) {
		r = p11c_ckr(ctx, "C_Login (again, to release TPM objects)", rv);
		/* the PIN it took before: never tried a second time */
		if (r == P11C_ERR_PIN_INCORRECT || r == P11C_ERR_PIN_LOCKED)
			ctx->login_refused = r;
		p11c_wipe(t->pin, sizeof t->pin);
		t->have_pin = 0;
		return r;
	}
	ctx->logged_in = 1;
	return P11C_OK;
}
