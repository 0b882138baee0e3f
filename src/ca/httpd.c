/*
 * HTTPS server of p11ca (httpd.h): libevent 2.1's evhttp over OpenSSL
 * bufferevents, everything on one event_base.
 *
 * Listeners: one struct evhttp per httpd_listen, because evhttp's bevcb
 * (which makes each connection's TLS bufferevent) is per evhttp and every
 * listener has its own SSL_CTX.
 *
 * Connections: evhttp 2.1 has no "new connection" hook, and a connection's
 * closecb can only be set once a request on it reached us; a client that
 * never completes a handshake or a request would escape the count.  So a
 * connection is tracked from the moment bevcb makes its SSL to the moment
 * libevent frees that SSL (bufferevent finalizer, which also closes the
 * socket): a per-httpd SSL ex_data slot holds our struct conn, and the
 * slot's free callback runs inside SSL_free.  At max_connections the
 * listeners are disabled (the kernel backlog holds further clients) and
 * re-enabled when one closes.
 *
 * A connection is busy from the first decrypted byte of a request (input
 * buffer callback) until evhttp has written the whole reply (the request's
 * on_complete callback).  The graceful stop waits until no connection is
 * busy and no output is pending, or the grace period ends.
 *
 * Requests evhttp rejects by itself (413 for a Content-Length or chunked
 * body over max_body, 400 for a malformed request line or headers, 417 for
 * an unknown Expect) never reach the generic callback and are not logged
 * here.  `Expect: 100-continue` is answered by evhttp (RFC 7231 s5.1.1),
 * with 413 instead when the announced length is over max_body.
 *
 * Each connection also has a timer (struct conn.tmo).  It first runs at
 * once after the accept (evhttp has set the socket by then): the peer
 * address is recorded and a connection over max_per_address is shut down
 * (shutdown(2): evhttp sees the end of the stream and frees it).  Then it
 * is the deadline: the TLS handshake within timeout_sec of the accept, and
 * each request within timeout_sec of its first byte (request line, headers
 * and body, until it reaches the handler); a client that trickles its
 * handshake, headers or body (each byte restarting the read timeout) is
 * shut down when it passes.
 *
 * accept() failing with EMFILE/ENFILE (no descriptor left) or another
 * persistent error would make the listener fire again at once, forever:
 * the listeners pause for ACCEPT_PAUSE_MSEC and the log line is written at
 * most once per LOG_EVERY_SEC, with a count of the ones held back.
 *
 * Limits: a field left 0 takes a default (max_body 1 MiB, max_headers
 * 16 KiB, timeout 30 s); max_connections and max_per_address 0 mean no
 * limit.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <fcntl.h>
#include <pthread.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/listener.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "httpd.h"

#define DEFAULT_MAX_BODY	(1024 * 1024)
#define DEFAULT_MAX_HEADERS	(16 * 1024)
#define DEFAULT_TIMEOUT_SEC	30
#define STOP_POLL_USEC		100000	/* graceful stop: check every 100 ms */
#define LOG_FIELD_MAX		256
#define ACCEPT_PAUSE_MSEC	250	/* accept() out of descriptors: wait */
#define LOG_EVERY_SEC		10	/* rate-limited warnings */

/* All nine methods evhttp 2.1 knows; the handler answers 405 itself. */
#define ALL_METHODS (EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD | \
	EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE | EVHTTP_REQ_OPTIONS | \
	EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT | EVHTTP_REQ_PATCH)

struct conn {
	httpd *h;		/* NULL once the httpd is gone */
	struct bufferevent *bev;
	SSL *ssl;		/* owns this struct (ex_data) */
	struct evbuffer_cb_entry *in_cb;
	struct event *tmo;	/* setup, then the request deadline */
	int busy;		/* a request is being read, handled or written */
	int setup;		/* peer address known */
	int reading;		/* the deadline runs: handshake or request */
	int inreq;		/* a request's first byte came */
	char addr[INET6_ADDRSTRLEN];	/* peer address, no port */
	struct conn *prev, *next;
};

/* At most one line per LOG_EVERY_SEC. */
struct loglimit {
	time_t last;
	unsigned long held;
};

struct listener {
	httpd *h;
	struct evhttp *http;
	struct evhttp_bound_socket *bound;	/* NULL once stopped */
	SSL_CTX *ctx;
	int tag;
	struct listener *next;
	struct listener *all_next;	/* all_listeners */
};

/* Every listener of every httpd in the process (single-threaded): the
 * accept error callback gets evhttp's pointer, not ours. */
static struct listener *all_listeners;

struct httpd {
	struct event_base *base;
	struct httpd_limits lim;
	httpd_handler handler;
	void *hud;
	httpd_logger logger;
	void *lud;
	int ex_idx;		/* SSL ex_data slot holding struct conn */
	struct listener *listeners;
	struct conn *conns;
	int nconns;
	int paused;		/* listeners disabled at max_connections */
	int fd_paused;		/* listeners disabled after accept() failed */
	struct event *resume_ev;	/* ends fd_paused */
	struct loglimit accept_log, addr_log, deadline_log;
	int stopping;
	int grace_sec;
	struct timespec deadline;
	struct event *stop_ev;	/* activated by httpd_stop */
	struct event *poll_ev;	/* graceful stop: every 100 ms */
	struct event *sig_ev[2];
	/* detached requests (httpd_req_detach), answered by other threads:
	 * ndetached is the loop's count of those not sent yet; the finished
	 * ones wait in the done list (done_mu) and a byte in done_pipe wakes
	 * the loop (done_ev) */
	int ndetached;
	pthread_mutex_t done_mu;
	int done_mu_ok;
	httpd_req *done_head, *done_tail;
	int done_pipe[2];
	struct event *done_ev;
	char err[256];
};

struct httpd_req {
	httpd *h;		/* NULL for an in-memory request */
	struct evhttp_request *ev;	/* NULL for an in-memory request */
	struct evkeyvalq *in_headers;
	struct evkeyvalq *out_headers;
	int tag;
	const char *method;
	const char *target;	/* raw request-target, for the log */
	char *path;		/* decoded, NULL until parsed */
	const char *host;
	unsigned char *body;
	size_t body_len;
	X509 *peer_cert;
	SSL *ssl;		/* NULL for an in-memory request */
	int replied;
	char peer[INET6_ADDRSTRLEN + 8];
	char protocol[32];
	char detail[160];
	struct mem_req *mem;	/* httpd_req_mem_new: what the reply captured */
	int detached;		/* httpd_req_detach: ev is answered by httpd_req_done */
	httpd_req *done_next;
};

/* An in-memory request owns its inputs and captures the reply. */
struct mem_req {
	char *target;
	struct evkeyvalq in;
	struct evkeyvalq out;
	int status;
	unsigned char *reply;
	size_t reply_len;
	X509 *client_cert;	/* httpd_req_mem_set_client_cert */
	unsigned char binding[64];	/* httpd_req_mem_set_binding */
	size_t binding_len;
	int binding_tls13;
	/* detached requests own these (references taken from the SSL) */
	int own_certs;
	STACK_OF(X509) *chain;
};

