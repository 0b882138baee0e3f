/* p11cert: the process itself and the processes it starts.  A child (the
 * renew --exec hook) gets an environment without our secrets; our own
 * memory (PIN, shared token) never lands in a core file. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cli.h"

extern char **environ;

/* Environment variables that carry a secret (docs/cli.md "PIN",
 * docs/enroll.md shared token): never passed to a child. */
static const char *const secret_vars[] = {
	"P11CERT_PIN",
	"P11CERT_CA_TOKEN",
};

int cli_secret_var(const char *entry)
{
	size_t i, n;

	for (i = 0; i < sizeof secret_vars / sizeof secret_vars[0]; i++) {
		n = strlen(secret_vars[i]);
		if (strncmp(entry, secret_vars[i], n) == 0 && (entry[n] == '=' || entry[n] == '\0'))
			return 1;
	}
	return 0;
}

int cli_run_hook(const char *cmd)
{
	char **env = NULL;
	size_t n = 0, i, k = 0;
	pid_t pid;
	int st, rc = -1;

	/* built before fork: the child only calls async-signal-safe functions */
	while (environ != NULL && environ[n] != NULL)
		n++;
	env = calloc(n + 1, sizeof *env);
	if (env == NULL)
		goto out;
	for (i = 0; i < n; i++)
		if (!cli_secret_var(environ[i]))
			env[k++] = environ[i];
	env[k] = NULL;
	pid = fork();
	if (pid < 0)
		goto out;
	if (pid == 0) {
		char *const av[] = { (char *)"sh", (char *)"-c", (char *)(uintptr_t)cmd, NULL };

		execve("/bin/sh", av, env);
		_exit(127);
	}
	while (waitpid(pid, &st, 0) < 0) {
		if (errno != EINTR)
			goto out;
	}
	rc = WIFEXITED(st) ? WEXITSTATUS(st) : 128;
out:
	free(env); /* the strings are environ's */
	return rc;
}

