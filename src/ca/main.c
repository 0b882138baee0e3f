/* p11ca: the certificate authority server and its administration. */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <arpa/inet.h>
#include <ctype.h>
#include <openssl/x509v3.h>

#include "ca.h"
#include "statedir.h"
#include "proto/est.h"

static const char usage[] =
	"usage: p11ca COMMAND --dir DIR [OPTIONS]\n"
	"\n"
	"  init     create a CA: key (token or file), certificate, database\n"
	"  serve    HTTPS: Caramel and the shared-token protocol\n"
	"  list     requests [--pending | --all] [--json]\n"
	"  show     one request and its certificates: ID or SHA256 [--json]\n"
	"  sign     sign a request: ID or SHA256 [--long]\n"
	"  reject   reject a request: ID or SHA256\n"
	"  refresh  re-sign every signed request not rejected nor revoked (for a timer)\n"
	"  revoke   revoke a certificate: SERIAL (hex) [--reason N]\n"
	"  crl      write a CRL signed by the CA key [-o FILE] [--days N]\n"
	"  est-user EST (HTTP Basic) users: add NAME | remove NAME | list [--file USERS]\n"
	"\n"
	"DIR defaults to $P11CA_DIR.  Settings (docs/ca.md) come from DIR/p11ca.conf,\n"
	"then P11CA_<NAME> variables, then --NAME VALUE flags:\n"
	"  --key --tls-key --module --pin-file --short-lifetime --long-lifetime\n"
	"  --token-lifetime --autosign --renew-mtls --listen --token-listen --token-file\n"
	"  --url --san-patterns --token-dn-suffix --token-rate-limit --timeout\n"
	"  --max-connections --san-wildcards --max-connections-per-address\n"
	"  --token-rate-limit-global --access-log-rows --db --db-password-file\n"
	"  --token-rate-limit-shared --signers --sign-queue\n"
	"\n"
	"init: [--type ec:P-256|ec:P-384|rsa:2048|rsa:3072|rsa:4096] [--C --ST --L --O --OU --CN]\n"
	"      [--days N] [--hostname NAME]... (TLS server certificate)\n"
	"      [--ca-hostname NAME] (the CA certificate itself serves TLS: shared-token mode)\n"
	"Core dumps are off (the CA's PIN, the shared token); --allow-core-dumps for debugging.\n"
	"Exit codes: 0 ok, 1 failure, 64 usage, 66 no such request.\n";

#define MAX_HOSTNAMES 16

struct opts {
	const char *dir;
	struct ca_config flags;
	int json, pending, all, lng, allow_core;
	long reason, days;
	const char *type, *out, *port_file, *ca_hostname;
	const char *rdn[6]; /* C ST L O OU CN */
	const char *hostnames[MAX_HOSTNAMES];
	int nhost;
	int argc;
	char **args;
};

enum { O_DIR = 256, O_JSON, O_PENDING, O_ALL, O_LONG, O_REASON, O_DAYS, O_TYPE, O_OUT, O_PORTFILE,
       O_HOSTNAME, O_CAHOST, O_C, O_ST, O_L, O_O, O_OU, O_CN, O_HELP, O_ALLOWCORE, O_CONF = 1000 };

/* A whole decimal number in [min, max], or a message naming the option. */
static int num_opt(const char *name, const char *s, long min, long max, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max) {
		fprintf(stderr, "p11ca: %s '%s': expected a number from %ld to %ld\n", name, s, min, max);
		return -1;
	}
	*out = v;
	return 0;
}

