/* timing: how long the gateway takes to answer kinds of failed logins,
 * measured side by side (each kind in turn, so a change in the machine's load
 * weighs on all of them alike) and compared by their medians. */
#ifndef SOCKGATE_TIMING_H
#define SOCKGATE_TIMING_H

#include <stdbool.h>
#include <stddef.h>

/* Sends each of the kinds attempts (a whole dialogue: "user\npassword\n...")
 * n times, in rotation, over connections to 127.0.0.1:port of at most
 * per_conn attempts each (the gateway's max_attempts must allow that, with
 * failure_delay = 0 and penalties off), timing each from the send to the
 * arrival of answer. medians[k] gets kind k's median in microseconds.
 * Returns 0, or -1 if a connection or an answer failed. */
int timing_medians(int port, const char *const attempts[], size_t kinds, unsigned n,
		   unsigned per_conn, const char *answer, long long medians[]);

/* True if the largest median is within tolerance (0.10: 10 %) of the
 * smallest; prints them with names[k] either way. */
bool timing_alike(const long long medians[], const char *const names[], size_t kinds,
		  double tolerance);

#endif
