/*
 * Unit tests for p11ca's EST parsers and encoders (proto/est_config.c,
 * proto/est.h): base64 bodies, HTTP Basic, the credentials file, est.conf,
 * the /.well-known/est/ paths, csrattrs against the RFC 7030 Appendix A.2
 * example, certs-only PKCS#7 and the challengePassword.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/pkcs7.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <p11cert/est.h>

#include "proto/est.h"

static int dec(const char *s, size_t max, unsigned char **out, size_t *n)
{
	return est_b64_decode((const unsigned char *)s, strlen(s), max, out, n);
}

static void test_b64(void **state)
{
	unsigned char *o = NULL;
	size_t n = 0;
	char *e;
	unsigned char bytes[200];
	size_t i;

	(void)state;
	assert_int_equal(dec("aGVsbG8=", 100, &o, &n), 0);
	assert_int_equal(n, 5);
	assert_memory_equal(o, "hello", 5);
	free(o);
	/* whitespace anywhere, padding optional at the end */
	assert_int_equal(dec(" aGVs\r\nbG8 \t", 100, &o, &n), 0);
	assert_int_equal(n, 5);
	free(o);
	/* malformed: bad character, data after padding, a lone sextet, too much
	 * padding, non-zero trailing bits, empty, over max */
	assert_int_equal(dec("aGVs*G8=", 100, &o, &n), -1);
	assert_null(o);
	assert_int_equal(dec("aGVsbG8=aGVs", 100, &o, &n), -1);
	assert_int_equal(dec("aGVsb", 100, &o, &n), -1);
	assert_int_equal(dec("aGVsbG8===", 100, &o, &n), -1);
	assert_int_equal(dec("aGVsbG9=", 100, &o, &n), -1);
	assert_int_equal(dec("aGVsbG8", 100, &o, &n), 0);
	free(o);
	assert_int_equal(dec("aGVsbA=", 100, &o, &n), -1);
	assert_int_equal(dec("", 100, &o, &n), -1);
	assert_int_equal(dec("  \n", 100, &o, &n), -1);
	assert_int_equal(dec("aGVsbG8=", 4, &o, &n), -1);
	assert_int_equal(dec("aGVsbG8=", 5, &o, &n), 0);
	free(o);
	/* the encoder: 64 columns, LF, round trip */
	for (i = 0; i < sizeof bytes; i++)
		bytes[i] = (unsigned char)(i * 7);
	e = est_b64_encode(bytes, sizeof bytes, &n);
	assert_non_null(e);
	assert_int_equal(e[64], '\n');
	assert_int_equal(e[n - 1], '\n');
	assert_int_equal(n, strlen(e));
	assert_int_equal(est_b64_decode((unsigned char *)e, n, sizeof bytes, &o, &i), 0);
	assert_int_equal(i, sizeof bytes);
	assert_memory_equal(o, bytes, sizeof bytes);
	free(o);
	free(e);
	e = est_b64_line((const unsigned char *)"ab", 2);
	assert_string_equal(e, "YWI=");
	free(e);
}

static void test_basic(void **state)
{
	char u[EST_USER_MAX + 1], p[EST_PASSWORD_MAX + 1], h[1200];
	char big[EST_PASSWORD_MAX + 20];

	(void)state;
	assert_int_equal(est_basic_parse("Basic YWxpY2U6cHc6d2l0aDpjb2xvbnM=", u, p), 0);
	assert_string_equal(u, "alice");
	assert_string_equal(p, "pw:with:colons");
	assert_int_equal(est_basic_parse("basic   Ym9iOg==", u, p), 0); /* empty password */
	assert_string_equal(u, "bob");
	assert_string_equal(p, "");
	assert_int_equal(est_basic_parse(NULL, u, p), -1);
	assert_int_equal(est_basic_parse("Bearer abc", u, p), -1);
	assert_int_equal(est_basic_parse("Basic ", u, p), -1);
	assert_int_equal(est_basic_parse("Basic bm9jb2xvbg==", u, p), -1);   /* "nocolon" */
	assert_int_equal(est_basic_parse("Basic OnB3", u, p), -1);           /* ":pw": no user */
	assert_int_equal(est_basic_parse("Basic YQBiOmM=", u, p), -1);       /* NUL inside */
	/* a password over EST_PASSWORD_MAX */
	memset(big, 'x', sizeof big - 1);
	big[0] = 'a';
	big[1] = ':';
	big[sizeof big - 1] = '\0';
	strcpy(h, "Basic ");
	EVP_EncodeBlock((unsigned char *)h + 6, (unsigned char *)big, (int)strlen(big));
	assert_int_equal(est_basic_parse(h, u, p), -1);
}

