/* Describing certificates and CSRs for people (text) and programs (JSON). */
#ifndef P11C_SHOW_H
#define P11C_SHOW_H

#include <jansson.h>
#include <openssl/x509.h>

#include "internal.h"

/* JSON object describing a certificate: subject, issuer, serial (hex),
 * not_before / not_after (RFC 3339 UTC), sans [..], key {type, bits|curve},
 * signature_algorithm, fingerprints {sha256, sha1} (colon hex),
 * basic_constraints {ca, pathlen}, key_usage [..], extended_key_usage [..],
 * subject_key_id, authority_key_id.  NULL on allocation failure. */
P11C_HIDDEN json_t *p11c_cert_json(X509 *cert);
/* Same for a CSR: subject, sans, key, signature_algorithm,
 * signature_valid (bool), fingerprint of the DER. */
P11C_HIDDEN json_t *p11c_req_json(X509_REQ *req);
/* certigo-like text; caller frees.  NULL on allocation failure. */
P11C_HIDDEN char *p11c_cert_text(X509 *cert);
P11C_HIDDEN char *p11c_req_text(X509_REQ *req);
/* "2026-11-22T21:30:00Z" into buf (>= 21 bytes); "" on failure. */
P11C_HIDDEN void p11c_asn1_time_str(const ASN1_TIME *t, char *buf, size_t len);
/* RFC 2253-ish one-line name ("CN=host1, O=Example, C=SE" in
 * OpenSSL's XN_FLAG_RFC2253 order); caller frees. */
P11C_HIDDEN char *p11c_name_str(const X509_NAME *name);

#endif
