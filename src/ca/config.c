/* p11ca settings: DIR/p11ca.conf, then P11CA_* environment, then flags. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"

#define CONF_MAX (64 * 1024)

const char *const ca_config_names[] = {
	"key", "tls-key", "module", "pin-file", "short-lifetime", "long-lifetime",
	"token-lifetime", "autosign", "renew-mtls", "listen", "token-listen", "token-file",
	"url", "san-patterns", "token-dn-suffix", "token-rate-limit", "timeout",
	"max-connections",
	/* CA policy settings (issue 10 / 15) */
	"san-wildcards",
	/* resources */
	"max-connections-per-address", "token-rate-limit-global", "access-log-rows",
	/* the store (issue 13) */
	"db", "db-password-file", "token-rate-limit-shared",
	/* signing off the event loop (issue 13) */
	"signers", "sign-queue",
	NULL,
};

void ca_config_defaults(struct ca_config *c)
{
	memset(c, 0, sizeof *c);
	c->short_hours = -1; /* -1: "not set", resolved by ca_config_merge */
	c->long_hours = -1;
	c->token_days = -1;
	c->renew_mtls = -1;
	c->token_rate_limit = -1;
	c->timeout = -1;
	c->max_connections = -1;
	c->san_wildcards = -1;
	c->max_per_address = -1;
	c->token_rate_global = -1;
	c->access_log_rows = -1;
	c->token_rate_shared = -1;
	c->signers = -1;
	c->sign_queue = -1;
}

static void resolve(struct ca_config *c)
{
	if (c->short_hours < 0)
		c->short_hours = 48;
	if (c->long_hours < 0)
		c->long_hours = 720;
	if (c->token_days < 0)
		c->token_days = 825;
	if (c->renew_mtls < 0)
		c->renew_mtls = 1;
	if (c->token_rate_limit < 0)
		c->token_rate_limit = 5;
	if (c->timeout < 0)
		c->timeout = 30;
	if (c->max_connections < 0)
		c->max_connections = 0; /* derived from the open-files limit by serve */
	if (c->max_per_address < 0)
		c->max_per_address = 0; /* a quarter of max-connections */
	if (c->token_rate_global < 0)
		c->token_rate_global = 60;
	if (c->access_log_rows < 0)
		c->access_log_rows = 100000;
	if (c->autosign == NULL)
		c->autosign = strdup("none");
	if (c->san_wildcards < 0)
		c->san_wildcards = 0;
	if (c->token_rate_shared < 0)
		c->token_rate_shared = 0;
	/* signers stays -1 (automatic): serve decides from the key (ca.h) */
	if (c->sign_queue < 0)
		c->sign_queue = 128;
}

void ca_config_free(struct ca_config *c)
{
	free(c->key);
	free(c->tls_key);
	free(c->module);
	free(c->pin_file);
	free(c->autosign);
	free(c->listen);
	free(c->token_listen);
	free(c->token_file);
	free(c->url);
	free(c->san_patterns);
	free(c->token_dn_suffix);
	free(c->db);
	free(c->db_password_file);
	memset(c, 0, sizeof *c);
}

static int set_long(long *dst, const char *name, const char *v, long min, long max, char *err,
		    size_t errlen)
{
	char *end;
	long n;

	errno = 0;
	n = strtol(v, &end, 10);
	if (errno != 0 || end == v || *end != '\0' || n < min || n > max) {
		snprintf(err, errlen, "%s must be a number from %ld to %ld, not '%s'", name, min, max, v);
		return -1;
	}
	*dst = n;
	return 0;
}

static int set_str(char **dst, const char *v)
{
	char *s = strdup(v);

	if (s == NULL)
		return -1;
	free(*dst);
	*dst = s;
	return 0;
}

static int set_yesno(int *dst, const char *name, const char *v, char *err, size_t errlen)
{
	if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
		*dst = 1;
	else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
		*dst = 0;
	else {
		snprintf(err, errlen, "%s must be yes or no, not '%s'", name, v);
		return -1;
	}
	return 0;
}