static int parse(int argc, char **argv, struct opts *o)
{
	struct option lo[64];
	size_t n = 0, i;
	int ch;
	static const struct { const char *name; int has; int val; } fixed[] = {
		{ "dir", 1, O_DIR }, { "json", 0, O_JSON }, { "pending", 0, O_PENDING },
		{ "all", 0, O_ALL }, { "long", 0, O_LONG }, { "reason", 1, O_REASON },
		{ "days", 1, O_DAYS }, { "type", 1, O_TYPE }, { "out", 1, O_OUT },
		{ "port-file", 1, O_PORTFILE }, { "hostname", 1, O_HOSTNAME }, { "ca-hostname", 1, O_CAHOST },
		{ "C", 1, O_C }, { "ST", 1, O_ST }, { "L", 1, O_L }, { "O", 1, O_O }, { "OU", 1, O_OU },
		{ "CN", 1, O_CN }, { "help", 0, O_HELP }, { "allow-core-dumps", 0, O_ALLOWCORE },
	};

	memset(o, 0, sizeof *o);
	ca_config_defaults(&o->flags);
	o->dir = getenv("P11CA_DIR");
	o->reason = -1;
	for (i = 0; i < sizeof fixed / sizeof fixed[0]; i++)
		lo[n++] = (struct option){ fixed[i].name, fixed[i].has ? required_argument : no_argument, NULL,
					   fixed[i].val };
	for (i = 0; ca_config_names[i] != NULL; i++)
		lo[n++] = (struct option){ ca_config_names[i], required_argument, NULL, O_CONF + (int)i };
	lo[n] = (struct option){ NULL, 0, NULL, 0 };
	opterr = 0;
	while ((ch = getopt_long(argc, argv, "o:", lo, NULL)) != -1) {
		char err[256];

		switch (ch) {
		case O_DIR: o->dir = optarg; break;
		case O_JSON: o->json = 1; break;
		case O_PENDING: o->pending = 1; break;
		case O_ALL: o->all = 1; break;
		case O_LONG: o->lng = 1; break;
		case O_ALLOWCORE: o->allow_core = 1; break;
		case O_REASON:
			/* RFC 5280 CRLReason: 0..10, 7 is unused */
			if (num_opt("--reason", optarg, 0, 10, &o->reason) != 0 || o->reason == 7) {
				fprintf(stderr, "p11ca: --reason '%s': not an RFC 5280 CRLReason code "
					"(0-10 except 7)\n", optarg);
				return -1;
			}
			break;
		case O_DAYS:
			if (num_opt("--days", optarg, 1, 36500, &o->days) != 0)
				return -1;
			break;
		case O_TYPE: o->type = optarg; break;
		case 'o':
		case O_OUT: o->out = optarg; break;
		case O_PORTFILE: o->port_file = optarg; break;
		case O_HOSTNAME:
			if (o->nhost == MAX_HOSTNAMES) {
				fprintf(stderr, "p11ca: at most %d --hostname\n", MAX_HOSTNAMES);
				return -1;
			}
			o->hostnames[o->nhost++] = optarg;
			break;
		case O_CAHOST: o->ca_hostname = optarg; break;
		case O_C: case O_ST: case O_L: case O_O: case O_OU: case O_CN:
			o->rdn[ch - O_C] = optarg;
			break;
		case O_HELP:
			fputs(usage, stdout);
			exit(0);
		default:
			if (ch >= O_CONF) {
				if (ca_config_set(&o->flags, ca_config_names[ch - O_CONF], optarg, err, sizeof err) != 0) {
					fprintf(stderr, "p11ca: %s\n", err);
					return -1;
				}
				break;
			}
			fprintf(stderr, "p11ca: unknown option or missing value: '%s' (see p11ca --help)\n",
				argv[optind - 1]);
			return -1;
		}
	}
	o->argc = argc - optind;
	o->args = argv + optind;
	if (o->dir == NULL) {
		fprintf(stderr, "p11ca: --dir DIR (or P11CA_DIR) is required\n");
		return -1;
	}
	return 0;
}

/* --- init ---------------------------------------------------------------------- */

static EVP_PKEY *gen_file_key(const char *type)
{
	if (type == NULL || strcmp(type, "ec:P-256") == 0 || strcasecmp(type, "ec") == 0)
		return EVP_EC_gen("P-256");
	if (strcmp(type, "ec:P-384") == 0)
		return EVP_EC_gen("P-384");
	if (strcmp(type, "rsa:2048") == 0 || strcmp(type, "rsa") == 0)
		return EVP_RSA_gen(2048);
	if (strcmp(type, "rsa:3072") == 0)
		return EVP_RSA_gen(3072);
	if (strcmp(type, "rsa:4096") == 0)
		return EVP_RSA_gen(4096);
	return NULL;
}

/* New PEM key file, mode 0600, never over an existing file. */
static int write_key_file(const char *path, EVP_PKEY *k)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
	FILE *fp;
	int ok;

	if (fd < 0) {
		ca_err("cannot create key file '%s': %s", path, strerror(errno));
		return -1;
	}
	fp = fdopen(fd, "w");
	if (fp == NULL) {
		close(fd);
		return -1;
	}
	ok = PEM_write_PrivateKey(fp, k, NULL, NULL, 0, NULL, NULL) == 1;
	ok = fflush(fp) == 0 && fsync(fileno(fp)) == 0 && ok;
	ok = fclose(fp) == 0 && ok;
	if (!ok) {
		unlink(path);
		ca_err("cannot write key file '%s'", path);
	}
	return ok ? 0 : -1;
}

