/* The CLI half of ACME in the protocol table (protocol.h): renewal is a
 * new order for the recorded names with the recorded account, key and
 * challenge (RFC 8555 has no renewal of its own; docs/acme.md). */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>

#include <jansson.h>

#include "../renew.h"
#include "protocol.h"

/* The fields an ACME record adds to the common ones: its names (1 to
 * ACME_CLI_MAX_NAMES strings). */
static int acme_record_check(struct cli *c, const struct renew_job *j)
{
	const json_t *names = json_object_get(j->rec, "names"), *v;
	size_t i;

	if (!json_is_array(names) || json_array_size(names) == 0 || json_array_size(names) > ACME_CLI_MAX_NAMES) {
		fprintf(stderr, "p11cert: %s: the ACME record of '%s' has no names (or more than %d)\n", c->cmd, j->id,
			ACME_CLI_MAX_NAMES);
		return EX_DATAERR;
	}
	json_array_foreach(names, i, v) {
		if (json_string_value(v) == NULL) {
			fprintf(stderr, "p11cert: %s: the ACME record of '%s' has a name that is not a string\n", c->cmd,
				j->id);
			return EX_DATAERR;
		}
	}
	return 0;
}

/* p11cert renew for an ACME identity: the order again, as recorded in
 * DIR/LABEL.enroll (same account, key, names and challenge). */
static int renew_acme(struct cli *c, const struct renew_job *j)
{
	static const char *const opt_of[][2] = {
		{ "account_key", "--account-key" }, { "challenge", "--challenge" }, { "http_listen", "--http-listen" },
		{ "tls_listen", "--tls-listen" },
		{ "webroot", "--webroot" },	    { "dns_hook", "--dns-hook" },   { "ca_file", "--cacert" },
	};
	char *av[2 * ACME_CLI_MAX_NAMES + 24];
	const json_t *names = json_object_get(j->rec, "names"), *v;
	size_t i, k;
	int n = 0;

	if (j->rekey) {
		fprintf(stderr, "p11cert: %s: --rekey is not available for ACME identities yet (docs/acme.md)\n", c->cmd);
		return EX_USAGE;
	}
	av[n++] = (char *)"acme";
	av[n++] = (char *)"--server";
	av[n++] = (char *)(uintptr_t)j->server;
	av[n++] = (char *)"--key";
	av[n++] = (char *)(uintptr_t)j->uri;
	av[n++] = (char *)"--dir";
	av[n++] = (char *)(uintptr_t)j->dir;
	for (k = 0; k < sizeof opt_of / sizeof opt_of[0]; k++) {
		const char *val = json_string_value(json_object_get(j->rec, opt_of[k][0]));

		if (val != NULL) {
			av[n++] = (char *)(uintptr_t)opt_of[k][1];
			av[n++] = (char *)(uintptr_t)val;
		}
	}
	if (json_is_true(json_object_get(j->rec, "agree_tos")))
		av[n++] = (char *)"--agree-tos";
	json_array_foreach(names, i, v) {
		if (json_string_value(v) == NULL) {
			fprintf(stderr, "p11cert: %s: the ACME record's names are not strings\n", c->cmd);
			return EX_DATAERR;
		}
		av[n++] = (char *)"-d";
		av[n++] = (char *)(uintptr_t)json_string_value(v);
	}
	av[n] = NULL;
	optind = 0; /* a fresh getopt scan */
	return cmd_enroll_acme(c, n, av);
}

const struct cli_protocol cli_proto_acme = {
	.lib = &p11c_proto_acme,
	.record_check = acme_record_check,
	.renew = renew_acme,
};
