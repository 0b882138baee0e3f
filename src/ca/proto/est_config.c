/* EST (RFC 7030) for p11ca: DIR/est.conf profiles, the credentials file,
 * and the bounded parsers and DER encoders proto/est.c uses (est.h). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/pem.h>
#include <openssl/pkcs7.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "est.h"

/* ---- est.conf ---- */

static char *trim(char *s)
{
	char *e;

	while (*s == ' ' || *s == '\t')
		s++;
	e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = '\0';
	return s;
}

static int label_ok(const char *s)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.";
	size_t n = strlen(s);

	return n > 0 && n <= EST_LABEL_MAX && strspn(s, ok) == n && strcmp(s, ".") != 0 &&
	       strcmp(s, "..") != 0;
}

static int yes_no(const char *v, int *out)
{
	if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*out = 1;
	else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*out = 0;
	else
		return -1;
	return 0;
}

static int num(const char *v, long lo, long hi, long *out)
{
	char *end = NULL;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (*v < '0' || *v > '9' || errno != 0 || *end != '\0' || n < lo || n > hi)
		return -1;
	*out = n;
	return 0;
}

static void profile_defaults(struct est_profile *p)
{
	memset(p, 0, sizeof *p);
	p->auth = EST_AUTH_BASIC;
	p->binding = 0;
	p->retry_after = 60;
}

static int set_auth(struct est_profile *p, const char *v)
{
	char buf[64], *tok, *save = NULL;

	if (strlen(v) >= sizeof buf)
		return -1;
	snprintf(buf, sizeof buf, "%s", v);
	p->auth = 0;
	for (tok = strtok_r(buf, ", ", &save); tok != NULL; tok = strtok_r(NULL, ", ", &save)) {
		if (strcmp(tok, "basic") == 0)
			p->auth |= EST_AUTH_BASIC;
		else if (strcmp(tok, "cert") == 0)
			p->auth |= EST_AUTH_CERT;
		else
			return -1;
	}
	return p->auth != 0 ? 0 : -1;
}

static int set_key_type(struct est_profile *p, const char *v)
{
	long bits;

	if (strcmp(v, "none") == 0) {
		p->key_nid = 0;
	} else if (strcmp(v, "ec:P-256") == 0) {
		p->key_nid = EVP_PKEY_EC;
		p->key_param = NID_X9_62_prime256v1;
	} else if (strcmp(v, "ec:P-384") == 0) {
		p->key_nid = EVP_PKEY_EC;
		p->key_param = NID_secp384r1;
	} else if (strncmp(v, "rsa:", 4) == 0 && num(v + 4, 2048, 4096, &bits) == 0) {
		p->key_nid = EVP_PKEY_RSA;
		p->key_param = (int)bits;
	} else {
		return -1;
	}
	return 0;
}

/* csrattrs-extensions names: keyUsage bits (RFC 5280 s4.2.1.3, the bit
 * number) and extendedKeyUsage purposes (s4.2.1.12, EST_EKU_* bit <- NID) */
static const struct {
	const char *name;
	int eku;  /* 0: keyUsage */
	int bit;  /* keyUsage bit number, or EST_EKU_* bit */
	int nid;  /* the purpose's NID (eku) */
} ext_names[] = {
	{ "digitalSignature", 0, 0, 0 },
	{ "nonRepudiation", 0, 1, 0 },
	{ "keyEncipherment", 0, 2, 0 },
	{ "dataEncipherment", 0, 3, 0 },
	{ "keyAgreement", 0, 4, 0 },
	{ "serverAuth", 1, 0, NID_server_auth },
	{ "clientAuth", 1, 1, NID_client_auth },
	{ "codeSigning", 1, 2, NID_code_sign },
	{ "emailProtection", 1, 3, NID_email_protect },
};
#define EXT_NAMES (sizeof ext_names / sizeof ext_names[0])

/* "clientAuth, serverAuth digitalSignature" (commas or blanks), or "none" */
static int set_exts(struct est_profile *p, const char *v)
{
	char buf[256], *tok, *save = NULL;
	size_t i;

	if (strlen(v) >= sizeof buf)
		return -1;
	p->ext_ku = p->ext_eku = 0;
	if (strcmp(v, "none") == 0)
		return 0;
	snprintf(buf, sizeof buf, "%s", v);
	for (tok = strtok_r(buf, ", \t", &save); tok != NULL; tok = strtok_r(NULL, ", \t", &save)) {
		for (i = 0; i < EXT_NAMES && strcmp(tok, ext_names[i].name) != 0; i++)
			;
		if (i == EXT_NAMES)
			return -1;
		if (ext_names[i].eku)
			p->ext_eku |= 1U << ext_names[i].bit;
		else
			p->ext_ku |= 1U << ext_names[i].bit;
	}
	return p->ext_ku != 0 || p->ext_eku != 0 ? 0 : -1;
}

