/* The token key as a TLS identity (client or server). */
#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>

#include <p11cert/tls.h>

#include "internal.h"

p11c_result p11c_tls_use_key(p11c_key *key, SSL_CTX *ssl_ctx, const char *chain_file)
{
	p11c_ctx *ctx;
	X509 *cert = NULL, *x = NULL;
	EVP_PKEY *signer = NULL;
	FILE *fp = NULL;
	p11c_result r;

	if (key == NULL || ssl_ctx == NULL)
		return P11C_ERR_ARG;
	ctx = key->ctx;
	r = p11c_cert_get(ctx, key, &cert);
	if (r != P11C_OK)
		return r;
	r = p11c_key_signer(key, &signer);
	if (r != P11C_OK)
		goto out;
	if (SSL_CTX_use_certificate(ssl_ctx, cert) != 1 || SSL_CTX_use_PrivateKey(ssl_ctx, signer) != 1) {
		r = p11c_ossl(ctx, "cannot give the token key and certificate to OpenSSL");
		goto out;
	}
	if (chain_file != NULL) {
		fp = fopen(chain_file, "r");
		if (fp == NULL) {
			p11c_detail(ctx, "cannot read the chain file '%s'", chain_file);
			r = P11C_ERR_IO;
			goto out;
		}
		while ((x = PEM_read_X509(fp, NULL, NULL, NULL)) != NULL) {
			/* the CA itself need not be sent, but harms nothing */
			if (SSL_CTX_add0_chain_cert(ssl_ctx, x) != 1) {
				X509_free(x);
				r = p11c_ossl(ctx, "chain certificate");
				goto out;
			}
		}
		ERR_clear_error(); /* end of file */
	}
	r = P11C_OK;
out:
	if (fp != NULL)
		fclose(fp);
	X509_free(cert);
	return r;
}

p11c_result p11c_tls_client_ctx(p11c_key *key, const char *ca_file, const char *chain_file, SSL_CTX **out)
{
	SSL_CTX *c;
	p11c_result r;

	if (key == NULL || out == NULL)
		return P11C_ERR_ARG;
	c = SSL_CTX_new(TLS_client_method());
	if (c == NULL)
		return P11C_ERR_NOMEM;
	SSL_CTX_set_min_proto_version(c, TLS1_2_VERSION);
	SSL_CTX_set_verify(c, SSL_VERIFY_PEER, NULL);
	if ((ca_file != NULL ? SSL_CTX_load_verify_locations(c, ca_file, NULL)
			     : SSL_CTX_set_default_verify_paths(c)) != 1) {
		p11c_detail(key->ctx, "cannot load trust anchors from '%s'", ca_file ? ca_file : "the system store");
		ERR_clear_error();
		SSL_CTX_free(c);
		return P11C_ERR_IO;
	}
	r = p11c_tls_use_key(key, c, chain_file);
	if (r != P11C_OK) {
		SSL_CTX_free(c);
		return r;
	}
	*out = c;
	return P11C_OK;
}
