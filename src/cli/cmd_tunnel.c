/*
 * p11cert tunnel: accept plain TCP on a loopback address and forward every
 * connection over TLS (1.2/1.3) to a server, with the token key as the
 * client certificate.  docs/cli.md "tunnel".
 *
 * Concurrency: one thread, one libevent loop.  Each connection is a pair of
 * bufferevents, the client socket and an OpenSSL bufferevent towards the
 * server.  The token key signs inside the TLS handshakes, which OpenSSL runs
 * from the bufferevent callbacks on this one thread, so token operations are
 * serialized by construction; a handshake that waits for the token holds up
 * the relaying of the other connections for that long.
 *
 * Half-close (TCP and RFC 8446 s6.1 close_notify): the client's EOF becomes
 * a close_notify once everything read from the client has been written to
 * TLS, and the TLS side stays open for reading; the server's close_notify
 * or EOF becomes shutdown(SHUT_WR) towards the client once everything read
 * from the server has been written there.  A pair is freed when both
 * directions are done, or at once on any error.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/bufferevent_ssl.h>
#include <event2/event.h>
#include <event2/listener.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include <p11cert/tls.h>

#include "cli.h"

/* Backpressure: stop reading a side while the other side's output buffer
 * holds more than RELAY_HIGH bytes; resume below RELAY_LOW. */
#define RELAY_HIGH (256 * 1024)
#define RELAY_LOW (64 * 1024)
#define MAX_CONNECTIONS_DEFAULT 512
#define MAX_CONNECTIONS_LIMIT 65536
#define TIMEOUT_DEFAULT 30
#define ADDR_STR 64 /* "[v6 address]:port" */

static const char tunnel_help[] =
	"usage: p11cert tunnel --key URI --listen ADDR:PORT --connect HOST:PORT\n"
	"                      [--cacert FILE] [--chain FILE] [--server-name NAME]\n"
	"                      [--allow-remote] [--max-connections N] [--timeout S]\n"
	"                      [--port-file FILE]\n"
	"\n"
	"Accept plain TCP on ADDR:PORT and forward each connection over TLS to\n"
	"HOST:PORT, authenticated with the token key and its certificate.\n"
	"\n"
	"  --key URI            the token key (its certificate is the client certificate)\n"
	"  --listen ADDR:PORT   127.0.0.1:PORT or [::1]:PORT; port 0 picks a free port\n"
	"  --connect HOST:PORT  the TLS server (HOST a name, IPv4 or [IPv6])\n"
	"  --cacert FILE        trust anchors for the server (default: the system store)\n"
	"  --chain FILE         intermediate certificates to send after ours (PEM)\n"
	"  --server-name NAME   SNI and the name the server certificate must carry\n"
	"                       (default: HOST)\n"
	"  --allow-remote       allow a non-loopback --listen address\n"
	"  --max-connections N  stop accepting at N open connections (default 512)\n"
	"  --timeout S          seconds for the TCP connect and for the TLS handshake\n"
	"                       (default 30)\n"
	"  --port-file FILE     write the listening port to FILE (atomically)\n"
	"\n"
	"Runs until SIGTERM or SIGINT.  One line per connection on stderr (-q: errors only).\n";

struct conn;

struct tunnel {
	struct cli *c;
	struct event_base *base;
	struct evconnlistener *lst;
	struct event *ev_term, *ev_int, *ev_resume;
	SSL_CTX *ssl_ctx;
	struct addrinfo *ai;     /* --connect, resolved once at start */
	struct addrinfo **addrs; /* the list as an array */
	size_t naddrs, pref;     /* pref: the address that worked last */
	char target[300];        /* --connect as given, for messages */
	const char *name;        /* SNI / name to verify */
	int name_is_ip;
	struct timeval timeout;
	size_t nconn, max_conn;
	unsigned long next_id;
	int full;     /* listener disabled: --max-connections reached */
	int stalled;  /* listener disabled after an accept error */
	int stopping; /* signal received */
	struct conn *conns;
};

