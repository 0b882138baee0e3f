/*
 * p11sign: the raw signing rate of a key in a PKCS#11 token (bench/, not a
 * test): the physical limit a CA with its key in that token cannot pass.
 *
 *   p11sign --module PATH --token LABEL --key LABEL --pin-file FILE
 *           [--seconds S] [--threads N]
 *
 * N threads (default 1), each with its own read-only session on the token
 * (logged in once: a login is per token), call C_SignInit + C_Sign with
 * CKM_ECDSA over a 32-byte digest - what p11ca's signer sends the token for
 * an EC P-256 CA key (src/lib/signer.c) - as fast as they can for S seconds
 * (default 5).  One thread is what a single-threaded server such as p11ca
 * today can ask of the token; N threads show what the token gives in all.
 *
 * Output: one line on stdout
 *   threads=N seconds=S signatures=K rate=R us_per_sig=U errors=E
 * Exit 0 when the run completed, 1 when it could not start (module, token,
 * login, key), 64 on usage errors.  The PIN is read from a file, never argv,
 * and wiped after the login.  Bounded: S at most 3600, N at most 64.
 */
#include <dlfcn.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <p11-kit/pkcs11.h>

#include "bench_util.h"

#define MAX_THREADS	64
#define MAX_SLOTS	64

static const char *prog = "p11sign";

struct opts {
	const char *module, *token, *key, *pin_file;
	double seconds;
	int threads;
};

struct run {
	CK_FUNCTION_LIST_PTR f;
	CK_SLOT_ID slot;
	const char *key;
	struct timespec deadline;
	pthread_barrier_t ready;
	atomic_int setup_failed;
};

struct worker {
	struct run *r;
	pthread_t th;
	long sigs, errors;
};

static void usage(void)
{
	fprintf(stderr,
		"usage: %s --module PATH --token LABEL --key LABEL --pin-file FILE [--seconds S] [--threads N]\n",
		prog);
	exit(64);
}

/* blank-padded PKCS#11 label == s */
static int label_is(const CK_UTF8CHAR *l, size_t n, const char *s)
{
	size_t sl = strlen(s), i;

	if (sl > n || memcmp(l, s, sl) != 0)
		return 0;
	for (i = sl; i < n; i++) {
		if (l[i] != ' ')
			return 0;
	}
	return 1;
}

static int find_slot(CK_FUNCTION_LIST_PTR f, const char *token, CK_SLOT_ID *out)
{
	CK_SLOT_ID slots[MAX_SLOTS];
	CK_ULONG n = MAX_SLOTS, i;
	CK_TOKEN_INFO ti;

	if (f->C_GetSlotList(CK_TRUE, slots, &n) != CKR_OK)
		return -1;
	for (i = 0; i < n; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) == CKR_OK && label_is(ti.label, sizeof ti.label, token)) {
			*out = slots[i];
			return 0;
		}
	}
	return -1;
}

static int find_key(CK_FUNCTION_LIST_PTR f, CK_SESSION_HANDLE s, const char *label, CK_OBJECT_HANDLE *out)
{
	CK_OBJECT_CLASS cls = CKO_PRIVATE_KEY;
	CK_ATTRIBUTE tmpl[] = {
		{ CKA_CLASS, &cls, sizeof cls },
		{ CKA_LABEL, (void *)(uintptr_t)label, strlen(label) },
	};
	CK_ULONG n = 0;
	CK_RV rv;

	if (f->C_FindObjectsInit(s, tmpl, 2) != CKR_OK)
		return -1;
	rv = f->C_FindObjects(s, out, 1, &n);
	(void)f->C_FindObjectsFinal(s);
	return rv == CKR_OK && n == 1 ? 0 : -1;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	struct run *r = w->r;
	CK_FUNCTION_LIST_PTR f = r->f;
	CK_SESSION_HANDLE s = CK_INVALID_HANDLE;
	CK_OBJECT_HANDLE key = CK_INVALID_HANDLE;
	CK_MECHANISM mech = { CKM_ECDSA, NULL, 0 };
	CK_BYTE dgst[32], sig[512];
	CK_ULONG siglen;
	size_t i;

	for (i = 0; i < sizeof dgst; i++)
		dgst[i] = (CK_BYTE)(i * 7 + 1);
	if (f->C_OpenSession(r->slot, CKF_SERIAL_SESSION, NULL, NULL, &s) != CKR_OK ||
	    find_key(f, s, r->key, &key) != 0) {
		fprintf(stderr, "%s: no session, or no private key labelled '%s'\n", prog, r->key);
		atomic_store(&r->setup_failed, 1);
	}
	(void)pthread_barrier_wait(&r->ready);	/* main sets the deadline */
	(void)pthread_barrier_wait(&r->ready);
	while (!atomic_load(&r->setup_failed) && !past(&r->deadline)) {
		dgst[0]++;
		siglen = sizeof sig;
		if (f->C_SignInit(s, &mech, key) != CKR_OK ||
		    f->C_Sign(s, dgst, sizeof dgst, sig, &siglen) != CKR_OK) {
			w->errors++;
			continue;
		}
		w->sigs++;
	}
	if (s != CK_INVALID_HANDLE)
		(void)f->C_CloseSession(s);
	return NULL;
}

