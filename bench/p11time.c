/*
 * p11time: a PKCS#11 module that forwards every call to the real module and
 * times the calls that matter for an enrollment (bench/enroll_compare).
 *
 *   P11TIME_MODULE=/usr/lib/softhsm/libsofthsm2.so \
 *   P11TIME_OUTPUT=/tmp/t.txt  p11cert --module .../libp11time.so ...
 *
 * At unload (or process exit) it appends one line per timed function that
 * was called to P11TIME_OUTPUT (default stderr):
 *
 *   pid=PID fn=C_Sign calls=1 us=812
 *
 * plus "pid=PID fn=total calls=N us=T" for all timed calls.  The time is
 * wall clock (CLOCK_MONOTONIC) spent inside the real module: what the token
 * costs, as opposed to what the application around it costs.  Functions not
 * listed below are passed through untimed (an enrollment calls none of them).
 * Nested calls cannot happen (a module does not call back into the list).
 * Not thread safe in its counters: for single-threaded clients.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

static CK_FUNCTION_LIST real_list, our_list;
static CK_FUNCTION_LIST_PTR real;
static void *dl;

/* X(name, (params), (args)) */
#define TIMED(X)                                                                                            \
	X(C_Initialize, (void *a), (a))                                                                     \
	X(C_Finalize, (void *a), (a))                                                                       \
	X(C_GetInfo, (CK_INFO_PTR a), (a))                                                                  \
	X(C_GetSlotList, (CK_BBOOL a, CK_SLOT_ID_PTR b, CK_ULONG_PTR c), (a, b, c))                        \
	X(C_GetSlotInfo, (CK_SLOT_ID a, CK_SLOT_INFO_PTR b), (a, b))                                        \
	X(C_GetTokenInfo, (CK_SLOT_ID a, CK_TOKEN_INFO_PTR b), (a, b))                                      \
	X(C_GetMechanismList, (CK_SLOT_ID a, CK_MECHANISM_TYPE_PTR b, CK_ULONG_PTR c), (a, b, c))          \
	X(C_GetMechanismInfo, (CK_SLOT_ID a, CK_MECHANISM_TYPE b, CK_MECHANISM_INFO_PTR c), (a, b, c))     \
	X(C_OpenSession, (CK_SLOT_ID a, CK_FLAGS b, void *c, CK_NOTIFY d, CK_SESSION_HANDLE_PTR e),       \
	  (a, b, c, d, e))                                                                                  \
	X(C_CloseSession, (CK_SESSION_HANDLE a), (a))                                                       \
	X(C_CloseAllSessions, (CK_SLOT_ID a), (a))                                                          \
	X(C_GetSessionInfo, (CK_SESSION_HANDLE a, CK_SESSION_INFO_PTR b), (a, b))                           \
	X(C_Login, (CK_SESSION_HANDLE a, CK_USER_TYPE b, CK_UTF8CHAR_PTR c, CK_ULONG d), (a, b, c, d))     \
	X(C_Logout, (CK_SESSION_HANDLE a), (a))                                                             \
	X(C_CreateObject, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c, CK_OBJECT_HANDLE_PTR d),  \
	  (a, b, c, d))                                                                                     \
	X(C_DestroyObject, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b), (a, b))                               \
	X(C_GetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d), \
	  (a, b, c, d))                                                                                     \
	X(C_SetAttributeValue, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE b, CK_ATTRIBUTE_PTR c, CK_ULONG d), \
	  (a, b, c, d))                                                                                     \
	X(C_FindObjectsInit, (CK_SESSION_HANDLE a, CK_ATTRIBUTE_PTR b, CK_ULONG c), (a, b, c))             \
	X(C_FindObjects, (CK_SESSION_HANDLE a, CK_OBJECT_HANDLE_PTR b, CK_ULONG c, CK_ULONG_PTR d),       \
	  (a, b, c, d))                                                                                     \
	X(C_FindObjectsFinal, (CK_SESSION_HANDLE a), (a))                                                   \
	X(C_SignInit, (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_OBJECT_HANDLE c), (a, b, c))            \
	X(C_Sign, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c, CK_BYTE_PTR d, CK_ULONG_PTR e),        \
	  (a, b, c, d, e))                                                                                  \
	X(C_SignUpdate, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))                       \
	X(C_SignFinal, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG_PTR c), (a, b, c))                    \
	X(C_GenerateKeyPair,                                                                                \
	  (CK_SESSION_HANDLE a, CK_MECHANISM_PTR b, CK_ATTRIBUTE_PTR c, CK_ULONG d, CK_ATTRIBUTE_PTR e,     \
	   CK_ULONG f, CK_OBJECT_HANDLE_PTR g, CK_OBJECT_HANDLE_PTR h),                                     \
	  (a, b, c, d, e, f, g, h))                                                                         \
	X(C_GenerateRandom, (CK_SESSION_HANDLE a, CK_BYTE_PTR b, CK_ULONG c), (a, b, c))