static void test_users(void **state)
{
	char line[512], name[EST_USER_MAX + 1], text[1200];
	unsigned iter;
	unsigned char salt[EST_SALT_LEN], hash[EST_HASH_LEN];

	(void)state;
	assert_int_equal(est_user_make("alice", "s3cret", 6, line, sizeof line), 0);
	assert_int_equal(est_user_line(line, strlen(line), name, &iter, salt, hash), 0);
	assert_string_equal(name, "alice");
	assert_int_equal(iter, EST_PBKDF2_ITER);
	assert_null(strstr(line, "s3cret"));
	snprintf(text, sizeof text, "garbage line\n%s", line);
	assert_int_equal(est_user_check(NULL, text, strlen(text), "alice", "s3cret", 0), 1);
	assert_int_equal(est_user_check(NULL, text, strlen(text), "alice", "s3cret ", 0), 0);
	assert_int_equal(est_user_check(NULL, text, strlen(text), "alic", "s3cret", 0), 0);
	assert_int_equal(est_user_check(NULL, text, strlen(text), "garbage line", "x", 0), 0);
	/* the cache of verified passwords */
	{
		struct est_cred_cache *c = calloc(1, sizeof *c);
		char line2[512], text2[1200];
		size_t i, n;

		assert_non_null(c);
		assert_int_equal(est_cred_cache_init(c), 0);
		assert_int_equal(est_user_check(c, text, strlen(text), "alice", "s3cret", 1000), 1);
		/* a hit adds no entry (a miss verified by PBKDF2 would) */
		assert_int_equal(est_user_check(c, text, strlen(text), "alice", "s3cret", 1001), 1);
		for (i = 0, n = 0; i < EST_CACHE_SLOTS; i++)
			n += c->e[i].until != 0;
		assert_int_equal(n, 1);
		/* a wrong password, another user: no */
		assert_int_equal(est_user_check(c, text, strlen(text), "alice", "s3cret!", 1002), 0);
		assert_int_equal(est_user_check(c, text, strlen(text), "bob", "s3cret", 1002), 0);
		/* a new password for alice (a new line): the old one is refused at once */
		assert_int_equal(est_user_make("alice", "new pw", 6, line2, sizeof line2), 0);
		snprintf(text2, sizeof text2, "garbage line\n%s", line2);
		assert_int_equal(est_user_check(c, text2, strlen(text2), "alice", "s3cret", 1003), 0);
		assert_int_equal(est_user_check(c, text2, strlen(text2), "alice", "new pw", 1003), 1);
		/* past EST_CACHE_SECONDS: verified again; the one live entry is the fresh one */
		assert_int_equal(est_user_check(c, text, strlen(text), "alice", "s3cret", 1003 + EST_CACHE_SECONDS + 1),
				 1);
		for (i = 0, n = 0; i < EST_CACHE_SLOTS; i++)
			n += c->e[i].until > 1003 + EST_CACHE_SECONDS + 1;
		assert_int_equal(n, 1);
		free(c);
	}
	assert_int_equal(est_user_make("bad:name", "x", 1, line, sizeof line), -1);
	assert_int_equal(est_user_make("alice", "x", 1, line, 20), -1);
#define SALT "00112233445566778899aabbccddeeff"
#define HASH "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff"
	{
		static const char *const bad[] = {
			"alice:pbkdf2-sha1:100000:" SALT ":" HASH,
			"alice:pbkdf2-sha256:999:" SALT ":" HASH,
			"alice:pbkdf2-sha256:1x:" SALT ":" HASH,
			"alice:pbkdf2-sha256:100000:" SALT "0:" HASH,
			"alice:pbkdf2-sha256:100000:" SALT ":" HASH ":extra",
			"alice:pbkdf2-sha256:100000:" SALT ":" HASH "0",
			"alice:pbkdf2-sha256:100000:" SALT ":zz112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
			":pbkdf2-sha256:100000:" SALT ":" HASH,
			"al ice:pbkdf2-sha256:100000:" SALT ":" HASH,
			"alice:pbkdf2-sha256:100000",
			"",
		};
		size_t i;

		for (i = 0; i < sizeof bad / sizeof bad[0]; i++)
			assert_int_equal(est_user_line(bad[i], strlen(bad[i]), name, &iter, salt, hash), -1);
		assert_int_equal(est_user_line("alice:pbkdf2-sha256:100000:" SALT ":" HASH "\r\n",
					       strlen("alice:pbkdf2-sha256:100000:" SALT ":" HASH "\r\n"), name, &iter,
					       salt, hash),
				 0);
	}
}

