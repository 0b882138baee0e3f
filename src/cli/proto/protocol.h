/* The CLI's half of the enrollment-protocol table: what p11cert does with
 * files for each protocol (the DIR/ID.enroll record, CSRs kept across
 * runs, locks), one file each in src/cli/proto/.  Keyed by the library
 * half (src/lib/enroll/protocol.h): an entry points at its struct
 * p11c_protocol, whose name is the record's "protocol".
 * docs/architecture.md, "Enrollment protocols". */
#ifndef P11C_CLI_PROTOCOL_H
#define P11C_CLI_PROTOCOL_H

#include <time.h>

#include <jansson.h>

#include "../cli.h"
#include "enroll/protocol.h"

/* What an enrollment record says (DIR/CLIENTID.enroll): the fields every
 * protocol's record carries ("protocol", "server", "client_id", "key",
 * optional "ca_file"), and the whole record for the protocol's own. */
struct renew_job {
	const char *dir, *server, *id, *uri, *ca_file;
	int rekey;
	json_t *rec;
};

/* When the CA would have the certificate renewed (ACME: RFC 9773 renewal
 * information): its window, the time picked in it, and whether that time
 * has come. */
struct cli_schedule {
	int due;
	time_t start, end, at;
	char explanation[512]; /* the CA's explanation URL, or "" */
};

struct cli_protocol {
	const struct p11c_protocol *lib; /* the wire half; lib->name names both */
	/* The protocol's own record fields (beyond the common ones), before
	 * anything touches the token: 0, or prints what is wrong and returns
	 * EX_DATAERR.  NULL: none. */
	int (*record_check)(struct cli *c, const struct renew_job *j);
	/* p11cert renew (and --rekey): 0 with a current certificate for
	 * j->uri in the token, or an exit code (printed; docs/cli.md). */
	int (*renew)(struct cli *c, const struct renew_job *j);
	/* check and renew: the CA's own schedule for cert, the current
	 * certificate of j->uri: 1 with *s filled; 0 when the CA gives none
	 * (a warning at most; the lifetime rule of check applies and renew
	 * renews).  Optional: NULL for none. */
	int (*schedule)(struct cli *c, const struct renew_job *j, X509 *cert, struct cli_schedule *s);
};

extern const struct cli_protocol cli_proto_caramel;     /* proto/caramel.c */
extern const struct cli_protocol cli_proto_sharedtoken; /* proto/sharedtoken.c */
extern const struct cli_protocol cli_proto_acme;        /* proto/acme.c */
extern const struct cli_protocol cli_proto_est;         /* proto/est.c */

/* The entry for the record protocol NAME, or NULL (proto/protocol.c). */
const struct cli_protocol *cli_protocol_find(const char *name);

/* Load DIR/ID.enroll for renew and check: from a folder and a file no
 * other user can write (cli_state.c); the common fields; a CA file just
 * as safe; the protocol from the table and its own fields.  0 with *j
 * filled (j->rekey 0; the caller json_decref()s j->rec, whose strings the
 * other fields point into) and *pr set; else the exit code, printed:
 * EX_DATAERR (not a record), EX_UNAVAILABLE (a protocol not in the table),
 * EX_UNSAFE, EX_NOINPUT; j->rec is then NULL. */
int cli_record_load(struct cli *c, const char *dir, const char *id, struct renew_job *j,
		    const struct cli_protocol **pr);

#endif