static int set_option(struct est_profile *p, const char *k, const char *v)
{
	long n;
	int b;

	if (strcmp(k, "auth") == 0)
		return set_auth(p, v);
	if (strcmp(k, "users") == 0 || strcmp(k, "bootstrap-ca") == 0) {
		char **dst = k[0] == 'u' ? &p->users : &p->bootstrap_ca;

		if (*v == '\0')
			return -1;
		free(*dst);
		return (*dst = strdup(v)) != NULL ? 0 : -1;
	}
	if (strcmp(k, "approval") == 0) {
		if (strcmp(v, "auto") == 0)
			p->pending = 0;
		else if (strcmp(v, "pending") == 0)
			p->pending = 1;
		else
			return -1;
		return 0;
	}
	if (strcmp(k, "binding") == 0) {
		if (strcmp(v, "required") == 0)
			p->binding = 1;
		else if (strcmp(v, "off") == 0)
			p->binding = 0;
		else
			return -1;
		return 0;
	}
	if (strcmp(k, "subject-change") == 0) {
		if (yes_no(v, &b) != 0)
			return -1;
		p->subject_change = b;
		return 0;
	}
	if (strcmp(k, "key-type") == 0)
		return set_key_type(p, v);
	if (strcmp(k, "csrattrs-extensions") == 0)
		return set_exts(p, v);
	if (strcmp(k, "csrattrs-extensions-required") == 0) {
		if (yes_no(v, &b) != 0)
			return -1;
		p->ext_required = b;
		return 0;
	}
	if (strcmp(k, "lifetime") == 0) {
		if (strcmp(v, "short") == 0)
			p->lifetime_long = 0;
		else if (strcmp(v, "long") == 0)
			p->lifetime_long = 1;
		else
			return -1;
		return 0;
	}
	if (strcmp(k, "retry-after") == 0) {
		if (num(v, 1, 86400, &n) != 0)
			return -1;
		p->retry_after = n;
		return 0;
	}
	return -2;
}

static void profiles_clear(struct est_server *s)
{
	size_t i;

	for (i = 0; i < s->nprof; i++) {
		free(s->prof[i].users);
		free(s->prof[i].bootstrap_ca);
		X509_STORE_free(s->prof[i].bootstrap);
	}
	s->nprof = 0;
}

/* est.conf: "[default]" or "[LABEL]" sections of "name = value" lines
 * (docs/ca.md "EST"); '#' starts a comment. */
int est_conf_parse(struct est_server *s, const char *text, size_t len, const char *name, char *err,
		   size_t errlen)
{
	char line[1024];
	struct est_profile *p = NULL;
	size_t off = 0, i;
	int lineno = 0, rc;

	memset(s, 0, sizeof *s);
	s->rate_limit = 10;
	if (len > EST_CONF_MAX || memchr(text, '\0', len) != NULL) {
		snprintf(err, errlen, "%s: larger than %d bytes or not text", name, EST_CONF_MAX);
		return -1;
	}
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t n = nl ? (size_t)(nl - (text + off)) : len - off;
		char *l, *eq, *hash;

		lineno++;
		if (n >= sizeof line) {
			snprintf(err, errlen, "%s:%d: line longer than %zu bytes", name, lineno, sizeof line - 1);
			goto fail;
		}
		memcpy(line, text + off, n);
		line[n] = '\0';
		off += n + (nl ? 1 : 0);
		if ((hash = strchr(line, '#')) != NULL)
			*hash = '\0';
		l = trim(line);
		if (*l == '\0')
			continue;
		if (*l == '[') {
			char *end = strchr(l, ']');

			if (end == NULL || end[1] != '\0') {
				snprintf(err, errlen, "%s:%d: expected [default] or [LABEL]", name, lineno);
				goto fail;
			}
			*end = '\0';
			l = trim(l + 1);
			if (strcmp(l, "default") != 0 && !label_ok(l)) {
				snprintf(err, errlen, "%s:%d: bad label '%s' (1-%d of A-Z a-z 0-9 - _ .)", name,
					 lineno, l, EST_LABEL_MAX);
				goto fail;
			}
			if (strcmp(l, "default") == 0)
				l = "";
			for (i = 0; i < s->nprof; i++)
				if (strcmp(s->prof[i].label, l) == 0) {
					snprintf(err, errlen, "%s:%d: profile [%s] given twice", name, lineno,
						 *l ? l : "default");
					goto fail;
				}
			if (s->nprof == EST_MAX_PROFILES) {
				snprintf(err, errlen, "%s:%d: more than %d profiles", name, lineno, EST_MAX_PROFILES);
				goto fail;
			}
			p = &s->prof[s->nprof++];
			profile_defaults(p);
			snprintf(p->label, sizeof p->label, "%s", l);
			continue;
		}
		if ((eq = strchr(l, '=')) == NULL) {
			snprintf(err, errlen, "%s:%d: expected name = value", name, lineno);
			goto fail;
		}
		*eq = '\0';
		{
			char *k = trim(l), *v = trim(eq + 1);

			if (strcmp(k, "rate-limit") == 0 && p != NULL) {
				snprintf(err, errlen, "%s:%d: rate-limit is for all profiles: put it before the "
					 "first [profile]", name, lineno);
				goto fail;
			}
			if (p == NULL && strcmp(k, "rate-limit") != 0) {
				snprintf(err, errlen, "%s:%d: '%s' before the first [profile]", name, lineno, k);
				goto fail;
			}
			if (p == NULL) {
				long lim;

				rc = num(v, 0, 100000, &lim);
				if (rc == 0)
					s->rate_limit = lim;
			} else {
				rc = set_option(p, k, v);
			}
			if (rc == -2) {
				snprintf(err, errlen, "%s:%d: unknown setting '%.64s'", name, lineno, k);
				goto fail;
			}
			if (rc != 0) {
				snprintf(err, errlen, "%s:%d: bad value for %s: '%.64s'", name, lineno, k, v);
				goto fail;
			}
		}
	}
	for (i = 0; i < s->nprof; i++) {
		p = &s->prof[i];
		if ((p->auth & EST_AUTH_BASIC) && p->users == NULL) {
			snprintf(err, errlen, "%s: profile [%s]: auth basic needs users = FILE", name,
				 p->label[0] ? p->label : "default");
			goto fail;
		}
		if ((p->auth & EST_AUTH_CERT) && p->bootstrap_ca == NULL) {
			snprintf(err, errlen, "%s: profile [%s]: auth cert needs bootstrap-ca = FILE", name,
				 p->label[0] ? p->label : "default");
			goto fail;
		}
	}
	return 0;
