/*
 * alpn_responder ADDR PORTFILE [IDENTIFIER KEYAUTH]...: the ACME
 * tls-alpn-01 responder (src/lib/enroll/acme_alpn.c) for
 * tests/cli/test_acme_alpn.sh.  Starts it on ADDR ("127.0.0.1:0"), adds the
 * identifiers, writes the bound port to PORTFILE (temp file + rename), then
 * waits for SIGTERM or SIGINT, stops the responder and exits 0.
 * Exit 2: bad arguments / responder refused them.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "enroll/acme_alpn.h"

int main(int argc, char **argv)
{
	p11c_alpn_responder *r = NULL;
	char err[256], tmp[4096];
	sigset_t set;
	FILE *fp;
	int i, sig = 0, ok = 0;
	p11c_result res;

	if (argc < 3 || argc % 2 != 1) {
		fprintf(stderr, "usage: alpn_responder ADDR PORTFILE [IDENTIFIER KEYAUTH]...\n");
		return 2;
	}
	/* block before the thread starts, so it inherits the mask */
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	sigaddset(&set, SIGINT);
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
	(void)snprintf(tmp, sizeof(tmp), "%s.tmp", argv[2]);
	fp = fopen(tmp, "w");
	if (fp != NULL) {
		ok = fprintf(fp, "%d\n", p11c_alpn_responder_port(r)) > 0;
		ok = fclose(fp) == 0 && ok && rename(tmp, argv[2]) == 0;
	}
	if (!ok) {
		fprintf(stderr, "alpn_responder: cannot write %s\n", argv[2]);
		p11c_alpn_responder_stop(r);
		return 2;
	}
	(void)sigwait(&set, &sig);
	p11c_alpn_responder_stop(r);
	printf("stopped\n");
	return 0;
}
