/* p11cert check / renew: keep the token identity fresh (systemd timers). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "renew.h"

/* check: systemd ExecCondition= semantics */
#define CHECK_RENEW 0
#define CHECK_FRESH 1
#define CHECK_ERROR 255

int cmd_enroll_caramel(struct cli *c, int argc, char **argv);

struct threshold {
	long num, den; /* fraction of the lifetime, or */
	long days;     /* days before notAfter */
};

static int parse_threshold(const char *s, struct threshold *t)
{
	char *end;

	memset(t, 0, sizeof *t);
	if (strchr(s, '/') != NULL) {
		t->num = strtol(s, &end, 10);
		if (*end != '/' || t->num <= 0)
			return -1;
		t->den = strtol(end + 1, &end, 10);
		return *end == '\0' && t->den > t->num ? 0 : -1;
	}
	t->days = strtol(s, &end, 10);
	if (*end == 'd')
		end++;
	return *end == '\0' && t->days > 0 ? 0 : -1;
}

/* When the certificate should be renewed. */
static time_t renew_at(X509 *x, const struct threshold *t)
{
	time_t nb = ca_time(X509_get0_notBefore(x)), na = ca_time(X509_get0_notAfter(x));

	if (t->days > 0)
		return na - t->days * 86400L;
	return nb + (time_t)((double)(na - nb) * (double)t->num / (double)t->den);
}

static void iso(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char check_help[] =
	"usage: p11cert check --key URI [--threshold 2/3|DAYS] [--json]\n"
	"\n"
	"Does the certificate of the token key need renewal?  Exit 0: yes (missing,\n"
	"expired, or past the threshold: a fraction of its lifetime, default 2/3, or\n"
	"a number of days before it expires); 1: no; 255: error.  Made for systemd's\n"
	"ExecCondition=, which skips the unit on 1-254 and fails it on 255.\n";

int cmd_check(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' }, { "threshold", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },	 { NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *th = "2/3", *reason;
	struct threshold t;
	int json = 0, ch, rc = CHECK_ERROR, need;
	p11c_key *key = NULL;
	X509 *cert = NULL;
	p11c_result r;
	time_t now = time(NULL), at = 0;
	char nb[32] = "", na[32] = "", ra[32] = "";

	if (cli_help(argc, argv, check_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': uri = optarg; break;
		case 't': th = optarg; break;
		case 'j': json = 1; break;
		default: cli_bad_option(c, argv); return CHECK_ERROR;
		}
	}
	if (uri == NULL || optind != argc) {
		cli_usage(c, "--key URI is required");
		return CHECK_ERROR;
	}
	if (parse_threshold(th, &t) != 0) {
		cli_usage(c, "--threshold must be a fraction like 2/3 or a number of days, not '%s'", th);
		return CHECK_ERROR;
	}
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &key)) != P11C_OK) {
		cli_fail(c, r, NULL);
		return CHECK_ERROR;
	}
	r = p11c_cert_get(c->ctx, key, &cert);
	if (r == P11C_ERR_NOT_FOUND) {
		need = 1;
		reason = "no certificate";
	} else if (r != P11C_OK) {
		cli_fail(c, r, NULL);
		goto out;
	} else {
		at = renew_at(cert, &t);
		iso(ca_time(X509_get0_notBefore(cert)), nb, sizeof nb);
		iso(ca_time(X509_get0_notAfter(cert)), na, sizeof na);
		iso(at, ra, sizeof ra);
		if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0) {
			need = 1;
			reason = "expired";
		} else if (now >= at) {
			need = 1;
			reason = "past the renewal threshold";
		} else {
			need = 0;
			reason = "valid";
		}
	}
	if (json) {
		json_t *j = json_pack("{s:s, s:b, s:s, s:b, s:s}", "key", uri, "certificate", cert != NULL, "threshold",
				      th, "needs_renewal", need, "reason", reason);
		char *s;

		if (j != NULL && cert != NULL) {
			json_object_set_new(j, "not_before", json_string(nb));
			json_object_set_new(j, "not_after", json_string(na));
			json_object_set_new(j, "renew_at", json_string(ra));
		}
		s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(j);
	} else if (!c->quiet) {
		if (cert != NULL)
			printf("%s: %s; valid %s to %s, renew from %s\n", need ? "renew" : "fresh", reason, nb, na, ra);
		else
			printf("renew: %s\n", reason);
	}
	rc = need ? CHECK_RENEW : CHECK_FRESH;
out:
	X509_free(cert);
	p11c_key_free(&key);
	return rc;
}

/* --- renew ------------------------------------------------------------------ */

static char *unconst(const char *s)
{
	return (char *)(uintptr_t)s;
}

