/*
 * Unit tests for names.c: p11c_subject_parse() and p11c_san_add().
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "internal.h"

#define ERRLEN 256

/* Parse s, expecting success. */
static X509_NAME *parse_ok(const char *s)
{
	X509_NAME *n = NULL;
	char err[ERRLEN];
	p11c_result r;

	r = p11c_subject_parse(s, &n, err, sizeof(err));
	if (r != P11C_OK)
		print_error("'%s': %s\n", s, err);
	assert_int_equal(r, P11C_OK);
	assert_non_null(n);
	assert_string_equal(err, "");
	return n;
}

/* Parse s, expecting P11C_ERR_SUBJECT with `want` in the message. */
static void parse_fails(const char *s, const char *want)
{
	X509_NAME *sentinel = (X509_NAME *)&sentinel;
	X509_NAME *n = sentinel;
	char err[ERRLEN];
	p11c_result r;

	r = p11c_subject_parse(s, &n, err, sizeof(err));
	if (r == P11C_OK)
		X509_NAME_free(n);
	assert_int_equal(r, P11C_ERR_SUBJECT);
	assert_ptr_equal(n, sentinel);
	if (strstr(err, want) == NULL)
		print_error("'%s': got '%s', want '%s'\n", s, err, want);
	assert_non_null(strstr(err, want));
}

static void assert_same(const char *a, const char *b)
{
	X509_NAME *na = parse_ok(a);
	X509_NAME *nb = parse_ok(b);

	assert_int_equal(X509_NAME_cmp(na, nb), 0);
	X509_NAME_free(na);
	X509_NAME_free(nb);
}

/* Entry i has type nid, RDN index set and value bytes val. */
static void assert_entry(const X509_NAME *n, int i, int nid, int set,
			 const char *val, size_t len)
{
	const X509_NAME_ENTRY *ne = X509_NAME_get_entry(n, i);
	const ASN1_STRING *d;

	assert_non_null(ne);
	assert_int_equal(OBJ_obj2nid(X509_NAME_ENTRY_get_object(ne)), nid);
	assert_int_equal(X509_NAME_ENTRY_set(ne), set);
	d = X509_NAME_ENTRY_get_data(ne);
	assert_int_equal(ASN1_STRING_length(d), (int)len);
	assert_memory_equal(ASN1_STRING_get0_data(d), val, len);
}

/* --- subject -------------------------------------------------------- */

static void test_forms_equal(void **state)
{
	X509_NAME *n;

	(void)state;
	assert_same("/C=SE/O=Example/CN=host1", "CN=host1,O=Example,C=SE");

	n = parse_ok("CN=host1,O=Example,C=SE");
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_entry(n, 0, NID_countryName, 0, "SE", 2);
	assert_entry(n, 1, NID_organizationName, 1, "Example", 7);
	assert_entry(n, 2, NID_commonName, 2, "host1", 5);
	X509_NAME_free(n);

	n = parse_ok("/C=SE/O=Example/CN=host1");
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_entry(n, 0, NID_countryName, 0, "SE", 2);
	assert_entry(n, 2, NID_commonName, 2, "host1", 5);
	X509_NAME_free(n);

	/* long names, a trailing '/' as "openssl req -subj" accepts */
	assert_same("/countryName=SE/organizationName=Example/commonName=host1/",
		    "/C=SE/O=Example/CN=host1");
	/* RFC 2253 s4: ';' separates RDNs too */
	assert_same("CN=host1;O=Example;C=SE", "/C=SE/O=Example/CN=host1");
	/* single RDN */
	assert_same("CN=x", "/CN=x");
}

static void test_rfc2253_spaces(void **state)
{
	X509_NAME *n;

	(void)state;
	assert_same("CN=host1, O=Example, C=SE", "/C=SE/O=Example/CN=host1");
	assert_same("  CN = host1 ,O=Example ,   C=SE  ",
		    "/C=SE/O=Example/CN=host1");
	/* inner spaces are kept */
	n = parse_ok("CN=  my host  , O=Ex");
	assert_entry(n, 1, NID_commonName, 1, "my host", 7);
	X509_NAME_free(n);
	/* slash form keeps spaces as given */
	n = parse_ok("/O=Ex/CN= my host ");
	assert_entry(n, 1, NID_commonName, 1, " my host ", 9);
	X509_NAME_free(n);
}

