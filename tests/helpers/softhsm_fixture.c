#include "softhsm_fixture.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <p11cert/p11cert.h>

#ifndef SOFTHSM_TOKEN_SCRIPT
#error "SOFTHSM_TOKEN_SCRIPT must be defined"
#endif

static int run(char *const argv[])
{
	pid_t pid = fork();
	int st;

	if (pid < 0)
		return -1;
	if (pid == 0) {
		execv(argv[0], argv);
		_exit(127);
	}
	if (waitpid(pid, &st, 0) < 0)
		return -1;
	return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static int read_var(const char *envfile, const char *name, char *out, size_t len)
{
	FILE *fp = fopen(envfile, "r");
	char line[512];
	size_t nl = strlen(name);
	int rc = -1;

	if (fp == NULL)
		return -1;
	while (fgets(line, sizeof line, fp) != NULL) {
		/* export NAME='value' */
		if (strncmp(line, "export ", 7) == 0 && strncmp(line + 7, name, nl) == 0 &&
		    line[7 + nl] == '=') {
			char *v = line + 8 + nl, *end;
			if (*v == '\'')
				v++;
			end = strrchr(v, '\'');
			if (end == NULL)
				end = v + strcspn(v, "\n");
			*end = '\0';
			if (strlen(v) < len) {
				memcpy(out, v, strlen(v) + 1);
				rc = 0;
			}
			break;
		}
	}
	fclose(fp);
	return rc;
}

int softhsm_fixture_create(struct softhsm_fixture *f, const char *label)
{
	char envfile[300], conf[300];
	const char *base = getenv("TMPDIR");

	memset(f, 0, sizeof *f);
	if (label == NULL)
		label = "p11cert-test";
	snprintf(f->dir, sizeof f->dir, "%s/p11c-fixture-XXXXXX", base ? base : "/tmp");
	if (mkdtemp(f->dir) == NULL)
		return -1;
	snprintf(f->label, sizeof f->label, "%s", label);
	{
		char *argv[] = { (char *)SOFTHSM_TOKEN_SCRIPT, (char *)"create", f->dir,
				 (char *)"--label", f->label, NULL };
		if (run(argv) != 0)
			return -1;
	}
	snprintf(envfile, sizeof envfile, "%s/env", f->dir);
	if (read_var(envfile, "P11CERT_TEST_MODULE", f->module, sizeof f->module) != 0 ||
	    read_var(envfile, "P11CERT_TEST_PIN_FILE", f->pin_file, sizeof f->pin_file) != 0 ||
	    read_var(envfile, "SOFTHSM2_CONF", conf, sizeof conf) != 0)
		return -1;
	setenv("SOFTHSM2_CONF", conf, 1);
	snprintf(f->uri, sizeof f->uri, "pkcs11:token=%s", f->label);
	return 0;
}

void softhsm_fixture_destroy(struct softhsm_fixture *f)
{
	char *argv[] = { (char *)SOFTHSM_TOKEN_SCRIPT, (char *)"destroy", f->dir, NULL };

	if (f->dir[0] != '\0')
		(void)run(argv);
	f->dir[0] = '\0';
}

struct p11c_ctx *softhsm_fixture_ctx(const struct softhsm_fixture *f)
{
	p11c_ctx *ctx = NULL;

	if (p11c_ctx_new(&ctx) != P11C_OK)
		return NULL;
	if (p11c_ctx_set_module(ctx, f->module) != P11C_OK ||
	    p11c_ctx_set_pin_file(ctx, f->pin_file) != P11C_OK) {
		p11c_ctx_free(&ctx);
		return NULL;
	}
	p11c_ctx_set_pin_env(ctx, 0);
	return ctx;
}

void test_rmdir_flat(const char *dir)
{
	struct dirent *e;
	char p[512];
	DIR *d = opendir(dir);

	while (d != NULL && (e = readdir(d)) != NULL) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(p, sizeof(p), "%s/%s", dir, e->d_name);
		unlink(p);
	}
	if (d != NULL)
		closedir(d);
	rmdir(dir);
}