static int add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
	X509V3_CTX v3;
	X509_EXTENSION *e;
	int ok;

	X509V3_set_ctx(&v3, issuer, x, NULL, NULL, 0);
	e = X509V3_EXT_conf_nid(NULL, &v3, nid, value);
	ok = e != NULL && X509_add_ext(x, e, -1);
	X509_EXTENSION_free(e);
	if (!ok)
		ca_err("cannot add extension %s = %s", OBJ_nid2sn(nid), value);
	return ok ? 0 : -1;
}

/* 16 octets, top bits 01: positive, fixed length, 126 random bits */
static int set_random_serial(X509 *x)
{
	unsigned char b[16];
	BIGNUM *bn;
	int ok;

	if (RAND_bytes(b, sizeof b) != 1)
		return -1;
	b[0] = (unsigned char)((b[0] & 0x7f) | 0x40);
	bn = BN_bin2bn(b, sizeof b, NULL);
	ok = bn != NULL && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(x)) != NULL;
	BN_free(bn);
	return ok ? 0 : -1;
}

static const EVP_MD *md_for(EVP_PKEY *k)
{
	return EVP_PKEY_get_bits(k) > (EVP_PKEY_get_base_id(k) == EVP_PKEY_EC ? 256 : 2048) ? EVP_sha384()
												 : EVP_sha256();
}

static void san_list(char *buf, size_t len, const char *const *names, int n)
{
	size_t used = 0;
	int i;

	buf[0] = '\0';
	for (i = 0; i < n && used < len; i++) {
		unsigned char tmp[16];
		int ip = inet_pton(AF_INET, names[i], tmp) == 1 || inet_pton(AF_INET6, names[i], tmp) == 1;
		int k = snprintf(buf + used, len - used, "%s%s:%s", i ? "," : "", ip ? "IP" : "DNS", names[i]);

		if (k > 0)
			used += (size_t)k;
	}
}

