/*
 * names.c: subject distinguished names and subjectAltName entries from
 * command line strings.
 *
 * Subjects come in two forms:
 *
 *   OpenSSL slash form   /C=SE/O=Example/CN=host1   (most general first)
 *   RFC 4514 / RFC 2253  CN=host1,O=Example,C=SE    (most specific first)
 *
 * Both give the same X509_NAME.  RFC 4514 s2.1 writes the RDNSequence
 * "starting with the last element of the sequence and moving backward
 * toward the first", so a string in that form is parsed in input order and
 * its RDNs reversed afterwards.
 *
 * Parsing is bounded: the input length is measured once with strnlen()
 * against an explicit maximum and every read checks the index against it.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include <openssl/asn1.h>
#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "internal.h"

#define SUBJ_MAX_LEN 4096   /* bytes of input */
#define SUBJ_MAX_RDNS 64
#define SUBJ_MAX_TYPE 128   /* bytes of an attribute type or dotted OID */

#define SAN_MAX_LEN 1024
#define SAN_DNS_MAX 253
#define SAN_LABEL_MAX 63

#define QUOTE_MAX 64        /* bytes of user input echoed in a message */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
	P11C_PRINTF(3, 4);

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	if (err == NULL || errlen == 0)
		return;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
}

/* Copy at most QUOTE_MAX bytes of s for an error message, non-printable
 * bytes as '?', "..." when cut.  dst holds QUOTE_MAX + 4 bytes. */
static void quote(char *dst, const char *s, size_t n)
{
	size_t i, m = n > QUOTE_MAX ? QUOTE_MAX : n;

	/* cppcheck-suppress knownConditionTrueFalse ; only false for n == 0, a real case */
	for (i = 0; i < m; i++) {
		unsigned char c = (unsigned char)s[i];

		dst[i] = (char)((c >= 0x20 && c < 0x7f) ? c : '?');
	}
	/* cppcheck-suppress knownConditionTrueFalse ; true for long input */
	if (m < n) {
		memcpy(dst + i, "...", 3);
		i += 3;
	}
	dst[i] = '\0';
}

/* "'x'" or "'\x01'" for one byte of input. */
static const char *chdesc(unsigned char c, char buf[8])
{
	if (c >= 0x20 && c < 0x7f)
		snprintf(buf, 8, "'%c'", c);
	else
		snprintf(buf, 8, "'\\x%02x'", c);
	return buf;
}

