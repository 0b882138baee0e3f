/* p11cert: TLS identities whose private key never leaves a PKCS#11 token. */
#include <errno.h>
#include <getopt.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>


#include "cli.h"

static const char usage_text[] =
	"usage: p11cert [--module PATH] [--pin-file FILE] [-v|-q] [--allow-core-dumps] COMMAND [OPTIONS]\n"
	"\n"
	"Commands:\n"
	"  keygen   generate a key pair inside the token\n"
	"  csr      make a CSR signed by a token key\n"
	"  import   store a certificate next to its token key\n"
	"  list     list the objects on a token\n"
	"  show     describe a certificate or CSR (file or token)\n"
	"  export   write a token certificate as PEM or DER\n"
	"  delete   destroy a key pair and its certificates\n"
	"  enroll   get a certificate for a token key: caramel, token, acme or est\n"
	"  check    does the certificate need renewal? (exit 0 yes, 1 no)\n"
	"  renew    renew through the recorded enrollment, optionally with a new key\n"
	"  revoke   revoke the certificate of an ACME enrollment\n"
	"  acme     ACME account operations: key-change (a new account key)\n"
	"  curl     an HTTPS request authenticated with the token key (mTLS)\n"
	"  tunnel   local plain TCP forwarded over mTLS with the token key\n"
	"  version  print versions\n"
	"\n"
	"Run 'p11cert COMMAND --help' for a command's options.\n"
	"PIN: pin-source= in the URI, --pin-file, P11CERT_PIN, or a prompt on a terminal.\n"
	"Exit codes: see docs/cli.md (sysexits: 64 usage, 65 data, 66 no input,\n"
	"69 unavailable, 73 cannot create, 74 I/O, 77 PIN, 78 unsafe state folder).\n"
	"Core dumps are off (the process holds a PIN); --allow-core-dumps for debugging.\n";

int cli_exit_code(p11c_result r)
{
	switch (r) {
	case P11C_OK:
		return 0;
	case P11C_ERR_ARG:
	case P11C_ERR_URI:
	case P11C_ERR_SUBJECT:
	case P11C_ERR_SAN:
	case P11C_ERR_AMBIGUOUS:
		return EX_USAGE;
	case P11C_ERR_PARSE:
	case P11C_ERR_KEY_MISMATCH:
		return EX_DATAERR;
	case P11C_ERR_NOT_FOUND:
		return EX_NOINPUT;
	case P11C_ERR_MODULE:
	case P11C_ERR_NO_TOKEN:
	case P11C_ERR_MECHANISM:
	case P11C_ERR_TOKEN_GONE:
		return EX_UNAVAILABLE;
	case P11C_ERR_EXISTS:
	case P11C_ERR_TOKEN_FULL:
	case P11C_ERR_READ_ONLY:
		return EX_CANTCREAT;
	case P11C_ERR_PKCS11:
	case P11C_ERR_IO:
		return EX_IOERR;
	case P11C_ERR_NO_PIN:
	case P11C_ERR_PIN_INCORRECT:
	case P11C_ERR_PIN_LOCKED:
		return EX_NOPERM;
	case P11C_ERR_INTERNAL:
	case P11C_ERR_CRYPTO:
		return EX_SOFTWARE;
	case P11C_ERR_NETWORK:
		return EX_UNAVAILABLE;
	case P11C_ERR_TLS:
	case P11C_ERR_PROTOCOL:
		return EX_PROTOCOL_;
	case P11C_ERR_VERIFY:
		return EX_DATAERR;
	case P11C_ERR_REJECTED:
		return EX_NOPERM;
	case P11C_ERR_PENDING:
	case P11C_ERR_LOCKED:
		return EX_TEMPFAIL_;
	default:
		return EX_FAIL;
	}
}

int cli_fail(struct cli *c, p11c_result r, const char *fmt, ...)
{
	va_list ap;
	const char *detail = p11c_ctx_detail(c->ctx);
	char line[2048], safe[4 * sizeof line];
	size_t n = 0;

	/* the detail may quote a token label, a certificate name or a server's
	 * answer: the whole line is escaped for the terminal (cli_text.c) */
	if (fmt != NULL) {
		va_start(ap, fmt);
		(void)vsnprintf(line, sizeof line, fmt, ap);
		va_end(ap);
		n = strlen(line);
		if (detail[0] != '\0' && n < sizeof line)
			n += (size_t)snprintf(line + n, sizeof line - n, ": ");
	}
	if (n < sizeof line)
		(void)snprintf(line + n, sizeof line - n, "%s",
			       detail[0] != '\0' ? detail : fmt == NULL ? p11c_strerror(r) : "");
	cli_escape(line, safe, sizeof safe);
	fprintf(stderr, "p11cert: %s: %s\n", c->cmd ? c->cmd : "error", safe);
	return cli_exit_code(r);
}

