/*
 * fuzz_alpn: the ClientHello extension parsers of the tls-alpn-01 responder
 * (src/lib/enroll/acme_alpn.c), which read bytes any TCP peer sends:
 * p11c_alpn_offers_acme (ALPN ProtocolNameList, RFC 7301 s3.1) and
 * p11c_alpn_sni_host (ServerNameList, RFC 6066 s3).
 * Input: byte 0 is the name buffer size for the SNI parser (0 -> 254, the
 * responder's), the rest is the extension body given to both parsers.
 */
#include <stdlib.h>
#include <string.h>

#include "enroll/acme_alpn.h"
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char name[256];
	size_t namelen, n;

	if (size == 0)
		return 0;
	namelen = data[0] != 0 ? data[0] : 254;
	(void)p11c_alpn_offers_acme(data + 1, size - 1);
	memset(name, 'x', sizeof(name));
	if (p11c_alpn_sni_host(data + 1, size - 1, name, namelen) == 0) {
		n = strnlen(name, namelen);
		/* NUL-terminated inside the buffer, no upper case, no blanks */
		if (n == 0 || n >= namelen)
			abort();
		while (n-- > 0)
			if ((name[n] >= 'A' && name[n] <= 'Z') || name[n] <= ' ' || name[n] == 0x7f)
				abort();
	} else if (name[0] != '\0') {
		abort();
	}
	return 0;
}
