/* p11cert enroll acme: the CLI around libp11cert's ACME client
 * (include/p11cert/acme.h, docs/acme.md).  This file owns the files (lock,
 * account record, chain, .enroll record) and the challenge plumbing: a
 * built-in http-01 responder, a web root, a dns-01 hook. */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <limits.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/acme.h>

#include "cli.h"
#include "renew.h"
#include "enroll/acme_alpn.h"
#include "testhook.h"

#define ACME_CLI_MAX_CONTACTS 16
#define RESP_MAX_TOKENS 100      /* challenges served at once */
#define RESP_REQ_MAX 2048        /* bytes of one request we read */
#define RESP_READ_MS 2000        /* time a client has to send its request */
#define RESP_MAX_CONNS 2000      /* connections served in one run */

/* --- http-01: built-in responder (RFC 8555 s8.3) ------------------------------ */

struct responder {
	int fd;                   /* listening socket */
	int stop[2];              /* pipe: the main thread says stop */
	pthread_t thread;
	int running, inited;
	pthread_mutex_t mu;
	struct {
		char *token, *keyauth;
	} tok[RESP_MAX_TOKENS];
	size_t ntok;
};

/* "ADDR:PORT" or "[V6]:PORT" -> listening socket, or -1 with err */
static int listen_on(const char *spec, char *err, size_t errlen)
{
	char host[128];
	const char *colon = strrchr(spec, ':');
	struct addrinfo hints, *ai = NULL;
	size_t hl;
	int fd = -1, one = 1, rc;

	if (colon == NULL || colon == spec || colon[1] == '\0' || (size_t)(colon - spec) >= sizeof host) {
		snprintf(err, errlen, "'%s' is not ADDR:PORT", spec);
		return -1;
	}
	hl = (size_t)(colon - spec);
	memcpy(host, spec, hl);
	host[hl] = '\0';
	if (host[0] == '[' && hl > 2 && host[hl - 1] == ']') {
		memmove(host, host + 1, hl - 2);
		host[hl - 2] = '\0';
	}
	memset(&hints, 0, sizeof hints);
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	if ((rc = getaddrinfo(host, colon + 1, &hints, &ai)) != 0) {
		snprintf(err, errlen, "'%s' is not a numeric ADDR:PORT: %s", spec, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
	    bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 16) != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", spec, strerror(errno));
		if (fd >= 0)
			close(fd);
		fd = -1;
	}
	freeaddrinfo(ai);
	return fd;
}

/* One request: "GET /.well-known/acme-challenge/TOKEN HTTP/1.x", read
 * within RESP_READ_MS and RESP_REQ_MAX bytes; the key authorization for a
 * token we serve, 404 for anything else. */
static void serve_one(struct responder *rs, int c)
{
	static const char pfx[] = "GET /.well-known/acme-challenge/";
	char req[RESP_REQ_MAX + 1], resp[1024], *sp;
	const char *body = NULL;
	size_t got = 0, i;
	struct pollfd p = { c, POLLIN, 0 };
	struct timespec t0, t;
	ssize_t n;
	long left;

	clock_gettime(CLOCK_MONOTONIC, &t0);
	while (got < RESP_REQ_MAX) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		left = RESP_READ_MS - ((t.tv_sec - t0.tv_sec) * 1000 + (t.tv_nsec - t0.tv_nsec) / 1000000);
		if (left <= 0 || poll(&p, 1, (int)left) <= 0)
			return;
		n = read(c, req + got, RESP_REQ_MAX - got);
		if (n <= 0)
			return;
		got += (size_t)n;
		req[got] = '\0';
		if (strstr(req, "\r\n\r\n") != NULL || strstr(req, "\n\n") != NULL)
			break;
	}
	req[got] = '\0';
	if (strncmp(req, pfx, sizeof pfx - 1) == 0 && (sp = strchr(req + sizeof pfx - 1, ' ')) != NULL) {
		*sp = '\0';
		pthread_mutex_lock(&rs->mu);
		for (i = 0; i < rs->ntok; i++)
			if (rs->tok[i].token != NULL && strcmp(rs->tok[i].token, req + sizeof pfx - 1) == 0) {
				snprintf(resp, sizeof resp,
					 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %zu\r\n"
					 "Connection: close\r\n\r\n%s",
					 strlen(rs->tok[i].keyauth), rs->tok[i].keyauth);
				body = resp;
				break;
			}
		pthread_mutex_unlock(&rs->mu);
	}
	if (body == NULL)
		body = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
	(void)!write(c, body, strlen(body));
}

