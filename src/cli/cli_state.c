/* p11cert: the state folder (--dir, $CARAMEL_CERT_DIR) and what is in it:
 * run locks and enrollment records.  A folder another user can write lets
 * that user plant ID.lock as a symlink (our open would create a file
 * elsewhere) or forge ID.enroll (renew would talk to their server with our
 * key).  So, as ssh (StrictModes) and sudo do: the folder and the records
 * must belong to us (or root) and be writable by nobody else; locks and
 * records are opened with O_NOFOLLOW. */
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "cli.h"

/* Why SB (of WHAT, at PATH) is unsafe, or NULL when it is safe. */
static const char *unsafe(const struct stat *sb)
{
	if (sb->st_uid != geteuid() && sb->st_uid != 0)
		return "is owned by another user";
	if ((sb->st_mode & (S_IWGRP | S_IWOTH)) != 0)
		return "is writable by group or others";
	return NULL;
}

static void refuse(const char *what, const char *path, const struct stat *sb, const char *why)
{
	fprintf(stderr,
		"p11cert: %s %s %s (owner uid %lu, mode %04o): refused, another user could redirect or forge "
		"it; make it owned by uid %lu (or root) and not group/other writable (chown, chmod go-w)\n",
		what, cli_safe(path), why, (unsigned long)sb->st_uid, (unsigned)(sb->st_mode & 07777),
		(unsigned long)geteuid());
}

int cli_state_dir(const char *dir)
{
	struct stat sb;
	const char *why;

	if (stat(dir, &sb) != 0) {
		fprintf(stderr, "p11cert: state folder %s: %s\n", cli_safe(dir), strerror(errno));
		return errno == ENOENT ? EX_NOINPUT : EX_IOERR;
	}
	if (!S_ISDIR(sb.st_mode)) {
		fprintf(stderr, "p11cert: state folder %s is not a folder\n", cli_safe(dir));
		return EX_UNSAFE;
	}
	if ((why = unsafe(&sb)) != NULL) {
		refuse("state folder", dir, &sb, why);
		return EX_UNSAFE;
	}
	return 0;
}

/* The folder holding PATH. */
static int dir_of(const char *path)
{
	char *copy = strdup(path);
	int rc;

	if (copy == NULL)
		return EX_SOFTWARE;
	rc = cli_state_dir(dirname(copy));
	free(copy);
	return rc;
}

char *cli_absolute(const char *path)
{
	char buf[PATH_MAX];

	if (path == NULL)
		return NULL;
	return strdup(realpath(path, buf) != NULL ? buf : path);
}

int cli_lock(const char *path)
{
	struct stat sb;
	const char *why;
	int fd;

	if (dir_of(path) != 0)
		return -3;
	/* O_NOFOLLOW: a planted symlink is not followed (ELOOP); O_NONBLOCK:
	 * a planted FIFO does not block the open */
	fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY, 0600);
	if (fd < 0) {
		if (errno == ELOOP)
			fprintf(stderr, "p11cert: lock file %s is a symbolic link: refused (remove it)\n",
				cli_safe(path));
		return errno == ELOOP ? -3 : -2;
	}
	if (fstat(fd, &sb) != 0) {
		close(fd);
		return -2;
	}
	if (!S_ISREG(sb.st_mode) || (why = unsafe(&sb)) != NULL) {
		if (!S_ISREG(sb.st_mode))
			fprintf(stderr, "p11cert: lock file %s is not a regular file: refused\n", cli_safe(path));
		else
			refuse("lock file", path, &sb, why);
		close(fd);
		return -3;
	}
	if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
		close(fd);
		return -1;
	}
	return fd;
}

int cli_lock_run(struct cli *c, const char *path, int *fd)
{
	*fd = cli_lock(path);
	if (*fd == -1) {
		fprintf(stderr, "p11cert: %s: another run holds the lock %s\n", c->cmd, path);
		return EX_TEMPFAIL_;
	}
	if (*fd == -3)
		return EX_UNSAFE;
	if (*fd < 0) {
		fprintf(stderr, "p11cert: %s: cannot create the lock file %s: %s\n", c->cmd, path, strerror(errno));
		return EX_CANTCREAT;
	}
	return 0;
}

