/* Where PINs come from.  A PIN lives only in a caller stack buffer that is
 * wiped after C_Login; it is never logged, never in argv. */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"

p11c_result p11c_pin_from_file(p11c_ctx *ctx, const char *src, char *buf, size_t *len)
{
	const char *path = src;
	int fd = -1;
	ssize_t n;
	size_t got = 0, end;
	p11c_result r = P11C_ERR_NO_PIN;

	/* RFC 7512 s2.3 pin-source is a URI; accept file: and plain paths */
	if (strncmp(path, "file://", 7) == 0)
		path += 7;
	else if (strncmp(path, "file:", 5) == 0)
		path += 5;
	if (*path == '\0') {
		p11c_detail(ctx, "empty PIN source");
		return P11C_ERR_NO_PIN;
	}
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0) {
		p11c_detail(ctx, "cannot read PIN file '%s': %s", path, strerror(errno));
		return P11C_ERR_NO_PIN;
	}
	while (got < P11C_PIN_MAX - 1) {
		n = read(fd, buf + got, P11C_PIN_MAX - 1 - got);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			p11c_detail(ctx, "cannot read PIN file '%s': %s", path, strerror(errno));
			goto out;
		}
		if (n == 0)
			break;
		got += (size_t)n;
	}
	end = 0;
	while (end < got && buf[end] != '\n' && buf[end] != '\r')
		end++;
	if (end == got && got == P11C_PIN_MAX - 1) {
		p11c_detail(ctx, "PIN file '%s' has a first line longer than %d bytes", path,
			    P11C_PIN_MAX - 2);
		goto out;
	}
	if (end == 0) {
		p11c_detail(ctx, "PIN file '%s' is empty", path);
		goto out;
	}
	p11c_wipe(buf + end, got - end);
	buf[end] = '\0';
	*len = end;
	r = P11C_OK;
out:
	if (r != P11C_OK)
		p11c_wipe(buf, P11C_PIN_MAX);
	close(fd);
	return r;
}

p11c_result p11c_pin_get(p11c_ctx *ctx, char *buf, size_t *len)
{
	const char *env;
	char prompt[96];

	if (ctx->pin_source != NULL)
		return p11c_pin_from_file(ctx, ctx->pin_source, buf, len);
	if (ctx->pin_file != NULL)
		return p11c_pin_from_file(ctx, ctx->pin_file, buf, len);
	if (ctx->pin_env && (env = getenv("P11CERT_PIN")) != NULL && *env != '\0') {
		size_t n = strlen(env);

		if (n >= P11C_PIN_MAX) {
			p11c_detail(ctx, "P11CERT_PIN is longer than %d bytes", P11C_PIN_MAX - 1);
			return P11C_ERR_NO_PIN;
		}
		memcpy(buf, env, n + 1);
		*len = n;
		return P11C_OK;
	}
	if (ctx->pin_cb != NULL) {
		snprintf(prompt, sizeof prompt, "PIN for token '%s': ", ctx->token_label);
		if (ctx->pin_cb(prompt, buf, P11C_PIN_MAX, ctx->pin_cb_data) == 0 &&
		    memchr(buf, '\0', P11C_PIN_MAX) != NULL && buf[0] != '\0') {
			*len = strlen(buf);
			return P11C_OK;
		}
		p11c_wipe(buf, P11C_PIN_MAX);
	}
	p11c_detail(ctx, "token '%s' needs a PIN: give pin-source=file:PATH in the URI, "
		    "--pin-file FILE, or the P11CERT_PIN environment variable", ctx->token_label);
	return P11C_ERR_NO_PIN;
}

int p11c_no_core_dumps(void)
{
	struct rlimit rl;
	int rc = 0;

	/* RLIMIT_CORE 0 (the soft limit: a hook may raise its own again): no
	 * core file; PR_SET_DUMPABLE 0: no core either, and no ptrace or
	 * /proc/PID/mem by other processes of the same user (reset by execve,
	 * so children are not affected) */
	if (getrlimit(RLIMIT_CORE, &rl) != 0)
		rc = -1;
	rl.rlim_cur = 0;
	if (rc == 0 && setrlimit(RLIMIT_CORE, &rl) != 0)
		rc = -1;
	if (prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0)
		rc = -1;
	return rc;
}
