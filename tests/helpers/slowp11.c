/*
 * slowp11: a PKCS#11 module for tests that wraps a real one (SoftHSM) and
 * makes signing slow, to show whether signatures run in parallel.
 *
 *   SLOWP11_MODULE            the real module (default: P11CERT_TEST_MODULE,
 *                             which softhsm-fixtures/softhsm-token exports,
 *                             else the first libsofthsm2.so found)
 *   SLOWP11_DELAY_MS          C_Sign and C_SignFinal sleep this long first
 *                             (default 0)
 *   SLOWP11_CANT_LOCK=1       C_Initialize answers CKR_CANT_LOCK to
 *                             CKF_OS_LOCKING_OK without mutex callbacks,
 *                             as a module that cannot lock does (PKCS#11
 *                             v2.40 s5.4); other arguments pass through
 *   SLOWP11_MAX_INFLIGHT_FILE the most C_Sign calls seen in flight at once
 *                             is written there (temp file + rename) after
 *                             every C_Sign and at C_Finalize
 *
 * The variables are read at each C_Initialize (SLOWP11_MODULE once, at the
 * first C_GetFunctionList); the count starts again there too.  Every other
 * function is the real module's own (a copy of its CK_FUNCTION_LIST).
 */
#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <p11-kit/pkcs11.h>

#define SLOWP11_API __attribute__((visibility("default")))

static CK_FUNCTION_LIST real_copy;  /* what we hand out */
static CK_FUNCTION_LIST_PTR real;   /* the real module's list */
static pthread_once_t load_once = PTHREAD_ONCE_INIT;
static CK_RV load_rv = CKR_GENERAL_ERROR;

static long delay_ms;
static int cant_lock;
static char inflight_file[512];
static pthread_mutex_t count_mu = PTHREAD_MUTEX_INITIALIZER;
static unsigned inflight, inflight_max;

static const char *real_path(void)
{
	static const char *const known[] = {
		"/usr/lib/softhsm/libsofthsm2.so",
		"/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/lib/aarch64-linux-gnu/softhsm/libsofthsm2.so",
		"/usr/local/lib/softhsm/libsofthsm2.so",
	};
	const char *p = getenv("SLOWP11_MODULE");
	size_t i;

	if (p != NULL && *p != '\0')
		return p;
	p = getenv("P11CERT_TEST_MODULE");
	if (p != NULL && *p != '\0')
		return p;
	for (i = 0; i < sizeof known / sizeof known[0]; i++)
		if (access(known[i], R_OK) == 0)
			return known[i];
	return known[0];
}

static CK_RV slow_Initialize(CK_VOID_PTR init_args);
static CK_RV slow_Finalize(CK_VOID_PTR reserved);
static CK_RV slow_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
		       CK_ULONG_PTR siglen);
static CK_RV slow_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR siglen);

static void load(void)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = NULL;
	const char *path = real_path();
	void *dl;

	dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL) {
		fprintf(stderr, "slowp11: cannot load '%s': %s\n", path, dlerror());
		return;
	}
	*(void **)&get_list = dlsym(dl, "C_GetFunctionList");
	if (get_list == NULL || get_list(&real) != CKR_OK || real == NULL) {
		fprintf(stderr, "slowp11: '%s' has no usable C_GetFunctionList\n", path);
		return;
	}
	real_copy = *real;
	real_copy.C_GetFunctionList = C_GetFunctionList;
	real_copy.C_Initialize = slow_Initialize;
	real_copy.C_Finalize = slow_Finalize;
	real_copy.C_Sign = slow_Sign;
	real_copy.C_SignFinal = slow_SignFinal;
	load_rv = CKR_OK;
}

SLOWP11_API CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list);

CK_RV C_GetFunctionList(CK_FUNCTION_LIST_PTR_PTR list)
{
	if (list == NULL)
		return CKR_ARGUMENTS_BAD;
	(void)pthread_once(&load_once, load);
	if (load_rv != CKR_OK)
		return load_rv;
	*list = &real_copy;
	return CKR_OK;
}

/* the maximum so far, to the file: temp file, rename */
static void write_max(void)
{
	char tmp[600];
	unsigned max;
	FILE *fp;

	(void)pthread_mutex_lock(&count_mu);
	max = inflight_max;
	if (inflight_file[0] != '\0') {
		snprintf(tmp, sizeof tmp, "%s.tmp", inflight_file);
		fp = fopen(tmp, "w");
		if (fp != NULL) {
			fprintf(fp, "%u\n", max);
			if (fclose(fp) == 0)
				(void)rename(tmp, inflight_file);
			else
				(void)unlink(tmp);
		}
	}
	(void)pthread_mutex_unlock(&count_mu);
}

static void pause_ms(long ms)
{
	struct timespec ts = { ms / 1000, (ms % 1000) * 1000000L };

	while (ms > 0 && nanosleep(&ts, &ts) != 0 && errno == EINTR)
		;
}

static CK_RV slow_Initialize(CK_VOID_PTR init_args)
{
	const CK_C_INITIALIZE_ARGS *a = init_args;
	const char *v;

	v = getenv("SLOWP11_DELAY_MS");
	delay_ms = v != NULL ? strtol(v, NULL, 10) : 0;
	if (delay_ms < 0)
		delay_ms = 0;
	v = getenv("SLOWP11_CANT_LOCK");
	cant_lock = v != NULL && strcmp(v, "1") == 0;
	(void)pthread_mutex_lock(&count_mu);
	v = getenv("SLOWP11_MAX_INFLIGHT_FILE");
	snprintf(inflight_file, sizeof inflight_file, "%s", v != NULL ? v : "");
	inflight = 0;
	inflight_max = 0;
	(void)pthread_mutex_unlock(&count_mu);
	if (cant_lock && a != NULL && (a->flags & CKF_OS_LOCKING_OK) && a->CreateMutex == NULL &&
	    a->DestroyMutex == NULL && a->LockMutex == NULL && a->UnlockMutex == NULL)
		return CKR_CANT_LOCK;
	return real->C_Initialize(init_args);
}

static CK_RV slow_Finalize(CK_VOID_PTR reserved)
{
	write_max();
	return real->C_Finalize(reserved);
}

static CK_RV slow_Sign(CK_SESSION_HANDLE h, CK_BYTE_PTR data, CK_ULONG len, CK_BYTE_PTR sig,
		       CK_ULONG_PTR siglen)
{
	CK_RV rv;

	(void)pthread_mutex_lock(&count_mu);
	if (++inflight > inflight_max)
		inflight_max = inflight;
	(void)pthread_mutex_unlock(&count_mu);
	pause_ms(delay_ms);
	rv = real->C_Sign(h, data, len, sig, siglen);
	(void)pthread_mutex_lock(&count_mu);
	inflight--;
	(void)pthread_mutex_unlock(&count_mu);
	write_max();
	return rv;
}

static CK_RV slow_SignFinal(CK_SESSION_HANDLE h, CK_BYTE_PTR sig, CK_ULONG_PTR siglen)
{
	pause_ms(delay_ms);
	return real->C_SignFinal(h, sig, siglen);
}
