/* auth: a pool of threads that run password checks off the event loops. A check
 * costs milliseconds by design; the loops only queue a job and get it back as a
 * loop task. The queue is bounded, so no flood of logins can make the daemon
 * burn unbounded CPU or memory: a full queue is a temporary failure. */
#ifndef SOCKGATE_AUTH_H
#define SOCKGATE_AUTH_H

#include <stdbool.h>

#include "credentials.h"
#include "errbuf.h"
#include "loop.h"

struct auth_pool;

enum auth_result {
	AUTH_OK = 0,
	AUTH_DENIED,   /* unknown user or wrong password */
	AUTH_ERROR,    /* crypt failed on the stored hash: a broken entry */
	AUTH_TEMPFAIL, /* the check was not made (shutting down) */
};

/* Owned by the session that submits it; the pool uses it until it posts it back. */
struct auth_job {
	struct loop_task task; /* how the result comes back to reply_loop */
	struct auth_job *next; /* queue link, the pool's */
	struct credentials *creds; /* a reference, released when the job completes */
	struct loop *reply_loop;
	loop_task_fn *done; /* runs on reply_loop with task->arg == arg */
	void *arg;
	enum auth_result result;
	char user[CREDENTIALS_MAX_USER + 1];
	char password[CREDENTIALS_MAX_PASSWORD + 1]; /* wiped by the pool after use */
};

/* threads: 0 means one per CPU. max_queue: jobs waiting (not running) at most.
 * The threads run at SCHED_IDLE, so checks yield to relaying; where that is
 * refused, at nice value nice. */
struct auth_pool *auth_pool_create(unsigned threads, unsigned max_queue, int nice,
				   struct errbuf *err);

/* Queues job (fill user, password, creds (a new reference), reply_loop, done,
 * arg first). Returns 0, or -1 if the queue is full or the pool is stopping; then
 * the job is untouched and the caller still owns its reference. */
int auth_pool_submit(struct auth_pool *pool, struct auth_job *job);

/* Jobs waiting and running, for status lines. */
unsigned auth_pool_pending(struct auth_pool *pool);

/* Stops the threads: queued jobs complete with AUTH_TEMPFAIL, running ones
 * finish; all are posted back before this returns. The pool stays valid:
 * later submits fail (sessions still running may try). */
void auth_pool_stop(struct auth_pool *pool);

/* Stops the pool if needed, then frees it: when nothing can submit any more. */
void auth_pool_free(struct auth_pool *pool);

#endif