static int hexval(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* --- subject --------------------------------------------------------- */

struct subj_parser {
	const char *s;
	size_t len;                 /* strnlen(s), <= SUBJ_MAX_LEN */
	size_t pos;
	int rfc;                    /* RFC 4514 form, else slash form */
	int nrdn;
	int after_plus;             /* current AVA follows a '+' */
	char *err;
	size_t errlen;
	X509_NAME *name;            /* RDNs in input order */

	/* current AVA */
	char type[SUBJ_MAX_TYPE + 1];
	size_t type_off;
	unsigned char val[SUBJ_MAX_LEN + 1];
	size_t vlen;
	size_t val_off;
	int hex;                    /* val holds a BER encoding (#hex form) */
};

/*
 * RDN and multi-valued RDN separators.  RFC 4514 s3: COMMA between RDNs,
 * PLUS between the attributes of one RDN; RFC 2253 s4 also requires ';'
 * to be accepted in place of ','.  Slash form: '/' and '+'.
 */
static int is_rdn_sep(const struct subj_parser *p, unsigned char c)
{
	if (p->rfc)
		return c == ',' || c == ';';
	return c == '/';
}

static int is_sep(const struct subj_parser *p, unsigned char c)
{
	return c == '+' || is_rdn_sep(p, c);
}

/* RFC 2253 s4: whitespace around the separators is ignored. */
static void skip_spaces(struct subj_parser *p)
{
	if (!p->rfc)
		return;
	while (p->pos < p->len && p->s[p->pos] == ' ')
		p->pos++;
}

static int is_type_char(unsigned char c)
{
	/* RFC 4514 s3: descr (ALPHA, DIGIT, '-') or numericoid (DIGIT, '.');
	 * '_' for OpenSSL names. */
	return isalnum(c) || c == '-' || c == '.' || c == '_';
}

static const char *plus_hint(const struct subj_parser *p)
{
	return p->after_plus ? " (escape a literal '+' as '\\+')" : "";
}

/*
 * attributeType = descr / numericoid (RFC 4514 s3), any name or OID
 * OpenSSL knows.  On success *obj is the type and p->pos is past the '='.
 */
static p11c_result parse_type(struct subj_parser *p, ASN1_OBJECT **obj)
{
	const char *lookup;
	char cb[8];
	size_t start, end, i;

	skip_spaces(p);
	start = p->pos;
	while (p->pos < p->len && p->s[p->pos] != '=' &&
	       !is_sep(p, (unsigned char)p->s[p->pos]))
		p->pos++;
	end = p->pos;
	while (p->rfc && end > start && p->s[end - 1] == ' ')
		end--;

	if (end == start) {
		if (p->pos < p->len && p->s[p->pos] == '=')
			set_err(p->err, p->errlen,
				"empty attribute type at offset %zu", start);
		else if (p->pos < p->len &&
			 is_rdn_sep(p, (unsigned char)p->s[p->pos]))
			set_err(p->err, p->errlen, "empty RDN at offset %zu",
				start);
		else
			set_err(p->err, p->errlen,
				"expected attribute type at offset %zu", start);
		return P11C_ERR_SUBJECT;
	}
	for (i = start; i < end; i++) {
		if (!is_type_char((unsigned char)p->s[i])) {
			set_err(p->err, p->errlen,
				"invalid character %s in attribute type at offset %zu%s",
				chdesc((unsigned char)p->s[i], cb), i,
				plus_hint(p));
			return P11C_ERR_SUBJECT;
		}
	}
	if (end - start > SUBJ_MAX_TYPE) {
		set_err(p->err, p->errlen,
			"attribute type longer than %d bytes at offset %zu",
			SUBJ_MAX_TYPE, start);
		return P11C_ERR_SUBJECT;
	}
	memcpy(p->type, p->s + start, end - start);
	p->type[end - start] = '\0';
	p->type_off = start;

	if (p->pos >= p->len || p->s[p->pos] != '=') {
		set_err(p->err, p->errlen, "missing '=' after '%s' at offset %zu%s",
			p->type, end, plus_hint(p));
		return P11C_ERR_SUBJECT;
	}
	p->pos++;

	/* RFC 2253 s4: accept an "oid." / "OID." prefix on a numericoid. */
	lookup = p->type;
	if (p->rfc && strncasecmp(lookup, "oid.", 4) == 0 &&
	    isdigit((unsigned char)lookup[4]))
		lookup += 4;

	ERR_set_mark();
	*obj = OBJ_txt2obj(lookup, 0);
	ERR_pop_to_mark();
	if (*obj == NULL) {
		set_err(p->err, p->errlen,
			"unknown attribute type '%s' at offset %zu", p->type, start);
		return P11C_ERR_SUBJECT;
	}
	return P11C_OK;
}

/*
 * One backslash escape at p->pos.  RFC 4514 s3:
 *   pair = ESC ( ESC / special / hexpair )
 *   special = escaped / SPACE / SHARP / EQUALS
 *   escaped = DQUOTE / PLUS / COMMA / SEMI / LANGLE / RANGLE
 * The slash form follows "openssl req -subj": '\' takes the next byte
 * literally ("\/", "\\", "\,", "\+", ...).
 */
static p11c_result parse_escape(struct subj_parser *p)
{
	size_t off = p->pos;
	unsigned char c;
	char cb[8];
	int hi, lo;

	if (off + 1 >= p->len) {
		set_err(p->err, p->errlen, "trailing backslash at offset %zu",
			off);
		return P11C_ERR_SUBJECT;
	}
	c = (unsigned char)p->s[off + 1];
	if (!p->rfc) {
		p->val[p->vlen++] = c;
		p->pos += 2;
		return P11C_OK;
	}
	hi = hexval(c);
	lo = off + 2 < p->len ? hexval((unsigned char)p->s[off + 2]) : -1;
	if (hi >= 0 && lo >= 0) {
		if (hi == 0 && lo == 0) {
			set_err(p->err, p->errlen,
				"NUL byte (\\00) in value for '%s' at offset %zu",
				p->type, off);
			return P11C_ERR_SUBJECT;
		}
		p->val[p->vlen++] = (unsigned char)(hi << 4 | lo);
		p->pos += 3;
		return P11C_OK;
	}
	if (hi >= 0) {
		set_err(p->err, p->errlen,
			"incomplete hex escape at offset %zu (use two hex digits)",
			off);
		return P11C_ERR_SUBJECT;
	}
	if (c == '\0' || strchr("\"+,;<>\\ #=", c) == NULL) {
		if (c >= 0x20 && c < 0x7f)
			set_err(p->err, p->errlen,
				"invalid escape '\\%c' at offset %zu", c, off);
		else
			set_err(p->err, p->errlen,
				"invalid byte %s after backslash at offset %zu",
				chdesc(c, cb), off);
		return P11C_ERR_SUBJECT;
	}
	p->val[p->vlen++] = c;
	p->pos += 2;
	return P11C_OK;
}

/* RFC 4514 s3: hexstring = SHARP 1*hexpair, the BER encoding of the value
 * (s2.4).  p->pos is at the '#'. */
static p11c_result parse_hexstring(struct subj_parser *p)
{
	size_t start, n, i;
	char cb[8];

	start = ++p->pos;
	while (p->pos < p->len && hexval((unsigned char)p->s[p->pos]) >= 0)
		p->pos++;
	n = p->pos - start;
	skip_spaces(p);
	if (p->pos < p->len && !is_sep(p, (unsigned char)p->s[p->pos])) {
		set_err(p->err, p->errlen,
			"invalid character %s in hex value for '%s' at offset %zu",
			chdesc((unsigned char)p->s[p->pos], cb), p->type, p->pos);
		return P11C_ERR_SUBJECT;
	}
	if (n == 0 || n % 2 != 0) {
		set_err(p->err, p->errlen,
			"%s hex value for '%s' at offset %zu",
			n == 0 ? "empty" : "odd-length", p->type, p->val_off);
		return P11C_ERR_SUBJECT;
	}
	for (i = 0; i < n / 2; i++)
		p->val[i] = (unsigned char)(hexval((unsigned char)p->s[start + 2 * i]) << 4 |
					    hexval((unsigned char)p->s[start + 2 * i + 1]));
	p->vlen = n / 2;
	p->hex = 1;
	return P11C_OK;
}

/*
 * attributeValue (RFC 4514 s3).  Leading and trailing unescaped spaces are
 * dropped in RFC form (RFC 2253 s4); an escaped space ("\ ", "\20") is
 * kept.  Unescaped DQUOTE, LANGLE and RANGLE are refused (s3 "escaped");
 * quoted RFC 1779 strings are not supported.
 */
static p11c_result parse_value(struct subj_parser *p)
{
	size_t keep = 0, eq_off = p->pos;
	p11c_result r;

	skip_spaces(p);
	p->val_off = p->pos;
	p->vlen = 0;
	p->hex = 0;
	if (p->rfc && p->pos < p->len && p->s[p->pos] == '#')
		return parse_hexstring(p);

	while (p->pos < p->len) {
		unsigned char c = (unsigned char)p->s[p->pos];

		if (is_sep(p, c))
			break;
		if (c == '\\') {
			r = parse_escape(p);
			if (r != P11C_OK)
				return r;
			keep = p->vlen;
			continue;
		}
		if (p->rfc && (c == '"' || c == '<' || c == '>')) {
			set_err(p->err, p->errlen,
				"unescaped '%c' in value for '%s' at offset %zu (write '\\%c')",
				c, p->type, p->pos, c);
			return P11C_ERR_SUBJECT;
		}
		p->val[p->vlen++] = c;
		p->pos++;
		if (!p->rfc || c != ' ')
			keep = p->vlen;
	}
	p->vlen = keep;
	if (p->vlen == 0) {
		set_err(p->err, p->errlen, "empty value for '%s' at offset %zu",
			p->type, eq_off);
		return P11C_ERR_SUBJECT;
	}
	return P11C_OK;
}

static int is_string_type(int t)
{
	switch (t) {
	case V_ASN1_UTF8STRING:
	case V_ASN1_PRINTABLESTRING:
	case V_ASN1_IA5STRING:
	case V_ASN1_T61STRING:
	case V_ASN1_VISIBLESTRING:
	case V_ASN1_NUMERICSTRING:
	case V_ASN1_BMPSTRING:
	case V_ASN1_UNIVERSALSTRING:
		return 1;
	default:
		return 0;
	}
}

/* Append the current value to p->name; set 0 starts a new RDN, -1 joins
 * the previous one (multi-valued RDN). */
static p11c_result add_ava(struct subj_parser *p, const ASN1_OBJECT *obj,
			   int set)
{
	ASN1_TYPE *at = NULL;
	const unsigned char *der = NULL;
	const unsigned char *bytes = p->val;
	int type = MBSTRING_UTF8;
	int len = (int)p->vlen;
	const char *why = NULL;
	unsigned long e;
	p11c_result r = P11C_ERR_SUBJECT;

	ERR_set_mark();
	if (p->hex) {
		der = p->val;
		at = d2i_ASN1_TYPE(NULL, &der, (long)p->vlen);
		if (at == NULL || der != p->val + p->vlen ||
		    !is_string_type(at->type)) {
			set_err(p->err, p->errlen,
				"hex value for '%s' at offset %zu is not a DER-encoded string",
				p->type, p->val_off);
			goto out;
		}
		type = at->type;
		bytes = at->value.asn1_string->data;
		len = at->value.asn1_string->length;
		if (len <= 0) {
			set_err(p->err, p->errlen,
				"empty value for '%s' at offset %zu", p->type,
				p->val_off);
			goto out;
		}
	}
	if (!X509_NAME_add_entry_by_OBJ(p->name, obj, type, bytes, len, -1,
					set)) {
		e = ERR_peek_last_error();
		if (ERR_GET_REASON(e) == ERR_R_MALLOC_FAILURE) {
			set_err(p->err, p->errlen, "out of memory");
			r = P11C_ERR_NOMEM;
			goto out;
		}
		why = ERR_reason_error_string(e);
		set_err(p->err, p->errlen,
			"invalid value for '%s' at offset %zu: %s%s", p->type,
			p->val_off, why != NULL ? why : "rejected by OpenSSL",
			OBJ_obj2nid(obj) == NID_countryName ?
			" (C must be a two-letter country code)" : "");
		goto out;
	}
	r = P11C_OK;
out:
	ERR_pop_to_mark();
	ASN1_TYPE_free(at);
	return r;
}

/* attributeTypeAndValue = attributeType EQUALS attributeValue */
static p11c_result parse_ava(struct subj_parser *p, int set)
{
	ASN1_OBJECT *obj = NULL;
	p11c_result r;

	r = parse_type(p, &obj);
	if (r != P11C_OK)
		goto out;
	r = parse_value(p);
	if (r != P11C_OK)
		goto out;
	r = add_ava(p, obj, set);
out:
	ASN1_OBJECT_free(obj);
	return r;
}

/*
 * distinguishedName = relativeDistinguishedName *( COMMA ... )
 * relativeDistinguishedName = attributeTypeAndValue *( PLUS ... )
 * (RFC 4514 s3; slash form the same with '/' for COMMA).
 */
static p11c_result parse_rdns(struct subj_parser *p)
{
	int set = 0;
	size_t sep_off;
	unsigned char c;
	p11c_result r;

	for (;;) {
		if (set == 0 && ++p->nrdn > SUBJ_MAX_RDNS) {
			set_err(p->err, p->errlen,
				"too many RDNs (more than %d) at offset %zu",
				SUBJ_MAX_RDNS, p->pos);
			return P11C_ERR_SUBJECT;
		}
		r = parse_ava(p, set);
		if (r != P11C_OK)
			return r;
		if (p->pos >= p->len)
			return P11C_OK;

		/* parse_value() stops only at a separator or the end */
		sep_off = p->pos;
		c = (unsigned char)p->s[p->pos++];
		set = c == '+' ? -1 : 0;
		p->after_plus = c == '+';
		skip_spaces(p);
		if (p->pos >= p->len) {
			/* "openssl req -subj" accepts "/C=SE/" */
			if (!p->rfc && c == '/')
				return P11C_OK;
			set_err(p->err, p->errlen, "trailing '%c' at offset %zu",
				c, sep_off);
			return P11C_ERR_SUBJECT;
		}
	}
}

/* RFC 4514 s2.1: the string lists RDNs last to first; put them back in
 * RDNSequence order, keeping each multi-valued RDN together. */
static p11c_result reverse_rdns(const X509_NAME *in, X509_NAME **out)
{
	X509_NAME *rev = NULL;
	const X509_NAME_ENTRY *ne = NULL;
	int i, j, start, id;
	p11c_result r = P11C_ERR_NOMEM;

	rev = X509_NAME_new();
	if (rev == NULL)
		goto out;
	i = X509_NAME_entry_count(in) - 1;
	while (i >= 0) {
		id = X509_NAME_ENTRY_set(X509_NAME_get_entry(in, i));
		start = i;
		while (start > 0 &&
		       X509_NAME_ENTRY_set(X509_NAME_get_entry(in, start - 1)) == id)
			start--;
		for (j = start; j <= i; j++) {
			ne = X509_NAME_get_entry(in, j);
			if (!X509_NAME_add_entry(rev, ne, -1, j == start ? 0 : -1))
				goto out;
		}
		i = start - 1;
	}
	*out = rev;
	rev = NULL;
	r = P11C_OK;
out:
	X509_NAME_free(rev);
	return r;
}

int p11c_name_der_equal(const X509_NAME *a, const X509_NAME *b)
{
	unsigned char *da = NULL, *db = NULL;
	int la, lb, eq;

	if (a == NULL || b == NULL)
		return 0;
	la = i2d_X509_NAME(a, &da);
	lb = i2d_X509_NAME(b, &db);
	eq = la > 0 && la == lb && memcmp(da, db, (size_t)la) == 0;
	OPENSSL_free(da);
	OPENSSL_free(db);
	return eq;
}

p11c_result p11c_name_reverse(const X509_NAME *in, X509_NAME **out)
{
	if (in == NULL || out == NULL)
		return P11C_ERR_ARG;
	return reverse_rdns(in, out);
}

static p11c_result subject_parse(const char *s, int as_written, X509_NAME **out, char *err, size_t errlen)
{
	struct subj_parser p;
	X509_NAME *rev = NULL;
	p11c_result r = P11C_ERR_SUBJECT;

	memset(&p, 0, sizeof(p));
	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (s == NULL || out == NULL) {
		set_err(err, errlen, "no subject or no output given");
		r = P11C_ERR_ARG;
		goto out;
	}
	p.s = s;
	p.len = strnlen(s, SUBJ_MAX_LEN + 1);
	p.err = err;
	p.errlen = errlen;
	if (p.len > SUBJ_MAX_LEN) {
		set_err(err, errlen, "subject longer than %d bytes at offset %d",
			SUBJ_MAX_LEN, SUBJ_MAX_LEN);
		goto out;
	}
	p.rfc = s[0] != '/';
	p.pos = p.rfc ? 0 : 1;
	skip_spaces(&p);
	if (p.pos >= p.len) {
		set_err(err, errlen, "empty subject");
		goto out;
	}

	p.name = X509_NAME_new();
	if (p.name == NULL) {
		set_err(err, errlen, "out of memory");
		r = P11C_ERR_NOMEM;
		goto out;
	}
	r = parse_rdns(&p);
	if (r != P11C_OK)
		goto out;

	if (p.rfc && !as_written) {
		r = reverse_rdns(p.name, &rev);
		if (r != P11C_OK) {
			set_err(err, errlen, "out of memory");
			goto out;
		}
		*out = rev;
		rev = NULL;
	} else {
		*out = p.name;
		p.name = NULL;
	}
	r = P11C_OK;
out:
	X509_NAME_free(rev);
	X509_NAME_free(p.name);
	return r;
}

p11c_result p11c_subject_parse(const char *s, X509_NAME **out, char *err, size_t errlen)
{
	return subject_parse(s, 0, out, err, errlen);
}

/* The NiFi TLS toolkit client reads its DN string with BouncyCastle's
 * X500Name, which encodes the RDNs in the order written ("CN=a, OU=NIFI"
 * gives the DER sequence [CN, OU]), not in RFC 4514 s2.1's reversed
 * reading; docs/protocols.md s2, docs/enroll.md. */
p11c_result p11c_dn_parse_as_written(const char *s, X509_NAME **out, char *err, size_t errlen)
{
	return subject_parse(s, 1, out, err, errlen);
}

/* --- subjectAltName -------------------------------------------------- */

/*
 * RFC 5280 s4.2.1.6 dNSName in "preferred name syntax" (RFC 1034 s3.5),
 * plus '_' and a leftmost "*" wildcard label.
 */
static int check_dns(const char *v, size_t n, char *why, size_t whylen)
{
	size_t i, label = 0;
	char cb[8];

	if (n > SAN_DNS_MAX) {
		snprintf(why, whylen, "longer than %d characters", SAN_DNS_MAX);
		return -1;
	}
	if (n >= 2 && v[0] == '*' && v[1] == '.')
		i = 2;
	else
		i = 0;
	if (i == n) {
		snprintf(why, whylen, "nothing after the wildcard");
		return -1;
	}
	for (; i <= n; i++) {
		unsigned char c = i < n ? (unsigned char)v[i] : '.';

		if (c == '.') {
			if (label == 0) {
				snprintf(why, whylen, i == n ?
					 "trailing dot" : "empty label");
				return -1;
			}
			if (v[i - 1] == '-') {
				snprintf(why, whylen, "label ends with '-'");
				return -1;
			}
			label = 0;
			continue;
		}
		if (c == '*') {
			snprintf(why, whylen,
				 "'*' is only allowed as the whole leftmost label");
			return -1;
		}
		if (!isalnum(c) && c != '-' && c != '_') {
			snprintf(why, whylen, "invalid character %s",
				 chdesc(c, cb));
			return -1;
		}
		if (c == '-' && label == 0) {
			snprintf(why, whylen, "label starts with '-'");
			return -1;
		}
		if (++label > SAN_LABEL_MAX) {
			snprintf(why, whylen, "label longer than %d characters",
				 SAN_LABEL_MAX);
			return -1;
		}
	}
	return 0;
}

/* IA5String content without spaces or control characters. */
static int check_graphic(const char *v, size_t n, char *why, size_t whylen)
{
	size_t i;
	char cb[8];

	for (i = 0; i < n; i++) {
		unsigned char c = (unsigned char)v[i];

		if (c <= 0x20 || c >= 0x7f) {
			snprintf(why, whylen, "invalid character %s",
				 chdesc(c, cb));
			return -1;
		}
	}
	return 0;
}

/* RFC 5280 s4.2.1.6 rfc822Name: local@domain. */
static int check_email(const char *v, size_t n, char *why, size_t whylen)
{
	const char *at = memchr(v, '@', n);

	if (check_graphic(v, n, why, whylen) != 0)
		return -1;
	if (at == NULL) {
		snprintf(why, whylen, "missing '@'");
		return -1;
	}
	if (memchr(at + 1, '@', n - (size_t)(at - v) - 1) != NULL) {
		snprintf(why, whylen, "more than one '@'");
		return -1;
	}
	if (at == v) {
		snprintf(why, whylen, "empty local part");
		return -1;
	}
	if ((size_t)(at - v) == n - 1) {
		snprintf(why, whylen, "empty domain");
		return -1;
	}
	return 0;
}

/* RFC 3986 s3.1: scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) */
static int check_uri(const char *v, size_t n, char *why, size_t whylen)
{
	size_t i;

	if (check_graphic(v, n, why, whylen) != 0)
		return -1;
	for (i = 0; i < n && v[i] != ':'; i++) {
		unsigned char c = (unsigned char)v[i];

		if (i == 0 ? !isalpha(c) :
		    !(isalnum(c) || c == '+' || c == '-' || c == '.'))
			break;
	}
	if (i == 0 || i >= n || v[i] != ':') {
		snprintf(why, whylen, "missing scheme (e.g. 'https:')");
		return -1;
	}
	if (i + 1 == n) {
		snprintf(why, whylen, "nothing after the scheme");
		return -1;
	}
	return 0;
}

/* IPv4 dotted quad or IPv6 text form into 4 or 16 bytes. */
static int parse_ip(const char *v, size_t n, unsigned char out[16],
		    size_t *outlen)
{
	char buf[INET6_ADDRSTRLEN + 1];

	if (n == 0 || n >= sizeof(buf))
		return -1;
	memcpy(buf, v, n);
	buf[n] = '\0';
	if (memchr(buf, ':', n) != NULL) {
		if (inet_pton(AF_INET6, buf, out) != 1)
			return -1;
		*outlen = 16;
	} else {
		if (inet_pton(AF_INET, buf, out) != 1)
			return -1;
		*outlen = 4;
	}
	return 0;
}

enum san_kind { SAN_DNS, SAN_IP, SAN_EMAIL, SAN_URI };

static const struct {
	const char *name;
	enum san_kind kind;
	int gen;
} san_types[] = {
	{ "DNS", SAN_DNS, GEN_DNS },
	{ "IP", SAN_IP, GEN_IPADD },
	{ "email", SAN_EMAIL, GEN_EMAIL },
	{ "URI", SAN_URI, GEN_URI },
};

#define SAN_HINT "(use DNS:, IP:, email: or URI:)"

p11c_result p11c_san_add(const char *s, STACK_OF(GENERAL_NAME) **names,
			 char *err, size_t errlen)
{
	GENERAL_NAME *gn = NULL;
	ASN1_STRING *str = NULL;
	STACK_OF(GENERAL_NAME) *created = NULL;
	const char *colon = NULL, *v = NULL;
	char q[QUOTE_MAX + 4], qt[QUOTE_MAX + 4], why[80];
	unsigned char ip[16];
	size_t len, tlen, vlen, iplen = 0, i, t = 0;
	int found = 0, ok;
	p11c_result r = P11C_ERR_SAN;

	if (err != NULL && errlen > 0)
		err[0] = '\0';
	if (s == NULL || names == NULL) {
		set_err(err, errlen, "no SAN or no output given");
		r = P11C_ERR_ARG;
		goto out;
	}
	len = strnlen(s, SAN_MAX_LEN + 1);
	if (len > SAN_MAX_LEN) {
		set_err(err, errlen, "SAN longer than %d bytes", SAN_MAX_LEN);
		goto out;
	}
	quote(q, s, len);
	colon = memchr(s, ':', len);
	if (colon == NULL) {
		set_err(err, errlen, "missing ':' in SAN '%s' " SAN_HINT, q);
		goto out;
	}
	tlen = (size_t)(colon - s);
	for (i = 0; i < sizeof(san_types) / sizeof(san_types[0]); i++) {
		if (strlen(san_types[i].name) == tlen &&
		    strncasecmp(s, san_types[i].name, tlen) == 0) {
			t = i;
			found = 1;
			break;
		}
	}
	if (!found) {
		quote(qt, s, tlen);
		set_err(err, errlen, "unknown SAN type '%s' in '%s' " SAN_HINT,
			qt, q);
		goto out;
	}
	v = colon + 1;
	vlen = len - tlen - 1;
	quote(q, v, vlen);
	if (vlen == 0) {
		set_err(err, errlen, "empty value in SAN '%s:'",
			san_types[t].name);
		goto out;
	}

	why[0] = '\0';
	switch (san_types[t].kind) {
	case SAN_DNS:
		ok = check_dns(v, vlen, why, sizeof(why)) == 0;
		if (!ok)
			set_err(err, errlen, "invalid DNS name '%s': %s", q, why);
		break;
	case SAN_IP:
		ok = parse_ip(v, vlen, ip, &iplen) == 0;
		if (!ok)
			set_err(err, errlen, "invalid IP address '%s'", q);
		break;
	case SAN_EMAIL:
		ok = check_email(v, vlen, why, sizeof(why)) == 0;
		if (!ok)
			set_err(err, errlen, "invalid email address '%s': %s",
				q, why);
		break;
	case SAN_URI:
	default:
		ok = check_uri(v, vlen, why, sizeof(why)) == 0;
		if (!ok)
			set_err(err, errlen, "invalid URI '%s': %s", q, why);
		break;
	}
	if (!ok)
		goto out;

	r = P11C_ERR_NOMEM;
	gn = GENERAL_NAME_new();
	if (gn == NULL)
		goto out;
	if (san_types[t].kind == SAN_IP) {
		str = ASN1_OCTET_STRING_new();
		if (str == NULL ||
		    !ASN1_OCTET_STRING_set(str, ip, (int)iplen))
			goto out;
	} else {
		str = ASN1_IA5STRING_new();
		if (str == NULL || !ASN1_STRING_set(str, v, (int)vlen))
			goto out;
	}
	GENERAL_NAME_set0_value(gn, san_types[t].gen, str);
	str = NULL;

	if (*names == NULL) {
		created = sk_GENERAL_NAME_new_null();
		if (created == NULL)
			goto out;
		*names = created;
	}
	if (sk_GENERAL_NAME_push(*names, gn) <= 0)
		goto out;
	gn = NULL;
	created = NULL;
	r = P11C_OK;
out:
	if (r == P11C_ERR_NOMEM)
		set_err(err, errlen, "out of memory");
	if (created != NULL) {
		sk_GENERAL_NAME_free(created);
		*names = NULL;
	}
	ASN1_STRING_free(str);
	GENERAL_NAME_free(gn);
	return r;
}
