/*
 * fuzz_est_server: p11ca's EST handlers (proto/est.c, proto/est_config.c,
 * through serve.c's ca_dispatch) on in-memory requests, against a real CA
 * (ca_open on a temporary folder with the fixture key, SQLite) with the
 * est.conf below: Basic and bootstrap-certificate authentication, channel
 * binding, pending approval, csrattrs extensions required.
 *
 * Input: one to four requests separated by the line "@@NEXT@@\n"; each is
 *   METHOD SP TARGET [SP FLAGS] LF BODY
 * FLAGS steer the harness, one letter each:
 *   a  Authorization: Basic with the right password   w  a wrong one
 *   i  a client certificate from the bootstrap CA (IDevID)
 *   r  a client certificate from another CA
 *   m  mutual TLS with the certificate of the last 200 enrollment
 *   2  a TLS 1.2 channel binding (tls-unique)   3  TLS 1.3 (tls-exporter)
 *   c  Content-Type: application/pkcs10         t  Content-Type: text/plain
 * A BODY "@CSR CN\n..." is replaced by the base64 of a CSR the harness
 * signs with the fixture client key for subject C=SE, O=Example, CN=CN,
 * whose challengePassword is the base64 channel binding (when 2 or 3).
 * Every input starts from an empty database and rate-limit table.
 * P11CERT_FUZZ_VERBOSE=1 prints each request's status.  Checked besides
 * the sanitizers: every request gets exactly one reply, and a 200
 * enrollment answer is a base64 certs-only PKCS#7 with a certificate our CA
 * signed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>

#include "fixtures.h"
#include "fuzz.h"
#include "proto/est.h"
#include "request.h"

#define MAX_REQUESTS 4
#define SEPARATOR "@@NEXT@@\n"
#define USER "fuzz"
#define PASSWORD "fuzz-password"

static const char *const est_conf =
	"rate-limit = 3\n"
	"[default]\nauth = basic, cert\nusers = est-users\nbootstrap-ca = ca.crt\nkey-type = ec:P-256\n"
	"[bound]\nauth = basic\nusers = est-users\nbinding = required\nkey-type = rsa:2048\n"
	"[pending]\nauth = cert\nbootstrap-ca = ca.crt\napproval = pending\nsubject-change = yes\n"
	"[exts]\nauth = basic\nusers = est-users\ncsrattrs-extensions = clientAuth, digitalSignature\n"
	"csrattrs-extensions-required = yes\n";

static const char *const files[] = {
	"ca.key", "ca.crt", "p11ca.conf", "est.conf", "est-users", "p11ca.db", "p11ca.db-wal", "p11ca.db-shm", NULL,
};

static struct {
	int ready, dirty, verbose;
	char dir[512];
	struct ca ca;
	struct ca_served srv;
	struct store_ops ops;
	const struct store_ops *real;
	EVP_PKEY *client_key;
	X509 *idevid, *rogue, *last;
} F;

static store_result w_req_add(store *st, const struct store_request *r, int64_t *id)
{
	F.dirty = 1;
	return F.real->req_add(st, r, id);
}

static store_result w_cert_add(store *st, const struct store_cert *c, int64_t now)
{
	F.dirty = 1;
	return F.real->cert_add(st, c, now);
}

static void die(const char *what)
{
	fprintf(stderr, "fuzz_est_server: setup: %s\n", what);
	abort();
}

static void in_dir(const char *name, const char *text)
{
	char *p = ca_path(F.dir, name);

	if (p == NULL)
		die(name);
	if (text == NULL)
		unlink(p);
	else if (p11c_file_write_atomic(p, text, strlen(text), 0600) != P11C_OK)
		die(name);
	free(p);
}

static void cleanup(void)
{
	size_t i;

	X509_free(F.last);
	X509_free(F.idevid);
	X509_free(F.rogue);
	EVP_PKEY_free(F.client_key);
	if (!F.ready)
		return;
	est_server_free(&F.srv.est);
	free(F.srv.ca_pem);
	ca_close(&F.ca);
	for (i = 0; files[i] != NULL; i++)
		in_dir(files[i], NULL);
	rmdir(F.dir);
	F.ready = 0;
}

/* A client certificate for the fixture client key, signed by key (the
 * CA's for the IDevID, its own for the rogue device). */
static X509 *client_cert(const X509_NAME *issuer, EVP_PKEY *key)
{
	X509 *x = X509_new();
	X509_NAME *n = X509_NAME_new();

	if (x == NULL || n == NULL ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_ASC, (const unsigned char *)"device-1", -1, -1, 0) ||
	    !X509_set_version(x, 2) || !ASN1_INTEGER_set(X509_get_serialNumber(x), 7) ||
	    !X509_set_subject_name(x, n) || !X509_set_issuer_name(x, issuer != NULL ? issuer : n) ||
	    !X509_gmtime_adj(X509_getm_notBefore(x), -60) || !X509_gmtime_adj(X509_getm_notAfter(x), 86400) ||
	    !X509_set_pubkey(x, F.client_key) || !X509_sign(x, key, EVP_sha256()))
		die("client certificate");
	X509_NAME_free(n);
	return x;
}

