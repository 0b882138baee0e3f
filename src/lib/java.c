/*
 * java.c: what a Java program needs to use a token identity.
 *
 *  - a SunPKCS11 provider configuration (OpenJDK's PKCS#11 Reference Guide,
 *    "SunPKCS11 Configuration"): the module's absolute path and the slot
 *    id of the token; the KeyStore alias is the key's CKA_LABEL (SunPKCS11
 *    pairs the private key and the certificate by CKA_ID and names the
 *    entry by the certificate's label, which p11cert sets to the key's).
 *  - a PKCS#12 truststore with the CA certificates (RFC 7292): certificate
 *    bags only, no encryption and no MAC, so Java loads it with any or no
 *    password.  Java's PKCS12KeyStore makes a trustedCertEntry only of a
 *    certificate bag that carries Oracle's trusted-key-usage attribute
 *    (2.16.840.1.113894.746875.1.1 = anyExtendedKeyUsage), which keytool
 *    writes and OpenSSL 3.2 writes with `pkcs12 -jdktrust`.
 *
 * Neither holds a secret.  No file I/O here: the caller writes the bytes.
 */
#include <dlfcn.h>
#include <link.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/objects.h>
#include <openssl/pkcs12.h>

#include "internal.h"

#define JDK_TRUSTED_KEY_USAGE "2.16.840.1.113894.746875.1.1"
#define ANY_EXTENDED_KEY_USAGE "2.5.29.37.0"

/* SunPKCS11's config tokenizer takes these characters in a bare word; a
 * path or name outside them would need quoting rules that differ between
 * JDK releases, so it is refused. */
static int java_word(const char *s)
{
	if (s == NULL || *s == '\0')
		return 0;
	for (; *s; s++)
		if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
		      strchr("/._-+~:", *s) != NULL))
			return 0;
	return 1;
}

/* The absolute path of the module we loaded (p11-kit's proxy, or the module
 * of --module / module-path=): from the dynamic loader, so a bare name like
 * "p11-kit-proxy.so" becomes the file Java must load. */
static int module_abs_path(p11c_ctx *ctx, char *out, size_t len)
{
	struct link_map *lm = NULL;
	char real[PATH_MAX];
	const char *p = ctx->module_path;

	if (ctx->dl != NULL && dlinfo(ctx->dl, RTLD_DI_LINKMAP, &lm) == 0 && lm != NULL && lm->l_name != NULL &&
	    lm->l_name[0] == '/')
		p = lm->l_name;
	if (p == NULL || realpath(p, real) == NULL)
		return -1;
	if (strlen(real) >= len)
		return -1;
	memcpy(out, real, strlen(real) + 1);
	return 0;
}

