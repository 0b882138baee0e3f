/* p11ca: the CA state, its key, and certificate issuance. */
#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509v3.h>

#include "ca.h"
/* the one internal libp11cert header p11ca uses: the tests' stall hook */
#include "../lib/testhook.h"

void ca_err(const char *fmt, ...)
{
	va_list ap;

	fputs("p11ca: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void ca_errp(p11c_ctx *ctx, const char *fmt, ...)
{
	va_list ap;

	fputs("p11ca: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	if (ctx != NULL && p11c_ctx_detail(ctx)[0] != '\0')
		fprintf(stderr, ": %s", p11c_ctx_detail(ctx));
	fputc('\n', stderr);
}

char *ca_path(const char *dir, const char *name)
{
	char *p = NULL;

	if (name[0] == '/')
		return strdup(name);
	if (asprintf(&p, "%s/%s", dir, name) < 0)
		return NULL;
	return p;
}

int ca_read_file(const char *path, size_t max, char **buf, size_t *len)
{
	unsigned char *b = NULL;
	p11c_result r = p11c_file_read(path, max, &b, len);

	if (r != P11C_OK) {
		if (r == P11C_ERR_NOT_FOUND && errno == 0)
			errno = ENOENT;
		return -1;
	}
	*buf = (char *)b;
	return 0;
}

char *ca_x509_pem(X509 *x)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s = NULL;

	/* memory BIO data has no NUL of its own: add one (strndup would look
	 * past the end for it; ASan's strict_string_checks says so) */
	if (b != NULL && PEM_write_bio_X509(b, x) && BIO_write(b, "", 1) == 1 &&
	    BIO_get_mem_data(b, &data) > 1)
		s = strdup(data);
	BIO_free(b);
	return s;
}

int ca_name_entry(const X509_NAME *n, int nid, char *buf, size_t len)
{
	int i = X509_NAME_get_index_by_NID(n, nid, -1);
	unsigned char *u = NULL;
	int ul;

	buf[0] = '\0';
	if (i < 0)
		return -1;
	ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(X509_NAME_get_entry(n, i)));
	if (ul < 0)
		return -1;
	snprintf(buf, len, "%.*s", ul, (char *)u);
	OPENSSL_free(u);
	return 0;
}

time_t ca_asn1_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

void ca_http_date(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%a, %d %b %Y %H:%M:%S GMT", &tm);
}

int ca_parse_http_date(const char *s, time_t *out)
{
	struct tm tm;
	const char *end;

	memset(&tm, 0, sizeof tm);
	end = strptime(s, "%a, %d %b %Y %H:%M:%S GMT", &tm);
	if (end == NULL || *end != '\0')
		return -1;
	*out = timegm(&tm);
	return 0;
}

static EVP_PKEY *load_pem_key(const char *path)
{
	FILE *fp = fopen(path, "r");
	EVP_PKEY *k;

	if (fp == NULL) {
		ca_err("cannot read key '%s': %s", path, strerror(errno));
		return NULL;
	}
	k = PEM_read_PrivateKey(fp, NULL, NULL, NULL);
	fclose(fp);
	if (k == NULL)
		ca_err("'%s' is not a PEM private key", path);
	return k;
}

/* The CA key: a token key (via libp11cert) or a PEM file. */
int ca_load_key(struct ca *ca, const char *spec, p11c_key **tk, EVP_PKEY **out)
{
	char *path = NULL;
	EVP_PKEY *signer = NULL;
	p11c_result r;
	int rc = -1;

	if (strncmp(spec, "pkcs11:", 7) == 0) {
		if (ca->p11 == NULL) {
			if (p11c_ctx_new(&ca->p11) != P11C_OK)
				return -1;
			if (ca->cfg.module != NULL)
				p11c_ctx_set_module(ca->p11, ca->cfg.module);
			if (ca->cfg.pin_file != NULL) {
				char *pf = ca_path(ca->dir, ca->cfg.pin_file);

				p11c_ctx_set_pin_file(ca->p11, pf);
				free(pf);
			}
		}
		r = p11c_key_find(ca->p11, spec, tk);
		if (r == P11C_OK)
			r = p11c_key_signer(*tk, &signer);
		if (r != P11C_OK) {
			ca_errp(ca->p11, "cannot use token key '%s'", spec);
			return -1;
		}
		if (!EVP_PKEY_up_ref(signer))
			return -1;
		*out = signer;
		return 0;
	}
	path = ca_path(ca->dir, spec);
	if (path == NULL)
		return -1;
	*out = load_pem_key(path);
	rc = *out != NULL ? 0 : -1;
	free(path);
	return rc;
}

int ca_store_open(const struct ca *ca, store **out)
{
	store_result sr;
	char *path = NULL;
	int rc = -1;

	*out = NULL;
	if (ca->cfg.db != NULL) {
		/* PostgreSQL (issue 13); the password never in a message */
		char shown[512], *pw = ca->cfg.db_password_file ? ca_path(ca->dir, ca->cfg.db_password_file) : NULL;

		sr = ca->cfg.db_password_file != NULL && pw == NULL ? STORE_NOMEM :
		     store_pg_open(out, ca->cfg.db, pw);
		free(pw);
		store_pg_redact(ca->cfg.db, shown, sizeof shown);
		if (sr != STORE_OK) {
			ca_err("cannot open database '%s': %s", shown, *out ? store_pg_ops.errmsg(*out) : "error");
			goto out;
		}
	} else {
		path = ca_path(ca->dir, "p11ca.db");
		sr = path != NULL ? store_sqlite_ops.open(out, path) : STORE_NOMEM;
		if (sr != STORE_OK) {
			ca_err("cannot open database '%s': %s", path ? path : "p11ca.db",
			       *out ? store_sqlite_ops.errmsg(*out) : "error");
			goto out;
		}
	}
	rc = 0;
out:
	if (rc != 0 && *out != NULL)
		(ca->cfg.db != NULL ? &store_pg_ops : &store_sqlite_ops)->close(out);
	free(path);
	return rc;
}

int ca_open(struct ca *ca, const char *dir, const struct ca_config *flags, int need_key)
{
	char err[512];
	char *path = NULL;
	FILE *fp = NULL;
	int rc = -1;

	memset(ca, 0, sizeof *ca);
	ca->dir = strdup(dir);
	ca_config_defaults(&ca->cfg);
	if (ca->dir == NULL)
		goto out;
	if (ca_config_load(&ca->cfg, dir, err, sizeof err) != 0) {
		ca_err("%s", err);
		goto out;
	}
	ca_config_merge(&ca->cfg, flags);
	if (ca->cfg.key == NULL && (ca->cfg.key = strdup("ca.key")) == NULL)
		goto out;
	path = ca_path(dir, "ca.crt");
	fp = path ? fopen(path, "r") : NULL;
	if (fp == NULL) {
		ca_err("no CA in '%s' (%s missing): run 'p11ca init --dir %s' first", dir,
		       path ? path : "ca.crt", dir);
		goto out;
	}
	ca->cert = PEM_read_X509(fp, NULL, NULL, NULL);
	if (ca->cert == NULL) {
		ca_err("'%s' is not a PEM certificate", path);
		goto out;
	}
	free(path);
	path = NULL;
	ca->so = ca->cfg.db != NULL ? &store_pg_ops : &store_sqlite_ops;
	if (ca_store_open(ca, &ca->st) != 0)
		goto out;
	if (need_key) {
		if (ca_load_key(ca, ca->cfg.key, &ca->tkey, &ca->key) != 0)
			goto out;
		if (X509_check_private_key(ca->cert, ca->key) != 1 &&
		    !p11c_cert_matches(ca->cert, ca->tkey ? p11c_key_public(ca->tkey) : ca->key)) {
			ca_err("the CA key '%s' does not belong to %s/ca.crt", ca->cfg.key, dir);
			goto out;
		}
	}
	ERR_clear_error();
	rc = 0;
out:
	if (fp != NULL)
		fclose(fp);
	free(path);
	if (rc != 0)
		ca_close(ca);
	return rc;
}

void ca_close(struct ca *ca)
{
	if (ca->st != NULL)
		ca->so->close(&ca->st);
	X509_free(ca->cert);
	EVP_PKEY_free(ca->key);
	p11c_key_free(&ca->tkey);
	p11c_key_free(&ca->ttls);
	p11c_ctx_free(&ca->p11);
	ca_config_free(&ca->cfg);
	free(ca->dir);
	memset(ca, 0, sizeof *ca);
}

int ca_key_ok(EVP_PKEY *pk, char *err, size_t errlen)
{
	char group[64];
	size_t gl = 0;
	int bits;

	switch (EVP_PKEY_get_base_id(pk)) {
	case EVP_PKEY_RSA: {
		BIGNUM *e = NULL, *n = NULL;
		int ok;

		bits = EVP_PKEY_get_bits(pk);
		if (bits != 2048 && bits != 3072 && bits != 4096) {
			snprintf(err, errlen, "RSA keys of %d bits are not accepted (2048, 3072, 4096 are)",
				 bits);
			return 0;
		}
		/* an exponent of 1 makes any "signature" verify (no private key
		 * needed); 3 invites the small-exponent attacks.  65537 or more,
		 * odd, as CA/B Forum BR s6.1.6; an odd modulus of the full size */
		ok = EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_E, &e) &&
		     EVP_PKEY_get_bn_param(pk, OSSL_PKEY_PARAM_RSA_N, &n) && BN_is_odd(e) &&
		     BN_get_word(e) >= 65537 && BN_cmp(e, n) < 0 && BN_is_odd(n) &&
		     BN_num_bits(n) == bits;
		if (!ok)
			snprintf(err, errlen, "RSA key not accepted: the public exponent must be odd and at "
				 "least 65537, the modulus odd and of full size");
		BN_free(e);
		BN_free(n);
		return ok;
	}
	case EVP_PKEY_EC:
		if (EVP_PKEY_get_utf8_string_param(pk, OSSL_PKEY_PARAM_GROUP_NAME, group, sizeof group, &gl) &&
		    (strcmp(group, "prime256v1") == 0 || strcmp(group, "secp384r1") == 0))
			return 1;
		snprintf(err, errlen, "EC curve %s is not accepted (P-256, P-384 are)", gl ? group : "?");
		return 0;
	default:
		snprintf(err, errlen, "key type %s is not accepted (RSA 2048-4096, EC P-256/P-384 are)",
			 OBJ_nid2sn(EVP_PKEY_get_base_id(pk)));
		return 0;
	}
}