static void setup(void)
{
	struct ca_config flags;
	const char *base = getenv("P11CERT_FUZZ_TMP");
	unsigned char salt[EST_SALT_LEN], hash[EST_HASH_LEN];
	char line[256];
	size_t i, o;
	BIO *b;

	if (base == NULL)
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(F.dir, sizeof F.dir, "%s/p11ca-fuzz-est-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(F.dir) == NULL)
		die(strerror(errno));
	in_dir("ca.key", fixture_ca_key);
	in_dir("ca.crt", fixture_ca_crt);
	in_dir("p11ca.conf", "# fuzz_est_server\n");
	in_dir("est.conf", est_conf);
	/* few iterations: the fuzzer checks many passwords */
	memset(salt, 0x5a, sizeof salt);
	if (PKCS5_PBKDF2_HMAC(PASSWORD, (int)strlen(PASSWORD), salt, sizeof salt, 1000, EVP_sha256(), sizeof hash,
			      hash) != 1)
		die("PBKDF2");
	o = (size_t)snprintf(line, sizeof line, "%s:pbkdf2-sha256:1000:", USER);
	for (i = 0; i < sizeof salt; i++)
		o += (size_t)snprintf(line + o, sizeof line - o, "%02x", salt[i]);
	line[o++] = ':';
	for (i = 0; i < sizeof hash; i++)
		o += (size_t)snprintf(line + o, sizeof line - o, "%02x", hash[i]);
	snprintf(line + o, sizeof line - o, "\n");
	in_dir("est-users", line);
	ca_config_defaults(&flags);
	if (ca_open(&F.ca, F.dir, &flags, 1) != 0)
		die("ca_open");
	ca_config_free(&flags);
	F.real = F.ca.so;
	F.ops = *F.real;
	F.ops.req_add = w_req_add;
	F.ops.cert_add = w_cert_add;
	F.ca.so = &F.ops;
	F.srv.ca = &F.ca;
	if ((F.srv.ca_pem = ca_x509_pem(F.ca.cert)) == NULL)
		die("ca_x509_pem");
	F.srv.ca_pem_len = strlen(F.srv.ca_pem);
	b = BIO_new_mem_buf(fixture_client_key, -1);
	F.client_key = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
	BIO_free(b);
	if (F.client_key == NULL)
		die("client key");
	F.idevid = client_cert(X509_get_subject_name(F.ca.cert), F.ca.key);
	F.rogue = client_cert(NULL, F.client_key);
	F.verbose = getenv("P11CERT_FUZZ_VERBOSE") != NULL;
	F.ready = 1;
	atexit(cleanup);
}

static void fresh_state(void)
{
	char *p;

	/* est.conf again: a fresh rate-limit table */
	est_server_free(&F.srv.est);
	if (est_server_load(F.dir, &F.srv.est) != 0 || F.srv.est == NULL)
		die("est.conf");
	X509_free(F.last);
	F.last = NULL;
	if (!F.dirty)
		return;
	F.real->close(&F.ca.st);
	in_dir("p11ca.db", NULL);
	in_dir("p11ca.db-wal", NULL);
	in_dir("p11ca.db-shm", NULL);
	p = ca_path(F.dir, "p11ca.db");
	if (p == NULL || F.real->open(&F.ca.st, p) != STORE_OK)
		die("reopening the database");
	free(p);
	F.dirty = 0;
}

/* 32 bytes standing for the connection's binding */
static const unsigned char binding[32] = "tls-binding-of-this-connection!";

/* "@CSR CN": base64 of a CSR signed with the client key; NULL otherwise */
static char *harness_csr(const unsigned char *body, size_t len, int bound)
{
	const unsigned char *nl;
	char cn[80], *cpw = NULL, *out = NULL;
	X509_REQ *r = NULL;
	X509_NAME *n = NULL;
	unsigned char *der = NULL;
	int dl;
	size_t cl;

	if (len < 5 || memcmp(body, "@CSR ", 5) != 0)
		return NULL;
	nl = memchr(body, '\n', len);
	cl = (nl != NULL ? (size_t)(nl - body) : len) - 5;
	if (cl == 0 || cl >= sizeof cn)
		return NULL;
	memcpy(cn, body + 5, cl);
	cn[cl] = '\0';
	r = X509_REQ_new();
	n = X509_NAME_new();
	if (r == NULL || n == NULL || !X509_NAME_add_entry_by_txt(n, "C", MBSTRING_ASC, (const unsigned char *)"SE", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(n, "O", MBSTRING_ASC, (const unsigned char *)"Example", -1, -1, 0) ||
	    !X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0) ||
	    !X509_REQ_set_subject_name(r, n) || !X509_REQ_set_pubkey(r, F.client_key))
		goto out;
	if (bound && ((cpw = est_b64_line(binding, sizeof binding)) == NULL ||
		      !X509_REQ_add1_attr_by_NID(r, NID_pkcs9_challengePassword, MBSTRING_ASC,
						 (const unsigned char *)cpw, -1)))
		goto out;
	if (X509_REQ_sign(r, F.client_key, EVP_sha256()) <= 0 || (dl = i2d_X509_REQ(r, &der)) <= 0)
		goto out;
	out = est_b64_encode(der, (size_t)dl, NULL);
out:
	OPENSSL_free(der);
	free(cpw);
	X509_NAME_free(n);
	X509_REQ_free(r);
	ERR_clear_error();
	return out;
}

/* A 200 enrollment answer: base64 certs-only PKCS#7, one certificate our
 * CA signed.  Kept for 'm'. */
static void check_enrolled(const unsigned char *b, size_t len)
{
	unsigned char *der = NULL;
	const unsigned char *q;
	size_t n = 0;
	PKCS7 *p7 = NULL;
	X509 *x;

	if (est_b64_decode(b, len, 65536, &der, &n) != 0 || (q = der, p7 = d2i_PKCS7(NULL, &q, (long)n)) == NULL ||
	    !PKCS7_type_is_signed(p7) || sk_X509_num(p7->d.sign->cert) != 1 ||
	    X509_verify((x = sk_X509_value(p7->d.sign->cert, 0)), F.ca.key) != 1) {
		fprintf(stderr, "fuzz_est_server: a 200 enrollment without a certs-only certificate of our CA\n");
		abort();
	}
	X509_free(F.last);
	F.last = X509_dup(x);
	PKCS7_free(p7);
	free(der);
}

static void one_request(const unsigned char *d, size_t n)
{
	const unsigned char *nl = memchr(d, '\n', n), *body;
	char *line = NULL, *target, *flags = "", *csr = NULL, auth[160], user[100];
	const char *hdrs[7];
	size_t l = nl != NULL ? (size_t)(nl - d) : n, blen, nh = 0;
	httpd_req *r = NULL;
	int status;

	if ((line = strndup((const char *)d, l)) == NULL || strlen(line) != l || (target = strchr(line, ' ')) == NULL)
		goto out;
	*target++ = '\0';
	if ((flags = strchr(target, ' ')) != NULL)
		*flags++ = '\0';
	else
		flags = "";
	body = nl != NULL ? nl + 1 : d + n;
	blen = (size_t)(d + n - body);
	if ((csr = harness_csr(body, blen, strpbrk(flags, "23") != NULL)) != NULL) {
		body = (const unsigned char *)csr;
		blen = strlen(csr);
	}
	if (blen > SERVE_MAX_BODY)
		goto out; /* httpd answers 413 itself */
	if (strpbrk(flags, "aw") != NULL) {
		snprintf(user, sizeof user, "%s:%s", USER, strchr(flags, 'a') != NULL ? PASSWORD : "wrong");
		snprintf(auth, sizeof auth, "Basic ");
		EVP_EncodeBlock((unsigned char *)auth + 6, (const unsigned char *)user, (int)strlen(user));
		hdrs[nh++] = "Authorization";
		hdrs[nh++] = auth;
	}
	if (strpbrk(flags, "ct") != NULL) {
		hdrs[nh++] = "Content-Type";
		hdrs[nh++] = strchr(flags, 'c') != NULL ? "application/pkcs10" : "text/plain";
	}
	hdrs[nh] = NULL;
	r = httpd_req_mem_new(line, target, hdrs, body, blen, "192.0.2.9:40000", LISTENER_MAIN);
	if (r == NULL)
		goto out;
	if (strchr(flags, 'i') != NULL)
		httpd_req_mem_set_client_cert(r, F.idevid);
	if (strchr(flags, 'r') != NULL)
		httpd_req_mem_set_client_cert(r, F.rogue);
	if (strchr(flags, 'm') != NULL)
		httpd_req_mem_set_peer_cert(r, F.last);
	if (strpbrk(flags, "23") != NULL)
		httpd_req_mem_set_binding(r, binding, sizeof binding, strchr(flags, '3') != NULL);
	if (httpd_req_mem_status(r) == 0) {
		ca_dispatch(&F.srv, r);
		if (httpd_req_mem_status(r) == 0) {
			fprintf(stderr, "fuzz_est_server: no reply to %s %s\n", line, target);
			abort();
		}
	}
	status = httpd_req_mem_status(r);
	if (F.verbose)
		fprintf(stderr, "fuzz_est_server: %s %s [%s] -> %d %s\n", line, target, flags, status,
			httpd_req_mem_detail(r));
	if (status == 200 && strstr(httpd_req_path(r), "enroll") != NULL && strcmp(line, "POST") == 0) {
		const unsigned char *rb = httpd_req_mem_reply(r, &l);

		check_enrolled(rb, l);
	}
out:
	httpd_req_mem_free(&r);
	free(csr);
	free(line);
	ERR_clear_error();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!F.ready)
		setup();
	fresh_state();
	fuzz_each(data, size, MAX_REQUESTS, SEPARATOR, one_request);
	return 0;
}