struct conn {
	struct tunnel *t;
	struct conn *prev, *next;
	unsigned long id;
	char peer[ADDR_STR]; /* the local client */
	char addr[ADDR_STR]; /* the server address connected to */
	struct bufferevent *cli, *tls;
	struct event *timer;   /* TLS handshake deadline */
	struct event *ev_conn; /* pending TCP connect */
	struct event *ev_shut; /* close_notify waiting for the socket */
	int fd;                /* socket of the pending connect, else -1 */
	size_t tries, idx;      /* addresses tried; the one being tried */
	int last_errno;
	int tls_up;             /* handshake done */
	int cli_eof, tls_eof;   /* EOF read from that side */
	int cli_paused, tls_paused; /* reading stopped for backpressure */
	int notify_sent;        /* close_notify sent (or the server is gone) */
	int cli_shut;           /* shutdown(SHUT_WR) done on the client */
	uint64_t up, down;      /* bytes client->server, server->client */
	struct timespec start;
};

static void conn_free(struct conn *k, const char *why);
static void connect_next(struct conn *k);

static void say(struct tunnel *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void say(struct tunnel *t, const char *fmt, ...)
{
	va_list ap;

	if (t->c->quiet)
		return;
	va_start(ap, fmt);
	fputs("p11cert: tunnel: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

/* errors: printed even with -q */
static void warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void warn(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	fputs("p11cert: tunnel: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
	va_end(ap);
}

static void addr_str(const struct sockaddr *sa, char *buf, size_t size)
{
	char h[INET6_ADDRSTRLEN] = "?";

	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;

		inet_ntop(AF_INET, &s4->sin_addr, h, sizeof h);
		snprintf(buf, size, "%s:%u", h, (unsigned)ntohs(s4->sin_port));
	} else if (sa->sa_family == AF_INET6) {
		const struct sockaddr_in6 *s6 = (const struct sockaddr_in6 *)(const void *)sa;

		inet_ntop(AF_INET6, &s6->sin6_addr, h, sizeof h);
		snprintf(buf, size, "[%s]:%u", h, (unsigned)ntohs(s6->sin6_port));
	} else {
		snprintf(buf, size, "?");
	}
}

/* "HOST:PORT" or "[V6]:PORT" -> host (brackets removed) and port.  Returns
 * 0, or -1 when malformed.  min_port: 0 for --listen, 1 for --connect. */
static int split_hostport(const char *s, char *host, size_t hsize, unsigned *port, unsigned min_port)
{
	const char *colon, *h = s;
	size_t hl;
	char *end;
	unsigned long p;

	if (s[0] == '[') {
		const char *rb = strchr(s, ']');

		if (rb == NULL || rb[1] != ':')
			return -1;
		h = s + 1;
		hl = (size_t)(rb - h);
		colon = rb + 1;
	} else {
		colon = strrchr(s, ':');
		if (colon == NULL || memchr(s, ':', (size_t)(colon - s)) != NULL)
			return -1; /* an IPv6 literal needs brackets */
		hl = (size_t)(colon - s);
	}
	if (hl == 0 || hl >= hsize || colon[1] < '0' || colon[1] > '9')
		return -1;
	errno = 0;
	p = strtoul(colon + 1, &end, 10);
	if (errno != 0 || *end != '\0' || p > 65535 || p < min_port)
		return -1;
	memcpy(host, h, hl);
	host[hl] = '\0';
	*port = (unsigned)p;
	return 0;
}

static int is_loopback(const struct sockaddr *sa)
{
	if (sa->sa_family == AF_INET) {
		const struct sockaddr_in *s4 = (const struct sockaddr_in *)(const void *)sa;

		return (ntohl(s4->sin_addr.s_addr) >> 24) == 127;
	}
	if (sa->sa_family == AF_INET6) {
		const struct in6_addr *a = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;

		if (IN6_IS_ADDR_LOOPBACK(a))
			return 1;
		return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
	}
	return 0;
}

static double elapsed(const struct timespec *t0)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (double)(now.tv_sec - t0->tv_sec) + (double)(now.tv_nsec - t0->tv_nsec) / 1e9;
}

/* --- listener ------------------------------------------------------------ */

static void listener_update(struct tunnel *t)
{
	if (t->lst == NULL)
		return;
	t->full = t->nconn >= t->max_conn;
	if (t->stopping || t->full || t->stalled)
		evconnlistener_disable(t->lst);
	else
		evconnlistener_enable(t->lst);
}

static void resume_cb(evutil_socket_t fd, short what, void *arg)
{
	struct tunnel *t = arg;

	(void)fd;
	(void)what;
	t->stalled = 0;
	listener_update(t);
}

static void accept_error_cb(struct evconnlistener *lst, void *arg)
{
	struct tunnel *t = arg;
	int e = EVUTIL_SOCKET_ERROR();
	struct timeval one = { 1, 0 };

	(void)lst;
	warn("accept: %s", strerror(e));
	/* out of descriptors or memory: pause instead of spinning */
	t->stalled = 1;
	listener_update(t);
	evtimer_add(t->ev_resume, &one);
}

/* --- one connection --------------------------------------------------------- */

static void conn_free(struct conn *k, const char *why)
{
	struct tunnel *t = k->t;

	/* why: an error after the handshake, shown even with -q */
	if (k->tls_up && (why != NULL || !t->c->quiet))
		warn("#%lu closed: %" PRIu64 " bytes up, %" PRIu64 " bytes down, %.3f s%s%s", k->id, k->up,
		     k->down, elapsed(&k->start), why ? ", " : "", why ? why : "");
	if (k->timer != NULL)
		event_free(k->timer);
	if (k->ev_conn != NULL)
		event_free(k->ev_conn);
	if (k->ev_shut != NULL)
		event_free(k->ev_shut);
	if (k->fd >= 0)
		close(k->fd);
	if (k->cli != NULL)
		bufferevent_free(k->cli); /* closes the client socket */
	if (k->tls != NULL)
		bufferevent_free(k->tls); /* SSL_free and close */
	if (k->prev != NULL)
		k->prev->next = k->next;
	else
		t->conns = k->next;
	if (k->next != NULL)
		k->next->prev = k->prev;
	free(k);
	t->nconn--;
	listener_update(t);
}

static void maybe_done(struct conn *k)
{
	if (k->notify_sent && k->cli_shut)
		conn_free(k, NULL);
}

/* A socket error worth naming.  errno may be stale by the time a deferred
 * callback runs, so only errors that end connections are believed. */
static const char *net_error(int e)
{
	switch (e) {
	case ECONNRESET:
	case EPIPE:
	case ETIMEDOUT:
	case ECONNABORTED:
	case EHOSTUNREACH:
	case ENETUNREACH:
		return strerror(e);
	default:
		return NULL;
	}
}

/* The OpenSSL error behind a failed TLS connection, as one phrase. */
static void tls_reason(struct conn *k, char *buf, size_t size)
{
	SSL *ssl = bufferevent_openssl_get_ssl(k->tls);
	long v = ssl != NULL ? SSL_get_verify_result(ssl) : X509_V_OK;
	unsigned long e, last = 0;
	int sock = EVUTIL_SOCKET_ERROR();

	while ((e = bufferevent_get_openssl_error(k->tls)) != 0)
		if (ERR_GET_LIB(e) != 0) /* libevent also queues SSL_get_error() codes */
			last = e;
	if (v != X509_V_OK) {
		snprintf(buf, size, "certificate verify failed: %s", X509_verify_cert_error_string(v));
	} else if (last != 0) {
		const char *r = ERR_reason_error_string(last);

		if (r != NULL)
			snprintf(buf, size, "%s", r);
		else
			ERR_error_string_n(last, buf, size);
	} else if (net_error(sock) != NULL) {
		snprintf(buf, size, "%s", net_error(sock));
	} else {
		snprintf(buf, size, "connection closed by the server");
	}
	ERR_clear_error();
}

static void relay(struct bufferevent *from, struct bufferevent *to, uint64_t *count, int *paused)
{
	struct evbuffer *in = bufferevent_get_input(from), *out = bufferevent_get_output(to);

	*count += evbuffer_get_length(in);
	evbuffer_add_buffer(out, in);
	if (evbuffer_get_length(out) >= RELAY_HIGH && !*paused) {
		/* backpressure: the write callback of `to` resumes us */
		bufferevent_disable(from, EV_READ);
		*paused = 1;
	}
}

static void shut_retry_cb(evutil_socket_t fd, short what, void *arg);

/* The client sent EOF: once its data is in TLS, send close_notify and
 * keep reading from the server. */
static void maybe_close_notify(struct conn *k)
{
	SSL *ssl;
	int r;

	if (!k->cli_eof || k->notify_sent || k->ev_shut != NULL ||
	    evbuffer_get_length(bufferevent_get_output(k->tls)) > 0)
		return;
	ssl = bufferevent_openssl_get_ssl(k->tls);
	ERR_clear_error();
	r = SSL_shutdown(ssl); /* 0: sent, the server's is still to come */
	if (r < 0 && SSL_get_error(ssl, r) == SSL_ERROR_WANT_WRITE) {
		k->ev_shut = event_new(k->t->base, bufferevent_getfd(k->tls), EV_WRITE, shut_retry_cb, k);
		if (k->ev_shut != NULL && event_add(k->ev_shut, NULL) == 0)
			return;
		conn_free(k, "out of memory");
		return;
	}
	/* sent, or the server is gone already: either way this direction is
	 * over; a gone server shows as an error or EOF on the TLS side */
	ERR_clear_error();
	k->notify_sent = 1;
	maybe_done(k);
}

static void shut_retry_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;

	(void)fd;
	(void)what;
	event_free(k->ev_shut);
	k->ev_shut = NULL;
	maybe_close_notify(k);
}

/* The server is done: once its data is with the client, half-close the
 * client socket. */
static void maybe_shut_client(struct conn *k)
{
	if (!k->tls_eof || k->cli_shut || evbuffer_get_length(bufferevent_get_output(k->cli)) > 0)
		return;
	(void)shutdown(bufferevent_getfd(k->cli), SHUT_WR);
	k->cli_shut = 1;
	maybe_done(k);
}

static void cli_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *k = arg;

	relay(bev, k->tls, &k->up, &k->cli_paused);
}