static int parse(const char *text, char *err, size_t errlen, struct est_server *s)
{
	return est_conf_parse(s, text, strlen(text), "est.conf", err, errlen);
}

static void test_conf(void **state)
{
	struct est_server s;
	char err[512];
	const struct est_profile *p;

	(void)state;
	assert_int_equal(parse("# EST\nrate-limit = 7\n[default]\nauth = basic\nusers = u  # the file\n"
			       "[dev]\nauth = cert, basic\nusers = u\nbootstrap-ca = b.pem\napproval = pending\n"
			       "binding = required\nsubject-change = yes\nkey-type = rsa:3072\nlifetime = long\n"
			       "retry-after = 5\n",
			       err, sizeof err, &s),
			 0);
	assert_int_equal(s.nprof, 2);
	assert_int_equal(s.rate_limit, 7);
	p = est_profile_find(&s, "");
	assert_non_null(p);
	assert_int_equal(p->auth, EST_AUTH_BASIC);
	assert_string_equal(p->users, "u");
	assert_int_equal(p->pending, 0);
	assert_int_equal(p->binding, 0);
	p = est_profile_find(&s, "dev");
	assert_non_null(p);
	assert_int_equal(p->auth, EST_AUTH_BASIC | EST_AUTH_CERT);
	assert_int_equal(p->pending, 1);
	assert_int_equal(p->binding, 1);
	assert_int_equal(p->subject_change, 1);
	assert_int_equal(p->key_nid, EVP_PKEY_RSA);
	assert_int_equal(p->key_param, 3072);
	assert_int_equal(p->lifetime_long, 1);
	assert_int_equal(p->retry_after, 5);
	assert_null(est_profile_find(&s, "other"));
	{
		struct est_server *sp = malloc(sizeof *sp);

		assert_non_null(sp);
		*sp = s;
		est_server_free(&sp);
		assert_null(sp);
	}
	{
		static const struct {
			const char *text, *err;
		} bad[] = {
			{ "[default]\nauth = basic\n", "auth basic needs users" },
			{ "[default]\nauth = cert\n", "auth cert needs bootstrap-ca" },
			{ "[default]\nauth = password\nusers = u\n", "est.conf:2: bad value for auth" },
			{ "[default]\nusers = u\ncolour = blue\n", "est.conf:3: unknown setting 'colour'" },
			{ "[default]\nusers = u\n[default]\nusers = u\n", "est.conf:3: profile [default] given twice" },
			{ "[a/b]\n", "est.conf:1: bad label" },
			{ "[..]\n", "est.conf:1: bad label" },
			{ "[x\n", "est.conf:1: expected [default]" },
			{ "users = u\n", "est.conf:1: 'users' before the first [profile]" },
			{ "[default]\nusers\n", "est.conf:2: expected name = value" },
			{ "[default]\nusers = u\nretry-after = 0\n", "bad value for retry-after" },
			{ "[default]\nusers = u\nkey-type = rsa:1024\n", "bad value for key-type" },
			{ "[default]\nusers = u\napproval = maybe\n", "bad value for approval" },
			{ "rate-limit = -1\n", "bad value for rate-limit" },
			{ "[default]\nusers = u\nrate-limit = 3\n", "est.conf:3: rate-limit is for all profiles" },
		};
		size_t i;

		for (i = 0; i < sizeof bad / sizeof bad[0]; i++) {
			err[0] = '\0';
			assert_int_equal(parse(bad[i].text, err, sizeof err, &s), -1);
			if (strstr(err, bad[i].err) == NULL)
				fail_msg("'%s': error '%s', want '%s'", bad[i].text, err, bad[i].err);
			assert_int_equal(s.nprof, 0);
		}
	}
	{
		/* a long line, 17 profiles */
		char big[4096];
		size_t o = 0;
		int i;

		memset(big, 'x', 2000);
		big[2000] = '\0';
		assert_int_equal(parse(big, err, sizeof err, &s), -1);
		assert_non_null(strstr(err, "longer than"));
		for (i = 0; i < 17; i++)
			o += (size_t)snprintf(big + o, sizeof big - o, "[p%d]\nusers = u\n", i);
		assert_int_equal(parse(big, err, sizeof err, &s), -1);
		assert_non_null(strstr(err, "more than 16 profiles"));
	}
}

