/* p11cert enroll caramel | token: the CLI around libp11cert's enrollment
 * clients.  This file owns the files: lock, CSR, certificate, CA, state. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "cli.h"
#include "renew.h"
#include "testhook.h"

/* Caramel embedded-mode exit codes, as documented by its authors. */
#define CARAMEL_EX_LOCKED 1
#define CARAMEL_EX_PENDING 69
#define CARAMEL_EX_ERROR 127




/* Remove the temp files a run killed in the middle of a write left in DIR.
 * ID's own (.csr, .crt, .enroll) are ours: we hold ID's lock.  SERVER.cacert
 * is shared by every client id of DIR, so its temp files go only when an
 * hour old (a write takes milliseconds). */
static void remove_stale_temps(const char *dir, const char *id, const char *server)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat sb;
	time_t now = time(NULL);

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL) {
		const char *n = e->d_name;

		if (cli_temp_of(n, id, ".csr") || cli_temp_of(n, id, ".crt") || cli_temp_of(n, id, ".enroll") ||
		    (cli_temp_of(n, server, ".cacert") && fstatat(dirfd(d), n, &sb, AT_SYMLINK_NOFOLLOW) == 0 &&
		     S_ISREG(sb.st_mode) && sb.st_mtime < now - 3600))
			(void)unlinkat(dirfd(d), n, 0);
	}
	closedir(d);
}

static X509 *read_cert_file(const char *path)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	X509 *x = NULL;

	if (p11c_file_read(path, INPUT_MAX, &buf, &len) == P11C_OK)
		(void)p11c_x509_parse(buf, len, &x);
	free(buf);
	ERR_clear_error();
	return x;
}

static int write_x509(struct cli *c, const char *path, X509 *x, unsigned mode)
{
	char *pem = p11c_x509_pem(x);
	int rc;

	if (pem == NULL)
		return EX_SOFTWARE;
	rc = cli_output(c, path, pem, strlen(pem), mode);
	free(pem);
	return rc;
}

/* The key named by URI, generated when missing.  own_uri: URI is our
 * "pkcs11:object=LABEL", so the failed lookup has just searched exactly what
 * keygen's label check would search again: skip that second search. */
p11c_result key_for(struct cli *c, const char *uri, const char *type, p11c_key **key, int *created,
			   int own_uri)
{
	p11c_key_type kt;
	p11c_result r;

	*created = 0;
	r = p11c_key_find(c->ctx, uri, key);
	if (r != P11C_ERR_NOT_FOUND)
		return r;
	if (p11c_key_type_parse(type, &kt) != P11C_OK) {
		fprintf(stderr, "p11cert: %s: unknown key type '%s'\n", c->cmd, type);
		return P11C_ERR_ARG;
	}
	r = p11c_keygen(c->ctx, uri, kt, own_uri ? P11C_KEYGEN_FORCE : 0, key);
	if (r == P11C_OK) {
		*created = 1;
		if (!c->quiet)
			fprintf(stderr, "p11cert: generated %s key '%s' on token '%s'\n", p11c_key_type_name(kt),
				cli_safe(p11c_key_label(*key)), cli_safe(p11c_token_label(c->ctx)));
	}
	return r;
}

static int valid_now(X509 *x)
{
	return x != NULL && X509_cmp_time(X509_get0_notBefore(x), NULL) < 0 &&
	       X509_cmp_time(X509_get0_notAfter(x), NULL) > 0;
}

/* Write DATA to PATH atomically unless PATH holds exactly DATA already. */
static int ensure_file(struct cli *c, const char *path, const char *data, size_t len, unsigned mode)
{
	unsigned char *b = NULL;
	size_t bl = 0;
	int same = p11c_file_read(path, len + 1, &b, &bl) == P11C_OK && bl == len && memcmp(b, data, len) == 0;

	free(b);
	return same ? 0 : cli_output(c, path, data, len, mode);
}

/* SERVER.cacert (kept as upstream does) and the record of how we enrolled,
 * for 'p11cert renew'.  Also on the "current" paths: a run killed after
 * storing the certificate and before these files must not leave an
 * identity that renew cannot find. */