static void tls_read_cb(struct bufferevent *bev, void *arg)
{
	struct conn *k = arg;

	relay(bev, k->cli, &k->down, &k->tls_paused);
}

/* Output of the client socket drained below RELAY_LOW. */
static void cli_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *k = arg;

	(void)bev;
	if (k->tls_paused && evbuffer_get_length(bufferevent_get_output(k->cli)) <= RELAY_LOW) {
		k->tls_paused = 0;
		if (!k->tls_eof)
			bufferevent_enable(k->tls, EV_READ);
	}
	maybe_shut_client(k);
}

static void tls_write_cb(struct bufferevent *bev, void *arg)
{
	struct conn *k = arg;

	(void)bev;
	if (k->cli_paused && evbuffer_get_length(bufferevent_get_output(k->tls)) <= RELAY_LOW) {
		k->cli_paused = 0;
		if (!k->cli_eof)
			bufferevent_enable(k->cli, EV_READ);
	}
	maybe_close_notify(k);
}

static void cli_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *k = arg;
	char why[128];

	if (what & BEV_EVENT_EOF) {
		k->cli_eof = 1;
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			relay(bev, k->tls, &k->up, &k->cli_paused);
		maybe_close_notify(k);
		return;
	}
	snprintf(why, sizeof why, "client: %s",
		 net_error(EVUTIL_SOCKET_ERROR()) ? net_error(EVUTIL_SOCKET_ERROR()) : "socket error");
	conn_free(k, why);
}

