/* The enrollment-protocol table of libp11cert (internal): one struct of
 * functions per protocol, one file each in src/lib/enroll/ (the shape of
 * curl's struct Curl_ssl; docs/architecture.md, "Enrollment protocols").
 * This half does the wire work only, never file I/O: the CLI's half
 * (src/cli/proto/protocol.h), keyed by the same name, reads and writes the
 * records, CSRs and locks. */
#ifndef P11C_ENROLL_PROTOCOL_H
#define P11C_ENROLL_PROTOCOL_H

#include <stddef.h>

#include <openssl/x509.h>

#include <p11cert/p11cert.h>

/* internal to libp11cert and its static users (the CLI): never exported
 * from the shared library */
#define P11C_PROTO_HIDDEN __attribute__((visibility("hidden")))

enum p11c_renewal_state {
	P11C_RENEWAL_ISSUED = 0, /* a certificate came back */
	P11C_RENEWAL_PENDING,    /* accepted, not signed yet: poll again later */
	P11C_RENEWAL_REJECTED,   /* refused for good: start over */
};

/* A renewal authenticated by the current identity: the current key and
 * certificate are the TLS client identity; the new certificate is for
 * key (the current key, or the new key of a rekey). */
struct p11c_renewal {
	/* in */
	const char *server;    /* host or host:port, as recorded */
	int port;              /* 0: the protocol's default */
	const char *ca_file;   /* the server's trust anchors (NULL: the system store) */
	const char *client_id;
	p11c_key *key;
	p11c_key *current;
	X509 *current_cert;
	const char *csr;       /* the request when the caller made and kept it */
	size_t csr_len;        /* (needs_csr protocols: a rerun polls the same one) */
	long timeout_ms;       /* per request; 0: 30 s */
	/* optional, as the record says (0: the protocol's default; EST only) */
	int bind;              /* channel binding in the request even unasked */
	int tls_max;           /* 0 any; 12 or 13: at most TLS 1.2 / 1.3 */
	/* out (the caller frees cert and cert_pem) */
	enum p11c_renewal_state state;
	X509 *cert;            /* ISSUED: the certificate; NULL when the answer does not parse */
	char *cert_pem;        /* ISSUED: the answer as sent, when the protocol sends PEM */
	int checked;           /* ISSUED: renew() ran the protocol's checks on cert */
};

struct p11c_protocol {
	const char *name;        /* the "protocol" of DIR/ID.enroll records */
	const char *description;
	int needs_csr;           /* renew() posts the caller's CSR (struct p11c_renewal.csr) */
	/* One renewal round over the wire: P11C_OK with rn->state set, or an
	 * error with the detail in ctx.  NULL for ACME, whose renewal is a new
	 * order (include/p11cert/acme.h), not an exchange authenticated by the
	 * current certificate. */
	p11c_result (*renew)(p11c_ctx *ctx, struct p11c_renewal *rn);
};

extern const struct p11c_protocol p11c_proto_caramel;     /* enroll/caramel.c */
extern const struct p11c_protocol p11c_proto_sharedtoken; /* enroll/sharedtoken_renew.c */
extern const struct p11c_protocol p11c_proto_acme;        /* enroll/acme.c */
extern const struct p11c_protocol p11c_proto_est;         /* enroll/est.c */

/* The protocol named NAME (a record's "protocol"), or NULL: the one place
 * protocol names are compared (enroll/protocol.c). */
P11C_PROTO_HIDDEN const struct p11c_protocol *p11c_protocol_find(const char *name);
/* The table, for listings: the protocol at index I, NULL past the end. */
P11C_PROTO_HIDDEN const struct p11c_protocol *p11c_protocol_at(size_t i);

#endif
