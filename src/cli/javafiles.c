/* The Java side of a token identity (docs/enroll.md "Java"): DIR/pkcs11.cfg
 * (SunPKCS11 configuration) and DIR/truststore.p12 (the CA), written by
 * `enroll token` next to config.json and by `export --java DIR`. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

int cli_java_files(struct cli *c, const char *dir, p11c_key *key, STACK_OF(X509) *cas, char **cfg_path,
		   char **ts_path)
{
	char *cfg = NULL, *cp = NULL, *tp = NULL;
	unsigned char *p12 = NULL;
	size_t p12_len = 0;
	p11c_result r;
	int rc = EX_SOFTWARE;

	if (asprintf(&cp, "%s/pkcs11.cfg", dir) < 0) {
		cp = NULL;
		goto out;
	}
	if (asprintf(&tp, "%s/truststore.p12", dir) < 0) {
		tp = NULL;
		goto out;
	}
	if ((r = p11c_java_pkcs11_config(c->ctx, key, &cfg)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot make the SunPKCS11 configuration");
		goto out;
	}
	if ((r = p11c_java_truststore(cas, &p12, &p12_len)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot make the PKCS#12 truststore");
		goto out;
	}
	/* neither holds a secret: the PIN goes to KeyStore.load, the
	 * truststore has no password */
	if ((rc = cli_output(c, cp, cfg, strlen(cfg), 0644)) != 0 ||
	    (rc = cli_output(c, tp, p12, p12_len, 0644)) != 0)
		goto out;
	if (cfg_path != NULL) {
		*cfg_path = cp;
		cp = NULL;
	}
	if (ts_path != NULL) {
		*ts_path = tp;
		tp = NULL;
	}
	rc = 0;
out:
	free(cfg);
	free(p12);
	free(cp);
	free(tp);
	return rc;
}
