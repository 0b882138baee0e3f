/*
 * httpd_echo CERT KEY PORTFILE [CLIENT_CA]: the httpd module on loopback,
 * for tests/cli/test_httpd.sh.
 *
 * Every request gets 200 text/plain
 *   "METHOD PATH bodylen=N peercert=SUBJECT|none host=H\n"
 * except /noreply, whose handler returns without replying (httpd sends 500),
 * and /stop, which replies and then calls httpd_stop.
 * Limits: max_body 4096, headers 8192, timeout 2 s, 64 connections.
 * Listens on 127.0.0.1:0 (HTTPD_ECHO_ADDR overrides, e.g. "[::1]:0";
 * HTTPD_ECHO_MAX_CONNECTIONS overrides the connection limit) and writes the
 * bound port to PORTFILE (temp file + rename).  Exits 0 after SIGTERM.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "httpd.h"

#define GRACE_SEC 5

static void
echo_handler(httpd_req *r, void *ud)
{
	char subject[512] = "none";
	char out[1024];
	const char *host = httpd_req_host(r);
	X509 *cert = httpd_req_peer_cert(r);
	BIO *mem = NULL;
	size_t len = 0;
	int n;

	httpd_req_body(r, &len);
	if (strcmp(httpd_req_path(r), "/noreply") == 0) {
		httpd_req_note(r, "echo", "noreply on purpose");
		return;
	}
	if (strcmp(httpd_req_path(r), "/stop") == 0) {
		httpd_reply(r, 202, "text/plain", NULL, "stopping\n", 9);
		httpd_stop(*(httpd **)ud);
		return;
	}
	if (cert != NULL && (mem = BIO_new(BIO_s_mem())) != NULL &&
	    X509_NAME_print_ex(mem, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253) >= 0) {
		n = BIO_read(mem, subject, (int)sizeof(subject) - 1);
		subject[n > 0 ? n : 0] = '\0';
	}
	BIO_free(mem);
	n = snprintf(out, sizeof(out), "%s %s bodylen=%zu peercert=%s host=%s\n",
		     httpd_req_method(r), httpd_req_path(r), len, subject,
		     host != NULL ? host : "none");
	if (n < 0 || (size_t)n >= sizeof(out)) {
		httpd_reply(r, 500, NULL, NULL, NULL, 0);
		return;
	}
	httpd_req_note(r, "echo", NULL);
	httpd_reply(r, 200, "text/plain", NULL, out, (size_t)n);
}

static SSL_CTX *
make_ctx(const char *cert, const char *key, const char *client_ca)
{
	SSL_CTX *ctx = NULL, *ret = NULL;
	STACK_OF(X509_NAME) *names = NULL;
	static const unsigned char sid_ctx[] = "httpd_echo";

	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL)
		goto out;
	if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
	    !SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION))
		goto out;
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1)
		goto out;
	if (!SSL_CTX_set_session_id_context(ctx, sid_ctx, sizeof(sid_ctx) - 1))
		goto out;
	if (client_ca != NULL) {
		if (SSL_CTX_load_verify_locations(ctx, client_ca, NULL) != 1)
			goto out;
		if ((names = SSL_load_client_CA_file(client_ca)) == NULL)
			goto out;
		SSL_CTX_set_client_CA_list(ctx, names);	/* takes names */
		/* ask for a certificate, do not require one */
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	}
	ret = ctx;
	ctx = NULL;
out:
	SSL_CTX_free(ctx);
	return ret;
}

static int
write_port(const char *path, int port)
{
	char tmp[4096];
	FILE *f = NULL;
	int rc = -1;

	if (snprintf(tmp, sizeof(tmp), "%s.tmp", path) >= (int)sizeof(tmp))
		goto out;
	if ((f = fopen(tmp, "w")) == NULL)
		goto out;
	if (fprintf(f, "%d\n", port) < 0)
		goto out;
	if (fclose(f) != 0) {
		f = NULL;
		goto out;
	}
	f = NULL;
	if (rename(tmp, path) != 0)
		goto out;
	rc = 0;
out:
	if (f != NULL)
		fclose(f);
	return rc;
}

int
main(int argc, char **argv)
{
	struct httpd_limits lim = { 4096, 8192, 2, 64, 0 };
	const char *addr = getenv("HTTPD_ECHO_ADDR");
	const char *maxc = getenv("HTTPD_ECHO_MAX_CONNECTIONS");
	SSL_CTX *ctx = NULL;
	httpd *h = NULL;
	int port = 0, rc = 1;

	if (argc < 4 || argc > 5) {
		fprintf(stderr, "usage: httpd_echo CERT KEY PORTFILE [CLIENT_CA]\n");
		return 2;
	}
	if (addr == NULL)
		addr = "127.0.0.1:0";
	if (maxc != NULL) {
		char *end;
		long v = strtol(maxc, &end, 10);

		if (end == maxc || *end != '\0' || v < 1 || v > 100000) {
			fprintf(stderr, "httpd_echo: bad HTTPD_ECHO_MAX_CONNECTIONS '%s'\n", maxc);
			return 2;
		}
		lim.max_connections = (int)v;
	}
	if ((ctx = make_ctx(argv[1], argv[2], argc == 5 ? argv[4] : NULL)) == NULL) {
		fprintf(stderr, "httpd_echo: TLS setup failed\n");
		ERR_print_errors_fp(stderr);
		goto out;
	}
	if ((h = httpd_new(&lim, echo_handler, &h, NULL, NULL)) == NULL) {
		fprintf(stderr, "httpd_echo: httpd_new failed\n");
		goto out;
	}
	if (httpd_listen(h, addr, ctx, 1, &port) != 0) {
		fprintf(stderr, "httpd_echo: %s\n", httpd_error(h));
		goto out;
	}
	SSL_CTX_free(ctx);	/* the httpd holds its own reference */
	ctx = NULL;
	if (write_port(argv[3], port) != 0) {
		perror("httpd_echo: writing the port file");
		goto out;
	}
	if (httpd_run(h, GRACE_SEC) != 0) {
		fprintf(stderr, "httpd_echo: %s\n", httpd_error(h));
		goto out;
	}
	rc = 0;
out:
	httpd_free(&h);
	SSL_CTX_free(ctx);
	return rc;
}