fail:
	profiles_clear(s);
	return -1;
}

static X509_STORE *load_bootstrap(const char *path, char *err, size_t errlen)
{
	X509_STORE *st = X509_STORE_new();
	BIO *b = BIO_new_file(path, "r");
	X509 *x;
	int n = 0;

	if (st == NULL || b == NULL) {
		snprintf(err, errlen, "cannot read bootstrap-ca '%s'", path);
		goto fail;
	}
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL) {
		if (X509_STORE_add_cert(st, x) != 1) {
			X509_free(x);
			snprintf(err, errlen, "bootstrap-ca '%s': cannot add a certificate", path);
			goto fail;
		}
		X509_free(x);
		n++;
	}
	ERR_clear_error();
	if (n == 0) {
		snprintf(err, errlen, "bootstrap-ca '%s': no PEM certificate", path);
		goto fail;
	}
	BIO_free(b);
	return st;
fail:
	BIO_free(b);
	X509_STORE_free(st);
	ERR_clear_error();
	return NULL;
}

int est_server_load(const char *dir, struct est_server **out)
{
	struct est_server *s = NULL;
	char *path = ca_path(dir, EST_CONF_FILE), *text = NULL, err[512];
	size_t len = 0, i;
	int rc = -1;

	*out = NULL;
	if (path == NULL)
		return -1;
	if (access(path, F_OK) != 0) {
		free(path);
		return 0; /* EST off */
	}
	if (ca_read_file(path, EST_CONF_MAX, &text, &len) != 0) {
		ca_err("cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if ((s = calloc(1, sizeof *s)) == NULL)
		goto out;
	if (est_conf_parse(s, text, len, path, err, sizeof err) != 0) {
		ca_err("%s", err);
		free(s);
		s = NULL;
		goto out;
	}
	for (i = 0; i < s->nprof; i++) {
		char *bp;

		if (s->prof[i].bootstrap_ca == NULL)
			continue;
		bp = ca_path(dir, s->prof[i].bootstrap_ca);
		s->prof[i].bootstrap = bp ? load_bootstrap(bp, err, sizeof err) : NULL;
		free(bp);
		if (s->prof[i].bootstrap == NULL) {
			ca_err("%s: %s", path, err);
			goto out;
		}
	}
	if (est_cred_cache_init(&s->cache) != 0)
		goto out;
	if (s->rate_limit > 0) {
		int oom = 0;

		s->rl = ratelimit_new((unsigned)s->rate_limit, 0, &oom);
		if (oom)
			goto out;
	}
	*out = s;
	s = NULL;
	rc = 0;
out:
	est_server_free(&s);
	free(text);
	free(path);
	return rc;
}

int est_client_ca_names(const struct est_server *s, SSL_CTX *ctx)
{
	size_t i;
	int k;

	for (i = 0; s != NULL && i < s->nprof; i++) {
		STACK_OF(X509_OBJECT) *objs = s->prof[i].bootstrap ? X509_STORE_get0_objects(s->prof[i].bootstrap) : NULL;

		for (k = 0; k < sk_X509_OBJECT_num(objs); k++) {
			X509 *x = X509_OBJECT_get0_X509(sk_X509_OBJECT_value(objs, k));

			if (x != NULL && SSL_CTX_add_client_CA(ctx, x) != 1) {
				ERR_clear_error();
				return -1;
			}
		}
	}
	return 0;
}

void est_server_free(struct est_server **sp)
{
	if (sp == NULL || *sp == NULL)
		return;
	profiles_clear(*sp);
	ratelimit_free(&(*sp)->rl);
	OPENSSL_cleanse(&(*sp)->cache, sizeof (*sp)->cache);
	free(*sp);
	*sp = NULL;
}

const struct est_profile *est_profile_find(const struct est_server *s, const char *label)
{
	size_t i;

	for (i = 0; s != NULL && i < s->nprof; i++)
		if (strcmp(s->prof[i].label, label) == 0)
			return &s->prof[i];
	return NULL;
}

/* RFC 7030 s3.2.2: /.well-known/est[/LABEL]/OP */
int est_path_parse(const char *path, char *label, size_t llen, char *op, size_t oplen)
{
	static const char prefix[] = "/.well-known/est/";
	const char *rest, *slash;

	if (strncmp(path, prefix, sizeof prefix - 1) != 0)
		return 0;
	rest = path + sizeof prefix - 1;
	slash = strchr(rest, '/');
	if (slash == NULL) {
		label[0] = '\0';
		if (strlen(rest) >= oplen)
			return 0;
		snprintf(op, oplen, "%s", rest);
		return 1;
	}
	if ((size_t)(slash - rest) >= llen || strchr(slash + 1, '/') != NULL || strlen(slash + 1) >= oplen)
		return 0;
	memcpy(label, rest, (size_t)(slash - rest));
	label[slash - rest] = '\0';
	if (!label_ok(label))
		return 0;
	snprintf(op, oplen, "%s", slash + 1);
	return 1;
}

/* ---- base64 ---- */

/* RFC 4648 s4, the standard alphabet */
static int b64val(unsigned char c)
{
	static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	const char *q = c != 0 ? strchr(abc, c) : NULL;

	return q != NULL ? (int)(q - abc) : -1;
}

int est_b64_decode(const unsigned char *in, size_t len, size_t max, unsigned char **out, size_t *outlen)
{
	unsigned char *buf;
	size_t i, o = 0, pad = 0;
	unsigned acc = 0;
	int nbits = 0, q = 0;

	*out = NULL;
	*outlen = 0;
	if ((buf = malloc(len / 4 * 3 + 3)) == NULL)
		return -1;
	for (i = 0; i < len; i++) {
		unsigned char c = in[i];
		int v;

		if (c == ' ' || c == '\t' || c == '\r' || c == '\n')
			continue;
		if (c == '=') {
			pad++;
			if (pad > 2)
				goto bad;
			continue;
		}
		if (pad > 0 || (v = b64val(c)) < 0)
			goto bad; /* data after padding, or not base64 */
		acc = (acc << 6) | (unsigned)v;
		nbits += 6;
		q++;
		if (nbits >= 8) {
			nbits -= 8;
			if (o == max)
				goto bad;
			buf[o++] = (unsigned char)(acc >> nbits);
			acc &= (1u << nbits) - 1;
		}
	}
	/* a lone sextet is not a byte; padding must complete the quantum */
	if (q % 4 == 1 || (pad > 0 && (q + pad) % 4 != 0) || acc != 0)
		goto bad;
	if (o == 0)
		goto bad;
	*out = buf;
	*outlen = o;
	return 0;
bad:
	OPENSSL_clear_free(buf, len / 4 * 3 + 3);
	return -1;
}

char *est_b64_line(const unsigned char *in, size_t len)
{
	char *s = malloc(4 * ((len + 2) / 3) + 1);

	if (s != NULL)
		EVP_EncodeBlock((unsigned char *)s, in, (int)len);
	return s;
}

char *est_b64_encode(const unsigned char *in, size_t len, size_t *outlen)
{
	char *flat = est_b64_line(in, len), *s;
	size_t n, i, o = 0;

	if (flat == NULL)
		return NULL;
	n = strlen(flat);
	s = malloc(n + n / 64 + 2);
	if (s != NULL) {
		for (i = 0; i < n; i += 64) {
			size_t k = n - i < 64 ? n - i : 64;

			memcpy(s + o, flat + i, k);
			o += k;
			s[o++] = '\n';
		}
		s[o] = '\0';
		if (outlen != NULL)
			*outlen = o;
	}
	free(flat);
	return s;
}

/* ---- HTTP Basic, RFC 7617 s2 ---- */

int est_basic_parse(const char *header, char user[EST_USER_MAX + 1], char pass[EST_PASSWORD_MAX + 1])
{
	unsigned char *raw = NULL;
	size_t n = 0, hl;
	const unsigned char *colon;
	int rc = -1;

	user[0] = pass[0] = '\0';
	if (header == NULL || strncasecmp(header, "Basic ", 6) != 0)
		return -1;
	header += 6;
	while (*header == ' ')
		header++;
	hl = strlen(header);
	if (hl == 0 || hl > 4 * (EST_USER_MAX + EST_PASSWORD_MAX + 1) / 3 + 4 ||
	    est_b64_decode((const unsigned char *)header, hl, EST_USER_MAX + EST_PASSWORD_MAX + 1, &raw, &n) != 0)
		return -1;
	colon = memchr(raw, ':', n);
	if (colon == NULL || colon == raw || (size_t)(colon - raw) > EST_USER_MAX ||
	    n - (size_t)(colon - raw) - 1 > EST_PASSWORD_MAX || memchr(raw, '\0', n) != NULL)
		goto out;
	memcpy(user, raw, (size_t)(colon - raw));
	user[colon - raw] = '\0';
	memcpy(pass, colon + 1, n - (size_t)(colon - raw) - 1);
	pass[n - (size_t)(colon - raw) - 1] = '\0';
	rc = 0;
out:
	OPENSSL_clear_free(raw, n);
	return rc;
}

/* ---- credentials file ---- */

int est_user_name_ok(const char *name)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._@-";
	size_t n = strlen(name);

	return n > 0 && n <= EST_USER_MAX && strspn(name, ok) == n;
}

static int unhex(const char *s, size_t slen, unsigned char *out, size_t n)
{
	size_t i;

	if (slen != 2 * n)
		return -1;
	for (i = 0; i < n; i++) {
		int hi = OPENSSL_hexchar2int((unsigned char)s[2 * i]);
		int lo = OPENSSL_hexchar2int((unsigned char)s[2 * i + 1]);

		if (hi < 0 || lo < 0)
			return -1;
		out[i] = (unsigned char)(hi << 4 | lo);
	}
	return 0;
}

int est_user_line(const char *line, size_t len, char name[EST_USER_MAX + 1], unsigned *iter,
		  unsigned char salt[EST_SALT_LEN], unsigned char hash[EST_HASH_LEN])
{
	const char *f[5];
	size_t fl[5], i = 0, k;
	const char *p = line, *end = line + len;
	long it;
	char num_s[16];

	while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r'))
		end = line + --len;
	for (k = 0; k < 5; k++) {
		const char *c = memchr(p, ':', (size_t)(end - p));

		if (k < 4 && c == NULL)
			return -1;
		if (k == 4)
			c = end;
		f[k] = p;
		fl[k] = (size_t)(c - p);
		p = c + 1;
		i++;
	}
	if (memchr(f[4], ':', fl[4]) != NULL || fl[0] == 0 || fl[0] > EST_USER_MAX ||
	    fl[1] != strlen("pbkdf2-sha256") || memcmp(f[1], "pbkdf2-sha256", fl[1]) != 0 || fl[2] == 0 ||
	    fl[2] >= sizeof num_s)
		return -1;
	memcpy(name, f[0], fl[0]);
	name[fl[0]] = '\0';
	if (!est_user_name_ok(name))
		return -1;
	memcpy(num_s, f[2], fl[2]);
	num_s[fl[2]] = '\0';
	if (num(num_s, 1000, 10000000, &it) != 0)
		return -1;
	*iter = (unsigned)it;
	if (unhex(f[3], fl[3], salt, EST_SALT_LEN) != 0 || unhex(f[4], fl[4], hash, EST_HASH_LEN) != 0)
		return -1;
	return 0;
}

int est_user_make(const char *name, const char *pass, size_t plen, char *line, size_t linelen)
{
	unsigned char salt[EST_SALT_LEN], hash[EST_HASH_LEN];
	char sh[2 * EST_SALT_LEN + 1], hh[2 * EST_HASH_LEN + 1];
	size_t i;
	int n, rc = -1;

	if (!est_user_name_ok(name) || RAND_bytes(salt, sizeof salt) != 1 ||
	    PKCS5_PBKDF2_HMAC(pass, (int)plen, salt, sizeof salt, EST_PBKDF2_ITER, EVP_sha256(), sizeof hash,
			      hash) != 1)
		goto out;
	for (i = 0; i < sizeof salt; i++)
		snprintf(sh + 2 * i, 3, "%02x", salt[i]);
	for (i = 0; i < sizeof hash; i++)
		snprintf(hh + 2 * i, 3, "%02x", hash[i]);
	n = snprintf(line, linelen, "%s:pbkdf2-sha256:%d:%s:%s\n", name, EST_PBKDF2_ITER, sh, hh);
	rc = n > 0 && (size_t)n < linelen ? 0 : -1;
out:
	OPENSSL_cleanse(hash, sizeof hash);
	OPENSSL_cleanse(hh, sizeof hh);
	return rc;
}

/* keyed digest of a password for the cache: HMAC-SHA256 with the
 * process's random cache key */
static int cache_mac(const struct est_cred_cache *c, const char *pass, unsigned char mac[32])
{
	unsigned len = 32;

	return HMAC(EVP_sha256(), c->key, sizeof c->key, (const unsigned char *)pass, strlen(pass), mac, &len) !=
			       NULL &&
		       len == 32
		       ? 0
		       : -1;
}

int est_user_check(struct est_cred_cache *cache, const char *text, size_t len, const char *name,
		   const char *pass, int64_t now)
{
	size_t off = 0, i;
	char n[EST_USER_MAX + 1];
	unsigned iter;
	unsigned char salt[EST_SALT_LEN], want[EST_HASH_LEN], got[EST_HASH_LEN], line_md[32], mac[32];
	struct est_cred_entry *slot = NULL;
	int ok = 0;

	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t l = nl ? (size_t)(nl - (text + off)) : len - off;

		if (est_user_line(text + off, l, n, &iter, salt, want) == 0 && strcmp(n, name) == 0) {
			/* a verified password for this very line (a changed or
			 * removed line misses): no PBKDF2 again */
			if (cache != NULL && cache->ready && SHA256((const unsigned char *)text + off, l, line_md) != NULL &&
			    cache_mac(cache, pass, mac) == 0) {
				for (i = 0; i < EST_CACHE_SLOTS; i++) {
					struct est_cred_entry *e = &cache->e[i];

					if (e->until > now && strcmp(e->user, name) == 0 &&
					    CRYPTO_memcmp(e->line, line_md, 32) == 0 && CRYPTO_memcmp(e->mac, mac, 32) == 0) {
						ok = 1;
						break;
					}
					if (slot == NULL || e->until < slot->until)
						slot = e; /* the oldest (or an empty) slot */
				}
				if (ok)
					break;
			}
			if (PKCS5_PBKDF2_HMAC(pass, (int)strlen(pass), salt, sizeof salt, (int)iter, EVP_sha256(),
					      sizeof got, got) == 1 &&
			    CRYPTO_memcmp(got, want, sizeof got) == 0) {
				ok = 1;
				if (slot != NULL) {
					snprintf(slot->user, sizeof slot->user, "%s", name);
					memcpy(slot->line, line_md, 32);
					memcpy(slot->mac, mac, 32);
					slot->until = now + EST_CACHE_SECONDS;
				}
			}
			break;
		}
		off += l + (nl ? 1 : 0);
	}
	OPENSSL_cleanse(got, sizeof got);
	OPENSSL_cleanse(mac, sizeof mac);
	return ok;
}

