/* ACME tls-alpn-01 responder (RFC 8737; IP identifiers RFC 8738 s6).
 *
 * One thread per responder runs a poll loop over a self-pipe (stop), the
 * listening socket and at most P11C_ALPN_MAX_CONNS non-blocking TLS
 * handshakes.  The ClientHello callback decides everything before a
 * certificate is chosen: ALPN must offer "acme-tls/1" and the SNI must name
 * an added identifier, else the handshake fails and no certificate is sent.
 * After a completed handshake the connection is closed (RFC 8737 s3: no
 * application data follows).  docs/acme-tls-alpn.md. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "acme_alpn.h"

/* RFC 8737 s6.2: the ALPN protocol name */
static const unsigned char acme_proto[] = "acme-tls/1";
#define ACME_PROTO_LEN (sizeof(acme_proto) - 1)
/* RFC 8737 s6.1: id-pe-acmeIdentifier */
#define ACME_ID_OID "1.3.6.1.5.5.7.1.31"

#define DNS_NAME_MAX 253
#define ACCEPT_PER_ROUND 64

struct alpn_id {
	char sni[DNS_NAME_MAX + 1]; /* lower case; reverse name for IPs */
	X509 *cert;
	EVP_PKEY *key;
};

struct alpn_conn {
	int fd;                     /* -1: free slot */
	SSL *ssl;
	struct timespec start;
	short events;
};

struct p11c_alpn_responder {
	int lfd;
	int wake[2];                /* self-pipe: stop */
	int port;
	SSL_CTX *ssl_ctx;
	pthread_t thread;
	int thread_started;
	pthread_mutex_t lock;       /* guards ids / n_ids */
	int lock_init;
	struct alpn_id *ids[P11C_ALPN_MAX_IDS];
	size_t n_ids;
	struct alpn_conn conns[P11C_ALPN_MAX_CONNS];
};

/* ---- bounded parsers of ClientHello extensions ---- */

/* RFC 7301 s3.1: opaque ProtocolName<1..2^8-1>;
 * ProtocolName protocol_name_list<2..2^16-1> */
int p11c_alpn_offers_acme(const unsigned char *p, size_t len)
{
	size_t n, i = 2, l;
	int found = 0;

	if (p == NULL || len < 2)
		return 0;
	n = ((size_t)p[0] << 8) | p[1];
	if (n != len - 2 || n < 2)
		return 0;
	while (i < len) {
		l = p[i++];
		if (l == 0 || l > len - i)
			return 0;
		if (l == ACME_PROTO_LEN && memcmp(p + i, acme_proto, l) == 0)
			found = 1;
		i += l;
	}
	return found;
}

/* RFC 6066 s3: ServerName server_name_list<1..2^16-1>, each
 * NameType name_type (host_name 0) + opaque HostName<1..2^16-1> */
int p11c_alpn_sni_host(const unsigned char *p, size_t len, char *name, size_t namelen)
{
	size_t n, i = 2, l, k;
	int type, have = 0;

	if (name == NULL || namelen == 0)
		return -1;
	name[0] = '\0';
	if (p == NULL || len < 2)
		return -1;
	n = ((size_t)p[0] << 8) | p[1];
	if (n != len - 2 || n == 0)
		return -1;
	while (i < len) {
		if (len - i < 3)
			goto bad;
		type = p[i];
		l = ((size_t)p[i + 1] << 8) | p[i + 2];
		i += 3;
		if (l == 0 || l > len - i)
			goto bad;
		if (type == 0) {
			/* RFC 6066 s3: at most one name of a type */
			if (have || l >= namelen)
				goto bad;
			for (k = 0; k < l; k++) {
				unsigned char c = p[i + k];

				if (c <= 0x20 || c >= 0x7f)
					goto bad;
				name[k] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
			}
			name[l] = '\0';
			have = 1;
		}
		i += l;
	}
	if (have)
		return 0;
bad:
	name[0] = '\0';
	return -1;
}

