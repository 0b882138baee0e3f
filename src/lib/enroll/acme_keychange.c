/* ACME account key rollover (RFC 8555 s7.3.5) with both keys in the token:
 * an inner JWS signed by the new key (jwk header, no nonce) inside an
 * outer JWS signed by the account's current key (kid), POSTed to the
 * directory's keyChange.  Network code: sees EVP_PKEYs, never a session or
 * a PIN (acme.c sends, jws.c signs). */
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include <p11cert/acme.h>

#include "acme_int.h"
#include "http.h"
#include "jws.h"

/* A 409 (s7.3.5: "an existing account with the new key"): the account the
 * CA names in Location, with the problem document when one came */
static p11c_result conflict(p11c_ctx *ctx, const struct p11c_http *h)
{
	json_error_t je;
	json_t *p = h->resp_len > 0 ? json_loadb((const char *)h->resp, h->resp_len, JSON_REJECT_DUPLICATES, &je)
				    : NULL;
	const char *detail = json_string_value(json_object_get(p, "detail"));

	p11c_detail(ctx, "keyChange: the ACME server answered 409: the new key is already the key of the account "
		    "%.300s%s%.300s; nothing changed",
		    h->location[0] != '\0' ? h->location : "(no Location given)", detail ? ": " : "",
		    detail ? detail : "");
	json_decref(p);
	return P11C_ERR_REJECTED;
}

p11c_result p11c_acme_key_change(p11c_acme *a, p11c_key *new_key)
{
	struct p11c_http h;
	p11c_ctx *ctx;
	p11c_key *old;
	EVP_PKEY *new_signer = NULL;
	const char *url, *kid;
	char *inner = NULL, *confirmed = NULL, *acct_url = NULL, thumb[44];
	p11c_result r;
	int created = 0;

	memset(&h, 0, sizeof h);
	if (a == NULL || new_key == NULL)
		return P11C_ERR_ARG;
	ctx = p11c_acme_ctx(a);
	old = p11c_acme_account_key(a);
	kid = p11c_acme_kid(a);
	if (old == NULL || kid == NULL) {
		p11c_detail(ctx, "keyChange: no ACME account yet (p11c_acme_account with the current key)");
		return P11C_ERR_ARG;
	}
	if ((url = p11c_acme_key_change_url(a)) == NULL) {
		p11c_detail(ctx, "the ACME directory has no keyChange (RFC 8555 s7.3.5): the CA cannot change "
			    "account keys");
		return P11C_ERR_PROTOCOL;
	}
	if (EVP_PKEY_eq(p11c_key_public(old), p11c_key_public(new_key)) == 1) {
		p11c_detail(ctx, "keyChange: the new key '%s' is the account's current key", p11c_key_label(new_key));
		return P11C_ERR_ARG;
	}
	/* the new key must sign JWS: EC P-256, P-384 or RSA (RFC 7518 s3.1) */
	if ((r = p11c_jwk_thumbprint(p11c_key_public(new_key), thumb)) != P11C_OK) {
		p11c_detail(ctx, "the new ACME account key '%s' must be EC P-256, EC P-384 or RSA",
			    p11c_key_label(new_key));
		return r == P11C_ERR_MECHANISM ? P11C_ERR_ARG : r;
	}
	if ((r = p11c_key_signer(new_key, &new_signer)) != P11C_OK)
		return r;
	/* kept: the lookup below replaces the handle's kid */
	if ((acct_url = strdup(kid)) == NULL)
		return P11C_ERR_NOMEM;
	/* RFC 8555 s7.3.5: the inner JWS, signed by the new key */
	if ((r = p11c_jws_keychange(ctx, new_signer, p11c_key_public(new_key), url, acct_url, p11c_key_public(old),
				    &inner)) != P11C_OK)
		goto out;
	/* the outer JWS, signed by the old key with the account's kid; a
	 * badNonce only changes the outer nonce, the inner JWS stays */
	if ((r = p11c_acme_post_kid(a, url, inner, &h, "keyChange")) != P11C_OK)
		goto out;
	if (h.status == 409) {
		r = conflict(ctx, &h);
		goto out;
	}
	if (h.status != 200) {
		r = p11c_acme_answer_error(a, &h, "keyChange");
		goto out;
	}
	p11c_http_clear(&h);
	/* the CA now knows the account by the new key (s7.3.1 lookup); the
	 * handle signs with it from here on */
	r = p11c_acme_account(a, new_key, NULL, 0, 0, 0, &confirmed, &created);
	if (r == P11C_ERR_NOT_FOUND) {
		p11c_detail(ctx, "keyChange: the ACME server accepted the change but knows no account by the new key "
			    "'%s'", p11c_key_label(new_key));
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	if (r != P11C_OK)
		goto out;
	if (strcmp(confirmed, acct_url) != 0) {
		p11c_detail(ctx, "keyChange: the ACME server names the account %.300s for the new key, not %.300s",
			    confirmed, acct_url);
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	r = P11C_OK;
out:
	free(inner);
	free(confirmed);
	free(acct_url);
	p11c_http_clear(&h);
	return r;
}
