/* p11ca serve: TLS contexts, listeners, dispatch, access log. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509v3.h>

#include "request.h"
#include "proto/est.h"
#include "workers.h"

/* Access-log rows wait here and go to the database in one transaction
 * per ALOG_BATCH rows or per second (issue 10 point 8). */
#define ALOG_BATCH 64
struct alog_row {
	int64_t time, bytes;
	int status;
	char peer[64], method[16], path[256], protocol[32], detail[256];
};
struct alog {
	struct alog_row rows[ALOG_BATCH];
	size_t n;
	time_t last_flush;
};

/* serve.c's own state: the protocols see sv only (request.h) */
struct server {
	struct ca_served sv;
	struct ca *ca;
	struct alog *alog;           /* NULL: access log not stored */
};

/* The served protocols, tried in this order: the shared-token routes
 * (their own listener, /renew, POST / when on the main listener) before
 * Caramel, which takes everything else on the main listener. */
static const struct ca_protocol *const served[] = {
	&ca_proto_sharedtoken,
	&ca_proto_est,
	&ca_proto_caramel,
};


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
	/* a server that asks for client certificates must name its sessions,
	 * or OpenSSL fails every resumption with an internal-error alert; a
	 * resumed session keeps the client certificate and its verification
	 * result (handlers still check revocation per request) */
	if (SSL_CTX_set_session_id_context(ctx, (const unsigned char *)"p11ca", 5) != 1)
		goto fail;
	return ctx;
fail:
	ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
	ca_err("TLS setup failed: %s", e);
	sk_X509_NAME_pop_free(names, X509_NAME_free);
	SSL_CTX_free(ctx);
	return NULL;
}

void ca_request_init(struct ca_request *rq, const struct ca_served *sv, struct ca *ca, httpd_req *r)
{
	memset(rq, 0, sizeof *rq);
	rq->r = r;
	rq->listener = httpd_req_listener(r);
	rq->ca = ca;
	rq->ca_pem = sv->ca_pem;
	rq->ca_pem_len = sv->ca_pem_len;
	rq->token = sv->token;
	rq->token_len = sv->token_len;
	rq->token_on_main = sv->token_on_main;
	rq->rl = sv->rl;
	rq->est = sv->est;
}

void ca_dispatch(const struct ca_served *sv, httpd_req *r)
{
	struct ca_request rq;
	const struct ca_route *rt;
	httpd_req *d;
	size_t i, k;
	int defer = 0, token_json;

	ca_request_init(&rq, sv, sv->ca, r);
	if (sv->workers != NULL)
		rq.defer = &defer;
	for (i = 0; i < sizeof served / sizeof served[0]; i++)
		for (k = 0; k < served[i]->nroutes; k++) {
			rt = &served[i]->routes[k];
			if (!rt->match(&rq))
				continue;
			/* on the loop, unless the route may sign (offload) or the
			 * handler finds that it must after all (request.h, defer;
			 * only with signing threads) */
			if (sv->workers == NULL || rt->offload == NULL || !rt->offload(&rq)) {
				rt->handle(&rq);
				if (!defer)
					return;
			}
			/* to a signing thread (workers.h) */
			token_json = served[i] == &ca_proto_sharedtoken;
			if (ca_workers_full(sv->workers)) {
				httpd_req_note(r, served[i]->name, NULL);
				reply_busy(&rq, token_json);
				return;
			}
			if ((d = httpd_req_detach(r)) != NULL) {
				ca_workers_submit(sv->workers, d, rt, token_json);
				return;
			}
			/* out of memory for the copy: answered here */
			rq.defer = NULL;
			rt->handle(&rq);
			return;
		}
	/* Caramel takes everything: not reached */
	reply_problem(r, 404, NULL, NULL);
}

static void dispatch(httpd_req *r, void *ud)
{
	struct server *s = ud;

	ca_dispatch(&s->sv, r);
}

/* The queued access-log rows in one transaction (one flush), pruned to
 * access-log-rows.  A failure is reported and the rows dropped: the log
 * lines went to stderr already. */
static void alog_flush(struct server *s, time_t now)
{
	struct store_access a[ALOG_BATCH];
	size_t i;

	if (s->alog == NULL)
		return;
	s->alog->last_flush = now;
	if (s->alog->n == 0)
		return;
	memset(a, 0, sizeof a);
	for (i = 0; i < s->alog->n; i++) {
		const struct alog_row *row = &s->alog->rows[i];

		a[i].time = row->time;
		a[i].peer = row->peer;
		a[i].method = row->method;
		a[i].path = row->path;
		a[i].status = row->status;
		a[i].bytes = row->bytes;
		a[i].protocol = row->protocol[0] ? row->protocol : NULL;
		a[i].detail = row->detail[0] ? row->detail : NULL;
	}
	if (s->ca->so->log_access_batch(s->ca->st, a, s->alog->n, (int64_t)s->ca->cfg.access_log_rows) !=
	    STORE_OK)
		ca_err("access log: %s (%zu rows not stored)", s->ca->so->errmsg(s->ca->st), s->alog->n);
	s->alog->n = 0;
}