static void test_path(void **state)
{
	char l[EST_LABEL_MAX + 1], op[32];

	(void)state;
	assert_int_equal(est_path_parse("/.well-known/est/cacerts", l, sizeof l, op, sizeof op), 1);
	assert_string_equal(l, "");
	assert_string_equal(op, "cacerts");
	assert_int_equal(est_path_parse("/.well-known/est/arbitraryLabel1/simpleenroll", l, sizeof l, op, sizeof op), 1);
	assert_string_equal(l, "arbitraryLabel1");
	assert_string_equal(op, "simpleenroll");
	assert_int_equal(est_path_parse("/.well-known/est/a/b/c", l, sizeof l, op, sizeof op), 0);
	assert_int_equal(est_path_parse("/.well-known/est/../cacerts", l, sizeof l, op, sizeof op), 0);
	assert_int_equal(est_path_parse("/.well-known/est//cacerts", l, sizeof l, op, sizeof op), 0);
	assert_int_equal(est_path_parse("/.well-known/estx/cacerts", l, sizeof l, op, sizeof op), 0);
	assert_int_equal(est_path_parse("/cacerts", l, sizeof l, op, sizeof op), 0);
	assert_int_equal(est_path_parse("/.well-known/est/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/cacerts", l, sizeof l,
					op, sizeof op),
			 0); /* 33 characters */
	assert_int_equal(est_path_parse("/.well-known/est/simpleenrollsimpleenrollsimpleenroll", l, sizeof l, op,
					sizeof op),
			 0);
	/* "/.well-known/est/" itself: an empty operation, answered 404 */
	assert_int_equal(est_path_parse("/.well-known/est/", l, sizeof l, op, sizeof op), 1);
	assert_string_equal(op, "");
}

/* RFC 7030 Appendix A.2's csrattrs: challengePassword, then the
 * id-ecPublicKey attribute with secp384r1, ... */
static const char rfc7030_a2[] =
	"MEEGCSqGSIb3DQEJBzASBgcqhkjOPQIBMQcGBSuBBAAiMBYGCSqGSIb3DQEJDjEJBgcrBgEBAQEWBggqhkjOPQQDAw==";

