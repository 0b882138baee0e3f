/* p11cert enroll est: the CLI around libp11cert's EST client
 * (include/p11cert/est.h; docs/est.md).  This file owns the files: lock,
 * CA certificates, certificate, record; the password file is read here and
 * wiped after use. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/est.h>

#include "renew.h"
#include "testhook.h"

#define EST_MAX_SANS 32
#define EST_PASSWORD_MAX 1024

/* The password from FILE (first line; at most EST_PASSWORD_MAX bytes),
 * never argv; the caller wipes and frees it. */
static int read_password(struct cli *c, const char *file, char **pw)
{
	unsigned char *b = NULL;
	size_t n = 0;

	if (p11c_file_read(file, EST_PASSWORD_MAX, &b, &n) != P11C_OK) {
		fprintf(stderr, "p11cert: %s: cannot read the password file '%s': %s\n", c->cmd, file,
			strerror(errno));
		return EX_NOINPUT;
	}
	while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r'))
		b[--n] = '\0';
	if (n == 0 || memchr(b, '\0', n) != NULL || memchr(b, '\n', n) != NULL) {
		fprintf(stderr, "p11cert: %s: the password file '%s' must hold one non-empty line\n", c->cmd, file);
		OPENSSL_cleanse(b, n);
		free(b);
		return EX_DATAERR;
	}
	*pw = (char *)b;
	return 0;
}

static char *certs_pem(STACK_OF(X509) *cas)
{
	char *all = NULL, *one, *p;
	size_t len = 0, ol;
	int i;

	for (i = 0; i < sk_X509_num(cas); i++) {
		if ((one = p11c_x509_pem(sk_X509_value(cas, i))) == NULL) {
			free(all);
			return NULL;
		}
		ol = strlen(one);
		if ((p = realloc(all, len + ol + 1)) == NULL) {
			free(one);
			free(all);
			return NULL;
		}
		all = p;
		memcpy(all + len, one, ol + 1);
		len += ol;
		free(one);
	}
	return all;
}

int est_read_cacerts(struct cli *c, const char *path, STACK_OF(X509) **cas)
{
	unsigned char *b = NULL;
	size_t n = 0;
	BIO *bio = NULL;
	X509 *x;
	int rc = EX_DATAERR;

	*cas = sk_X509_new_null();
	if (*cas == NULL)
		return EX_SOFTWARE;
	if (p11c_file_read(path, INPUT_MAX, &b, &n) != P11C_OK || (bio = BIO_new_mem_buf(b, (int)n)) == NULL) {
		fprintf(stderr, "p11cert: %s: cannot read the EST CA certificates %s\n", c->cmd, path);
		rc = EX_NOINPUT;
		goto out;
	}
	while (sk_X509_num(*cas) < P11C_EST_MAX_CERTS && (x = PEM_read_bio_X509(bio, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(*cas, x)) {
			X509_free(x);
			goto out;
		}
	if (sk_X509_num(*cas) > 0)
		rc = 0;
	else
		fprintf(stderr, "p11cert: %s: %s holds no certificate\n", c->cmd, path);
out:
	ERR_clear_error();
	if (rc != 0) {
		sk_X509_pop_free(*cas, X509_free);
		*cas = NULL;
	}
	BIO_free(bio);
	free(b);
	return rc;
}

/* The options of an EST enrollment, as given and as recorded. */
struct est_opts {
	const char *server, *uri, *dir, *ca_file, *fingerprint, *user, *password_file, *client_uri, *subject, *type,
		*id;
	const char *sans[EST_MAX_SANS];
	int nsans, bind, once, tls_max;
	long timeout;
};

/* DIR/ID.enroll: how to renew (no secret: the password file's path). */
static int write_record(struct cli *c, const struct est_opts *o, const char *ca_file, const char *cacerts)
{
	char *path = cli_path_in(o->dir, o->id, ".enroll"), *pwf = cli_absolute(o->password_file), *s = NULL;
	json_t *js = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:b, s:i}", "protocol", p11c_proto_est.name, "server",
			       o->server, "client_id", o->id, "key", o->uri, "ca_file", ca_file, "cacerts", cacerts,
			       "bind", o->bind, "tls_max", o->tls_max);
	int rc = EX_SOFTWARE;

	if (path == NULL || js == NULL)
		goto out;
	if (o->user != NULL && (json_object_set_new(js, "user", json_string(o->user)) != 0 ||
				json_object_set_new(js, "password_file", json_string(pwf)) != 0))
		goto out;
	if ((s = json_dumps(js, JSON_INDENT(2))) == NULL)
		goto out;
	rc = cli_output(c, path, s, strlen(s), 0644);
out:
	free(path);
	free(pwf);
	free(s);
	json_decref(js);
	return rc;
}

