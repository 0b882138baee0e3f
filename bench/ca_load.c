/*
 * ca_load: Caramel enrollment load generator for p11ca (bench/, not a test).
 *
 *   ca_load --url https://127.0.0.1:PORT --cacert CA.crt --clients N --seconds S
 *           [--no-reuse | --conn-per-request] [--key ec|rsa] [--rate-hint R]
 *
 * Several servers (p11ca instances on one database): --url may be given up
 * to 8 times; client i talks to the (i mod n)-th URL only, so the clients
 * are spread evenly and a kept-alive connection stays with its instance.
 * --server-pid may be given up to 8 times too: the server CPU and memory
 * figures are then the sums over those processes.
 *
 * N threads, one libcurl easy handle each.  Before the clock starts every
 * thread makes its CSRs in memory: a fresh key each (EC P-256; RSA 2048
 * keys are slow to make, so --key rsa reuses one key per thread), subject =
 * the CA's C, ST, L, O (read from --cacert, in its order) + CN = a random
 * UUID, so that p11ca with `autosign = uuid` signs at once.  Canonical PEM
 * (PEM_write_bio_X509_REQ through p11c_caramel_csr_pem), path = its
 * SHA-256.
 *
 * One enrollment = POST /{sha256} (expect 202) then GET /{sha256} (expect
 * 200 and a PEM certificate), timed with CLOCK_MONOTONIC from before the
 * POST to after the GET.  Connections:
 *   default             kept alive across enrollments (one TLS handshake
 *                       per thread, or after the server closed one)
 *   --no-reuse          a fresh connection per enrollment (POST and GET
 *                       share it), closed after the GET
 *   --conn-per-request  a fresh connection per request, as the p11cert CLI
 *                       does (one easy handle per request)
 * TLS session resumption is off in every mode (a client process starting
 * afresh has no session to resume).  The chain is verified against
 * --cacert, and the host name too unless --no-verify-host (for a p11ca
 * whose TLS certificate is the CA certificate made with --ca-hostname,
 * which names no loopback address).
 *
 * Output: one line on stdout
 *   clients=N seconds=S enrollments=E rate=R p50_ms=X p99_ms=Y errors=K
 *   (+ mode, key, elapsed, refills, and CPU use over the timed part in %
 *   of one core: client_cpu of this process; with --server-pid also
 *   server_cpu of that process, other_cpu of everything else on the
 *   machine (from /proc/stat: a busy neighbour shows here), and the
 *   server's VmRSS in kB at the start and the end of the timed part, its
 *   highest VmRSS sampled every 20 ms during it, and its VmHWM at the end;
 *   with several URLs or server PIDs also servers= and server_pids=)
 * Exit 0 when the run completed (errors are counted, not fatal), 1 when it
 * could not start, 64 on usage errors.
 *
 * EST (RFC 7030, p11ca's /.well-known/est/): with --est, one enrollment is
 * one POST /.well-known/est/simpleenroll (base64 DER PKCS#10, expect 200
 * and a base64 certs-only PKCS#7), authenticated by HTTP Basic
 * (--est-user NAME --est-password-file FILE: the password never in argv)
 * or by a client certificate (--est-cert FILE --est-key FILE, e.g. an
 * IDevID of the profile's bootstrap CA); the profile must sign at once
 * (approval = auto, no channel binding).
 *
 * --probe PATH [--probe-interval-ms N]: one more client, not counted in
 * --clients, GETs PATH (e.g. /root.crt) every N ms (default 10) on one
 * kept-alive connection to the first URL during the timed part, and the
 * line gets probe_n=, probe_p50_ms=, probe_p99_ms=, probe_max_ms= and
 * probe_errors= (a status other than 200 is an error): what a client that
 * does not enroll sees while the others do (issue 13: root.crt under
 * signing load).
 *
 * Bounded: the run stops starting enrollments after S seconds; a request
 * in flight then has at most --timeout seconds (default 10).  Loopback
 * URLs only.
 */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <curl/curl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>

#include <p11cert/proto.h>

#include "bench_util.h"

#define MAX_CLIENTS	1024
#define MAX_BODY	(64 * 1024)
#define MIN_CSRS	16
#define MAX_ERR_LINES	5
#define MAX_SERVERS	8