static void test_escapes_slash(void **state)
{
	X509_NAME *n;

	(void)state;
	n = parse_ok("/O=a\\/b\\\\c\\,d/CN=x\\+y");
	assert_int_equal(X509_NAME_entry_count(n), 2);
	assert_entry(n, 0, NID_organizationName, 0, "a/b\\c,d", 7);
	assert_entry(n, 1, NID_commonName, 1, "x+y", 3);
	X509_NAME_free(n);

	/* ',' needs no escape in slash form */
	n = parse_ok("/O=Sue, Grabbit and Runn");
	assert_entry(n, 0, NID_organizationName, 0,
		     "Sue, Grabbit and Runn", 21);
	X509_NAME_free(n);
}

static void test_escapes_rfc(void **state)
{
	static const char want[] = "a,b+c\"d\\e;f<g>h=i#j k";
	X509_NAME *n;

	(void)state;
	n = parse_ok("CN=a\\,b\\+c\\\"d\\\\e\\;f\\<g\\>h\\=i\\#j\\ k,O=x");
	assert_int_equal(X509_NAME_entry_count(n), 2);
	assert_entry(n, 0, NID_organizationName, 0, "x", 1);
	assert_entry(n, 1, NID_commonName, 1, want, strlen(want));
	X509_NAME_free(n);

	/* RFC 4514 s4 example: UTF-8 through hex pairs */
	n = parse_ok("SN=Lu\\C4\\8Di\\c4\\87");
	assert_entry(n, 0, NID_surname, 0, "Lu\xc4\x8di\xc4\x87", 7);
	X509_NAME_free(n);

	/* escaped leading '#', escaped leading/trailing spaces are kept */
	n = parse_ok("CN=\\#1");
	assert_entry(n, 0, NID_commonName, 0, "#1", 2);
	X509_NAME_free(n);
	n = parse_ok("CN= \\ a\\20 ");
	assert_entry(n, 0, NID_commonName, 0, " a ", 3);
	X509_NAME_free(n);
	n = parse_ok("CN=Sue\\2C Grabbit");
	assert_entry(n, 0, NID_commonName, 0, "Sue, Grabbit", 12);
	X509_NAME_free(n);

	/* '=' and '#' inside a value need no escape */
	n = parse_ok("CN=a=b#c");
	assert_entry(n, 0, NID_commonName, 0, "a=b#c", 5);
	X509_NAME_free(n);

	/* RFC 4514 s2.4 hexstring: UTF8String "abc" */
	assert_same("CN=#0C03616263,O=x", "/O=x/CN=abc");
}

static void test_multivalued(void **state)
{
	X509_NAME *n;

	(void)state;
	assert_same("/O=x/CN=a+UID=b", "CN=a+UID=b,O=x");
	assert_same("/O=x/CN=a+UID=b", "CN=a + UID=b, O=x");

	n = parse_ok("CN=a+UID=b,O=x");
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_entry(n, 0, NID_organizationName, 0, "x", 1);
	assert_entry(n, 1, NID_commonName, 1, "a", 1);
	assert_entry(n, 2, NID_userId, 1, "b", 1);
	X509_NAME_free(n);

	n = parse_ok("/CN=a+UID=b/O=x");
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_entry(n, 0, NID_commonName, 0, "a", 1);
	assert_entry(n, 1, NID_userId, 0, "b", 1);
	assert_entry(n, 2, NID_organizationName, 1, "x", 1);
	X509_NAME_free(n);

	/* multi-valued RDN first and last in RFC form */
	n = parse_ok("CN=a,O=x+OU=y");
	assert_int_equal(X509_NAME_entry_count(n), 3);
	assert_entry(n, 0, NID_organizationName, 0, "x", 1);
	assert_entry(n, 1, NID_organizationalUnitName, 0, "y", 1);
	assert_entry(n, 2, NID_commonName, 1, "a", 1);
	X509_NAME_free(n);
}

