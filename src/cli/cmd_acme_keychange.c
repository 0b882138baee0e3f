/*
 * p11cert acme key-change: move the ACME account of an enrollment record
 * to a new account key in the token (RFC 8555 s7.3.5; the library's
 * p11c_acme_key_change).  Crash safety: DIR/LABEL.acme-keychange names the
 * new key before the request goes out; the records (LABEL.acme-account,
 * LABEL.enroll) name it once the CA has switched; the marker goes last.  A
 * run that finds the marker asks the CA which key the account has now (a
 * lookup with the new key, s7.3.1) and finishes (docs/acme.md).
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <jansson.h>

#include <p11cert/acme.h>

#include "cli.h"
#include "renew.h"
#include "testhook.h"

static const char keychange_help[] =
	"usage: p11cert acme key-change --id LABEL [--dir DIR] --new-account-key URI\n"
	"                               [--type TYPE] [--destroy-old]\n"
	"\n"
	"Move the ACME account of the enrollment DIR/LABEL.enroll (p11cert enroll acme)\n"
	"to a new account key in the token (RFC 8555 s7.3.5): the new key signs the\n"
	"inner request, the current account key the outer one.  The new key is\n"
	"generated when missing (sensitive, not extractable).  LABEL.acme-account and\n"
	"LABEL.enroll then name it.  DIR/LABEL.acme-keychange marks a change under way:\n"
	"an interrupted run is finished by the same command (--new-account-key may then\n"
	"be left out); enroll and renew of LABEL refuse to run until then (exit 75).\n"
	"\n"
	"  --id LABEL              the record DIR/LABEL.enroll (protocol acme)\n"
	"  --dir DIR               state folder (default $CARAMEL_CERT_DIR, else .)\n"
	"  --new-account-key URI   the new account key (generated when missing)\n"
	"  --type TYPE             its type when generated: ec:P-256 (default),\n"
	"                          ec:P-384 or rsa:2048/3072/4096\n"
	"  --destroy-old           destroy the old account key in the token once the\n"
	"                          records name the new one\n";

static const char acme_help[] =
	"usage: p11cert acme key-change --id LABEL [--dir DIR] --new-account-key URI [--type TYPE] [--destroy-old]\n"
	"ACME account operations on an enrollment record (docs/acme.md); certificates:\n"
	"'p11cert enroll acme', 'p11cert renew', 'p11cert revoke'.\n";

/* the files a key change writes (a killed one may leave their temps) */
static const char *const kc_files[] = { ".acme-keychange", ".acme-account", ".enroll" };

/* what DIR/LABEL.acme-keychange holds (borrowed from its JSON) */
struct marker {
	json_t *j;
	const char *server, *url, *old_key, *new_key;
};

static int write_json(struct cli *c, const char *path, json_t *j, unsigned mode)
{
	char *s = j ? json_dumps(j, JSON_INDENT(2)) : NULL, *t;
	size_t n;
	int rc = EX_SOFTWARE;

	if (s != NULL && (t = realloc(s, (n = strlen(s)) + 2)) != NULL) {
		s = t;
		memcpy(s + n, "\n", 2);
		rc = cli_output(c, path, s, n + 1, mode);
	}
	free(s);
	return rc;
}

/* The marker at PATH: 0 with m->j NULL when there is none, 0 with m
 * filled, or the exit code (printed) */
static int marker_read(struct cli *c, const char *path, struct marker *m)
{
	unsigned char *b = NULL;
	size_t bl = 0;
	struct stat sb;
	int rc;

	memset(m, 0, sizeof *m);
	if (lstat(path, &sb) != 0 && errno == ENOENT)
		return 0;
	if ((rc = cli_state_read(c, path, 16384, &b, &bl)) != 0)
		return rc;
	m->j = json_loadb((const char *)b, bl, JSON_REJECT_DUPLICATES, NULL);
	free(b);
	m->server = json_string_value(json_object_get(m->j, "server"));
	m->url = json_string_value(json_object_get(m->j, "url"));
	m->old_key = json_string_value(json_object_get(m->j, "old_account_key"));
	m->new_key = json_string_value(json_object_get(m->j, "new_account_key"));
	if (m->server == NULL || m->url == NULL || m->old_key == NULL || m->new_key == NULL) {
		fprintf(stderr, "p11cert: %s: %s is not a key-change marker (server, url, old_account_key, "
			"new_account_key); a hand-made or damaged file?\n", c->cmd, path);
		json_decref(m->j);
		m->j = NULL;
		return EX_DATAERR;
	}
	return 0;
}