static void test_csrattrs(void **state)
{
	struct est_profile p;
	unsigned char *der = NULL, *ex = NULL;
	const unsigned char *q;
	size_t n = 0, exn = 0;
	ASN1_SEQUENCE_ANY *seq;

	(void)state;
	memset(&p, 0, sizeof p);
	assert_int_equal(est_csrattrs_der(&p, &der, &n), 0);
	assert_int_equal(n, 2);
	assert_memory_equal(der, "\x30\x00", 2);
	free(der);
	p.binding = 1;
	p.key_nid = EVP_PKEY_EC;
	p.key_param = NID_secp384r1;
	assert_int_equal(est_csrattrs_der(&p, &der, &n), 0);
	assert_int_equal(dec(rfc7030_a2, 1000, &ex, &exn), 0);
	assert_int_equal(exn, 67);
	/* the first two elements, byte for byte (offsets 2..33 of the example) */
	assert_true(n > 33);
	assert_memory_equal(der + 2, ex + 2, 31);
	free(ex);
	q = der;
	seq = d2i_ASN1_SEQUENCE_ANY(NULL, &q, (long)n);
	assert_non_null(seq);
	assert_int_equal(sk_ASN1_TYPE_num(seq), 3);
	assert_int_equal(q, der + n);
	sk_ASN1_TYPE_pop_free(seq, ASN1_TYPE_free);
	free(der);
	/* RSA: the size as a positive INTEGER (3072 = 0x0c00; 4096 = 0x1000) */
	p.binding = 0;
	p.key_nid = EVP_PKEY_RSA;
	p.key_param = 3072;
	assert_int_equal(est_csrattrs_der(&p, &der, &n), 0);
	assert_non_null(memmem(der, n, "\x02\x02\x0c\x00", 4));
	free(der);
}

static X509_REQ *mk_req(const char *cpw, int type)
{
	X509_REQ *r = X509_REQ_new();
	EVP_PKEY *k = EVP_EC_gen("P-256");

	assert_non_null(r);
	assert_non_null(k);
	assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
	if (cpw != NULL)
		assert_int_equal(X509_REQ_add1_attr_by_NID(r, NID_pkcs9_challengePassword, type,
							   (const unsigned char *)cpw, -1),
				 1);
	assert_true(X509_REQ_sign(r, k, EVP_sha256()) > 0);
	EVP_PKEY_free(k);
	return r;
}

static void test_challenge_and_pkcs7(void **state)
{
	char out[64];
	X509_REQ *r;
	X509 *x;
	STACK_OF(X509) *sk;
	unsigned char *der = NULL;
	const unsigned char *q;
	size_t n = 0;
	PKCS7 *p7;

	(void)state;
	r = mk_req("dGxzLXVuaXF1ZQ==", MBSTRING_ASC);
	assert_int_equal(est_challenge_password(r, out, sizeof out), 0);
	assert_string_equal(out, "dGxzLXVuaXF1ZQ==");
	assert_int_equal(est_challenge_password(r, out, 8), -1); /* does not fit */
	X509_REQ_free(r);
	r = mk_req("utf8 binding", MBSTRING_UTF8);
	assert_int_equal(est_challenge_password(r, out, sizeof out), 0);
	X509_REQ_free(r);
	r = mk_req(NULL, 0);
	assert_int_equal(est_challenge_password(r, out, sizeof out), -1);
	/* certs-only: SignedData, the certificate inside, no signer */
	{
		EVP_PKEY *k = EVP_EC_gen("P-256");

		x = X509_new();
		assert_non_null(x);
		assert_int_equal(X509_set_pubkey(x, k), 1);
		assert_int_equal(ASN1_INTEGER_set(X509_get_serialNumber(x), 1), 1);
		assert_non_null(X509_gmtime_adj(X509_getm_notBefore(x), 0));
		assert_non_null(X509_gmtime_adj(X509_getm_notAfter(x), 60));
		assert_true(X509_sign(x, k, EVP_sha256()) > 0);
		EVP_PKEY_free(k);
	}
	sk = sk_X509_new_null();
	assert_true(sk_X509_push(sk, x) > 0);
	assert_int_equal(est_certs_only_der(sk, &der, &n), 0);
	q = der;
	p7 = d2i_PKCS7(NULL, &q, (long)n);
	assert_non_null(p7);
	assert_true(PKCS7_type_is_signed(p7));
	assert_int_equal(sk_X509_num(p7->d.sign->cert), 1);
	assert_int_equal(sk_PKCS7_SIGNER_INFO_num(p7->d.sign->signer_info), 0);
	PKCS7_free(p7);
	OPENSSL_free(der);
	sk_X509_pop_free(sk, X509_free);
	X509_REQ_free(r);
}

