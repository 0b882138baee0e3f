/*
 * fuzz_server: p11ca's request handlers (proto/caramel.c, proto/sharedtoken.c,
 * proto/sharedtoken_renew.c, through serve.c's ca_dispatch) on
 * in-memory requests (httpd_req_mem_new, which also decodes the target
 * like the TLS server), against a real CA: ca_open on a temporary folder
 * with a file key (tests/fuzz/fixtures.h), p11ca.conf and a SQLite store.
 *
 * Input: one to four requests separated by the line "@@NEXT@@\n"; each is
 *   METHOD SP TARGET LF
 *   "Name: value" LF ...          header lines, at most 32
 *   LF
 *   BODY                          everything up to the separator or the end
 * Header lines starting with '@' steer the harness and are not passed on:
 *   "@listener: token"  the request came on the token listener
 *   "@peer: ADDR:PORT"  the client address (default 192.0.2.1:40000)
 *   "@mtls"             the client presented (and the TLS layer verified) the
 *                       certificate of the last 200 answer of this input
 * Substitutions, so that the fuzzer need not compute digests:
 *   "@SHA@" in TARGET   the SHA-256 hex of BODY (Caramel addresses)
 *   "@CL@" as a value   the length of BODY (Content-Length)
 *   "@HMAC@" in BODY    the request HMAC (FUZZ_TOKEN) over the public key
 *                       of the CSR in that JSON body
 * Every input starts from an empty database and rate-limit table, so a
 * crash replays alone.  P11CERT_FUZZ_VERBOSE=1 prints each request's
 * status.  Checked besides the sanitizers: every request gets
 * exactly one reply, and a 200 carries a certificate our CA signed.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include "fixtures.h"
#include "fuzz.h"
#include "request.h"

#define MAX_REQUESTS 4
#define MAX_HEADERS 32
#define SEPARATOR "@@NEXT@@\n"
#define DEFAULT_PEER "192.0.2.1:40000"

static const char *const conf_text =
	"# written by fuzz_server\n"
	"autosign = uuid\n"
	"renew-mtls = yes\n"
	"san-patterns = DNS:*.example.com, IP:192.0.2.*\n"
	"token-dn-suffix = OU=NIFI\n"
	"token-file = token\n"
	"token-rate-limit = 3\n";

static const char *const dir_files[] = {
	"ca.key", "ca.crt", "p11ca.conf", "token", "p11ca.db", "p11ca.db-wal", "p11ca.db-shm", NULL,
};

static struct {
	int ready;
	char dir[512];
	struct ca ca;
	struct ca_served srv;
	struct store_ops ops;
	const struct store_ops *real;
	int dirty;
	X509 *last_cert;	/* from the last 200 answer of this input */
	int verbose;		/* P11CERT_FUZZ_VERBOSE set: one line per request */
} F;

/* ---- the CA ---- */

static store_result w_req_add(store *st, const struct store_request *r, int64_t *id)
{
	F.dirty = 1;
	return F.real->req_add(st, r, id);
}

static store_result w_req_set_state(store *st, int64_t id, req_state s, req_lifetime lt, int64_t now)
{
	F.dirty = 1;
	return F.real->req_set_state(st, id, s, lt, now);
}

static store_result w_cert_add(store *st, const struct store_cert *c, int64_t now)
{
	F.dirty = 1;
	return F.real->cert_add(st, c, now);
}

static store_result w_cert_revoke(store *st, const char *serial, int reason, int64_t when)
{
	F.dirty = 1;
	return F.real->cert_revoke(st, serial, reason, when);
}

static void unlink_in_dir(const char *name)
{
	char *p = ca_path(F.dir, name);

	if (p != NULL)
		unlink(p);
	free(p);
}

