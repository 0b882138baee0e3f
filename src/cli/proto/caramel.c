/* p11cert renew for Caramel identities: the CLI half of the protocol
 * (proto/protocol.h; the wire half is src/lib/enroll/caramel.c).  Without
 * a new key: the recorded request polled in embedded mode with the current
 * certificate (enroll caramel --once).  --rekey: a new key and its CSR,
 * kept in DIR/ID.rekey.csr across runs.  The record DIR/ID.enroll is
 * written by enroll caramel (cmd_enroll.c). */
#include <errno.h>
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "../renew.h"

static char *unconst(const char *s)
{
	return (char *)(uintptr_t)s;
}

/* The CSR of a rekey in progress: DIR/ID.rekey.csr when it is for the
 * new key (caller frees), else NULL. */
static char *rekey_csr_read(const char *path, p11c_key *nkey, size_t *len)
{
	unsigned char *b = NULL;
	size_t bl = 0;
	X509_REQ *req = NULL;
	char *out = NULL;

	if (p11c_file_read(path, 4096, &b, &bl) == P11C_OK && p11c_req_parse(b, bl, &req) == P11C_OK &&
	    EVP_PKEY_eq(X509_REQ_get0_pubkey(req), p11c_key_public(nkey)) == 1) {
		out = (char *)b;
		*len = bl;
		b = NULL;
	}
	X509_REQ_free(req);
	free(b);
	ERR_clear_error();
	return out;
}

/* Rekey over Caramel: a new key under a temporary label (LABEL~rekey) and
 * its CSR (DIR/ID.rekey.csr), posted with mutual TLS by the old key (p11ca
 * signs such renewals at once when renew-mtls is on).  A CA that does not
 * sign at once (upstream: an operator runs caramel_tool) leaves both in
 * place: the next run polls the same request, like a pending enroll.  The
 * old key and certificate are destroyed only once the new certificate is
 * stored and verified; then the new key takes the old label. */