static void tls_event_cb(struct bufferevent *bev, short what, void *arg)
{
	struct conn *k = arg;
	struct tunnel *t = k->t;
	char why[256], msg[300];

	if (what & BEV_EVENT_CONNECTED) {
		SSL *ssl = bufferevent_openssl_get_ssl(bev);

		evtimer_del(k->timer);
		k->tls_up = 1;
		say(t, "#%lu %s -> %s (%s): open, %s %s", k->id, k->peer, t->target, k->addr,
		    SSL_get_version(ssl), SSL_get_cipher_name(ssl));
		bufferevent_setcb(k->cli, cli_read_cb, cli_write_cb, cli_event_cb, k);
		bufferevent_setwatermark(k->cli, EV_WRITE, RELAY_LOW, 0);
		bufferevent_enable(k->cli, EV_READ | EV_WRITE);
		bufferevent_enable(k->tls, EV_READ | EV_WRITE);
		return;
	}
	tls_reason(k, why, sizeof why);
	if (!k->tls_up) {
		warn("#%lu %s -> %s (%s): TLS handshake failed: %s", k->id, k->peer, t->target, k->addr, why);
		conn_free(k, NULL);
		return;
	}
	if (what & BEV_EVENT_EOF) {
		/* close_notify, or a TCP EOF without one (see start_tls) */
		k->tls_eof = 1;
		if (evbuffer_get_length(bufferevent_get_input(bev)) > 0)
			relay(bev, k->cli, &k->down, &k->tls_paused);
		maybe_shut_client(k);
		return;
	}
	snprintf(msg, sizeof msg, "server: %s", why);
	conn_free(k, msg);
}