static void cleanup(void)
{
	size_t i;

	X509_free(F.last_cert);
	F.last_cert = NULL;
	if (!F.ready)
		return;
	ca_close(&F.ca);
	if (F.srv.token != NULL)
		OPENSSL_cleanse(F.srv.token, F.srv.token_len);
	free(F.srv.token);
	ratelimit_free(&F.srv.rl);
	free(F.srv.ca_pem);
	for (i = 0; dir_files[i] != NULL; i++)
		unlink_in_dir(dir_files[i]);
	rmdir(F.dir);
	F.ready = 0;
}

static void die(const char *what)
{
	fprintf(stderr, "fuzz_server: setup: %s\n", what);
	abort();
}

static void put_file(const char *name, const char *text, unsigned mode)
{
	char *p = ca_path(F.dir, name);

	if (p == NULL || p11c_file_write_atomic(p, text, strlen(text), mode) != P11C_OK)
		die(name);
	free(p);
}

static void setup(void)
{
	struct ca_config flags;
	const char *base = getenv("P11CERT_FUZZ_TMP");

	if (base == NULL)	/* tmpfs: SQLite's fsyncs cost nothing there */
		base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
	snprintf(F.dir, sizeof F.dir, "%s/p11ca-fuzz-XXXXXX", base != NULL ? base : "/tmp");
	if (mkdtemp(F.dir) == NULL)
		die(strerror(errno));
	put_file("ca.key", fixture_ca_key, 0600);
	put_file("ca.crt", fixture_ca_crt, 0644);
	put_file("p11ca.conf", conf_text, 0600);
	put_file("token", FUZZ_TOKEN "\n", 0600);
	ca_config_defaults(&flags);
	if (ca_open(&F.ca, F.dir, &flags, 1) != 0)
		die("ca_open");
	ca_config_free(&flags);
	/* the real store, with writes noted so that the next input gets a
	 * fresh database */
	F.real = F.ca.so;
	F.ops = *F.real;
	F.ops.req_add = w_req_add;
	F.ops.req_set_state = w_req_set_state;
	F.ops.cert_add = w_cert_add;
	F.ops.cert_revoke = w_cert_revoke;
	F.ca.so = &F.ops;
	/* what ca_serve sets up, without listeners */
	F.srv.ca = &F.ca;
	if ((F.srv.ca_pem = ca_x509_pem(F.ca.cert)) == NULL)
		die("ca_x509_pem");
	F.srv.ca_pem_len = strlen(F.srv.ca_pem);
	if ((F.srv.token = (unsigned char *)strdup(FUZZ_TOKEN)) == NULL)
		die("token");
	F.srv.token_len = strlen(FUZZ_TOKEN);
	F.srv.token_on_main = F.ca.cfg.token_listen == NULL;
	F.verbose = getenv("P11CERT_FUZZ_VERBOSE") != NULL;
	F.ready = 1;
	atexit(cleanup);
}

static void fresh_state(void)
{
	char *p;

	/* an empty rate-limit table, with the server's defaults */
	ratelimit_free(&F.srv.rl);
	F.srv.rl = ratelimit_new((unsigned)F.ca.cfg.token_rate_limit, (unsigned)F.ca.cfg.token_rate_global, NULL);
	X509_free(F.last_cert);
	F.last_cert = NULL;
	if (!F.dirty)
		return;
	F.real->close(&F.ca.st);
	unlink_in_dir("p11ca.db");
	unlink_in_dir("p11ca.db-wal");
	unlink_in_dir("p11ca.db-shm");
	p = ca_path(F.dir, "p11ca.db");
	if (p == NULL || F.real->open(&F.ca.st, p) != STORE_OK)
		die("reopening the database");
	free(p);
	F.dirty = 0;
}

/* ---- input ---- */

static const unsigned char *find(const unsigned char *h, size_t hl, const char *n)
{
	return memmem(h, hl, n, strlen(n));
}