int est_cred_cache_init(struct est_cred_cache *c)
{
	memset(c, 0, sizeof *c);
	if (RAND_bytes(c->key, sizeof c->key) != 1)
		return -1;
	c->ready = 1;
	return 0;
}

/* ---- DER ---- */

struct der {
	unsigned char *p;
	size_t n, cap;
	int bad;
};

static void der_put(struct der *d, const void *b, size_t n)
{
	if (d->bad || n == 0 || b == NULL)
		return;
	if (d->n + n > d->cap) {
		size_t cap = (d->n + n) * 2 + 64;
		unsigned char *q = realloc(d->p, cap);

		if (q == NULL) {
			d->bad = 1;
			return;
		}
		d->p = q;
		d->cap = cap;
	}
	memcpy(d->p + d->n, b, n);
	d->n += n;
}

/* tag + length + content (content < 64 KiB here) */
static void der_tlv(struct der *d, unsigned char tag, const unsigned char *c, size_t n)
{
	unsigned char h[4];
	size_t hl;

	h[0] = tag;
	if (n < 0x80) {
		h[1] = (unsigned char)n;
		hl = 2;
	} else if (n < 0x100) {
		h[1] = 0x81;
		h[2] = (unsigned char)n;
		hl = 3;
	} else {
		h[1] = 0x82;
		h[2] = (unsigned char)(n >> 8);
		h[3] = (unsigned char)n;
		hl = 4;
	}
	der_put(d, h, hl);
	der_put(d, c, n);
}

