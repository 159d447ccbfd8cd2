/* reload: `sockgate --reload PID` (see reload.h). A plain kill -HUP would return
 * before the reload is done; this waits for the daemon's answer. */
#include "reload.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "daemon.h"

int reload_request(pid_t pid, int timeout_ms)
{
	union sigval v = {.sival_int = DAEMON_RELOAD_COOKIE};
	struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000L};
	sigset_t set;
	siginfo_t si;

	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	if (pid <= 0 || sigprocmask(SIG_BLOCK, &set, NULL) < 0 || sigqueue(pid, SIGHUP, v) < 0) {
		fprintf(stderr, "sockgate: cannot signal process %ld: %s\n", (long)pid,
			pid <= 0 ? "not a process id" : strerror(errno));
		return 1;
	}
	for (;;) {
		if (sigtimedwait(&set, &si, &ts) < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "sockgate: process %ld did not answer within %d s\n",
				(long)pid, timeout_ms / 1000);
			return 1;
		}
		if (si.si_pid == pid && si.si_code == SI_QUEUE)
			return si.si_value.sival_int == 0 ? 0 : 1;
	}
}