#define ENUM(name, params, args) I_##name,
enum { TIMED(ENUM) NFN };
#define NAME(name, params, args) #name,
static const char *const names[NFN] = { TIMED(NAME) };
static unsigned long calls[NFN];
static unsigned long long nsec[NFN];

static unsigned long long now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (unsigned long long)ts.tv_sec * 1000000000ULL + (unsigned long long)ts.tv_nsec;
}

#define WRAP(name, params, args)                                                                           \
	static CK_RV t_##name params                                                                        \
	{                                                                                                   \
		unsigned long long t0 = now_ns();                                                           \
		CK_RV rv = real_list.name args;                                                             \
		nsec[I_##name] += now_ns() - t0;                                                            \
		calls[I_##name]++;                                                                          \
		return rv;                                                                                  \
	}
TIMED(WRAP)

__attribute__((destructor)) static void report(void)
{
	const char *path = getenv("P11TIME_OUTPUT");
	FILE *f = path != NULL && *path ? fopen(path, "a") : stderr;
	unsigned long long tot = 0;
	unsigned long n = 0;
	int i;

	if (f == NULL || real == NULL)
		return;
	for (i = 0; i < NFN; i++) {
		if (calls[i] == 0)
			continue;
		fprintf(f, "pid=%ld fn=%s calls=%lu us=%llu\n", (long)getpid(), names[i], calls[i], nsec[i] / 1000);
		tot += nsec[i];
		n += calls[i];
	}
	fprintf(f, "pid=%ld fn=total calls=%lu us=%llu\n", (long)getpid(), n, tot / 1000);
	if (f != stderr)
		fclose(f);
}

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR out)
{
	const char *mod = getenv("P11TIME_MODULE");
	CK_RV (*gfl)(CK_FUNCTION_LIST_PTR_PTR);

	if (out == NULL)
		return CKR_ARGUMENTS_BAD;
	if (real == NULL) {
		if (mod == NULL || *mod == '\0') {
			fprintf(stderr, "p11time: set P11TIME_MODULE to the real module\n");
			return CKR_GENERAL_ERROR;
		}
		if ((dl = dlopen(mod, RTLD_NOW | RTLD_LOCAL)) == NULL) {
			fprintf(stderr, "p11time: %s\n", dlerror());
			return CKR_GENERAL_ERROR;
		}
		*(void **)&gfl = dlsym(dl, "C_GetFunctionList");
		if (gfl == NULL || gfl(&real) != CKR_OK || real == NULL)
			return CKR_GENERAL_ERROR;
		real_list = *real;
		our_list = *real;
#define SET(name, params, args) our_list.name = t_##name;
		TIMED(SET)
		our_list.C_GetFunctionList = C_GetFunctionList;
	}
	*out = &our_list;
	return CKR_OK;
}