int ca_config_set(struct ca_config *c, const char *name, const char *v, char *err, size_t errlen)
{
	if (strcmp(name, "key") == 0)
		return set_str(&c->key, v);
	if (strcmp(name, "tls-key") == 0)
		return set_str(&c->tls_key, v);
	if (strcmp(name, "module") == 0)
		return set_str(&c->module, v);
	if (strcmp(name, "pin-file") == 0)
		return set_str(&c->pin_file, v);
	if (strcmp(name, "short-lifetime") == 0)
		return set_long(&c->short_hours, name, v, 1, 24L * 3650, err, errlen);
	if (strcmp(name, "long-lifetime") == 0)
		return set_long(&c->long_hours, name, v, 1, 24L * 3650, err, errlen);
	if (strcmp(name, "token-lifetime") == 0)
		return set_long(&c->token_days, name, v, 1, 3650, err, errlen);
	if (strcmp(name, "autosign") == 0) {
		if (strcmp(v, "none") != 0 && strcmp(v, "uuid") != 0) {
			snprintf(err, errlen, "autosign must be 'none' or 'uuid', not '%s'", v);
			return -1;
		}
		return set_str(&c->autosign, v);
	}
	if (strcmp(name, "renew-mtls") == 0) {
		if (strcmp(v, "yes") == 0 || strcmp(v, "true") == 0 || strcmp(v, "1") == 0)
			c->renew_mtls = 1;
		else if (strcmp(v, "no") == 0 || strcmp(v, "false") == 0 || strcmp(v, "0") == 0)
			c->renew_mtls = 0;
		else {
			snprintf(err, errlen, "renew-mtls must be yes or no, not '%s'", v);
			return -1;
		}
		return 0;
	}
	if (strcmp(name, "listen") == 0)
		return set_str(&c->listen, v);
	if (strcmp(name, "token-listen") == 0)
		return set_str(&c->token_listen, v);
	if (strcmp(name, "token-file") == 0)
		return set_str(&c->token_file, v);
	if (strcmp(name, "url") == 0)
		return set_str(&c->url, v);
	if (strcmp(name, "san-patterns") == 0)
		return set_str(&c->san_patterns, v);
	if (strcmp(name, "token-dn-suffix") == 0)
		return set_str(&c->token_dn_suffix, v);
	if (strcmp(name, "token-rate-limit") == 0)
		return set_long(&c->token_rate_limit, name, v, 0, 1000000, err, errlen);
	if (strcmp(name, "timeout") == 0)
		return set_long(&c->timeout, name, v, 1, 3600, err, errlen);
	if (strcmp(name, "max-connections") == 0)
		return set_long(&c->max_connections, name, v, 1, 100000, err, errlen);
	/* CA policy settings */
	if (strcmp(name, "san-wildcards") == 0)
		return set_yesno(&c->san_wildcards, name, v, err, errlen);
	/* resources */
	if (strcmp(name, "max-connections-per-address") == 0)
		return set_long(&c->max_per_address, name, v, 1, 100000, err, errlen);
	if (strcmp(name, "token-rate-limit-global") == 0)
		return set_long(&c->token_rate_global, name, v, 0, 100000, err, errlen);
	if (strcmp(name, "access-log-rows") == 0)
		return set_long(&c->access_log_rows, name, v, 0, 100000000, err, errlen);
	/* the store */
	if (strcmp(name, "db") == 0) {
		if (!store_is_pg(v)) {
			snprintf(err, errlen, "db must be a postgresql:// URI (unset: SQLite in DIR/p11ca.db)");
			return -1;
		}
		return set_str(&c->db, v);
	}
	if (strcmp(name, "db-password-file") == 0)
		return set_str(&c->db_password_file, v);
	if (strcmp(name, "token-rate-limit-shared") == 0)
		return set_yesno(&c->token_rate_shared, name, v, err, errlen);
	if (strcmp(name, "signers") == 0) {
		if (strcmp(v, "auto") == 0) {
			c->signers = -1;
			return 0;
		}
		return set_long(&c->signers, name, v, 0, CA_SIGNERS_MAX, err, errlen);
	}
	if (strcmp(name, "sign-queue") == 0)
		return set_long(&c->sign_queue, name, v, 1, 100000, err, errlen);
	snprintf(err, errlen, "unknown setting '%s'", name);
	return -1;
}

static char *trim(char *s)
{
	char *e;

	while (isspace((unsigned char)*s))
		s++;
	e = s + strlen(s);
	while (e > s && isspace((unsigned char)e[-1]))
		*--e = '\0';
	return s;
}

int ca_config_parse(struct ca_config *c, const char *text, size_t len, const char *name, char *err,
		    size_t errlen)
{
	char *buf = NULL, *line, *save = NULL;
	int lineno = 0, rc = -1;

	if (len > CONF_MAX) {
		snprintf(err, errlen, "%s: larger than %d bytes", name, CONF_MAX);
		return -1;
	}
	/* a copy to cut into lines; like the file read, it ends at a NUL */
	if ((buf = malloc(len + 1)) == NULL) {
		snprintf(err, errlen, "%s: out of memory", name);
		return -1;
	}
	if (len > 0)
		memcpy(buf, text, len);
	buf[len] = '\0';
	for (line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		char *eq, *k, *v, e2[200];

		lineno++;
		line = trim(line);
		if (*line == '\0' || *line == '#')
			continue;
		eq = strchr(line, '=');
		if (eq == NULL) {
			snprintf(err, errlen, "%s line %d: expected 'name = value'", name, lineno);
			goto out;
		}
		*eq = '\0';
		k = trim(line);
		v = trim(eq + 1);
		if (ca_config_set(c, k, v, e2, sizeof e2) != 0) {
			snprintf(err, errlen, "%s line %d: %s", name, lineno, e2);
			goto out;
		}
	}
	rc = 0;
out:
	free(buf);
	return rc;
}

