/* p11cert command line: shared pieces. */
#ifndef P11C_CLI_H
#define P11C_CLI_H

#include <time.h>

#include <openssl/x509.h>

#include <p11cert/p11cert.h>

/* sysexits(3) */
#define EX_OK_ 0
#define EX_FAIL 1
#define EX_USAGE 64
#define EX_DATAERR 65
#define EX_NOINPUT 66
#define EX_UNAVAILABLE 69
#define EX_SOFTWARE 70
#define EX_CANTCREAT 73
#define EX_IOERR 74
#define EX_NOPERM 77
#define EX_TEMPFAIL_ 75
#define EX_PROTOCOL_ 76
/* EX_CONFIG: a state folder, lock or record another user could write */
#define EX_UNSAFE 78

#define INPUT_MAX (1024 * 1024)

struct cli {
	const char *cmd;
	const char *module;
	const char *pin_file;
	int verbose;
	int quiet;
	int allow_core; /* --allow-core-dumps (debugging) */
	p11c_ctx *ctx;
};

int cli_exit_code(p11c_result r);
/* Print "p11cert: CMD: DETAIL" and return the exit code for r. */
int cli_fail(struct cli *c, p11c_result r, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* After getopt_long returned '?' or ':'. */
int cli_bad_option(struct cli *c, char **argv);
int cli_usage(struct cli *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* A whole decimal number in [lo, hi]: 0, or -1 (nothing printed). */
int cli_parse_long(const char *s, long lo, long hi, long *out);
/* The same for the value of option OPT: 0, or prints a usage error naming
 * the option and the range and returns EX_USAGE. */
int cli_num(struct cli *c, const char *opt, const char *s, long lo, long hi, long *out);
/* cli_state.c.  Take the run lock PATH (flock, created 0600, O_NOFOLLOW)
 * after checking its folder (cli_state_dir): the fd, held until it is
 * closed or the process exits; -1 when another run holds it, -2 when the
 * file cannot be opened (errno set), -3 when the folder or the lock file is
 * unsafe (printed: exit EX_UNSAFE). */
int cli_lock(const char *path);
/* cli_lock with the messages: 0 with *fd held, or the exit code (printed:
 * EX_TEMPFAIL_ locked, EX_UNSAFE, EX_CANTCREAT) with *fd < 0. */
int cli_lock_run(struct cli *c, const char *path, int *fd);
/* PATH made absolute (records are read from any folder); a copy of PATH
 * when it cannot be resolved; NULL for NULL or out of memory. */
char *cli_absolute(const char *path);
/* 0 when DIR is a folder owned by us or root and not writable by group or
 * others; otherwise prints why and returns the exit code (EX_UNSAFE,
 * EX_NOINPUT when missing). */
int cli_state_dir(const char *dir);
/* Read a record (PATH in a safe folder, not a symlink, a regular file owned
 * by us or root, not group/other writable, at most MAX bytes): 0, or prints
 * the error and returns the exit code. */
int cli_state_read(struct cli *c, const char *path, size_t max, unsigned char **buf, size_t *len);
/* 0 when the file PATH (WHAT, for the message) is missing or owned by us or
 * root and not group/other writable; otherwise prints why, EX_UNSAFE. */
int cli_state_file(const char *what, const char *path);
/* DIR/NAME SUFFIX, malloc'ed (NULL when out of memory). */
char *cli_path_in(const char *dir, const char *name, const char *suffix);
/* 1 when S can name a file in a state folder: not empty, at most MAX
 * bytes, no '/', no leading '.', no control character. */
int cli_file_name_ok(const char *s, size_t max);
/* 1 when NAME is BASE SUFFIX ".tmp.XXXXXX": a temp file that
 * p11c_file_write_atomic left (mkostemp fills the six X with letters and
 * digits), for the clean-up after a killed run. */
int cli_temp_of(const char *name, const char *base, const char *suffix);
/* Remove DIR's temp files (cli_temp_of) of BASE with each of the N
 * suffixes, after a killed run; the caller holds BASE's lock. */
void cli_remove_temps(const char *dir, const char *base, const char *const *suffixes, size_t n);
/* After the CA of an enrollment rejected the request for KEY: 1 when the
 * key may be destroyed (it has no certificate, or one issued by CA), 0 when
 * its certificate comes from another CA (another enrollment's key: a
 * server it never trusted cannot make us destroy it). */
int cli_rejection_may_destroy(struct cli *c, p11c_key *key, X509 *ca);

/* cli_proc.c.  1 when the environment entry "NAME=value" (or NAME) is one of
 * the secret variables (P11CERT_PIN, P11CERT_CA_TOKEN). */
int cli_secret_var(const char *entry);
/* Run "sh -c CMD" without the secret variables in its environment; its
 * exit status, 128 when killed by a signal, -1 when it could not run. */
int cli_run_hook(const char *cmd);

/* cli_text.c.  Copy S to OUT (SIZE bytes with the NUL) with every byte
 * outside printable ASCII as \xHH, cut with "..." when too long; returns
 * the length. */
size_t cli_escape(const char *s, char *out, size_t size);
/* S escaped for a terminal, in one of a few rotating static buffers (up to
 * 1023 bytes): for printf arguments that come from a token, a certificate
 * or a server. */
const char *cli_safe(const char *s);
/* The library handle, configured from the global options. */
p11c_result cli_ctx(struct cli *c);
/* Write to FILE atomically (or stdout when NULL or "-"). */
int cli_output(struct cli *c, const char *file, const void *data, size_t len, unsigned mode);
/* Read a whole input file; prints the error. */
int cli_input(struct cli *c, const char *file, unsigned char **buf, size_t *len);
/* 1 when --help was asked for (prints help). */
int cli_help(int argc, char **argv, const char *text);

int cmd_keygen(struct cli *c, int argc, char **argv);
int cmd_csr(struct cli *c, int argc, char **argv);
int cmd_delete(struct cli *c, int argc, char **argv);
int cmd_import(struct cli *c, int argc, char **argv);
int cmd_export(struct cli *c, int argc, char **argv);
int cmd_list(struct cli *c, int argc, char **argv);
int cmd_show(struct cli *c, int argc, char **argv);
int cmd_enroll(struct cli *c, int argc, char **argv);
int cmd_curl(struct cli *c, int argc, char **argv);
/* 0 when libcurl does its TLS with OpenSSL (src/lib/curlssl.h); else the
 * reason on stderr and EX_UNAVAILABLE.  Network commands call it before
 * they touch the token or write a file. */
int cli_curl_ready(struct cli *c);
int cmd_tunnel(struct cli *c, int argc, char **argv);
int cmd_check(struct cli *c, int argc, char **argv);
int cmd_renew(struct cli *c, int argc, char **argv);
int cmd_revoke(struct cli *c, int argc, char **argv);
/* p11cert acme key-change (cmd_acme_keychange.c) */
int cmd_acme(struct cli *c, int argc, char **argv);
/* Write DIR/pkcs11.cfg and DIR/truststore.p12 (javafiles.c) for key and
 * the CA certificates cas; their paths in *cfg_path / *ts_path when not
 * NULL (caller frees).  0 or an exit code (printed). */
int cli_java_files(struct cli *c, const char *dir, p11c_key *key, STACK_OF(X509) *cas, char **cfg_path,
		   char **ts_path);
/* The message of a Caramel request still waiting for its signature, and
 * a warning when the server is not p11ca and the key is one upstream
 * Caramel never signs (caramel_pending.c). */
void cli_caramel_pending(struct cli *c, const char *server, const char *sha, const char *id, p11c_key *key);
void cli_caramel_warn_upstream(struct cli *c, const char *server, p11c_key *key);
/* seconds since the epoch of an ASN1_TIME */
time_t ca_time(const ASN1_TIME *t);

/* rekey.c: the steps of every renew --rekey.  The URI of LABEL~rekey,
 * the new key of a rekey, percent-encoded.  Caller frees; NULL when out
 * of memory. */
char *cli_rekey_uri(p11c_ctx *ctx, const char *label);
/* The new key for old: LABEL~rekey when a stopped run left it (*resumed
 * 1), else generated in the token with old's type (sensitive, not
 * extractable).  0, or an exit code (printed). */
int cli_rekey_key(struct cli *c, p11c_key *old, p11c_key **nkey, int *resumed);
/* Once nkey's certificate is stored: destroy *old (key and certificates),
 * then relabel *nkey LABEL; then *old is the new key and *nkey NULL.  0,
 * or an exit code (printed). */
int cli_rekey_finish(struct cli *c, p11c_key **old, p11c_key **nkey, const char *label);
/* LABEL is gone: a rekey stopped between the two steps of
 * cli_rekey_finish left the new key, with its certificate, as LABEL~rekey.
 * Relabel it LABEL: P11C_OK with *out, P11C_ERR_NOT_FOUND when there is
 * none. */
p11c_result cli_rekey_recover(struct cli *c, const char *label, p11c_key **out);
/* 1 when uri finds no key and LABEL~rekey is a key with a certificate
 * (what cli_rekey_recover renames) */
int cli_rekey_left(struct cli *c, const char *uri, const char *label);

#endif
