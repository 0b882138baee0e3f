/* p11cert import, export, list, show */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <openssl/err.h>
#include <openssl/pem.h>

#include "cli.h"
#include "show.h"

static const char import_help[] =
	"usage: p11cert import --key URI CERTFILE\n"
	"\n"
	"Store the certificate (PEM or DER) in the token next to its key, with the\n"
	"key's CKA_ID and CKA_LABEL.  Refuses a certificate for another key.  Older\n"
	"certificates of the key are destroyed only after the new one is stored and\n"
	"read back.\n";

int cmd_import(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *file;
	unsigned char *buf = NULL;
	size_t len = 0;
	X509 *cert = NULL;
	p11c_key *key = NULL;
	p11c_result r;
	int ch, rc;

	if (cli_help(argc, argv, import_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'k')
			return cli_bad_option(c, argv);
		uri = optarg;
	}
	if (uri == NULL || optind + 1 != argc)
		return cli_usage(c, "--key URI and one CERTFILE are required");
	file = argv[optind];
	rc = cli_input(c, file, &buf, &len);
	if (rc != 0)
		return rc;
	if (p11c_x509_parse(buf, len, &cert) != P11C_OK) {
		fprintf(stderr, "p11cert: import: '%s' is not a PEM or DER X.509 certificate\n", file);
		rc = EX_DATAERR;
		goto out;
	}
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &key)) != P11C_OK ||
	    (r = p11c_cert_store(c->ctx, key, cert)) != P11C_OK) {
		rc = cli_fail(c, r, "cannot import '%s'", file);
		goto out;
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: stored '%s' with key '%s' on token '%s'\n", file,
			cli_safe(p11c_key_label(key)), cli_safe(p11c_token_label(c->ctx)));
	rc = 0;
out:
	free(buf);
	X509_free(cert);
	p11c_key_free(&key);
	return rc;
}

static int write_cert(struct cli *c, X509 *cert, const char *out, const char *form)
{
	BIO *bio = BIO_new(BIO_s_mem());
	char *data;
	long len;
	int rc;

	if (bio == NULL || (strcmp(form, "pem") == 0 ? !PEM_write_bio_X509(bio, cert)
						     : !i2d_X509_bio(bio, cert))) {
		BIO_free(bio);
		return cli_fail(c, P11C_ERR_CRYPTO, "cannot encode the certificate");
	}
	len = BIO_get_mem_data(bio, &data);
	rc = cli_output(c, out, data, (size_t)len, 0644);
	BIO_free(bio);
	return rc;
}

static const char export_help[] =
	"usage: p11cert export (--key URI | --cert URI) [-o FILE] [--outform pem|der]\n"
	"       p11cert export --java DIR --key URI --ca-file FILE\n"
	"\n"
	"Write the certificate stored for a key (or a certificate object) as PEM\n"
	"(default) or DER, to FILE atomically or to stdout.\n"
	"\n"
	"--java DIR writes what a Java program needs to use the key and its\n"
	"certificate from the token: DIR/pkcs11.cfg (SunPKCS11 configuration: module,\n"
	"slot, alias = the key's label; no PIN) and DIR/truststore.p12 (the CA\n"
	"certificates of FILE, PKCS#12 without password).\n";

/* The CA certificates of a PEM file (at least one). */
static int read_cas(struct cli *c, const char *file, STACK_OF(X509) **out)
{
	unsigned char *buf = NULL;
	size_t len = 0;
	BIO *b = NULL;
	X509 *x;
	int rc;

	if ((rc = cli_input(c, file, &buf, &len)) != 0)
		return rc;
	rc = EX_SOFTWARE;
	*out = sk_X509_new_null();
	b = BIO_new_mem_buf(buf, (int)len);
	if (*out == NULL || b == NULL)
		goto out;
	while ((x = PEM_read_bio_X509(b, NULL, NULL, NULL)) != NULL)
		if (!sk_X509_push(*out, x)) {
			X509_free(x);
			goto out;
		}
	ERR_clear_error();
	if (sk_X509_num(*out) == 0) {
		fprintf(stderr, "p11cert: %s: no PEM certificate in '%s'\n", c->cmd, file);
		rc = EX_DATAERR;
		goto out;
	}
	rc = 0;
out:
	if (rc != 0) {
		sk_X509_pop_free(*out, X509_free);
		*out = NULL;
	}
	BIO_free(b);
	free(buf);
	return rc;
}

