/*
 * fuzz_config: p11ca.conf text (ca_config_parse, what ca_config_load reads
 * from DIR/p11ca.conf), merged with defaults the way ca_open does, and
 * written back by ca_config_save's formatting rules into memory.  Input:
 * the file's bytes.
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
	if (ca_config_parse(&c, (const char *)data, size, "p11ca.conf", err, sizeof err) == 0)
		ca_config_merge(&c, &flags);
	if (strlen(err) >= sizeof err)
		abort();
	ca_config_free(&c);
	ca_config_free(&flags);
	return 0;
}