static void set_err(httpd *h, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void stop_cb(evutil_socket_t fd, short what, void *arg);

static void
set_err(httpd *h, const char *fmt, ...)
{
	va_list ap;
	unsigned long e;
	size_t n;

	va_start(ap, fmt);
	vsnprintf(h->err, sizeof(h->err), fmt, ap);
	va_end(ap);
	/* Drain OpenSSL's queue into the message: the first error is the cause. */
	if ((e = ERR_peek_error()) != 0) {
		n = strlen(h->err);
		if (n + 3 < sizeof(h->err)) {
			memcpy(h->err + n, ": ", 3);
			ERR_error_string_n(e, h->err + n + 2, sizeof(h->err) - n - 2);
		}
	}
	ERR_clear_error();
}

/*
 * Copy src into dst for a log line: bytes outside printable ASCII, '"' and
 * '\' (and spaces unless keep_space) become \xHH; too long ends in "...".
 * NULL or "" gives "-".  dstsz >= 8.
 */
static void
log_escape(char *dst, size_t dstsz, const char *src, int keep_space)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;
	unsigned char ch;
	int raw;

	if (src == NULL || *src == '\0')
		src = "-";
	for (; *src != '\0'; src++) {
		ch = (unsigned char)*src;
		raw = ch > 0x20 && ch < 0x7f && ch != '"' && ch != '\\';
		if (ch == ' ' && keep_space)
			raw = 1;
		if (o + (raw ? 1 : 4) + 4 > dstsz) {
			memcpy(dst + o, "...", 3);
			o += 3;
			break;
		}
		if (raw) {
			dst[o++] = (char)ch;
		} else {
			dst[o++] = '\\';
			dst[o++] = 'x';
			dst[o++] = hex[ch >> 4];
			dst[o++] = hex[ch & 15];
		}
	}
	dst[o] = '\0';
}

static const char *
method_name(enum evhttp_cmd_type cmd)
{
	switch (cmd) {
	case EVHTTP_REQ_GET: return "GET";
	case EVHTTP_REQ_POST: return "POST";
	case EVHTTP_REQ_HEAD: return "HEAD";
	case EVHTTP_REQ_PUT: return "PUT";
	case EVHTTP_REQ_DELETE: return "DELETE";
	case EVHTTP_REQ_OPTIONS: return "OPTIONS";
	case EVHTTP_REQ_TRACE: return "TRACE";
	case EVHTTP_REQ_CONNECT: return "CONNECT";
	case EVHTTP_REQ_PATCH: return "PATCH";
	}
	return "?";
}

/* RFC 9110 s15; NULL lets evhttp pick its own phrase. */
static const char *
reason_phrase(int status)
{
	switch (status) {
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 413: return "Payload Too Large";
	case 415: return "Unsupported Media Type";
	case 429: return "Too Many Requests";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 503: return "Service Unavailable";
	}
	return NULL;
}

/* ---- connections and listeners ---- */

/* Listeners accept unless at max_connections, out of descriptors or
 * stopping (then they are closed already). */
static void
apply_accepting(httpd *h)
{
	struct listener *l;
	struct evconnlistener *el;
	int on = !h->paused && !h->fd_paused;

	for (l = h->listeners; l != NULL; l = l->next) {
		if (l->bound == NULL)
			continue;
		el = evhttp_bound_socket_get_listener(l->bound);
		if (on)
			evconnlistener_enable(el);
		else
			evconnlistener_disable(el);
	}
}

static void
set_accepting(httpd *h, int on)
{
	h->paused = !on;
	apply_accepting(h);
}