static int write_records(struct cli *c, const char *ca_path, X509 *ca, const char *st_path, const char *server,
			 const char *id, const char *uri, const char *ca_file)
{
	char *pem = p11c_x509_pem(ca), *s = NULL;
	json_t *js = json_pack("{s:s, s:s, s:s, s:s, s:s?}", "protocol", p11c_proto_caramel.name, "server", server,
			       "client_id", id, "key", uri, "ca_file", ca_file);
	int rc = EX_SOFTWARE;

	if (pem == NULL || js == NULL || (s = json_dumps(js, JSON_INDENT(2))) == NULL)
		goto out;
	if ((rc = ensure_file(c, ca_path, pem, strlen(pem), 0644)) == 0)
		rc = ensure_file(c, st_path, s, strlen(s), 0644);
out:
	free(pem);
	free(s);
	json_decref(js);
	return rc;
}

static const char caramel_help[] =
	"usage: p11cert enroll caramel SERVER CLIENTID [--key URI] [--dir DIR] [--ca-file FILE]\n"
	"                              [--type TYPE] [--once] [--timeout SECONDS]\n"
	"\n"
	"Enroll the token key with a Caramel CA (https://SERVER).  The key (default\n"
	"pkcs11:object=CLIENTID) is generated when missing (rsa:2048 unless --type).\n"
	"The signed certificate is stored in the token next to the key.\n"
	"\n"
	"  --dir DIR       state folder (default $CARAMEL_CERT_DIR, else the current\n"
	"                  folder): CLIENTID.csr, CLIENTID.crt, SERVER.cacert,\n"
	"                  CLIENTID.lock, CLIENTID.enroll\n"
	"  --ca-file FILE  the CA certificate: HTTPS trust and chain anchor, never\n"
	"                  replaced from the network (default: fetch /root.crt over TLS\n"
	"                  verified by the system trust store)\n"
	"  --once          embedded mode: never wait.  Exit 0 signed or unchanged,\n"
	"                  1 another run holds the lock, 69 pending, 127 other errors\n"
	"  --timeout S     service mode: give up after S seconds (exit 69); default never\n"
	"Service mode exits 75 when another run holds the lock (docs/enroll.md).\n";