int cli_state_read(struct cli *c, const char *path, size_t max, unsigned char **buf, size_t *len)
{
	struct stat sb;
	const char *why;
	unsigned char *b = NULL;
	size_t got = 0;
	int fd = -1, rc;

	*buf = NULL;
	*len = 0;
	if ((rc = dir_of(path)) != 0)
		return rc;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
	if (fd < 0) {
		if (errno == ELOOP) {
			fprintf(stderr, "p11cert: %s: %s is a symbolic link: refused\n", c->cmd, cli_safe(path));
			return EX_UNSAFE;
		}
		fprintf(stderr, "p11cert: %s: cannot read '%s': %s\n", c->cmd, cli_safe(path), strerror(errno));
		return EX_NOINPUT;
	}
	rc = EX_UNSAFE;
	if (fstat(fd, &sb) != 0) {
		rc = EX_IOERR;
		goto out;
	}
	if (!S_ISREG(sb.st_mode)) {
		fprintf(stderr, "p11cert: %s: %s is not a regular file: refused\n", c->cmd, cli_safe(path));
		goto out;
	}
	if ((why = unsafe(&sb)) != NULL) {
		refuse("record", path, &sb, why);
		goto out;
	}
	if ((size_t)sb.st_size > max) {
		fprintf(stderr, "p11cert: %s: '%s' is larger than %zu bytes\n", c->cmd, cli_safe(path), max);
		rc = EX_DATAERR;
		goto out;
	}
	rc = EX_IOERR;
	if ((b = malloc((size_t)sb.st_size + 1)) == NULL)
		goto out;
	while (got < (size_t)sb.st_size) {
		ssize_t n = read(fd, b + got, (size_t)sb.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0) {
			fprintf(stderr, "p11cert: %s: cannot read '%s': %s\n", c->cmd, cli_safe(path),
				n < 0 ? strerror(errno) : "shorter than its size");
			goto out;
		}
		got += (size_t)n;
	}
	b[got] = '\0';
	*buf = b;
	*len = got;
	b = NULL;
	rc = 0;
out:
	free(b);
	close(fd);
	return rc;
}

int cli_state_file(const char *what, const char *path)
{
	struct stat sb;
	const char *why;

	if (stat(path, &sb) != 0)
		return 0; /* missing: the reader says so */
	if ((why = unsafe(&sb)) != NULL) {
		refuse(what, path, &sb, why);
		return EX_UNSAFE;
	}
	return 0;
}

int cli_rejection_may_destroy(struct cli *c, p11c_key *key, X509 *ca)
{
	X509 *x = NULL;
	EVP_PKEY *cap;
	p11c_result r;
	int ok;

	r = p11c_cert_get(c->ctx, key, &x);
	if (r == P11C_ERR_NOT_FOUND) {
		ERR_clear_error();
		return 1; /* no certificate: nobody vouched for this key yet */
	}
	if (r != P11C_OK)
		return 0;
	cap = ca != NULL ? X509_get0_pubkey(ca) : NULL;
	ok = cap != NULL && X509_check_issued(ca, x) == X509_V_OK && X509_verify(x, cap) == 1;
	X509_free(x);
	ERR_clear_error();
	return ok;
}

char *cli_path_in(const char *dir, const char *name, const char *suffix)
{
	char *p = NULL;

	if (asprintf(&p, "%s/%s%s", dir, name, suffix) < 0)
		return NULL;
	return p;
}

int cli_file_name_ok(const char *s, size_t max)
{
	const char *p;

	if (s == NULL || *s == '\0' || *s == '.' || strlen(s) > max)
		return 0;
	for (p = s; *p; p++)
		if (*p == '/' || (unsigned char)*p < 0x20)
			return 0;
	return 1;
}

int cli_temp_of(const char *name, const char *base, const char *suffix)
{
	size_t bl = strlen(base), sl = strlen(suffix), i;

	if (strncmp(name, base, bl) != 0 || strncmp(name + bl, suffix, sl) != 0 ||
	    strncmp(name + bl + sl, ".tmp.", 5) != 0)
		return 0;
	name += bl + sl + 5;
	for (i = 0; i < 6; i++)
		if (!isalnum((unsigned char)name[i]))
			return 0;
	return name[6] == '\0';
}

void cli_remove_temps(const char *dir, const char *base, const char *const *suffixes, size_t n)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	size_t k;

	if (d == NULL)
		return;
	while ((e = readdir(d)) != NULL)
		for (k = 0; k < n; k++)
			if (cli_temp_of(e->d_name, base, suffixes[k])) {
				(void)unlinkat(dirfd(d), e->d_name, 0);
				break;
			}
	closedir(d);
}
