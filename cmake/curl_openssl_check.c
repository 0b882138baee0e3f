/* Configure-time check (cmake/CurlOpenSSL.cmake, try_run): is the libcurl
 * found built on OpenSSL?  The run-time check of libp11cert itself
 * (src/lib/curlssl.c), compiled into this program: one implementation. */
#include "curlssl.c"

int p11c_test_setopt_fails(const char *name)
{
	(void)name;
	return 0;
}

int main(void)
{
	char err[512] = "";
	const curl_version_info_data *v;

	if (p11c_curl_ready(err, sizeof err) != 0) {
		printf("%s\n", err);
		return 1;
	}
	v = curl_version_info(CURLVERSION_NOW);
	printf("libcurl %s with %s\n", v->version, v->ssl_version);
	curl_global_cleanup();
	return 0;
}
