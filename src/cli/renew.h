/* p11cert renew and enroll: the CLI's protocol files (proto/) and
 * what cmd_enroll.c shares with them. */
#ifndef P11C_RENEW_H
#define P11C_RENEW_H

#include "proto/protocol.h"

/* enroll acme (cmd_acme.c): renew runs it again with the recorded
 * options (proto/acme.c); at most ACME_CLI_MAX_NAMES names (-d). */
#define ACME_CLI_MAX_NAMES 100
int cmd_enroll_acme(struct cli *c, int argc, char **argv);
/* What renew adds to enroll acme (proto/acme.c): label, the record's
 * client_id (the key's label: its lock is taken before the key is looked
 * up); the
 * order replaces the current certificate (RFC 9773 s5) when the CA has
 * renewalInfo; rekey: the safe rekey of rekey.c, the certificate of the new
 * key kept in DIR/LABEL.rekey.chain.pem until the old key is gone. */
struct acme_renew_opts {
	const char *label;
	int rekey;
};
int acme_enroll_run(struct cli *c, int argc, char **argv, const struct acme_renew_opts *ro);

/* DIR/LABEL.enroll for a shared-token identity (no secret: the token
 * file's path, never its content). */
int token_record_write(struct cli *c, const char *dir, const char *label, const char *key_uri,
		       const char *host, int port, const char *token_file, const char *dn,
		       const char *const *sans, int nsans);

/* enroll caramel (cmd_enroll.c): renew without a new key runs it with
 * --once */
int cmd_enroll_caramel(struct cli *c, int argc, char **argv);

/* The shared token from FILE, else P11CERT_CA_TOKEN (cmd_enroll.c);
 * the caller wipes and frees it. */
int read_token(struct cli *c, const char *file, unsigned char **tok, size_t *len);

/* acme key-change (cmd_acme_keychange.c).  EX_TEMPFAIL_ (printed) while DIR/LABEL.acme-keychange marks an
 * unfinished change of LABEL's ACME account key, else 0
 * (cmd_acme_keychange.c): enroll acme and renew wait for it. */
int acme_keychange_pending(struct cli *c, const char *dir, const char *label);
/* DIR/ID.enroll of an ACME enrollment (cli_record_load; another protocol:
 * EX_DATAERR) and its account key URI: 0, or the exit code (printed).
 * The caller json_decref()s j->rec, also on error. */
int acme_record_load(struct cli *c, const char *dir, const char *id, struct renew_job *j, const char **acct_uri);
/* The key named by URI, generated (TYPE) when missing; *created says
 * which (cmd_enroll.c).  own_uri: URI is our "pkcs11:object=LABEL". */
p11c_result key_for(struct cli *c, const char *uri, const char *type, p11c_key **key, int *created, int own_uri);

/* enroll est (cmd_est.c) */
int cmd_enroll_est(struct cli *c, int argc, char **argv);
/* The PEM certificates of DIR/ID.cacerts (cmd_est.c): 0, or the exit
 * code, printed */
int est_read_cacerts(struct cli *c, const char *path, STACK_OF(X509) **cas);
/* The EST exit code of a request still pending (as Caramel's) */
#define EST_EX_PENDING 69

#endif
