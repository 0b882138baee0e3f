/* p11cert check / renew: keep the token identity fresh (systemd timers). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include <p11cert/enroll.h>
#include <p11cert/proto.h>

#include "renew.h"

/* check: systemd ExecCondition= semantics */
#define CHECK_RENEW 0
#define CHECK_FRESH 1
#define CHECK_ERROR 255

struct threshold {
	long num, den; /* fraction of the lifetime, or */
	long days;     /* days before notAfter */
};

static int parse_threshold(const char *s, struct threshold *t)
{
	char *end;

	memset(t, 0, sizeof *t);
	if (strchr(s, '/') != NULL) {
		t->num = strtol(s, &end, 10);
		if (*end != '/' || t->num <= 0)
			return -1;
		t->den = strtol(end + 1, &end, 10);
		return *end == '\0' && t->den > t->num ? 0 : -1;
	}
	t->days = strtol(s, &end, 10);
	if (*end == 'd')
		end++;
	return *end == '\0' && t->days > 0 ? 0 : -1;
}

/* When the certificate should be renewed. */
static time_t renew_at(X509 *x, const struct threshold *t)
{
	time_t nb = ca_time(X509_get0_notBefore(x)), na = ca_time(X509_get0_notAfter(x));

	if (t->days > 0)
		return na - t->days * 86400L;
	return nb + (time_t)((double)(na - nb) * (double)t->num / (double)t->den);
}

static void iso(time_t t, char *buf, size_t len)
{
	struct tm tm;

	gmtime_r(&t, &tm);
	strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static const char check_help[] =
	"usage: p11cert check (--key URI | --id CLIENTID [--dir DIR]) [--threshold 2/3|DAYS]\n"
	"                     [--json]\n"
	"\n"
	"Does the certificate of the token key need renewal?  The key is URI, or the\n"
	"one of the enrollment record DIR/CLIENTID.enroll (the record renew uses;\n"
	"DIR defaults to $CARAMEL_CERT_DIR or the current folder).  Exit 0: yes\n"
	"(missing, expired, or past the threshold: a fraction of its lifetime,\n"
	"default 2/3, or a number of days before it expires); 1: no; 255: error.\n"
	"Made for systemd's ExecCondition=, which skips the unit on 1-254 and fails\n"
	"it on 255.\n";

int cmd_check(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' }, { "threshold", required_argument, NULL, 't' },
		{ "json", no_argument, NULL, 'j' },	 { "id", required_argument, NULL, 'i' },
		{ "dir", required_argument, NULL, 'd' }, { NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *th = "2/3", *reason, *id = NULL, *dir = getenv("CARAMEL_CERT_DIR");
	const struct cli_protocol *pr = NULL;
	struct renew_job rj;
	struct threshold t;
	int json = 0, ch, rc = CHECK_ERROR, need;
	p11c_key *key = NULL;
	X509 *cert = NULL;
	p11c_result r;
	time_t now = time(NULL), at = 0;
	char nb[32] = "", na[32] = "", ra[32] = "";

	if (cli_help(argc, argv, check_help))
		return 0;
	memset(&rj, 0, sizeof rj);
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k': uri = optarg; break;
		case 't': th = optarg; break;
		case 'j': json = 1; break;
		case 'i': id = optarg; break;
		case 'd': dir = optarg; break;
		default: cli_bad_option(c, argv); return CHECK_ERROR;
		}
	}
	if ((uri == NULL) == (id == NULL) || optind != argc) {
		cli_usage(c, "--key URI or --id CLIENTID is required (one of them)");
		return CHECK_ERROR;
	}
	if (parse_threshold(th, &t) != 0) {
		cli_usage(c, "--threshold must be a fraction like 2/3 or a number of days, not '%s'", th);
		return CHECK_ERROR;
	}
	/* the key of the enrollment record, read as renew reads it (the
	 * protocol table: proto/protocol.c) */
	if (id != NULL) {
		if (cli_record_load(c, dir != NULL ? dir : ".", id, &rj, &pr) != 0)
			return CHECK_ERROR;
		uri = rj.uri;
	}
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &key)) != P11C_OK) {
		cli_fail(c, r, NULL);
		goto out;
	}
	r = p11c_cert_get(c->ctx, key, &cert);
	if (r == P11C_ERR_NOT_FOUND) {
		need = 1;
		reason = "no certificate";
	} else if (r != P11C_OK) {
		cli_fail(c, r, NULL);
		goto out;
	} else {
		at = renew_at(cert, &t);
		iso(ca_time(X509_get0_notBefore(cert)), nb, sizeof nb);
		iso(ca_time(X509_get0_notAfter(cert)), na, sizeof na);
		iso(at, ra, sizeof ra);
		if (X509_cmp_time(X509_get0_notAfter(cert), NULL) <= 0) {
			need = 1;
			reason = "expired";
		} else if (now >= at) {
			need = 1;
			reason = "past the renewal threshold";
		} else {
			need = 0;
			reason = "valid";
		}
	}
	if (json) {
		json_t *j = json_pack("{s:s, s:b, s:s, s:b, s:s}", "key", uri, "certificate", cert != NULL, "threshold",
				      th, "needs_renewal", need, "reason", reason);
		char *s;

		if (j != NULL && cert != NULL) {
			json_object_set_new(j, "not_before", json_string(nb));
			json_object_set_new(j, "not_after", json_string(na));
			json_object_set_new(j, "renew_at", json_string(ra));
		}
		s = j ? json_dumps(j, JSON_INDENT(2)) : NULL;
		printf("%s\n", s ? s : "{}");
		free(s);
		json_decref(j);
	} else if (!c->quiet) {
		if (cert != NULL)
			printf("%s: %s; valid %s to %s, renew from %s\n", need ? "renew" : "fresh", reason, nb, na, ra);
		else
			printf("renew: %s\n", reason);
	}
	rc = need ? CHECK_RENEW : CHECK_FRESH;
