/* p11cert keygen, csr, delete */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>

#include "cli.h"

static const char keygen_help[] =
	"usage: p11cert keygen --key URI [--type TYPE] [--force]\n"
	"\n"
	"Generate a key pair inside the token named by URI (which needs object=LABEL).\n"
	"The private key is sensitive and never extractable.\n"
	"\n"
	"  --key URI     pkcs11:token=...;object=LABEL[;id=...]\n"
	"  --type TYPE   rsa:2048 (default), rsa:3072, rsa:4096, ec:P-256, ec:P-384\n"
	"                (ed25519 is refused: p11cert cannot sign with EdDSA keys)\n"
	"  --force       create the key even if one with this label exists\n"
	"\n"
	"Prints the new key's URI.  CKA_ID is the SHA-1 key identifier of the public\n"
	"key (RFC 5280 s4.2.1.2) unless the URI gives id=.\n";

int cmd_keygen(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "type", required_argument, NULL, 't' },
		{ "force", no_argument, NULL, 'f' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *type = "rsa:2048";
	unsigned flags = 0;
	p11c_key_type kt;
	p11c_key *key = NULL;
	p11c_result r;
	char *kuri = NULL;
	int ch, rc;

	if (cli_help(argc, argv, keygen_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		switch (ch) {
		case 'k':
			uri = optarg;
			break;
		case 't':
			type = optarg;
			break;
		case 'f':
			flags |= P11C_KEYGEN_FORCE;
			break;
		default:
			return cli_bad_option(c, argv);
		}
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (uri == NULL)
		return cli_usage(c, "--key URI is required");
	if (p11c_key_type_parse(type, &kt) != P11C_OK)
		return cli_usage(c, "unknown key type '%s' (rsa:2048, rsa:3072, rsa:4096, ec:P-256, ec:P-384)", type);
	if ((r = cli_ctx(c)) != P11C_OK)
		return cli_fail(c, r, NULL);
	r = p11c_keygen(c->ctx, uri, kt, flags, &key);
	if (r != P11C_OK)
		return cli_fail(c, r, "cannot generate %s key", p11c_key_type_name(kt));
	kuri = p11c_key_uri(key, "private");
	printf("%s\n", kuri ? kuri : "");
	if (!c->quiet)
		fprintf(stderr, "p11cert: generated %s key '%s' on token '%s'\n",
			p11c_key_type_name(kt), cli_safe(p11c_key_label(key)), cli_safe(p11c_token_label(c->ctx)));
	rc = 0;
	free(kuri);
	p11c_key_free(&key);
	return rc;
}

static const char csr_help[] =
	"usage: p11cert csr --key URI --subject SUBJECT [--san TYPE:VALUE]...\n"
	"                   [--md sha256|sha384|sha512] [-o FILE] [--outform pem|der]\n"
	"\n"
	"Make a PKCS#10 request for the token key, signed inside the token.\n"
	"\n"
	"  --subject S   '/C=SE/O=Example/CN=host1' or 'CN=host1,O=Example,C=SE'\n"
	"  --san N       DNS:name, IP:addr, email:addr, URI:uri (repeatable)\n"
	"  --md D        digest (default: sha256 for RSA 2048 / P-256, else sha384)\n"
	"  -o FILE       write to FILE atomically (default: stdout)\n"
	"  --outform F   pem (default) or der\n";

int cmd_csr(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ "subject", required_argument, NULL, 's' },
		{ "san", required_argument, NULL, 'a' },
		{ "md", required_argument, NULL, 'm' },
		{ "out", required_argument, NULL, 'o' },
		{ "outform", required_argument, NULL, 'F' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL, *subj = NULL, *out = NULL, *form = "pem";
	const EVP_MD *md = NULL;
	X509_NAME *name = NULL;
	STACK_OF(GENERAL_NAME) *sans = NULL;
	p11c_key *key = NULL;
	X509_REQ *req = NULL;
	BIO *bio = NULL;
	char err[256];
	char *data;
	long len;
	p11c_result r;
	int ch, rc = EX_FAIL;

	if (cli_help(argc, argv, csr_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "o:", opts, NULL)) != -1) {
		switch (ch) {
		case 'k':
			uri = optarg;
			break;
		case 's':
			subj = optarg;
			break;
		case 'a':
			if (p11c_san_add(optarg, &sans, err, sizeof err) != P11C_OK) {
				rc = cli_usage(c, "bad --san '%s': %s", optarg, err);
				goto out;
			}
			break;
		case 'm':
			md = EVP_get_digestbyname(optarg);
			if (md == NULL || (strcmp(optarg, "sha256") != 0 && strcmp(optarg, "sha384") != 0 &&
					   strcmp(optarg, "sha512") != 0)) {
				rc = cli_usage(c, "unknown --md '%s' (sha256, sha384, sha512)", optarg);
				goto out;
			}
			break;
		case 'o':
			out = optarg;
			break;
		case 'F':
			form = optarg;
			break;
		default:
			rc = cli_bad_option(c, argv);
			goto out;
		}
	}
	if (optind != argc) {
		rc = cli_usage(c, "unexpected argument '%s'", argv[optind]);
		goto out;
	}
	if (uri == NULL || subj == NULL) {
		rc = cli_usage(c, "--key URI and --subject SUBJECT are required");
		goto out;
	}
	if (strcmp(form, "pem") != 0 && strcmp(form, "der") != 0) {
		rc = cli_usage(c, "--outform must be pem or der, not '%s'", form);
		goto out;
	}
	if (p11c_subject_parse(subj, &name, err, sizeof err) != P11C_OK) {
		rc = cli_usage(c, "bad --subject '%s': %s", subj, err);
		goto out;
	}
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &key)) != P11C_OK) {
		rc = cli_fail(c, r, NULL);
		goto out;
	}
	if (p11c_key_get_type(key) == P11C_KEY_ED25519)
		md = NULL; /* EdDSA signs the message itself (RFC 8410 s6) */
	r = p11c_csr_create(key, name, sans, md, &req);
	if (r != P11C_OK) {
		rc = cli_fail(c, r, "cannot make the CSR");
		goto out;
	}
	bio = BIO_new(BIO_s_mem());
	if (bio == NULL || (strcmp(form, "pem") == 0 ? !PEM_write_bio_X509_REQ(bio, req)
						     : !i2d_X509_REQ_bio(bio, req))) {
		rc = cli_fail(c, P11C_ERR_CRYPTO, "cannot encode the CSR");
		goto out;
	}
	len = BIO_get_mem_data(bio, &data);
	rc = cli_output(c, out, data, (size_t)len, 0644);