static void log_limited(struct loglimit *ll, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void
log_limited(struct loglimit *ll, const char *fmt, ...)
{
	struct timespec now;
	va_list ap;

	clock_gettime(CLOCK_MONOTONIC, &now);
	if (ll->last != 0 && now.tv_sec - ll->last < LOG_EVERY_SEC) {
		ll->held++;
		return;
	}
	ll->last = now.tv_sec > 0 ? now.tv_sec : 1;
	fputs("p11ca: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (ll->held > 0)
		fprintf(stderr, " (%lu more like it in the last %d s not logged)", ll->held, LOG_EVERY_SEC);
	fputc('\n', stderr);
	ll->held = 0;
}

/* The listener's accept() failed with an error that is not transient:
 * without this callback libevent logs "Error from accept() call" and the
 * readable listener fires again at once (issue 10 point 1). */
static void
/* cppcheck-suppress constParameter ; libevent's evconnlistener_errorcb type */
accept_error_cb(struct evconnlistener *el, void *arg)
{
	int err = EVUTIL_SOCKET_ERROR();
	struct timeval tv = { 0, ACCEPT_PAUSE_MSEC * 1000 };
	struct listener *l;
	httpd *h;

	/* arg is evhttp's own (its struct evhttp): find our listener */
	(void)el;
	for (l = all_listeners; l != NULL && l->http != arg; l = l->all_next)
		;
	if (l == NULL || (h = l->h) == NULL || h->stopping)
		return;
	log_limited(&h->accept_log, "accept: %s (%d connections open): not accepting for %d ms%s",
		    strerror(err), h->nconns, ACCEPT_PAUSE_MSEC,
		    err == EMFILE || err == ENFILE ? "; raise the open-files limit or lower max-connections" : "");
	h->fd_paused = 1;
	apply_accepting(h);
	if (h->resume_ev != NULL)
		event_add(h->resume_ev, &tv);
}

static void
resume_cb(evutil_socket_t fd, short what, void *arg)
{
	httpd *h = arg;

	(void)fd;
	(void)what;
	h->fd_paused = 0;
	if (!h->stopping)
		apply_accepting(h);
}

/* Stop a connection at once: evhttp reads the end of the stream and frees
 * it (and with it the SSL and our struct conn). */
static void
conn_drop(struct conn *c)
{
	int fd = c->ssl != NULL ? SSL_get_fd(c->ssl) : -1;

	c->reading = 0;
	if (fd >= 0)
		(void)shutdown(fd, SHUT_RDWR);
}

static void
conn_arm_deadline(struct conn *c)
{
	struct timeval tv;

	if (c->tmo == NULL || c->h == NULL)
		return;
	tv.tv_sec = c->h->lim.timeout_sec;
	tv.tv_usec = 0;
	c->reading = 1;
	event_add(c->tmo, &tv);
}

/* Connections from this address, this one included. */
static int
conns_from(httpd *h, const char *addr)
{
	struct conn *c;
	int n = 0;

	for (c = h->conns; c != NULL; c = c->next) {
		if (c->setup && strcmp(c->addr, addr) == 0)
			n++;
	}
	return n;
}

static void
conn_tmo_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *c = arg;
	httpd *h = c->h;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	int sfd;
	const void *a = NULL;

	(void)fd;
	(void)what;
	if (h == NULL)
		return;
	if (c->setup) {
		if (c->reading) {
			log_limited(&h->deadline_log, "%s: request not complete within %d s: connection closed",
				    c->addr, h->lim.timeout_sec);
			conn_drop(c);
		}
		return;
	}
	c->setup = 1;
	snprintf(c->addr, sizeof(c->addr), "-");
	sfd = c->ssl != NULL ? SSL_get_fd(c->ssl) : -1;
	memset(&ss, 0, sizeof(ss));
	if (sfd >= 0 && getpeername(sfd, (struct sockaddr *)&ss, &sl) == 0) {
		if (ss.ss_family == AF_INET)
			a = &((struct sockaddr_in *)&ss)->sin_addr;
		else if (ss.ss_family == AF_INET6)
			a = &((struct sockaddr_in6 *)&ss)->sin6_addr;
		if (a == NULL || inet_ntop(ss.ss_family, a, c->addr, sizeof(c->addr)) == NULL)
			snprintf(c->addr, sizeof(c->addr), "-");
	}
	if (h->lim.max_per_address > 0 && conns_from(h, c->addr) > h->lim.max_per_address) {
		log_limited(&h->addr_log, "%s: over %d connections from this address: connection closed",
			    c->addr, h->lim.max_per_address);
		conn_drop(c);
		return;
	}
	/* the first request's deadline counts from the accept */
	if (!c->reading)
		conn_arm_deadline(c);
}

static void
conn_link(httpd *h, struct conn *c)
{
	c->h = h;
	c->next = h->conns;
	if (h->conns != NULL)
		h->conns->prev = c;
	h->conns = c;
	h->nconns++;
	if (h->lim.max_connections > 0 && h->nconns >= h->lim.max_connections &&
	    !h->paused && !h->stopping)
		set_accepting(h, 0);
}

/*
 * ex_data free callback of our slot: runs inside SSL_free, i.e. when
 * libevent destroys the connection's bufferevent (the socket is closed
 * there too).  Called for every SSL in the process; ours have ptr set.
 */
static void
conn_ex_free(void *parent, void *ptr, CRYPTO_EX_DATA *ad, int idx, long argl, void *argp)
{
	struct conn *c = ptr;
	httpd *h;

	(void)parent;
	(void)ad;
	(void)idx;
	(void)argl;
	(void)argp;
	if (c == NULL)
		return;
	if (c->tmo != NULL)
		event_free(c->tmo);
	if (c->bev != NULL && c->in_cb != NULL)
		evbuffer_remove_cb_entry(bufferevent_get_input(c->bev), c->in_cb);
	if ((h = c->h) != NULL) {
		if (c->prev != NULL)
			c->prev->next = c->next;
		else
			h->conns = c->next;
		if (c->next != NULL)
			c->next->prev = c->prev;
		h->nconns--;
		if (h->paused && !h->stopping && h->nconns < h->lim.max_connections)
			set_accepting(h, 1);
	}
	free(c);
}

/* Decrypted bytes arrived: a request is in progress on this connection. */
static void
conn_input_cb(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg)
{
	struct conn *c = arg;

	(void)buf;
	if (info->n_added > 0) {
		c->busy = 1;
		/* the first byte of a request: its own deadline (after the
		 * handshake's, for the first request) */
		if (c->setup && !c->inreq) {
			c->inreq = 1;
			conn_arm_deadline(c);
		}
	}
}

/* evhttp_send_done: the reply is written out. */
static void
req_complete_cb(struct evhttp_request *ev, void *arg)
{
	struct conn *c = arg;

	(void)ev;
	/* A pipelined next request may already be buffered. */
	c->busy = evbuffer_get_length(bufferevent_get_input(c->bev)) > 0;
	if (c->busy) {
		c->inreq = 1;
		conn_arm_deadline(c);
	}
}

/*
 * evhttp's bevcb: the TLS bufferevent of a new connection.  Returning NULL
 * would make evhttp fall back to a plaintext bufferevent; gencb refuses
 * requests on such a connection.
 */
static struct bufferevent *
conn_bevcb(struct event_base *base, void *arg)
{
	struct listener *l = arg;
	httpd *h = l->h;
	SSL *ssl = NULL;
	struct conn *c = NULL;
	struct bufferevent *bev = NULL;
	struct timeval tv;

	if ((ssl = SSL_new(l->ctx)) == NULL)
		goto out;
	if ((c = calloc(1, sizeof(*c))) == NULL)
		goto out;
	if ((c->tmo = event_new(base, -1, 0, conn_tmo_cb, c)) == NULL)
		goto out;
	if (!SSL_set_ex_data(ssl, h->ex_idx, c))
		goto out;
	c->ssl = ssl;
	conn_link(h, c);
	/* From here the SSL owns c: SSL_free frees it (conn_ex_free).  And
	 * libevent 2.1 frees the SSL itself (BEV_OPT_CLOSE_ON_FREE) even when
	 * bufferevent_openssl_socket_new fails. */
	bev = bufferevent_openssl_socket_new(base, -1, ssl, BUFFEREVENT_SSL_ACCEPTING,
					     BEV_OPT_CLOSE_ON_FREE);
	ssl = NULL;
	if (bev == NULL) {
		c = NULL;
		goto out;
	}
	c->bev = bev;
	if ((c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), conn_input_cb, c)) == NULL) {
		bufferevent_free(bev);
		bev = NULL;
		c = NULL;
		goto out;
	}
	/* Also covers the handshake: evhttp sets the same timeouts, but only
	 * after bufferevent_setfd has armed the handshake events. */
	tv.tv_sec = h->lim.timeout_sec;
	tv.tv_usec = 0;
	bufferevent_set_timeouts(bev, &tv, &tv);
	/* setup runs once evhttp has given the bufferevent its socket */
	event_active(c->tmo, EV_TIMEOUT, 0);
	c = NULL;
out:
	SSL_free(ssl);	/* set only while c is not in its slot yet */
	if (c != NULL && c->tmo != NULL)
		event_free(c->tmo);
	free(c);
	ERR_clear_error();
	return bev;
}

/* ---- requests ---- */

static void
log_request(httpd_req *r, int status, size_t bytes)
{
	httpd *h = r->h;
	char path[LOG_FIELD_MAX], proto[64], detail[LOG_FIELD_MAX];

	log_escape(path, sizeof(path), r->path != NULL ? r->path : r->target, 0);
	log_escape(proto, sizeof(proto), r->protocol, 0);
	log_escape(detail, sizeof(detail), r->detail, 1);
	if (h == NULL)
		return;	/* in-memory request: the line is made, not written */
	if (h->logger != NULL)
		h->logger(r->peer, r->method, path, status, bytes, proto, detail, h->lud);
	else
		fprintf(stderr, "p11ca: %s \"%s %s\" %d %zu %s %s\n", r->peer, r->method,
			path, status, bytes, proto, detail);
}

/* The reply body into evhttp's output buffer, or the in-memory copy. */
static int
mem_or_ev_add(httpd_req *r, struct evbuffer *ob, const void *body, size_t len)
{
	if (r->mem == NULL)
		return evbuffer_add(ob, body, len);
	free(r->mem->reply);
	if ((r->mem->reply = malloc(len + 1)) == NULL)
		return -1;
	memcpy(r->mem->reply, body, len);
	r->mem->reply[len] = '\0';
	r->mem->reply_len = len;
	return 0;
}

