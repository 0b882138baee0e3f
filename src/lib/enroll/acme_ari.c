/* ACME Renewal Information (RFC 9773): the CertID of a certificate
 * (s4.1), the CA's suggested renewal window for it (s4.2, s4.3), and when
 * to renew in that window.  The answer is bounded (P11C_ACME_ARI_MAX
 * bytes, dates of at most 64 bytes in years 1970 to 9999, Retry-After
 * bounded to a minute .. a day). */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>
#include <openssl/x509v3.h>

#include <p11cert/acme.h>

#include "acme_int.h"
#include "http.h"
#include "jws.h"

#define ARI_RETRY_MIN_S 60         /* RFC 9773 s4.3.3: "values under one minute ... as one minute" */
#define ARI_RETRY_MAX_S 86400      /* "... over one day as one day" */
#define ARI_RETRY_DEFAULT_S 21600  /* no Retry-After: six hours */
#define ARI_DATE_MAX 64
#define ARI_ID_PART_MAX 64         /* bytes of a keyIdentifier or a serial number we take */

/* The content bytes of the serial number's DER INTEGER (s4.1: with the
 * leading 0x00 of a positive number whose top bit is set) */
static unsigned char *serial_content(X509 *cert, size_t *n)
{
	unsigned char *der = NULL, *out = NULL;
	const unsigned char *p;
	long len = 0;
	int tag, cls, dl;

	if ((dl = i2d_ASN1_INTEGER(X509_get0_serialNumber(cert), &der)) <= 0)
		return NULL;
	p = der;
	if (!(ASN1_get_object(&p, &len, &tag, &cls, dl) & 0x80) && tag == V_ASN1_INTEGER && len > 0 &&
	    len <= ARI_ID_PART_MAX && p + len == der + dl && (out = malloc((size_t)len)) != NULL) {
		memcpy(out, p, (size_t)len);
		*n = (size_t)len;
	}
	OPENSSL_free(der);
	return out;
}

/* RFC 9773 s4.1 */
p11c_result p11c_acme_cert_id(X509 *cert, char **out)
{
	const ASN1_OCTET_STRING *aki;
	unsigned char *ser = NULL;
	char *a = NULL, *b = NULL;
	size_t sn = 0;
	p11c_result r = P11C_ERR_ARG;

	if (out == NULL)
		return P11C_ERR_ARG;
	*out = NULL;
	if (cert == NULL || (aki = X509_get0_authority_key_id(cert)) == NULL || ASN1_STRING_length(aki) <= 0 ||
	    ASN1_STRING_length(aki) > ARI_ID_PART_MAX)
		goto out;
	if ((ser = serial_content(cert, &sn)) == NULL)
		goto out;
	r = P11C_ERR_NOMEM;
	if ((a = p11c_b64url(ASN1_STRING_get0_data(aki), (size_t)ASN1_STRING_length(aki))) == NULL ||
	    (b = p11c_b64url(ser, sn)) == NULL || asprintf(out, "%s.%s", a, b) < 0) {
		*out = NULL;
		goto out;
	}
	r = P11C_OK;
out:
	free(ser);
	free(a);
	free(b);
	return r;
}

static int digits(const char *s, int n, int *v)
{
	int i;

	*v = 0;
	for (i = 0; i < n; i++) {
		if (!isdigit((unsigned char)s[i]))
			return -1;
		*v = *v * 10 + (s[i] - '0');
	}
	return 0;
}