/* ---- identifiers ---- */

/* LDH labels of 1..63, name of 1..253, no wildcard (RFC 8737 s3 does not
 * validate wildcards; RFC 8555 s7.1.3) */
static int dns_name_ok(const char *s)
{
	size_t n = strlen(s), i, label = 0;

	if (n == 0 || n > DNS_NAME_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			if (label == 0 || s[i - 1] == '-')
				return 0;
			label = 0;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-'))
			return 0;
		if (c == '-' && label == 0)
			return 0;
		if (++label > 63)
			return 0;
	}
	return label > 0 && s[n - 1] != '-';
}

/* RFC 8555 s8.1: token (base64url) "." thumbprint (base64url) */
static int keyauth_ok(const char *s)
{
	size_t n = strlen(s), i, dots = 0;

	if (n < 3 || n > P11C_ALPN_KEYAUTH_MAX)
		return 0;
	for (i = 0; i < n; i++) {
		char c = s[i];

		if (c == '.') {
			dots++;
			continue;
		}
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
		      c == '_'))
			return 0;
	}
	return dots == 1 && s[0] != '.' && s[n - 1] != '.';
}

/* RFC 8738 s6: the SNI of an IP identifier is its reverse-DNS name
 * (RFC 1035 s3.5 in-addr.arpa, RFC 3596 s2.5 ip6.arpa) */
static void reverse_name(const unsigned char *ip, size_t iplen, char *out, size_t outlen)
{
	static const char hex[] = "0123456789abcdef";
	size_t i, o = 0;

	if (iplen == 4) {
		(void)snprintf(out, outlen, "%u.%u.%u.%u.in-addr.arpa", ip[3], ip[2], ip[1], ip[0]);
		return;
	}
	for (i = iplen; i > 0 && o + 4 < outlen; i--) {
		out[o++] = hex[ip[i - 1] & 0xf];
		out[o++] = '.';
		out[o++] = hex[ip[i - 1] >> 4];
		out[o++] = '.';
	}
	(void)snprintf(out + o, outlen - o, "ip6.arpa");
}

/* RFC 8737 s3: self-signed, subjectAltName exactly the identifier, and the
 * critical acmeIdentifier extension with OCTET STRING SHA-256(keyauth). */