static int cmd_init(struct opts *o)
{
	struct ca_config *f = &o->flags;
	EVP_PKEY *key = NULL, *pub = NULL, *tls_key = NULL;
	p11c_ctx *p11 = NULL;
	p11c_key *tkey = NULL;
	X509 *cert = NULL, *tls = NULL;
	X509_NAME *name = NULL;
	char *path = NULL, sans[1024], *pem = NULL;
	static const char *const rdn_names[] = { "C", "ST", "L", "O", "OU", "CN" };
	long days = o->days > 0 ? o->days : 3650;
	struct ca ca;
	int i, rc = 1;

	memset(&ca, 0, sizeof ca);
	if (mkdir(o->dir, 0700) != 0 && errno != EEXIST) {
		ca_err("cannot create '%s': %s", o->dir, strerror(errno));
		return 1;
	}
	path = ca_path(o->dir, "ca.crt");
	if (path == NULL || access(path, F_OK) == 0) {
		ca_err("'%s' already holds a CA (%s exists); nothing changed", o->dir, path ? path : "ca.crt");
		goto out;
	}
	/* the key */
	if (f->key != NULL && strncmp(f->key, "pkcs11:", 7) == 0) {
		p11c_key_type kt = P11C_KEY_EC_P256;
		p11c_result r;

		if (o->type != NULL && p11c_key_type_parse(o->type, &kt) != P11C_OK) {
			ca_err("unknown --type '%s'", o->type);
			goto out;
		}
		if (p11c_ctx_new(&p11) != P11C_OK)
			goto out;
		if (f->module != NULL)
			p11c_ctx_set_module(p11, f->module);
		if (f->pin_file != NULL)
			p11c_ctx_set_pin_file(p11, f->pin_file);
		r = p11c_key_find(p11, f->key, &tkey);
		if (r == P11C_ERR_NOT_FOUND) {
			r = p11c_keygen(p11, f->key, kt, 0, &tkey);
			if (r == P11C_OK)
				fprintf(stderr, "p11ca: generated the CA key in the token: %s\n", f->key);
		}
		if (r == P11C_OK)
			r = p11c_key_signer(tkey, &key);
		if (r != P11C_OK) {
			ca_errp(p11, "cannot use the CA key '%s'", f->key);
			goto out;
		}
		EVP_PKEY_up_ref(key);
		pub = p11c_key_public(tkey);
		EVP_PKEY_up_ref(pub);
	} else {
		char *kp;

		if (f->key == NULL)
			f->key = strdup("ca.key");
		kp = ca_path(o->dir, f->key);
		key = gen_file_key(o->type);
		if (key == NULL) {
			ca_err("cannot generate a '%s' key", o->type ? o->type : "ec:P-256");
			free(kp);
			goto out;
		}
		if (kp == NULL || write_key_file(kp, key) != 0) {
			free(kp);
			goto out;
		}
		free(kp);
		pub = key;
		EVP_PKEY_up_ref(pub);
	}
	/* the subject */
	name = X509_NAME_new();
	if (name == NULL)
		goto out;
	if (o->rdn[5] == NULL)
		o->rdn[5] = o->ca_hostname ? o->ca_hostname : "p11ca Signing Certificate";
	for (i = 0; i < 6; i++) {
		if (o->rdn[i] != NULL && !X509_NAME_add_entry_by_txt(name, rdn_names[i], MBSTRING_UTF8,
								   (const unsigned char *)o->rdn[i], -1, -1, 0)) {
			ca_err("invalid --%s '%s'", rdn_names[i], o->rdn[i]);
			goto out;
		}
	}
	/* the CA certificate */
	cert = X509_new();
	if (cert == NULL || !X509_set_version(cert, 2) || set_random_serial(cert) != 0 ||
	    !X509_set_subject_name(cert, name) || !X509_set_issuer_name(cert, name) ||
	    !X509_gmtime_adj(X509_getm_notBefore(cert), -300) ||
	    !X509_time_adj_ex(X509_getm_notAfter(cert), (int)days, 0, NULL) || !X509_set_pubkey(cert, pub))
		goto out;
	if (add_ext(cert, cert, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") != 0 ||
	    add_ext(cert, cert, NID_key_usage,
		    o->ca_hostname ? "critical,keyCertSign,cRLSign,digitalSignature" : "critical,keyCertSign,cRLSign") != 0 ||
	    add_ext(cert, cert, NID_subject_key_identifier, "hash") != 0)
		goto out;
	if (o->ca_hostname != NULL) {
		san_list(sans, sizeof sans, &o->ca_hostname, 1);
		if (add_ext(cert, cert, NID_subject_alt_name, sans) != 0)
			goto out;
	}
	if (X509_sign(cert, key, md_for(pub)) <= 0) {
		ca_errp(p11, "signing the CA certificate failed");
		goto out;
	}
	pem = ca_x509_pem(cert);
	if (pem == NULL || p11c_file_write_atomic(path, pem, strlen(pem), 0644) != P11C_OK) {
		ca_err("cannot write %s", path);
		goto out;
	}
	if (tkey != NULL && p11c_cert_store(p11, tkey, cert) != P11C_OK)
		ca_errp(p11, "warning: could not store the CA certificate in the token");
	/* the TLS server certificate, issued by the CA */
	if (o->nhost > 0) {
		char *tp;

		if (f->tls_key == NULL && f->key != NULL && strncmp(f->key, "pkcs11:", 7) == 0)
			ca_err("note: the TLS server key is a file (tls.key); give --tls-key pkcs11:... to keep it in a token");
		if (f->tls_key == NULL)
			f->tls_key = strdup("tls.key");
		tls_key = EVP_EC_gen("P-256");
		tp = ca_path(o->dir, f->tls_key);
		if (tls_key == NULL || tp == NULL || write_key_file(tp, tls_key) != 0) {
			free(tp);
			goto out;
		}
		free(tp);
		X509_NAME_free(name);
		name = X509_NAME_new();
		tls = X509_new();
		san_list(sans, sizeof sans, o->hostnames, o->nhost);
		if (name == NULL || tls == NULL ||
		    !X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)o->hostnames[0], -1, -1, 0) ||
		    !X509_set_version(tls, 2) || set_random_serial(tls) != 0 || !X509_set_subject_name(tls, name) ||
		    !X509_set_issuer_name(tls, X509_get_subject_name(cert)) ||
		    !X509_gmtime_adj(X509_getm_notBefore(tls), -300) ||
		    !X509_time_adj_ex(X509_getm_notAfter(tls), (int)(days < 825 ? days : 825), 0, NULL) ||
		    !X509_set_pubkey(tls, tls_key) ||
		    add_ext(tls, cert, NID_basic_constraints, "critical,CA:FALSE") != 0 ||
		    add_ext(tls, cert, NID_key_usage, "critical,digitalSignature") != 0 ||
		    add_ext(tls, cert, NID_ext_key_usage, "serverAuth") != 0 ||
		    add_ext(tls, cert, NID_subject_alt_name, sans) != 0 ||
		    add_ext(tls, cert, NID_subject_key_identifier, "hash") != 0 ||
		    add_ext(tls, cert, NID_authority_key_identifier, "keyid:always") != 0 ||
		    X509_sign(tls, key, md_for(pub)) <= 0)
			goto out;
		free(pem);
		free(path);
		pem = ca_x509_pem(tls);
		path = ca_path(o->dir, "tls.crt");
		if (pem == NULL || path == NULL || p11c_file_write_atomic(path, pem, strlen(pem), 0644) != P11C_OK)
			goto out;
	}
	if (ca_config_save(f, o->dir) != 0) {
		ca_err("cannot write %s/%s", o->dir, CA_CONFIG_FILE);
		goto out;
	}
	/* create the database now, so admin commands work at once */
	if (ca_open(&ca, o->dir, f, 0) != 0)
		goto out;
	ca_close(&ca);
	fprintf(stderr, "p11ca: CA ready in %s\n", o->dir);
	X509_NAME_print_ex_fp(stdout, X509_get_subject_name(cert), 0, XN_FLAG_RFC2253);
	fputc('\n', stdout);
	rc = 0;
