/* The safe rekey every protocol's renew --rekey follows (proto/caramel.c,
 * proto/sharedtoken.c, cmd_acme.c): the new key LABEL~rekey is generated
 * in the token (or the one a stopped run left is taken up again), the CA
 * signs a certificate for it, the certificate is stored next to it, and
 * only then are the old key and its certificates destroyed and the new key
 * renamed LABEL.  A run stopped anywhere leaves the old identity in place
 * (or, between the last two steps, the new one under LABEL~rekey, which
 * cli_rekey_recover renames); the next run finishes. */
#include <stdio.h>
#include <stdlib.h>

#include <openssl/err.h>

#include <p11cert/p11cert.h>

#include "cli.h"
#include "testhook.h"

char *cli_rekey_uri(p11c_ctx *ctx, const char *label)
{
	char *tmp = NULL, *uri;

	if (asprintf(&tmp, "%s~rekey", label) < 0)
		return NULL;
	uri = p11c_label_uri(ctx, tmp);
	free(tmp);
	return uri;
}

int cli_rekey_key(struct cli *c, p11c_key *old, p11c_key **nkey, int *resumed)
{
	char *tmp_uri = cli_rekey_uri(c->ctx, p11c_key_label(old));
	p11c_result r;
	int rc = 0;

	*nkey = NULL;
	*resumed = 0;
	if (tmp_uri == NULL)
		return EX_SOFTWARE;
	if (p11c_key_find(c->ctx, tmp_uri, nkey) == P11C_OK) {
		*resumed = 1;
		if (!c->quiet)
			fprintf(stderr, "p11cert: %s: resuming the rekey of '%s' with the new key '%s~rekey'\n", c->cmd,
				cli_safe(p11c_key_label(old)), cli_safe(p11c_key_label(old)));
	} else if ((r = p11c_keygen(c->ctx, tmp_uri, p11c_key_get_type(old), 0, nkey)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot generate the new key");
	}
	ERR_clear_error();
	free(tmp_uri);
	return rc;
}

int cli_rekey_finish(struct cli *c, p11c_key **old, p11c_key **nkey, const char *label)
{
	p11c_result r;

	/* the new identity is complete: now the old one may go */
	if ((r = p11c_key_delete(c->ctx, old)) != P11C_OK)
		return cli_fail(c, r, "finishing the rekey (the old key stays; run the rekey again)");
	p11c_test_stall("rekey-deleted");
	if ((r = p11c_key_relabel(c->ctx, *nkey, label)) != P11C_OK)
		return cli_fail(c, r, "finishing the rekey (the new key is '%s~rekey'; run renew again)", cli_safe(label));
	*old = *nkey;
	*nkey = NULL;
	return 0;
}

int cli_rekey_left(struct cli *c, const char *uri, const char *label)
{
	char *tmp_uri;
	p11c_key *k = NULL;
	X509 *x = NULL;
	int left = 0;

	if (p11c_key_find(c->ctx, uri, &k) == P11C_ERR_NOT_FOUND && (tmp_uri = cli_rekey_uri(c->ctx, label)) != NULL) {
		left = p11c_key_find(c->ctx, tmp_uri, &k) == P11C_OK && p11c_cert_get(c->ctx, k, &x) == P11C_OK;
		free(tmp_uri);
	}
	ERR_clear_error();
	X509_free(x);
	p11c_key_free(&k);
	return left;
}

p11c_result cli_rekey_recover(struct cli *c, const char *label, p11c_key **out)
{
	char *tmp_uri = cli_rekey_uri(c->ctx, label);
	p11c_key *k = NULL;
	X509 *x = NULL;
	p11c_result r = P11C_ERR_NOT_FOUND;

	*out = NULL;
	if (tmp_uri == NULL)
		return P11C_ERR_NOMEM;
	/* only a new key that got its certificate: one without is a rekey
	 * that had not got that far, not an identity */
	if (p11c_key_find(c->ctx, tmp_uri, &k) == P11C_OK && p11c_cert_get(c->ctx, k, &x) == P11C_OK &&
	    (r = p11c_key_relabel(c->ctx, k, label)) == P11C_OK) {
		if (!c->quiet)
			fprintf(stderr, "p11cert: %s: finished the rekey of '%s' that an earlier run left (the new "
				"key was '%s~rekey')\n", c->cmd, cli_safe(label), cli_safe(label));
		*out = k;
		k = NULL;
	}
	ERR_clear_error();
	X509_free(x);
	p11c_key_free(&k);
	free(tmp_uri);
	return r;
}