int cli_bad_option(struct cli *c, char **argv)
{
	const char *opt = optind > 0 ? argv[optind - 1] : "?";

	if (optopt != 0 && optopt != '?' && (optind <= 0 || argv[optind - 1][0] != '-'))
		return cli_usage(c, "option -%c needs a value", optopt);
	return cli_usage(c, "unknown option or missing value: '%s'", opt);
}

int cli_usage(struct cli *c, const char *fmt, ...)
{
	va_list ap;

	fprintf(stderr, "p11cert: %s: ", c->cmd ? c->cmd : "usage");
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fprintf(stderr, " (see 'p11cert %s --help')\n", c->cmd ? c->cmd : "");
	return EX_USAGE;
}

int cli_parse_long(const char *s, long lo, long hi, long *out)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
		return -1;
	*out = v;
	return 0;
}

int cli_num(struct cli *c, const char *opt, const char *s, long lo, long hi, long *out)
{
	if (cli_parse_long(s, lo, hi, out) == 0)
		return 0;
	return cli_usage(c, "%s '%s': expected a number from %ld to %ld", opt, s, lo, hi);
}

/* No-echo prompt on the controlling terminal, only when stdin is one. */
static int tty_pin(const char *prompt, char *buf, size_t size, void *userdata)
{
	struct termios old, quiet;
	int fd, rc = -1;
	size_t n = 0;
	char ch;

	(void)userdata;
	if (!isatty(STDIN_FILENO))
		return -1;
	fd = open("/dev/tty", O_RDWR | O_CLOEXEC | O_NOCTTY);
	if (fd < 0)
		return -1;
	if (tcgetattr(fd, &old) != 0)
		goto out;
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHONL);
	quiet.c_lflag |= ICANON;
	if (write(fd, prompt, strlen(prompt)) < 0 || tcsetattr(fd, TCSAFLUSH, &quiet) != 0)
		goto out;
	for (;;) {
		ssize_t k = read(fd, &ch, 1);

		if (k < 0 && errno == EINTR)
			continue;
		if (k <= 0 || ch == '\n' || ch == '\r')
			break;
		if (n + 1 < size)
			buf[n++] = ch;
	}
	buf[n] = '\0';
	OPENSSL_cleanse(&ch, sizeof ch);
	(void)tcsetattr(fd, TCSAFLUSH, &old);
	(void)!write(fd, "\n", 1);
	rc = n > 0 ? 0 : -1;
out:
	close(fd);
	return rc;
}

p11c_result cli_ctx(struct cli *c)
{
	p11c_result r;

	if (c->ctx != NULL)
		return P11C_OK;
	r = p11c_ctx_new(&c->ctx);
	if (r != P11C_OK)
		return r;
	if (c->module != NULL && (r = p11c_ctx_set_module(c->ctx, c->module)) != P11C_OK)
		return r;
	if (c->pin_file != NULL && (r = p11c_ctx_set_pin_file(c->ctx, c->pin_file)) != P11C_OK)
		return r;
	p11c_ctx_set_pin_callback(c->ctx, tty_pin, NULL);
	return P11C_OK;
}

int cli_output(struct cli *c, const char *file, const void *data, size_t len, unsigned mode)
{
	if (file == NULL || strcmp(file, "-") == 0) {
		if (fwrite(data, 1, len, stdout) != len || fflush(stdout) != 0) {
			fprintf(stderr, "p11cert: %s: cannot write to stdout: %s\n", c->cmd,
				strerror(errno));
			return EX_IOERR;
		}
		return 0;
	}
	if (p11c_file_write_atomic(file, data, len, mode) != P11C_OK) {
		fprintf(stderr, "p11cert: %s: cannot write '%s': %s\n", c->cmd, file,
			strerror(errno));
		return EX_CANTCREAT;
	}
	return 0;
}

int cli_input(struct cli *c, const char *file, unsigned char **buf, size_t *len)
{
	p11c_result r = p11c_file_read(file, INPUT_MAX, buf, len);

	switch (r) {
	case P11C_OK:
		return 0;
	case P11C_ERR_NOT_FOUND:
		fprintf(stderr, "p11cert: %s: cannot read '%s': %s\n", c->cmd, file,
			strerror(errno));
		return EX_NOINPUT;
	case P11C_ERR_PARSE:
		fprintf(stderr, "p11cert: %s: '%s' is larger than %d bytes\n", c->cmd, file,
			INPUT_MAX);
		return EX_DATAERR;
	default:
		fprintf(stderr, "p11cert: %s: cannot read '%s': %s\n", c->cmd, file,
			errno ? strerror(errno) : "not a regular file");
		return EX_NOINPUT;
	}
}

time_t ca_time(const ASN1_TIME *t)
{
	struct tm tm;

	if (t == NULL || !ASN1_TIME_to_tm(t, &tm))
		return 0;
	return timegm(&tm);
}