out:
	free(pem);
	free(path);
	X509_free(cert);
	X509_free(tls);
	X509_NAME_free(name);
	EVP_PKEY_free(key);
	EVP_PKEY_free(pub);
	EVP_PKEY_free(tls_key);
	p11c_key_free(&tkey);
	p11c_ctx_free(&p11);
	return rc;
}

/* --- administration ----------------------------------------------------------- */

static int find_request(struct ca *ca, const char *what, struct store_request *r)
{
	char *end;
	long long id;

	if (p11c_is_sha256_hex(what))
		return ca->so->req_by_sha256(ca->st, what, r) == STORE_OK ? 0 : -1;
	id = strtoll(what, &end, 10);
	if (*what != '\0' && *end == '\0' && id > 0)
		return ca->so->req_by_id(ca->st, id, r) == STORE_OK ? 0 : -1;
	return -1;
}

/* Length of the well-formed UTF-8 sequence at s (RFC 3629 s4: no overlong
 * forms, no surrogates, at most U+10FFFF) that is not a C1 control
 * (U+0080-U+009F), or 0. */
static size_t utf8_printable(const unsigned char *s, size_t n)
{
	unsigned long cp;
	size_t len, i;

	if (s[0] < 0xC2 || s[0] > 0xF4)
		return 0;
	len = s[0] < 0xE0 ? 2 : s[0] < 0xF0 ? 3 : 4;
	if (len > n)
		return 0;
	cp = s[0] & (0x7F >> len);
	for (i = 1; i < len; i++) {
		if ((s[i] & 0xC0) != 0x80)
			return 0;
		cp = (cp << 6) | (s[i] & 0x3F);
	}
	if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10FFFF)) ||
	    (cp >= 0xD800 && cp <= 0xDFFF) || (cp >= 0x80 && cp <= 0x9F))
		return 0;
	return len;
}

static int hexval(char c)
{
	return c >= '0' && c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}

/* A stored subject (RFC 2253 with OpenSSL's escapes: "L=Link\C3\B6ping")
 * for people: \XX escapes of bytes >= 0x80 become those bytes, printed as
 * UTF-8 when they form printable UTF-8; control characters (C0, DEL, C1)
 * and bytes that are not UTF-8 stay (or become) \XX escapes, so a subject
 * cannot move the terminal's cursor or break the JSON.  Bounded by out. */
static const char *subject_display(const char *in, char *out, size_t outlen)
{
	unsigned char raw[1024];
	size_t n = 0, i = 0, j = 0, k;
	static const char hex[] = "0123456789ABCDEF";

	if (in == NULL)
		return "";
	while (in[i] != '\0' && n < sizeof raw) {
		if (in[i] == '\\' && isxdigit((unsigned char)in[i + 1]) && isxdigit((unsigned char)in[i + 2])) {
			unsigned v = (unsigned)(hexval(in[i + 1]) << 4 | hexval(in[i + 2]));

			if (v >= 0x80) {
				raw[n++] = (unsigned char)v;
				i += 3;
				continue;
			}
		}
		raw[n++] = (unsigned char)in[i++];
	}
	for (i = 0; i < n && j + 4 < outlen;) {
		if (raw[i] >= 0x20 && raw[i] < 0x7F) {
			out[j++] = (char)raw[i++];
		} else if ((k = utf8_printable(raw + i, n - i)) > 0) {
			if (j + k + 1 >= outlen)
				break;
			memcpy(out + j, raw + i, k);
			j += k;
			i += k;
		} else {
			out[j++] = '\\';
			out[j++] = hex[raw[i] >> 4];
			out[j++] = hex[raw[i] & 15];
			i++;
		}
	}
	out[j] = '\0';
	return out;
}