/* The key type the server's attributes ask for, when the token can make it. */
static const char *type_from_attrs(const p11c_est_attrs *a)
{
	if (a->key_type == EVP_PKEY_EC)
		return a->curve_nid == NID_secp384r1 ? "ec:P-384" : "ec:P-256";
	if (a->key_type == EVP_PKEY_RSA)
		return a->rsa_bits == 4096 ? "rsa:4096" : a->rsa_bits == 3072 ? "rsa:3072" : "rsa:2048";
	return NULL;
}

static void say_attrs(struct cli *c, const p11c_est_attrs *a)
{
	int i;

	if (c->quiet)
		return;
	for (i = 0; i < a->nunknown; i++)
		fprintf(stderr, "p11cert: %s: the EST server asks for %s in the request, which p11cert cannot fill; "
			"the request goes without it\n", c->cmd, cli_safe(a->unknown[i]));
	if (a->challenge_password)
		fprintf(stderr, "p11cert: %s: the EST server asks for channel binding (challengePassword)\n", c->cmd);
	if (a->next > 0) {
		const unsigned char *q = a->ext;
		STACK_OF(X509_EXTENSION) *x = d2i_X509_EXTENSIONS(NULL, &q, (long)a->ext_len);

		fprintf(stderr, "p11cert: %s: the EST server asks for extensions; the request carries them:", c->cmd);
		for (i = 0; i < sk_X509_EXTENSION_num(x); i++)
			fprintf(stderr, " %s",
				OBJ_nid2sn(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(x, i)))));
		fputc('\n', stderr);
		sk_X509_EXTENSION_pop_free(x, X509_EXTENSION_free);
		ERR_clear_error();
	}
}

static const char est_help[] =
	"usage: p11cert enroll est --server https://HOST[:PORT][/LABEL] --key URI [--dir DIR]\n"
	"                          [--ca-file FILE | --ca-fingerprint sha256:HEX]\n"
	"                          [--user NAME --password-file FILE] [--client-cert-key URI]\n"
	"                          [--bind] [--subject DN] [--san TYPE:VALUE]... [--type TYPE]\n"
	"                          [--id NAME] [--once] [--timeout SECONDS] [--tls-max 1.2|1.3]\n"
	"\n"
	"Enroll the token key with an EST server (RFC 7030; docs/est.md).  The key is\n"
	"generated when missing (the type /csrattrs asks for, else --type, else\n"
	"ec:P-256); the token signs the request; the certificate is checked (the key's,\n"
	"chains to the EST CA) and stored in the token next to the key.\n"
	"\n"
	"  --ca-file FILE     trust anchors for the server's TLS certificate\n"
	"  --ca-fingerprint sha256:HEX  bootstrap: fetch /cacerts without verifying\n"
	"                     the server, go on only when a CA certificate there has this\n"
	"                     SHA-256 fingerprint, then verified with it (neither option:\n"
	"                     the system trust store)\n"
	"  --user NAME --password-file FILE  HTTP Basic (the password never in argv)\n"
	"  --client-cert-key URI  mutual TLS with this token key and its certificate\n"
	"                     (an IDevID; may be in another token)\n"
	"  --bind             put the TLS channel binding in the request even when the\n"
	"                     server does not ask for it\n"
	"  --subject DN       default CN=ID; --san as for p11cert csr\n"
	"  --id NAME          the name of the files in DIR (default: the key's label):\n"
	"                     NAME.cacerts, NAME.crt, NAME.enroll (for renew), NAME.lock\n"
	"  --once             never wait: exit 69 while the request is pending\n"
	"  --timeout S        give up waiting after S seconds (exit 69; default 3600)\n"
	"Exit: 0 enrolled, 69 pending, 75 locked, 76 TLS or protocol error, 77 refused\n"
	"(401/403), 65 the certificate fails the checks (nothing stored).\n";