static void der_oid(struct der *d, int nid)
{
	const ASN1_OBJECT *o = OBJ_nid2obj(nid);
	unsigned char *buf = NULL;
	int n = o != NULL ? i2d_ASN1_OBJECT(o, &buf) : -1;

	if (n <= 0)
		d->bad = 1;
	else
		der_put(d, buf, (size_t)n);
	OPENSSL_free(buf);
}

STACK_OF(X509_EXTENSION) *est_profile_exts(const struct est_profile *p, int *err)
{
	STACK_OF(X509_EXTENSION) *exts = NULL;
	ASN1_BIT_STRING *ku = NULL;
	EXTENDED_KEY_USAGE *eku = NULL;
	X509_EXTENSION *x = NULL;
	size_t i;

	*err = 0;
	if (p->ext_ku == 0 && p->ext_eku == 0)
		return NULL;
	if ((exts = sk_X509_EXTENSION_new_null()) == NULL || (ku = ASN1_BIT_STRING_new()) == NULL ||
	    (eku = sk_ASN1_OBJECT_new_null()) == NULL)
		goto fail;
	for (i = 0; i < EXT_NAMES; i++) {
		if (!ext_names[i].eku && (p->ext_ku & 1U << ext_names[i].bit) != 0 &&
		    !ASN1_BIT_STRING_set_bit(ku, ext_names[i].bit, 1))
			goto fail;
		if (ext_names[i].eku && (p->ext_eku & 1U << ext_names[i].bit) != 0 &&
		    !sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(ext_names[i].nid)))
			goto fail;
	}
	/* RFC 5280 s4.2.1.3: keyUsage SHOULD be critical */
	if (p->ext_ku != 0 &&
	    ((x = X509V3_EXT_i2d(NID_key_usage, 1, ku)) == NULL || !sk_X509_EXTENSION_push(exts, x)))
		goto fail;
	x = NULL;
	if (p->ext_eku != 0 &&
	    ((x = X509V3_EXT_i2d(NID_ext_key_usage, 0, eku)) == NULL || !sk_X509_EXTENSION_push(exts, x)))
		goto fail;
	ASN1_BIT_STRING_free(ku);
	sk_ASN1_OBJECT_free(eku); /* OBJ_nid2obj's objects are static */
	return exts;