out:
	BIO_free(bio);
	X509_REQ_free(req);
	p11c_key_free(&key);
	X509_NAME_free(name);
	sk_GENERAL_NAME_pop_free(sans, GENERAL_NAME_free);
	return rc;
}

static const char delete_help[] =
	"usage: p11cert delete --key URI\n"
	"\n"
	"Destroy the private key named by URI, its public key, and every certificate\n"
	"with the same CKA_ID.  The URI must select exactly one private key.\n";

int cmd_delete(struct cli *c, int argc, char **argv)
{
	static const struct option opts[] = {
		{ "key", required_argument, NULL, 'k' },
		{ NULL, 0, NULL, 0 },
	};
	const char *uri = NULL;
	p11c_key *key = NULL;
	char *kuri = NULL;
	p11c_result r;
	int ch;

	if (cli_help(argc, argv, delete_help))
		return 0;
	while ((ch = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		if (ch != 'k')
			return cli_bad_option(c, argv);
		uri = optarg;
	}
	if (optind != argc)
		return cli_usage(c, "unexpected argument '%s'", argv[optind]);
	if (uri == NULL)
		return cli_usage(c, "--key URI is required");
	if ((r = cli_ctx(c)) != P11C_OK || (r = p11c_key_find(c->ctx, uri, &key)) != P11C_OK)
		return cli_fail(c, r, NULL);
	kuri = p11c_key_uri(key, NULL);
	r = p11c_key_delete(c->ctx, &key);
	if (r != P11C_OK) {
		free(kuri);
		return cli_fail(c, r, "cannot delete");
	}
	if (!c->quiet)
		fprintf(stderr, "p11cert: deleted %s and its certificates\n", kuri ? kuri : uri);
	free(kuri);
	return 0;
}