enum conn_mode { MODE_REUSE, MODE_PER_ENROLLMENT, MODE_PER_REQUEST };

struct csr {
	char *pem;
	size_t len;
	char sha[65];
};

struct opts {
	const char *urls[MAX_SERVERS];
	int nurl;
	const char *cacert;
	int clients;
	double seconds;
	enum conn_mode mode;
	int rsa;
	double rate_hint;	/* expected enrollments/s, sizes the CSR pool */
	int verify_host;
	long timeout_s;
	long server_pids[MAX_SERVERS];
	int npid;		/* 0: none */
	int est;		/* --est: POST /.well-known/est/simpleenroll */
	const char *est_user, *est_cert, *est_key, *est_label;
	char est_pass[256];
	const char *probe;	/* --probe PATH */
	long probe_ms;
};

struct shared {
	const struct opts *o;
	X509_NAME *subject_prefix;	/* C, ST, L, O of the CA */
	pthread_barrier_t ready;
	struct timespec deadline;
	atomic_int err_lines;
	atomic_int setup_failed;
	atomic_int finished;	/* workers done with the timed part */
};

struct worker {
	int id;
	const char *url;	/* urls[id % nurl] */
	struct shared *sh;
	pthread_t th;
	struct csr *csrs;
	size_t ncsr, next;
	EVP_PKEY *rsa_key;	/* --key rsa: one per thread */
	CURL *curl;
	struct curl_slist *post_hdrs;
	char *body;
	size_t body_len;
	int body_overflow;
	double *lat;		/* ms, one per successful enrollment */
	size_t nlat, caplat;
	long enrollments, errors, refills;
};

static const char *prog = "ca_load";

static void usage(void)
{
	fprintf(stderr,
		"usage: %s --url https://127.0.0.1:PORT [--url ...] --cacert CA.crt --clients N --seconds S\n"
		"          [--no-reuse | --conn-per-request] [--key ec|rsa] [--rate-hint R] [--timeout T]\n"
		"          [--no-verify-host] [--server-pid PID [--server-pid PID ...]]\n"
		"          [--est [--est-label L] [--est-user NAME --est-password-file FILE |\n"
		"                                  --est-cert FILE --est-key FILE]]\n"
		"          [--probe PATH [--probe-interval-ms N]]\n",
		prog);
	exit(64);
}

static void report_error(struct worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void report_error(struct worker *w, const char *fmt, ...)
{
	va_list ap;
	char msg[512];

	w->errors++;
	if (atomic_fetch_add(&w->sh->err_lines, 1) >= MAX_ERR_LINES)
		return;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof msg, fmt, ap);
	va_end(ap);
	fprintf(stderr, "%s: client %d: %s\n", prog, w->id, msg);	/* one write */
}

/* ---- CSRs ---------------------------------------------------------------- */

/* The CA subject's C, ST, L, O entries, in the CA's order. */
static X509_NAME *subject_prefix(const char *cacert)
{
	FILE *fp = fopen(cacert, "r");
	X509 *ca = fp ? PEM_read_X509(fp, NULL, NULL, NULL) : NULL;
	X509_NAME *in, *out = NULL;
	int i;

	if (fp != NULL)
		fclose(fp);
	if (ca == NULL) {
		fprintf(stderr, "%s: cannot read a PEM certificate from %s\n", prog, cacert);
		return NULL;
	}
	in = X509_get_subject_name(ca);
	out = X509_NAME_new();
	for (i = 0; out != NULL && i < X509_NAME_entry_count(in); i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(in, i);
		int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));

		if (nid != NID_countryName && nid != NID_stateOrProvinceName &&
		    nid != NID_localityName && nid != NID_organizationName)
			continue;
		if (!X509_NAME_add_entry(out, e, -1, 0)) {
			X509_NAME_free(out);
			out = NULL;
		}
	}
	X509_free(ca);
	return out;
}

static void uuid4(char out[37])
{
	unsigned char b[16];
	int i, o = 0;

	if (RAND_bytes(b, sizeof b) != 1)
		abort();
	b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
	b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
	for (i = 0; i < 16; i++) {
		if (i == 4 || i == 6 || i == 8 || i == 10)
			out[o++] = '-';
		o += snprintf(out + o, 3, "%02x", b[i]);
	}
	out[o] = '\0';
}