int cli_help(int argc, char **argv, const char *text)
{
	int i;

	for (i = 1; i < argc; i++) {
		if (strcmp(argv[i], "--") == 0)
			break;
		if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
			fputs(text, stdout);
			return 1;
		}
	}
	return 0;
}

static int cmd_version(struct cli *c, int argc, char **argv)
{
	(void)c;
	if (cli_help(argc, argv, "usage: p11cert version\nPrints the versions of p11cert and its libraries.\n"))
		return 0;
	printf("p11cert %s\n", P11CERT_VERSION);
	printf("OpenSSL %s\n", OpenSSL_version(OPENSSL_VERSION_STRING));
	printf("signer: built-in (token keys as OpenSSL EVP_PKEY with RSA/EC_KEY methods over the token layer's session; no libp11, no ENGINE)\n");
	printf("p11-kit %s (built against)\n", P11C_P11KIT_VERSION);
	printf("default module %s\n", P11C_DEFAULT_MODULE);
	return 0;
}

static const struct {
	const char *name;
	int (*fn)(struct cli *, int, char **);
} commands[] = {
	{ "keygen", cmd_keygen }, { "csr", cmd_csr },	    { "import", cmd_import },
	{ "list", cmd_list },	  { "show", cmd_show },	    { "export", cmd_export },
	{ "delete", cmd_delete }, { "version", cmd_version }, { "enroll", cmd_enroll },
	{ "curl", cmd_curl },	  { "tunnel", cmd_tunnel }, { "check", cmd_check },
	{ "renew", cmd_renew },	  { "revoke", cmd_revoke }, { "acme", cmd_acme },
};

/* Take the global options out of argv wherever they stand (before "--").
 * Returns -1 on a usage error. */
static int globals(struct cli *c, int *argc, char **argv)
{
	int i, j = 1;

	for (i = 1; i < *argc; i++) {
		const char *a = argv[i];
		const char **dst = NULL;

		if (strcmp(a, "--") == 0) {
			while (i < *argc)
				argv[j++] = argv[i++];
			break;
		}
		if (strcmp(a, "--module") == 0)
			dst = &c->module;
		else if (strcmp(a, "--pin-file") == 0)
			dst = &c->pin_file;
		if (dst != NULL) {
			if (i + 1 >= *argc) {
				fprintf(stderr, "p11cert: %s needs a value\n", a);
				return -1;
			}
			*dst = argv[++i];
			continue;
		}
		if (strncmp(a, "--module=", 9) == 0) {
			c->module = a + 9;
			continue;
		}
		if (strncmp(a, "--pin-file=", 11) == 0) {
			c->pin_file = a + 11;
			continue;
		}
		if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
			c->verbose++;
			continue;
		}
		if (strcmp(a, "--allow-core-dumps") == 0) {
			c->allow_core = 1;
			continue;
		}
		if (strcmp(a, "-q") == 0 || strcmp(a, "--quiet") == 0) {
			c->quiet = 1;
			continue;
		}
		argv[j++] = argv[i];
	}
	*argc = j;
	argv[j] = NULL;
	return 0;
}

/* Module chatter stays out of the terminal unless -v: the TPM software
 * stack (tpm2-pkcs11 through the p11-kit proxy on a host without a TPM)
 * prints a dozen lines per command otherwise.  Only switches the modules
 * offer, only when the user has not set them. */
static void quiet_modules(const struct cli *c)
{
	if (c->verbose > 0)
		return;
	(void)setenv("TSS2_LOG", "all+NONE", 0);
	(void)setenv("TPM2_PKCS11_LOG_LEVEL", "0", 0);
}

int main(int argc, char **argv)
{
	struct cli c;
	size_t i;
	int rc;

	memset(&c, 0, sizeof c);
	opterr = 0; /* our own one-line messages for bad options */
	if (globals(&c, &argc, argv) != 0)
		return EX_USAGE;
	/* any command may read a PIN or a shared token: no core file with it */
	if (!c.allow_core && p11c_no_core_dumps() != 0)
		fprintf(stderr, "p11cert: warning: cannot disable core dumps: %s\n", strerror(errno));
	quiet_modules(&c);
	if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
	    strcmp(argv[1], "help") == 0) {
		fputs(usage_text, argc < 2 ? stderr : stdout);
		return argc < 2 ? EX_USAGE : 0;
	}
	if (strcmp(argv[1], "--version") == 0)
		argv[1] = (char *)"version";
	for (i = 0; i < sizeof commands / sizeof commands[0]; i++) {
		if (strcmp(argv[1], commands[i].name) == 0) {
			c.cmd = commands[i].name;
			rc = commands[i].fn(&c, argc - 1, argv + 1);
			p11c_ctx_free(&c.ctx);
			return rc;
		}
	}
	fprintf(stderr, "p11cert: unknown command '%s' (run 'p11cert --help' for the list)\n", argv[1]);
	return EX_USAGE;
}