void
httpd_reply(httpd_req *r, int status, const char *content_type,
	    const char *const *extra_headers, const void *body, size_t len)
{
	struct evkeyvalq *oh;
	struct evbuffer *ob;
	char clen[32];
	size_t i;

	if (r == NULL)
		return;
	if (r->replied) {
		fprintf(stderr, "p11ca: second reply (%d) to \"%s %s\" ignored\n", status,
			r->method, r->path != NULL ? r->path : "-");
		return;
	}
	r->replied = 1;
	oh = r->out_headers;
	/* a detached request captures its reply on whatever thread: evhttp
	 * is touched by the loop only (detached_send) */
	ob = r->ev != NULL && r->mem == NULL ? evhttp_request_get_output_buffer(r->ev) : NULL;
	if (status < 200 || status > 599) {
		httpd_req_note(r, NULL, "invalid status from handler");
		goto fail;
	}
	if (content_type != NULL && evhttp_add_header(oh, "Content-Type", content_type) != 0)
		goto bad_header;
	/* clients tell p11ca from upstream servers by it (docs/ca.md) */
	if (evhttp_add_header(oh, "Server", "p11ca") != 0)
		goto bad_header;
	for (i = 0; extra_headers != NULL && extra_headers[i] != NULL; i += 2) {
		/* evhttp refuses values with CR/LF (response splitting) */
		if (extra_headers[i + 1] == NULL ||
		    evhttp_add_header(oh, extra_headers[i], extra_headers[i + 1]) != 0)
			goto bad_header;
	}
	/* No body after HEAD, 204 or 304 (RFC 9110 s9.3.2, s15.3.5, s15.4.5):
	 * evhttp 2.1 would send a HEAD reply's body.  HEAD keeps the length
	 * GET would have (RFC 9110 s8.6). */
	if (status == 204 || status == 304) {
		len = 0;
	} else if (strcmp(r->method, "HEAD") == 0) {
		snprintf(clen, sizeof(clen), "%zu", len);
		if (evhttp_find_header(oh, "Content-Length") == NULL &&
		    evhttp_add_header(oh, "Content-Length", clen) != 0)
			goto bad_header;
		len = 0;
	}
	if (len > 0 && (body == NULL || mem_or_ev_add(r, ob, body, len) != 0)) {
		httpd_req_note(r, NULL, "cannot buffer the reply body");
		goto fail;
	}
	goto send;
bad_header:
	httpd_req_note(r, NULL, "invalid reply header");
fail:
	evhttp_clear_headers(oh);
	if (ob != NULL)
		evbuffer_drain(ob, evbuffer_get_length(ob));
	if (r->mem != NULL) {
		free(r->mem->reply);
		r->mem->reply = NULL;
		r->mem->reply_len = 0;
	}
	status = 500;
	len = 0;
send:
	if (r->mem != NULL) {
		r->mem->status = status;
		if (!r->detached)
			log_request(r, status, len);
		return;
	}
	if (r->h->stopping)
		evhttp_add_header(oh, "Connection", "close");
	/* evhttp adds Date, and Content-Length except for HEAD, 204 and 304. */
	evhttp_send_reply(r->ev, status, reason_phrase(status), NULL);
	log_request(r, status, len);
}

void
httpd_req_note(httpd_req *r, const char *protocol, const char *detail)
{
	if (r == NULL)
		return;
	if (protocol != NULL)
		snprintf(r->protocol, sizeof(r->protocol), "%s", protocol);
	if (detail != NULL)
		snprintf(r->detail, sizeof(r->detail), "%s", detail);
}

/*
 * Request-target: origin-form or absolute-form (RFC 9112 s3.2) into
 * r->path, decoded.  0, or the status to answer with (why set).  evhttp
 * parsed the request line leniently (EVHTTP_URI_NONCONFORMANT), so a
 * target like "/a{b" gets here and fails the strict parse.
 */
static int
parse_target(httpd_req *r, const char **why)
{
	struct evhttp_uri *uri = NULL;
	const char *raw;
	size_t plen = 0;
	int status = 0;

	if (r->target == NULL || (uri = evhttp_uri_parse(r->target)) == NULL ||
	    (raw = evhttp_uri_get_path(uri)) == NULL) {
		*why = "unparsable request-target";
		status = 400;
		goto out;
	}
	if (*raw == '\0')
		raw = "/";
	if ((r->path = evhttp_uridecode(raw, 0, &plen)) == NULL) {
		*why = "out of memory";
		status = 500;
		goto out;
	}
	if (r->path[0] != '/' || strlen(r->path) != plen) {
		free(r->path);
		r->path = NULL;
		*why = "bad path";
		status = 400;
		goto out;
	}
out:
	/* libevent 2.1's evhttp_uri_free does not accept NULL */
	if (uri != NULL)
		evhttp_uri_free(uri);
	return status;
}

/* Reply before the handler saw the request. */
static void
reply_early(httpd_req *r, int status, const char *detail)
{
	const char *reason = reason_phrase(status);
	char body[64];
	int n;
	static const char *const close_hdr[] = { "Connection", "close", NULL };

	httpd_req_note(r, NULL, detail);
	n = snprintf(body, sizeof(body), "%d %s\n", status, reason != NULL ? reason : "");
	httpd_reply(r, status, "text/plain; charset=utf-8", status >= 500 ? close_hdr : NULL,
		    body, n > 0 && (size_t)n < sizeof(body) ? (size_t)n : 0);
}