static void timeout_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;

	(void)fd;
	(void)what;
	warn("#%lu %s -> %s (%s): TLS handshake timed out after %ld s", k->id, k->peer, k->t->target, k->addr,
	     (long)k->t->timeout.tv_sec);
	conn_free(k, NULL);
}

static void set_nodelay(int fd)
{
	int one = 1;

	(void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

/* TCP is up: start TLS on fd. */
static void start_tls(struct conn *k, int fd)
{
	struct tunnel *t = k->t;
	const char *reason;
	SSL *ssl;

	k->fd = -1;
	set_nodelay(fd);
	ssl = SSL_new(t->ssl_ctx);
	if (ssl == NULL)
		goto fail;
	/* A server's TCP EOF without close_notify ends its direction like a
	 * close_notify would (the client only ever sees a TCP EOF): OpenSSL 3
	 * reports it as an SSL error unless told, and libevent 2.1's "dirty
	 * shutdown" only knows the OpenSSL 1.1 way.  nginx, for one, closes
	 * without close_notify once it has received ours. */
	SSL_set_options(ssl, SSL_OP_IGNORE_UNEXPECTED_EOF);
	/* RFC 6066 s3: no IP literals in SNI; verify those against iPAddress */
	if (t->name_is_ip) {
		if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), t->name) != 1)
			goto fail;
	} else {
		if (SSL_set_tlsext_host_name(ssl, t->name) != 1 || SSL_set1_host(ssl, t->name) != 1)
			goto fail;
		SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
	}
	k->tls = bufferevent_openssl_socket_new(t->base, fd, ssl, BUFFEREVENT_SSL_CONNECTING,
						BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	if (k->tls == NULL)
		goto fail; /* libevent freed nothing */
	ssl = NULL;
	fd = -1; /* NOLINT(clang-analyzer-deadcode.DeadStores): owned by k->tls now */
	bufferevent_openssl_set_allow_dirty_shutdown(k->tls, 1);
	bufferevent_setcb(k->tls, tls_read_cb, tls_write_cb, tls_event_cb, k);
	bufferevent_setwatermark(k->tls, EV_WRITE, RELAY_LOW, 0);
	bufferevent_enable(k->tls, EV_READ | EV_WRITE);
	evtimer_add(k->timer, &t->timeout);
	return;
fail:
	reason = ERR_reason_error_string(ERR_peek_last_error());
	warn("#%lu cannot start TLS: %s", k->id, reason != NULL ? reason : "out of memory");
	ERR_clear_error();
	SSL_free(ssl);
	if (fd >= 0)
		close(fd);
	conn_free(k, NULL);
}

static void connect_cb(evutil_socket_t fd, short what, void *arg)
{
	struct conn *k = arg;
	int err = 0;
	socklen_t len = sizeof err;

	event_free(k->ev_conn);
	k->ev_conn = NULL;
	if (what & EV_TIMEOUT)
		err = ETIMEDOUT;
	else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0)
		err = errno;
	if (err != 0) {
		k->last_errno = err;
		if (k->t->c->verbose)
			say(k->t, "#%lu connect to %s: %s", k->id, k->addr, strerror(err));
		close(k->fd);
		k->fd = -1;
		connect_next(k);
		return;
	}
	k->t->pref = k->idx;
	start_tls(k, fd);
}

/* Try the server's addresses in turn, starting with the one that worked
 * last. */