static int san_str(const GENERAL_NAME *g, char *buf, size_t len)
{
	const unsigned char *d;
	int n;

	switch (g->type) {
	case GEN_DNS:
	case GEN_EMAIL:
	case GEN_URI:
		d = ASN1_STRING_get0_data(g->d.ia5);
		n = ASN1_STRING_length(g->d.ia5);
		if (memchr(d, '\0', (size_t)n) != NULL)
			return -1;
		snprintf(buf, len, "%s:%.*s",
			 g->type == GEN_DNS ? "DNS" : g->type == GEN_EMAIL ? "email" : "URI", n, d);
		return 0;
	case GEN_IPADD: {
		char ip[64];

		n = ASN1_STRING_length(g->d.ip);
		if ((n != 4 && n != 16) ||
		    inet_ntop(n == 4 ? AF_INET : AF_INET6, ASN1_STRING_get0_data(g->d.ip), ip, sizeof ip) == NULL)
			return -1;
		snprintf(buf, len, "IP:%s", ip);
		return 0;
	}
	default:
		return -1;
	}
}

/* A name a CA must never issue from a pattern: a literal wildcard
 * (RFC 6125 s6.4.3 wildcards), unless san-wildcards allows it. */
static int is_wildcard(const char *name)
{
	return strchr(name, '*') != NULL;
}

static int pattern_ok(const char *patterns, const char *name)
{
	char *copy, *tok, *save = NULL;
	int ok = 0;

	if (patterns == NULL || (copy = strdup(patterns)) == NULL)
		return 0;
	for (tok = strtok_r(copy, ", ", &save); tok != NULL && !ok; tok = strtok_r(NULL, ", ", &save))
		ok = fnmatch(tok, name, FNM_CASEFOLD) == 0;
	free(copy);
	return ok;
}

/* One name against the policy: wildcards, then the CN default, then
 * san-patterns.  cn_plain: DNS:<CN> is allowed without a pattern. */