static p11c_result make_cert(const unsigned char *ip, size_t iplen, const char *dns, const char *keyauth,
			     X509 **xout, EVP_PKEY **kout)
{
	unsigned char der[2 + 32], serial[16];
	unsigned int mdlen = 0;
	EVP_PKEY *pkey = NULL;
	X509 *x = NULL;
	X509_NAME *name;
	BIGNUM *bn = NULL;
	GENERAL_NAMES *gens = NULL;
	GENERAL_NAME *gen = NULL;
	ASN1_OCTET_STRING *os = NULL;
	ASN1_IA5STRING *ia5 = NULL;
	ASN1_OBJECT *obj = NULL;
	X509_EXTENSION *ext = NULL;
	p11c_result r = P11C_ERR_CRYPTO;

	pkey = EVP_EC_gen("P-256");
	x = X509_new();
	bn = BN_new();
	gens = GENERAL_NAMES_new();
	gen = GENERAL_NAME_new();
	if (pkey == NULL || x == NULL || bn == NULL || gens == NULL || gen == NULL)
		goto out;
	if (X509_set_version(x, X509_VERSION_3) != 1 || RAND_bytes(serial, sizeof(serial)) != 1)
		goto out;
	serial[0] &= 0x7f;
	if (BN_bin2bn(serial, sizeof(serial), bn) == NULL || BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) == NULL)
		goto out;
	if (X509_gmtime_adj(X509_getm_notBefore(x), -3600) == NULL ||
	    X509_gmtime_adj(X509_getm_notAfter(x), 7L * 86400) == NULL)
		goto out;
	name = X509_get_subject_name(x);
	if (X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)"ACME tls-alpn-01 challenge",
				       -1, -1, 0) != 1 ||
	    X509_set_issuer_name(x, name) != 1 || X509_set_pubkey(x, pkey) != 1)
		goto out;

	/* subjectAltName: one dNSName or iPAddress (RFC 8738 s6) */
	if (ip != NULL) {
		os = ASN1_OCTET_STRING_new();
		if (os == NULL || ASN1_OCTET_STRING_set(os, ip, (int)iplen) != 1)
			goto out;
		GENERAL_NAME_set0_value(gen, GEN_IPADD, os);
		os = NULL;
	} else {
		ia5 = ASN1_IA5STRING_new();
		if (ia5 == NULL || ASN1_STRING_set(ia5, dns, (int)strlen(dns)) != 1)
			goto out;
		GENERAL_NAME_set0_value(gen, GEN_DNS, ia5);
		ia5 = NULL;
	}
	if (sk_GENERAL_NAME_push(gens, gen) <= 0)
		goto out;
	gen = NULL;
	if (X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, X509V3_ADD_DEFAULT) != 1)
		goto out;

	/* RFC 8737 s3: extnValue is the DER of Authorization ::= OCTET STRING
	 * (SIZE (32)), the SHA-256 digest of the key authorization */
	der[0] = V_ASN1_OCTET_STRING;
	der[1] = 32;
	if (EVP_Digest(keyauth, strlen(keyauth), der + 2, &mdlen, EVP_sha256(), NULL) != 1 || mdlen != 32)
		goto out;
	obj = OBJ_txt2obj(ACME_ID_OID, 1);
	os = ASN1_OCTET_STRING_new();
	if (obj == NULL || os == NULL || ASN1_OCTET_STRING_set(os, der, sizeof(der)) != 1)
		goto out;
	ext = X509_EXTENSION_create_by_OBJ(NULL, obj, 1, os);
	if (ext == NULL || X509_add_ext(x, ext, -1) != 1)
		goto out;
	if (X509_sign(x, pkey, EVP_sha256()) <= 0)
		goto out;
	*xout = x;
	*kout = pkey;
	x = NULL;
	pkey = NULL;
	r = P11C_OK;
out:
	ERR_clear_error();
	X509_EXTENSION_free(ext);
	ASN1_OBJECT_free(obj);
	ASN1_OCTET_STRING_free(os);
	ASN1_IA5STRING_free(ia5);
	GENERAL_NAME_free(gen);
	GENERAL_NAMES_free(gens);
	BN_free(bn);
	X509_free(x);
	EVP_PKEY_free(pkey);
	return r;
}

static void id_free(struct alpn_id *id)
{
	if (id == NULL)
		return;
	X509_free(id->cert);
	EVP_PKEY_free(id->key);
	free(id);
}