/* RFC 3339 s5.6: date-time = full-date "T" full-time */
int p11c_acme_rfc3339(const char *s, time_t *t)
{
	static const int mdays[] = { 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31 };
	struct tm tm;
	int y, mo, d, h, mi, sec, oh = 0, om = 0, sign = 0;
	size_t len;
	const char *p;
	time_t v;

	if (s == NULL || (len = strlen(s)) < 20 || len > ARI_DATE_MAX)
		return -1;
	if (digits(s, 4, &y) || s[4] != '-' || digits(s + 5, 2, &mo) || s[7] != '-' || digits(s + 8, 2, &d) ||
	    (s[10] != 'T' && s[10] != 't') || digits(s + 11, 2, &h) || s[13] != ':' || digits(s + 14, 2, &mi) ||
	    s[16] != ':' || digits(s + 17, 2, &sec))
		return -1;
	p = s + 19;
	if (*p == '.') { /* time-secfrac: ignored */
		if (!isdigit((unsigned char)p[1]))
			return -1;
		for (p++; isdigit((unsigned char)*p); p++)
			;
	}
	if (*p == 'Z' || *p == 'z') {
		p++;
	} else if (*p == '+' || *p == '-') {
		sign = *p == '-' ? -1 : 1;
		if (digits(p + 1, 2, &oh) || p[3] != ':' || digits(p + 4, 2, &om) || oh > 23 || om > 59)
			return -1;
		p += 6;
	} else {
		return -1;
	}
	if (*p != '\0' || y < 1970 || y > 9999 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
	    (mo == 2 && d == 29 && !(y % 4 == 0 && (y % 100 != 0 || y % 400 == 0))) || h > 23 || mi > 59 ||
	    sec > 60)
		return -1;
	memset(&tm, 0, sizeof tm);
	tm.tm_year = y - 1900;
	tm.tm_mon = mo - 1;
	tm.tm_mday = d;
	tm.tm_hour = h;
	tm.tm_min = mi;
	tm.tm_sec = sec > 59 ? 59 : sec; /* a leap second */
	if ((v = timegm(&tm)) == (time_t)-1)
		return -1;
	*t = v - (time_t)sign * (oh * 3600 + om * 60);
	return 0;
}

static int printable(const char *s)
{
	for (; *s != '\0'; s++)
		if (!isprint((unsigned char)*s))
			return 0;
	return 1;
}

/* RFC 9773 s4.2 */
p11c_result p11c_acme_ari_parse(p11c_ctx *ctx, const unsigned char *buf, size_t len, const char *retry_after,
				p11c_acme_ari *out)
{
	json_t *j = NULL;
	const json_t *w;
	const char *st, *en, *ex;
	json_error_t je;
	char *end = NULL;
	long ra;
	p11c_result r = P11C_ERR_PROTOCOL;

	memset(out, 0, sizeof *out);
	if (buf == NULL || len == 0 || len > P11C_ACME_ARI_MAX) {
		p11c_detail(ctx, "renewalInfo: an answer of %zu bytes (1 to %d expected)", len, P11C_ACME_ARI_MAX);
		return P11C_ERR_PROTOCOL;
	}
	j = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &je);
	w = json_object_get(j, "suggestedWindow");
	st = json_string_value(json_object_get(w, "start"));
	en = json_string_value(json_object_get(w, "end"));
	if (!json_is_object(j) || !json_is_object(w) || st == NULL || en == NULL) {
		p11c_detail(ctx, "renewalInfo: no suggestedWindow with start and end");
		goto out;
	}
	if (p11c_acme_rfc3339(st, &out->start) != 0 || p11c_acme_rfc3339(en, &out->end) != 0) {
		p11c_detail(ctx, "renewalInfo: the suggestedWindow's start '%.70s' or end '%.70s' is not an RFC 3339 "
			    "date-time", st, en);
		goto out;
	}
	if (out->end <= out->start) {
		p11c_detail(ctx, "renewalInfo: the suggestedWindow ends (%.70s) before it starts (%.70s)", en, st);
		goto out;
	}
	/* informational only: kept when it is a short printable string */
	ex = json_string_value(json_object_get(j, "explanationURL"));
	if (ex != NULL && strlen(ex) < sizeof out->explanation && printable(ex))
		memcpy(out->explanation, ex, strlen(ex) + 1);
	/* s4.3.3 */
	out->retry_after = ARI_RETRY_DEFAULT_S;
	if (retry_after != NULL && *retry_after != '\0') {
		ra = strtol(retry_after, &end, 10);
		if (end != retry_after && *end == '\0' && ra >= 0)
			out->retry_after = ra < ARI_RETRY_MIN_S ? ARI_RETRY_MIN_S : ra > ARI_RETRY_MAX_S ? ARI_RETRY_MAX_S : ra;
	}
	r = P11C_OK;
