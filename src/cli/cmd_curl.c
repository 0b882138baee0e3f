/* p11cert curl: one HTTPS request authenticated with the token key. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/ssl.h>

#include <p11cert/tls.h>

#include "cli.h"
#include "curlssl.h"

/* every option is checked: a libcurl that ignores one (another TLS backend
 * has no CURLOPT_SSL_CTX_FUNCTION) must not send the request without the
 * token key or the peer check */
#define SET(opt, val)                                          \
	do {                                                   \
		if (!P11C_SETOPT(h, opt, val, err, sizeof err)) \
			goto refused;                          \
	} while (0)

#define CURL_EX_HTTP 22 /* curl's own code for --fail */
#define MAX_HEADERS 64

static const char curl_help[] =
	"usage: p11cert curl URL --key URI [options]\n"
	"\n"
	"An HTTPS request with the token key and its stored certificate as the TLS\n"
	"client identity (mutual TLS, TLS 1.2 and 1.3, RSA and EC keys).\n"
	"\n"
	"  --key URI              the token key (its certificate comes from the token)\n"
	"  --chain FILE           intermediate/CA certificates to send with it (PEM)\n"
	"  --cacert FILE          trust anchors for the server (default: system store)\n"
	"  -X, --request METHOD   default GET, or POST with -d\n"
	"  -H, --header 'N: v'    extra header (repeatable)\n"
	"  -d, --data DATA        POST DATA; @FILE reads a file (newlines kept)\n"
	"  --data-binary DATA     the same, byte for byte\n"
	"  -o, --output FILE      write the body to FILE (atomically) instead of stdout\n"
	"  -i, --include          include the response headers in the output\n"
	"  -f, --fail             exit 22 on HTTP status >= 400, print no body\n"
	"  --connect-timeout S    seconds for the connection\n"
	"  -m, --max-time S       seconds for the whole request\n"
	"  --tlsv1.2, --tlsv1.3   lowest TLS version; --tls-max 1.2|1.3 highest\n"
	"  -v                     (global) show the exchange on stderr; never secrets\n"
	"  -s, --silent           accepted for curl compatibility\n"
	"Peer verification is always on (-k is refused).\n"
	"Exit: 0 ok, 22 --fail and status >= 400, 69 cannot connect, 76 TLS failure,\n"
	"73/74 output errors, and the token codes of 'p11cert --help'.\n";

struct curl_job {
	struct cli *c;
	p11c_key *key;
	const char *chain;
	p11c_result tls_rc;
	FILE *out;
};

static CURLcode ssl_ctx_cb(CURL *h, void *sslctx, void *ud)
{
	struct curl_job *j = ud;

	(void)h;
	j->tls_rc = p11c_tls_use_key(j->key, sslctx, j->chain);
	return j->tls_rc == P11C_OK ? CURLE_OK : CURLE_SSL_CERTPROBLEM;
}

int cli_curl_ready(struct cli *c)
{
	char why[512];

	if (p11c_curl_ready(why, sizeof why) == 0)
		return 0;
	fprintf(stderr, "p11cert: %s: %s\n", c->cmd ? c->cmd : "network", why);
	return EX_UNAVAILABLE;
}

static size_t write_cb(char *data, size_t size, size_t n, void *ud)
{
	struct curl_job *j = ud;

	return fwrite(data, size, n, j->out) == n ? size * n : 0;
}

static int load_data(struct cli *c, const char *arg, char **buf, size_t *len)
{
	unsigned char *b = NULL;

	if (arg[0] != '@') {
		*buf = strdup(arg);
		*len = strlen(arg);
		return *buf ? 0 : EX_SOFTWARE;
	}
	if (cli_input(c, arg + 1, &b, len) != 0)
		return EX_NOINPUT;
	*buf = (char *)b;
	return 0;
}