p11c_result p11c_java_pkcs11_config(p11c_ctx *ctx, p11c_key *key, char **out)
{
	char lib[PATH_MAX], name[64], *uri = NULL, *s = NULL;
	const char *label;
	size_t i, n;
	p11c_result r = P11C_ERR_NOMEM;

	if (ctx == NULL || key == NULL || out == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	if (!ctx->opened || ctx->f == NULL) {
		p11c_detail(ctx, "no token open");
		return P11C_ERR_ARG;
	}
	if (module_abs_path(ctx, lib, sizeof lib) != 0) {
		p11c_detail(ctx, "cannot find the file of the PKCS#11 module '%s'",
			    ctx->module_path ? ctx->module_path : "");
		return P11C_ERR_MODULE;
	}
	if (!java_word(lib)) {
		p11c_detail(ctx, "the module path '%s' has characters a SunPKCS11 configuration cannot hold "
			    "(allowed: letters, digits, / . _ - + ~ :)", lib);
		return P11C_ERR_ARG;
	}
	label = p11c_key_label(key);
	/* provider name: "p11cert-" + the label's word characters */
	n = (size_t)snprintf(name, sizeof name, "p11cert-");
	for (i = 0; label != NULL && label[i] && n + 1 < sizeof name; i++) {
		char ch = label[i];

		if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '.' ||
		      ch == '-'))
			ch = '_';
		name[n++] = ch;
	}
	name[n] = '\0';
	uri = p11c_key_uri(key, "private");
	if (uri == NULL)
		goto out;
	/* '#' starts a comment in SunPKCS11 configurations; a label or URI
	 * with a line break would end the comment early */
	if (strpbrk(uri, "\r\n") != NULL || (label != NULL && strpbrk(label, "\r\n") != NULL)) {
		p11c_detail(ctx, "the key label holds a line break");
		r = P11C_ERR_ARG;
		goto out;
	}
	if (asprintf(&s,
		     "# SunPKCS11 configuration for the token key '%s', written by p11cert.\n"
		     "# Token '%s' (serial %s); key %s\n"
		     "# KeyStore type PKCS11, alias '%s' (the CKA_LABEL of key and certificate).\n"
		     "# No PIN here: give it to KeyStore.load (keytool: -storepass:file FILE).\n"
		     "# The slot id is the one the module reported when this was written; rewrite\n"
		     "# this file with `p11cert export --java DIR` if the token moves.\n"
		     "name = %s\n"
		     "library = %s\n"
		     "slot = %lu\n",
		     label ? label : "", ctx->token_label, ctx->token_serial, uri, label ? label : "", name, lib,
		     (unsigned long)ctx->slot_id) < 0) {
		s = NULL;
		goto out;
	}
	*out = s;
	s = NULL;
	r = P11C_OK;
out:
	free(uri);
	free(s);
	return r;
}

p11c_result p11c_java_truststore(STACK_OF(X509) *cas, unsigned char **der, size_t *len)
{
	STACK_OF(PKCS12_SAFEBAG) *bags = NULL;
	STACK_OF(PKCS7) *safes = NULL;
	PKCS12 *p12 = NULL;
	ASN1_OBJECT *any = NULL;
	unsigned char *buf = NULL;
	char alias[32];
	int i, n;
	p11c_result r = P11C_ERR_CRYPTO;

	if (cas == NULL || sk_X509_num(cas) < 1 || der == NULL || len == NULL)
		return P11C_ERR_ARG;
	*der = NULL;
	*len = 0;
	any = OBJ_txt2obj(ANY_EXTENDED_KEY_USAGE, 1);
	if (any == NULL)
		goto out;
	for (i = 0; i < sk_X509_num(cas); i++) {
		PKCS12_SAFEBAG *bag = PKCS12_add_cert(&bags, sk_X509_value(cas, i));

		snprintf(alias, sizeof alias, "ca%d", i + 1);
		/* the attribute value is an OBJECT IDENTIFIER: len -1 hands
		 * the ASN1_OBJECT itself to X509_ATTRIBUTE_set1_data */
		if (bag == NULL || !PKCS12_add_friendlyname_asc(bag, i == 0 ? "ca" : alias, -1) ||
		    !PKCS12_add1_attr_by_txt(bag, JDK_TRUSTED_KEY_USAGE, V_ASN1_OBJECT, (const unsigned char *)any,
					     -1))
			goto out;
	}
	/* nid_safe -1: an unencrypted data safe (certificates are public) */
	if (!PKCS12_add_safe(&safes, bags, -1, 0, NULL))
		goto out;
	p12 = PKCS12_add_safes(safes, 0);
	if (p12 == NULL)
		goto out;
	/* no PKCS12_set_mac: no password at all */
	n = i2d_PKCS12(p12, &buf);
	if (n <= 0)
		goto out;
	*der = malloc((size_t)n);
	if (*der == NULL) {
		r = P11C_ERR_NOMEM;
		goto out;
	}
	memcpy(*der, buf, (size_t)n);
	*len = (size_t)n;
	r = P11C_OK;
out:
	if (r != P11C_OK)
		ERR_clear_error();
	OPENSSL_free(buf);
	PKCS12_free(p12);
	sk_PKCS7_pop_free(safes, PKCS7_free);
	sk_PKCS12_SAFEBAG_pop_free(bags, PKCS12_SAFEBAG_free);
	ASN1_OBJECT_free(any);
	return r;
}