static int name_ok(const struct ca *ca, const char *s, const char *cnsan, int cn_plain, char *err,
		   size_t errlen)
{
	int empty = ca->cfg.san_patterns == NULL || ca->cfg.san_patterns[0] == '\0';

	if (is_wildcard(s) && !ca->cfg.san_wildcards) {
		snprintf(err, errlen, "%s is a wildcard name; p11ca issues none unless the setting "
			 "san-wildcards = yes allows them", s);
		return 0;
	}
	if (strcasecmp(s, cnsan) == 0 && (cn_plain || empty))
		return 1;
	if (pattern_ok(ca->cfg.san_patterns, s))
		return 1;
	if (empty)
		snprintf(err, errlen, "subjectAltName %s is not allowed: with san-patterns empty only "
			 "DNS:<CN> is; set san-patterns (e.g. 'san-patterns = DNS:*.example.com') in "
			 "p11ca.conf to allow more", s);
	else
		snprintf(err, errlen, "subjectAltName %s is not allowed by the CA's san-patterns", s);
	return 0;
}

int ca_sans_policy(const struct ca *ca, X509_REQ *req, int cn_plain, char *err, size_t errlen)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *gens = NULL;
	char cn[256], cnsan[300], s[300];
	int i, ok = 1;

	cnsan[0] = '\0';
	if (ca_name_entry(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn) == 0 && cn[0]) {
		snprintf(cnsan, sizeof cnsan, "DNS:%s", cn);
		/* the name p11ca derives from the CN passes the same checks */
		if (!name_ok(ca, cnsan, cnsan, cn_plain, err, errlen))
			ok = 0;
	}
	if (ok && exts != NULL)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	for (i = 0; ok && gens != NULL && i < sk_GENERAL_NAME_num(gens); i++) {
		if (san_str(sk_GENERAL_NAME_value(gens, i), s, sizeof s) != 0) {
			snprintf(err, errlen, "subjectAltName entry %d has a type p11ca does not issue", i + 1);
			ok = 0;
			break;
		}
		if (!name_ok(ca, s, cnsan, cn_plain, err, errlen))
			ok = 0;
	}
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return ok;
}

int ca_sans_ok(const struct ca *ca, X509_REQ *req, char *err, size_t errlen)
{
	return ca_sans_policy(ca, req, 1, err, errlen);
}

int ca_sans_only_cn(X509_REQ *req)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	GENERAL_NAMES *gens = NULL;
	char cn[256], cnsan[300], s[300];
	int i, ok = 1;

	ca_name_entry(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn);
	snprintf(cnsan, sizeof cnsan, "DNS:%s", cn);
	if (exts != NULL)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, NULL, NULL);
	for (i = 0; gens != NULL && i < sk_GENERAL_NAME_num(gens); i++)
		if (san_str(sk_GENERAL_NAME_value(gens, i), s, sizeof s) != 0 || strcasecmp(s, cnsan) != 0)
			ok = 0;
	GENERAL_NAMES_free(gens);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	return ok;
}

/* Every DN p11ca reads or issues: at most CA_MAX_DN_DER bytes, no NUL or
 * control character in any value (a CN "<uuid>\0.admin.example.com" reads
 * as a UUID in C), at most one CN (clients disagree on which one counts). */
int ca_subject_ok(const X509_NAME *n, char *err, size_t errlen)
{
	int i, cns = 0, len;

	len = i2d_X509_NAME(n, NULL);
	if (len <= 0 || len > CA_MAX_DN_DER) {
		snprintf(err, errlen, "the subject is %d bytes of DER, more than %d", len, CA_MAX_DN_DER);
		return 0;
	}
	for (i = 0; i < X509_NAME_entry_count(n); i++) {
		const X509_NAME_ENTRY *e = X509_NAME_get_entry(n, i);
		unsigned char *u = NULL;
		int ul, j, bad = 0;
		int nid = OBJ_obj2nid(X509_NAME_ENTRY_get_object(e));

		if (nid == NID_commonName)
			cns++;
		ul = ASN1_STRING_to_UTF8(&u, X509_NAME_ENTRY_get_data(e));
		if (ul < 0) {
			snprintf(err, errlen, "subject entry %d is not a valid string", i + 1);
			return 0;
		}
		for (j = 0; j < ul; j++)
			if (u[j] < 0x20 || u[j] == 0x7f)
				bad = 1;
		OPENSSL_free(u);
		if (bad) {
			snprintf(err, errlen, "subject entry %d (%s) holds a NUL or control character", i + 1,
				 nid != NID_undef ? OBJ_nid2sn(nid) : "?");
			return 0;
		}
	}
	if (cns > 1) {
		snprintf(err, errlen, "the subject has %d CNs; p11ca accepts at most one", cns);
		return 0;
	}
	return 1;
}

int ca_csr_ok(X509_REQ *req, char *err, size_t errlen)
{
	EVP_PKEY *pk = X509_REQ_get0_pubkey(req);
	X509_PUBKEY *xp = X509_REQ_get_X509_PUBKEY(req);
	X509_ALGOR *alg = NULL;
	STACK_OF(X509_EXTENSION) *exts = NULL;
	int ptype = V_ASN1_UNDEF, md = NID_undef, pkn = NID_undef, has_san = 0;

	if (pk == NULL || xp == NULL) {
		snprintf(err, errlen, "the CSR has no usable public key");
		return 0;
	}
	if (!ca_key_ok(pk, err, errlen))
		return 0;
	/* named curves only (RFC 5480 s2.1.1: implicitCurve and specifiedCurve
	 * MUST NOT be used) */
	if (EVP_PKEY_get_base_id(pk) == EVP_PKEY_EC &&
	    (!X509_PUBKEY_get0_param(NULL, NULL, NULL, &alg, xp) ||
	     (X509_ALGOR_get0(NULL, &ptype, NULL, alg), ptype != V_ASN1_OBJECT))) {
		snprintf(err, errlen, "EC key with explicit curve parameters; only named curves "
			 "(RFC 5480) are accepted");
		return 0;
	}
	if (!OBJ_find_sigid_algs(X509_REQ_get_signature_nid(req), &md, &pkn) ||
	    (md != NID_sha256 && md != NID_sha384 && md != NID_sha512 && md != NID_sha3_256 &&
	     md != NID_sha3_384 && md != NID_sha3_512)) {
		snprintf(err, errlen, "CSR signature algorithm %s is not accepted (SHA-256, SHA-384, "
			 "SHA-512 are; never MD5 or SHA-1)", OBJ_nid2sn(X509_REQ_get_signature_nid(req)));
		return 0;
	}
	if (!ca_subject_ok(X509_REQ_get_subject_name(req), err, errlen))
		return 0;
	exts = X509_REQ_get_extensions(req);
	has_san = exts != NULL && X509v3_get_ext_by_NID(exts, NID_subject_alt_name, -1) >= 0;
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	if (X509_NAME_entry_count(X509_REQ_get_subject_name(req)) == 0 && !has_san) {
		snprintf(err, errlen, "empty subject and no subjectAltName: nothing to certify");
		return 0;
	}
	return 1;
}

