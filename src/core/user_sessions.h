/* user_sessions: how many sessions each user has open, for one gateway name
 * across its workers and reloads (max_sessions_per_user). Thread-safe; memory
 * grows with the users who have sessions, not with the users who exist. */
#ifndef SOCKGATE_USER_SESSIONS_H
#define SOCKGATE_USER_SESSIONS_H

#include <stdbool.h>

struct user_sessions;

struct user_sessions *user_sessions_create(void);
void user_sessions_free(struct user_sessions *us);

/* Counts a session of user unless max (0: no limit) are open already.
 * Returns true if counted; false at the limit or out of memory. */
bool user_sessions_take(struct user_sessions *us, const char *user, unsigned max);
/* Ends a session counted by user_sessions_take(). */
void user_sessions_drop(struct user_sessions *us, const char *user);
/* Sessions of user open now. */
unsigned user_sessions_count(struct user_sessions *us, const char *user);

#endif
