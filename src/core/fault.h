/* fault: faults a test can inject into a running daemon, compiled in only with
 * -DSOCKGATE_FAULTS=ON (never in a release or package build). A thread told to
 * hang blocks here until the fault is lifted, so a test can see what a wedged
 * event loop or password check does to the watchdog, and then let the daemon
 * end cleanly. */
#ifndef SOCKGATE_FAULT_H
#define SOCKGATE_FAULT_H

#include <stdbool.h>

/* The values `kill -USR2` carries (sigqueue) in a build with faults. */
enum fault_kind {
	FAULT_HANG_WORKER = 1, /* worker 0's event loop blocks */
	FAULT_HANG_AUTH = 2,   /* a password-check thread blocks */
	FAULT_LIFT = 3,        /* every blocked thread goes on */
};

/* Whether this build has faults (SOCKGATE_FAULTS). */
bool fault_enabled(void);
/* Blocks the calling thread until fault_lift(). */
void fault_block(void);
void fault_lift(void);

#endif