int acme_record_load(struct cli *c, const char *dir, const char *id, struct renew_job *j, const char **acct_uri)
{
	const struct cli_protocol *pr;
	int rc;

	*acct_uri = NULL;
	if ((rc = cli_record_load(c, dir, id, j, &pr)) != 0)
		return rc;
	if (strcmp(pr->lib->name, "acme") != 0) {
		fprintf(stderr, "p11cert: %s: %s/%s.enroll is a '%s' record: %s is for acme\n", c->cmd, dir,
			cli_safe(id), cli_safe(pr->lib->name), c->cmd);
		return EX_DATAERR;
	}
	if (strcmp(j->id, id) != 0) {
		fprintf(stderr, "p11cert: %s: %s/%s.enroll names the client '%s'\n", c->cmd, dir, cli_safe(id),
			cli_safe(j->id));
		return EX_DATAERR;
	}
	if ((*acct_uri = json_string_value(json_object_get(j->rec, "account_key"))) == NULL) {
		fprintf(stderr, "p11cert: %s: %s/%s.enroll has no account_key\n", c->cmd, dir, cli_safe(id));
		return EX_DATAERR;
	}
	return 0;
}

int acme_keychange_pending(struct cli *c, const char *dir, const char *label)
{
	struct stat sb;
	char *path = cli_path_in(dir, label, ".acme-keychange");
	int rc = 0;

	if (path == NULL)
		return EX_SOFTWARE;
	if (lstat(path, &sb) == 0) {
		fprintf(stderr, "p11cert: %s: a change of the ACME account key of '%s' is unfinished (%s): run "
			"'p11cert acme key-change --id %s --dir %s' first\n", c->cmd, cli_safe(label), path,
			cli_safe(label), dir);
		rc = EX_TEMPFAIL_;
	}
	free(path);
	return rc;
}

#define KC_NOT_DONE 0   /* the new key has no account: nothing changed */
#define KC_DONE 1       /* the new key is the account's: the CA switched */
#define KC_OTHER 2      /* the new key is another account's (printed) */
#define KC_UNKNOWN (-1) /* no answer (cli_fail printed it, *rc its exit code) */

/* Another record of DIR that names the account key URI: its file name
 * (caller frees), else NULL.  Records of other folders are not seen
 * (docs/acme.md). */
static char *record_sharing(const char *dir, const char *id, const char *uri)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	char *own = NULL, *found = NULL, *path;
	unsigned char *b;
	size_t bl, n;
	json_t *j;

	if (d == NULL || asprintf(&own, "%s.enroll", id) < 0) {
		own = NULL;
		goto out;
	}
	while (found == NULL && (e = readdir(d)) != NULL) {
		n = strlen(e->d_name);
		if (n <= 7 || strcmp(e->d_name + n - 7, ".enroll") != 0 || strcmp(e->d_name, own) == 0 ||
		    e->d_name[0] == '.' || (path = cli_path_in(dir, e->d_name, "")) == NULL)
			continue;
		b = NULL;
		if (p11c_file_read(path, 65536, &b, &bl) == P11C_OK &&
		    (j = json_loadb((const char *)b, bl, 0, NULL)) != NULL) {
			if (json_string_value(json_object_get(j, "account_key")) != NULL &&
			    strcmp(json_string_value(json_object_get(j, "account_key")), uri) == 0)
				found = strdup(e->d_name);
			json_decref(j);
		}
		free(b);
		free(path);
	}
out:
	if (d != NULL)
		closedir(d);
	free(own);
	return found;
}

/* What the CA says of the new key (RFC 8555 s7.3.1 lookup, never a
 * creation): one of the KC_ values */
static int ca_state(struct cli *c, p11c_acme *a, p11c_key *new_key, const char *url, int *rc)
{
	char *found = NULL;
	int created = 0, st;
	p11c_result r = p11c_acme_account(a, new_key, NULL, 0, 0, 0, &found, &created);

	if (r == P11C_ERR_NOT_FOUND)
		return KC_NOT_DONE;
	if (r != P11C_OK) {
		*rc = cli_fail(c, r, "asking the CA for the account of the new key");
		return KC_UNKNOWN;
	}
	st = strcmp(found, url) == 0 ? KC_DONE : KC_OTHER;
	if (st == KC_OTHER) {
		fprintf(stderr, "p11cert: %s: the new key is already the key of the account %s; nothing changed\n",
			c->cmd, cli_safe(found));
		*rc = EX_NOPERM;
	}
	free(found);
	return st;
}