static X509 *token_cert(struct cli *c, const char *uri)
{
	p11c_key *k = NULL;
	X509 *x = NULL;

	if (p11c_key_find(c->ctx, uri, &k) == P11C_OK)
		(void)p11c_cert_get(c->ctx, k, &x);
	p11c_key_free(&k);
	ERR_clear_error();
	return x;
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

char *cli_rekey_uri(p11c_ctx *ctx, const char *label)
{
	char *tmp = NULL, *uri;

	if (asprintf(&tmp, "%s~rekey", label) < 0)
		return NULL;
	uri = p11c_label_uri(ctx, tmp);
	free(tmp);
	return uri;
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
	p11c_caramel_state st;
	p11c_key *old = NULL, *nkey = NULL;
	X509 *old_cert = NULL, *ca = NULL, *cert = NULL;
	char *tmp_uri = NULL, *csr = NULL, *cpem = NULL, *csr_path = NULL, *crt_path = NULL, *label = NULL;
	char *rk_path = NULL, *lock = NULL, sha[65];
	size_t csr_len = 0;
	p11c_key_type kt;
	p11c_result r;
	int rc = EX_FAIL, fd = -1;
	FILE *fp;

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
	kt = p11c_key_get_type(old);
	label = strdup(p11c_key_label(old));
	if (label == NULL || (tmp_uri = cli_rekey_uri(c->ctx, label)) == NULL)
		goto out;
	/* a rekey begun earlier (its request pending) goes on with its key */
	if (p11c_key_find(c->ctx, tmp_uri, &nkey) == P11C_OK) {
		csr = rekey_csr_read(rk_path, nkey, &csr_len);
		if (!c->quiet)
			fprintf(stderr, "p11cert: renew: resuming the rekey of '%s' with the new key '%s~rekey'\n", id,
				label);
	} else if ((r = p11c_keygen(c->ctx, tmp_uri, kt, 0, &nkey)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot generate the new key");
		goto out;
	}
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
	r = p11c_caramel_poll(c->ctx, &srv, csr, csr_len, old, old_cert, NULL, &st, &cpem);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "renewal request %s", sha);
		goto out;
	}
	if (st == P11C_CARAMEL_REJECTED) {
		/* the next rekey starts over with another key */
		(void)p11c_key_delete(c->ctx, &nkey);
		unlink(rk_path);
		fprintf(stderr, "p11cert: renew: the CA at %s rejected the rekey request %s; the new key was "
			"destroyed, the old key and certificate stay in use\n", server, sha);
		rc = EX_NOPERM;
		goto out;
	}
	if (st != P11C_CARAMEL_SIGNED) {
		cli_caramel_pending(c, server, sha, id, nkey);
		fprintf(stderr, "p11cert: renew: the old key and certificate stay in use; run renew --rekey again "
			"to finish once it is signed\n");
		rc = EX_UNAVAILABLE; /* pending: 69 (docs/cli.md) */
		goto out;
	}
	if (p11c_x509_parse((const unsigned char *)cpem, strlen(cpem), &cert) != P11C_OK ||
	    (r = p11c_caramel_check(c->ctx, cert, nkey, ca, id)) != P11C_OK ||
	    (r = p11c_cert_store(c->ctx, nkey, cert)) != P11C_OK) {
		rc = cli_fail(c, r ? r : P11C_ERR_PROTOCOL, "the new certificate; the old one stays in use");
		goto out;
	}
	/* the new identity is complete: now the old one may go */
	if ((r = p11c_key_delete(c->ctx, &old)) != P11C_OK ||
	    (r = p11c_key_relabel(c->ctx, nkey, label)) != P11C_OK) {
		rc = cli_fail(c, r, "finishing the rekey");
		goto out;
	}
	if ((rc = cli_output(c, csr_path, csr, csr_len, 0644)) != 0 ||
	    (rc = cli_output(c, crt_path, cpem, strlen(cpem), 0644)) != 0)
		goto out;
	unlink(rk_path);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(tmp_uri);
	free(csr);
	free(cpem);
	free(csr_path);
	free(crt_path);
	free(rk_path);
	free(lock);
	free(label);
	X509_free(old_cert);
	X509_free(ca);
	X509_free(cert);
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

/* One entry per enrollment protocol (style: one interface, one file each;
 * EST and ACME join here). */
static const struct renewer {
	const char *protocol;
	int (*renew)(struct cli *c, const struct renew_job *j);
} renewers[] = {
	{ "caramel", renew_caramel },
	{ "token", renew_token },
	{ "acme", renew_acme },
};

static const char renew_help[] =
	"usage: p11cert renew [--dir DIR] [--id CLIENTID] [--rekey] [--exec CMD] [--jitter SECONDS]\n"
	"\n"
	"Renew through the protocol recorded at enrollment (DIR/CLIENTID.enroll; DIR\n"
	"defaults to $CARAMEL_CERT_DIR or the current folder).  Caramel: presenting\n"
	"the current certificate with the token key (mutual TLS).  Shared token\n"
	"(CLIENTID = the key label): with the token while its file exists, else over\n"
	"mutual TLS at p11ca's /renew.  --rekey makes a new key in the token; the old\n"
	"key and certificate are destroyed only after the new certificate is stored\n"
	"and verified; a rekey the CA has not signed yet is resumed by the next run.\n"
	"--exec CMD runs (sh -c) once after a certificate was renewed.  --jitter S\n"
	"waits a random 0..S seconds first.\n"
	"Exit: 0 renewed or current, 69 pending, 75 locked, 78 unsafe state folder or\n"
	"record, others as enroll.  The hook runs without P11CERT_PIN, P11CERT_CA_TOKEN.\n";

int cmd_renew(struct cli *c, int argc, char **argv);
int cmd_renew(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },  { "id", required_argument, NULL, 'i' },
		{ "rekey", no_argument, NULL, 'r' },	  { "exec", required_argument, NULL, 'x' },
		{ "jitter", required_argument, NULL, 'j' }, { NULL, 0, NULL, 0 },
	};
	const char *dir = getenv("CARAMEL_CERT_DIR"), *id = NULL, *hook = NULL;
	const char *server, *cid, *uri, *ca_file, *proto;
	char *st_path = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;
	long jitter = 0;
	int rekey = 0, ch, rc = EX_FAIL;
	size_t ri;
	json_t *st = NULL;
	json_error_t je;
	X509 *before = NULL, *after = NULL;
	p11c_result r;

	if (cli_help(argc, argv, renew_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'i': id = optarg; break;
		case 'r': rekey = 1; break;
		case 'x': hook = optarg; break;
		case 'j':
			if (cli_num(c, "--jitter", optarg, 0, 86400, &jitter) != 0)
				return EX_USAGE;
			break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (dir == NULL)
		dir = ".";
	if (id == NULL) {
		return cli_usage(c, "--id CLIENTID is required (the name of DIR/CLIENTID.enroll)");
	}
	if (asprintf(&st_path, "%s/%s.enroll", dir, id) < 0)
		return EX_SOFTWARE;
	/* the record says which server may act on which key: only from a
	 * folder and a file no other user can write (cli_state.c) */
	if ((rc = cli_state_read(c, st_path, INPUT_MAX, &buf, &len)) != 0)
		goto out;
	st = json_loadb((const char *)buf, len, 0, &je);
	if (st == NULL || json_unpack(st, "{s:s, s:s, s:s, s:s}", "protocol", &proto, "server", &server, "client_id",
				       &cid, "key", &uri) != 0) {
		fprintf(stderr, "p11cert: renew: %s is not an enrollment record\n", st_path);
		rc = EX_DATAERR;
		goto out;
	}
	ca_file = json_string_value(json_object_get(st, "ca_file"));
	if (ca_file != NULL && (rc = cli_state_file("CA file", ca_file)) != 0)
		goto out;
	for (ri = 0; ri < sizeof renewers / sizeof renewers[0]; ri++)
		if (strcmp(proto, renewers[ri].protocol) == 0)
			break;
	if (ri == sizeof renewers / sizeof renewers[0]) {
		fprintf(stderr, "p11cert: renew: protocol '%s' cannot be renewed yet\n", proto);
		rc = EX_UNAVAILABLE;
		goto out;
	}
	if (jitter > 0) {
		unsigned int r32 = 0;
		struct timespec ts;

		RAND_bytes((unsigned char *)&r32, sizeof r32);
		ts.tv_sec = (time_t)(r32 % (unsigned int)(jitter + 1));
		ts.tv_nsec = 0;
		nanosleep(&ts, NULL);
	}
	if ((r = cli_ctx(c)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	before = token_cert(c, uri);
	{
		struct renew_job j = { dir, server, cid, uri, ca_file, rekey, st };

		rc = renewers[ri].renew(c, &j);
	}
	if (rc != 0)
		goto out;
	after = token_cert(c, uri);
	/* success means a valid certificate for the key is in place, whatever
	 * the server said (a 304 proves nothing) */
	if (after == NULL || X509_cmp_time(X509_get0_notAfter(after), NULL) <= 0 ||
	    X509_cmp_time(X509_get0_notBefore(after), NULL) > 0) {
		fprintf(stderr, "p11cert: renew: no valid certificate in the token after renewal\n");
		rc = EX_FAIL;
		goto out;
	}
	if (before != NULL && X509_cmp(before, after) == 0) {
		if (!c->quiet)
			fprintf(stderr, "p11cert: renew: the certificate is current; nothing renewed\n");
		goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: renew: renewed '%s'%s\n", cid, rekey ? " with a new key" : "");
	if (hook != NULL) {
		int hr = cli_run_hook(hook);

		if (hr != 0) {
			fprintf(stderr, "p11cert: renew: renewed, but the hook '%s' exited %d\n", hook, hr);
			rc = EX_FAIL;
		}
	}
out:
	json_decref(st);
	free(buf);
	free(st_path);
	X509_free(before);
	X509_free(after);
	return rc;
}