/* csrattrs-extensions: the extensionRequest attribute with the values
 * wanted (keyUsage critical, extendedKeyUsage), read back by the client's
 * parser; the policy check of csrattrs-extensions-required. */
static void test_csrattrs_extensions(void **state)
{
	struct est_server s;
	const struct est_profile *p;
	unsigned char *der = NULL, b64[1024];
	const unsigned char *q;
	STACK_OF(X509_EXTENSION) *exts;
	p11c_est_attrs a;
	char err[512], why[160];
	size_t n = 0;
	int blen;
	X509_REQ *r;

	(void)state;
	assert_int_equal(parse("[default]\nusers = u\ncsrattrs-extensions = clientAuth, serverAuth digitalSignature\n"
			       "csrattrs-extensions-required = yes\n",
			       err, sizeof err, &s),
			 0);
	p = est_profile_find(&s, "");
	assert_non_null(p);
	assert_int_equal(p->ext_required, 1);
	assert_int_equal(est_csrattrs_der(p, &der, &n), 0);
	/* SEQUENCE { SEQUENCE { extensionRequest, SET { Extensions } } } */
	assert_non_null(memmem(der, n, "\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x09\x0e\x31", 12));
	blen = EVP_EncodeBlock(b64, der, (int)n);
	free(der);
	assert_int_equal(p11c_est_csrattrs_parse(b64, (size_t)blen, &a, err, sizeof err), P11C_OK);
	assert_int_equal(a.next, 2);
	assert_int_equal(a.nunknown, 0);
	q = a.ext;
	exts = d2i_X509_EXTENSIONS(NULL, &q, (long)a.ext_len);
	assert_non_null(exts);
	assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, 0))), NID_key_usage);
	assert_int_equal(X509_EXTENSION_get_critical(sk_X509_EXTENSION_value(exts, 0)), 1);
	assert_int_equal(OBJ_obj2nid(X509_EXTENSION_get_object(sk_X509_EXTENSION_value(exts, 1))), NID_ext_key_usage);
	/* a request without them fails the check, with them passes */
	r = mk_req(NULL, 0);
	assert_int_equal(est_exts_ok(p, r, why, sizeof why), 0);
	assert_non_null(strstr(why, "keyUsage digitalSignature"));
	X509_REQ_free(r);
	{
		EVP_PKEY *k = EVP_EC_gen("P-256");

		r = X509_REQ_new();
		assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
		assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
		assert_int_equal(est_exts_ok(p, r, why, sizeof why), 1);
		X509_REQ_free(r);
		/* keyUsage only: extendedKeyUsage clientAuth lacks */
		X509_EXTENSION_free(sk_X509_EXTENSION_pop(exts));
		r = X509_REQ_new();
		assert_int_equal(X509_REQ_set_pubkey(r, k), 1);
		assert_int_equal(X509_REQ_add_extensions(r, exts), 1);
		assert_int_equal(est_exts_ok(p, r, why, sizeof why), 0);
		assert_non_null(strstr(why, "extendedKeyUsage serverAuth"));
		X509_REQ_free(r);
		EVP_PKEY_free(k);
	}
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	{
		struct est_server *sp = malloc(sizeof *sp);

		assert_non_null(sp);
		*sp = s;
		est_server_free(&sp);
	}
	assert_int_equal(parse("[default]\nusers = u\ncsrattrs-extensions = clientAuth, ipsecUser\n", err, sizeof err, &s),
			 -1);
	assert_non_null(strstr(err, "bad value for csrattrs-extensions"));
	assert_int_equal(parse("[default]\nusers = u\ncsrattrs-extensions-required = maybe\n", err, sizeof err, &s), -1);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_b64),
		cmocka_unit_test(test_basic),
		cmocka_unit_test(test_users),
		cmocka_unit_test(test_conf),
		cmocka_unit_test(test_path),
		cmocka_unit_test(test_csrattrs),
		cmocka_unit_test(test_challenge_and_pkcs7),
		cmocka_unit_test(test_csrattrs_extensions),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
