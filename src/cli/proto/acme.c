/* The CLI half of ACME in the protocol table (protocol.h): renewal is a
 * new order for the recorded names with the recorded account, key and
 * challenge (RFC 8555 has no renewal of its own; docs/acme.md), replacing
 * the current certificate (RFC 9773 s5); --rekey with a new key
 * (rekey.c).  The schedule is the CA's renewal information (RFC 9773),
 * kept in DIR/ID.ari between runs. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/rand.h>

#include <p11cert/acme.h>

#include "../renew.h"
#include "protocol.h"

#define ARI_STATE_MAX 4096

/* The fields an ACME record adds to the common ones: its names (1 to
 * ACME_CLI_MAX_NAMES strings). */
static int acme_record_check(struct cli *c, const struct renew_job *j)
{
	const json_t *names = json_object_get(j->rec, "names"), *v;
	size_t i;

	if (!json_is_array(names) || json_array_size(names) == 0 || json_array_size(names) > ACME_CLI_MAX_NAMES) {
		fprintf(stderr, "p11cert: %s: the ACME record of '%s' has no names (or more than %d)\n", c->cmd, j->id,
			ACME_CLI_MAX_NAMES);
		return EX_DATAERR;
	}
	json_array_foreach(names, i, v) {
		if (json_string_value(v) == NULL) {
			fprintf(stderr, "p11cert: %s: the ACME record of '%s' has a name that is not a string\n", c->cmd,
				j->id);
			return EX_DATAERR;
		}
	}
	return 0;
}

/* p11cert renew for an ACME identity: the order again, as recorded in
 * DIR/LABEL.enroll (same account, key, names and challenge). */
static int renew_acme(struct cli *c, const struct renew_job *j)
{
	static const char *const opt_of[][2] = {
		{ "account_key", "--account-key" }, { "challenge", "--challenge" }, { "http_listen", "--http-listen" },
		{ "tls_listen", "--tls-listen" },
		{ "webroot", "--webroot" },	    { "dns_hook", "--dns-hook" },   { "ca_file", "--cacert" },
	};
	char *av[2 * ACME_CLI_MAX_NAMES + 24];
	const json_t *names = json_object_get(j->rec, "names"), *v;
	struct acme_renew_opts ro;
	size_t i, k;
	int n = 0, rc;
	char *ari = NULL;

	av[n++] = (char *)"acme";
	av[n++] = (char *)"--server";
	av[n++] = (char *)(uintptr_t)j->server;
	av[n++] = (char *)"--key";
	av[n++] = (char *)(uintptr_t)j->uri;
	av[n++] = (char *)"--dir";
	av[n++] = (char *)(uintptr_t)j->dir;
	for (k = 0; k < sizeof opt_of / sizeof opt_of[0]; k++) {
		const char *val = json_string_value(json_object_get(j->rec, opt_of[k][0]));

		if (val != NULL) {
			av[n++] = (char *)(uintptr_t)opt_of[k][1];
			av[n++] = (char *)(uintptr_t)val;
		}
	}
	if (json_is_true(json_object_get(j->rec, "agree_tos")))
		av[n++] = (char *)"--agree-tos";
	json_array_foreach(names, i, v) {
		if (json_string_value(v) == NULL) {
			fprintf(stderr, "p11cert: %s: the ACME record's names are not strings\n", c->cmd);
			return EX_DATAERR;
		}
		av[n++] = (char *)"-d";
		av[n++] = (char *)(uintptr_t)json_string_value(v);
	}
	av[n] = NULL;
	optind = 0; /* a fresh getopt scan */
	memset(&ro, 0, sizeof ro);
	ro.label = j->id;
	ro.rekey = j->rekey;
	rc = acme_enroll_run(c, n, av, &ro);
	/* the renewal information was for the certificate replaced */
	if (rc == 0 && (ari = cli_path_in(j->dir, j->id, ".ari")) != NULL)
		(void)unlink(ari);
	free(ari);
	return rc;
}

/* --- RFC 9773 renewal information, kept in DIR/ID.ari ---------------------------- */

/* The kept state when it is for cert_id: the window, the time picked in
 * it, when the CA may be asked again */
