/* p11cert renew for shared-token identities (NiFi TLS toolkit protocol),
 * the CLI half of the protocol (proto/protocol.h; the wire half is
 * src/lib/enroll/sharedtoken.c and sharedtoken_renew.c):
 * with the shared token while its file is still there, as enroll token
 * does (same checks), else over mutual TLS with the current certificate at
 * p11ca's POST /renew (upstream servers have none: the error says to bring
 * the token back).  --rekey: a new key LABEL~rekey gets the certificate;
 * the old key goes only once it is stored, then the new key takes the
 * label.  The record DIR/LABEL.enroll is written by enroll token. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <p11cert/enroll.h>

#include "../renew.h"

int token_record_write(struct cli *c, const char *dir, const char *label, const char *key_uri, const char *host,
		       int port, const char *token_file, const char *dn, const char *const *sans, int nsans)
{
	char *adir = cli_absolute(dir), *tf = cli_absolute(token_file), *path = NULL, *ca = NULL, *s = NULL;
	json_t *js = NULL, *ja = json_array();
	int rc = EX_SOFTWARE, i;

	if (adir == NULL || ja == NULL || asprintf(&path, "%s/%s.enroll", dir, label) < 0 ||
	    asprintf(&ca, "%s/nifi-cert.pem", adir) < 0)
		goto out;
	for (i = 0; i < nsans; i++)
		json_array_append_new(ja, json_string(sans[i]));
	js = json_pack("{s:s, s:s, s:i, s:s, s:s, s:s, s:s, s:O, s:s?}", "protocol", p11c_proto_sharedtoken.name,
		       "server", host, "port", port, "client_id", label, "key", key_uri, "ca_file", ca, "dn", dn, "sans",
		       ja, "token_file", tf);
	if (js == NULL || (s = json_dumps(js, JSON_INDENT(2))) == NULL)
		goto out;
	rc = cli_output(c, path, s, strlen(s), 0644);
out:
	free(adir);
	free(tf);
	free(path);
	free(ca);
	free(s);
	json_decref(js);
	json_decref(ja);
	return rc;
}

/* The token: the recorded file while it exists, else the environment;
 * -1 none (renew over mTLS), 0 read, else an exit code. */
static int find_token(struct cli *c, const char *tfile, unsigned char **tok, size_t *len)
{
	if (tfile != NULL && access(tfile, F_OK) == 0)
		return read_token(c, tfile, tok, len);
	if (getenv("P11CERT_CA_TOKEN") != NULL)
		return read_token(c, NULL, tok, len);
	return -1;
}

static int with_token(struct cli *c, const struct renew_job *j, p11c_key *target, int port, const unsigned char *tok,
		      size_t tok_len, X509 **cert)
{
	const char *dn_s = json_string_value(json_object_get(j->rec, "dn"));
	json_t *ja = json_object_get(j->rec, "sans"), *v;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	X509_NAME *dn = NULL;
	X509 *ca = NULL;
	p11c_token_enroll_opts o;
	char err[256];
	size_t i;
	p11c_result r;
	int rc;

	if (dn_s == NULL || p11c_dn_parse_as_written(dn_s, &dn, err, sizeof err) != P11C_OK) {
		fprintf(stderr, "p11cert: renew: the record has no usable dn\n");
		return EX_DATAERR;
	}
	json_array_foreach(ja, i, v) {
		if (!json_is_string(v) || p11c_san_add(json_string_value(v), &sans, err, sizeof err) != P11C_OK) {
			fprintf(stderr, "p11cert: renew: bad SAN in the record: %s\n", err);
			rc = EX_DATAERR;
			goto out;
		}
	}
	memset(&o, 0, sizeof o);
	o.ca_host = j->server;
	o.port = port;
	o.token = tok;
	o.token_len = tok_len;
	o.dn = dn;
	o.sans = sans;
	o.timeout_ms = 30000;
	r = p11c_token_enroll(c->ctx, target, &o, cert, &ca);
	rc = r == P11C_OK ? 0 : cli_fail(c, r, "renewal with the shared token at %s:%d failed", j->server, port);
out:
	X509_NAME_free(dn);
	X509_free(ca);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	return rc;
}

/* The record's own fields: the token listener's port (default 9443; -1
 * when out of range, before any cast could wrap it into one) and the CA
 * certificate the enrollment fetched (ca_file). */
static int record_port(const struct renew_job *j)
{
	json_t *jp = json_object_get(j->rec, "port");
	json_int_t v;

	if (!json_is_integer(jp))
		return 9443;
	v = json_integer_value(jp);
	return v > 0 && v <= 65535 ? (int)v : -1;
}