/* The NiFi Java client's reading (issue 15 s1): "CN=n1, OU=NIFI" is the
 * DER sequence [CN, OU]; the server's reversal gives [OU, CN]. */
static void test_dn_as_written(void **state)
{
	X509_NAME *n = NULL, *rev = NULL, *slash;
	char err[ERRLEN];

	(void)state;
	assert_int_equal(p11c_dn_parse_as_written("CN=n1, OU=NIFI", &n, err, sizeof err), P11C_OK);
	assert_int_equal(X509_NAME_entry_count(n), 2);
	assert_entry(n, 0, NID_commonName, 0, "n1", 2);
	assert_entry(n, 1, NID_organizationalUnitName, 1, "NIFI", 4);
	/* the slash form is in the order written already */
	slash = parse_ok("/CN=n1/OU=NIFI");
	assert_int_equal(X509_NAME_cmp(n, slash), 0);
	X509_NAME_free(slash);
	/* reversed: what p11c_subject_parse makes of the same string */
	assert_int_equal(p11c_name_reverse(n, &rev), P11C_OK);
	slash = parse_ok("CN=n1, OU=NIFI");
	assert_int_equal(X509_NAME_cmp(rev, slash), 0);
	assert_entry(rev, 0, NID_organizationalUnitName, 0, "NIFI", 4);
	X509_NAME_free(slash);
	X509_NAME_free(rev);
	X509_NAME_free(n);
	/* multi-valued RDNs stay together */
	n = NULL;
	rev = NULL;
	assert_int_equal(p11c_dn_parse_as_written("CN=a+UID=b, O=x", &n, err, sizeof err), P11C_OK);
	assert_entry(n, 0, NID_commonName, 0, "a", 1);
	assert_entry(n, 1, NID_userId, 0, "b", 1);
	assert_entry(n, 2, NID_organizationName, 1, "x", 1);
	assert_int_equal(p11c_name_reverse(n, &rev), P11C_OK);
	assert_entry(rev, 0, NID_organizationName, 0, "x", 1);
	assert_entry(rev, 1, NID_commonName, 1, "a", 1);
	assert_entry(rev, 2, NID_userId, 1, "b", 1);
	/* reversing twice gives the same bytes back (POST /renew relies on it) */
	assert_false(p11c_name_der_equal(n, rev));
	assert_int_equal(p11c_name_reverse(rev, &slash), P11C_OK);
	assert_true(p11c_name_der_equal(n, slash));
	X509_NAME_free(slash);
	/* the same string in another ASN.1 type: X509_NAME_cmp says equal,
	 * the bytes differ */
	slash = X509_NAME_new();
	assert_non_null(slash);
	assert_int_equal(X509_NAME_add_entry_by_NID(slash, NID_commonName, V_ASN1_PRINTABLESTRING,
						    (const unsigned char *)"a", 1, -1, 0), 1);
	X509_NAME_free(rev);
	rev = X509_NAME_new();
	assert_non_null(rev);
	assert_int_equal(X509_NAME_add_entry_by_NID(rev, NID_commonName, V_ASN1_UTF8STRING,
						    (const unsigned char *)"a", 1, -1, 0), 1);
	assert_int_equal(X509_NAME_cmp(slash, rev), 0);
	assert_false(p11c_name_der_equal(slash, rev));
	assert_false(p11c_name_der_equal(NULL, rev));
	X509_NAME_free(slash);
	X509_NAME_free(rev);
	X509_NAME_free(n);
	/* errors as p11c_subject_parse's */
	n = NULL;
	assert_int_equal(p11c_dn_parse_as_written("CN=a,,O=x", &n, err, sizeof err), P11C_ERR_SUBJECT);
	assert_null(n);
	assert_int_equal(p11c_name_reverse(NULL, &rev), P11C_ERR_ARG);
}

