/* p11ca's state folder checks (statedir.h).  Like ssh and sudo: files that
 * a less privileged user could have written or read are refused, with the
 * command that fixes them. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "statedir.h"

#define LOCK_FILE "p11ca.lock"

static int owner_ok(const struct stat *st)
{
	return st->st_uid == geteuid() || st->st_uid == 0;
}

/* The database is a file in the folder: not PostgreSQL (db =
 * postgresql://... in p11ca.conf, P11CA_DB or --db).  Settings that do not
 * load are not a file to check: ca_open stops on them with their message. */
static int db_is_file(const char *dir, const struct ca_config *flags)
{
	struct ca_config c;
	char err[256];
	int file;

	if (flags != NULL && flags->db != NULL)
		return 0;
	ca_config_defaults(&c);
	file = ca_config_load(&c, dir, err, sizeof err) == 0 && c.db == NULL;
	ca_config_free(&c);
	return file;
}

int ca_state_check(const char *dir, const struct ca_config *flags)
{
	struct stat st, wst;
	char *crt = NULL, *db = NULL, *wal = NULL;
	int rc = -1;

	if (stat(dir, &st) != 0) {
		if (errno == ENOENT)
			return 0; /* ca_open says there is no CA there */
		ca_err("cannot use the state folder '%s': %s", dir, strerror(errno));
		goto out;
	}
	if (!S_ISDIR(st.st_mode)) {
		ca_err("the state folder '%s' is not a folder", dir);
		goto out;
	}
	if (!owner_ok(&st)) {
		ca_err("the state folder '%s' belongs to uid %ld, not to this user (uid %ld) or root: refused "
		       "(chown it, or run p11ca as its owner)", dir, (long)st.st_uid, (long)geteuid());
		goto out;
	}
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		ca_err("the state folder '%s' is writable by %s (mode %04o): refused; run chmod 700 '%s'", dir,
		       (st.st_mode & S_IWOTH) ? "everyone" : "its group", (unsigned)(st.st_mode & 07777), dir);
		goto out;
	}
	crt = ca_path(dir, "ca.crt");
	db = ca_path(dir, "p11ca.db");
	wal = ca_path(dir, "p11ca.db-wal");
	if (crt == NULL || db == NULL || wal == NULL)
		goto out;
	if (stat(crt, &st) == 0 && db_is_file(dir, flags)) {
		int missing = stat(db, &st) != 0;

		/* a 0-byte file whose pages are all still in the WAL is fine */
		if (missing || (st.st_size == 0 && (stat(wal, &wst) != 0 || wst.st_size == 0))) {
			ca_err("the CA in '%s' exists (ca.crt) but its database %s is %s: its requests, "
			       "revocations and serial history would be lost, so p11ca will not make a new one. "
			       "Restore p11ca.db (with p11ca.db-wal when there is one) from a backup; only "
			       "'p11ca init' creates a database (for a new CA, in a new folder)",
			       dir, db, missing ? "missing" : "empty");
			goto out;
		}
	}
	rc = 0;
out:
	free(crt);
	free(db);
	free(wal);
	return rc;
}

/* A file holding a secret: ours (or root's), nothing for group or others. */
static int secret_ok(const char *dir, const char *spec, const char *what)
{
	struct stat st;
	char *p;
	int rc = -1;

	if (spec == NULL || strncmp(spec, "pkcs11:", 7) == 0)
		return 0;
	if ((p = ca_path(dir, spec)) == NULL)
		return -1;
	if (stat(p, &st) != 0) { /* the file a link points to is what is read */
		rc = 0; /* missing: whoever reads it says so */
		goto out;
	}
	if (!owner_ok(&st)) {
		ca_err("the %s '%s' belongs to uid %ld, not to this user (uid %ld) or root: refused", what, p,
		       (long)st.st_uid, (long)geteuid());
		goto out;
	}
	if (S_ISREG(st.st_mode) && (st.st_mode & 077)) {
		ca_err("the %s '%s' is accessible to %s (mode %04o): refused; run chmod 600 '%s' (and "
		       "consider it exposed)", what, p, (st.st_mode & 007) ? "everyone" : "its group",
		       (unsigned)(st.st_mode & 07777), p);
		goto out;
	}
	rc = 0;
out:
	free(p);
	return rc;
}

int ca_state_check_files(struct ca *ca, int serve)
{
	char *tls = NULL;
	int rc = -1;

	if (secret_ok(ca->dir, ca->cfg.key, "CA key file") != 0 ||
	    secret_ok(ca->dir, ca->cfg.pin_file, "PIN file") != 0 ||
	    secret_ok(ca->dir, ca->cfg.db_password_file, "database password file") != 0)
		goto out;
	if (serve) {
		if ((tls = ca_path(ca->dir, "tls.crt")) == NULL)
			goto out;
		if (access(tls, F_OK) == 0 &&
		    secret_ok(ca->dir, ca->cfg.tls_key ? ca->cfg.tls_key : "tls.key", "TLS key file") != 0)
			goto out;
		if (secret_ok(ca->dir, ca->cfg.token_file, "shared token file") != 0)
			goto out;
		if (ca->so->writable != NULL && ca->so->writable(ca->st) != STORE_OK) {
			ca_err("the database of '%s' cannot be written (%s): every request would fail; fix its "
			       "permissions or the file system before serving", ca->dir, ca->so->errmsg(ca->st));
			goto out;
		}
	}
	rc = 0;
out:
	free(tls);
	return rc;
}

int ca_state_lock(const char *dir, int *fd)
{
	char *p = ca_path(dir, LOCK_FILE);
	int f = -1;

	*fd = -1;
	if (p == NULL)
		return -1;
	f = open(p, O_RDWR | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (f < 0) {
		ca_err("cannot open the lock file '%s': %s", p, strerror(errno));
		free(p);
		return -1;
	}
	if (flock(f, LOCK_EX | LOCK_NB) != 0) {
		if (errno == EWOULDBLOCK)
			ca_err("another 'p11ca serve' is running on '%s' (it holds %s): refused", dir, p);
		else
			ca_err("cannot lock '%s': %s", p, strerror(errno));
		close(f);
		free(p);
		return -1;
	}
	free(p);
	*fd = f;
	return 0;
}