static int make_csr(struct worker *w, struct csr *c)
{
	EVP_PKEY *key = NULL;
	X509_REQ *req = NULL;
	X509_NAME *name = NULL;
	char cn[37];
	int ok = 0;

	memset(c, 0, sizeof *c);
	if (w->sh->o->rsa) {
		if (w->rsa_key == NULL && (w->rsa_key = EVP_RSA_gen(2048)) == NULL)
			goto out;
		key = w->rsa_key;
		EVP_PKEY_up_ref(key);
	} else if ((key = EVP_EC_gen("P-256")) == NULL) {
		goto out;
	}
	uuid4(cn);
	if ((name = X509_NAME_dup(w->sh->subject_prefix)) == NULL ||
	    !X509_NAME_add_entry_by_NID(name, NID_commonName, MBSTRING_ASC, (unsigned char *)cn, -1, -1, 0))
		goto out;
	if ((req = X509_REQ_new()) == NULL || !X509_REQ_set_version(req, 0) ||
	    !X509_REQ_set_subject_name(req, name) || !X509_REQ_set_pubkey(req, key) ||
	    X509_REQ_sign(req, key, EVP_sha256()) <= 0)
		goto out;
	if (w->sh->o->est) {
		/* the EST body: base64 of the DER (RFC 7030 s4.2.1) */
		unsigned char *der = NULL;
		int dl = i2d_X509_REQ(req, &der);

		if (dl <= 0 || (c->pem = malloc(4 * (((size_t)dl + 2) / 3) + 1)) == NULL) {
			OPENSSL_free(der);
			goto out;
		}
		c->len = (size_t)EVP_EncodeBlock((unsigned char *)c->pem, der, dl);
		OPENSSL_free(der);
	} else if (p11c_caramel_csr_pem(req, &c->pem, &c->len) != P11C_OK) {
		goto out;
	}
	p11c_sha256_hex(c->pem, c->len, c->sha);
	ok = 1;
out:
	X509_REQ_free(req);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	return ok ? 0 : -1;
}

/* Fill the pool with n new CSRs (the used ones are freed). */
static int make_csrs(struct worker *w, size_t n)
{
	size_t i;

	for (i = 0; i < w->ncsr; i++)
		free(w->csrs[i].pem);
	free(w->csrs);
	w->ncsr = w->next = 0;
	if ((w->csrs = calloc(n, sizeof *w->csrs)) == NULL)
		return -1;
	for (i = 0; i < n; i++) {
		if (make_csr(w, &w->csrs[i]) != 0)
			return -1;
		w->ncsr++;
	}
	return 0;
}

/* ---- HTTP ---------------------------------------------------------------- */

static size_t on_body(char *p, size_t sz, size_t n, void *ud)
{
	struct worker *w = ud;
	size_t len = sz * n;

	if (w->body_len + len > MAX_BODY) {
		w->body_overflow = 1;
		return 0;
	}
	memcpy(w->body + w->body_len, p, len);
	w->body_len += len;
	return len;
}

static int setup_curl(struct worker *w)
{
	const struct opts *o = w->sh->o;
	CURL *c = curl_easy_init();

	if (c == NULL)
		return -1;
	w->curl = c;
	if ((w->body = malloc(MAX_BODY + 1)) == NULL)
		return -1;
	w->post_hdrs = curl_slist_append(NULL, o->est ? "Content-Type: application/pkcs10"
						     : "Content-Type: application/octet-stream");
	if (w->post_hdrs == NULL)
		return -1;
	w->post_hdrs = curl_slist_append(w->post_hdrs, "Expect:");	/* as p11cert */
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "https");
	curl_easy_setopt(c, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
	curl_easy_setopt(c, CURLOPT_CAINFO, o->cacert);
	curl_easy_setopt(c, CURLOPT_CAPATH, NULL);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, o->verify_host ? 2L : 0L);
	curl_easy_setopt(c, CURLOPT_SSL_SESSIONID_CACHE, 0L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, o->timeout_s);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, o->timeout_s);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_body);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, w);
	curl_easy_setopt(c, CURLOPT_USERAGENT, "p11ca-bench/ca_load");
	curl_easy_setopt(c, CURLOPT_MAXCONNECTS, 1L);
	if (o->est_user != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPAUTH, (long)CURLAUTH_BASIC);
		curl_easy_setopt(c, CURLOPT_USERNAME, o->est_user);
		curl_easy_setopt(c, CURLOPT_PASSWORD, o->est_pass);
	}
	if (o->est_cert != NULL) {
		curl_easy_setopt(c, CURLOPT_SSLCERT, o->est_cert);
		curl_easy_setopt(c, CURLOPT_SSLKEY, o->est_key);
	}
	return 0;
}