/* Both records name new_uri; the account record its URL */
static int records_update(struct cli *c, const char *dir, const char *label, json_t *rec, const char *server,
			  const char *url, const char *new_uri)
{
	char *acct_path = cli_path_in(dir, label, ".acme-account"), *enroll_path = cli_path_in(dir, label, ".enroll");
	json_t *js = json_pack("{s:s, s:s, s:s}", "server", server, "account_key", new_uri, "url", url);
	int rc = EX_SOFTWARE;

	/* the account record first: LABEL.enroll naming the new key means
	 * both do (the rerun test) */
	if (acct_path != NULL && enroll_path != NULL && js != NULL &&
	    json_object_set_new(rec, "account_key", json_string(new_uri)) == 0 &&
	    (rc = write_json(c, acct_path, js, 0600)) == 0)
		rc = write_json(c, enroll_path, rec, 0644);
	json_decref(js);
	free(acct_path);
	free(enroll_path);
	return rc;
}

/* --destroy-old, once the records name the new key: gone already is fine */
static int destroy_old(struct cli *c, const char *old_uri)
{
	p11c_key *old = NULL;
	p11c_result r = p11c_key_find(c->ctx, old_uri, &old);

	if (r == P11C_ERR_NOT_FOUND)
		return 0;
	if (r == P11C_OK)
		r = p11c_key_delete(c->ctx, &old);
	p11c_key_free(&old);
	if (r != P11C_OK)
		return cli_fail(c, r, "the records name the new key, but the old account key '%s' could not be "
				      "destroyed", old_uri);
	if (!c->quiet)
		fprintf(stderr, "p11cert: %s: destroyed the old ACME account key '%s'\n", c->cmd, cli_safe(old_uri));
	return 0;
}

/* The new key: found, or generated (TYPE) */
static p11c_result new_key_get(struct cli *c, const char *uri, const char *type, p11c_key **key)
{
	p11c_key_type kt;
	p11c_result r = p11c_key_find(c->ctx, uri, key);

	if (r != P11C_ERR_NOT_FOUND)
		return r;
	(void)p11c_key_type_parse(type, &kt);
	if ((r = p11c_keygen(c->ctx, uri, kt, 0, key)) == P11C_OK && !c->quiet)
		fprintf(stderr, "p11cert: %s: generated %s ACME account key '%s' on token '%s'\n", c->cmd, type,
			cli_safe(p11c_key_label(*key)), cli_safe(p11c_token_label(c->ctx)));
	return r;
}

/* The run itself, under LABEL's lock: the change (unless the CA made it
 * already), the records, the old key, the marker */
