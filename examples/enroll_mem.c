/*
 * enroll_mem: library mode of Caramel enrollment (the phone case,
 * docs/enroll.md), with the public API only.
 *
 *   enroll_mem SERVER CA_PEM_FILE KEY_URI
 *
 * Reads the CA certificate the application ships (the only file it
 * reads), finds the token key named by KEY_URI or generates it (EC P-256),
 * enrolls it with an autosigning Caramel CA under a fresh UUID client id,
 * prints the client id and the certificate (PEM) to stdout, and stores the
 * certificate in the token next to the key.  It writes no file.
 *
 * PIN: $P11CERT_PIN (the library's default source).  PKCS#11 module:
 * $P11CERT_MODULE when set, else the library default (p11-kit proxy).
 * Exit 0 on success, 1 on failure (the library's detail on stderr), 64 on
 * a usage error.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11cert/enroll.h>
#include <p11cert/p11cert.h>

#define CA_PEM_MAX (64 * 1024)

/* The whole file as a NUL-terminated string; NULL on failure. */
static char *read_text(const char *path)
{
	FILE *fp = fopen(path, "rb");
	char *buf = NULL;

	if (fp == NULL)
		return NULL;
	buf = malloc(CA_PEM_MAX + 1);
	if (buf != NULL) {
		size_t len = fread(buf, 1, CA_PEM_MAX + 1, fp);
		if (ferror(fp) || len == 0 || len > CA_PEM_MAX) {
			free(buf);
			buf = NULL;
		} else {
			buf[len] = '\0';
		}
	}
	fclose(fp);
	return buf;
}

static int failed(p11c_ctx *ctx, const char *what, p11c_result r)
{
	const char *d = ctx != NULL ? p11c_ctx_detail(ctx) : "";

	fprintf(stderr, "enroll_mem: %s: %s\n", what, d[0] != '\0' ? d : p11c_strerror(r));
	return 1;
}

int main(int argc, char **argv)
{
	const char *server, *ca_file, *uri, *module = getenv("P11CERT_MODULE");
	char *ca_pem = NULL;
	p11c_ctx *ctx = NULL;
	p11c_key *key = NULL;
	p11c_enrollment e;
	X509 *cert = NULL;
	p11c_result r;
	int rc = 1;

	memset(&e, 0, sizeof e);
	if (argc != 4) {
		fprintf(stderr, "usage: enroll_mem SERVER CA_PEM_FILE KEY_URI\n");
		return 64;
	}
	server = argv[1];
	ca_file = argv[2];
	uri = argv[3];

	/* the CA certificate shipped with the application: read first, and
	 * the only file this program reads */
	ca_pem = read_text(ca_file);
	if (ca_pem == NULL) {
		fprintf(stderr, "enroll_mem: cannot read the CA certificate '%s'\n", ca_file);
		return 1;
	}

	if ((r = p11c_ctx_new(&ctx)) != P11C_OK) {
		rc = failed(ctx, "p11c_ctx_new", r);
		goto out;
	}
	if (module != NULL && module[0] != '\0' && (r = p11c_ctx_set_module(ctx, module)) != P11C_OK) {
		rc = failed(ctx, "PKCS#11 module", r);
		goto out;
	}
	/* PIN from $P11CERT_PIN: the library's default, nothing to set */
	if ((r = p11c_open(ctx, uri)) != P11C_OK) {
		rc = failed(ctx, "open the token", r);
		goto out;
	}
	r = p11c_key_find(ctx, uri, &key);
	if (r == P11C_ERR_NOT_FOUND)
		r = p11c_keygen(ctx, uri, P11C_KEY_EC_P256, 0, &key);
	if (r != P11C_OK) {
		rc = failed(ctx, "token key", r);
		goto out;
	}

	r = p11c_caramel_enroll_mem(ctx, key, server, ca_pem, NULL, 60000, &e);
	if (r != P11C_OK) {
		rc = failed(ctx, "enrollment", r);
		goto out;
	}
	printf("%s\n%s", e.client_id, e.cert_pem);
	if (fflush(stdout) != 0) {
		fprintf(stderr, "enroll_mem: cannot write to stdout\n");
		goto out;
	}

	/* the application's own storage: here, the token, next to the key */
	r = p11c_x509_parse((const unsigned char *)e.cert_pem, strlen(e.cert_pem), &cert);
	if (r != P11C_OK) {
		rc = failed(ctx, "parse the certificate", r);
		goto out;
	}
	if ((r = p11c_cert_store(ctx, key, cert)) != P11C_OK) {
		rc = failed(ctx, "store the certificate in the token", r);
		goto out;
	}
	rc = 0;
out:
	X509_free(cert);
	p11c_enrollment_clear(&e);
	p11c_key_free(&key);
	p11c_ctx_free(&ctx);
	free(ca_pem);
	return rc;
}
