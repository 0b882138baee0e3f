/* The store backends' shared helpers (common.h) and store.h's functions. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"

const char *const store_state_names[3] = { "pending", "signed", "rejected" };
const char *const store_lifetime_names[2] = { "short", "long" };

void store_request_clear(struct store_request *r)
{
	if (r == NULL)
		return;
	free(r->pem);
	free(r->subject);
	free(r->cn);
	free(r->ou);
	r->pem = NULL;
	r->subject = NULL;
	r->cn = NULL;
	r->ou = NULL;
}

void store_cert_clear(struct store_cert *c)
{
	if (c == NULL)
		return;
	free(c->pem);
	c->pem = NULL;
}

const char *store_state_name(req_state s)
{
	switch (s) {
	case REQ_PENDING:
	case REQ_SIGNED:
	case REQ_REJECTED:
		return store_state_names[s];
	}
	return "unknown";
}

const char *store_lifetime_name(req_lifetime l)
{
	switch (l) {
	case LIFETIME_SHORT:
	case LIFETIME_LONG:
		return store_lifetime_names[l];
	}
	return NULL;
}

int store_name_index(const char *s, const char *const *names, size_t n)
{
	size_t i;

	for (i = 0; s != NULL && i < n; i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -1;
}

int store_hex_ok(const char *s, size_t size, size_t min, size_t max)
{
	size_t i, n;

	if (s == NULL)
		return 0;
	n = strnlen(s, size);
	if (n == size || n < min || n > max)
		return 0;
	for (i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

store_result store_req_check(const struct store_request *req, req_state state, char *err, size_t errlen)
{
	if (req == NULL || req->pem == NULL || req->subject == NULL || req->cn == NULL) {
		snprintf(err, errlen, "adding request: pem, subject and cn are required");
		return STORE_ERROR;
	}
	if (!store_hex_ok(req->sha256, sizeof(req->sha256), 64, 64) ||
	    store_name_index(store_state_name(state), store_state_names, 3) < 0 ||
	    store_lifetime_name(req->lifetime) == NULL ||
	    strnlen(req->protocol, sizeof(req->protocol)) == sizeof(req->protocol)) {
		snprintf(err, errlen, "adding request: invalid sha256, state, lifetime or protocol");
		return STORE_ERROR;
	}
	return STORE_OK;
}

store_result store_cert_check(const struct store_cert *c, char *err, size_t errlen)
{
	if (c == NULL || c->pem == NULL || !store_hex_ok(c->serial, sizeof(c->serial), 1, sizeof(c->serial) - 1)) {
		snprintf(err, errlen, "adding certificate: no pem or invalid serial");
		return STORE_ERROR;
	}
	return STORE_OK;
}