static int add_ext(X509 *x, X509V3_CTX *v3, int nid, const char *value)
{
	X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, v3, nid, value);
	int ok = e != NULL && X509_add_ext(x, e, -1);

	X509_EXTENSION_free(e);
	return ok ? 0 : -1;
}

/* A serial as the store keeps it: lowercase hex (OPENSSL_free), or NULL. */
static char *serial_hex(const BIGNUM *bn)
{
	char *hex = bn != NULL ? BN_bn2hex(bn) : NULL;

	for (char *p = hex; p != NULL && *p; p++)
		*p = (char)tolower((unsigned char)*p);
	return hex;
}

/* 16 random bytes with the top two bits fixed (01): positive, never zero,
 * always 16 octets; 126 bits of entropy (RFC 5280 s4.1.2.2 allows up to
 * 20 octets; CA/B Forum BR s7.1 asks for at least 64). */

static int new_serial(struct ca *ca, ASN1_INTEGER **out)
{
	unsigned char b[16];
	BIGNUM *bn = NULL;
	char *hex = NULL;
	int tries, rc = -1;

	for (tries = 0; tries < 8; tries++) {
		if (RAND_bytes(b, sizeof b) != 1)
			return -1;
		b[0] &= 0x7f;
		b[0] |= 0x40; /* fixed length, never zero */
		BN_free(bn);
		bn = BN_bin2bn(b, sizeof b, NULL);
		OPENSSL_free(hex);
		if ((hex = serial_hex(bn)) == NULL)
			break;
		if (ca->so->serial_exists(ca->st, hex) == 0) {
			*out = BN_to_ASN1_INTEGER(bn, NULL);
			rc = *out != NULL ? 0 : -1;
			break;
		}
	}
	BN_free(bn);
	OPENSSL_free(hex);
	return rc;
}

int ca_store_down(const struct ca *ca)
{
	return ca->so != NULL && ca->so->down != NULL && ca->so->down(ca->st);
}

long ca_guess_wait(struct ca *ca, const char *addr)
{
	long wait = 0;

	if (ca->so->guess == NULL || !ca->cfg.token_rate_shared || ca->cfg.token_rate_limit <= 0)
		return 0;
	/* fail closed: an unreadable count refuses the guess for a while */
	if (ca->so->guess(ca->st, addr, (unsigned)ca->cfg.token_rate_limit, (unsigned)ca->cfg.token_rate_global, 0,
			  (int64_t)time(NULL), &wait) != STORE_OK)
		return 5;
	return wait;
}

void ca_guess_fail(struct ca *ca, const char *addr)
{
	long wait = 0;

	if (ca->so->guess == NULL || !ca->cfg.token_rate_shared || ca->cfg.token_rate_limit <= 0)
		return;
	if (ca->so->guess(ca->st, addr, (unsigned)ca->cfg.token_rate_limit, (unsigned)ca->cfg.token_rate_global, 1,
			  (int64_t)time(NULL), &wait) != STORE_OK)
		ca_err("cannot count a wrong HMAC: %s", ca->so->errmsg(ca->st));
}

int ca_expired(const struct ca *ca, time_t now)
{
	return ca->cert == NULL || ca_asn1_time(X509_get0_notAfter(ca->cert)) <= now;
}

int ca_peer_current(struct ca *ca, X509 *peer)
{
	struct store_cert c;
	BIGNUM *bn = NULL;
	char *hex = NULL;
	int ok = 0;

	memset(&c, 0, sizeof c);
	if (peer == NULL || X509_cmp_time(X509_get0_notAfter(peer), NULL) <= 0)
		return 0;
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(peer), NULL);
	if ((hex = serial_hex(bn)) == NULL)
		goto out;
	/* issued by us, known, not revoked */
	if (ca->so->cert_by_serial(ca->st, hex, &c) == STORE_OK && c.revoked == 0)
		ok = 1;
out:
	store_cert_clear(&c);
	OPENSSL_free(hex);
	BN_free(bn);
	return ok;
}

const char *ca_not_after_str(const struct ca *ca)
{
	static __thread char buf[64]; /* workers.c's threads sign too */

	ca_http_date(ca_asn1_time(X509_get0_notAfter(ca->cert)), buf, sizeof buf);
	return buf;
}

static const EVP_MD *ca_md(EVP_PKEY *k)
{
	int bits = EVP_PKEY_get_bits(k);

	if (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC)
		return bits > 256 ? EVP_sha384() : EVP_sha256();
	return bits > 2048 ? EVP_sha384() : EVP_sha256();
}

/* One DER tag and length at *p (before end) in the minimal form X.690
 * s10.1 asks for; *p moves to the contents.  1 yes, 0 no. */
static int der_header(const unsigned char **p, const unsigned char *end, int tag, size_t *len)
{
	const unsigned char *q = *p;
	size_t n;

	if (end - q < 2 || q[0] != tag)
		return 0;
	if (q[1] < 0x80) {
		n = q[1];
		q += 2;
	} else if (q[1] == 0x81 && end - q >= 3 && q[2] >= 0x80) {
		n = q[2];
		q += 3;
	} else if (q[1] == 0x82 && end - q >= 4 && q[2] != 0) {
		n = (size_t)q[2] << 8 | q[3];
		q += 4;
	} else {
		return 0; /* long form for a short length, or > 65535 (RSA 4096 is 526) */
	}
	if ((size_t)(end - q) < n)
		return 0;
	*p = q;
	*len = n;
	return 1;
}

/* RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }
 * (RFC 8017 A.1.1) in exactly len bytes, every length minimal */