static void connect_next(struct conn *k)
{
	struct tunnel *t = k->t;

	while (k->tries < t->naddrs) {
		const struct addrinfo *ai;
		int fd;

		k->idx = (t->pref + k->tries) % t->naddrs;
		ai = t->addrs[k->idx];
		k->tries++;
		addr_str(ai->ai_addr, k->addr, sizeof k->addr);
		fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
		if (fd < 0) {
			k->last_errno = errno;
			continue;
		}
		if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0) {
			t->pref = k->idx;
			start_tls(k, fd);
			return;
		}
		if (errno != EINPROGRESS) {
			k->last_errno = errno;
			if (t->c->verbose)
				say(t, "#%lu connect to %s: %s", k->id, k->addr, strerror(errno));
			close(fd);
			continue;
		}
		k->fd = fd;
		k->ev_conn = event_new(t->base, fd, EV_WRITE, connect_cb, k);
		if (k->ev_conn == NULL || event_add(k->ev_conn, &t->timeout) != 0) {
			warn("#%lu out of memory", k->id);
			conn_free(k, NULL);
		}
		return;
	}
	warn("#%lu %s -> %s: cannot connect: %s", k->id, k->peer, t->target, strerror(k->last_errno));
	conn_free(k, NULL);
}

static void accept_cb(struct evconnlistener *lst, evutil_socket_t fd, struct sockaddr *sa, int salen, void *arg)
{
	struct tunnel *t = arg;
	struct conn *k;

	(void)lst;
	(void)salen;
	k = calloc(1, sizeof *k);
	if (k == NULL) {
		close(fd);
		warn("out of memory");
		return;
	}
	k->t = t;
	k->fd = -1;
	k->id = ++t->next_id;
	clock_gettime(CLOCK_MONOTONIC, &k->start);
	addr_str(sa, k->peer, sizeof k->peer);
	k->next = t->conns;
	if (t->conns != NULL)
		t->conns->prev = k;
	t->conns = k;
	t->nconn++;
	listener_update(t);
	set_nodelay(fd);
	/* the client is read only once TLS is up; until then its bytes wait
	 * in the kernel */
	k->cli = bufferevent_socket_new(t->base, fd, BEV_OPT_CLOSE_ON_FREE | BEV_OPT_DEFER_CALLBACKS);
	k->timer = evtimer_new(t->base, timeout_cb, k);
	if (k->cli == NULL || k->timer == NULL) {
		if (k->cli == NULL)
			close(fd);
		warn("out of memory");
		conn_free(k, NULL);
		return;
	}
	bufferevent_disable(k->cli, EV_READ | EV_WRITE);
	connect_next(k);
}

/* --- signals, setup ------------------------------------------------------- */

static void signal_cb(evutil_socket_t sig, short what, void *arg)
{
	struct tunnel *t = arg;

	(void)what;
	if (t->stopping)
		return;
	t->stopping = 1;
	say(t, "%s: stopping, closing %zu connection%s", sig == SIGTERM ? "SIGTERM" : "SIGINT", t->nconn,
	    t->nconn == 1 ? "" : "s");
	listener_update(t);
	while (t->conns != NULL) {
		struct conn *k = t->conns;

		/* best effort close_notify, never waiting */
		if (k->tls_up && !k->notify_sent)
			(void)SSL_shutdown(bufferevent_openssl_get_ssl(k->tls));
		ERR_clear_error();
		conn_free(k, NULL);
	}
	event_base_loopbreak(t->base);
}

/* --listen: numeric address and port */
static int parse_listen(struct cli *c, const char *s, int allow_remote, struct sockaddr_storage *ss,
			socklen_t *len)
{
	char host[INET6_ADDRSTRLEN + 1];
	unsigned port;
	struct sockaddr_in *s4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *s6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (split_hostport(s, host, sizeof host, &port, 0) != 0)
		return cli_usage(c, "bad --listen '%s' (127.0.0.1:PORT or [::1]:PORT)", s);
	if (inet_pton(AF_INET, host, &s4->sin_addr) == 1 && s[0] != '[') {
		s4->sin_family = AF_INET;
		s4->sin_port = htons((uint16_t)port);
		*len = sizeof *s4;
	} else if (s[0] == '[' && inet_pton(AF_INET6, host, &s6->sin6_addr) == 1) {
		s6->sin6_family = AF_INET6;
		s6->sin6_port = htons((uint16_t)port);
		*len = sizeof *s6;
	} else {
		return cli_usage(c, "bad --listen '%s': the address must be numeric, IPv4 or [IPv6]", s);
	}
	if (!allow_remote && !is_loopback((struct sockaddr *)ss))
		return cli_usage(c, "refusing to listen on '%s': not a loopback address, and whoever "
			     "connects uses the token key; give --allow-remote to allow it", s);
	return 0;
}