static int ari_state_read(struct cli *c, const char *path, const char *cert_id, p11c_acme_ari *w, time_t *at,
			  time_t *next)
{
	unsigned char *b = NULL;
	size_t bl = 0;
	json_t *js = NULL;
	const char *id, *ex;
	json_int_t st, en, pa, nx;
	struct stat sb;
	int ok = 0;

	memset(w, 0, sizeof *w);
	if (lstat(path, &sb) != 0 || cli_state_read(c, path, ARI_STATE_MAX, &b, &bl) != 0)
		goto out;
	js = json_loadb((const char *)b, bl, JSON_REJECT_DUPLICATES, NULL);
	if (js == NULL || json_unpack(js, "{s:s, s:I, s:I, s:I, s:I}", "cert_id", &id, "start", &st, "end", &en,
				      "renew_at", &pa, "next_check", &nx) != 0 ||
	    strcmp(id, cert_id) != 0 || st <= 0 || en <= st || pa < st || pa >= en)
		goto out;
	w->start = (time_t)st;
	w->end = (time_t)en;
	*at = (time_t)pa;
	*next = (time_t)nx;
	ex = json_string_value(json_object_get(js, "explanation_url"));
	if (ex != NULL && strlen(ex) < sizeof w->explanation)
		memcpy(w->explanation, ex, strlen(ex) + 1);
	ok = 1;
out:
	json_decref(js);
	free(b);
	return ok;
}

static void ari_state_write(struct cli *c, const char *path, const char *cert_id, const p11c_acme_ari *w,
			    time_t at, time_t next)
{
	json_t *js = json_pack("{s:s, s:I, s:I, s:I, s:I, s:s}", "cert_id", cert_id, "start", (json_int_t)w->start,
			       "end", (json_int_t)w->end, "renew_at", (json_int_t)at, "next_check", (json_int_t)next,
			       "explanation_url", w->explanation);
	char *txt = js != NULL ? json_dumps(js, JSON_INDENT(2)) : NULL;

	/* a check that cannot keep it asks again next time: no failure */
	if (txt == NULL || cli_output(c, path, txt, strlen(txt), 0644) != 0)
		fprintf(stderr, "p11cert: %s: warning: cannot keep the renewal information in %s\n", c->cmd, path);
	free(txt);
	json_decref(js);
}

/* RFC 9773 s4.2: a time picked uniformly at random in the window, kept
 * while the window stays; the CA asked again after its Retry-After */
static int acme_schedule(struct cli *c, const struct renew_job *j, X509 *cert, struct cli_schedule *s)
{
	p11c_acme_server srv;
	p11c_acme *a = NULL;
	p11c_acme_ari kept, w;
	char *id = NULL, *path = NULL;
	unsigned long long rnd = 0;
	time_t now = time(NULL), at = 0, next = 0;
	int have, rc = 0;

	memset(s, 0, sizeof *s);
	if (p11c_acme_cert_id(cert, &id) != P11C_OK || (path = cli_path_in(j->dir, j->id, ".ari")) == NULL)
		goto out;
	have = ari_state_read(c, path, id, &kept, &at, &next);
	if (have && now < next) {
		w = kept; /* s4.3.3: not before its Retry-After */
	} else {
		memset(&srv, 0, sizeof srv);
		srv.directory_url = j->server;
		srv.ca_file = j->ca_file;
		if (cli_curl_ready(c) != 0 || p11c_acme_new(c->ctx, &srv, &a) != P11C_OK || !p11c_acme_ari_supported(a) ||
		    p11c_acme_renewal_info(a, cert, &w) != P11C_OK) {
			if (a != NULL && p11c_acme_ari_supported(a))
				fprintf(stderr, "p11cert: %s: warning: no renewal information from %s: %s\n", c->cmd,
					cli_safe(j->server), cli_safe(p11c_ctx_detail(c->ctx)));
			ERR_clear_error();
			if (!have)
				goto out;
			w = kept; /* what the CA said last */
		} else {
			/* s4.2: a new window, a new time in it */
			if (!have || w.start != kept.start || w.end != kept.end) {
				if (RAND_bytes((unsigned char *)&rnd, sizeof rnd) != 1) {
					ERR_clear_error();
					goto out;
				}
				at = p11c_acme_ari_pick(&w, rnd);
			}
			ari_state_write(c, path, id, &w, at, now + w.retry_after);
		}
	}
	s->start = w.start;
	s->end = w.end;
	s->at = at;
	s->due = p11c_acme_ari_due(&w, at, now);
	memcpy(s->explanation, w.explanation, sizeof s->explanation);
	rc = 1;
out:
	p11c_acme_free(&a);
	free(id);
	free(path);
	return rc;
}

const struct cli_protocol cli_proto_acme = {
	.lib = &p11c_proto_acme,
	.record_check = acme_record_check,
	.renew = renew_acme,
	.schedule = acme_schedule,
};
