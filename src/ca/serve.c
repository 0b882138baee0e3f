/* p11ca serve: TLS contexts, listeners, dispatch, access log. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "serve.h"


/* Client certificates are optional: accept any, and let the handlers use
 * one only when it verified against the CA (httpd checks the result). */
static int accept_any(int ok, X509_STORE_CTX *x)
{
	(void)ok;
	(void)x;
	return 1;
}

static SSL_CTX *tls_ctx(struct ca *ca, X509 *cert, EVP_PKEY *key, int chain_ca)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	X509_STORE *st;
	STACK_OF(X509_NAME) *names = NULL;
	char e[256];

	if (ctx == NULL)
		return NULL;
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
	SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
	if (SSL_CTX_use_certificate(ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ctx, key) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1 || (chain_ca && SSL_CTX_add1_chain_cert(ctx, ca->cert) != 1))
		goto fail;
	st = SSL_CTX_get_cert_store(ctx);
	names = sk_X509_NAME_new_null();
	if (st == NULL || X509_STORE_add_cert(st, ca->cert) != 1 || names == NULL ||
	    !sk_X509_NAME_push(names, X509_NAME_dup(X509_get_subject_name(ca->cert))))
		goto fail;
	SSL_CTX_set_client_CA_list(ctx, names);
	names = NULL;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, accept_any);
	SSL_CTX_set_verify_depth(ctx, 2);
	return ctx;
fail:
	ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
	ca_err("TLS setup failed: %s", e);
	sk_X509_NAME_pop_free(names, X509_NAME_free);
	SSL_CTX_free(ctx);
	return NULL;
}

static void dispatch(httpd_req *r, void *ud)
{
	struct server *s = ud;
	const char *path = httpd_req_path(r);

	/* p11ca's renewal over mTLS, next to the token protocol (docs/ca.md) */
	if (strcmp(path, "/renew") == 0 && (httpd_req_listener(r) == LISTENER_TOKEN || s->token_on_main)) {
		token_renew_handle(s, r);
		return;
	}
	if (httpd_req_listener(r) == LISTENER_TOKEN ||
	    (s->token_on_main && strcmp(path, "/") == 0 && strcmp(httpd_req_method(r), "POST") == 0)) {
		/* upstream ignores method and path on its token port */
		token_handle(s, r);
		return;
	}
	caramel_handle(s, r);
}

static void logger(const char *peer, const char *method, const char *path, int status, size_t bytes,
		   const char *protocol, const char *detail, void *ud)
{
	struct server *s = ud;
	struct store_access a;
	char t[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s \"%s %.200s\" %d %zu %s%s%s\n", t, peer, method, path, status, bytes,
		protocol ? protocol : "-", detail ? " " : "", detail ? detail : "");
	memset(&a, 0, sizeof a);
	a.time = now;
	a.peer = peer;
	a.method = method;
	a.path = path;
	a.status = status;
	a.bytes = (int64_t)bytes;
	a.protocol = protocol;
	a.detail = detail;
	(void)s->ca->so->log_access(s->ca->st, &a);
}