int cmd_enroll_caramel(struct cli *c, int argc, char **argv);
int cmd_enroll_caramel(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' }, { "dir", required_argument, NULL, 'd' },
		{ "ca-file", required_argument, NULL, 'c' }, { "type", required_argument, NULL, 't' },
		{ "once", no_argument, NULL, '1' }, { "timeout", required_argument, NULL, 'T' },
		{ NULL, 0, NULL, 0 },
	};
	const char *server, *id, *dir = getenv("CARAMEL_CERT_DIR"), *ca_file = NULL, *type = "rsa:2048";
	char *key_uri = NULL, *lock = NULL, *csr_path = NULL, *crt_path = NULL, *ca_path = NULL, *st_path = NULL;
	char *csr = NULL, *cert_pem = NULL, sha[65], ims[64];
	const char *uri = NULL;
	size_t csr_len = 0;
	long timeout = -1;
	int once = 0, ch, rc = EX_FAIL, fd = -1, created = 0;
	unsigned attempt = 0;
	time_t start = time(NULL);
	p11c_caramel_server srv;
	p11c_caramel_state state;
	p11c_key *key = NULL;
	X509 *ca = NULL, *cert = NULL, *mine = NULL, *file_cert = NULL;
	p11c_result r;

	if (cli_help(argc, argv, caramel_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': uri = optarg; break;
		case 'd': dir = optarg; break;
		case 'c': ca_file = optarg; break;
		case 't': type = optarg; break;
		case '1': once = 1; break;
		case 'T':
			if (cli_num(c, "--timeout", optarg, 0, 31536000, &timeout) != 0)
				return EX_USAGE;
			break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (optind + 2 != argc)
		return cli_usage(c, "SERVER and CLIENTID are required");
	server = argv[optind];
	id = argv[optind + 1];
	if (!cli_file_name_ok(server, 255) || strchr(server, ' ') != NULL)
		return cli_usage(c, "bad SERVER '%s' (host or host:port)", server);
	if (!cli_file_name_ok(id, 255) || strlen(id) > 64)
		return cli_usage(c, "CLIENTID must be 1 to 64 characters, no '/', not starting with '.'");
	if (dir == NULL)
		dir = ".";
/* code is evaluated (and its message printed) in embedded mode too; only
 * the exit code is mapped to 127 there */
#define FAIL(code) do { int fail_rc_ = (code); rc = once ? CARAMEL_EX_ERROR : fail_rc_; goto out; } while (0)
	if (uri == NULL) {
		if (asprintf(&key_uri, "pkcs11:object=%s", id) < 0)
			FAIL(EX_SOFTWARE);
		uri = key_uri;
	}
	if (cli_curl_ready(c) != 0) /* before the token and the files */
		FAIL(EX_UNAVAILABLE);
	lock = cli_path_in(dir, id, ".lock");
	csr_path = cli_path_in(dir, id, ".csr");
	crt_path = cli_path_in(dir, id, ".crt");
	ca_path = cli_path_in(dir, server, ".cacert");
	st_path = cli_path_in(dir, id, ".enroll");
	if (!lock || !csr_path || !crt_path || !ca_path || !st_path)
		FAIL(EX_SOFTWARE);
	fd = cli_lock(lock);
	if (fd == -1) {
		fprintf(stderr, "p11cert: enroll: another run holds the lock %s\n", lock);
		rc = once ? CARAMEL_EX_LOCKED : EX_TEMPFAIL_;
		goto out;
	}
	if (fd == -3)
		FAIL(EX_UNSAFE);
	if (fd < 0) {
		fprintf(stderr, "p11cert: enroll: cannot create the lock file %s: %s\n", lock, strerror(errno));
		FAIL(EX_CANTCREAT);
	}
	remove_stale_temps(dir, id, server);
	memset(&srv, 0, sizeof srv);
	srv.server = server;
	srv.ca_file = ca_file;
	srv.client_id = id;
	if ((r = cli_ctx(c)) != P11C_OK)
		FAIL(cli_fail(c, r, NULL));
	/* the CA: given (embedded), or fetched over verified TLS */
	if (ca_file != NULL) {
		ca = read_cert_file(ca_file);
		if (ca == NULL) {
			fprintf(stderr, "p11cert: enroll: --ca-file '%s' is not a PEM or DER certificate\n", ca_file);
			FAIL(EX_DATAERR);
		}
	} else {
		r = p11c_caramel_fetch_ca(c->ctx, &srv, &ca);
		if (r != P11C_OK) {
			rc = cli_fail(c, r, "cannot fetch the CA certificate (give --ca-file if the server's "
					    "TLS certificate is not trusted by the system)");
			FAIL(rc);
		}
	}
	/* the key: reused, or made in the token */
	r = key_for(c, uri, type, &key, &created, uri == key_uri);
	if (r != P11C_OK)
		FAIL(cli_fail(c, r, "token key '%s'", uri));
	if (created)
		p11c_test_stall("keygen");
	/* the CSR: the one we posted before, if it is still for this key, so
	 * that a restart polls the same request */
	{
		unsigned char *b = NULL;
		size_t bl = 0;
		X509_REQ *old = NULL;

		if (!created && p11c_file_read(csr_path, 4096, &b, &bl) == P11C_OK &&
		    p11c_req_parse(b, bl, &old) == P11C_OK &&
		    EVP_PKEY_eq(X509_REQ_get0_pubkey(old), p11c_key_public(key)) == 1) {
			csr = (char *)b;
			csr_len = bl;
			b = NULL;
		}
		X509_REQ_free(old);
		free(b);
		ERR_clear_error();
	}
	if (csr == NULL) {
		r = p11c_caramel_csr(key, ca, id, &csr, &csr_len);
		if (r != P11C_OK)
			FAIL(cli_fail(c, r, "cannot make the CSR"));
		if ((rc = cli_output(c, csr_path, csr, csr_len, 0644)) != 0)
			FAIL(rc);
	}
	p11c_sha256_hex(csr, csr_len, sha);
	/* a usable certificate for the key: present it (mTLS), and ask only
	 * for a newer one.  A key generated in this run has none: no search */
	if (!created && p11c_cert_get(c->ctx, key, &mine) == P11C_OK &&
	    (!valid_now(mine) || p11c_caramel_check(c->ctx, mine, key, ca, id) != P11C_OK)) {
		X509_free(mine);
		mine = NULL;
	}
	ims[0] = '\0';
	file_cert = read_cert_file(crt_path);
	if (mine != NULL && file_cert != NULL && X509_cmp(mine, file_cert) == 0) {
		struct stat sb, cb;

		/* only for the request that certificate answered: CLIENTID.crt
		 * written after CLIENTID.csr.  For a new request (a new CSR) the
		 * server's certificate may have been made in the same second as
		 * the old file, and If-Modified-Since would get 304 for good. */
		if (stat(crt_path, &sb) == 0 && stat(csr_path, &cb) == 0 &&
		    (sb.st_mtim.tv_sec > cb.st_mtim.tv_sec ||
		     (sb.st_mtim.tv_sec == cb.st_mtim.tv_sec && sb.st_mtim.tv_nsec > cb.st_mtim.tv_nsec))) {
			struct tm tm;

			gmtime_r(&sb.st_mtime, &tm);
			strftime(ims, sizeof ims, "%a, %d %b %Y %H:%M:%S GMT", &tm);
		}
	}
	for (;;) {
		free(cert_pem);
		cert_pem = NULL;
		r = p11c_caramel_poll(c->ctx, &srv, csr, csr_len, key, mine, ims[0] ? ims : NULL, &state, &cert_pem);
		if (r != P11C_OK)
			FAIL(cli_fail(c, r, "request %s", sha));
		if (state == P11C_CARAMEL_REJECTED) {
			/* a key certified by another CA belongs to another
			 * enrollment: this server's answer cannot destroy it */
			if (!cli_rejection_may_destroy(c, key, ca)) {
				fprintf(stderr, "p11cert: enroll: the CA at %s rejected request %s for '%s'; the token "
					"key is kept: its certificate was not issued by this CA\n", server, sha, id);
				FAIL(EX_NOPERM);
			}
			/* start over next time: key, certificate and CSR go */
			r = p11c_key_delete(c->ctx, &key);
			unlink(csr_path);
			fprintf(stderr, "p11cert: enroll: the CA at %s rejected request %s for '%s'; the token key, "
				"its certificate and %s were destroyed so that the next run starts over%s\n",
				server, sha, id, csr_path, r == P11C_OK ? "" : " (destroying the key failed)");
			FAIL(EX_NOPERM);
		}
		if (state == P11C_CARAMEL_UNCHANGED && mine == NULL) {
			/* 304 answers If-Modified-Since, sent only with a valid
			 * certificate in the token: anything else is no success */
			fprintf(stderr, "p11cert: enroll: the CA at %s answered 304 Not Modified for request %s, but "
				"the token holds no valid certificate for '%s' from it\n", server, sha, id);
			FAIL(EX_PROTOCOL_);
		}
		if (state == P11C_CARAMEL_UNCHANGED) {
			if (!c->quiet)
				fprintf(stderr, "p11cert: enroll: the certificate for '%s' is current\n", id);
			if ((rc = write_records(c, ca_path, ca, st_path, server, id, uri, ca_file)) != 0)
				FAIL(rc);
			goto out;
		}
		if (state == P11C_CARAMEL_SIGNED)
			break;
		/* pending */
		if (once) {
			cli_caramel_pending(c, server, sha, id, key);
			rc = CARAMEL_EX_PENDING;
			goto out;
		}
		{
			long ms = p11c_caramel_backoff_ms(attempt++);
			struct timespec ts;

			if (timeout >= 0 && time(NULL) - start + ms / 1000 > timeout) {
				fprintf(stderr, "p11cert: enroll: request %s still pending after %ld s\n", sha, timeout);
				rc = CARAMEL_EX_PENDING;
				goto out;
			}
			if (attempt == 1)
				cli_caramel_warn_upstream(c, server, key);
			if (!c->quiet)
				fprintf(stderr, "p11cert: enroll: waiting for the CA at %s to sign request %s for '%s' "
					"(attempt %u, next in %.1f s)\n", server, sha, id, attempt, (double)ms / 1000);
			ts.tv_sec = ms / 1000;
			ts.tv_nsec = (ms % 1000) * 1000000L;
			p11c_test_stall("poll-wait");
			nanosleep(&ts, NULL);
		}
	}
	if (p11c_x509_parse((const unsigned char *)cert_pem, strlen(cert_pem), &cert) != P11C_OK) {
		fprintf(stderr, "p11cert: enroll: the CA's answer for %s is not a PEM certificate\n", sha);
		FAIL(EX_PROTOCOL_);
	}
	r = p11c_caramel_check(c->ctx, cert, key, ca, id);
	if (r != P11C_OK)
		FAIL(cli_fail(c, r, "certificate refused, nothing stored"));
	if (mine != NULL && X509_cmp(mine, cert) == 0 && file_cert != NULL && X509_cmp(file_cert, cert) == 0) {
		if (!c->quiet)
			fprintf(stderr, "p11cert: enroll: the certificate for '%s' is unchanged\n", id);
		if ((rc = write_records(c, ca_path, ca, st_path, server, id, uri, ca_file)) != 0)
			FAIL(rc);
		goto out;
	}
	p11c_test_stall("received");
	r = p11c_cert_store(c->ctx, key, cert);
	if (r != P11C_OK)
		FAIL(cli_fail(c, r, "cannot store the certificate in the token"));
	p11c_test_stall("stored");
	if ((rc = write_x509(c, crt_path, cert, 0644)) != 0)
		FAIL(rc);
	if ((rc = write_records(c, ca_path, ca, st_path, server, id, uri, ca_file)) != 0)
		FAIL(rc);
	if (!c->quiet)
		fprintf(stderr, "p11cert: enroll: '%s' enrolled with %s; certificate stored in token '%s' and %s\n", id,
			server, cli_safe(p11c_token_label(c->ctx)), crt_path);
	rc = 0;
out:
#undef FAIL
	if (fd >= 0)
		close(fd);
	free(key_uri);
	free(lock);
	free(csr_path);
	free(crt_path);
	free(ca_path);
	free(st_path);
	free(csr);
	free(cert_pem);
	X509_free(ca);
	X509_free(cert);
	X509_free(mine);
	X509_free(file_cert);
	p11c_key_free(&key);
	return rc;
}

/* --- shared token -------------------------------------------------------------- */

int read_token(struct cli *c, const char *file, unsigned char **tok, size_t *len)
{
	const char *env = getenv("P11CERT_CA_TOKEN");
	unsigned char *b = NULL;
	size_t n = 0;

	if (file != NULL) {
		if (p11c_file_read(file, 4096, &b, &n) != P11C_OK) {
			fprintf(stderr, "p11cert: %s: cannot read the token file '%s': %s\n", c->cmd, file,
				strerror(errno));
			return EX_NOINPUT;
		}
		while (n > 0 && (b[n - 1] == '\n' || b[n - 1] == '\r'))
			b[--n] = '\0';
	} else if (env != NULL) {
		n = strlen(env);
		b = (unsigned char *)strdup(env);
		if (b == NULL)
			return EX_SOFTWARE;
	} else {
		fprintf(stderr, "p11cert: %s: give the shared token with --token-file FILE or the "
			"P11CERT_CA_TOKEN environment variable\n", c->cmd);
		return EX_USAGE;
	}
	if (n < P11C_TOKEN_MIN) {
		fprintf(stderr, "p11cert: %s: the shared token must be at least %d bytes (it has %zu)\n", c->cmd,
			P11C_TOKEN_MIN, n);
		OPENSSL_cleanse(b, n);
		free(b);
		return EX_USAGE;
	}
	*tok = b;
	*len = n;
	return 0;
}

/* config.json in the upstream shape (Jackson's "key" : value, 2 spaces):
 * the key store is the token, through the SunPKCS11 configuration
 * (keyStoreType PKCS11), the trust store the PKCS#12 file with the CA; SAN
 * entries bare names as upstream writes them; no PIN, no token. */
static char *nifi_config(p11c_key *key, const char *dn, const char *host, int port, const char *p11cfg,
			 const char *trust, const char *const *sans, int nsans, long days)
{
	char *s = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&s, &len);
	EVP_PKEY *pub = p11c_key_public(key);
	int rsa = EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA, i;
	const char *cn = strstr(dn, "CN=");
	const char *comma = cn ? strchr(cn, ',') : NULL;
	json_t *q;
	char *qs;

	if (fp == NULL) {
		free(s);
		return NULL;
	}
#define STR(k, v) do { q = json_string(v); qs = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL; \
	fprintf(fp, "  \"%s\" : %s,\n", k, qs ? qs : "null"); free(qs); json_decref(q); } while (0)
	fprintf(fp, "{\n  \"days\" : %ld,\n  \"keySize\" : %d,\n", days, EVP_PKEY_get_bits(pub));
	STR("keyPairAlgorithm", rsa ? "RSA" : "EC");
	STR("signingAlgorithm", rsa ? "SHA256WITHRSA" : "SHA256WITHECDSA");
	STR("dn", dn);
	STR("keyStore", p11cfg);
	STR("keyStoreType", "PKCS11");
	fprintf(fp, "  \"keyStorePassword\" : null,\n  \"keyPassword\" : null,\n  \"token\" : null,\n");
	STR("caHostname", host);
	fprintf(fp, "  \"port\" : %d,\n", port);
	STR("dnPrefix", "CN=");
	STR("dnSuffix", comma ? comma : "");
	STR("additionalCACertificate", "");
	fprintf(fp, "  \"domainAlternativeNames\" : [");
	for (i = 0; i < nsans; i++) {
		/* "DNS:node1.example.com" -> "node1.example.com" */
		const char *colon = strchr(sans[i], ':');

		q = json_string(colon ? colon + 1 : sans[i]);
		qs = q ? json_dumps(q, JSON_ENCODE_ANY) : NULL;
		fprintf(fp, "%s %s", i ? "," : "", qs ? qs : "\"\"");
		free(qs);
		json_decref(q);
	}
	fprintf(fp, "%s],\n", nsans ? " " : "");
	STR("trustStore", trust);
	fprintf(fp, "  \"trustStorePassword\" : null,\n  \"trustStoreType\" : \"PKCS12\"\n}\n");