static void test_oid_and_types(void **state)
{
	X509_NAME *n;
	const X509_NAME_ENTRY *ne;
	char buf[64];

	(void)state;
	assert_same("/2.5.4.3=host", "/CN=host");
	assert_same("2.5.4.3=host,2.5.4.6=SE", "/C=SE/CN=host");
	/* RFC 2253 s4: "OID." prefix */
	assert_same("OID.2.5.4.3=host", "/CN=host");

	n = parse_ok("/1.3.6.1.4.1.99999.1=foo");
	ne = X509_NAME_get_entry(n, 0);
	assert_non_null(ne);
	assert_true(OBJ_obj2txt(buf, sizeof(buf),
				X509_NAME_ENTRY_get_object(ne), 1) > 0);
	assert_string_equal(buf, "1.3.6.1.4.1.99999.1");
	X509_NAME_free(n);

	n = parse_ok("/DC=com/DC=example/emailAddress=a@example.com"
		     "/serialNumber=42/ST=Sk\xc3\xa5ne/L=Lund/OU=IT");
	assert_int_equal(X509_NAME_entry_count(n), 7);
	assert_entry(n, 0, NID_domainComponent, 0, "com", 3);
	assert_entry(n, 2, NID_pkcs9_emailAddress, 2, "a@example.com", 13);
	assert_entry(n, 4, NID_stateOrProvinceName, 4, "Sk\xc3\xa5ne", 6);
	X509_NAME_free(n);
}

static void test_subject_errors(void **state)
{
	char *big = NULL;
	size_t i, off;
	X509_NAME *n = NULL;

	(void)state;
	parse_fails("", "empty subject");
	parse_fails("/", "empty subject");
	parse_fails("   ", "empty subject");

	parse_fails("/C=SE/CN", "missing '=' after 'CN' at offset 8");
	parse_fails("CN,O=x", "missing '=' after 'CN' at offset 2");
	parse_fails("/C=SE/O=", "empty value for 'O' at offset 8");
	parse_fails("/O=/CN=x", "empty value for 'O' at offset 3");
	parse_fails("CN=x, O=  ,C=SE", "empty value for 'O' at offset 8");
	parse_fails("/C=SE/XX=1", "unknown attribute type 'XX' at offset 6");
	parse_fails("C=SE,XX=1", "unknown attribute type 'XX' at offset 5");
	parse_fails("/9.9.9=1", "unknown attribute type '9.9.9' at offset 1");
	parse_fails("/CN=abc\\", "trailing backslash at offset 7");
	parse_fails("CN=abc\\", "trailing backslash at offset 6");
	parse_fails("=x", "empty attribute type at offset 0");
	parse_fails("/C=SE//CN=x", "empty RDN at offset 6");
	parse_fails("CN=a,,O=b", "empty RDN at offset 5");
	parse_fails("CN=a,", "trailing ',' at offset 4");
	parse_fails("CN=a, ", "trailing ',' at offset 4");
	parse_fails("/CN=a+", "trailing '+' at offset 5");
	parse_fails("CN=a+,O=b", "empty RDN at offset 5");
	parse_fails("/CN=a++O=b", "expected attribute type at offset 6");
	parse_fails("C N=x", "invalid character ' ' in attribute type at offset 1");
	parse_fails("/O=A+B Corp", "invalid character ' ' in attribute type at offset 6");
	parse_fails("/O=A+B Corp", "escape a literal '+'");
	parse_fails("/O=A+B", "missing '=' after 'B' at offset 6");
	parse_fails("CN=a\\q", "invalid escape '\\q' at offset 4");
	parse_fails("CN=a\\4", "incomplete hex escape at offset 4");
	parse_fails("CN=a\\4x", "incomplete hex escape at offset 4");
	parse_fails("CN=a\\00b", "NUL byte (\\00) in value for 'CN' at offset 4");
	parse_fails("CN=a<b", "unescaped '<' in value for 'CN' at offset 4");
	parse_fails("CN=\"quoted\"", "unescaped '\"' in value for 'CN' at offset 3");
	parse_fails("CN=#0C0361", "hex value for 'CN' at offset 3 is not a DER-encoded string");
	parse_fails("CN=#040161", "is not a DER-encoded string");
	parse_fails("CN=#ABC", "odd-length hex value for 'CN' at offset 3");
	parse_fails("CN=#", "empty hex value for 'CN' at offset 3");
	parse_fails("CN=#0C0161x", "invalid character 'x' in hex value for 'CN' at offset 10");
	parse_fails("CN=#0C00", "empty value for 'CN' at offset 3");

	/* OpenSSL's own checks on the value */
	parse_fails("/C=SWE", "invalid value for 'C' at offset 3");
	parse_fails("/C=SWE", "string too long");
	parse_fails("/C=SWE", "two-letter country code");
	parse_fails("CN=x,C=S", "invalid value for 'C' at offset 7: string too short");
	parse_fails("/CN=\xff\xfe", "invalid value for 'CN' at offset 4");

	/* length limit */
	big = malloc(4098);
	assert_non_null(big);
	memcpy(big, "/CN=", 4);
	memset(big + 4, 'a', 4093);
	big[4097] = '\0';
	parse_fails(big, "longer than 4096 bytes");
	big[4096] = '\0';
	/* 4092 bytes of CN: within the input limit, OpenSSL refuses (ub 64) */
	parse_fails(big, "invalid value for 'CN' at offset 4");

	/* RDN limit: 64 is fine, 65 is not */
	off = 0;
	for (i = 0; i < 65; i++) {
		memcpy(big + off, "/O=x", 4);
		off += 4;
	}
	big[off] = '\0';
	parse_fails(big, "too many RDNs (more than 64) at offset 257");
	big[off - 4] = '\0';
	n = parse_ok(big);
	assert_int_equal(X509_NAME_entry_count(n), 64);
	X509_NAME_free(n);
	free(big);
}

