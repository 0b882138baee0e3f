/*
 * fuzz_config: p11ca.conf text (ca_config_parse, what ca_config_load reads
 * from DIR/p11ca.conf), merged with defaults the way ca_open does, and
 * written back by ca_config_save's formatting rules into memory.  Input:
 * the file's bytes.  A token-dn-suffix read from it is parsed and checked
 * against a fixed DN (ca_dn_suffix_ok).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ca.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ca_config c, flags;
	char err[512];

	ca_config_defaults(&c);
	ca_config_defaults(&flags);
	err[0] = '\0';
	if (ca_config_parse(&c, (const char *)data, size, "p11ca.conf", err, sizeof err) == 0) {
		ca_config_merge(&c, &flags);
		if (c.token_dn_suffix != NULL) {
			X509_NAME *n = X509_NAME_new();

			if (n != NULL &&
			    X509_NAME_add_entry_by_txt(n, "OU", MBSTRING_UTF8, (const unsigned char *)"NIFI", -1,
						       -1, 0) &&
			    X509_NAME_add_entry_by_txt(n, "CN", MBSTRING_UTF8, (const unsigned char *)"a,b", -1,
						       -1, 0))
				(void)ca_dn_suffix_ok(c.token_dn_suffix, n);
			X509_NAME_free(n);
		}
	}
	if (strlen(err) >= sizeof err)
		abort();
	ca_config_free(&c);
	ca_config_free(&flags);
	return 0;
}