/* One request; the status into *status.  -1 on a transport error. */
static int request(struct worker *w, const char *sha, const struct csr *post, int fresh, int close_after,
		   long *status)
{
	CURL *c = w->curl;
	char url[600];
	CURLcode cc;

	if (w->sh->o->est)
		snprintf(url, sizeof url, "%s/.well-known/est/%s%ssimpleenroll", w->url,
			 w->sh->o->est_label ? w->sh->o->est_label : "", w->sh->o->est_label ? "/" : "");
	else
		snprintf(url, sizeof url, "%s/%s", w->url, sha);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_FRESH_CONNECT, (long)fresh);
	curl_easy_setopt(c, CURLOPT_FORBID_REUSE, (long)close_after);
	if (post != NULL) {
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, w->post_hdrs);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, post->pem);
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)post->len);
		curl_easy_setopt(c, CURLOPT_POST, 1L);
	} else {
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, NULL);
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	}
	w->body_len = 0;
	w->body_overflow = 0;
	cc = curl_easy_perform(c);
	w->body[w->body_len] = '\0';
	if (cc != CURLE_OK) {
		report_error(w, "%s %s: %s", post ? "POST" : "GET", url, curl_easy_strerror(cc));
		return -1;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	return 0;
}

static void add_latency(struct worker *w, double ms)
{
	if (w->nlat == w->caplat) {
		size_t cap = w->caplat ? w->caplat * 2 : 1024;
		double *p = realloc(w->lat, cap * sizeof *p);

		if (p == NULL)
			return;	/* the enrollment still counts; its latency is lost */
		w->lat = p;
		w->caplat = cap;
	}
	w->lat[w->nlat++] = ms;
}

static void enroll(struct worker *w, const struct csr *c)
{
	enum conn_mode m = w->sh->o->mode;
	long st = 0;
	double t0 = now_s();

	if (w->sh->o->est) {
		/* one POST; a new connection unless reusing, closed after unless reusing */
		if (request(w, c->sha, c, m != MODE_REUSE, m != MODE_REUSE, &st) != 0)
			return;
		if (st != 200 || strncmp(w->body, "MI", 2) != 0) {
			report_error(w, "POST simpleenroll: status %ld (expected 200 with a PKCS#7): %.200s", st,
				     w->body);
			return;
		}
		w->enrollments++;
		add_latency(w, (now_s() - t0) * 1000.0);
		return;
	}
	/* POST: a new connection unless reusing */
	if (request(w, c->sha, c, m != MODE_REUSE, m == MODE_PER_REQUEST, &st) != 0)
		return;
	if (st != 202) {
		report_error(w, "POST /%s: status %ld: %.200s", c->sha, st, w->body);
		return;
	}
	/* GET: on the POST's connection except per request; closed after
	 * unless reusing */
	if (request(w, c->sha, NULL, m == MODE_PER_REQUEST, m != MODE_REUSE, &st) != 0)
		return;
	if (st != 200 || strncmp(w->body, "-----BEGIN CERTIFICATE-----\n", 28) != 0) {
		report_error(w, "GET /%s: status %ld (expected 200 with a certificate): %.200s", c->sha, st,
			     w->body);
		return;
	}
	w->enrollments++;
	add_latency(w, (now_s() - t0) * 1000.0);
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	const struct opts *o = sh->o;
	double per = o->rate_hint * o->seconds / o->clients;
	size_t n = per < MIN_CSRS ? MIN_CSRS : (size_t)ceil(per * 1.2);

	if (setup_curl(w) != 0 || make_csrs(w, n) != 0) {
		fprintf(stderr, "%s: client %d: setup failed (CSRs or libcurl)\n", prog, w->id);
		ERR_print_errors_fp(stderr);
		atomic_store(&sh->setup_failed, 1);
	}
	(void)pthread_barrier_wait(&sh->ready);	/* main sets the deadline */
	(void)pthread_barrier_wait(&sh->ready);
	if (atomic_load(&sh->setup_failed)) {
		atomic_fetch_add(&sh->finished, 1);
		return NULL;
	}
	while (!past(&sh->deadline)) {
		if (w->next == w->ncsr) {
			/* out of CSRs: make more, outside any enrollment's time
			 * but inside the run (it costs throughput; reported) */
			w->refills++;
			if (make_csrs(w, n) != 0) {
				report_error(w, "cannot make more CSRs");
				break;
			}
		}
		enroll(w, &w->csrs[w->next++]);
	}
	atomic_fetch_add(&sh->finished, 1);
	return NULL;
}