#undef STR
	fclose(fp);
	return s;
}

static const char token_help[] =
	"usage: p11cert enroll token --ca-host HOST [--port 9443] [--token-file FILE]\n"
	"                            [--dn DN] [--san TYPE:VALUE]... [--key URI] [--dir DIR]\n"
	"                            [--type TYPE] [--timeout SECONDS]\n"
	"\n"
	"Enroll with a shared-token CA (NiFi TLS toolkit server, or p11ca).  The token\n"
	"comes from --token-file or P11CERT_CA_TOKEN (at least 16 bytes), never argv.\n"
	"DN defaults to 'CN=<this host>, OU=NIFI'; the key to pkcs11:object=<CN>.\n"
	"Writes DIR/nifi-cert.pem (the CA, PEM), DIR/truststore.p12 (the CA, PKCS#12, no\n"
	"password), DIR/pkcs11.cfg (SunPKCS11 configuration for the token key) and\n"
	"DIR/config.json (mode 0600, no secrets).  The CSR subject keeps the order of\n"
	"--dn as written ('CN=n1, OU=NIFI' is [CN, OU]), as the NiFi Java client does.\n"
	"Does nothing when the token already holds a valid certificate for the key.\n"
	"Holds DIR/config.json.lock for the run: exit 75 when another run holds it.\n";