out:
	if (r != P11C_OK)
		memset(out, 0, sizeof *out);
	json_decref(j);
	return r;
}

int p11c_acme_replaces_refused(long status, const unsigned char *buf, size_t len)
{
	static const char pfx[] = "urn:ietf:params:acme:error:";
	json_t *p;
	const char *t;
	int refused = 0;

	if (status == 409)
		return 1;
	if ((status != 400 && status != 403) || buf == NULL || len > P11C_HTTP_MAX_RESPONSE)
		return 0;
	p = json_loadb((const char *)buf, len, 0, NULL);
	t = json_string_value(json_object_get(p, "type"));
	if (t != NULL && strncmp(t, pfx, sizeof pfx - 1) == 0) {
		t += sizeof pfx - 1;
		refused = strcmp(t, "alreadyReplaced") == 0 || strcmp(t, "malformed") == 0 || strcmp(t, "conflict") == 0;
	}
	json_decref(p);
	return refused;
}

int p11c_acme_ari_supported(const p11c_acme *a)
{
	return p11c_acme_renewal_url(a) != NULL;
}

/* RFC 9773 s4.3: GET {renewalInfo}/{CertID} */
p11c_result p11c_acme_renewal_info(p11c_acme *a, X509 *cert, p11c_acme_ari *out)
{
	struct p11c_http h;
	const char *base;
	char *id = NULL, *url = NULL;
	size_t bl;
	p11c_result r;

	memset(&h, 0, sizeof h);
	if (out != NULL)
		memset(out, 0, sizeof *out);
	if (a == NULL || cert == NULL || out == NULL)
		return P11C_ERR_ARG;
	if ((base = p11c_acme_renewal_url(a)) == NULL) {
		p11c_detail(p11c_acme_ctx(a), "the ACME directory has no renewalInfo (RFC 9773)");
		return P11C_ERR_NOT_FOUND;
	}
	if ((r = p11c_acme_cert_id(cert, &id)) != P11C_OK) {
		if (r == P11C_ERR_ARG)
			p11c_detail(p11c_acme_ctx(a), "the certificate has no authorityKeyIdentifier: no ARI CertID");
		return r;
	}
	bl = strlen(base);
	if (bl > 0 && base[bl - 1] == '/')
		bl--;
	r = P11C_ERR_NOMEM;
	if (asprintf(&url, "%.*s/%s", (int)bl, base, id) < 0) {
		url = NULL;
		goto out;
	}
	if ((r = p11c_acme_get(a, url, &h, "renewalInfo")) != P11C_OK)
		goto out;
	if (h.status != 200) {
		p11c_detail(p11c_acme_ctx(a), "renewalInfo %.300s: the ACME server answered %ld", url, h.status);
		r = P11C_ERR_PROTOCOL;
		goto out;
	}
	r = p11c_acme_ari_parse(p11c_acme_ctx(a), h.resp, h.resp_len, h.retry_after, out);
out:
	p11c_http_clear(&h);
	free(url);
	free(id);
	return r;
}

time_t p11c_acme_ari_pick(const p11c_acme_ari *w, unsigned long long rnd)
{
	unsigned long long span;

	if (w == NULL || w->end <= w->start)
		return w != NULL ? w->start : 0;
	span = (unsigned long long)(w->end - w->start);
	return w->start + (time_t)(rnd % span);
}

int p11c_acme_ari_due(const p11c_acme_ari *w, time_t at, time_t now)
{
	return w != NULL && (now >= at || now >= w->end);
}