/* export --java DIR: the key needs a certificate, signed by a CA of FILE */
static int export_java(struct cli *c, p11c_key *key, X509 *cert, const char *dir, const char *ca_file)
{
	STACK_OF(X509) *cas = NULL;
	char *cfg = NULL, *ts = NULL;
	int rc, i, signed_by = 0;

	if ((rc = read_cas(c, ca_file, &cas)) != 0)
		return rc;
	for (i = 0; i < sk_X509_num(cas) && !signed_by; i++)
		signed_by = X509_verify(cert, X509_get0_pubkey(sk_X509_value(cas, i))) == 1;
	ERR_clear_error();
	if (!signed_by) {
		fprintf(stderr, "p11cert: %s: the certificate of '%s' is not signed by a certificate in '%s'\n",
			c->cmd, p11c_key_label(key), ca_file);
		rc = EX_DATAERR;
		goto out;
	}
	if ((rc = cli_java_files(c, dir, key, cas, &cfg, &ts)) != 0)
		goto out;
	if (!c->quiet)
		fprintf(stderr, "p11cert: export: %s (KeyStore type PKCS11, alias '%s') and %s\n", cfg,
			p11c_key_label(key), ts);
out:
	free(cfg);
	free(ts);
	sk_X509_pop_free(cas, X509_free);
	return rc;
}

