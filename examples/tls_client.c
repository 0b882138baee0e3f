/*
 * tls_client: an application using the token identity for mutual TLS with
 * plain OpenSSL (no ENGINE, no curl): libp11cert hands it an SSL_CTX whose
 * private key operations happen in the token.
 *
 *   P11CERT_PIN=... [P11CERT_MODULE=...] tls_client HOST PORT CA_FILE KEY_URI
 *
 * Sends "GET / HTTP/1.0" and prints the answer.  Exit 0 on success.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include <p11cert/p11cert.h>
#include <p11cert/tls.h>

int main(int argc, char **argv)
{
	p11c_ctx *ctx = NULL;
	p11c_key *key = NULL;
	SSL_CTX *sctx = NULL;
	BIO *bio = NULL;
	SSL *ssl = NULL;
	char hostport[300], buf[4096];
	const char *module = getenv("P11CERT_MODULE");
	p11c_result r;
	int n, rc = 1;

	if (argc != 5) {
		fprintf(stderr, "usage: tls_client HOST PORT CA_FILE KEY_URI\n");
		return 64;
	}
	/* one context per process: the module, the token, one login */
	if ((r = p11c_ctx_new(&ctx)) != P11C_OK || (module && (r = p11c_ctx_set_module(ctx, module)) != P11C_OK) ||
	    (r = p11c_key_find(ctx, argv[4], &key)) != P11C_OK ||
	    /* TLS 1.2/1.3 client context, peer verified against CA_FILE, the
	     * token key and its certificate as client identity */
	    (r = p11c_tls_client_ctx(key, argv[3], NULL, &sctx)) != P11C_OK) {
		fprintf(stderr, "tls_client: %s: %s\n", p11c_strerror(r), p11c_ctx_detail(ctx));
		goto out;
	}
	snprintf(hostport, sizeof hostport, "%s:%s", argv[1], argv[2]);
	bio = BIO_new_ssl_connect(sctx);
	if (bio == NULL || BIO_get_ssl(bio, &ssl) != 1)
		goto tls_err;
	SSL_set_tlsext_host_name(ssl, argv[1]);
	SSL_set1_host(ssl, argv[1]); /* host name check */
	BIO_set_conn_hostname(bio, hostport);
	if (BIO_do_connect(bio) != 1) /* connects and does the TLS handshake */
		goto tls_err;
	BIO_puts(bio, "GET / HTTP/1.0\r\nConnection: close\r\n\r\n");
	BIO_flush(bio);
	while ((n = BIO_read(bio, buf, sizeof buf)) > 0)
		fwrite(buf, 1, (size_t)n, stdout);
	fprintf(stderr, "tls_client: %s with the token key (%s)\n", SSL_get_version(ssl), p11c_key_label(key));
	rc = 0;
	goto out;
tls_err:
	fprintf(stderr, "tls_client: TLS with %s failed\n", hostport);
	ERR_print_errors_fp(stderr);
out:
	BIO_free_all(bio);
	SSL_CTX_free(sctx);
	p11c_key_free(&key);
	p11c_ctx_free(&ctx);
	return rc;
}
