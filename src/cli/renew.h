/* p11cert renew and enroll: the CLI's protocol files (proto/) and
 * what cmd_enroll.c shares with them. */
#ifndef P11C_RENEW_H
#define P11C_RENEW_H

#include "proto/protocol.h"

/* enroll acme (cmd_acme.c): renew runs it again with the recorded
 * options (proto/acme.c); at most ACME_CLI_MAX_NAMES names (-d). */
#define ACME_CLI_MAX_NAMES 100
int cmd_enroll_acme(struct cli *c, int argc, char **argv);

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