static void test_subject_args(void **state)
{
	X509_NAME *n = NULL;
	char err[ERRLEN];

	(void)state;
	assert_int_equal(p11c_subject_parse(NULL, &n, err, sizeof(err)),
			 P11C_ERR_ARG);
	assert_null(n);
	assert_int_equal(p11c_subject_parse("/CN=x", NULL, err, sizeof(err)),
			 P11C_ERR_ARG);
	/* err may be NULL or tiny */
	assert_int_equal(p11c_subject_parse("/CN=", &n, NULL, 0),
			 P11C_ERR_SUBJECT);
	assert_null(n);
	assert_int_equal(p11c_subject_parse("/CN=", &n, err, 4),
			 P11C_ERR_SUBJECT);
	assert_string_equal(err, "emp");
	assert_int_equal(p11c_subject_parse("/CN=x", &n, NULL, 0), P11C_OK);
	assert_non_null(n);
	X509_NAME_free(n);
}

/* --- subjectAltName ------------------------------------------------- */

static const GENERAL_NAME *last_name(const STACK_OF(GENERAL_NAME) *sk)
{
	return sk_GENERAL_NAME_value(sk, sk_GENERAL_NAME_num(sk) - 1);
}

static void san_ok(STACK_OF(GENERAL_NAME) **sk, const char *s, int type,
		   const void *bytes, size_t len)
{
	char err[ERRLEN];
	const GENERAL_NAME *gn;
	const ASN1_STRING *d;
	int gtype = -1;
	p11c_result r;

	r = p11c_san_add(s, sk, err, sizeof(err));
	if (r != P11C_OK)
		print_error("'%s': %s\n", s, err);
	assert_int_equal(r, P11C_OK);
	assert_non_null(*sk);
	gn = last_name(*sk);
	d = GENERAL_NAME_get0_value(gn, &gtype);
	assert_int_equal(gtype, type);
	assert_int_equal(ASN1_STRING_length(d), (int)len);
	assert_memory_equal(ASN1_STRING_get0_data(d), bytes, len);
	if (type == GEN_IPADD)
		assert_int_equal(ASN1_STRING_type(d), V_ASN1_OCTET_STRING);
	else
		assert_int_equal(ASN1_STRING_type(d), V_ASN1_IA5STRING);
}

