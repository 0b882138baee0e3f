/* RFC 7512 pkcs11: URIs, parsed by p11-kit. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

#define URI_MAX 4096

p11c_result p11c_uri_parse(p11c_ctx *ctx, const char *s, p11c_uri *out)
{
	CK_ATTRIBUTE *a;
	int rc;
	p11c_result r = P11C_ERR_URI;

	memset(out, 0, sizeof *out);
	if (s == NULL || *s == '\0') {
		p11c_detail(ctx, "empty PKCS#11 URI (expected e.g. 'pkcs11:token=NAME;object=LABEL')");
		return P11C_ERR_URI;
	}
	if (strlen(s) > URI_MAX) {
		p11c_detail(ctx, "PKCS#11 URI longer than %d bytes", URI_MAX);
		return P11C_ERR_URI;
	}
	if (strncmp(s, "pkcs11:", 7) != 0) {
		p11c_detail(ctx, "'%.64s' is not a PKCS#11 URI: it must start with 'pkcs11:' (RFC 7512)", s);
		return P11C_ERR_URI;
	}
	out->uri = p11_kit_uri_new();
	if (out->uri == NULL)
		return P11C_ERR_NOMEM;
	rc = p11_kit_uri_parse(s, P11_KIT_URI_FOR_ANY, out->uri);
	if (rc != P11_KIT_URI_OK) {
		/* RFC 7512 s2.3; p11-kit names the class of the problem */
		p11c_detail(ctx, "malformed PKCS#11 URI: %s", p11_kit_uri_message(rc));
		goto out;
	}
	if (p11_kit_uri_get_pin_value(out->uri) != NULL) {
		/* never accept a PIN where it ends up in argv or history */
		p11c_detail(ctx, "'pin-value' is not accepted in URIs: use pin-source=file:PATH, --pin-file, or P11CERT_PIN");
		out->has_pin_value = 1;
		goto out;
	}
	if (p11_kit_uri_any_unrecognized(out->uri)) {
		p11c_detail(ctx, "PKCS#11 URI has an attribute p11cert does not understand "
			    "(path: token, manufacturer, serial, model, slot-id, object, id, type; "
			    "query after '?': module-path, module-name, pin-source; RFC 7512 s2.3)");
		goto out;
	}
	a = p11_kit_uri_get_attribute(out->uri, CKA_LABEL);
	if (a != NULL) {
		if (a->ulValueLen == 0 || a->ulValueLen > P11C_LABEL_MAX) {
			p11c_detail(ctx, "object label in URI must be 1 to %d bytes", P11C_LABEL_MAX);
			goto out;
		}
		out->object = strndup(a->pValue, a->ulValueLen);
		if (out->object == NULL) {
			r = P11C_ERR_NOMEM;
			goto out;
		}
		if (strlen(out->object) != a->ulValueLen) {
			p11c_detail(ctx, "object label in URI contains a NUL byte");
			goto out;
		}
	}
	a = p11_kit_uri_get_attribute(out->uri, CKA_ID);
	if (a != NULL) {
		if (a->ulValueLen == 0 || a->ulValueLen > P11C_ID_MAX) {
			p11c_detail(ctx, "id in URI must be 1 to %d bytes", P11C_ID_MAX);
			goto out;
		}
		memcpy(out->id, a->pValue, a->ulValueLen);
		out->id_len = a->ulValueLen;
		out->has_id = 1;
	}
	a = p11_kit_uri_get_attribute(out->uri, CKA_CLASS);
	if (a != NULL && a->ulValueLen == sizeof(CK_OBJECT_CLASS)) {
		memcpy(&out->cls, a->pValue, sizeof out->cls);
		out->has_class = 1;
	}
	out->slot_id = p11_kit_uri_get_slot_id(out->uri);
	out->has_slot_id = out->slot_id != (CK_SLOT_ID)-1;
	out->module_path = p11_kit_uri_get_module_path(out->uri);
	out->module_name = p11_kit_uri_get_module_name(out->uri);
	out->pin_source = p11_kit_uri_get_pin_source(out->uri);
	return P11C_OK;
out:
	p11c_uri_clear(out);
	return r;
}

void p11c_uri_clear(p11c_uri *u)
{
	if (u == NULL)
		return;
	if (u->uri != NULL)
		p11_kit_uri_free(u->uri);
	free(u->object);
	memset(u, 0, sizeof *u);
}