int ca_config_load(struct ca_config *c, const char *dir, char *err, size_t errlen)
{
	char *path = ca_path(dir, CA_CONFIG_FILE), *buf = NULL;
	size_t len = 0;
	int rc = -1;
	const char *const *n;

	if (path == NULL)
		return -1;
	if (ca_read_file(path, CONF_MAX, &buf, &len) == 0) {
		if (ca_config_parse(c, buf, len, path, err, errlen) != 0)
			goto out;
	} else if (errno != ENOENT) {
		snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
		goto out;
	}
	/* P11CA_SHORT_LIFETIME=... overrides the file */
	for (n = ca_config_names; *n != NULL; n++) {
		char env[64], e2[200];
		const char *v;
		size_t i;

		snprintf(env, sizeof env, "P11CA_%s", *n);
		for (i = 6; env[i] != '\0'; i++)
			env[i] = (char)(env[i] == '-' ? '_' : toupper((unsigned char)env[i]));
		v = getenv(env);
		if (v != NULL && ca_config_set(c, *n, v, e2, sizeof e2) != 0) {
			snprintf(err, errlen, "environment %s: %s", env, e2);
			goto out;
		}
	}
	rc = 0;
out:
	free(buf);
	free(path);
	return rc;
}

static void put(FILE *fp, const char *name, const char *v)
{
	if (v != NULL)
		fprintf(fp, "%s = %s\n", name, v);
}

int ca_config_save(const struct ca_config *c, const char *dir)
{
	char *path = ca_path(dir, CA_CONFIG_FILE), *data = NULL;
	size_t len = 0;
	FILE *fp = open_memstream(&data, &len);
	int rc = -1;

	if (path == NULL || fp == NULL)
		goto out;
	fprintf(fp, "# p11ca settings (docs/ca.md).  P11CA_<NAME> variables and flags override.\n");
	put(fp, "key", c->key);
	put(fp, "tls-key", c->tls_key);
	put(fp, "module", c->module);
	put(fp, "pin-file", c->pin_file);
	if (c->short_hours > 0)
		fprintf(fp, "short-lifetime = %ld\n", c->short_hours);
	if (c->long_hours > 0)
		fprintf(fp, "long-lifetime = %ld\n", c->long_hours);
	if (c->token_days > 0)
		fprintf(fp, "token-lifetime = %ld\n", c->token_days);
	put(fp, "autosign", c->autosign);
	if (c->renew_mtls >= 0)
		fprintf(fp, "renew-mtls = %s\n", c->renew_mtls ? "yes" : "no");
	put(fp, "listen", c->listen);
	put(fp, "token-listen", c->token_listen);
	put(fp, "token-file", c->token_file);
	put(fp, "url", c->url);
	put(fp, "san-patterns", c->san_patterns);
	put(fp, "token-dn-suffix", c->token_dn_suffix);
	if (c->token_rate_limit >= 0)
		fprintf(fp, "token-rate-limit = %ld\n", c->token_rate_limit);
	if (c->timeout > 0)
		fprintf(fp, "timeout = %ld\n", c->timeout);
	if (c->max_connections > 0)
		fprintf(fp, "max-connections = %ld\n", c->max_connections);
	/* CA policy settings */
	if (c->san_wildcards >= 0)
		fprintf(fp, "san-wildcards = %s\n", c->san_wildcards ? "yes" : "no");
	if (c->max_per_address > 0)
		fprintf(fp, "max-connections-per-address = %ld\n", c->max_per_address);
	if (c->token_rate_global >= 0)
		fprintf(fp, "token-rate-limit-global = %ld\n", c->token_rate_global);
	if (c->access_log_rows >= 0)
		fprintf(fp, "access-log-rows = %ld\n", c->access_log_rows);
	put(fp, "db", c->db);
	put(fp, "db-password-file", c->db_password_file);
	if (c->token_rate_shared >= 0)
		fprintf(fp, "token-rate-limit-shared = %s\n", c->token_rate_shared ? "yes" : "no");
	if (c->signers >= 0)
		fprintf(fp, "signers = %ld\n", c->signers);
	if (c->sign_queue >= 0)
		fprintf(fp, "sign-queue = %ld\n", c->sign_queue);
	if (fclose(fp) != 0) {
		fp = NULL;
		goto out;
	}
	fp = NULL;
	rc = p11c_file_write_atomic(path, data, len, 0600) == P11C_OK ? 0 : -1;
out:
	if (fp != NULL)
		fclose(fp);
	free(data);
	free(path);
	return rc;
}

void ca_config_merge(struct ca_config *c, const struct ca_config *over)
{
#define MS(f)                                          \
	if (over->f != NULL) {                          \
		free(c->f);                             \
		c->f = strdup(over->f);                 \
	}
#define ML(f)                    \
	if (over->f >= 0)        \
		c->f = over->f;
	MS(key) MS(tls_key) MS(module) MS(pin_file) MS(autosign) MS(listen) MS(token_listen)
	MS(token_file) MS(url) MS(san_patterns) MS(token_dn_suffix)
	MS(db) MS(db_password_file) ML(token_rate_shared)
	ML(short_hours) ML(long_hours) ML(token_days) ML(renew_mtls) ML(token_rate_limit)
	ML(timeout) ML(max_connections)
	ML(san_wildcards)
	ML(max_per_address) ML(token_rate_global) ML(access_log_rows) ML(signers) ML(sign_queue)
#undef MS
#undef ML
	resolve(c);
}
