/* The enrollment-protocol table (protocol.h).  A protocol joins with its
 * file in src/lib/enroll/ and one line here. */
#include <string.h>

#include "protocol.h"

static const struct p11c_protocol *const protocols[] = {
	&p11c_proto_caramel,
	&p11c_proto_sharedtoken,
	&p11c_proto_acme,
	&p11c_proto_est,
};

const struct p11c_protocol *p11c_protocol_at(size_t i)
{
	return i < sizeof protocols / sizeof protocols[0] ? protocols[i] : NULL;
}

const struct p11c_protocol *p11c_protocol_find(const char *name)
{
	size_t i;

	for (i = 0; name != NULL && i < sizeof protocols / sizeof protocols[0]; i++)
		if (strcmp(name, protocols[i]->name) == 0)
			return protocols[i];
	return NULL;
}