int cmd_export(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "cert", required_argument, NULL, 'c' },
		{ "out", required_argument, NULL, 'o' },
		{ "outform", required_argument, NULL, 'F' },
		{ "java", required_argument, NULL, 'J' },
		{ "ca-file", required_argument, NULL, 'C' },
		{ NULL, 0, NULL, 0 },
	};
	const char *kuri = NULL, *curi = NULL, *out = NULL, *form = "pem", *jdir = NULL, *ca_file = NULL;
	p11c_key *key = NULL;
	X509 *cert = NULL;
	p11c_result r;
	int ch, rc;

	if (cli_help(argc, argv, export_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (ch) {
		case 'k':
			kuri = optarg;
			break;
		case 'c':
			curi = optarg;
			break;
		case 'o':
			out = optarg;
			break;
		case 'F':
			form = optarg;
			break;
		case 'J':
			jdir = optarg;
			break;
		case 'C':
			ca_file = optarg;
			break;
		default:
			return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (jdir != NULL && (kuri == NULL || ca_file == NULL || out != NULL))
		return cli_usage(c, "--java DIR needs --key URI and --ca-file FILE (and no -o)");
	if (jdir == NULL && ca_file != NULL)
		return cli_usage(c, "--ca-file goes with --java DIR");
	if ((kuri == NULL) == (curi == NULL))
		return cli_usage(c, "give one of --key URI or --cert URI");
	if (strcmp(form, "pem") != 0 && strcmp(form, "der") != 0)
		return cli_usage(c, "--outform must be pem or der, not '%s'", form);
	if ((r = cli_ctx(c)) != P11C_OK)
		return cli_fail(c, r, NULL);
	if (kuri != NULL) {
		r = p11c_key_find(c->ctx, kuri, &key);
		if (r == P11C_OK)
			r = p11c_cert_get(c->ctx, key, &cert);
	} else {
		r = p11c_cert_find(c->ctx, curi, &cert);
	}
	if (r != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	rc = jdir != NULL ? export_java(c, key, cert, jdir, ca_file) : write_cert(c, cert, out, form);
out:
	X509_free(cert);
	p11c_key_free(&key);
	return rc;
}

static const char *class_name(p11c_obj_class cls)
{
	switch (cls) {
	case P11C_OBJ_PRIVATE_KEY:
		return "private-key";
	case P11C_OBJ_PUBLIC_KEY:
		return "public-key";
	case P11C_OBJ_CERTIFICATE:
		return "certificate";
	default:
		return "other";
	}
}

static json_t *object_json(const p11c_object *o)
{
	json_t *j = json_object();
	char *id = o->id ? p11c_hex(o->id, o->id_len, 0) : NULL;

	if (j == NULL)
		goto out;
	json_object_set_new(j, "class", json_string(class_name(o->cls)));
	json_object_set_new(j, "label", json_string(o->label ? o->label : ""));
	json_object_set_new(j, "id", id ? json_string(id) : json_null());
	json_object_set_new(j, "uri", o->uri ? json_string(o->uri) : json_null());
	json_object_set_new(j, "key", o->key_desc ? json_string(o->key_desc) : json_null());
	if (o->cls == P11C_OBJ_PRIVATE_KEY) {
		json_object_set_new(j, "sensitive", json_boolean(o->sensitive == 1));
		json_object_set_new(j, "extractable", json_boolean(o->extractable != 0));
	}
	if (o->cert != NULL) {
		json_t *cj = p11c_cert_json(o->cert);

		if (cj != NULL) {
			const char *k[] = { "subject", "issuer", "serial", "not_before", "not_after" };
			size_t i;

			for (i = 0; i < sizeof k / sizeof k[0]; i++) {
				json_t *v = json_object_get(cj, k[i]);

				if (v != NULL)
					json_object_set(j, k[i], v);
			}
			json_decref(cj);
		}
	}
out:
	free(id);
	return j;
}

static const char list_help[] =
	"usage: p11cert list [URI] [--json]\n"
	"\n"
	"List keys and certificates on the token (default 'pkcs11:', which must match\n"
	"exactly one token).  URI may narrow by object=, id= and type=.  Private keys\n"
	"show only when a PIN source is available.\n";

int cmd_list(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = "pkcs11:";
	p11c_object *objs = NULL;
	size_t n = 0, i;
	int json = 0, ch, rc = 0;
	p11c_result r;

	if (cli_help(argc, argv, list_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'j')
			return cli_bad_option(c, argv);
		json = 1;
	}
	if (optind + 1 < argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind + 1]);
	if (optind < argc)
		uri = argv[optind];
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_list(c->ctx, uri, &objs, &n)) != P11C_OK)
		return cli_fail(c, r, NULL);
	if (json) {
		json_t *arr = json_array();
		char *s;

		for (i = 0; arr != NULL && i < n; i++)
			json_array_append_new(arr, object_json(&objs[i]));
		/* JSON_ENSURE_ASCII: \u202e, not the raw override (cli_text.c) */
		s = arr ? json_dumps(arr, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
		if (s == NULL)
			rc = cli_fail(c, P11C_ERR_NOMEM, NULL);
		else
			printf("%s\n", s);
		free(s);
		json_decref(arr);
		goto out;
	}
	printf("token '%s' (%s): %zu object%s\n", cli_safe(p11c_token_label(c->ctx)),
	       cli_safe(p11c_module_name(c->ctx)), n, n == 1 ? "" : "s");
	for (i = 0; i < n; i++) {
		const p11c_object *o = &objs[i];
		char *id = o->id ? p11c_hex(o->id, o->id_len, 0) : NULL;

		printf("%-12s %-20s %-10s id %s\n", class_name(o->cls), cli_safe(o->label),
		       o->key_desc ? o->key_desc : "", id ? id : "-");
		if (o->cls == P11C_OBJ_PRIVATE_KEY)
			printf("    %s, %s\n", o->sensitive == 1 ? "sensitive" : "NOT sensitive",
			       o->extractable == 0 ? "not extractable" : "EXTRACTABLE");
		if (o->cert != NULL) {
			char *s = p11c_name_str(X509_get_subject_name(o->cert));
			char *is = p11c_name_str(X509_get_issuer_name(o->cert));
			char na[32];

			p11c_asn1_time_str(X509_get0_notAfter(o->cert), na, sizeof na);
			printf("    subject %s\n    issuer  %s\n    not after %s\n", s ? s : "?",
			       is ? is : "?", na);
			free(s);
			free(is);
		}
		if (o->uri != NULL)
			printf("    %s\n", cli_safe(o->uri));
		free(id);
	}
out:
	p11c_objects_free(&objs, n);
	return rc;
}

static const char show_help[] =
	"usage: p11cert show FILE|URI [--json]\n"
	"\n"
	"Describe a certificate or CSR (PEM or DER file), or the certificate stored in\n"
	"a token (by its URI or its key's URI): subject, issuer, validity, SANs, key,\n"
	"fingerprints, extensions.\n";

int cmd_show(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "json", no_argument, NULL, 'j' },
		{ NULL, 0, NULL, 0 },
	};
	const char *what;
	unsigned char *buf = NULL;
	size_t len = 0;
	X509 *cert = NULL;
	X509_REQ *req = NULL;
	char *text = NULL;
	json_t *j = NULL;
	int json = 0, ch, rc;
	p11c_result r;

	if (cli_help(argc, argv, show_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'j')
			return cli_bad_option(c, argv);
		json = 1;
	}
	if (optind + 1 != argc)
		return cli_usage(c, "one FILE or URI is required");
	what = argv[optind];
	if (strncmp(what, "pkcs11:", 7) == 0) {
		if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_cert_find(c->ctx, what, &cert)) != P11C_OK)
			return cli_fail(c, r, NULL);
	} else {
		rc = cli_input(c, what, &buf, &len);
		if (rc != 0)
			return rc;
		if (p11c_x509_parse(buf, len, &cert) != P11C_OK &&
		    p11c_req_parse(buf, len, &req) != P11C_OK) {
			fprintf(stderr, "p11cert: show: '%s' is neither a certificate nor a CSR (PEM or DER)\n",
				what);
			rc = EX_DATAERR;
			goto out;
		}
		ERR_clear_error();
	}
	if (json) {
		char *s;

		j = cert ? p11c_cert_json(cert) : p11c_req_json(req);
		s = j ? json_dumps(j, JSON_INDENT(2) | JSON_ENSURE_ASCII) : NULL;
		if (s == NULL) {
			rc = cli_fail(c, P11C_ERR_NOMEM, NULL);
			goto out;
		}
		printf("%s\n", s);
		free(s);
	} else {
		text = cert ? p11c_cert_text(cert) : p11c_req_text(req);
		if (text == NULL) {
			rc = cli_fail(c, P11C_ERR_NOMEM, NULL);
			goto out;
		}
		fputs(text, stdout);
	}
	rc = 0;
out:
	json_decref(j);
	free(text);
	free(buf);
	X509_free(cert);
	X509_REQ_free(req);
	return rc;
}