/* --connect: resolved once at start (as stunnel does by default). */
static int resolve(struct cli *c, struct tunnel *t, const char *s, char *host, size_t hsize)
{
	struct addrinfo hints, *ai;
	unsigned port;
	char ports[8];
	size_t n = 0;
	int e;

	if (split_hostport(s, host, hsize, &port, 1) != 0)
		return cli_usage(c, "bad --connect '%s' (HOST:PORT or [IPv6]:PORT, port 1-65535)", s);
	snprintf(ports, sizeof ports, "%u", port);
	memset(&hints, 0, sizeof hints);
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_protocol = IPPROTO_TCP;
	e = getaddrinfo(host, ports, &hints, &t->ai);
	if (e != 0) {
		fprintf(stderr, "p11cert: tunnel: cannot resolve '%s': %s\n", host,
			e == EAI_SYSTEM ? strerror(errno) : gai_strerror(e));
		return EX_UNAVAILABLE;
	}
	for (ai = t->ai; ai != NULL; ai = ai->ai_next)
		n++;
	if (n == 0) {
		fprintf(stderr, "p11cert: tunnel: '%s' resolves to no address\n", host);
		return EX_UNAVAILABLE;
	}
	t->addrs = calloc(n, sizeof *t->addrs); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (t->addrs == NULL) {
		fprintf(stderr, "p11cert: tunnel: out of memory\n");
		return EX_SOFTWARE;
	}
	for (ai = t->ai, n = 0; ai != NULL; ai = ai->ai_next)
		t->addrs[n++] = ai;
	t->naddrs = n;
	snprintf(t->target, sizeof t->target, "%s", s);
	return 0;
}