static int rsa_der_canonical(const unsigned char *p, int len)
{
	const unsigned char *end = p + len;
	size_t n;

	if (!der_header(&p, end, 0x30, &n) || p + n != end)
		return 0;
	if (!der_header(&p, end, 0x02, &n))
		return 0;
	p += n;
	if (!der_header(&p, end, 0x02, &n))
		return 0;
	return p + n == end;
}

/* set_spki's long way: X509_set_pubkey, an EC point uncompressed */
static int set_spki_slow(X509 *x, EVP_PKEY *pub)
{
	EVP_PKEY *dup = NULL;
	int ok;

	if (pub == NULL)
		return 0;
	if (EVP_PKEY_get_base_id(pub) != EVP_PKEY_EC)
		return X509_set_pubkey(x, pub);
	ok = (dup = EVP_PKEY_dup(pub)) != NULL &&
	     EVP_PKEY_set_utf8_string_param(dup, OSSL_PKEY_PARAM_EC_POINT_CONVERSION_FORMAT,
					    OSSL_PKEY_EC_POINT_CONVERSION_FORMAT_UNCOMPRESSED) == 1 &&
	     X509_set_pubkey(x, dup) == 1;
	EVP_PKEY_free(dup);
	return ok;
}

/*
 * The certificate's subjectPublicKeyInfo is the CSR's, copied as it came,
 * where that copy is exactly what OpenSSL would encode from the parsed key
 * (so the certificate, and the keyid the store compares for revoked keys,
 * are the same either way):
 *   - id-ecPublicKey with a named curve (ca_csr_ok refuses others) and an
 *     uncompressed point (RFC 5480 s2.2);
 *   - rsaEncryption with NULL parameters (RFC 3279 s2.3.1) whose
 *     RSAPublicKey is DER with minimal lengths (rsa_der_canonical: OpenSSL
 *     parses longer length forms too, and those bytes would be a second
 *     keyid for the same key; its INTEGERs it parses strictly).
 * Anything else takes X509_set_pubkey(), which encodes the parsed key again
 * through OpenSSL 3's encoder and decodes the result: about a sixth of
 * p11ca's CPU per enrollment, saved on the usual keys.  An EC key sent with
 * a compressed point is certified uncompressed (RFC 5480 s2.2: the form
 * every implementation supports), so that one key has one keyid and a
 * revoked key cannot come back in the other form.  A certificate made
 * the short way has no parsed key behind it (X509_get0_pubkey() is NULL);
 * cert_keyid() below reads the encoding instead.
 */
static int set_spki(X509 *x, X509_REQ *req)
{
	X509_PUBKEY *from = X509_REQ_get_X509_PUBKEY(req), *to = X509_get_X509_PUBKEY(x);
	const ASN1_OBJECT *alg_obj = NULL;
	const unsigned char *bits = NULL;
	unsigned char *copy = NULL;
	ASN1_OBJECT *obj = NULL, *param = NULL;
	X509_ALGOR *alg = NULL;
	const void *pval = NULL;
	int len = 0, ptype = V_ASN1_UNDEF, nid, fast;

	if (from == NULL || to == NULL ||
	    !X509_PUBKEY_get0_param(NULL, &bits, &len, &alg, from) || bits == NULL || len <= 0)
		return 0;
	X509_ALGOR_get0(&alg_obj, &ptype, &pval, alg);
	nid = OBJ_obj2nid(alg_obj);
	fast = (nid == NID_X9_62_id_ecPublicKey && ptype == V_ASN1_OBJECT && bits[0] == 0x04) ||
	       (nid == NID_rsaEncryption && ptype == V_ASN1_NULL && rsa_der_canonical(bits, len));
	if (!fast)
		return set_spki_slow(x, X509_REQ_get0_pubkey(req));
	obj = OBJ_nid2obj(nid); /* static: nothing to free */
	if (ptype == V_ASN1_OBJECT && (param = OBJ_dup(pval)) == NULL)
		return 0;
	if ((copy = OPENSSL_memdup(bits, (size_t)len)) == NULL ||
	    !X509_PUBKEY_set0_param(to, obj, ptype, param, copy, len)) {
		OPENSSL_free(copy);
		ASN1_OBJECT_free(param);
		return 0;
	}
	return 1;
}

/* The store's keyid of a certificate: SHA-256 of its subjectPublicKeyInfo
 * DER, as the SQLite migration's p11ca_pem_keyid() computes it. */
static int cert_keyid(X509 *x, char hex[65])
{
	unsigned char *der = NULL;
	int n = i2d_X509_PUBKEY(X509_get_X509_PUBKEY(x), &der);

	hex[0] = '\0';
	if (n > 0)
		p11c_sha256_hex(der, (size_t)n, hex);
	OPENSSL_free(der);
	return hex[0] != '\0' ? 0 : -1;
}