/* in with every pat replaced by rep; NUL-terminated, *outlen without it. */
static char *replace_all(const unsigned char *in, size_t len, const char *pat, const char *rep,
			 size_t *outlen)
{
	size_t pl = strlen(pat), rl = strlen(rep), n = 0, o = 0, i;
	const unsigned char *p = in, *q;
	char *out;

	for (q = in; (q = find(q, len - (size_t)(q - in), pat)) != NULL; q += pl)
		n++;
	if ((out = malloc(len - n * pl + n * rl + 1)) == NULL)
		return NULL;
	while ((q = find(p, len - (size_t)(p - in), pat)) != NULL) {
		i = (size_t)(q - p);
		memcpy(out + o, p, i);
		o += i;
		memcpy(out + o, rep, rl);
		o += rl;
		p = q + pl;
	}
	memcpy(out + o, p, len - (size_t)(p - in));
	o += len - (size_t)(p - in);
	out[o] = '\0';
	*outlen = o;
	return out;
}

/* The request HMAC for the CSR inside a token JSON body, or "". */
static void token_hmac_for(const char *body, size_t len, char out[64])
{
	char *hmac = NULL, *csr = NULL;
	BIO *b = NULL;
	X509_REQ *req = NULL;
	EVP_PKEY *pk;

	out[0] = '\0';
	if (p11c_token_request_parse(body, len, &hmac, &csr, NULL, 0) != P11C_OK)
		goto out;
	b = BIO_new_mem_buf(csr, -1);
	req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	pk = req ? X509_REQ_get0_pubkey(req) : NULL;
	if (pk == NULL || p11c_token_hmac((const unsigned char *)FUZZ_TOKEN, strlen(FUZZ_TOKEN), pk, out,
					  64) != P11C_OK)
		out[0] = '\0';
out:
	X509_REQ_free(req);
	BIO_free(b);
	free(hmac);
	free(csr);
	ERR_clear_error();
}

/* A certificate in a 200 answer: PEM, signed by our CA.  Kept for @mtls. */
static void check_cert_pem(const char *pem, size_t len)
{
	BIO *b = BIO_new_mem_buf(pem, (int)len);
	X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;

	BIO_free(b);
	if (x == NULL || X509_verify(x, F.ca.key) != 1) {
		fprintf(stderr, "fuzz_server: a 200 answer without a certificate of our CA\n");
		abort();
	}
	X509_free(F.last_cert);
	F.last_cert = x;
}