static int rekey_caramel(struct cli *c, const char *dir, const char *server, const char *id, const char *uri,
			 const char *ca_file)
{
	p11c_caramel_server srv;
	struct p11c_renewal rn;
	p11c_key *old = NULL, *nkey = NULL;
	X509 *old_cert = NULL, *ca = NULL;
	char *csr = NULL, *csr_path = NULL, *crt_path = NULL, *label = NULL;
	char *rk_path = NULL, *lock = NULL, sha[65];
	size_t csr_len = 0;
	p11c_result r;
	int rc = EX_FAIL, fd = -1, kr, resumed = 0;
	FILE *fp;

	memset(&rn, 0, sizeof rn);
	if (cli_curl_ready(c) != 0) { /* before the new key */
		rc = EX_UNAVAILABLE;
		goto out;
	}
	if (asprintf(&lock, "%s/%s.lock", dir, id) < 0 || asprintf(&rk_path, "%s/%s.rekey.csr", dir, id) < 0 ||
	    asprintf(&csr_path, "%s/%s.csr", dir, id) < 0 || asprintf(&crt_path, "%s/%s.crt", dir, id) < 0)
		goto out;
	/* the lock of enroll caramel: a rekey next to an enrollment or another
	 * rekey would race on LABEL~rekey */
	fd = cli_lock(lock);
	if (fd == -3) {
		rc = EX_UNSAFE;
		goto out;
	}
	if (fd == -2) {
		fprintf(stderr, "p11cert: renew: cannot create the lock file %s: %s\n", lock, strerror(errno));
		rc = EX_CANTCREAT;
		goto out;
	}
	if (fd == -1) {
		fprintf(stderr, "p11cert: renew: another run holds the lock %s\n", lock);
		rc = EX_TEMPFAIL_;
		goto out;
	}
	if ((r = p11c_key_find(c->ctx, uri, &old)) != P11C_OK) {
		rc = cli_fail(c, r, "the current key");
		goto out;
	}
	if ((label = strdup(p11c_key_label(old))) == NULL)
		goto out;
	/* the new key (rekey.c); a rekey begun earlier (its request pending)
	 * goes on with its key and CSR */
	if ((kr = cli_rekey_key(c, old, &nkey, &resumed)) != 0) {
		rc = kr;
		goto out;
	}
	if (resumed)
		csr = rekey_csr_read(rk_path, nkey, &csr_len);
	(void)p11c_cert_get(c->ctx, old, &old_cert);
	if (ca_file != NULL && (fp = fopen(ca_file, "r")) != NULL) {
		ca = PEM_read_X509(fp, NULL, NULL, NULL);
		fclose(fp);
	}
	memset(&srv, 0, sizeof srv);
	srv.server = server;
	srv.ca_file = ca_file;
	srv.client_id = id;
	if (ca == NULL && (r = p11c_caramel_fetch_ca(c->ctx, &srv, &ca)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot get the CA certificate");
		goto out;
	}
	if (csr == NULL) {
		if ((r = p11c_caramel_csr(nkey, ca, id, &csr, &csr_len)) != P11C_OK) {
			rc = cli_fail(c, r, "cannot make the CSR");
			goto out;
		}
		/* kept before it is posted: a rerun polls this very request */
		if ((rc = cli_output(c, rk_path, csr, csr_len, 0644)) != 0)
			goto out;
	}
	/* the new key is done signing: a TPM without a resource manager has
	 * room for the old key's TLS signature only once it is unloaded */
	if ((r = p11c_token_release_keys(c->ctx)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot release the new key's TPM objects");
		goto out;
	}
	p11c_sha256_hex(csr, csr_len, sha);
	/* the wire half (src/lib/enroll/caramel.c) */
	memset(&rn, 0, sizeof rn);
	rn.server = server;
	rn.ca_file = ca_file;
	rn.client_id = id;
	rn.key = nkey;
	rn.current = old;
	rn.current_cert = old_cert;
	rn.csr = csr;
	rn.csr_len = csr_len;
	r = cli_proto_caramel.lib->renew(c->ctx, &rn);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "renewal request %s", sha);
		goto out;
	}
	if (rn.state == P11C_RENEWAL_REJECTED) {
		/* the next rekey starts over with another key */
		(void)p11c_key_delete(c->ctx, &nkey);
		unlink(rk_path);
		fprintf(stderr, "p11cert: renew: the CA at %s rejected the rekey request %s; the new key was "
			"destroyed, the old key and certificate stay in use\n", server, sha);
		rc = EX_NOPERM;
		goto out;
	}
	if (rn.state != P11C_RENEWAL_ISSUED) {
		cli_caramel_pending(c, server, sha, id, nkey);
		fprintf(stderr, "p11cert: renew: the old key and certificate stay in use; run renew --rekey again "
			"to finish once it is signed\n");
		rc = EX_UNAVAILABLE; /* pending: 69 (docs/cli.md) */
		goto out;
	}
	if (rn.cert == NULL || (r = p11c_caramel_check(c->ctx, rn.cert, nkey, ca, id)) != P11C_OK ||
	    (r = p11c_cert_store(c->ctx, nkey, rn.cert)) != P11C_OK) {
		rc = cli_fail(c, r ? r : P11C_ERR_PROTOCOL, "the new certificate; the old one stays in use");
		goto out;
	}
	/* the new identity is complete: now the old one may go (rekey.c) */
	if ((kr = cli_rekey_finish(c, &old, &nkey, label)) != 0) {
		rc = kr;
		goto out;
	}
	if ((rc = cli_output(c, csr_path, csr, csr_len, 0644)) != 0 ||
	    (rc = cli_output(c, crt_path, rn.cert_pem, strlen(rn.cert_pem), 0644)) != 0)
		goto out;
	unlink(rk_path);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(csr);
	free(rn.cert_pem);
	free(csr_path);
	free(crt_path);
	free(rk_path);
	free(lock);
	free(label);
	X509_free(old_cert);
	X509_free(ca);
	X509_free(rn.cert);
	p11c_key_free(&old);
	p11c_key_free(&nkey);
	return rc;
}

/* Caramel without a new key: the recorded request polled in embedded
 * mode with the current certificate presented (mTLS). */
static int renew_caramel(struct cli *c, const struct renew_job *j)
{
	char *av[12];
	int n = 0, rc;

	if (j->rekey)
		return rekey_caramel(c, j->dir, j->server, j->id, j->uri, j->ca_file);
	av[n++] = (char *)"caramel";
	av[n++] = unconst(j->server);
	av[n++] = unconst(j->id);
	av[n++] = (char *)"--key";
	av[n++] = unconst(j->uri);
	av[n++] = (char *)"--dir";
	av[n++] = unconst(j->dir);
	av[n++] = (char *)"--once";
	if (j->ca_file != NULL) {
		av[n++] = (char *)"--ca-file";
		av[n++] = unconst(j->ca_file);
	}
	av[n] = NULL;
	optind = 0; /* a fresh getopt scan */
	rc = cmd_enroll_caramel(c, n, av);
	if (rc == 1)
		rc = EX_TEMPFAIL_;
	else if (rc == 127)
		rc = EX_FAIL;
	return rc;
}

const struct cli_protocol cli_proto_caramel = {
	.lib = &p11c_proto_caramel,
	.record_check = NULL, /* the common fields are all a Caramel record has */
	.renew = renew_caramel,
};