static void *responder_main(void *arg)
{
	struct responder *rs = arg;
	struct pollfd p[2];
	unsigned conns = 0;
	int c;

	p[0].fd = rs->fd;
	p[0].events = POLLIN;
	p[1].fd = rs->stop[0];
	p[1].events = POLLIN;
	while (conns < RESP_MAX_CONNS) {
		if (poll(p, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (p[1].revents)
			break;
		if (!(p[0].revents & POLLIN))
			continue;
		c = accept4(rs->fd, NULL, NULL, SOCK_CLOEXEC);
		if (c < 0)
			continue;
		conns++;
		serve_one(rs, c);
		close(c);
	}
	return NULL;
}

static int responder_start(struct responder *rs, const char *spec, char *err, size_t errlen)
{
	memset(rs, 0, sizeof *rs);
	rs->stop[0] = rs->stop[1] = -1;
	pthread_mutex_init(&rs->mu, NULL);
	rs->inited = 1;
	if ((rs->fd = listen_on(spec, err, errlen)) < 0)
		return -1;
	if (pipe2(rs->stop, O_CLOEXEC) != 0 || pthread_create(&rs->thread, NULL, responder_main, rs) != 0) {
		snprintf(err, errlen, "cannot start the http-01 responder: %s", strerror(errno));
		return -1;
	}
	rs->running = 1;
	return 0;
}

static void responder_stop(struct responder *rs)
{
	size_t i;

	if (rs->running) {
		(void)!write(rs->stop[1], "x", 1);
		pthread_join(rs->thread, NULL);
	}
	if (rs->fd >= 0)
		close(rs->fd);
	if (rs->stop[0] >= 0)
		close(rs->stop[0]);
	if (rs->stop[1] >= 0)
		close(rs->stop[1]);
	for (i = 0; i < rs->ntok; i++) {
		free(rs->tok[i].token);
		free(rs->tok[i].keyauth);
	}
	if (rs->inited)
		pthread_mutex_destroy(&rs->mu);
	memset(rs, 0, sizeof *rs);
	rs->fd = rs->stop[0] = rs->stop[1] = -1;
}

/* --- the challenger ------------------------------------------------------------------ */

struct chal {
	struct cli *c;
	const char *type;
	struct responder *rs;   /* http-01 built-in */
	p11c_alpn_responder *alpn; /* tls-alpn-01 built-in (enroll/acme_alpn.c) */
	const char *webroot;    /* http-01 files */
	const char *dns_hook;   /* dns-01 */
};

static char *webroot_path(const char *root, const char *token)
{
	char *p = NULL;

	if (asprintf(&p, "%s/.well-known/acme-challenge/%s", root, token) < 0)
		return NULL;
	return p;
}

static int mkdir_if_missing(const char *path)
{
	return mkdir(path, 0755) == 0 || errno == EEXIST ? 0 : -1;
}

/* dns-01: HOOK add|remove with the record in the environment (no secret:
 * cli_run_hook drops P11CERT_PIN and P11CERT_CA_TOKEN) */
static int dns_hook(struct chal *ch, const char *verb, const char *id, const char *keyauth, char *err, size_t errlen)
{
	char value[44], *name = NULL, *cmd = NULL;
	int rc = -1, st;

	if (p11c_acme_dns01_value(keyauth, value) != P11C_OK)
		goto out;
	/* RFC 8555 s8.4; a wildcard's record is its base name's */
	if (asprintf(&name, "_acme-challenge.%s", strncmp(id, "*.", 2) == 0 ? id + 2 : id) < 0 ||
	    asprintf(&cmd, "%s %s", ch->dns_hook, verb) < 0) {
		name = cmd = NULL;
		goto out;
	}
	if (setenv("ACME_RECORD_NAME", name, 1) != 0 || setenv("ACME_RECORD_VALUE", value, 1) != 0 ||
	    setenv("ACME_IDENTIFIER", id, 1) != 0)
		goto out;
	st = cli_run_hook(cmd);
	if (st != 0) {
		snprintf(err, errlen, "--dns-hook '%s' %s %s", ch->dns_hook, verb,
			 st < 0 ? "could not run" : st == 128 ? "was killed by a signal" : "failed");
		if (st > 0 && st != 128)
			snprintf(err + strlen(err), errlen - strlen(err), " (exit %d)", st);
		goto out;
	}
	rc = 0;
out:
	unsetenv("ACME_RECORD_NAME");
	unsetenv("ACME_RECORD_VALUE");
	unsetenv("ACME_IDENTIFIER");
	free(name);
	free(cmd);
	return rc;
}

static int present(void *ud, const char *type, const char *id, const char *token, const char *keyauth, char *err,
		   size_t errlen)
{
	struct chal *ch = ud;
	char *p = NULL, *d = NULL;
	int rc = -1;

	if (strcmp(type, "dns-01") == 0) {
		rc = dns_hook(ch, "add", id, keyauth, err, errlen);
		if (rc == 0)
			p11c_test_stall("acme-presented");
		return rc;
	}
	if (strcmp(type, "tls-alpn-01") == 0 && ch->alpn != NULL) {
		/* RFC 8737 s3: a certificate for the identifier carrying
		 * SHA-256(keyauth), on ALPN acme-tls/1 */
		if (p11c_alpn_responder_add(ch->alpn, id, keyauth) != P11C_OK) {
			snprintf(err, errlen, "the tls-alpn-01 responder cannot answer for '%s'", id);
			return -1;
		}
		p11c_test_stall("acme-presented");
		return 0;
	}
	if (strcmp(type, "http-01") != 0) {
		snprintf(err, errlen, "%s is not supported by this build", type);
		return -1;
	}
	if (ch->rs != NULL) {
		struct responder *rs = ch->rs;

		pthread_mutex_lock(&rs->mu);
		if (rs->ntok < RESP_MAX_TOKENS && (rs->tok[rs->ntok].token = strdup(token)) != NULL &&
		    (rs->tok[rs->ntok].keyauth = strdup(keyauth)) != NULL) {
			rs->ntok++;
			rc = 0;
		} else {
			snprintf(err, errlen, "too many challenges for the responder");
		}
		pthread_mutex_unlock(&rs->mu);
		if (rc == 0)
			p11c_test_stall("acme-presented");
		return rc;
	}
	/* web root: DIR/.well-known/acme-challenge/TOKEN, written atomically */
	if (asprintf(&d, "%s/.well-known", ch->webroot) < 0) {
		d = NULL;
		goto out;
	}
	if (mkdir_if_missing(d) != 0)
		goto fail;
	free(d);
	if (asprintf(&d, "%s/.well-known/acme-challenge", ch->webroot) < 0) {
		d = NULL;
		goto out;
	}
	if (mkdir_if_missing(d) != 0)
		goto fail;
	if ((p = webroot_path(ch->webroot, token)) == NULL)
		goto out;
	if (p11c_file_write_atomic(p, keyauth, strlen(keyauth), 0644) != P11C_OK)
		goto fail;
	rc = 0;
	p11c_test_stall("acme-presented");
	goto out;
fail:
	snprintf(err, errlen, "cannot write in --webroot '%s': %s", ch->webroot, strerror(errno));
out:
	free(p);
	free(d);
	return rc;
}

static void cleanup(void *ud, const char *type, const char *id, const char *token, const char *keyauth)
{
	struct chal *ch = ud;
	char err[256];
	char *p;

	if (strcmp(type, "dns-01") == 0) {
		if (dns_hook(ch, "remove", id, keyauth, err, sizeof err) != 0)
			fprintf(stderr, "p11cert: %s: %s\n", ch->c->cmd, err);
		return;
	}
	if (ch->rs != NULL || ch->alpn != NULL)
		return; /* the responder keeps answering until the run ends:
			 * pebble validates more than once (docs/acme.md) */
	if (ch->webroot != NULL && (p = webroot_path(ch->webroot, token)) != NULL) {
		(void)unlink(p);
		free(p);
	}
}

/* --- records ------------------------------------------------------------------------ */



/* Remove the temp files of LABEL's records that a killed run left in DIR
 * (p11c_file_write_atomic's NAME.tmp.XXXXXX); we hold LABEL's lock. */
static void remove_stale_temps(const char *dir, const char *label)
{
	static const char *const sfx[] = { ".crt", ".chain.pem", ".enroll", ".acme-account",
					   ".chain-alt1.pem", ".chain-alt2.pem", ".chain-alt3.pem",
					   ".rekey.chain.pem", ".ari" };
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t k;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		for (k = 0; k < sizeof sfx / sizeof sfx[0]; k++)
			if (cli_temp_of(e->d_name, label, sfx[k])) {
				(void)unlinkat(dirfd(d), e->d_name, 0);
				break;
			}
	closedir(d);
}

/* The account URL recorded for this server and account key, or NULL */
static char *account_read(struct cli *c, const char *path, const char *server, const char *acct_uri)
{
	unsigned char *b = NULL;
	size_t bl = 0;
	json_t *j = NULL;
	char *url = NULL;
	struct stat sb;

	if (lstat(path, &sb) != 0 || cli_state_read(c, path, 16384, &b, &bl) != 0)
		goto out;
	if ((j = json_loadb((const char *)b, bl, JSON_REJECT_DUPLICATES, NULL)) != NULL &&
	    json_string_value(json_object_get(j, "server")) != NULL &&
	    strcmp(json_string_value(json_object_get(j, "server")), server) == 0 &&
	    json_string_value(json_object_get(j, "account_key")) != NULL &&
	    strcmp(json_string_value(json_object_get(j, "account_key")), acct_uri) == 0 &&
	    json_string_value(json_object_get(j, "url")) != NULL)
		url = strdup(json_string_value(json_object_get(j, "url")));
out:
	json_decref(j);
	free(b);
	return url;
}

static int json_write(struct cli *c, const char *path, json_t *j, unsigned mode)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
	int rc = EX_SOFTWARE;

	if (s != NULL) {
		size_t n = strlen(s);

		/* one trailing newline, as the other records */
		char *t = realloc(s, n + 2);

		if (t != NULL) {
			s = t;
			s[n] = '\n';
			s[n + 1] = '\0';
			rc = cli_output(c, path, s, n + 1, mode);
		}
	}
	free(s);
	return rc;
}

/* The chain a stopped rekey kept for the new key (DIR/LABEL.rekey.chain.pem,
 * written by us in the state folder): when its leaf is nkey's and valid
 * now, the chain (caller frees), else NULL */
static char *rekey_chain_read(struct cli *c, const char *path, p11c_key *nkey)
{
	unsigned char *b = NULL;
	size_t bl = 0;
	X509 *leaf = NULL;
	char *out = NULL;
	struct stat sb;

	if (lstat(path, &sb) == 0 && cli_state_read(c, path, 64 * 1024, &b, &bl) == 0 &&
	    p11c_x509_parse(b, bl, &leaf) == P11C_OK && p11c_cert_matches(leaf, p11c_key_public(nkey)) &&
	    X509_cmp_time(X509_get0_notAfter(leaf), NULL) > 0 && (out = malloc(bl + 1)) != NULL) {
		memcpy(out, b, bl);
		out[bl] = '\0';
	}
	ERR_clear_error();
	X509_free(leaf);
	free(b);
	return out;
}

/* The EAB MAC key from FILE (base64url, as CAs hand it out): never argv,
 * wiped after use */
static int set_eab(struct cli *c, p11c_acme *a, const char *kid, const char *file)
{
	unsigned char *b = NULL, *key = NULL;
	size_t bl = 0, kl = 0;
	int rc = 0;

	if (p11c_file_read(file, 4096, &b, &bl) != P11C_OK) {
		fprintf(stderr, "p11cert: %s: cannot read --eab-hmac-file '%s': %s\n", c->cmd, file, strerror(errno));
		return EX_NOINPUT;
	}
	if (p11c_acme_b64url_decode((const char *)b, bl, &key, &kl) != P11C_OK || kl < 16) {
		fprintf(stderr, "p11cert: %s: --eab-hmac-file '%s' does not hold a base64url MAC key of at least 16 "
			"bytes\n", c->cmd, file);
		rc = EX_DATAERR;
	} else if (p11c_acme_set_eab(a, kid, key, kl) != P11C_OK) {
		rc = EX_SOFTWARE;
	}
	if (b != NULL)
		OPENSSL_cleanse(b, bl);
	if (key != NULL)
		OPENSSL_cleanse(key, kl);
	free(b);
	free(key);
	return rc;
}

static const char acme_help[] =
	"usage: p11cert enroll acme --server DIRECTORY_URL --key URI -d NAME [-d NAME]...\n"
	"                           [--account-key URI] [--contact URI]... [--agree-tos]\n"
	"                           [--challenge http-01|dns-01|tls-alpn-01]\n"
	"                           [--http-listen ADDR:PORT | --webroot DIR] [--dns-hook CMD]\n"
	"                           [--tls-listen ADDR:PORT] [--dir DIR] [--cacert FILE]\n"
	"                           [--type TYPE] [--account-type TYPE] [--timeout SECONDS]\n"
	"                           [--eab-kid KID --eab-hmac-file FILE]\n"
	"\n"
	"Get a certificate from an ACME CA (RFC 8555) for the token key, with the ACME\n"
	"account key in the token too.  Both keys are generated when missing (ec:P-256\n"
	"unless --type / --account-type); the account key defaults to the object\n"
	"'<key label>-acme-account' on the same token.  NAME: a DNS name or an IP\n"
	"address (RFC 8738).  The certificate is stored in the token next to its key.\n"
	"\n"
	"  --server URL        the CA's ACME directory (https)\n"
	"  --cacert FILE       trust anchors for the CA's HTTPS (default: system store)\n"
	"  --challenge TYPE    http-01 (default), dns-01 or tls-alpn-01\n"
	"  --http-listen A:P   http-01: answer on ADDR:PORT with a built-in responder\n"
	"  --webroot DIR       http-01: write DIR/.well-known/acme-challenge/TOKEN\n"
	"  --tls-listen A:P    tls-alpn-01: answer on ADDR:PORT (RFC 8737: port 443\n"
	"                      as the CA sees it) with a built-in responder\n"
	"  --dns-hook CMD      dns-01: run 'CMD add' and 'CMD remove' with\n"
	"                      ACME_RECORD_NAME, ACME_RECORD_VALUE, ACME_IDENTIFIER set\n"
	"  --contact URI       account contact (mailto:...), repeatable\n"
	"  --agree-tos         agree to the CA's terms of service (new accounts)\n"
	"  --eab-kid KID       External Account Binding key identifier (new accounts)\n"
	"  --eab-hmac-file F   file holding the EAB MAC key (base64url), never argv\n"
	"  --dir DIR           state folder (default .): LABEL.lock, LABEL.acme-account\n"
	"                      (account URL, 0600), LABEL.crt, LABEL.chain.pem,\n"
	"                      LABEL.chain-altN.pem (alternate chains), LABEL.enroll\n"
	"  --timeout S         bound on the waits of one order (default 300)\n";

int cmd_enroll_acme(struct cli *c, int argc, char **argv)
{
	return acme_enroll_run(c, argc, argv, NULL);
}

int acme_enroll_run(struct cli *c, int argc, char **argv, const struct acme_renew_opts *ro)
{
	static const struct option opts[] = {
		{ "server", required_argument, NULL, 's' },      { "key", required_argument, NULL, 'k' },
		{ "account-key", required_argument, NULL, 'a' }, { "domain", required_argument, NULL, 'd' },
		{ "contact", required_argument, NULL, 'm' },     { "agree-tos", no_argument, NULL, 'A' },
		{ "challenge", required_argument, NULL, 'c' },   { "http-listen", required_argument, NULL, 'l' },
		{ "webroot", required_argument, NULL, 'w' },     { "dns-hook", required_argument, NULL, 'H' },
		{ "dir", required_argument, NULL, 'D' },         { "cacert", required_argument, NULL, 'C' },
		{ "type", required_argument, NULL, 't' },        { "account-type", required_argument, NULL, 'T' },
		{ "timeout", required_argument, NULL, 'W' },     { "eab-kid", required_argument, NULL, 'e' },
		{ "eab-hmac-file", required_argument, NULL, 'E' }, { "tls-listen", required_argument, NULL, 'L' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server = NULL, *uri = NULL, *acct_uri = NULL, *challenge = "http-01", *listen_spec = NULL;
	const char *webroot = NULL, *hook = NULL, *dir = ".", *cacert = NULL, *type = "ec:P-256";
	const char *eab_kid = NULL, *eab_file = NULL, *tls_spec = NULL;
	const char *acct_type = "ec:P-256", *names[ACME_CLI_MAX_NAMES], *contacts[ACME_CLI_MAX_CONTACTS];
	size_t nnames = 0, ncontacts = 0, i;
	long timeout = 300;
	int agree = 0, ch, rc = EX_FAIL, fd = -1, created = 0, acct_created = 0;
	char *acct_label = NULL, *acct_uri_own = NULL, *lock = NULL, *acct_path = NULL, *crt_path = NULL;
	char *chain_path = NULL, *enroll_path = NULL, *recorded = NULL, *acct_url = NULL, *chain = NULL;
	char *leaf_pem = NULL, *abs_webroot = NULL, *abs_cacert = NULL, err[300];
	char *label = NULL, *rk_chain_path = NULL;
	p11c_key *key = NULL, *acct = NULL, *nkey = NULL, *order_key;
	int resumed = 0;
	p11c_acme *a = NULL;
	p11c_acme_server srv;
	p11c_acme_challenger chr;
	struct responder rs;
	struct chal chd;
	p11c_key_type kt;
	json_t *js = NULL, *jn = NULL;
	X509 *leaf = NULL;
	p11c_result r;

	memset(&rs, 0, sizeof rs);
	rs.fd = rs.stop[0] = rs.stop[1] = -1;
	memset(&chd, 0, sizeof chd); /* chd.alpn is stopped at out */
	if (cli_help(argc, argv, acme_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "d:", opts, NULL)) != -1) {
		switch (ch) {
		case 's': server = optarg; break;
		case 'k': uri = optarg; break;
		case 'a': acct_uri = optarg; break;
		case 'd':
			if (nnames == ACME_CLI_MAX_NAMES)
				return cli_usage(c, "at most %d names (-d)", ACME_CLI_MAX_NAMES);
			if (*optarg == '\0' || strlen(optarg) > 253 || strpbrk(optarg, " /\\\"") != NULL)
				return cli_usage(c, "bad name -d '%s'", optarg);
			names[nnames++] = optarg;
			break;
		case 'm':
			if (ncontacts == ACME_CLI_MAX_CONTACTS)
				return cli_usage(c, "at most %d --contact", ACME_CLI_MAX_CONTACTS);
			contacts[ncontacts++] = optarg;
			break;
		case 'A': agree = 1; break;
		case 'c': challenge = optarg; break;
		case 'l': listen_spec = optarg; break;
		case 'L': tls_spec = optarg; break;
		case 'w': webroot = optarg; break;
		case 'H': hook = optarg; break;
		case 'D': dir = optarg; break;
		case 'C': cacert = optarg; break;
		case 't': type = optarg; break;
		case 'T': acct_type = optarg; break;
		case 'e': eab_kid = optarg; break;
		case 'E': eab_file = optarg; break;
		case 'W':
			if (cli_num(c, "--timeout", optarg, 1, 86400, &timeout) != 0)
				return EX_USAGE;
			break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if ((eab_kid == NULL) != (eab_file == NULL))
		return cli_usage(c, "--eab-kid and --eab-hmac-file go together");
	if (server == NULL || strncmp(server, "https://", 8) != 0)
		return cli_usage(c, "--server https://.../directory is required");
	if (uri == NULL)
		return cli_usage(c, "--key URI is required");
	if (nnames == 0)
		return cli_usage(c, "at least one -d NAME is required");
	if (p11c_key_type_parse(type, &kt) != P11C_OK || p11c_key_type_parse(acct_type, &kt) != P11C_OK)
		return cli_usage(c, "unknown key type '%s'", p11c_key_type_parse(type, &kt) != P11C_OK ? type : acct_type);
	if (strcmp(challenge, "http-01") == 0) {
		if ((listen_spec == NULL) == (webroot == NULL))
			return cli_usage(c, "http-01 needs exactly one of --http-listen ADDR:PORT and --webroot DIR");
		if (hook != NULL)
			return cli_usage(c, "--dns-hook goes with --challenge dns-01");
		if (tls_spec != NULL)
			return cli_usage(c, "--tls-listen goes with --challenge tls-alpn-01");
	} else if (strcmp(challenge, "dns-01") == 0) {
		if (hook == NULL)
			return cli_usage(c, "dns-01 needs --dns-hook CMD");
		if (listen_spec != NULL || webroot != NULL)
			return cli_usage(c, "--http-listen and --webroot go with --challenge http-01");
		if (tls_spec != NULL)
			return cli_usage(c, "--tls-listen goes with --challenge tls-alpn-01");
	} else if (strcmp(challenge, "tls-alpn-01") == 0) {
		if (tls_spec == NULL)
			return cli_usage(c, "tls-alpn-01 needs --tls-listen ADDR:PORT");
		if (listen_spec != NULL || webroot != NULL || hook != NULL)
			return cli_usage(c, "--http-listen, --webroot and --dns-hook do not go with tls-alpn-01");
	} else {
		return cli_usage(c, "--challenge must be http-01, dns-01 or tls-alpn-01, not '%s'", challenge);
	}
	if (cli_curl_ready(c) != 0) /* before the token and the files */
		return EX_UNAVAILABLE;
	if ((rc = cli_state_dir(dir)) != 0)
		return rc;
	if ((r = cli_ctx(c)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	/* renew: the record's lock before the key is looked up */
	if (ro != NULL) {
		if (!cli_file_name_ok(ro->label, 200)) {
			rc = cli_usage(c, "the record's client_id '%s' cannot name files in DIR", cli_safe(ro->label));
			goto out;
		}
		if ((lock = cli_path_in(dir, ro->label, ".lock")) == NULL) {
			rc = EX_SOFTWARE;
			goto out;
		}
		if ((rc = cli_lock_run(c, lock, &fd)) != 0)
			goto out;
	}
	/* the certificate key: reused, or made in the token */
	r = p11c_key_find(c->ctx, uri, &key);
	if (r == P11C_ERR_NOT_FOUND) {
		(void)p11c_key_type_parse(type, &kt);
		r = p11c_keygen(c->ctx, uri, kt, 0, &key);
		created = r == P11C_OK;
	}
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "token key '%s'", uri);
		goto out;
	}
	if ((label = strdup(p11c_key_label(key))) == NULL) {
		rc = EX_SOFTWARE;
		goto out;
	}
	if (!cli_file_name_ok(label, 200)) {
		rc = cli_usage(c, "the key's label '%s' cannot name files in DIR (no '/', not starting with '.')",
			       cli_safe(label));
		goto out;
	}
	if (ro != NULL && strcmp(label, ro->label) != 0) {
		fprintf(stderr, "p11cert: %s: the record's client_id '%s' is not the label of its key '%s'\n", c->cmd,
			cli_safe(ro->label), cli_safe(label));
		rc = EX_DATAERR;
		goto out;
	}
	rc = EX_SOFTWARE;
	if ((lock == NULL && (lock = cli_path_in(dir, label, ".lock")) == NULL) ||
	    (acct_path = cli_path_in(dir, label, ".acme-account")) == NULL ||
	    (crt_path = cli_path_in(dir, label, ".crt")) == NULL || (chain_path = cli_path_in(dir, label, ".chain.pem")) == NULL ||
	    (enroll_path = cli_path_in(dir, label, ".enroll")) == NULL ||
	    (rk_chain_path = cli_path_in(dir, label, ".rekey.chain.pem")) == NULL)
		goto out;
	if (fd < 0 && (rc = cli_lock_run(c, lock, &fd)) != 0)
		goto out;
	remove_stale_temps(dir, label);
	if ((rc = acme_keychange_pending(c, dir, label)) != 0)
		goto out;
	if (created && !c->quiet)
		fprintf(stderr, "p11cert: %s: generated %s key '%s' on token '%s'\n", c->cmd, type, cli_safe(label),
			cli_safe(p11c_token_label(c->ctx)));
	/* the account key: given, or LABEL-acme-account on the same token */
	if (acct_uri == NULL) {
		if (asprintf(&acct_label, "%s-acme-account", label) < 0 ||
		    (acct_uri_own = p11c_label_uri(c->ctx, acct_label)) == NULL) {
			acct_label = NULL;
			goto out;
		}
		acct_uri = acct_uri_own;
	}
	r = p11c_key_find(c->ctx, acct_uri, &acct);
	if (r == P11C_ERR_NOT_FOUND) {
		(void)p11c_key_type_parse(acct_type, &kt);
		r = p11c_keygen(c->ctx, acct_uri, kt, 0, &acct);
		if (r == P11C_OK && !c->quiet)
			fprintf(stderr, "p11cert: %s: generated %s ACME account key '%s' on token '%s'\n", c->cmd,
				acct_type, cli_safe(p11c_key_label(acct)), cli_safe(p11c_token_label(c->ctx)));
	}
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "ACME account key '%s'", acct_uri);
		goto out;
	}
	/* the challenge plumbing, before the CA is asked anything */
	chd.c = c;
	chd.type = challenge;
	chd.webroot = webroot;
	chd.dns_hook = hook;
	if (listen_spec != NULL) {
		if (responder_start(&rs, listen_spec, err, sizeof err) != 0) {
			fprintf(stderr, "p11cert: %s: --http-listen: %s\n", c->cmd, err);
			rc = EX_UNAVAILABLE;
			goto out;
		}
		chd.rs = &rs;
	}
	if (tls_spec != NULL &&
	    p11c_alpn_responder_start(tls_spec, &chd.alpn, err, sizeof err) != P11C_OK) {
		fprintf(stderr, "p11cert: %s: --tls-listen: %s\n", c->cmd, err);
		rc = EX_UNAVAILABLE;
		goto out;
	}
	memset(&chr, 0, sizeof chr);
	chr.present = present;
	chr.cleanup = cleanup;
	chr.userdata = &chd;
	memset(&srv, 0, sizeof srv);
	srv.directory_url = server;
	srv.ca_file = cacert;
	srv.max_wait_ms = timeout * 1000;
	if ((r = p11c_acme_new(c->ctx, &srv, &a)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot read the ACME directory (give --cacert if the server's TLS certificate "
				    "is not trusted by the system)");
		goto out;
	}
	if (eab_file != NULL && (rc = set_eab(c, a, eab_kid, eab_file)) != 0)
		goto out;
	recorded = account_read(c, acct_path, server, acct_uri);
	r = p11c_acme_account(a, acct, contacts, ncontacts, agree, 1, &acct_url, &acct_created);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "ACME account of key '%s'%s", cli_safe(p11c_key_label(acct)),
			      r != P11C_ERR_ARG                       ? ""
			      : p11c_acme_eab_required(a) && eab_file == NULL ? " (give --eab-kid and --eab-hmac-file)"
			      : p11c_acme_terms(a) != NULL                  ? " (read them; then add --agree-tos)"
									    : "");
		goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: %s: %s ACME account %s\n", c->cmd, acct_created ? "created" : "using",
			cli_safe(acct_url));
	if (recorded != NULL && strcmp(recorded, acct_url) != 0 && !c->quiet)
		fprintf(stderr, "p11cert: %s: the CA names the account %s, not %s as recorded in %s; record updated\n",
			c->cmd, cli_safe(acct_url), cli_safe(recorded), acct_path);
	if (recorded == NULL || strcmp(recorded, acct_url) != 0) {
		js = json_pack("{s:s, s:s, s:s}", "server", server, "account_key", acct_uri, "url", acct_url);
		if ((rc = json_write(c, acct_path, js, 0600)) != 0)
			goto out;
		json_decref(js);
		js = NULL;
	}
	order_key = key;
	if (ro != NULL) {
		X509 *cur = NULL;
		char *cid = NULL;

		/* RFC 9773 s5: the new order replaces the current certificate */
		if (p11c_acme_ari_supported(a) && p11c_cert_get(c->ctx, key, &cur) == P11C_OK &&
		    p11c_acme_cert_id(cur, &cid) == P11C_OK && p11c_acme_set_replaces(a, cid) == P11C_OK && !c->quiet)
			fprintf(stderr, "p11cert: %s: the order replaces certificate %s (RFC 9773)\n", c->cmd, cid);
		ERR_clear_error();
		X509_free(cur);
		free(cid);
		if (ro->rekey) {
			/* the new key (rekey.c); a stopped rekey whose certificate
			 * came goes on with it */
			if ((rc = cli_rekey_key(c, key, &nkey, &resumed)) != 0)
				goto out;
			order_key = nkey;
			if (resumed && (chain = rekey_chain_read(c, rk_chain_path, nkey)) != NULL && !c->quiet)
				fprintf(stderr, "p11cert: %s: the new key's certificate came in an earlier run\n", c->cmd);
		}
	}
	if (chain == NULL) {
		r = p11c_acme_order(a, order_key, names, nnames, challenge, &chr, &chain);
		if (r != P11C_OK) {
			rc = cli_fail(c, r, "no certificate for %s%s; the token key and its certificate are unchanged",
				      names[0], nnames > 1 ? " and the other names" : "");
			if (r == P11C_ERR_PENDING)
				rc = EX_UNAVAILABLE; /* still waiting after --timeout: 69, as enroll caramel */
			goto out;
		}
		/* a rekey keeps the new key's chain until the old key is gone: a
		 * rerun after a stop finishes with it */
		if (nkey != NULL && (rc = cli_output(c, rk_chain_path, chain, strlen(chain), 0644)) != 0)
			goto out;
	}
	rc = EX_PROTOCOL_;
	if (p11c_x509_parse((const unsigned char *)chain, strlen(chain), &leaf) != P11C_OK) {
		fprintf(stderr, "p11cert: %s: the CA's chain does not start with a PEM certificate\n", c->cmd);
		goto out;
	}
	p11c_test_stall("received");
	r = p11c_cert_store(c->ctx, order_key, leaf);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "cannot store the certificate in the token");
		goto out;
	}
	p11c_test_stall("stored");
	/* the new identity is complete: the old key goes, the new one takes
	 * its label (rekey.c) */
	if (nkey != NULL && (rc = cli_rekey_finish(c, &key, &nkey, label)) != 0)
		goto out;
	rc = EX_SOFTWARE;
	if ((leaf_pem = p11c_x509_pem(leaf)) == NULL)
		goto out;
	if ((rc = cli_output(c, crt_path, leaf_pem, strlen(leaf_pem), 0644)) != 0 ||
	    (rc = cli_output(c, chain_path, chain, strlen(chain), 0644)) != 0)
		goto out;
	/* the alternate chains (RFC 8555 s7.4.2): LABEL.chain-altN.pem, N from
	 * 1; those of an earlier run beyond today's count go */
	{
		const char *const *alts;
		size_t nalt = 0, k;
		char sfx[32], *ap;

		alts = p11c_acme_alternates(a, &nalt);
		for (k = 0; k < 3; k++) {
			snprintf(sfx, sizeof sfx, ".chain-alt%zu.pem", k + 1);
			if ((ap = cli_path_in(dir, label, sfx)) == NULL) {
				rc = EX_SOFTWARE;
				goto out;
			}
			if (k < nalt)
				rc = cli_output(c, ap, alts[k], strlen(alts[k]), 0644);
			else
				(void)unlink(ap);
			free(ap);
			if (rc != 0)
				goto out;
		}
	}
	rc = EX_SOFTWARE;
	if ((jn = json_array()) == NULL)
		goto out;
	for (i = 0; i < nnames; i++)
		if (json_array_append_new(jn, json_string(names[i])) != 0)
			goto out;
	/* paths absolute: renew runs from any folder */
	if ((webroot != NULL && (abs_webroot = realpath(webroot, NULL)) == NULL) ||
	    (cacert != NULL && (abs_cacert = realpath(cacert, NULL)) == NULL)) {
		fprintf(stderr, "p11cert: %s: cannot resolve '%s': %s\n", c->cmd,
			webroot != NULL && abs_webroot == NULL ? webroot : cacert, strerror(errno));
		rc = EX_NOINPUT;
		goto out;
	}
	js = json_pack("{s:s, s:s, s:s, s:s, s:s, s:O, s:s, s:b, s:s?, s:s?, s:s?, s:s?, s:s?}", "protocol", p11c_proto_acme.name,
		       "server", server, "client_id", label, "key", uri, "account_key", acct_uri, "names", jn,
		       "challenge", challenge, "agree_tos", agree, "http_listen", listen_spec, "tls_listen", tls_spec, "webroot", abs_webroot,
		       "dns_hook", hook, "ca_file", abs_cacert);
	if ((rc = json_write(c, enroll_path, js, 0644)) != 0)
		goto out;
	if (rk_chain_path != NULL)
		(void)unlink(rk_chain_path);
	if (!c->quiet)
		fprintf(stderr, "p11cert: %s: certificate for %s stored in token '%s' next to key '%s'; chain in %s\n",
			c->cmd, names[0], cli_safe(p11c_token_label(c->ctx)), cli_safe(label), chain_path);
	rc = 0;
out:
	responder_stop(&rs);
	p11c_alpn_responder_stop(chd.alpn);
	if (fd >= 0)
		close(fd);
	json_decref(js);
	json_decref(jn);
	X509_free(leaf);
	free(leaf_pem);
	free(abs_webroot);
	free(abs_cacert);
	free(chain);
	free(acct_url);
	free(recorded);
	free(acct_label);
	free(acct_uri_own);
	free(lock);
	free(acct_path);
	free(crt_path);
	free(chain_path);
	free(enroll_path);
	free(rk_chain_path);
	free(label);
	p11c_acme_free(&a);
	p11c_key_free(&acct);
	p11c_key_free(&nkey);
	p11c_key_free(&key);
	return rc;
}