static int load_token(struct server *s, const char *path)
{
	char *buf = NULL, *full = ca_path(s->ca->dir, path);
	size_t len = 0;

	if (full == NULL || ca_read_file(full, 4096, &buf, &len) != 0) {
		ca_err("cannot read the shared token file '%s': %s", full ? full : path, strerror(errno));
		free(full);
		return -1;
	}
	free(full);
	while (len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r'))
		buf[--len] = '\0';
	if (len < P11C_TOKEN_MIN) {
		ca_err("the shared token must be at least %d bytes (it has %zu)", P11C_TOKEN_MIN, len);
		OPENSSL_cleanse(buf, len);
		free(buf);
		return -1;
	}
	s->token = (unsigned char *)buf;
	s->token_len = len;
	return 0;
}

int ca_serve(struct ca *ca, const char *port_file)
{
	struct server *s = NULL;
	struct httpd_limits lim;
	httpd *h = NULL;
	SSL_CTX *main_ctx = NULL, *token_ctx = NULL;
	X509 *tls_cert = NULL;
	EVP_PKEY *tls_key = NULL;
	p11c_key *tls_tkey = NULL;
	char *path = NULL;
	FILE *fp = NULL;
	int port = 0, main_port = 0, rc = 1;

	s = calloc(1, sizeof *s);
	if (s == NULL)
		return 1;
	s->ca = ca;
	s->ca_pem = ca_x509_pem(ca->cert);
	if (s->ca_pem == NULL)
		goto out;
	s->ca_pem_len = strlen(s->ca_pem);
	if (ca->cfg.token_file != NULL && load_token(s, ca->cfg.token_file) != 0)
		goto out;

	/* main listener: the TLS server certificate from init --hostname
	 * when there is one, else the CA certificate itself */
	path = ca_path(ca->dir, "tls.crt");
	fp = path ? fopen(path, "r") : NULL;
	if (fp != NULL) {
		tls_cert = PEM_read_X509(fp, NULL, NULL, NULL);
		fclose(fp);
		if (tls_cert == NULL ||
		    ca_load_key(ca, ca->cfg.tls_key ? ca->cfg.tls_key : "tls.key", &tls_tkey, &tls_key) != 0) {
			ca_err("cannot load the TLS server certificate and key (%s)", path);
			goto out;
		}
		main_ctx = tls_ctx(ca, tls_cert, tls_key, 1);
	} else {
		/* the CA certificate itself serves TLS: TLS clients refuse a
		 * certificate whose keyUsage lacks digitalSignature */
		if ((X509_get_extension_flags(ca->cert) & EXFLAG_KUSAGE) &&
		    !(X509_get_key_usage(ca->cert) & KU_DIGITAL_SIGNATURE)) {
			ca_err("no TLS certificate in %s: the CA certificate cannot serve TLS (its keyUsage lacks "
			       "digitalSignature); create the CA with --hostname NAME (a TLS server certificate) "
			       "or --ca-hostname NAME (the CA certificate serves TLS itself)", ca->dir);
			goto out;
		}
		main_ctx = tls_ctx(ca, ca->cert, ca->key, 0);
	}
	if (main_ctx == NULL)
		goto out;
	/* the shared-token protocol needs the CA certificate as the TLS
	 * certificate (docs/protocols.md s2) */
	if (s->token != NULL) {
		if (ca->cfg.token_listen != NULL) {
			token_ctx = tls_ctx(ca, ca->cert, ca->key, 0);
			if (token_ctx == NULL)
				goto out;
		} else {
			s->token_on_main = 1;
			if (tls_cert != NULL)
				ca_err("warning: shared-token enrollment on the main listener, whose certificate "
				       "is not the CA's: clients will refuse it; set token-listen");
		}
	}
	memset(&lim, 0, sizeof lim);
	lim.max_body = SERVE_MAX_BODY;
	lim.max_headers = 16 * 1024;
	lim.timeout_sec = (int)ca->cfg.timeout;
	lim.max_connections = (int)ca->cfg.max_connections;
	h = httpd_new(&lim, dispatch, s, logger, s);
	if (h == NULL)
		goto out;
	if (httpd_listen(h, ca->cfg.listen ? ca->cfg.listen : "127.0.0.1:8443", main_ctx, LISTENER_MAIN,
			 &port) != 0) {
		ca_err("cannot listen on %s: %s", ca->cfg.listen ? ca->cfg.listen : "127.0.0.1:8443",
		       httpd_error(h));
		goto out;
	}
	main_port = port;
	fprintf(stderr, "p11ca: serving Caramel%s on %s (port %d)\n", s->token_on_main ? " and shared-token" : "",
		ca->cfg.listen ? ca->cfg.listen : "127.0.0.1:8443", port);
	if (token_ctx != NULL) {
		if (httpd_listen(h, ca->cfg.token_listen, token_ctx, LISTENER_TOKEN, &port) != 0) {
			ca_err("cannot listen on %s: %s", ca->cfg.token_listen, httpd_error(h));
			goto out;
		}
		fprintf(stderr, "p11ca: serving shared-token on %s (port %d)\n", ca->cfg.token_listen, port);
	}
	fflush(stderr);
	if (port_file != NULL) {
		char line[32];

		snprintf(line, sizeof line, "%d\n", main_port);
		if (p11c_file_write_atomic(port_file, line, strlen(line), 0644) != P11C_OK) {
			ca_err("cannot write %s", port_file);
			goto out;
		}
	}
	rc = httpd_run(h, 10) == 0 ? 0 : 1;
	fprintf(stderr, "p11ca: stopped\n");
out:
	httpd_free(&h);
	SSL_CTX_free(main_ctx);
	SSL_CTX_free(token_ctx);
	X509_free(tls_cert);
	EVP_PKEY_free(tls_key);
	p11c_key_free(&tls_tkey);
	free(path);
	if (s != NULL) {
		if (s->token != NULL)
			OPENSSL_cleanse(s->token, s->token_len);
		free(s->token);
		free(s->ca_pem);
		free(s);
	}
	return rc;
}
