/* One result enum for the library, its messages, and the detail text. */
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/err.h>

#include "internal.h"

static const char *const messages[P11C_RESULT_MAX_] = {
	[P11C_OK] = "success",
	[P11C_ERR_NOMEM] = "out of memory",
	[P11C_ERR_ARG] = "invalid argument",
	[P11C_ERR_URI] = "invalid PKCS#11 URI",
	[P11C_ERR_MODULE] = "cannot load PKCS#11 module",
	[P11C_ERR_NO_TOKEN] = "no matching token",
	[P11C_ERR_AMBIGUOUS] = "more than one match",
	[P11C_ERR_NO_PIN] = "no PIN available",
	[P11C_ERR_PIN_INCORRECT] = "PIN incorrect",
	[P11C_ERR_PIN_LOCKED] = "PIN locked",
	[P11C_ERR_NOT_FOUND] = "object not found",
	[P11C_ERR_EXISTS] = "object already exists",
	[P11C_ERR_TOKEN_FULL] = "token is full",
	[P11C_ERR_READ_ONLY] = "token is read-only",
	[P11C_ERR_MECHANISM] = "mechanism not supported by the token",
	[P11C_ERR_PKCS11] = "PKCS#11 error",
	[P11C_ERR_CRYPTO] = "cryptographic library error",
	[P11C_ERR_SUBJECT] = "invalid subject",
	[P11C_ERR_SAN] = "invalid subject alternative name",
	[P11C_ERR_PARSE] = "cannot parse input",
	[P11C_ERR_KEY_MISMATCH] = "certificate does not match the key",
	[P11C_ERR_IO] = "I/O error",
	[P11C_ERR_TOKEN_GONE] = "token not present or device error",
	[P11C_ERR_INTERNAL] = "internal error",
	[P11C_ERR_NETWORK] = "cannot reach the server",
	[P11C_ERR_TLS] = "TLS failure",
	[P11C_ERR_PROTOCOL] = "unexpected answer from the server",
	[P11C_ERR_REJECTED] = "request rejected by the CA",
	[P11C_ERR_PENDING] = "request pending signature",
	[P11C_ERR_LOCKED] = "another run holds the lock",
	[P11C_ERR_VERIFY] = "certificate from the CA fails verification",
};

const char *p11c_strerror(p11c_result r)
{
	if ((int)r < 0 || r >= P11C_RESULT_MAX_ || messages[r] == NULL)
		return "unknown error";
	return messages[r];
}