out:
	X509_free(cert);
	p11c_key_free(&key);
	json_decref(rj.rec);
	return rc;
}

/* --- renew ------------------------------------------------------------------ */

static X509 *token_cert(struct cli *c, const char *uri)
{
	p11c_key *k = NULL;
	X509 *x = NULL;

	if (p11c_key_find(c->ctx, uri, &k) == P11C_OK)
		(void)p11c_cert_get(c->ctx, k, &x);
	p11c_key_free(&k);
	ERR_clear_error();
	return x;
}

char *cli_rekey_uri(p11c_ctx *ctx, const char *label)
{
	char *tmp = NULL, *uri;

	if (asprintf(&tmp, "%s~rekey", label) < 0)
		return NULL;
	uri = p11c_label_uri(ctx, tmp);
	free(tmp);
	return uri;
}

int cli_rekey_key(struct cli *c, p11c_key *old, const char *label, p11c_key **nkey)
{
	char *uri = cli_rekey_uri(c->ctx, label);
	p11c_result r = P11C_OK;

	if (uri == NULL)
		return EX_SOFTWARE;
	/* a leftover of a failed rekey is reused: it never had a certificate */
	if (p11c_key_find(c->ctx, uri, nkey) != P11C_OK)
		r = p11c_keygen(c->ctx, uri, p11c_key_get_type(old), 0, nkey);
	free(uri);
	return r == P11C_OK ? 0 : cli_fail(c, r, "cannot generate the new key");
}

