/* p11ca est-user add|remove|list: the credentials file of EST's HTTP Basic
 * authentication (proto/est.h; docs/ca.md "EST").  Lines
 * "NAME:pbkdf2-sha256:ITERATIONS:SALT_HEX:HASH_HEX"; the file is written
 * atomically with mode 0600.  A password is read from --password-file or
 * standard input (its first line), never from the command line. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "ca.h"
#include "statedir.h"
#include "proto/est.h"

static const char est_user_usage[] =
	"usage: p11ca est-user add NAME [--password-file FILE] --dir DIR [--file USERS]\n"
	"       p11ca est-user remove NAME --dir DIR [--file USERS]\n"
	"       p11ca est-user list --dir DIR [--file USERS]\n"
	"USERS (default est-users, relative to DIR) is the file named by users = in est.conf.\n"
	"add reads the password from --password-file or the first line of standard input.\n";

/* the first line of fp, without its line end; at most EST_PASSWORD_MAX */
static int read_password(FILE *fp, char *buf, size_t len, size_t *plen)
{
	size_t n;

	if (fgets(buf, (int)len, fp) == NULL)
		return -1;
	n = strlen(buf);
	if (n > 0 && buf[n - 1] != '\n' && !feof(fp))
		return -1; /* longer than the buffer */
	while (n > 0 && (buf[n - 1] == '\n' || buf[n - 1] == '\r'))
		buf[--n] = '\0';
	*plen = n;
	return n > 0 ? 0 : -1;
}

/* The file without NAME's line (every other line kept as it is). */
static char *without(const char *text, size_t len, const char *name, size_t *outlen, int *found)
{
	char *out = malloc(len + 1);
	size_t off = 0, o = 0, nl_len = strlen(name);

	*found = 0;
	if (out == NULL)
		return NULL;
	while (off < len) {
		const char *nl = memchr(text + off, '\n', len - off);
		size_t l = nl ? (size_t)(nl - (text + off)) + 1 : len - off;

		if (l > nl_len && memcmp(text + off, name, nl_len) == 0 && text[off + nl_len] == ':') {
			*found = 1;
		} else {
			memcpy(out + o, text + off, l);
			o += l;
		}
		off += l;
	}
	out[o] = '\0';
	*outlen = o;
	return out;
}

int est_user_main(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "dir", required_argument, NULL, 'd' },
		{ "file", required_argument, NULL, 'f' },
		{ "password-file", required_argument, NULL, 'p' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *dir = getenv("P11CA_DIR"), *file = "est-users", *pwfile = NULL, *sub, *name = NULL;
	char *path = NULL, *text = NULL, *rest = NULL, *out = NULL;
	char pass[EST_PASSWORD_MAX + 2], line[512];
	size_t len = 0, rlen = 0, plen = 0;
	int ch, rc = 1, found = 0;

	memset(pass, 0, sizeof pass);
	opterr = 0;
	optind = 1;
	while ((ch = getopt_long(argc, argv, "", lo, NULL)) != -1) {
		switch (ch) {
		case 'd': dir = optarg; break;
		case 'f': file = optarg; break;
		case 'p': pwfile = optarg; break;
		case 'h': fputs(est_user_usage, stdout); return 0;
		default:
			fprintf(stderr, "p11ca: est-user: unknown option or missing value: '%s'\n%s", argv[optind - 1],
				est_user_usage);
			return 64;
		}
	}
	if (optind >= argc || dir == NULL) {
		fputs(est_user_usage, stderr);
		return 64;
	}
	sub = argv[optind++];
	if (strcmp(sub, "list") != 0) {
		if (optind >= argc) {
			fprintf(stderr, "p11ca: est-user %s needs a NAME\n", sub);
			return 64;
		}
		name = argv[optind++];
		if (!est_user_name_ok(name)) {
			fprintf(stderr, "p11ca: est-user: bad user name '%s' (1-%d of A-Z a-z 0-9 . _ @ -)\n", name,
				EST_USER_MAX);
			return 64;
		}
	}
	if (optind != argc || (strcmp(sub, "add") != 0 && strcmp(sub, "remove") != 0 && strcmp(sub, "list") != 0)) {
		fputs(est_user_usage, stderr);
		return 64;
	}
	/* the folder checks of every command (owner, modes, the CA's database) */
	if (ca_state_check(dir, NULL) != 0)
		goto out;
	if ((path = ca_path(dir, file)) == NULL)
		goto out;
	if (access(path, F_OK) == 0 && ca_read_file(path, EST_USERS_MAX, &text, &len) != 0) {
		ca_err("cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	if (strcmp(sub, "list") == 0) {
		size_t off = 0;

		while (text != NULL && off < len) {
			const char *nl = memchr(text + off, '\n', len - off);
			size_t l = nl ? (size_t)(nl - (text + off)) : len - off;
			const char *c = memchr(text + off, ':', l);

			if (c != NULL)
				printf("%.*s\n", (int)(c - (text + off)), text + off);
			off += l + (nl ? 1 : 0);
		}
		rc = 0;
		goto out;
	}
	if (name == NULL || (rest = without(text ? text : "", len, name, &rlen, &found)) == NULL)
		goto out;
	if (strcmp(sub, "remove") == 0) {
		if (!found) {
			ca_err("no EST user '%s' in %s", name, path);
			rc = 66;
			goto out;
		}
		out = rest;
		rest = NULL;
	} else {
		FILE *fp = pwfile != NULL ? fopen(pwfile, "r") : stdin;
		int prc;

		if (fp == NULL) {
			ca_err("cannot open the password file %s: %s", pwfile, strerror(errno));
			goto out;
		}
		prc = read_password(fp, pass, sizeof pass, &plen);
		if (fp != stdin)
			fclose(fp);
		if (prc != 0 || plen > EST_PASSWORD_MAX || memchr(pass, ':', plen) != NULL) {
			ca_err("no password, or longer than %d bytes, in %s", EST_PASSWORD_MAX,
			       pwfile ? pwfile : "standard input");
			goto out;
		}
		if (est_user_make(name, pass, plen, line, sizeof line) != 0 ||
		    (out = malloc(rlen + strlen(line) + 2)) == NULL)
			goto out;
		memcpy(out, rest, rlen);
		if (rlen > 0 && out[rlen - 1] != '\n')
			out[rlen++] = '\n';
		memcpy(out + rlen, line, strlen(line) + 1);
		rlen += strlen(line);
	}
	if (p11c_file_write_atomic(path, out, rlen, 0600) != P11C_OK) {
		ca_err("cannot write %s", path);
		goto out;
	}
	fprintf(stderr, "p11ca: %s EST user '%s' %s %s\n", strcmp(sub, "add") == 0 ? (found ? "replaced" : "added") : "removed",
		name, strcmp(sub, "add") == 0 ? "in" : "from", path);
	rc = 0;
out:
	OPENSSL_cleanse(pass, sizeof pass);
	free(path);
	free(text);
	free(rest);
	free(out);
	return rc;
}