/* --probe: GET PATH every probe_ms on one kept-alive connection */
static void *probe_main(void *arg)
{
	struct worker *w = arg;
	struct shared *sh = w->sh;
	const struct opts *o = sh->o;
	char url[600];
	long st;
	double t0;
	struct timespec ts = { o->probe_ms / 1000, (o->probe_ms % 1000) * 1000000L };

	if (setup_curl(w) != 0) {
		fprintf(stderr, "%s: probe: libcurl setup failed\n", prog);
		atomic_store(&sh->setup_failed, 1);
	}
	snprintf(url, sizeof url, "%s%s", w->url, o->probe);
	(void)pthread_barrier_wait(&sh->ready);
	(void)pthread_barrier_wait(&sh->ready);
	if (atomic_load(&sh->setup_failed))
		return NULL;
	curl_easy_setopt(w->curl, CURLOPT_URL, url);
	curl_easy_setopt(w->curl, CURLOPT_HTTPGET, 1L);
	while (!past(&sh->deadline)) {
		st = 0;
		w->body_len = 0;
		t0 = now_s();
		if (curl_easy_perform(w->curl) == CURLE_OK &&
		    curl_easy_getinfo(w->curl, CURLINFO_RESPONSE_CODE, &st) == CURLE_OK && st == 200)
			add_latency(w, (now_s() - t0) * 1000.0);
		else
			w->errors++;
		nanosleep(&ts, NULL);
	}
	return NULL;
}

/* ---- CPU and memory accounting (Linux /proc) ------------------------------ */

struct sample {
	double wall;		/* s, monotonic */
	double self_cpu;	/* s, this process */
	double server_cpu;	/* s, the --server-pid processes */
	double busy;		/* s, all CPUs, everything not idle or iowait */
	long server_rss_kb;
};

static double ticks_to_s(unsigned long long t)
{
	static long hz;

	if (hz <= 0)
		hz = sysconf(_SC_CLK_TCK);
	return (double)t / (double)(hz > 0 ? hz : 100);
}

/* VmRSS / VmHWM (kB) of pid, -1 when unknown */
static long vm_kb(long pid, const char *field)
{
	char path[64], buf[256];
	size_t fl = strlen(field);
	long v = -1;
	FILE *fp;

	if (pid <= 0)
		return -1;
	snprintf(path, sizeof path, "/proc/%ld/status", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return -1;
	while (fgets(buf, sizeof buf, fp) != NULL) {
		if (strncmp(buf, field, fl) == 0 && buf[fl] == ':') {
			v = strtol(buf + fl + 1, NULL, 10);
			break;
		}
	}
	fclose(fp);
	return v;
}

/* CPU seconds of pid (utime + stime); 0 when unknown */
static double proc_cpu_s(long pid)
{
	char path[64], buf[4096], *p;
	unsigned long long ut = 0, st = 0;
	FILE *fp;
	size_t n;

	snprintf(path, sizeof path, "/proc/%ld/stat", pid);
	if ((fp = fopen(path, "r")) == NULL)
		return 0;
	n = fread(buf, 1, sizeof buf - 1, fp);
	buf[n] = '\0';
	fclose(fp);
	/* fields after the ")" closing comm: state is field 3; utime and
	 * stime are fields 14 and 15 */
	if ((p = strrchr(buf, ')')) != NULL &&
	    sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) == 2) // NOLINT(cert-err34-c)
		return ticks_to_s(ut + st);
	return 0;
}

