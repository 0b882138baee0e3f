/*
 * Replay driver: a plain main() for the fuzz targets, so that ordinary
 * builds (gcc, ASan) run every corpus file through LLVMFuzzerTestOneInput.
 * Usage: fuzz_NAME_replay PATH...  (files, or directories whose regular
 * files are read; not recursive).  Exits 0 when every input ran; a bug
 * shows up as a sanitizer report or a crash.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fuzz.h"

#define REPLAY_MAX (1024 * 1024)	/* libFuzzer's default -max_len is far below */

static int run_file(const char *path)
{
	FILE *fp = NULL;
	unsigned char *buf = NULL;
	size_t n = 0;
	int rc = -1;

	if ((fp = fopen(path, "rb")) == NULL) {
		fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
		goto out;
	}
	if ((buf = malloc(REPLAY_MAX + 1)) == NULL)
		goto out;
	n = fread(buf, 1, REPLAY_MAX + 1, fp);
	if (ferror(fp) || n > REPLAY_MAX) {
		fprintf(stderr, "replay: %s: unreadable or larger than %d bytes\n", path, REPLAY_MAX);
		goto out;
	}
	/* an exact-size copy, so a read past the input is an ASan error */
	{
		unsigned char *exact = malloc(n > 0 ? n : 1);

		if (exact == NULL)
			goto out;
		memcpy(exact, buf, n);
		LLVMFuzzerTestOneInput(exact, n);
		free(exact);
	}
	rc = 0;
out:
	free(buf);
	if (fp != NULL)
		fclose(fp);
	return rc;
}

static int cmp(const void *a, const void *b)
{
	return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The regular files of a directory, in name order (reproducible runs). */
static int run_dir(const char *dir, size_t *count)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	struct stat st;
	char **names = NULL, **grown, *path;
	size_t n = 0, cap = 0, i;
	int rc = 0;

	if (d == NULL) {
		fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
		return -1;
	}
	while ((e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		if (asprintf(&path, "%s/%s", dir, e->d_name) < 0) {
			rc = -1;
			break;
		}
		if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
			free(path);
			continue;
		}
		if (n == cap) {
			cap = cap ? cap * 2 : 64;
			if ((grown = realloc(names, cap * sizeof *names)) == NULL) {
				free(path);
				rc = -1;
				break;
			}
			names = grown;
		}
		names[n++] = path;
	}
	closedir(d);
	if (names != NULL)
		qsort(names, n, sizeof *names, cmp);
	for (i = 0; i < n; i++) {
		if (rc == 0 && run_file(names[i]) != 0)
			rc = -1;
		else if (rc == 0)
			(*count)++;
		free(names[i]);
	}
	free(names);
	return rc;
}

int main(int argc, char **argv)
{
	struct stat st;
	size_t count = 0;
	int i;

	if (argc < 2) {
		fprintf(stderr, "usage: %s FILE|DIR...\n", argv[0]);
		return 64;
	}
	for (i = 1; i < argc; i++) {
		if (stat(argv[i], &st) != 0) {
			fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
			return 1;
		}
		if (S_ISDIR(st.st_mode) ? run_dir(argv[i], &count) != 0 : run_file(argv[i]) != 0)
			return 1;
		if (!S_ISDIR(st.st_mode))
			count++;
	}
	printf("replay: %zu inputs ran\n", count);
	return count > 0 ? 0 : 1;
}
