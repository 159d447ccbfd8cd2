/* reload: the client side of `sockgate --reload PID` (the unit's ExecReload=),
 * which runs in a process of its own, not in the daemon. */
#ifndef SOCKGATE_RELOAD_H
#define SOCKGATE_RELOAD_H

#include <sys/types.h>

/* Asks the daemon PID to reload and returns when it has: 0 if the new
 * configuration is in use, 1 if it was rejected or no answer came within
 * timeout_ms. */
int reload_request(pid_t pid, int timeout_ms);

#endif
