/* The CLI's protocol table (protocol.h): one line per protocol, in the
 * order of the library's table. */
#include <stddef.h>

#include "protocol.h"

static const struct cli_protocol *const protocols[] = {
	&cli_proto_caramel,
	&cli_proto_sharedtoken,
};

const struct cli_protocol *cli_protocol_find(const char *name)
{
	const struct p11c_protocol *lib = p11c_protocol_find(name);
	size_t i;

	for (i = 0; lib != NULL && i < sizeof protocols / sizeof protocols[0]; i++)
		if (protocols[i]->lib == lib)
			return protocols[i];
	return NULL;
}
