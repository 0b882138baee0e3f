/*
 * est_bind: an EST enrollment with channel binding (RFC 7030 s3.5) made
 * with OpenSSL alone, independent of libp11cert, for
 * tests/cli/test_est_server.sh.  It connects (TLS 1.2 or 1.3), computes
 * the connection's tls-unique (RFC 5929) or tls-exporter (RFC 9266) value,
 * builds a CSR for KEY whose challengePassword is its base64, and POSTs it
 * on the same connection.
 *
 *   est_bind HOST PORT CAFILE TLS(1.2|1.3) PATH KEYFILE SUBJECT OUT
 *            [user:password | -] [CERT KEY | - -] [MODE]
 *
 * MODE: "good" (default), "wrong" (the binding of another connection: a
 * flipped byte), "none" (no challengePassword).  Prints the HTTP status;
 * the body goes to OUT.  Exit 0 when an answer came, 1 otherwise.
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

static void die(const char *what)
{
	fprintf(stderr, "est_bind: %s\n", what);
	ERR_print_errors_fp(stderr);
	exit(1);
}

static X509_NAME *parse_subject(const char *s)
{
	X509_NAME *n = X509_NAME_new();
	char buf[512], *tok, *save = NULL;

	if (n == NULL || strlen(s) >= sizeof buf)
		die("subject");
	snprintf(buf, sizeof buf, "%s", s);
	for (tok = strtok_r(buf, "/", &save); tok != NULL; tok = strtok_r(NULL, "/", &save)) {
		char *eq = strchr(tok, '=');

		if (eq == NULL)
			die("subject: NAME=VALUE");
		*eq = '\0';
		if (!X509_NAME_add_entry_by_txt(n, tok, MBSTRING_UTF8, (unsigned char *)eq + 1, -1, -1, 0))
			die("subject entry");
	}
	return n;
}

int main(int argc, char **argv)
{
	const char *host, *port, *cafile, *tls, *path, *keyfile, *subject, *out, *auth = "-", *ccert = "-",
		   *ckey = "-", *mode = "good";
	SSL_CTX *ctx;
	SSL *ssl;
	struct sockaddr_in sa;
	int fd, n;
	unsigned char cb[64], *der = NULL;
	size_t cblen;
	char cpw[128], req[16384], resp[65536], b64[8192], authb64[600];
	FILE *fp;
	EVP_PKEY *pk;
	X509_REQ *xr;
	X509_NAME *subj;
	size_t rl = 0;
	int dl;

	if (argc < 9)
		die("usage: HOST PORT CAFILE TLS PATH KEYFILE SUBJECT OUT [user:pw|-] [CERT KEY|- -] [MODE]");
	host = argv[1], port = argv[2], cafile = argv[3], tls = argv[4], path = argv[5], keyfile = argv[6],
	subject = argv[7], out = argv[8];
	if (argc > 9)
		auth = argv[9];
	if (argc > 11)
		ccert = argv[10], ckey = argv[11];
	if (argc > 12)
		mode = argv[12];

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL || SSL_CTX_load_verify_locations(ctx, cafile, NULL) != 1)
		die("CA file");
	SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
	if (strcmp(tls, "1.2") == 0) {
		SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
		SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION);
	} else {
		SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
	}
	if (strcmp(ccert, "-") != 0 && (SSL_CTX_use_certificate_file(ctx, ccert, SSL_FILETYPE_PEM) != 1 ||
					SSL_CTX_use_PrivateKey_file(ctx, ckey, SSL_FILETYPE_PEM) != 1))
		die("client certificate");
	memset(&sa, 0, sizeof sa);
	sa.sin_family = AF_INET;
	sa.sin_port = htons((unsigned short)strtoul(port, NULL, 10));
	if (inet_pton(AF_INET, host, &sa.sin_addr) != 1)
		die("HOST must be an IPv4 address");
	fd = socket(AF_INET, SOCK_STREAM, 0);
	if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof sa) != 0)
		die("connect");
	ssl = SSL_new(ctx);
	if (ssl == NULL || !SSL_set_fd(ssl, fd) || !SSL_set1_host(ssl, "localhost") ||
	    !SSL_set_tlsext_host_name(ssl, "localhost") || SSL_connect(ssl) != 1)
		die("TLS handshake");

	/* RFC 5929 s3.1 (client side: its own Finished came first in a full
	 * handshake); RFC 9266 s2 */
	if (SSL_version(ssl) >= TLS1_3_VERSION) {
		if (SSL_export_keying_material(ssl, cb, 32, "EXPORTER-Channel-Binding", 24, NULL, 0, 0) != 1)
			die("exporter");
		cblen = 32;
	} else {
		cblen = SSL_session_reused(ssl) ? SSL_get_peer_finished(ssl, cb, sizeof cb)
						: SSL_get_finished(ssl, cb, sizeof cb);
	}
	if (cblen == 0 || cblen > sizeof cb)
		die("no channel binding");
	if (strcmp(mode, "wrong") == 0)
		cb[0] ^= 1;
	EVP_EncodeBlock((unsigned char *)cpw, cb, (int)cblen);

	fp = fopen(keyfile, "r");
	pk = fp ? PEM_read_PrivateKey(fp, NULL, NULL, NULL) : NULL;
	if (fp)
		fclose(fp);
	if (pk == NULL)
		die("key file");
	xr = X509_REQ_new();
	subj = parse_subject(subject);
	if (xr == NULL || !X509_REQ_set_version(xr, 0) || !X509_REQ_set_subject_name(xr, subj) ||
	    !X509_REQ_set_pubkey(xr, pk))
		die("CSR");
	if (strcmp(mode, "none") != 0 &&
	    !X509_REQ_add1_attr_by_NID(xr, NID_pkcs9_challengePassword, MBSTRING_ASC, (unsigned char *)cpw, -1))
		die("challengePassword");
	if (!X509_REQ_sign(xr, pk, EVP_sha256()))
		die("CSR signature");
	dl = i2d_X509_REQ(xr, &der);
	if (dl <= 0 || (size_t)dl * 4 / 3 + 8 > sizeof b64)
		die("CSR DER");
	EVP_EncodeBlock((unsigned char *)b64, der, dl);

	authb64[0] = '\0';
	if (strcmp(auth, "-") != 0) {
		char a[512];

		if (strlen(auth) * 4 / 3 + 8 > sizeof a)
			die("user:password too long");
		EVP_EncodeBlock((unsigned char *)a, (const unsigned char *)auth, (int)strlen(auth));
		snprintf(authb64, sizeof authb64, "Authorization: Basic %s\r\n", a);
	}
	n = snprintf(req, sizeof req,
		     "POST %s HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/pkcs10\r\n"
		     "Content-Transfer-Encoding: base64\r\n%sContent-Length: %zu\r\nConnection: close\r\n\r\n%s",
		     path, authb64, strlen(b64), b64);
	if (n <= 0 || (size_t)n >= sizeof req || SSL_write(ssl, req, n) != n)
		die("write");
	for (;;) {
		int k = SSL_read(ssl, resp + rl, (int)(sizeof resp - 1 - rl));

		if (k <= 0)
			break;
		rl += (size_t)k;
		if (rl == sizeof resp - 1)
			break;
	}
	resp[rl] = '\0';
	{
		char *body = strstr(resp, "\r\n\r\n");
		int status = 0;

		if (strncmp(resp, "HTTP/1.", 7) != 0 || rl < 12 || body == NULL)
			die("no HTTP answer");
		status = (int)strtol(resp + 9, NULL, 10);
		body += 4;
		fp = fopen(out, "w");
		if (fp == NULL || fwrite(body, 1, rl - (size_t)(body - resp), fp) != rl - (size_t)(body - resp))
			die("output file");
		fclose(fp);
		printf("%d\n", status);
	}
	OPENSSL_free(der);
	X509_NAME_free(subj);
	X509_REQ_free(xr);
	EVP_PKEY_free(pk);
	SSL_free(ssl);
	SSL_CTX_free(ctx);
	close(fd);
	return 0;
}
