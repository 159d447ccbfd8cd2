/* daemon: the sockgate process as a whole. It owns the configuration, the live
 * gateways, the listeners (on the main thread's loop), the worker threads and
 * the password-check pool, and reacts to signals: SIGHUP reloads, SIGTERM and
 * SIGINT stop. Only this module (and main) knows every other module. */
#ifndef SOCKGATE_DAEMON_H
#define SOCKGATE_DAEMON_H

#include <sys/types.h>

/* Runs the daemon in the foreground until SIGTERM/SIGINT. Returns the process
 * exit status (0 after a clean stop, 1 if start-up failed). */
int daemon_run(const char *config_path);

/* `sockgate -t`: loads the configuration and every credentials file. Prints
 * the problem or "configuration ok" and returns the exit status (0 or 1). */
int daemon_check(const char *config_path);

/* `sockgate --reload PID` (the unit's ExecReload=): asks the daemon PID to
 * reload and returns when it has: 0 if the new configuration is in use, 1 if
 * it was rejected or no answer came within timeout_ms. */
int daemon_request_reload(pid_t pid, int timeout_ms);

#endif
