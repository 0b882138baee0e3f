/*
 * p11cert revoke: revoke the ACME certificate of an enrollment record
 * (RFC 8555 s7.6) with the account key (kid) or, with --with-cert-key, the
 * certificate's own key (jwk).  Nothing in the token or DIR is deleted.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>
#include <openssl/pem.h>
#include <p11cert/acme.h>
#include "cli.h"
#include "renew.h"

static const char revoke_help[] =
	"usage: p11cert revoke --id LABEL [--dir DIR] [--reason N] [--with-cert-key]\n"
	"Revoke the certificate enrolled with 'p11cert enroll acme' (RFC 8555 s7.6):\n"
	"DIR/LABEL.enroll names the server, the key and the account key; the\n"
	"certificate is the one next to the key in the token (else DIR/LABEL.crt).\n"
	"  --id LABEL        the record DIR/LABEL.enroll (protocol acme)\n"
	"  --dir DIR         state folder (default $CARAMEL_CERT_DIR, else .)\n"
	"  --reason N        RFC 5280 CRLReason code 0-10 (default: none sent)\n"
	"  --with-cert-key   sign with the certificate's key (jwk) instead of the\n"
	"                    ACME account key\n";

/* the certificate next to the key, else DIR/ID.crt */
static X509 *revoke_cert(struct cli *c, p11c_key *key, const struct renew_job *j)
{
	X509 *x = NULL;
	char *path;
	FILE *f;

	if (p11c_cert_get(c->ctx, key, &x) == P11C_OK)
		return x;
	if ((path = cli_path_in(j->dir, j->id, ".crt")) == NULL)
		return NULL;
	if ((f = fopen(path, "r")) != NULL) {
		x = PEM_read_X509(f, NULL, NULL, NULL);
		fclose(f);
	}
	if (x == NULL)
		fprintf(stderr, "p11cert: %s: no certificate for key '%s' in the token nor in %s\n", c->cmd,
			cli_safe(p11c_key_label(key)), path);
	free(path);
	return x;
}

int cmd_revoke(struct cli *c, int argc, char **argv);
int cmd_revoke(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },    { "id", required_argument, NULL, 'i' },
		{ "reason", required_argument, NULL, 'r' }, { "with-cert-key", no_argument, NULL, 'w' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = getenv("CARAMEL_CERT_DIR"), *id = NULL, *acct_uri;
	struct renew_job j;
	long reason = -1;
	int with_cert = 0, ch, rc = EX_FAIL, created = 0;
	char *acct_url = NULL;
	p11c_key *key = NULL, *acct = NULL;
	p11c_acme *a = NULL;
	p11c_acme_server srv;
	X509 *cert = NULL;
	p11c_result r;

	if (cli_help(argc, argv, revoke_help))
		return 0;
	memset(&j, 0, sizeof j);
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'i': id = optarg; break;
		case 'w': with_cert = 1; break;
		case 'r':
			if (cli_num(c, "--reason", optarg, 0, 10, &reason) != 0)
				return EX_USAGE;
			break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (id == NULL)
		return cli_usage(c, "--id LABEL is required");
	if (dir == NULL)
		dir = ".";
	if (cli_curl_ready(c) != 0)
		return EX_UNAVAILABLE;
	if ((rc = acme_record_load(c, dir, id, &j, &acct_uri)) != 0)
		goto out;
	if ((r = cli_ctx(c)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	if ((r = p11c_key_find(c->ctx, j.uri, &key)) != P11C_OK) {
		rc = cli_fail(c, r, "token key '%s'", j.uri);
		goto out;
	}
	if ((cert = revoke_cert(c, key, &j)) == NULL) {
		rc = EX_NOINPUT;
		goto out;
	}
	memset(&srv, 0, sizeof srv);
	srv.directory_url = j.server;
	srv.ca_file = j.ca_file;
	if ((r = p11c_acme_new(c->ctx, &srv, &a)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot read the ACME directory %s", j.server);
		goto out;
	}
	if (!with_cert) {
		if ((r = p11c_key_find(c->ctx, acct_uri, &acct)) != P11C_OK) {
			rc = cli_fail(c, r, "ACME account key '%s'", acct_uri);
			goto out;
		}
		/* the account exists already: never create one to revoke */
		if ((r = p11c_acme_account(a, acct, NULL, 0, 0, 0, &acct_url, &created)) != P11C_OK) {
			rc = cli_fail(c, r, "ACME account of key '%s'", cli_safe(p11c_key_label(acct)));
			goto out;
		}
	}
	r = p11c_acme_revoke(a, cert, (int)reason, key, with_cert);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "revoke the certificate of key '%s'", cli_safe(p11c_key_label(key)));
		goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: %s: certificate of key '%s' revoked (signed with the %s key)\n", c->cmd,
			cli_safe(p11c_key_label(key)), with_cert ? "certificate" : "account");
	rc = 0;
out:
	X509_free(cert);
	free(acct_url);
	p11c_acme_free(&a);
	p11c_key_free(&acct);
	p11c_key_free(&key);
	json_decref(j.rec);
	return rc;
}