int ca_issue(struct ca *ca, X509_REQ *req, enum ca_profile prof, long seconds, X509 **out)
{
	X509 *x = NULL;
	ASN1_INTEGER *serial = NULL;
	X509V3_CTX v3;
	EVP_PKEY *pub = X509_REQ_get0_pubkey(req);
	STACK_OF(X509_EXTENSION) *exts = NULL;
	GENERAL_NAMES *gens = NULL;
	X509_NAME *rev = NULL;
	char cn[256];
	int rc = -1, crit = 0;
	time_t now = time(NULL); /* one clock reading: the lifetime is exact */

	if (ca_expired(ca, now)) {
		ca_err("the CA certificate expired (notAfter %s): p11ca signs nothing until the CA is "
		       "renewed", ca_not_after_str(ca));
		goto out;
	}
	if (pub == NULL || new_serial(ca, &serial) != 0)
		goto out;
	/* shared token: the RDN order reversed, as the NiFi TLS toolkit server
	 * does, so a Java client's "CN=n1, OU=NIFI" (DER [CN, OU]) is issued
	 * as [OU, CN], which Java prints "CN=n1, OU=NIFI" (docs/protocols.md
	 * s2, docs/ca.md); Caramel keeps the CSR's order */
	if (prof == PROFILE_TOKEN && p11c_name_reverse(X509_REQ_get_subject_name(req), &rev) != P11C_OK)
		goto out;
	x = X509_new();
	if (x == NULL || !X509_set_version(x, 2) || !X509_set_serialNumber(x, serial) ||
	    !X509_set_issuer_name(x, X509_get_subject_name(ca->cert)) ||
	    !X509_set_subject_name(x, rev != NULL ? rev : X509_REQ_get_subject_name(req)) ||
	    !set_spki(x, req) ||
	    /* five minutes back for clocks that run behind */
	    !X509_time_adj(X509_getm_notBefore(x), -300, &now) ||
	    !X509_time_adj(X509_getm_notAfter(x), seconds, &now))
		goto out;
	/* RFC 5280 s6.1.3: a leaf outliving its issuer fails validation then;
	 * cap it at the CA's notAfter and say so */
	if (ASN1_TIME_compare(X509_get0_notAfter(x), X509_get0_notAfter(ca->cert)) > 0) {
		if (!X509_set1_notAfter(x, X509_get0_notAfter(ca->cert)))
			goto out;
		ca_err("note: certificate lifetime capped at the CA certificate's notAfter (%s)",
		       ca_not_after_str(ca));
	}
	X509V3_set_ctx(&v3, ca->cert, x, NULL, NULL, 0);
	if (add_ext(x, &v3, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
	    add_ext(x, &v3, NID_key_usage,
		    EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA ? "critical,digitalSignature,keyEncipherment"
							      : "critical,digitalSignature") != 0 ||
	    add_ext(x, &v3, NID_ext_key_usage, "critical,clientAuth,serverAuth") != 0 ||
	    add_ext(x, &v3, NID_subject_key_identifier, "hash") != 0 ||
	    add_ext(x, &v3, NID_authority_key_identifier, "keyid:always") != 0)
		goto out;
	/* SAN: DNS:<CN> always, then what the CSR asked for (already checked
	 * against the policy) */
	exts = X509_REQ_get_extensions(req);
	if (exts != NULL)
		gens = X509V3_get_d2i(exts, NID_subject_alt_name, &crit, NULL);
	if (gens == NULL && (gens = GENERAL_NAMES_new()) == NULL)
		goto out;
	if (ca_name_entry(X509_REQ_get_subject_name(req), NID_commonName, cn, sizeof cn) == 0 && cn[0]) {
		int i, have = 0;

		for (i = 0; i < sk_GENERAL_NAME_num(gens); i++) {
			GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);

			if (g->type == GEN_DNS && (size_t)ASN1_STRING_length(g->d.ia5) == strlen(cn) &&
			    strncasecmp((const char *)ASN1_STRING_get0_data(g->d.ia5), cn, strlen(cn)) == 0)
				have = 1;
		}
		if (!have) {
			GENERAL_NAME *g = GENERAL_NAME_new();
			ASN1_IA5STRING *s = ASN1_IA5STRING_new();

			if (g == NULL || s == NULL || !ASN1_STRING_set(s, cn, (int)strlen(cn))) {
				GENERAL_NAME_free(g);
				ASN1_IA5STRING_free(s);
				goto out;
			}
			GENERAL_NAME_set0_value(g, GEN_DNS, s);
			if (!sk_GENERAL_NAME_insert(gens, g, 0)) {
				GENERAL_NAME_free(g);
				goto out;
			}
		}
	}
	if (sk_GENERAL_NAME_num(gens) > 0 && !X509_add1_ext_i2d(x, NID_subject_alt_name, gens, 0, 0))
		goto out;
	if (X509_sign(x, ca->key, ca_md(ca->key)) <= 0) {
		char e[256];

		ERR_error_string_n(ERR_peek_last_error(), e, sizeof e);
		ca_err("signing failed: %s%s%s", e, ca->p11 ? ": " : "",
		       ca->p11 ? p11c_ctx_detail(ca->p11) : "");
		goto out;
	}
	*out = x;
	x = NULL;
	rc = 0;
out:
	if (rc != 0)
		ERR_clear_error();
	GENERAL_NAMES_free(gens);
	X509_NAME_free(rev);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ASN1_INTEGER_free(serial);
	X509_free(x);
	return rc;
}

/* Issue a certificate for req and describe it for the store (c->pem
 * allocated; request_id, explicit_sign and the lifetime fields are the
 * caller's).  0 or -1 (printed). */
static int issue_for_store(struct ca *ca, X509_REQ *req, enum ca_profile prof, long secs, time_t now,
			   struct store_cert *c)
{
	X509 *x = NULL;
	BIGNUM *bn = NULL;
	char *serial = NULL;
	int rc = -1;

	free(c->pem);
	c->pem = NULL;
	if (ca_issue(ca, req, prof, secs, &x) != 0)
		goto out;
	bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(x), NULL);
	if ((serial = serial_hex(bn)) == NULL)
		goto out;
	c->pem = ca_x509_pem(x);
	if (c->pem == NULL)
		goto out;
	snprintf(c->serial, sizeof c->serial, "%s", serial);
	c->not_before = ca_asn1_time(X509_get0_notBefore(x));
	c->not_after = ca_asn1_time(X509_get0_notAfter(x));
	c->created = now;
	c->revoke_reason = -1;
	if (cert_keyid(x, c->keyid) != 0)
		goto out;
	rc = 0;
out:
	OPENSSL_free(serial);
	BN_free(bn);
	X509_free(x);
	return rc;
}

static long lifetime_secs(const struct ca *ca, req_lifetime lt, enum ca_profile prof)
{
	if (prof == PROFILE_TOKEN)
		return ca->cfg.token_days * 86400L;
	return (lt == LIFETIME_LONG ? ca->cfg.long_hours : ca->cfg.short_hours) * 3600L;
}

static int sign_request(struct ca *ca, const struct store_request *r, req_lifetime lt,
			enum ca_profile prof, char **pem_out, time_t now, int explicit_sign)
{
	BIO *b = NULL;
	X509_REQ *req = NULL;
	struct store_cert c;
	long secs;
	int rc = -1, tries;