static json_t *req_json(struct ca *ca, const struct store_request *r)
{
	json_t *j = json_object();
	struct store_cert c;

	memset(&c, 0, sizeof c);
	json_object_set_new(j, "id", json_integer(r->id));
	json_object_set_new(j, "sha256", json_string(r->sha256));
	char subj[2048];

	json_object_set_new(j, "subject", json_string(subject_display(r->subject, subj, sizeof subj)));
	json_object_set_new(j, "cn", json_string(r->cn));
	json_object_set_new(j, "ou", r->ou ? json_string(r->ou) : json_null());
	json_object_set_new(j, "state", json_string(store_state_name(r->state)));
	json_object_set_new(j, "lifetime", json_string(r->lifetime == LIFETIME_LONG ? "long" : "short"));
	json_object_set_new(j, "protocol", json_string(r->protocol));
	json_object_set_new(j, "created", json_integer(r->created));
	json_object_set_new(j, "certificates", json_integer(r->signed_count));
	if (ca->so->cert_latest(ca->st, r->id, &c) == STORE_OK) {
		json_object_set_new(j, "serial", json_string(c.serial));
		json_object_set_new(j, "not_after", json_integer(c.not_after));
		json_object_set_new(j, "revoked", json_boolean(c.revoked != 0));
	}
	store_cert_clear(&c);
	return j;
}

struct list_ctx {
	struct ca *ca;
	json_t *arr;
	int all;
};

static int list_cb(const struct store_request *r, void *ud)
{
	struct list_ctx *l = ud;
	char subj[2048];

	if (!l->all && r->state == REQ_REJECTED)
		return 0;
	if (l->arr != NULL) {
		json_array_append_new(l->arr, req_json(l->ca, r));
		return 0;
	}
	printf("%-5lld %-8s %-6s %-8s %.16s  %s\n", (long long)r->id, store_state_name(r->state),
	       r->lifetime == LIFETIME_LONG ? "long" : "short", r->protocol, r->sha256,
	       subject_display(r->subject, subj, sizeof subj));
	return 0;
}

static int cmd_list(struct opts *o, struct ca *ca)
{
	struct list_ctx l = { ca, NULL, o->all };
	char *s;

	if (o->json)
		l.arr = json_array();
	else
		printf("%-5s %-8s %-6s %-8s %-16s  %s\n", "ID", "STATE", "LIFE", "PROTO", "SHA256", "SUBJECT");
	if (ca->so->req_list(ca->st, o->pending ? REQ_PENDING : -1, list_cb, &l) != STORE_OK) {
		ca_err("%s", ca->so->errmsg(ca->st));
		json_decref(l.arr);
		return 1;
	}
	if (l.arr != NULL) {
		s = json_dumps(l.arr, JSON_INDENT(2));
		printf("%s\n", s ? s : "[]");
		free(s);
		json_decref(l.arr);
	}
	return 0;
}

static int cert_cb(const struct store_cert *c, void *ud)
{
	json_t *arr = ud;
	json_t *j = json_object();

	json_object_set_new(j, "serial", json_string(c->serial));
	json_object_set_new(j, "not_before", json_integer(c->not_before));
	json_object_set_new(j, "not_after", json_integer(c->not_after));
	json_object_set_new(j, "revoked", json_integer(c->revoked));
	json_object_set_new(j, "pem", json_string(c->pem));
	json_array_append_new(arr, j);
	return 0;
}