static void logger(const char *peer, const char *method, const char *path, int status, size_t bytes,
		   const char *protocol, const char *detail, void *ud)
{
	struct server *s = ud;
	char t[32];
	time_t now = time(NULL);
	struct tm tm;

	gmtime_r(&now, &tm);
	strftime(t, sizeof t, "%Y-%m-%dT%H:%M:%SZ", &tm);
	fprintf(stderr, "%s %s \"%s %.200s\" %d %zu %s%s%s\n", t, peer, method, path, status, bytes,
		protocol ? protocol : "-", detail ? " " : "", detail ? detail : "");
	if (s->alog != NULL) {
		struct alog_row *row = &s->alog->rows[s->alog->n++];

		row->time = now;
		row->bytes = (int64_t)bytes;
		row->status = status;
		snprintf(row->peer, sizeof row->peer, "%s", peer);
		snprintf(row->method, sizeof row->method, "%s", method);
		snprintf(row->path, sizeof row->path, "%s", path);
		snprintf(row->protocol, sizeof row->protocol, "%s", protocol ? protocol : "");
		snprintf(row->detail, sizeof row->detail, "%s", detail ? detail : "");
		if (s->alog->n == ALOG_BATCH || now - s->alog->last_flush >= 1)
			alog_flush(s, now);
	}
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
	s->sv.token = (unsigned char *)buf;
	s->sv.token_len = len;
	return 0;
}

/* Descriptors kept for everything but client connections: listeners, the
 * database and its journal, the PKCS#11 module, logs (issue 10 point 1). */
#define FD_HEADROOM_MIN 32
#define AUTO_MAX_CONNECTIONS 4096

/*
 * Raise the soft open-files limit to the hard one and derive the
 * connection cap from it: max-connections when set, else the limit minus
 * headroom (an eighth, at least FD_HEADROOM_MIN), at most
 * AUTO_MAX_CONNECTIONS.  A set max-connections over what the limit allows
 * is kept, with a warning: accept() then pauses on EMFILE (httpd.c).
 */
static void connection_caps(const struct ca_config *cfg, struct httpd_limits *lim)
{
	struct rlimit rl;
	long nofile = 1024, headroom, fit, cap;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		if (rl.rlim_cur < rl.rlim_max) {
			struct rlimit up = rl;

			up.rlim_cur = rl.rlim_max;
			if (setrlimit(RLIMIT_NOFILE, &up) == 0)
				rl = up;
		}
		if (rl.rlim_cur != RLIM_INFINITY && rl.rlim_cur < (rlim_t)1000000)
			nofile = (long)rl.rlim_cur;
		else
			nofile = 1000000;
	}
	headroom = nofile / 8 > FD_HEADROOM_MIN ? nofile / 8 : FD_HEADROOM_MIN;
	if (headroom > nofile / 2)
		headroom = nofile / 2;
	fit = nofile - headroom > 1 ? nofile - headroom : 1;
	if (cfg->max_connections > 0) {
		cap = cfg->max_connections;
		if (cap > fit)
			ca_err("warning: max-connections %ld is over what the open-files limit %ld allows (%ld); "
			       "raise the limit (ulimit -n, LimitNOFILE=) or lower max-connections",
			       cap, nofile, fit);
	} else {
		cap = fit < AUTO_MAX_CONNECTIONS ? fit : AUTO_MAX_CONNECTIONS;
	}
	lim->max_connections = (int)cap;
	lim->max_per_address = cfg->max_per_address > 0 ? (int)cfg->max_per_address : (int)(cap / 4 > 0 ? cap / 4 : 1);
	fprintf(stderr, "p11ca: at most %d connections, %d per client address (open-files limit %ld)\n",
		lim->max_connections, lim->max_per_address, nofile);
}

/* signers = N threads sign (auto: ca_workers_auto), each on its own
 * PKCS#11 session, plus one for the loop's own (TLS handshakes with a
 * token key); 0 signs on the loop. */
