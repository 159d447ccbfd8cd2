/* daemon: the sockgate process as a whole, composed: the configuration, the
 * live gateways, the listening sockets (endpoints) and admission on the main
 * thread's loop, the worker threads and the password-check pool; it reacts to
 * signals (SIGHUP reloads, SIGTERM and SIGINT stop) and talks to systemd. Only
 * this module (and main) knows every other module. */
#ifndef SOCKGATE_DAEMON_H
#define SOCKGATE_DAEMON_H

#include <sys/types.h>

/* `sockgatectl restart`: the process handed its sessions over and exits with
 * this status (EX_TEMPFAIL), which the unit's RestartForceExitStatus= makes
 * systemd start it anew. */
#define DAEMON_EXIT_RESTART 75

/* Runs the daemon in the foreground until SIGTERM/SIGINT. Returns the process
 * exit status (0 after a clean stop, 1 if start-up failed, DAEMON_EXIT_RESTART
 * when asked to restart). */
int daemon_run(const char *config_path);

/* `sockgate -t`: loads the configuration and every credentials file. Prints
 * the problem or "configuration ok" and returns the exit status (0 or 1). */
int daemon_check(const char *config_path);

/* `sockgate --reload PID` (src/sockgate/reload.c) marks its SIGHUP (sigqueue)
 * with this value and waits for SIGUSR1 from the daemon, sent once the reload
 * is over, with 0 (the new configuration is in use) or 1 (rejected) as its
 * value: systemd 252 ends a reload job when ExecReload= exits, even if
 * RELOADING=1 has not arrived. */
#define DAEMON_RELOAD_COOKIE 0x53475244 /* "SGRD" */

#endif