static const char renew_help[] =
	"usage: p11cert renew [--dir DIR] [--id CLIENTID] [--rekey] [--exec CMD] [--jitter SECONDS]\n"
	"\n"
	"Renew through the protocol recorded at enrollment (DIR/CLIENTID.enroll; DIR\n"
	"defaults to $CARAMEL_CERT_DIR or the current folder).  Caramel: presenting\n"
	"the current certificate with the token key (mutual TLS).  Shared token\n"
	"(CLIENTID = the key label): with the token while its file exists, else over\n"
	"mutual TLS at p11ca's /renew.  --rekey makes a new key in the token; the old\n"
	"key and certificate are destroyed only after the new certificate is stored\n"
	"and verified; a rekey the CA has not signed yet is resumed by the next run.\n"
	"--exec CMD runs (sh -c) once after a certificate was renewed.  --jitter S\n"
	"waits a random 0..S seconds first.\n"
	"Exit: 0 renewed or current, 69 pending, 75 locked, 78 unsafe state folder or\n"
	"record, others as enroll.  The hook runs without P11CERT_PIN, P11CERT_CA_TOKEN.\n";

int cmd_renew(struct cli *c, int argc, char **argv);
int cmd_renew(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },  { "id", required_argument, NULL, 'i' },
		{ "rekey", no_argument, NULL, 'r' },	  { "exec", required_argument, NULL, 'x' },
		{ "jitter", required_argument, NULL, 'j' }, { NULL, 0, NULL, 0 },
	};
	const char *dir = getenv("CARAMEL_CERT_DIR"), *id = NULL, *hook = NULL;
	long jitter = 0;
	int rekey = 0, ch, rc = EX_FAIL;
	const struct cli_protocol *pr;
	struct renew_job j;
	X509 *before = NULL, *after = NULL;
	p11c_result r;

	if (cli_help(argc, argv, renew_help))
		return 0;
	memset(&j, 0, sizeof j);
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'i': id = optarg; break;
		case 'r': rekey = 1; break;
		case 'x': hook = optarg; break;
		case 'j':
			if (cli_num(c, "--jitter", optarg, 0, 86400, &jitter) != 0)
				return EX_USAGE;
			break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (dir == NULL)
		dir = ".";
	if (id == NULL) {
		return cli_usage(c, "--id CLIENTID is required (the name of DIR/CLIENTID.enroll)");
	}
	/* the record, through the protocol table (proto/protocol.c) */
	if ((rc = cli_record_load(c, dir, id, &j, &pr)) != 0)
		goto out;
	j.rekey = rekey;
	if (jitter > 0) {
		unsigned int r32 = 0;
		struct timespec ts;

		RAND_bytes((unsigned char *)&r32, sizeof r32);
		ts.tv_sec = (time_t)(r32 % (unsigned int)(jitter + 1));
		ts.tv_nsec = 0;
		nanosleep(&ts, NULL);
	}
	if ((r = cli_ctx(c)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	before = token_cert(c, j.uri);
	rc = pr->renew(c, &j);
	if (rc != 0)
		goto out;
	after = token_cert(c, j.uri);
	/* success means a valid certificate for the key is in place, whatever
	 * the server said (a 304 proves nothing) */
	if (after == NULL || X509_cmp_time(X509_get0_notAfter(after), NULL) <= 0 ||
	    X509_cmp_time(X509_get0_notBefore(after), NULL) > 0) {
		fprintf(stderr, "p11cert: renew: no valid certificate in the token after renewal\n");
		rc = EX_FAIL;
		goto out;
	}
	if (before != NULL && X509_cmp(before, after) == 0) {
		if (!c->quiet)
			fprintf(stderr, "p11cert: renew: the certificate is current; nothing renewed\n");
		goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: renew: renewed '%s'%s\n", j.id, rekey ? " with a new key" : "");
	if (hook != NULL) {
		int hr = cli_run_hook(hook);

		if (hr != 0) {
			fprintf(stderr, "p11cert: renew: renewed, but the hook '%s' exited %d\n", hook, hr);
			rc = EX_FAIL;
		}
	}
out:
	json_decref(j.rec);
	X509_free(before);
	X509_free(after);
	return rc;
}