int cmd_enroll_token(struct cli *c, int argc, char **argv);
int cmd_enroll_token(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "ca-host", required_argument, NULL, 'h' }, { "port", required_argument, NULL, 'p' },
		{ "token-file", required_argument, NULL, 'f' }, { "dn", required_argument, NULL, 'n' },
		{ "san", required_argument, NULL, 's' }, { "key", required_argument, NULL, 'k' },
		{ "dir", required_argument, NULL, 'd' }, { "type", required_argument, NULL, 't' },
		{ "timeout", required_argument, NULL, 'T' }, { NULL, 0, NULL, 0 },
	};
	const char *host = NULL, *tfile = NULL, *dn_s = NULL, *uri = NULL, *dir = ".", *type = "rsa:2048";
	const char *san_s[32];
	int nsans = 0, port = 9443, ch, rc = EX_FAIL, created = 0, fd = -1;
	long lport;
	long timeout = 30;
	char hostname[256], dnbuf[300], err[256], *key_uri = NULL, *cfg = NULL, *trust = NULL, *cfgp = NULL;
	char *lock = NULL, *jcfg = NULL, *jts = NULL;
	STACK_OF(X509) *cas = NULL;
	unsigned char *tok = NULL;
	size_t tok_len = 0;
	X509_NAME *dn = NULL;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	p11c_key *key = NULL;
	X509 *cert = NULL, *ca = NULL, *have = NULL;
	p11c_token_enroll_opts o;
	p11c_result r;

	if (cli_help(argc, argv, token_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'h': host = optarg; break;
		case 'p':
			if ((rc = cli_num(c, "--port", optarg, 1, 65535, &lport)) != 0)
				goto out;
			port = (int)lport;
			break;
		case 'f': tfile = optarg; break;
		case 'n': dn_s = optarg; break;
		case 's':
			if (nsans == 32)
				return cli_usage(c, "at most 32 --san");
			if (p11c_san_add(optarg, &sans, err, sizeof err) != P11C_OK) {
				rc = cli_usage(c, "bad --san '%s': %s", optarg, err);
				goto out;
			}
			san_s[nsans++] = optarg;
			break;
		case 'k': uri = optarg; break;
		case 'd': dir = optarg; break;
		case 't': type = optarg; break;
		case 'T':
			if ((rc = cli_num(c, "--timeout", optarg, 1, 3600, &timeout)) != 0)
				goto out;
			break;
		default: rc = cli_bad_option(c, argv); goto out;
		}
	}
	if (optind != argc || host == NULL || port <= 0 || port > 65535) {
		rc = cli_usage(c, "--ca-host HOST is required (and a port from 1 to 65535)");
		goto out;
	}
	if (dn_s == NULL) {
		if (gethostname(hostname, sizeof hostname) != 0)
			snprintf(hostname, sizeof hostname, "localhost");
		hostname[sizeof hostname - 1] = '\0';
		snprintf(dnbuf, sizeof dnbuf, "CN=%s, OU=NIFI", hostname);
		dn_s = dnbuf;
	}
	/* in the order written, like the Java client: "CN=n1, OU=NIFI" is
	 * the DER subject [CN, OU]; the CA reverses it (docs/enroll.md) */
	if (p11c_dn_parse_as_written(dn_s, &dn, err, sizeof err) != P11C_OK) {
		rc = cli_usage(c, "bad --dn '%s': %s", dn_s, err);
		goto out;
	}
	if (uri == NULL) {
		char cn[128] = "";

		X509_NAME_get_text_by_NID(dn, NID_commonName, cn, sizeof cn);
		if (cn[0] == '\0' || asprintf(&key_uri, "pkcs11:object=%s", cn) < 0) {
			rc = cli_usage(c, "the DN needs a CN (or give --key URI)");
			goto out;
		}
		uri = key_uri;
	}
	if (cli_curl_ready(c) != 0) { /* before the token and the files */
		rc = EX_UNAVAILABLE;
		goto out;
	}
	/* one run per folder at a time: concurrent runs would each generate
	 * a key under the same label and race on config.json */
	if ((lock = cli_path_in(dir, "config.json", ".lock")) == NULL)
		goto out;
	fd = cli_lock(lock);
	if (fd == -1) {
		fprintf(stderr, "p11cert: enroll: another run holds the lock %s\n", lock);
		rc = EX_TEMPFAIL_;
		goto out;
	}
	if (fd == -3) {
		rc = EX_UNSAFE;
		goto out;
	}
	if (fd < 0) {
		fprintf(stderr, "p11cert: enroll: cannot create the lock file %s: %s\n", lock, strerror(errno));
		rc = EX_CANTCREAT;
		goto out;
	}
	if ((rc = read_token(c, tfile, &tok, &tok_len)) != 0)
		goto out;
	rc = EX_FAIL;
	if ((r = cli_ctx(c)) != P11C_OK || (r = key_for(c, uri, type, &key, &created, uri == key_uri)) != P11C_OK) {
		rc = cli_fail(c, r, "token key '%s'", uri);
		goto out;
	}
	if (!created && p11c_cert_get(c->ctx, key, &have) == P11C_OK && valid_now(have)) {
		if (!c->quiet)
			fprintf(stderr, "p11cert: enroll: the token already holds a valid certificate for '%s'; "
				"nothing to do\n", cli_safe(p11c_key_label(key)));
		rc = token_record_write(c, dir, p11c_key_label(key), uri, host, port, tfile, dn_s, san_s, nsans);
		goto out;
	}
	memset(&o, 0, sizeof o);
	o.ca_host = host;
	o.port = port;
	o.token = tok;
	o.token_len = tok_len;
	o.dn = dn;
	o.sans = sans;
	o.timeout_ms = timeout * 1000;
	r = p11c_token_enroll(c->ctx, key, &o, &cert, &ca);
	OPENSSL_cleanse(tok, tok_len);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "enrollment with %s:%d failed", host, port);
		goto out;
	}
	r = p11c_cert_store(c->ctx, key, cert);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "cannot store the certificate in the token");
		goto out;
	}
	trust = cli_path_in(dir, "nifi-cert", ".pem");
	cfgp = cli_path_in(dir, "config", ".json");
	if (trust == NULL || cfgp == NULL)
		goto out;
	if ((rc = write_x509(c, trust, ca, 0644)) != 0)
		goto out;
	/* the same identity for Java programs: SunPKCS11 configuration and
	 * PKCS#12 truststore, which config.json points at */
	if ((cas = sk_X509_new_null()) == NULL || !sk_X509_push(cas, ca)) {
		rc = EX_SOFTWARE;
		goto out;
	}
	if ((rc = cli_java_files(c, dir, key, cas, &jcfg, &jts)) != 0)
		goto out;
	cfg = nifi_config(key, dn_s, host, port, jcfg, jts, san_s, nsans,
			  (long)((ca_time(X509_get0_notAfter(cert)) - ca_time(X509_get0_notBefore(cert))) / 86400));
	if (cfg == NULL || (rc = cli_output(c, cfgp, cfg, strlen(cfg), 0600)) != 0)
		goto out;
	if ((rc = token_record_write(c, dir, p11c_key_label(key), uri, host, port, tfile, dn_s, san_s, nsans)) != 0)
		goto out;
	if (!c->quiet)
		fprintf(stderr, "p11cert: enroll: certificate for '%s' stored in token '%s'; CA in %s\n", dn_s,
			cli_safe(p11c_token_label(c->ctx)), trust);
	rc = 0;