fail:
	*err = 1;
	X509_EXTENSION_free(x);
	ASN1_BIT_STRING_free(ku);
	sk_ASN1_OBJECT_free(eku);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ERR_clear_error();
	return NULL;
}

int est_exts_ok(const struct est_profile *p, X509_REQ *req, char *why, size_t wlen)
{
	STACK_OF(X509_EXTENSION) *exts = X509_REQ_get_extensions(req);
	ASN1_BIT_STRING *ku = X509V3_get_d2i(exts, NID_key_usage, NULL, NULL);
	EXTENDED_KEY_USAGE *eku = X509V3_get_d2i(exts, NID_ext_key_usage, NULL, NULL);
	size_t i;
	int ok = 1, j, found;

	why[0] = '\0';
	for (i = 0; i < EXT_NAMES && ok; i++) {
		if (!ext_names[i].eku && (p->ext_ku & 1U << ext_names[i].bit) != 0)
			ok = ku != NULL && ASN1_BIT_STRING_get_bit(ku, ext_names[i].bit);
		if (ext_names[i].eku && (p->ext_eku & 1U << ext_names[i].bit) != 0) {
			for (found = 0, j = 0; eku != NULL && j < sk_ASN1_OBJECT_num(eku); j++)
				found |= OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, j)) == ext_names[i].nid;
			ok = found;
		}
		if (!ok)
			snprintf(why, wlen, "the CSR lacks %s %s, which /csrattrs asks for",
				 ext_names[i].eku ? "extendedKeyUsage" : "keyUsage", ext_names[i].name);
	}
	ASN1_BIT_STRING_free(ku);
	sk_ASN1_OBJECT_pop_free(eku, ASN1_OBJECT_free);
	sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
	ERR_clear_error();
	return ok;
}

