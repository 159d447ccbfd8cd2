/* worker: one thread running one event loop that owns a share of the sessions.
 * The listener hands each accepted connection to the least-loaded worker; from
 * then on the session lives on that worker's thread only. */
#ifndef SOCKGATE_WORKER_H
#define SOCKGATE_WORKER_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "errbuf.h"
#include "lograte.h"
#include "loop.h"
#include "penalty.h"

struct session;

struct worker {
	unsigned id;
	pthread_t thread;
	bool running;
	struct loop *loop;
	struct auth_pool *auth;
	struct penalty_table *penalties; /* shared by all workers; may be NULL */
	struct lograte *lograte;         /* shared by all workers; may be NULL */
	unsigned sessions;               /* atomic: open sessions on this worker */
	unsigned logging_in;             /* atomic: of those, not yet relaying */
	struct session *list;            /* this thread only */
	char *scratch;                   /* relay read buffer, shared by its sessions */
	size_t scratch_len;
	struct loop_task stop_task;
	const char *stop_reason;
	/* The watchdog's question to the loop, and whether it is unanswered. */
	struct loop_task beat_task;
	bool beat_pending;     /* atomic */
	uint64_t beat_sent_ms; /* atomic: when the pending one was posted */
};

struct worker *worker_create(unsigned id, struct auth_pool *auth, size_t scratch_len,
			     struct errbuf *err);
int worker_start(struct worker *w, struct errbuf *err);
/* Closes every session (reason is logged), stops the loop, joins the thread. */
void worker_stop(struct worker *w, const char *reason);
void worker_free(struct worker *w);

/* From the watchdog's thread: asks w's loop to show it still runs (unless the
 * last question is unanswered). */
void worker_heartbeat(struct worker *w, uint64_t now_ms);
/* How long w's loop has left the last question unanswered (0: answered). */
uint64_t worker_stalled_ms(struct worker *w, uint64_t now_ms);

/* Of n workers, the one with the fewest sessions. */
struct worker *worker_least_loaded(struct worker **workers, unsigned n);

#endif