static int record_check(struct cli *c, const struct renew_job *j)
{
	int port = record_port(j);

	if (port <= 0 || port > 65535 || j->ca_file == NULL) {
		fprintf(stderr, "p11cert: %s: the record of '%s' lacks a port or ca_file\n", c->cmd, j->id);
		return EX_DATAERR;
	}
	return 0;
}

static int renew_token(struct cli *c, const struct renew_job *j)
{
	const char *tfile = json_string_value(json_object_get(j->rec, "token_file"));
	int port = record_port(j), rc = EX_FAIL, fd = -1, t, kr, resumed = 0;
	char *lock = NULL, *label = NULL;
	unsigned char *tok = NULL;
	size_t tok_len = 0;
	p11c_key *old = NULL, *nkey = NULL;
	X509 *old_cert = NULL, *cert = NULL;
	p11c_result r;

	if ((rc = record_check(c, j)) != 0) /* cmd_renew ran it: a second look costs nothing */
		return rc;
	rc = EX_FAIL;
	/* the lock of enroll token */
	if (asprintf(&lock, "%s/config.json.lock", j->dir) < 0)
		goto out;
	fd = cli_lock(lock);
	if (fd == -3) {
		rc = EX_UNSAFE;
		goto out;
	}
	if (fd == -1) {
		fprintf(stderr, "p11cert: renew: another run holds the lock %s\n", lock);
		rc = EX_TEMPFAIL_;
		goto out;
	}
	if (fd < 0) {
		fprintf(stderr, "p11cert: renew: cannot create the lock file %s: %s\n", lock, strerror(errno));
		rc = EX_CANTCREAT;
		goto out;
	}
	if ((r = p11c_key_find(c->ctx, j->uri, &old)) != P11C_OK) {
		rc = cli_fail(c, r, "the current key");
		goto out;
	}
	(void)p11c_cert_get(c->ctx, old, &old_cert);
	ERR_clear_error();
	if ((label = strdup(p11c_key_label(old))) == NULL)
		goto out;
	/* the new key (rekey.c); a leftover of a failed rekey is reused: it
	 * never had a certificate */
	if (j->rekey && (kr = cli_rekey_key(c, old, &nkey, &resumed)) != 0) {
		rc = kr;
		goto out;
	}
	t = find_token(c, tfile, &tok, &tok_len);
	if (t > 0)
		goto fail_t;
	if (t == 0) {
		rc = with_token(c, j, nkey ? nkey : old, port, tok, tok_len, &cert);
		OPENSSL_cleanse(tok, tok_len);
		if (rc != 0)
			goto out;
	} else {
		struct p11c_renewal rn;

		if (old_cert == NULL) {
			fprintf(stderr, "p11cert: renew: '%s' has no certificate to renew with and the shared token "
				"%s%s is gone: enroll again with the token\n", label, tfile ? "file " : "",
				tfile ? tfile : "(P11CERT_CA_TOKEN)");
			rc = EX_NOINPUT;
			goto out;
		}
		/* the wire half: p11ca's POST /renew (src/lib/enroll/sharedtoken_renew.c) */
		memset(&rn, 0, sizeof rn);
		rn.server = j->server;
		rn.port = port;
		rn.ca_file = j->ca_file;
		rn.client_id = j->id;
		rn.key = nkey ? nkey : old;
		rn.current = old;
		rn.current_cert = old_cert;
		r = cli_proto_sharedtoken.lib->renew(c->ctx, &rn);
		cert = rn.cert;
		free(rn.cert_pem);
		if (r != P11C_OK) {
			rc = cli_fail(c, r, "renewal over mutual TLS at %s:%d (no shared token%s%s)", j->server, port,
				      tfile ? " in " : "", tfile ? tfile : "");
			goto out;
		}
	}
	if ((r = p11c_cert_store(c->ctx, nkey ? nkey : old, cert)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot store the renewed certificate; the old one stays in use");
		goto out;
	}
	if (nkey != NULL && (kr = cli_rekey_finish(c, &old, &nkey, label)) != 0) {
		rc = kr;
		goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: renew: '%s' renewed %s\n", label,
			t == 0 ? "with the shared token" : "over mutual TLS");
	rc = 0;
	goto out;
fail_t:
	rc = t;
out:
	if (fd >= 0)
		close(fd);
	if (tok != NULL)
		OPENSSL_cleanse(tok, tok_len);
	free(tok);
	free(lock);
	free(label);
	X509_free(old_cert);
	X509_free(cert);
	p11c_key_free(&old);
	p11c_key_free(&nkey);
	return rc;
}

const struct cli_protocol cli_proto_sharedtoken = {
	.lib = &p11c_proto_sharedtoken,
	.record_check = record_check,
	.renew = renew_token,
};