/* RFC 7030 s4.5.2: CsrAttrs ::= SEQUENCE SIZE (0..MAX) OF AttrOrOID, where
 * AttrOrOID is an OID or an Attribute { type, SET OF value }.  We send the
 * challengePassword OID when the profile requires channel binding (s3.5),
 * the key type (id-ecPublicKey with the curve, or rsaEncryption with the
 * size, as in the s4.5.2 example), the signature algorithm, and with
 * csrattrs-extensions an extensionRequest attribute (RFC 2985 s5.4.2)
 * whose value is Extensions with the values wanted: s4.5.2 has the
 * attribute name what the client is to fill; RFC 9908 (the clarification
 * of RFC 7030's CSR attributes) makes this template form explicit. */
int est_csrattrs_der(const struct est_profile *p, unsigned char **der, size_t *len)
{
	struct der body = { 0 }, out = { 0 }, attr = { 0 }, set = { 0 }, xattr = { 0 }, xset = { 0 };
	STACK_OF(X509_EXTENSION) *exts;
	unsigned char *xder = NULL;
	int xlen, xerr = 0;

	*der = NULL;
	*len = 0;
	exts = est_profile_exts(p, &xerr);
	if (xerr)
		return -1;
	if (exts != NULL) {
		xlen = i2d_X509_EXTENSIONS(exts, &xder);
		sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
		if (xlen <= 0)
			return -1;
		der_tlv(&xset, 0x31, xder, (size_t)xlen);
		OPENSSL_free(xder);
		der_oid(&xattr, NID_ext_req);
		der_put(&xattr, xset.p, xset.n);
		if (xset.bad)
			xattr.bad = 1;
	}
	if (p->binding)
		der_oid(&body, NID_pkcs9_challengePassword);
	if (p->key_nid == EVP_PKEY_EC) {
		der_oid(&set, p->key_param);
		der_oid(&attr, NID_X9_62_id_ecPublicKey);
		der_tlv(&attr, 0x31, set.p, set.n);
		der_tlv(&body, 0x30, attr.p, attr.n);
		der_oid(&body, NID_ecdsa_with_SHA256);
	} else if (p->key_nid == EVP_PKEY_RSA) {
		const unsigned char bits[2] = { (unsigned char)(p->key_param >> 8), (unsigned char)p->key_param };
		/* INTEGER, positive: a leading zero when the high bit is set */
		unsigned char ib[3];
		size_t in = 0;

		if (bits[0] & 0x80)
			ib[in++] = 0;
		ib[in++] = bits[0];
		ib[in++] = bits[1];
		der_tlv(&set, 0x02, ib, in);
		der_oid(&attr, NID_rsaEncryption);
		der_tlv(&attr, 0x31, set.p, set.n);
		der_tlv(&body, 0x30, attr.p, attr.n);
		der_oid(&body, NID_sha256WithRSAEncryption);
	}
	if (xattr.n > 0)
		der_tlv(&body, 0x30, xattr.p, xattr.n);
	der_tlv(&out, 0x30, body.p, body.n);
	free(body.p);
	free(attr.p);
	free(set.p);
	free(xattr.p);
	free(xset.p);
	if (out.bad || body.bad || attr.bad || set.bad || xattr.bad) {
		free(out.p);
		return -1;
	}
	*der = out.p;
	*len = out.n;
	return 0;
}

