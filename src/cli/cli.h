/* p11cert command line: shared pieces. */
#ifndef P11C_CLI_H
#define P11C_CLI_H

#include <time.h>

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

#define INPUT_MAX (1024 * 1024)

struct cli {
	const char *cmd;
	const char *module;
	const char *pin_file;
	int verbose;
	int quiet;
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
/* Take the run lock PATH (flock, created 0600): the fd, held until it is
 * closed or the process exits; -1 when another run holds it, -2 when the
 * file cannot be opened (errno set). */
int cli_lock(const char *path);
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
/* seconds since the epoch of an ASN1_TIME */
time_t ca_time(const ASN1_TIME *t);

#endif