#define CKR(x) { x, #x }
static const struct {
	CK_RV rv;
	const char *name;
} ckr_names[] = {
	CKR(CKR_OK), CKR(CKR_CANCEL), CKR(CKR_HOST_MEMORY), CKR(CKR_SLOT_ID_INVALID),
	CKR(CKR_GENERAL_ERROR), CKR(CKR_FUNCTION_FAILED), CKR(CKR_ARGUMENTS_BAD),
	CKR(CKR_NO_EVENT), CKR(CKR_NEED_TO_CREATE_THREADS), CKR(CKR_CANT_LOCK),
	CKR(CKR_ATTRIBUTE_READ_ONLY), CKR(CKR_ATTRIBUTE_SENSITIVE),
	CKR(CKR_ATTRIBUTE_TYPE_INVALID), CKR(CKR_ATTRIBUTE_VALUE_INVALID),
	CKR(CKR_DATA_INVALID), CKR(CKR_DATA_LEN_RANGE), CKR(CKR_DEVICE_ERROR),
	CKR(CKR_DEVICE_MEMORY), CKR(CKR_DEVICE_REMOVED), CKR(CKR_ENCRYPTED_DATA_INVALID),
	CKR(CKR_ENCRYPTED_DATA_LEN_RANGE), CKR(CKR_FUNCTION_CANCELED),
	CKR(CKR_FUNCTION_NOT_PARALLEL), CKR(CKR_FUNCTION_NOT_SUPPORTED),
	CKR(CKR_KEY_HANDLE_INVALID), CKR(CKR_KEY_SIZE_RANGE), CKR(CKR_KEY_TYPE_INCONSISTENT),
	CKR(CKR_KEY_NOT_NEEDED), CKR(CKR_KEY_CHANGED), CKR(CKR_KEY_NEEDED),
	CKR(CKR_KEY_INDIGESTIBLE), CKR(CKR_KEY_FUNCTION_NOT_PERMITTED),
	CKR(CKR_KEY_NOT_WRAPPABLE), CKR(CKR_KEY_UNEXTRACTABLE), CKR(CKR_MECHANISM_INVALID),
	CKR(CKR_MECHANISM_PARAM_INVALID), CKR(CKR_OBJECT_HANDLE_INVALID),
	CKR(CKR_OPERATION_ACTIVE), CKR(CKR_OPERATION_NOT_INITIALIZED),
	CKR(CKR_PIN_INCORRECT), CKR(CKR_PIN_INVALID), CKR(CKR_PIN_LEN_RANGE),
	CKR(CKR_PIN_EXPIRED), CKR(CKR_PIN_LOCKED), CKR(CKR_SESSION_CLOSED),
	CKR(CKR_SESSION_COUNT), CKR(CKR_SESSION_HANDLE_INVALID),
	CKR(CKR_SESSION_PARALLEL_NOT_SUPPORTED), CKR(CKR_SESSION_READ_ONLY),
	CKR(CKR_SESSION_EXISTS), CKR(CKR_SESSION_READ_ONLY_EXISTS),
	CKR(CKR_SESSION_READ_WRITE_SO_EXISTS), CKR(CKR_SIGNATURE_INVALID),
	CKR(CKR_SIGNATURE_LEN_RANGE), CKR(CKR_TEMPLATE_INCOMPLETE),
	CKR(CKR_TEMPLATE_INCONSISTENT), CKR(CKR_TOKEN_NOT_PRESENT),
	CKR(CKR_TOKEN_NOT_RECOGNIZED), CKR(CKR_TOKEN_WRITE_PROTECTED),
	CKR(CKR_UNWRAPPING_KEY_HANDLE_INVALID), CKR(CKR_UNWRAPPING_KEY_SIZE_RANGE),
	CKR(CKR_UNWRAPPING_KEY_TYPE_INCONSISTENT), CKR(CKR_USER_ALREADY_LOGGED_IN),
	CKR(CKR_USER_NOT_LOGGED_IN), CKR(CKR_USER_PIN_NOT_INITIALIZED),
	CKR(CKR_USER_TYPE_INVALID), CKR(CKR_USER_ANOTHER_ALREADY_LOGGED_IN),
	CKR(CKR_USER_TOO_MANY_TYPES), CKR(CKR_WRAPPED_KEY_INVALID),
	CKR(CKR_WRAPPED_KEY_LEN_RANGE), CKR(CKR_WRAPPING_KEY_HANDLE_INVALID),
	CKR(CKR_WRAPPING_KEY_SIZE_RANGE), CKR(CKR_WRAPPING_KEY_TYPE_INCONSISTENT),
	CKR(CKR_RANDOM_SEED_NOT_SUPPORTED), CKR(CKR_RANDOM_NO_RNG),
	CKR(CKR_DOMAIN_PARAMS_INVALID), CKR(CKR_BUFFER_TOO_SMALL),
	CKR(CKR_SAVED_STATE_INVALID), CKR(CKR_INFORMATION_SENSITIVE),
	CKR(CKR_STATE_UNSAVEABLE), CKR(CKR_CRYPTOKI_NOT_INITIALIZED),
	CKR(CKR_CRYPTOKI_ALREADY_INITIALIZED), CKR(CKR_MUTEX_BAD),
	CKR(CKR_MUTEX_NOT_LOCKED), CKR(CKR_FUNCTION_REJECTED),
	CKR(CKR_CURVE_NOT_SUPPORTED),
};

const char *p11c_ckr_name(unsigned long rv)
{
	size_t i;

	for (i = 0; i < sizeof ckr_names / sizeof ckr_names[0]; i++)
		if (ckr_names[i].rv == rv)
			return ckr_names[i].name;
	return rv >= CKR_VENDOR_DEFINED ? "CKR_VENDOR_DEFINED" : "CKR_(unknown)";
}

void p11c_detail(p11c_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	if (ctx == NULL)
		return;
	va_start(ap, fmt);
	vsnprintf(ctx->detail, sizeof ctx->detail, fmt, ap);
	va_end(ap);
}