static int cmd_show(struct opts *o, struct ca *ca)
{
	struct store_request r;
	json_t *j, *certs;
	char *s;

	memset(&r, 0, sizeof r);
	if (o->argc != 1) {
		fprintf(stderr, "p11ca: show needs one ID or SHA256\n");
		return 64;
	}
	if (find_request(ca, o->args[0], &r) != 0) {
		ca_err("no request '%s'", o->args[0]);
		return 66;
	}
	j = req_json(ca, &r);
	certs = json_array();
	ca->so->cert_list(ca->st, r.id, cert_cb, certs);
	json_object_set_new(j, "certificate_list", certs);
	json_object_set_new(j, "csr", json_string(r.pem));
	s = json_dumps(j, JSON_INDENT(2));
	if (o->json) {
		printf("%s\n", s);
	} else {
		size_t i;
		char subj[2048];

		printf("request %lld (%s, %s, %s)\n  subject  %s\n  sha256   %s\n  certificates %zu\n",
		       (long long)r.id, store_state_name(r.state), r.lifetime == LIFETIME_LONG ? "long" : "short",
		       r.protocol, subject_display(r.subject, subj, sizeof subj), r.sha256, json_array_size(certs));
		for (i = 0; i < json_array_size(certs); i++) {
			json_t *c = json_array_get(certs, i);

			printf("    serial %s  not after %lld%s\n", json_string_value(json_object_get(c, "serial")),
			       (long long)json_integer_value(json_object_get(c, "not_after")),
			       json_integer_value(json_object_get(c, "revoked")) ? "  REVOKED" : "");
		}
	}
	free(s);
	json_decref(j);
	store_request_clear(&r);
	return 0;
}

static int cmd_sign(struct opts *o, struct ca *ca, int reject)
{
	struct store_request r;
	int rc = 1;

	memset(&r, 0, sizeof r);
	if (o->argc != 1) {
		fprintf(stderr, "p11ca: %s needs one ID or SHA256\n", reject ? "reject" : "sign");
		return 64;
	}
	if (find_request(ca, o->args[0], &r) != 0) {
		ca_err("no request '%s'", o->args[0]);
		return 66;
	}
	if (reject) {
		if (ca->so->req_set_state(ca->st, r.id, REQ_REJECTED, r.lifetime, time(NULL)) == STORE_OK) {
			fprintf(stderr, "p11ca: rejected request %lld (%s)\n", (long long)r.id, r.subject);
			rc = 0;
		}
	} else if (r.state == REQ_REJECTED) {
		ca_err("request %lld was rejected; it cannot be signed", (long long)r.id);
	} else if (ca_sign_request_explicit(ca, &r, o->lng ? LIFETIME_LONG : LIFETIME_SHORT, NULL,
					    time(NULL)) == 0) {
		fprintf(stderr, "p11ca: signed request %lld (%s) for %ld hours\n", (long long)r.id, r.subject,
			o->lng ? ca->cfg.long_hours : ca->cfg.short_hours);
		rc = 0;
	}
	store_request_clear(&r);
	return rc;
}

struct refresh_ctx {
	struct ca *ca;
	int done, failed, skipped;
};

static int refresh_cb(const struct store_request *r, void *ud)
{
	struct refresh_ctx *x = ud;

	int rc = ca_sign_request(x->ca, r, r->lifetime,
				 strcmp(r->protocol, "token") == 0 ? PROFILE_TOKEN : PROFILE_CARAMEL, NULL,
				 time(NULL));

	/* 1: rejected or revoked (meanwhile): never re-signed, not a failure */
	if (rc == 0)
		x->done++;
	else if (rc == 1)
		x->skipped++;
	else
		x->failed++;
	return 0;
}

static int cmd_refresh(struct ca *ca)
{
	struct refresh_ctx x = { ca, 0, 0, 0 };
	store_result sr;

	/* several instances on one database: one refresh at a time */
	sr = ca->so->exclusive != NULL ? ca->so->exclusive(ca->st, "refresh", 1) : STORE_OK;
	if (sr == STORE_BUSY) {
		fprintf(stderr, "p11ca: %s; nothing to do here\n", ca->so->errmsg(ca->st));
		return 0;
	}
	if (sr != STORE_OK || ca->so->req_list_signed(ca->st, refresh_cb, &x) != STORE_OK) {
		ca_err("%s", ca->so->errmsg(ca->st));
		return 1;
	}
	fprintf(stderr, "p11ca: re-signed %d request%s, skipped %d rejected or revoked%s\n", x.done,
		x.done == 1 ? "" : "s", x.skipped, x.failed ? " (some failed)" : "");
	return x.failed ? 1 : 0;
}