/* the PIN: the file's first line, without its line end */
static int read_pin(const char *path, char *pin, size_t sz)
{
	FILE *fp = fopen(path, "r");
	int ok = fp != NULL && fgets(pin, (int)sz, fp) != NULL;

	if (fp != NULL)
		fclose(fp);
	if (ok)
		pin[strcspn(pin, "\r\n")] = '\0';
	return ok ? 0 : -1;
}

int main(int argc, char **argv)
{
	struct opts o = { .seconds = 5, .threads = 1 };
	struct run r;
	struct worker *w = NULL;
	CK_C_GetFunctionList gfl;
	CK_SESSION_HANDLE login = CK_INVALID_HANDLE;
	CK_C_INITIALIZE_ARGS ia = { .flags = CKF_OS_LOCKING_OK };
	char pin[256];
	void *dl = NULL;
	double t0, elapsed;
	long sigs = 0, errs = 0;
	int i, rc = 1, inited = 0, barrier = 0;
	CK_RV rv;

	for (i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;

		if (v == NULL)
			usage();
		i++;
		if (strcmp(a, "--module") == 0)
			o.module = v;
		else if (strcmp(a, "--token") == 0)
			o.token = v;
		else if (strcmp(a, "--key") == 0)
			o.key = v;
		else if (strcmp(a, "--pin-file") == 0)
			o.pin_file = v;
		else if (strcmp(a, "--seconds") == 0)
			o.seconds = num_arg(prog, a, v, 0.1, 3600);
		else if (strcmp(a, "--threads") == 0)
			o.threads = (int)num_arg(prog, a, v, 1, MAX_THREADS);
		else
			usage();
	}
	if (o.module == NULL || o.token == NULL || o.key == NULL || o.pin_file == NULL)
		usage();
	memset(&r, 0, sizeof r);
	r.key = o.key;
	if ((dl = dlopen(o.module, RTLD_NOW | RTLD_LOCAL)) == NULL ||
	    (gfl = (CK_C_GetFunctionList)dlsym(dl, "C_GetFunctionList")) == NULL || gfl(&r.f) != CKR_OK) {
		fprintf(stderr, "%s: cannot load the PKCS#11 module %s: %s\n", prog, o.module,
			dl == NULL ? dlerror() : "no C_GetFunctionList");
		goto out;
	}
	if ((rv = r.f->C_Initialize(&ia)) != CKR_OK) {
		fprintf(stderr, "%s: C_Initialize: 0x%lx\n", prog, (unsigned long)rv);
		goto out;
	}
	inited = 1;
	if (find_slot(r.f, o.token, &r.slot) != 0) {
		fprintf(stderr, "%s: no token labelled '%s'\n", prog, o.token);
		goto out;
	}
	if (read_pin(o.pin_file, pin, sizeof pin) != 0) {
		fprintf(stderr, "%s: cannot read a PIN from %s\n", prog, o.pin_file);
		goto out;
	}
	/* one login for the token; this session stays open so that it lasts */
	rv = r.f->C_OpenSession(r.slot, CKF_SERIAL_SESSION, NULL, NULL, &login);
	if (rv == CKR_OK)
		rv = r.f->C_Login(login, CKU_USER, (CK_UTF8CHAR_PTR)pin, strlen(pin));
	memset(pin, 0, sizeof pin);
	__asm__ __volatile__("" : : "r"(pin) : "memory");	/* keep the wipe */
	if (rv != CKR_OK && rv != CKR_USER_ALREADY_LOGGED_IN) {
		fprintf(stderr, "%s: login on token '%s': 0x%lx\n", prog, o.token, (unsigned long)rv);
		goto out;
	}
	if (pthread_barrier_init(&r.ready, NULL, (unsigned)o.threads + 1) != 0 ||
	    (w = calloc((size_t)o.threads, sizeof *w)) == NULL)
		goto out;
	barrier = 1;
	for (i = 0; i < o.threads; i++) {
		w[i].r = &r;
		if (pthread_create(&w[i].th, NULL, worker_main, &w[i]) != 0) {
			fprintf(stderr, "%s: cannot start thread %d\n", prog, i);
			exit(1);	/* the others wait on the barrier: exit */
		}
	}
	pthread_barrier_wait(&r.ready);	/* every thread has its session */
	t0 = deadline_in(o.seconds, &r.deadline);
	pthread_barrier_wait(&r.ready);	/* go */
	for (i = 0; i < o.threads; i++)
		pthread_join(w[i].th, NULL);
	elapsed = now_s() - t0;
	if (atomic_load(&r.setup_failed))
		goto out;
	for (i = 0; i < o.threads; i++) {
		sigs += w[i].sigs;
		errs += w[i].errors;
	}
	printf("threads=%d seconds=%.1f signatures=%ld rate=%.1f us_per_sig=%.1f errors=%ld\n", o.threads,
	       o.seconds, sigs, (double)sigs / elapsed, sigs > 0 ? elapsed * 1e6 * o.threads / (double)sigs : 0.0,
	       errs);
	fflush(stdout);
	rc = sigs > 0 ? 0 : 1;
out:
	if (barrier)
		pthread_barrier_destroy(&r.ready);
	free(w);
	if (login != CK_INVALID_HANDLE)
		(void)r.f->C_CloseSession(login);
	if (inited)
		(void)r.f->C_Finalize(NULL);
	/* the module stays mapped: some modules leave threads or atexit
	 * handlers behind */
	return rc;
}
