/*
 * fuzz_uri: RFC 7512 pkcs11: URIs as users give them (--key, p11ca.conf
 * key=): p11c_uri_parse (p11-kit's parser plus our checks on label, id,
 * class, pin-value), then p11c_uri_format of what was parsed (the URIs
 * p11cert prints), and the key type names of --type.  Input: the string
 * (up to the first NUL).
 */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "internal.h"

static p11c_ctx *ctx;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	p11c_uri u;
	p11c_key_type kt;
	char *s, *f;

	if (ctx == NULL && p11c_ctx_new(&ctx) != P11C_OK)
		abort();
	if ((s = strndup((const char *)data, size)) == NULL)
		return 0;
	if (p11c_uri_parse(ctx, s, &u) == P11C_OK) {
		f = p11c_uri_format(ctx, u.object, u.has_id ? u.id : NULL, u.id_len,
				    u.has_class ? (u.cls == CKO_PRIVATE_KEY ? "private" : "cert") : NULL);
		free(f);
		p11c_uri_clear(&u);
	}
	(void)p11c_key_type_parse(s, &kt);
	free(s);
	return 0;
}
