/* Fault-injection hook for the crash tests (tests/cli/test_fault_*.sh);
 * internal, not installed.  See docs/operations.md, "Test hook". */
#ifndef P11C_TESTHOOK_H
#define P11C_TESTHOOK_H

/* When the environment variable P11CERT_TEST_STALL_AT equals STAGE, print
 * one line to stderr and stop the process (raise(SIGSTOP)), so that a test
 * can SIGKILL it at exactly that point.  Otherwise, and always in a build
 * with -DP11CERT_TEST_HOOKS=OFF, nothing. */
void p11c_test_stall(const char *stage) __attribute__((visibility("hidden")));
/* Stage "write:BASENAME" of an atomic file write: the temp file is
 * written and synced, not yet renamed over PATH. */
void p11c_test_stall_write(const char *path) __attribute__((visibility("hidden")));
/* 1 when the environment variable P11CERT_TEST_SETOPT_FAIL equals NAME
 * (a CURLOPT_* name): that curl_easy_setopt is then treated as refused
 * (curlssl.c).  Always 0 in a build with -DP11CERT_TEST_HOOKS=OFF. */
int p11c_test_setopt_fails(const char *name) __attribute__((visibility("hidden")));

#endif
