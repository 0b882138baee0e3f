/* p11cert renew for EST identities, the CLI half of the protocol
 * (proto/protocol.h; the wire half is src/lib/enroll/est.c): POST
 * /simplereenroll (RFC 7030 s4.2.2) over mutual TLS with the current key
 * and certificate, the current subject and names, for the current key or,
 * with --rekey, a new key LABEL~rekey that takes the label once its
 * certificate is stored and the old key is gone.  The record
 * DIR/ID.enroll is written by enroll est (cmd_est.c). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>

#include <p11cert/est.h>

#include "../renew.h"

/* The fields an EST record adds to the common ones: the EST CA
 * certificates (a file as safe as the record), the TLS trust anchors, and
 * (optional) bind and tls_max as enroll est was given them. */
static int est_record_check(struct cli *c, const struct renew_job *j)
{
	const char *cacerts = json_string_value(json_object_get(j->rec, "cacerts"));
	const json_t *tls_max;

	if (cacerts == NULL || j->ca_file == NULL) {
		fprintf(stderr, "p11cert: %s: the EST record of '%s' lacks cacerts or ca_file\n", c->cmd, j->id);
		return EX_DATAERR;
	}
	tls_max = json_object_get(j->rec, "tls_max");
	if (tls_max != NULL && (!json_is_integer(tls_max) ||
				(json_integer_value(tls_max) != 0 && json_integer_value(tls_max) != 12 &&
				 json_integer_value(tls_max) != 13))) {
		fprintf(stderr, "p11cert: %s: the EST record of '%s' has a bad tls_max (0, 12 or 13)\n", c->cmd, j->id);
		return EX_DATAERR;
	}
	return cli_state_file("EST CA certificates", cacerts);
}

static int renew_est(struct cli *c, const struct renew_job *j)
{
	const char *cacerts = json_string_value(json_object_get(j->rec, "cacerts"));
	char *lock = NULL, *crt_path = NULL, *label = NULL, *pem = NULL;
	STACK_OF(X509) *cas = NULL;
	p11c_key *old = NULL, *nkey = NULL;
	X509 *old_cert = NULL;
	struct p11c_renewal rn;
	int rc, fd = -1, kr, resumed = 0;
	p11c_result r;

	memset(&rn, 0, sizeof rn);
	if ((rc = est_record_check(c, j)) != 0)
		return rc;
	rc = EX_FAIL;
	if ((lock = cli_path_in(j->dir, j->id, ".lock")) == NULL || (crt_path = cli_path_in(j->dir, j->id, ".crt")) == NULL)
		goto out;
	if ((rc = cli_lock_run(c, lock, &fd)) != 0)
		goto out;
	{
		/* the temp file of ID.crt a killed renew left (ours: we hold
		 * the lock) */
		static const char *const sfx[] = { ".crt" };

		cli_remove_temps(j->dir, j->id, sfx, 1);
	}
	if ((rc = est_read_cacerts(c, cacerts, &cas)) != 0)
		goto out;
	rc = EX_FAIL;
	if ((r = p11c_key_find(c->ctx, j->uri, &old)) != P11C_OK) {
		rc = cli_fail(c, r, "the current key");
		goto out;
	}
	if (p11c_cert_get(c->ctx, old, &old_cert) != P11C_OK) {
		ERR_clear_error();
		fprintf(stderr, "p11cert: renew: '%s' has no certificate to re-enroll with: run enroll est again\n",
			cli_safe(j->id));
		rc = EX_NOINPUT;
		goto out;
	}
	if ((label = strdup(p11c_key_label(old))) == NULL)
		goto out;
	/* the new key (rekey.c): LABEL~rekey, a leftover reused */
	if (j->rekey && (kr = cli_rekey_key(c, old, &nkey, &resumed)) != 0) {
		rc = kr;
		goto out;
	}
	rn.server = j->server;
	rn.ca_file = j->ca_file;
	rn.client_id = j->id;
	rn.key = nkey != NULL ? nkey : old;
	rn.current = old;
	rn.current_cert = old_cert;
	/* as enrolled: --bind and --tls-max hold for the re-enrollments too */
	rn.bind = json_is_true(json_object_get(j->rec, "bind"));
	rn.tls_max = (int)json_integer_value(json_object_get(j->rec, "tls_max"));
	if ((r = cli_proto_est.lib->renew(c->ctx, &rn)) != P11C_OK) {
		rc = cli_fail(c, r, "re-enrollment at %s; the current certificate stays in use", cli_safe(j->server));
		goto out;
	}
	if (rn.state != P11C_RENEWAL_ISSUED) {
		fprintf(stderr, "p11cert: renew: the re-enrollment of '%s' is pending at %s; run renew again later\n",
			cli_safe(j->id), cli_safe(j->server));
		rc = EST_EX_PENDING;
		goto out;
	}
	if ((r = p11c_est_check(c->ctx, rn.cert, rn.key, cas)) != P11C_OK) {
		rc = cli_fail(c, r, "renewed certificate refused; the current one stays in use");
		goto out;
	}
	if ((r = p11c_cert_store(c->ctx, rn.key, rn.cert)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot store the renewed certificate; the current one stays in use");
		goto out;
	}
	if (nkey != NULL && (kr = cli_rekey_finish(c, &old, &nkey, label)) != 0) {
		rc = kr;
		goto out;
	}
	if ((pem = p11c_x509_pem(rn.cert)) == NULL || (rc = cli_output(c, crt_path, pem, strlen(pem), 0644)) != 0) {
		if (pem == NULL)
			rc = EX_SOFTWARE;
		goto out;
	}
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(lock);
	free(crt_path);
	free(label);
	free(pem);
	free(rn.cert_pem);
	X509_free(rn.cert);
	X509_free(old_cert);
	sk_X509_pop_free(cas, X509_free);
	p11c_key_free(&old);
	p11c_key_free(&nkey);
	return rc;
}

const struct cli_protocol cli_proto_est = {
	.lib = &p11c_proto_est,
	.record_check = est_record_check,
	.renew = renew_est,
};