/* RFC 7030 s4.1.3 / s4.2.3: a "certs-only" CMC Simple PKI Response, i.e.
 * SignedData with no signers and no content (RFC 5652 s5.1). */
int est_certs_only_der(STACK_OF(X509) *certs, unsigned char **der, size_t *len)
{
	PKCS7 *p7 = PKCS7_new();
	unsigned char *buf = NULL;
	int i, n, rc = -1;

	*der = NULL;
	*len = 0;
	if (p7 == NULL || !PKCS7_set_type(p7, NID_pkcs7_signed) || !PKCS7_content_new(p7, NID_pkcs7_data))
		goto out;
	for (i = 0; i < sk_X509_num(certs); i++)
		if (!PKCS7_add_certificate(p7, sk_X509_value(certs, i)))
			goto out;
	n = i2d_PKCS7(p7, &buf);
	if (n <= 0)
		goto out;
	*der = buf;
	*len = (size_t)n;
	rc = 0;
out:
	PKCS7_free(p7);
	ERR_clear_error();
	return rc;
}

int est_challenge_password(X509_REQ *req, char *out, size_t outlen)
{
	int loc = X509_REQ_get_attr_by_NID(req, NID_pkcs9_challengePassword, -1);
	X509_ATTRIBUTE *a;
	ASN1_TYPE *t;
	const ASN1_STRING *s;
	int len;

	out[0] = '\0';
	if (loc < 0 || (a = X509_REQ_get_attr(req, loc)) == NULL || X509_ATTRIBUTE_count(a) != 1 ||
	    (t = X509_ATTRIBUTE_get0_type(a, 0)) == NULL)
		return -1;
	/* PKCS#9 s5.4.1: DirectoryString (PrintableString or UTF8String in practice) */
	switch (t->type) {
	case V_ASN1_PRINTABLESTRING:
	case V_ASN1_UTF8STRING:
	case V_ASN1_IA5STRING:
	case V_ASN1_T61STRING:
		s = t->value.asn1_string;
		break;
	default:
		return -1;
	}
	len = ASN1_STRING_length(s);
	if (len < 0 || (size_t)len >= outlen || memchr(ASN1_STRING_get0_data(s), '\0', (size_t)len) != NULL)
		return -1;
	memcpy(out, ASN1_STRING_get0_data(s), (size_t)len);
	out[len] = '\0';
	return 0;
}