	memset(&c, 0, sizeof c);
	b = BIO_new_mem_buf(r->pem, -1);
	req = b ? PEM_read_bio_X509_REQ(b, NULL, NULL, NULL) : NULL;
	if (req == NULL) {
		ca_err("request %lld: stored CSR does not parse", (long long)r->id);
		goto out;
	}
	/* the request policy again: requests stored before a check existed
	 * (or by an older p11ca) are never certified past it */
	{
		char err[256];

		if (!ca_csr_ok(req, err, sizeof err)) {
			ca_err("request %lld not signed: %s", (long long)r->id, err);
			goto out;
		}
	}
	secs = lifetime_secs(ca, lt, prof);
	for (tries = 0; tries < 3; tries++) {
		store_result sr;

		if (issue_for_store(ca, req, prof, secs, now, &c) != 0)
			goto out;
		c.request_id = r->id;
		c.explicit_sign = explicit_sign;
		c.set_lifetime = lt != r->lifetime;
		c.lifetime = lt;
		/* issued, not stored: a reject or revoke now must still win */
		p11c_test_stall("ca-issued-not-stored");
		sr = ca->so->cert_add(ca->st, &c, now);
		if (sr == STORE_OK)
			break;
		if (sr == STORE_CONFLICT) {
			ca_err("request %lld not signed: %s", (long long)r->id, ca->so->errmsg(ca->st));
			rc = 1;
			goto out;
		}
		if (sr != STORE_DUPLICATE) {
			ca_err("cannot store certificate: %s", ca->so->errmsg(ca->st));
			goto out;
		}
	}
	if (tries == 3)
		goto out;
	if (pem_out != NULL) {
		*pem_out = c.pem;
		c.pem = NULL;
	}
	rc = 0;
out:
	free(c.pem);
	X509_REQ_free(req);
	BIO_free(b);
	return rc;
}

int ca_sign_request(struct ca *ca, const struct store_request *r, req_lifetime lt,
		    enum ca_profile prof, char **pem_out, time_t now)
{
	return sign_request(ca, r, lt, prof, pem_out, now, 0);
}

int ca_sign_request_explicit(struct ca *ca, const struct store_request *r, req_lifetime lt,
			     char **pem_out, time_t now)
{
	return sign_request(ca, r, lt, PROFILE_CARAMEL, pem_out, now, 1);
}

struct crl_ctx {
	X509_CRL *crl;
	int failed;
};

static int add_revoked(const struct store_cert *c, void *ud)
{
	struct crl_ctx *cc = ud;
	X509_REVOKED *rv = X509_REVOKED_new();
	BIGNUM *bn = NULL;
	ASN1_INTEGER *ser = NULL;
	ASN1_TIME *t = NULL;

	if (rv == NULL || !BN_hex2bn(&bn, c->serial) || (ser = BN_to_ASN1_INTEGER(bn, NULL)) == NULL ||
	    (t = ASN1_TIME_set(NULL, (time_t)c->revoked)) == NULL ||
	    !X509_REVOKED_set_serialNumber(rv, ser) || !X509_REVOKED_set_revocationDate(rv, t)) {
		cc->failed = 1;
		goto out;
	}
	if (c->revoke_reason >= 0) {
		ASN1_ENUMERATED *e = ASN1_ENUMERATED_new();

		if (e == NULL || !ASN1_ENUMERATED_set(e, c->revoke_reason) ||
		    !X509_REVOKED_add1_ext_i2d(rv, NID_crl_reason, e, 0, 0))
			cc->failed = 1;
		ASN1_ENUMERATED_free(e);
	}
	if (!cc->failed && X509_CRL_add0_revoked(cc->crl, rv))
		rv = NULL;
	else
		cc->failed = 1;
out:
	X509_REVOKED_free(rv);
	BN_free(bn);
	ASN1_INTEGER_free(ser);
	ASN1_TIME_free(t);
	return cc->failed;
}

int ca_crl(struct ca *ca, const char *path, long days)
{
	struct crl_ctx cc = { NULL, 0 };
	ASN1_TIME *now = NULL, *next = NULL;
	BIO *b = NULL;
	char *data;
	long n;
	int rc = -1, locked = 0;
	time_t t;

	/* several instances on one database: one CRL at a time, each with
	 * every revocation committed before it */
	if (ca->so->exclusive != NULL) {
		if (ca->so->exclusive(ca->st, "crl", 1) != STORE_OK) {
			ca_err("cannot lock the CRL: %s", ca->so->errmsg(ca->st));
			return -1;
		}
		locked = 1;
	}
	t = time(NULL);
	cc.crl = X509_CRL_new();
	now = ASN1_TIME_set(NULL, t);
	next = ASN1_TIME_adj(NULL, t, (int)days, 0);
	if (cc.crl == NULL || now == NULL || next == NULL || !X509_CRL_set_version(cc.crl, 1) ||
	    !X509_CRL_set_issuer_name(cc.crl, X509_get_subject_name(ca->cert)) ||
	    !X509_CRL_set1_lastUpdate(cc.crl, now) || !X509_CRL_set1_nextUpdate(cc.crl, next))
		goto out;
	if (ca->so->cert_list_revoked(ca->st, add_revoked, &cc) != STORE_OK || cc.failed) {
		ca_err("cannot read revoked certificates: %s", ca->so->errmsg(ca->st));
		goto out;
	}
	X509_CRL_sort(cc.crl);
	{
		X509V3_CTX v3;
		X509_EXTENSION *e;

		ASN1_INTEGER *num = NULL;
		int64_t crlnum = 0;
		int ok;

		/* RFC 5280 s5.2.1 authorityKeyIdentifier (MUST) */
		X509V3_set_ctx(&v3, ca->cert, NULL, NULL, cc.crl, 0);
		e = X509V3_EXT_conf_nid(NULL, &v3, NID_authority_key_identifier, "keyid:always");
		if (e == NULL || !X509_CRL_add_ext(cc.crl, e, -1)) {
			X509_EXTENSION_free(e);
			goto out;
		}
		X509_EXTENSION_free(e);
		/* RFC 5280 s5.2.3 cRLNumber (MUST), monotonic: stored */
		if (ca->so->crl_next_number(ca->st, &crlnum) != STORE_OK) {
			ca_err("cannot allocate a CRL number: %s", ca->so->errmsg(ca->st));
			goto out;
		}
		num = ASN1_INTEGER_new();
		ok = num != NULL && ASN1_INTEGER_set_int64(num, crlnum) &&
		     X509_CRL_add1_ext_i2d(cc.crl, NID_crl_number, num, 0, 0) == 1;
		ASN1_INTEGER_free(num);
		if (!ok)
			goto out;
	}
	if (X509_CRL_sign(cc.crl, ca->key, ca_md(ca->key)) <= 0) {
		ca_err("signing the CRL failed");
		goto out;
	}
	b = BIO_new(BIO_s_mem());
	if (b == NULL || !PEM_write_bio_X509_CRL(b, cc.crl))
		goto out;
	n = BIO_get_mem_data(b, &data);
	if (p11c_file_write_atomic(path, data, (size_t)n, 0644) != P11C_OK) {
		ca_err("cannot write '%s': %s", path, strerror(errno));
		goto out;
	}
	rc = 0;
out:
	if (locked)
		ca->so->exclusive(ca->st, "crl", 0);
	BIO_free(b);
	ASN1_TIME_free(now);
	ASN1_TIME_free(next);
	X509_CRL_free(cc.crl);
	return rc;
}