char *p11c_uri_format(const p11c_ctx *ctx, const char *label,
		      const unsigned char *id, size_t id_len, const char *type)
{
	P11KitUri *u = NULL;
	CK_TOKEN_INFO *ti;
	CK_ATTRIBUTE attr;
	CK_OBJECT_CLASS cls;
	char *s = NULL, *res = NULL;
	size_t n;

	u = p11_kit_uri_new();
	if (u == NULL)
		goto out;
	ti = p11_kit_uri_get_token_info(u);
	/* token label only: short, and what users type */
	n = strlen(ctx->token_label);
	memset(ti->label, ' ', sizeof ti->label);
	memcpy(ti->label, ctx->token_label, n > sizeof ti->label ? sizeof ti->label : n);
	if (label != NULL) {
		attr.type = CKA_LABEL;
		attr.pValue = (void *)(uintptr_t)label;
		attr.ulValueLen = strlen(label);
		if (p11_kit_uri_set_attribute(u, &attr) != P11_KIT_URI_OK)
			goto out;
	}
	if (id != NULL && id_len > 0) {
		attr.type = CKA_ID;
		attr.pValue = (void *)(uintptr_t)id;
		attr.ulValueLen = id_len;
		if (p11_kit_uri_set_attribute(u, &attr) != P11_KIT_URI_OK)
			goto out;
	}
	if (type != NULL) {
		if (strcmp(type, "private") == 0)
			cls = CKO_PRIVATE_KEY;
		else if (strcmp(type, "public") == 0)
			cls = CKO_PUBLIC_KEY;
		else if (strcmp(type, "cert") == 0)
			cls = CKO_CERTIFICATE;
		else
			cls = CKO_DATA;
		attr.type = CKA_CLASS;
		attr.pValue = &cls;
		attr.ulValueLen = sizeof cls;
		if (p11_kit_uri_set_attribute(u, &attr) != P11_KIT_URI_OK)
			goto out;
	}
	if (p11_kit_uri_format(u, P11_KIT_URI_FOR_OBJECT_ON_TOKEN, &s) != P11_KIT_URI_OK)
		goto out;
	res = strdup(s);
out:
	free(s);
	if (u != NULL)
		p11_kit_uri_free(u);
	return res;
}

char *p11c_label_uri(const p11c_ctx *ctx, const char *label)
{
	if (ctx == NULL || label == NULL)
		return NULL;
	return p11c_uri_format(ctx, label, NULL, 0, NULL);
}

/* Read "module: PATH" from a p11-kit module config file (pkcs11.conf(5)).
 * Returns 1 when found, 0 when the file does not exist, -1 on error. */
static int module_from_conf(const char *file, char *path, size_t len)
{
	FILE *fp = NULL;
	char line[1024];
	int lines = 0, rc = 0;

	fp = fopen(file, "r");
	if (fp == NULL)
		return 0;
	while (lines++ < 1000 && fgets(line, sizeof line, fp) != NULL) {
		char *p = line, *e;

		while (*p == ' ' || *p == '\t')
			p++;
		if (strncmp(p, "module:", 7) != 0)
			continue;
		p += 7;
		while (*p == ' ' || *p == '\t')
			p++;
		e = p + strcspn(p, "\r\n");
		while (e > p && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		*e = '\0';
		if (*p == '\0')
			break;
		if (*p == '/')
			rc = snprintf(path, len, "%s", p);
		else
			rc = snprintf(path, len, "%s/%s", P11C_P11KIT_MODULE_PATH, p);
		rc = (rc > 0 && (size_t)rc < len) ? 1 : -1;
		goto out;
	}
	rc = -1;
out:
	fclose(fp);
	return rc;
}

p11c_result p11c_module_by_name(p11c_ctx *ctx, const char *name, char **path)
{
	char file[1024], found[1024];
	const char *dirs[3];
	const char *home = getenv("HOME");
	char userdir[512];
	size_t i, nd = 0;
	int rc;

	if (strchr(name, '/') != NULL || strlen(name) > 128 || *name == '\0') {
		p11c_detail(ctx, "invalid module-name '%.128s'", name);
		return P11C_ERR_URI;
	}
	/* pkcs11.conf(5): user config overrides system, /etc overrides the
	 * package defaults */
	if (home != NULL && snprintf(userdir, sizeof userdir, "%s/.config/pkcs11/modules", home) <
				    (int)sizeof userdir)
		dirs[nd++] = userdir;
	dirs[nd++] = P11C_P11KIT_SYSTEM_MODULES;
	dirs[nd++] = P11C_P11KIT_PACKAGE_MODULES;
	for (i = 0; i < nd; i++) {
		snprintf(file, sizeof file, "%s/%s.module", dirs[i], name);
		rc = module_from_conf(file, found, sizeof found);
		if (rc < 0) {
			p11c_detail(ctx, "module config '%s' has no usable 'module:' line", file);
			return P11C_ERR_MODULE;
		}
		if (rc == 1) {
			*path = strdup(found);
			return *path ? P11C_OK : P11C_ERR_NOMEM;
		}
	}
	p11c_detail(ctx, "no PKCS#11 module named '%s' is registered with p11-kit (looked in %s and %s)",
		    name, P11C_P11KIT_SYSTEM_MODULES, P11C_P11KIT_PACKAGE_MODULES);
	return P11C_ERR_MODULE;
}
