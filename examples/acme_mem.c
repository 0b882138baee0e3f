/*
 * acme_mem: ACME (RFC 8555) in library mode, in memory, with the public
 * API only (docs/library.md "ACME in memory").
 *
 *   acme_mem DIRECTORY_URL CA_FILE CERT_KEY_URI ACCOUNT_KEY_URI HOOK NAME...
 *
 * Finds (or generates, EC P-256) the certificate key and the account key
 * in the token, looks up or creates the account (agreeing to the terms),
 * orders a certificate for NAME... with dns-01 (RFC 8555 s8.4): the hook
 * is run as `HOOK add|remove` with ACME_RECORD_NAME, ACME_RECORD_VALUE and
 * ACME_IDENTIFIER in a minimal environment (no PIN), stores the leaf in
 * the token next to the key and prints the chain PEM on stdout.  It
 * writes no file.  CA_FILE: trust for the server's HTTPS.
 *
 * PIN: $P11CERT_PIN (the library's default source).  PKCS#11 module:
 * $P11CERT_MODULE when set.  Exit 0 on success, 1 on failure (the
 * library's detail on stderr), 64 on a usage error.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11cert/acme.h>
#include <p11cert/p11cert.h>

#define ENV_MAX 512

struct hook {
	char *cmd;
};

/* run HOOK OP with the record in a minimal environment; 0 when it exits 0 */
static int run_hook(const struct hook *h, const char *op, const char *identifier, const char *keyauth)
{
	char value[44], name[ENV_MAX], val[ENV_MAX], id[ENV_MAX], opbuf[8];
	char path[] = "PATH=/usr/bin:/bin";
	char *const argv[] = {h->cmd, opbuf, NULL};
	char *const envp[] = {path, name, val, id, NULL};
	const char *host = identifier;
	int status = 0;
	pid_t pid;

	if (snprintf(opbuf, sizeof opbuf, "%s", op) >= (int)sizeof opbuf)
		return -1;
	if (p11c_acme_dns01_value(keyauth, value) != P11C_OK)
		return -1;
	if (strncmp(host, "*.", 2) == 0)
		host += 2; /* RFC 8555 s8.4: the base domain of a wildcard */
	if (snprintf(name, sizeof name, "ACME_RECORD_NAME=_acme-challenge.%s", host) >= (int)sizeof name ||
	    snprintf(val, sizeof val, "ACME_RECORD_VALUE=%s", value) >= (int)sizeof val ||
	    snprintf(id, sizeof id, "ACME_IDENTIFIER=%s", identifier) >= (int)sizeof id)
		return -1;
	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		int fd = 1;
		/* stdout is the chain's: the hook writes to stderr */
		if (dup2(2, fd) < 0)
			_exit(127);
		execve(h->cmd, argv, envp);
		_exit(127);
	}
	while (waitpid(pid, &status, 0) < 0)
		if (errno != EINTR)
			return -1;
	return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

static int present(void *userdata, const char *type, const char *identifier, const char *token,
		   const char *keyauth, char *err, size_t errlen)
{
	const struct hook *h = userdata;

	(void)token;
	if (strcmp(type, "dns-01") != 0) {
		snprintf(err, errlen, "challenge type %s not handled", type);
		return -1;
	}
	if (run_hook(h, "add", identifier, keyauth) != 0) {
		snprintf(err, errlen, "hook '%s' add failed for %s", h->cmd, identifier);
		return -1;
	}
	return 0;
}

static void cleanup(void *userdata, const char *type, const char *identifier, const char *token,
		    const char *keyauth)
{
	(void)type;
	(void)token;
	if (run_hook(userdata, "remove", identifier, keyauth) != 0)
		fprintf(stderr, "acme_mem: hook remove failed for %s\n", identifier);
}

static int failed(p11c_ctx *ctx, const char *what, p11c_result r)
{
	const char *d = ctx != NULL ? p11c_ctx_detail(ctx) : "";

	fprintf(stderr, "acme_mem: %s: %s\n", what, d[0] != '\0' ? d : p11c_strerror(r));
	return 1;
}