out:
	if (fd >= 0)
		close(fd);
	free(lock);
	if (tok != NULL)
		OPENSSL_cleanse(tok, tok_len);
	free(tok);
	free(key_uri);
	free(cfg);
	free(trust);
	free(cfgp);
	free(jcfg);
	free(jts);
	sk_X509_free(cas);
	X509_NAME_free(dn);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	X509_free(cert);
	X509_free(ca);
	X509_free(have);
	p11c_key_free(&key);
	return rc;
}


int cmd_enroll(struct cli *c, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "acme") == 0) {
		c->cmd = "enroll acme";
		return cmd_enroll_acme(c, argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "caramel") == 0) {
		c->cmd = "enroll caramel";
		return cmd_enroll_caramel(c, argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "est") == 0) {
		c->cmd = "enroll est";
		return cmd_enroll_est(c, argc - 1, argv + 1);
	}
	if (argc >= 2 && strcmp(argv[1], "token") == 0) {
		c->cmd = "enroll token";
		return cmd_enroll_token(c, argc - 1, argv + 1);
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(caramel_help, stdout);
		fputs("\n", stdout);
		fputs(token_help, stdout);
		/* enroll est and enroll acme print their own help */
		fputs("\n", stdout);
		(void)cmd_enroll_est(c, 2, (char *[]){ "est", "--help", NULL });
		fputs("\n", stdout);
		(void)cmd_enroll_acme(c, 2, (char *[]){ "acme", "--help", NULL });
		return 0;
	}
	return cli_usage(c, "enroll needs a protocol: caramel, token, acme or est");
}
