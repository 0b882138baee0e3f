/* p11cert renew: one renewer per enrollment protocol (cmd_renew.c,
 * renew_token.c). */
#ifndef P11C_RENEW_H
#define P11C_RENEW_H

#include <jansson.h>

#include "cli.h"

/* What an enrollment record says (DIR/CLIENTID.enroll). */
struct renew_job {
	const char *dir, *server, *id, *uri, *ca_file;
	int rekey;
	json_t *rec; /* the whole record (protocol-specific fields) */
};

/* Shared-token identities: with the shared token while its file is there
 * (or P11CERT_CA_TOKEN is set), else p11ca's POST /renew over mTLS. */
int renew_token(struct cli *c, const struct renew_job *j);

/* ACME identities (cmd_acme.c): the recorded order again. */
int renew_acme(struct cli *c, const struct renew_job *j);

/* DIR/LABEL.enroll for a shared-token identity (no secret: the token
 * file's path, never its content). */
int token_record_write(struct cli *c, const char *dir, const char *label, const char *key_uri,
		       const char *host, int port, const char *token_file, const char *dn,
		       const char *const *sans, int nsans);

/* The shared token from FILE, else P11CERT_CA_TOKEN (cmd_enroll.c);
 * the caller wipes and frees it. */
int read_token(struct cli *c, const char *file, unsigned char **tok, size_t *len);

#endif