static p11c_result find_or_make(p11c_ctx *ctx, const char *uri, p11c_key **key)
{
	p11c_result r = p11c_key_find(ctx, uri, key);

	if (r == P11C_ERR_NOT_FOUND)
		r = p11c_keygen(ctx, uri, P11C_KEY_EC_P256, 0, key);
	return r;
}

int main(int argc, char **argv)
{
	const char *module = getenv("P11CERT_MODULE");
	p11c_acme_server srv;
	p11c_acme_challenger ch;
	struct hook h;
	p11c_ctx *ctx = NULL;
	p11c_key *key = NULL, *acct = NULL;
	p11c_acme *a = NULL;
	char *account_url = NULL, *chain = NULL;
	X509 *leaf = NULL;
	int created = 0, rc = 1;
	p11c_result r;

	if (argc < 7) {
		fprintf(stderr, "usage: acme_mem DIRECTORY_URL CA_FILE CERT_KEY_URI ACCOUNT_KEY_URI HOOK NAME...\n");
		return 64;
	}
	memset(&srv, 0, sizeof srv);
	srv.directory_url = argv[1];
	srv.ca_file = argv[2];
	srv.timeout_ms = 30000;
	srv.max_wait_ms = 120000;
	h.cmd = argv[5];
	ch.present = present;
	ch.cleanup = cleanup;
	ch.userdata = &h;

	if ((r = p11c_ctx_new(&ctx)) != P11C_OK) {
		rc = failed(ctx, "p11c_ctx_new", r);
		goto out;
	}
	if (module != NULL && module[0] != '\0' && (r = p11c_ctx_set_module(ctx, module)) != P11C_OK) {
		rc = failed(ctx, "PKCS#11 module", r);
		goto out;
	}
	/* PIN from $P11CERT_PIN: the library's default, nothing to set */
	if ((r = p11c_open(ctx, argv[3])) != P11C_OK) {
		rc = failed(ctx, "open the token", r);
		goto out;
	}
	if ((r = find_or_make(ctx, argv[3], &key)) != P11C_OK) {
		rc = failed(ctx, "certificate key", r);
		goto out;
	}
	if ((r = find_or_make(ctx, argv[4], &acct)) != P11C_OK) {
		rc = failed(ctx, "account key", r);
		goto out;
	}
	if ((r = p11c_acme_new(ctx, &srv, &a)) != P11C_OK) {
		rc = failed(ctx, "ACME directory", r);
		goto out;
	}
	if ((r = p11c_acme_account(a, acct, NULL, 0, 1, 1, &account_url, &created)) != P11C_OK) {
		rc = failed(ctx, "ACME account", r);
		goto out;
	}
	fprintf(stderr, "acme_mem: account %s (%s)\n", account_url, created ? "created" : "existing");
	r = p11c_acme_order(a, key, (const char *const *)&argv[6], (size_t)(argc - 6), "dns-01", &ch, &chain);
	if (r != P11C_OK) {
		rc = failed(ctx, "ACME order", r);
		goto out;
	}
	/* the application's own storage: here, the token, next to the key */
	r = p11c_x509_parse((const unsigned char *)chain, strlen(chain), &leaf);
	if (r != P11C_OK) {
		rc = failed(ctx, "parse the certificate", r);
		goto out;
	}
	if ((r = p11c_cert_store(ctx, key, leaf)) != P11C_OK) {
		rc = failed(ctx, "store the certificate in the token", r);
		goto out;
	}
	fputs(chain, stdout);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "acme_mem: cannot write to stdout\n");
		goto out;
	}
	rc = 0;
out:
	X509_free(leaf);
	free(chain);
	free(account_url);
	p11c_acme_free(&a);
	p11c_key_free(&acct);
	p11c_key_free(&key);
	p11c_ctx_free(&ctx);
	return rc;
}