int ca_add_request(struct ca *ca, const char *pem, size_t len, X509_REQ *req, const char *protocol,
		   req_state state, struct store_request *out)
{
	return ca_add_request_keyed(ca, pem, len, req, protocol, state, NULL, out);
}

char *ca_name_rfc2253(const X509_NAME *n)
{
	BIO *b = BIO_new(BIO_s_mem());
	char *data, *s = NULL;

	if (b != NULL && X509_NAME_print_ex(b, n, 0, XN_FLAG_RFC2253) >= 0 && BIO_write(b, "", 1) == 1) {
		(void)BIO_get_mem_data(b, &data);
		s = strdup(data); /* NUL written above: BIO memory has none */
	}
	BIO_free(b);
	return s;
}

/* What the store keeps of a new request (subject_out: the RFC 2253
 * subject, allocated; cn and ou: buffers of 256). */
static int request_fields(const char *pem, size_t len, X509_REQ *req, const char *protocol, req_state state,
			  const char *key, struct store_request *r, char **subject_out, char *cn, char *ou)
{
	const X509_NAME *subj = X509_REQ_get_subject_name(req);

	memset(r, 0, sizeof *r);
	if ((*subject_out = ca_name_rfc2253(subj)) == NULL)
		return -1;
	if (key != NULL)
		snprintf(r->sha256, sizeof r->sha256, "%s", key);
	else
		p11c_sha256_hex(pem, len, r->sha256);
	cn[0] = '\0';
	ca_name_entry(subj, NID_commonName, cn, 256);
	r->pem = (char *)(uintptr_t)pem;
	r->subject = *subject_out;
	r->cn = cn;
	r->ou = ca_name_entry(subj, NID_organizationalUnitName, ou, 256) == 0 ? ou : NULL;
	r->state = state;
	r->lifetime = LIFETIME_SHORT;
	snprintf(r->protocol, sizeof r->protocol, "%s", protocol);
	r->created = r->updated = time(NULL);
	return 0;
}

int ca_add_request_keyed(struct ca *ca, const char *pem, size_t len, X509_REQ *req, const char *protocol,
			 req_state state, const char *key, struct store_request *out)
{
	struct store_request r;
	char cn[256], ou[256];
	char *s = NULL;
	int64_t id = 0;
	store_result sr;

	if (request_fields(pem, len, req, protocol, state, key, &r, &s, cn, ou) != 0) {
		free(s);
		return -1;
	}
	sr = ca->so->req_add(ca->st, &r, &id);
	free(s);
	if (sr != STORE_OK && sr != STORE_DUPLICATE) {
		ca_err("cannot store request: %s", ca->so->errmsg(ca->st));
		return -1;
	}
	if (out != NULL && ca->so->req_by_id(ca->st, id, out) != STORE_OK)
		return -1;
	return sr == STORE_DUPLICATE ? 1 : 0;
}

int ca_add_request_signed(struct ca *ca, const char *pem, size_t len, X509_REQ *req, const char *protocol,
			  const char *key, req_lifetime lt, enum ca_profile prof, struct store_request *out,
			  char **pem_out, time_t now)
{
	struct store_request r;
	struct store_cert c;
	char cn[256], ou[256];
	char *s = NULL;
	int64_t id = 0;
	int rc = -1, tries, exists = 0;
	store_result sr = STORE_ERROR;

	memset(&c, 0, sizeof c);
	if (request_fields(pem, len, req, protocol, REQ_SIGNED, key, &r, &s, cn, ou) != 0)
		goto out;
	r.lifetime = lt;
	for (tries = 0; tries < 3; tries++) {
		if (issue_for_store(ca, req, prof, lifetime_secs(ca, lt, prof), now, &c) != 0)
			goto out;
		c.lifetime = lt;
		/* issued, nothing stored: a crash here leaves no trace, and the
		 * client's retry starts again (test_fault_server_kill) */
		p11c_test_stall("ca-issued-not-stored");
		sr = ca->so->req_add_signed(ca->st, &r, &c, now, &id, &exists);
		if (sr != STORE_DUPLICATE || exists)
			break; /* else the serial was taken: another one */
	}
	if (sr == STORE_DUPLICATE && exists) {
		rc = 1;
	} else if (sr == STORE_CONFLICT) {
		ca_err("request %s not signed: %s", r.sha256, ca->so->errmsg(ca->st));
		rc = 2;
		goto out;
	} else if (sr != STORE_OK) {
		ca_err("cannot store the request and its certificate: %s", ca->so->errmsg(ca->st));
		goto out;
	} else {
		rc = 0;
	}
	/* a new request: its id is all a caller reports, no second read */
	if (out != NULL && rc == 0) {
		memset(out, 0, sizeof *out);
		out->id = id;
	} else if (out != NULL && ca->so->req_by_id(ca->st, id, out) != STORE_OK) {
		rc = -1;
		goto out;
	}
	if (rc == 0 && pem_out != NULL) {
		*pem_out = c.pem;
		c.pem = NULL;
	}
out:
	free(c.pem);
	free(s);
	return rc;
}

int ca_enroll_now(struct ca *ca, const char *pem, size_t len, X509_REQ *req, const char *protocol,
		  req_lifetime lt, enum ca_profile prof, struct store_request *out, char **pem_out, time_t now)
{
	int rc = ca_add_request_signed(ca, pem, len, req, protocol, NULL, lt, prof, out, pem_out, now);

	if (rc != 1)
		return rc;
	/* the same CSR again: a new certificate for the stored request */
	if (out->state == REQ_REJECTED)
		return 3;
	rc = ca_sign_request(ca, out, lt, prof, pem_out, now);
	return rc == 1 ? 2 : rc;
}