static void
req_gencb(struct evhttp_request *ev, void *arg)
{
	struct listener *l = arg;
	httpd *h = l->h;
	httpd_req r;
	struct evhttp_connection *evcon;
	struct bufferevent *bev = NULL;
	SSL *ssl = NULL;
	struct conn *c = NULL;
	struct evbuffer *in;
	const char *why = NULL;
	char *addr = NULL;
	ev_uint16_t port = 0;
	size_t n;
	int status;
	X509 *pc;

	memset(&r, 0, sizeof(r));
	r.h = h;
	r.ev = ev;
	r.in_headers = evhttp_request_get_input_headers(ev);
	r.out_headers = evhttp_request_get_output_headers(ev);
	r.tag = l->tag;
	r.method = method_name(evhttp_request_get_command(ev));
	r.target = evhttp_request_get_uri(ev);
	snprintf(r.peer, sizeof(r.peer), "-");
	if ((evcon = evhttp_request_get_connection(ev)) != NULL) {
		evhttp_connection_get_peer(evcon, &addr, &port);
		if (addr != NULL)
			snprintf(r.peer, sizeof(r.peer), strchr(addr, ':') != NULL ?
				 "[%s]:%u" : "%s:%u", addr, (unsigned)port);
		bev = evhttp_connection_get_bufferevent(evcon);
	}
	/* the reply goes out in several writes (TLS records): without
	 * TCP_NODELAY, Nagle waits for the client's delayed ACK, about 40 ms
	 * per response (docs/benchmarks.md) */
	if (bev != NULL) {
		evutil_socket_t fd = bufferevent_getfd(bev);
		int one = 1;

		if (fd >= 0)
			(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
	}
	if (bev != NULL)
		ssl = bufferevent_openssl_get_ssl(bev);
	if (ssl == NULL) {
		reply_early(&r, 500, "connection without TLS");
		goto out;
	}
	if ((c = SSL_get_ex_data(ssl, h->ex_idx)) != NULL) {
		c->busy = 1;
		c->reading = 0;	/* the request is complete: deadline met */
		c->inreq = 0;
		if (c->tmo != NULL && c->setup)
			event_del(c->tmo);
		evhttp_request_set_on_complete_cb(ev, req_complete_cb, c);
	}

	if ((status = parse_target(&r, &why)) != 0) {
		reply_early(&r, status, why);
		goto out;
	}
	r.host = evhttp_find_header(r.in_headers, "Host");

	/* evhttp enforced max_body already; the copy is bounded regardless. */
	in = evhttp_request_get_input_buffer(ev);
	n = evbuffer_get_length(in);
	if (n > h->lim.max_body) {
		reply_early(&r, 413, "body over max_body");
		goto out;
	}
	if ((r.body = malloc(n + 1)) == NULL) {
		reply_early(&r, 500, "out of memory");
		goto out;
	}
	if (n > 0 && evbuffer_copyout(in, r.body, n) != (ev_ssize_t)n) {
		reply_early(&r, 500, "cannot read the body");
		goto out;
	}
	r.body[n] = '\0';
	r.body_len = n;

	/* Only a certificate that verified against the listener's trust store. */
	pc = SSL_get0_peer_certificate(ssl);
	if (pc != NULL && SSL_get_verify_result(ssl) == X509_V_OK)
		r.peer_cert = pc;
	r.ssl = ssl;

	h->handler(&r, h->hud);
	if (!r.replied) {
		fprintf(stderr, "p11ca: handler did not reply to \"%s %s\"\n", r.method, r.path);
		if (r.detail[0] == '\0')
			httpd_req_note(&r, NULL, "handler did not reply");
		httpd_reply(&r, 500, NULL, NULL, NULL, 0);
	}
out:
	free(r.path);
	/* Bodies may carry enrollment secrets. */
	if (r.body != NULL)
		OPENSSL_clear_free(r.body, r.body_len + 1);
	ERR_clear_error();
}

const char *httpd_req_method(const httpd_req *r) { return r->method; }
const char *httpd_req_path(const httpd_req *r) { return r->path; }
const char *httpd_req_peer(const httpd_req *r) { return r->peer; }
const char *httpd_req_host(const httpd_req *r) { return r->host; }
X509 *httpd_req_peer_cert(const httpd_req *r) { return r->peer_cert; }
int httpd_req_listener(const httpd_req *r) { return r->tag; }

const char *
httpd_req_header(const httpd_req *r, const char *name)
{
	if (name == NULL)
		return NULL;
	/* case-insensitive, first occurrence */
	return evhttp_find_header(r->in_headers, name);
}

const unsigned char *
httpd_req_body(const httpd_req *r, size_t *len)
{
	if (len != NULL)
		*len = r->body_len;
	return r->body;
}

X509 *
httpd_req_client_cert(const httpd_req *r)
{
	if (r->mem != NULL)
		return r->mem->client_cert != NULL ? r->mem->client_cert : r->peer_cert;
	return r->ssl != NULL ? SSL_get0_peer_certificate(r->ssl) : NULL;
}

STACK_OF(X509) *
httpd_req_client_chain(const httpd_req *r)
{
	if (r->mem != NULL)
		return r->mem->chain;
	return r->ssl != NULL ? SSL_get_peer_cert_chain(r->ssl) : NULL;
}

/* RFC 5929 s3.1 tls-unique: the first Finished message of the latest
 * handshake (the client's in a full handshake, the server's when the
 * session was resumed); RFC 9266 s2 tls-exporter on TLS 1.3. */
size_t
httpd_req_channel_binding(const httpd_req *r, unsigned char *out, size_t max, int *tls13)
{
	static const char label[] = "EXPORTER-Channel-Binding";
	size_t n;

	if (tls13 != NULL)
		*tls13 = 0;
	if (r->mem != NULL) {
		if (r->mem->binding_len == 0 || r->mem->binding_len > max)
			return 0;
		memcpy(out, r->mem->binding, r->mem->binding_len);
		if (tls13 != NULL)
			*tls13 = r->mem->binding_tls13;
		return r->mem->binding_len;
	}
	if (r->ssl == NULL)
		return 0;
	if (SSL_version(r->ssl) >= TLS1_3_VERSION) {
		if (max < 32 || SSL_export_keying_material(r->ssl, out, 32, label, sizeof label - 1, NULL, 0, 0) != 1) {
			ERR_clear_error();
			return 0;
		}
		if (tls13 != NULL)
			*tls13 = 1;
		return 32;
	}
	n = SSL_session_reused(r->ssl) ? SSL_get_finished(r->ssl, out, max) : SSL_get_peer_finished(r->ssl, out, max);
	return n <= max ? n : 0;
}

/* ---- detached requests (answered from another thread) ---- */

httpd_req *
httpd_req_detach(httpd_req *r)
{
	httpd_req *d = NULL;
	struct evkeyval *kv;
	STACK_OF(X509) *ch;
	X509 *cc;
	int tls13 = 0;

	if (r == NULL || r->h == NULL || r->ev == NULL || r->mem != NULL || r->replied)
		return NULL;
	if ((d = calloc(1, sizeof(*d))) == NULL || (d->mem = calloc(1, sizeof(*d->mem))) == NULL)
		goto fail;
	TAILQ_INIT(&d->mem->in);
	TAILQ_INIT(&d->mem->out);
	d->mem->own_certs = 1;
	d->h = r->h;
	d->ev = r->ev;
	d->detached = 1;
	d->in_headers = &d->mem->in;
	d->out_headers = &d->mem->out;
	d->tag = r->tag;
	d->method = r->method;
	if ((d->mem->target = strdup(r->target != NULL ? r->target : "")) == NULL ||
	    (r->path != NULL && (d->path = strdup(r->path)) == NULL))
		goto fail;
	d->target = d->mem->target;
	TAILQ_FOREACH(kv, r->in_headers, next) {
		if (evhttp_add_header(&d->mem->in, kv->key, kv->value) != 0)
			goto fail;
	}
	d->host = evhttp_find_header(&d->mem->in, "Host");
	memcpy(d->peer, r->peer, sizeof(d->peer));
	memcpy(d->protocol, r->protocol, sizeof(d->protocol));
	memcpy(d->detail, r->detail, sizeof(d->detail));
	/* what the connection knows, taken now: it may be gone by the time
	 * the other thread looks */
	if (r->peer_cert != NULL && X509_up_ref(r->peer_cert))
		d->peer_cert = r->peer_cert;
	else if (r->peer_cert != NULL)
		goto fail;
	if ((cc = httpd_req_client_cert(r)) != NULL) {
		if (!X509_up_ref(cc))
			goto fail;
		d->mem->client_cert = cc;
	}
	if ((ch = httpd_req_client_chain(r)) != NULL && (d->mem->chain = X509_chain_up_ref(ch)) == NULL)
		goto fail;
	d->mem->binding_len = httpd_req_channel_binding(r, d->mem->binding, sizeof(d->mem->binding), &tls13);
	d->mem->binding_tls13 = tls13;
	/* the body moves to the copy (req_gencb frees what r still has) */
	d->body = r->body;
	d->body_len = r->body_len;
	r->body = NULL;
	r->body_len = 0;
	r->replied = 1;
	r->h->ndetached++;
	return d;
fail:
	if (d != NULL)
		d->detached = 0;
	httpd_req_mem_free(&d);
	ERR_clear_error();
	return NULL;
}

void
httpd_req_done(httpd_req *d)
{
	httpd *h;
	char b = 1;

	if (d == NULL || !d->detached)
		return;
	h = d->h;
	d->done_next = NULL;
	pthread_mutex_lock(&h->done_mu);
	if (h->done_tail != NULL)
		h->done_tail->done_next = d;
	else
		h->done_head = d;
	h->done_tail = d;
	pthread_mutex_unlock(&h->done_mu);
	/* non-blocking: a full pipe has woken the loop already */
	if (write(h->done_pipe[1], &b, 1) < 0 && errno != EAGAIN)
		fprintf(stderr, "p11ca: waking the event loop: %s\n", strerror(errno));
}

/* On the loop: the captured reply of a detached request onto its evhttp
 * request (which evhttp frees when the client has gone meanwhile). */
static void
detached_send(httpd_req *d)
{
	httpd *h = d->h;
	struct evkeyvalq *oh = evhttp_request_get_output_headers(d->ev);
	struct evbuffer *ob = evhttp_request_get_output_buffer(d->ev);
	struct evkeyval *kv;
	int status = d->mem->status;
	size_t len = d->mem->reply_len;

	if (status == 0) {
		fprintf(stderr, "p11ca: handler did not reply to \"%s %s\"\n", d->method,
			d->path != NULL ? d->path : "-");
		if (d->detail[0] == '\0')
			httpd_req_note(d, NULL, "handler did not reply");
		goto fail;
	}
	TAILQ_FOREACH(kv, &d->mem->out, next) {
		if (evhttp_add_header(oh, kv->key, kv->value) != 0)
			goto fail;
	}
	if (len > 0 && evbuffer_add(ob, d->mem->reply, len) != 0)
		goto fail;
	goto send;
fail:
	evhttp_clear_headers(oh);
	evbuffer_drain(ob, evbuffer_get_length(ob));
	(void)evhttp_add_header(oh, "Server", "p11ca");
	status = 500;
	len = 0;
send:
	if (h->stopping)
		evhttp_add_header(oh, "Connection", "close");
	evhttp_send_reply(d->ev, status, reason_phrase(status), NULL);
	log_request(d, status, len);
	h->ndetached--;
	d->ev = NULL;
	httpd_req_mem_free(&d);
	ERR_clear_error();
}

/* Send every finished detached request. */
static void
done_flush(httpd *h)
{
	httpd_req *d, *next;

	pthread_mutex_lock(&h->done_mu);
	d = h->done_head;
	h->done_head = h->done_tail = NULL;
	pthread_mutex_unlock(&h->done_mu);
	for (; d != NULL; d = next) {
		next = d->done_next;
		detached_send(d);
	}
}

static void
done_cb(evutil_socket_t fd, short what, void *arg)
{
	char buf[256];

	(void)what;
	while (read(fd, buf, sizeof(buf)) > 0)
		;
	done_flush(arg);
}

/* ---- in-memory requests ---- */

static const char *const known_methods[] = {
	"GET", "POST", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE", "CONNECT", "PATCH", NULL,
};

httpd_req *
httpd_req_mem_new(const char *method, const char *target, const char *const *headers,
		  const void *body, size_t len, const char *peer, int tag)
{
	httpd_req *r = NULL, *ret = NULL;
	const char *why = NULL;
	size_t i;
	int status;

	if (method == NULL || target == NULL)
		return NULL;
	for (i = 0; known_methods[i] != NULL && strcmp(known_methods[i], method) != 0; i++)
		;
	if (known_methods[i] == NULL)
		return NULL;	/* evhttp answers 405/400 before any handler */
	if ((r = calloc(1, sizeof(*r))) == NULL || (r->mem = calloc(1, sizeof(*r->mem))) == NULL)
		goto out;
	TAILQ_INIT(&r->mem->in);
	TAILQ_INIT(&r->mem->out);
	r->in_headers = &r->mem->in;
	r->out_headers = &r->mem->out;
	r->tag = tag;
	r->method = known_methods[i];
	if ((r->mem->target = strdup(target)) == NULL)
		goto out;
	r->target = r->mem->target;
	snprintf(r->peer, sizeof(r->peer), "%s", peer != NULL ? peer : "-");
	for (i = 0; headers != NULL && headers[i] != NULL; i += 2) {
		/* evhttp refuses the same names and values on the wire */
		if (headers[i + 1] == NULL ||
		    evhttp_add_header(&r->mem->in, headers[i], headers[i + 1]) != 0)
			goto out;
	}
	if ((r->body = malloc(len + 1)) == NULL)
		goto out;
	if (len > 0)
		memcpy(r->body, body, len);
	r->body[len] = '\0';
	r->body_len = len;
	if ((status = parse_target(r, &why)) != 0)
		reply_early(r, status, why);
	else
		r->host = evhttp_find_header(r->in_headers, "Host");
	ret = r;
	r = NULL;
out:
	httpd_req_mem_free(&r);
	return ret;
}

void
httpd_req_mem_set_peer_cert(httpd_req *r, X509 *cert)
{
	if (r != NULL && r->mem != NULL)
		r->peer_cert = cert;
}

void
httpd_req_mem_set_client_cert(httpd_req *r, X509 *cert)
{
	if (r != NULL && r->mem != NULL)
		r->mem->client_cert = cert;
}

void
httpd_req_mem_set_binding(httpd_req *r, const unsigned char *cb, size_t len, int tls13)
{
	if (r == NULL || r->mem == NULL || len > sizeof(r->mem->binding))
		return;
	memcpy(r->mem->binding, cb, len);
	r->mem->binding_len = len;
	r->mem->binding_tls13 = tls13;
}

int
httpd_req_mem_status(const httpd_req *r)
{
	return r != NULL && r->mem != NULL ? r->mem->status : 0;
}

const unsigned char *
httpd_req_mem_reply(const httpd_req *r, size_t *len)
{
	if (len != NULL)
		*len = r != NULL && r->mem != NULL ? r->mem->reply_len : 0;
	return r != NULL && r->mem != NULL ? r->mem->reply : NULL;
}

const char *
httpd_req_mem_reply_header(const httpd_req *r, const char *name)
{
	if (r == NULL || r->mem == NULL || name == NULL)
		return NULL;
	return evhttp_find_header(&r->mem->out, name);
}

const char *
httpd_req_mem_detail(const httpd_req *r)
{
	return r != NULL ? r->detail : "";
}

void
httpd_req_mem_free(httpd_req **rp)
{
	httpd_req *r;

	if (rp == NULL || *rp == NULL)
		return;
	r = *rp;
	*rp = NULL;
	if (r->mem != NULL && r->mem->own_certs) {
		X509_free(r->peer_cert);
		X509_free(r->mem->client_cert);
		sk_X509_pop_free(r->mem->chain, X509_free);
	}
	if (r->mem != NULL) {
		evhttp_clear_headers(&r->mem->in);
		evhttp_clear_headers(&r->mem->out);
		free(r->mem->target);
		free(r->mem->reply);
		free(r->mem);
	}
	free(r->path);
	if (r->body != NULL)
		OPENSSL_clear_free(r->body, r->body_len + 1);
	free(r);
}

/* ---- server ---- */

httpd *
httpd_new(const struct httpd_limits *lim, httpd_handler handler, void *hud,
	  httpd_logger logger, void *lud)
{
	httpd *h = NULL, *ret = NULL;

	if (handler == NULL)
		goto out;
	if ((h = calloc(1, sizeof(*h))) == NULL)
		goto out;
	h->ex_idx = -1;
	h->done_pipe[0] = h->done_pipe[1] = -1;
	if (lim != NULL)
		h->lim = *lim;
	if (h->lim.max_body == 0)
		h->lim.max_body = DEFAULT_MAX_BODY;
	if (h->lim.max_body > SSIZE_MAX - 1)
		h->lim.max_body = SSIZE_MAX - 1;
	if (h->lim.max_headers == 0)
		h->lim.max_headers = DEFAULT_MAX_HEADERS;
	if (h->lim.max_headers > SSIZE_MAX)
		h->lim.max_headers = SSIZE_MAX;
	if (h->lim.timeout_sec <= 0)
		h->lim.timeout_sec = DEFAULT_TIMEOUT_SEC;
	if (h->lim.max_connections < 0)
		h->lim.max_connections = 0;
	h->handler = handler;
	h->hud = hud;
	h->logger = logger;
	h->lud = lud;
	if ((h->base = event_base_new()) == NULL)
		goto out;
	if ((h->ex_idx = SSL_get_ex_new_index(0, NULL, NULL, NULL, conn_ex_free)) < 0)
		goto out;
	if ((h->stop_ev = event_new(h->base, -1, 0, stop_cb, h)) == NULL)
		goto out;
	if ((h->resume_ev = event_new(h->base, -1, 0, resume_cb, h)) == NULL)
		goto out;
	if (pthread_mutex_init(&h->done_mu, NULL) != 0)
		goto out;
	h->done_mu_ok = 1;
	if (pipe2(h->done_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
		h->done_pipe[0] = h->done_pipe[1] = -1;
		goto out;
	}
	if ((h->done_ev = event_new(h->base, h->done_pipe[0], EV_READ | EV_PERSIST, done_cb, h)) == NULL ||
	    event_add(h->done_ev, NULL) != 0)
		goto out;
	ret = h;
	h = NULL;
out:
	httpd_free(&h);
	ERR_clear_error();
	return ret;
}

const char *
httpd_error(const httpd *h)
{
	if (h == NULL)
		return "no httpd";
	return h->err[0] != '\0' ? h->err : "no error";
}

/* "host:port" or "[v6]:port" into host (NUL-terminated) and port. */
static int
parse_addr(httpd *h, const char *addr, char *host, size_t hostsz, int *port)
{
	const char *hs, *he, *ps;
	char *end = NULL;
	long p;

	if (addr == NULL) {
		set_err(h, "listen: no address");
		return -1;
	}
	if (addr[0] == '[') {
		hs = addr + 1;
		if ((he = strchr(hs, ']')) == NULL || he[1] != ':') {
			set_err(h, "listen: '%s': expected [IPv6]:port", addr);
			return -1;
		}
		ps = he + 2;
	} else {
		hs = addr;
		if ((he = strrchr(addr, ':')) == NULL) {
			set_err(h, "listen: '%s': expected host:port", addr);
			return -1;
		}
		if (memchr(hs, ':', (size_t)(he - hs)) != NULL) {
			set_err(h, "listen: '%s': write an IPv6 address in brackets", addr);
			return -1;
		}
		ps = he + 1;
	}
	if (he == hs || (size_t)(he - hs) >= hostsz) {
		set_err(h, "listen: '%s': bad host", addr);
		return -1;
	}
	memcpy(host, hs, (size_t)(he - hs));
	host[he - hs] = '\0';
	errno = 0;
	p = strtol(ps, &end, 10);
	if (*ps < '0' || *ps > '9' || errno != 0 || *end != '\0' || p < 0 || p > 65535) {
		set_err(h, "listen: '%s': bad port", addr);
		return -1;
	}
	*port = (int)p;
	return 0;
}

int
httpd_listen(httpd *h, const char *addr, SSL_CTX *ctx, int tag, int *bound_port)
{
	struct listener *l = NULL;
	char host[256];
	int port = 0, err, rc = -1;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);

	if (h == NULL)
		return -1;
	if (ctx == NULL) {
		set_err(h, "listen: no SSL_CTX");
		goto out;
	}
	if (h->stopping) {
		set_err(h, "listen: the server is stopping");
		goto out;
	}
	if (parse_addr(h, addr, host, sizeof(host), &port) != 0)
		goto out;
	if ((l = calloc(1, sizeof(*l))) == NULL || (l->http = evhttp_new(h->base)) == NULL) {
		set_err(h, "listen: out of memory");
		goto out;
	}
	l->h = h;
	l->tag = tag;
	evhttp_set_bevcb(l->http, conn_bevcb, l);
	evhttp_set_gencb(l->http, req_gencb, l);
	evhttp_set_allowed_methods(l->http, ALL_METHODS);
	evhttp_set_default_content_type(l->http, NULL);
	evhttp_set_max_body_size(l->http, (ev_ssize_t)h->lim.max_body);
	evhttp_set_max_headers_size(l->http, (ev_ssize_t)h->lim.max_headers);
	evhttp_set_timeout(l->http, h->lim.timeout_sec);
	errno = 0;
	if ((l->bound = evhttp_bind_socket_with_handle(l->http, host, (ev_uint16_t)port)) == NULL) {
		err = errno;
		set_err(h, "listen: cannot bind %s: %s", addr,
			err != 0 ? strerror(err) : "address not usable");
		goto out;
	}
	memset(&ss, 0, sizeof ss);
	if (getsockname(evhttp_bound_socket_get_fd(l->bound), (struct sockaddr *)&ss, &sl) != 0) {
		set_err(h, "listen: getsockname on %s: %s", addr, strerror(errno));
		goto out;
	}
	if (ss.ss_family == AF_INET)
		port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
	else if (ss.ss_family == AF_INET6)
		port = ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
	if (!SSL_CTX_up_ref(ctx)) {
		set_err(h, "listen: SSL_CTX_up_ref");
		goto out;
	}
	l->ctx = ctx;
	evconnlistener_set_error_cb(evhttp_bound_socket_get_listener(l->bound), accept_error_cb);
	if (h->paused || h->fd_paused)
		evconnlistener_disable(evhttp_bound_socket_get_listener(l->bound));
	l->next = h->listeners;
	h->listeners = l;
	l->all_next = all_listeners;
	all_listeners = l;
	l = NULL;
	if (bound_port != NULL)
		*bound_port = port;
	rc = 0;
out:
	if (l != NULL) {
		if (l->http != NULL)
			evhttp_free(l->http);	/* closes the bound socket */
		free(l);
	}
	return rc;
}

/* Busy connections, or 0 when the stop may finish. */
static int
busy_connections(httpd *h)
{
	struct conn *c;
	int n = 0;

	for (c = h->conns; c != NULL; c = c->next) {
		if (c->busy || (c->bev != NULL &&
				evbuffer_get_length(bufferevent_get_output(c->bev)) > 0))
			n++;
	}
	return n;
}

static void
stop_poll_cb(evutil_socket_t fd, short what, void *arg)
{
	httpd *h = arg;
	struct timespec now;
	int busy;

	(void)fd;
	(void)what;
	busy = busy_connections(h) + h->ndetached;
	clock_gettime(CLOCK_MONOTONIC, &now);
	if (busy > 0 && (now.tv_sec < h->deadline.tv_sec ||
			 (now.tv_sec == h->deadline.tv_sec && now.tv_nsec < h->deadline.tv_nsec)))
		return;
	if (busy > 0)
		fprintf(stderr, "p11ca: grace period over, dropping %d busy connection(s)\n", busy);
	if (h->poll_ev != NULL)
		event_del(h->poll_ev);
	event_base_loopexit(h->base, NULL);
}

/* Stop accepting, then let stop_poll_cb end the loop. */
static void
begin_stop(httpd *h)
{
	struct listener *l;
	struct timeval tv = { 0, STOP_POLL_USEC };

	if (h->stopping)
		return;
	h->stopping = 1;
	for (l = h->listeners; l != NULL; l = l->next) {
		if (l->bound != NULL) {
			evhttp_del_accept_socket(l->http, l->bound);	/* closes it */
			l->bound = NULL;
		}
	}
	clock_gettime(CLOCK_MONOTONIC, &h->deadline);
	h->deadline.tv_sec += h->grace_sec;
	if (h->poll_ev != NULL)
		event_add(h->poll_ev, &tv);
	stop_poll_cb(-1, 0, h);
}

static void
signal_cb(evutil_socket_t sig, short what, void *arg)
{
	httpd *h = arg;

	(void)what;
	if (h->stopping) {
		fprintf(stderr, "p11ca: signal %d again: exiting now\n", (int)sig);
		event_base_loopexit(h->base, NULL);
		return;
	}
	fprintf(stderr, "p11ca: signal %d: stopping (grace %d s)\n", (int)sig, h->grace_sec);
	begin_stop(h);
}

static void
stop_cb(evutil_socket_t fd, short what, void *arg)
{
	(void)fd;
	(void)what;
	begin_stop(arg);
}

int
httpd_run(httpd *h, int grace_sec)
{
	static const int sigs[2] = { SIGTERM, SIGINT };
	struct sigaction sa;
	int rc = -1, i;

	if (h == NULL)
		return -1;
	if (h->stopping)
		return 0;	/* an earlier run stopped it: listeners are closed */
	h->grace_sec = grace_sec > 0 ? grace_sec : 0;
	/* A peer closing mid-write must give EPIPE, not kill the process
	 * (OpenSSL's socket BIO uses write(2)). */
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGPIPE, &sa, NULL) != 0) {
		set_err(h, "run: ignoring SIGPIPE: %s", strerror(errno));
		goto out;
	}
	if (h->poll_ev == NULL &&
	    (h->poll_ev = event_new(h->base, -1, EV_PERSIST, stop_poll_cb, h)) == NULL) {
		set_err(h, "run: out of memory");
		goto out;
	}
	for (i = 0; i < 2; i++) {
		if (h->sig_ev[i] == NULL &&
		    (h->sig_ev[i] = evsignal_new(h->base, sigs[i], signal_cb, h)) == NULL) {
			set_err(h, "run: out of memory");
			goto out;
		}
		if (evsignal_add(h->sig_ev[i], NULL) != 0) {
			set_err(h, "run: cannot handle signal %d", sigs[i]);
			goto out;
		}
	}
	if (event_base_dispatch(h->base) < 0) {
		set_err(h, "run: event loop failed");
		goto out;
	}
	rc = 0;
