/*
 * p11ca's state folder (issue 10 points 11, 13): who may have written it,
 * whether its database is the CA's, one `serve` at a time.
 */
#ifndef P11CA_STATEDIR_H
#define P11CA_STATEDIR_H

#include "ca.h"

/* Before opening an existing CA (every command but init): the folder is
 * owned by us (or root) and writable by nobody else; when ca.crt exists,
 * p11ca.db exists and is not empty (only init creates a database) unless
 * the database is PostgreSQL (flags, or the folder's settings).
 * 0, or -1 with a message. */
int ca_state_check(const char *dir, const struct ca_config *flags);

/* After ca_open, for commands that use the CA key (and serve): key, token
 * and PIN files are owned by us (or root) and not accessible to group or
 * others; `serve` also needs its TLS key file and a writable database.
 * 0, or -1 with a message. */
int ca_state_check_files(struct ca *ca, int serve);

/* `serve`: an exclusive lock on DIR/p11ca.lock, held until *fd is closed
 * (process exit).  0, or -1 with a message when another serve holds it. */
int ca_state_lock(const char *dir, int *fd);

#endif