static void san_fails(STACK_OF(GENERAL_NAME) **sk, const char *s,
		      const char *want)
{
	char err[ERRLEN];
	int before = *sk != NULL ? sk_GENERAL_NAME_num(*sk) : -1;

	assert_int_equal(p11c_san_add(s, sk, err, sizeof(err)), P11C_ERR_SAN);
	if (strstr(err, want) == NULL)
		print_error("'%s': got '%s', want '%s'\n", s, err, want);
	assert_non_null(strstr(err, want));
	assert_int_equal(*sk != NULL ? sk_GENERAL_NAME_num(*sk) : -1, before);
}

static void test_san_ok(void **state)
{
	static const unsigned char v4[4] = { 192, 0, 2, 1 };
	static const unsigned char v6[16] = {
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1
	};
	static const unsigned char v4mapped[16] = {
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 1
	};
	STACK_OF(GENERAL_NAME) *sk = NULL;
	char label[80], dns[300];

	(void)state;
	san_ok(&sk, "DNS:host1.example.com", GEN_DNS, "host1.example.com", 17);
	assert_int_equal(sk_GENERAL_NAME_num(sk), 1);
	san_ok(&sk, "dns:*.example.com", GEN_DNS, "*.example.com", 13);
	san_ok(&sk, "DNS:localhost", GEN_DNS, "localhost", 9);
	san_ok(&sk, "DNS:_srv.a-b.example", GEN_DNS, "_srv.a-b.example", 16);
	san_ok(&sk, "IP:192.0.2.1", GEN_IPADD, v4, 4);
	san_ok(&sk, "ip:2001:db8::1", GEN_IPADD, v6, 16);
	san_ok(&sk, "IP:::ffff:192.0.2.1", GEN_IPADD, v4mapped, 16);
	san_ok(&sk, "email:a@example.com", GEN_EMAIL, "a@example.com", 13);
	san_ok(&sk, "EMAIL:first.last+tag@example.com", GEN_EMAIL,
	       "first.last+tag@example.com", 26);
	san_ok(&sk, "URI:https://example.com/", GEN_URI,
	       "https://example.com/", 20);
	san_ok(&sk, "uri:urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", GEN_URI,
	       "urn:uuid:f81d4fae-7dec-11d0-a765-00a0c91e6bf6", 45);
	assert_int_equal(sk_GENERAL_NAME_num(sk), 11);

	/* 63-character label and a 253-character name are fine */
	memcpy(label, "DNS:", 4); /* NOLINT(bugprone-not-null-terminated-result): ".com" below ends it */
	memset(label + 4, 'a', 63);
	memcpy(label + 67, ".com", 5);
	san_ok(&sk, label, GEN_DNS, label + 4, 67);
	memcpy(dns, "DNS:", 4);
	memset(dns + 4, 'a', 253);
	for (size_t i = 4 + 60; i < 4 + 253; i += 61)
		dns[i] = '.';
	dns[4 + 253] = '\0';
	san_ok(&sk, dns, GEN_DNS, dns + 4, 253);

	GENERAL_NAMES_free(sk);
}