out:
	for (i = 0; i < 2; i++) {
		if (h->sig_ev[i] != NULL) {
			event_free(h->sig_ev[i]);
			h->sig_ev[i] = NULL;
		}
	}
	if (h->poll_ev != NULL) {
		event_free(h->poll_ev);
		h->poll_ev = NULL;
	}
	return rc;
}

/* From the loop's thread: a handler, or code before httpd_run. */
void
httpd_stop(httpd *h)
{
	if (h == NULL || h->stopping)
		return;
	/* begin_stop runs from the loop: at once when called before httpd_run */
	event_active(h->stop_ev, EV_READ, 0);
}

void
httpd_free(httpd **hp)
{
	httpd *h;
	struct listener *l, *next;
	struct conn *c;
	int i;

	if (hp == NULL || *hp == NULL)
		return;
	h = *hp;
	*hp = NULL;
	h->stopping = 1;	/* no listener re-enabling from here */
	/* detached requests finished after the loop ended (the caller has
	 * stopped the threads answering them): their replies are queued and
	 * go with the connections, and evhttp frees the orphaned ones */
	if (h->done_mu_ok)
		done_flush(h);
	if (h->ndetached > 0)
		fprintf(stderr, "p11ca: %d detached request(s) never answered\n", h->ndetached);
	for (l = h->listeners; l != NULL; l = l->next) {
		if (l->http != NULL)
			evhttp_free(l->http);	/* listeners and connections */
		l->http = NULL;
		l->bound = NULL;
	}
	if (h->stop_ev != NULL)
		event_free(h->stop_ev);
	if (h->done_ev != NULL)
		event_free(h->done_ev);
	if (h->resume_ev != NULL)
		event_free(h->resume_ev);
	if (h->poll_ev != NULL)
		event_free(h->poll_ev);
	for (i = 0; i < 2; i++) {
		if (h->sig_ev[i] != NULL)
			event_free(h->sig_ev[i]);
	}
	/* Runs the bufferevents' finalizers: their SSLs, and with them our
	 * struct conns, are freed here. */
	if (h->base != NULL)
		event_base_free(h->base);
	for (c = h->conns; c != NULL; c = c->next)
		c->h = NULL;	/* not expected; never let one point at h */
	for (l = h->listeners; l != NULL; l = next) {
		struct listener **pp;

		next = l->next;
		for (pp = &all_listeners; *pp != NULL; pp = &(*pp)->all_next) {
			if (*pp == l) {
				*pp = l->all_next;
				break;
			}
		}
		SSL_CTX_free(l->ctx);
		free(l);
	}
	if (h->ex_idx >= 0)
		CRYPTO_free_ex_index(CRYPTO_EX_INDEX_SSL, h->ex_idx);
	if (h->done_pipe[0] >= 0)
		close(h->done_pipe[0]);
	if (h->done_pipe[1] >= 0)
		close(h->done_pipe[1]);
	if (h->done_mu_ok)
		pthread_mutex_destroy(&h->done_mu);
	free(h);
}
