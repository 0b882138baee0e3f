/* The CLI's protocol table (protocol.h): one line per protocol, in the
 * order of the library's table. */
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocol.h"

static const struct cli_protocol *const protocols[] = {
	&cli_proto_caramel,
	&cli_proto_sharedtoken,
	&cli_proto_acme,
	&cli_proto_est,
};

const struct cli_protocol *cli_protocol_find(const char *name)
{
	const struct p11c_protocol *lib = p11c_protocol_find(name);
	size_t i;

	for (i = 0; lib != NULL && i < sizeof protocols / sizeof protocols[0]; i++)
		if (protocols[i]->lib == lib)
			return protocols[i];
	return NULL;
}

int cli_record_load(struct cli *c, const char *dir, const char *id, struct renew_job *j,
		    const struct cli_protocol **pr)
{
	const char *proto;
	char *path = NULL;
	unsigned char *buf = NULL;
	size_t len = 0;
	json_error_t je;
	int rc;

	memset(j, 0, sizeof *j);
	*pr = NULL;
	if (asprintf(&path, "%s/%s.enroll", dir, id) < 0)
		return EX_SOFTWARE;
	/* the record says which server may act on which key */
	if ((rc = cli_state_read(c, path, INPUT_MAX, &buf, &len)) != 0)
		goto out;
	j->rec = json_loadb((const char *)buf, len, 0, &je);
	if (j->rec == NULL || json_unpack(j->rec, "{s:s, s:s, s:s, s:s}", "protocol", &proto, "server", &j->server,
					  "client_id", &j->id, "key", &j->uri) != 0) {
		fprintf(stderr, "p11cert: %s: %s is not an enrollment record\n", c->cmd, path);
		rc = EX_DATAERR;
		goto out;
	}
	j->dir = dir;
	j->ca_file = json_string_value(json_object_get(j->rec, "ca_file"));
	if (j->ca_file != NULL && (rc = cli_state_file("CA file", j->ca_file)) != 0)
		goto out;
	if ((*pr = cli_protocol_find(proto)) == NULL) {
		fprintf(stderr, "p11cert: %s: protocol '%s' cannot be renewed yet\n", c->cmd, proto);
		rc = EX_UNAVAILABLE;
		goto out;
	}
	if ((*pr)->record_check != NULL)
		rc = (*pr)->record_check(c, j);
out:
	if (rc != 0) {
		json_decref(j->rec);
		memset(j, 0, sizeof *j);
		*pr = NULL;
	}
	free(buf);
	free(path);
	return rc;
}
