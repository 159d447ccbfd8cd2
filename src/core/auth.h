/* auth: a pool of threads that run password checks off the event loops. A check
 * costs milliseconds by design; the loops only queue a job and get it back as a
 * loop task. The queue is bounded, so no flood of logins can make the daemon
 * burn unbounded CPU or memory: a full queue is a temporary failure.
 *
 * Checks must not slow the sessions already relaying. A low priority alone
 * does not do it: the kernel weighs priorities only inside a scheduling group,
 * and the relays' peers (upstream, clients) are in other groups (autogroups,
 * services' cgroups), which then wait a time slice behind a check. So while
 * sessions relay, the pool also runs one check fewer than there are CPUs. */
#ifndef SOCKGATE_AUTH_H
#define SOCKGATE_AUTH_H

#include <stdbool.h>
#include <stdint.h>

#include "credentials.h"
#include "errbuf.h"
#include "loop.h"
#include "totp.h"

/* Bytes of a verification code line that are kept: longer is wrong anyway. */
#define AUTH_MAX_CODE 16

struct auth_pool;

enum auth_result {
	AUTH_OK = 0,
	AUTH_DENIED,         /* unknown user or wrong password */
	AUTH_ERROR,          /* crypt failed on the stored hash: a broken entry */
	AUTH_TEMPFAIL,       /* the check was not made (shutting down) */
	AUTH_NO_CREDENTIALS, /* the slot is empty: a reload removed the gateway */
};

/* Owned by the session that submits it; the pool uses it until it posts it back. */
struct auth_job {
	struct loop_task task; /* how the result comes back to reply_loop */
	struct auth_job *next; /* queue link, the pool's */
	/* Where the credentials in force are found when the check starts (a
	 * reload may replace them while the job waits); the submitter keeps the
	 * slot alive until the job is posted back. */
	struct credentials_slot *slot;
	struct loop *reply_loop;
	loop_task_fn *done; /* runs on reply_loop with task->arg == arg */
	void *arg;
	enum auth_result result;
	const char *denial; /* why AUTH_DENIED, for the log: "bad credentials", ... */
	char user[CREDENTIALS_MAX_USER + 1];
	/* Wiped by the pool after use. One byte more than is checked, so that an
	 * overlong password is seen as one (credentials_verify()). */
	char password[CREDENTIALS_MAX_PASSWORD + 2];
	/* The second factor, if the gateway asks for one: the code as typed
	 * (one byte more than is kept marks it overlong), wiped after use. */
	bool with_code;
	unsigned totp_window;
	const struct credentials_access *target; /* the target named, or NULL */
	struct sockaddr_storage peer;            /* the client (from= networks) */
	char code[AUTH_MAX_CODE + 2];
	uint64_t submitted_us; /* set by auth_pool_submit(): the check's time includes its wait */
};

struct auth_pool_settings {
	unsigned threads;           /* checks at once; 0 means one per CPU */
	unsigned threads_relaying;  /* checks at once while sessions relay; 0: see below */
	unsigned max_queue;         /* jobs waiting (not running) at most */
	bool background;            /* run the checks at SCHED_BATCH, nice 19 */
	struct totp_replay *replay; /* codes already used; NULL: no replay check */
};

/* How long after the last relayed byte sessions count as relaying. */
#define AUTH_RELAYING_MS 1000

/* threads_relaying 0 means one CPU fewer than there are (at least 1, at most
 * threads): while sessions relay, one CPU is left to them and their peers. */
struct auth_pool *auth_pool_create(const struct auth_pool_settings *settings, struct errbuf *err);

/* Tells the pool that a session relayed data at now_ms (loop_now_ms()); cheap
 * enough for every relay event. */
void auth_pool_note_relaying(struct auth_pool *pool, uint64_t now_ms);

/* The checks that may run at once at now_ms (loop_clock_ms()). */
unsigned auth_pool_allowed(struct auth_pool *pool, uint64_t now_ms);

/* Queues job (fill user, password, code, slot, reply_loop, done, arg first).
 * The password (and code) is checked against the slot's credentials when the
 * check starts; if a reload changed the user's entry before it ended, it is
 * checked again against the new one. A code that passes is claimed in the
 * replay table: a second login with it is denied. Returns 0, or -1 if the queue is full or the pool
 * is stopping; then the job is untouched. */
int auth_pool_submit(struct auth_pool *pool, struct auth_job *job);

/* The monotonic clock in microseconds (submitted_us). */
uint64_t auth_clock_us(void);

/* Jobs waiting and running, for status lines. */
unsigned auth_pool_pending(struct auth_pool *pool);

/* The longest time one thread has spent on its current check, 0 if none
 * checks: for the watchdog (a check takes milliseconds, not seconds). */
uint64_t auth_pool_stalled_ms(struct auth_pool *pool, uint64_t now_ms);

/* Tests (fault.h): one thread blocks until fault_lift(), as if its check hung. */
void auth_pool_fault_hang(struct auth_pool *pool);

/* Stops the threads: queued jobs complete with AUTH_TEMPFAIL, running ones
 * finish; all are posted back before this returns. The pool stays valid:
 * later submits fail (sessions still running may try). */
void auth_pool_stop(struct auth_pool *pool);

/* Stops the pool if needed, then frees it: when nothing can submit any more. */
void auth_pool_free(struct auth_pool *pool);

#endif