static void one_request(const unsigned char *d, size_t n)
{
	const unsigned char *nl, *end = d + n, *body;
	char *line = NULL, *target = NULL, *hstore[2 * MAX_HEADERS], *bodysub = NULL, *t2 = NULL;
	const char *hdrs[2 * MAX_HEADERS + 1], *method, *peer = DEFAULT_PEER;
	char peerbuf[64], sha[65], clen[32], hmac[64];
	size_t nh = 0, i, blen, l;
	int listener = LISTENER_MAIN, mtls = 0, status;
	httpd_req *r = NULL;

	memset(hstore, 0, sizeof hstore);
	/* request line */
	nl = memchr(d, '\n', n);
	l = nl != NULL ? (size_t)(nl - d) : n;
	if ((line = strndup((const char *)d, l)) == NULL || strlen(line) != l)
		goto out;	/* a NUL: no HTTP request line has one */
	if ((target = strchr(line, ' ')) == NULL)
		goto out;
	*target++ = '\0';
	method = line;
	d = nl != NULL ? nl + 1 : end;
	/* header lines */
	while (d < end) {
		char *h, *v;

		nl = memchr(d, '\n', (size_t)(end - d));
		l = nl != NULL ? (size_t)(nl - d) : (size_t)(end - d);
		if (l == 0) {
			d++;
			break;
		}
		h = strndup((const char *)d, l);
		d = nl != NULL ? nl + 1 : end;
		if (h == NULL || strlen(h) != l) {
			free(h);
			continue;
		}
		if (h[0] == '@') {
			if (strcmp(h, "@listener: token") == 0)
				listener = LISTENER_TOKEN;
			else if (strncmp(h, "@peer: ", 7) == 0) {
				snprintf(peerbuf, sizeof peerbuf, "%.63s", h + 7);
				peer = peerbuf;
			}
			else if (strcmp(h, "@mtls") == 0)
				mtls = 1;
			free(h);
			continue;
		}
		if (nh == MAX_HEADERS || (v = strchr(h, ':')) == NULL) {
			free(h);
			continue;
		}
		*v++ = '\0';
		v += strspn(v, " \t");
		hstore[2 * nh] = h;
		hdrs[2 * nh] = h;
		hdrs[2 * nh + 1] = v;
		nh++;
	}
	hdrs[2 * nh] = NULL;
	body = d;
	blen = (size_t)(end - d);
	if (find(body, blen, "@HMAC@") != NULL) {
		token_hmac_for((const char *)body, blen, hmac);
		if (hmac[0] != '\0') {
			if ((bodysub = replace_all(body, blen, "@HMAC@", hmac, &blen)) == NULL)
				goto out;
			body = (const unsigned char *)bodysub;
		}
	}
	if (blen > SERVE_MAX_BODY)
		goto out;	/* httpd answers 413 itself */
	p11c_sha256_hex(body, blen, sha);
	if (strstr(target, "@SHA@") != NULL) {
		if ((t2 = replace_all((const unsigned char *)target, strlen(target), "@SHA@", sha, &l)) == NULL)
			goto out;
		target = t2;
	}
	snprintf(clen, sizeof clen, "%zu", blen);
	for (i = 0; i < nh; i++)
		if (strcmp(hdrs[2 * i + 1], "@CL@") == 0)
			hdrs[2 * i + 1] = clen;

	r = httpd_req_mem_new(method, target, hdrs, body, blen, peer, listener);
	if (r == NULL)
		goto out;	/* evhttp would have refused it */
	if (mtls)
		httpd_req_mem_set_peer_cert(r, F.last_cert);
	if (httpd_req_mem_status(r) == 0) {
		ca_dispatch(&F.srv, r); /* serve.c's dispatch */
		if (httpd_req_mem_status(r) == 0) {
			fprintf(stderr, "fuzz_server: the handler did not reply to %s %s\n", method, target);
			abort();
		}
	}
	status = httpd_req_mem_status(r);
	if (F.verbose)
		fprintf(stderr, "fuzz_server: %s %s -> %d %s\n", method, target, status, httpd_req_mem_detail(r));
	if (status == 200 && strcmp(httpd_req_method(r), "HEAD") != 0) {
		const char *ct = httpd_req_mem_reply_header(r, "Content-Type");
		const unsigned char *rb = httpd_req_mem_reply(r, &l);

		if (ct != NULL && strcmp(ct, "application/octet-stream") == 0) {
			check_cert_pem((const char *)rb, l);	/* Caramel GET */
		} else if (ct != NULL && strcmp(ct, "application/json") == 0) {
			char *rh = NULL, *rc = NULL, *re = NULL;

			/* /renew answers carry no HMAC (mTLS, no shared token) */
			if (p11c_token_response_parse((const char *)rb, l, &rh, &rc, &re) != P11C_OK ||
			    (rh == NULL && strcmp(httpd_req_path(r), "/renew") != 0) || rc == NULL) {
				fprintf(stderr, "fuzz_server: a token 200 without hmac and certificate\n");
				abort();
			}
			check_cert_pem(rc, strlen(rc));
			free(rh);
			free(rc);
			free(re);
		}
	}
out:
	httpd_req_mem_free(&r);
	for (i = 0; i < 2 * MAX_HEADERS; i += 2)
		free(hstore[i]);
	if (bodysub != NULL)
		OPENSSL_clear_free(bodysub, blen + 1);
	free(t2);
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
