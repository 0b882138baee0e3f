/* Throwaway SoftHSM token for C tests: wraps softhsm-fixtures/softhsm-token. */
#ifndef P11C_SOFTHSM_FIXTURE_H
#define P11C_SOFTHSM_FIXTURE_H
#include <stddef.h>

struct softhsm_fixture {
	char dir[256];        /* temp folder holding conf + tokens */
	char module[256];     /* path of libsofthsm2.so */
	char label[64];       /* token label */
	char pin_file[300];   /* user PIN file */
	char uri[128];        /* "pkcs11:token=LABEL" */
};

/* Create a token labelled `label` (NULL: "p11cert-test") in a new temp
 * folder and point SOFTHSM2_CONF at it.  0 on success. */
int softhsm_fixture_create(struct softhsm_fixture *f, const char *label);
void softhsm_fixture_destroy(struct softhsm_fixture *f);

/* A libp11cert context on the fixture's module, PIN from its PIN file
 * (P11CERT_PIN ignored); NULL on failure. */
struct p11c_ctx;
struct p11c_ctx *softhsm_fixture_ctx(const struct softhsm_fixture *f);

/* Remove the folder DIR and the files directly in it (a test's temp
 * folder; sub-folders are not expected). */
void test_rmdir_flat(const char *dir);

#endif
