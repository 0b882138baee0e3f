/* What a Caramel client says while its request waits for a signature:
 * worded for any Caramel server (upstream signs with caramel_tool, p11ca
 * with 'p11ca sign'), and a warning where the key is one upstream never
 * signs. */
#include <stdio.h>
#include <string.h>

#include <p11cert/enroll.h>

#include "cli.h"

/* Upstream Caramel 1.9.6 signs RSA 1024, 2048 and 4096 only (digest by key
 * size); other sizes and EC keys fail at signing (docs/protocols.md s1). */
static int upstream_signs(p11c_key *key)
{
	EVP_PKEY *pub = p11c_key_public(key);
	int bits = pub != NULL ? EVP_PKEY_get_bits(pub) : 0;

	return pub != NULL && EVP_PKEY_get_base_id(pub) == EVP_PKEY_RSA && (bits == 1024 || bits == 2048 || bits == 4096);
}

void cli_caramel_warn_upstream(struct cli *c, const char *server, p11c_key *key)
{
	const char *sw = p11c_ctx_server_software(c->ctx);

	if (strncmp(sw, "p11ca", 5) != 0 && !upstream_signs(key))
		fprintf(stderr, "p11cert: %s: warning: the CA at %s does not identify itself as p11ca (Server: %s); "
			"upstream Caramel servers sign only RSA keys of 1024, 2048 or 4096 bits, and '%s' is %s: "
			"the request may never be signed (enroll with --type rsa:2048)\n", c->cmd, server,
			sw[0] ? sw : "none", p11c_key_label(key), p11c_key_type_name(p11c_key_get_type(key)));
}

void cli_caramel_pending(struct cli *c, const char *server, const char *sha, const char *id, p11c_key *key)
{
	fprintf(stderr, "p11cert: %s: request %s for '%s' is waiting for the CA administrator at %s to sign it "
		"(with the server's own tool, for example 'p11ca sign %s' on p11ca)\n", c->cmd, sha, id, server, sha);
	cli_caramel_warn_upstream(c, server, key);
}
