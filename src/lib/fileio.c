/* The only writer: atomic replacement (temp file, fsync, rename, fsync of
 * the folder), as OpenBSD acme-client's fileproc does. */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "internal.h"
#include "testhook.h"

p11c_result p11c_file_write_atomic(const char *path, const void *data, size_t len, unsigned mode)
{
	char *tmp = NULL, *dcopy = NULL;
	const char *dir;
	const unsigned char *p = data;
	size_t done = 0;
	int fd = -1, dfd = -1;
	p11c_result r = P11C_ERR_IO;
	size_t plen;
	int saved = 0;

	if (path == NULL || (data == NULL && len > 0))
		return P11C_ERR_ARG;
	plen = strlen(path);
	tmp = calloc(1, plen + 16);
	dcopy = strdup(path);
	if (tmp == NULL || dcopy == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	snprintf(tmp, plen + 16, "%s.tmp.XXXXXX", path);
	fd = mkostemp(tmp, O_CLOEXEC);
	if (fd < 0) {
		tmp[0] = '\0';
		goto out;
	}
	if (fchmod(fd, (mode_t)mode) != 0)
		goto out;
	while (done < len) {
		ssize_t n = write(fd, p + done, len - done);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			goto out;
		done += (size_t)n;
	}
	if (fsync(fd) != 0)
		goto out;
	if (close(fd) != 0) {
		fd = -1;
		goto out;
	}
	fd = -1;
	p11c_test_stall_write(path);
	if (rename(tmp, path) != 0)
		goto out;
	tmp[0] = '\0';
	dir = dirname(dcopy);
	dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (dfd >= 0) {
		(void)fsync(dfd);
		close(dfd);
	}
	r = P11C_OK;
out:
	saved = errno;
	if (fd >= 0)
		close(fd);
	if (tmp != NULL && tmp[0] != '\0')
		unlink(tmp);
	free(tmp);
	free(dcopy);
	errno = r == P11C_OK ? 0 : saved; /* for the caller's message */
	return r;
}

p11c_result p11c_file_read(const char *path, size_t maxlen, unsigned char **out, size_t *len)
{
	int fd = -1;
	struct stat st;
	unsigned char *buf = NULL;
	size_t got = 0;
	p11c_result r = P11C_ERR_IO;

	*out = NULL;
	*len = 0;
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return errno == ENOENT || errno == EACCES ? P11C_ERR_NOT_FOUND : P11C_ERR_IO;
	if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode))
		goto out;
	if ((size_t)st.st_size > maxlen) {
		r = P11C_ERR_PARSE;
		goto out;
	}
	buf = malloc((size_t)st.st_size + 1);
	if (buf == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	while (got < (size_t)st.st_size) {
		ssize_t n = read(fd, buf + got, (size_t)st.st_size - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			goto out;
		got += (size_t)n;
	}
	buf[got] = '\0';
	*out = buf;
	*len = got;
	buf = NULL;
	r = P11C_OK;
out:
	free(buf);
	close(fd);
	return r;
}
