/*
 * p11_mkkeys: key pairs on a test token in one session, which pkcs11-tool
 * cannot do (one process per key) and cannot mark CKA_ALWAYS_AUTHENTICATE
 * in this Debian release.
 *
 *   p11_mkkeys MODULE TOKEN PIN_FILE COUNT LABEL [--always-auth] [--rsa]
 *
 * COUNT EC P-256 (or RSA 2048) key pairs labelled LABEL (COUNT 1) or
 * LABEL-1 .. LABEL-COUNT, with CKA_ID "LABEL" + the index as 4 bytes;
 * private keys CKA_TOKEN, CKA_PRIVATE, CKA_SENSITIVE, not extractable.
 * The PIN is read from PIN_FILE (first line).  Exit 0 or 1 with a message.
 */
#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <p11-kit/pkcs11.h>

static unsigned char OID_P256[] = { 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
					  0x3d, 0x03, 0x01, 0x07 };

static int die(const char *what, CK_RV rv)
{
	fprintf(stderr, "p11_mkkeys: %s: 0x%lx\n", what, (unsigned long)rv);
	return 1;
}

int main(int argc, char **argv)
{
	CK_RV (*get_list)(CK_FUNCTION_LIST_PTR_PTR) = NULL;
	CK_FUNCTION_LIST_PTR f = NULL;
	CK_SLOT_ID slots[64];
	CK_ULONG nslots = 64, i;
	CK_TOKEN_INFO ti;
	CK_SESSION_HANDLE s;
	CK_BBOOL yes = CK_TRUE, no = CK_FALSE, aa = CK_FALSE;
	CK_ULONG bits = 2048, count;
	int rsa = 0, a, found = 0;
	char pin[256], label[128];
	unsigned char id[72];
	size_t plen, llen;
	FILE *fp;
	void *dl;
	CK_RV rv;

	if (argc < 6) {
		fprintf(stderr, "usage: p11_mkkeys MODULE TOKEN PIN_FILE COUNT LABEL "
				"[--always-auth] [--rsa]\n");
		return 64;
	}
	for (a = 6; a < argc; a++) {
		if (strcmp(argv[a], "--always-auth") == 0)
			aa = CK_TRUE;
		else if (strcmp(argv[a], "--rsa") == 0)
			rsa = 1;
		else
			return die("unknown option", 0);
	}
	count = strtoul(argv[4], NULL, 10);
	if (count == 0 || count > 100000 || strlen(argv[5]) > 60)
		return die("bad COUNT or LABEL", 0);
	fp = fopen(argv[3], "r");
	if (fp == NULL || fgets(pin, sizeof pin, fp) == NULL)
		return die("cannot read the PIN file", 0);
	fclose(fp);
	pin[strcspn(pin, "\r\n")] = '\0';
	plen = strlen(pin);
	dl = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL)
		return die(dlerror(), 0);
	*(void **)&get_list = dlsym(dl, "C_GetFunctionList");
	if (get_list == NULL)
		return die("no C_GetFunctionList", 0);
	if ((rv = get_list(&f)) != CKR_OK)
		return die("C_GetFunctionList", rv);
	if ((rv = f->C_Initialize(NULL)) != CKR_OK)
		return die("C_Initialize", rv);
	if ((rv = f->C_GetSlotList(CK_TRUE, slots, &nslots)) != CKR_OK)
		return die("C_GetSlotList", rv);
	for (i = 0; i < nslots; i++) {
		if (f->C_GetTokenInfo(slots[i], &ti) != CKR_OK)
			continue;
		llen = sizeof ti.label;
		while (llen > 0 && ti.label[llen - 1] == ' ')
			llen--;
		if (llen == strlen(argv[2]) && memcmp(ti.label, argv[2], llen) == 0) {
			found = 1;
			break;
		}
	}
	if (!found)
		return die("no such token", 0);
	rv = f->C_OpenSession(slots[i], CKF_SERIAL_SESSION | CKF_RW_SESSION, NULL, NULL, &s);
	if (rv != CKR_OK)
		return die("C_OpenSession", rv);
	if ((rv = f->C_Login(s, CKU_USER, (CK_UTF8CHAR_PTR)pin, plen)) != CKR_OK)
		return die("C_Login", rv);
	memset(pin, 0, sizeof pin);
	for (i = 1; i <= count; i++) {
		CK_MECHANISM mech = { rsa ? CKM_RSA_PKCS_KEY_PAIR_GEN : CKM_EC_KEY_PAIR_GEN, NULL, 0 };
		CK_OBJECT_HANDLE pub, priv;
		size_t idl = strlen(argv[5]);
		CK_ULONG lbl;
		CK_ATTRIBUTE pubt[5], privt[9];
		CK_ULONG np = 0, nv = 0;

		if (count == 1)
			snprintf(label, sizeof label, "%s", argv[5]);
		else
			snprintf(label, sizeof label, "%s-%lu", argv[5], (unsigned long)i);
		lbl = strlen(label);
		memcpy(id, argv[5], idl);
		id[idl] = (unsigned char)(i >> 24);
		id[idl + 1] = (unsigned char)(i >> 16);
		id[idl + 2] = (unsigned char)(i >> 8);
		id[idl + 3] = (unsigned char)i;
		idl += 4;
		pubt[np++] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof yes };
		pubt[np++] = (CK_ATTRIBUTE){ CKA_LABEL, label, lbl };
		pubt[np++] = (CK_ATTRIBUTE){ CKA_ID, id, idl };
		if (rsa)
			pubt[np++] = (CK_ATTRIBUTE){ CKA_MODULUS_BITS, &bits, sizeof bits };
		else
			pubt[np++] = (CK_ATTRIBUTE){ CKA_EC_PARAMS, OID_P256, sizeof OID_P256 };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_TOKEN, &yes, sizeof yes };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_PRIVATE, &yes, sizeof yes };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_SENSITIVE, &yes, sizeof yes };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_EXTRACTABLE, &no, sizeof no };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_SIGN, &yes, sizeof yes };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_LABEL, label, lbl };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_ID, id, idl };
		privt[nv++] = (CK_ATTRIBUTE){ CKA_ALWAYS_AUTHENTICATE, &aa, sizeof aa };
		rv = f->C_GenerateKeyPair(s, &mech, pubt, np, privt, nv, &pub, &priv);
		if (rv != CKR_OK)
			return die("C_GenerateKeyPair", rv);
	}
	(void)f->C_Logout(s);
	(void)f->C_CloseSession(s);
	(void)f->C_Finalize(NULL);
	return 0;
}
