/*
 * fuzz_names: subject and subjectAltName strings as users give them
 * (--subject, --san; names.c), and what p11ca and the Caramel client do
 * with a parsed subject (p11c_caramel_subject_ok against the fixture CA's,
 * p11c_caramel_subject with a client id, RFC 2253 printing).
 * Input: the string (up to the first NUL), tried as a subject and as a SAN.
 */
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/proto.h>

#include "fixtures.h"
#include "fuzz.h"
#include "internal.h"
#include "show.h"

static X509 *ca_cert;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	X509_NAME *name = NULL, *cs = NULL;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	char err[256], *s, *printed = NULL;

	if (ca_cert == NULL) {
		BIO *b = BIO_new_mem_buf(fixture_ca_crt, -1);

		ca_cert = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
		BIO_free(b);
		if (ca_cert == NULL)
			abort();
	}
	if ((s = strndup((const char *)data, size)) == NULL)
		return 0;
	if (p11c_subject_parse(s, &name, err, sizeof err) == P11C_OK) {
		if (name == NULL)
			abort();
		(void)p11c_caramel_subject_ok(X509_get_subject_name(ca_cert), name, err, sizeof err);
		printed = p11c_name_str(name);
		cs = p11c_caramel_subject(name, FIXTURE_UUID);
	}
	if (strlen(err) >= sizeof err)
		abort();
	(void)p11c_san_add(s, &sans, err, sizeof err);
	/* twice: the second push goes to the existing stack */
	(void)p11c_san_add(s, &sans, err, sizeof err);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	free(printed);
	X509_NAME_free(cs);
	X509_NAME_free(name);
	free(s);
	ERR_clear_error();
	return 0;
}
