/* logtap: drains a process's log pipe on a thread of its own, so the process
 * never blocks on a full pipe, and lets a test wait (with a timeout, no sleeps)
 * for a line or search everything logged so far. */
#ifndef SOCKGATE_LOGTAP_H
#define SOCKGATE_LOGTAP_H

#include <stddef.h>

struct logtap;

/* Starts draining fd (the tap owns it from now on). NULL on failure. */
struct logtap *logtap_start(int fd);
/* Stops the thread, closes fd, frees everything. NULL is fine. */
void logtap_stop(struct logtap *t);

/* Waits until a line containing needle has been logged at or after line number
 * *cursor (0 = the first line); on success copies it into line (if not NULL),
 * sets *cursor past it and returns 0; -1 on timeout or when the pipe closed. */
int logtap_wait(struct logtap *t, const char *needle, size_t *cursor, char *line, size_t len,
		int timeout_ms);

/* Lines logged so far that contain needle. */
unsigned logtap_count(struct logtap *t, const char *needle);

/* Total bytes logged so far (to prove something was not logged, search all). */
int logtap_contains(struct logtap *t, const char *needle);

/* Lines logged so far. */
size_t logtap_lines(struct logtap *t);

/* Writes everything logged to stderr (for a failing test's output). */
void logtap_dump(struct logtap *t, const char *title);

#endif