static int start_signers(struct server *s)
{
	struct ca *ca = s->ca;
	long n = ca->cfg.signers < 0 ? ca_workers_auto(ca) : ca->cfg.signers;

	if (n == 0) {
		fprintf(stderr, "p11ca: signing on the event loop (signers = 0)\n");
		return 0;
	}
	if (ca->p11 != NULL && p11c_ctx_set_sign_sessions(ca->p11, (unsigned)(n + 1 < 64 ? n + 1 : 64)) != P11C_OK) {
		ca_errp(ca->p11, "cannot use %ld signing sessions", n + 1);
		return -1;
	}
	if (ca_workers_start(&s->sv.workers, &s->sv, n, ca->cfg.sign_queue) != 0)
		return -1;
	fprintf(stderr, "p11ca: %ld signing thread(s)%s, queue %ld\n", n,
		ca->p11 != NULL && p11c_ctx_threads_ok(ca->p11) == 0 ? " (the module cannot run threads: one "
		"signature at a time)" : "", ca->cfg.sign_queue);
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
	s->sv.ca = ca;
	s->sv.ca_pem = ca_x509_pem(ca->cert);
	if (s->sv.ca_pem == NULL)
		goto out;
	s->sv.ca_pem_len = strlen(s->sv.ca_pem);
	if (ca->cfg.token_file != NULL && load_token(s, ca->cfg.token_file) != 0)
		goto out;
	if (ca->cfg.access_log_rows > 0 && (s->alog = calloc(1, sizeof *s->alog)) == NULL) {
		ca_err("out of memory");
		goto out;
	}
	if (s->alog != NULL)
		s->alog->last_flush = time(NULL);
	if (est_server_load(ca->dir, &s->sv.est) != 0)
		goto out;
	if (s->sv.est != NULL)
		fprintf(stderr, "p11ca: EST at /.well-known/est/ (%zu profiles, %s)\n", s->sv.est->nprof,
			EST_CONF_FILE);
	if (s->sv.token != NULL) {
		int oom = 0;

		s->sv.rl = ratelimit_new((unsigned)ca->cfg.token_rate_limit, (unsigned)ca->cfg.token_rate_global, &oom);
		if (oom) {
			ca_err("out of memory");
			goto out;
		}
	}

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
	if (main_ctx == NULL || est_client_ca_names(s->sv.est, main_ctx) != 0)
		goto out;
	/* the shared-token protocol needs the CA certificate as the TLS
	 * certificate (docs/protocols.md s2) */
	if (s->sv.token != NULL) {
		if (ca->cfg.token_listen != NULL) {
			token_ctx = tls_ctx(ca, ca->cert, ca->key, 0);
			if (token_ctx == NULL)
				goto out;
		} else if (tls_cert != NULL) {
			/* clients check the server's key against the token HMAC
			 * of the CA's: they can never verify this listener */
			ca_err("shared-token enrollment (token-file) needs a listener that presents the CA "
			       "certificate, and the main listener presents %s: set token-listen ADDR:PORT "
			       "(a second listener with the CA certificate)", path);
			goto out;
		} else {
			s->sv.token_on_main = 1;
		}
	}
	memset(&lim, 0, sizeof lim);
	lim.max_body = SERVE_MAX_BODY;
	lim.max_headers = 16 * 1024;
	lim.timeout_sec = (int)ca->cfg.timeout;
	connection_caps(&ca->cfg, &lim);
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
	fprintf(stderr, "p11ca: serving Caramel%s on %s (port %d)\n", s->sv.token_on_main ? " and shared-token" : "",
		ca->cfg.listen ? ca->cfg.listen : "127.0.0.1:8443", port);
	if (token_ctx != NULL) {
		if (httpd_listen(h, ca->cfg.token_listen, token_ctx, LISTENER_TOKEN, &port) != 0) {
			ca_err("cannot listen on %s: %s", ca->cfg.token_listen, httpd_error(h));
			goto out;
		}
		fprintf(stderr, "p11ca: serving shared-token on %s (port %d)\n", ca->cfg.token_listen, port);
	}
	/* before the port file: a client that reads it finds the signers up */
	if (start_signers(s) != 0)
		goto out;
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
	/* the queued requests get their 503s, the running ones finish */
	ca_workers_stop(&s->sv.workers);
	alog_flush(s, time(NULL));
	fprintf(stderr, "p11ca: stopped\n");
out:
	if (s != NULL)
		ca_workers_stop(&s->sv.workers);
	httpd_free(&h);
	SSL_CTX_free(main_ctx);
	SSL_CTX_free(token_ctx);
	X509_free(tls_cert);
	EVP_PKEY_free(tls_key);
	p11c_key_free(&tls_tkey);
	free(path);
	if (s != NULL) {
		if (s->sv.token != NULL)
			OPENSSL_cleanse(s->sv.token, s->sv.token_len);
		free(s->sv.token);
		ratelimit_free(&s->sv.rl);
		est_server_free(&s->sv.est);
		free(s->alog);
		free(s->sv.ca_pem);
		free(s);
	}
	return rc;
}