p11c_result p11c_alpn_responder_add(p11c_alpn_responder *r, const char *identifier, const char *key_authorization)
{
	unsigned char ip[16];
	size_t iplen = 0, i, n;
	struct alpn_id *id = NULL, *old = NULL;
	char dns[DNS_NAME_MAX + 1];
	p11c_result res;

	if (r == NULL || identifier == NULL || key_authorization == NULL || !keyauth_ok(key_authorization))
		return P11C_ERR_ARG;
	/* RFC 8738 s3: an IP identifier is an address literal (RFC 5952 /
	 * dotted quad); anything else must be a DNS name */
	if (inet_pton(AF_INET, identifier, ip) == 1)
		iplen = 4;
	else if (inet_pton(AF_INET6, identifier, ip) == 1)
		iplen = 16;
	else if (!dns_name_ok(identifier))
		return P11C_ERR_ARG;
	id = calloc(1, sizeof(*id));
	if (id == NULL)
		return P11C_ERR_NOMEM;
	if (iplen != 0) {
		reverse_name(ip, iplen, id->sni, sizeof(id->sni));
		dns[0] = '\0';
	} else {
		n = strlen(identifier);
		for (i = 0; i <= n; i++) {
			char c = identifier[i];

			dns[i] = (char)(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
		}
		memcpy(id->sni, dns, n + 1);
	}
	res = make_cert(iplen != 0 ? ip : NULL, iplen, dns, key_authorization, &id->cert, &id->key);
	if (res != P11C_OK)
		goto out;

	if (pthread_mutex_lock(&r->lock) != 0) {
		res = P11C_ERR_INTERNAL;
		goto out;
	}
	for (i = 0; i < r->n_ids; i++)
		if (strcmp(r->ids[i]->sni, id->sni) == 0)
			break;
	if (i < r->n_ids) {
		old = r->ids[i];        /* a new challenge for the identifier */
		r->ids[i] = id;
		id = NULL;
	} else if (r->n_ids < P11C_ALPN_MAX_IDS) {
		r->ids[r->n_ids++] = id;
		id = NULL;
	} else {
		res = P11C_ERR_ARG;
	}
	(void)pthread_mutex_unlock(&r->lock);
out:
	id_free(id);
	id_free(old);
	return res;
}

/* ---- TLS callbacks (responder thread) ---- */

/* RFC 8737 s3: only "acme-tls/1" with a known SNI; decided before the
 * server picks a certificate, so a refused client never sees one. */
static int hello_cb(SSL *s, int *al, void *arg)
{
	p11c_alpn_responder *r = arg;
	const unsigned char *p = NULL;
	size_t len = 0, i;
	char name[DNS_NAME_MAX + 1];
	int found = 0, ok = 0;

	if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_application_layer_protocol_negotiation, &p, &len) != 1 ||
	    !p11c_alpn_offers_acme(p, len)) {
		*al = SSL_AD_NO_APPLICATION_PROTOCOL;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (SSL_client_hello_get0_ext(s, TLSEXT_TYPE_server_name, &p, &len) != 1 ||
	    p11c_alpn_sni_host(p, len, name, sizeof(name)) != 0) {
		*al = SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	if (pthread_mutex_lock(&r->lock) != 0) {
		*al = SSL_AD_INTERNAL_ERROR;
		return SSL_CLIENT_HELLO_ERROR;
	}
	for (i = 0; i < r->n_ids; i++) {
		if (strcmp(r->ids[i]->sni, name) == 0) {
			found = 1;
			ok = SSL_use_certificate(s, r->ids[i]->cert) == 1 && SSL_use_PrivateKey(s, r->ids[i]->key) == 1;
			break;
		}
	}
	(void)pthread_mutex_unlock(&r->lock);
	if (!ok) {
		ERR_clear_error();
		*al = found ? SSL_AD_INTERNAL_ERROR : SSL_AD_UNRECOGNIZED_NAME;
		return SSL_CLIENT_HELLO_ERROR;
	}
	return SSL_CLIENT_HELLO_SUCCESS;
}

/* RFC 8737 s3: the server negotiates "acme-tls/1" */
static int alpn_select_cb(SSL *s, const unsigned char **out, unsigned char *outlen, const unsigned char *in,
			  unsigned int inlen, void *arg)
{
	unsigned int i = 0;

	(void)s;
	(void)arg;
	while (i < inlen) {
		unsigned int l = in[i++];

		if (l > inlen - i)
			break;
		if (l == ACME_PROTO_LEN && memcmp(in + i, acme_proto, l) == 0) {
			*out = in + i;
			*outlen = (unsigned char)l;
			return SSL_TLSEXT_ERR_OK;
		}
		i += l;
	}
	return SSL_TLSEXT_ERR_ALERT_FATAL;
}

/* ---- connections ---- */

static void conn_close(struct alpn_conn *c)
{
	if (c->fd < 0)
		return;
	SSL_free(c->ssl);
	c->ssl = NULL;
	(void)close(c->fd);
	c->fd = -1;
	c->events = 0;
}

/* Advance the handshake; closes the connection when it is over. */
static void conn_drive(struct alpn_conn *c)
{
	int ret = SSL_do_handshake(c->ssl);

	if (ret == 1) {
		/* RFC 8737 s3: no data after the handshake; say goodbye */
		(void)SSL_shutdown(c->ssl);
		ERR_clear_error();
		conn_close(c);
		return;
	}
	switch (SSL_get_error(c->ssl, ret)) {
	case SSL_ERROR_WANT_READ:
		c->events = POLLIN;
		return;
	case SSL_ERROR_WANT_WRITE:
		c->events = POLLOUT;
		return;
	default:
		ERR_clear_error();
		conn_close(c);
	}
}

static long ms_since(const struct timespec *a, const struct timespec *now)
{
	return (long)(now->tv_sec - a->tv_sec) * 1000 + (now->tv_nsec - a->tv_nsec) / 1000000;
}

static void accept_some(p11c_alpn_responder *r, const struct timespec *now)
{
	int k, fd;
	size_t i, slot, oldest;
	struct alpn_conn *c;

	for (k = 0; k < ACCEPT_PER_ROUND; k++) {
		fd = accept4(r->lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0)
			return;         /* EAGAIN, or a peer gone already */
		slot = P11C_ALPN_MAX_CONNS;
		oldest = 0;
		for (i = 0; i < P11C_ALPN_MAX_CONNS; i++) {
			if (r->conns[i].fd < 0) {
				slot = i;
				break;
			}
			if (ms_since(&r->conns[i].start, &r->conns[oldest].start) > 0)
				oldest = i;
		}
		if (slot == P11C_ALPN_MAX_CONNS) {
			/* full: the oldest handshake gives way, so idle
			 * connections cannot lock a validator out */
			slot = oldest;
			conn_close(&r->conns[slot]);
		}
		c = &r->conns[slot];
		c->ssl = SSL_new(r->ssl_ctx);
		if (c->ssl == NULL || SSL_set_fd(c->ssl, fd) != 1) {
			ERR_clear_error();
			SSL_free(c->ssl);
			c->ssl = NULL;
			(void)close(fd);
			continue;
		}
		SSL_set_accept_state(c->ssl);
		c->fd = fd;
		c->start = *now;
		c->events = POLLIN;
	}
}

static void *serve(void *arg)
{
	p11c_alpn_responder *r = arg;
	struct pollfd pfd[2 + P11C_ALPN_MAX_CONNS];
	int idx[P11C_ALPN_MAX_CONNS];
	struct timespec now;
	sigset_t set;
	size_t i;
	nfds_t n;
	long wait_ms, left;

	/* a write to a reset socket must not kill the process: SIGPIPE stays
	 * pending on this thread and is dropped when it ends */
	sigemptyset(&set);
	sigaddset(&set, SIGPIPE);
	(void)pthread_sigmask(SIG_BLOCK, &set, NULL);

	for (;;) {
		(void)clock_gettime(CLOCK_MONOTONIC, &now);
		pfd[0].fd = r->wake[0];
		pfd[0].events = POLLIN;
		pfd[1].fd = r->lfd;
		pfd[1].events = POLLIN;
		n = 2;
		wait_ms = -1;
		for (i = 0; i < P11C_ALPN_MAX_CONNS; i++) {
			idx[i] = -1;
			if (r->conns[i].fd < 0)
				continue;
			left = P11C_ALPN_HANDSHAKE_SEC * 1000L - ms_since(&r->conns[i].start, &now);
			if (left <= 0) {
				conn_close(&r->conns[i]);
				continue;
			}
			if (wait_ms < 0 || left < wait_ms)
				wait_ms = left;
			idx[i] = (int)n;
			pfd[n].fd = r->conns[i].fd;
			pfd[n].events = r->conns[i].events;
			pfd[n].revents = 0;
			n++;
		}
		pfd[0].revents = 0;
		pfd[1].revents = 0;
		if (poll(pfd, n, (int)wait_ms) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pfd[0].revents != 0)
			break;          /* p11c_alpn_responder_stop */
		for (i = 0; i < P11C_ALPN_MAX_CONNS; i++)
			if (idx[i] >= 0 && pfd[idx[i]].revents != 0 && r->conns[i].fd >= 0)
				conn_drive(&r->conns[i]);
		if (pfd[1].revents != 0) {
			(void)clock_gettime(CLOCK_MONOTONIC, &now);
			accept_some(r, &now);
		}
	}
	for (i = 0; i < P11C_ALPN_MAX_CONNS; i++)
		conn_close(&r->conns[i]);
	ERR_clear_error();
	return NULL;
}

/* ---- start / stop ---- */

/* "HOST:PORT", "[V6]:PORT", ":PORT" (all addresses).  The listening
 * socket, or -1: malformed address (P11C_ERR_ARG), -2: cannot listen. */
static int listen_on(const char *addr_port, int *port, char *err, size_t errlen)
{
	const char *orig = addr_port;
	char host[64];
	const char *colon, *ps;
	struct addrinfo hints, *ai = NULL;
	struct sockaddr_storage ss;
	socklen_t sl = sizeof(ss);
	size_t hl;
	char *end = NULL;
	long pn;
	int fd = -1, one = 1, zero = 0, rc, e;

	colon = strrchr(addr_port, ':');
	if (colon == NULL) {
		(void)snprintf(err, errlen, "'%s': expected ADDRESS:PORT, [IPV6]:PORT or :PORT", addr_port);
		return -1;
	}
	ps = colon + 1;
	errno = 0;
	pn = strtol(ps, &end, 10);
	if (*ps < '0' || *ps > '9' || *end != '\0' || errno != 0 || pn < 0 || pn > 65535) {
		(void)snprintf(err, errlen, "'%s': the port must be a number from 0 to 65535", addr_port);
		return -1;
	}
	hl = (size_t)(colon - addr_port);
	if (hl >= 2 && addr_port[0] == '[' && addr_port[hl - 1] == ']') {
		addr_port++;
		hl -= 2;
	} else if (memchr(addr_port, ':', hl) != NULL || memchr(addr_port, '[', hl) != NULL) {
		(void)snprintf(err, errlen, "'%s': write an IPv6 address in brackets, [::1]:PORT", addr_port);
		return -1;
	}
	if (hl >= sizeof(host)) {
		(void)snprintf(err, errlen, "'%.64s...': address too long", addr_port);
		return -1;
	}
	memcpy(host, addr_port, hl);
	host[hl] = '\0';
	memset(&ss, 0, sizeof(ss));

	memset(&hints, 0, sizeof(hints));
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV | AI_PASSIVE;
	hints.ai_family = hl == 0 ? AF_INET6 : AF_UNSPEC;
	rc = getaddrinfo(hl == 0 ? "::" : host, ps, &hints, &ai);
	if (rc != 0 && hl == 0) {
		/* no IPv6 here: all IPv4 addresses */
		hints.ai_family = AF_INET;
		rc = getaddrinfo("0.0.0.0", ps, &hints, &ai);
	}
	if (rc != 0) {
		(void)snprintf(err, errlen, "'%s': not an IP address and port: %s", host, gai_strerror(rc));
		return -1;
	}
	fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
	if (ai->ai_family == AF_INET6 && hl == 0)
		(void)setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &zero, sizeof(zero));
	if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0 ||
	    getsockname(fd, (struct sockaddr *)&ss, &sl) != 0)
		goto fail;
	*port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
					       : ((struct sockaddr_in *)&ss)->sin_port);
	freeaddrinfo(ai);
	return fd;
