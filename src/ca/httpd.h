/*
 * A small HTTPS server on libevent's evhttp with OpenSSL bufferevents.
 * Handlers run on the event loop's thread; one that would block the loop
 * (signing with a slow token) detaches the request and has another
 * thread answer it (httpd_req_detach, httpd_req_done).
 */
#ifndef P11CA_HTTPD_H
#define P11CA_HTTPD_H

#include <stddef.h>
#include <stdint.h>

#include <openssl/ssl.h>
#include <openssl/x509.h>

typedef struct httpd httpd;
typedef struct httpd_req httpd_req;

/* One request.  All pointers are valid only during the handler call. */
const char *httpd_req_method(const httpd_req *r);   /* "GET", "POST", ... */
const char *httpd_req_path(const httpd_req *r);     /* decoded path, no query */
const char *httpd_req_header(const httpd_req *r, const char *name); /* or NULL */
const unsigned char *httpd_req_body(const httpd_req *r, size_t *len);
const char *httpd_req_peer(const httpd_req *r);     /* "127.0.0.1:53122" */
const char *httpd_req_host(const httpd_req *r);     /* Host header or NULL */
/* The client's certificate when it sent one and it verified against the
 * listener's client CA (see httpd_listen), else NULL.  Borrowed. */
X509 *httpd_req_peer_cert(const httpd_req *r);
/* The certificate the client sent, whether or not it verified against the
 * listener's client CA (the TLS handshake proved the client holds its
 * key), and the chain it sent without the leaf.  Borrowed; NULL when none.
 * For callers that verify against their own trust anchors (EST's
 * bootstrap CA). */
X509 *httpd_req_client_cert(const httpd_req *r);
STACK_OF(X509) *httpd_req_client_chain(const httpd_req *r);
/* The channel binding of the request's TLS connection (RFC 7030 s3.5):
 * tls-unique (RFC 5929) on TLS 1.2, tls-exporter (RFC 9266, 32 bytes) on
 * TLS 1.3 (*tls13 set; may be NULL).  Its length, or 0 when none. */
size_t httpd_req_channel_binding(const httpd_req *r, unsigned char *out, size_t max, int *tls13);
/* Which listener got it: the `tag` given to httpd_listen. */
int httpd_req_listener(const httpd_req *r);

/* Send the response (exactly once per request).  content_type may be NULL.
 * extra_headers: NULL or a NULL-terminated list of "Name", "value" pairs. */
void httpd_reply(httpd_req *r, int status, const char *content_type,
		 const char *const *extra_headers, const void *body, size_t len);
/* Annotate the access-log line of this request (short, no secrets). */
void httpd_req_note(httpd_req *r, const char *protocol, const char *detail);

/*
 * Answer R from another thread.  Called by the handler (on the loop's
 * thread) instead of replying: returns a copy that outlives the handler
 * call, with the request's inputs taken now (method, path, headers, body,
 * peer address, client certificates and chain, channel binding) and its
 * reply captured rather than sent.  Any thread then runs a handler on the
 * copy (every httpd_req_* call works on it; httpd_reply exactly once) and
 * calls httpd_req_done, which hands it back: the loop sends the reply
 * (500 when none was made), logs it and frees the copy.  A client that
 * went away meanwhile gets nothing, and nothing leaks.  The graceful stop
 * waits for detached requests like for busy connections; httpd_free sends
 * what finished after the loop ended, so stop the answering threads
 * before it.  NULL when out of memory (or R is in-memory or answered):
 * then answer R as usual.
 */
httpd_req *httpd_req_detach(httpd_req *r);
void httpd_req_done(httpd_req *d);

/*
 * In-memory requests, for fuzzing and tests: no socket, no event loop.
 * method must be one the server knows ("GET", "POST", ...; else NULL);
 * target is the raw request-target, decoded like the server does; headers
 * is NULL or a NULL-terminated list of "Name", "value" pairs (NULL when
 * evhttp would refuse one); the body is copied as is (the server bounds it
 * by max_body before; so must the caller); peer as httpd_req_peer reports
 * it; tag as httpd_req_listener reports it.  A target the server answers
 * itself (400 "bad path", ...) is answered at once: httpd_req_mem_status
 * is then non-zero and the handler must not be called.  Replies are
 * captured, not sent or logged.  NULL when out of memory.
 */
httpd_req *httpd_req_mem_new(const char *method, const char *target, const char *const *headers,
			     const void *body, size_t len, const char *peer, int tag);
/* The verified client certificate to report (borrowed, may be NULL). */
void httpd_req_mem_set_peer_cert(httpd_req *r, X509 *cert);
/* The certificate reported by httpd_req_client_cert (borrowed), and the
 * channel binding (at most 64 bytes) httpd_req_channel_binding reports. */
void httpd_req_mem_set_client_cert(httpd_req *r, X509 *cert);
void httpd_req_mem_set_binding(httpd_req *r, const unsigned char *cb, size_t len, int tls13);
/* The status replied, 0 before any reply. */
int httpd_req_mem_status(const httpd_req *r);
/* The reply body (NUL-terminated copy; NULL when empty) and a reply header. */
const unsigned char *httpd_req_mem_reply(const httpd_req *r, size_t *len);
const char *httpd_req_mem_reply_header(const httpd_req *r, const char *name);
/* The access-log detail noted for the request ("" when none). */
const char *httpd_req_mem_detail(const httpd_req *r);
void httpd_req_mem_free(httpd_req **r);

typedef void (*httpd_handler)(httpd_req *r, void *ud);
/* Called once per finished request, after the reply is queued. */
typedef void (*httpd_logger)(const char *peer, const char *method, const char *path,
			     int status, size_t bytes, const char *protocol,
			     const char *detail, void *ud);

struct httpd_limits {
	size_t max_body;        /* bodies larger than this: 413 by httpd itself */
	size_t max_headers;     /* header bytes */
	int timeout_sec;        /* read/write timeout per connection, and the
				 * deadline of the TLS handshake and of each whole
				 * request (request line, headers and body) */
	int max_connections;    /* concurrent; beyond: accept waits */
	int max_per_address;    /* concurrent from one client address (0: no
				 * limit); beyond: the new connection is closed */
};

httpd *httpd_new(const struct httpd_limits *lim, httpd_handler h, void *hud,
		 httpd_logger log, void *lud);
/* Listen on "127.0.0.1:8443" / "[::1]:8443" with this SSL_CTX (the httpd
 * takes a reference).  `tag` identifies the listener to the handler.
 * When client_ca_verify is set the SSL_CTX already asks for (but does not
 * require) a client certificate; httpd only reports it.  Port 0 picks a
 * free port; *bound_port (may be NULL) receives the actual one.
 * Returns 0 or -1 with a message in httpd_error(). */
int httpd_listen(httpd *h, const char *addr, SSL_CTX *ctx, int tag, int *bound_port);
const char *httpd_error(const httpd *h);
/* Run until SIGTERM/SIGINT (or httpd_stop).  On the signal: stop
 * accepting, let in-flight requests finish and their replies flush
 * (bounded by `grace_sec`), then return 0. */
int httpd_run(httpd *h, int grace_sec);
void httpd_stop(httpd *h);
void httpd_free(httpd **h);

#endif