static void test_san_errors(void **state)
{
	STACK_OF(GENERAL_NAME) *sk = NULL;
	char buf[1100];

	(void)state;
	san_fails(&sk, "FOO:x",
		  "unknown SAN type 'FOO' in 'FOO:x' (use DNS:, IP:, email: or URI:)");
	assert_null(sk);
	san_fails(&sk, "example.com",
		  "missing ':' in SAN 'example.com' (use DNS:, IP:, email: or URI:)");
	san_fails(&sk, ":x", "unknown SAN type '' in ':x'");
	san_fails(&sk, "DNS:", "empty value in SAN 'DNS:'");
	san_fails(&sk, "IP:300.1.1.1", "invalid IP address '300.1.1.1'");
	san_fails(&sk, "IP:192.0.2", "invalid IP address '192.0.2'");
	san_fails(&sk, "IP:2001:db8::1::2", "invalid IP address '2001:db8::1::2'");
	san_fails(&sk, "IP:192.0.2.1/24", "invalid IP address");
	san_fails(&sk, "IP:host.example.com", "invalid IP address");
	san_fails(&sk, "DNS:-a.example.com", "label starts with '-'");
	san_fails(&sk, "DNS:a-.example.com", "label ends with '-'");
	san_fails(&sk, "DNS:a..example.com", "invalid DNS name 'a..example.com': empty label");
	san_fails(&sk, "DNS:.example.com", "empty label");
	san_fails(&sk, "DNS:example.com.", "trailing dot");
	san_fails(&sk, "DNS:a b.com", "invalid character ' '");
	san_fails(&sk, "DNS:foo*.com", "'*' is only allowed as the whole leftmost label");
	san_fails(&sk, "DNS:a.*.com", "'*' is only allowed");
	san_fails(&sk, "DNS:*", "'*' is only allowed");
	san_fails(&sk, "DNS:*.", "nothing after the wildcard");
	san_fails(&sk, "DNS:h\xc3\xa5st.se", "invalid character '\\xc3'");
	memcpy(buf, "DNS:", 4);
	memset(buf + 4, 'a', 64);
	buf[68] = '\0';
	san_fails(&sk, buf, "label longer than 63 characters");
	memset(buf + 4, 'a', 254);
	for (size_t i = 4 + 60; i < 4 + 254; i += 61)
		buf[i] = '.';
	buf[4 + 254] = '\0';
	san_fails(&sk, buf, "longer than 253 characters");
	san_fails(&sk, "email:a@b@c", "more than one '@'");
	san_fails(&sk, "email:@example.com", "empty local part");
	san_fails(&sk, "email:a@", "empty domain");
	san_fails(&sk, "email:example.com", "invalid email address 'example.com': missing '@'");
	san_fails(&sk, "email:a b@example.com", "invalid character ' '");
	san_fails(&sk, "URI:example.com/x", "invalid URI 'example.com/x': missing scheme");
	san_fails(&sk, "URI:https:", "nothing after the scheme");
	san_fails(&sk, "URI:1http:x", "missing scheme");
	san_fails(&sk, "URI::x", "missing scheme");
	san_fails(&sk, "URI:http://a b", "invalid character ' '");
	/* control characters are not echoed */
	san_fails(&sk, "IP:1\n2", "invalid IP address '1?2'");

	memcpy(buf, "DNS:", 4);
	memset(buf + 4, 'a', sizeof(buf) - 5);
	buf[sizeof(buf) - 1] = '\0';
	san_fails(&sk, buf, "SAN longer than 1024 bytes");
	assert_null(sk);

	/* a failure leaves an existing stack as it was */
	assert_int_equal(p11c_san_add("DNS:a.example", &sk, NULL, 0), P11C_OK);
	san_fails(&sk, "DNS:a..b", "empty label");
	assert_int_equal(sk_GENERAL_NAME_num(sk), 1);
	GENERAL_NAMES_free(sk);
	sk = NULL;

	assert_int_equal(p11c_san_add(NULL, &sk, buf, sizeof(buf)), P11C_ERR_ARG);
	assert_int_equal(p11c_san_add("DNS:x", NULL, buf, sizeof(buf)),
			 P11C_ERR_ARG);
	assert_int_equal(p11c_san_add("x", &sk, NULL, 0), P11C_ERR_SAN);
	assert_null(sk);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_forms_equal),
		cmocka_unit_test(test_rfc2253_spaces),
		cmocka_unit_test(test_escapes_slash),
		cmocka_unit_test(test_escapes_rfc),
		cmocka_unit_test(test_multivalued),
		cmocka_unit_test(test_dn_as_written),
		cmocka_unit_test(test_oid_and_types),
		cmocka_unit_test(test_subject_errors),
		cmocka_unit_test(test_subject_args),
		cmocka_unit_test(test_san_ok),
		cmocka_unit_test(test_san_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