static int key_change(struct cli *c, const struct renew_job *j, struct marker *m, const char *old_uri,
		      const char *new_uri, const char *type, int destroy)
{
	char *mpath = cli_path_in(j->dir, j->id, ".acme-keychange"), *url = NULL;
	p11c_key *old = NULL, *nk = NULL, *cert_key = NULL;
	p11c_acme *a = NULL;
	p11c_acme_server srv;
	p11c_result r;
	json_t *js = NULL;
	int rc = EX_SOFTWARE, created = 0, st = KC_NOT_DONE;

	if (mpath == NULL)
		goto out;
	/* killed after the records: only the old key and the marker are left */
	if (m->j != NULL && strcmp(old_uri, m->new_key) == 0) {
		if (!c->quiet)
			fprintf(stderr, "p11cert: %s: the records name the new key already; finishing\n", c->cmd);
		goto finish;
	}
	if ((r = cli_ctx(c)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	if ((r = p11c_key_find(c->ctx, old_uri, &old)) != P11C_OK) {
		rc = cli_fail(c, r, "the current ACME account key '%s'", old_uri);
		goto out;
	}
	if ((r = new_key_get(c, new_uri, type, &nk)) != P11C_OK) {
		rc = cli_fail(c, r, "the new ACME account key '%s'", new_uri);
		goto out;
	}
	if (EVP_PKEY_eq(p11c_key_public(old), p11c_key_public(nk)) == 1) {
		rc = cli_usage(c, "--new-account-key '%s' is the current account key", new_uri);
		goto out;
	}
	/* a CA refuses a certificate for its account key (and the other way) */
	if (p11c_key_find(c->ctx, j->uri, &cert_key) == P11C_OK &&
	    EVP_PKEY_eq(p11c_key_public(cert_key), p11c_key_public(nk)) == 1) {
		rc = cli_usage(c, "--new-account-key '%s' is the certificate key of '%s'", new_uri, cli_safe(j->id));
		goto out;
	}
	memset(&srv, 0, sizeof srv);
	srv.directory_url = j->server;
	srv.ca_file = j->ca_file;
	if ((r = p11c_acme_new(c->ctx, &srv, &a)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot read the ACME directory %s", j->server);
		goto out;
	}
	if (m->j != NULL) {
		/* a run was interrupted: has the CA switched already? */
		st = ca_state(c, a, nk, m->url, &rc);
		if (st == KC_OTHER)
			(void)unlink(mpath);
		if (st == KC_OTHER || st == KC_UNKNOWN)
			goto out;
		if (st == KC_DONE && (url = strdup(m->url)) == NULL)
			goto out;
		if (st == KC_DONE && !c->quiet)
			fprintf(stderr, "p11cert: %s: the CA already knows the account %s by the new key; finishing\n",
				c->cmd, cli_safe(url));
	}
	if (st == KC_NOT_DONE) {
		/* the account exists already: never create one here */
		if ((r = p11c_acme_account(a, old, NULL, 0, 0, 0, &url, &created)) != P11C_OK) {
			rc = cli_fail(c, r, "ACME account of key '%s'", cli_safe(p11c_key_label(old)));
			goto out;
		}
		if (m->j == NULL) {
			js = json_pack("{s:s, s:s, s:s, s:s}", "server", j->server, "url", url, "old_account_key",
				       old_uri, "new_account_key", new_uri);
			if ((rc = write_json(c, mpath, js, 0600)) != 0)
				goto out;
		}
		p11c_test_stall("acme-keychange-marked");
		r = p11c_acme_key_change(a, nk);
		if (r != P11C_OK) {
			int failed = cli_fail(c, r, "key-change for '%s'", cli_safe(j->id));

			/* the CA's word decides: the marker goes when nothing
			 * changed, the run goes on when the CA did switch */
			st = ca_state(c, a, nk, url, &rc);
			if (st == KC_UNKNOWN)
				fprintf(stderr, "p11cert: %s: the outcome is unknown: run the same command again to "
					"finish (%s)\n", c->cmd, mpath);
			if (st == KC_NOT_DONE || st == KC_OTHER)
				(void)unlink(mpath);
			if (st != KC_DONE) {
				/* another account's key: its URL named, exit 77 */
				rc = st == KC_OTHER ? rc : failed;
				goto out;
			}
			if (!c->quiet)
				fprintf(stderr, "p11cert: %s: the CA did switch to the new key; finishing\n", c->cmd);
		}
		p11c_test_stall("acme-keychange-done");
	}
	if ((rc = records_update(c, j->dir, j->id, j->rec, j->server, url, new_uri)) != 0)
		goto out;
	p11c_test_stall("acme-keychange-recorded");
	if (!c->quiet)
		fprintf(stderr, "p11cert: %s: the ACME account %s now uses key '%s' (recorded in %s)\n", c->cmd,
			cli_safe(url), cli_safe(new_uri), j->dir);
finish:
	if (destroy && m->j != NULL && strcmp(old_uri, m->new_key) == 0) {
		/* the records were done by the killed run: the old key is the
		 * marker's */
		if ((r = cli_ctx(c)) != P11C_OK) {
			rc = cli_fail(c, r, NULL);
			goto out;
		}
		old_uri = m->old_key;
	}
	p11c_key_free(&old);
	if (destroy && (rc = destroy_old(c, old_uri)) != 0)
		goto out;
	if (unlink(mpath) != 0 && errno != ENOENT) {
		fprintf(stderr, "p11cert: %s: cannot remove %s: %s\n", c->cmd, mpath, strerror(errno));
		rc = EX_CANTCREAT;
		goto out;
	}
	rc = 0;
out:
	json_decref(js);
	free(url);
	free(mpath);
	p11c_acme_free(&a);
	p11c_key_free(&cert_key);
	p11c_key_free(&nk);
	p11c_key_free(&old);
	return rc;
}

static int cmd_key_change(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "dir", required_argument, NULL, 'd' },  { "id", required_argument, NULL, 'i' },
		{ "new-account-key", required_argument, NULL, 'k' }, { "type", required_argument, NULL, 't' },
		{ "destroy-old", no_argument, NULL, 'x' }, { NULL, 0, NULL, 0 },
	};
	const char *dir = getenv("CARAMEL_CERT_DIR"), *id = NULL, *new_uri = NULL, *type = "ec:P-256", *acct;
	struct renew_job j;
	struct marker m;
	p11c_key_type kt;
	char *lock = NULL, *mpath = NULL, *old_uri = NULL, *shared = NULL;
	int destroy = 0, ch, fd = -1, rc = EX_SOFTWARE;

	if (cli_help(argc, argv, keychange_help))
		return 0;
	memset(&j, 0, sizeof j);
	memset(&m, 0, sizeof m);
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'i': id = optarg; break;
		case 'k': new_uri = optarg; break;
		case 't': type = optarg; break;
		case 'x': destroy = 1; break;
		default: return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (id == NULL)
		return cli_usage(c, "--id LABEL is required");
	/* JWS algorithms (RFC 7518 s3.1): ES256, ES384, RS256 */
	if (p11c_key_type_parse(type, &kt) != P11C_OK || kt == P11C_KEY_ED25519)
		return cli_usage(c, "--type must be ec:P-256, ec:P-384 or rsa:2048/3072/4096, not '%s'", type);
	if (dir == NULL)
		dir = ".";
	if (cli_curl_ready(c) != 0)
		return EX_UNAVAILABLE;
	if ((rc = acme_record_load(c, dir, id, &j, &acct)) != 0)
		goto out;
	rc = EX_SOFTWARE;
	/* kept: the record's field is replaced when the records are updated */
	if ((old_uri = strdup(acct)) == NULL || (lock = cli_path_in(dir, id, ".lock")) == NULL ||
	    (mpath = cli_path_in(dir, id, ".acme-keychange")) == NULL)
		goto out;
	/* the lock of enroll acme / renew: no order runs meanwhile */
	if ((rc = cli_lock_run(c, lock, &fd)) != 0)
		goto out;
	cli_remove_temps(dir, id, kc_files, sizeof kc_files / sizeof kc_files[0]);
	if ((rc = marker_read(c, mpath, &m)) != 0)
		goto out;
	if (m.j != NULL) {
		if (new_uri != NULL && strcmp(new_uri, m.new_key) != 0) {
			rc = cli_usage(c, "the change to '%s' is unfinished (%s): run again with that "
				       "--new-account-key, or with none", cli_safe(m.new_key), mpath);
			goto out;
		}
		if (strcmp(m.server, j.server) != 0 ||
		    (strcmp(old_uri, m.old_key) != 0 && strcmp(old_uri, m.new_key) != 0)) {
			fprintf(stderr, "p11cert: %s: %s does not match %s/%s.enroll (server, account key): "
				"look at both\n", c->cmd, mpath, dir, cli_safe(id));
			rc = EX_DATAERR;
			goto out;
		}
		new_uri = m.new_key;
	} else if (new_uri == NULL) {
		rc = cli_usage(c, "--new-account-key URI is required");
		goto out;
	} else if (strcmp(new_uri, old_uri) == 0) {
		rc = cli_usage(c, "--new-account-key '%s' is the current account key", new_uri);
		goto out;
	} else if ((shared = record_sharing(dir, id, old_uri)) != NULL) {
		/* that enrollment would be left with a key the CA dropped */
		rc = cli_usage(c, "the account key '%s' is also the one of %s/%s: its enrollment would lose the "
			       "account; give each enrollment its own account key", old_uri, dir, cli_safe(shared));
		goto out;
	}
	rc = key_change(c, &j, &m, old_uri, new_uri, type, destroy);
out:
	if (fd >= 0)
		close(fd);
	json_decref(m.j);
	json_decref(j.rec);
	free(old_uri);
	free(shared);
	free(lock);
	free(mpath);
	return rc;
}

int cmd_acme(struct cli *c, int argc, char **argv)
{
	if (argc >= 2 && strcmp(argv[1], "key-change") == 0) {
		c->cmd = "acme key-change";
		return cmd_key_change(c, argc - 1, argv + 1);
	}
	if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
		fputs(acme_help, stdout);
		return 0;
	}
	return cli_usage(c, "acme needs a subcommand: key-change");
}