int cmd_tunnel(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "listen", required_argument, NULL, 'l' },
		{ "connect", required_argument, NULL, 'C' },
		{ "cacert", required_argument, NULL, 'a' },
		{ "chain", required_argument, NULL, 'H' },
		{ "server-name", required_argument, NULL, 'n' },
		{ "allow-remote", no_argument, NULL, 'R' },
		{ "max-connections", required_argument, NULL, 'm' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "port-file", required_argument, NULL, 'p' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *listen_s = NULL, *connect_s = NULL, *cacert = NULL, *chain = NULL;
	const char *server_name = NULL, *port_file = NULL;
	long max_conn = MAX_CONNECTIONS_DEFAULT, timeout = TIMEOUT_DEFAULT;
	int allow_remote = 0, ch, rc = EX_FAIL;
	char host[256], bound[ADDR_STR], portbuf[16];
	struct sockaddr_storage ss, bss;
	socklen_t sslen = 0, blen = sizeof bss;
	struct in6_addr ip6;
	struct in_addr ip4;
	struct tunnel t;
	p11c_key *key = NULL;
	p11c_result r;

	memset(&t, 0, sizeof t);
	t.c = c;
	if (cli_help(argc, argv, tunnel_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': uri = optarg; break;
		case 'l': listen_s = optarg; break;
		case 'C': connect_s = optarg; break;
		case 'a': cacert = optarg; break;
		case 'H': chain = optarg; break;
		case 'n': server_name = optarg; break;
		case 'R': allow_remote = 1; break;
		case 'p': port_file = optarg; break;
		case 'm':
			if (cli_parse_long(optarg, 1, MAX_CONNECTIONS_LIMIT, &max_conn) != 0)
				return cli_usage(c, "bad --max-connections '%s' (1 to %d)", optarg,
						 MAX_CONNECTIONS_LIMIT);
			break;
		case 'T':
			if (cli_parse_long(optarg, 1, 86400, &timeout) != 0)
				return cli_usage(c, "bad --timeout '%s' (1 to 86400 seconds)", optarg);
			break;
		default:
			return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (uri == NULL || listen_s == NULL || connect_s == NULL)
		return cli_usage(c, "--key URI, --listen ADDR:PORT and --connect HOST:PORT are required");
	if ((rc = parse_listen(c, listen_s, allow_remote, &ss, &sslen)) != 0)
		return rc;
	if (server_name != NULL && server_name[0] == '\0')
		return cli_usage(c, "empty --server-name");
	if ((rc = resolve(c, &t, connect_s, host, sizeof host)) != 0)
		goto out;
	t.name = server_name != NULL ? server_name : host;
	t.name_is_ip = inet_pton(AF_INET, t.name, &ip4) == 1 || inet_pton(AF_INET6, t.name, &ip6) == 1;
	t.max_conn = (size_t)max_conn;
	t.timeout.tv_sec = timeout;
	(void)signal(SIGPIPE, SIG_IGN);

	/* the token: key, certificate, login -- before listening, so a missing
	 * key or a bad PIN ends the run at once */
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &key)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot find the key '%s'", uri);
		goto out;
	}
	if ((r = p11c_tls_client_ctx(key, cacert, chain, &t.ssl_ctx)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot set up TLS with the token key");
		goto out;
	}

	t.base = event_base_new();
	if (t.base == NULL) {
		fprintf(stderr, "p11cert: tunnel: cannot create the event loop\n");
		rc = EX_SOFTWARE;
		goto out;
	}
	t.lst = evconnlistener_new_bind(t.base, accept_cb, &t,
					LEV_OPT_CLOSE_ON_FREE | LEV_OPT_REUSEABLE | LEV_OPT_CLOSE_ON_EXEC, -1,
					(struct sockaddr *)&ss, (int)sslen);
	if (t.lst == NULL) {
		fprintf(stderr, "p11cert: tunnel: cannot listen on %s: %s\n", listen_s,
			strerror(EVUTIL_SOCKET_ERROR()));
		rc = EX_UNAVAILABLE;
		goto out;
	}
	evconnlistener_set_error_cb(t.lst, accept_error_cb);
	t.ev_term = evsignal_new(t.base, SIGTERM, signal_cb, &t);
	t.ev_int = evsignal_new(t.base, SIGINT, signal_cb, &t);
	t.ev_resume = evtimer_new(t.base, resume_cb, &t);
	if (t.ev_term == NULL || t.ev_int == NULL || t.ev_resume == NULL || evsignal_add(t.ev_term, NULL) != 0 ||
	    evsignal_add(t.ev_int, NULL) != 0) {
		fprintf(stderr, "p11cert: tunnel: cannot set up signal handling\n");
		rc = EX_SOFTWARE;
		goto out;
	}
	memset(&bss, 0, sizeof bss);
	if (getsockname(evconnlistener_get_fd(t.lst), (struct sockaddr *)&bss, &blen) != 0) {
		fprintf(stderr, "p11cert: tunnel: getsockname: %s\n", strerror(errno));
		rc = EX_SOFTWARE;
		goto out;
	}
	addr_str((struct sockaddr *)&bss, bound, sizeof bound);
	if (port_file != NULL) {
		snprintf(portbuf, sizeof portbuf, "%u\n",
			 ntohs(bss.ss_family == AF_INET ? ((struct sockaddr_in *)&bss)->sin_port
							: ((struct sockaddr_in6 *)&bss)->sin6_port));
		if ((rc = cli_output(c, port_file, portbuf, strlen(portbuf), 0644)) != 0)
			goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: tunnel listening on %s\n", bound);
	if (c->verbose)
		say(&t, "forwarding to %s (%zu address%s) as '%s', server name '%s'", connect_s, t.naddrs,
		    t.naddrs == 1 ? "" : "es", cli_safe(p11c_key_label(key)), t.name);

	if (event_base_dispatch(t.base) != 0) {
		fprintf(stderr, "p11cert: tunnel: event loop failed\n");
		rc = EX_SOFTWARE;
		goto out;
	}
	rc = t.stopping ? 0 : EX_SOFTWARE;
out:
	while (t.conns != NULL)
		conn_free(t.conns, NULL); /* NOLINT(clang-analyzer-unix.Malloc): conn_free unlinks it */
	if (t.lst != NULL)
		evconnlistener_free(t.lst);
	if (t.ev_term != NULL)
		event_free(t.ev_term);
	if (t.ev_int != NULL)
		event_free(t.ev_int);
	if (t.ev_resume != NULL)
		event_free(t.ev_resume);
	if (t.base != NULL)
		event_base_free(t.base);
	SSL_CTX_free(t.ssl_ctx);
	free(t.addrs);
	if (t.ai != NULL)
		freeaddrinfo(t.ai);
	p11c_key_free(&key);
	return rc;
}