int cmd_curl(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'K' },	 { "chain", required_argument, NULL, 'C' },
		{ "cacert", required_argument, NULL, 'A' },	 { "request", required_argument, NULL, 'X' },
		{ "header", required_argument, NULL, 'H' },	 { "data", required_argument, NULL, 'd' },
		{ "data-binary", required_argument, NULL, 'D' }, { "output", required_argument, NULL, 'o' },
		{ "include", no_argument, NULL, 'i' },		 { "fail", no_argument, NULL, 'f' },
		{ "connect-timeout", required_argument, NULL, 'T' },
		{ "max-time", required_argument, NULL, 'm' },	 { "tlsv1.2", no_argument, NULL, '2' },
		{ "tlsv1.3", no_argument, NULL, '3' },		 { "tls-max", required_argument, NULL, 'M' },
		{ "silent", no_argument, NULL, 's' },		 { "insecure", no_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *cacert = NULL, *method = NULL, *outfile = NULL, *headers[MAX_HEADERS];
	char *data = NULL, *tmp = NULL, err[2 * CURL_ERROR_SIZE] = ""; /* curl writes CURL_ERROR_SIZE at most */
	size_t data_len = 0;
	int nh = 0, include = 0, fail = 0, ch, rc = EX_FAIL, have_data = 0, tmpfd = -1;
	long connect_to = 0, max_time = 0, status = 0, tls_min = CURL_SSLVERSION_TLSv1_2, tls_max = 0;
	struct curl_job j;
	struct curl_slist *hl = NULL;
	CURL *h = NULL;
	CURLcode cc;
	p11c_result r;

	memset(&j, 0, sizeof j);
	j.c = c;
	j.out = stdout;
	if (cli_help(argc, argv, curl_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "X:H:d:o:ifm:sk", opts, NULL)) != -1) {
		switch (ch) {
		case 'K': uri = optarg; break;
		case 'C': j.chain = optarg; break;
		case 'A': cacert = optarg; break;
		case 'X': method = optarg; break;
		case 'H':
			if (nh == MAX_HEADERS) {
				rc = cli_usage(c, "at most %d -H", MAX_HEADERS);
				goto out;
			}
			headers[nh++] = optarg;
			break;
		case 'd':
		case 'D':
			free(data);
			data = NULL;
			if ((rc = load_data(c, optarg, &data, &data_len)) != 0)
				goto out;
			have_data = 1;
			break;
		case 'o': outfile = optarg; break;
		case 'i': include = 1; break;
		case 'f': fail = 1; break;
		case 'T':
			if ((rc = cli_num(c, "--connect-timeout", optarg, 1, 86400, &connect_to)) != 0)
				goto out;
			break;
		case 'm':
			if ((rc = cli_num(c, "--max-time", optarg, 1, 86400, &max_time)) != 0)
				goto out;
			break;
		case '2': tls_min = CURL_SSLVERSION_TLSv1_2; break;
		case '3': tls_min = CURL_SSLVERSION_TLSv1_3; break;
		case 'M':
			if (strcmp(optarg, "1.2") == 0)
				tls_max = CURL_SSLVERSION_MAX_TLSv1_2;
			else if (strcmp(optarg, "1.3") == 0)
				tls_max = CURL_SSLVERSION_MAX_TLSv1_3;
			else {
				rc = cli_usage(c, "--tls-max must be 1.2 or 1.3");
				goto out;
			}
			break;
		case 's': break;
		case 'k':
			rc = cli_usage(c, "-k/--insecure is refused: peer verification is always on (use --cacert)");
			goto out;
		default:
			rc = cli_bad_option(c, argv);
			goto out;
		}
	}
	if (optind + 1 != argc || uri == NULL) {
		rc = cli_usage(c, "one URL and --key URI are required");
		goto out;
	}
	if (strncmp(argv[optind], "https://", 8) != 0) {
		rc = cli_usage(c, "the URL must be https:// (the token key is a TLS identity)");
		goto out;
	}
	/* before the token is touched: a libcurl not on OpenSSL cannot use it */
	if (cli_curl_ready(c) != 0) {
		rc = EX_UNAVAILABLE;
		goto out;
	}
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &j.key)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	/* fail early and clearly when there is no certificate to present */
	{
		X509 *x = NULL;

		if ((r = p11c_cert_get(c->ctx, j.key, &x)) != P11C_OK) {
			rc = cli_fail(c, r, "the key has no certificate in the token (p11cert enroll or import first)");
			goto out;
		}
		X509_free(x);
	}
	if (outfile != NULL) {
		if (asprintf(&tmp, "%s.tmp.XXXXXX", outfile) < 0 || (tmpfd = mkostemp(tmp, O_CLOEXEC)) < 0 ||
		    fchmod(tmpfd, 0644) != 0 || (j.out = fdopen(tmpfd, "w")) == NULL) {
			fprintf(stderr, "p11cert: curl: cannot write '%s': %s\n", outfile, strerror(errno));
			rc = EX_CANTCREAT;
			goto out;
		}
		tmpfd = -1;
	}
	h = curl_easy_init();
	if (h == NULL) {
		rc = EX_SOFTWARE;
		goto out;
	}
	SET(CURLOPT_URL, argv[optind]);
	SET(CURLOPT_PROTOCOLS_STR, "https");
	SET(CURLOPT_NOSIGNAL, 1L);
	SET(CURLOPT_ERRORBUFFER, err);
	SET(CURLOPT_USERAGENT, "p11cert/" P11CERT_VERSION);
	SET(CURLOPT_SSL_VERIFYPEER, 1L);
	SET(CURLOPT_SSL_VERIFYHOST, 2L);
	if (cacert != NULL) {
		SET(CURLOPT_CAINFO, cacert);
		SET(CURLOPT_CAPATH, NULL);
	}
	SET(CURLOPT_SSLVERSION, tls_min | tls_max);
	SET(CURLOPT_SSL_CTX_FUNCTION, ssl_ctx_cb);
	SET(CURLOPT_SSL_CTX_DATA, &j);
	SET(CURLOPT_WRITEFUNCTION, write_cb);
	SET(CURLOPT_WRITEDATA, &j);
	SET(CURLOPT_HEADER, include ? 1L : 0L);
	SET(CURLOPT_FAILONERROR, fail ? 1L : 0L);
	SET(CURLOPT_VERBOSE, c->verbose ? 1L : 0L);
	if (connect_to > 0)
		SET(CURLOPT_CONNECTTIMEOUT, connect_to);
	if (max_time > 0)
		SET(CURLOPT_TIMEOUT, max_time);
	if (have_data) {
		SET(CURLOPT_POSTFIELDS, data);
		SET(CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)data_len);
	}
	if (method != NULL)
		SET(CURLOPT_CUSTOMREQUEST, method);
	for (int i = 0; i < nh; i++) {
		struct curl_slist *n = curl_slist_append(hl, headers[i]);

		if (n == NULL) {
			rc = EX_SOFTWARE;
			goto out;
		}
		hl = n;
	}
	if (hl != NULL)
		SET(CURLOPT_HTTPHEADER, hl);

	cc = curl_easy_perform(h);
	curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &status);
	if (j.out != stdout) {
		int bad = fflush(j.out) != 0 || fsync(fileno(j.out)) != 0;

		bad = fclose(j.out) != 0 || bad;
		j.out = stdout;
		if (cc == CURLE_OK && (bad || rename(tmp, outfile) != 0)) {
			fprintf(stderr, "p11cert: curl: cannot write '%s': %s\n", outfile, strerror(errno));
			rc = EX_IOERR;
			goto out;
		}
		if (cc == CURLE_OK) {
			free(tmp);
			tmp = NULL; /* renamed: nothing to remove */
		}
	} else {
		fflush(stdout);
	}
	if (cc == CURLE_OK) {
		rc = 0;
		goto out;
	}
	if (cc == CURLE_HTTP_RETURNED_ERROR) {
		fprintf(stderr, "p11cert: curl: %s answered %ld\n", argv[optind], status);
		rc = CURL_EX_HTTP;
	} else if (j.tls_rc != P11C_OK) {
		rc = cli_fail(c, j.tls_rc, "the token key could not be used for TLS");
	} else if (cc == CURLE_PEER_FAILED_VERIFICATION || cc == CURLE_SSL_CONNECT_ERROR ||
		   cc == CURLE_SSL_CACERT_BADFILE || cc == CURLE_SSL_CERTPROBLEM) {
		fprintf(stderr, "p11cert: curl: TLS with %s failed: %s\n", argv[optind], err[0] ? err : curl_easy_strerror(cc));
		rc = EX_PROTOCOL_;
	} else if (cc == CURLE_WRITE_ERROR) {
		fprintf(stderr, "p11cert: curl: cannot write the answer: %s\n", strerror(errno));
		rc = EX_IOERR;
	} else {
		fprintf(stderr, "p11cert: curl: %s: %s\n", argv[optind], err[0] ? err : curl_easy_strerror(cc));
		rc = EX_UNAVAILABLE;
	}
	goto out;
refused:
	/* err names the option (p11c_curl_opt); nothing was sent */
	fprintf(stderr, "p11cert: curl: %s\n", err);
	rc = EX_UNAVAILABLE;
out:
	if (j.out != NULL && j.out != stdout)
		fclose(j.out);
	if (tmpfd >= 0)
		close(tmpfd);
	if (tmp != NULL) {
		unlink(tmp);
		free(tmp);
	}
	curl_slist_free_all(hl);
	if (h != NULL)
		curl_easy_cleanup(h);
	free(data);
	p11c_key_free(&j.key);
	return rc;
}
