/*
 * Unit tests for enroll/acme_alpn.c: the bounded ClientHello parsers, start
 * errors, and identifiers added from another thread while the responder
 * serves real TLS handshakes (an in-process OpenSSL client on loopback).
 * The end-to-end checks with openssl s_client: tests/cli/test_acme_alpn.sh.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/objects.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "enroll/acme_alpn.h"

/* ---- parsers ---- */

static void test_alpn_parser(void **state)
{
	static const unsigned char ok1[] = {0, 11, 10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};
	static const unsigned char ok2[] = {0, 14, 2, 'h', '2', 10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};
	static const unsigned char other[] = {0, 3, 2, 'h', '2'};
	static const unsigned char longer[] = {0, 12, 11, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1', '0'};
	static const unsigned char badlen[] = {0, 12, 10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};
	static const unsigned char overrun[] = {0, 11, 11, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};
	static const unsigned char empty_name[] = {0, 12, 0, 10, 'a', 'c', 'm', 'e', '-', 't', 'l', 's', '/', '1'};
	static const unsigned char empty_list[] = {0, 0};

	(void)state;
	assert_int_equal(p11c_alpn_offers_acme(ok1, sizeof(ok1)), 1);
	assert_int_equal(p11c_alpn_offers_acme(ok2, sizeof(ok2)), 1);
	assert_int_equal(p11c_alpn_offers_acme(other, sizeof(other)), 0);
	assert_int_equal(p11c_alpn_offers_acme(longer, sizeof(longer)), 0);
	assert_int_equal(p11c_alpn_offers_acme(badlen, sizeof(badlen)), 0);
	assert_int_equal(p11c_alpn_offers_acme(overrun, sizeof(overrun)), 0);
	assert_int_equal(p11c_alpn_offers_acme(empty_name, sizeof(empty_name)), 0);
	assert_int_equal(p11c_alpn_offers_acme(empty_list, sizeof(empty_list)), 0);
	assert_int_equal(p11c_alpn_offers_acme(ok1, 1), 0);
	assert_int_equal(p11c_alpn_offers_acme(ok1, sizeof(ok1) - 1), 0);
	assert_int_equal(p11c_alpn_offers_acme(NULL, 0), 0);
}

static void test_sni_parser(void **state)
{
	static const unsigned char ok[] = {0, 9, 0, 0, 6, 'A', '.', 'T', 'e', 's', 't'};
	/* an unknown name type before the host_name is skipped */
	static const unsigned char other[] = {0, 14, 7, 0, 2, 'x', 'y', 0, 0, 6, 'a', '.', 't', 'e', 's', 't'};
	static const unsigned char two[] = {0, 14, 0, 0, 2, 'x', 'y', 0, 0, 6, 'a', '.', 't', 'e', 's', 't'};
	static const unsigned char only_other[] = {0, 5, 7, 0, 2, 'x', 'y'};
	static const unsigned char overrun[] = {0, 9, 0, 0, 7, 'a', '.', 't', 'e', 's', 't'};
	static const unsigned char zero[] = {0, 3, 0, 0, 0};
	static const unsigned char ctrl[] = {0, 6, 0, 0, 3, 'a', '\n', 'b'};
	static const unsigned char space[] = {0, 6, 0, 0, 3, 'a', ' ', 'b'};
	static const unsigned char high[] = {0, 6, 0, 0, 3, 'a', 0xc3, 'b'};
	static const unsigned char nul[] = {0, 6, 0, 0, 3, 'a', 0, 'b'};
	static const unsigned char trunc[] = {0, 2, 0, 0};
	char name[8];

	(void)state;
	assert_int_equal(p11c_alpn_sni_host(ok, sizeof(ok), name, sizeof(name)), 0);
	assert_string_equal(name, "a.test");
	assert_int_equal(p11c_alpn_sni_host(other, sizeof(other), name, sizeof(name)), 0);
	assert_string_equal(name, "a.test");
	/* 6 characters need 7 bytes */
	assert_int_equal(p11c_alpn_sni_host(ok, sizeof(ok), name, 6), -1);
	assert_int_equal(p11c_alpn_sni_host(ok, sizeof(ok), name, 7), 0);
	/* a failure leaves no name behind, even after one was copied */
	assert_int_equal(p11c_alpn_sni_host(two, sizeof(two), name, sizeof(name)), -1);
	assert_string_equal(name, "");
	assert_int_equal(p11c_alpn_sni_host(ok, sizeof(ok), name, sizeof(name)), 0);
	assert_int_equal(p11c_alpn_sni_host(trunc, 1, name, sizeof(name)), -1);
	assert_string_equal(name, "");
	assert_int_equal(p11c_alpn_sni_host(only_other, sizeof(only_other), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(overrun, sizeof(overrun), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(zero, sizeof(zero), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(ctrl, sizeof(ctrl), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(space, sizeof(space), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(high, sizeof(high), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(nul, sizeof(nul), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(trunc, sizeof(trunc), name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(ok, sizeof(ok) - 1, name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(ok, 1, name, sizeof(name)), -1);
	assert_int_equal(p11c_alpn_sni_host(NULL, 0, name, sizeof(name)), -1);
}

/* ---- start ---- */

static void start_fails(const char *addr, p11c_result want, const char *msg)
{
	p11c_alpn_responder *r = (p11c_alpn_responder *)&r;
	char err[256];

	assert_int_equal(p11c_alpn_responder_start(addr, &r, err, sizeof(err)), want);
	assert_null(r);
	if (strstr(err, msg) == NULL)
		print_error("'%s': got '%s', want '%s'\n", addr, err, msg);
	assert_non_null(strstr(err, msg));
}

static void test_start_errors(void **state)
{
	p11c_alpn_responder *r = NULL;
	char err[256], addr[64];

	(void)state;
	start_fails("127.0.0.1", P11C_ERR_ARG, "expected ADDRESS:PORT");
	start_fails("127.0.0.1:65536", P11C_ERR_ARG, "from 0 to 65535");
	start_fails("127.0.0.1:-1", P11C_ERR_ARG, "from 0 to 65535");
	start_fails("127.0.0.1: 1", P11C_ERR_ARG, "from 0 to 65535");
	start_fails("::1:443", P11C_ERR_ARG, "in brackets");
	start_fails("localhost:443", P11C_ERR_ARG, "not an IP address");
	start_fails("[127.0.0.1:443", P11C_ERR_ARG, "in brackets");

	assert_int_equal(p11c_alpn_responder_start("127.0.0.1:0", &r, err, sizeof(err)), P11C_OK);
	assert_true(p11c_alpn_responder_port(r) > 0);
	(void)snprintf(addr, sizeof(addr), "127.0.0.1:%d", p11c_alpn_responder_port(r));
	start_fails(addr, P11C_ERR_NETWORK, "Address already in use");
	assert_int_equal(p11c_alpn_responder_start(NULL, &r, err, sizeof(err)), P11C_ERR_ARG);
	p11c_alpn_responder_stop(r);
	p11c_alpn_responder_stop(NULL);
	assert_int_equal(p11c_alpn_responder_port(NULL), 0);
	assert_int_equal(p11c_alpn_responder_add(NULL, "a.test", "t.t"), P11C_ERR_ARG);
}

/* ---- handshakes ---- */

/* One handshake to 127.0.0.1:port offering alpn (NULL: none) with SNI sni;
 * the served certificate or NULL when the handshake failed. */
static X509 *handshake(int port, const char *sni, const char *alpn)
{
	struct sockaddr_in sa;
	struct timeval tv = {30, 0};   /* bound, not an assertion */
	unsigned char wire[64];
	SSL_CTX *c = NULL;
	SSL *s = NULL;
	X509 *x = NULL;
	int fd;

	fd = socket(AF_INET, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	(void)setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
	memset(&sa, 0, sizeof(sa));
	sa.sin_family = AF_INET;
	sa.sin_port = htons((uint16_t)port);
	sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	c = SSL_CTX_new(TLS_client_method());
	assert_non_null(c);
	if (alpn != NULL) {
		wire[0] = (unsigned char)strlen(alpn);
		memcpy(wire + 1, alpn, wire[0]);
		assert_int_equal(SSL_CTX_set_alpn_protos(c, wire, wire[0] + 1U), 0);
	}
	s = SSL_new(c);
	assert_non_null(s);
	assert_int_equal(SSL_set_fd(s, fd), 1);
	if (sni != NULL)
		assert_int_equal(SSL_set_tlsext_host_name(s, sni), 1);
	if (SSL_connect(s) == 1)
		x = SSL_get1_peer_certificate(s);
	else
		assert_null(SSL_get0_peer_certificate(s));
	ERR_clear_error();
	SSL_free(s);
	SSL_CTX_free(c);
	close(fd);
	return x;
}

/* x carries the acmeIdentifier for keyauth and the one dNSName dns */
static void assert_challenge(X509 *x, const char *dns, const char *keyauth)
{
	unsigned char want[34];
	unsigned int mdlen = 0;
	ASN1_OBJECT *obj;
	X509_EXTENSION *ext;
	const ASN1_OCTET_STRING *v;
	GENERAL_NAMES *gens;
	const GENERAL_NAME *g;
	int i;

	assert_non_null(x);
	want[0] = 0x04;
	want[1] = 32;
	assert_int_equal(EVP_Digest(keyauth, strlen(keyauth), want + 2, &mdlen, EVP_sha256(), NULL), 1);
	obj = OBJ_txt2obj("1.3.6.1.5.5.7.1.31", 1);
	assert_non_null(obj);
	i = X509_get_ext_by_OBJ(x, obj, -1);
	assert_true(i >= 0);
	assert_int_equal(X509_get_ext_by_OBJ(x, obj, i), -1);
	ASN1_OBJECT_free(obj);
	ext = X509_get_ext(x, i);
	assert_int_equal(X509_EXTENSION_get_critical(ext), 1);
	v = X509_EXTENSION_get_data(ext);
	assert_int_equal(ASN1_STRING_length(v), (int)sizeof(want));
	assert_memory_equal(ASN1_STRING_get0_data(v), want, sizeof(want));
	gens = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	assert_non_null(gens);
	assert_int_equal(sk_GENERAL_NAME_num(gens), 1);
	g = sk_GENERAL_NAME_value(gens, 0);
	assert_int_equal(g->type, GEN_DNS);
	assert_int_equal(ASN1_STRING_length(g->d.dNSName), (int)strlen(dns));
	assert_memory_equal(ASN1_STRING_get0_data(g->d.dNSName), dns, strlen(dns));
	GENERAL_NAMES_free(gens);
}

struct adder {
	p11c_alpn_responder *r;
	int fails;
};

static void *add_many(void *arg)
{
	struct adder *a = arg;
	char id[32], ka[32];
	int i;

	for (i = 0; i < P11C_ALPN_MAX_IDS; i++) {
		(void)snprintf(id, sizeof(id), "n%d.test", i);
		(void)snprintf(ka, sizeof(ka), "tok%d.thumb", i);
		if (p11c_alpn_responder_add(a->r, id, ka) != P11C_OK)
			a->fails++;
	}
	return NULL;
}

static void test_add_while_serving(void **state)
{
	p11c_alpn_responder *r = NULL;
	struct adder a = {NULL, 0};
	pthread_t t;
	char err[256];
	X509 *x;
	int port, i;

	(void)state;
	assert_int_equal(p11c_alpn_responder_start("127.0.0.1:0", &r, err, sizeof(err)), P11C_OK);
	port = p11c_alpn_responder_port(r);
	assert_int_equal(p11c_alpn_responder_add(r, "Example.TEST", "tok.thumb"), P11C_OK);
	a.r = r;
	assert_int_equal(pthread_create(&t, NULL, add_many, &a), 0);
	/* handshakes while the other thread adds */
	for (i = 0; i < 20; i++) {
		x = handshake(port, "example.test", "acme-tls/1");
		assert_challenge(x, "example.test", "tok.thumb");
		X509_free(x);
	}
	assert_int_equal(pthread_join(t, NULL), 0);
	/* 99 + example.test: one more than the bound was refused */
	assert_int_equal(a.fails, 1);
	x = handshake(port, "n98.test", "acme-tls/1");
	assert_challenge(x, "n98.test", "tok98.thumb");
	X509_free(x);
	assert_null(handshake(port, "n99.test", "acme-tls/1"));

	/* a new challenge for a known identifier replaces the old one */
	assert_int_equal(p11c_alpn_responder_add(r, "example.test", "new.thumb"), P11C_OK);
	x = handshake(port, "example.test", "acme-tls/1");
	assert_challenge(x, "example.test", "new.thumb");
	X509_free(x);

	assert_null(handshake(port, "example.test", NULL));
	assert_null(handshake(port, "example.test", "h2"));
	assert_null(handshake(port, "other.test", "acme-tls/1"));
	assert_null(handshake(port, NULL, "acme-tls/1"));
	p11c_alpn_responder_stop(r);
}

/* ":PORT" listens on every address, IPv4 included */
static void test_any_address(void **state)
{
	p11c_alpn_responder *r = NULL;
	char err[256];
	X509 *x;

	(void)state;
	assert_int_equal(p11c_alpn_responder_start(":0", &r, err, sizeof(err)), P11C_OK);
	assert_int_equal(p11c_alpn_responder_add(r, "a.test", "t.t"), P11C_OK);
	x = handshake(p11c_alpn_responder_port(r), "a.test", "acme-tls/1");
	assert_challenge(x, "a.test", "t.t");
	X509_free(x);
	p11c_alpn_responder_stop(r);
}

/* "[::1]:PORT" listens on IPv6 loopback (skipped where there is none) */
static void test_ipv6_loopback(void **state)
{
	p11c_alpn_responder *r = NULL;
	struct sockaddr_in6 sa;
	char err[256];
	int fd;

	(void)state;
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	memset(&sa, 0, sizeof(sa));
	sa.sin6_family = AF_INET6;
	sa.sin6_addr = in6addr_loopback;
	if (fd < 0 || bind(fd, (struct sockaddr *)&sa, sizeof(sa)) != 0) {
		if (fd >= 0)
			close(fd);
		skip();
	}
	close(fd);
	assert_int_equal(p11c_alpn_responder_start("[::1]:0", &r, err, sizeof(err)), P11C_OK);
	assert_true(p11c_alpn_responder_port(r) > 0);
	fd = socket(AF_INET6, SOCK_STREAM, 0);
	assert_true(fd >= 0);
	sa.sin6_port = htons((uint16_t)p11c_alpn_responder_port(r));
	assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof(sa)), 0);
	close(fd);
	p11c_alpn_responder_stop(r);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_alpn_parser),
		cmocka_unit_test(test_sni_parser),
		cmocka_unit_test(test_start_errors),
		cmocka_unit_test(test_add_while_serving),
		cmocka_unit_test(test_any_address),
		cmocka_unit_test(test_ipv6_loopback),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