static int cmd_revoke(struct opts *o, struct ca *ca)
{
	char serial[80];
	size_t i;
	store_result sr;

	if (o->argc != 1 || strlen(o->args[0]) >= sizeof serial) {
		fprintf(stderr, "p11ca: revoke needs one certificate serial (hex, see p11ca show)\n");
		return 64;
	}
	for (i = 0; o->args[0][i]; i++)
		serial[i] = (char)tolower((unsigned char)o->args[0][i]);
	serial[i] = '\0';
	sr = ca->so->cert_revoke(ca->st, serial, (int)o->reason, time(NULL));
	if (sr == STORE_NOT_FOUND) {
		ca_err("no certificate with serial %s", serial);
		return 66;
	}
	if (sr != STORE_OK) {
		ca_err("%s", ca->so->errmsg(ca->st));
		return 1;
	}
	fprintf(stderr, "p11ca: revoked %s; run 'p11ca crl' to publish it\n", serial);
	return 0;
}

int main(int argc, char **argv)
{
	struct opts o;
	struct ca ca;
	const char *cmd;
	int rc = 1, need_key, lock_fd = -1;

	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
		fputs(usage, argc < 2 ? stderr : stdout);
		return argc < 2 ? 64 : 0;
	}
	cmd = argv[1];
	if (strcmp(cmd, "est-user") == 0)
		return est_user_main(argc - 1, argv + 1);
	if (parse(argc - 1, argv + 1, &o) != 0)
		return 64;
	/* issue 10 point 20: p11ca holds the CA token's PIN and the shared
	 * token: no core file with them (--allow-core-dumps for debugging) */
	if (!o.allow_core && p11c_no_core_dumps() != 0)
		fprintf(stderr, "p11ca: warning: cannot disable core dumps: %s\n", strerror(errno));
	if (strcmp(cmd, "init") == 0) {
		rc = cmd_init(&o);
		ca_config_free(&o.flags);
		return rc;
	}
	need_key = strcmp(cmd, "serve") == 0 || strcmp(cmd, "sign") == 0 || strcmp(cmd, "refresh") == 0 ||
		   strcmp(cmd, "crl") == 0;
	if (!need_key && strcmp(cmd, "list") != 0 && strcmp(cmd, "show") != 0 &&
	    strcmp(cmd, "reject") != 0 && strcmp(cmd, "revoke") != 0) {
		fprintf(stderr, "p11ca: unknown command '%s' (see p11ca --help)\n", cmd);
		ca_config_free(&o.flags);
		return 64;
	}
	/* issue 10 points 11, 13: a safe folder, the CA's own database, one
	 * serve at a time (statedir.h) */
	if (ca_state_check(o.dir, &o.flags) != 0 ||
	    (strcmp(cmd, "serve") == 0 && ca_state_lock(o.dir, &lock_fd) != 0)) {
		ca_config_free(&o.flags);
		return 1;
	}
	if (ca_open(&ca, o.dir, &o.flags, need_key) != 0) {
		ca_config_free(&o.flags);
		if (lock_fd >= 0)
			close(lock_fd);
		return 1;
	}
	/* issue 10 point 10: an expired CA signs nothing; say so where an
	 * administrator looks */
	if ((strcmp(cmd, "serve") == 0 || strcmp(cmd, "show") == 0) && ca_expired(&ca, time(NULL)))
		ca_err("warning: the CA certificate expired (notAfter %s); nothing will be signed "
		       "until the CA is renewed", ca_not_after_str(&ca));
	if (need_key && ca_state_check_files(&ca, strcmp(cmd, "serve") == 0) != 0)
		rc = 1;
	else if (strcmp(cmd, "serve") == 0)
		rc = ca_serve(&ca, o.port_file);
	else if (strcmp(cmd, "list") == 0)
		rc = cmd_list(&o, &ca);
	else if (strcmp(cmd, "show") == 0)
		rc = cmd_show(&o, &ca);
	else if (strcmp(cmd, "sign") == 0)
		rc = cmd_sign(&o, &ca, 0);
	else if (strcmp(cmd, "reject") == 0)
		rc = cmd_sign(&o, &ca, 1);
	else if (strcmp(cmd, "refresh") == 0)
		rc = cmd_refresh(&ca);
	else if (strcmp(cmd, "revoke") == 0)
		rc = cmd_revoke(&o, &ca);
	else if (strcmp(cmd, "crl") == 0) {
		char *p = ca_path(o.dir, o.out ? o.out : "crl.pem");

		rc = p != NULL && ca_crl(&ca, p, o.days > 0 ? o.days : 7) == 0 ? 0 : 1;
		if (rc == 0)
			fprintf(stderr, "p11ca: wrote %s\n", p);
		free(p);
	}
	ca_close(&ca);
	ca_config_free(&o.flags);
	if (lock_fd >= 0)
		close(lock_fd);
	return rc;
}