fail:
	e = errno;
	(void)snprintf(err, errlen, "cannot listen on %s: %s", orig, strerror(e));
	if (fd >= 0)
		(void)close(fd);
	freeaddrinfo(ai);
	return -2;
}

p11c_result p11c_alpn_responder_start(const char *addr_port, p11c_alpn_responder **out, char *err, size_t errlen)
{
	p11c_alpn_responder *r = NULL;
	char dummy[8];
	size_t i;
	int fd;
	p11c_result res = P11C_ERR_NOMEM;

	if (err == NULL || errlen == 0) {
		err = dummy;
		errlen = sizeof(dummy);
	}
	err[0] = '\0';
	if (addr_port == NULL || out == NULL) {
		(void)snprintf(err, errlen, "no address given");
		return P11C_ERR_ARG;
	}
	*out = NULL;
	r = calloc(1, sizeof(*r));
	if (r == NULL)
		goto out;
	r->lfd = -1;
	r->wake[0] = r->wake[1] = -1;
	for (i = 0; i < P11C_ALPN_MAX_CONNS; i++)
		r->conns[i].fd = -1;
	if (pthread_mutex_init(&r->lock, NULL) != 0) {
		res = P11C_ERR_INTERNAL;
		goto out;
	}
	r->lock_init = 1;

	r->ssl_ctx = SSL_CTX_new(TLS_server_method());
	if (r->ssl_ctx == NULL) {
		res = P11C_ERR_CRYPTO;
		(void)snprintf(err, errlen, "cannot make a TLS server context");
		goto out;
	}
	/* RFC 8737 s3: TLS 1.2 or later; nothing to resume */
	(void)SSL_CTX_set_min_proto_version(r->ssl_ctx, TLS1_2_VERSION);
	(void)SSL_CTX_set_session_cache_mode(r->ssl_ctx, SSL_SESS_CACHE_OFF);
	(void)SSL_CTX_set_options(r->ssl_ctx, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
	(void)SSL_CTX_set_num_tickets(r->ssl_ctx, 0);
	SSL_CTX_set_client_hello_cb(r->ssl_ctx, hello_cb, r);
	SSL_CTX_set_alpn_select_cb(r->ssl_ctx, alpn_select_cb, r);

	if (pipe2(r->wake, O_CLOEXEC | O_NONBLOCK) != 0) {
		res = P11C_ERR_IO;
		(void)snprintf(err, errlen, "pipe: %s", strerror(errno));
		goto out;
	}
	fd = listen_on(addr_port, &r->port, err, errlen);
	if (fd < 0) {
		res = fd == -1 ? P11C_ERR_ARG : P11C_ERR_NETWORK;
		goto out;
	}
	r->lfd = fd;
	if (pthread_create(&r->thread, NULL, serve, r) != 0) {
		res = P11C_ERR_INTERNAL;
		(void)snprintf(err, errlen, "cannot start the responder thread");
		goto out;
	}
	r->thread_started = 1;
	*out = r;
	r = NULL;
	res = P11C_OK;
out:
	ERR_clear_error();
	p11c_alpn_responder_stop(r);
	return res;
}

int p11c_alpn_responder_port(const p11c_alpn_responder *r)
{
	return r != NULL ? r->port : 0;
}

void p11c_alpn_responder_stop(p11c_alpn_responder *r)
{
	size_t i;
	ssize_t w;

	if (r == NULL)
		return;
	if (r->thread_started) {
		do
			w = write(r->wake[1], "x", 1);
		while (w < 0 && errno == EINTR);
		(void)pthread_join(r->thread, NULL);
	}
	for (i = 0; i < P11C_ALPN_MAX_CONNS; i++)
		conn_close(&r->conns[i]);
	if (r->lfd >= 0)
		(void)close(r->lfd);
	if (r->wake[0] >= 0)
		(void)close(r->wake[0]);
	if (r->wake[1] >= 0)
		(void)close(r->wake[1]);
	for (i = 0; i < r->n_ids; i++)
		id_free(r->ids[i]);
	if (r->lock_init)
		(void)pthread_mutex_destroy(&r->lock);
	SSL_CTX_free(r->ssl_ctx);
	free(r);
}