/* the sum of VmRSS / VmHWM (kB) over the --server-pid processes; -1 when
 * none is known */
static long vm_sum_kb(const struct opts *o, const char *field)
{
	long sum = -1, v;
	int i;

	for (i = 0; i < o->npid; i++) {
		if ((v = vm_kb(o->server_pids[i], field)) >= 0)
			sum = (sum < 0 ? 0 : sum) + v;
	}
	return sum;
}

static void take_sample(const struct opts *o, struct sample *s)
{
	struct rusage ru;
	unsigned long long v[8] = { 0 };
	FILE *fp;
	int i;

	memset(s, 0, sizeof *s);
	s->server_rss_kb = -1;
	s->wall = now_s();
	if (getrusage(RUSAGE_SELF, &ru) == 0)
		s->self_cpu = (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
			      (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
	if ((fp = fopen("/proc/stat", "r")) != NULL) {
		/* cpu user nice system idle iowait irq softirq steal */
		/* kernel-formatted numbers; a failed parse leaves the field out */
		if (fscanf(fp, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3], &v[4], // NOLINT(cert-err34-c)
			   &v[5], &v[6], &v[7]) == 8)
			s->busy = ticks_to_s(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
		fclose(fp);
	}
	for (i = 0; i < o->npid; i++)
		s->server_cpu += proc_cpu_s(o->server_pids[i]);
	s->server_rss_kb = vm_sum_kb(o, "VmRSS");
}

/* ---- main ---------------------------------------------------------------- */

static int loopback_url(const char *url)
{
	static const char *const ok[] = { "https://127.0.0.1:", "https://127.0.0.1/", "https://[::1]:",
					   "https://[::1]/", "https://localhost:", "https://localhost/" };
	size_t i, n = strlen(url);

	if (n > 0 && url[n - 1] == '/')
		return 0;	/* the path is appended: give the base URL */
	for (i = 0; i < sizeof ok / sizeof ok[0]; i++) {
		if (strncmp(url, ok[i], strlen(ok[i])) == 0 && strchr(url + strlen(ok[i]), '/') == NULL)
			return 1;
	}
	return 0;
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* nearest-rank percentile of sorted v */
static double pct(const double *v, size_t n, double p)
{
	size_t k;

	if (n == 0)
		return NAN;
	k = (size_t)ceil(p / 100.0 * (double)n);
	return v[k > 0 ? k - 1 : 0];
}

int main(int argc, char **argv)
{
	struct opts o = { .clients = 1, .seconds = 5, .mode = MODE_REUSE, .rate_hint = 1000, .timeout_s = 10,
			 .verify_host = 1 };
	struct shared sh;
	struct worker *w, pw;
	struct sample s0, s1;
	double t0, elapsed, *all, rate, pc_self, pc_server, pc_other;
	size_t total_lat = 0, k;
	long enr = 0, errs = 0, refills = 0, rss_peak = -1;
	int i;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (strcmp(a, "--no-reuse") == 0) {
			o.mode = MODE_PER_ENROLLMENT;
			continue;
		}
		if (strcmp(a, "--no-verify-host") == 0) {
			o.verify_host = 0;
			continue;
		}
		if (strcmp(a, "--conn-per-request") == 0) {
			o.mode = MODE_PER_REQUEST;
			continue;
		}
		if (strcmp(a, "--est") == 0) {
			o.est = 1;
			continue;
		}
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0)
			usage();
		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--url") == 0) {
			if (o.nurl == MAX_SERVERS)
				usage();
			o.urls[o.nurl++] = v;
		}
		else if (strcmp(a, "--cacert") == 0)
			o.cacert = v;
		else if (strcmp(a, "--clients") == 0)
			o.clients = (int)num_arg(prog, a, v, 1, MAX_CLIENTS);
		else if (strcmp(a, "--seconds") == 0)
			o.seconds = num_arg(prog, a, v, 0.1, 3600);
		else if (strcmp(a, "--rate-hint") == 0)
			o.rate_hint = num_arg(prog, a, v, 1, 1e6);
		else if (strcmp(a, "--server-pid") == 0) {
			if (o.npid == MAX_SERVERS)
				usage();
			o.server_pids[o.npid++] = (long)num_arg(prog, a, v, 1, 1 << 30);
		}
		else if (strcmp(a, "--timeout") == 0)
			o.timeout_s = (long)num_arg(prog, a, v, 1, 300);
		else if (strcmp(a, "--est-user") == 0)
			o.est_user = v;
		else if (strcmp(a, "--probe") == 0 && v[0] == '/')
			o.probe = v;
		else if (strcmp(a, "--probe-interval-ms") == 0)
			o.probe_ms = (long)num_arg(prog, a, v, 1, 10000);
		else if (strcmp(a, "--est-label") == 0)
			o.est_label = v;
		else if (strcmp(a, "--est-cert") == 0)
			o.est_cert = v;
		else if (strcmp(a, "--est-key") == 0)
			o.est_key = v;
		else if (strcmp(a, "--est-password-file") == 0) {
			FILE *pf = fopen(v, "r");
			int got = pf != NULL && fgets(o.est_pass, sizeof o.est_pass, pf) != NULL;

			if (pf != NULL)
				fclose(pf);
			if (!got) {
				fprintf(stderr, "%s: cannot read a password from %s\n", prog, v);
				return 64;
			}
			o.est_pass[strcspn(o.est_pass, "\r\n")] = '\0';
		} else if (strcmp(a, "--key") == 0 && (strcmp(v, "ec") == 0 || strcmp(v, "rsa") == 0))
			o.rsa = strcmp(v, "rsa") == 0;
		else
			usage();
	}
	if (o.nurl == 0 || o.cacert == NULL || (o.est_user != NULL) != (o.est_pass[0] != '\0') ||
	    (o.est_cert != NULL) != (o.est_key != NULL) || (!o.est && (o.est_user || o.est_cert)))
		usage();
	for (i = 0; i < o.nurl; i++) {
		if (!loopback_url(o.urls[i])) {
			fprintf(stderr, "%s: --url must be https://127.0.0.1:PORT, https://[::1]:PORT or "
				"https://localhost:PORT, without a path (loopback only)\n", prog);
			return 64;
		}
	}
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
		fprintf(stderr, "%s: libcurl could not start\n", prog);
		return 1;
	}
	memset(&sh, 0, sizeof sh);
	sh.o = &o;
	if ((sh.subject_prefix = subject_prefix(o.cacert)) == NULL)
		return 1;
	if (o.probe_ms == 0)
		o.probe_ms = 10;
	if (pthread_barrier_init(&sh.ready, NULL, (unsigned)o.clients + 1 + (o.probe != NULL)) != 0)
		return 1;
	memset(&pw, 0, sizeof pw);
	pw.id = -1;
	pw.url = o.urls[0];
	pw.sh = &sh;
	if (o.probe != NULL && pthread_create(&pw.th, NULL, probe_main, &pw) != 0) {
		fprintf(stderr, "%s: cannot start the probe thread\n", prog);
		return 1;
	}
	if ((w = calloc((size_t)o.clients, sizeof *w)) == NULL)
		return 1;

	t0 = now_s();
	for (i = 0; i < o.clients; i++) {
		w[i].id = i;
		w[i].url = o.urls[i % o.nurl];
		w[i].sh = &sh;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", prog, i);
			exit(1);	/* the others wait on the barrier: exit */
		}
	}
	pthread_barrier_wait(&sh.ready);	/* every thread has its CSRs */
	fprintf(stderr, "%s: %d client(s) ready (CSRs made in %.2f s), running %.1f s\n", prog, o.clients,
		now_s() - t0, o.seconds);
	take_sample(&o, &s0);
	t0 = deadline_in(o.seconds, &sh.deadline);
	pthread_barrier_wait(&sh.ready);	/* go */
	/* the server's peak VmRSS during the run: sampled every 20 ms */
	rss_peak = s0.server_rss_kb;
	while (o.npid > 0 && atomic_load(&sh.finished) < o.clients) {
		long v = vm_sum_kb(&o, "VmRSS");
		struct timespec ts = { 0, 20 * 1000 * 1000 };

		if (v > rss_peak)
			rss_peak = v;
		nanosleep(&ts, NULL);
	}
	for (i = 0; i < o.clients; i++)
		pthread_join(w[i].th, NULL);
	if (o.probe != NULL)
		pthread_join(pw.th, NULL);
	elapsed = now_s() - t0;
	take_sample(&o, &s1);
	if (atomic_load(&sh.setup_failed)) {
		free(w);
		return 1;
	}
	pc_self = 100.0 * (s1.self_cpu - s0.self_cpu) / (s1.wall - s0.wall);
	pc_server = 100.0 * (s1.server_cpu - s0.server_cpu) / (s1.wall - s0.wall);
	pc_other = 100.0 * (s1.busy - s0.busy) / (s1.wall - s0.wall) - pc_self - pc_server;

	for (i = 0; i < o.clients; i++) {
		enr += w[i].enrollments;
		errs += w[i].errors;
		refills += w[i].refills;
		total_lat += w[i].nlat;
	}
	all = malloc((total_lat ? total_lat : 1) * sizeof *all);
	if (all == NULL) {
		free(w);
		return 1;
	}
	for (i = 0, k = 0; i < o.clients; i++) {
		memcpy(all + k, w[i].lat, w[i].nlat * sizeof *all);
		k += w[i].nlat;
	}
	qsort(all, total_lat, sizeof *all, cmp_double);
	rate = (double)enr / elapsed;
	printf("clients=%d seconds=%.1f enrollments=%ld rate=%.1f p50_ms=%.2f p99_ms=%.2f errors=%ld "
	       "mode=%s key=%s elapsed=%.2f refills=%ld client_cpu=%.0f",
	       o.clients, o.seconds, enr, rate, pct(all, total_lat, 50), pct(all, total_lat, 99), errs,
	       o.mode == MODE_REUSE ? "reuse" : o.mode == MODE_PER_ENROLLMENT ? "no-reuse" : "conn-per-request",
	       o.rsa ? "rsa" : "ec", elapsed, refills, pc_self);
	if (o.npid > 0)
		printf(" server_cpu=%.0f other_cpu=%.0f server_rss_start_kb=%ld server_rss_end_kb=%ld"
		       " server_rss_peak_kb=%ld server_hwm_kb=%ld", pc_server,
		       pc_other < 0 ? 0 : pc_other, s0.server_rss_kb, s1.server_rss_kb,
		       rss_peak > s1.server_rss_kb ? rss_peak : s1.server_rss_kb, vm_sum_kb(&o, "VmHWM"));
	if (o.nurl > 1 || o.npid > 1)
		printf(" servers=%d server_pids=%d", o.nurl, o.npid);
	if (o.est)
		printf(" proto=est auth=%s", o.est_user != NULL ? "basic" : o.est_cert != NULL ? "cert" : "none");
	if (o.probe != NULL) {
		qsort(pw.lat, pw.nlat, sizeof *pw.lat, cmp_double);
		printf(" probe=%s probe_n=%zu probe_p50_ms=%.2f probe_p99_ms=%.2f probe_max_ms=%.2f probe_errors=%ld",
		       o.probe, pw.nlat, pct(pw.lat, pw.nlat, 50), pct(pw.lat, pw.nlat, 99),
		       pw.nlat ? pw.lat[pw.nlat - 1] : 0.0, pw.errors);
	}
	printf("\n");
	OPENSSL_cleanse(o.est_pass, sizeof o.est_pass);
	if (refills > 0)
		fprintf(stderr, "%s: warning: %ld CSR pool refill(s) during the run; raise --rate-hint\n", prog,
			refills);
	fflush(stdout);

	for (i = 0; i < o.clients; i++) {
		size_t j;

		for (j = 0; j < w[i].ncsr; j++)
			free(w[i].csrs[j].pem);
		free(w[i].csrs);
		free(w[i].lat);
		free(w[i].body);
		curl_slist_free_all(w[i].post_hdrs);
		if (w[i].curl != NULL)
			curl_easy_cleanup(w[i].curl);
		EVP_PKEY_free(w[i].rsa_key);
	}
	free(pw.lat);
	free(pw.body);
	curl_slist_free_all(pw.post_hdrs);
	if (pw.curl != NULL)
		curl_easy_cleanup(pw.curl);
	free(all);
	free(w);
	X509_NAME_free(sh.subject_prefix);
	pthread_barrier_destroy(&sh.ready);
	curl_global_cleanup();
	return 0;
}
