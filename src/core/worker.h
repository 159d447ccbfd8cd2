/* worker: one thread running one event loop, and the set of sessions that live
 * on it. The accepting thread hands each connection to the least-loaded
 * worker; from then on the session lives on that worker's thread only. */
#ifndef SOCKGATE_WORKER_H
#define SOCKGATE_WORKER_H

#include <stddef.h>
#include <stdint.h>

#include "auth.h"
#include "errbuf.h"
#include "lograte.h"
#include "loop.h"
#include "penalty.h"
#include "session.h"

struct worker;

struct worker_settings {
	unsigned id;                     /* names the thread: sockgate-wID */
	struct auth_pool *auth;          /* where its sessions check passwords */
	struct pamauth_pool *pam;        /* where they ask PAM */
	struct admission *admission;     /* checks sources a PROXY header names */
	struct passes *passes;           /* shared: passes granted and used */
	struct penalty_table *penalties; /* shared; may be NULL */
	struct lograte *lograte;         /* shared; may be NULL */
	struct stats *stats;             /* shared: the metrics; may be NULL */
	struct recorder *recorder;       /* shared: session recordings; may be NULL */
	struct carry *carry;             /* shared: sessions kept for a restart; may be NULL */
	size_t scratch_len;              /* the relay's read buffer */
};

struct worker *worker_create(const struct worker_settings *set, struct errbuf *err);
int worker_start(struct worker *w, struct errbuf *err);
/* Closes every session (reason is logged), stops the loop, joins the thread. */
void worker_stop(struct worker *w, const char *reason);
/* The same at a planned stop under systemd's fd store: the carried sessions
 * are handed over to the next process (session_set_hand_over()). */
void worker_hand_over(struct worker *w);
void worker_free(struct worker *w);

unsigned worker_id(const struct worker *w);
struct loop *worker_loop(struct worker *w);
/* Its sessions: start new ones there (session_start()); the set's own calls
 * that say "on the set's loop" run in tasks posted to worker_loop(). */
struct session_set *worker_sessions(struct worker *w);

/* From the watchdog's thread: asks w's loop to show it still runs (unless the
 * last question is unanswered). */
void worker_heartbeat(struct worker *w, uint64_t now_ms);
/* How long w's loop has left the last question unanswered (0: answered). */
uint64_t worker_stalled_ms(struct worker *w, uint64_t now_ms);

/* From another thread: runs fn(sessions, arg) on w's loop and waits for it,
 * at most timeout_ms. Returns 0, or -1 if it did not run in time (then it
 * may still run later: arg must outlive the worker, or be static). */
typedef void worker_call_fn(struct session_set *sessions, void *arg);
int worker_call(struct worker *w, worker_call_fn *fn, void *arg, unsigned timeout_ms);

/* Of n workers, the one with the fewest sessions. */
struct worker *worker_least_loaded(struct worker **workers, unsigned n);

#endif