const char *p11c_ctx_detail(const p11c_ctx *ctx)
{
	return ctx != NULL ? ctx->detail : "";
}

p11c_result p11c_ckr_result(CK_RV rv)
{
	switch (rv) {
	case CKR_OK:
		return P11C_OK;
	case CKR_HOST_MEMORY:
		return P11C_ERR_NOMEM;
	case CKR_PIN_INCORRECT:
	case CKR_PIN_INVALID:
	case CKR_PIN_LEN_RANGE:
		return P11C_ERR_PIN_INCORRECT;
	case CKR_PIN_LOCKED:
	case CKR_PIN_EXPIRED:
		return P11C_ERR_PIN_LOCKED;
	case CKR_DEVICE_MEMORY:
		return P11C_ERR_TOKEN_FULL;
	case CKR_TOKEN_WRITE_PROTECTED:
	case CKR_SESSION_READ_ONLY:
		return P11C_ERR_READ_ONLY;
	case CKR_MECHANISM_INVALID:
	case CKR_MECHANISM_PARAM_INVALID:
	case CKR_KEY_SIZE_RANGE:
	case CKR_CURVE_NOT_SUPPORTED:
	case CKR_DOMAIN_PARAMS_INVALID:
		return P11C_ERR_MECHANISM;
	case CKR_TOKEN_NOT_PRESENT:
	case CKR_TOKEN_NOT_RECOGNIZED:
	case CKR_DEVICE_REMOVED:
	case CKR_DEVICE_ERROR:
	case CKR_SLOT_ID_INVALID:
		return P11C_ERR_TOKEN_GONE;
	case CKR_USER_NOT_LOGGED_IN:
		return P11C_ERR_NO_PIN;
	default:
		return P11C_ERR_PKCS11;
	}
}

p11c_result p11c_ckr(p11c_ctx *ctx, const char *func, CK_RV rv)
{
	/* SoftHSM and others report a full disk or a read-only store as a
	 * general error: say what it most likely is */
	const char *hint = "";

	if ((rv == CKR_GENERAL_ERROR || rv == CKR_FUNCTION_FAILED || rv == CKR_DEVICE_ERROR) &&
	    (strncmp(func, "C_GenerateKeyPair", 17) == 0 || strncmp(func, "C_CreateObject", 14) == 0 ||
	     strncmp(func, "C_SetAttributeValue", 19) == 0 || strncmp(func, "C_DestroyObject", 15) == 0))
		hint = " (the token may be full, read-only or removed; nothing was changed)";
	if (ctx->opened)
		p11c_detail(ctx, "%s on token '%s' (%s): %s%s", func, ctx->token_label,
			    ctx->module_desc[0] ? ctx->module_desc : ctx->module_path,
			    p11c_ckr_name(rv), hint);
	else
		p11c_detail(ctx, "%s (%s): %s", func,
			    ctx->module_desc[0] ? ctx->module_desc
						: (ctx->module_path ? ctx->module_path : "no module"),
			    p11c_ckr_name(rv));
	p11c_tpm_ckr_hint(ctx, rv);
	return p11c_ckr_result(rv);
}

void p11c_ossl_str(char *buf, size_t len)
{
	unsigned long e;
	size_t used = 0;

	if (len == 0)
		return;
	buf[0] = '\0';
	while ((e = ERR_get_error()) != 0) {
		char one[256];
		int n;

		ERR_error_string_n(e, one, sizeof one);
		n = snprintf(buf + used, len - used, "%s%s", used ? "; " : "", one);
		if (n < 0 || (size_t)n >= len - used) {
			ERR_clear_error();
			break;
		}
		used += (size_t)n;
	}
	if (used == 0)
		snprintf(buf, len, "no detail from OpenSSL");
}

p11c_result p11c_ossl(p11c_ctx *ctx, const char *what)
{
	char err[P11C_DETAIL_MAX / 2];

	p11c_ossl_str(err, sizeof err);
	p11c_detail(ctx, "%s: %s", what, err);
	return P11C_ERR_CRYPTO;
}

void p11c_wipe(void *p, size_t n)
{
	if (p != NULL && n > 0)
		OPENSSL_cleanse(p, n);
}
