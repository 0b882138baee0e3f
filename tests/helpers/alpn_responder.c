/*
 * alpn_responder ADDR PORTFILE [IDENTIFIER KEYAUTH]...
 * alpn_responder --stdin ADDR PORTFILE
 *
 * The ACME tls-alpn-01 responder (src/lib/enroll/acme_alpn.c) for
 * tests/cli/test_acme_alpn*.sh.  Starts it on ADDR ("127.0.0.1:0"), adds the
 * identifiers, writes the bound port to PORTFILE (temp file + rename), then
 * waits for SIGTERM or SIGINT, stops the responder, prints "stopped" and
 * exits 0.  With --stdin it reads lines "IDENTIFIER KEYAUTH" instead and
 * prints "added IDENTIFIER" (or "refused IDENTIFIER: why") after each;
 * end of input stops it.  Exit 2: bad arguments / responder refused them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/acme_alpn.h"

static int write_port(const char *path, const p11c_alpn_responder *r)
{
	char tmp[4096];
	FILE *fp;
	int ok = 0;

	(void)snprintf(tmp, sizeof(tmp), "%s.tmp", path);
	fp = fopen(tmp, "w");
	if (fp != NULL) {
		ok = fprintf(fp, "%d\n", p11c_alpn_responder_port(r)) > 0;
		ok = fclose(fp) == 0 && ok && rename(tmp, path) == 0;
	}
	if (!ok)
		fprintf(stderr, "alpn_responder: cannot write %s\n", path);
	return ok;
}

/* lines "IDENTIFIER KEYAUTH" until end of input */
static void read_adds(p11c_alpn_responder *r)
{
	char line[1024], *sp, *nl;
	p11c_result res;

	while (fgets(line, sizeof(line), stdin) != NULL) {
		nl = strchr(line, '\n');
		if (nl != NULL)
			*nl = '\0';
		sp = strchr(line, ' ');
		if (sp == NULL) {
			printf("refused %s: no key authorization\n", line);
		} else {
			*sp = '\0';
			res = p11c_alpn_responder_add(r, line, sp + 1);
			if (res == P11C_OK)
				printf("added %s\n", line);
			else
				printf("refused %s: %s\n", line, p11c_strerror(res));
		}
		(void)fflush(stdout);
	}
}

int main(int argc, char **argv)
{
	p11c_alpn_responder *r = NULL;
	char err[256];
	sigset_t set;
	int i, sig = 0, from_stdin = 0;
	p11c_result res;

	if (argc > 1 && strcmp(argv[1], "--stdin") == 0) {
		from_stdin = 1;
		argc--;
		argv++;
	}
	if (argc < 3 || argc % 2 != 1 || (from_stdin && argc != 3)) {
		fprintf(stderr, "usage: alpn_responder ADDR PORTFILE [IDENTIFIER KEYAUTH]...\n"
				"       alpn_responder --stdin ADDR PORTFILE\n");
		return 2;
	}
	/* block before the thread starts, so it inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
	if (!from_stdin)
		(void)pthread_sigmask(SIG_BLOCK, &set, NULL);

	res = p11c_alpn_responder_start(argv[1], &r, err, sizeof(err));
	if (res != P11C_OK) {
		fprintf(stderr, "alpn_responder: %s (%s)\n", err, p11c_strerror(res));
		return 2;
	}
	for (i = 3; i + 1 < argc; i += 2) {
		res = p11c_alpn_responder_add(r, argv[i], argv[i + 1]);
		if (res != P11C_OK) {
			fprintf(stderr, "alpn_responder: add '%s': %s\n", argv[i], p11c_strerror(res));
			p11c_alpn_responder_stop(r);
			return 2;
		}
	}
	if (!write_port(argv[2], r)) {
		p11c_alpn_responder_stop(r);
		return 2;
	}
	if (from_stdin)
		read_adds(r);
	else
		(void)sigwait(&set, &sig);
	p11c_alpn_responder_stop(r);
	printf("stopped\n");
	return 0;
}