int cmd_enroll_est(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 'S' },   { "key", required_argument, NULL, 'k' },
		{ "dir", required_argument, NULL, 'd' },      { "ca-file", required_argument, NULL, 'c' },
		{ "ca-fingerprint", required_argument, NULL, 'f' }, { "user", required_argument, NULL, 'u' },
		{ "password-file", required_argument, NULL, 'p' }, { "client-cert-key", required_argument, NULL, 'C' },
		{ "bind", no_argument, NULL, 'b' },	      { "subject", required_argument, NULL, 's' },
		{ "san", required_argument, NULL, 'n' },      { "type", required_argument, NULL, 't' },
		{ "id", required_argument, NULL, 'i' },	      { "once", no_argument, NULL, '1' },
		{ "timeout", required_argument, NULL, 'T' },  { "tls-max", required_argument, NULL, 'V' },
		{ NULL, 0, NULL, 0 },
	};
	struct est_opts o;
	p11c_est_server srv;
	p11c_est_request rq;
	p11c_est_attrs attrs;
	p11c_est_state state = P11C_EST_PENDING;
	unsigned char fp[32];
	char err[256], *password = NULL, *lock = NULL, *crt_path = NULL, *cacerts_path = NULL, *ca_pem = NULL;
	char *cas_pem = NULL, *abs_ca = NULL, *abs_cacerts = NULL, *idbuf = NULL;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	STACK_OF(X509) *cas = NULL;
	X509_NAME *subject = NULL;
	X509 *ca = NULL, *cert = NULL, *ccert = NULL;
	p11c_key *key = NULL, *ckey = NULL;
	p11c_ctx *cctx = NULL;
	long retry = 0;
	time_t start = time(NULL);
	int ch, rc = EX_FAIL, fd = -1, created = 0;
	p11c_result r;

	if (cli_help(argc, argv, est_help))
		return 0;
	memset(&o, 0, sizeof o);
	o.dir = ".";
	o.timeout = 3600;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'S': o.server = optarg; break;
		case 'k': o.uri = optarg; break;
		case 'd': o.dir = optarg; break;
		case 'c': o.ca_file = optarg; break;
		case 'f': o.fingerprint = optarg; break;
		case 'u': o.user = optarg; break;
		case 'p': o.password_file = optarg; break;
		case 'C': o.client_uri = optarg; break;
		case 'b': o.bind = 1; break;
		case 's': o.subject = optarg; break;
		case 'n':
			if (o.nsans == EST_MAX_SANS) {
				rc = cli_usage(c, "at most %d --san", EST_MAX_SANS);
				goto out;
			}
			if (p11c_san_add(optarg, &sans, err, sizeof err) != P11C_OK) {
				rc = cli_usage(c, "bad --san '%s': %s", optarg, err);
				goto out;
			}
			o.sans[o.nsans++] = optarg;
			break;
		case 't': o.type = optarg; break;
		case 'i': o.id = optarg; break;
		case '1': o.once = 1; break;
		case 'T':
			if ((rc = cli_num(c, "--timeout", optarg, 0, 31536000, &o.timeout)) != 0)
				goto out;
			break;
		case 'V':
			if (strcmp(optarg, "1.2") != 0 && strcmp(optarg, "1.3") != 0) {
				rc = cli_usage(c, "--tls-max is 1.2 or 1.3, not '%s'", optarg);
				goto out;
			}
			o.tls_max = optarg[2] == '2' ? 12 : 13;
			break;
		default: rc = cli_bad_option(c, argv); goto out;
		}
	}
	if (optind != argc) {
		rc = cli_usage(c, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (o.server == NULL || o.uri == NULL) {
		rc = cli_usage(c, "--server URL and --key URI are required");
		goto out;
	}
	if (o.ca_file != NULL && o.fingerprint != NULL) {
		rc = cli_usage(c, "--ca-file and --ca-fingerprint exclude each other");
		goto out;
	}
	if (o.fingerprint != NULL && p11c_est_fingerprint_parse(o.fingerprint, fp) != P11C_OK) {
		rc = cli_usage(c, "--ca-fingerprint must be sha256: and 64 hex digits, not '%s'", o.fingerprint);
		goto out;
	}
	if ((o.user == NULL) != (o.password_file == NULL)) {
		rc = cli_usage(c, "--user and --password-file go together");
		goto out;
	}
	if (o.id == NULL) {
		/* the label of pkcs11:...object=LABEL... */
		const char *obj = strstr(o.uri, "object=");

		if (obj != NULL && (obj == o.uri + 7 || obj[-1] == ';' || obj[-1] == ':'))
			idbuf = strndup(obj + 7, strcspn(obj + 7, ";?"));
		o.id = idbuf;
	}
	if (o.id == NULL || !cli_file_name_ok(o.id, 64) || strchr(o.id, '%') != NULL) {
		rc = cli_usage(c, "give --id NAME (1 to 64 characters, no '/', not starting with '.') for the "
			       "files in DIR");
		goto out;
	}
	if (o.subject == NULL) {
		char cn[80];

		snprintf(cn, sizeof cn, "/CN=%s", o.id);
		r = p11c_subject_parse(cn, &subject, err, sizeof err);
	} else {
		r = p11c_subject_parse(o.subject, &subject, err, sizeof err);
	}
	if (r != P11C_OK) {
		rc = cli_usage(c, "bad --subject: %s", err);
		goto out;
	}
	if (cli_curl_ready(c) != 0) { /* before the token and the files */
		rc = EX_UNAVAILABLE;
		goto out;
	}
	lock = cli_path_in(o.dir, o.id, ".lock");
	crt_path = cli_path_in(o.dir, o.id, ".crt");
	cacerts_path = cli_path_in(o.dir, o.id, ".cacerts");
	if (lock == NULL || crt_path == NULL || cacerts_path == NULL)
		goto out;
	if ((rc = cli_lock_run(c, lock, &fd)) != 0)
		goto out;
	{
		/* the temp files a killed run left (NAME's own: we hold its lock) */
		static const char *const sfx[] = { ".crt", ".cacerts", ".enroll" };

		cli_remove_temps(o.dir, o.id, sfx, sizeof sfx / sizeof sfx[0]);
	}
	if (o.password_file != NULL && (rc = read_password(c, o.password_file, &password)) != 0)
		goto out;
	rc = EX_FAIL;
	if ((r = cli_ctx(c)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	memset(&srv, 0, sizeof srv);
	srv.url = o.server;
	srv.tls_max = o.tls_max;
	srv.timeout_ms = 30000;
	/* trust: the anchors given, or the bootstrap with the fingerprint
	 * given (RFC 7030 s4.1.1), then /cacerts over verified TLS */
	if (o.fingerprint != NULL) {
		STACK_OF(X509) *boot = NULL;

		r = p11c_est_bootstrap(c->ctx, &srv, fp, &ca, &boot);
		sk_X509_pop_free(boot, X509_free);
		if (r != P11C_OK) {
			rc = cli_fail(c, r, "trust bootstrap with %s refused; nothing stored", cli_safe(o.server));
			goto out;
		}
		if ((ca_pem = p11c_x509_pem(ca)) == NULL)
			goto out;
		srv.ca_pem = ca_pem;
	} else {
		srv.ca_file = o.ca_file;
	}
	if ((r = p11c_est_cacerts(c->ctx, &srv, &cas)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot get the CA certificates of %s over verified TLS", cli_safe(o.server));
		goto out;
	}
	/* the credentials go only over verified TLS, from here on */
	srv.user = o.user;
	srv.password = password;
	if (o.client_uri != NULL) {
		/* the IDevID: in the token of --key (opened first), or in
		 * another one (a handle of its own) */
		if ((r = p11c_open(c->ctx, o.uri)) != P11C_OK) {
			rc = cli_fail(c, r, "token of '%s'", o.uri);
			goto out;
		}
		r = p11c_key_find(c->ctx, o.client_uri, &ckey);
		if (r == P11C_ERR_ARG) {
			if ((r = p11c_ctx_new(&cctx)) == P11C_OK && c->module != NULL)
				r = p11c_ctx_set_module(cctx, c->module);
			if (r == P11C_OK && c->pin_file != NULL)
				r = p11c_ctx_set_pin_file(cctx, c->pin_file);
			if (r == P11C_OK)
				r = p11c_key_find(cctx, o.client_uri, &ckey);
		}
		if (r == P11C_OK)
			r = p11c_cert_get(cctx != NULL ? cctx : c->ctx, ckey, &ccert);
		if (r != P11C_OK) {
			rc = cli_fail(c, r, "the client certificate key '%s' (and its certificate)", o.client_uri);
			goto out;
		}
		srv.client_key = ckey;
		srv.client_cert = ccert;
	}
	/* what the server asks a request to hold (s4.5) */
	if ((r = p11c_est_csrattrs(c->ctx, &srv, &attrs)) != P11C_OK) {
		rc = cli_fail(c, r, "GET /csrattrs at %s", cli_safe(o.server));
		goto out;
	}
	say_attrs(c, &attrs);
	{
		const char *want = type_from_attrs(&attrs), *type = o.type ? o.type : want ? want : "ec:P-256";

		if (o.type != NULL && want != NULL && strcmp(o.type, want) != 0 && !c->quiet)
			fprintf(stderr, "p11cert: %s: the EST server asks for a %s key; --type %s kept\n", c->cmd, want,
				o.type);
		if ((r = key_for(c, o.uri, type, &key, &created, 0)) != P11C_OK) {
			rc = cli_fail(c, r, "token key '%s'", o.uri);
			goto out;
		}
		if (created)
			p11c_test_stall("keygen");
	}
	memset(&rq, 0, sizeof rq);
	rq.subject = subject;
	rq.sans = sans;
	rq.bind = o.bind;
	for (;;) {
		X509_free(cert);
		cert = NULL;
		r = p11c_est_enroll(c->ctx, &srv, key, &rq, &state, &cert, &retry, NULL);
		if (r != P11C_OK) {
			rc = cli_fail(c, r, "enrollment with %s failed; nothing stored", cli_safe(o.server));
			goto out;
		}
		if (state == P11C_EST_ISSUED)
			break;
		if (o.once) {
			fprintf(stderr, "p11cert: %s: the request for '%s' is pending at %s (retry after %ld s); run "
				"again to collect the certificate\n", c->cmd, o.id, cli_safe(o.server), retry);
			rc = EST_EX_PENDING;
			goto out;
		}
		if (time(NULL) - start + retry > o.timeout) {
			fprintf(stderr, "p11cert: %s: the request for '%s' is still pending at %s after %ld s\n", c->cmd,
				o.id, cli_safe(o.server), o.timeout);
			rc = EST_EX_PENDING;
			goto out;
		}
		if (!c->quiet)
			fprintf(stderr, "p11cert: %s: pending at %s; asking again in %ld s\n", c->cmd,
				cli_safe(o.server), retry);
		p11c_test_stall("est-pending");
		sleep((unsigned)retry);
	}
	/* the checks before anything is kept */
	if ((r = p11c_est_check(c->ctx, cert, key, cas)) != P11C_OK) {
		rc = cli_fail(c, r, "certificate refused");
		goto out;
	}
	/* killed from here on, a rerun posts the same request (same key,
	 * subject and extensions) and p11ca answers with the same certificate
	 * (src/ca/proto/est.c); tests/cli/test_est_client_fault.sh */
	p11c_test_stall("received");
	if ((r = p11c_cert_store(c->ctx, key, cert)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot store the certificate in the token");
		goto out;
	}
	p11c_test_stall("stored");
	if ((cas_pem = certs_pem(cas)) == NULL)
		goto out;
	if ((rc = cli_output(c, cacerts_path, cas_pem, strlen(cas_pem), 0644)) != 0)
		goto out;
	{
		char *pem = p11c_x509_pem(cert);

		rc = pem != NULL ? cli_output(c, crt_path, pem, strlen(pem), 0644) : EX_SOFTWARE;
		free(pem);
		if (rc != 0)
			goto out;
	}
	/* the TLS trust of renewals: --ca-file, or the bootstrapped CA */
	if ((abs_cacerts = cli_absolute(cacerts_path)) == NULL ||
	    (abs_ca = cli_absolute(o.ca_file != NULL ? o.ca_file : cacerts_path)) == NULL) {
		rc = EX_SOFTWARE;
		goto out;
	}
	if ((rc = write_record(c, &o, abs_ca, abs_cacerts)) != 0)
		goto out;
	if (!c->quiet)
		fprintf(stderr, "p11cert: %s: '%s' enrolled with %s; certificate stored in token '%s' and %s\n", c->cmd,
			o.id, cli_safe(o.server), cli_safe(p11c_token_label(c->ctx)), crt_path);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	if (password != NULL) {
		OPENSSL_cleanse(password, strlen(password));
		free(password);
	}
	free(idbuf);
	free(lock);
	free(crt_path);
	free(cacerts_path);
	free(ca_pem);
	free(cas_pem);
	free(abs_ca);
	free(abs_cacerts);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	sk_X509_pop_free(cas, X509_free);
	X509_NAME_free(subject);
	X509_free(ca);
	X509_free(cert);
	X509_free(ccert);
	p11c_key_free(&key);
	p11c_key_free(&ckey);
	p11c_ctx_free(&cctx);
	return rc;
}
